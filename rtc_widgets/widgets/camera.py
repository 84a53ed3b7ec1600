"""Camera and Screen: the browser's camera (getUserMedia) or screen (getDisplayMedia) as numpy frames in the kernel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar

import av
import numpy as np
import traitlets as t
from aiortc import MediaStreamTrack

from ..engine import get_engine
from ..media import MEDIA, VideoCallback, VideoSink
from ..protocol import LIMITS, RELAY
from ..recording import VideoFileRecorder
from ..tracks import TrackReceiver
from ._base import PeerWidget


def _run_on_engine(fn: Callable[[], Any]) -> Any:
    engine = get_engine()
    if engine.in_engine():
        return fn()

    async def call() -> Any:
        return fn()

    return engine.run_sync(call(), 10)


class VideoWidget(PeerWidget):
    """What Camera and Screen share: one video track from the browser, delivered newest-frame-first."""

    width = t.Int(help="Requested frame width in pixels (a preference: the browser may deliver another size).").tag(
        sync=True
    )
    height = t.Int(help="Requested frame height in pixels.").tag(sync=True)
    frame_rate = t.Int(help="Requested frames per second (the constructor also takes it as ``fps=``).").tag(sync=True)
    start_bitrate = t.Int(
        MEDIA["videoStartBitrateKbps"],
        help="kbit/s the browser starts sending at (Chromium; 0 = its own ~300). Without it Chromium sends a smaller "
        "picture for about a minute while its estimate grows. Fixed when the widget is created.",
    )

    relay_codec = t.Enum(
        ["auto", *RELAY["videoCodecs"]],
        "auto",
        help='How video is encoded on the relay transport: "auto" (H.264, else VP8, else JPEG: what the browser '
        'can encode), or one of "h264", "vp8", "jpeg".',
    ).tag(sync=True)

    frames_received = t.Int(0, read_only=True, help="Frames the kernel received and decoded.").tag(sync=True)
    frames_dropped = t.Int(
        0,
        read_only=True,
        help="Frames a consumer (on_frame, stream) never saw because it was busy when a newer frame arrived.",
    ).tag(sync=True)
    fps = t.Float(0.0, read_only=True, help="Frames per second received over the last second (measured).").tag(
        sync=True
    )
    frame_width = t.Int(0, read_only=True, help="Width of the newest received frame.").tag(sync=True)
    frame_height = t.Int(0, read_only=True, help="Height of the newest received frame.").tag(sync=True)

    _preset: ClassVar[dict[str, Any]] = {}

    def __init__(self, *, fps: int | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("width", self._preset["width"])
        kwargs.setdefault("height", self._preset["height"])
        kwargs.setdefault("frame_rate", fps if fps is not None else self._preset["fps"])
        for name in ("width", "height"):
            if not 1 <= int(kwargs[name]) <= LIMITS["maxVideoSide"]:
                raise ValueError(f"{name} must be between 1 and {LIMITS['maxVideoSide']} pixels")
        if not 1 <= int(kwargs["frame_rate"]) <= LIMITS["maxFps"]:
            raise ValueError(f"fps must be between 1 and {LIMITS['maxFps']}")
        super().__init__(**kwargs)

    def _make_receivers(self) -> list[TrackReceiver]:
        self._sink = VideoSink(f"{self._kind}-frames")
        self._receiver = TrackReceiver("video", self._sink, self.start_bitrate)
        return [self._receiver]

    async def snapshot(self, timeout: float = MEDIA["firstFrameTimeoutS"]) -> np.ndarray:
        """The newest frame as an ``(H, W, 3)`` uint8 RGB array (read-only: ``.copy()`` to draw on it).

        Waits up to ``timeout`` s for a first frame."""
        return await asyncio.to_thread(self._sink.latest, timeout)

    def snapshot_blocking(self, timeout: float = MEDIA["firstFrameTimeoutS"]) -> np.ndarray:
        """:meth:`snapshot` for plain scripts."""
        return self._sink.latest(timeout)

    def on_frame(self, fn: VideoCallback) -> VideoCallback:
        """Decorator: call ``fn(img)`` on a worker thread with each newest frame (``(H, W, 3)`` uint8 RGB).

        When ``fn`` is slower than the camera, frames that arrive meanwhile are replaced by newer ones and counted
        in ``frames_dropped``: the delay never grows."""
        self._sink.add_callback(fn)
        return fn

    def remove_on_frame(self, fn: VideoCallback) -> None:
        """Stop calling ``fn``."""
        self._sink.remove_callback(fn)

    def stream(self) -> AsyncIterator[np.ndarray]:
        """``async for img in cam.stream()``: the newest frame each time one arrives (skips what you were too
        slow for)."""
        return self._sink.stream()

    @property
    def frame(self) -> av.VideoFrame | None:
        """The newest raw ``av.VideoFrame`` as aiortc decoded it (None before the first frame)."""
        return self._sink.latest_frame()

    @property
    def track(self) -> MediaStreamTrack:
        """A new aiortc ``MediaStreamTrack`` carrying the received video (a ``MediaRelay`` subscription).

        Each access gives an independent track that gets every frame, for aiortc's own tools; they run on the
        engine loop: ``rec = MediaRecorder("x.mp4"); rec.addTrack(cam.track); await get_engine().run(rec.start())``.
        """
        return _run_on_engine(self._receiver.subscribe)

    async def record_to(self, path: str | Path, seconds: float, timeout: float | None = None) -> Path:
        """Record the next ``seconds`` of video to ``path`` (.mp4/.mkv/.mov: H.264; .webm: VP8); returns the path.

        Encoding runs on a worker thread; frames the encoder could not keep up with are skipped, not queued."""
        recorder = VideoFileRecorder(path, seconds, self.frame_rate)
        engine = get_engine()
        engine.call_soon(self._receiver.add_tap, recorder.tap)
        try:
            limit = timeout if timeout is not None else seconds + MEDIA["firstFrameTimeoutS"] + 5
            return await asyncio.to_thread(recorder.wait, limit)
        finally:
            engine.call_soon(self._receiver.remove_tap, recorder.tap)

    @property
    def sink(self) -> VideoSink:
        """The kernel-side frame sink (advanced use)."""
        return self._sink


class Camera(VideoWidget):
    """The browser's camera as numpy frames in the kernel; the view shows a live preview, a device picker,
    start/stop and a state badge.

    ::

        cam = Camera(width=640, height=480, fps=30)  # also facing_mode="environment", device_id=...
        cam
        img = await cam.snapshot()                   # (H, W, 3) uint8 RGB, the newest frame

        @cam.on_frame
        def detect(img): ...                         # worker thread; only the newest frame when slow
    """

    _kind = t.Unicode("camera").tag(sync=True)
    _preset = MEDIA["camera"]

    facing_mode = t.Unicode(
        MEDIA["camera"]["facingMode"],
        help='"user" (front camera; the preview is mirrored), "environment" (back camera) or "" for any.',
    ).tag(sync=True)
    device_id = t.Unicode(
        "", help="A camera's deviceId (see the device picker); '' lets the browser choose. Changing it restarts."
    ).tag(sync=True)


class Screen(VideoWidget):
    """A screen, window or tab the user shares (getDisplayMedia) as numpy frames; same API as :class:`Camera`.

    The browser asks the user what to share when the connection starts."""

    _kind = t.Unicode("screen").tag(sync=True)
    _preset = MEDIA["screen"]


__all__ = ["Camera", "Screen", "VideoWidget"]
