"""The relay channel's framing: sequence numbers, text and binary, size limit, gaps reported."""

from __future__ import annotations

from typing import Any

import pytest

from rtc_widgets import protocol
from rtc_widgets.protocol import ProtocolError
from rtc_widgets.transports.relay import RELAY_MAX_MESSAGE_BYTES, RelayDataChannel, relay_message


def pair() -> tuple[RelayDataChannel, RelayDataChannel, list[dict[str, Any]]]:
    wire: list[dict[str, Any]] = []
    a = RelayDataChannel("chat", "s1", wire.append)
    b = RelayDataChannel("chat", "s1", wire.append)
    return a, b, wire


def test_messages_cross_validated_and_in_order() -> None:
    a, b, wire = pair()
    got: list[Any] = []
    b.on("message", got.append)
    sent = ["hé ✓", b"\x00\xff" * 100, b"", "x" * 1000, bytes(RELAY_MAX_MESSAGE_BYTES)]
    for m in sent:
        a.send(m)
    for msg in wire:
        b.receive(protocol.validate(msg))  # every frame is a valid protocol message within the size limit
    assert got == sent
    assert [m["seq"] for m in wire] == list(range(len(sent)))


def test_oversized_and_closed_sends_are_refused() -> None:
    a, _b, wire = pair()
    with pytest.raises(ValueError, match="relay"):
        a.send(bytes(RELAY_MAX_MESSAGE_BYTES + 1))
    a.close()
    with pytest.raises(ConnectionError):
        a.send("late")
    assert wire == []


def test_a_gap_is_reported_not_hidden() -> None:
    a, b, wire = pair()
    for m in ("one", "two", "three"):
        a.send(m)
    b.receive(wire[0])
    with pytest.raises(ProtocolError, match="lost"):
        b.receive(wire[2])


def test_schema_rejects_malformed_relay_messages() -> None:
    assert protocol.validate(relay_message("s1", "why"))["type"] == "relay"
    bad = [
        {"v": 1, "type": "data", "session": "s1", "label": "c", "seq": 0},  # neither text nor b64
        {"v": 1, "type": "data", "session": "s1", "label": "c", "seq": 0, "text": "a", "b64": "YQ=="},
        {"v": 1, "type": "data", "session": "s1", "label": "c", "seq": 0, "b64": "not base64!"},
        {"v": 1, "type": "data", "session": "s1", "label": "c", "seq": -1, "text": "a"},
        {"v": 1, "type": "relay", "session": "s1"},
    ]
    for msg in bad:
        with pytest.raises(ProtocolError):
            protocol.validate(msg)
