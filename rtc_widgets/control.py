"""The peer's internal control data channel: ping/pong round trips (RTT) between the kernel and the browser."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiortc import RTCDataChannel

from . import protocol
from .protocol import LIMITS, ProtocolError


class Control:
    """Pings over the control channel of the current session; lives on the engine loop."""

    def __init__(self, name: str, on_error: Callable[[ProtocolError], None]) -> None:
        self.name = name
        self._on_error = on_error
        self.dc: RTCDataChannel | None = None
        self._pings: dict[int, asyncio.Future[float]] = {}
        self._seq = 0

    def bind(self, dc: RTCDataChannel) -> None:
        self.dc = dc
        dc.on("message", self._on_message)

    def unbind(self) -> None:
        dc, self.dc = self.dc, None
        for fut in self._pings.values():
            if not fut.done():
                fut.cancel()
        self._pings.clear()
        if dc is not None:
            dc.remove_all_listeners()

    def _on_message(self, raw: str | bytes) -> None:
        try:
            msg = protocol.parse(raw, max_bytes=LIMITS["maxControlBytes"])
        except ProtocolError as exc:
            self._on_error(exc)
            return
        if msg["type"] == "pong":
            self.resolve_pong(msg["seq"])
        elif msg["type"] == "ping" and self.dc is not None:
            self.dc.send(protocol.dumps(protocol.pong(msg["seq"], msg["t"])))

    def resolve_pong(self, seq: int) -> None:
        fut = self._pings.pop(seq, None)
        if fut is not None and not fut.done():
            fut.set_result(time.perf_counter())

    async def ping(self, n: int, timeout: float = 5.0) -> list[float]:
        """Round trips over the control channel, one after another; milliseconds."""
        dc = self.dc
        if dc is None or dc.readyState != "open":
            raise ConnectionError(f"{self.name} is not connected: await wait_connected() first")
        loop = asyncio.get_running_loop()
        rtts: list[float] = []
        for _ in range(n):
            self._seq += 1
            seq = self._seq
            fut: asyncio.Future[float] = loop.create_future()
            self._pings[seq] = fut
            t0 = time.perf_counter()
            dc.send(protocol.dumps(protocol.ping(seq, round(t0 * 1000, 3))))
            try:
                t1 = await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                self._pings.pop(seq, None)
                raise TimeoutError(f"no pong within {timeout} s: the browser end stopped answering") from None
            rtts.append((t1 - t0) * 1000.0)
        return rtts
