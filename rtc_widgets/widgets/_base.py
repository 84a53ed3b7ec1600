"""PeerWidget: what every rtc_widgets widget shares (ARCHITECTURE.md, decision 6: widgets are thin).

A widget holds traits and binds one :class:`~rtc_widgets.peer.KernelPeer` to its comm -- one peer per widget
*model*, never one per view. Signaling never goes through ``self.send``: :class:`DataChannel` redefines ``send``
for data, so signaling calls ``ipywidgets.Widget.send`` explicitly.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets
import traitlets as t

from .. import protocol
from ..channel import Channel
from ..config import config, normalize_ice_servers
from ..engine import get_engine
from ..peer import KernelPeer
from ..protocol import DEFAULTS, ProtocolError
from ..sdp import SdpPair
from ..signaling import SignalRoute
from ..sources import TrackSender
from ..stats import PeerStats
from ..tracks import TrackReceiver
from ..transports.relay import RELAY_AFTER_S, RelayingPeer

STATIC = Path(__file__).resolve().parent.parent / "static"


class PeerWidget(anywidget.AnyWidget):
    """Base of every widget: a browser end (the view) and a kernel end (aiortc), joined by WebRTC."""

    _esm = STATIC / "widget.js"
    _kind = t.Unicode("").tag(sync=True)

    peer_id = t.Unicode(help="Unique id of this widget's peer (routes signaling; names the peer in stats).").tag(
        sync=True
    )
    ice_servers: t.List[dict[str, Any]] = t.List(
        help="STUN/TURN servers for both ends, as RTCIceServer dicts. Defaults to rtc_widgets.config.ice_servers."
    ).tag(sync=True)
    ice_transport_policy = t.Enum(
        ["all", "relay"], "all", help='"relay" uses TURN candidates only (for experiments).'
    ).tag(sync=True)
    _start = t.Int(0).tag(sync=True)
    _bus = t.Bool(False, help="The kernel signals over the server extension's bus (else the comm).").tag(sync=True)
    relay_after = t.Float(
        RELAY_AFTER_S,
        allow_none=True,
        min=0,
        help="Seconds without a WebRTC connection before media and data travel through the Jupyter server instead "
        '(transport "relay": the bus, or the comm without the server extension); 0 relays at once, None never.',
    )

    connection_state = t.Unicode(
        "new", read_only=True, help="new, connecting, connected, disconnected, failed or closed (kernel end)."
    ).tag(sync=True)
    ice_connection_state = t.Unicode("new", read_only=True, help="ICE state of the kernel end.").tag(sync=True)
    transport = t.Unicode(
        "webrtc",
        read_only=True,
        help='How media and data travel: "webrtc" (direct, or through TURN), or "relay" (through the Jupyter server; '
        "error says why).",
    ).tag(sync=True)
    error = t.Unicode("", read_only=True, help="The last error, in words that say what to do; '' when none.").tag(
        sync=True
    )

    stats_interval = t.Int(
        DEFAULTS["stats"]["intervalMs"],
        min=DEFAULTS["stats"]["minIntervalMs"],
        max=60_000,
        help="How often both ends sample their stats, in ms (down to 100). See .stats.",
    ).tag(sync=True)
    stats_window = t.Float(
        DEFAULTS["stats"]["windowS"],
        min=DEFAULTS["stats"]["minWindowS"],
        help="Seconds of stats kept in .stats (the newest ones); memory stays bounded by it.",
    )
    inspector = t.Dict(
        read_only=True, help="What the inspector panel shows: SDP sections, codecs, candidates, selected pair, events."
    ).tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("peer_id", uuid.uuid4().hex)
        route = SignalRoute()  # the server bus when there is one; also its ICE servers (minted TURN credentials)
        kwargs["_bus"] = route.bus_ready
        server_ice, server_policy = route.server_ice()
        if "ice_servers" in kwargs:
            kwargs["ice_servers"] = normalize_ice_servers(kwargs["ice_servers"])
        else:
            kwargs["ice_servers"] = list(config.ice_servers) + server_ice
        kwargs.setdefault("ice_transport_policy", "relay" if server_policy == "relay" else config.ice_transport_policy)
        super().__init__(**kwargs)
        self._route = route
        self._trait_lock = threading.Lock()
        self._peer = RelayingPeer(
            name=f"{type(self).__name__} {self.peer_id[:8]}",
            channels=self._make_channels(),
            send_signal=self._send_signal,
            on_change=self._apply_peer_changes,
            ice_servers=lambda: list(self.ice_servers),
            receivers=self._make_receivers(),
            senders=self._make_senders(),
        )
        self._peer.stats.peer_id = self.peer_id
        self._peer.stats.on_inspector = lambda data: self._apply_peer_changes({"inspector": data})
        self._stats_options()
        route.attach(self.peer_id, self._receive_signal)
        self._peer.relay_after = lambda: self.relay_after
        self._peer.relay_codec = lambda: str(getattr(self, "relay_codec", "auto"))
        self._peer.relay_buffered = lambda: self._route.buffered
        self._peer.ice_transport_policy = lambda: self.ice_transport_policy
        self.on_msg(self._on_custom_msg)
        if self.comm is not None:
            self.comm.on_close(lambda _msg: self._on_comm_closed())

    # --- to be extended by presets ---------------------------------------------------------------
    def _make_channels(self) -> list[Channel]:
        return []

    def _make_receivers(self) -> list[TrackReceiver]:
        return []

    def _make_senders(self) -> list[TrackSender]:
        return []

    # --- public API ------------------------------------------------------------------------------
    def start(self) -> None:
        """Ask the browser end to connect, without a rendered view (for tests and scripts).

        The notebook page holding this kernel must be open: the browser end lives there. Calling it again starts a
        fresh connection.
        """
        if self._peer.closed:
            raise RuntimeError("this widget is closed; create a new one")
        # queued before any later wait_connected() on the engine loop, so an old failure cannot end the new wait
        self._peer.engine.call_soon(self._peer.restart_requested)
        self._start += 1

    async def wait_connected(self, timeout: float = DEFAULTS["connectTimeoutS"]) -> None:
        """Wait until connected and ready to send; raise the error that stopped it, or TimeoutError."""
        await get_engine().run(self._peer.wait_connected(timeout))

    def wait_connected_blocking(self, timeout: float = DEFAULTS["connectTimeoutS"]) -> None:
        """:meth:`wait_connected` for plain scripts. In a notebook cell use ``await wait_connected()``."""
        get_engine().run_sync(self._peer.wait_connected(timeout), timeout + 1)

    def close(self) -> None:
        """Close the connection (the browser is told), stop its engine tasks, then close the widget."""
        peer = getattr(self, "_peer", None)
        engine = peer.engine if peer is not None else None
        if peer is not None and engine is not None and not peer.closed and engine.is_running():
            if engine.in_engine():
                engine.submit(peer.close())
            else:
                with contextlib.suppress(Exception):
                    engine.run_sync(peer.close(), timeout=10)
        if hasattr(self, "_route"):
            self._route.detach()
        super().close()

    @property
    def stats(self) -> PeerStats:
        """Time series (``.latest``, ``.to_dataframe()``), state ``.events`` and more, of both ends."""
        return self._peer.stats

    @property
    def sdp(self) -> SdpPair:
        """The negotiated session, parsed: ``.local`` (the kernel's answer) and ``.remote`` (the browser's offer)."""
        return self._peer.stats.sdp

    @property
    def candidates(self) -> dict[str, Any]:
        """ICE candidates: ``local`` (kernel), ``remote`` (browser) and the ``selected`` pair, with their types."""
        return self._peer.stats.candidates

    @t.observe("stats_interval", "stats_window")
    def _stats_options(self, _change: Any = None) -> None:
        peer = getattr(self, "_peer", None)
        if peer is not None:
            peer.stats.interval_ms = self.stats_interval
            peer.stats.window_s = self.stats_window

    # --- plumbing --------------------------------------------------------------------------------
    def _send_signal(self, msg: dict[str, Any], payload: bytes | None = None) -> None:
        if self._route.send(msg, payload):
            return
        comm = self.comm
        if comm is not None and not getattr(comm, "_closed", False):
            ipywidgets.Widget.send(self, msg, buffers=None if payload is None else [payload])

    def _on_custom_msg(self, _widget: Any, content: Any, buffers: Any) -> None:
        if not self._route.came_by_comm(content):
            payload = buffers[0] if buffers and len(buffers) == 1 else None
            if buffers and len(buffers) > 1:
                get_engine().call_soon(
                    self._peer.report_error, ProtocolError("bad-message", "a message carries more than one buffer")
                )
                return
            self._receive_signal(content, payload)

    def _receive_signal(self, content: Any, payload: bytes | memoryview | None = None) -> None:
        # Runs on the kernel's main thread (comm) or the engine (bus): validate here, act on the engine.
        try:
            msg = protocol.validate(content)
            data = protocol.check_attachment(msg, payload)
        except ProtocolError as exc:
            get_engine().call_soon(self._peer.report_error, exc)
            return
        self._peer.post(msg, data)

    def _apply_peer_changes(self, changes: dict[str, Any]) -> None:
        with self._trait_lock, self.hold_trait_notifications(), self.hold_sync():
            for name, value in changes.items():
                if self.has_trait(name):
                    self.set_trait(name, value)

    def _on_comm_closed(self) -> None:
        self._route.detach()
        peer = self._peer
        if not peer.closed and peer.engine.is_running():
            peer.engine.submit(peer.close())

    @property
    def peer(self) -> KernelPeer:
        """The kernel end (advanced use; its aiortc objects live on the engine thread)."""
        return self._peer
