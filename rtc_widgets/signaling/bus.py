"""The kernel's end of the server extension's signaling bus: one websocket per kernel, on the engine loop.

The server extension writes ``{"url", "secret"}`` into a 0600 file in the Jupyter runtime dir and names it in
``RTC_WIDGETS_BUS_FILE`` for the kernels it starts. Without that variable (VS Code raw kernels, Colab, marimo, a
server without the extension) there is no bus and widgets signal over their comm. tornado's websocket client is
used because ipykernel already depends on tornado (no new dependency).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from ..engine import Engine, get_engine
from ..protocol import BUS
from ..server.bus import MAX_BINARY_FRAME, binary_frame, split_binary

log = logging.getLogger("rtc_widgets")

#: ``handler(msg, payload)``: the inner protocol message and, for ``media``, its bytes (else None)
Handler = Callable[[Any, "bytes | None"], None]
_RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)


def bus_file() -> str | None:
    """Path of the runtime file naming this kernel's bus, or None when no server extension set one."""
    return os.environ.get(BUS["envVar"]) or None


class BusClient:
    """Kernel end of the bus. Thread-safe ``send``; handlers run on the engine thread."""

    def __init__(self, url: str, secret: str, engine: Engine | None = None) -> None:
        self.url = url
        self._secret = secret
        self.engine = engine or get_engine()
        self._handlers: dict[str, Handler] = {}
        self._conn: Any = None
        self._hello: dict[str, Any] = {}
        self._first = threading.Event()
        self._closed = False
        self.last_error = ""
        self._task = self.engine.submit(self._run())

    # --- any thread ------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._conn is not None

    def wait_ready(self, timeout: float) -> bool:
        """Block until the first connection attempt ended; True if connected (and ``hello`` received)."""
        self._first.wait(timeout)
        return self.connected

    @property
    def hello(self) -> dict[str, Any]:
        """What the server said on connecting: ``iceServers`` (with minted TURN credentials), policy."""
        return dict(self._hello)

    def register(self, peer: str, handler: Handler) -> None:
        """Route messages for ``peer`` to ``handler`` (engine thread) and claim the peer at the server."""
        self._handlers[peer] = handler
        self._post({"op": "own", "peer": peer})

    def unregister(self, peer: str) -> None:
        if self._handlers.pop(peer, None) is not None:
            self._post({"op": "disown", "peer": peer})

    def send(self, peer: str, msg: dict[str, Any], payload: bytes | None = None) -> bool:
        """Send a protocol message (with a media frame's bytes) to the browsers listening to ``peer``; False if the
        bus is down."""
        if self._conn is None:
            return False
        self._post({"op": "msg", "peer": peer, "msg": msg}, payload)
        return True

    @property
    def buffered(self) -> int:
        """Bytes written to the socket and not yet sent (back-pressure for relayed video)."""
        conn = self._conn
        stream = getattr(getattr(conn, "protocol", None), "stream", None)
        try:
            return int(stream._write_buffer_size) if stream is not None else 0  # tornado IOStream internals
        except (AttributeError, TypeError, ValueError):
            return 0

    def close(self) -> None:
        self._closed = True
        self.engine.call_soon(self._close_now)

    # --- engine thread ---------------------------------------------------------------------------
    def _post(self, env: dict[str, Any], payload: bytes | None = None) -> None:
        text = json.dumps(env, separators=(",", ":"), ensure_ascii=False)
        frame: str | bytes = text if payload is None else binary_frame(text, payload)
        if self.engine.in_engine():
            self._write(frame)
        else:
            self.engine.call_soon(self._write, frame)

    def _write(self, frame: str | bytes) -> None:
        conn = self._conn
        if conn is None:
            return  # "own" is re-sent for every handler on reconnect; messages fall back to the comm
        try:
            fut = conn.write_message(frame, binary=isinstance(frame, bytes))
        except Exception:  # closed under us: the reader notices and reconnects
            return
        if isinstance(fut, asyncio.Future):
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _close_now(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _connect(self) -> Any:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        request = HTTPRequest(
            self.url,
            headers={"Authorization": f"rtc-widgets {self._secret}"},
            connect_timeout=BUS["connectTimeoutS"],
            request_timeout=BUS["connectTimeoutS"],
            validate_cert=False,  # loopback to our own server; the secret authenticates
        )
        conn = await websocket_connect(request, max_message_size=MAX_BINARY_FRAME)
        with contextlib.suppress(Exception):
            conn.protocol.stream.set_nodelay(True)  # type: ignore[union-attr]
        return conn

    async def _run(self) -> None:
        attempt = 0
        while not self._closed:
            try:
                conn = await self._connect()
                first = await asyncio.wait_for(conn.read_message(), BUS["connectTimeoutS"])
                hello = json.loads(first) if isinstance(first, str) else None
                if not isinstance(hello, dict) or hello.get("op") != "hello":
                    raise ConnectionError(f"unexpected first frame from the bus: {str(first)[:100]!r}")
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.debug("rtc_widgets: bus connection to %s failed: %s", self.url, self.last_error)
                self._first.set()
                await asyncio.sleep(_RETRY_S[min(attempt, len(_RETRY_S) - 1)])
                attempt += 1
                continue
            attempt = 0
            self._hello = {k: v for k, v in hello.items() if k != "op"}
            self._conn = conn
            for peer in list(self._handlers):
                self._write(json.dumps({"op": "own", "peer": peer}))
            self._first.set()
            await self._read(conn)
            if self._conn is conn:
                self._conn = None

    async def _read(self, conn: Any) -> None:
        while True:
            raw = await conn.read_message()
            if raw is None:
                return
            payload: bytes | None = None
            try:
                if isinstance(raw, bytes):
                    raw, view = split_binary(raw)
                    payload = bytes(view)
                env = json.loads(raw)
            except (ValueError, TypeError):
                continue
            if not isinstance(env, dict):
                continue
            op = env.get("op")
            if op == "msg":
                handler = self._handlers.get(str(env.get("peer")))
                if handler is not None:
                    try:
                        handler(env.get("msg"), payload)
                    except Exception:
                        log.exception("rtc_widgets: bus message handler failed")
            elif op == "hello":
                self._hello = {k: v for k, v in env.items() if k != "op"}
            elif op == "error":
                log.warning("rtc_widgets: the signaling bus reported: %s", str(env.get("message"))[:300])


_client: BusClient | None = None
_client_lock = threading.Lock()


def get_bus(timeout: float = BUS["connectTimeoutS"]) -> BusClient | None:
    """This kernel's bus client, connected; None when there is no bus (or it cannot be reached).

    The first call waits up to ``timeout`` for the connection, so a widget knows at creation which path its
    signaling takes. Later calls return at once.
    """
    global _client
    path = bus_file()
    if path is None:
        return None
    with _client_lock:
        client = _client
        if client is None or client._closed or client.engine is not get_engine():
            try:
                with open(path, encoding="utf-8") as f:
                    info = json.load(f)
                url, secret = str(info["url"]), str(info["secret"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.info("rtc_widgets: no signaling bus (%s); widgets signal over the comm", exc)
                return None
            client = _client = BusClient(url, secret)
    if get_engine().in_engine():
        return client if client.connected else None
    return client if client.wait_ready(timeout) else None


def reset_bus() -> None:
    """Forget the bus client (tests; a new server)."""
    global _client
    with _client_lock:
        client, _client = _client, None
    if client is not None:
        client.close()
