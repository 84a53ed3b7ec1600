from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtc_widgets import protocol
from rtc_widgets.protocol import ProtocolError

SPEC_FILE = Path(protocol.__file__).with_name("protocol.json")


def test_builders_produce_valid_messages():
    for msg in [
        protocol.offer("v=0\r\n" + "x" * 10, "abc"),
        protocol.answer("v=0\r\n" + "x" * 10, "abc"),
        protocol.candidate({"candidate": "candidate:1 1 udp 1 1.2.3.4 9 typ host", "sdpMid": "0"}, "abc"),
        protocol.candidate(None, "abc"),
        protocol.bye("abc", "done"),
        protocol.error("bad-sdp", "nope", "abc"),
        protocol.ping(1, 12.5),
        protocol.pong(1, 12.5),
    ]:
        assert protocol.validate(msg) is msg
        assert protocol.parse(protocol.dumps(msg)) == msg


@pytest.mark.parametrize(
    ("msg", "code"),
    [
        ({"v": 2, "type": "bye"}, "bad-message"),
        ({"v": 1, "type": "hello"}, "bad-message"),
        ({"v": 1, "type": "offer", "session": "a"}, "bad-message"),
        ({"v": 1, "type": "offer", "session": "has space", "sdp": "v=0 xxxxxxxx"}, "bad-message"),
        ({"v": 1, "type": "offer", "session": "a", "sdp": "x" * 100_001}, "bad-message"),
        ({"v": 1, "type": "candidate", "session": "a", "candidate": {"candidate": "x", "evil": 1}}, "bad-message"),
        ({"v": 1, "type": "error", "code": "made-up", "message": "m"}, "bad-message"),
        ({"v": 1, "type": "ping", "seq": -1, "t": 0}, "bad-message"),
        ({"v": 1, "type": "bye", "pad": "x" * 200_000}, "too-large"),
        ([1, 2, 3], "bad-message"),
        ("offer", "bad-message"),
    ],
)
def test_invalid_messages_are_refused_with_a_code(msg, code):
    with pytest.raises(ProtocolError) as err:
        protocol.validate(msg)
    assert err.value.code == code


def test_parse_checks_size_before_decoding_and_rejects_non_json():
    with pytest.raises(ProtocolError, match="exceeds"):
        protocol.parse("[" * (protocol.LIMITS["maxSignalBytes"] + 1))
    with pytest.raises(ProtocolError, match="not valid JSON"):
        protocol.parse("{not json")
    with pytest.raises(ProtocolError, match="not valid JSON"):
        protocol.parse("[" * 50_000 + "]" * 50_000)


def test_the_spec_is_one_file_shared_with_typescript():
    spec = json.loads(SPEC_FILE.read_text())
    assert protocol.VERSION == spec["version"] == 1
    assert set(spec["schema"]["properties"]["code"]["enum"]) == set(spec["errorCodes"])
    ts = (Path(__file__).parents[2] / "js" / "src" / "protocol.ts").read_text()
    assert "protocol.json" in ts  # TypeScript imports this file rather than copying its numbers
    for number in ("131072", "100000", "3000"):
        assert number not in ts
