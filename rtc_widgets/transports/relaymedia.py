"""The kernel end of a browser track carried over the relay transport (``media`` messages, see ``protocol.json``).

When WebRTC cannot connect, the browser encodes its camera, microphone or screen with WebCodecs and sends each
encoded frame as one ``media`` message. A :class:`RelayTrack` turns them back into an aiortc track, so the
:class:`~rtc_widgets.tracks.TrackReceiver`, sinks and user code cannot tell a relayed track from a WebRTC one.

``push()`` runs on the engine loop and only queues; decoding happens on one worker thread per track, in order, and
decoded frames come back to the loop for ``recv()``. The bytes are untrusted: a frame that does not decode is
counted and remembered in ``last_error``, and video then waits for the next key frame (asking for one through
``on_need_key``) rather than showing the smeared frames a broken reference would give.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from ..protocol import LIMITS, RELAY
from .relaycodecs import OPUS_FRAME, AudioDecoder, MediaDecodeError, VideoDecoder

log = logging.getLogger("rtc_widgets")

#: While waiting for a key frame, ask the sender again at most this often (a request or its answer may be lost;
#: the first request of each wait goes at once).
KEY_REQUEST_INTERVAL_S = 1.0
_STOP = object()


class RelayTrack(MediaStreamTrack):
    """A relayed browser track of ``kind`` "video" or "audio", fed by :meth:`push`, read with ``await recv()``.

    ``push()`` returns True when it queued the frame for decoding and False when it dropped it; for video, False
    means the track waits for a key frame (first frame not a key frame, a gap in ``seq``, a frame that did not
    decode, decoding falling behind) and drops delta frames until one comes: ask the sender for one (the ``ack``'s
    ``key``). ``on_need_key()`` says the same on the engine loop, once when a wait starts and again every
    KEY_REQUEST_INTERVAL_S while it lasts; a frame that fails on the worker thread shows up there first.

    Counters: ``frames_received`` (messages pushed), ``frames_decoded``, ``frames_skipped`` (waiting for a key
    frame), ``frames_dropped`` (decoded or queued frames thrown away because nobody kept up), ``samples_dropped``
    (audio, likewise), ``decode_errors`` with ``last_error``, ``seq_gaps`` and ``key_requests``. ``latency_ms``
    holds recent delays from capture (the header's ``t``, the browser's clock) to decoded (the kernel's clock).
    """

    def __init__(self, kind: str, on_need_key: Callable[[], None] | None = None) -> None:
        if kind not in ("video", "audio"):
            raise ValueError(f"kind must be 'video' or 'audio', not {kind!r}")
        super().__init__()
        self.kind = kind
        self.on_need_key: Callable[[], None] = on_need_key or (lambda: None)
        self.frames_received = 0
        self.frames_decoded = 0
        self.frames_skipped = 0
        self.frames_dropped = 0
        self.samples_dropped = 0
        self.decode_errors = 0
        self.seq_gaps = 0
        self.key_requests = 0
        self.last_error = ""
        self.latency_ms: deque[float] = deque(maxlen=120)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._frames: deque[Any] = deque()
        self._queued_samples = 0
        self._ready: asyncio.Event | None = None
        self._next_seq: int | None = None
        self._pushed = 0  # index of the latest pushed message
        self._last_key_pushed = -1  # index of the latest key frame handed to the worker
        self._awaiting_key = kind == "video"
        self._last_key_request = -KEY_REQUEST_INTERVAL_S
        # audio never waits for key frames, so its backlog may be long: maxDecodedAudioS of 20 ms packets
        backlog = RELAY["maxDecodedVideoFrames"] if kind == "video" else RELAY["maxDecodedAudioS"] * 50
        self._inbox: queue.Queue[Any] = queue.Queue(backlog)
        self._inbox_bytes = 0  # payload bytes waiting for the worker, bounded by maxQueuedBytes
        self._inbox_lock = threading.Lock()
        self._worker: threading.Thread | None = None

    # --- engine loop -----------------------------------------------------------------------------
    @property
    def awaiting_key(self) -> bool:
        """True while video frames are dropped until the next key frame."""
        return self._awaiting_key

    @property
    def backlog(self) -> int:
        """Frames pushed but not decoded yet."""
        return self._inbox.qsize()

    def push(self, header: dict[str, Any], payload: bytes) -> bool:
        """Queue one ``media`` message (already validated) for decoding: True if queued, False if dropped."""
        if self.readyState != "live":
            return False
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self.frames_received += 1
        self._pushed += 1
        seq, lost = header.get("seq"), ""
        if isinstance(seq, int):
            if self._next_seq is not None and seq != self._next_seq:
                self.seq_gaps += 1
                lost = f"{self.kind} frames {self._next_seq}..{seq - 1} were lost on the way"
            self._next_seq = seq + 1
        if self.kind == "video":
            if header.get("key"):  # decodes on its own, whatever came before
                self._awaiting_key = False
                self._last_key_pushed = self._pushed
                self._last_key_request = -KEY_REQUEST_INTERVAL_S  # the next need asks at once
            else:
                if lost:
                    self._need_key(lost)
                if self._awaiting_key:
                    self.frames_skipped += 1
                    self._request_key()
                    return False
        with self._inbox_lock:
            full = self._inbox_bytes + len(payload) > LIMITS["maxQueuedBytes"] or self._inbox.full()
            if not full:
                self._inbox.put_nowait((self._pushed, header, payload))
                self._inbox_bytes += len(payload)
        if full:
            self._overflow(header, payload)
            return False
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name=f"rtc-widgets-relay-{self.kind}", daemon=True)
            self._worker.start()
        return True

    def _overflow(self, header: dict[str, Any], payload: bytes) -> None:
        if self.kind == "video":
            self.frames_dropped += 1
            self._need_key("video frames arrive faster than the kernel decodes them")
        elif header.get("codec") == "pcm16":
            self.samples_dropped += len(payload) // (2 * int(header.get("ch", 1)))
        else:
            self.samples_dropped += OPUS_FRAME  # the browser's Opus packets are 20 ms at 48 kHz

    def _need_key(self, why: str) -> None:
        if self.kind == "video":
            log.debug("rtc_widgets: relayed video waits for a key frame: %s", why)
            self._awaiting_key = True
            self._request_key()

    def _request_key(self) -> None:
        now = time.monotonic()
        if now - self._last_key_request < KEY_REQUEST_INTERVAL_S:
            return
        self._last_key_request = now
        self.key_requests += 1
        try:
            self.on_need_key()
        except Exception:
            log.exception("rtc_widgets: on_need_key failed")

    def _on_error(self, index: int, message: str) -> None:
        self.decode_errors += 1
        self.last_error = message
        log.debug("rtc_widgets: relayed %s: %s", self.kind, message)
        if self._last_key_pushed <= index:  # else a key frame is already on its way to the worker
            self._need_key(message)

    def _deliver(self, frames: list[Any], sent_ms: float | None) -> None:
        if self.readyState != "live":
            return
        if sent_ms is not None:
            self.latency_ms.append(time.time() * 1000 - sent_ms)
        for frame in frames:
            self.frames_decoded += 1
            self._frames.append(frame)
            if self.kind == "audio":
                self._queued_samples += frame.samples
        if self.kind == "video":
            while len(self._frames) > RELAY["maxDecodedVideoFrames"]:
                self._frames.popleft()
                self.frames_dropped += 1
        else:
            limit = RELAY["maxDecodedAudioS"] * (frames[-1].sample_rate if frames else 48000)
            while self._queued_samples > limit and len(self._frames) > 1:
                dropped = self._frames.popleft()
                self._queued_samples -= dropped.samples
                self.samples_dropped += dropped.samples
        if self._ready is not None:
            self._ready.set()

    async def recv(self) -> av.VideoFrame | av.AudioFrame:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self._ready is None:
            self._ready = asyncio.Event()
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            if self._frames:
                frame = self._frames.popleft()
                if self.kind == "audio":
                    self._queued_samples -= frame.samples
                return frame
            self._ready.clear()
            await self._ready.wait()

    def stop(self) -> None:
        """End the track: ``recv()`` raises MediaStreamError, the worker thread finishes its frame and exits."""
        super().stop()
        self._frames.clear()
        while True:  # make room for the stop marker; whatever waited is not worth decoding now
            try:
                self._inbox.put_nowait(_STOP)
                break
            except queue.Full:
                try:
                    self._inbox.get_nowait()
                except queue.Empty:
                    pass
        if self._ready is not None and self._loop is not None:
            try:
                on_loop = asyncio.get_running_loop() is self._loop
            except RuntimeError:
                on_loop = False
            if on_loop:
                self._ready.set()
            else:
                self._post(self._ready.set)
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=2.0)

    def counters(self) -> dict[str, Any]:
        return {
            "frames_received": self.frames_received,
            "frames_decoded": self.frames_decoded,
            "frames_skipped": self.frames_skipped,
            "frames_dropped": self.frames_dropped,
            "samples_dropped": self.samples_dropped,
            "decode_errors": self.decode_errors,
            "seq_gaps": self.seq_gaps,
            "key_requests": self.key_requests,
            "last_error": self.last_error,
        }

    # --- worker thread ---------------------------------------------------------------------------
    def _work(self) -> None:
        decoder: VideoDecoder | AudioDecoder = VideoDecoder() if self.kind == "video" else AudioDecoder()
        broken = False  # a frame failed: skip delta frames already queued behind it, up to the next key frame
        while True:
            item = self._inbox.get()
            if item is _STOP or self.readyState != "live":
                return
            index, header, payload = item
            with self._inbox_lock:
                self._inbox_bytes -= len(payload)
            if broken and self.kind == "video" and not header.get("key"):
                continue
            try:
                frames: list[Any] = decoder.decode(header, payload)
            except Exception as exc:
                message = str(exc)
                if not isinstance(exc, MediaDecodeError):  # a bug of ours or of PyAV: still not worth the track
                    decoder.reset()
                    message = f"{self.kind} frame {header.get('seq', '?')} failed to decode: {exc!r}"
                broken = True
                if not self._post(self._on_error, index, message):
                    return
                continue
            broken = False
            if frames and not self._post(self._deliver, frames, header.get("t")):
                return

    def _post(self, fn: Callable[..., None], *args: Any) -> bool:
        try:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody will read
            return False
        return True


__all__ = ["KEY_REQUEST_INTERVAL_S", "RelayTrack"]
