"""Media benchmark: kernel CPU to receive camera video (640x480@30, 1280x720@30) and microphone audio.

Run as root: ``.venv/bin/python -m benchmarks.media``. Like the test suite it re-executes itself inside a private
network namespace (``unshare --net`` + ``tests/netns.py``), ``iceServers=[]`` everywhere; nothing leaves the machine.

A JupyterLab server, headless Chromium and the page's kernel (the harness of ``tests/browser/harness.py``).
Chromium's fake camera plays a generated y4m at the measured size (a colour per second under a moving grain, so that
the codec works as hard as with a real camera) and its fake microphone a 440 Hz wav. For each scenario the kernel
runs one widget started without a view; after a warm-up, the kernel process's CPU time (user + system, from
``/proc/<pid>/stat``: every thread, so aiortc's decoder threads, the engine loop and our worker threads all count)
is read over ``--seconds``:

- ``idle``: the kernel with no widget (the floor);
- ``video WxH receive``: a Camera connected, no consumer (frames are decoded, nothing converts them);
- ``video WxH receive + numpy``: the same with an ``on_frame`` callback, so every frame becomes an RGB array;
- ``audio 48 kHz`` / ``audio 16 kHz``: a Microphone with an ``on_audio`` callback (16 kHz adds resampling).

Frames and samples per second are counted in the kernel's callbacks (what really arrived). The whole machine's CPU
use during each window is reported too: Chromium encodes on the same two cores, and other work on the machine shows
up there. Results: benchmarks/results/media.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import HARNESS_DIR, RESULTS_DIR, ensure_namespace, machine_busy, process_cpu_seconds


def log(msg: str) -> None:
    print(f"[media-bench] {msg}", flush=True)


def measure(nb: Any, pid: int, seconds: float, counter: str | None) -> dict[str, Any]:
    """Kernel CPU over ``seconds`` of wall clock; ``counter`` (a kernel expression) is read at both ends."""
    c0 = nb.kernel.eval(counter) if counter else 0
    cpu0, (busy0, total0), t0 = process_cpu_seconds(pid), machine_busy(), time.monotonic()
    time.sleep(seconds)
    cpu1, (busy1, total1), t1 = process_cpu_seconds(pid), machine_busy(), time.monotonic()
    c1 = nb.kernel.eval(counter) if counter else 0
    wall = t1 - t0
    ncpu = os.cpu_count() or 1
    return {
        "wall_s": round(wall, 3),
        "kernel_cpu_s": round(cpu1 - cpu0, 3),
        "kernel_cpu_pct_of_one_core": round(100 * (cpu1 - cpu0) / wall, 1),
        "machine_busy_pct": round(100 * (busy1 - busy0) / max(1, total1 - total0), 1),
        "machine_cores": ncpu,
        "units_per_s": round((c1 - c0) / wall, 2),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(HARNESS_DIR))
    import harness
    import mediafiles
    from playwright.sync_api import sync_playwright

    results: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cores": os.cpu_count()},
        "seconds": args.seconds,
        "warmup_s": args.warmup,
        "scenarios": [],
    }
    with tempfile.TemporaryDirectory(prefix="rtcw-media-bench-") as tmp:
        d = Path(tmp)
        wav = mediafiles.write_wav(d / "tone.wav")
        lab = harness.LabServer(d / "lab")
        lab.start()
        try:
            with sync_playwright() as pw:
                for width, height in ((640, 480), (1280, 720)):
                    y4m = mediafiles.write_y4m(d / f"c{width}.y4m", width, height, 30, texture=True)
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
                        results["scenarios"] += scenarios(harness, lab, browser, width, height, args)
                    finally:
                        browser.close()
        finally:
            lab.stop()
    return results


#: What the page's video sender does: size, rate, bitrate target and why it holds back (W3C outbound-rtp).
SENDER_JS = """async pid => {
  const stats = await globalThis.rtcWidgets.peers.get(pid).pc.getStats();
  let out = null;
  stats.forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video") out = {
      frameWidth: s.frameWidth, frameHeight: s.frameHeight, framesPerSecond: s.framesPerSecond,
      targetBitrate: s.targetBitrate, qualityLimitationReason: s.qualityLimitationReason,
      encoderImplementation: s.encoderImplementation };
  });
  return out;
}"""


def wait_full_size(nb: Any, width: int, height: int, timeout: float) -> float:
    """Seconds until the kernel received ``width`` x ``height`` frames for 10 s in a row; -1 after ``timeout``.

    10 s, not less: Chromium sends the first second at full size, then drops to a smaller one until its bitrate
    grows."""
    t0 = time.monotonic()
    since: float | None = None
    while time.monotonic() - t0 < timeout:
        if nb.kernel.eval("[cam.sink.width, cam.sink.height]") == [width, height]:
            since = since if since is not None else time.monotonic()
            if time.monotonic() - since >= 10:
                return round(since - t0, 1)
        else:
            since = None
        time.sleep(0.5)
    return -1.0


def scenarios(harness: Any, lab: Any, browser: Any, width: int, height: int, args: argparse.Namespace) -> list[Any]:
    out: list[dict[str, Any]] = []
    nb = harness.Notebook(lab, browser, f"bench_media_{width}.ipynb")
    try:
        k = nb.kernel
        k.execute("import os, time\nfrom rtc_widgets import Camera, Microphone\nnframes = 0\nnsamples = 0")
        pid = int(k.eval("os.getpid()"))

        def add(name: str, unit: str, counter: str | None) -> None:
            time.sleep(args.warmup)
            m = measure(nb, pid, args.seconds, counter)
            m.update(scenario=name, unit=unit)
            log(
                f"{name:32s} kernel CPU {m['kernel_cpu_pct_of_one_core']:5.1f}% of a core, "
                f"{m['units_per_s']:8.1f} {unit}/s, machine {m['machine_busy_pct']:.0f}% busy"
            )
            out.append(m)

        if width == 640:
            add("idle kernel", "-", None)
        k.execute(
            f"cam = Camera(width={width}, height={height}, fps=30)\ncam.start()\nawait cam.wait_connected(timeout=30)",
            60,
        )
        # Without Camera's start_bitrate hint Chromium starts near 300 kbps and sends a smaller picture until
        # aiortc's REMB estimate lets it grow (measured: 44 s to 640x480); measure at the requested size only.
        ramp = wait_full_size(nb, width, height, args.ramp_timeout)
        log(f"{width}x{height}: full size after {ramp:.1f} s" if ramp >= 0 else f"{width}x{height}: never full size")
        add(f"video {width}x{height}@30 receive", "frames", "cam.sink.frames_received")
        out[-1]["ramp_up_s"] = ramp
        k.execute(
            "def count_frame(img):\n    global nframes\n    nframes += 1\n    assert img.shape[2] == 3\n"
            "cam.on_frame(count_frame)"
        )
        add(f"video {width}x{height}@30 receive + numpy", "frames", "nframes")
        out[-1]["size_after"] = k.eval("[cam.sink.width, cam.sink.height]")
        out[-1]["received_size"] = k.eval("[cam.sink.width, cam.sink.height]")
        out[-2]["received_size"] = out[-1]["received_size"]
        sender = nb.page.evaluate(SENDER_JS, k.eval("cam.peer_id"))
        out[-1]["browser_sender"] = out[-2]["browser_sender"] = sender
        log(f"browser sender: {sender}")
        k.execute("cam.close()")
        if width == 640:
            for rate in (48000, 16000):
                k.execute(
                    f"mic = Microphone(sample_rate={rate}, echo_cancellation=False)\nmic.start()\n"
                    "await mic.wait_connected(timeout=30)\n"
                    "def count_audio(chunk):\n    global nsamples\n    nsamples += len(chunk)\n"
                    "mic.on_audio(count_audio)",
                    60,
                )
                add(f"audio {rate // 1000} kHz receive + numpy", "samples", "nsamples")
                k.execute("mic.close()")
    finally:
        nb.close()
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Media receive CPU (kernel process)",
        "",
        f"{results['machine']['cores']} cores, Python {results['machine']['python']}, Chromium "
        f"{results.get('chromium', '?')}; {results['seconds']} s per scenario after {results['warmup_s']} s warm-up.",
        "Kernel CPU counts every thread of the kernel process (aiortc decoding, engine loop, our workers).",
        "Video is measured once the browser sends the requested size; "
        + ", ".join(
            f"{s['scenario'].split()[1]} took {s['ramp_up_s']:.0f} s to get there"
            for s in results["scenarios"]
            if "ramp_up_s" in s
        )
        + " (Camera's start_bitrate hint, 1500 kbps; without it Chromium starts near 300 kbps and took 44 s / 53 s,"
        " following aiortc's REMB estimate).",
        "",
        "| scenario | kernel CPU (% of one core) | delivered per s | received size | machine busy (%) |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in results["scenarios"]:
        rate = "" if s["unit"] == "-" else f"{s['units_per_s']:.1f} {s['unit']}"
        size = "x".join(map(str, s.get("received_size", [])))
        lines.append(
            f"| {s['scenario']} | {s['kernel_cpu_pct_of_one_core']:.1f} | {rate} | {size} | "
            f"{s['machine_busy_pct']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window per scenario")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each window")
    parser.add_argument(
        "--ramp-timeout", type=float, default=150.0, help="longest wait for the browser to send the full frame size"
    )
    args = parser.parse_args(argv)
    ensure_namespace("benchmarks.media", argv)
    results = run(args)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "media.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS_DIR / "media.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
