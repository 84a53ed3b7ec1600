"""Sending tracks for the fake browser: solid colours that change every N frames, and a sine tone. Their content
is known, so tests check what arrived (colour of each frame, frequency of the tone), not what was counted."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
from aiortc import MediaStreamTrack

#: Colours far apart in RGB, so that codec loss cannot turn one into another.
COLOURS: list[tuple[int, int, int]] = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)]


def classify(img: np.ndarray) -> int:
    """Index of the COLOURS entry nearest to the mean colour of the image's centre."""
    h, w = img.shape[:2]
    mean = img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].reshape(-1, 3).mean(axis=0)
    return int(np.argmin([np.sum((mean - np.array(c)) ** 2) for c in COLOURS]))


class ColourTrack(MediaStreamTrack):
    """Video at ``fps``: COLOURS[i] for ``frames_per_colour`` frames, then the next colour."""

    kind = "video"

    def __init__(self, width: int = 320, height: int = 240, fps: int = 30, frames_per_colour: int = 15) -> None:
        super().__init__()
        self.fps = fps
        self.frames_per_colour = frames_per_colour
        self.images = [np.full((height, width, 3), c, dtype=np.uint8) for c in COLOURS]
        self.sent = 0
        self._t0: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self._t0 is None:
            self._t0 = time.monotonic()
        delay = self._t0 + self.sent / self.fps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        index = (self.sent // self.frames_per_colour) % len(COLOURS)
        frame = av.VideoFrame.from_ndarray(self.images[index], format="rgb24")
        frame.pts = self.sent * 90000 // self.fps
        frame.time_base = fractions.Fraction(1, 90000)
        self.sent += 1
        return frame


class SineTrack(MediaStreamTrack):
    """Audio: a ``freq`` Hz sine at 48 kHz, 20 ms frames, real-time paced."""

    kind = "audio"

    def __init__(self, freq: float = 440.0, amplitude: float = 0.5, rate: int = 48000) -> None:
        super().__init__()
        self.freq = freq
        self.amplitude = amplitude
        self.rate = rate
        self.samples = rate // 50
        self.sent = 0
        self._t0: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._t0 is None:
            self._t0 = time.monotonic()
        delay = self._t0 + self.sent / self.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(self.samples) + self.sent) / self.rate
        pcm = (self.amplitude * 32767 * np.sin(2 * np.pi * self.freq * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self.sent
        frame.time_base = fractions.Fraction(1, self.rate)
        self.sent += self.samples
        return frame


def peak_frequency(samples: np.ndarray, rate: int) -> float:
    """Frequency (Hz) of the strongest FFT bin of a mono signal, refined by parabolic interpolation."""
    x = samples.astype(np.float64) * np.hanning(len(samples))
    mag = np.abs(np.fft.rfft(x))
    k = int(np.argmax(mag[1:]) + 1)
    if 1 <= k < len(mag) - 1:
        a, b, c = np.log(mag[k - 1 : k + 2] + 1e-12)
        k = k + 0.5 * (a - c) / (a - 2 * b + c)
    return float(k * rate / len(samples))
