"""Audio the kernel sends: :class:`AudioSource` is a bounded FIFO of 48 kHz samples, played in order in real time.

Audio is heard as one continuous stream, so unlike video it cannot keep just the newest part: samples queue in order,
and the bound on the queue is what keeps delay finite. ``send(samples, sample_rate)`` resamples once and queues; what
does not fit in ``buffer_seconds`` is dropped and counted (or, with ``block=True``, waited for). A track takes 20 ms
every 20 ms of wall clock (aiortc's Opus encoder needs a paced track) and fills any gap with silence.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import threading
import time
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from .sourcetrack import _Pump, _SourceTrack

AUDIO_RATE = 48000
AUDIO_FRAME = AUDIO_RATE // 50  # 20 ms
#: An audio track further behind the wall clock than this (the engine was blocked) skips ahead instead of bursting.
AUDIO_MAX_LAG_S = 0.2
#: play(track) keeps at most this much audio queued ahead, waiting for the track to play it instead of dropping.
PLAY_AHEAD_S = 0.2


class AudioSource:
    """A bounded FIFO of 48 kHz int16 samples to play in order; tracks take 20 ms frames of it in real time."""

    kind = "audio"

    def __init__(self, channels: int = 1, buffer_seconds: float = 10.0) -> None:
        if channels not in (1, 2):
            raise ValueError("channels must be 1 (mono) or 2 (stereo)")
        self.channels = channels
        self.layout = "mono" if channels == 1 else "stereo"
        self.capacity = max(AUDIO_FRAME, int(buffer_seconds * AUDIO_RATE))
        self.samples_sent = 0
        self.samples_dropped = 0
        self._queued = 0
        self._chunks: collections.deque[np.ndarray] = collections.deque()
        self._cond = threading.Condition()
        self._resampler: av.AudioResampler | None = None
        self._resampler_rate = 0
        self._closed = False
        self._pump = _Pump()

    @property
    def queued_seconds(self) -> float:
        return self._queued / AUDIO_RATE

    # --- any thread ------------------------------------------------------------------------------
    def send(
        self, samples: Any, sample_rate: int = AUDIO_RATE, block: bool = False, timeout: float | None = None
    ) -> int:
        """Queue ``samples`` to play after what is queued; returns how many (at 48 kHz) were queued."""
        arr = np.asarray(samples)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[1] not in (1, 2):
            raise ValueError(f"send() takes (n,) or (n, channels) samples with 1 or 2 channels, not {arr.shape}")
        if not 8000 <= int(sample_rate) <= 192000:
            raise ValueError("sample_rate must be between 8000 and 192000")
        if arr.dtype == np.int16:
            pcm = arr.astype(np.float32) / 32768
        elif np.issubdtype(arr.dtype, np.floating):
            pcm = np.clip(arr.astype(np.float32), -1.0, 1.0)
        else:
            raise TypeError(f"send() takes float samples in [-1, 1] or int16, not {arr.dtype}")
        if pcm.shape[1] != self.channels:
            pcm = pcm.mean(axis=1, keepdims=True) if self.channels == 1 else np.repeat(pcm, 2, axis=1)
        with self._cond:  # one resampler per stream, so consecutive sends join without a click
            if int(sample_rate) != AUDIO_RATE:
                pcm = self._resample(pcm, int(sample_rate))
            elif self._resampler is not None:
                pcm = np.concatenate([self._flush_resampler(), pcm])
        return self._put((pcm * 32767).round().astype(np.int16), block, timeout)

    def _resample(self, pcm: np.ndarray, rate: int) -> np.ndarray:
        head = np.zeros((0, self.channels), np.float32)
        if self._resampler is not None and self._resampler_rate != rate:
            head = self._flush_resampler()
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout=self.layout, rate=AUDIO_RATE)
            self._resampler_rate = rate
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm).reshape(1, -1), format="flt", layout=self.layout)
        frame.sample_rate = rate
        return np.concatenate(
            [head, *(o.to_ndarray().reshape(-1, self.channels) for o in self._resampler.resample(frame))]
        )

    def _flush_resampler(self) -> np.ndarray:
        """The resampler's last few samples (its filter delay, ~1 ms); it is done with that stream."""
        resampler, self._resampler = self._resampler, None
        if resampler is None:
            return np.zeros((0, self.channels), np.float32)
        outs = [o.to_ndarray().reshape(-1, self.channels) for o in resampler.resample(None)]
        return np.concatenate([np.zeros((0, self.channels), np.float32), *outs])

    def _put(self, pcm: np.ndarray, block: bool, timeout: float | None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        queued = 0
        with self._cond:
            while len(pcm):
                room = self.capacity - self._queued
                if room <= 0 and block and not self._closed:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    self._cond.wait(left)
                    continue
                if room <= 0:
                    break
                part, pcm = pcm[:room], pcm[room:]
                self._chunks.append(part)
                self._queued += len(part)
                queued += len(part)
            self.samples_dropped += len(pcm)
        return queued

    def clear(self) -> None:
        """Drop everything queued (not counted as dropped: it was withdrawn)."""
        with self._cond:
            self._chunks.clear()
            self._queued = 0
            self._resampler = None
            self._cond.notify_all()

    def track(self) -> MediaStreamTrack:
        """A new aiortc track playing this source in real time. One track at a time: two would split the samples."""
        return _AudioTrack(self)

    def counters(self) -> dict[str, Any]:
        return {
            "samples_sent": self.samples_sent,
            "samples_dropped": self.samples_dropped,
            "queued_seconds": round(self.queued_seconds, 3),
        }

    # --- engine thread ---------------------------------------------------------------------------
    def _take(self, n: int) -> np.ndarray:
        """The next ``n`` samples, silence where the queue ran dry."""
        out = np.zeros((n, self.channels), np.int16)
        with self._cond:
            if self._queued < n and self._resampler is not None:  # the producer paused: play its tail now
                tail = self._flush_resampler()
                if len(tail):
                    self._chunks.append((tail * 32767).round().astype(np.int16))
                    self._queued += len(tail)
            got = 0
            while got < n and self._chunks:
                chunk = self._chunks[0]
                k = min(n - got, len(chunk))
                out[got : got + k] = chunk[:k]
                if k == len(chunk):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = chunk[k:]
                got += k
            self._queued -= got
            self.samples_sent += got
            self._cond.notify_all()
        return out

    def play(self, track: MediaStreamTrack) -> None:
        """Queue ``track``'s audio as it arrives (never dropped: it waits for room) until ``stop()``."""
        if track.kind != "audio":
            raise ValueError(f"AudioOutput.play() needs an audio track, not {track.kind}")
        resampler = av.AudioResampler(format="s16", layout=self.layout, rate=AUDIO_RATE)

        async def deliver(frame: av.AudioFrame) -> None:
            frame.pts = None  # RTP timestamps jump on loss; the resampler only needs the samples in order
            for out in resampler.resample(frame):
                # the track drains the queue in 20 ms steps: polling at that pace costs nothing
                while self.queued_seconds > PLAY_AHEAD_S and not self._closed:  # noqa: ASYNC110
                    await asyncio.sleep(AUDIO_FRAME / AUDIO_RATE)
                self._put(out.to_ndarray().reshape(-1, self.channels), False, None)

        self._pump.start(track, deliver)

    def stop(self) -> None:
        self._pump.stop()
        self.clear()

    def close(self) -> None:
        self._pump.stop()
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class _AudioTrack(_SourceTrack):
    kind = "audio"

    def __init__(self, source: AudioSource) -> None:
        super().__init__()
        self.source = source
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = self._loop = asyncio.get_running_loop()
        if self._t0 is None:
            self._t0 = loop.time()
        wait = self._t0 + self._pts / AUDIO_RATE - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        elif wait < -AUDIO_MAX_LAG_S:  # the loop was blocked: skip ahead (the browser hears a gap, not a burst)
            self._pts += int(-wait * AUDIO_RATE) // AUDIO_FRAME * AUDIO_FRAME
        if self.readyState != "live":
            raise MediaStreamError
        pcm = self.source._take(AUDIO_FRAME)
        if pcm.shape[1] == 1:  # aiortc's Opus encoder would upmix mono to stereo at -3 dB: duplicate it ourselves
            pcm = np.repeat(pcm, 2, axis=1)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._pts += AUDIO_FRAME
        return frame


__all__ = ["AUDIO_FRAME", "AUDIO_MAX_LAG_S", "AUDIO_RATE", "PLAY_AHEAD_S", "AudioSource"]
