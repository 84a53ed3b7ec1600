"""Stats as data (ARCHITECTURE.md, decision 7): one bounded time series per peer, fed by both ends.

- The browser samples ``getStats()`` every ``stats_interval`` ms and sends compact ``stats`` messages (protocol.json)
  over the control data channel -- straight to the engine thread, so samples keep landing while a cell runs
  synchronous code -- or over the comm before that channel is open.
- The kernel samples what aiortc and rtc_widgets know (:mod:`rtc_widgets.kstats`): transport bytes, sink counters,
  RTP loss and jitter, and a control-channel ping.

Both land in a :class:`PeerStats`: a ring bounded by a time window (default 10 minutes) and a row cap, plus state
events, parsed SDP and ICE candidates. :meth:`PeerStats.to_dataframe` and the StatsView plots read the same rows.
Browser timestamps are mapped onto the kernel clock (offset = smallest receive delay seen), so both sides share one
time axis even when the browser runs on another machine.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from .protocol import DEFAULTS, LIMITS, SPEC
from .sdp import SdpPair, parse_candidate

log = logging.getLogger("rtc_widgets")


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError(
            "stats as a DataFrame need pandas, which is not installed: pip install 'rtc_widgets[stats]' (or pandas)"
        ) from None
    return pandas


_S = DEFAULTS["stats"]
#: name -> (unit, side, meaning): the documented metric names of the ``metric`` column.
METRICS: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in SPEC["statsMetrics"].items() if k[0] != "$"}
SIDES = ("browser", "kernel")
EVENT_KINDS = ("signaling", "gathering", "ice", "dtls", "connection")

#: Columns of :meth:`PeerStats.to_dataframe` (long format: a row per sample and metric).
DATAFRAME_COLUMNS = ("time", "peer", "side", "metric", "value", "unit")
#: Columns of :meth:`PeerStats.events_dataframe`.
EVENT_COLUMNS = ("time", "peer", "side", "kind", "state")


class Sample(NamedTuple):
    """One sample: ``t`` (kernel clock, seconds since the epoch), ``side`` and its metrics."""

    seq: int
    t: float
    side: str
    metrics: dict[str, float]


class Event(NamedTuple):
    """A state transition: ``kind`` is one of signaling, gathering, ice, dtls, connection."""

    t: float
    side: str
    kind: str
    state: str


Listener = Callable[["PeerStats", Sample], None]

_registry: weakref.WeakValueDictionary[str, PeerStats] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


def all_stats() -> list[PeerStats]:
    """Every live peer's stats, oldest first (what :func:`rtc_widgets.export_session` saves)."""
    with _registry_lock:
        return sorted(_registry.values(), key=lambda s: s.created)


class PeerStats:
    """``widget.stats``: the bounded time series, state events, SDP and ICE candidates of one peer.

    Written on the engine thread, readable from any thread (reads copy under a lock).
    """

    def __init__(
        self,
        name: str,
        peer_id: str = "",
        *,
        window_s: float = _S["windowS"],
        interval_ms: int = _S["intervalMs"],
        register: bool = True,
    ) -> None:
        self.name = name
        self.peer_id = peer_id
        self.created = time.time()
        self._lock = threading.Lock()
        self._samples: deque[Sample] = deque()
        self._events: deque[Event] = deque(maxlen=_S["maxEvents"])
        self._listeners: list[Listener] = []
        self._seq = 0
        self._offset: float | None = None  # kernel clock - browser clock (+ smallest delivery delay)
        self.window_s = float(window_s)
        self.interval_ms = int(interval_ms)
        self.sdp = SdpPair()
        self._remote_trickled: list[dict[str, Any]] = []
        self.selected_pair: dict[str, Any] | None = None
        self._browser_pair: dict[str, Any] | None = None
        self.on_inspector: Callable[[dict[str, Any]], None] | None = None
        if register:
            with _registry_lock:
                _registry[f"{peer_id or id(self)}"] = self

    # --- bounds -----------------------------------------------------------------------------------
    @property
    def window_s(self) -> float:
        """How many seconds of samples are kept (the newest ones); older samples are dropped."""
        return self._window_s

    @window_s.setter
    def window_s(self, value: float) -> None:
        self._window_s = max(float(_S["minWindowS"]), float(value))

    @property
    def max_samples(self) -> int:
        """Hard cap on kept samples, whatever the clocks say: the window at the fastest rate, both sides."""
        return 2 * math.ceil(self._window_s * 1000 / _S["minIntervalMs"]) + 16

    def _prune(self, now: float) -> None:
        samples, cap, oldest = self._samples, self.max_samples, now - self._window_s
        while samples and (len(samples) > cap or samples[0].t < oldest):
            samples.popleft()

    # --- writers (engine thread) ------------------------------------------------------------------
    def browser_time(self, t_ms: float) -> float:
        """A browser timestamp (ms since the epoch, browser clock) on the kernel clock, in seconds."""
        t = t_ms / 1000.0
        delay = time.time() - t
        if self._offset is None or delay < self._offset:
            self._offset = delay
        return t + self._offset

    def add(self, side: str, metrics: dict[str, float], t: float | None = None) -> Sample | None:
        """Record one sample (kernel clock ``t``, default now); keeps finite numbers only."""
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if not clean:
            return None
        now = time.time()
        with self._lock:
            self._seq += 1
            sample = Sample(self._seq, now if t is None else t, side, clean)
            self._samples.append(sample)
            self._prune(max(now, sample.t))
            listeners = list(self._listeners)
        for fn in listeners:
            try:
                fn(self, sample)
            except Exception:  # a broken view must not stop recording
                log.exception("rtc_widgets: stats listener failed")
        return sample

    def event(self, side: str, kind: str, state: str, t: float | None = None) -> None:
        """Record a state transition (deduplicated: the same state twice in a row is one event)."""
        with self._lock:
            for ev in reversed(self._events):
                if ev.side == side and ev.kind == kind:
                    if ev.state == state:
                        return
                    break
            self._events.append(Event(time.time() if t is None else t, side, kind, state))
        self._publish()

    def add_browser_message(self, msg: dict[str, Any]) -> None:
        """A validated ``stats`` message from the browser: sample, events and selected pair."""
        t = self.browser_time(float(msg["t"]))
        for ev in msg.get("ev", [])[: LIMITS["maxStatsEvents"]]:
            self.event("browser", ev["k"], ev["s"], self.browser_time(float(ev["t"])))
        pair = msg.get("pair")
        if pair is not None and pair != self._browser_pair:
            self._browser_pair = pair
            # the browser's local end is the kernel's remote end
            self.selected_pair = {"local": pair["remote"], "remote": pair["local"], "state": pair.get("state", "")}
            self._publish()
        if msg.get("m"):
            self.add("browser", msg["m"], t)

    def set_selected_pair(self, pair: dict[str, Any] | None) -> None:
        """The kernel's own view of the selected pair (kernel end = ``local``); the browser's report wins."""
        if pair is not None and self._browser_pair is None and pair != self.selected_pair:
            self.selected_pair = pair
            self._publish()

    def new_session(self) -> None:
        """A new offer: forget the previous session's SDP, candidates and clock offset (samples stay)."""
        self.sdp = SdpPair()
        self._remote_trickled = []
        self.selected_pair = None
        self._browser_pair = None
        self._offset = None

    def set_remote_sdp(self, sdp: str) -> None:
        self.sdp.set_remote(sdp)
        self._publish()

    def set_local_sdp(self, sdp: str) -> None:
        self.sdp.set_local(sdp)
        self._publish()

    def remote_candidate(self, text: str) -> None:
        cand = parse_candidate(text)
        if cand is not None and len(self._remote_trickled) < 256:
            self._remote_trickled.append(cand)
            self._publish()

    # --- listeners --------------------------------------------------------------------------------
    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(stats, sample)`` on the engine thread for every new sample."""
        with self._lock:
            self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        with self._lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    def _publish(self) -> None:
        if self.on_inspector is not None:
            try:
                self.on_inspector(self.inspector())
            except Exception:
                log.exception("rtc_widgets: inspector update failed")

    # --- readers ----------------------------------------------------------------------------------
    def samples(self, side: str | None = None) -> list[Sample]:
        """A copy of the kept samples, oldest first (optionally one side only)."""
        with self._lock:
            rows = list(self._samples)
        return rows if side is None else [s for s in rows if s.side == side]

    def __len__(self) -> int:
        return len(self._samples)

    @property
    def latest(self) -> dict[str, Any]:
        """The newest value of every metric of each side, merged: ``{"time": t, "browser.rtt_ms": 1.2, ...}``.

        ``time`` is the newest sample's time (seconds since the epoch); ``{}`` before any sample.
        """
        out: dict[str, Any] = {}
        newest = 0.0
        seen: set[str] = set()
        for sample in reversed(self.samples()):
            if sample.side in seen:
                continue
            seen.add(sample.side)
            newest = max(newest, sample.t)
            for key, value in sample.metrics.items():
                out[f"{sample.side}.{key}"] = value
            if len(seen) == len(SIDES):
                break
        return {"time": newest, **dict(sorted(out.items()))} if out else {}

    @property
    def events(self) -> list[dict[str, Any]]:
        """State transitions, oldest first: ``{"time", "side", "kind", "state"}`` (kind: signaling, gathering,
        ice, dtls, connection; side: browser or kernel)."""
        with self._lock:
            events = sorted(self._events, key=lambda e: e.t)
        return [{"time": e.t, "side": e.side, "kind": e.kind, "state": e.state} for e in events]

    def to_dataframe(self, wide: bool = False) -> Any:
        """The samples as a pandas DataFrame.

        Long format (default), a row per sample and metric, columns ``DATAFRAME_COLUMNS``:
        ``time`` (pandas Timestamp, UTC), ``peer`` (widget name), ``side`` ("browser" or "kernel"), ``metric``
        (see :data:`METRICS`), ``value`` (float), ``unit``. ``wide=True``: a row per sample, columns ``time``,
        ``side`` and one per metric (NaN where a sample lacks it).
        """
        pd = _pandas()
        samples = self.samples()
        if wide:
            rows = [{"time": s.t, "side": s.side, **s.metrics} for s in samples]
            df = pd.DataFrame(rows, columns=None if rows else ["time", "side"])
        else:
            records = [
                (s.t, self.name, s.side, k, v, METRICS.get(k, ("",))[0]) for s in samples for k, v in s.metrics.items()
            ]
            df = pd.DataFrame.from_records(records, columns=list(DATAFRAME_COLUMNS))
            df["value"] = df["value"].astype("float64")
        df["time"] = pd.to_datetime(df["time"].astype("float64"), unit="s", utc=True)
        return df

    def events_dataframe(self) -> Any:
        """:attr:`events` as a DataFrame with columns ``EVENT_COLUMNS``."""
        pd = _pandas()
        df = pd.DataFrame([{"peer": self.name, **e} for e in self.events], columns=list(EVENT_COLUMNS))
        df["time"] = pd.to_datetime(df["time"].astype("float64"), unit="s", utc=True)
        return df

    @property
    def candidates(self) -> dict[str, Any]:
        """``{"local": [...], "remote": [...], "selected": {...} | None}`` from the kernel's point of view: local
        are the kernel's candidates (its answer), remote the browser's (offer and trickle); each has ``type``
        (host, srflx, prflx, relay), ``protocol``, ``address``, ``port``. ``selected`` is the pair ICE chose, as
        the browser's getStats reports it."""
        remote = list(self.sdp.remote.get("candidates", []))
        seen = {(c["address"], c["port"], c["protocol"]) for c in remote}
        for cand in self._remote_trickled:
            if (cand["address"], cand["port"], cand["protocol"]) not in seen:
                remote.append(cand)
        return {
            "local": list(self.sdp.local.get("candidates", [])),
            "remote": remote,
            "selected": self.selected_pair,
        }

    def inspector(self) -> dict[str, Any]:
        """What the inspector panel shows: SDP sections, codecs, candidates, selected pair, last events."""

        def sections(parsed: dict[str, Any]) -> list[dict[str, Any]]:
            return [
                {k: m[k] for k in ("kind", "mid", "direction", "protocol", "codecs")} for m in parsed.get("media", [])
            ]

        return {
            "local": sections(self.sdp.local),
            "remote": sections(self.sdp.remote),
            "candidates": self.candidates,
            "events": self.events[-40:],
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (what :func:`rtc_widgets.export_session` writes for this peer)."""
        return {
            "name": self.name,
            "peer_id": self.peer_id,
            "window_s": self.window_s,
            "interval_ms": self.interval_ms,
            "samples": [[s.t, s.side, s.metrics] for s in self.samples()],
            "events": self.events,
            "sdp": {"local": self.sdp.local_text, "remote": self.sdp.remote_text},
            "remote_candidates": list(self._remote_trickled),
            "selected_pair": self.selected_pair,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PeerStats:
        """Rebuild a (read-only, unregistered) :class:`PeerStats` from :meth:`to_dict` output."""
        stats = cls(str(data["name"]), str(data.get("peer_id", "")), register=False)
        stats.window_s = float(data.get("window_s", _S["windowS"]))
        stats.interval_ms = int(data.get("interval_ms", _S["intervalMs"]))
        for t, side, metrics in data.get("samples", []):
            stats._seq += 1
            stats._samples.append(
                Sample(stats._seq, float(t), str(side), {str(k): float(v) for k, v in metrics.items()})
            )
        for ev in data.get("events", []):
            stats._events.append(Event(float(ev["time"]), str(ev["side"]), str(ev["kind"]), str(ev["state"])))
        sdp = data.get("sdp", {})
        if sdp.get("local"):
            stats.sdp.set_local(sdp["local"])
        if sdp.get("remote"):
            stats.sdp.set_remote(sdp["remote"])
        stats._remote_trickled = list(data.get("remote_candidates", []))
        stats.selected_pair = data.get("selected_pair")
        return stats

    def __repr__(self) -> str:
        return f"<PeerStats {self.name!r}: {len(self)} samples, {len(self._events)} events>"


__all__ = ["DATAFRAME_COLUMNS", "EVENT_COLUMNS", "METRICS", "Event", "PeerStats", "Sample", "all_stats"]
