"""Save every peer's stats to one JSON file and load it back, to share a run or replot it later.

::

    rtc_widgets.export_session("run.json")          # all live peers: samples, events, SDP, candidates
    peers = rtc_widgets.load_session("run.json")    # a list of PeerStats (read-only)
    StatsView(*peers)                               # the same charts, ending at the last sample
    peers[0].to_dataframe()
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ._version import __version__
from .stats import PeerStats, all_stats

FORMAT = "rtc_widgets.session"
FORMAT_VERSION = 1


def export_session(path: str | os.PathLike[str], peers: list[Any] | None = None) -> Path:
    """Write ``peers`` (widgets or PeerStats; default: every live peer of this kernel) to ``path`` as JSON.

    Returns the path. The file holds what each peer's window kept: samples, state events, both SDPs and the
    ICE candidates (with addresses: mind that before sharing it).
    """
    stats = all_stats() if peers is None else [p if isinstance(p, PeerStats) else p.stats for p in peers]
    doc = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "rtc_widgets": __version__,
        "exported": time.time(),
        "peers": [s.to_dict() for s in stats],
    }
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":"), allow_nan=False), encoding="utf-8")
    tmp.replace(out)
    return out


def load_session(path: str | os.PathLike[str]) -> list[PeerStats]:
    """Read a file written by :func:`export_session`; returns one :class:`PeerStats` per peer, in saved order."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path} is not an rtc_widgets session file (written by rtc_widgets.export_session)")
    if doc.get("version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written by a newer rtc_widgets ({doc.get('rtc_widgets')}); upgrade rtc_widgets to read it"
        )
    return [PeerStats.from_dict(p) for p in doc.get("peers", [])]


__all__ = ["export_session", "load_session"]
