"""The engine: one daemon thread per process with its own asyncio loop that owns every aiortc object.

Why a thread of its own (ARCHITECTURE.md, decision 1): with aiortc on the kernel's loop, ``time.sleep(5)`` in a
cell stopped all media; on its own loop media and data keep flowing while cells run synchronous code.

Bridges:
- ``await engine.run(coro)`` from any running loop (a notebook cell) -- the cell's loop is never blocked;
- ``engine.run_sync(coro, timeout)`` from plain scripts and synchronous code;
- ``engine.call_soon(fn, *args)`` to post work from callbacks (comm handlers run on the kernel's main thread).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("rtc_widgets")

T = TypeVar("T")

_THREAD_NAME = "rtc-widgets-engine"


def _new_loop() -> asyncio.AbstractEventLoop:
    # uvloop raised data-channel throughput ~1.5x in our measurements; optional, so fall back quietly.
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Engine:
    """A daemon thread running an asyncio loop. Use :func:`get_engine` rather than constructing one."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closers: dict[int, Callable[[], Coroutine[Any, Any, None]]] = {}
        self._stopped = False
        self._thread = threading.Thread(target=self._main, name=_THREAD_NAME, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        loop = _new_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def in_engine(self) -> bool:
        """True when called from the engine thread itself."""
        return threading.current_thread() is self._thread

    def is_running(self) -> bool:
        return self._thread.is_alive() and not self._stopped

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the engine loop; returns a thread-safe future."""
        if not self.is_running():
            coro.close()
            raise RuntimeError("the rtc_widgets engine has been shut down; restart the kernel")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the engine from another running loop (e.g. a notebook cell)."""
        if self.in_engine():
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    def run_sync(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Block the calling thread until ``coro`` finishes on the engine (for scripts)."""
        if self.in_engine():
            coro.close()
            raise RuntimeError("run_sync() called on the engine thread; it would deadlock")
        fut = self.submit(coro)
        # concurrent.futures.wait, not fut.result(timeout): since Python 3.11 a TimeoutError raised by the
        # coroutine itself is indistinguishable from the wait timing out.
        done, _ = concurrent.futures.wait([fut], timeout)
        if not done:
            fut.cancel()
            raise TimeoutError(f"operation did not finish within {timeout} s")
        return fut.result()

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the engine loop as soon as possible (thread-safe)."""
        if self.in_engine():
            self.loop.call_soon(fn, *args)
        elif self.is_running():
            self.loop.call_soon_threadsafe(fn, *args)

    def register(self, obj: object, closer: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Remember an object whose ``closer`` must run at shutdown (peers)."""
        self._closers[id(obj)] = closer

    def unregister(self, obj: object) -> None:
        self._closers.pop(id(obj), None)

    def live_objects(self) -> int:
        """How many registered objects (peers) are still open."""
        return len(self._closers)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Close every registered peer, then stop the loop and join the thread."""
        if self._stopped:
            return
        closers = list(self._closers.values())
        self._closers.clear()

        async def close_all() -> None:
            await asyncio.gather(*(c() for c in closers), return_exceptions=True)

        if self._thread.is_alive() and not self.in_engine():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(timeout)
        self._stopped = True
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            if not self.in_engine():
                self._thread.join(timeout)


_engine: Engine | None = None
_engine_lock = threading.Lock()


def get_engine() -> Engine:
    """The process-wide engine, started on first use."""
    global _engine
    with _engine_lock:
        if _engine is None or not _engine.is_running():
            _engine = Engine()
        return _engine


def shutdown_engine(timeout: float = 5.0) -> None:
    """Stop the engine (closing every peer). A later :func:`get_engine` starts a new one."""
    global _engine
    with _engine_lock:
        engine, _engine = _engine, None
    if engine is not None:
        engine.shutdown(timeout)


atexit.register(shutdown_engine)
