"""The kernel's half of the stats: state events of the aiortc connection and a sampler task, on the engine loop.

aiortc's own ``getStats()`` is minimal (no data-channel stats, no fps, jitter in timestamp units), so the sampler
computes what a user asks for from what the kernel knows: transport bytes of every DTLS transport, the counters of
every channel and sink (messages, frames, drops), RTP loss and jitter per kind, and the round trip of a ping on the
control data channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from . import protocol
from .protocol import LIMITS, ProtocolError
from .stats import PeerStats

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

    from .peer import KernelPeer

log = logging.getLogger("rtc_widgets")

#: Cumulative endpoint counters turned into per-second rates: counter -> (metric, factor).
_RATES = {
    "messages_sent": ("messages_out_per_s", 1.0),
    "messages_received": ("messages_in_per_s", 1.0),
    "bytes_sent": ("channel_out_kbps", 8 / 1000),
    "bytes_received": ("channel_in_kbps", 8 / 1000),
    "frames_received": ("fps_in", 1.0),
    "frames_dropped": ("frames_dropped_per_s", 1.0),
}
#: Endpoint counters recorded as they are.
_RAW = ("frames_received", "frames_dropped", "samples_dropped", "messages_dropped", "frame_width", "frame_height")
_CLOCK = {"video": 90000.0, "audio": 48000.0}


def watch(stats: PeerStats, pc: RTCPeerConnection) -> None:
    """Record the aiortc connection's state transitions as ``kernel`` events (call right after creating it)."""
    dtls_seen: set[int] = set()

    def dtls_transports() -> list[Any]:
        found = []
        sctp = pc.sctp
        if sctp is not None:
            found.append(sctp.transport)
        for tr in pc.getTransceivers():
            found.append(tr.receiver.transport)
        return [t for t in found if t is not None]

    def watch_dtls() -> None:
        for transport in dtls_transports():
            if id(transport) in dtls_seen:
                continue
            dtls_seen.add(id(transport))
            stats.event("kernel", "dtls", str(transport.state))
            transport.on("statechange", lambda tr=transport: stats.event("kernel", "dtls", str(tr.state)))

    def on_signaling() -> None:
        stats.event("kernel", "signaling", pc.signalingState)
        watch_dtls()

    stats.event("kernel", "signaling", pc.signalingState)
    stats.event("kernel", "gathering", pc.iceGatheringState)
    stats.event("kernel", "ice", pc.iceConnectionState)
    stats.event("kernel", "connection", pc.connectionState)
    pc.on("signalingstatechange", on_signaling)
    pc.on("icegatheringstatechange", lambda: stats.event("kernel", "gathering", pc.iceGatheringState))
    pc.on("iceconnectionstatechange", lambda: stats.event("kernel", "ice", pc.iceConnectionState))
    pc.on("connectionstatechange", lambda: stats.event("kernel", "connection", pc.connectionState))


def control_listener(stats: PeerStats) -> Any:
    """A second listener on the control channel that records ``stats`` messages (ping/pong are not ours; a bad
    message is reported by the channel's own listener, so it is ignored here)."""

    def on_message(raw: str | bytes) -> None:
        if not isinstance(raw, str) or '"stats"' not in raw:
            return
        with contextlib.suppress(ProtocolError):
            msg = protocol.parse(raw, max_bytes=LIMITS["maxControlBytes"])
            if msg["type"] == "stats":
                stats.add_browser_message(msg)

    return on_message


def _transport_bytes(pc: RTCPeerConnection) -> tuple[int, int] | None:
    seen: set[int] = set()
    sent = received = 0
    found = False
    transports = [pc.sctp.transport] if pc.sctp is not None else []
    transports += [tr.receiver.transport for tr in pc.getTransceivers()]
    for transport in transports:
        if transport is None or id(transport) in seen:
            continue
        seen.add(id(transport))
        with contextlib.suppress(Exception):  # private aiortc API: optional
            for report in transport._get_stats().values():
                if getattr(report, "type", "") == "transport":
                    sent += report.bytesSent
                    received += report.bytesReceived
                    found = True
    return (sent, received) if found else None


def _audio_level(endpoints: list[Any], seconds: float) -> float | None:
    """RMS (0..1) of the newest ``seconds`` of audio in the sinks' rings; None without audio."""
    levels = []
    for endpoint in endpoints:
        sink = getattr(endpoint, "sink", None)
        ring = getattr(sink, "ring", None)
        if ring is None or not getattr(ring, "written", 0):
            continue
        # at most half the ring: a write racing this read cannot overtake it (which would count as a drop)
        n = min(ring.capacity // 2, max(1, int(getattr(sink, "sample_rate", 48000) * seconds)))
        chunk, _ = ring.read(max(0, ring.written - n))
        if len(chunk):
            levels.append(float(np.sqrt(np.mean(np.square(chunk, dtype=np.float64)))))
    return max(levels) if levels else None


def kernel_selected_pair(pc: RTCPeerConnection) -> dict[str, Any] | None:
    """The pair aioice nominated, from the kernel's side (used until the browser reports its own view)."""
    with contextlib.suppress(Exception):  # private aioice API: optional
        dtls = pc.sctp.transport if pc.sctp is not None else pc.getTransceivers()[0].receiver.transport
        pair = dtls.transport._connection._nominated.get(1)
        if pair is not None:

            def end(c: Any) -> dict[str, Any]:
                return {"type": c.type, "protocol": c.transport.lower(), "address": c.host, "port": c.port}

            return {"local": end(pair.local_candidate), "remote": end(pair.remote_candidate), "state": "succeeded"}
    return None


async def _rtp(pc: RTCPeerConnection) -> dict[str, tuple[int, int, float]]:
    """Per kind: (packets received, packets lost, jitter in ms) of the streams the kernel receives."""
    out: dict[str, tuple[int, int, float]] = {}
    if not pc.getReceivers():
        return out
    with contextlib.suppress(Exception):
        report = await pc.getStats()
        for s in report.values():
            if getattr(s, "type", "") == "inbound-rtp":
                got, lost, jit = out.get(s.kind, (0, 0, 0.0))
                jitter_ms = s.jitter / _CLOCK.get(s.kind, 90000.0) * 1000.0
                out[s.kind] = (got + s.packetsReceived, lost + s.packetsLost, max(jit, jitter_ms))
    return out


class KernelSampler:
    """Samples the kernel end every ``stats.interval_ms``; run as one of the peer's tasks."""

    def __init__(self, stats: PeerStats) -> None:
        self.stats = stats
        self._prev: dict[str, float] = {}
        self._prev_t = 0.0
        self._probe: asyncio.Task[Any] | None = None
        self._probe_rtt: float | None = None

    async def run(self, peer: KernelPeer) -> None:
        try:
            loop = asyncio.get_running_loop()
            last = loop.time()
            while not peer.closed:
                # wake at least every 250 ms: a new interval takes effect at once, not after a long old one
                due = last + max(self.stats.interval_ms, 50) / 1000.0
                await asyncio.sleep(min(max(0.0, due - loop.time()), 0.25))
                if loop.time() < due:
                    continue
                last = loop.time()
                relaying = bool(getattr(peer, "relaying", False))
                if (peer.pc is None and not relaying) or peer.state.get("connection_state") != "connected":
                    self._prev = {}
                    continue
                try:
                    await self.sample(peer)
                except Exception:
                    log.exception("rtc_widgets: kernel stats sample failed")
        finally:
            if self._probe is not None:  # ended with the peer: no task of ours outlives close()
                self._probe.cancel()
                await asyncio.gather(self._probe, return_exceptions=True)

    async def _ping(self, peer: KernelPeer, timeout: float) -> None:
        with contextlib.suppress(Exception):
            self._probe_rtt = (await peer.ping(1, timeout))[0]

    async def sample(self, peer: KernelPeer) -> None:
        """One sample. On the relay transport (no RTCPeerConnection) the connection figures are the relay's: bytes
        through the Jupyter server, the probe over the signaling path, capture-to-kernel latency of media."""
        pc = peer.pc
        relay_stats = getattr(peer, "relay_stats", None)
        if pc is None and relay_stats is None:
            return
        # the probe runs beside the sampler, so a slow pong never delays a sample
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self._ping(peer, max(1.0, self.stats.interval_ms / 1000 * 4)))
        if pc is not None and self.stats.selected_pair is None:
            self.stats.set_selected_pair(kernel_selected_pair(pc))
        now = time.time()
        cur: dict[str, float] = {}
        # every channel and track receiver of the peer (channels only before media widgets existed)
        endpoints = getattr(peer, "_endpoints", None) or list(peer.channels.values())
        for endpoint in endpoints:
            for key, value in endpoint.counters().items():
                if isinstance(value, (int, float)):
                    cur[key] = cur.get(key, 0) + value
        level = _audio_level(endpoints, self.stats.interval_ms / 1000.0)
        lags = [e.queue_lag() for e in endpoints if hasattr(e, "queue_lag")]
        tb = _transport_bytes(pc) if pc is not None else None
        relay: dict[str, float] = relay_stats() if pc is None and relay_stats is not None else {}
        if tb is None and relay:
            tb = int(relay["tx_bytes"]), int(relay["rx_bytes"])
        if tb is not None:
            cur["_tx"], cur["_rx"] = tb
        rtp = await _rtp(pc) if pc is not None else {}
        for kind, (got, lost, _jit) in rtp.items():
            cur[f"_{kind}_got"], cur[f"_{kind}_lost"] = got, lost
        metrics: dict[str, float] = {k: cur[k] for k in _RAW if k in cur}
        for kind, (_got, _lost, jit) in rtp.items():
            metrics[f"{kind}_jitter_ms"] = jit
        if rtp:
            metrics["packets_lost"] = sum(v[1] for v in rtp.values())
        if level is not None:
            metrics["audio_level"] = level
        if lags:
            metrics["queue_lag_ms"] = max(lags) * 1000
        if relay.get("latency_ms") is not None:
            metrics["relay_latency_ms"] = relay["latency_ms"]
        if self._probe_rtt is not None:
            metrics["probe_rtt_ms"], self._probe_rtt = self._probe_rtt, None
        dt = now - self._prev_t
        if self._prev and dt > 0:
            prev = self._prev
            for key, (metric, factor) in _RATES.items():
                if key in cur and key in prev:
                    metrics[metric] = max(0.0, cur[key] - prev[key]) * factor / dt
            if "_tx" in cur and "_tx" in prev:
                metrics["bitrate_out_kbps"] = max(0.0, cur["_tx"] - prev["_tx"]) * 8 / 1000 / dt
                metrics["bitrate_in_kbps"] = max(0.0, cur["_rx"] - prev["_rx"]) * 8 / 1000 / dt
            for kind in rtp:
                n_got = cur[f"_{kind}_got"] - prev.get(f"_{kind}_got", 0.0)
                n_lost = max(0.0, cur[f"_{kind}_lost"] - prev.get(f"_{kind}_lost", 0.0))
                if n_got + n_lost > 0:
                    metrics[f"{kind}_loss"] = n_lost / (n_got + n_lost)
        self._prev, self._prev_t = cur, now
        self.stats.add("kernel", metrics, now)


__all__ = ["KernelSampler", "control_listener", "watch"]
