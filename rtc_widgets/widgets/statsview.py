"""StatsView: live uPlot charts of one or more peers' stats, one row per peer.

The rows come from the same :class:`~rtc_widgets.stats.PeerStats` samples as ``to_dataframe()``. Each view first asks
for a snapshot of what is kept, then receives incremental updates: binary float64 columns (``{seq, t, side, one
column per metric}``, NaN where a sample lacks a metric) batched every ``viewUpdateMs`` at most, sent from the
engine thread so charts keep moving while a cell runs synchronous code.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets
import numpy as np
import traitlets as t

from ..protocol import DEFAULTS
from ..stats import PeerStats, Sample

STATIC = Path(__file__).resolve().parent.parent / "static"
CHARTS = ("rtt", "bitrate", "messages", "fps", "loss", "timeline")
_UPDATE_S = DEFAULTS["stats"]["viewUpdateMs"] / 1000
_SIDE = {"browser": 0.0, "kernel": 1.0}


def encode_rows(samples: list[Sample]) -> tuple[list[str], bytes]:
    """Samples as one float64 block, column-major: seq, t, side (0 browser, 1 kernel), then one column per metric."""
    names = sorted({k for s in samples for k in s.metrics})
    block = np.full((3 + len(names), len(samples)), math.nan, dtype="<f8")
    index = {name: 3 + i for i, name in enumerate(names)}
    for j, s in enumerate(samples):
        block[0, j], block[1, j], block[2, j] = s.seq, s.t, _SIDE.get(s.side, 2.0)
        for k, v in s.metrics.items():
            block[index[k], j] = v
    return names, block.tobytes()


def _source_stats(source: Any) -> PeerStats:
    stats = source if isinstance(source, PeerStats) else getattr(source, "stats", None)
    if not isinstance(stats, PeerStats):
        raise TypeError(f"StatsView takes widgets or PeerStats, not {type(source).__name__}")
    return stats


class StatsView(anywidget.AnyWidget):
    """Live charts of peers' stats: RTT, bitrate in/out, data-channel messages/s, fps, loss & jitter, states.

    ::

        StatsView(cam, ch)                         # one row per peer
        StatsView(ch, window=30, charts=["rtt", "bitrate"])
        StatsView(*rtc_widgets.load_session("run.json"))   # replot a saved session
    """

    _esm = STATIC / "statsview.js"
    _kind = t.Unicode("statsview").tag(sync=True)

    peers = t.List(t.Unicode(), read_only=True, help="Names of the peers shown, one chart row each.").tag(sync=True)
    window = t.Float(
        60.0, min=5.0, max=DEFAULTS["stats"]["windowS"], help="Seconds of history shown (the view can change it)."
    ).tag(sync=True)
    charts = t.List(
        t.Enum(CHARTS),
        list(CHARTS),
        help="Charts shown, of: rtt, bitrate, messages, fps, loss, timeline. Charts without data stay hidden.",
    ).tag(sync=True)
    live = t.Bool(True, read_only=True, help="False for a loaded session: the x axis ends at its last sample.").tag(
        sync=True
    )
    updates_sent = t.Int(0, read_only=True, help="Incremental updates sent to the views so far.")

    def __init__(self, *sources: Any, window: float = 60.0, charts: list[str] | None = None, **kwargs: Any) -> None:
        stats = [_source_stats(s) for s in sources]
        if not stats:
            raise ValueError("StatsView needs at least one widget (or PeerStats) to show")
        super().__init__(window=window, charts=list(charts or CHARTS), **kwargs)
        self._stats = stats
        self._lock = threading.Lock()
        self._pending: list[list[Sample]] = [[] for _ in stats]
        self._events_sent: list[float] = [0.0 for _ in stats]
        self._last_flush = 0.0
        self.set_trait("peers", [s.name for s in stats])
        # a loaded session is not registered: nothing will be added to it
        self.set_trait("live", any(s in _live() for s in stats))
        self._listeners = []
        for i, s in enumerate(stats):
            fn = self._listener(i)
            s.add_listener(fn)
            self._listeners.append((s, fn))
        self.on_msg(self._on_view_msg)

    def _listener(self, index: int) -> Any:
        def on_sample(_stats: PeerStats, sample: Sample) -> None:
            with self._lock:
                self._pending[index].append(sample)
                due = time.monotonic() - self._last_flush >= _UPDATE_S
            if due:
                self.flush()

        return on_sample

    def flush(self) -> None:
        """Send what is pending to every view (called on the engine thread as samples arrive)."""
        with self._lock:
            self._last_flush = time.monotonic()
            batches, self._pending = self._pending, [[] for _ in self._stats]
            for i, rows in enumerate(batches):
                if rows or self._new_events(i):
                    self._send_rows("rows", i, rows, None)
                    self.set_trait("updates_sent", self.updates_sent + 1)

    def _new_events(self, index: int) -> list[list[Any]]:
        since = self._events_sent[index]
        return [[e["time"], e["side"], e["kind"], e["state"]] for e in self._stats[index].events if e["time"] > since]

    def _send_rows(self, kind: str, index: int, rows: list[Sample], view: str | None) -> None:
        events = (
            self._new_events(index)
            if kind == "rows"
            else [[e["time"], e["side"], e["kind"], e["state"]] for e in self._stats[index].events]
        )
        if events and kind == "rows":  # a snapshot's events go to one view only; the others still need them
            self._events_sent[index] = max(self._events_sent[index], max(e[0] for e in events))
        names, block = encode_rows(rows)
        content: dict[str, Any] = {"type": kind, "peer": index, "names": names, "n": len(rows), "events": events}
        if view is not None:
            content["view"] = view
        if self.comm is not None and not getattr(self.comm, "_closed", False):
            ipywidgets.Widget.send(self, content, [block])

    def _on_view_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        # A new view wants everything kept so far; rows it then gets twice are dropped by seq.
        if not isinstance(content, dict) or content.get("type") != "hello":
            return
        view = str(content.get("view", ""))[:64]
        with self._lock:
            for i, stats in enumerate(self._stats):
                self._send_rows("snapshot", i, stats.samples(), view)

    def close(self) -> None:
        for stats, fn in getattr(self, "_listeners", []):
            stats.remove_listener(fn)
        self._listeners = []
        super().close()


def _live() -> list[PeerStats]:
    from ..stats import all_stats

    return all_stats()


__all__ = ["CHARTS", "StatsView", "encode_rows"]
