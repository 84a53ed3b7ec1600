"""DataChannel: a WebRTC data channel between the browser and the kernel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import traitlets as t

from ..channel import Channel, ChannelSpec, Message, Payload
from ..engine import get_engine
from ..protocol import DEFAULTS
from ._base import PeerWidget


class DataChannel(PeerWidget):
    """A data channel whose browser end is this widget's view: a state badge, a message log and an input box.

    ::

        ch = DataChannel(label="chat", ordered=False, max_retransmits=0)
        ch                                   # the browser end
        await ch.wait_connected(timeout=10)
        ch.send("hello"); ch.send(b"\\x00\\x01"); ch.send(np.arange(10, dtype="f4"))

        @ch.on_message
        def got(msg): ...                    # str or bytes, on a worker thread

    Channel options are fixed when the widget is created.
    """

    _kind = t.Unicode("datachannel").tag(sync=True)

    label = t.Unicode("data", help="Channel label, as the browser sees it.").tag(sync=True)
    ordered = t.Bool(True, help="Deliver in order (W3C `ordered`).").tag(sync=True)
    max_retransmits = t.Int(
        None, allow_none=True, help="Partial reliability: resend at most this often (W3C `maxRetransmits`)."
    ).tag(sync=True)
    max_packet_life_time = t.Int(
        None, allow_none=True, help="Partial reliability: resend for at most this many ms (W3C `maxPacketLifeTime`)."
    ).tag(sync=True)
    protocol = t.Unicode("", help="Sub-protocol name (W3C `protocol`).").tag(sync=True)
    echo = t.Bool(False, help="The browser end sends every message straight back (latency experiments).").tag(sync=True)

    messages_sent = t.Int(0, read_only=True, help="Messages the kernel sent on this channel.").tag(sync=True)
    messages_received = t.Int(0, read_only=True, help="Messages the kernel received.").tag(sync=True)
    bytes_sent = t.Int(0, read_only=True, help="Payload bytes the kernel sent.").tag(sync=True)
    bytes_received = t.Int(0, read_only=True, help="Payload bytes the kernel received.").tag(sync=True)
    messages_dropped = t.Int(
        0, read_only=True, help="Received messages dropped because consumers fell too far behind (bounded queues)."
    ).tag(sync=True)
    max_message_size = t.Int(
        0, read_only=True, help="Largest message both ends accept, in bytes (known once connected)."
    ).tag(sync=True)

    def _make_channels(self) -> list[Channel]:
        self._channel = Channel(
            ChannelSpec(
                label=self.label,
                ordered=self.ordered,
                max_retransmits=self.max_retransmits,
                max_packet_life_time=self.max_packet_life_time,
                protocol=self.protocol,
            )
        )
        return [self._channel]

    # NB: this shadows ipywidgets.Widget.send (custom comm messages), on purpose; signaling doesn't use it.
    def send(self, data: Payload) -> None:
        """Send str (text), bytes-like or a numpy array (its bytes) to the browser. Thread-safe, non-blocking."""
        self._channel.send(data)

    def on_message(self, fn: Callable[[Message], Any]) -> Callable[[Message], Any]:
        """Decorator: call ``fn(msg)`` for every message (str or bytes), in order, on a worker thread."""
        return self._channel.on_message(fn)

    def messages(self) -> AsyncIterator[Message]:
        """``async for msg in ch.messages()``: messages as they arrive (none is lost between two loops)."""
        return self._channel.messages()

    async def ping(self, n: int = DEFAULTS["pingCount"], timeout: float = 5.0) -> list[float]:
        """Round-trip times in ms of ``n`` pings over the peer's internal control channel, one after another."""
        if n < 1:
            raise ValueError("n must be at least 1")
        return await get_engine().run(self._peer.ping(n, timeout))

    async def buffered_amount(self) -> int:
        """Bytes queued in the kernel and not yet on the wire."""
        return await self._channel.buffered()

    @property
    def channel(self) -> Channel:
        """The kernel end of the channel (advanced use)."""
        return self._channel
