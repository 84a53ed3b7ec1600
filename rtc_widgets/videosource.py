"""Video the kernel sends: :class:`VideoSource` keeps only the newest frame, because a late frame is worth nothing.

``send(img)`` converts the image to YUV 4:2:0 on the caller's thread (the engine never waits for a conversion); a
frame replaced before any track took it is counted in ``frames_dropped``, so a producer faster than the encoder never
builds up delay. A track hands the encoder a new frame at most ``max_fps`` times per second, and **repeats the last
frame every** ``IDLE_REPEAT_S`` **when none arrives** (a black placeholder before the first one). Why repeat: aiortc
timestamps frames by their ``pts`` and sends nothing between them, so without repeats a still picture is one frame,
then silence; the browser's decoder, its stats and a late-joining view only recover at the next frame, and a lost
packet is only repaired at the next keyframe. Two frames a second keep all of that alive for a few kbit/s.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fractions
import threading
import time
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from .media import MEDIA, reformatter
from .sourcetrack import _Pump, _SourceTrack

VIDEO_CLOCK = 90000
#: Seconds after which a video track repeats its last frame when no new one arrived (see the module docstring).
IDLE_REPEAT_S = 0.5
#: Shown (at the idle rate) until the first frame is sent.
PLACEHOLDER_SIZE = (320, 240)
DEFAULT_MAX_FPS = 30


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


__all__ = ["DEFAULT_MAX_FPS", "IDLE_REPEAT_S", "PLACEHOLDER_SIZE", "VIDEO_CLOCK", "VideoSource", "to_yuv420p"]
