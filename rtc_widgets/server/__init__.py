"""Jupyter server extension of rtc_widgets (signaling bus, TCP_NODELAY, TURN credentials).

Loaded by jupyter_server as ``rtc_widgets.server``; enabled on install by a ``jupyter_server_config.d`` file.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import RtcWidgetsApp

    return [{"module": "rtc_widgets.server", "app": RtcWidgetsApp}]


__all__ = ["_jupyter_server_extension_points"]
