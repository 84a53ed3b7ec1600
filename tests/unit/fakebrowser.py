"""An aiortc peer standing in for the browser, speaking the real protocol to a widget through its comm.

It lives on its own thread and loop (the real browser is another process), offers, trickles its candidates as
separate ``candidate`` messages (stripped from the SDP, as a browser would send them), answers pings on the control
channel and can echo, like ``js/src/peer.ts``.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from rtc_widgets import protocol
from rtc_widgets.peer import CONTROL_LABEL


class FakeBrowser:
    def __init__(
        self,
        widget: Any,
        *,
        echo: bool = False,
        trickle: bool = True,
        tracks: Callable[[], list[Any]] | None = None,
        receive: tuple[str, ...] = (),
    ) -> None:
        self.widget = widget
        self.make_tracks = tracks  # media widgets: new sending tracks for each session, like getUserMedia
        self.tracks: list[Any] = []
        self.receive = receive  # output widgets: kinds offered recvonly, like js/src/output.ts
        self.remote_tracks: list[Any] = []  # the kernel's tracks, newest session last
        self.echo = echo
        self.trickle = trickle
        self.received: list[Any] = []
        self.from_kernel: list[dict[str, Any]] = []  # every signaling message the kernel sent
        self.got_message = threading.Event()
        self.session = ""
        self.pc: RTCPeerConnection | None = None
        self.channel: Any = None
        self.control: Any = None
        self.answered = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fake-browser", daemon=True)
        self.thread.start()
        # Capture what the kernel sends over the widget's comm (the real ipywidgets path).
        comm = widget.comm
        original = comm.publish_msg

        def publish_msg(msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None, **keys: Any):
            if msg_type == "comm_msg" and isinstance(data, dict) and data.get("method") == "custom":
                msg = data["content"]
                self.from_kernel.append(msg)
                self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._on_signal(msg)))
            return original(msg_type, data, metadata, buffers, **keys)

        comm.publish_msg = publish_msg

    # --- helpers ---------------------------------------------------------------------------------
    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 20) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def to_kernel(self, msg: Any) -> None:
        """Deliver one message as the comm does: ipywidgets' _handle_msg with method 'custom'."""
        self.widget._handle_msg({"content": {"data": {"method": "custom", "content": msg}}, "buffers": []})

    def errors(self) -> list[dict[str, Any]]:
        return [m for m in self.from_kernel if m.get("type") == "error"]

    # --- browser behaviour -----------------------------------------------------------------------
    def connect(self, timeout: float = 20) -> None:
        self.run(self._connect())
        if not self.answered.wait(timeout):
            raise TimeoutError("the kernel never answered")

    async def _connect(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        self.answered.clear()
        self.session = secrets.token_urlsafe(12)
        pc = self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        w = self.widget
        self.control = pc.createDataChannel(CONTROL_LABEL)
        self.control.on("message", self._on_control)
        if hasattr(w, "label"):  # a DataChannel widget; media widgets have no user channel
            kwargs: dict[str, Any] = {"ordered": w.ordered, "protocol": w.protocol}
            if w.max_retransmits is not None:
                kwargs["maxRetransmits"] = w.max_retransmits
            if w.max_packet_life_time is not None:
                kwargs["maxPacketLifeTime"] = w.max_packet_life_time
            self.channel = pc.createDataChannel(w.label, **kwargs)
            self.channel.on("message", self._on_message)
        self.tracks = self.make_tracks() if self.make_tracks else []
        for track in self.tracks:
            pc.addTransceiver(track, direction="sendonly")
        for kind in self.receive:
            pc.addTransceiver(kind, direction="recvonly")
        pc.on("track", self.remote_tracks.append)
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        lines = sdp.splitlines()
        candidates = [ln[2:] for ln in lines if ln.startswith("a=candidate:")]
        if self.trickle:
            sdp = "\r\n".join(ln for ln in lines if not ln.startswith(("a=candidate:", "a=end-of-candidates"))) + "\r\n"
        self.to_kernel(protocol.offer(sdp, self.session))
        if self.trickle:
            for cand in candidates:
                self.to_kernel(protocol.candidate({"candidate": cand, "sdpMid": "0", "sdpMLineIndex": 0}, self.session))
            self.to_kernel(protocol.candidate(None, self.session))

    async def _on_signal(self, msg: dict[str, Any]) -> None:
        if msg.get("session") not in (None, self.session):
            return
        if msg["type"] == "answer" and self.pc is not None:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="answer"))
            self.answered.set()
        elif msg["type"] == "bye" and self.pc is not None:
            await self.pc.close()

    def _on_control(self, raw: Any) -> None:
        msg = protocol.parse(raw)
        if msg["type"] == "ping":
            self.control.send(protocol.dumps(protocol.pong(msg["seq"], msg["t"])))

    def _on_message(self, msg: Any) -> None:
        if self.echo:
            self.channel.send(msg)
        self.received.append(msg)
        self.got_message.set()

    def send(self, msg: Any) -> None:
        # The kernel end may see the channel open (DCEP OPEN) a moment before this end does (DCEP ACK).
        async def send_when_open() -> None:
            while self.channel.readyState == "connecting":
                await asyncio.sleep(0.005)
            self.channel.send(msg)

        self.run(send_when_open(), 10)

    def wait_received(self, n: int, timeout: float = 20) -> list[Any]:
        async def wait() -> list[Any]:
            while len(self.received) < n:
                await asyncio.sleep(0.01)
            return list(self.received)

        return self.run(asyncio.wait_for(wait(), timeout), timeout + 1)

    def close(self) -> None:
        if self.loop.is_closed():
            return  # idempotent: a test may close before its fixture does
        if self.pc is not None:
            self.run(self.pc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
