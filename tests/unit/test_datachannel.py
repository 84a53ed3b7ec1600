"""DataChannel end to end through the real protocol, comm path and engine, with aiortc standing in for the browser."""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import numpy as np
import pytest
from aiortc import RTCPeerConnection

from rtc_widgets import DataChannel
from rtc_widgets.engine import get_engine

from .conftest import run_async
from .fakebrowser import FakeBrowser


def engine_tasks() -> int:
    engine = get_engine()
    return engine.run_sync(_count_tasks(), 5)


async def _count_tasks() -> int:
    return len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])


def live_peer_connections() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, RTCPeerConnection) and o.connectionState != "closed")


def test_kernel_and_browser_exchange_text_bytes_and_numpy_in_order(connect):
    ch, browser = connect(label="chat")
    assert ch.connection_state == "connected"
    assert ch.max_message_size == 262144
    arr = np.arange(10, dtype="f4")
    ch.send("hello ünïcødé ✓")
    ch.send(b"\x00\x01")
    ch.send(arr)
    for i in range(300):
        ch.send(f"m{i}")
    got = browser.wait_received(303)
    assert got[0] == "hello ünïcødé ✓"
    assert got[1] == b"\x00\x01"
    assert np.array_equal(np.frombuffer(got[2], dtype="f4"), arr)
    assert got[3:] == [f"m{i}" for i in range(300)]

    received: list[object] = []
    threads: set[str] = set()
    done = threading.Event()

    @ch.on_message
    def on_msg(msg):
        received.append(msg)
        threads.add(threading.current_thread().name)
        if len(received) == 500:
            done.set()

    for i in range(499):
        browser.send(f"b{i}")
    browser.send(bytes(range(256)))
    assert done.wait(20)
    assert received[:499] == [f"b{i}" for i in range(499)]
    assert received[499] == bytes(range(256))
    assert threads and get_engine().thread.name not in threads and "MainThread" not in threads
    time.sleep(0.6)  # counters reach the traits at most every countersIntervalMs
    assert ch.messages_received == 500 and ch.messages_sent == 303


def test_messages_iterator_gets_messages_that_arrived_before_it(connect):
    ch, browser = connect(label="early")
    browser.send("first")
    browser.send("second")
    time.sleep(0.3)

    async def take(n):
        out = []
        async for msg in ch.messages():
            out.append(msg)
            if len(out) == n:
                break
        return out

    assert run_async(take(2)) == ["first", "second"]
    browser.send("third")
    assert run_async(asyncio.wait_for(take(1), 10)) == ["third"]


def test_unordered_unreliable_channel_connects_and_delivers(connect):
    ch, browser = connect(label="fast", ordered=False, max_retransmits=0)
    for i in range(50):
        ch.send(f"u{i}")
    assert sorted(browser.wait_received(50)) == sorted(f"u{i}" for i in range(50))


def test_message_over_negotiated_maximum_is_refused_and_maximum_passes(connect):
    ch, browser = connect(label="big")
    with pytest.raises(ValueError, match="exceeds the negotiated maximum"):
        ch.send(b"x" * (ch.max_message_size + 1))
    payload = bytes(range(256)) * (ch.max_message_size // 256)
    ch.send(payload)
    assert browser.wait_received(1)[0] == payload
    assert ch.error == ""


def test_ping_returns_round_trip_times(connect):
    ch, _browser = connect(label="p")
    rtts = run_async(ch.ping(n=20))
    assert len(rtts) == 20 and all(0 < r < 1000 for r in rtts)


def test_echo_browser_sends_everything_back(connect):
    ch, _browser = connect(label="e", echo=True)
    got: list[object] = []
    done = threading.Event()
    ch.on_message(lambda m: (got.append(m), len(got) == 3 and done.set()))
    for msg in ("a", b"\xff", "ç"):
        ch.send(msg)
    assert done.wait(10)
    assert got == ["a", b"\xff", "ç"]


def test_close_leaves_no_peer_connection_or_engine_task(connect):
    baseline_tasks = engine_tasks()
    baseline_pcs = live_peer_connections()
    ch, browser = connect(label="c")
    assert live_peer_connections() >= baseline_pcs + 1
    ch.close()
    browser.close()
    deadline = time.time() + 5
    while time.time() < deadline and (engine_tasks() > baseline_tasks or live_peer_connections() > baseline_pcs):
        time.sleep(0.1)
    assert engine_tasks() <= baseline_tasks
    assert live_peer_connections() <= baseline_pcs
    assert ch.connection_state == "closed"
    assert any(m["type"] == "bye" for m in browser.from_kernel)
    with pytest.raises(ConnectionError):
        ch.send("after close")


def test_browser_reconnect_replaces_the_old_connection(connect):
    ch, browser = connect(label="r")
    first = ch.peer.pc
    browser.connect()
    ch.wait_connected_blocking(20)
    assert ch.peer.pc is not first and first.connectionState == "closed"
    ch.send("after reconnect")
    assert browser.wait_received(1) == ["after reconnect"]


def test_wait_connected_times_out_with_advice_when_no_browser():
    ch = DataChannel(label="alone")
    try:
        with pytest.raises(TimeoutError, match="Display the widget, or call start"):
            ch.wait_connected_blocking(timeout=0.5)
    finally:
        ch.close()


def test_start_asks_the_browser_end_to_connect():
    ch = DataChannel(label="s")
    try:
        assert ch._start == 0
        ch.start()
        assert ch._start == 1
    finally:
        ch.close()
    with pytest.raises(RuntimeError, match="closed"):
        ch.start()


def test_browser_error_is_raised_by_wait_connected():
    ch = DataChannel(label="denied")
    browser = FakeBrowser(ch)
    try:
        browser.to_kernel(
            {"v": 1, "type": "error", "code": "browser-error", "message": "camera permission denied in the browser"}
        )
        with pytest.raises(ConnectionError, match="permission denied"):
            ch.wait_connected_blocking(5)
        assert "permission denied" in ch.error
    finally:
        ch.close()
        browser.close()


def test_invalid_channel_options_are_refused():
    with pytest.raises(ValueError, match="not both"):
        DataChannel(label="x", max_retransmits=1, max_packet_life_time=100)
