"""KernelPeer: the kernel end of one widget model -- one aiortc RTCPeerConnection per browser session.

Lives on the engine thread. The browser offers and trickles candidates; the kernel answers with all of its
candidates (aiortc cannot trickle). A new offer with a new session id (page reload, ``start()`` again) replaces the
old connection. Every incoming message has already passed :func:`rtc_widgets.protocol.validate`; this class checks
that it fits the current state, and answers a bad one with an ``error`` message while staying usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from . import protocol
from .channel import Channel
from .config import config
from .control import Control
from .engine import get_engine
from .kstats import KernelSampler, control_listener, watch
from .protocol import DEFAULTS, ProtocolError
from .sources import TrackSender, offered_to_receive
from .stats import PeerStats
from .tracks import TrackReceiver, with_start_bitrate

log = logging.getLogger("rtc_widgets")

CONTROL_LABEL: str = DEFAULTS["controlChannelLabel"]
# The browser could not capture: reported for the session it was starting (before any offer), so it ends ours too.
MEDIA_CODES = {"permission-denied", "no-device", "insecure-context", "device-busy", "track-ended", "media-error"}
FATAL_CODES = {"bad-sdp", "ice-failed", "browser-error", "peer-closed", *MEDIA_CODES}
_SIGNAL_QUEUE = 256

ChangeCallback = Callable[[dict[str, Any]], None]


def _rtc_configuration(ice_servers: list[dict[str, Any]], policy: str = "all") -> RTCConfiguration:
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in ice_servers
        ],
        iceTransportPolicy=RTCIceTransportPolicy(policy),
    )


def bound_gathering(pc: RTCPeerConnection, seconds: float) -> None:
    """Let this connection wait at most ``seconds`` for STUN/TURN servers while gathering.

    aiortc answers only once gathering is complete, and aioice gives every server up to 5 s: one dead server held
    each answer 5.0 s (measured). The bound is set on this connection's aioice objects only, so other aiortc code in
    the kernel keeps aioice's default. Private aioice/aiortc attributes: without them, gathering stays at 5 s."""
    transports = getattr(pc, "_RTCPeerConnection__iceTransports", ())
    for transport in list(transports):
        with contextlib.suppress(AttributeError):
            conn = transport.iceGatherer._connection
            original = conn.get_component_candidates

            async def bounded(component: int, addresses: list[str], timeout: float = 5, _orig: Any = original) -> Any:
                return await _orig(component=component, addresses=addresses, timeout=min(timeout, seconds))

            conn.get_component_candidates = bounded


def _max_message_size(pc: RTCPeerConnection) -> int:
    from aiortc.rtcsctptransport import LOCAL_MAX_MESSAGE_SIZE

    sctp = pc.sctp
    remote = getattr(sctp, "_remote_max_message_size", 0) if sctp is not None else 0
    return min(LOCAL_MAX_MESSAGE_SIZE, remote) if remote else LOCAL_MAX_MESSAGE_SIZE


class KernelPeer:
    """Kernel end of a widget's connection. Construct anywhere; everything else runs on the engine."""

    #: ``"all"`` or ``"relay"`` (TURN candidates only), read per session; the widget binds its trait here.
    ice_transport_policy: Callable[[], str] = staticmethod(lambda: "all")

    def __init__(
        self,
        name: str,
        channels: list[Channel],
        send_signal: Callable[..., None],
        on_change: ChangeCallback,
        ice_servers: Callable[[], list[dict[str, Any]]],
        receivers: list[TrackReceiver] | None = None,
        senders: list[TrackSender] | None = None,
    ) -> None:
        self.name = name
        self.channels = {c.spec.label: c for c in channels}
        self.receivers = list(receivers or [])
        # what must be open before the peer counts as connected, and what reports counters
        self.senders = list(senders or [])  # media the kernel sends on the browser's recvonly transceivers
        self._endpoints: list[Channel | TrackReceiver | TrackSender] = [*channels, *self.receivers, *self.senders]
        self._send_signal = send_signal
        self._on_change = on_change
        self._ice_servers = ice_servers
        self.engine = get_engine()
        self.session: str | None = None
        self.pc: RTCPeerConnection | None = None
        self.control = Control(name, self.report_error)
        self.stats = PeerStats(name)
        self._remote_set = False
        self._refused: str | None = None
        self._closed = False
        self.state: dict[str, Any] = {
            "connection_state": "new",
            "ice_connection_state": "new",
            "error": "",
            "max_message_size": 0,
        }
        self.fatal_error = ""
        self._changed: asyncio.Event | None = None
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        for endpoint in self._endpoints:
            endpoint.on_open_change = self._channel_changed
        self.engine.register(self, self.close)

    # --- entry points from other threads -------------------------------------------------------
    def post(self, msg: dict[str, Any], payload: bytes | None = None) -> None:
        """Hand a validated signaling message to the engine (thread-safe, keeps arrival order).

        Relayed media (``media``, ``ack``) skips the signaling queue: frames must not wait behind, or crowd out,
        signaling; the engine's call order still keeps them in arrival order."""
        if msg["type"] in ("media", "ack"):
            self.engine.call_soon(self._on_media_message, msg, payload)
        else:
            self.engine.call_soon(self._enqueue, msg)

    def _on_media_message(self, msg: dict[str, Any], payload: bytes | None) -> None:
        """Relayed media; only a peer using the relay transport takes it (see transports/relay.py)."""
        if msg.get("session") == self.session:
            self.report_error(
                ProtocolError("out-of-order", f"a relay '{msg['type']}' arrived, but the relay is not in use")
            )

    # --- engine thread ---------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _enqueue(self, msg: dict[str, Any]) -> None:
        if self._closed:
            return
        if self._queue is None:
            self._queue = asyncio.Queue(_SIGNAL_QUEUE)
            self._changed = self._changed or asyncio.Event()
            self._spawn(self._consume())
            self._spawn(self._report_counters())
            self._spawn(KernelSampler(self.stats).run(self))
        try:
            self._queue.put_nowait(msg)
        except asyncio.QueueFull:
            self.report_error(
                ProtocolError("too-large", "too many signaling messages at once; slow down"),
                msg.get("session"),
            )

    async def _consume(self) -> None:
        assert self._queue is not None
        while True:
            msg = await self._queue.get()
            try:
                await self._handle(msg)
            except ProtocolError as exc:
                self.report_error(exc, msg.get("session"))
            except Exception as exc:  # a bug of ours must not kill signaling
                log.exception("rtc_widgets: error handling %s", msg.get("type"))
                self.report_error(ProtocolError("internal", f"internal error: {exc}"), msg.get("session"))

    def _set(self, **changes: Any) -> None:
        changed = {k: v for k, v in changes.items() if self.state.get(k) != v}
        if not changed:
            return
        self.state.update(changed)
        if self._changed is not None:
            self._changed.set()
        try:
            self._on_change(changed)
        except Exception:
            log.exception("rtc_widgets: state callback failed")

    def restart_requested(self) -> None:
        """The user asked for a fresh connection: earlier failures no longer stop ``wait_connected``."""
        self.fatal_error = ""
        self._set(error="")

    def report_error(self, exc: ProtocolError, session: str | None = None, *, fatal: bool = False) -> None:
        """Show an error in ``error`` and tell the browser; a fatal one ends the current session."""
        message = str(exc)
        if fatal or exc.code in FATAL_CODES:
            self.fatal_error = message
        self._set(error=message)
        with contextlib.suppress(Exception):
            self._send_signal(exc.to_message(session or self.session))

    async def _handle(self, msg: dict[str, Any]) -> None:
        kind, session = msg["type"], msg.get("session")
        if kind == "offer":
            await self._on_offer(msg["sdp"], str(session))
        elif kind == "candidate":
            await self._on_candidate(msg["candidate"], str(session))
        elif kind == "bye":
            if session in (None, self.session):
                await self._close_pc("closed")
        elif kind == "error":
            text = f"browser: {msg['message']}"
            code = msg["code"]
            if code in FATAL_CODES and (session in (None, self.session) or code in MEDIA_CODES):
                self.fatal_error = text
            self._set(error=text)
            if code in MEDIA_CODES:
                await self._close_pc("failed")
        elif kind == "ping":
            self._send_signal(protocol.pong(msg["seq"], msg["t"]))
        elif kind == "pong":
            self.control.resolve_pong(msg["seq"])
        elif kind == "stats":  # before the control channel opens, the browser sends stats over the comm
            if session in (None, self.session):
                self.stats.add_browser_message(msg)
        else:  # "answer": the kernel never offers
            raise ProtocolError("out-of-order", f"the kernel does not expect a '{kind}' message")

    async def _on_offer(self, sdp: str, session: str) -> None:
        try:
            await self._check_offer(sdp, session)
            await self._apply_offer(sdp, session)
        except ProtocolError as exc:
            if exc.code == "bad-sdp":  # its trickled candidates must not bury this error under "before any offer"
                self._refused = session
            raise

    async def _check_offer(self, sdp: str, session: str) -> None:
        if session == self.session and self._remote_set:
            raise ProtocolError(
                "out-of-order",
                "a second offer for the same session; renegotiation is not supported yet",
            )
        if "\nm=" not in sdp:
            raise ProtocolError("bad-sdp", "the browser's offer has no media or data-channel section")
        for receiver in self.receivers:
            if f"\nm={receiver.kind} " not in sdp:
                raise ProtocolError("bad-sdp", f"the browser's offer carries no {receiver.kind} track")
        for sender in self.senders:
            if not offered_to_receive(sdp, sender.kind):
                raise ProtocolError(
                    "bad-sdp",
                    f"the browser's offer has no {sender.kind} section to receive on (recvonly): the page's widget "
                    "code may be older than the kernel's; reload the page after upgrading rtc_widgets",
                )

    async def _apply_offer(self, sdp: str, session: str) -> None:
        await self._close_pc(None)
        self.session = session
        self.fatal_error = ""
        self._set(error="", connection_state="connecting", max_message_size=0)
        pc = self.pc = RTCPeerConnection(_rtc_configuration(self._ice_servers(), self.ice_transport_policy()))
        self.stats.new_session()
        watch(self.stats, pc)
        self.stats.set_remote_sdp(sdp)
        pc.on("datachannel", self._on_datachannel)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", lambda: self._on_pc_state(pc))
        pc.on("iceconnectionstatechange", lambda: self._on_pc_state(pc))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:
            await self._close_pc("failed")
            raise ProtocolError("bad-sdp", f"the browser's offer could not be applied: {exc}") from None
        self._remote_set = True
        try:
            for sender in self.senders:  # reuses the offered transceiver, so the answer sends on it
                sender.attach(pc)
        except ProtocolError:
            await self._close_pc("failed")
            raise
        bound_gathering(pc, config.ice_gathering_timeout)
        await pc.setLocalDescription(await pc.createAnswer())
        if pc is not self.pc:  # replaced while gathering
            return
        kbps = max((r.start_bitrate_kbps for r in self.receivers if r.kind == "video"), default=0)
        answer = with_start_bitrate(pc.localDescription.sdp, kbps)
        self.stats.set_local_sdp(answer)
        self._send_signal(protocol.answer(answer, session))

    async def _on_candidate(self, cand: dict[str, Any] | None, session: str) -> None:
        if session == self._refused:
            return  # the offer of this session was refused, and said so
        if session != self.session:
            if self.session is None:
                raise ProtocolError("out-of-order", "an ICE candidate arrived before any offer")
            return  # a late candidate of a replaced session: harmless
        if self.pc is None or not self._remote_set:
            raise ProtocolError("out-of-order", "an ICE candidate arrived before the offer was applied")
        if cand is None or not cand["candidate"]:
            await self.pc.addIceCandidate(None)
            return
        text = cand["candidate"]
        try:
            candidate = candidate_from_sdp(text.split(":", 1)[1] if text.startswith("candidate:") else text)
        except Exception:
            raise ProtocolError("bad-candidate", f"unparseable ICE candidate {text[:80]!r}") from None
        candidate.sdpMid = cand.get("sdpMid")
        candidate.sdpMLineIndex = cand.get("sdpMLineIndex")
        if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
            candidate.sdpMLineIndex = 0
        try:
            await self.pc.addIceCandidate(candidate)
        except Exception as exc:
            raise ProtocolError("bad-candidate", f"ICE candidate rejected: {exc}") from None
        self.stats.remote_candidate(text)

    def _on_pc_state(self, pc: RTCPeerConnection) -> None:
        if pc is not self.pc:
            return
        self._set(ice_connection_state=pc.iceConnectionState)
        state = pc.connectionState
        if state == "connected":
            self._set(max_message_size=_max_message_size(pc))
        if state == "failed":
            self.report_error(
                ProtocolError(
                    "ice-failed",
                    "ICE failed: no network path between the browser and the kernel. "
                    "Configure a TURN server (rtc_widgets.config.ice_servers) or check the firewall.",
                ),
                fatal=True,
            )
        self._set(connection_state=self._overall_state(state))

    def _overall_state(self, pc_state: str) -> str:
        # "connected" only once every user channel is open, so wait_connected() means "ready to send".
        if pc_state == "connected" and not all(e.is_open for e in self._endpoints):
            return "connecting"
        return pc_state

    def _channel_changed(self) -> None:
        if self.pc is not None:
            self._on_pc_state(self.pc)

    def _on_datachannel(self, dc: RTCDataChannel) -> None:
        if dc.label == CONTROL_LABEL:
            self.control.bind(dc)
            dc.on("message", control_listener(self.stats))
            return
        channel = self.channels.get(dc.label)
        if channel is None or not channel.spec.matches(dc):
            self.report_error(
                ProtocolError(
                    "bad-message",
                    f"unexpected data channel '{dc.label[:64]}' from the browser; closed it",
                )
            )
            dc.close()
            return
        pc = self.pc
        channel.unbind()
        channel.bind(dc, _max_message_size(pc) if pc is not None else 0)
        if dc.readyState == "open":
            self._channel_changed()

    def _on_track(self, track: Any) -> None:
        receiver = next((r for r in self.receivers if r.kind == track.kind and not r.bound), None)
        if receiver is None:
            self.report_error(ProtocolError("bad-message", f"unexpected {track.kind} track from the browser; ignored"))
            return
        receiver.bind(track)

    async def ping(self, n: int, timeout: float = 5.0) -> list[float]:
        """Round trips over the control channel, one after another; milliseconds."""
        return await self.control.ping(n, timeout)

    async def wait_connected(self, timeout: float) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if self.fatal_error:
                raise ConnectionError(self.fatal_error)
            if self.state["connection_state"] == "connected":
                return
            if self._closed:
                raise ConnectionError(f"{self.name} was closed")
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                hint = (
                    "Display the widget, or call start(), in a notebook whose page is open."
                    if self.session is None
                    else "The browser answered but ICE has not connected; see .error and .ice_connection_state."
                )
                raise TimeoutError(
                    f"{self.name} not connected after {timeout:g} s (state: {self.state['connection_state']}). {hint}"
                )
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def _report_counters(self) -> None:
        last: dict[str, Any] = {}
        interval = DEFAULTS["countersIntervalMs"] / 1000
        while True:
            await asyncio.sleep(interval)
            counters: dict[str, Any] = {}
            for endpoint in self._endpoints:
                for key, value in endpoint.counters().items():
                    counters[key] = counters.get(key, 0) + value
            if counters != last:
                last = counters
                with contextlib.suppress(Exception):
                    self._on_change(dict(counters))

    async def _close_pc(self, state: str | None) -> None:
        pc, self.pc = self.pc, None
        self._remote_set = False
        self.control.unbind()
        for endpoint in self._endpoints:
            endpoint.unbind()
        if pc is not None:
            pc.remove_all_listeners()
            await pc.close()
        if state is not None:
            self._set(connection_state=state, ice_connection_state="closed")

    async def close(self) -> None:
        """Close the connection and every task of this peer; send ``bye`` to the browser."""
        if self._closed:
            return
        self._closed = True
        self.engine.unregister(self)
        if self.session is not None:
            with contextlib.suppress(Exception):
                self._send_signal(protocol.bye(self.session, "closed by the kernel"))
        await self._close_pc("closed")
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for endpoint in self._endpoints:
            endpoint.close()
        if self._changed is not None:
            self._changed.set()

    @property
    def closed(self) -> bool:
        return self._closed

    def debug_tasks(self) -> list[asyncio.Task[Any]]:
        return list(self._tasks)


__all__ = ["CONTROL_LABEL", "KernelPeer"]
