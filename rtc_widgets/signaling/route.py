"""Which path a widget's signaling takes: the server bus when there is one, else the widget comm.

The kernel sends over the bus once the page has shown it listens there (a message of this peer arrived on the bus)
and until a new offer arrives over the comm (a page without the bus: old bundle, bus socket refused). Other comm
messages (stats samples, fuzzing) do not switch the path. Messages are accepted from both paths at all times.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

from .. import protocol
from ..engine import get_engine
from .bus import BusClient, get_bus

#: ``deliver(msg, payload)``: a raw message and, for ``media``, its bytes (else None)
Deliver = Callable[[Any, "bytes | None"], None]


class SignalRoute:
    """One widget's signaling path. Create before the widget's traits are set (it decides ``_bus``)."""

    def __init__(self) -> None:
        self.bus: BusClient | None = get_bus()
        self.via_bus = False  # until the page uses the bus for this peer
        self.peer_id = ""
        self._pongs: dict[int, asyncio.Future[float]] = {}
        self._seq = itertools.count(1)

    @property
    def bus_ready(self) -> bool:
        return self.bus is not None

    def server_ice(self) -> tuple[list[dict[str, Any]], str]:
        """ICE servers (TURN credentials minted for this kernel) and policy that the server extension hands out."""
        if self.bus is None:
            return [], "all"
        hello = self.bus.hello
        servers = hello.get("iceServers") or []
        policy = hello.get("iceTransportPolicy") or "all"
        return (servers if isinstance(servers, list) else []), (policy if policy in ("all", "relay") else "all")

    def attach(self, peer_id: str, deliver: Deliver) -> None:
        """Start receiving ``peer_id``'s bus messages; ``deliver`` gets each raw message (engine thread)."""
        self.peer_id = peer_id
        if self.bus is not None:

            def from_bus(msg: Any, payload: bytes | None) -> None:
                self.via_bus = True
                if not self._take_pong(msg):
                    deliver(msg, payload)

            self.bus.register(peer_id, from_bus)

    def came_by_comm(self, msg: Any) -> bool:
        """A message arrived over the comm; an offer there means this page signals over the comm. True if consumed."""
        if isinstance(msg, dict) and msg.get("type") == "offer":
            self.via_bus = False
        return self._take_pong(msg)

    def send(self, msg: dict[str, Any], payload: bytes | None = None) -> bool:
        """Send over the bus if that is the current path; False means: use the comm."""
        return bool(
            self.via_bus and self.bus is not None and self.peer_id and self.bus.send(self.peer_id, msg, payload)
        )

    @property
    def buffered(self) -> int:
        """Bytes waiting in the bus socket (0 on the comm, where it cannot be known)."""
        return self.bus.buffered if self.via_bus and self.bus is not None else 0

    def detach(self) -> None:
        if self.bus is not None and self.peer_id:
            self.bus.unregister(self.peer_id)

    # --- signaling round trips (benchmarks, diagnostics) ------------------------------------------
    def _take_pong(self, msg: Any) -> bool:
        if not (isinstance(msg, dict) and msg.get("type") == "pong"):
            return False
        fut = self._pongs.pop(msg.get("seq", -1), None) if isinstance(msg.get("seq"), int) else None
        if fut is None:
            return False
        fut.get_loop().call_soon_threadsafe(_resolve, fut, time.perf_counter())
        return True

    async def ping(self, send: Callable[[dict[str, Any]], None], timeout: float = 5.0) -> float:
        """One signaling round trip kernel -> browser -> kernel on the current path, in ms.

        ``send`` is the widget's signal sender; the browser answers ``ping`` with ``pong`` on its own path.
        """
        loop = asyncio.get_running_loop()
        seq = next(self._seq)
        fut: asyncio.Future[float] = loop.create_future()
        self._pongs[seq] = fut
        t0 = time.perf_counter()
        engine = get_engine()
        if engine.in_engine():
            send(protocol.ping(seq, t0 * 1000))
        else:
            engine.call_soon(send, protocol.ping(seq, t0 * 1000))
        try:
            t1 = await asyncio.wait_for(fut, timeout)
        finally:
            self._pongs.pop(seq, None)
        return (t1 - t0) * 1000


def _resolve(fut: asyncio.Future[float], t: float) -> None:
    if not fut.done():
        fut.set_result(t)
