"""The relay transport: data messages through the Jupyter server when WebRTC cannot connect.

Binder pods accept no UDP, strict firewalls drop it, and without a TURN server ICE then finds no path
(ARCHITECTURE.md, decision 5). After ``relay_after`` seconds without a connection, or at once when ICE fails, the
kernel ends the WebRTC attempt, tells the browser ``relay`` (with the reason) and both ends carry the user data
channel's messages as protocol ``data`` messages over the signaling path: the server bus, or the comm without one.
Kernel code keeps the same :class:`~rtc_widgets.channel.Channel` (``send``, ``on_message``, ``messages``); the
widget's ``transport`` says ``"relay"`` and ``error`` says why. The path is reliable and ordered, so every
message carries a sequence number and a gap is reported, never papered over.

Media over the relay (WebCodecs/PyAV) is not implemented: media widgets keep failing with the ICE error.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection
from pyee.asyncio import AsyncIOEventEmitter

from ..peer import KernelPeer
from ..protocol import BUS, VERSION, ProtocolError

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
    """A KernelPeer that falls back to the relay transport for its data channels.

    ``relay_after`` (a callable, read per session) gives the seconds to wait for WebRTC; ``None`` never relays,
    ``0`` relays at once (forced). Peers with media tracks never relay (not implemented).
    """

    relay_after: Callable[[], float | None] = staticmethod(lambda: RELAY_AFTER_S)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._relay: dict[str, RelayDataChannel] = {}
        self._relay_starting = False

    @property
    def relaying(self) -> bool:
        return bool(self._relay)

    def _relay_wanted(self, msg: dict[str, Any]) -> bool:
        return self.pc is not None and msg.get("session") == self.session and self._can_relay()

    def _can_relay(self) -> bool:
        return self.relay_after() is not None and not getattr(self, "receivers", None) and bool(self.channels)

    # --- KernelPeer hooks ------------------------------------------------------------------------
    async def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "data":
            self._on_relay_data(msg)
        elif kind == "relay":
            raise ProtocolError("out-of-order", "only the kernel starts the relay")
        elif kind == "candidate" and (self._relay or self._relay_starting) and msg.get("session") == self.session:
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
            if not (self._relay or self._relay_starting):
                self._spawn(self._start_relay(str(self.session), "ICE failed: no UDP path between browser and kernel"))
            return
        super()._on_pc_state(pc)

    async def _close_pc(self, state: str | None) -> None:
        self._relay.clear()
        await super()._close_pc(state)

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
        if self._relay or self._relay_starting or self.session != session:
            return
        self._relay_starting = True
        try:
            await self._close_pc(None)  # ends ICE and unbinds the channels; the session stays
            self.session = session
            for label, channel in self.channels.items():
                dc = RelayDataChannel(label, session, self._send_signal)
                self._relay[label] = dc
                channel.bind(dc, RELAY_MAX_MESSAGE_BYTES)  # type: ignore[arg-type]
            self.control.bind(RelayControl(self._send_signal))  # type: ignore[arg-type]
            reason = (
                f"{why}. Data now travels through the Jupyter server (relay): slower, but it works. For WebRTC, "
                "configure a TURN server (rtc_widgets.config.ice_servers or the server extension's turn_urls)."
            )
            self._send_signal(relay_message(session, reason))
            log.info("rtc_widgets: %s switched to the relay: %s", self.name, why)
            self.fatal_error = ""
            self._set(transport="relay", error=reason, connection_state="connected", ice_connection_state="closed")
        finally:
            self._relay_starting = False

    def _on_relay_data(self, msg: dict[str, Any]) -> None:
        dc = self._relay.get(msg["label"]) if msg.get("session") == self.session else None
        if dc is None:
            if msg.get("session") not in (None, self.session):
                return  # a late message of a replaced session
            raise ProtocolError("out-of-order", "relay data arrived, but the relay is not in use")
        dc.receive(msg)


__all__ = ["RELAY_AFTER_S", "RelayControl", "RelayDataChannel", "RelayingPeer", "data_message", "relay_message"]
