"""Media over the relay, kernel end, through the widget's real comm path (ipywidgets ``_handle_msg`` with buffers).

A fake browser offers, the kernel gives up on WebRTC at once (``relay_after=0``) and says ``relay``; the test then
plays the page's part: frames encoded with PyAV exactly as WebCodecs sends them, as ``media`` messages with the bytes
as a comm buffer. What the kernel makes of them is checked by content (colours, the tone), and what it answers
(acks, key-frame requests, errors) by the messages it sent back. Untrusted input: wrong sizes, garbage, frames of an
old session -- the kernel stays up and the stream recovers.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest

from rtc_widgets import Camera, Microphone, VideoOutput
from rtc_widgets.protocol import VERSION
from rtc_widgets.transports.relaycodecs import RelayEncoder

from .fakebrowser import FakeBrowser
from .mediasources import ColourTrack, SineTrack, peak_frequency


def wait_for(cond: Any, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what or cond}"
        time.sleep(0.02)


@pytest.fixture
def relayed() -> Iterator[Any]:
    """relayed(widget) -> fake browser whose session the kernel switched to the relay."""
    made: list[tuple[Any, FakeBrowser]] = []

    def make(widget: Any, tracks: Any = None, receive: tuple[str, ...] = ()) -> FakeBrowser:
        browser = FakeBrowser(widget, tracks=tracks, receive=receive)
        made.append((widget, browser))
        browser.run(browser._connect())
        wait_for(lambda: any(m.get("type") == "relay" for m in browser.from_kernel), what="the relay message")
        widget.wait_connected_blocking(timeout=10)
        assert widget.transport == "relay" and "relay_after=0" in widget.error
        return browser

    yield make
    for widget, browser in made:
        widget.close()
        browser.close()


def send_media(browser: FakeBrowser, fields: dict[str, Any], payload: bytes, seq: int, **override: Any) -> None:
    msg = {"v": VERSION, "type": "media", "session": browser.session, "seq": seq, **fields, "size": len(payload)}
    msg.update(override)
    browser.widget._handle_msg(
        {"content": {"data": {"method": "custom", "content": msg}}, "buffers": [memoryview(payload)]}
    )


def encoded_colours(codec: str, colours: list[tuple[int, int, int]], per: int) -> list[tuple[dict[str, Any], bytes]]:
    enc = RelayEncoder("video", codec)
    out: list[tuple[dict[str, Any], bytes]] = []
    for i in range(len(colours) * per):
        frame = av.VideoFrame.from_ndarray(np.full((240, 320, 3), colours[i // per], np.uint8), format="rgb24")
        frame.pts, frame.time_base = i * 3000, Fraction(1, 90000)
        out += enc.encode(frame, key=i == 0)
    return out


@pytest.mark.parametrize("codec", ["h264", "vp8", "jpeg"])
def test_relayed_frames_reach_the_camera_api_with_their_colours_and_are_acked(relayed, codec: str) -> None:
    cam = Camera(width=320, height=240, fps=30, relay_after=0)
    browser = relayed(cam, tracks=lambda: [ColourTrack(320, 240)])
    seen: list[tuple[int, int, int]] = []
    cam.on_frame(lambda img: seen.append(tuple(int(v) for v in img[120, 160])))
    chunks = encoded_colours(codec, [(220, 30, 30), (30, 30, 220)], per=10)
    for seq, (fields, payload) in enumerate(chunks):
        send_media(browser, fields, payload, seq)
        time.sleep(0.01)
    wait_for(lambda: cam.frames_received >= len(chunks), what="all relayed frames decoded")
    img = cam.snapshot_blocking()
    assert img.shape == (240, 320, 3) and abs(int(img[120, 160, 2]) - 220) < 25  # the newest: blue
    assert any(r > 180 and b < 70 for r, _g, b in seen) and any(b > 180 and r < 70 for r, _g, b in seen)
    acks = [m for m in browser.from_kernel if m.get("type") == "ack"]
    assert [a["seq"] for a in acks] == list(range(len(chunks))) and not any(a.get("key") for a in acks)


def test_relayed_opus_and_pcm_reach_the_microphone_api_in_order(relayed) -> None:
    mic = Microphone(sample_rate=16000, relay_after=0)
    browser = relayed(mic, tracks=lambda: [SineTrack(440)])
    chunks: list[np.ndarray] = []
    mic.on_audio(lambda c: chunks.append(c.copy()))
    t = np.arange(48000) / 48000
    tone = (0.4 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)[None]
    seq = 0
    for codec in ("opus", "pcm16"):  # one second of each, one after the other on the same track
        frame = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, 0, Fraction(1, 48000)
        for fields, payload in RelayEncoder("audio", codec).encode(frame):
            send_media(browser, fields, payload, seq)
            seq += 1
    wait_for(lambda: sum(map(len, chunks)) >= 30000, what="two seconds of relayed audio")
    got = np.concatenate(chunks)[:, 0]
    assert mic.samples_dropped == 0
    assert abs(len(got) - 32000) <= 960  # every sample, at 16 kHz (one Opus frame of slack)
    assert abs(peak_frequency(got[2000:15000], 16000) - 440) < 3  # the Opus second
    assert abs(peak_frequency(got[18000:31000], 16000) - 440) < 3  # the PCM second


def test_bad_relayed_media_gets_errors_and_the_stream_recovers_at_the_next_key_frame(relayed) -> None:
    cam = Camera(width=320, height=240, fps=30, relay_after=0)
    browser = relayed(cam, tracks=lambda: [ColourTrack(320, 240)])
    chunks = encoded_colours("h264", [(30, 200, 30)], per=6)
    fields, payload = chunks[1]  # a delta frame first: undecodable alone
    send_media(browser, fields, payload, 0)
    send_media(browser, fields, payload, 1, size=len(payload) + 5)  # lies about its size
    browser.widget._handle_msg(  # no buffer at all
        {
            "content": {
                "data": {
                    "method": "custom",
                    "content": {
                        "v": VERSION,
                        "type": "media",
                        "session": browser.session,
                        "track": "video",
                        "seq": 2,
                        "codec": "h264",
                        "ts": 0,
                        "size": 3,
                    },
                }
            },
            "buffers": [],
        }
    )
    send_media(browser, {**fields, "key": True}, b"\x00garbage\xff" * 50, 3)  # garbage claiming to be a key frame
    send_media(browser, fields, payload, 4, session="an-old-session")  # a late frame of a replaced session: ignored
    wait_for(lambda: len(browser.errors()) >= 2, what="errors for the malformed messages")
    assert any("payload" in e["message"] for e in browser.errors())
    wait_for(lambda: any(m.get("type") == "ack" and m.get("key") for m in browser.from_kernel), what="a key request")
    for seq, (f, p) in enumerate(chunks, start=10):  # a fresh key frame and its deltas: back in business
        send_media(browser, f, p, seq)
    wait_for(lambda: cam.frames_received >= 1, what="a frame after the key frame")
    img = cam.snapshot_blocking()
    assert img[120, 160, 1] > 150 and img[120, 160, 0] < 80
    assert cam.peer.closed is False


def test_the_kernels_video_goes_to_the_page_as_relayed_media_paced_by_acks(relayed) -> None:
    out = VideoOutput(relay_after=0, relay_codec="jpeg")
    browser = relayed(out, receive=("video",))
    for _ in range(20):
        out.send(np.full((240, 320, 3), (200, 40, 40), np.uint8))
        time.sleep(0.02)
    wait_for(lambda: len([m for m in browser.from_kernel if m.get("type") == "media"]) >= 3, what="relayed frames")
    sent = [m for m in browser.from_kernel if m.get("type") == "media"]
    assert all(m["codec"] == "jpeg" and m["track"] == "video" and m["w"] == 320 for m in sent)
    # no acks came back: the kernel stops at the window instead of queueing frames for a page that is not there
    time.sleep(0.5)
    window = out.peer._relay_senders["video"]
    assert len([m for m in browser.from_kernel if m.get("type") == "media"]) <= 5 and window.frames_skipped > 0


def test_the_switch_to_the_relay_ends_the_webrtc_reader_and_leaves_no_pending_task(caplog) -> None:
    """aiortc's remote track never ended a pending recv() when the relay replaced WebRTC before media flowed: the
    reader task stayed pending and the garbage collector destroyed it ("Task was destroyed but it is pending!",
    printed into a notebook cell)."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    cam = Camera(width=320, height=240, relay_after=0)
    browser = FakeBrowser(cam, tracks=lambda: [ColourTrack(320, 240)])
    try:
        browser.run(browser._connect())
        cam.wait_connected_blocking(10)
        time.sleep(0.5)
        for _ in range(3):
            gc.collect()
            time.sleep(0.1)
    finally:
        cam.close()
        browser.close()
    assert not [r.getMessage() for r in caplog.records if "destroyed but it is pending" in r.getMessage()]
