"""rtc_widgets: WebRTC between the browser and the Python kernel, as Jupyter widgets."""

from ._version import __version__
from .config import config
from .widgets.datachannel import DataChannel

__all__ = ["DataChannel", "__version__", "config"]
