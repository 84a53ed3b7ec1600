"""Server extension pieces without a server: router, envelope checks, TURN credentials, handler auth."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from jupyter_server.serverapp import ServerWebApplication

from rtc_widgets import protocol
from rtc_widgets.server import _jupyter_server_extension_points
from rtc_widgets.server.bus import (
    MAX_BINARY_FRAME,
    Router,
    binary_frame,
    handle_browser_frame,
    handle_kernel_frame,
    split_binary,
)
from rtc_widgets.server.handlers import BrowserBusHandler, IceHandler, KernelBusHandler
from rtc_widgets.server.turn import minted_ice_servers, turn_credential


class FakeConn:
    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.payloads: list[bytes] = []

    def deliver(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            text, payload = split_binary(frame)
            self.payloads.append(bytes(payload))
            frame = text
        self.got.append(json.loads(frame))


def offer() -> dict[str, Any]:
    return protocol.offer("v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n", "s1")


def test_router_routes_by_peer_both_ways() -> None:
    router, kernel, other_kernel, page = Router(), FakeConn(), FakeConn(), FakeConn()
    handle_kernel_frame(router, kernel, json.dumps({"op": "own", "peer": "p1"}))
    handle_kernel_frame(router, other_kernel, json.dumps({"op": "own", "peer": "p2"}))
    handle_browser_frame(router, page, json.dumps({"op": "sub", "peer": "p1"}))
    assert handle_browser_frame(router, page, json.dumps({"op": "msg", "peer": "p1", "msg": offer()})) is None
    assert kernel.got == [{"op": "msg", "peer": "p1", "msg": offer()}] and other_kernel.got == []
    handle_kernel_frame(router, kernel, json.dumps({"op": "msg", "peer": "p1", "msg": protocol.answer("x", "s1")}))
    handle_kernel_frame(router, other_kernel, json.dumps({"op": "msg", "peer": "p2", "msg": protocol.bye("s")}))
    assert page.got == [{"op": "msg", "peer": "p1", "msg": protocol.answer("x", "s1")}]
    router.drop(page)
    assert router.to_browsers("p1", protocol.bye()) == 0


def test_early_browser_messages_wait_for_the_kernel_then_expire() -> None:
    now = [0.0]
    router, kernel, page = Router(clock=lambda: now[0]), FakeConn(), FakeConn()
    handle_browser_frame(router, page, json.dumps({"op": "msg", "peer": "late", "msg": offer()}))
    handle_browser_frame(router, page, json.dumps({"op": "msg", "peer": "stale", "msg": offer()}))
    now[0] = protocol.BUS["pendingTtlS"] / 2
    handle_kernel_frame(router, kernel, json.dumps({"op": "own", "peer": "late"}))
    assert [m["peer"] for m in kernel.got] == ["late"]
    now[0] = protocol.BUS["pendingTtlS"] * 2
    handle_kernel_frame(router, kernel, json.dumps({"op": "own", "peer": "stale"}))
    assert [m["peer"] for m in kernel.got] == ["late"]


@pytest.mark.parametrize(
    "frame",
    [
        b"\x00binary",
        "not json",
        "[1, 2]",
        json.dumps({"op": "msg", "peer": "../../etc", "msg": offer()}),
        json.dumps({"op": "msg", "peer": "p", "msg": {"v": 1, "type": "offer"}}),
        json.dumps({"op": "msg", "peer": "p", "msg": {**offer(), "sdp": "x" * 200_000}}),
        json.dumps({"op": "own", "peer": "p"}),  # only kernels own peers
    ],
)
def test_bad_browser_frames_get_an_error_and_reach_no_kernel(frame: Any) -> None:
    router, kernel, page = Router(), FakeConn(), FakeConn()
    handle_kernel_frame(router, kernel, json.dumps({"op": "own", "peer": "p"}))
    reply = handle_browser_frame(router, page, frame)
    assert reply is not None and json.loads(reply)["op"] == "error"
    assert kernel.got == []
    assert router.owners["p"] is kernel


def test_turn_credentials_follow_coturns_rest_scheme() -> None:
    username, credential = turn_credential("s3cret", "kernel", 600, now=1_000_000)
    assert username == "1000600:kernel"
    expected = base64.b64encode(hmac.new(b"s3cret", b"1000600:kernel", hashlib.sha1).digest()).decode()
    assert credential == expected
    servers = minted_ice_servers("s3cret", ["stun:a:3478", "turn:b:443?transport=tcp"], "browser", 60)
    assert servers[0] == {"urls": ["stun:a:3478"]}
    assert servers[1]["urls"] == ["turn:b:443?transport=tcp"] and servers[1]["username"].endswith(":browser")
    assert minted_ice_servers("", ["turn:b:443"], "x", 60) == []


def test_every_handler_is_authenticated() -> None:
    check = ServerWebApplication._check_handler_auth
    for handler in (BrowserBusHandler, KernelBusHandler, IceHandler):
        assert check(None, "/x", handler) == [], handler  # type: ignore[arg-type]

    class Forgotten(IceHandler):
        async def get(self) -> None:  # the check notices a handler without a decorator
            pass

    assert check(None, "/x", Forgotten)  # type: ignore[arg-type]


def test_extension_point() -> None:
    (point,) = _jupyter_server_extension_points()
    assert point["module"] == "rtc_widgets.server" and point["app"].name == "rtc_widgets"


def test_nodelay_is_set_before_jupyters_kernel_websocket_opens(monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_server.services.kernels.websocket import KernelWebsocketHandler

    from rtc_widgets.server import app

    calls: list[str] = []

    async def stock_open(self: Any, *args: Any) -> None:
        calls.append("open")

    monkeypatch.setattr(KernelWebsocketHandler, "open", stock_open)
    monkeypatch.setattr(KernelWebsocketHandler, app._PATCHED, False, raising=False)
    app._nodelay_on_kernel_websockets()
    app._nodelay_on_kernel_websockets()  # idempotent: wrapped once

    class FakeHandler:
        def set_nodelay(self, value: bool) -> None:
            calls.append(f"nodelay={value}")

    import asyncio
    import concurrent.futures

    # a thread of its own: other suites (Playwright) may keep an event loop running on this one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, KernelWebsocketHandler.open(FakeHandler(), "kernel-id")).result(10)  # type: ignore[arg-type]
    assert calls == ["nodelay=True", "open"]


def media(size: int, **extra: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "type": "media",
        "session": "s1",
        "track": "video",
        "seq": 0,
        "codec": "vp8",
        "ts": 0,
        "size": size,
        **extra,
    }


def test_media_frames_cross_as_binary_frames_both_ways_byte_for_byte() -> None:
    router, kernel, page = Router(), FakeConn(), FakeConn()
    handle_kernel_frame(router, kernel, json.dumps({"op": "own", "peer": "p1"}))
    handle_browser_frame(router, page, json.dumps({"op": "sub", "peer": "p1"}))
    payload = bytes(range(256)) * 40
    env = json.dumps({"op": "msg", "peer": "p1", "msg": media(len(payload), key=True, w=640, h=480)})
    assert handle_browser_frame(router, page, binary_frame(env, payload)) is None
    assert kernel.got[0]["msg"]["size"] == len(payload) and kernel.payloads == [payload]
    back = json.dumps({"op": "msg", "peer": "p1", "msg": media(3)})
    handle_kernel_frame(router, kernel, binary_frame(back, b"abc"))
    assert page.payloads == [b"abc"] and page.got[0]["msg"]["type"] == "media"


@pytest.mark.parametrize(
    "frame",
    [
        binary_frame(json.dumps({"op": "msg", "peer": "p", "msg": media(10)}), b"123"),  # size disagrees
        binary_frame(json.dumps({"op": "msg", "peer": "p", "msg": offer()}), b"xyz"),  # offers carry no bytes
        b"\x00\x00\x00\x05{}",  # envelope longer than the frame
        b"\x00\x00\x00\x02\xff\xfe",  # envelope not UTF-8
        b"\x00\x00",
    ],
)
def test_bad_binary_frames_get_an_error_and_reach_no_kernel(frame: bytes) -> None:
    router, kernel, page = Router(), FakeConn(), FakeConn()
    handle_kernel_frame(router, kernel, json.dumps({"op": "own", "peer": "p"}))
    reply = handle_browser_frame(router, page, frame)
    assert reply is not None and json.loads(reply)["op"] == "error"
    assert kernel.got == []


def test_binary_frames_are_bounded_and_media_for_nobody_is_dropped_quietly() -> None:
    router, page = Router(), FakeConn()
    with pytest.raises(ValueError, match="exceeds"):
        split_binary(b"\x00" * (MAX_BINARY_FRAME + 1))
    env = json.dumps({"op": "msg", "peer": "nobody", "msg": media(4)})
    assert handle_browser_frame(router, page, binary_frame(env, b"abcd")) is None
    assert router.pending == {}  # never held for a kernel that may come later
