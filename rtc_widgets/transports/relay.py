"""The relay transport: data messages through the Jupyter server when WebRTC cannot connect.

Binder pods accept no UDP, strict firewalls drop it, and without a TURN server ICE then finds no path
(ARCHITECTURE.md, decision 5). After ``relay_after`` seconds without a connection, or at once when ICE fails, the
kernel ends the WebRTC attempt, tells the browser ``relay`` (with the reason) and both ends carry the user data
channel's messages as protocol ``data`` messages over the signaling path: the server bus, or the comm without one.
Kernel code keeps the same :class:`~rtc_widgets.channel.Channel` (``send``, ``on_message``, ``messages``); the
widget's ``transport`` says ``"relay"`` and ``error`` says why. The path is reliable and ordered, so every
message carries a sequence number and a gap is reported, never papered over.

Media takes the same road (:mod:`rtc_widgets.transports.relaymedia`): the browser encodes its capture with WebCodecs
(VP8/H.264, JPEG where WebCodecs is missing; Opus, or PCM from an AudioWorklet) and sends ``media`` messages whose
bytes ride beside the JSON; a :class:`~rtc_widgets.transports.relaymedia.RelayTrack` decodes them with PyAV into the
same aiortc frames a WebRTC track yields, bound to the same :class:`~rtc_widgets.tracks.TrackReceiver` -- so
``snapshot``, ``on_frame``, ``record``, ``record_to`` and ``cam.track`` work unchanged. The kernel acknowledges
every video frame; the browser keeps few frames unacknowledged and drops video (never audio) beyond that.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection
from pyee.asyncio import AsyncIOEventEmitter

from ..peer import KernelPeer
from ..protocol import BUS, VERSION, ProtocolError
from .relaysend import RelaySender, stop_all

if TYPE_CHECKING:
    from .relaymedia import RelayTrack

log = logging.getLogger("rtc_widgets")

RELAY_MAX_MESSAGE_BYTES: int = BUS["relayMaxMessageBytes"]
RELAY_AFTER_S: float = BUS["relayAfterS"]


def data_message(session: str, label: str, seq: int, payload: str | bytes) -> dict[str, Any]:
    msg: dict[str, Any] = {"v": VERSION, "type": "data", "session": session, "label": label, "seq": seq}
    if isinstance(payload, str):
        msg["text"] = payload
    else:
        msg["b64"] = base64.b64encode(payload).decode("ascii")
    return msg


def ack_message(session: str, track: str, seq: int, key: bool) -> dict[str, Any]:
    msg: dict[str, Any] = {"v": VERSION, "type": "ack", "session": session, "track": track, "seq": seq}
    if key:
        msg["key"] = True
    return msg


def relay_message(session: str, reason: str) -> dict[str, Any]:
    return {"v": VERSION, "type": "relay", "session": session, "reason": reason[:1000]}


class RelayDataChannel(AsyncIOEventEmitter):
    """Looks like an aiortc RTCDataChannel to :class:`~rtc_widgets.channel.Channel`; travels as ``data`` messages."""

    def __init__(self, label: str, session: str, send_signal: Callable[[dict[str, Any]], None]) -> None:
        super().__init__()
        self.label = label
        self.session = session
        self.readyState = "open"
        self.bufferedAmount = 0
        self._send_signal = send_signal
        self._sent = 0
        self._expected = 0

    def send(self, data: str | bytes) -> None:
        if self.readyState != "open":
            raise ConnectionError(f"relay channel '{self.label}' is closed")
        size = len(data.encode()) if isinstance(data, str) else len(data)
        if size > RELAY_MAX_MESSAGE_BYTES:
            raise ValueError(f"message of {size} bytes exceeds the relay's {RELAY_MAX_MESSAGE_BYTES}-byte maximum")
        self._send_signal(data_message(self.session, self.label, self._sent, data))
        self._sent += 1

    def receive(self, msg: dict[str, Any]) -> None:
        seq = msg["seq"]
        if seq != self._expected:
            raise ProtocolError(
                "out-of-order",
                f"relay message {seq} on '{self.label}' arrived where {self._expected} was due; "
                "messages were lost on the way (the page may have reloaded)",
            )
        self._expected = seq + 1
        if "text" in msg:
            self.emit("message", msg["text"])
            return
        try:
            payload = base64.b64decode(msg["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("bad-message", "relay message with invalid base64") from None
        self.emit("message", payload)

    def close(self) -> None:
        if self.readyState == "open":
            self.readyState = "closed"
            self.emit("close")


class RelayControl(AsyncIOEventEmitter):
    """The control channel over the relay: ``ch.ping()`` sends protocol ``ping`` on the signaling path; the browser
    answers ``pong`` there, which KernelPeer hands to the Control as it does for every signaling pong."""

    def __init__(self, send_signal: Callable[[dict[str, Any]], None]) -> None:
        super().__init__()
        self.readyState = "open"
        self._send_signal = send_signal

    def send(self, text: str) -> None:
        self._send_signal(json.loads(text))

    def close(self) -> None:
        self.readyState = "closed"


class RelayingPeer(KernelPeer):
    """A KernelPeer that falls back to the relay transport for its data channels and received media.

    ``relay_after`` (a callable, read per session) gives the seconds to wait for WebRTC; ``None`` never relays,
    ``0`` relays at once (forced).
    """

    relay_after: Callable[[], float | None] = staticmethod(lambda: RELAY_AFTER_S)
    #: the codec output widgets send with ("auto" or a relay codec); the widget binds its trait here
    relay_codec: Callable[[], str] = staticmethod(lambda: "auto")
    #: bytes waiting in the signaling socket (the bus's; 0 on the comm): relayed video backs off above a limit
    relay_buffered: Callable[[], int] = staticmethod(lambda: 0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._relay: dict[str, RelayDataChannel] = {}
        self._relay_tracks: dict[str, RelayTrack] = {}
        self._relay_senders: dict[str, RelaySender] = {}
        self._relay_send_tasks: list[asyncio.Task[None]] = []
        self._relay_starting = False
        self._last_seq: dict[str, int] = {}
        self._relay_rx = 0  # bytes of media and data that came through the relay (stats: bitrate_in_kbps)
        self._relay_tx = 0

    @property
    def relaying(self) -> bool:
        return bool(self._relay or self._relay_tracks or self._relay_senders)

    def relay_stats(self) -> dict[str, float]:
        """For the stats sampler: bytes through the relay so far, and the median capture-to-kernel latency (ms) of
        the media frames decoded since the last call (absent when none)."""
        out: dict[str, float] = {"tx_bytes": self._relay_tx, "rx_bytes": self._relay_rx}
        samples: list[float] = []
        for track in self._relay_tracks.values():
            samples += track.latency_ms
            track.latency_ms.clear()
        if samples:
            samples.sort()
            out["latency_ms"] = samples[len(samples) // 2]
        return out

    def _counted_send(self, msg: dict[str, Any]) -> None:
        self._relay_tx += len(msg.get("text", "")) + len(msg.get("b64", "")) * 3 // 4
        self._send_signal(msg)

    def _relay_wanted(self, msg: dict[str, Any]) -> bool:
        return self.pc is not None and msg.get("session") == self.session and self._can_relay()

    def _can_relay(self) -> bool:
        return self.relay_after() is not None and bool(self.channels or self.receivers or self.senders)

    # --- KernelPeer hooks ------------------------------------------------------------------------
    async def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "data":
            self._on_relay_data(msg)
        elif kind == "relay":
            raise ProtocolError("out-of-order", "only the kernel starts the relay")
        elif kind == "candidate" and (self.relaying or self._relay_starting) and msg.get("session") == self.session:
            return  # WebRTC is over for this session
        elif kind == "error" and msg["code"] == "ice-failed" and self._relay_wanted(msg):
            await self._start_relay(str(self.session), f"ICE failed in the browser ({msg['message'][:200]})")
        else:
            await super()._handle(msg)

    async def _on_offer(self, sdp: str, session: str) -> None:
        self._set(transport="webrtc")
        await super()._on_offer(sdp, session)
        pc = self.pc
        wait = self.relay_after()
        if pc is not None and self.session == session and wait is not None and self._can_relay():
            self._spawn(self._relay_timer(session, pc, wait))

    def _on_pc_state(self, pc: RTCPeerConnection) -> None:
        if pc is self.pc and pc.connectionState == "failed" and self._can_relay():
            if not (self.relaying or self._relay_starting):
                self._spawn(self._start_relay(str(self.session), "ICE failed: no UDP path between browser and kernel"))
            return
        super()._on_pc_state(pc)

    async def _close_pc(self, state: str | None) -> None:
        self._relay.clear()
        tracks = list(self._relay_tracks.values())
        self._relay_tracks.clear()
        self._relay_senders.clear()
        sending, self._relay_send_tasks = self._relay_send_tasks, []
        await stop_all(sending)
        await super()._close_pc(state)  # unbinds the receivers first, then their relay tracks stop
        for track in tracks:
            track.stop()

    # --- relay -----------------------------------------------------------------------------------
    async def _relay_timer(self, session: str, pc: RTCPeerConnection, wait: float) -> None:
        await asyncio.sleep(wait)
        if self.pc is pc and self.session == session and self.state["connection_state"] != "connected":
            reason = (
                "relay requested (relay_after=0)"
                if wait == 0
                else f"WebRTC did not connect within {wait:g} s (ICE {pc.iceConnectionState})"
            )
            await self._start_relay(session, reason)

    async def _start_relay(self, session: str, why: str) -> None:
        if self.relaying or self._relay_starting or self.session != session:
            return
        self._relay_starting = True
        try:
            await self._close_pc(None)  # ends ICE and unbinds the channels; the session stays
            self.session = session
            for label, channel in self.channels.items():
                dc = RelayDataChannel(label, session, self._counted_send)
                self._relay[label] = dc
                channel.bind(dc, RELAY_MAX_MESSAGE_BYTES)  # type: ignore[arg-type]
            from .relaymedia import RelayTrack  # PyAV decoders: only when a session relays

            for receiver in self.receivers:
                track = RelayTrack(receiver.kind, on_need_key=self._key_requester(session, receiver.kind))
                self._relay_tracks[receiver.kind] = track
                receiver.bind(track)
            for out in self.senders:
                sender = RelaySender(
                    session, out.source.track(), self.relay_codec(), self._send_media, self.relay_buffered
                )
                self._relay_senders[out.kind] = sender
                self._relay_send_tasks.append(self._spawn(sender.run()))
            self.control.bind(RelayControl(self._send_signal))  # type: ignore[arg-type]
            what = "Media and data now travel" if self.receivers or self.senders else "Data now travels"
            reason = (
                f"{why}. {what} through the Jupyter server (relay): slower, but it works. For WebRTC, "
                "configure a TURN server (rtc_widgets.config.ice_servers or the server extension's turn_urls)."
            )
            self._send_signal(relay_message(session, reason))
            log.info("rtc_widgets: %s switched to the relay: %s", self.name, why)
            self.fatal_error = ""
            self._set(transport="relay", error=reason, connection_state="connected", ice_connection_state="closed")
        finally:
            self._relay_starting = False

    def _send_media(self, msg: dict[str, Any], payload: bytes) -> None:
        if msg.get("session") == self.session:
            self._relay_tx += len(payload)
            self._send_signal(msg, payload)

    def _key_requester(self, session: str, kind: str) -> Callable[[], None]:
        """The track cannot decode until a key frame comes (first frame, a gap, a decode error): ask for one."""

        def request() -> None:
            if kind == "video" and self.session == session:
                with contextlib.suppress(Exception):
                    self._send_signal(ack_message(session, "video", self._last_seq.get(kind, 0), key=True))

        return request

    def _on_media_message(self, msg: dict[str, Any], payload: bytes | None) -> None:
        if msg.get("session") != self.session:
            return  # a late frame of a replaced session
        if msg["type"] == "ack":
            out = self._relay_senders.get(msg["track"])
            if out is not None:
                out.ack(msg["seq"], bool(msg.get("key")))
            return
        track = self._relay_tracks.get(msg["track"])
        if track is None or payload is None:
            self.report_error(
                ProtocolError("out-of-order", f"relayed {msg['track']} arrived, but this widget relays none")
            )
            return
        self._relay_rx += len(payload)
        self._last_seq[msg["track"]] = msg["seq"]
        ok = track.push(msg, payload)
        if msg["track"] == "video":
            with contextlib.suppress(Exception):
                self._send_signal(ack_message(str(self.session), "video", msg["seq"], key=not ok))

    def _on_relay_data(self, msg: dict[str, Any]) -> None:
        self._relay_rx += len(msg.get("text", "")) + len(msg.get("b64", "")) * 3 // 4
        dc = self._relay.get(msg["label"]) if msg.get("session") == self.session else None
        if dc is None:
            if msg.get("session") not in (None, self.session):
                return  # a late message of a replaced session
            raise ProtocolError("out-of-order", "relay data arrived, but the relay is not in use")
        dc.receive(msg)


__all__ = [
    "RELAY_AFTER_S",
    "RelayControl",
    "RelayDataChannel",
    "RelayingPeer",
    "ack_message",
    "data_message",
    "relay_message",
]
