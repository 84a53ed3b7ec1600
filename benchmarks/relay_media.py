"""Relay benchmark: camera video (640x480@30) and microphone audio through the Jupyter server instead of WebRTC.

Run as root: ``.venv/bin/python -m benchmarks.relay_media``. Like the test suite it re-executes itself inside a
private network namespace (``unshare --net`` + ``tests/netns.py``); nothing leaves the machine.

JupyterLab servers with the rtc_widgets server extension on (the relay rides the bus, read on the kernel's engine
thread) and off (the relay rides the widget comm, read on the kernel's main thread), headless Chromium playing a
textured 640x480@30 y4m (a colour per second under a moving grain, so the encoders work as hard as with a real
camera) and a 440 Hz wav, and the page's kernel (``tests/browser/harness.py``, ``tests/browser/buslab.py``).
``Camera(width=640, height=480, fps=30, relay_after=0, relay_codec=...)`` forces the relay. Scenarios, each one
widget started without a view, a warm-up, then a window of ``--seconds`` during which the harness only sleeps (the
kernel idles: over the comm a busy cell would stop the relay):

- ``webrtc``: the same camera over WebRTC (``relay_after=None``), the baseline for fps and CPU;
- ``relay bus h264 / vp8 / jpeg`` and ``relay comm h264 / jpeg``;
- ``audio relay bus opus``: ``Microphone(relay_after=0)``, samples per second and CPU.

Per scenario: frames per second the kernel's relay track received (``frames_received``) and decoded, and what
reached the Camera's sink; capture-to-decoded latency p50/p95/max (the page's ``Date.now()`` at capture against the
kernel's ``time.time()`` when PyAV has decoded the frame; same machine, same clock) from every sample of the window
(the track's ``latency_ms`` deque is replaced by one that also records each sample); the page sender's frames sent
and dropped (dropped = flow control: the kernel's acks fell more than the window behind, or the socket was full,
so the page skipped the frame before encoding it) and bytes (-> kbit/s); the page's ack round trip (sampled every
0.5 s); CPU of the kernel process (every thread, ``/proc/<pid>/stat``), of the Jupyter server (which forwards the
bus) and of Chromium (every Chromium process in this network namespace) as % of one core, and the whole machine's
busy % (other people's work shows up there). Results: benchmarks/results/relay_media.{json,md}.
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

from .common import HARNESS_DIR, RESULTS_DIR, ensure_namespace, machine_busy, process_cpu_seconds

WIDTH, HEIGHT, FPS = 640, 480, 30


def log(msg: str) -> None:
    print(f"[relay-bench] {msg}", flush=True)


def chromium_cpu_seconds() -> float:
    """CPU seconds of every Chromium process in this network namespace (others' browser tests run in their own)."""
    ours = os.readlink("/proc/self/ns/net")
    total = 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if "chrom" not in (d / "comm").read_text() or os.readlink(d / "ns" / "net") != ours:
                continue
        except OSError:
            continue
        total += process_cpu_seconds(int(d.name))
    return total


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


#: Executed in the kernel once: a deque for RelayTrack.latency_ms that also keeps every sample with its time.
KERNEL_SETUP = """
import collections, os, time
from rtc_widgets import Camera, Microphone

class _LatencyRecorder(collections.deque):
    def __init__(self, record, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.record = record

    def append(self, x):
        super().append(x)
        self.record.append((time.time(), x))

def _record_latency(widget, kind):
    track = widget.peer._relay_tracks[kind]
    record = []
    track.latency_ms = _LatencyRecorder(record, track.latency_ms, maxlen=track.latency_ms.maxlen)
    return record
"""

#: The page's relay senders (codec, counters, ack RTT), or its WebRTC outbound-rtp video stats.
PAGE_JS = """async pid => {
  const p = globalThis.rtcWidgets.peers.get(pid);
  const out = { relay: {}, rtp: null };
  for (const [kind, s] of p.relayMedia?.senders ?? [])
    out.relay[kind] = { codec: s.codec, ackRttMs: s.ackRttMs ?? null, ...s.counters };
  if (p.pc) {
    const stats = await p.pc.getStats();
    stats.forEach((s) => {
      if (s.type === "outbound-rtp" && s.kind === "video") out.rtp = {
        framesSent: s.framesSent, bytesSent: s.bytesSent, framesEncoded: s.framesEncoded,
        frameWidth: s.frameWidth, frameHeight: s.frameHeight,
        encoderImplementation: s.encoderImplementation, qualityLimitationReason: s.qualityLimitationReason };
    });
  }
  return out;
}"""


class Meter:
    """CPU of the kernel, the server, Chromium and the machine over a window."""

    def __init__(self, kernel_pid: int, server_pid: int) -> None:
        self.pids = {"kernel": kernel_pid, "server": server_pid}

    def read(self) -> dict[str, float]:
        busy, total = machine_busy()
        out = {name: process_cpu_seconds(pid) for name, pid in self.pids.items()}
        out.update(chromium=chromium_cpu_seconds(), busy=busy, total=total, t=time.monotonic())
        return out

    @staticmethod
    def diff(a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
        wall = b["t"] - a["t"]
        pct = {f"{k}_cpu_pct": round(100 * (b[k] - a[k]) / wall, 1) for k in ("kernel", "server", "chromium")}
        return {
            "wall_s": round(wall, 3),
            **pct,
            "machine_busy_pct": round(100 * (b["busy"] - a["busy"]) / max(1, b["total"] - a["total"]), 1),
        }


def window(nb: Any, meter: Meter, seconds: float, kernel_expr: str, pid: str, record: str | None) -> dict[str, Any]:
    """Counters at both ends of ``seconds`` of harness-side sleeping; the page's ack RTT sampled every 0.5 s."""
    k0 = nb.kernel.eval(kernel_expr)
    p0 = nb.page.evaluate(PAGE_JS, pid)
    c0, wall0, load0 = meter.read(), time.time(), os.getloadavg()[0]
    rtts: list[float] = []
    while time.monotonic() - c0["t"] < seconds:
        time.sleep(0.5)
        s = nb.page.evaluate(PAGE_JS, pid)["relay"].get("video")
        if s and s.get("ackRttMs"):
            rtts.append(float(s["ackRttMs"]))
    c1, wall1 = meter.read(), time.time()
    p1 = nb.page.evaluate(PAGE_JS, pid)
    k1 = nb.kernel.eval(kernel_expr)
    m = Meter.diff(c0, c1)
    m["load_1min"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    wall = m["wall_s"]
    m["kernel_rate"] = {key: round((k1[key] - k0[key]) / wall, 2) for key in k0 if isinstance(k0[key], int | float)}
    m["kernel_end"] = k1
    m["page_end"] = p1
    for kind in ("video", "audio"):
        s0, s1 = p0["relay"].get(kind), p1["relay"].get(kind)
        if s0 and s1:
            m[f"page_{kind}"] = {
                key: round((s1[key] - s0[key]) / wall, 2)
                for key in s0
                if isinstance(s0[key], int | float) and key != "ackRttMs"
            }
    if p0["rtp"] and p1["rtp"]:
        m["page_rtp"] = {
            key: round((p1["rtp"][key] - p0["rtp"][key]) / wall, 2)
            for key in ("framesSent", "framesEncoded", "bytesSent")
            if isinstance(p0["rtp"].get(key), int | float)
        }
    if rtts:
        m["ack_rtt_ms"] = {"p50": round(statistics.median(rtts), 1), "max": round(max(rtts), 1), "n": len(rtts)}
    if record:
        lat = nb.kernel.eval(f"[x for t, x in {record} if {wall0} <= t <= {wall1}]")
        m["latency_ms"] = {
            "n": len(lat),
            "p50": round(percentile(lat, 0.5) or 0, 1) if lat else None,
            "p95": round(percentile(lat, 0.95) or 0, 1) if lat else None,
            "max": round(max(lat), 1) if lat else None,
        }
    return m


def video_scenario(nb: Any, meter: Meter, args: argparse.Namespace, name: str, codec: str | None) -> dict[str, Any]:
    k = nb.kernel
    if codec is None:
        k.execute(
            f"cam = Camera(width={WIDTH}, height={HEIGHT}, fps={FPS}, relay_after=None)\ncam.start()\n"
            "await cam.wait_connected(timeout=30)",
            60,
        )
        expr = "dict(sink=cam.sink.frames_received, size=[cam.sink.width, cam.sink.height], transport=cam.transport)"
        record = None
    else:
        k.execute(
            f"cam = Camera(width={WIDTH}, height={HEIGHT}, fps={FPS}, relay_after=0, relay_codec={codec!r})\n"
            "cam.start()\nawait cam.wait_connected(timeout=30)\nlat = _record_latency(cam, 'video')",
            60,
        )
        expr = (
            "dict(cam.peer._relay_tracks['video'].counters(), sink=cam.sink.frames_received, "
            "rx_bytes=cam.peer._relay_rx, size=[cam.sink.width, cam.sink.height], transport=cam.transport, "
            "bus=cam._bus)"
        )
        record = "lat"
    pid = str(k.eval("cam.peer_id"))
    time.sleep(args.warmup)
    m = window(nb, meter, args.seconds, expr, pid, record)
    m.update(scenario=name, codec=codec or "webrtc")
    if codec is not None and m["page_end"]["relay"].get("video", {}).get("codec") != codec:
        log(f"{name}: the page encodes {m['page_end']['relay'].get('video')} instead of {codec}")
    k.execute("cam.close()", 30)
    summary(m)
    return m


def audio_scenario(nb: Any, meter: Meter, args: argparse.Namespace, name: str) -> dict[str, Any]:
    k = nb.kernel
    k.execute(
        "mic = Microphone(relay_after=0, relay_codec='opus')\nmic.start()\nawait mic.wait_connected(timeout=30)\n"
        "alat = _record_latency(mic, 'audio')",
        60,
    )
    pid = str(k.eval("mic.peer_id"))
    time.sleep(args.warmup)
    expr = (
        "dict(mic.peer._relay_tracks['audio'].counters(), samples=mic.sink.samples_received, "
        "rx_bytes=mic.peer._relay_rx, rate=mic.sample_rate, transport=mic.transport, bus=mic._bus)"
    )
    m = window(nb, meter, args.seconds, expr, pid, "alat")
    m.update(scenario=name, codec="opus")
    k.execute("mic.close()", 30)
    summary(m)
    return m


def summary(m: dict[str, Any]) -> None:
    r, lat = m["kernel_rate"], m.get("latency_ms") or {}
    page = m.get("page_video") or m.get("page_rtp") or m.get("page_audio") or {}
    log(
        f"{m['scenario']:24s} kernel {r.get('frames_received', r.get('sink', 0)):5.1f} msg/s "
        f"(sink {r.get('sink', r.get('samples', 0)):.1f}/s), latency p50 {lat.get('p50')} p95 {lat.get('p95')} "
        f"max {lat.get('max')} ms; page {page}; CPU kernel {m['kernel_cpu_pct']}% server {m['server_cpu_pct']}% "
        f"chromium {m['chromium_cpu_pct']}% machine {m['machine_busy_pct']}%; load {m['load_1min']}"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(HARNESS_DIR))
    import harness
    import mediafiles
    from buslab import ExtLabServer
    from playwright.sync_api import sync_playwright

    results: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cores": os.cpu_count()},
        "seconds": args.seconds,
        "warmup_s": args.warmup,
        "load_at_start": [round(x, 2) for x in os.getloadavg()],
        "scenarios": [],
    }
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rtcw-relay-bench-") as tmp:
        d = Path(tmp)
        wav = mediafiles.write_wav(d / "tone.wav")
        y4m = mediafiles.write_y4m(d / "cam.y4m", WIDTH, HEIGHT, FPS, texture=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=harness.chromium_executable(),
                args=harness.merged_chromium_args(
                    [f"--use-file-for-fake-video-capture={y4m}", f"--use-file-for-fake-audio-capture={wav}"]
                ),
                chromium_sandbox=False,
                headless=True,
            )
            results["chromium"] = browser.version
            try:
                for extension in (True, False):
                    lab = ExtLabServer(d / ("bus" if extension else "comm"), extension=extension)
                    lab.start()
                    try:
                        results["scenarios"] += lab_scenarios(harness, lab, browser, extension, args)
                    finally:
                        lab.stop()
            finally:
                browser.close()
    results["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["total_s"] = round(time.monotonic() - t_start, 1)
    return results


def lab_scenarios(harness: Any, lab: Any, browser: Any, extension: bool, args: argparse.Namespace) -> list[Any]:
    route = "bus" if extension else "comm"
    nb = harness.Notebook(lab, browser, f"bench_relay_{route}.ipynb")
    out: list[dict[str, Any]] = []
    try:
        nb.kernel.execute(KERNEL_SETUP)
        assert lab.proc is not None
        meter = Meter(int(nb.kernel.eval("os.getpid()")), lab.proc.pid)
        if extension:
            out.append(video_scenario(nb, meter, args, "webrtc (baseline)", None))
            for codec in ("h264", "vp8", "jpeg"):
                out.append(video_scenario(nb, meter, args, f"relay bus {codec}", codec))
            out.append(audio_scenario(nb, meter, args, "audio relay bus opus"))
        else:
            for codec in ("h264", "jpeg"):
                out.append(video_scenario(nb, meter, args, f"relay comm {codec}", codec))
    finally:
        nb.close()
    for m in out:
        m["route"] = route
    return out


def _f(x: Any, fmt: str = ".1f") -> str:
    return "n/a" if x is None else format(x, fmt)


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Relay media: 640x480@30 camera and microphone through the Jupyter server",
        "",
        f"{results['machine']['cores']} cores ({results['machine']['platform']}), Python "
        f"{results['machine']['python']}, Chromium {results.get('chromium', '?')}; {results['seconds']:g} s per "
        f"scenario after {results['warmup_s']:g} s warm-up; load average (1/5/15 min) {results['load_at_start']} at "
        f"the start, {results['load_at_end']} at the end ({results['total_s']:g} s in all).",
        "Fake camera: a textured y4m (moving grain). The harness only sleeps during each window (the kernel idles).",
        "",
        "- **fps**: relayed frames the kernel's RelayTrack received per second (decoded in brackets when fewer); "
        "webrtc: frames reaching the Camera's sink.",
        "- **latency**: page capture (`Date.now()`) to decoded in the kernel (`time.time()`), every frame of the "
        "window; n/a over WebRTC (not measured there).",
        "- **sent / dropped**: the page's relay sender per second; dropped = skipped before encoding by flow "
        "control (acks too far behind or the socket full). webrtc: outbound-rtp framesSent.",
        "- **kbit/s**: the page's encoded bytes (webrtc: outbound-rtp bytesSent). **ack RTT**: page send -> kernel "
        "ack, sampled every 0.5 s (median / max).",
        "- **CPU**: % of one core over the window: the kernel process (all threads), the Jupyter server process, "
        "every Chromium process; machine = all cores busy (100 = both), others' work included.",
        "",
        "| scenario | fps | latency p50 / p95 / max (ms) | page sent / dropped per s | kbit/s | ack RTT (ms) | "
        "kernel CPU | server CPU | Chromium CPU | machine busy | load 1 min |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    audio = []
    for s in results["scenarios"]:
        if s["codec"] == "opus":
            audio.append(s)
            continue
        r = s["kernel_rate"]
        lat = s.get("latency_ms") or {}
        if s["codec"] == "webrtc":
            fps = _f(r.get("sink"))
            page = s.get("page_rtp", {})
            sent = f"{_f(page.get('framesSent'))} / n/a"
            kbps = _f(page.get("bytesSent", 0) * 8 / 1000, ".0f") if page else "n/a"
            latency = "n/a"
        else:
            fps = _f(r.get("frames_received"))
            if r.get("frames_decoded", 0) < r.get("frames_received", 0) - 0.5:
                fps += f" ({_f(r.get('frames_decoded'))})"
            page = s.get("page_video", {})
            sent = f"{_f(page.get('framesSent'))} / {_f(page.get('framesDropped'))}"
            kbps = _f(page.get("bytesSent", 0) * 8 / 1000, ".0f")
            latency = f"{_f(lat.get('p50'), '.0f')} / {_f(lat.get('p95'), '.0f')} / {_f(lat.get('max'), '.0f')}"
        rtt = s.get("ack_rtt_ms")
        rtt_s = f"{rtt['p50']:.0f} / {rtt['max']:.0f}" if rtt else "n/a"
        lines.append(
            f"| {s['scenario']} | {fps} | {latency} | {sent} | {kbps} | {rtt_s} | {s['kernel_cpu_pct']:.1f} | "
            f"{s['server_cpu_pct']:.1f} | {s['chromium_cpu_pct']:.1f} | {s['machine_busy_pct']:.0f} | "
            f"{s['load_1min'][0]:.2f} |"
        )
    for s in audio:
        r, lat, page = s["kernel_rate"], s.get("latency_ms") or {}, s.get("page_audio", {})
        lines += [
            "",
            f"Audio over the relay (bus, Opus, Microphone default {s['kernel_end'].get('rate')} Hz): "
            f"{_f(r.get('samples'), '.0f')} samples/s received, {_f(r.get('frames_received'))} packets/s, "
            f"{_f(page.get('bytesSent', 0) * 8 / 1000, '.0f')} kbit/s, latency p50 {_f(lat.get('p50'), '.0f')} / "
            f"p95 {_f(lat.get('p95'), '.0f')} ms, kernel CPU {s['kernel_cpu_pct']:.1f}% of a core (server "
            f"{s['server_cpu_pct']:.1f}%, Chromium {s['chromium_cpu_pct']:.1f}%, "
            f"machine {s['machine_busy_pct']:.0f}%).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window per scenario")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each window")
    parser.add_argument("--name", default="relay_media", help="results file stem under benchmarks/results/")
    args = parser.parse_args(argv)
    ensure_namespace("benchmarks.relay_media", argv)
    results = run(args)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{args.name}.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS_DIR / f"{args.name}.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
