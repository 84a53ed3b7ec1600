"""The relay's media codecs in real Chromium (js/src/relaymedia.ts), without a kernel: the fake camera (colours with
frame numbers) and the fake microphone (440 Hz) are encoded by VideoRelaySender / AudioRelaySender into an in-page
MediaOut that hands every frame straight to VideoRelayReceiver / AudioRelayReceiver (loopback), and also returns the
raw payloads. The test then checks content twice: what the page's receiver drew (canvas pixels, the played tone) and
what PyAV makes of the payload bytes -- the byte formats the kernel's decoder relies on (see the module header)."""

from __future__ import annotations

import base64
import functools
import http.server
import itertools
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import av
import numpy as np
import pytest
from harness import REPO_ROOT, chromium_executable, merged_chromium_args
from mediafiles import READ_FRAME_SOURCE, expected_colour, peak_frequency, write_wav, write_y4m

from rtc_widgets import protocol

pytestmark = pytest.mark.browser

FPS = 30
SECONDS = 2.5
_READER: dict[str, Any] = {}
exec(READ_FRAME_SOURCE, _READER)
read_frame: Callable[[np.ndarray], tuple[int, int]] = _READER["read_frame"]

#: `g` for the module with MediaStreamTrackProcessor hidden: the <video>-element and AudioWorklet sources that
#: Firefox and Safari use. Lower-case functions are bound so that `g.createImageBitmap(...)` keeps its receiver.
PAGE = """<!doctype html><meta charset="utf-8"><title>relaymedia</title><body><script type="module">
import * as rm from "/relaymedia.js";
globalThis.rm = rm;
globalThis.noProcessor = new Proxy(globalThis, {
  get(t, k) {
    if (k === "MediaStreamTrackProcessor") return undefined;
    const v = Reflect.get(t, k);
    return typeof v === "function" && typeof k === "string" && /^[a-z]/.test(k) ? v.bind(t) : v;
  },
});
const b64 = (buf) => {
  const bytes = new Uint8Array(buf);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const wrap = (h, payload) => ({ v: 1, type: "media", session: "relaytest", size: payload.byteLength, ...h });

globalThis.videoLoop = async ({ codec, hideProcessor, seconds, ackDelayMs = 0 }) => {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480, frameRate: 30 } });
  const track = stream.getVideoTracks()[0];
  const g = hideProcessor ? globalThis.noProcessor : globalThis;
  const frames = [];
  const keyAsks = [];
  let sender = null;
  const rx = new rm.VideoRelayReceiver({
    ack: (seq, key) => {
      if (key) keyAsks.push(seq);
      if (ackDelayMs) setTimeout(() => sender.ack(seq, key), ackDelayMs);
      else sender.ack(seq, key);
    },
  });
  const out = {
    send(h, payload) {
      frames.push({ msg: wrap(h, payload), b64: b64(payload) });
      rx.receive(wrap(h, payload), payload);
      return true;
    },
    buffered: () => 0,
  };
  sender = new rm.VideoRelaySender(track, out, { codec, g, onError: (t) => console.error(t) });
  await sender.start();
  // read back what the receiver drew, downscaled (the frame-number band survives 4x)
  const probe = new OffscreenCanvas(160, 120);
  const pctx = probe.getContext("2d", { willReadFrequently: true });
  const samples = [];
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    await sleep(100);
    if (rx.counters.framesDecoded === 0) continue;
    pctx.drawImage(rx.canvas, 0, 0, 160, 120);
    const rgba = pctx.getImageData(0, 0, 160, 120).data;
    const rgb = new Uint8Array(160 * 120 * 3);
    for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) rgb.set(rgba.subarray(i, i + 3), j);
    samples.push(b64(rgb.buffer));
  }
  sender.stop();
  await sleep(200);
  rx.stop();
  track.stop();
  return { codec: sender.codec, frames, samples, keyAsks, sent: sender.counters, received: rx.counters,
           canvas: [rx.canvas.width, rx.canvas.height], stream: Boolean(rx.stream) };
};

globalThis.audioLoop = async ({ codec, hideProcessor, seconds }) => {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const track = stream.getAudioTracks()[0];
  const g = hideProcessor ? globalThis.noProcessor : globalThis;
  const rx = new rm.AudioRelayReceiver();
  // what the receiver plays, read from its MediaStream
  const played = [];
  let playedRate = 0;
  const reader = new MediaStreamTrackProcessor({ track: rx.stream.getAudioTracks()[0] }).readable.getReader();
  (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      const x = new Float32Array(value.numberOfFrames);
      value.copyTo(x, { planeIndex: 0, format: "f32-planar" });
      playedRate = value.sampleRate;
      played.push(x);
      value.close();
    }
  })();
  const chunks = [];
  const out = {
    send(h, payload) {
      chunks.push({ msg: wrap(h, payload), b64: b64(payload), at: performance.now() });
      rx.receive(wrap(h, payload), payload);
      return true;
    },
    buffered: () => 1e12, // a congested socket: audio must still go out
  };
  const sender = new rm.AudioRelaySender(track, out, { codec, g, onError: (t) => console.error(t) });
  await sender.start();
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const elapsed = (performance.now() - t0) / 1000;
  sender.stop();
  await sleep(150);
  reader.cancel();
  rx.stop();
  track.stop();
  const n = played.reduce((a, x) => a + x.length, 0);
  const all = new Float32Array(n);
  let k = 0;
  for (const x of played) { all.set(x, k); k += x.length; }
  return { codec: sender.codec, chunks, elapsed, played: b64(all.buffer), playedRate, rx: rx.counters };
};
globalThis.ready = true;
</script>"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The module bundled with esbuild and a page that loads it, served from http://127.0.0.1 (a secure context)."""
    d = tmp_path_factory.mktemp("relaymedia")
    js = REPO_ROOT / "js"
    subprocess.run(
        [str(js / "node_modules/.bin/esbuild"), "src/relaymedia.ts", "--bundle", "--format=esm",
         f"--outfile={d / 'relaymedia.js'}", "--log-level=warning"],
        cwd=js, check=True, timeout=60,
    )  # fmt: skip
    (d / "index.html").write_text(PAGE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(d))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def page(site: str, playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    d = tmp_path_factory.mktemp("media")
    y4m = write_y4m(d / "colours.y4m", 640, 480, FPS)
    wav = write_wav(d / "tone440.wav")
    browser = playwright.chromium.launch(
        executable_path=chromium_executable(),
        args=merged_chromium_args(
            [
                f"--use-file-for-fake-video-capture={y4m}",
                f"--use-file-for-fake-audio-capture={wav}",
                "--autoplay-policy=no-user-gesture-required",
            ]
        ),
        chromium_sandbox=False,
        headless=True,
        timeout=60_000,
    )
    try:
        context = browser.new_context()
        context.grant_permissions(["camera", "microphone"], origin=site)
        p = context.new_page()
        console: list[str] = []
        p.on("console", lambda m: console.append(f"[{m.type}] {m.text}"))
        p.on("pageerror", lambda e: console.append(f"[pageerror] {e}"))
        p.goto(f"{site}/index.html")
        p.wait_for_function("globalThis.ready === true", timeout=15_000)
        p.console = console  # type: ignore[attr-defined]
        yield p
    finally:
        browser.close()


def capabilities(page: Any) -> dict[str, Any]:
    return page.evaluate(
        "async () => ({ encode: await rm.encodeCapabilities(), decode: await rm.decodeCapabilities(),"
        " encodeHidden: await rm.encodeCapabilities(noProcessor) })"
    )


def colour_accuracy(images: list[np.ndarray]) -> tuple[float, set[int]]:
    """Share of images whose body colour is the one the y4m had at the frame number in their band."""
    good = 0
    colours: set[int] = set()
    for img in images:
        number, colour = read_frame(img)
        colours.add(colour)
        good += colour == expected_colour(number, FPS)
    return good / max(1, len(images)), colours


def check_headers(frames: list[dict[str, Any]], track: str, codec: str) -> list[bytes]:
    """Every message validates against the shared schema; seq counts from 0; ts increases; sizes match."""
    payloads = []
    for i, f in enumerate(frames):
        msg = protocol.validate(f["msg"])
        payload = base64.b64decode(f["b64"])
        assert protocol.check_attachment(msg, payload) == payload
        assert (msg["track"], msg["codec"], msg["seq"]) == (track, codec, i)
        payloads.append(payload)
    ts = [f["msg"]["ts"] for f in frames]
    assert ts[0] < 50_000 and all(b > a for a, b in itertools.pairwise(ts)), ts[:10]
    return payloads


def decode_with_pyav(codec: str, payloads: list[bytes]) -> list[np.ndarray]:
    ctx = av.CodecContext.create({"vp8": "vp8", "h264": "h264", "jpeg": "mjpeg"}[codec], "r")
    images = []
    for p in payloads:
        for frame in ctx.decode(av.Packet(p)):
            images.append(frame.to_ndarray(format="rgb24"))
    return images


def nal_types(annexb: bytes) -> list[int]:
    parts = annexb.split(b"\x00\x00\x01")
    return [p[0] & 0x1F for p in parts[1:] if p]


@pytest.mark.parametrize(
    ("codec", "hide_processor"),
    [("vp8", False), ("h264", False), ("jpeg", False), ("vp8", True), ("jpeg", True)],
    ids=["vp8", "h264", "jpeg", "vp8-video-element", "jpeg-video-element"],
)
def test_video_codec_carries_the_cameras_colours(page: Any, codec: str, hide_processor: bool) -> None:
    caps = capabilities(page)
    print("capabilities", caps)
    if codec == "h264" and "h264" not in caps["encode"]["video"]:
        pytest.fail(f"this Chromium cannot encode H.264 with WebCodecs: {caps}")
    r = page.evaluate("args => videoLoop(args)", {"codec": codec, "hideProcessor": hide_processor, "seconds": SECONDS})
    frames = r["frames"]
    span = (frames[-1]["msg"]["ts"] - frames[0]["msg"]["ts"]) / 1e6 if frames else 0
    print(codec, "hidden" if hide_processor else "", len(frames), "frames over", span, "s", r["sent"], r["received"])
    assert r["codec"] == codec, page.console[-10:]
    assert len(frames) >= SECONDS * FPS / 3, (len(frames), page.console[-10:])
    payloads = check_headers(frames, "video", codec)
    msgs = [f["msg"] for f in frames]
    assert msgs[0]["key"] is True
    assert all((m["w"], m["h"]) == (640, 480) for m in msgs), {(m["w"], m["h"]) for m in msgs}
    if codec == "jpeg":
        assert all(m["key"] for m in msgs)
        assert all(p[:2] == b"\xff\xd8" and p[-2:] == b"\xff\xd9" for p in payloads)
    else:
        # a key frame first, then at least one every keyFrameIntervalS (2 s) of media time (OpenH264 adds its own
        # at scene changes: each new colour), delta frames in between
        keys = [m["ts"] for m in msgs if m["key"]]
        print("key frames at", keys)
        assert all(g <= 2.1 for g in np.diff([*keys, msgs[-1]["ts"]]) / 1e6), (keys, msgs[-1]["ts"])
        assert len(keys) < len(msgs) / 10, keys
    if codec == "vp8":
        assert all(p[3:6] == b"\x9d\x01\x2a" for p, m in zip(payloads, msgs, strict=True) if m["key"])
    if codec == "h264":
        assert all(p.startswith(b"\x00\x00\x00\x01") for p in payloads)
        for p, m in zip(payloads, msgs, strict=True):
            if m["key"]:
                assert {7, 8, 5} <= set(nal_types(p)), nal_types(p)
    # the page's own receiver drew the camera's colours
    # a clean stream: the receiver decodes (nearly) all of it without asking for key frames
    assert len(r["keyAsks"]) <= 1 and r["received"]["framesDecoded"] >= 0.9 * len(frames), r["received"]
    assert r["canvas"] == [640, 480] and r["stream"] is True
    drawn = [np.frombuffer(base64.b64decode(s), np.uint8).reshape(120, 160, 3) for s in r["samples"]]
    accuracy, colours = colour_accuracy(drawn)
    print("drawn", len(drawn), "accuracy", accuracy, "colours", colours)
    assert len(drawn) >= 10 and accuracy >= 0.9 and len(colours) >= 2, (len(drawn), accuracy, colours)
    # PyAV reads the same bytes: the kernel-side format
    images = decode_with_pyav(codec, payloads)
    accuracy, colours = colour_accuracy(images)
    print("pyav", len(images), "accuracy", accuracy, "colours", colours)
    assert len(images) >= len(payloads) - 2 and images[0].shape == (480, 640, 3)
    assert accuracy >= 0.95 and len(colours) >= 2, (accuracy, colours)


def decode_audio(codec: str, msgs: list[dict[str, Any]], payloads: list[bytes]) -> tuple[np.ndarray, int, list[int]]:
    """Mono float samples, their rate, and the sample count of each message, as the kernel would read them."""
    rate, ch = msgs[0]["rate"], msgs[0]["ch"]
    if codec == "pcm16":
        blocks = [np.frombuffer(p, "<i2").reshape(-1, ch)[:, 0] / 32768 for p in payloads]
        return np.concatenate(blocks), rate, [len(b) for b in blocks]
    assert rate == 48000, "an Opus header says 48000 whatever the microphone's rate"
    ctx = av.CodecContext.create("opus", "r")
    ctx.sample_rate = 48000
    ctx.layout = "stereo" if ch == 2 else "mono"
    out, counts = [], []
    for p in payloads:
        n = 0
        for frame in ctx.decode(av.Packet(p)):
            a = frame.to_ndarray()
            x = a[0] if frame.format.is_planar else a.reshape(-1, ch)[:, 0]
            out.append(x.astype(np.float64))
            n += frame.samples
        counts.append(n)
    return np.concatenate(out), rate, counts


@pytest.mark.parametrize(
    ("codec", "hide_processor"),
    [("opus", False), ("pcm16", False), ("opus", True)],
    ids=["opus", "pcm16", "opus-audioworklet"],
)
def test_audio_codec_carries_the_microphones_tone(page: Any, codec: str, hide_processor: bool) -> None:
    r = page.evaluate("args => audioLoop(args)", {"codec": codec, "hideProcessor": hide_processor, "seconds": SECONDS})
    chunks = r["chunks"]
    print(
        codec, len(chunks), "chunks in", r["elapsed"], "s", r["rx"], "rate", chunks[0]["msg"]["rate"] if chunks else 0
    )
    assert r["codec"] == codec, page.console[-10:]
    payloads = check_headers(chunks, "audio", codec)
    msgs = [c["msg"] for c in chunks]
    # ~50 messages of 20 ms per second, none dropped although buffered() said the socket was full
    per_s = len(msgs) / r["elapsed"]
    assert 40 <= per_s <= 55, per_s
    samples, rate, counts = decode_audio(codec, msgs, payloads)
    frame = rate // 50
    assert all(c == frame for c in counts[1:]), set(counts)
    ts = np.array([m["ts"] for m in msgs])
    assert np.allclose(np.diff(ts), 20_000, atol=1), set(np.diff(ts).tolist())
    peak = peak_frequency(samples[rate // 10 :], rate)
    print("payload tone", peak, "Hz")
    assert abs(peak - 440) < 2, peak
    # and the page's AudioRelayReceiver played it back
    played = np.frombuffer(base64.b64decode(r["played"]), np.float32)
    assert len(played) > r["playedRate"] * (SECONDS - 1), (len(played), r["playedRate"])
    loud = np.flatnonzero(np.abs(played) > 0.05)
    assert len(loud) > r["playedRate"], "the receiver played (almost) silence"
    voiced = played[loud[0] : loud[-1] + 1]
    peak = peak_frequency(voiced, r["playedRate"])
    print("played tone", peak, "Hz", "rms", float(np.sqrt(np.mean(voiced**2))))
    assert abs(peak - 440) < 2 and np.sqrt(np.mean(voiced**2)) > 0.1, peak


def test_capabilities_list_what_really_works(page: Any) -> None:
    caps = capabilities(page)
    print(caps)
    assert caps["encode"]["video"] == protocol.RELAY["videoCodecs"]  # every codec, in protocol.json's order
    assert caps["encode"]["audio"] == ["opus", "pcm16"]
    assert caps["encodeHidden"]["audio"] == ["opus", "pcm16"] and "vp8" in caps["encodeHidden"]["video"]
    assert {"vp8", "jpeg"} <= set(caps["decode"]["video"]) and caps["decode"]["audio"] == ["opus", "pcm16"]


def test_a_slow_receiver_makes_the_sender_drop_frames_before_encoding_and_the_stream_stays_decodable(page: Any) -> None:
    """Acks that come 300 ms late keep more than videoWindow frames in flight: the sender skips camera frames
    before the encoder sees them, so every VP8 frame it does send still decodes to the right colour, with no extra
    key frames and no gaps in seq."""
    r = page.evaluate(
        "args => videoLoop(args)", {"codec": "vp8", "hideProcessor": False, "seconds": 3, "ackDelayMs": 300}
    )
    frames = r["frames"]
    dropped, sent = r["sent"]["framesDropped"], r["sent"]["framesSent"]
    print("slow receiver:", sent, "sent,", dropped, "dropped", r["received"])
    # the camera made ~90 frames in 3 s; far fewer went out, each one whole
    assert 20 <= len(frames) <= 0.7 * 3 * FPS, (len(frames), r["sent"])
    payloads = check_headers(frames, "video", "vp8")  # seq 0, 1, 2... without gaps
    keys = [f["msg"]["ts"] for f in frames if f["msg"]["key"]]
    assert all(g <= 2.1 for g in np.diff([*keys, frames[-1]["msg"]["ts"]]) / 1e6) and len(keys) <= 3, keys
    assert r["keyAsks"] == [] and r["received"]["framesDecoded"] == len(frames)
    images = decode_with_pyav("vp8", payloads)
    accuracy, colours = colour_accuracy(images)
    print("pyav", len(images), "accuracy", accuracy, "colours", colours)
    assert len(images) == len(payloads) and accuracy >= 0.95 and len(colours) >= 2, (accuracy, colours)
