"""Self-test of the real-browser harness (namespace, JupyterLab, Chromium, routes A and B).

Every check here can fail: each one asserts on something observed from the other side
(the page sees what the kernel made, the kernel sees what the page did, the OS refuses
traffic to the outside).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import time

import pytest
from harness import KernelClient, KernelError, KernelTimeout, Notebook

pytestmark = pytest.mark.browser

VETH_ADDRS = {"198.18.0.1", "198.18.0.2"}
_kernel_ids_seen: list[str] = []


# --------------------------------------------------------------------------------------
# 1. the private network namespace
# --------------------------------------------------------------------------------------


def test_only_lo_and_veth_pair_exist() -> None:
    out = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    ifaces = {line.split()[1] for line in out.splitlines()}
    assert ifaces == {"lo", "rtcw0", "rtcw1"}, out
    v4 = {(line.split()[1], line.split()[3]) for line in out.splitlines() if line.split()[2] == "inet"}
    assert v4 == {("lo", "127.0.0.1/8"), ("rtcw0", "198.18.0.1/24"), ("rtcw1", "198.18.0.2/24")}, out
    assert os.environ["RTCW_NETNS"] == "1"
    assert os.environ["no_proxy"] == "*"
    assert not any(os.environ.get(v) for v in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"))
    # no default route: nothing can be routed out of the namespace
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout
    assert "default" not in routes, routes


@pytest.mark.parametrize(
    ("family", "addr"),
    [(socket.AF_INET, ("192.0.2.1", 9)), (socket.AF_INET, ("203.0.113.1", 9)), (socket.AF_INET6, ("2001:db8::1", 9))],
)
def test_outside_addresses_are_unreachable(family: int, addr: tuple[str, int]) -> None:
    # TEST-NET / documentation addresses: even outside the namespace nothing real is there
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(family, kind)
        s.settimeout(3)
        t0 = time.monotonic()
        with pytest.raises(OSError) as info:
            if kind == socket.SOCK_STREAM:
                s.connect(addr)
            else:
                s.sendto(b"x", addr)
        s.close()
        assert info.value.errno == errno.ENETUNREACH, info.value
        assert time.monotonic() - t0 < 0.5


def test_veth_pair_carries_traffic() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("198.18.0.2", 0))
        rx.settimeout(2)
        tx.bind(("198.18.0.1", 0))
        tx.sendto(b"ping", rx.getsockname())
        data, src = rx.recvfrom(16)
    assert (data, src[0]) == (b"ping", "198.18.0.1")


def test_aioice_sees_the_veth_addresses() -> None:
    import aioice.ice

    addrs = set(aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False))
    assert addrs == VETH_ADDRS, addrs


CANDIDATES_JS = """async () => {
  const cands = [];
  const a = new RTCPeerConnection({iceServers: []});
  const b = new RTCPeerConnection({iceServers: []});
  a.onicecandidate = e => { if (e.candidate) { cands.push(e.candidate.candidate); b.addIceCandidate(e.candidate); } };
  b.onicecandidate = e => { if (e.candidate) a.addIceCandidate(e.candidate); };
  const got = new Promise((resolve, reject) => {
    b.ondatachannel = e => { e.channel.onmessage = m => resolve(m.data); };
    setTimeout(() => reject(new Error("no data channel message in 10 s")), 10000);
  });
  const dc = a.createDataChannel("probe");
  dc.onopen = () => dc.send("over the veth pair");
  await a.setLocalDescription(await a.createOffer());
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription(await b.createAnswer());
  await a.setRemoteDescription(b.localDescription);
  const message = await got;
  const stats = await a.getStats();
  let pair = null;
  stats.forEach(r => {
    if (r.type === "transport" && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId);
  });
  const local = pair && stats.get(pair.localCandidateId);
  const remote = pair && stats.get(pair.remoteCandidateId);
  a.close(); b.close();
  return {cands, message, local: local && local.address, remote: remote && remote.address};
}"""


def test_chromium_ice_uses_the_veth_pair(lab, browser) -> None:
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        # any http://127.0.0.1 page is a secure context
        page.goto(f"{lab.url}/api/status?token={lab.token}")
        assert page.evaluate("() => window.isSecureContext") is True
        res = page.evaluate(CANDIDATES_JS)
    finally:
        ctx.close()
    assert res["message"] == "over the veth pair"
    addrs = {c.split()[4] for c in res["cands"]}
    assert addrs and addrs <= VETH_ADDRS, res["cands"]  # no .local (mDNS) names, no 127.0.0.1
    assert {res["local"], res["remote"]} <= VETH_ADDRS, res


# --------------------------------------------------------------------------------------
# 2. route B: code executed over ZMQ in the page's own kernel
# --------------------------------------------------------------------------------------


def test_route_b_execute_and_eval(notebook: Notebook, lab) -> None:
    k = notebook.kernel
    _kernel_ids_seen.append(notebook.kernel_id)
    assert k.connection_file == lab.connection_file(notebook.kernel_id)
    assert k.execute("x = 6*7").result is None
    assert k.eval("x") == 42
    r = k.execute("print('out'); import sys; print('err', file=sys.stderr); x + 1")
    assert (r.stdout, r.stderr, r.result) == ("out\n", "err\n", "43")
    assert k.eval("{'a': [1, 2.5, None, 'é']}") == {"a": [1, 2.5, None, "é"]}
    # top-level await
    assert k.execute("import asyncio\nawait asyncio.sleep(0.05)\n'awaited'").result == "'awaited'"
    assert k.eval("await asyncio.sleep(0, result=7)") == 7
    # errors carry the traceback
    with pytest.raises(KernelError) as info:
        k.execute("def f():\n    return 1/0\nf()")
    assert info.value.ename == "ZeroDivisionError"
    assert "return 1/0" in info.value.traceback and "\x1b[" not in info.value.traceback
    # timeouts raise; the kernel is usable afterwards
    with pytest.raises(KernelTimeout):
        k.execute("import time; time.sleep(2)", timeout=0.5)
    assert k.eval("x") == 42
    # the kernel our client talks to is the one the page's session owns
    kernels = {kk["id"]: kk for kk in lab.kernels()}
    assert notebook.kernel_id in kernels
    assert kernels[notebook.kernel_id]["connections"] >= 1  # the page's websocket


def test_route_b_widgets_reach_the_page(notebook: Notebook) -> None:
    k = notebook.kernel
    _kernel_ids_seen.append(notebook.kernel_id)
    # probe: initialize() ran in the page (no view) and answered the kernel
    seconds = notebook.create_probe("alpha")
    assert notebook.seen_tags() == ["alpha"]
    assert k.eval("_rtcw_probes['alpha'].echo") == "seen:alpha"
    # a stock ipywidgets model created over route B lives in the page's widget manager
    k.execute("import ipywidgets as w\ns = w.IntSlider(value=7, description='seven')")
    mid = k.eval("s.model_id")
    state = notebook.model_state(mid)
    assert state["_model_name"] == "IntSliderModel"
    assert (state["value"], state["description"]) == (7, "seven")
    # kernel -> page
    k.execute("s.value = 9")
    notebook.page.wait_for_function(
        "async id => (await globalThis.__rtcwModelState(id)).value === 9", arg=mid, polling=100, timeout=10_000
    )
    # page -> kernel
    notebook.set_model_value(mid, "value", 3)
    deadline = time.monotonic() + 10
    while k.eval("s.value") != 3:
        assert time.monotonic() < deadline, "the kernel never saw the value set in the page"
        time.sleep(0.1)
    # an unknown model id is not there
    assert notebook.page.evaluate("id => globalThis.__rtcwModelState(id)", "0" * 32) is None
    print(f"probe round trip {seconds:.2f}s")


def test_widgets_of_another_kernel_do_not_reach_the_page(notebook: Notebook, lab) -> None:
    """Negative control: what the page sees really comes from ITS kernel."""
    _kernel_ids_seen.append(notebook.kernel_id)
    notebook.create_probe("mine")
    other = lab.api("POST", "/api/kernels", {"name": "rtcw"})
    client = None
    try:
        client = KernelClient(lab.connection_file(other["id"]))
        from harness import PROBE_DEFINITION

        client.execute(PROBE_DEFINITION)
        client.execute("_rtcw_probes['ghost'] = _RtcwProbe(tag='ghost')")
        time.sleep(3)
        assert notebook.seen_tags() == ["mine"]
        assert client.eval("_rtcw_probes['ghost'].echo") == ""
    finally:
        if client is not None:
            client.close()
        lab.api("DELETE", f"/api/kernels/{other['id']}", timeout=30)


# --------------------------------------------------------------------------------------
# 3. route A: the UI
# --------------------------------------------------------------------------------------


def test_route_a_ui_smoke(notebook: Notebook) -> None:
    _kernel_ids_seen.append(notebook.kernel_id)
    out = notebook.run_cell_ui('print("hello from the UI")')
    assert out.inner_text().strip() == "hello from the UI"
    # multi-line code with indentation and brackets arrives verbatim
    out = notebook.run_cell_ui('for i in range(3):\n    if i:\n        print("line", (i, [i]))')
    assert out.inner_text().strip() == "line (1, [1])\nline (2, [2])"
    # errors show up in the output area
    out = notebook.run_cell_ui("1/0")
    assert "ZeroDivisionError" in out.inner_text()
    # UI and route B share one kernel
    notebook.run_cell_ui("from_ui = 'set in a cell'")
    assert notebook.kernel.eval("from_ui") == "set in a cell"
    # display the inline anywidget: it renders in the output area
    notebook.kernel.execute(__import__("harness").PROBE_DEFINITION)
    out = notebook.run_cell_ui('_RtcwProbe(tag="ui")')
    probe = out.locator(".rtcw-probe")
    probe.wait_for(timeout=30_000)
    assert probe.inner_text() == "rtcw probe ui"
    assert notebook.page.evaluate("() => globalThis.__rtcwRendered") == ["ui"]
    path = notebook.screenshot("harness-route-a")
    assert path.exists() and path.stat().st_size > 10_000


# --------------------------------------------------------------------------------------
# 4. isolation between tests
# --------------------------------------------------------------------------------------


def test_fresh_kernel_per_notebook_and_teardown(open_notebook, lab) -> None:
    a = open_notebook()
    b = open_notebook()
    assert a.kernel_id != b.kernel_id
    assert a.kernel_id not in _kernel_ids_seen
    a.kernel.execute("only_in_a = 1")
    assert b.kernel.eval("'only_in_a' in globals()") is False
    # kernels of earlier tests (if any ran) were shut down by their teardown
    live = {k["id"] for k in lab.kernels()}
    assert live == {a.kernel_id, b.kernel_id}, (live, _kernel_ids_seen)
    sessions = {s["path"] for s in lab.sessions()}
    assert sessions == {a.name, b.name}
    assert json.loads(a.path.read_text())["metadata"]["kernelspec"]["name"] == "rtcw"
