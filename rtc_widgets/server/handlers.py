"""Tornado handlers of the server extension; every one authenticated (ARCHITECTURE.md, decision 8).

- ``BrowserBusHandler``: the page's bus websocket, authenticated like Jupyter's own kernel websocket (token or
  cookie, ``@ws_authenticated``) and authorized for ``execute`` on ``kernels`` -- it carries messages to kernels.
- ``KernelBusHandler``: a kernel's bus websocket over loopback. Kernels hold no Jupyter token; they prove the
  secret from the 0600 runtime file the extension wrote (``Authorization: rtc-widgets <secret>``).
- ``IceHandler``: ``GET`` the ICE servers for this user, with freshly minted TURN credentials.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.auth.identity import User
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.ioloop import PeriodicCallback
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from .bus import MAX_BINARY_FRAME, Frame, Router, envelope, handle_browser_frame, handle_kernel_frame

AUTH_RESOURCE = "kernels"
KERNEL_USER = "rtc-widgets-kernel"


class _BusSocket(WebSocketMixin, WebSocketHandler, JupyterHandler):
    """What both bus sockets share: the router, frame limits, NODELAY, delivery."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, router: Router, hello: Any, refresh_s: float = 0) -> None:
        self.router = router
        self._hello = hello  # () -> dict: ICE servers for this end, minted per connection
        self._refresh_s = refresh_s
        self._refresher: PeriodicCallback | None = None

    def set_default_headers(self) -> None:
        """JupyterHandler's HTML headers make no sense on a websocket."""

    @property
    def max_message_size(self) -> int:
        return MAX_BINARY_FRAME  # text frames are bounded more tightly by parse_envelope

    def get_compression_options(self) -> None:
        return None  # signaling is small; compression only adds latency

    def open(self, *args: Any, **kwargs: Any) -> None:
        super().open()  # WebSocketMixin: keep-alive pings
        self.set_nodelay(True)  # one small message at a time: Nagle would hold each for a delayed ACK
        self._send_hello()
        if self._refresh_s:
            # minted TURN credentials expire: hand out fresh ones well before, for widgets created later
            self._refresher = PeriodicCallback(self._send_hello, self._refresh_s * 1000)
            self._refresher.start()

    def _send_hello(self) -> None:
        self.deliver(envelope("hello", **self._hello()))

    def deliver(self, frame: Frame) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        try:
            fut = self.write_message(frame, binary=isinstance(frame, bytes))
        except WebSocketClosedError:
            return
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # a closed peer is not an error here

    def on_close(self) -> None:
        if self._refresher is not None:
            self._refresher.stop()
        self.router.drop(self)


class BrowserBusHandler(_BusSocket):
    """The page's end of the bus."""

    @ws_authenticated
    @authorized("execute", AUTH_RESOURCE)
    async def get(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        await super().get(*args, **kwargs)

    def on_message(self, message: str | bytes) -> None:
        reply = handle_browser_frame(self.router, self, message)
        if reply is not None:
            self.deliver(reply)


class KernelBusHandler(_BusSocket):
    """A kernel's end of the bus (loopback, runtime-file secret)."""

    def initialize(self, router: Router, hello: Any, refresh_s: float = 0, secret: str = "") -> None:
        super().initialize(router, hello, refresh_s)
        self._secret = secret

    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        # Not JupyterHandler.prepare: a kernel has no Jupyter token or cookie. The runtime secret is its identity.
        if not self.check_host():
            raise web.HTTPError(403)
        auth = self.request.headers.get("Authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme != "rtc-widgets" or not self._secret or not hmac.compare_digest(given.strip(), self._secret):
            self.log.warning("rtc_widgets: refused a kernel bus connection without the runtime secret")
            raise web.HTTPError(403)
        self.current_user = User(username=KERNEL_USER, name="rtc_widgets kernel")

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        await super().get(*args, **kwargs)

    def on_message(self, message: str | bytes) -> None:
        reply = handle_kernel_frame(self.router, self, message)
        if reply is not None:
            self.deliver(reply)


class IceHandler(APIHandler):
    """``GET``: ``{"iceServers": [...], "iceTransportPolicy": ...}`` for this user, TURN credentials minted now."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, hello: Any) -> None:
        self._hello = hello

    @web.authenticated
    @authorized("execute", AUTH_RESOURCE)
    async def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(self._hello()))
