"""The signaling bus: routes protocol messages between browser widgets and kernels by peer id.

Why a bus next to the widget comm (ARCHITECTURE.md, decision 3): a kernel reads comm messages on its main thread,
so while a cell runs synchronous code no offer reaches it. The kernel's engine thread instead keeps a websocket to
this bus over loopback, and the browser sends its signaling here; both ends keep working during ``time.sleep``.

Envelope (one JSON text per websocket message; the inner ``msg`` is a protocol.json message)::

    browser -> bus  {"op": "sub" | "unsub", "peer": id}        listen to a peer's kernel messages
                    {"op": "msg", "peer": id, "msg": {...}}     to the kernel that owns ``peer``
    kernel  -> bus  {"op": "own" | "disown", "peer": id}        this kernel holds the peer
                    {"op": "msg", "peer": id, "msg": {...}}     to every browser subscribed to ``peer``
    bus -> both     {"op": "hello", "iceServers": [...], "iceTransportPolicy": "all" | "relay"}
                    {"op": "msg", "peer": id, "msg": {...}}

A ``media`` message (an encoded frame of the relay transport) travels as one *binary* websocket frame instead: a
4-byte big-endian length N, N bytes of the JSON envelope above, then the frame's bytes (exactly ``msg.size`` of
them). The router forwards binary frames unchanged once the envelope checked out.

Browser messages are untrusted: the envelope and the inner message are validated here (the kernel validates again).
A message for a peer no kernel owns yet waits a short while (a widget's first offer can beat the kernel's ``own``).
"""

from __future__ import annotations

import json
import re
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from .. import protocol
from ..protocol import BUS, LIMITS, RELAY, ProtocolError, check_attachment

PEER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_FRAME = LIMITS["maxSignalBytes"] + 1024
#: a binary frame: length prefix, envelope, one encoded media frame
MAX_BINARY_FRAME = 4 + MAX_FRAME + RELAY["maxMediaBytes"]

Frame = str | bytes


class Conn(Protocol):
    """One websocket end as the router sees it."""

    def deliver(self, frame: Frame) -> None: ...


class BusError(ValueError):
    pass


def envelope(op: str, **fields: Any) -> str:
    return json.dumps({"op": op, **fields}, separators=(",", ":"), ensure_ascii=False)


def binary_frame(env_text: str, payload: bytes | memoryview) -> bytes:
    """A binary bus frame: 4-byte big-endian envelope length, the envelope (UTF-8 JSON), the payload."""
    head = env_text.encode()
    return b"".join((struct.pack(">I", len(head)), head, payload))


def split_binary(raw: bytes | bytearray | memoryview) -> tuple[str, memoryview]:
    """The envelope text and payload of a binary bus frame; raise :class:`BusError` when it is malformed."""
    view = memoryview(raw)
    if len(view) > MAX_BINARY_FRAME:
        raise BusError(f"binary bus frame of {len(view)} bytes exceeds {MAX_BINARY_FRAME}")
    if len(view) < 4:
        raise BusError("binary bus frame shorter than its length prefix")
    (n,) = struct.unpack(">I", view[:4])
    if n > MAX_FRAME or 4 + n > len(view):
        raise BusError("binary bus frame with an impossible envelope length")
    try:
        text = bytes(view[4 : 4 + n]).decode()
    except UnicodeDecodeError:
        raise BusError("binary bus frame envelope is not UTF-8") from None
    return text, view[4 + n :]


def parse_envelope(raw: str) -> dict[str, Any]:
    """Check a bus frame's envelope (not the inner message); raise :class:`BusError`."""
    if len(raw) > MAX_FRAME:
        raise BusError(f"bus frame of {len(raw)} bytes exceeds {MAX_FRAME}")
    try:
        env = json.loads(raw)
    except ValueError:
        raise BusError("bus frame is not JSON") from None
    if not isinstance(env, dict) or not isinstance(env.get("op"), str):
        raise BusError("bus frame must be an object with an 'op'")
    peer = env.get("peer")
    if env["op"] in ("sub", "unsub", "own", "disown", "msg") and (not isinstance(peer, str) or not PEER_ID.match(peer)):
        raise BusError("bus frame needs a 'peer' id of 1-64 letters, digits, '-' or '_'")
    return env


class Router:
    """Who owns which peer (kernels) and who listens to it (browsers); holds early messages briefly."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.owners: dict[str, Conn] = {}
        self.subscribers: dict[str, set[Conn]] = {}
        self.pending: dict[str, deque[tuple[float, Frame]]] = {}
        self.clock = clock
        self.routed = 0

    # --- kernels ---
    def own(self, conn: Conn, peer: str) -> None:
        self.owners[peer] = conn
        waiting = self.pending.pop(peer, None)
        if waiting:
            horizon = self.clock() - BUS["pendingTtlS"]
            for t, text in waiting:
                if t >= horizon:
                    conn.deliver(text)

    def disown(self, conn: Conn, peer: str) -> None:
        if self.owners.get(peer) is conn:
            del self.owners[peer]

    def to_browsers(self, peer: str, msg: Any, payload: bytes | memoryview | None = None) -> int:
        subs = self.subscribers.get(peer, ())
        if not subs:
            return 0
        text = envelope("msg", peer=peer, msg=msg)
        frame: Frame = text if payload is None else binary_frame(text, payload)
        for conn in list(subs):
            conn.deliver(frame)
        self.routed += 1
        return len(subs)

    # --- browsers ---
    def subscribe(self, conn: Conn, peer: str) -> None:
        self.subscribers.setdefault(peer, set()).add(conn)

    def unsubscribe(self, conn: Conn, peer: str) -> None:
        subs = self.subscribers.get(peer)
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del self.subscribers[peer]

    def to_kernel(self, peer: str, msg: dict[str, Any], payload: bytes | memoryview | None = None) -> bool:
        """Deliver to the owning kernel, or hold it for ``pendingTtlS``; False if it had to be dropped.

        Media frames (with a payload) are never held: a frame for nobody is worth nothing a moment later."""
        text = envelope("msg", peer=peer, msg=msg)
        owner = self.owners.get(peer)
        if owner is not None:
            owner.deliver(text if payload is None else binary_frame(text, payload))
            self.routed += 1
            return True
        if payload is not None:
            return False
        self._expire()
        if peer not in self.pending and len(self.pending) >= BUS["maxPendingPeers"]:
            return False
        queue = self.pending.setdefault(peer, deque())
        if len(queue) >= BUS["maxPendingPerPeer"]:
            return False
        queue.append((self.clock(), text))
        return True

    def _expire(self) -> None:
        horizon = self.clock() - BUS["pendingTtlS"]
        for peer in [p for p, q in self.pending.items() if not q or q[-1][0] < horizon]:
            del self.pending[peer]

    def drop(self, conn: Conn) -> None:
        """A websocket closed: forget everything it owned or listened to."""
        for peer in [p for p, c in self.owners.items() if c is conn]:
            del self.owners[peer]
        for peer in list(self.subscribers):
            self.unsubscribe(conn, peer)


def _split(raw: str | bytes) -> tuple[str, memoryview | None]:
    if isinstance(raw, str):
        return raw, None
    return split_binary(raw)


def handle_browser_frame(router: Router, conn: Conn, raw: str | bytes) -> str | None:
    """Act on one browser frame; return an error envelope to send back, or None."""
    text = ""
    try:
        text, payload = _split(raw)
        env = parse_envelope(text)
        op, peer = env["op"], env.get("peer", "")
        if op == "sub":
            router.subscribe(conn, peer)
        elif op == "unsub":
            router.unsubscribe(conn, peer)
        elif op == "msg":
            msg = protocol.validate(env.get("msg"))
            check_attachment(msg, payload)
            if not router.to_kernel(peer, msg, payload):
                if payload is not None:
                    return None  # a media frame for a kernel that is gone: dropped, as media is
                return envelope(
                    "error", peer=peer, message="no kernel holds this widget: re-run the cell that created it"
                )
        else:
            raise BusError(f"unknown bus op {op[:32]!r} from a browser")
    except (BusError, ProtocolError) as exc:
        return envelope("error", peer=env_peer(text), message=str(exc))
    return None


def handle_kernel_frame(router: Router, conn: Conn, raw: str | bytes) -> str | None:
    """Act on one kernel frame (the kernel is trusted: it proved the runtime secret)."""
    try:
        text, payload = _split(raw)
        env = parse_envelope(text)
        op, peer = env["op"], env.get("peer", "")
        if op == "own":
            router.own(conn, peer)
        elif op == "disown":
            router.disown(conn, peer)
        elif op == "msg":
            router.to_browsers(peer, env.get("msg"), payload)
        else:
            raise BusError(f"unknown bus op {op[:32]!r} from a kernel")
    except BusError as exc:
        return envelope("error", message=str(exc))
    return None


def env_peer(raw: str) -> str:
    try:
        peer = json.loads(raw).get("peer", "")
    except Exception:
        return ""
    return peer if isinstance(peer, str) and PEER_ID.match(peer) else ""
