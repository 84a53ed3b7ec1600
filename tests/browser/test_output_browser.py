"""VideoOutput and AudioOutput end to end: the kernel sends known media and the real Chromium page measures what
its views received -- the <video> element's pixels drawn into a canvas, the received tone through a WebAudio
AnalyserNode on peer.remoteStream -- and the kernel echoes the fake camera back into the page."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from harness import Notebook
from mediafiles import PALETTE, write_y4m

pytestmark = pytest.mark.browser

#: Sound must start without a click in this test (the click-to-play path is covered in vitest).
AUTOPLAY = "--autoplay-policy=no-user-gesture-required"


@pytest.fixture(scope="module")
def y4m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_y4m(tmp_path_factory.mktemp("output") / "colours.y4m", 640, 480, 30)


@pytest.fixture
def out_notebook(launch_browser: Callable[..., Any], open_notebook: Callable[..., Notebook], y4m: Path) -> Notebook:
    nb = open_notebook(browser_=launch_browser([AUTOPLAY, f"--use-file-for-fake-video-capture={y4m}"]))
    nb.kernel.execute(
        "import time, threading, numpy as np\n"
        "from rtc_widgets import AudioOutput, Camera, VideoOutput\n"
        "from rtc_widgets.engine import get_engine"
    )
    return nb


def show(nb: Notebook, name: str, ctor: str, css: str) -> str:
    """Create the widget, display it in a cell like a user (route A), wait until both ends say connected."""
    nb.kernel.execute(f"{name} = {ctor}")
    nb.run_cell_ui(f"display({name})")
    nb.page.locator(f".{css} .rtcw-state-connected").first.wait_for(timeout=30_000)
    nb.kernel.execute(f"await {name}.wait_connected(timeout=30)", 40)
    return nb.kernel.eval(f"{name}.peer_id")


#: Samples the output view's <video> every 40 ms for `seconds`: mean colour of the picture's body, size; and the
#: receiver's inbound-rtp stats and the frames the element presented (requestVideoFrameCallback) meanwhile.
SAMPLE_VIDEO_JS = """async ([pid, seconds]) => {
  const video = document.querySelector('.rtcw-video-output video');
  const peer = globalThis.rtcWidgets.peers.get(pid);
  const inbound = async () => {
    let out = null;
    (await peer.pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') out = s; });
    return out;
  };
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const s0 = await inbound();
  const samples = [];
  const t0 = performance.now();
  const presented = [];
  const count = () => { presented.push((performance.now() - t0) / 1000); video.requestVideoFrameCallback(count); };
  video.requestVideoFrameCallback(count);
  while (performance.now() - t0 < seconds * 1000) {
    const w = video.videoWidth, h = video.videoHeight;
    if (w && h) {
      canvas.width = w; canvas.height = h;
      ctx.drawImage(video, 0, 0);
      const d = ctx.getImageData(Math.floor(w / 8), Math.floor(h / 3), Math.floor(3 * w / 4), Math.floor(h / 2)).data;
      let r = 0, g = 0, b = 0, n = 0;
      for (let i = 0; i < d.length; i += 32) { r += d[i]; g += d[i + 1]; b += d[i + 2]; n++; }
      const decoded = (await inbound())?.framesDecoded ?? 0;
      samples.push([(performance.now() - t0) / 1000, r / n, g / n, b / n, w, h, decoded]);
    }
    await new Promise((r) => setTimeout(r, 40));
  }
  const s1 = await inbound();
  return { samples, presented, seconds: (performance.now() - t0) / 1000,
           decoded: s1.framesDecoded - s0.framesDecoded, received: s1.framesReceived - s0.framesReceived,
           dropped: s1.framesDropped - s0.framesDropped, lost: s1.packetsLost - s0.packetsLost, paused: video.paused };
}"""

#: Measures the received sound for `seconds`: an AnalyserNode on peer.remoteStream (RMS every ~20 ms over 1024
#: samples; the spectrum's peak over 8192 samples while loud) and the inbound-rtp audio stats.
SAMPLE_AUDIO_JS = """async ([pid, seconds]) => {
  const peer = globalThis.rtcWidgets.peers.get(pid);
  const ctx = new AudioContext();
  await ctx.resume();
  const src = ctx.createMediaStreamSource(peer.remoteStream);
  const env = ctx.createAnalyser(); env.fftSize = 1024;
  const spec = ctx.createAnalyser(); spec.fftSize = 8192; spec.smoothingTimeConstant = 0;
  src.connect(env); src.connect(spec);
  const inbound = async () => {
    let out = null;
    (await peer.pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'audio') out = s; });
    return out;
  };
  const td = new Float32Array(env.fftSize), fd = new Float32Array(spec.frequencyBinCount);
  const rms = [], peaks = [];
  let level = 0;
  const s0 = await inbound();
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    const t = (performance.now() - t0) / 1000;
    env.getFloatTimeDomainData(td);
    let e = 0; for (let i = 0; i < td.length; i++) e += td[i] * td[i];
    const r = Math.sqrt(e / td.length);
    rms.push([t, r]);
    if (r > 0.1) {
      spec.getFloatFrequencyData(fd);
      let k = 1; for (let i = 1; i < fd.length - 1; i++) if (fd[i] > fd[k]) k = i;
      const a = fd[k - 1], b = fd[k], c = fd[k + 1];
      peaks.push([t, (k + 0.5 * (a - c) / (a - 2 * b + c)) * ctx.sampleRate / spec.fftSize]);
      const s = await inbound(); level = Math.max(level, s.audioLevel || 0);
    }
    await new Promise((res) => setTimeout(res, 20));
  }
  const s1 = await inbound();
  const out = { rms, peaks, level, state: ctx.state, seconds: (performance.now() - t0) / 1000,
    samples: s1.totalSamplesReceived - s0.totalSamplesReceived,
    energy: s1.totalAudioEnergy - s0.totalAudioEnergy };
  await ctx.close();
  return out;
}"""

RGB = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def nearest(rgb: list[float], palette: list[tuple[int, int, int]]) -> int:
    return int(np.argmin([sum((a - b) ** 2 for a, b in zip(rgb, c, strict=True)) for c in palette]))


def runs(values: list[int]) -> list[int]:
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


def test_colours_sent_by_the_kernel_appear_in_the_page_video(out_notebook: Notebook) -> None:
    nb = out_notebook
    pid = show(nb, "out", "VideoOutput()", "rtcw-video-output")
    # red, green, blue, one second each at 30 fps, from a thread of the kernel (the cell returns at once)
    nb.kernel.execute(
        "def produce():\n"
        "    time.sleep(0.4)\n"
        f"    for colour in {RGB!r}:\n"
        "        img = np.full((480, 640, 3), colour, np.uint8)\n"
        "        end = time.monotonic() + 1.0\n"
        "        while time.monotonic() < end:\n"
        "            out.send(img)\n"
        "            time.sleep(1 / 30)\n"
        "producer = threading.Thread(target=produce)\nproducer.start()"
    )
    got = nb.page.evaluate(SAMPLE_VIDEO_JS, [pid, 3.6])
    nb.kernel.execute("producer.join()")
    palette = [*RGB, (0, 0, 0)]  # black: the placeholder before the first frame
    seen = [(t, nearest(s[:3], palette), s[3:5]) for t, *s in got["samples"]]
    decoded = {t: s[5] for t, *s in got["samples"]}
    coloured = [c for _t, c, _s in seen if c < 3]
    per_colour = {i: sum(0.04 for _t, c, _s in seen if c == i) for i in range(3)}
    assert coloured, f"no frame of the kernel's colours reached the page's <video> ({len(seen)} samples)"
    # frames the <video> element presented while the kernel produced (the first to the last coloured sample)
    first, last = min(t for t, c, _s in seen if c < 3), max(t for t, c, _s in seen if c < 3)
    fps = sum(1 for t in got["presented"] if first <= t <= last) / (last - first)
    decoded_fps = (decoded[last] - decoded[first]) / (last - first)
    print(
        f"page saw colour runs {runs([c for _t, c, _s in seen])} (0 red, 1 green, 2 blue, 3 black), "
        f"~{per_colour} s each; meanwhile decoded {decoded_fps:.1f} fps, the <video> presented {fps:.1f} fps; "
        f"sizes {sorted({tuple(s) for _t, _c, s in seen})}; kernel sent "
        f"{nb.kernel.eval('out.frames_sent')} frames, dropped {nb.kernel.eval('out.frames_dropped')}; page totals: "
        f"received {got['received']}, decoded {got['decoded']}, dropped {got['dropped']}, packets lost {got['lost']}"
    )
    nb.screenshot("video-output-view")
    assert runs(coloured) == [0, 1, 2]  # in order, and no sample misread as another colour
    assert all(0.7 <= per_colour[i] <= 1.3 for i in range(3)), per_colour
    assert [640, 480] in [s for _t, c, s in seen if c < 3]
    assert decoded_fps >= 25, f"the page decoded only {decoded_fps:.1f} frames per second"
    assert fps >= 20, f"the page showed only {fps:.1f} frames per second"
    assert not got["paused"] and nb.kernel.eval("out.error") == ""


def test_a_tone_sent_by_the_kernel_is_heard_in_the_page_at_440_hz(out_notebook: Notebook) -> None:
    nb = out_notebook
    pid = show(nb, "aout", "AudioOutput()", "rtcw-audio-output")
    nb.kernel.execute(
        "tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(96000) / 48000)).astype(np.float32)\n"
        "threading.Timer(0.8, lambda: aout.send(tone)).start()"  # 2 s of 440 Hz, once the page listens
    )
    got = nb.page.evaluate(SAMPLE_AUDIO_JS, [pid, 4.0])
    loud = [t for t, r in got["rms"] if r > 0.15]
    duration = loud[-1] - loud[0] if loud else 0.0
    steady = [f for t, f in got["peaks"] if loud and loud[0] + 0.3 < t < loud[-1] - 0.3]
    peak = float(np.median(steady)) if steady else 0.0
    rms = float(np.median([r for t, r in got["rms"] if loud and loud[0] + 0.3 < t < loud[-1] - 0.3] or [0]))
    print(
        f"page heard {duration:.2f} s of sound, spectrum peak {peak:.1f} Hz (median of {len(steady)}), RMS {rms:.3f}, "
        f"inbound audioLevel {got['level']:.3f}, {got['samples']} samples in {got['seconds']:.2f} s, "
        f"energy {got['energy']:.3f} (= {got['energy'] / 0.25:.2f} s at level 0.5); AudioContext {got['state']}"
    )
    assert got["state"] == "running"
    assert abs(peak - 440) < 3, peak
    assert abs(duration - 2.0) < 0.15, duration
    assert 0.3 < rms < 0.42  # a 0.5 sine has RMS 0.354: the level sent is the level heard
    assert abs(got["samples"] / got["seconds"] - 48000) < 0.05 * 48000  # paced in real time
    assert nb.page.locator(".rtcw-audio-output .rtcw-unlock").is_hidden()  # autoplay allowed: no button
    nb.screenshot("audio-output-view")


def test_the_camera_echoed_by_the_kernel_comes_back_with_its_colours(out_notebook: Notebook) -> None:
    nb = out_notebook
    nb.kernel.execute(
        "cam = Camera(width=640, height=480, fps=30)\ncam.start()\nawait cam.wait_connected(timeout=30)", 40
    )
    pid = show(nb, "echo", "VideoOutput()", "rtcw-video-output")
    nb.kernel.execute("echo.play(cam.track)")
    got = nb.page.evaluate(SAMPLE_VIDEO_JS, [pid, 5.0])
    colours = [nearest(s[:3], PALETTE) for _t, *s in got["samples"]]
    order = runs(colours)
    fps = len(got["presented"]) / got["seconds"]
    decoded_fps = (got["samples"][-1][6] - got["samples"][0][6]) / (got["samples"][-1][0] - got["samples"][0][0])
    print(
        f"echo: page saw {order} (the y4m cycles {len(PALETTE)} colours a second each), "
        f"decoded {decoded_fps:.1f} fps, presented {fps:.1f} fps"
    )
    assert len(order) >= 4
    assert all((b - a) % len(PALETTE) == 1 for a, b in itertools.pairwise(order)), order
    assert decoded_fps >= 25 and fps >= 20
    nb.kernel.execute("echo.stop()")
    assert nb.kernel.eval("echo.error") == "" and nb.kernel.eval("cam.error") == ""
