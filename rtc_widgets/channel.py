"""The kernel end of a user data channel. It outlives browser reconnects: each new session rebinds it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from aiortc import RTCDataChannel

from .engine import get_engine
from .protocol import LIMITS
from .sinks import Fanout

if TYPE_CHECKING:
    import numpy as np

Message = str | bytes
Payload = Union[str, bytes, bytearray, memoryview, "np.ndarray"]


@dataclass(frozen=True)
class ChannelSpec:
    """Options of a data channel, with the W3C meanings."""

    label: str
    ordered: bool = True
    max_retransmits: int | None = None
    max_packet_life_time: int | None = None
    protocol: str = ""

    def check(self) -> None:
        if not self.label or len(self.label) > 256:
            raise ValueError("a data channel label must be 1 to 256 characters")
        if self.max_retransmits is not None and self.max_packet_life_time is not None:
            raise ValueError("set max_retransmits or max_packet_life_time, not both (W3C rule)")
        for name in ("max_retransmits", "max_packet_life_time"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 65535:
                raise ValueError(f"{name} must be between 0 and 65535")

    def matches(self, dc: RTCDataChannel) -> bool:
        return (
            dc.label == self.label
            and dc.ordered == self.ordered
            and dc.maxRetransmits == self.max_retransmits
            and dc.maxPacketLifeTime == self.max_packet_life_time
            and dc.protocol == self.protocol
        )


def to_wire(data: Payload) -> Message:
    """str stays text; bytes-likes and numpy arrays (their raw bytes, C order) become binary."""
    if isinstance(data, str):
        return data
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    tobytes = getattr(data, "tobytes", None)
    if callable(tobytes) and hasattr(data, "dtype"):
        import numpy as np

        return bytes(np.ascontiguousarray(data).tobytes())
    raise TypeError(f"send() takes str, bytes or a numpy array, not {type(data).__name__}")


def wire_size(msg: Message) -> int:
    return len(msg.encode()) if isinstance(msg, str) else len(msg)


class Channel:
    """Kernel end of one data channel. Thread-safe ``send``; receipt fans out to callbacks and iterators."""

    def __init__(self, spec: ChannelSpec) -> None:
        spec.check()
        self.spec = spec
        self.incoming: Fanout[Message] = Fanout(
            f"channel-{spec.label}", LIMITS["maxQueuedMessages"], LIMITS["maxQueuedBytes"], wire_size
        )
        self._dc: RTCDataChannel | None = None
        self.max_message_size = 0
        self.messages_sent = 0
        self.messages_received = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.on_open_change: Callable[[], None] = lambda: None

    # --- engine thread -------------------------------------------------------------------------
    def bind(self, dc: RTCDataChannel, max_message_size: int) -> None:
        self._dc = dc
        self.max_message_size = max_message_size
        dc.on("message", self._on_message)
        dc.on("open", self.on_open_change)
        dc.on("close", self.on_open_change)

    def unbind(self) -> None:
        dc, self._dc = self._dc, None
        if dc is not None:
            dc.remove_all_listeners()
            dc.close()

    @property
    def is_open(self) -> bool:
        return self._dc is not None and self._dc.readyState == "open"

    def _on_message(self, msg: Message) -> None:
        self.messages_received += 1
        self.bytes_received += wire_size(msg)
        self.incoming.publish(msg)

    def _send_now(self, dc: RTCDataChannel, msg: Message) -> None:
        if dc.readyState != "open":
            return
        dc.send(msg)
        self.messages_sent += 1
        self.bytes_sent += wire_size(msg)

    # --- any thread ----------------------------------------------------------------------------
    def send(self, data: Payload) -> None:
        msg = to_wire(data)
        dc = self._dc
        if dc is None or dc.readyState != "open":
            raise ConnectionError(
                f"data channel '{self.spec.label}' is not open: await wait_connected() first "
                "(the widget must be displayed, or start() called, in an open notebook)"
            )
        size = wire_size(msg)
        if self.max_message_size and size > self.max_message_size:
            raise ValueError(
                f"message of {size} bytes exceeds the negotiated maximum of {self.max_message_size} "
                "bytes; split it into smaller messages"
            )
        # call_soon_threadsafe keeps FIFO order, so messages leave in the order send() was called.
        get_engine().call_soon(self._send_now, dc, msg)

    async def buffered(self) -> int:
        """Bytes queued in aiortc and not yet sent."""
        dc = self._dc

        async def read() -> int:
            return dc.bufferedAmount if dc is not None else 0

        return await get_engine().run(read())

    def on_message(self, fn: Callable[[Message], Any]) -> Callable[[Message], Any]:
        self.incoming.add_callback(fn)
        return fn

    def messages(self) -> AsyncIterator[Message]:
        return self.incoming.iterate()

    def counters(self) -> dict[str, int]:
        return {
            "messages_sent": self.messages_sent,
            "messages_received": self.messages_received,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "messages_dropped": self.incoming.dropped,
        }

    def queue_lag(self) -> float:
        """Seconds the oldest received message has waited for user code."""
        return self.incoming.queue_lag()

    def close(self) -> None:
        self.incoming.close()


__all__ = ["Channel", "ChannelSpec", "Message", "Payload", "to_wire", "wire_size"]
