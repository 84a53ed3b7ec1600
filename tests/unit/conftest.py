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
