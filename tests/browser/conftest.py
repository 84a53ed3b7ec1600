"""Fixtures for real-browser tests: JupyterLab + Chromium (Playwright) + a kernel client.

Session:  ``lab`` (LabServer), ``playwright`` (sync Playwright), ``browser`` (Chromium).
Function: ``launch_browser(extra_args=(), **kw)`` (extra Chromium, closed after the test),
          ``open_notebook(browser=None, name=None, ready_timeout=60)`` and ``notebook``
          (a fresh notebook + fresh kernel in a new browser context; see harness.Notebook).

On a failing test, a full-page screenshot and the page console of every notebook the test
opened land in ``test-artifacts/``, and the report gets the JupyterLab log tail and the
console tail. Timings (lab start-up, page-to-idle) are summarised at the end of the run.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

# tests/ has no __init__.py: make ``import harness`` work in any import mode
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import harness  # noqa: E402
from harness import (  # noqa: E402
    LabServer,
    Notebook,
    artifact_path,
    chromium_executable,
    merged_chromium_args,
)

_NOTEBOOKS = pytest.StashKey[list]()
_LAB = pytest.StashKey[LabServer]()
_TIMINGS: dict[str, list[float]] = {}
_counter = itertools.count(1)


def _timing(key: str, seconds: float) -> None:
    _TIMINGS.setdefault(key, []).append(seconds)


def _safe(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid.split("/")[-1]).strip("_")[:150]


# --------------------------------------------------------------------------------------
# session fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """A running JupyterLab (isolated dirs, kernelspec ``rtcw``); see harness.LabServer."""
    if os.environ.get("RTCW_NETNS") != "1":
        pytest.fail("browser tests must run inside the test network namespace (tests/conftest.py)")
    server = LabServer(tmp_path_factory.mktemp("jupyterlab"))
    server.start()
    assert server.startup_seconds is not None
    _timing("lab startup", server.startup_seconds)
    try:
        yield server
    finally:
        server.stop()
        # keep the server log with the other artifacts
        try:
            artifact_path("jupyterlab.log").write_bytes(server.log_path.read_bytes())
        except OSError:
            pass


# ``playwright`` (one sync Playwright per run, shared with tests/network) lives in tests/conftest.py.


def _launch(playwright: Any, extra_args: Sequence[str] = (), **kwargs: Any) -> Any:
    kwargs.setdefault("headless", True)
    kwargs.setdefault("timeout", 60_000)
    return playwright.chromium.launch(
        executable_path=chromium_executable(),
        args=merged_chromium_args(extra_args),
        chromium_sandbox=False,
        **kwargs,
    )


@pytest.fixture(scope="session")
def browser(playwright: Any) -> Iterator[Any]:
    """Headless Chromium with ``harness.CHROMIUM_ARGS`` (shared by the session)."""
    b = _launch(playwright)
    try:
        yield b
    finally:
        b.close()


# --------------------------------------------------------------------------------------
# function fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture
def launch_browser(playwright: Any) -> Iterator[Callable[..., Any]]:
    """``launch_browser(extra_args=(), **launch_kwargs) -> playwright Browser``.

    ``extra_args`` are added to the default flags (``--disable-features=`` values are merged,
    not replaced), e.g. ``["--use-file-for-fake-video-capture=/tmp/x.y4m"]``. Browsers are
    closed when the test ends.
    """
    launched: list[Any] = []

    def launch(extra_args: Sequence[str] = (), **kwargs: Any) -> Any:
        b = _launch(playwright, extra_args, **kwargs)
        launched.append(b)
        return b

    yield launch
    for b in launched:
        try:
            b.close()
        except Exception:
            pass


@pytest.fixture
def open_notebook(request: pytest.FixtureRequest, lab: LabServer, browser: Any) -> Iterator[Callable[..., Notebook]]:
    """``open_notebook(browser=None, name=None, ready_timeout=60) -> harness.Notebook``.

    Each call writes a new notebook, opens it in a new context of ``browser`` (default: the
    session browser), waits until the status bar reads "| Idle" and connects a kernel
    client. Everything is shut down (kernel included) when the test ends.
    """
    opened: list[Notebook] = []
    request.node.stash[_NOTEBOOKS] = opened
    request.node.stash[_LAB] = lab

    def open_(browser_: Any = None, name: str | None = None, ready_timeout: float = 60.0) -> Notebook:
        if name is None:
            name = f"t{next(_counter):03d}_{_safe(request.node.name)[:60]}.ipynb"
        nb = Notebook(lab, browser_ or browser, name, ready_timeout=ready_timeout)
        opened.append(nb)
        _timing("page to kernel idle", nb.ready_seconds)
        return nb

    yield open_
    for nb in opened:
        nb.close()


@pytest.fixture
def notebook(open_notebook: Callable[..., Notebook]) -> Notebook:
    """A fresh notebook (fresh kernel) open in the session browser; see harness.Notebook."""
    return open_notebook()


# --------------------------------------------------------------------------------------
# failure reporting and timings
# --------------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if (rep.when == "call" and rep.failed) or (rep.when == "setup" and rep.failed):
        prefix = _safe(item.nodeid)
        for i, nb in enumerate(item.stash.get(_NOTEBOOKS, [])):
            saved = nb.save_failure_artifacts(f"{prefix}-{i}")
            rep.sections.append(
                (
                    f"browser console of {nb.name} (tail)",
                    "\n".join(nb.console[-60:]) + "\nartifacts: " + ", ".join(map(str, saved)),
                )
            )
        lab = item.stash.get(_LAB, None)
        if lab is not None:
            rep.sections.append(("jupyterlab log (tail)", lab.log_tail(60)))
    if rep.when == "call":
        _timing("test call", rep.duration)
    return rep


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _TIMINGS:
        return
    tr = terminalreporter
    tr.section("rtcw browser harness timings")
    for key, values in _TIMINGS.items():
        tr.write_line(
            f"{key:22s} n={len(values):3d}  min={min(values):6.2f}s  "
            f"mean={sum(values) / len(values):6.2f}s  max={max(values):6.2f}s"
        )


__all__ = ["harness"]
