"""Microphone: the browser's microphone as float32 samples in the kernel, every sample in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import traitlets as t
from aiortc import MediaStreamTrack

from ..media import MEDIA, AudioCallback, AudioSink
from ..protocol import LIMITS, RELAY
from ..recording import write_wav
from ..tracks import TrackReceiver
from ._base import PeerWidget
from .camera import _run_on_engine

_MIC = MEDIA["microphone"]


class Microphone(PeerWidget):
    """The browser's microphone in the kernel; the view shows a level meter, a device picker and start/stop.

    ::

        mic = Microphone(sample_rate=16000, channels=1, echo_cancellation=False)
        mic
        pcm = await mic.record(3.0)          # (n, channels) float32 in [-1, 1] at sample_rate

        @mic.on_audio
        def level(chunk): ...                # every sample, in order, on a worker thread
    """

    _kind = t.Unicode("microphone").tag(sync=True)

    sample_rate = t.Int(_MIC["sampleRate"], help="Samples per second delivered to Python (resampled).").tag(sync=True)
    channels = t.Int(_MIC["channels"], help="1 (mono) or 2 (stereo).").tag(sync=True)
    echo_cancellation = t.Bool(_MIC["echoCancellation"], help="Browser echo cancellation (off for measuring).").tag(
        sync=True
    )
    noise_suppression = t.Bool(_MIC["noiseSuppression"], help="Browser noise suppression.").tag(sync=True)
    auto_gain_control = t.Bool(_MIC["autoGainControl"], help="Browser automatic gain control.").tag(sync=True)
    device_id = t.Unicode(
        "", help="A microphone's deviceId (see the device picker); '' lets the browser choose. Changing it restarts."
    ).tag(sync=True)
    buffer_seconds = t.Float(
        MEDIA["audioRingSeconds"],
        help="Length of the sample ring; a consumer further behind than this loses the oldest samples.",
    )

    relay_codec = t.Enum(
        ["auto", *RELAY["audioCodecs"]],
        "auto",
        help='How audio is encoded on the relay transport: "auto" (Opus with WebCodecs, else PCM from an '
        'AudioWorklet), "opus" or "pcm16".',
    ).tag(sync=True)
    samples_received = t.Int(0, read_only=True, help="Samples (per channel, at sample_rate) received.").tag(sync=True)
    samples_dropped = t.Int(
        0, read_only=True, help="Samples a consumer lost because it fell more than buffer_seconds behind."
    ).tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        rate = int(kwargs.get("sample_rate", _MIC["sampleRate"]))
        if not 8000 <= rate <= 192000:
            raise ValueError("sample_rate must be between 8000 and 192000")
        if int(kwargs.get("channels", _MIC["channels"])) not in (1, 2):
            raise ValueError("channels must be 1 (mono) or 2 (stereo)")
        if not 0 < float(kwargs.get("buffer_seconds", 1)) <= LIMITS["maxAudioRingSeconds"]:
            raise ValueError(f"buffer_seconds must be above 0 and at most {LIMITS['maxAudioRingSeconds']}")
        super().__init__(**kwargs)

    def _make_receivers(self) -> list[TrackReceiver]:
        self._sink = AudioSink("audio", self.sample_rate, self.channels, self.buffer_seconds)
        self._receiver = TrackReceiver("audio", self._sink)
        return [self._receiver]

    async def record(self, seconds: float, timeout: float | None = None) -> np.ndarray:
        """The next ``seconds`` of sound as ``(n, channels)`` float32 in [-1, 1], n = seconds * sample_rate."""
        n = round(seconds * self.sample_rate)
        limit = timeout if timeout is not None else seconds + MEDIA["firstFrameTimeoutS"]
        return await asyncio.to_thread(self._sink.collect, n, limit)

    def record_blocking(self, seconds: float, timeout: float | None = None) -> np.ndarray:
        """:meth:`record` for plain scripts."""
        limit = timeout if timeout is not None else seconds + MEDIA["firstFrameTimeoutS"]
        return self._sink.collect(round(seconds * self.sample_rate), limit)

    async def record_to(self, path: str | Path, seconds: float, timeout: float | None = None) -> Path:
        """Record the next ``seconds`` to a 16-bit WAV file at ``sample_rate``; returns the path."""
        if Path(path).suffix.lower() != ".wav":
            raise ValueError("Microphone.record_to writes .wav files")
        pcm = await self.record(seconds, timeout)
        return await asyncio.to_thread(write_wav, path, pcm, self.sample_rate)

    def on_audio(self, fn: AudioCallback) -> AudioCallback:
        """Decorator: call ``fn(chunk)`` with every new ``(n, channels)`` float32 chunk, in order, on a worker thread.

        Samples wait in a ring of ``buffer_seconds``; a callback slower than that loses the oldest
        (``samples_dropped``)."""
        self._sink.add_callback(fn)
        return fn

    def remove_on_audio(self, fn: AudioCallback) -> None:
        """Stop calling ``fn``."""
        self._sink.remove_callback(fn)

    def chunks(self) -> AsyncIterator[np.ndarray]:
        """``async for chunk in mic.chunks()``: every sample from now on, in order."""
        return self._sink.chunks()

    @property
    def track(self) -> MediaStreamTrack:
        """A new aiortc ``MediaStreamTrack`` with the received audio (48 kHz, as decoded), via ``MediaRelay``."""
        return _run_on_engine(self._receiver.subscribe)

    @property
    def sink(self) -> AudioSink:
        """The kernel-side sample sink (advanced use)."""
        return self._sink


__all__ = ["Microphone"]
