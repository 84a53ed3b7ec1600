"""Suite-wide setup: every test runs inside a private network namespace.

On import (before pytest has started any thread or opened any socket) this module checks
``RTCW_NETNS``. When it is unset, it re-executes the very same command line
(``sys.orig_argv``: interpreter options, ``-m pytest`` or the ``pytest`` script, and every
pytest argument) as::

    unshare --net -- <python> tests/netns.py -- <python> <original arguments...>

``tests/netns.py`` brings ``lo`` up, adds a veth pair that stays inside the namespace
(198.18.0.1 <-> 198.18.0.2), sets ``RTCW_NETNS=1`` and a proxy-free environment, and execs
the command again. Inside, this module verifies that only ``lo`` and the veth pair exist.
Needs root (CAP_SYS_ADMIN); there is no fallback: a failure stops the run with a message.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_TESTS_DIR = Path(__file__).resolve().parent
_NETNS_PY = _TESTS_DIR / "netns.py"


def _load_netns():
    spec = importlib.util.spec_from_file_location("_rtcw_tests_netns", _NETNS_PY)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


netns = _load_netns()


def _fail(msg: str) -> None:
    raise RuntimeError(
        "\n\n*** rtc_widgets tests: cannot enter the private network namespace ***\n"
        f"{msg}\n"
        "The test suite only runs inside a network namespace it creates itself "
        "(unshare --net, as root); it never uses the host network.\n"
    )


def _stop_pytest_capture() -> None:
    """Pytest imports initial conftests while capturing fds 1/2 into temp files.

    Undo that before exec, or the re-executed run would write into a deleted file.
    """
    for obj in gc.get_objects():
        if type(obj).__name__ == "CaptureManager" and type(obj).__module__ == "_pytest.capture":
            try:
                obj.stop_global_capturing()
            except Exception:
                pass


def _reexec_in_namespace() -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        _fail("`unshare` (util-linux) was not found on PATH.")
    if shutil.which("ip") is None and not os.path.exists("/usr/sbin/ip"):
        _fail("`ip` (iproute2) was not found; install it with `apt-get install -y iproute2`.")
    probe = subprocess.run([unshare, "--net", "--", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        _fail(
            f"`unshare --net true` failed (exit {probe.returncode}, euid {os.geteuid()}): "
            f"{probe.stderr.strip() or 'no message'}\n"
            "Run the tests as root (or with CAP_SYS_ADMIN) on a kernel that allows network "
            "namespaces."
        )
    orig = list(getattr(sys, "orig_argv", []) or [])
    if len(orig) < 2:
        # should not happen on Python >= 3.10; fall back to `python -m pytest <args>`
        orig = [sys.executable, "-m", "pytest", *sys.argv[1:]]
    command = [sys.executable, *orig[1:]]
    argv = [unshare, "--net", "--", sys.executable, str(_NETNS_PY), "--", *command]
    _stop_pytest_capture()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(unshare, argv)
    except OSError as exc:
        _fail(f"exec of {argv!r} failed: {exc}")


if os.environ.get(netns.ENV_FLAG) != "1":
    _reexec_in_namespace()
else:
    try:
        netns.check_isolated()
    except netns.NetnsError as exc:
        _fail(f"{netns.ENV_FLAG}=1 is set, but {exc}")


@pytest.fixture(scope="session")
def playwright() -> Iterator[Any]:
    """One sync Playwright for the whole run: tests/browser and tests/network both use it (a second one would
    find the first one's event loop running and refuse)."""
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        yield pw
    finally:
        pw.stop()


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    """A skipped test is an unproven claim: the run fails if anything was skipped."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped and exitstatus == 0:
        reporter.write_line(f"rtc_widgets: {len(skipped)} test(s) skipped; this suite allows no skips", red=True)
        session.exitstatus = 1
