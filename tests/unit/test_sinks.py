"""Fanout: bounded in items and bytes, ordered, nothing lost between consumers."""

from __future__ import annotations

import asyncio
import threading

from rtc_widgets.sinks import Fanout

from .conftest import run_async


def test_backlog_is_bounded_in_bytes_and_counts_what_it_refuses():
    fan: Fanout[bytes] = Fanout("t", maxlen=1000, max_bytes=10_000, sizeof=len)
    for _ in range(50):
        fan.publish(b"x" * 1000)  # 50 kB offered while nobody consumes
    assert fan.dropped == 40
    got: list[bytes] = []
    done = threading.Event()
    fan.add_callback(lambda m: (got.append(m), len(got) == 10 and done.set()))
    assert done.wait(5)
    assert len(got) == 10 and fan.dropped == 40
    fan.close()


def test_a_message_bigger_than_the_budget_still_reaches_an_idle_consumer():
    fan: Fanout[bytes] = Fanout("t", maxlen=10, max_bytes=100, sizeof=len)
    fan.publish(b"y" * 1000)
    fan.publish(b"z")  # the budget is spent: refused
    assert fan.dropped == 1
    got: list[bytes] = []
    fan.add_callback(got.append)
    assert fan.wait_idle(5)
    assert got == [b"y" * 1000]
    fan.close()


def test_items_are_bounded_too_and_callbacks_see_them_in_order():
    fan: Fanout[int] = Fanout("t", maxlen=5)
    for i in range(8):
        fan.publish(i)
    got: list[int] = []
    fan.add_callback(got.append)
    assert fan.wait_idle(5)
    assert got == [0, 1, 2, 3, 4] and fan.dropped == 3
    fan.close()


def test_unread_items_go_back_for_the_next_iterator():
    fan: Fanout[bytes] = Fanout("t", maxlen=100, max_bytes=1000, sizeof=len)

    async def take(n: int) -> list[bytes]:
        out = []
        it = fan.iterate()
        async for item in it:
            out.append(item)
            if len(out) == n:
                break
        await it.aclose()
        return out

    for i in range(5):
        fan.publish(bytes([i]) * 100)
    assert run_async(take(2)) == [bytes([0]) * 100, bytes([1]) * 100]
    # 3 unread items (300 bytes) came back; the byte budget accounts for them
    for i in range(5, 20):
        fan.publish(bytes([i]) * 100)
    assert fan.dropped == 8  # 300 + 700 fit in 1000 bytes, 8 of the 15 new ones did not
    got = run_async(asyncio.wait_for(take(10), 5))
    assert [g[0] for g in got] == list(range(2, 12))
    fan.close()
