"""VideoOutput and AudioOutput: pictures and sound computed in Python, shown and played in the browser.

The browser offers a recvonly transceiver; the kernel answers with a track of the widget's source
(:mod:`rtc_widgets.sources`). Sources outlive sessions: what was sent before the browser connected (the newest
frame, queued audio) plays once it does, and a reconnect picks up where the last session stopped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets as t
from aiortc import MediaStreamTrack

from ..engine import get_engine
from ..protocol import LIMITS, RELAY
from ..sources import AUDIO_RATE, DEFAULT_MAX_FPS, AudioSource, TrackSender, VideoSource
from ._base import PeerWidget


def _on_engine(fn: Any, *args: Any) -> None:
    """Run ``fn(*args)`` on the engine and wait for it, so that errors reach the caller."""
    engine = get_engine()
    if engine.in_engine():
        fn(*args)
        return

    async def call() -> None:
        fn(*args)

    engine.run_sync(call(), 10)


class VideoOutput(PeerWidget):
    """Show frames computed in Python in the browser, as live video.

    ::

        out = VideoOutput()
        out
        out.send(img)               # (H, W, 3) uint8 RGB or (H, W) gray; the newest frame wins
        out.play(cam.track)         # or any aiortc video track (MediaPlayer("clip.mp4").video)

        @cam.on_frame
        def process(img):           # a filter: camera in, processed frames out
            out.send(255 - img)

    ``send`` never blocks and never queues: a frame replaced before the encoder took it is counted in
    ``frames_dropped``, so the picture is never late. When nothing new is sent the last frame is repeated twice a
    second (a black frame before the first one), which keeps the browser's decoder and stats alive.
    """

    _kind = t.Unicode("video-output").tag(sync=True)
    relay_codec = t.Enum(
        ["auto", *RELAY["videoCodecs"]],
        "auto",
        help='How the kernel encodes video on the relay transport (PyAV): "auto" (H.264), "h264", "vp8", or "jpeg" '
        "for a browser without a WebCodecs VideoDecoder.",
    )

    max_fps = t.Int(
        DEFAULT_MAX_FPS,
        min=1,
        max=LIMITS["maxFps"],
        help="Most new frames sent per second; faster send() calls replace frames (counted in frames_dropped).",
    )
    frames_sent = t.Int(0, read_only=True, help="New frames handed to the encoder (idle repeats not counted).").tag(
        sync=True
    )
    frames_dropped = t.Int(
        0, read_only=True, help="Frames replaced by a newer one before they could be sent (the producer was faster)."
    ).tag(sync=True)
    fps = t.Float(0.0, read_only=True, help="New frames sent per second over the last second (measured).").tag(
        sync=True
    )
    frame_width = t.Int(0, read_only=True, help="Width of the newest frame (odd sizes lose a column).").tag(sync=True)
    frame_height = t.Int(0, read_only=True, help="Height of the newest frame.").tag(sync=True)

    def _make_senders(self) -> list[TrackSender]:
        self._source = VideoSource(self.max_fps)
        return [TrackSender(self._source)]

    @t.observe("max_fps")
    def _max_fps_changed(self, change: Any) -> None:
        source = getattr(self, "_source", None)
        if source is not None:
            source.max_fps = change["new"]

    def send(self, img: np.ndarray) -> None:
        """Show ``img`` next: ``(H, W, 3)`` uint8 RGB, ``(H, W, 4)`` RGBA, ``(H, W)`` gray, or an ``av.VideoFrame``.

        Converted on the calling thread; call it from any thread (an ``on_frame`` callback, a loop in a cell)."""
        self._source.send(img)

    def play(self, track: MediaStreamTrack) -> None:
        """Send an aiortc video track's frames (``cam.track`` for an echo, ``MediaPlayer(...).video``) until
        :meth:`stop` or another ``play``. The output takes the track over and stops it when done."""
        _on_engine(self._source.play, track)

    def stop(self) -> None:
        """Stop playing a track; the last frame stays on screen."""
        _on_engine(self._source.stop)

    def _source_tracks(self) -> dict[str, MediaStreamTrack]:
        """For another transport (the relay): ``{"video": track}``, a new aiortc track of this output's frames."""
        return {"video": self._source.track()}

    @property
    def source(self) -> VideoSource:
        """The kernel-side frame source (advanced use)."""
        return self._source


class AudioOutput(PeerWidget):
    """Play sound computed in Python in the browser.

    ::

        out = AudioOutput()
        out
        t = np.arange(48000) / 48000
        out.send(0.3 * np.sin(2 * np.pi * 440 * t))      # float in [-1, 1] or int16, (n,) or (n, channels)
        out.send(pcm16k, sample_rate=16000)              # resampled to 48 kHz
        out.play(mic.track)                              # or any aiortc audio track

    Samples play in order, in real time, from a queue of ``buffer_seconds``; what does not fit is dropped and
    counted in ``samples_dropped`` (or waited for with ``send(..., block=True)``). When the queue is empty the
    browser hears silence. Browsers may block sound until the page is clicked: the view then shows a play button.
    """

    _kind = t.Unicode("audio-output").tag(sync=True)
    relay_codec = t.Enum(
        ["auto", *RELAY["audioCodecs"]],
        "auto",
        help='How the kernel encodes audio on the relay transport: "auto" (Opus), "opus", or "pcm16" for a browser '
        "without a WebCodecs AudioDecoder.",
    )

    channels = t.Int(1, help="1 (mono) or 2 (stereo); sent samples are mixed or duplicated to match.").tag(sync=True)
    buffer_seconds = t.Float(10.0, help="Most audio queued ahead; send() drops (or waits for) what does not fit.")
    samples_sent = t.Int(
        0, read_only=True, help="Samples per channel, at 48 kHz, played so far (silence not counted)."
    ).tag(sync=True)
    samples_dropped = t.Int(0, read_only=True, help="Samples send() dropped because the queue was full.").tag(sync=True)
    queued_seconds = t.Float(0.0, read_only=True, help="Seconds of audio waiting to be played.").tag(sync=True)

    #: Samples per second of the output (Opus in WebRTC); send() resamples other rates to it.
    sample_rate = AUDIO_RATE

    def __init__(self, **kwargs: Any) -> None:
        if int(kwargs.get("channels", 1)) not in (1, 2):
            raise ValueError("channels must be 1 (mono) or 2 (stereo)")
        if not 0 < float(kwargs.get("buffer_seconds", 1)) <= LIMITS["maxAudioRingSeconds"]:
            raise ValueError(f"buffer_seconds must be above 0 and at most {LIMITS['maxAudioRingSeconds']}")
        super().__init__(**kwargs)

    def _make_senders(self) -> list[TrackSender]:
        self._source = AudioSource(self.channels, self.buffer_seconds)
        return [TrackSender(self._source)]

    def send(
        self, samples: np.ndarray, sample_rate: int = AUDIO_RATE, block: bool = False, timeout: float | None = None
    ) -> int:
        """Queue ``samples`` (float in [-1, 1] or int16; ``(n,)`` or ``(n, channels)``) to play after what is queued.

        Returns how many samples (per channel, at 48 kHz) were queued. With ``block=True`` it waits for room
        (up to ``timeout`` s) instead of dropping; in a cell prefer ``await asyncio.to_thread(out.send, x,
        block=True)``."""
        return self._source.send(samples, sample_rate, block, timeout)

    def play(self, track: MediaStreamTrack) -> None:
        """Play an aiortc audio track (``mic.track`` for an echo, ``MediaPlayer(...).audio``) until :meth:`stop`
        or another ``play``. The output takes the track over and stops it when done."""
        _on_engine(self._source.play, track)

    def stop(self) -> None:
        """Stop playing a track and drop the queued samples."""
        _on_engine(self._source.stop)

    def _source_tracks(self) -> dict[str, MediaStreamTrack]:
        """For another transport (the relay): ``{"audio": track}``, a new real-time track of this output's sound.

        One track at a time takes the queued samples: end the WebRTC one (it is, when the relay takes over)."""
        return {"audio": self._source.track()}

    @property
    def source(self) -> AudioSource:
        """The kernel-side sample queue (advanced use)."""
        return self._source


__all__ = ["AudioOutput", "VideoOutput"]
