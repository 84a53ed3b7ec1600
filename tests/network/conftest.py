"""Network scenarios (TESTING.md, "Network scenarios"): namespaces built by the tests, inside the suite's own.

Reuses the browser harness (tests/browser/harness.py). Each test builds its namespaces, veth links, firewall rules
and coturn itself and removes them afterwards.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_BROWSER = str(Path(__file__).resolve().parents[1] / "browser")
if _BROWSER not in sys.path:
    sys.path.insert(0, _BROWSER)


@pytest.fixture(autouse=True)
def _in_test_namespace() -> None:
    if os.environ.get("RTCW_NETNS") != "1":
        pytest.fail("network tests must run inside the test network namespace (tests/conftest.py)")
