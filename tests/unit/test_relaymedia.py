"""Media over the relay: RelayEncoder -> media messages -> RelayTrack, checked by content (colour, size, pitch,
sample count), and a RelayTrack that survives garbage, lost frames and absurd sizes by waiting for a key frame."""

from __future__ import annotations

import asyncio
import fractions
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from rtc_widgets import protocol
from rtc_widgets.protocol import RELAY
from rtc_widgets.transports.relaycodecs import OPUS_FRAME, RelayEncoder
from rtc_widgets.transports.relaymedia import RelayTrack

from .conftest import run_async
from .mediasources import peak_frequency

RED, BLUE = (255, 0, 0), (0, 0, 255)
Message = tuple[dict[str, Any], bytes]


def relay_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("rtc-widgets-relay")]


@pytest.fixture(autouse=True)
def no_leaked_workers() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 5
    while relay_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert relay_threads() == [], "a RelayTrack's worker thread outlived stop()"


def video_frame(colour: tuple[int, int, int], index: int, w: int = 320, h: int = 240, fps: int = 30) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), colour, np.uint8), format="rgb24")
    frame.pts, frame.time_base = index * 90000 // fps, fractions.Fraction(1, 90000)
    return frame


def sine(seconds: float, rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.5 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return np.repeat(mono[:, None], channels, axis=1)  # (n, channels)


def audio_frames(pcm: np.ndarray, rate: int, frame_ms: int = 20) -> Iterator[av.AudioFrame]:
    step = rate * frame_ms // 1000
    layout = "mono" if pcm.shape[1] == 1 else "stereo"
    for i in range(0, len(pcm), step):
        frame = av.AudioFrame.from_ndarray(pcm[i : i + step].reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, i, fractions.Fraction(1, rate)
        yield frame


def to_messages(fields_and_payloads: list[Message], first_seq: int = 0) -> list[Message]:
    """The caller's part: v, type, session, seq, size; every message must pass the protocol's own checks."""
    out = []
    for seq, (fields, payload) in enumerate(fields_and_payloads, first_seq):
        msg = {"v": protocol.VERSION, "type": "media", "session": "s1", "seq": seq, "size": len(payload), **fields}
        protocol.check_attachment(protocol.validate(msg), payload)
        out.append((msg, payload))
    return out


def encode_video(codec: str, frames: list[av.VideoFrame], **kw: Any) -> list[Message]:
    enc = RelayEncoder("video", codec, **kw)
    return to_messages([m for f in frames for m in enc.encode(f)])


def mean_colour(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)


async def until(cond: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def push_and_take(track: RelayTrack, messages: list[Message], returned: list[bool] | None = None) -> list[Any]:
    """Push each message and take what it decodes to (nothing, for a skipped or broken frame); push()'s answers
    (True: queued, False: dropped) go to ``returned``."""
    got = []
    for header, payload in messages:
        before = (track.frames_decoded, track.decode_errors, track.frames_skipped)
        queued = track.push(header, payload)
        if returned is not None:
            returned.append(queued)
        await until(lambda b=before: (track.frames_decoded, track.decode_errors, track.frames_skipped) != b)
        for _ in range(track.frames_decoded - before[0]):
            got.append(await asyncio.wait_for(track.recv(), 5))
    return got


def colour_sequence(n_red: int = 15, n_blue: int = 15, **kw: Any) -> list[av.VideoFrame]:
    return [video_frame(RED if i < n_red else BLUE, i, **kw) for i in range(n_red + n_blue)]


@pytest.mark.parametrize("codec", ["vp8", "h264", "jpeg"])
def test_video_round_trip_keeps_colour_size_and_timing(codec: str) -> None:
    messages = encode_video(codec, colour_sequence())
    assert messages[0][0]["key"] and (messages[0][0]["w"], messages[0][0]["h"]) == (320, 240)

    async def main() -> tuple[list[av.VideoFrame], RelayTrack]:
        track = RelayTrack("video")
        try:
            return await push_and_take(track, messages), track
        finally:
            track.stop()

    frames, track = run_async(main())
    assert len(frames) == 30 and track.decode_errors == 0 and track.frames_dropped == 0
    for i, frame in enumerate(frames):
        want = RED if i < 15 else BLUE
        assert np.abs(mean_colour(frame) - want).max() <= 20, (i, mean_colour(frame))
        assert (frame.width, frame.height) == (320, 240)
        assert frame.time_base == fractions.Fraction(1, 90000)
        assert frame.pts == i * 3000  # ts in µs back to 90 kHz ticks
    assert len(track.latency_ms) == 30 and 0 <= min(track.latency_ms) < 1000


def test_encoded_payloads_are_what_webcodecs_decodes() -> None:
    h264 = encode_video("h264", colour_sequence(2, 1))
    nal_types = [{p[i + 3] & 0x1F for i in range(len(p) - 3) if p[i : i + 3] == b"\0\0\1"} for _, p in h264]
    assert all(p.startswith(b"\0\0\0\1") for _, p in h264)
    assert {7, 8, 5} <= nal_types[0], "an H.264 key frame carries SPS, PPS and an IDR slice, Annex B"
    assert h264[0][1][5] == 66, "Baseline profile"
    assert 7 not in nal_types[1] and 5 not in nal_types[1]
    vp8 = encode_video("vp8", colour_sequence(2, 1))
    assert vp8[0][1][3:6] == b"\x9d\x01\x2a" and not vp8[0][1][0] & 1 and vp8[1][1][0] & 1  # key, then delta
    for _, payload in encode_video("jpeg", colour_sequence(1, 1)):
        assert payload[:2] == b"\xff\xd8" and payload[-2:] == b"\xff\xd9"  # a whole JPEG file
    frame = video_frame(RED, 7)
    RelayEncoder("video", "vp8").encode(frame, key=True)
    assert (frame.pts, frame.pict_type) == (7 * 3000, av.video.frame.PictureType.NONE)  # the caller's frame intact


def test_key_frames_on_request_on_schedule_and_on_resize() -> None:
    enc = RelayEncoder("video", "vp8")
    keys = [i for i in range(150) for f, _ in enc.encode(video_frame(RED, i)) if f["key"]]  # 5 s at 30 fps
    assert keys == [0, 60, 120]  # keyFrameIntervalS = 2
    assert enc.encode(video_frame(RED, 150), key=True)[0][0]["key"]
    enc.request_key()
    assert enc.encode(video_frame(RED, 151))[0][0]["key"] and not enc.encode(video_frame(RED, 152))[0][0]["key"]
    resized = enc.encode(video_frame(BLUE, 153, w=640, h=360))[0][0]
    assert resized["key"] and (resized["w"], resized["h"]) == (640, 360)


def test_a_resized_stream_decodes_at_its_new_size() -> None:
    frames = [video_frame(RED, i) for i in range(5)] + [video_frame(BLUE, i, w=640, h=360) for i in range(5, 10)]
    messages = encode_video("h264", frames)

    async def main() -> list[av.VideoFrame]:
        track = RelayTrack("video")
        try:
            return await push_and_take(track, messages)
        finally:
            track.stop()

    got = run_async(main())
    assert [(f.width, f.height) for f in got] == [(320, 240)] * 5 + [(640, 360)] * 5
    assert np.abs(mean_colour(got[-1]) - BLUE).max() <= 20


@pytest.mark.parametrize(("codec", "rate", "channels"), [("opus", 48000, 1), ("opus", 44100, 2), ("pcm16", 48000, 1)])
def test_audio_round_trip_keeps_pitch_and_length(codec: str, rate: int, channels: int) -> None:
    pcm = sine(1.0, rate, channels=channels)
    enc = RelayEncoder("audio", codec)
    messages = to_messages([m for f in audio_frames(pcm, rate) for m in enc.encode(f)])
    out_rate = 48000 if codec == "opus" else rate
    assert {(h["rate"], h["ch"]) for h, _ in messages} == {(out_rate, channels)}

    async def main() -> tuple[list[av.AudioFrame], RelayTrack]:
        track = RelayTrack("audio")
        try:
            return await push_and_take(track, messages), track
        finally:
            track.stop()

    frames, track = run_async(main())
    assert track.decode_errors == 0
    assert {(f.format.name, f.layout.nb_channels, f.sample_rate) for f in frames} == {("s16", channels, out_rate)}
    assert all(f.time_base == fractions.Fraction(1, out_rate) for f in frames)
    assert all(b.pts == a.pts + a.samples for a, b in itertools.pairwise(frames))  # contiguous, in order
    samples = np.concatenate([f.to_ndarray().reshape(-1, channels) for f in frames])
    assert abs(len(samples) - out_rate) <= OPUS_FRAME  # a second, give or take the encoder's buffered frame
    steady = samples[out_rate // 10 :, 0]
    assert abs(peak_frequency(steady, out_rate) - 440) <= 5
    assert np.abs(steady).max() > 0.3 * 32767  # a tone, not near-silence


def wait_for_error(track: RelayTrack, errors: int = 1) -> Any:
    return until(lambda: track.decode_errors >= errors)


@pytest.mark.parametrize("codec", ["vp8", "h264", "jpeg"])
def test_garbage_breaks_nothing_video_resumes_at_the_next_key_frame(codec: str) -> None:
    good = encode_video(codec, colour_sequence(5, 5), key_interval_s=5 / 30)  # key frames at 0 and 5 (the blues)
    assert [i for i, (h, _) in enumerate(good) if h["key"]][:2] == [0, 5] or codec == "jpeg"
    needs: list[float] = []

    async def main() -> tuple[list[av.VideoFrame], RelayTrack, list[bool]]:
        track = RelayTrack("video", on_need_key=lambda: needs.append(time.monotonic()))
        returned = []
        try:
            got = await push_and_take(track, good[:2])
            junk = np.random.default_rng(7).integers(0, 256, 3000, np.uint8).tobytes()
            garbage = {**good[2][0], "size": len(junk), "key": codec == "jpeg"}
            track.push(garbage, junk)
            await wait_for_error(track)
            got += await push_and_take(track, good[3:5], returned)  # delta frames after the broken one: skipped
            got += await push_and_take(track, good[5:])
            return got, track, returned
        finally:
            track.stop()

    got, track, returned = run_async(main())
    assert track.decode_errors == 1 and ("did not decode" in track.last_error or "start code" in track.last_error)
    if codec == "jpeg":  # every JPEG is a key frame: only the broken one is lost
        assert len(got) == 9 and track.frames_skipped == 0
    else:
        assert returned == [False, False] and track.frames_skipped == 2 and len(needs) == 1  # asked once, not per frame
        assert len(got) == 7
    assert np.abs(mean_colour(got[-1]) - BLUE).max() <= 20


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_a_delta_frame_first_or_after_a_gap_waits_for_a_key_frame(codec: str) -> None:
    messages = encode_video(codec, colour_sequence(9, 0), key_interval_s=3 / 30)  # keys at 0, 3 and 6
    assert [h["key"] for h, _ in messages] == [True, False, False] * 3
    needs: list[int] = []

    async def main() -> tuple[list[av.VideoFrame], RelayTrack, list[bool]]:
        track = RelayTrack("video", on_need_key=lambda: needs.append(1))
        returned: list[bool] = []
        try:
            # joined late: a delta frame first, nothing to decode it against; then the key frame 3 and frame 4;
            # then frame 7 after a gap (5 and 6 were lost) and 8
            got = await push_and_take(track, [messages[i] for i in (1, 3, 4, 7, 8)], returned)
            return got, track, returned
        finally:
            track.stop()

    got, track, returned = run_async(main())
    assert returned == [False, True, True, False, False]
    assert track.seq_gaps == 2 and track.decode_errors == 0 and track.frames_skipped == 3
    assert len(got) == 2 and [f.pts for f in got] == [3 * 3000, 4 * 3000] and track.awaiting_key
    assert needs == [1, 1]  # once per wait (the first frame, the gap), not once per skipped frame


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_truncated_and_empty_packets_are_errors_then_a_key_frame_recovers(codec: str) -> None:
    good = encode_video(codec, colour_sequence(3, 3), key_interval_s=3 / 30)

    async def main() -> tuple[list[av.VideoFrame], RelayTrack]:
        track = RelayTrack("video")
        try:
            header, payload = good[0]
            track.push({**header, "size": len(payload) // 3}, payload[: len(payload) // 3])
            await wait_for_error(track)
            track.push({**good[1][0], "size": 0, "key": True}, b"")  # empty: PyAV would read end-of-stream
            await wait_for_error(track, 2)
            return await push_and_take(track, good[3:]), track
        finally:
            track.stop()

    got, track = run_async(main())
    assert track.decode_errors == 2 and "empty" in track.last_error
    assert len(got) == 3 and all(np.abs(mean_colour(f) - BLUE).max() <= 20 for f in got)


def test_absurd_sizes_are_refused_before_decoding() -> None:
    key = encode_video("vp8", [video_frame(RED, 0)])[0]
    forged = bytearray(key[1])
    forged[6:10] = (16383).to_bytes(2, "little") * 2  # a VP8 key frame claiming 16383x16383
    wide = av.CodecContext.create("libx264", "w")  # H.264 of 4200x64: over maxVideoSide, few pixels
    wide.width, wide.height, wide.pix_fmt, wide.time_base = 4200, 64, "yuv420p", fractions.Fraction(1, 30)
    wide.framerate, wide.options = fractions.Fraction(30), {"tune": "zerolatency"}  # no B-frames: out at once
    img = av.VideoFrame.from_ndarray(np.zeros((64, 4200, 3), np.uint8), format="rgb24").reformat(format="yuv420p")
    wide_key = b"".join(bytes(p) for p in wide.encode(img) + wide.encode(None))

    async def main() -> tuple[list[av.VideoFrame], RelayTrack, list[str]]:
        track = RelayTrack("video")
        errors = []
        try:
            attempts = [
                ({**key[0], "w": 5000}, key[1]),  # the header lies (the schema would refuse it too)
                ({**key[0], "seq": 1}, bytes(forged)),
                ({**key[0], "seq": 2, "codec": "h264", "w": 320}, wide_key),
            ]
            for n, (header, payload) in enumerate(attempts, 1):
                track.push({**header, "size": len(payload)}, payload)
                await wait_for_error(track, n)
                errors.append(track.last_error)
            return await push_and_take(track, [({**key[0], "seq": 3}, key[1])]), track, errors
        finally:
            track.stop()

    got, _, errors = run_async(main())
    assert all("4096" in e for e in errors), errors
    assert "16383x16383" in errors[1] and "4200x64" in errors[2]
    assert len(got) == 1 and np.abs(mean_colour(got[0]) - RED).max() <= 20


def test_bad_audio_is_counted_and_the_stream_goes_on() -> None:
    enc = RelayEncoder("audio", "opus")
    good = to_messages([m for f in audio_frames(sine(0.2, 48000), 48000) for m in enc.encode(f)])

    async def main() -> tuple[list[av.AudioFrame], RelayTrack]:
        track = RelayTrack("audio")
        try:
            bad = [
                ({**good[0][0], "size": 0}, b""),
                ({**good[0][0], "codec": "pcm16", "ch": 2, "size": 6}, b"\x01" * 6),  # not whole stereo samples
                ({**good[0][0], "codec": "vp8"}, good[0][1]),
            ]
            for n, (header, payload) in enumerate(bad, 1):
                track.push(header, payload)
                await wait_for_error(track, n)
            assert track.push(*good[1]) is True  # audio never waits for key frames
            got = [await asyncio.wait_for(track.recv(), 5)]
            return got + await push_and_take(track, good[2:]), track
        finally:
            track.stop()

    got, track = run_async(main())
    assert track.decode_errors == 3 and "audio codec" in track.last_error
    assert len(got) == len(good) - 1 and all(f.samples == OPUS_FRAME for f in got)


@pytest.mark.parametrize("codec", ["vp8", "h264", "jpeg", "opus", "pcm16"])
def test_mangled_payloads_never_escape_and_good_frames_still_decode(codec: str) -> None:
    rng = np.random.default_rng(11)
    video = codec in ("vp8", "h264", "jpeg")
    if video:
        bad_source = encode_video(codec, colour_sequence(6, 0))
        good = encode_video(codec, [video_frame(BLUE, i) for i in range(4)])
    else:
        enc = RelayEncoder("audio", codec)
        bad_source = good = to_messages([m for f in audio_frames(sine(0.12, 48000), 48000) for m in enc.encode(f)])
    mangled: list[Message] = []
    for n in range(90):
        header, payload = bad_source[n % len(bad_source)]
        data = bytearray(payload)
        if n % 3 == 0:
            data = data[: int(rng.integers(0, len(data)))]  # truncated
        elif n % 3 == 1:
            for i in rng.integers(0, len(data), int(rng.integers(1, 9))):
                data[i] ^= 1 << int(rng.integers(8))  # bits flipped
        else:
            data = bytearray(rng.integers(0, 256, int(rng.integers(1, 4000)), np.uint8).tobytes())  # noise
        key = bool(rng.integers(2)) if video else True
        mangled.append(({**header, "seq": n, "size": len(data), "key": key}, bytes(data)))
    resumed = [({**h, "seq": 90 + i, "ts": h["ts"] + 10_000_000}, p) for i, (h, p) in enumerate(good)]

    async def main() -> tuple[Any, RelayTrack]:
        track = RelayTrack("video" if video else "audio")
        try:
            for header, payload in [*mangled, *resumed]:
                assert isinstance(track.push(header, payload), bool)
                await until(lambda: track.backlog == 0)
            last = None
            while last is None or last.pts != resumed[-1][0]["ts"] * (90000 if video else 48000) // 1_000_000:
                last = await asyncio.wait_for(track.recv(), 5)
            return last, track
        finally:
            track.stop()

    last, track = run_async(main())
    assert track.decode_errors >= 20 and track.last_error, track.counters()  # Opus decodes much noise as sound
    if video:
        assert np.abs(mean_colour(last) - BLUE).max() <= 20
    else:
        assert last.samples == OPUS_FRAME


def test_decoded_frames_nobody_reads_are_dropped_oldest_first() -> None:
    messages = encode_video("jpeg", colour_sequence(19, 1))
    limit = RELAY["maxDecodedVideoFrames"]

    async def main() -> tuple[list[av.VideoFrame], RelayTrack]:
        track = RelayTrack("video")
        try:
            for header, payload in messages:
                track.push(header, payload)
                await until(lambda: track.backlog == 0)  # keep the worker's inbox short: test the decoded queue
            await until(lambda: track.frames_decoded == 20)
            return [await track.recv() for _ in range(limit)], track
        finally:
            track.stop()

    got, track = run_async(main())
    assert track.frames_dropped == 20 - limit
    assert [f.pts for f in got] == [i * 3000 for i in range(20 - limit, 20)]
    assert np.abs(mean_colour(got[-1]) - BLUE).max() <= 20


def test_unread_audio_is_bounded_to_max_decoded_seconds() -> None:
    seconds = RELAY["maxDecodedAudioS"]
    enc = RelayEncoder("audio", "pcm16")
    messages = to_messages([m for f in audio_frames(sine(seconds + 1, 16000), 16000, 1000) for m in enc.encode(f)])

    async def main() -> RelayTrack:
        track = RelayTrack("audio")
        try:
            for header, payload in messages:
                track.push(header, payload)
            await until(lambda: track.frames_decoded == len(messages))
            first = await track.recv()
            assert first.pts == 16000  # the oldest second went
            return track
        finally:
            track.stop()

    track = run_async(main())
    assert track.samples_dropped == 16000


def test_stop_ends_recv_and_the_worker_thread() -> None:
    messages = encode_video("vp8", colour_sequence(3, 0))

    async def main() -> RelayTrack:
        track = RelayTrack("video")
        assert relay_threads() == []  # no thread before the first frame
        await push_and_take(track, messages[:1])
        assert len(relay_threads()) == 1
        waiting = asyncio.ensure_future(track.recv())
        await asyncio.sleep(0.05)
        for header, payload in messages[1:]:
            track.push(header, payload)
        track.stop()
        with pytest.raises(MediaStreamError):
            await asyncio.wait_for(waiting, 5)
        with pytest.raises(MediaStreamError):
            await track.recv()
        assert track.push(*messages[0]) is False  # a late message after stop is ignored
        return track

    track = run_async(main())
    assert track.readyState == "ended" and relay_threads() == []


def test_encoder_refuses_what_the_relay_does_not_carry() -> None:
    with pytest.raises(ValueError, match="h264, vp8, jpeg"):
        RelayEncoder("video", "opus")
    with pytest.raises(ValueError, match="kind"):
        RelayTrack("data")
    with pytest.raises(TypeError, match="video frames"):
        RelayEncoder("video", "vp8").encode(next(audio_frames(sine(0.02, 48000), 48000)))
