"""What the kernel's video and audio sources share: the track a session reads, and the pump behind ``play()``.

A source outlives sessions, so it never hands out one track of its own: each session reads a fresh
:class:`_SourceTrack` on the engine loop, and user code pushing from another thread wakes it; stopping it wakes it too,
so a track waiting for data ends as soon as its session does. ``play(track)`` feeds a source from any aiortc
``MediaStreamTrack`` (an echo of ``cam.track``, a ``MediaPlayer``): :class:`_Pump` reads it and takes it over,
stopping it when replaced or stopped, because a ``MediaRelay`` proxy nobody reads any more would queue frames for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

log = logging.getLogger("rtc_widgets")


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
