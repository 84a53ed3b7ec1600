"""Kernel -> browser media over the relay transport: what VideoOutput and AudioOutput send when WebRTC has no path.

One :class:`RelaySender` per output kind and session. It reads a fresh track of the widget's source (the same paced
aiortc track WebRTC would send), encodes every frame with PyAV on its own worker thread (:class:`RelayEncoder`:
H.264, VP8 or JPEG; Opus or PCM), and sends ``media`` messages with the bytes attached. The browser acknowledges
video frames (``ack``); with more than ``videoWindow`` frames unacknowledged, or the bus socket holding more than
``maxBufferedBytes``, new video frames are skipped before encoding and counted, so a slow page or link never builds
up delay. Audio is never skipped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from ..protocol import RELAY, VERSION
from .relaycodecs import RelayEncoder

log = logging.getLogger("rtc_widgets")

Send = Callable[[dict[str, Any], bytes], None]


def default_codec(kind: str, asked: str = "auto") -> str:
    """The codec for ``kind``: ``asked`` when it is one of that kind's relay codecs, else the first of them."""
    codecs: list[str] = RELAY["videoCodecs"] if kind == "video" else RELAY["audioCodecs"]
    return asked if asked in codecs else codecs[0]


class RelaySender:
    """Pumps one kernel track to the browser as relayed ``media`` messages (run :meth:`run` on the engine)."""

    def __init__(
        self, session: str, track: MediaStreamTrack, codec: str, send: Send, buffered: Callable[[], int]
    ) -> None:
        self.kind = str(track.kind)
        self.session = session
        self.codec = default_codec(self.kind, codec)
        self._track = track
        self._send = send
        self._buffered = buffered
        self._encoder = RelayEncoder(self.kind, self.codec)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"rtc-widgets-relay-send-{self.kind}")
        self._seq = 0
        self._acked = -1
        self._key = True
        self.frames_sent = 0
        self.frames_skipped = 0
        self.bytes_sent = 0

    def ack(self, seq: int, key: bool) -> None:
        """The browser has frame ``seq`` (acks are cumulative); ``key``: it needs a key frame to go on."""
        self._acked = max(self._acked, seq)
        if key:
            self._key = True

    def _must_skip(self) -> bool:
        if self.kind != "video":
            return False  # audio is never dropped
        return self._seq - 1 - self._acked >= RELAY["videoWindow"] or self._buffered() > RELAY["maxBufferedBytes"]

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    frame = await self._track.recv()
                except MediaStreamError:
                    return
                if self._must_skip():
                    self.frames_skipped += 1
                    continue
                key, self._key = self._key, False
                items = await loop.run_in_executor(self._pool, self._encoder.encode, frame, key)  # type: ignore[arg-type]
                for fields, payload in items:
                    msg = {"v": VERSION, "type": "media", "session": self.session, "seq": self._seq, **fields}
                    msg["size"] = len(payload)
                    self._seq += 1
                    self._send(msg, payload)
                    self.frames_sent += 1
                    self.bytes_sent += len(payload)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("rtc_widgets: relaying the kernel's %s to the browser failed", self.kind)
        finally:
            self._track.stop()
            self._pool.shutdown(wait=False, cancel_futures=True)

    def counters(self) -> dict[str, int]:
        return {"frames_sent": self.frames_sent, "frames_skipped": self.frames_skipped, "bytes_sent": self.bytes_sent}


async def stop_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["RelaySender", "default_codec", "stop_all"]
