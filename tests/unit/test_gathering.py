"""A dead STUN/TURN server must not hold the kernel's answer: gathering is bounded by config.ice_gathering_timeout."""

from __future__ import annotations

import time

import pytest

from rtc_widgets import DataChannel, config

from .fakebrowser import FakeBrowser

# Addresses in the test namespace's 198.18.0.0/24 that nobody holds: requests to them go unanswered.
DEAD = [
    {"urls": "stun:198.18.0.99:3478"},
    {"urls": "turn:198.18.0.98:3478?transport=udp", "username": "u", "credential": "p"},
]


@pytest.mark.parametrize("bound", [1.0, 3.0])
def test_dead_ice_servers_delay_the_answer_only_by_the_gathering_timeout(bound: float) -> None:
    old = config.ice_gathering_timeout
    config.ice_gathering_timeout = bound
    ch = DataChannel(label="dead", ice_servers=DEAD)
    browser = FakeBrowser(ch)
    try:
        t0 = time.monotonic()
        browser.connect(timeout=30)
        answered = time.monotonic() - t0
        ch.wait_connected_blocking(20)  # host candidates still connect
        print(f"gathering bound {bound} s: answer after {answered:.2f} s (aioice alone: 5.0 s)")
        assert bound - 0.2 <= answered < bound + 1.0
    finally:
        config.ice_gathering_timeout = old
        ch.close()
        browser.close()


def test_the_gathering_timeout_is_validated() -> None:
    with pytest.raises(ValueError, match="between 0 and 60"):
        config.ice_gathering_timeout = 0
