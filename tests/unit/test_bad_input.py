"""Malformed, oversized and out-of-order signaling: clear errors, a live kernel, nothing lost."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest

from rtc_widgets import DataChannel, protocol

from .fakebrowser import FakeBrowser


def wait_for(pred, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def malformed_messages(n: int, seed: int = 1):
    rng = random.Random(seed)
    valid = [
        protocol.offer("v=0\r\n" + "x" * 20, "s1"),
        protocol.candidate({"candidate": "candidate:1 1 udp 1 198.18.0.1 9 typ host"}, "s1"),
        protocol.bye("s1"),
        protocol.error("bad-sdp", "x", "s1"),
        protocol.ping(1, 1.0),
    ]
    junk = [None, 0, -1, 1.5, "", "x" * 300, [], {}, [1, 2], {"a": 1}, True, "offer", 2**70]
    for i in range(n):
        kind = i % 6
        base = json.loads(json.dumps(rng.choice(valid)))
        if kind == 0:  # a field replaced with junk
            key = rng.choice([*base.keys(), "type", "v", "session"])
            base[key] = rng.choice(junk)
        elif kind == 1:  # a required field removed
            required = {
                "offer": ["sdp", "session"],
                "candidate": ["candidate", "session"],
                "error": ["code", "message"],
            }
            base.pop(rng.choice(["v", "type", *required.get(base["type"], []), *(["seq"] if "seq" in base else [])]))
        elif kind == 2:  # oversized
            base["sdp" if "sdp" in base else "pad"] = "y" * (protocol.LIMITS["maxSignalBytes"] + rng.randint(1, 5000))
        elif kind == 3:  # not an object at all
            base = rng.choice(junk)
        elif kind == 4:  # unknown type / version
            base["type"] = rng.choice(["hello", "OFFER", "renegotiate", "", "answer "])
            base["v"] = rng.choice([1, 2, 0, "1"])
        else:  # deep nesting
            nested: object = "x"
            for _ in range(rng.randint(10, 60)):
                nested = [nested]
            base["candidate"] = nested
        yield base


def test_fuzz_1000_malformed_messages_then_a_valid_offer_still_connects():
    ch = DataChannel(label="fuzz")
    browser = FakeBrowser(ch)
    try:
        for msg in malformed_messages(1000):
            browser.to_kernel(msg)
        # Nearly every message is answered with an error naming what was wrong; the few that the mutation left
        # well-formed get their normal answer (a pong) or none (a bye or an error report from the browser).
        assert wait_for(lambda: len(browser.errors()) >= 980, 20)
        assert all(m["type"] in ("error", "pong") for m in browser.from_kernel)
        assert all(m["code"] in protocol.ERROR_CODES for m in browser.errors())
        assert ch.error  # the last one is shown to the user
        browser.connect()
        ch.wait_connected_blocking(20)
        ch.send("still alive")
        assert browser.wait_received(1) == ["still alive"]
    finally:
        ch.close()
        browser.close()


@pytest.mark.parametrize(
    ("sdp", "says"),
    [
        ("v=0\r\nthis is not sdp at all\r\n", "no media or data-channel section"),
        ("v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=garbage\r\n", "could not be applied"),
    ],
)
def test_invalid_sdp_gives_bad_sdp_error_and_a_later_offer_works(sdp, says):
    ch = DataChannel(label="sdp")
    browser = FakeBrowser(ch)
    try:
        browser.to_kernel(protocol.offer(sdp, "broken1"))
        # the page trickles its candidates right after the offer: they must not bury the real error
        browser.to_kernel(protocol.candidate({"candidate": "candidate:1 1 udp 1 198.18.0.1 9 typ host"}, "broken1"))
        browser.to_kernel(protocol.candidate(None, "broken1"))
        assert wait_for(lambda: any(m["code"] == "bad-sdp" for m in browser.errors()))
        time.sleep(0.2)
        assert says in ch.error
        assert [m["code"] for m in browser.errors()] == ["bad-sdp"]
        browser.connect()
        ch.wait_connected_blocking(20)
        assert ch.error == ""
    finally:
        ch.close()
        browser.close()


def test_out_of_order_candidate_before_offer_is_refused():
    ch = DataChannel(label="ooo")
    browser = FakeBrowser(ch)
    try:
        browser.to_kernel(protocol.candidate({"candidate": "candidate:1 1 udp 1 198.18.0.1 9 typ host"}, "nope"))
        assert wait_for(lambda: any(m["code"] == "out-of-order" for m in browser.errors()))
        browser.to_kernel({"v": 1, "type": "answer", "session": "zz", "sdp": "v=0 something"})
        assert wait_for(lambda: sum(m["code"] == "out-of-order" for m in browser.errors()) == 2)
    finally:
        ch.close()
        browser.close()


def test_bad_messages_while_connected_lose_nothing_and_keep_the_channel(connect):
    ch, browser = connect(label="keep")
    got: list[object] = []
    ch.on_message(got.append)
    for i in range(100):
        browser.send(f"k{i}")
        if i % 10 == 0:
            browser.to_kernel(
                {"v": 1, "type": "candidate", "session": browser.session, "candidate": {"candidate": "??"}}
            )
            browser.to_kernel("garbage")
    assert wait_for(lambda: len(got) == 100)
    assert got == [f"k{i}" for i in range(100)]
    assert any(m["code"] == "bad-candidate" for m in browser.errors())
    assert ch.connection_state == "connected"
    ch.send("ok")
    assert browser.wait_received(1) == ["ok"]


def test_start_after_a_failed_offer_waits_for_the_new_connection_not_the_old_error():
    ch = DataChannel(label="again")
    browser = FakeBrowser(ch)
    try:
        browser.to_kernel(protocol.offer("v=0\r\nno sections\r\n", "broken2"))
        assert wait_for(lambda: "no media" in ch.error)
        ch.start()
        # the browser answers start() a moment later, as a real page does
        threading.Timer(0.3, browser.connect).start()
        ch.wait_connected_blocking(20)
        assert ch.connection_state == "connected" and ch.error == ""
    finally:
        ch.close()
        browser.close()
