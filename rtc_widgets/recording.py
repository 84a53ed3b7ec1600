"""Recording received media to files: video through PyAV on a worker thread, audio as WAV from the sample ring.

Encoding never runs on the engine loop (a 720p H.264 encode takes milliseconds per frame, which would stall every
peer). The engine only puts raw frames into a bounded queue; a frame that does not fit is counted in ``dropped``
and leaves a gap in the file, while timestamps (from RTP) keep the file's duration true to the wall clock.
"""

from __future__ import annotations

import queue
import threading
import wave
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from .media import reformatter
from .protocol import LIMITS

#: File extension -> (PyAV codec, pixel format).
VIDEO_CODECS: dict[str, tuple[str, str]] = {
    ".mp4": ("libx264", "yuv420p"),
    ".mkv": ("libx264", "yuv420p"),
    ".mov": ("libx264", "yuv420p"),
    ".webm": ("libvpx", "yuv420p"),
}
_CLOCK = Fraction(1, 90000)  # RTP video clock: aiortc stamps received frames with it


class VideoFileRecorder:
    """Writes ``seconds`` of received video frames to ``path``; fed on the engine by :meth:`tap`."""

    def __init__(self, path: str | Path, seconds: float, fps: int) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_CODECS:
            raise ValueError(
                f"cannot record video to {suffix or 'a file without extension'}: use one of {', '.join(VIDEO_CODECS)}"
            )
        if seconds <= 0:
            raise ValueError("seconds must be positive")
        self.codec, self.pix_fmt = VIDEO_CODECS[suffix]
        self.seconds = seconds
        self.fps = fps
        self.frames_written = 0
        self.dropped = 0
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._queue: queue.Queue[Any] = queue.Queue(LIMITS["maxRecordQueueFrames"])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtc-widgets-recorder", daemon=True)
        self._thread.start()

    def tap(self, frame: av.VideoFrame) -> None:
        """Engine thread: queue a frame, or count it as dropped when the encoder is behind."""
        if self.done.is_set():
            return
        try:
            self._queue.put_nowait(frame)
        except queue.Full:
            self.dropped += 1

    def stop(self) -> None:
        """Finish the file now (also when fewer than ``seconds`` were recorded)."""
        self._stop.set()
        self._queue.put(None)

    def _pts(self, frame: av.VideoFrame, wall: float, first: list[float]) -> int:
        # RTP-based pts when aiortc gave one; the arrival clock otherwise (frames made in tests)
        if frame.pts is not None and frame.time_base is not None:
            t = float(frame.pts * frame.time_base)
        else:
            t = wall
        if not first:
            first.append(t)
        return round((t - first[0]) / _CLOCK)

    def _run(self) -> None:
        import time

        container: Any = None
        try:
            first: list[float] = []
            last_pts = -1
            stream: Any = None
            while not self._stop.is_set():
                frame = self._queue.get()
                if frame is None:
                    break
                pts = self._pts(frame, time.monotonic(), first)
                if pts * _CLOCK >= self.seconds:
                    break
                if pts <= last_pts:
                    continue  # a repeated timestamp: the muxer needs strictly increasing ones
                if container is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    container = av.open(str(self.path), mode="w")
                    stream = container.add_stream(self.codec, rate=self.fps)
                    stream.width, stream.height = frame.width - frame.width % 2, frame.height - frame.height % 2
                    stream.pix_fmt = self.pix_fmt
                    stream.codec_context.time_base = _CLOCK
                out = reformatter().reformat(frame, width=stream.width, height=stream.height, format=self.pix_fmt)
                out.pts, out.time_base = pts, _CLOCK
                last_pts = pts
                for packet in stream.encode(out):
                    container.mux(packet)
                self.frames_written += 1
            if container is not None:
                for packet in stream.encode(None):
                    container.mux(packet)
        except BaseException as exc:  # reported to the awaiting caller
            self.error = exc
        finally:
            if container is not None:
                try:
                    container.close()
                except Exception as exc:
                    self.error = self.error or exc
            self.done.set()

    def wait(self, timeout: float | None) -> Path:
        """Block until the file is complete; return its path or raise what went wrong."""
        if not self.done.wait(timeout):
            self.stop()
            self.done.wait(5)
            raise TimeoutError(
                f"recording {self.path} took longer than {timeout:g} s: no frames arrive; see the widget's error"
            )
        if self.error is not None:
            raise RuntimeError(f"recording {self.path} failed: {self.error}") from self.error
        if self.frames_written == 0:
            raise RuntimeError(f"recording {self.path}: no video frame arrived")
        return self.path


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write float32 samples ``(n, channels)`` in [-1, 1] as 16-bit PCM WAV."""
    path = Path(path)
    if path.suffix.lower() != ".wav":
        raise ValueError(f"cannot record audio to {path.suffix or 'a file without extension'}: use .wav")
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(samples.shape[1])
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())
    return path


__all__ = ["VIDEO_CODECS", "VideoFileRecorder", "write_wav"]
