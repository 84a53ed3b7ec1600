"""Stats through the real protocol, comm and control channel, with aiortc standing in for the browser."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from typing import Any

import numpy as np
import pytest

import rtc_widgets
from rtc_widgets import PeerStats, StatsView, protocol
from rtc_widgets.sdp import parse_candidate, parse_sdp
from rtc_widgets.stats import DATAFRAME_COLUMNS, METRICS

CHROME_OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 46117317 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1 2",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 0",
        "c=IN IP4 0.0.0.0",
        "a=candidate:1 1 udp 2122260223 198.18.0.2 50000 typ host generation 0",
        "a=candidate:2 1 udp 1686052607 203.0.113.9 50001 typ srflx raddr 198.18.0.2 rport 50000",
        "a=candidate:3 1 tcp 1518280447 198.18.0.2 9 typ host tcptype active",
        "a=ice-ufrag:abcd",
        "a=fingerprint:sha-256 AA:BB",
        "a=setup:actpass",
        "a=mid:0",
        "a=sendonly",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:0 PCMU/8000",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "a=mid:1",
        "a=recvonly",
        "a=rtpmap:96 VP8/90000",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "a=mid:2",
        "a=sctp-port:5000",
        "a=max-message-size:262144",
        "",
    ]
)


def stats_msg(t_ms: float, **fields: Any) -> dict[str, Any]:
    return {"v": protocol.VERSION, "type": "stats", "t": t_ms, **fields}


def wait(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def test_sdp_is_parsed_into_sections_codecs_and_typed_candidates():
    parsed = parse_sdp(CHROME_OFFER)
    assert [(m["kind"], m["mid"], m["direction"]) for m in parsed["media"]] == [
        ("audio", "0", "sendonly"),
        ("video", "1", "recvonly"),
        ("application", "2", "sendrecv"),
    ]
    opus = parsed["media"][0]["codecs"][0]
    assert opus == {"payload_type": 111, "name": "opus", "clock_rate": 48000, "channels": 2, "fmtp": opus["fmtp"]}
    assert opus["fmtp"] == "minptime=10;useinbandfec=1"
    assert parsed["media"][1]["codecs"][1]["fmtp"] == "apt=96"
    assert parsed["media"][2]["sctp_port"] == 5000 and parsed["media"][2]["max_message_size"] == 262144
    assert [c["type"] for c in parsed["candidates"]] == ["host", "srflx", "host"]
    assert parsed["candidates"][1]["related_address"] == "198.18.0.2"
    assert parsed["candidates"][2]["tcptype"] == "active" and parsed["candidates"][2]["protocol"] == "tcp"
    assert parsed["bundle"] == ["0", "1", "2"] and parsed["fingerprint"] == "sha-256"
    assert parse_candidate("candidate:1 1 udp 5 1.2.3.4 99 typ relay raddr 0.0.0.0 rport 0")["type"] == "relay"
    assert parse_candidate("nonsense") is None


def test_browser_stats_arrive_over_the_control_channel_and_the_comm(connect):
    ch, browser = connect()
    far_future = (time.time() + 3600) * 1000  # a browser clock an hour ahead
    pair = {"local": {"type": "host", "address": "10.0.0.1", "port": 1}, "remote": {"type": "prflx", "port": 2}}
    over_dc = stats_msg(
        far_future,
        m={"rtt_ms": 1.5, "bitrate_in_kbps": 800.0},
        ev=[{"k": "connection", "s": "connected", "t": far_future - 10}],
        pair=pair,
    )
    browser.run(_send_control(browser, protocol.dumps(over_dc)))
    samples = wait(lambda: ch.stats.samples("browser"))
    assert samples[0].metrics == {"rtt_ms": 1.5, "bitrate_in_kbps": 800.0}
    assert abs(samples[0].t - time.time()) < 5  # mapped onto the kernel clock
    # from the kernel's point of view the browser's local end is the remote one
    assert ch.candidates["selected"]["local"]["type"] == "prflx"
    assert ch.candidates["selected"]["remote"]["address"] == "10.0.0.1"
    assert ch.inspector["candidates"]["selected"] is not None  # synced to the view
    assert any(e["side"] == "browser" and e["state"] == "connected" for e in ch.stats.events)

    browser.to_kernel(stats_msg(far_future + 1000, session=browser.session, m={"rtt_ms": 2.5}))
    wait(lambda: len(ch.stats.samples("browser")) == 2)
    assert ch.stats.latest["browser.rtt_ms"] == 2.5
    assert not browser.errors()

    # a stats message that breaks the schema is refused with a clear error, the peer stays up
    browser.to_kernel(stats_msg(far_future, m={"Bad-Name": 1}))
    browser.to_kernel(stats_msg(far_future, m={"x": "not a number"}))
    errors = wait(lambda: len(browser.errors()) >= 2 and browser.errors())
    assert {e["code"] for e in errors} == {"bad-message"}
    assert len(ch.stats.samples("browser")) == 2
    assert ch.connection_state == "connected"


async def _send_control(browser: Any, text: str) -> None:
    # the kernel may see the channel open a moment before this end does
    while browser.control.readyState == "connecting":
        await asyncio.sleep(0.005)
    browser.control.send(text)


def test_kernel_samples_probe_rtt_rates_events_sdp_and_candidates(connect):
    ch, browser = connect(stats_interval=100)
    wait(lambda: ch.stats.samples("kernel"))  # rates are differences between samples
    for i in range(50):
        browser.send(f"message {i}")
        ch.send(b"y" * 1000)
    browser.wait_received(50)
    wait(lambda: any("probe_rtt_ms" in s.metrics for s in ch.stats.samples("kernel")))
    wait(lambda: any(s.metrics.get("messages_in_per_s", 0) > 0 for s in ch.stats.samples("kernel")))
    kernel = ch.stats.samples("kernel")
    assert max(s.metrics.get("channel_out_kbps", 0) for s in kernel) > 0
    assert max(s.metrics.get("bitrate_out_kbps", 0) for s in kernel) > 0
    assert all(s.metrics["probe_rtt_ms"] > 0 for s in kernel if "probe_rtt_ms" in s.metrics)
    assert set().union(*(s.metrics for s in kernel)) <= set(METRICS)

    conn = [e["state"] for e in ch.stats.events if e["side"] == "kernel" and e["kind"] == "connection"]
    assert conn[:3] == ["new", "connecting", "connected"]
    assert [e["state"] for e in ch.stats.events if e["kind"] == "dtls"][-1] == "connected"
    assert [m["kind"] for m in ch.sdp.local["media"]] == ["application"]
    assert ch.sdp.remote_text.startswith("v=0")
    cands = ch.candidates
    assert cands["local"] and {c["type"] for c in cands["local"]} <= {"host", "srflx", "relay"}
    # the fake browser trickled its candidates separately, as Chromium does
    assert cands["remote"] and all(c["type"] == "host" for c in cands["remote"])
    # this fake browser sends no stats: the selected pair is the one aioice nominated, seen from the kernel
    selected = cands["selected"]
    assert (selected["local"]["address"], selected["local"]["port"]) in {
        (c["address"], c["port"]) for c in cands["local"]
    }
    assert selected["remote"]["port"] in {c["port"] for c in cands["remote"]} | {c["port"] for c in cands["local"]}


def test_series_stays_bounded_by_window_and_row_cap():
    stats = PeerStats("bounded", register=False)
    stats.window_s = 2
    assert stats.window_s == 2
    now = time.time()
    for i in range(2000):  # 200 s at 100 ms
        stats.add("browser", {"rtt_ms": i}, now - 200 + i * 0.1)
    rows = stats.samples()
    assert len(rows) <= 21 and rows[-1].metrics["rtt_ms"] == 1999
    assert rows[-1].t - rows[0].t <= 2.0
    # a hostile clock (every sample "now") still cannot grow it past the cap
    for _ in range(5000):
        stats.add("browser", {"rtt_ms": 1})
    assert len(stats) == stats.max_samples
    assert stats.add("browser", {"rtt_ms": math.nan, "x": math.inf}) is None  # nothing finite: no sample


def test_dataframe_long_and_wide_with_documented_columns():
    stats = PeerStats("df", register=False)
    t0 = float(int(time.time()))
    stats.add("browser", {"rtt_ms": 1.0, "bitrate_in_kbps": 10.0}, t0)
    stats.add("kernel", {"probe_rtt_ms": 2.0}, t0 + 0.5)
    df = stats.to_dataframe()
    assert tuple(df.columns) == DATAFRAME_COLUMNS
    assert len(df) == 3 and str(df.time.dtype) == "datetime64[ns, UTC]"
    assert df[df.metric == "bitrate_in_kbps"].unit.item() == "kbit/s"
    wide = stats.to_dataframe(wide=True)
    assert list(wide.side) == ["browser", "kernel"] and math.isnan(wide.probe_rtt_ms[0])
    assert stats.latest == {
        "time": t0 + 0.5,
        "browser.bitrate_in_kbps": 10.0,
        "browser.rtt_ms": 1.0,
        "kernel.probe_rtt_ms": 2.0,
    }
    assert len(PeerStats("empty", register=False).to_dataframe()) == 0
    stats.event("kernel", "connection", "new", 999.0)
    stats.event("kernel", "connection", "new", 999.1)  # same state twice: one event
    stats.event("kernel", "connection", "connected", 999.2)
    assert [e["state"] for e in stats.events] == ["new", "connected"]
    assert list(stats.events_dataframe().columns) == ["time", "peer", "side", "kind", "state"]


def test_export_and_load_session_round_trip(connect, tmp_path):
    ch, _browser = connect(stats_interval=100)
    wait(lambda: len(ch.stats.samples("kernel")) >= 3)
    path = rtc_widgets.export_session(tmp_path / "run.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "rtc_widgets.session" and doc["version"] == 1
    loaded = {s.peer_id: s for s in rtc_widgets.load_session(path)}
    again = loaded[ch.peer_id]
    saved = next(p for p in doc["peers"] if p["peer_id"] == ch.peer_id)
    assert len(again) == len(saved["samples"]) >= 3
    assert again.events == saved["events"]
    assert again.sdp.local == parse_sdp(saved["sdp"]["local"]) and again.sdp.local["media"]
    assert again.to_dataframe().equals(PeerStats.from_dict(saved).to_dataframe())
    assert again.candidates["local"] == ch.candidates["local"]
    view = StatsView(*rtc_widgets.load_session(path))
    assert not view.live and ch.stats.name in view.peers
    view.close()

    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not an rtc_widgets session"):
        rtc_widgets.load_session(tmp_path / "other.json")


def test_statsview_sends_a_snapshot_then_binary_rows():
    stats = PeerStats("view", register=False)
    t0 = float(int(time.time()))
    stats.add("browser", {"rtt_ms": 1.0}, t0)
    stats.event("browser", "connection", "connected", t0 - 1)
    view = StatsView(stats, window=30, charts=["rtt", "timeline"])
    sent: list[tuple[dict[str, Any], list[Any]]] = []
    original = view.comm.publish_msg

    def publish_msg(msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None, **keys: Any) -> Any:
        if msg_type == "comm_msg" and data.get("method") == "custom":
            sent.append((data["content"], list(buffers or [])))
        return original(msg_type, data, metadata, buffers, **keys)

    view.comm.publish_msg = publish_msg
    view._handle_msg(
        {"content": {"data": {"method": "custom", "content": {"type": "hello", "view": "v1"}}}, "buffers": []}
    )
    ((snap, [buf]),) = sent
    assert snap["type"] == "snapshot" and snap["view"] == "v1" and snap["names"] == ["rtt_ms"] and snap["n"] == 1
    assert np.frombuffer(bytes(buf), "<f8").tolist() == [1.0, t0, 0.0, 1.0]  # seq, t, side, rtt_ms
    assert snap["events"] == [[t0 - 1, "browser", "connection", "connected"]]

    stats.add("kernel", {"probe_rtt_ms": 3.0, "fps_in": 30.0}, t0 + 0.25)
    view.flush()
    rows, [buf] = sent[-1]
    assert rows["type"] == "rows" and rows["names"] == ["fps_in", "probe_rtt_ms"] and rows["n"] == 1
    assert np.frombuffer(bytes(buf), "<f8").tolist() == [2.0, t0 + 0.25, 1.0, 30.0, 3.0]
    view.close()
    stats.add("kernel", {"probe_rtt_ms": 4.0})
    assert len(sent) == 2  # closed: no listener left


def test_media_stats_count_frames_and_measure_the_tone_in_the_kernel():
    from rtc_widgets import Camera, Microphone

    from .fakebrowser import FakeBrowser
    from .mediasources import ColourTrack, SineTrack

    cam = Camera(stats_interval=200)
    mic = Microphone(sample_rate=48000, channels=1, stats_interval=200)
    browsers = [FakeBrowser(cam, tracks=lambda: [ColourTrack(320, 240, fps=30)])]
    browsers.append(FakeBrowser(mic, tracks=lambda: [SineTrack(440.0, amplitude=0.5)]))
    try:
        for widget, browser in zip((cam, mic), browsers, strict=True):
            browser.connect()
            widget.wait_connected_blocking(timeout=20)
        wait(lambda: len([s for s in cam.stats.samples("kernel") if "fps_in" in s.metrics]) >= 8, 20)
        wait(lambda: len([s for s in mic.stats.samples("kernel") if "audio_level" in s.metrics]) >= 5, 20)
        fps = sorted(s.metrics["fps_in"] for s in cam.stats.samples("kernel") if "fps_in" in s.metrics)
        assert 15 <= fps[len(fps) // 2] <= 35  # the fake camera sends 30 fps
        cam_kernel = cam.stats.samples("kernel")[-1].metrics
        assert cam_kernel["frame_width"] == 320 and cam_kernel["video_jitter_ms"] >= 0
        assert 0 <= cam_kernel.get("video_loss", 0) <= 0.05
        # a 0.5-amplitude sine has an RMS of 0.354; Opus keeps it close
        level = mic.stats.samples("kernel")[-1].metrics["audio_level"]
        assert 0.25 < level < 0.45, level
        assert mic.stats.samples("kernel")[-1].metrics["samples_dropped"] == 0  # measuring it dropped nothing
    finally:
        for widget, browser in zip((cam, mic), browsers, strict=True):
            widget.close()
            browser.close()


def test_queue_lag_shows_a_consumer_falling_behind_and_catching_up(connect):
    ch, browser = connect(stats_interval=100)
    release = threading.Event()
    ch.on_message(lambda m: release.wait(10))  # user code stuck on the first message
    for i in range(5):
        browser.send(f"m{i}")
    wait(lambda: any(s.metrics.get("queue_lag_ms", 0) > 500 for s in ch.stats.samples("kernel")))
    release.set()  # user code keeps up again: the lag falls back to (about) nothing
    wait(lambda: ch.stats.samples("kernel")[-1].metrics.get("queue_lag_ms", 1e9) < 100)
    assert ch.channel.incoming.dropped == 0


def test_sinks_measure_queue_lag():
    import av

    from rtc_widgets.media import AudioSink, VideoSink

    video = VideoSink("v")
    assert video.queue_lag() == 0.0
    video.add_callback(lambda img: time.sleep(0.5))  # slow user code
    frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
    for _ in range(20):
        video.publish(frame)
        time.sleep(0.02)
    assert video.queue_lag() > 0.05 and video.frames_dropped > 0
    video.close()

    audio = AudioSink("a", 16000, 1, 10)
    gate = threading.Event()
    audio.add_callback(lambda chunk: gate.wait(5))
    pcm = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.float32), format="flt", layout="mono")
    pcm.sample_rate = 16000
    for _ in range(10):  # 1 s of audio while the callback is stuck
        audio.publish(pcm)
        time.sleep(0.01)
    assert 0.5 < audio.queue_lag() <= 1.0
    gate.set()
    deadline = time.monotonic() + 5
    while audio.queue_lag() > 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert audio.queue_lag() == 0
    audio.close()
