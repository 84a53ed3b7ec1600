from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rtc_widgets import DataChannel

from .fakebrowser import FakeBrowser


@pytest.fixture
def connect() -> Iterator[Any]:
    """connect(**widget_options) -> (widget, fake browser), connected; both closed afterwards."""
    made: list[tuple[DataChannel, FakeBrowser]] = []

    def make(echo: bool = False, trickle: bool = True, **options: Any) -> tuple[DataChannel, FakeBrowser]:
        widget = DataChannel(**options)
        browser = FakeBrowser(widget, echo=echo, trickle=trickle)
        made.append((widget, browser))
        browser.connect()
        widget.wait_connected_blocking(timeout=20)
        return widget, browser

    yield make
    for widget, browser in made:
        widget.close()
        browser.close()


def run_async(coro: Any, timeout: float = 60) -> Any:
    """Run ``coro`` to completion in a fresh loop on its own thread, as a notebook cell's loop would be.

    Not ``asyncio.run``: in a whole-suite run the browser tests' sync Playwright leaves a loop running on the main
    thread, where ``asyncio.run`` refuses to start."""
    import asyncio
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout)
