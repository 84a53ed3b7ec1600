"""Signaling round trips: widget comm (stock, and with the extension's TCP_NODELAY) against the server bus.

Run it as ``.venv/bin/python -m benchmarks.signaling`` (as root). Like the test suite it re-executes itself inside
a private network namespace (``unshare --net`` + ``tests/netns.py``); JupyterLab, Chromium and the kernel talk over
loopback only.

Three JupyterLab servers, one notebook page each (headless Chromium), ``--samples`` sequential round trips each:

- ``stock``: no rtc_widgets extension. Comm RTT: the kernel sends a small custom message to an echo widget, the
  page sends it back over its comm; timed in the cell (perf_counter) from ``send`` to the handler.
  Also "2 messages, 1 answer": the kernel sends two messages back to back and the page answers only the second,
  as when a trait update precedes a message. The first one's ACK is delayed (~40 ms) and, with Nagle on, the
  server holds the second until it comes: this is where TCP_NODELAY matters.
- ``nodelay``: the extension with ``tcp_nodelay=True`` (its default). Comm RTT as above, and bus RTT: a protocol
  ``ping`` from the kernel's engine over the bus websocket to the page's BrowserPeer, which answers ``pong`` over the
  bus; timed from the send to the arrival on the engine thread.
- ``ext-nagle``: the extension with ``tcp_nodelay=False``, to separate NODELAY's effect from the bus's.

On each server also a user-data echo round trip (``DataChannel(echo=True)``: ``send`` -> page -> back to the
``on_message`` callback) over WebRTC and over the relay transport (``relay_after=0``: through the bus, or the comm on
the stock server).

Results: benchmarks/results/signaling.{json,md}. Nothing is asserted: the numbers go in the issue note.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import ensure_namespace

REPO_ROOT = Path(__file__).resolve().parents[1]
HARNESS_DIR = REPO_ROOT / "tests" / "browser"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"

ECHO_SETUP = r"""
import asyncio, time
import anywidget as _aw

class _RtcwEcho(_aw.AnyWidget):
    _esm = (
        "export default { initialize({ model }) {"
        " model.on('msg:custom', (c) => { if (c.echo !== false) model.send(c); }); } };"
    )

_echo = _RtcwEcho()
_echo_state = {"fut": None, "loop": None, "want": None}

def _echo_got(_w, content, _buffers):
    t = time.perf_counter()
    fut, loop = _echo_state["fut"], _echo_state["loop"]
    if fut is not None and (content.get("i"), content.get("j")) == _echo_state["want"]:
        loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(t))

_echo.on_msg(_echo_got)

async def comm_rtt(n, burst=1, timeout=10.0, echo_all=True):
    # send `burst` messages back to back; time until the echo of the LAST one arrives
    loop = asyncio.get_running_loop()
    out = []
    for i in range(n):
        fut = loop.create_future()
        _echo_state.update(fut=fut, loop=loop, want=(i, burst - 1))
        t0 = time.perf_counter()
        for j in range(burst):
            _echo.send({"i": i, "j": j, "echo": echo_all or j == burst - 1, "pad": "rtt-probe-0123456789"})
        t1 = await asyncio.wait_for(fut, timeout)
        out.append((t1 - t0) * 1000)
        await asyncio.sleep(0.005)  # let the earlier echoes of a burst drain
    return out
"""

ECHO_CHANNELS = r"""
from rtc_widgets import DataChannel

async def echo_rtt(ch, n, timeout=10.0):
    # a small text message to the page and back (echo=True), timed in the cell
    loop = asyncio.get_running_loop()
    state = {"fut": None}

    def got(_m):
        fut = state["fut"]
        if fut is not None:
            t = time.perf_counter()
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(t))

    ch.on_message(got)
    out = []
    for i in range(n):
        fut = loop.create_future()
        state["fut"] = fut
        t0 = time.perf_counter()
        ch.send(f"rtt-probe-{i:06d}")
        out.append((await asyncio.wait_for(fut, timeout) - t0) * 1000)
    return out

_wch = DataChannel(label="bench-webrtc", echo=True, relay_after=None)
_rch = DataChannel(label="bench-relay", echo=True, relay_after=0)
_wch.start()
_rch.start()
await _wch.wait_connected(timeout=30)
await _rch.wait_connected(timeout=30)
assert (_wch.transport, _rch.transport) == ("webrtc", "relay"), (_wch.transport, _rch.transport)
"""

BUS_SETUP = r"""
from rtc_widgets import DataChannel
_bch = DataChannel(label="bench")
_bch.start()
await _bch.wait_connected(timeout=30)

async def bus_rtt(n):
    return [await _bch._route.ping(_bch._send_signal) for _ in range(n)]
"""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def summary(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "n": len(s),
        "p50": statistics.median(s),
        "p90": s[int(0.9 * (len(s) - 1))],
        "mean": statistics.fmean(s),
        "p99": s[int(0.99 * (len(s) - 1))],
        "over_20ms": sum(x > 20 for x in s) / len(s),
        "min": s[0],
        "max": s[-1],
    }


def measure(name: str, lab: Any, browser: Any, samples: int, bus: bool) -> dict[str, Any]:
    from harness import Notebook

    nb = Notebook(lab, browser, f"bench-{name}.ipynb")
    try:
        nb.kernel.execute(ECHO_SETUP)
        # the page's widget manager must hold the echo model before timing starts
        nb.kernel.execute("await comm_rtt(5)", 60)
        out: dict[str, Any] = {}
        nb.kernel.execute(f"_r = await comm_rtt({samples})", 300)
        out["comm"] = summary(nb.kernel.eval("_r"))
        log(f"{name}: comm RTT p50 {out['comm']['p50']:.2f} ms")
        nb.kernel.execute(f"_r = await comm_rtt({samples}, burst=3)", 300)
        out["comm, 3-message burst"] = summary(nb.kernel.eval("_r"))
        log(f"{name}: comm burst RTT p50 {out['comm, 3-message burst']['p50']:.2f} ms")
        # only the last of two messages is answered: the first one's ACK is delayed, and Nagle holds the second
        nb.kernel.execute(f"_r = await comm_rtt({samples}, burst=2, echo_all=False)", 300)
        out["comm, 2 messages, 1 answer"] = summary(nb.kernel.eval("_r"))
        log(f"{name}: comm 2-message RTT p50 {out['comm, 2 messages, 1 answer']['p50']:.2f} ms")
        nb.kernel.execute(ECHO_CHANNELS, 90)
        for key, var in (("data echo, webrtc", "_wch"), ("data echo, relay", "_rch")):
            nb.kernel.execute(f"await echo_rtt({var}, 5)\n_e = await echo_rtt({var}, {samples})", 300)
            out[key] = summary(nb.kernel.eval("_e"))
            log(f"{name}: {key} RTT p50 {out[key]['p50']:.2f} ms")
        if bus:
            nb.kernel.execute(BUS_SETUP, 90)
            assert nb.kernel.eval("_bch._bus") is True, "the kernel did not get the bus"
            nb.kernel.execute("await bus_rtt(5)")
            nb.kernel.execute(f"_b = await bus_rtt({samples})", 300)
            out["bus"] = summary(nb.kernel.eval("_b"))
            log(f"{name}: bus RTT p50 {out['bus']['p50']:.2f} ms")
        return out
    finally:
        nb.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    ensure_namespace("benchmarks.signaling", sys.argv[1:])
    sys.path.insert(0, str(HARNESS_DIR))
    from buslab import ExtLabServer
    from harness import chromium_executable, merged_chromium_args
    from playwright.sync_api import sync_playwright

    configs = {
        "stock": {"extension": False},
        "nodelay": {"extension": True},
        "ext-nagle": {"extension": True, "config": {"RtcWidgetsApp": {"tcp_nodelay": False}}},
    }
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rtcw-bench-") as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_executable(), args=merged_chromium_args(), chromium_sandbox=False, headless=True
        )
        for name, kw in configs.items():
            lab = ExtLabServer(Path(tmp) / name, **kw)
            lab.start()
            try:
                results[name] = measure(name, lab, browser, args.samples, bus=kw["extension"])
            finally:
                lab.stop()
        browser.close()
    meta = {
        "samples": args.samples,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "signaling.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    rows = [
        "| server | path | p50 ms | p90 ms | p99 ms | mean ms | > 20 ms | min ms | max ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        for path, s in res.items():
            rows.append(
                f"| {name} | {path} | {s['p50']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} | {s['mean']:.2f} "
                f"| {s['over_20ms']:.0%} | {s['min']:.2f} | {s['max']:.2f} |"
            )
    table = "\n".join(rows)
    (RESULTS_DIR / "signaling.md").write_text(
        "# Signaling round trips (kernel -> browser -> kernel)\n\n"
        f"{args.samples} sequential samples each, headless Chromium, JupyterLab and kernel on loopback, "
        f"{meta['cpus']} CPUs, {meta['date']}.\n\n{table}\n"
    )
    print(table)


if __name__ == "__main__":
    main()
