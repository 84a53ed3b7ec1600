"""The server extension's signaling bus, in a real page: a peer connects while the cell runs synchronous code.

Proof: ONE cell ``display(ch); ch.wait_connected_blocking(20)`` connects with the extension (signaling went over
the bus, counted by the page) and times out without it (the comm's offer waits behind the blocked cell). Messages
then cross both ways with their content checked. Servers run with ``allow_unauthenticated_access=False``: no auth
warning for our handlers, and every endpoint refuses a caller without a token or the runtime secret.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import os
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from buslab import ExtLabServer, serve_lab
from harness import Notebook

pytestmark = pytest.mark.browser

_counter = itertools.count(1)

BLOCKING_CELL = """\
from IPython.display import display
from rtc_widgets import DataChannel
ch = DataChannel(label="blocked")
display(ch)
try:
    ch.wait_connected_blocking(20)
    print("RESULT", "connected", ch.connection_state, ch._bus)
except TimeoutError as exc:
    print("RESULT", "timeout", ch.connection_state, ch._bus, str(exc)[:60])
"""


@pytest.fixture(scope="module")
def bus_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExtLabServer]:
    """Extension on, and no endpoint may be reached without authentication."""
    yield from serve_lab(
        tmp_path_factory,
        "buslab",
        extension=True,
        config={"ServerApp": {"allow_unauthenticated_access": False}},
    )


@pytest.fixture(scope="module")
def plain_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExtLabServer]:
    """Extension explicitly off: what VS Code, Colab or an old server give us (signaling over the comm)."""
    yield from serve_lab(tmp_path_factory, "plainlab", extension=False)


@pytest.fixture
def open_in(browser: Any) -> Iterator[Callable[[ExtLabServer], Notebook]]:
    opened: list[Notebook] = []

    def open_(lab: ExtLabServer) -> Notebook:
        nb = Notebook(lab, browser, f"bus{next(_counter):03d}.ipynb")
        opened.append(nb)
        return nb

    yield open_
    for nb in opened:
        nb.close()


def _result_line(output: Any) -> list[str]:
    text = "\n".join(output.all_inner_texts())
    for line in text.splitlines():
        if line.startswith("RESULT "):
            return line.split()
    raise AssertionError(f"no RESULT line in the cell output: {text!r}")


def test_peer_connects_while_the_cell_blocks(bus_lab: ExtLabServer, open_in: Callable[..., Notebook]) -> None:
    nb = open_in(bus_lab)
    out = nb.run_cell_ui(BLOCKING_CELL, timeout=60)
    result = _result_line(out)
    assert result[1:4] == ["connected", "connected", "True"], result
    nb.screenshot("bus-blocking-cell-connected")
    pid = nb.kernel.eval("ch.peer_id")
    assert nb.kernel.eval("ch.transport") == "webrtc"  # a direct path exists here: no relay
    # the page really signaled over the bus, both ways
    bus = nb.page.evaluate("() => { const b = globalThis.rtcWidgets.bus; return [b.state, b.sent, b.received]; }")
    assert bus[0] == "open" and bus[1] >= 2 and bus[2] >= 1, bus
    # and the connection carries data both ways, content checked
    nb.kernel.execute("got = []\nch.on_message(got.append)\nch.send('from kernel ✓')\nch.send(b'\\x00\\x01\\xff')")
    nb.page.wait_for_function(
        "pid => globalThis.rtcWidgets.peers.get(pid).log.entries?.length >= 2 || "
        "globalThis.rtcWidgets.peers.get(pid).counters.messagesReceived >= 2",
        arg=pid,
        timeout=20_000,
    )
    sent = nb.page.evaluate(
        "pid => { const p = globalThis.rtcWidgets.peers.get(pid); "
        "return [p.send('from page ✓'), p.send(new Uint8Array([9, 8, 7]))]; }",
        pid,
    )
    assert sent == [True, True]
    deadline = time.monotonic() + 20
    while nb.kernel.eval("len(got)") < 2:
        assert time.monotonic() < deadline, "the kernel did not receive the page's messages"
        time.sleep(0.2)
    assert nb.kernel.eval("[m if isinstance(m, str) else list(m) for m in got]") == ["from page ✓", [9, 8, 7]]
    assert nb.page.evaluate("pid => globalThis.rtcWidgets.peers.get(pid).counters.messagesReceived", pid) == 2


def test_camera_snapshot_in_the_same_cell_while_it_blocks(
    bus_lab: ExtLabServer, open_in: Callable[..., Notebook]
) -> None:
    """The issue's own example: ``display(cam); img = cam.snapshot_blocking()`` in one cell (fake camera)."""
    nb = open_in(bus_lab)
    out = nb.run_cell_ui(
        "from IPython.display import display\nfrom rtc_widgets import Camera\ncam = Camera()\ndisplay(cam)\n"
        "img = cam.snapshot_blocking(30)\nprint('RESULT', 'frame', *img.shape, int(img.std() > 1), cam._bus)",
        timeout=90,
    )
    assert _result_line(out)[1:] == ["frame", "480", "640", "3", "1", "True"]


def test_without_the_extension_the_blocked_cell_times_out(
    plain_lab: ExtLabServer, open_in: Callable[..., Notebook]
) -> None:
    assert plain_lab.bus_files() == []
    nb = open_in(plain_lab)
    result = _result_line(nb.run_cell_ui(BLOCKING_CELL, timeout=60))
    assert result[1] == "timeout" and result[3] == "False", result
    # ...and once the cell has ended, the comm carries the same signaling and the peer connects
    nb.kernel.execute("await ch.wait_connected(timeout=30)", 45)
    assert nb.kernel.eval("ch.connection_state") == "connected"
    assert nb.page.evaluate("() => globalThis.rtcWidgets.bus === undefined")


def test_comm_still_works_with_the_extension_when_the_kernel_has_no_bus(
    bus_lab: ExtLabServer, open_in: Callable[..., Notebook]
) -> None:
    """A kernel that cannot reach the bus (here: told so) signals over the comm, and the page follows it."""
    nb = open_in(bus_lab)
    nb.kernel.execute(
        "import os\nfrom rtc_widgets.signaling import reset_bus\n"
        "os.environ.pop('RTC_WIDGETS_BUS_FILE', None)\nreset_bus()\n"
        "from rtc_widgets import DataChannel\nch = DataChannel(echo=True)\nch.start()\n"
        "await ch.wait_connected(timeout=30)"
    )
    assert nb.kernel.eval("[ch._bus, ch.connection_state]") == [False, "connected"]
    nb.kernel.execute("rtt = await ch.ping(n=3)")
    assert nb.kernel.eval("len(rtt)") == 3


# --------------------------------------------------------------------------------------
# authentication
# --------------------------------------------------------------------------------------


def _status(url: str, headers: dict[str, str] | None = None) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _ws_status(url: str, headers: dict[str, str] | None = None) -> int | str:
    """HTTP status of a websocket handshake (101 = accepted), via tornado's client."""
    import asyncio

    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    async def go() -> int | str:
        try:
            conn = await websocket_connect(HTTPRequest(url, headers=headers or {}, request_timeout=10))
        except HTTPClientError as exc:
            return exc.code
        hello = await conn.read_message()
        conn.close()
        return 101 if hello and json.loads(hello)["op"] == "hello" else f"odd first frame {hello!r}"

    # a thread of its own: Playwright's sync API keeps an event loop running on this one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, go()).result(30)


def test_handlers_are_authenticated(bus_lab: ExtLabServer) -> None:
    log = bus_lab.log_path.read_text(errors="replace")
    assert "rtc_widgets: signaling bus at ws://127.0.0.1" in log
    # other extensions (jupyter_lsp) may warn; none of the listed endpoints may be ours
    unauthenticated = [
        line for line in log.splitlines() if line.lstrip().startswith("- ") and " registered for " in line
    ]
    assert "JupyterServerAuthWarning" in log or not unauthenticated
    assert not [line for line in unauthenticated if "rtc-widgets" in line or "Bus" in line or "Ice" in line], log
    http, ws = bus_lab.url, bus_lab.url.replace("http://", "ws://")
    token = {"Authorization": f"token {bus_lab.token}"}

    # ICE config: only for an authenticated user
    assert _status(f"{http}/rtc-widgets/ice") == 403
    assert _status(f"{http}/rtc-widgets/ice", token) == 200
    # the page's bus: token (or the login cookie) required
    assert _ws_status(f"{ws}/rtc-widgets/bus") == 403
    assert _ws_status(f"{ws}/rtc-widgets/bus?token=wrong") == 403
    assert _ws_status(f"{ws}/rtc-widgets/bus?token={bus_lab.token}") == 101
    # the kernels' bus: the runtime secret, nothing else (not even the user's token)
    (path,) = bus_lab.bus_files()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    info = json.loads(path.read_text())
    assert info["url"] == f"{ws}/rtc-widgets/kernel"
    assert _ws_status(info["url"]) == 403
    assert _ws_status(info["url"], {"Authorization": "rtc-widgets not-the-secret"}) == 403
    assert _ws_status(info["url"], token) == 403
    assert _ws_status(f"{info['url']}?token={bus_lab.token}") == 403
    assert _ws_status(info["url"], {"Authorization": f"rtc-widgets {info['secret']}"}) == 101


# --------------------------------------------------------------------------------------
# relay transport (data messages over the bus or the comm)
# --------------------------------------------------------------------------------------

RELAY_MESSAGES = ["relay ✓ ünïcødé", b"\x00\x01\x02\xff" * 300, "x" * 60_000, b"", "last"]


def _relay_roundtrip(nb: Notebook) -> None:
    """Forced relay: same DataChannel API, transport "relay" with the reason, content crosses both ways."""
    nb.kernel.execute(
        "from rtc_widgets import DataChannel\nch = DataChannel(label='r', relay_after=0)\nch.start()\n"
        "await ch.wait_connected(timeout=30)\ngot = []\nch.on_message(got.append)"
    )
    state = nb.kernel.eval("[ch.transport, ch.connection_state, ch.error]")
    assert state[:2] == ["relay", "connected"] and "relay" in state[2], state
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
    assert nb.page.evaluate("pid => globalThis.rtcWidgets.peers.get(pid).pc", pid) is None  # no WebRTC underneath
    nb.kernel.execute(f"for m in {RELAY_MESSAGES!r}:\n    ch.send(m)")
    expected = [f"t:{m}" if isinstance(m, str) else "b:" + ",".join(map(str, m)) for m in RELAY_MESSAGES]
    nb.page.wait_for_function(f"() => globalThis.__got.length >= {len(expected)}", timeout=30_000)
    assert nb.page.evaluate("() => globalThis.__got") == expected
    sent = nb.page.evaluate(
        "pid => { const p = globalThis.rtcWidgets.peers.get(pid);"
        " return [p.send('from the page ✓'), p.send(new Uint8Array([1, 2, 3, 250])), p.send('z'.repeat(70000))]; }",
        pid,
    )
    assert sent == [True, True, False]  # the last is over the relay's 64 KiB maximum: refused, with an error
    deadline = time.monotonic() + 30
    while nb.kernel.eval("len(got)") < 2:
        assert time.monotonic() < deadline, "the page's messages did not reach the kernel"
        time.sleep(0.2)
    time.sleep(0.5)
    assert nb.kernel.eval("[m if isinstance(m, str) else list(m) for m in got]") == ["from the page ✓", [1, 2, 3, 250]]
    assert nb.kernel.eval("[ch.messages_sent, ch.messages_received]") == [len(RELAY_MESSAGES), 2]
    nb.kernel.execute("rtt = await ch.ping(n=3)")  # the control channel works over the relay too
    assert nb.kernel.eval("len(rtt)") == 3


def test_relay_over_the_bus(bus_lab: ExtLabServer, open_in: Callable[..., Notebook]) -> None:
    nb = open_in(bus_lab)
    _relay_roundtrip(nb)
    assert nb.kernel.eval("ch._bus") is True
    assert nb.page.evaluate("() => globalThis.rtcWidgets.bus.received") >= len(RELAY_MESSAGES)


def test_relay_over_the_comm_without_the_extension(plain_lab: ExtLabServer, open_in: Callable[..., Notebook]) -> None:
    nb = open_in(plain_lab)
    _relay_roundtrip(nb)
    assert nb.kernel.eval("ch._bus") is False


def test_the_widget_shows_relay_and_why(bus_lab: ExtLabServer, open_in: Callable[..., Notebook]) -> None:
    """Route A: a displayed DataChannel on the relay says so, with the kernel's reason; typing still chats."""
    nb = open_in(bus_lab)
    out = nb.run_cell_ui(
        "from rtc_widgets import DataChannel\nch = DataChannel(label='chat', relay_after=0)\ngot = []\n"
        "ch.on_message(got.append)\ndisplay(ch)\nawait ch.wait_connected(timeout=30)",
        timeout=90,
    )
    widget = out.locator(".rtcw-datachannel")
    widget.wait_for(timeout=30_000)
    nb.page.wait_for_function(
        "el => el.querySelector('.rtcw-transport')?.textContent === 'relay'",
        arg=widget.element_handle(),
        timeout=20_000,
    )
    badge = widget.locator(".rtcw-badge")
    nb.page.wait_for_function("el => el.textContent.includes('connected')", arg=badge.element_handle(), timeout=20_000)
    kernel_error = widget.locator(".rtcw-kernel-error")
    assert "relay" in kernel_error.inner_text() and "TURN" in kernel_error.inner_text()
    assert widget.locator(".rtcw-browser-error").is_hidden()
    nb.screenshot("relay-widget")
    nb.kernel.execute("ch.send('shown in the log ✓')")
    widget.get_by_text("shown in the log ✓").wait_for(timeout=20_000)
    assert "connected" in badge.inner_text()  # and it stays so
