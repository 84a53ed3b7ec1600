"""Media the kernel sends to the browser: pushable sources, and the sender that gives each session a track of one.

A source outlives sessions (like a sink): user code pushes into it from any thread, and every session (or, later,
another transport) reads it through a fresh track of its own, on the engine loop. Video and audio want opposite
things when the producer outruns the network, so each has its own module:

- :mod:`rtc_widgets.videosource`: :class:`VideoSource` keeps only the newest frame (latency over completeness) and
  repeats it when idle, so a still picture stays decodable.
- :mod:`rtc_widgets.audiosource`: :class:`AudioSource` is a bounded FIFO played in real time (every sample in order,
  silence in the gaps).
- :mod:`rtc_widgets.sourcetrack`: what they share, the per-session track and the pump behind ``play(track)``.

:class:`TrackSender` is what :class:`~rtc_widgets.peer.KernelPeer` sees: it adds a fresh track of its source to each
session's connection, reusing the transceiver of the browser's recvonly offer. The names of the modules above are
re-exported here, so ``from rtc_widgets.sources import ...`` keeps working.
"""

from __future__ import annotations

from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection

from .audiosource import AUDIO_FRAME, AUDIO_MAX_LAG_S, AUDIO_RATE, PLAY_AHEAD_S, AudioSource
from .protocol import ProtocolError
from .videosource import DEFAULT_MAX_FPS, IDLE_REPEAT_S, PLACEHOLDER_SIZE, VIDEO_CLOCK, VideoSource, to_yuv420p


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
    "AUDIO_FRAME",
    "AUDIO_MAX_LAG_S",
    "AUDIO_RATE",
    "DEFAULT_MAX_FPS",
    "IDLE_REPEAT_S",
    "PLACEHOLDER_SIZE",
    "PLAY_AHEAD_S",
    "VIDEO_CLOCK",
    "AudioSource",
    "TrackSender",
    "VideoSource",
    "offered_to_receive",
    "to_yuv420p",
]
