"""TURN-only: the kernel may send nothing but TCP to port 443 of a coturn on a router; ICE must relay.

Browser (Chromium) and kernel (JupyterLab + ipykernel) live in different namespaces joined only by a router that
forwards the page's TCP to JupyterLab. coturn runs on the router with ``use-auth-secret``; the server extension
holds the secret and mints credentials for both ends (no secret in the notebook). Assertions: the selected
candidate pair on the kernel is a relay candidate, coturn accepted the minted usernames, and messages of every
kind cross both ways intact. The control without TURN shows the path really is closed.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from buslab import ExtLabServer
from harness import Notebook, chromium_executable, merged_chromium_args
from mediafiles import PALETTE, READ_FRAME_SOURCE, expected_colour, peak_frequency, write_wav, write_y4m

from .topology import KERNEL_IP, ROUTER_KERNEL_IP, TURN_PORT, TurnTopology

TURN_URL = f"turn:{ROUTER_KERNEL_IP}:{TURN_PORT}?transport=tcp"

pytestmark = pytest.mark.browser


class NetLabServer(ExtLabServer):
    """JupyterLab on every address of this namespace; once the topology is up, pages load from KERNEL_IP."""

    host = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


SELECTED_KERNEL = """
def _selected_pair(ch):
    conn = ch.peer.pc.sctp.transport.transport._connection
    pair = conn._nominated.get(1)
    return None if pair is None else [pair.local_candidate.type, pair.remote_candidate.type]
"""

SELECTED_BROWSER = """async pid => {
  const pc = globalThis.rtcWidgets.peers.get(pid).pc;
  const stats = await pc.getStats();
  let id = null;
  stats.forEach((r) => { if (r.type === "transport" && r.selectedCandidatePairId) id = r.selectedCandidatePairId; });
  if (!id) {
    stats.forEach((r) => { if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") id = r.id; });
  }
  const pair = stats.get(id);
  return [stats.get(pair.localCandidateId).candidateType, stats.get(pair.remoteCandidateId).candidateType];
}"""

KERNEL_MESSAGES = ["relay ✓ text", b"\x00\x01\x02\xff" * 64, "x" * 10_000, b"", "last"]
FPS = 30

MEDIA_SETUP = (
    "import asyncio, time, numpy as np\nfrom rtc_widgets import Camera, Microphone\n"
    "from rtc_widgets.kstats import kernel_selected_pair\n" + READ_FRAME_SOURCE
)
MIC = "Microphone(sample_rate=16000, echo_cancellation=False, noise_suppression=False, auto_gain_control=False)"


def check_media_content(nb: Notebook, what: str) -> None:
    """Frames of the y4m with their colours, and the 440 Hz tone, as the kernel received them (cam, mic)."""
    nb.kernel.execute(
        "frames = []\ncam.on_frame(lambda img: frames.append(read_frame(img)))\n"
        "await asyncio.sleep(1)\nframes.clear()\npcm = await mic.record(2)\nframes_seen = list(frames)",
        60,
    )
    frames = nb.kernel.eval("frames_seen")
    correct = sum(1 for n, c in frames if c == expected_colour(n, FPS))
    pcm = np.array(nb.kernel.eval("pcm[:, 0].tolist()"), np.float32)
    peak = peak_frequency(pcm, 16000)
    colours = sorted({c for _, c in frames})
    print(f"{what}: {len(frames) / 2:.1f} fps, {correct}/{len(frames)} right colours {colours}, tone {peak:.2f} Hz")
    assert len(frames) >= 20 and correct >= 0.95 * len(frames)
    assert len(colours) >= 2 or len(PALETTE) == 1  # 2 s of a palette that changes every second
    assert abs(peak - 440) < 2


@pytest.fixture
def turn_world(playwright: Any) -> Iterator[tuple[TurnTopology, NetLabServer, Any]]:
    with tempfile.TemporaryDirectory(prefix="rtcw-turn-") as tmp:
        work = Path(tmp)
        secret = "s" + str(time.monotonic_ns())
        topo_holder: list[TurnTopology] = []  # built once the lab's port is known
        lab = NetLabServer(
            work / "lab",
            extension=True,
            config={
                "ServerApp": {"ip": "0.0.0.0", "allow_remote_access": True},
                "RtcWidgetsApp": {"turn_secret": secret, "turn_ttl": 600, "turn_urls": [TURN_URL]},
            },
        )
        lab.start()
        try:
            topo = TurnTopology(jupyter_port=lab.port, workdir=work, turn_secret=secret)
            topo_holder.append(topo)
            topo.up()
            lab.host = KERNEL_IP
            fake = [
                f"--use-file-for-fake-video-capture={write_y4m(work / 'colours.y4m', 640, 480, FPS)}",
                f"--use-file-for-fake-audio-capture={write_wav(work / 'tone440.wav')}",
                # the page is plain http on the kernel's address: let it capture as on https
                f"--unsafely-treat-insecure-origin-as-secure=http://{KERNEL_IP}:{lab.port}",
            ]
            browser = playwright.chromium.launch(
                executable_path=topo.chromium_wrapper(chromium_executable()),
                args=merged_chromium_args(fake),
                chromium_sandbox=False,
                headless=True,
                timeout=60_000,
            )
            try:
                yield topo, lab, browser
            finally:
                browser.close()
        finally:
            for topo in topo_holder:
                topo.down()
            lab.stop()


def test_turn_only_network_selects_a_relay_and_carries_messages(
    turn_world: tuple[TurnTopology, NetLabServer, Any],
) -> None:
    topo, lab, browser = turn_world
    nb = Notebook(lab, browser, "turn.ipynb", ready_timeout=90)
    try:
        nb.kernel.execute(
            "from rtc_widgets import DataChannel\nch = DataChannel(label='turn')\n"
            "print([s['urls'] for s in ch.ice_servers], [s.get('username', '') for s in ch.ice_servers])"
        )
        servers = nb.kernel.eval("ch.ice_servers")
        assert servers and servers[0]["urls"] == [topo.turn_url], servers
        assert servers[0]["username"].endswith(":kernel") and servers[0]["credential"], "no minted credential"
        assert topo.turn_secret not in str(servers)
        nb.kernel.execute("ch.start()\nawait ch.wait_connected(timeout=60)", 90)
        nb.kernel.execute(SELECTED_KERNEL)
        assert nb.kernel.eval("_selected_pair(ch)")[0] == "relay"
        pid = nb.kernel.eval("ch.peer_id")
        browser_pair = nb.page.evaluate(SELECTED_BROWSER, pid)
        assert "relay" in browser_pair, browser_pair
        assert ":kernel" in topo.turn_log()  # coturn accepted the credential the extension minted

        # messages both ways, content checked
        nb.page.evaluate(
            "pid => { const p = globalThis.rtcWidgets.peers.get(pid); globalThis.__got = [];"
            " p.channel.addEventListener('message', (e) => globalThis.__got.push("
            " typeof e.data === 'string' ? 't:' + e.data : 'b:' + Array.from(new Uint8Array(e.data)).join(','))); }",
            pid,
        )
        nb.kernel.execute(f"got = []\nch.on_message(got.append)\nfor m in {KERNEL_MESSAGES!r}:\n    ch.send(m)")
        expected = [f"t:{m}" if isinstance(m, str) else "b:" + ",".join(map(str, m)) for m in KERNEL_MESSAGES]
        nb.page.wait_for_function(f"() => globalThis.__got.length >= {len(expected)}", timeout=30_000)
        assert nb.page.evaluate("() => globalThis.__got") == expected
        sent = nb.page.evaluate(
            "pid => { const p = globalThis.rtcWidgets.peers.get(pid);"
            " return [p.send('from the page ✓'), p.send(new Uint8Array([1, 2, 3, 250]))]; }",
            pid,
        )
        assert sent == [True, True]
        deadline = time.monotonic() + 30
        while nb.kernel.eval("len(got)") < 2:
            assert time.monotonic() < deadline, "the page's messages did not reach the kernel"
            time.sleep(0.2)
        assert nb.kernel.eval("[m if isinstance(m, str) else list(m) for m in got]") == [
            "from the page ✓",
            [1, 2, 3, 250],
        ]
        # the relay-only switch: both ends gather TURN candidates only, and still connect
        nb.kernel.execute(
            "ch2 = DataChannel(label='forced', ice_transport_policy='relay')\nch2.start()\n"
            "await ch2.wait_connected(timeout=60)",
            90,
        )
        local = "sorted({c.type for c in ch2.peer.pc.sctp.transport.transport.iceGatherer.getLocalCandidates()})"
        assert nb.kernel.eval(local) == ["relay"]
        assert nb.kernel.eval("[ch2.transport, _selected_pair(ch2)[0]]") == ["webrtc", "relay"]

        # camera and microphone through the same TURN server: relay candidates, true colours and tone
        nb.kernel.execute(MEDIA_SETUP)
        nb.kernel.execute(
            f"cam = Camera(width=640, height=480, fps={FPS})\nmic = {MIC}\ncam.start()\nmic.start()\n"
            "await cam.wait_connected(timeout=60)\nawait mic.wait_connected(timeout=60)",
            120,
        )
        pairs = nb.kernel.eval(
            "[cam.transport, mic.transport, kernel_selected_pair(cam.peer.pc)['local']['type'],"
            " kernel_selected_pair(mic.peer.pc)['local']['type']]"
        )
        assert pairs == ["webrtc", "webrtc", "relay", "relay"], pairs
        check_media_content(nb, "camera and microphone through TURN")
    finally:
        nb.close()


def test_without_turn_the_same_network_has_no_path(turn_world: tuple[TurnTopology, NetLabServer, Any]) -> None:
    """The control: with no ICE servers (and no relay), browser and kernel cannot connect here."""
    _topo, lab, browser = turn_world
    nb = Notebook(lab, browser, "noturn.ipynb", ready_timeout=90)
    try:
        nb.kernel.execute(
            "from rtc_widgets import DataChannel\nch = DataChannel(ice_servers=[], relay_after=None)\nch.start()"
        )
        nb.kernel.execute(
            "import asyncio\ntry:\n    await ch.wait_connected(timeout=20)\n    outcome = 'connected'\n"
            "except (TimeoutError, ConnectionError) as exc:\n    outcome = type(exc).__name__\n",
            60,
        )
        assert nb.kernel.eval("outcome") != "connected"
        assert nb.kernel.eval("ch._bus") is True  # signaling itself worked (over the bus): only media had no path
    finally:
        nb.close()


def test_udp_blocked_without_turn_the_relay_takes_over(turn_world: tuple[TurnTopology, NetLabServer, Any]) -> None:
    """A Binder-like pod: no UDP path, no TURN. Within relay_after (5 s) data goes through the Jupyter server."""
    _topo, lab, browser = turn_world
    nb = Notebook(lab, browser, "relay.ipynb", ready_timeout=90)
    try:
        nb.kernel.execute(
            "import time\nfrom rtc_widgets import DataChannel\nch = DataChannel(ice_servers=[])\n"
            "t0 = time.monotonic()\nch.start()\nawait ch.wait_connected(timeout=30)\nwaited = time.monotonic() - t0\n"
            "got = []\nch.on_message(got.append)",
            60,
        )
        transport, error, waited = nb.kernel.eval("[ch.transport, ch.error, waited]")
        assert transport == "relay" and "did not connect within 5 s" in error, error
        assert waited < 15
        pid = nb.kernel.eval("ch.peer_id")
        nb.page.wait_for_function(
            "pid => globalThis.rtcWidgets.peers.get(pid)?.channel?.readyState === 'open'", arg=pid, timeout=20_000
        )
        nb.page.evaluate(
            "pid => { const p = globalThis.rtcWidgets.peers.get(pid); globalThis.__got = [];"
            " p.channel.addEventListener('message', (e) => globalThis.__got.push("
            " typeof e.data === 'string' ? 't:' + e.data : 'b:' + Array.from(new Uint8Array(e.data)).join(','))); }",
            pid,
        )
        nb.kernel.execute(f"for m in {KERNEL_MESSAGES!r}:\n    ch.send(m)")
        expected = [f"t:{m}" if isinstance(m, str) else "b:" + ",".join(map(str, m)) for m in KERNEL_MESSAGES]
        nb.page.wait_for_function(f"() => globalThis.__got.length >= {len(expected)}", timeout=30_000)
        assert nb.page.evaluate("() => globalThis.__got") == expected
        assert nb.page.evaluate("pid => globalThis.rtcWidgets.peers.get(pid).send('up ✓')", pid) is True
        deadline = time.monotonic() + 30
        while nb.kernel.eval("got") != ["up ✓"]:
            assert time.monotonic() < deadline, "the page's message did not reach the kernel"
            time.sleep(0.2)

        # camera and microphone: ICE fails the same way, the relay takes over by itself, content intact
        nb.kernel.execute(MEDIA_SETUP)
        nb.kernel.execute(
            f"cam = Camera(width=640, height=480, fps={FPS}, ice_servers=[])\nmic = {MIC[:-1]}, ice_servers=[])\n"
            "t0 = time.monotonic()\ncam.start()\nmic.start()\n"
            "await cam.wait_connected(timeout=30)\nawait mic.wait_connected(timeout=30)\n"
            "waited = time.monotonic() - t0",
            90,
        )
        states = nb.kernel.eval("[cam.transport, mic.transport, cam.error, waited]")
        assert states[:2] == ["relay", "relay"] and "did not connect within 5 s" in states[2], states
        assert states[3] < 15
        check_media_content(nb, "camera and microphone over the automatic relay (UDP blocked, no TURN)")
    finally:
        nb.close()
