"""rtc_widgets: WebRTC between the browser and the Python kernel, as Jupyter widgets."""

from ._version import __version__
from .config import config
from .session import export_session, load_session
from .stats import PeerStats
from .widgets.camera import Camera, Screen
from .widgets.datachannel import DataChannel
from .widgets.microphone import Microphone
from .widgets.output import AudioOutput, VideoOutput
from .widgets.statsview import StatsView

__all__ = [
    "AudioOutput",
    "Camera",
    "DataChannel",
    "Microphone",
    "PeerStats",
    "Screen",
    "StatsView",
    "VideoOutput",
    "__version__",
    "config",
    "export_session",
    "load_session",
]
