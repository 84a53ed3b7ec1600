"""VideoOutput and AudioOutput through the real protocol, comm path and engine: an aiortc peer stands in for the
browser, offers recvonly and decodes what the kernel sent -- colours of frames, frequency and length of a tone."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from rtc_widgets import AudioOutput, VideoOutput
from rtc_widgets.sources import IDLE_REPEAT_S

from .fakebrowser import FakeBrowser
from .mediasources import COLOURS, ColourTrack, SineTrack, classify, peak_frequency


@pytest.fixture
def output() -> Iterator[Any]:
    """output(widget, kind, connect=True) -> fake browser offering ``kind`` recvonly; all closed afterwards."""
    made: list[tuple[Any, FakeBrowser]] = []

    def make(widget: Any, kind: str, connect: bool = True) -> FakeBrowser:
        browser = FakeBrowser(widget, receive=(kind,))
        made.append((widget, browser))
        if connect:
            browser.connect()
            widget.wait_connected_blocking(timeout=20)
        return browser

    yield make
    for widget, browser in made:
        widget.close()
        browser.close()


def collect(browser: FakeBrowser, seconds: float) -> list[tuple[float, Any]]:
    """(arrival time, frame) of everything the kernel's newest track delivers to the fake browser for ``seconds``."""

    async def run() -> list[tuple[float, Any]]:
        while not browser.remote_tracks:
            await asyncio.sleep(0.01)
        track = browser.remote_tracks[-1]
        out: list[tuple[float, Any]] = []
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                frame = await asyncio.wait_for(track.recv(), left)
            except (asyncio.TimeoutError, MediaStreamError):
                break
            out.append((time.monotonic(), frame))
        return out

    return browser.run(run(), seconds + 20)


def in_background(fn: Any) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def runs(values: list[int]) -> list[int]:
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


def pcm_of(frames: list[tuple[float, Any]]) -> np.ndarray:
    """Decoded Opus (s16, interleaved) as float mono in [-1, 1]."""
    parts = []
    for _t, f in frames:
        a = f.to_ndarray().reshape(-1, len(f.layout.channels))
        parts.append(a[:, 0].astype(np.float32) / 32768)
    return np.concatenate(parts)


def test_sent_frames_arrive_in_the_browser_with_their_colours_and_size(output):
    out = VideoOutput()
    browser = output(out, "video")
    answer = [m for m in browser.from_kernel if m["type"] == "answer"][-1]["sdp"]
    assert "a=sendonly" in answer.split("m=video", 1)[1].split("m=", 1)[0]

    def produce() -> None:  # red, green, blue: 0.8 s each at 30 fps, from a user thread
        for colour in COLOURS[:3]:
            img = np.full((192, 256, 3), colour, np.uint8)  # not the placeholder's size
            for _ in range(24):
                out.send(img)
                time.sleep(1 / 30)

    producer = in_background(produce)
    frames = collect(browser, 3.2)
    producer.join()
    sized = [f for _t, f in frames if (f.width, f.height) == (256, 192)]
    colours = [classify(f.to_ndarray(format="rgb24")) for f in sized]
    print(f"{len(frames)} frames arrived, colour runs {runs(colours)}")
    assert runs(colours) == [0, 1, 2], runs(colours)  # red, green, blue in order; no frame misread
    assert len(sized) >= 60
    assert out.frame_width == 256 and out.frame_height == 192
    deadline = time.monotonic() + 3
    while out.frames_sent < 60 and time.monotonic() < deadline:  # counters reach the trait every interval
        time.sleep(0.1)
    assert 60 <= out.frames_sent <= 72 and out.error == ""


def test_a_still_picture_is_repeated_at_the_idle_rate_and_survives_a_reconnect(output):
    out = VideoOutput()
    browser = output(out, "video")
    first = collect(browser, 1.2)  # nothing sent yet: a black placeholder at the idle rate
    assert first and all(classify(f.to_ndarray(format="rgb24")) == COLOURS.index((0, 0, 0)) for _t, f in first)
    out.send(np.full((120, 160, 3), (0, 255, 0), np.uint8))
    frames = collect(browser, 2.2)
    green = [t for t, f in frames if (f.width, f.height) == (160, 120)]
    assert all(classify(f.to_ndarray(format="rgb24")) == 1 for _t, f in frames if f.width == 160)
    gaps = np.diff(green)
    print(f"{len(green)} frames of one still picture in 2.2 s, gaps {np.round(gaps, 2).tolist()}")
    assert 3 <= len(green) <= 6
    assert all(abs(g - IDLE_REPEAT_S) < 0.15 for g in gaps)
    assert out.source.frames_sent == 1  # repeats are not new frames
    browser.connect()  # a new session (page reload) shows the same picture at once
    out.wait_connected_blocking(timeout=20)
    again = collect(browser, 1.0)
    assert again and classify(again[0][1].to_ndarray(format="rgb24")) == 1


def test_a_producer_faster_than_max_fps_has_frames_replaced_and_counted(output):
    out = VideoOutput(max_fps=10)
    browser = output(out, "video")
    collect(browser, 0.6)  # the placeholder is flowing: the track is live

    def produce() -> None:  # frame n is the gray level 4 n, at ~120 fps (gray input: (H, W) uint8)
        for n in range(60):
            out.send(np.full((120, 160), 4 * n, np.uint8))
            time.sleep(1 / 120)

    producer = in_background(produce)
    frames = collect(browser, 1.6)
    producer.join()
    numbers = [
        round(float(f.to_ndarray(format="rgb24")[30:90, 40:120].mean()) / 4) for _t, f in frames if f.width == 160
    ]
    distinct = runs(numbers)
    src = out.source
    print(f"sent {src.frames_sent}, dropped {src.frames_dropped}; the browser saw frames {distinct}")
    assert src.frames_sent + src.frames_dropped == 60  # every frame either went out or was replaced
    assert src.frames_dropped >= 40  # ~0.6 s at 10 fps took ~6-8 of 60
    assert distinct == sorted(distinct) and distinct[-1] == 59  # never an older frame after a newer; newest wins
    assert len(distinct) == src.frames_sent
    assert all(b - a > 1 for a, b in itertools.pairwise(distinct[:-1]))  # replaced frames really were skipped


def test_a_tone_sent_at_16_khz_arrives_at_440_hz_with_its_length(output):
    out = AudioOutput()
    browser = output(out, "audio")
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    time.sleep(0.3)
    assert out.send(tone, sample_rate=16000) == pytest.approx(48000, abs=48)
    frames = collect(browser, 2.0)
    pcm = pcm_of(frames)
    loud = np.flatnonzero(np.abs(pcm) > 0.05)
    duration = (loud[-1] - loud[0]) / 48000
    segment = pcm[loud[0] : loud[-1]]
    peak = peak_frequency(segment, 48000)
    print(f"{len(frames)} audio frames, tone of {duration:.3f} s, peak {peak:.2f} Hz, max {np.abs(segment).max():.3f}")
    assert abs(peak - 440) < 2
    assert abs(duration - 1.0) < 0.03
    assert 0.4 < np.abs(segment).max() < 0.6
    # one continuous sine, no gap or repeat: x[n+1] + x[n-1] = 2 cos(w) x[n] holds to codec noise
    w = 2 * np.cos(2 * np.pi * 440 / 48000)
    inner = segment[2400:-2400]
    assert np.percentile(np.abs(inner[2:] + inner[:-2] - w * inner[1:-1]), 99.9) < 0.02
    # 20 ms frames paced in real time (aiortc's encoder needs it): 2 s of sound took 2 s of wall clock
    arrivals = np.array([t for t, _f in frames])
    rate = np.polyfit(arrivals - arrivals[0], np.arange(len(arrivals)) * 0.02, 1)[0]
    assert abs(rate - 1.0) < 0.05, rate


def test_a_full_audio_queue_drops_what_does_not_fit_and_counts_it(output):
    out = AudioOutput(buffer_seconds=0.5)
    browser = output(out, "audio", connect=False)
    t = np.arange(48000) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    assert out.send(tone) == 24000  # before anyone listens: only buffer_seconds fit
    assert out.source.samples_dropped == 24000 and out.source.queued_seconds == 0.5
    browser.connect()
    out.wait_connected_blocking(timeout=20)
    pcm = pcm_of(collect(browser, 1.5))
    loud = np.flatnonzero(np.abs(pcm) > 0.05)
    duration = (loud[-1] - loud[0]) / 48000
    print(f"queued 0.5 s of a 1 s tone; the browser heard {duration:.3f} s")
    assert abs(duration - 0.5) < 0.03
    assert abs(peak_frequency(pcm[loud[0] : loud[-1]], 48000) - 1000) < 3
    deadline = time.monotonic() + 3
    while out.samples_dropped != 24000 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert out.samples_dropped == 24000


def test_blocking_send_waits_for_room_instead_of_dropping(output):
    out = AudioOutput(buffer_seconds=0.25)
    browser = output(out, "audio")
    t = np.arange(48000) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    got: list[list[tuple[float, Any]]] = []
    listener = in_background(lambda: got.append(collect(browser, 2.0)))
    t0 = time.monotonic()
    assert out.send(tone, block=True, timeout=5) == 48000
    waited = time.monotonic() - t0
    listener.join()
    pcm = pcm_of(got[0])
    loud = np.flatnonzero(np.abs(pcm) > 0.05)
    print(f"send(block=True) of 1 s into a 0.25 s queue returned after {waited:.2f} s; heard {len(loud)} samples")
    assert 0.6 < waited < 1.0  # it waited for the real-time track to make room
    assert out.source.samples_dropped == 0
    assert abs((loud[-1] - loud[0]) / 48000 - 1.0) < 0.03
    with pytest.raises(TypeError, match="float samples"):
        out.send(np.zeros(10, np.int32))


def test_play_echoes_an_aiortc_track_and_stop_ends_it(output):
    video = VideoOutput()
    vb = output(video, "video")
    source = ColourTrack(320, 240, frames_per_colour=15)
    video.play(source)
    colours = [classify(f.to_ndarray(format="rgb24")) for _t, f in collect(vb, 2.5) if f.width == 320]
    order = runs(colours)
    print(f"played ColourTrack: {len(colours)} frames, runs {order}")
    assert len(colours) >= 50
    assert len(order) >= 4 and all((b - a) % len(COLOURS) == 1 for a, b in itertools.pairwise(order))
    video.stop()
    assert source.readyState == "ended"  # the output took the track over and stopped it

    audio = AudioOutput()
    ab = output(audio, "audio")
    sine = SineTrack(660.0)
    audio.play(sine)
    pcm = pcm_of(collect(ab, 1.5))[9600:]  # past the start-up
    assert abs(peak_frequency(pcm, 48000) - 660) < 2 and np.abs(pcm).max() > 0.3
    audio.stop()
    assert sine.readyState == "ended"
    after = pcm_of(collect(ab, 1.0))
    assert np.abs(after[-24000:]).max() < 0.01  # silence after stop() (the receiver still held ~0.1 s)


def test_an_offer_without_a_recvonly_section_is_a_clear_error(output):
    out = VideoOutput()
    browser = FakeBrowser(out)  # offers only data channels, like a page whose widget code predates VideoOutput
    try:
        browser.run(browser._connect())  # sends the offer; no answer comes
        with pytest.raises(ConnectionError, match="no video section to receive on"):
            out.wait_connected_blocking(timeout=10)
        bad = [m for m in browser.errors() if m["code"] == "bad-sdp"]
        assert bad and "reload the page after upgrading rtc_widgets" in bad[0]["message"]
    finally:
        out.close()
        browser.close()


def test_images_are_checked_and_odd_sizes_cropped():
    out = VideoOutput()
    try:
        with pytest.raises(TypeError, match="uint8"):
            out.send(np.zeros((10, 10, 3), np.float32))
        with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
            out.send(np.zeros((10, 10, 5), np.uint8))
        out.send(np.zeros((121, 161, 3), np.uint8))
        assert (out.source.width, out.source.height) == (160, 120)
    finally:
        out.close()
