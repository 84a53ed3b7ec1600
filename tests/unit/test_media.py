"""Camera and Microphone through the real protocol, comm path and engine, with aiortc sending known content."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc.contrib.media import MediaRecorder

from rtc_widgets import Camera, Microphone, protocol
from rtc_widgets.engine import get_engine
from rtc_widgets.media import AudioRing
from rtc_widgets.tracks import with_start_bitrate

from .conftest import run_async
from .fakebrowser import FakeBrowser
from .mediasources import COLOURS, ColourTrack, SineTrack, classify, peak_frequency


@pytest.fixture
def media() -> Iterator[Any]:
    """media(widget, make_tracks) -> fake browser sending those tracks, connected; all closed afterwards."""
    made: list[tuple[Any, FakeBrowser]] = []

    def make(widget: Any, tracks: Any) -> FakeBrowser:
        browser = FakeBrowser(widget, tracks=tracks)
        made.append((widget, browser))
        browser.connect()
        widget.wait_connected_blocking(timeout=20)
        return browser

    yield make
    for widget, browser in made:
        widget.close()
        browser.close()


def runs(indices: list[int]) -> list[int]:
    """Collapse consecutive repeats: [0, 0, 1, 1, 1, 2] -> [0, 1, 2]."""
    return [c for i, c in enumerate(indices) if i == 0 or indices[i - 1] != c]


def test_camera_frames_arrive_with_their_colours_on_a_worker_thread(media):
    cam = Camera(width=320, height=240, fps=30)
    sources: list[ColourTrack] = []
    media(cam, lambda: sources.append(ColourTrack(320, 240, frames_per_colour=15)) or sources[-1:])
    seen: list[int] = []
    threads: set[str] = set()

    @cam.on_frame
    def on_frame(img: np.ndarray) -> None:
        assert img.shape == (240, 320, 3) and img.dtype == np.uint8
        seen.append(classify(img))
        threads.add(threading.current_thread().name)

    time.sleep(3)
    cam.remove_on_frame(on_frame)
    assert len(seen) >= 60, f"only {len(seen)} frames in 3 s"
    order = runs(seen)
    # every colour change follows the sender's cycle: no frame was misread as another colour
    assert all((b - a) % len(COLOURS) == 1 for a, b in itertools.pairwise(order)), order
    assert len(order) >= 4
    assert get_engine().thread.name not in threads and "MainThread" not in threads
    img = cam.snapshot_blocking()
    assert img.shape == (240, 320, 3) and not img.flags.writeable


def test_a_slow_callback_gets_the_newest_frame_not_a_growing_backlog(media):
    cam = Camera(width=320, height=240, fps=30)
    sources: list[ColourTrack] = []
    media(cam, lambda: sources.append(ColourTrack(320, 240, frames_per_colour=6)) or sources[-1:])
    lags: list[int] = []

    @cam.on_frame
    def slow(img: np.ndarray) -> None:
        # the colour the sender is showing now vs the colour of the frame we got: at most one step behind
        now = (sources[-1].sent // 6) % len(COLOURS)
        lags.append((now - classify(img)) % len(COLOURS))
        time.sleep(0.25)

    time.sleep(4)
    cam.remove_on_frame(slow)
    assert 10 <= len(lags) <= 18
    assert max(lags) <= 1, lags
    time.sleep(0.5)
    assert cam.frames_dropped > 60  # ~30 fps arrived, ~4 fps were taken


async def _take(cam: Camera, n: int) -> list[int]:
    out = []
    async for img in cam.stream():
        out.append(classify(img))
        if len(out) == n:
            break
    return out


def test_stream_yields_frames_and_snapshot_awaits(media):

    cam = Camera(width=320, height=240, fps=30)
    media(cam, lambda: [ColourTrack(320, 240)])
    got = run_async(_take(cam, 20))
    assert len(got) == 20 and set(got) <= set(range(len(COLOURS)))
    img = run_async(cam.snapshot())
    assert img.shape == (240, 320, 3)


def test_record_to_writes_a_file_pyav_opens_with_the_duration_asked(media, tmp_path: Path):

    cam = Camera(width=320, height=240, fps=30)
    media(cam, lambda: [ColourTrack(320, 240, frames_per_colour=30)])
    path = run_async(cam.record_to(tmp_path / "clip.mp4", seconds=2))
    with av.open(str(path)) as f:
        stream = f.streams.video[0]
        frames = list(f.decode(stream))
        duration = float(frames[-1].pts * stream.time_base) + 1 / 30
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height) == (320, 240)
        colours = runs([classify(fr.to_ndarray(format="rgb24")) for fr in frames])
    assert 1.8 <= duration <= 2.2, duration
    assert len(frames) >= 50
    assert len(colours) >= 2 and all((b - a) % len(COLOURS) == 1 for a, b in itertools.pairwise(colours))


def test_track_composes_with_aiortc_media_recorder_while_on_frame_runs(media, tmp_path: Path):
    cam = Camera(width=320, height=240, fps=30)
    media(cam, lambda: [ColourTrack(320, 240)])
    seen: list[int] = []
    cam.on_frame(lambda img: seen.append(classify(img)))
    recorder = MediaRecorder(str(tmp_path / "relay.mp4"))
    recorder.addTrack(cam.track)
    engine = get_engine()
    engine.run_sync(recorder.start(), 10)
    time.sleep(2)
    engine.run_sync(recorder.stop(), 10)
    with av.open(str(tmp_path / "relay.mp4")) as f:
        n = sum(1 for _ in f.decode(video=0))
    assert n >= 40, n
    assert len(seen) >= 40, len(seen)


def test_microphone_delivers_a_resampled_tone_with_every_sample_in_order(media):
    mic = Microphone(sample_rate=16000, channels=1)
    media(mic, lambda: [SineTrack(440.0)])
    chunks: list[np.ndarray] = []
    t0 = time.monotonic()
    mic.on_audio(chunks.append)
    pcm = mic.record_blocking(2.0)
    assert pcm.shape == (32000, 1) and pcm.dtype == np.float32
    assert abs(peak_frequency(pcm[:, 0], 16000) - 440) < 2
    assert 0.35 < np.abs(pcm).max() <= 0.6  # the sender's amplitude 0.5 survived Opus and resampling
    time.sleep(0.2)
    elapsed = time.monotonic() - t0
    stream = np.concatenate(chunks)[:, 0]
    # samples in order, none lost or repeated: the callback's stream is one continuous 440 Hz sine
    assert abs(len(stream) / 16000 - elapsed) < 0.15
    assert abs(peak_frequency(stream, 16000) - 440) < 2
    # a sine obeys x[n+1] + x[n-1] = 2cos(w) x[n]; a gap or repeat breaks it far above codec noise
    w = 2 * np.cos(2 * np.pi * 440 / 16000)
    err = np.abs(stream[2:] + stream[:-2] - w * stream[1:-1])
    settled = err[1600:]  # skip the codec's start-up
    assert np.percentile(settled, 99.9) < 0.05, float(settled.max())


def test_microphone_record_to_wav(media, tmp_path: Path):
    import wave

    mic = Microphone(sample_rate=22050, channels=2)
    media(mic, lambda: [SineTrack(1000.0)])
    path = run_async(mic.record_to(tmp_path / "take.wav", seconds=1.5))
    with wave.open(str(path)) as f:
        assert (f.getframerate(), f.getnchannels(), f.getsampwidth()) == (22050, 2, 2)
        assert f.getnframes() == round(1.5 * 22050)
        data = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").reshape(-1, 2)
    assert abs(peak_frequency(data[:, 0].astype(np.float32), 22050) - 1000) < 3


def test_a_capture_error_from_the_browser_fails_wait_connected_and_a_new_start_works(media):
    cam = Camera(width=320, height=240, fps=30)
    browser = FakeBrowser(cam, tracks=lambda: [ColourTrack(320, 240)])
    try:
        message = "Camera access was denied. Allow the camera for this site, then call start() again."
        browser.to_kernel(protocol.error("permission-denied", message, session="newsession1"))
        with pytest.raises(ConnectionError, match="Camera access was denied"):
            cam.wait_connected_blocking(timeout=5)
        assert "Camera access was denied" in cam.error
        cam.start()
        browser.connect()
        cam.wait_connected_blocking(timeout=20)
        assert cam.error == ""
        assert cam.snapshot_blocking().shape == (240, 320, 3)
    finally:
        cam.close()
        browser.close()


def test_audio_ring_wraps_and_counts_what_a_slow_reader_lost():
    ring = AudioRing(capacity=10, channels=1)
    ring.write(np.arange(7, dtype=np.float32).reshape(-1, 1))
    chunk, cursor = ring.read(0)
    assert chunk[:, 0].tolist() == list(range(7)) and cursor == 7
    ring.write(np.arange(7, 15, dtype=np.float32).reshape(-1, 1))
    chunk, cursor = ring.read(cursor)
    assert chunk[:, 0].tolist() == list(range(7, 15)) and ring.dropped == 0
    ring.write(np.arange(15, 40, dtype=np.float32).reshape(-1, 1))  # 25 samples: the reader is 15 behind the ring
    chunk, cursor = ring.read(cursor)
    assert chunk[:, 0].tolist() == list(range(30, 40)) and cursor == 40
    assert ring.dropped == 15


def test_the_answer_asks_chromium_to_start_video_at_the_start_bitrate(media):
    cam = Camera(width=320, height=240, fps=30)
    browser = media(cam, lambda: [ColourTrack(320, 240)])
    answer = [m for m in browser.from_kernel if m["type"] == "answer"][-1]["sdp"]
    video = answer.split("m=video ", 1)[1]
    rtpmaps = [ln.split()[0][9:] for ln in video.split("\r\n") if ln.startswith("a=rtpmap:") and " rtx/" not in ln]
    for pt in rtpmaps:
        assert any(
            ln.startswith(f"a=fmtp:{pt} ") and "x-google-start-bitrate=1500" in ln for ln in video.split("\r\n")
        ), pt
    assert all("x-google" not in ln for ln in video.split("\r\n") if "apt=" in ln)  # retransmission untouched
    assert cam.snapshot_blocking().shape == (240, 320, 3)  # the aiortc "browser" accepted that answer


def test_start_bitrate_hint_touches_only_video_codecs():
    sdp = "\r\n".join(
        [
            "v=0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=rtpmap:111 opus/48000/2",
            "a=fmtp:111 minptime=10;useinbandfec=1",
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98",
            "a=rtpmap:96 VP8/90000",
            "a=rtpmap:97 rtx/90000",
            "a=fmtp:97 apt=96",
            "a=rtpmap:98 H264/90000",
            "a=fmtp:98 packetization-mode=1",
            "",
        ]
    )
    out = with_start_bitrate(sdp, 1200).split("\r\n")
    assert "a=fmtp:111 minptime=10;useinbandfec=1" in out
    assert out[out.index("a=rtpmap:96 VP8/90000") + 1] == "a=fmtp:96 x-google-start-bitrate=1200"
    assert "a=fmtp:97 apt=96" in out
    assert "a=fmtp:98 packetization-mode=1;x-google-start-bitrate=1200" in out
    assert with_start_bitrate(sdp, 0) == sdp
