"""Known media for Chromium's fake capture devices, and the code the kernel uses to read it back.

The y4m shows one solid colour per second (PALETTE in order, looping) with the frame number written in a band of
black/white blocks at the top, so the kernel can tell, for every frame it receives, which colour the file had
there: accuracy is measured frame by frame, not guessed from runs. The wav is a 440 Hz sine with a whole number
of cycles, so Chromium's looping adds no click.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

PALETTE: list[tuple[int, int, int]] = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
BITS = 8  # frame number 0..255, in BITS blocks across the top band
BAND = 6  # the band is the top 1/BAND of the frame

#: Executed in the kernel: reads the frame number and the colour of one received RGB frame.
READ_FRAME_SOURCE = f"""
import numpy as _np

PALETTE = {PALETTE!r}
BITS, BAND = {BITS}, {BAND}

def read_frame(img):
    h, w = img.shape[:2]
    band = img[: h // BAND].astype(_np.float32).mean(axis=2)
    cell = w // BITS
    bits = [band[h // (BAND * 4) : h // (BAND * 4) * 3, i * cell + cell // 4 : i * cell + 3 * cell // 4].mean() > 128
            for i in range(BITS)]
    number = sum(1 << i for i, b in enumerate(bits) if b)
    body = img[h // 3 : 5 * h // 6, w // 8 : 7 * w // 8].reshape(-1, 3).mean(axis=0)
    colour = int(_np.argmin([((body - _np.array(c)) ** 2).sum() for c in PALETTE]))
    return number, colour
"""


def _rgb_to_yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = rgb
    y = 16 + (65.738 * r + 129.057 * g + 25.064 * b) / 256
    u = 128 + (-37.945 * r - 74.494 * g + 112.439 * b) / 256
    v = 128 + (112.439 * r - 94.154 * g - 18.285 * b) / 256
    return round(y), round(u), round(v)


def expected_colour(frame_number: int, fps: int) -> int:
    return (frame_number // fps) % len(PALETTE)


def write_y4m(path: Path, width: int = 640, height: int = 480, fps: int = 30, texture: bool = False) -> Path:
    """len(PALETTE) seconds of video; frame n shows PALETTE[(n // fps) % len(PALETTE)] and n in the top band.

    ``texture`` adds a moving grain of +-24 luma levels (like a real camera's detail and noise) so that encoding and
    decoding cost what they would with a camera; solid colours compress to almost nothing."""
    frames = fps * len(PALETTE)
    assert frames <= 1 << BITS
    cell = width // BITS
    band_h = height // BAND
    grain = np.random.default_rng(7).integers(-24, 25, size=(height, 2 * width), dtype=np.int16)
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for n in range(frames):
            y, u, v = _rgb_to_yuv(PALETTE[expected_colour(n, fps)])
            luma = np.full((height, width), y, np.uint8)
            if texture:  # scrolls 8 px per frame: motion for the encoder
                shift = (8 * n) % width
                luma = np.clip(grain[:, shift : shift + width] + y, 16, 235).astype(np.uint8)
            cb = np.full((height // 2, width // 2), u, np.uint8)
            cr = np.full((height // 2, width // 2), v, np.uint8)
            luma[:band_h] = 16
            cb[: band_h // 2] = 128
            cr[: band_h // 2] = 128
            for i in range(BITS):
                if n >> i & 1:
                    luma[:band_h, i * cell : (i + 1) * cell] = 235
            f.write(b"FRAME\n" + luma.tobytes() + cb.tobytes() + cr.tobytes())
    return path


def write_wav(path: Path, freq: float = 440.0, seconds: int = 10, rate: int = 48000) -> Path:
    t = np.arange(seconds * rate) / rate
    pcm = (0.5 * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def peak_frequency(x: np.ndarray, rate: int) -> float:
    """The loudest frequency of ``x`` in Hz, to a fraction of a bin (Hann window, parabolic interpolation)."""
    mag = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    k = int(np.argmax(mag[1:]) + 1)
    a, b, c = np.log(mag[k - 1 : k + 2] + 1e-12)
    return float((k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / len(x))
