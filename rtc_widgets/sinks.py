"""Delivery of received items to user code, off the engine loop (ARCHITECTURE.md, decision 2).

A :class:`Fanout` takes items on the engine thread and hands them to
- callbacks, run in order on one worker thread per fanout (user code never runs on the engine loop), and
- async iterators in whatever loop the consumer runs (a notebook cell), woken thread-safely.
Every queue is bounded, in items and (given a ``sizeof``) in bytes; what overflows is counted, never silently grown.
Items that arrive while nobody consumes wait in a bounded backlog and go to the first consumer, so nothing already
received is lost by arriving early.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger("rtc_widgets")

T = TypeVar("T")


class _Subscriber(Generic[T]):
    """A bounded queue drained by one async iterator in the consumer's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: _Queue[T]) -> None:
        self.loop = loop
        self.items = queue
        self.lock = threading.Lock()
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False

    def put(self, item: T, arrived: float | None = None) -> bool:
        with self.lock:
            if not self.items.push(item, arrived):
                return False
            waiter, self.waiter = self.waiter, None
        if waiter is not None:
            self.loop.call_soon_threadsafe(_wake, waiter)
        return True

    def close(self) -> None:
        with self.lock:
            self.closed = True
            waiter, self.waiter = self.waiter, None
        if waiter is not None:
            with contextlib.suppress(RuntimeError):  # consumer loop already closed
                self.loop.call_soon_threadsafe(_wake, waiter)

    async def get(self) -> T:
        while True:
            with self.lock:
                if self.items:
                    return self.items.pop()
                if self.closed:
                    raise StopAsyncIteration
                self.waiter = self.loop.create_future()
                waiter = self.waiter
            await waiter


def _zero(_item: Any) -> int:
    return 0


class _Queue(Generic[T]):
    """A deque bounded in items and in bytes (``sizeof``), remembering when each item arrived; not thread-safe on
    its own."""

    def __init__(self, maxlen: int, max_bytes: int, sizeof: Callable[[T], int]) -> None:
        self.items: deque[tuple[T, float]] = deque()
        self.maxlen = maxlen
        self.max_bytes = max_bytes
        self.sizeof = sizeof
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self.items)

    def push(self, item: T, arrived: float | None = None) -> bool:
        size = self.sizeof(item)
        # an item bigger than the whole budget still goes into an empty queue, so it is never refused outright
        if len(self.items) >= self.maxlen or (self.items and self.nbytes + size > self.max_bytes):
            return False
        self.items.append((item, time.monotonic() if arrived is None else arrived))
        self.nbytes += size
        return True

    def pop(self) -> T:
        item, _ = self.items.popleft()
        self.nbytes -= self.sizeof(item)
        return item

    def oldest_age(self, now: float) -> float:
        """Seconds the oldest item has waited (0 when empty). Lock-free read: a racing pop only makes it 0."""
        try:
            return max(0.0, now - self.items[0][1])
        except IndexError:
            return 0.0

    def restore(self, entries: list[tuple[T, float]]) -> None:
        """Put ``entries`` back in front (they were within the bounds when they came in)."""
        self.items.extendleft(reversed(entries))
        self.nbytes += sum(self.sizeof(i) for i, _ in entries)

    def take_all(self) -> list[tuple[T, float]]:
        entries = list(self.items)
        self.items.clear()
        self.nbytes = 0
        return entries


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _Worker(Generic[T]):
    """One thread calling every registered callback for each item, in arrival order."""

    def __init__(self, name: str, queue: _Queue[T], on_drop: Callable[[int], None]) -> None:
        self.items = queue
        self.on_drop = on_drop
        self.callbacks: list[Callable[[T], Any]] = []
        self.cond = threading.Condition()
        self.stopped = False
        self.busy = False
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def put(self, item: T, arrived: float | None = None) -> bool:
        with self.cond:
            if not self.items.push(item, arrived):
                return False
            self.cond.notify()
        return True

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.items and not self.stopped:
                    self.busy = False
                    self.cond.notify_all()
                    self.cond.wait()
                if self.stopped and not self.items:
                    self.busy = False
                    self.cond.notify_all()
                    return
                item = self.items.pop()
                self.busy = True
                callbacks = list(self.callbacks)
            for cb in callbacks:
                try:
                    cb(item)
                except Exception:
                    log.error("error in %s callback %r:\n%s", self.thread.name, cb, traceback.format_exc())

    def drain(self, timeout: float | None) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: not self.items and not self.busy, timeout)

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()


class Fanout(Generic[T]):
    """Hands each item to callbacks (worker thread) and async iterators; bounded everywhere."""

    def __init__(
        self, name: str, maxlen: int, max_bytes: int | None = None, sizeof: Callable[[T], int] | None = None
    ) -> None:
        self.name = name
        self.maxlen = maxlen
        self.max_bytes = max_bytes if max_bytes is not None else 1 << 62
        self.sizeof: Callable[[T], int] = sizeof or _zero
        self.dropped = 0
        self._lock = threading.Lock()
        self._backlog: _Queue[T] = self._queue()
        self._subscribers: list[_Subscriber[T]] = []
        self._worker: _Worker[T] | None = None

    def _queue(self) -> _Queue[T]:
        return _Queue(self.maxlen, self.max_bytes, self.sizeof)

    def _count_drop(self, n: int = 1) -> None:
        self.dropped += n

    def publish(self, item: T) -> None:
        """Called on the producer's thread (the engine) for every item."""
        with self._lock:
            worker, subscribers = self._worker, list(self._subscribers)
            if worker is None and not subscribers:
                if not self._backlog.push(item):
                    self.dropped += 1
                return
        if worker is not None and not worker.put(item):
            self.dropped += 1
        for sub in subscribers:
            if not sub.put(item):
                self.dropped += 1

    def _take_backlog(self) -> list[tuple[T, float]]:
        return self._backlog.take_all()

    def add_callback(self, fn: Callable[[T], Any]) -> None:
        with self._lock:
            first = self._worker is None
            if first:
                self._worker = _Worker(f"rtc-widgets-{self.name}", self._queue(), self._count_drop)
            self._worker.callbacks.append(fn)  # type: ignore[union-attr]
            backlog = self._take_backlog() if first and not self._subscribers else []
        for item, arrived in backlog:
            self._worker.put(item, arrived)  # type: ignore[union-attr]

    def remove_callback(self, fn: Callable[[T], Any]) -> None:
        with self._lock:
            if self._worker is not None and fn in self._worker.callbacks:
                self._worker.callbacks.remove(fn)

    async def iterate(self) -> AsyncIterator[T]:
        """Yield items as they arrive, in the caller's loop."""
        sub: _Subscriber[T] = _Subscriber(asyncio.get_running_loop(), self._queue())
        with self._lock:
            if self._worker is None and not self._subscribers:
                for item, arrived in self._take_backlog():
                    sub.put(item, arrived)
            self._subscribers.append(sub)
        try:
            while True:
                try:
                    yield await sub.get()
                except StopAsyncIteration:
                    return
        finally:
            with self._lock:
                if sub in self._subscribers:
                    self._subscribers.remove(sub)
                if self._worker is None and not self._subscribers:
                    # Unread items go back, so a second ``async for`` continues where the first stopped.
                    with sub.lock:
                        self._backlog.restore(sub.items.take_all())

    def queue_lag(self) -> float:
        """Seconds the oldest received item has waited for user code (0 when every consumer is caught up)."""
        now = time.monotonic()
        with self._lock:
            queues = [self._backlog, *(s.items for s in self._subscribers)]
            if self._worker is not None:
                queues.append(self._worker.items)
        return max(q.oldest_age(now) for q in queues)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the callback worker has handled everything queued so far."""
        worker = self._worker
        return True if worker is None else worker.drain(timeout)

    def close(self) -> None:
        with self._lock:
            subscribers, self._subscribers = list(self._subscribers), []
            worker = self._worker
        for sub in subscribers:
            sub.close()
        if worker is not None:
            worker.stop()
