"""The kernel end of one received media track. Like a data channel, it outlives reconnects: each session rebinds it.

A :class:`TrackReceiver` reads the aiortc track through a :class:`~aiortc.contrib.media.MediaRelay`, so that our
sink and anything the user builds with aiortc (``MediaRecorder``, ``MediaRelay``, their own processing) each get
every frame without stealing frames from one another. Its pump only hands frames over (cheap, on the engine
loop); conversion and user code happen on worker threads (see :mod:`rtc_widgets.media`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError

from .media import AudioSink, VideoSink

log = logging.getLogger("rtc_widgets")

FrameTap = Callable[[Any], None]


def with_start_bitrate(sdp: str, kbps: int) -> str:
    """The kernel's answer, telling Chromium to start sending video at ``kbps`` (``x-google-start-bitrate``).

    Chromium starts near 300 kbps and follows aiortc's REMB estimate up slowly: measured, a 640x480 camera arrived
    as 480x360 for 45 s, 1280x720 as 640x360 for 53 s. With this hint it arrives at full size at once. It is only a
    start: the bandwidth estimate still lowers the rate on a slower link. Other browsers ignore the parameter."""
    if kbps <= 0:
        return sdp
    lines = sdp.split("\r\n")
    out: list[str] = []
    in_video = False
    fmtp = {ln.split()[0][7:] for ln in lines if ln.startswith("a=fmtp:")}
    for line in lines:
        if line.startswith("m="):
            in_video = line.startswith("m=video ")
        if in_video and line.startswith("a=fmtp:") and "apt=" not in line:  # not the retransmission payloads
            line += f";x-google-start-bitrate={kbps}"
        out.append(line)
        if in_video and line.startswith("a=rtpmap:") and "/90000" in line and " rtx/" not in line:
            pt = line.split()[0][9:]
            if pt not in fmtp:
                out.append(f"a=fmtp:{pt} x-google-start-bitrate={kbps}")
    return "\r\n".join(out)


class SessionTrack(MediaStreamTrack):
    """One session's source track, which :meth:`end` ends even while a ``recv()`` is pending.

    aiortc's remote track never ends a pending ``recv()`` when its connection closes before media flowed (a switch to
    the relay does exactly that), so MediaRelay's reader task stayed pending with nothing holding it, and the
    garbage collector destroyed it mid-await ("Task was destroyed but it is pending!" printed into a cell). Ending
    this wrapper ends the reader cleanly, and every subscriber (``cam.track`` users) gets end-of-stream."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source
        self._ended = asyncio.Event()

    async def recv(self) -> Any:
        if self._ended.is_set():
            raise MediaStreamError
        get = asyncio.ensure_future(self._source.recv())
        end = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait((get, end), return_when=asyncio.FIRST_COMPLETED)
        finally:
            end.cancel()
        if not get.done():
            get.cancel()
            raise MediaStreamError
        return get.result()  # a frame, or the source's own MediaStreamError

    def end(self) -> None:
        self._ended.set()
        self.stop()


class TrackReceiver:
    """Receives the browser's ``kind`` track ("video" or "audio") into ``sink``."""

    def __init__(self, kind: str, sink: VideoSink | AudioSink, start_bitrate_kbps: int = 0) -> None:
        if kind not in ("video", "audio"):
            raise ValueError(f"kind must be 'video' or 'audio', not {kind!r}")
        self.kind = kind
        self.sink = sink
        self.start_bitrate_kbps = start_bitrate_kbps  # asked of the sender in the answer (video)
        self.on_open_change: Callable[[], None] = lambda: None
        self._source: SessionTrack | None = None
        self._relay: MediaRelay | None = None
        self._proxy: MediaStreamTrack | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._taps: list[FrameTap] = []
        self._got_frame = False
        self.sessions = 0

    # --- engine thread -------------------------------------------------------------------------
    @property
    def bound(self) -> bool:
        return self._source is not None

    @property
    def is_open(self) -> bool:
        """True once the current session delivered a frame: media really flows."""
        return self._got_frame

    def bind(self, track: MediaStreamTrack) -> None:
        self.unbind()
        self.sessions += 1
        self._source = SessionTrack(track)
        self._relay = MediaRelay()
        self._proxy = self._relay.subscribe(self._source, buffered=True)
        if isinstance(self.sink, AudioSink):
            self.sink.reset()
        self._pump_task = asyncio.ensure_future(self._pump(self._proxy))

    async def _pump(self, proxy: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await proxy.recv()
            except MediaStreamError:
                break
            self.sink.publish(frame)  # type: ignore[arg-type]  # a video track yields VideoFrames, audio AudioFrames
            for tap in list(self._taps):
                try:
                    tap(frame)
                except Exception:
                    log.exception("rtc_widgets: a %s frame tap failed", self.kind)
            if not self._got_frame:
                self._got_frame = True
                self.on_open_change()
        if self._got_frame:
            self._got_frame = False
            self.on_open_change()

    def subscribe(self, buffered: bool = True) -> MediaStreamTrack:
        """A new aiortc track carrying the received frames (a MediaRelay proxy). Call on the engine loop."""
        if self._relay is None or self._source is None:
            raise ConnectionError(f"no {self.kind} track yet: await wait_connected() first")
        return self._relay.subscribe(self._source, buffered=buffered)

    def add_tap(self, tap: FrameTap) -> None:
        """Call ``tap(frame)`` on the engine for every raw frame (must be quick: e.g. a bounded queue put)."""
        self._taps.append(tap)

    def remove_tap(self, tap: FrameTap) -> None:
        with contextlib.suppress(ValueError):
            self._taps.remove(tap)

    def unbind(self) -> None:
        task, self._pump_task = self._pump_task, None
        if task is not None:
            task.cancel()
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            proxy.stop()
        if self._source is not None:
            self._source.end()  # MediaRelay's reader ends, its subscribers get end-of-stream
        self._source = None
        self._relay = None
        self._got_frame = False

    def counters(self) -> dict[str, Any]:
        return self.sink.counters()

    def queue_lag(self) -> float:
        return self.sink.queue_lag()

    def close(self) -> None:
        self.unbind()
        self._taps.clear()
        self.sink.close()


__all__ = ["TrackReceiver", "with_start_bitrate"]
