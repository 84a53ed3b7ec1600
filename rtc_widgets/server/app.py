"""The rtc_widgets server extension: signaling bus, TCP_NODELAY on Jupyter's websockets, TURN credentials.

Enabled on install by ``etc/jupyter/jupyter_server_config.d/rtc_widgets.json``. Configure it like any Jupyter
app, e.g. in ``jupyter_server_config.py``::

    c.RtcWidgetsApp.turn_urls = ["turn:turn.example.org:443?transport=tcp"]
    c.RtcWidgetsApp.turn_secret = "the static-auth-secret of coturn's use-auth-secret"
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
from pathlib import Path
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from tornado.ioloop import IOLoop
from traitlets import Bool, Enum, Int, List, Unicode

from ..config import normalize_ice_servers
from ..protocol import BUS
from .bus import Router
from .handlers import BrowserBusHandler, IceHandler, KernelBusHandler
from .turn import minted_ice_servers


class RtcWidgetsApp(ExtensionApp):
    """Server side of rtc_widgets."""

    name = "rtc_widgets"
    load_other_extensions = True

    bus = Bool(True, help="Offer the signaling bus to browsers and kernels (off: signaling uses the widget comm).").tag(
        config=True
    )
    tcp_nodelay = Bool(
        True,
        help="Turn off Nagle's algorithm on Jupyter's kernel websockets: comm round trips drop from ~48 ms to ~11 ms.",
    ).tag(config=True)
    ice_servers: List[dict[str, Any]] = List(
        help="STUN/TURN servers handed to every browser and kernel, as RTCIceServer dicts (with credentials if any)."
    ).tag(config=True)
    turn_urls = List(
        Unicode(),
        help="turn:/turns: URLs of a coturn running with use-auth-secret; credentials are minted per connection.",
    ).tag(config=True)
    turn_secret = Unicode(
        "", help="coturn's static-auth-secret. Stays in the server: browsers and kernels get short-lived credentials."
    ).tag(config=True)
    turn_ttl = Int(3600, help="Seconds a minted TURN credential stays valid.").tag(config=True)
    ice_transport_policy = Enum(
        ["all", "relay"], "all", help='"relay": both ends use TURN candidates only (experiments).'
    ).tag(config=True)

    @property
    def _server(self) -> Any:
        assert self.serverapp is not None, "RtcWidgetsApp runs only as a jupyter_server extension"
        return self.serverapp

    def initialize_settings(self) -> None:
        self.router = Router()
        self.secret = secrets.token_urlsafe(32)
        self.runtime_file: Path | None = None
        normalize_ice_servers(list(self.ice_servers))  # fail at start-up, not at the first widget
        if self.tcp_nodelay:
            _nodelay_on_kernel_websockets()
        if self.bus:
            if getattr(self._server, "sock", ""):
                self.log.warning("rtc_widgets: the server listens on a Unix socket; kernels will signal over the comm")
            else:
                path = Path(self._server.runtime_dir) / f"rtc-widgets-bus-{os.getpid()}.json"
                self.runtime_file = path
                # kernels started from now on inherit this; the file itself appears once the port is bound
                os.environ[BUS["envVar"]] = str(path)
                IOLoop.current().add_callback(self._write_runtime_file)

    def initialize_handlers(self) -> None:
        base = self._server.base_url.rstrip("/")
        hello_browser = functools.partial(self.ice_config, "browser")
        hello_kernel = functools.partial(self.ice_config, "kernel")
        refresh_s = max(30.0, self.turn_ttl / 3) if self.turn_secret and self.turn_urls else 0.0
        self.handlers.append((f"{base}/{BUS['icePath']}", IceHandler, {"hello": hello_browser}))
        if self.bus:
            self.handlers.extend(
                [
                    (
                        f"{base}/{BUS['browserPath']}",
                        BrowserBusHandler,
                        {"router": self.router, "hello": hello_browser, "refresh_s": refresh_s},
                    ),
                    (
                        f"{base}/{BUS['kernelPath']}",
                        KernelBusHandler,
                        {"router": self.router, "hello": hello_kernel, "refresh_s": refresh_s, "secret": self.secret},
                    ),
                ]
            )

    def ice_config(self, who: str) -> dict[str, Any]:
        """ICE servers for one end: the configured ones plus TURN credentials minted now."""
        servers = [*self.ice_servers, *minted_ice_servers(self.turn_secret, list(self.turn_urls), who, self.turn_ttl)]
        return {"iceServers": servers, "iceTransportPolicy": self.ice_transport_policy}

    def _bus_url(self) -> str:
        app = self._server
        host = app.ip if app.ip not in ("", "0.0.0.0", "*", "::") else "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        scheme = "wss" if app.certfile else "ws"
        return f"{scheme}://{host}:{app.port}{app.base_url.rstrip('/')}/{BUS['kernelPath']}"

    def _write_runtime_file(self) -> None:
        path = self.runtime_file
        if path is None:
            return
        data = json.dumps({"url": self._bus_url(), "secret": self.secret, "pid": os.getpid()})
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        # 0600 from the first byte: the secret lets any holder speak for kernels on this server
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(data)
        self.log.info("rtc_widgets: signaling bus at %s", self._bus_url())

    async def stop_extension(self) -> None:
        if self.runtime_file is not None:
            with contextlib.suppress(OSError):
                self.runtime_file.unlink()


_PATCHED = "_rtc_widgets_nodelay"


def _nodelay_on_kernel_websockets() -> None:
    """Make Jupyter's kernel websocket (the comm's path) send each message at once.

    Every comm message is a small websocket frame; with Nagle on, a frame that follows an unacknowledged one waits
    for the browser's delayed ACK (~40 ms). Jupyter does not expose the option, so wrap the handler's ``open``.
    """
    from jupyter_server.services.kernels.websocket import KernelWebsocketHandler

    if getattr(KernelWebsocketHandler, _PATCHED, False):
        return
    original = KernelWebsocketHandler.open

    @functools.wraps(original)
    async def open_nodelay(self: Any, *args: Any, **kwargs: Any) -> None:
        self.set_nodelay(True)
        await original(self, *args, **kwargs)

    KernelWebsocketHandler.open = open_nodelay  # type: ignore[method-assign]
    setattr(KernelWebsocketHandler, _PATCHED, True)
