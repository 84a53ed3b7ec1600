"""Received media as numpy, off the engine loop (ARCHITECTURE.md, decision 2).

- :class:`VideoSink` keeps only the newest frame. A worker thread converts it to an ``(H, W, 3)`` uint8 RGB array
  once and hands that one array to every consumer (callbacks, ``async for`` streams, ``snapshot()``); a frame that is
  replaced before a consumer took it is counted in ``frames_dropped``, so a slow consumer never builds up delay.
- :class:`AudioSink` resamples every frame once to float32 ``(n, channels)`` at the requested rate and writes it into
  one bounded ring (:class:`AudioRing`). Every consumer reads the ring with its own cursor, so each gets every sample
  in order; a consumer that falls more than the ring's length behind loses the oldest samples, counted in
  ``samples_dropped``.

Arrays handed out are shared between consumers and therefore read-only: ``img.copy()`` before drawing on it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from .protocol import DEFAULTS

log = logging.getLogger("rtc_widgets")

MEDIA = DEFAULTS["media"]

VideoCallback = Callable[[np.ndarray], Any]
AudioCallback = Callable[[np.ndarray], Any]


_local = threading.local()


def reformatter() -> VideoReformatter:
    """This thread's own PyAV reformatter. ``frame.to_ndarray(format=...)`` caches one swscale context in the frame
    itself, and one received frame reaches several threads (our worker, ``cam.track`` users, recorders): two of
    them converting it at once race on that context (seen: a worker hung for good). Per-thread contexts don't."""
    ref = getattr(_local, "reformatter", None)
    if ref is None:
        ref = _local.reformatter = VideoReformatter()
    return ref


def frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """An aiortc/PyAV video frame as a read-only ``(H, W, 3)`` uint8 RGB array."""
    arr = reformatter().reformat(frame, format="rgb24").to_ndarray()
    arr.flags.writeable = False
    return arr


def _call_all(callbacks: list[Callable[[Any], Any]], item: Any, where: str) -> None:
    for cb in callbacks:
        try:
            cb(item)
        except Exception:
            log.error("error in %s callback %r:\n%s", where, cb, traceback.format_exc())


class _Slot:
    """One ``async for`` consumer of a video sink: holds at most the newest array, wakes its loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.item: np.ndarray | None = None
        self.closed = False
        self.event = asyncio.Event()

    def put(self, item: np.ndarray | None) -> bool:
        """Store ``item``; False when it replaced one the consumer had not taken (a drop)."""
        replaced = self.item is not None
        self.item = item
        if item is None:
            self.closed = True
        try:
            self.loop.call_soon_threadsafe(self.event.set)
        except RuntimeError:  # the consumer's loop is gone
            self.closed = True
        return not replaced


class VideoSink:
    """Newest-frame delivery of one received video track (publish on the engine, consume anywhere)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.frames_received = 0
        self.frames_dropped = 0
        self.width = 0
        self.height = 0
        self._cond = threading.Condition()
        self._seq = 0
        self._latest: av.VideoFrame | None = None
        self._pending: tuple[int, av.VideoFrame] | None = None
        self._pending_since = 0.0  # when the frame now pending first made a consumer wait
        self._array: tuple[int, np.ndarray] | None = None
        self._arrivals: deque[float] = deque(maxlen=512)
        self._callbacks: list[VideoCallback] = []
        self._slots: list[_Slot] = []
        self._worker: threading.Thread | None = None
        self._closed = False

    # --- engine thread ---------------------------------------------------------------------------
    def publish(self, frame: av.VideoFrame) -> None:
        with self._cond:
            self.frames_received += 1
            self._arrivals.append(time.monotonic())
            self.width, self.height = frame.width, frame.height
            self._seq += 1
            self._latest = frame
            if self._callbacks or self._slots:
                if self._pending is not None:
                    self.frames_dropped += 1
                else:
                    self._pending_since = time.monotonic()
                self._pending = (self._seq, frame)
                self._cond.notify()
                handoff = True
            else:
                handoff = False
        if handoff:
            # Let the worker take this frame now: otherwise the engine may keep the GIL for up to the 5 ms switch
            # interval, and frames arriving in a burst replace one another before even a fast consumer saw them
            # (real browser, 150 frames: 6-10 replaced without this yield, 3-5 with it).
            time.sleep(0)

    # --- any thread ------------------------------------------------------------------------------
    def fps(self, window: float = MEDIA["fpsWindowS"]) -> float:
        """Frames received per second over the last ``window`` seconds."""
        now = time.monotonic()
        with self._cond:
            recent = [t for t in self._arrivals if now - t <= window]
        return len(recent) / window

    def _array_of(self, seq: int, frame: av.VideoFrame) -> np.ndarray:
        cached = self._array
        if cached is not None and cached[0] == seq:
            return cached[1]
        arr = frame_to_rgb(frame)  # outside the lock: the engine must never wait for a conversion
        self._array = (seq, arr)
        return arr

    def latest(self, timeout: float) -> np.ndarray:
        """The newest frame as RGB, waiting up to ``timeout`` s for a first one (blocking)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._latest is not None or self._closed, timeout):
                raise TimeoutError(f"no video frame within {timeout:g} s: is the camera connected? see .error")
            if self._latest is None:
                raise ConnectionError("the video sink is closed")
            seq, frame = self._seq, self._latest
        return self._array_of(seq, frame)

    def latest_frame(self) -> av.VideoFrame | None:
        """The newest raw ``av.VideoFrame`` (or None before the first one)."""
        return self._latest

    def add_callback(self, fn: VideoCallback) -> None:
        with self._cond:
            self._callbacks.append(fn)
            self._ensure_worker()

    def remove_callback(self, fn: VideoCallback) -> None:
        with self._cond:
            if fn in self._callbacks:
                self._callbacks.remove(fn)

    async def stream(self) -> AsyncIterator[np.ndarray]:
        """Yield the newest frame each time one arrives; frames this consumer had no time for are skipped."""
        slot = _Slot(asyncio.get_running_loop())
        with self._cond:
            if self._closed:
                return
            self._slots.append(slot)
            self._ensure_worker()
        try:
            while True:
                await slot.event.wait()
                slot.event.clear()
                item, slot.item = slot.item, None
                if item is not None:
                    yield item
                elif slot.closed:
                    return
        finally:
            with self._cond:
                if slot in self._slots:
                    self._slots.remove(slot)

    def _ensure_worker(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name=f"rtc-widgets-{self.name}", daemon=True)
            self._worker.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closed)
                if self._closed:
                    slots = list(self._slots)
                    break
                assert self._pending is not None
                (seq, frame), self._pending = self._pending, None
                callbacks, slots = list(self._callbacks), list(self._slots)
            arr = self._array_of(seq, frame)
            for slot in slots:
                if not slot.put(arr):
                    with self._cond:
                        self.frames_dropped += 1
            _call_all(callbacks, arr, self._worker.name if self._worker else self.name)
        for slot in slots:
            slot.put(None)

    def queue_lag(self) -> float:
        """Seconds since user code last kept up: a frame has been waiting for the consumers that long (0 when none
        is waiting). Frames replaced meanwhile do not reset it, so a consumer that never catches up shows."""
        with self._cond:
            return time.monotonic() - self._pending_since if self._pending is not None else 0.0

    def counters(self) -> dict[str, Any]:
        return {
            "frames_received": self.frames_received,
            "frames_dropped": self.frames_dropped,
            "fps": round(self.fps(), 1),
            "frame_width": self.width,
            "frame_height": self.height,
        }

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            worker, slots = self._worker, list(self._slots)
        if worker is None:
            for slot in slots:
                slot.put(None)


class AudioRing:
    """A bounded ring of float32 samples ``(capacity, channels)`` with absolute positions, many readers."""

    def __init__(self, capacity: int, channels: int) -> None:
        self.capacity = capacity
        self.channels = channels
        self.written = 0  # samples ever written (absolute position of the next write)
        self.dropped = 0
        self._buf = np.zeros((capacity, channels), dtype=np.float32)
        self._cond = threading.Condition()
        self.closed = False

    def write(self, samples: np.ndarray) -> None:
        total = n = len(samples)
        if n > self.capacity:  # only the newest capacity samples can be kept; the rest count as written
            samples, n = samples[-self.capacity :], self.capacity
        with self._cond:
            start = (self.written + total - n) % self.capacity
            first = min(n, self.capacity - start)
            self._buf[start : start + first] = samples[:first]
            self._buf[: n - first] = samples[first:]
            self.written += total
            self._cond.notify_all()

    def wait(self, position: int, timeout: float | None) -> bool:
        """Block until more than ``position`` samples were written (or closed); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.written > position or self.closed, timeout)

    def read(self, cursor: int, max_samples: int | None = None) -> tuple[np.ndarray, int]:
        """Samples from ``cursor`` on (at most ``max_samples``) and the new cursor. Samples that were already
        overwritten are skipped and counted in ``dropped``."""
        with self._cond:
            oldest = max(0, self.written - self.capacity)
            if cursor < oldest:
                self.dropped += oldest - cursor
                cursor = oldest
            end = self.written if max_samples is None else min(self.written, cursor + max_samples)
            n = end - cursor
            start = cursor % self.capacity
            first = min(n, self.capacity - start)
            out = np.empty((n, self.channels), dtype=np.float32)
            out[:first] = self._buf[start : start + first]
            out[first:] = self._buf[: n - first]
        return out, end

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class AudioSink:
    """Every sample of one received audio track, resampled once, in a bounded ring with per-consumer cursors."""

    def __init__(self, name: str, sample_rate: int, channels: int, ring_seconds: float) -> None:
        if channels not in (1, 2):
            raise ValueError("channels must be 1 (mono) or 2 (stereo)")
        self.name = name
        self.sample_rate = sample_rate
        self.channels = channels
        self.ring = AudioRing(max(1, int(ring_seconds * sample_rate)), channels)
        self.frames_received = 0
        self._resampler: av.AudioResampler | None = None
        self._callbacks: list[AudioCallback] = []
        self._worker: threading.Thread | None = None
        self._worker_cursor: int | None = None  # absolute position the callback worker has read up to
        self._lock = threading.Lock()

    @property
    def samples_received(self) -> int:
        return self.ring.written

    # --- engine thread ---------------------------------------------------------------------------
    def reset(self) -> None:
        """A new session: its frames may come in another layout; start a fresh resampler."""
        self._resampler = None

    def publish(self, frame: av.AudioFrame) -> None:
        self.frames_received += 1
        if self._resampler is None:
            layout = "mono" if self.channels == 1 else "stereo"
            self._resampler = av.AudioResampler(format="flt", layout=layout, rate=self.sample_rate)
        frame.pts = None  # RTP timestamps jump on loss; the resampler only needs the samples in order
        for out in self._resampler.resample(frame):
            self.ring.write(out.to_ndarray().reshape(-1, self.channels))

    # --- any thread ------------------------------------------------------------------------------
    def collect(self, n: int, timeout: float) -> np.ndarray:
        """Block until the next ``n`` samples (from now) arrived; return them ``(n, channels)``."""
        cursor = self.ring.written
        parts: list[np.ndarray] = []
        got = 0
        deadline = time.monotonic() + timeout
        while got < n:
            if not self.ring.wait(cursor, max(0.0, deadline - time.monotonic())) or self.ring.closed:
                raise TimeoutError(
                    f"only {got} of {n} audio samples arrived within {timeout:g} s: is the microphone connected? "
                    "see .error"
                )
            chunk, cursor = self.ring.read(cursor, n - got)
            parts.append(chunk)
            got += len(chunk)
        return np.concatenate(parts) if parts else np.zeros((0, self.channels), np.float32)

    def add_callback(self, fn: AudioCallback) -> None:
        with self._lock:
            self._callbacks.append(fn)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name=f"rtc-widgets-{self.name}", daemon=True)
                self._worker.start()

    def remove_callback(self, fn: AudioCallback) -> None:
        with self._lock:
            if fn in self._callbacks:
                self._callbacks.remove(fn)

    def _run(self) -> None:
        cursor = self._worker_cursor = self.ring.written
        while not self.ring.closed:
            if not self.ring.wait(cursor, 1.0):
                continue
            chunk, cursor = self.ring.read(cursor)
            self._worker_cursor = cursor
            if len(chunk):
                chunk.flags.writeable = False
                with self._lock:
                    callbacks = list(self._callbacks)
                _call_all(callbacks, chunk, f"rtc-widgets-{self.name}")

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        """Yield every sample from now on, in order, as ``(n, channels)`` chunks."""
        cursor = self.ring.written
        while not self.ring.closed:
            if not await asyncio.to_thread(self.ring.wait, cursor, 1.0):
                continue
            chunk, cursor = self.ring.read(cursor)
            if len(chunk):
                chunk.flags.writeable = False
                yield chunk

    def queue_lag(self) -> float:
        """Seconds of received audio the callbacks have not been handed yet (0 without callbacks)."""
        cursor = self._worker_cursor
        return 0.0 if cursor is None else max(0, self.ring.written - cursor) / self.sample_rate

    def counters(self) -> dict[str, Any]:
        return {"samples_received": self.ring.written, "samples_dropped": self.ring.dropped}

    def close(self) -> None:
        self.ring.close()


__all__ = ["AudioRing", "AudioSink", "VideoSink", "frame_to_rgb"]
