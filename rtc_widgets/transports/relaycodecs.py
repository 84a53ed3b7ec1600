"""PyAV codecs for media over the relay transport, in the payload formats of ``protocol.json``'s ``relay`` section.

The browser encodes and decodes with WebCodecs, so a payload is exactly one WebCodecs chunk: a raw VP8 frame, an
H.264 access unit in Annex B (start codes; SPS/PPS in key frames), a JPEG file, one raw Opus packet (no Ogg), or
little-endian interleaved int16 PCM. Decoders face untrusted bytes: anything they cannot decode becomes a
:class:`MediaDecodeError` with a sentence for the user, never a crash. Both directions block for milliseconds per
frame, so they belong on a worker thread, one thread per stream (a codec context is not thread-safe).
"""

from __future__ import annotations

import fractions
import time
from typing import Any

import av
from av.audio.codeccontext import AudioCodecContext
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType

from ..media import reformatter
from ..protocol import LIMITS, RELAY

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
OPUS_RATE = 48000
OPUS_FRAME = OPUS_RATE * RELAY["audioFrameMs"] // 1000  # 960 samples: the only frame size WebCodecs sends or expects
MAX_SIDE: int = LIMITS["maxVideoSide"]
_DECODERS = {"vp8": "vp8", "h264": "h264", "jpeg": "mjpeg"}  # FFmpeg's own decoders: they honour max_pixels
_ENCODERS = {"vp8": "libvpx", "h264": "libx264", "jpeg": "mjpeg"}


class MediaDecodeError(ValueError):
    """A relayed payload could not be decoded (the sender's bytes, not our bug)."""


def _layout(channels: int) -> str:
    return av.AudioLayout(f"{channels}c").name  # FFmpeg's default layout: mono, stereo, 2.1, ... 7.1


def vp8_key_size(payload: bytes) -> tuple[int, int] | None:
    """(width, height) of a VP8 key frame from its 10-byte header (RFC 6386, 9.1), None for a delta frame."""
    if payload[0] & 1:
        return None
    if len(payload) < 10 or payload[3:6] != b"\x9d\x01\x2a":
        raise MediaDecodeError("a VP8 frame marked as a key frame lacks the key frame start code")
    return int.from_bytes(payload[6:8], "little") & 0x3FFF, int.from_bytes(payload[8:10], "little") & 0x3FFF


def _check_size(w: int, h: int, what: str) -> None:
    if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
        raise MediaDecodeError(f"{what} of {w}x{h} pixels is outside the limit of {MAX_SIDE} pixels a side")


def _ts_to(ts: int, rate: int) -> int:
    return (ts * rate + 500_000) // 1_000_000  # rounded: 33333 µs is 3000 ticks of 90 kHz, not 2999


class VideoDecoder:
    """Decodes one relayed video stream: ``decode(header, payload)`` -> frames with pts in 1/90000 s."""

    def __init__(self) -> None:
        self._ctx: VideoCodecContext | None = None
        self._codec = ""

    def reset(self) -> None:
        """Forget the decoder state; the next frame must be a key frame."""
        self._ctx = None

    def decode(self, header: dict[str, Any], payload: bytes) -> list[av.VideoFrame]:
        codec = header["codec"]
        if codec not in _DECODERS:
            raise MediaDecodeError(f"'{codec}' is not a video codec of the relay ({', '.join(_DECODERS)})")
        if not payload:
            raise MediaDecodeError("an empty video payload")  # PyAV would take an empty packet for end of stream
        if "w" in header or "h" in header:
            _check_size(header.get("w", 1), header.get("h", 1), "a video frame announced")
        if codec == "vp8" and (size := vp8_key_size(payload)) is not None:
            _check_size(*size, "a VP8 key frame")
        if self._ctx is None or codec != self._codec:
            ctx = av.CodecContext.create(_DECODERS[codec], "r")
            assert isinstance(ctx, VideoCodecContext)
            ctx.options = {"max_pixels": str(MAX_SIDE * MAX_SIDE)}  # FFmpeg refuses larger pictures before allocating
            ctx.flags |= av.codec.context.Flags.low_delay  # no reordering delay guessed for streams declaring none
            self._ctx, self._codec = ctx, codec
        try:
            packet = av.Packet(payload)
            # the decoder carries the packet's pts to its frame, even if a stream with reordering delays the frame
            packet.pts, packet.time_base = _ts_to(header["ts"], 90000), VIDEO_TIME_BASE
            frames = self._ctx.decode(packet)
            for frame in frames:
                _check_size(frame.width, frame.height, f"a decoded {codec} frame")
                if frame.is_corrupt:
                    raise MediaDecodeError(f"{codec} frame {header.get('seq', '?')} decoded with errors (data lost)")
                frame.pts, frame.time_base = packet.pts if frame.pts is None else frame.pts, VIDEO_TIME_BASE
        except Exception as exc:  # untrusted bytes: whatever FFmpeg says, the stream needs a fresh start
            self._ctx = None
            if isinstance(exc, MediaDecodeError):
                raise
            raise MediaDecodeError(f"{codec} frame {header.get('seq', '?')} did not decode ({exc})") from None
        return frames


class AudioDecoder:
    """Decodes one relayed audio stream to packed s16 frames with pts in samples (time base 1/rate)."""

    def __init__(self) -> None:
        self._ctx: AudioCodecContext | None = None
        self._channels = 0

    def reset(self) -> None:
        self._ctx = None

    def decode(self, header: dict[str, Any], payload: bytes) -> list[av.AudioFrame]:
        codec = header["codec"]
        if codec == "pcm16":
            return [self._pcm16(header, payload)]
        if codec != "opus":
            raise MediaDecodeError(f"'{codec}' is not an audio codec of the relay (opus, pcm16)")
        if not payload:
            raise MediaDecodeError("an empty Opus packet")
        channels = min(int(header.get("ch", 1)), 2)  # any Opus packet decodes to mono or stereo
        if self._ctx is None or channels != self._channels:
            ctx = av.CodecContext.create("libopus", "r")
            assert isinstance(ctx, AudioCodecContext)
            ctx.sample_rate, ctx.layout, ctx.format = OPUS_RATE, _layout(channels), "s16"
            self._ctx, self._channels = ctx, channels
        try:
            frames = self._ctx.decode(av.Packet(payload))
        except Exception as exc:
            self._ctx = None
            raise MediaDecodeError(f"Opus packet {header.get('seq', '?')} did not decode ({exc})") from None
        pts = _ts_to(header["ts"], OPUS_RATE)
        for frame in frames:
            frame.pts, frame.time_base = pts, fractions.Fraction(1, OPUS_RATE)
            pts += frame.samples
        return frames

    @staticmethod
    def _pcm16(header: dict[str, Any], payload: bytes) -> av.AudioFrame:
        rate, channels = int(header.get("rate", OPUS_RATE)), int(header.get("ch", 1))
        if not (8000 <= rate <= 192000 and 1 <= channels <= 8):
            raise MediaDecodeError(f"pcm16 at {rate} Hz with {channels} channels is not supported")
        if not payload or len(payload) % (2 * channels):
            raise MediaDecodeError(f"a pcm16 payload of {len(payload)} bytes is not whole {channels}-channel samples")
        frame = av.AudioFrame(format="s16", layout=_layout(channels), samples=len(payload) // (2 * channels))
        frame.planes[0].update(payload)
        frame.sample_rate, frame.pts, frame.time_base = rate, _ts_to(header["ts"], rate), fractions.Fraction(1, rate)
        return frame


class RelayEncoder:
    """Encodes kernel frames for the browser's WebCodecs: ``encode(frame)`` -> ``[(header fields, payload)]``.

    The fields are ``track, codec, ts, key, t`` and ``w, h`` (video) or ``rate, ch`` (audio); the caller adds
    ``v, type, session, seq, size``. ``ts`` counts microseconds from this encoder's first frame. Video asks for a
    key frame when ``key=True``, after :meth:`request_key`, every ``keyFrameIntervalS`` and when the frame size
    changes (which re-creates the encoder). Blocks for milliseconds: call it from one worker thread.
    """

    def __init__(
        self,
        kind: str,
        codec: str,
        *,
        bitrate_kbps: int = RELAY["videoBitrateKbps"],
        key_interval_s: float = RELAY["keyFrameIntervalS"],
        jpeg_quality: float = RELAY["jpegQuality"],
    ) -> None:
        if kind not in ("video", "audio"):
            raise ValueError(f"kind must be 'video' or 'audio', not {kind!r}")
        codecs = RELAY["videoCodecs"] if kind == "video" else RELAY["audioCodecs"]
        if codec not in codecs:
            raise ValueError(f"relayed {kind} is encoded as one of {', '.join(codecs)}, not {codec!r}")
        self.kind, self.codec = kind, codec
        self.bitrate_kbps, self.key_interval_s, self.jpeg_quality = bitrate_kbps, key_interval_s, jpeg_quality
        self.frames_too_large = 0  # payloads over maxMediaBytes, not sent
        self._video: VideoCodecContext | None = None
        self._audio: AudioCodecContext | None = None
        self._resampler: av.AudioResampler | None = None
        self._audio_shape: tuple[str, str, int] = ("", "", 0)
        self._key_wanted = False
        self._last_key_ts = -1
        self._last_pts = -1
        self._t0: float | None = None  # media time (s) of the frame at ts 0
        self._last_ts = 0
        self._audio_us = 0.0  # audio: microseconds sent so far
        self._opus_in = 0  # samples given to the Opus encoder

    def request_key(self) -> None:
        """The next video frame will be a key frame (the browser lost one or just joined)."""
        self._key_wanted = True

    def encode(self, frame: av.VideoFrame | av.AudioFrame, key: bool = False) -> list[tuple[dict[str, Any], bytes]]:
        wall_ms = time.time() * 1000
        if isinstance(frame, av.VideoFrame) and self.kind == "video":
            out = self._encode_video(frame, key)
        elif isinstance(frame, av.AudioFrame) and self.kind == "audio":
            out = self._encode_audio(frame)
        else:
            raise TypeError(f"a {self.kind} encoder takes {self.kind} frames, not {type(frame).__name__}")
        kept = []
        for fields, payload in out:
            if len(payload) > RELAY["maxMediaBytes"]:
                self.frames_too_large += 1
                self._key_wanted = True  # the chain of delta frames is broken
                continue
            fields.update(track=self.kind, codec=self.codec, t=wall_ms)
            kept.append((fields, payload))
        return kept

    def _timestamp(self, frame: av.VideoFrame) -> int:
        now = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else time.monotonic()
        if self._t0 is None:
            self._t0 = now
        ts = round((now - self._t0) * 1e6)
        if ts < self._last_ts:  # the source restarted its clock: continue from where we are
            self._t0, ts = now - self._last_ts / 1e6, self._last_ts
        self._last_ts = ts
        return ts

    def _open_video(self, w: int, h: int) -> VideoCodecContext:
        ctx = av.CodecContext.create(_ENCODERS[self.codec], "w")
        assert isinstance(ctx, VideoCodecContext)
        ctx.width, ctx.height, ctx.time_base = w, h, VIDEO_TIME_BASE
        rate = self.bitrate_kbps * 1000
        if self.codec == "jpeg":
            ctx.pix_fmt = "yuvj420p"  # full-range JPEG, as browsers decode it
            ctx.qmin = ctx.qmax = max(2, min(31, round(2 + (1 - self.jpeg_quality) * 20)))
            return ctx
        ctx.pix_fmt, ctx.bit_rate, ctx.gop_size = "yuv420p", rate, 1 << 30  # key frames only when we ask
        # a frame rate for the rate control's first frames: without one x264 assumes 1/time_base = 90000 fps and
        # spends 16 bits on a key frame (a grey picture); later frames follow the real pts
        ctx.framerate = fractions.Fraction(30)
        ctx.options = {"maxrate": str(rate), "bufsize": str(rate)}
        if self.codec == "vp8":
            ctx.options |= {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "static-thresh": "1"}
        else:  # Baseline: no B-frames; no global header, so SPS/PPS travel in-band before each IDR (Annex B)
            ctx.options |= {"preset": "ultrafast", "tune": "zerolatency", "sc_threshold": "0"}
            ctx.profile = "Baseline"
        return ctx

    def _encode_video(self, frame: av.VideoFrame, key: bool) -> list[tuple[dict[str, Any], bytes]]:
        ts = self._timestamp(frame)
        w, h = frame.width, frame.height
        if self.codec == "h264":
            w, h = max(2, w & ~1), max(2, h & ~1)  # 4:2:0 H.264 wants even sides
        _check_size(w, h, "a video frame to send")
        if self._video is None or (self._video.width, self._video.height) != (w, h):
            self._video, key = self._open_video(w, h), True
        ctx = self._video
        key = key or self._key_wanted or ts - self._last_key_ts >= self.key_interval_s * 1e6 or self._last_key_ts < 0
        img = reformatter().reformat(frame, format=ctx.pix_fmt, width=w, height=h)
        saved = img.pts, img.time_base, img.pict_type  # the reformatter may return the caller's own frame
        self._last_pts = pts = max(ts * 9 // 100, self._last_pts + 1)
        img.pts, img.time_base, img.pict_type = pts, VIDEO_TIME_BASE, PictureType.I if key else PictureType.NONE
        try:
            packets = ctx.encode(img)
        finally:
            img.pts, img.time_base, img.pict_type = saved
        out = []
        for packet in packets:
            if packet.is_keyframe:
                self._last_key_ts, self._key_wanted = ts, False
            out.append(({"ts": ts, "key": bool(packet.is_keyframe), "w": w, "h": h}, bytes(packet)))
        return out

    def _encode_audio(self, frame: av.AudioFrame) -> list[tuple[dict[str, Any], bytes]]:
        opus = self.codec == "opus"
        layout = frame.layout.name
        if opus:
            layout = "mono" if frame.layout.nb_channels == 1 else "stereo"
        rate = OPUS_RATE if opus else frame.sample_rate
        shape = (frame.format.name, layout, rate)
        if self._resampler is None or shape != self._audio_shape:
            if layout != self._audio_shape[1]:
                self._audio = None  # a new layout needs a new encoder; the few samples it buffered are lost
            self._resampler = av.AudioResampler(
                format="s16", layout=layout, rate=rate, frame_size=OPUS_FRAME if opus else None
            )
            self._audio_shape = shape
        channels = av.AudioLayout(layout).nb_channels
        out = []
        for chunk in self._resampler.resample(frame):
            if not opus:
                step = RELAY["maxMediaBytes"] // (2 * channels)
                data = bytes(chunk.planes[0])[: chunk.samples * 2 * channels]
                for i in range(0, chunk.samples, step):
                    part = data[i * 2 * channels : (i + step) * 2 * channels]
                    out.append(({"ts": round(self._audio_us), "key": True, "rate": rate, "ch": channels}, part))
                    self._audio_us += len(part) // (2 * channels) * 1e6 / rate
                continue
            if self._audio is None:
                ctx = av.CodecContext.create("libopus", "w")
                assert isinstance(ctx, AudioCodecContext)
                ctx.sample_rate, ctx.layout, ctx.format = OPUS_RATE, layout, "s16"
                ctx.bit_rate, ctx.time_base = RELAY["opusBitrate"], fractions.Fraction(1, OPUS_RATE)
                ctx.options = {"application": "audio", "frame_duration": str(RELAY["audioFrameMs"])}
                self._audio = ctx
            chunk.pts, chunk.time_base = self._opus_in, fractions.Fraction(1, OPUS_RATE)
            self._opus_in += chunk.samples
            for packet in self._audio.encode(chunk):
                out.append(({"ts": round(self._audio_us), "key": True, "rate": rate, "ch": channels}, bytes(packet)))
                self._audio_us += OPUS_FRAME * 1e6 / OPUS_RATE
        return out


__all__ = ["OPUS_FRAME", "OPUS_RATE", "AudioDecoder", "MediaDecodeError", "RelayEncoder", "VideoDecoder"]
