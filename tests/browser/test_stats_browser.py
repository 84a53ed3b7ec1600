"""Stats end to end: a real Chromium samples getStats, the kernel samples aiortc, both land in one bounded series.

Assertions are on values that only the real traffic can produce: the bitrate both ends measured while the kernel
pushed a known number of bytes, round trips, state transitions in order, candidate types from real ICE.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from harness import Notebook
from test_datachannel_browser import kernel_setup, open_channel

pytestmark = pytest.mark.browser

#: kernel -> browser: 40 x 25 kB in 4 s = ~200 kbit/s... x8 = 2 Mbit/s of payload, paced so several samples see it
PUSH = "for i in range(40):\n    ch.send(bytes(25_000))\n    await asyncio.sleep(0.1)"


def wait_for(nb: Notebook, expr: str, timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    while not (value := nb.kernel.eval(expr)):
        assert time.monotonic() < deadline, f"timed out waiting for {expr}"
        time.sleep(0.25)
    return value


def test_datachannel_stats_reach_the_kernel_as_a_dataframe(notebook: Notebook) -> None:
    kernel_setup(notebook)
    pid = open_channel(notebook, stats_interval=200)
    notebook.kernel.execute("import pandas as pd\nt_push = time.time()\n" + PUSH, 60)
    notebook.kernel.execute("t_end = time.time()\nawait asyncio.sleep(1.0)")
    notebook.kernel.execute(
        "df = ch.stats.to_dataframe()\n"
        "push = df[(df.time >= pd.Timestamp(t_push, unit='s', tz='UTC')) & "
        "(df.time <= pd.Timestamp(t_end + 0.5, unit='s', tz='UTC'))]\n"
        "def peak(side, metric):\n"
        "    v = push[(push.side == side) & (push.metric == metric)].value\n"
        "    return float(v.max()) if len(v) else -1.0\n"
    )
    assert notebook.kernel.eval("list(df.columns)") == ["time", "peer", "side", "metric", "value", "unit"]
    assert notebook.kernel.eval("str(df.time.dtype)") == "datetime64[ns, UTC]"
    # 1 MB in ~4 s is ~2,000 kbit/s of payload; both ends measured it independently
    assert notebook.kernel.eval("peak('browser', 'bitrate_in_kbps')") > 800
    assert notebook.kernel.eval("peak('browser', 'channel_in_kbps')") > 800
    assert notebook.kernel.eval("peak('kernel', 'bitrate_out_kbps')") > 800
    assert notebook.kernel.eval("peak('kernel', 'channel_out_kbps')") > 800
    assert notebook.kernel.eval("peak('browser', 'messages_in_per_s')") >= 5
    assert notebook.kernel.eval("peak('kernel', 'messages_out_per_s')") >= 5
    # integrating the browser's channel_in_kbps over its samples gives back the 1,000,000 bytes the kernel sent
    notebook.kernel.execute(
        "w = ch.stats.to_dataframe(wide=True)\n"
        "w = w[w.side == 'browser'].dropna(subset=['channel_in_kbps'])\n"
        "dt = w.time.diff().dt.total_seconds()\n"
        "total_in = float((w.channel_in_kbps * dt).sum() * 1000 / 8)"
    )
    assert 0.85e6 < notebook.kernel.eval("total_in") < 1.15e6
    # round trips: ICE's (browser) and the control-channel probe (kernel)
    # whole milliseconds in Chromium: 0.0 on a quiet sub-millisecond link, so present (not NaN) and >= 0
    assert notebook.kernel.eval("float(df[(df.side=='browser') & (df.metric=='rtt_ms')].value.max())") >= 0
    assert notebook.kernel.eval("float(df[(df.side=='kernel') & (df.metric=='probe_rtt_ms')].value.min())") > 0
    assert notebook.kernel.eval("sorted(set(df.unit[df.metric == 'bitrate_in_kbps']))") == ["kbit/s"]

    latest = notebook.kernel.eval("ch.stats.latest")
    assert latest["time"] > 0 and "browser.rtt_ms" in latest and "kernel.probe_rtt_ms" in latest

    # sample rate: at stats_interval=200 the browser sends ~5 samples/s over the control channel
    notebook.kernel.execute("b = [s.t for s in ch.stats.samples('browser')]")
    rate = notebook.kernel.eval("(len(b) - 1) / (b[-1] - b[0])")
    assert 2.5 < rate < 6, rate
    page = notebook.page.evaluate(
        "pid => { const s = globalThis.rtcWidgets.peers.get(pid).stats;"
        " return {sent: s.sent, comm: s.sentOverComm, cost: s.lastCostMs, latest: s.latest}; }",
        pid,
    )
    assert page["sent"] >= 20
    assert page["comm"] <= 3, page  # only what was sent before the control channel opened
    print(f"browser samples/s {rate:.2f}, getStats+compact {page['cost']:.2f} ms, sent {page['sent']}")

    # state events of both ends, in order
    events = notebook.kernel.eval("ch.stats.events")
    for side in ("browser", "kernel"):
        conn = [e["state"] for e in events if e["side"] == side and e["kind"] == "connection"]
        assert conn[:3] == ["new", "connecting", "connected"], (side, conn)
        ice = [e["state"] for e in events if e["side"] == side and e["kind"] == "ice"]
        assert ice[0] == "new" and "checking" in ice and ("connected" in ice or "completed" in ice), (side, ice)
        assert [e["state"] for e in events if e["side"] == side and e["kind"] == "dtls"][-1] == "connected"
    times = [e["time"] for e in events]
    assert times == sorted(times)

    # candidates: real ones, typed; the selected pair as the browser's getStats reports it
    cands = notebook.kernel.eval("ch.candidates")
    assert cands["local"] and cands["remote"]
    assert {c["type"] for c in cands["local"] + cands["remote"]} <= {"host", "srflx", "prflx", "relay"}
    assert "host" in {c["type"] for c in cands["local"]}
    selected = cands["selected"]
    assert selected["local"]["type"] in {"host", "prflx"} and selected["remote"]["type"] in {"host", "prflx"}
    assert selected["local"]["port"] in {c["port"] for c in cands["local"]}

    # SDP, parsed: one data-channel section on both sides
    assert notebook.kernel.eval("[m['kind'] for m in ch.sdp.remote['media']]") == ["application"]
    assert notebook.kernel.eval("[m['kind'] for m in ch.sdp.local['media']]") == ["application"]
    assert notebook.kernel.eval("ch.sdp.local['media'][0]['protocol']") == "UDP/DTLS/SCTP"
    assert notebook.kernel.eval("ch.inspector['candidates']['selected'] is not None")


#: Page side: for each chart canvas of a StatsView, how many pixels have a series' colour (not axes or grid).
PIXELS_JS = """([selector, rgbs]) => {
  const out = {};
  for (const holder of document.querySelectorAll(selector + " .rtcw-sv-chart:not([hidden])")) {
    const id = [...holder.classList].find((c) => c.startsWith("rtcw-sv-") && c !== "rtcw-sv-chart");
    const canvas = holder.querySelector("canvas");
    const ctx = canvas.getContext("2d");
    const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0, series = 0;
    for (let i = 0; i < px.length; i += 4) {
      if (px[i + 3] > 0) painted++;
      for (const [r, g, b] of rgbs) {
        const near = Math.abs(px[i] - r) < 40 && Math.abs(px[i + 1] - g) < 40 && Math.abs(px[i + 2] - b) < 40;
        if (near && px[i + 3] > 100) {
          series++;
          break;
        }
      }
    }
    out[id.slice("rtcw-sv-".length)] = {painted, series, w: canvas.width, h: canvas.height};
  }
  return out;
}"""
#: series colours of plots.ts: browser->kernel green, kernel->browser purple, ICE blue, ping orange
SERIES_RGB = [[46, 125, 50], [142, 36, 170], [25, 118, 210], [230, 81, 0]]


def test_statsview_draws_live_charts_from_real_samples(notebook: Notebook) -> None:
    kernel_setup(notebook)
    open_channel(notebook, stats_interval=250)
    out = notebook.run_cell_ui("from rtc_widgets import StatsView\nsv = StatsView(ch, window=30)\nsv")
    out.first.locator(".rtcw-statsview").wait_for(timeout=30_000)
    # kernel -> browser bulk data, browser -> kernel messages: both directions carry traffic
    notebook.page.evaluate(
        "pid => { const p = globalThis.rtcWidgets.peers.get(pid);"
        " let n = 0; const id = setInterval(() => {"
        " p.send('x'.repeat(4000)); if (++n >= 60) clearInterval(id); }, 50); }",
        notebook.kernel.eval("ch.peer_id"),
    )
    notebook.kernel.execute(PUSH, 60)
    notebook.page.wait_for_function(
        "() => [...globalThis.rtcWidgets.statsViews.values()].some(v => "
        "['0:rtt', '0:bitrate', '0:messages'].every(c => v.charts().includes(c)) && v.peers[0].t.length > 10)",
        timeout=30_000,
        polling=200,
    )
    notebook.page.wait_for_timeout(1500)  # a few more redraws
    shot = notebook.screenshot("statsview-datachannel")
    out.first.screenshot(path=str(shot.with_name("statsview-datachannel-widget.png")))
    pixels = notebook.page.evaluate(PIXELS_JS, [".jp-OutputArea-output .rtcw-statsview", SERIES_RGB])
    assert {"rtt", "bitrate", "messages"} <= set(pixels), pixels
    assert "fps" not in pixels and "loss" not in pixels  # no media: those charts stay hidden
    for chart in ("rtt", "bitrate", "messages"):
        assert pixels[chart]["series"] > 50, (chart, pixels[chart])  # a drawn line, not only axes and grid
    debug = notebook.page.evaluate(
        "() => { const v = [...globalThis.rtcWidgets.statsViews.values()][0];"
        " return {draws: v.draws, drawMs: v.drawMs, updates: v.updates, rows: v.peers[0].t.length,"
        " events: v.peers[0].events.length}; }"
    )
    assert debug["updates"] >= 5 and debug["rows"] > 10 and debug["events"] >= 8
    print(f"StatsView: {debug}")
    # light theme: dark axis text (the dark-theme test checks the opposite with the same measure)
    assert notebook.page.evaluate(LIGHT_PIXELS_JS)["dark"] > 20
    # the timeline shows the connection: its canvas has the 'connected' green
    assert (
        notebook.page.evaluate(
            """() => { const c = document.querySelector('.rtcw-statsview canvas.rtcw-sv-timeline');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i] - 46) < 20 && Math.abs(d[i+1] - 125) < 20
          && Math.abs(d[i+2] - 50) < 20) n++; return n; }"""
        )
        > 100
    )


def test_series_memory_stays_bounded_over_a_long_run(notebook: Notebook) -> None:
    kernel_setup(notebook)
    open_channel(notebook, stats_interval=100, stats_window=3)
    # traffic all along, so every sample carries many metrics
    notebook.kernel.execute(
        "async def chatter():\n    while True:\n        ch.send(bytes(2000))\n        await asyncio.sleep(0.05)\n"
        "chatter_task = asyncio.ensure_future(chatter())"
    )
    sizes = []
    for _ in range(4):
        time.sleep(3)
        notebook.kernel.execute("rows = ch.stats.samples()\nspan = rows[-1].t - rows[0].t")
        sizes.append(notebook.kernel.eval("[len(rows), span, ch.stats.max_samples]"))
    notebook.kernel.execute("chatter_task.cancel()")
    print(f"(samples kept, span s, cap) every 3 s at 10 samples/s per side: {sizes}")
    for kept, span, cap in sizes:
        assert kept <= cap and span <= 3.05
    # it filled up (both sides sampling ~10/s) and then stayed flat instead of growing
    assert sizes[0][0] >= 25
    assert max(s[0] for s in sizes) - min(s[0] for s in sizes[1:]) <= 15
    assert notebook.kernel.eval("len(ch.stats.to_dataframe().time.unique())") <= sizes[-1][2]


def test_inspector_panel_shows_sdp_candidates_and_selected_pair(notebook: Notebook) -> None:
    out = notebook.run_cell_ui("from rtc_widgets import DataChannel\nch = DataChannel(label='inspect')\nch").first
    out.locator(".rtcw-badge").get_by_text("connected").wait_for(timeout=30_000)
    details = out.locator("details.rtcw-inspector")
    assert details.get_attribute("open") is None  # collapsed by default
    details.locator("summary").click()
    # the selected pair comes from the browser's first getStats sample (1 s)
    details.locator("table.rtcw-insp-selected-pair").wait_for(timeout=15_000)
    sdp = details.locator("table.rtcw-insp-sdp").inner_text()
    assert "browser (offer)" in sdp and "kernel (answer)" in sdp and "UDP/DTLS/SCTP" in sdp and "SCTP" in sdp
    pair = details.locator("table.rtcw-insp-selected-pair").inner_text()
    assert "kernel" in pair and "browser" in pair and ("host" in pair or "prflx" in pair)
    cands = details.locator("table.rtcw-insp-candidates tbody tr")
    assert cands.count() >= 2
    assert details.locator("table.rtcw-insp-candidates tr.rtcw-selected").count() >= 1
    events = details.locator("table.rtcw-insp-events").inner_text()
    assert "connected" in events and "connecting" in events
    out.screenshot(path=str(notebook.screenshot("inspector-page").with_name("inspector-datachannel.png")))


#: Page side: how many pixels of a StatsView chart canvas are light (text and grid drawn for a dark theme).
LIGHT_PIXELS_JS = """() => {
  const c = document.querySelector('.rtcw-statsview .rtcw-sv-rtt canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  // axis text is the brightest (light theme: darkest) ink of the canvas; grid lines are neither
  let light = 0, dark = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] < 100) continue;
    const y = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
    if (y > 140) light++; else if (y < 60) dark++;
  }
  return {light, dark};
}"""


def test_statsview_follows_the_dark_theme(lab: Any, open_notebook: Any) -> None:
    themes = "/lab/api/settings/@jupyterlab/apputils-extension:themes"
    lab.api("PUT", themes, {"raw": '{"theme": "JupyterLab Dark"}'})
    try:
        nb = open_notebook()
        assert nb.page.evaluate("() => document.body.dataset.jpThemeLight") == "false"
        kernel_setup(nb)
        open_channel(nb, stats_interval=250)
        out = nb.run_cell_ui("from rtc_widgets import StatsView\nStatsView(ch, window=15)").first
        nb.page.wait_for_function(
            "() => [...globalThis.rtcWidgets.statsViews.values()].some(v => v.charts().includes('0:rtt'))",
            timeout=30_000,
        )
        nb.page.wait_for_timeout(1500)
        out.screenshot(path=str(nb.screenshot("statsview-dark-page").with_name("statsview-dark.png")))
        pixels = nb.page.evaluate(LIGHT_PIXELS_JS)
        # axis labels, ticks and title follow --jp-ui-font-color*: light on dark, almost no dark ink
        assert pixels["light"] > 100 and pixels["dark"] < 20, pixels
    finally:
        lab.api("PUT", themes, {"raw": '{"theme": "JupyterLab Light"}'})


def test_statsview_keeps_updating_while_a_cell_blocks_the_kernel(notebook: Notebook) -> None:
    kernel_setup(notebook)
    open_channel(notebook, stats_interval=250)
    out = notebook.run_cell_ui("from rtc_widgets import StatsView\nStatsView(ch, window=15)").first
    out.locator(".rtcw-statsview").wait_for(timeout=30_000)
    # rows from the browser's own samples (side 0) that the view received from the kernel
    updates = "() => [...globalThis.rtcWidgets.statsViews.values()][0].peers[0].side.filter(s => s === 0).length"
    notebook.page.wait_for_function(f"() => ({updates})() > 3", timeout=30_000)
    blocker = threading.Thread(target=notebook.kernel.execute, args=("time.sleep(5)", 30))
    blocker.start()
    try:
        time.sleep(1)  # the cell is sleeping now
        u0 = notebook.page.evaluate(updates)
        time.sleep(3)
        u1 = notebook.page.evaluate(updates)
    finally:
        blocker.join()
    # browser samples reach the engine thread on the control channel and the engine sends the view its updates:
    # ~4 per second at stats_interval=250, although the kernel's main thread never ran in between
    assert u1 - u0 >= 6, (u0, u1)
