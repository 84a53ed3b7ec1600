"""Media the kernel sends to the browser: pushable sources, and the aiortc tracks that read them.

A source outlives sessions (like a sink): user code pushes into it from any thread, and every session (or, later,
another transport) reads it through a fresh track of its own, on the engine loop.

- :class:`VideoSource` keeps only the newest frame. ``send(img)`` converts the image to YUV 4:2:0 on the caller's
  thread (the engine never waits for a conversion); a frame replaced before any track took it is counted in
  ``frames_dropped``, so a producer faster than the encoder never builds up delay. A track hands the encoder a new
  frame at most ``max_fps`` times per second, and **repeats the last frame every** ``IDLE_REPEAT_S`` **when none
  arrives** (a black placeholder before the first one). Why repeat: aiortc timestamps frames by their ``pts`` and
  sends nothing between them, so without repeats a still picture is one frame, then silence; the browser's
  decoder, its stats and a late-joining view only recover at the next frame, and a lost packet is only repaired at
  the next keyframe. Two frames a second keep all of that alive for a few kbit/s.
- :class:`AudioSource` is a bounded FIFO of 48 kHz samples. ``send(samples, sample_rate)`` resamples once and
  queues; what does not fit in ``buffer_seconds`` is dropped and counted (or, with ``block=True``, waited for). A
  track takes 20 ms every 20 ms of wall clock (aiortc's Opus encoder needs a paced track) and fills any gap with
  silence.
- ``play(track)`` feeds a source from any aiortc ``MediaStreamTrack`` (an echo of ``cam.track``, a
  ``MediaPlayer``); the source takes the track over and stops it when replaced or stopped.

:class:`TrackSender` is what :class:`~rtc_widgets.peer.KernelPeer` sees: it adds a fresh track of its source to each
session's connection, reusing the transceiver of the browser's recvonly offer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fractions
import logging
import threading
import time
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from .media import MEDIA, reformatter
from .protocol import ProtocolError

log = logging.getLogger("rtc_widgets")

VIDEO_CLOCK = 90000
#: Seconds after which a video track repeats its last frame when no new one arrived (see the module docstring).
IDLE_REPEAT_S = 0.5
#: Shown (at the idle rate) until the first frame is sent.
PLACEHOLDER_SIZE = (320, 240)
DEFAULT_MAX_FPS = 30

AUDIO_RATE = 48000
AUDIO_FRAME = AUDIO_RATE // 50  # 20 ms
#: An audio track further behind the wall clock than this (the engine was blocked) skips ahead instead of bursting.
AUDIO_MAX_LAG_S = 0.2
#: play(track) keeps at most this much audio queued ahead, waiting for the track to play it instead of dropping.
PLAY_AHEAD_S = 0.2


def _even_crop(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    return arr[: h - h % 2, : w - w % 2]


def to_yuv420p(image: Any) -> np.ndarray:
    """An image as a YUV 4:2:0 array ``(H * 3 // 2, W)`` for the encoder.

    Accepts ``(H, W, 3)`` uint8 RGB, ``(H, W, 4)`` RGBA, ``(H, W)`` gray, or an ``av.VideoFrame``. Odd sizes lose
    their last row or column (4:2:0 needs even sizes)."""
    if isinstance(image, av.VideoFrame):
        frame = image
        if frame.width % 2 or frame.height % 2:
            frame = av.VideoFrame.from_ndarray(_even_crop(frame.to_ndarray(format="rgb24")), format="rgb24")
    else:
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            raise TypeError(f"send() takes uint8 images, not {arr.dtype}: scale to 0..255 and use img.astype(np.uint8)")
        formats = {2: "gray", 3: "rgb24", 4: "rgba"}
        if arr.ndim == 3 and arr.shape[2] in (3, 4):
            fmt = formats[arr.shape[2]]
        elif arr.ndim == 2:
            fmt = "gray"
        else:
            raise ValueError(f"send() takes (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) gray images, not {arr.shape}")
        arr = _even_crop(arr)
        if arr.shape[0] < 2 or arr.shape[1] < 2:
            raise ValueError(f"the image is too small to send: {image.shape}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt)
    # this thread's own swscale context: a shared frame (cam.track) may be converted elsewhere at the same time
    return reformatter().reformat(frame, format="yuv420p").to_ndarray()


class _Pump:
    """Reads a user's aiortc track on the engine loop and hands each frame to ``deliver``."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._track: MediaStreamTrack | None = None

    def start(self, track: MediaStreamTrack, deliver: Any) -> None:
        self.stop()
        self._track = track
        self._task = asyncio.ensure_future(self._run(track, deliver))

    async def _run(self, track: MediaStreamTrack, deliver: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            try:
                await deliver(frame)
            except Exception:
                log.exception("rtc_widgets: could not send a frame of the played %s track", track.kind)

    def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        track, self._track = self._track, None
        if track is not None:
            track.stop()  # ours now: a MediaRelay proxy nobody reads would queue frames for ever


class _SourceTrack(MediaStreamTrack):
    """A track reading a source; stop() wakes a waiting recv()."""

    def __init__(self) -> None:
        super().__init__()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._t0: float | None = None

    def wake(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed
                loop.call_soon_threadsafe(self._wake.set)

    def stop(self) -> None:
        super().stop()
        self.wake()


class VideoSource:
    """Newest-frame video to send: ``send()`` from any thread, tracks read it on the engine."""

    kind = "video"

    def __init__(self, max_fps: int = DEFAULT_MAX_FPS) -> None:
        self.max_fps = max_fps
        self.frames_sent = 0
        self.frames_dropped = 0
        self.width = 0
        self.height = 0
        self._lock = threading.Lock()
        self._seq = 0  # number of the newest frame
        self._taken = 0  # newest frame number any track took
        self._yuv: np.ndarray | None = None
        self._placeholder = np.zeros((PLACEHOLDER_SIZE[1] * 3 // 2, PLACEHOLDER_SIZE[0]), np.uint8)
        self._placeholder[: PLACEHOLDER_SIZE[1]] = 16  # black in video range; chroma 0 would be green
        self._placeholder[PLACEHOLDER_SIZE[1] :] = 128
        self._sent_at: collections.deque[float] = collections.deque(maxlen=512)
        self._tracks: list[_VideoTrack] = []
        self._pump = _Pump()

    # --- any thread ------------------------------------------------------------------------------
    def send(self, image: Any) -> None:
        """Make ``image`` the newest frame (see :func:`to_yuv420p` for what it accepts)."""
        self._publish(to_yuv420p(image))

    def _publish(self, yuv: np.ndarray) -> None:
        with self._lock:
            if self._tracks and self._taken < self._seq:
                self.frames_dropped += 1  # replaced before any track took it
            self._seq += 1
            self._yuv = yuv
            self.height, self.width = yuv.shape[0] * 2 // 3, yuv.shape[1]
            tracks = list(self._tracks)
        for track in tracks:
            track.wake()

    def track(self) -> MediaStreamTrack:
        """A new aiortc track carrying this source (newest frames, idle repeats); read it on the engine loop."""
        track = _VideoTrack(self)
        with self._lock:
            self._tracks.append(track)
        track.on("ended", lambda: self._forget(track))
        return track

    def _forget(self, track: _VideoTrack) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._tracks.remove(track)

    def _take(self, track: _VideoTrack) -> tuple[np.ndarray | None, bool]:
        """The newest frame for ``track`` and whether it is new to it."""
        with self._lock:
            if track.seen >= self._seq:
                return self._yuv, False
            track.seen = self._seq
            if self._seq > self._taken:
                self._taken = self._seq
                self.frames_sent += 1
                self._sent_at.append(time.monotonic())
            return self._yuv, True

    def fps(self, window: float = MEDIA["fpsWindowS"]) -> float:
        """New frames handed to an encoder per second, over the last ``window`` seconds (repeats not counted)."""
        now = time.monotonic()
        with self._lock:
            return sum(1 for t in self._sent_at if now - t <= window) / window

    def counters(self) -> dict[str, Any]:
        return {
            "frames_sent": self.frames_sent,
            "frames_dropped": self.frames_dropped,
            "fps": round(self.fps(), 1),
            "frame_width": self.width,
            "frame_height": self.height,
        }

    # --- engine thread ---------------------------------------------------------------------------
    def play(self, track: MediaStreamTrack) -> None:
        """Send ``track``'s frames (newest-frame, like ``send``) until ``stop()`` or another ``play()``."""
        if track.kind != "video":
            raise ValueError(f"VideoOutput.play() needs a video track, not {track.kind}")

        async def deliver(frame: av.VideoFrame) -> None:
            self._publish(to_yuv420p(frame))

        self._pump.start(track, deliver)

    def stop(self) -> None:
        self._pump.stop()

    def close(self) -> None:
        self._pump.stop()
        with self._lock:
            tracks, self._tracks = list(self._tracks), []
        for track in tracks:
            track.stop()


class _VideoTrack(_SourceTrack):
    kind = "video"

    def __init__(self, source: VideoSource) -> None:
        super().__init__()
        self.source = source
        self.seen = 0
        self._last: float | None = None
        self._pts = -1

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = self._loop = asyncio.get_running_loop()
        if self._last is not None:
            gap = self._last + 1 / max(1, self.source.max_fps) - loop.time()
            if gap > 0:
                await asyncio.sleep(gap)
        deadline = (self._last if self._last is not None else loop.time()) + IDLE_REPEAT_S
        while True:
            self._wake.clear()
            yuv, new = self.source._take(self)
            if self.readyState != "live":
                raise MediaStreamError
            remaining = deadline - loop.time()
            if new or self._last is None or remaining <= 0:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)
        now = loop.time()
        if self._t0 is None:
            self._t0 = now
        frame = av.VideoFrame.from_ndarray(yuv if yuv is not None else self.source._placeholder, format="yuv420p")
        self._pts = max(self._pts + 1, int((now - self._t0) * VIDEO_CLOCK))
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._last = now
        return frame


class AudioSource:
    """A bounded FIFO of 48 kHz int16 samples to play in order; tracks take 20 ms frames of it in real time."""

    kind = "audio"

    def __init__(self, channels: int = 1, buffer_seconds: float = 10.0) -> None:
        if channels not in (1, 2):
            raise ValueError("channels must be 1 (mono) or 2 (stereo)")
        self.channels = channels
        self.layout = "mono" if channels == 1 else "stereo"
        self.capacity = max(AUDIO_FRAME, int(buffer_seconds * AUDIO_RATE))
        self.samples_sent = 0
        self.samples_dropped = 0
        self._queued = 0
        self._chunks: collections.deque[np.ndarray] = collections.deque()
        self._cond = threading.Condition()
        self._resampler: av.AudioResampler | None = None
        self._resampler_rate = 0
        self._closed = False
        self._pump = _Pump()

    @property
    def queued_seconds(self) -> float:
        return self._queued / AUDIO_RATE

    # --- any thread ------------------------------------------------------------------------------
    def send(
        self, samples: Any, sample_rate: int = AUDIO_RATE, block: bool = False, timeout: float | None = None
    ) -> int:
        """Queue ``samples`` to play after what is queued; returns how many (at 48 kHz) were queued."""
        arr = np.asarray(samples)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[1] not in (1, 2):
            raise ValueError(f"send() takes (n,) or (n, channels) samples with 1 or 2 channels, not {arr.shape}")
        if not 8000 <= int(sample_rate) <= 192000:
            raise ValueError("sample_rate must be between 8000 and 192000")
        if arr.dtype == np.int16:
            pcm = arr.astype(np.float32) / 32768
        elif np.issubdtype(arr.dtype, np.floating):
            pcm = np.clip(arr.astype(np.float32), -1.0, 1.0)
        else:
            raise TypeError(f"send() takes float samples in [-1, 1] or int16, not {arr.dtype}")
        if pcm.shape[1] != self.channels:
            pcm = pcm.mean(axis=1, keepdims=True) if self.channels == 1 else np.repeat(pcm, 2, axis=1)
        with self._cond:  # one resampler per stream, so consecutive sends join without a click
            if int(sample_rate) != AUDIO_RATE:
                pcm = self._resample(pcm, int(sample_rate))
            elif self._resampler is not None:
                pcm = np.concatenate([self._flush_resampler(), pcm])
        return self._put((pcm * 32767).round().astype(np.int16), block, timeout)

    def _resample(self, pcm: np.ndarray, rate: int) -> np.ndarray:
        head = np.zeros((0, self.channels), np.float32)
        if self._resampler is not None and self._resampler_rate != rate:
            head = self._flush_resampler()
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout=self.layout, rate=AUDIO_RATE)
            self._resampler_rate = rate
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm).reshape(1, -1), format="flt", layout=self.layout)
        frame.sample_rate = rate
        return np.concatenate(
            [head, *(o.to_ndarray().reshape(-1, self.channels) for o in self._resampler.resample(frame))]
        )

    def _flush_resampler(self) -> np.ndarray:
        """The resampler's last few samples (its filter delay, ~1 ms); it is done with that stream."""
        resampler, self._resampler = self._resampler, None
        if resampler is None:
            return np.zeros((0, self.channels), np.float32)
        outs = [o.to_ndarray().reshape(-1, self.channels) for o in resampler.resample(None)]
        return np.concatenate([np.zeros((0, self.channels), np.float32), *outs])

    def _put(self, pcm: np.ndarray, block: bool, timeout: float | None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        queued = 0
        with self._cond:
            while len(pcm):
                room = self.capacity - self._queued
                if room <= 0 and block and not self._closed:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    self._cond.wait(left)
                    continue
                if room <= 0:
                    break
                part, pcm = pcm[:room], pcm[room:]
                self._chunks.append(part)
                self._queued += len(part)
                queued += len(part)
            self.samples_dropped += len(pcm)
        return queued

    def clear(self) -> None:
        """Drop everything queued (not counted as dropped: it was withdrawn)."""
        with self._cond:
            self._chunks.clear()
            self._queued = 0
            self._resampler = None
            self._cond.notify_all()

    def track(self) -> MediaStreamTrack:
        """A new aiortc track playing this source in real time. One track at a time: two would split the samples."""
        return _AudioTrack(self)

    def counters(self) -> dict[str, Any]:
        return {
            "samples_sent": self.samples_sent,
            "samples_dropped": self.samples_dropped,
            "queued_seconds": round(self.queued_seconds, 3),
        }

    # --- engine thread ---------------------------------------------------------------------------
    def _take(self, n: int) -> np.ndarray:
        """The next ``n`` samples, silence where the queue ran dry."""
        out = np.zeros((n, self.channels), np.int16)
        with self._cond:
            if self._queued < n and self._resampler is not None:  # the producer paused: play its tail now
                tail = self._flush_resampler()
                if len(tail):
                    self._chunks.append((tail * 32767).round().astype(np.int16))
                    self._queued += len(tail)
            got = 0
            while got < n and self._chunks:
                chunk = self._chunks[0]
                k = min(n - got, len(chunk))
                out[got : got + k] = chunk[:k]
                if k == len(chunk):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = chunk[k:]
                got += k
            self._queued -= got
            self.samples_sent += got
            self._cond.notify_all()
        return out

    def play(self, track: MediaStreamTrack) -> None:
        """Queue ``track``'s audio as it arrives (never dropped: it waits for room) until ``stop()``."""
        if track.kind != "audio":
            raise ValueError(f"AudioOutput.play() needs an audio track, not {track.kind}")
        resampler = av.AudioResampler(format="s16", layout=self.layout, rate=AUDIO_RATE)

        async def deliver(frame: av.AudioFrame) -> None:
            frame.pts = None  # RTP timestamps jump on loss; the resampler only needs the samples in order
            for out in resampler.resample(frame):
                # the track drains the queue in 20 ms steps: polling at that pace costs nothing
                while self.queued_seconds > PLAY_AHEAD_S and not self._closed:  # noqa: ASYNC110
                    await asyncio.sleep(AUDIO_FRAME / AUDIO_RATE)
                self._put(out.to_ndarray().reshape(-1, self.channels), False, None)

        self._pump.start(track, deliver)

    def stop(self) -> None:
        self._pump.stop()
        self.clear()

    def close(self) -> None:
        self._pump.stop()
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class _AudioTrack(_SourceTrack):
    kind = "audio"

    def __init__(self, source: AudioSource) -> None:
        super().__init__()
        self.source = source
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = self._loop = asyncio.get_running_loop()
        if self._t0 is None:
            self._t0 = loop.time()
        wait = self._t0 + self._pts / AUDIO_RATE - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        elif wait < -AUDIO_MAX_LAG_S:  # the loop was blocked: skip ahead (the browser hears a gap, not a burst)
            self._pts += int(-wait * AUDIO_RATE) // AUDIO_FRAME * AUDIO_FRAME
        if self.readyState != "live":
            raise MediaStreamError
        pcm = self.source._take(AUDIO_FRAME)
        if pcm.shape[1] == 1:  # aiortc's Opus encoder would upmix mono to stereo at -3 dB: duplicate it ourselves
            pcm = np.repeat(pcm, 2, axis=1)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._pts += AUDIO_FRAME
        return frame


class TrackSender:
    """The kernel's sending end of one media kind of a peer: a fresh track of ``source`` on each session."""

    def __init__(self, source: VideoSource | AudioSource) -> None:
        self.kind = source.kind
        self.source = source
        self.on_open_change: Any = lambda: None
        self._track: MediaStreamTrack | None = None
        self.sessions = 0

    @property
    def is_open(self) -> bool:
        return self._track is not None

    def attach(self, pc: RTCPeerConnection) -> None:
        """Send on the transceiver the browser's offer created (call after setRemoteDescription, before the answer)."""
        self.unbind()
        track = self.source.track()
        sender = pc.addTrack(track)
        transceiver = next(t for t in pc.getTransceivers() if t.sender is sender)
        if transceiver.mid is None:  # addTrack found no offered transceiver and made one the answer cannot carry
            track.stop()
            raise ProtocolError(
                "bad-sdp",
                f"the browser's offer has no {self.kind} section to receive the kernel's {self.kind}: the page's "
                "widget code may be older than the kernel's; reload the page after upgrading rtc_widgets",
            )
        self._track = track
        self.sessions += 1

    def unbind(self) -> None:
        track, self._track = self._track, None
        if track is not None:
            track.stop()

    def counters(self) -> dict[str, Any]:
        return self.source.counters()

    def close(self) -> None:
        self.unbind()
        self.source.close()


def offered_to_receive(sdp: str, kind: str) -> bool:
    """True when the browser's offer has a ``kind`` section it can receive on (recvonly or sendrecv)."""
    from .sdp import parse_sdp

    return any(
        m["kind"] == kind and m["direction"] in ("recvonly", "sendrecv") and m["port"] != 0
        for m in parse_sdp(sdp)["media"]
    )


__all__ = [
    "AUDIO_RATE",
    "IDLE_REPEAT_S",
    "AudioSource",
    "TrackSender",
    "VideoSource",
    "offered_to_receive",
    "to_yuv420p",
]
