"""Data-channel benchmark: browser <-> kernel (rtc_widgets) against raw aiortc <-> aiortc, in one run.

Run it as ``make bench`` or ``.venv/bin/python -m benchmarks.datachannel`` (as root). Like the test suite, it first
re-executes itself inside a private network namespace (``unshare --net`` + ``tests/netns.py``: ``lo`` plus a veth pair
198.18.0.1 <-> 198.18.0.2 that stays inside the namespace), with ``iceServers=[]`` everywhere; nothing reaches a
real interface.

Measured (details in benchmarks/README.md):

1. round-trip times, ``--samples`` sequential samples each:
   a. ``DataChannel.ping()``: JSON ping/pong over the peer's internal control channel (timed on the engine loop);
   b. user-channel echo through the widget API: the cell sends a small text message with ``ch.send``, the browser
      (``echo=True``) sends it back, the cell gets it from ``ch.messages()``; timed in the cell with perf_counter;
   c. (diagnostic) the same echo at the aiortc level on the kernel's engine loop, without rtc_widgets' thread hops;
   d. raw aiortc <-> aiortc echo between two processes (the baseline for b and c).
2. throughput, ``--repeat`` runs of ``--mb`` MiB per path in ``--msg-kib`` KiB binary messages, each carrying its
   sequence number (checked by the receiver), with back-pressure (the sender stays below ``--high-kib`` buffered
   bytes; where an event exists it waits for ``bufferedamountlow`` at ``--low-kib``). Timed by the sender from its
   first message until the receiver's "done" reply, sent once it has counted every byte. Paths: kernel -> browser
   and browser -> kernel through the widget API, the same at the aiortc level on the engine loop (diagnostic), and
   raw aiortc <-> aiortc both ways. The median per path is reported; the first transfer each way is reported apart.
   Next to each transfer: UDP datagrams dropped for a full socket buffer, aiortc SCTP T3 timeouts, CPU use, and the
   load other processes put on the machine meanwhile.

Results: benchmarks/results/datachannel.{json,md,png}. Targets (issue #2) are reported, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import ensure_namespace

REPO_ROOT = Path(__file__).resolve().parents[1]
HARNESS_DIR = REPO_ROOT / "tests" / "browser"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"

TARGET_RTT_P50_MS = 0.5
TARGET_MB_S = 20.0
TARGET_RATIO = 0.9
MB = 1_000_000  # throughput is reported in MB/s = 10**6 bytes per second

#: Seconds to wait at the start of each browser RTT series (see _browser_measurements).
SETTLE_S = 0.5

#: Small message of the echo round trips (text, as a chat message would be).
ECHO_PAYLOAD = "rtt-probe-0123456789"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------
# UDP accounting: datagrams the kernel dropped because a socket's receive buffer was full. The namespace is ours
# alone, so /proc/net/snmp counts only the benchmark's traffic; /proc/net/udp{,6} has per-socket drop counters.
# --------------------------------------------------------------------------------------


def udp_counters() -> dict[str, int]:
    """This namespace's UDP counters (InDatagrams, RcvbufErrors, SndbufErrors, ...)."""
    try:
        lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
        return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:], strict=True)}
    except (OSError, IndexError, ValueError):
        return {}


def udp_delta(before: dict[str, int]) -> dict[str, int]:
    after = udp_counters()
    keys = ("InDatagrams", "OutDatagrams", "RcvbufErrors", "SndbufErrors", "InErrors")
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys}


def _socket_owners() -> dict[str, tuple[int, str]]:
    """socket inode -> (pid, cmdline) for every process we can see."""
    owners: dict[str, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{entry}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[target[8:-1]] = (int(entry), cmd)
    return owners


def _kind(cmd: str) -> str:
    if "ipykernel_launcher" in cmd:
        return "kernel"
    if "chrom" in cmd:
        return "chromium"
    if "multiprocessing" in cmd:
        return "raw aiortc"
    if "jupyter" in cmd:
        return "jupyter-server"
    return "other"


def udp_sockets() -> list[dict[str, Any]]:
    """Every UDP socket of the namespace: local address, owner kind, receive-queue bytes and drops so far."""
    owners = _socket_owners()
    out = []
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            rows = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if len(f) < 13:
                continue
            addr, port = f[1].rsplit(":", 1)
            if len(addr) == 8:
                local = ".".join(str(b) for b in reversed(bytes.fromhex(addr))) + f":{int(port, 16)}"
            else:
                local = f"[ipv6]:{int(port, 16)}"
            pid, cmd = owners.get(f[9], (0, ""))
            out.append({"local": local, "owner": _kind(cmd), "pid": pid, "drops": int(f[12])})
    return out


def udp_drops_by_owner(before: list[dict[str, Any]] | None = None) -> dict[str, int]:
    """Datagrams dropped per owner kind, since ``before`` (a :func:`udp_sockets` snapshot) when given."""
    base = {(s["local"], s["pid"]): s["drops"] for s in before or []}
    out: dict[str, int] = {}
    for s in udp_sockets():
        d = s["drops"] - base.get((s["local"], s["pid"]), 0)
        out[s["owner"]] = out.get(s["owner"], 0) + d
    return out


def udp_buffer_sizes() -> list[str]:
    """``ss -uamn`` lines (receive buffer "rb" and drops "d" per socket), when ss is installed."""
    ss = shutil.which("ss")
    if ss is None:
        return []
    proc = subprocess.run([ss, "-uampnH"], capture_output=True, text=True)
    out: list[str] = []
    for line in proc.stdout.splitlines():
        text = " ".join(line.split())
        if text.startswith("skmem:") and out:
            out[-1] += " " + text
        elif text:
            out.append(text)
    return out


class LoadMonitor:
    """Samples every process's CPU time twice a second and splits it into ours (this process and its descendants)
    and others (other users of the machine). Benchmarks on a shared machine mean little when others are busy."""

    def __init__(self, interval: float = 0.5) -> None:
        import threading

        self.interval = interval
        self.tick = os.sysconf("SC_CLK_TCK")
        self.ours = self.others = 0.0
        self.peak_others = 0.0  # cores, over one interval
        self.started = time.monotonic()
        self.load_start = os.getloadavg()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-load-monitor", daemon=True)
        self._thread.start()

    def _snapshot(self) -> dict[int, tuple[int, float]]:
        procs: dict[int, tuple[int, float]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                procs[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / self.tick)
        return procs

    def _is_ours(self, procs: dict[int, tuple[int, float]], pid: int) -> bool:
        me, hops = os.getpid(), 0
        while pid in procs and pid != me and hops < 40:
            pid, hops = procs[pid][0], hops + 1
        return pid == me

    def _run(self) -> None:
        prev = self._snapshot()
        while not self._stop.wait(self.interval):
            cur = self._snapshot()
            others = 0.0
            for pid, (_, cpu) in cur.items():
                if pid in prev:
                    d = cpu - prev[pid][1]
                    if self._is_ours(cur, pid):
                        self.ours += d
                    else:
                        others += d
            self.others += others
            self.peak_others = max(self.peak_others, others / self.interval)
            prev = cur

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        wall = time.monotonic() - self.started
        return {
            "seconds": round(wall, 1),
            "other_processes_cores_mean": round(self.others / wall, 2),
            "other_processes_cores_peak": round(self.peak_others, 2),
            "benchmark_cores_mean": round(self.ours / wall, 2),
            "loadavg_start": [round(x, 2) for x in self.load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        }


# --------------------------------------------------------------------------------------
# aiortc-level helpers. Used by the raw processes AND shipped (as source) into the kernel, where they run on the
# rtc_widgets engine loop: the same code measures both sides. Keep them self-contained (asyncio + time only).
# --------------------------------------------------------------------------------------


async def aiortc_echo_rtt(dc: Any, n: int, payload: str, timeout: float = 5.0) -> list[float]:
    """``n`` sequential round trips (ms): send ``payload`` + seq, wait for that exact text to come back."""
    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {"fut": None, "want": None}

    def on_message(msg: Any) -> None:
        fut = state["fut"]
        if fut is not None and not fut.done() and msg == state["want"]:
            fut.set_result(time.perf_counter())

    dc.on("message", on_message)
    rtts: list[float] = []
    try:
        for i in range(n):
            state["want"] = f"{payload}:{i}"
            state["fut"] = fut = loop.create_future()
            t0 = time.perf_counter()
            dc.send(state["want"])
            t1 = await asyncio.wait_for(fut, timeout)
            rtts.append((t1 - t0) * 1000.0)
    finally:
        dc.remove_listener("message", on_message)
    return rtts


async def aiortc_bulk_send(dc: Any, n_msgs: int, size: int, high: int, low: int) -> int:
    """Send ``n_msgs`` binary messages of ``size`` bytes (first 4 bytes: sequence number), staying below ``high``
    buffered bytes and waiting for ``bufferedamountlow`` (threshold ``low``). Returns how often it waited."""
    low_event = asyncio.Event()
    dc.bufferedAmountLowThreshold = low
    dc.on("bufferedamountlow", low_event.set)
    buf = bytearray(size)
    waits = 0
    try:
        for i in range(n_msgs):
            if dc.bufferedAmount > high:
                waits += 1
                low_event.clear()
                await low_event.wait()
            buf[:4] = i.to_bytes(4, "big")
            dc.send(bytes(buf))
    finally:
        dc.remove_listener("bufferedamountlow", low_event.set)
    return waits


def aiortc_bulk_counter(dc: Any, n_msgs: int, on_done: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Count binary messages on ``dc`` (checking sequence numbers); call ``on_done(stats)`` after ``n_msgs``."""
    st: dict[str, Any] = {"msgs": 0, "bytes": 0, "bad_seq": 0}

    def on_message(msg: Any) -> None:
        if isinstance(msg, str):
            return
        if int.from_bytes(msg[:4], "big") != st["msgs"]:
            st["bad_seq"] += 1
        st["msgs"] += 1
        st["bytes"] += len(msg)
        if st["msgs"] == n_msgs:
            dc.remove_listener("message", on_message)
            on_done(st)

    dc.on("message", on_message)
    return st


def install_sctp_counters() -> dict[str, int]:
    """Count aiortc SCTP T3 retransmission timeouts in this process (a class-level wrapper that runs only when the
    timer fires, so it costs nothing otherwise). Each one stalls the sender for an RTO, at least 1 s in aiortc."""
    from aiortc.rtcsctptransport import RTCSctpTransport

    counts = getattr(RTCSctpTransport, "_bench_counts", None)
    if counts is None:
        counts = {"t3_expired": 0}
        original = RTCSctpTransport._t3_expired

        def _t3_expired(self: Any) -> None:
            counts["t3_expired"] += 1
            original(self)

        RTCSctpTransport._t3_expired = _t3_expired  # type: ignore[method-assign]
        RTCSctpTransport._bench_counts = counts  # type: ignore[attr-defined]
    return counts


def set_udp_rcvbuf(pc: Any, size: int) -> list[int]:
    """Ask for ``size``-byte receive buffers on the UDP sockets aioice opened for ``pc``; returns what the OS granted
    (Linux doubles the request and caps it at net.core.rmem_max)."""
    import socket

    granted = []
    for proto in pc.sctp.transport.transport._connection._protocols:
        sock = proto.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        granted.append(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    return granted


# --------------------------------------------------------------------------------------
# Raw aiortc <-> aiortc: two processes, each with its own loop (uvloop when installed)
# --------------------------------------------------------------------------------------


def _new_loop() -> tuple[asyncio.AbstractEventLoop, str]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop(), "asyncio"
    return uvloop.new_event_loop(), "uvloop"


def _raw_process(role: str, sig: Any, results: Any, cfg: dict[str, Any]) -> None:
    loop, kind = _new_loop()
    asyncio.set_event_loop(loop)
    try:
        budget = cfg["timeout"] * (2 * cfg["repeat"] + 4)
        out = loop.run_until_complete(asyncio.wait_for(_raw_peer(role, sig, cfg), budget))
        out["loop"] = kind
        results.send(("ok", out))
    except BaseException:
        results.send(("error", traceback.format_exc()))
    finally:
        loop.close()


async def _raw_peer(role: str, sig: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    """Role "a" offers and drives the measurements; role "b" answers, echoes and counts/sends on request."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    loop = asyncio.get_running_loop()

    async def recv() -> Any:
        return await loop.run_in_executor(None, sig.recv)

    n_msgs, size, high, low = cfg["n_msgs"], cfg["size"], cfg["high"], cfg["low"]
    sctp_counts = install_sctp_counters()
    out: dict[str, Any] = {"role": role}
    texts: asyncio.Queue[str] = asyncio.Queue()
    bye = loop.create_future()
    opened: asyncio.Future[Any] = loop.create_future()
    dc: Any = None
    recv_start: dict[str, float] = {}

    def send_done(st: dict[str, Any]) -> None:
        cpu = time.process_time() - recv_start["cpu"]
        t3 = sctp_counts["t3_expired"] - recv_start["t3"]
        dc.send("done:" + json.dumps({"bytes": st["bytes"], "bad_seq": st["bad_seq"], "recv_cpu_s": cpu, "t3": t3}))

    async def send_bulk_and_time() -> dict[str, Any]:
        cpu0, udp0, t3_0 = time.process_time(), udp_counters(), sctp_counts["t3_expired"]
        t0 = time.perf_counter()
        dc.send("bulk")
        waits = await aiortc_bulk_send(dc, n_msgs, size, high, low)
        done = await texts.get()
        seconds = time.perf_counter() - t0
        assert done.startswith("done:"), done
        got = json.loads(done[len("done:") :])
        return {
            "seconds": seconds,
            "bytes": got["bytes"],
            "bad_seq": got["bad_seq"],
            "waits": waits,
            "send_cpu_s": time.process_time() - cpu0,
            "recv_cpu_s": got["recv_cpu_s"],
            "t3_expired": {"sender": sctp_counts["t3_expired"] - t3_0, "receiver": got["t3"]},
            "udp": udp_delta(udp0),
        }

    def on_message(msg: Any) -> None:
        if not isinstance(msg, str):
            return
        if msg.startswith(ECHO_PAYLOAD):
            if role == "b":
                dc.send(msg)  # echo; role "a" matches it in aiortc_echo_rtt
        elif msg == "bulk":  # the other side starts sending: count
            recv_start.update(cpu=time.process_time(), t3=sctp_counts["t3_expired"])
            aiortc_bulk_counter(dc, n_msgs, send_done)
        elif msg == "send":  # the other side asks us to send
            task = asyncio.ensure_future(send_bulk_and_time())
            task.add_done_callback(lambda t: dc.send("result:" + json.dumps(t.result())))
        elif msg == "bye":
            bye.done() or bye.set_result(None)
        else:
            texts.put_nowait(msg)

    def ready(channel: Any) -> None:
        nonlocal dc
        dc = channel
        # listen at once (synchronously in the event), or the first messages could arrive unheard
        channel.on("message", on_message)
        if not opened.done():
            opened.set_result(channel)

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    if role == "a":
        offered = pc.createDataChannel("bench")
        offered.on("open", lambda: ready(offered))
        await pc.setLocalDescription(await pc.createOffer())
        sig.send(pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(await recv(), "answer"))
    else:
        pc.on("datachannel", ready)
        await pc.setRemoteDescription(RTCSessionDescription(await recv(), "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        sig.send(pc.localDescription.sdp)
    await asyncio.wait_for(opened, 30)
    if cfg["rcvbuf"]:
        out["rcvbuf_granted"] = set_udp_rcvbuf(pc, cfg["rcvbuf"])
    if role == "a":
        out["pair"] = _selected_pair(pc)
        out["udp_sockets"] = udp_buffer_sizes()
        await aiortc_echo_rtt(dc, cfg["warmup"], ECHO_PAYLOAD)
        out["echo_rtt_ms"] = await aiortc_echo_rtt(dc, cfg["samples"], ECHO_PAYLOAD)
        # the first transfer each way on a fresh connection (SCTP slow start; reported apart, not in the medians)
        out["first_transfer"] = {"a_to_b": await send_bulk_and_time()}
        dc.send("send")
        result = await texts.get()
        out["first_transfer"]["b_to_a"] = json.loads(result[len("result:") :])
        out["a_to_b"], out["b_to_a"] = [], []
        for _ in range(cfg["repeat"]):
            out["a_to_b"].append(await send_bulk_and_time())
            dc.send("send")
            result = await texts.get()
            assert result.startswith("result:"), result
            out["b_to_a"].append(json.loads(result[len("result:") :]))
        dc.send("bye")
        await asyncio.sleep(0.2)
    else:
        await bye
    await pc.close()
    return out


def _selected_pair(pc: Any) -> str:
    try:
        ice = pc.sctp.transport.transport  # RTCSctpTransport -> RTCDtlsTransport -> RTCIceTransport
        pair = ice._connection._nominated[1]  # aioice: component 1
        return f"{pair.local_candidate.host} -> {pair.remote_candidate.host} ({pair.local_candidate.type})"
    except Exception:
        return "?"


def run_raw(cfg: dict[str, Any]) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    sig_a, sig_b = ctx.Pipe()
    res_a_r, res_a_w = ctx.Pipe(duplex=False)
    res_b_r, res_b_w = ctx.Pipe(duplex=False)
    procs = [
        ctx.Process(target=_raw_process, args=("a", sig_a, res_a_w, cfg), name="raw-aiortc-a"),
        ctx.Process(target=_raw_process, args=("b", sig_b, res_b_w, cfg), name="raw-aiortc-b"),
    ]
    for p in procs:
        p.start()
    outs = []
    try:
        for r in (res_a_r, res_b_r):
            if not r.poll(cfg["timeout"] * (2 * cfg["repeat"] + 4) + 10):
                raise TimeoutError("raw aiortc benchmark process did not report")
            status, payload = r.recv()
            if status != "ok":
                raise RuntimeError(f"raw aiortc benchmark failed:\n{payload}")
            outs.append(payload)
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.terminate()
                p.join(5)
    a = outs[0]
    return {
        "loop": a["loop"],
        "pair": a["pair"],
        "udp_sockets": a["udp_sockets"],
        "rcvbuf_granted": a.get("rcvbuf_granted"),
        "echo_rtt_ms": a["echo_rtt_ms"],
        "first_transfer": a["first_transfer"],
        "a_to_b": a["a_to_b"],
        "b_to_a": a["b_to_a"],
    }


# --------------------------------------------------------------------------------------
# Browser <-> kernel: JupyterLab + Chromium (Playwright) + a kernel, through the widget API
# --------------------------------------------------------------------------------------

#: Executed in the kernel: imports, the aiortc helpers above, and the widget-API measurements.
KERNEL_CODE = r'''
import asyncio, json, os, threading, time
from rtc_widgets import DataChannel
from rtc_widgets.engine import get_engine

ECHO_PAYLOAD = __PAYLOAD__

def _thread_cpu(tid):
    """CPU seconds of one thread of this process (utime + stime from /proc)."""
    with open(f"/proc/self/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

SCTP_COUNTS = install_sctp_counters()

def bench_cpu():
    """CPU seconds so far: the kernel process, its engine thread, the bulk channel's callback worker thread,
    and the SCTP T3 timeouts so far (not CPU, but sampled at the same moments)."""
    out = {"process": time.process_time(), "engine": _thread_cpu(get_engine().thread.native_id), "worker": 0.0}
    for t in threading.enumerate():
        if t.name == "rtc-widgets-channel-bulk":
            out["worker"] = _thread_cpu(t.native_id)
    out["t3_expired"] = SCTP_COUNTS["t3_expired"]
    return out

def bench_cpu_delta(c0):
    c1 = bench_cpu()
    return {k: round(c1[k] - c0.get(k, 0.0), 3) for k in c1}

async def widget_echo_rtt(ch, n, timeout=5.0):
    """Sequential round trips through the widget API: ch.send in the cell, answer from ch.messages()."""
    it = ch.messages().__aiter__()
    rtts = []
    try:
        for i in range(n):
            msg = f"{ECHO_PAYLOAD}:{i}"
            t0 = time.perf_counter()
            ch.send(msg)
            got = await asyncio.wait_for(it.__anext__(), timeout)
            t1 = time.perf_counter()
            if got != msg:
                raise AssertionError(f"echo returned {got!r}, expected {msg!r}")
            rtts.append((t1 - t0) * 1000.0)
    finally:
        await it.aclose()
    return rtts

def _done_waiter(ch):
    """A future in the cell's loop resolved by the browser's "done:..." text (via ch.on_message)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    def on_message(m):
        if isinstance(m, str) and m.startswith("done:"):
            t = time.perf_counter()
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result((t, m)))
    ch.on_message(on_message)
    return fut, on_message

def _parse_done(ch, fut_result, t0, on_message):
    t1, text = fut_result
    ch.channel.incoming.remove_callback(on_message)
    _, nbytes, bad = text.split(":")
    return {"seconds": t1 - t0, "bytes": int(nbytes), "bad_seq": int(bad)}

async def widget_bulk_send(ch, n_msgs, size, high, poll_s=0.001, timeout=120):
    """kernel -> browser through the widget API: ch.send() from the cell, keeping
    await ch.buffered_amount() <= high (the widget has no bufferedamountlow event: poll)."""
    fut, cb = _done_waiter(ch)
    buf = bytearray(size)
    polls = waits = 0
    c0 = bench_cpu()
    t0 = time.perf_counter()
    i = 0
    while i < n_msgs:
        buffered = await ch.buffered_amount()
        polls += 1
        if buffered > high:
            waits += 1
            await asyncio.sleep(poll_s)
            continue
        for _ in range(min(max(1, (high - buffered) // size), n_msgs - i)):
            buf[:4] = i.to_bytes(4, "big")
            ch.send(bytes(buf))
            i += 1
    res = _parse_done(ch, await asyncio.wait_for(fut, timeout), t0, cb)
    res.update(polls=polls, waits=waits, cpu_s=bench_cpu_delta(c0))
    return res

async def engine_bulk_send(ch, n_msgs, size, high, low, timeout=120):
    """kernel -> browser at the aiortc level on the engine loop (no cell thread, no call_soon per message)."""
    fut, cb = _done_waiter(ch)
    c0 = bench_cpu()
    t0 = time.perf_counter()
    waits = await get_engine().run(aiortc_bulk_send(ch.channel._dc, n_msgs, size, high, low))
    res = _parse_done(ch, await asyncio.wait_for(fut, timeout), t0, cb)
    res.update(waits=waits, cpu_s=bench_cpu_delta(c0))
    return res

class WidgetCounter:
    """browser -> kernel through the widget API: count in ch.on_message (worker thread), reply "done:..."."""
    def __init__(self, ch, n_msgs):
        self.ch, self.n_msgs = ch, n_msgs
        self.st = {"msgs": 0, "bytes": 0, "bad_seq": 0}
        self.c0 = bench_cpu()
        self.cpu_s = None
        ch.on_message(self.on_message)
    def on_message(self, m):
        if isinstance(m, str):
            return
        st = self.st
        if int.from_bytes(m[:4], "big") != st["msgs"]:
            st["bad_seq"] += 1
        st["msgs"] += 1
        st["bytes"] += len(m)
        if st["msgs"] == self.n_msgs:
            self.ch.send(f"done:{st['bytes']}:{st['bad_seq']}")
            self.cpu_s = bench_cpu_delta(self.c0)
            self.ch.channel.incoming.remove_callback(self.on_message)

class EngineCounter:
    """browser -> kernel at the aiortc level: count in an aiortc "message" listener on the engine loop."""
    def __init__(self, ch, n_msgs):
        self.ch = ch
        self.c0 = bench_cpu()
        self.cpu_s = None
        self.st = None
        def start():
            self.st = aiortc_bulk_counter(ch.channel._dc, n_msgs, self.done)
        get_engine().call_soon(start)
    def done(self, st):
        self.ch.channel._dc.send(f"done:{st['bytes']}:{st['bad_seq']}")
        self.cpu_s = bench_cpu_delta(self.c0)
'''

#: Page: count binary messages on a peer's user channel (checking sequence numbers), reply "done:..." at the end.
PAGE_COUNT_JS = """([pid, nMsgs]) => {
  const peer = globalThis.rtcWidgets.peers.get(pid);
  const ch = peer.channel;
  const st = (globalThis.__bench = { msgs: 0, bytes: 0, badSeq: 0, firstMs: 0, lastMs: 0 });
  const onMessage = (e) => {
    const d = e.data;
    if (typeof d === "string") return;
    if (st.msgs === 0) st.firstMs = performance.now();
    if (new DataView(d).getUint32(0) !== st.msgs) st.badSeq++;
    st.msgs++;
    st.bytes += d.byteLength;
    if (st.msgs === nMsgs) {
      st.lastMs = performance.now();
      ch.removeEventListener("message", onMessage);
      peer.send(`done:${st.bytes}:${st.badSeq}`);
    }
  };
  ch.addEventListener("message", onMessage);
  return ch.readyState;
}"""

#: Page: send nMsgs binary messages with BrowserPeer.send, staying below `high` buffered bytes and waiting for
#: bufferedamountlow (threshold `low`); resolves when the kernel's "done:..." arrives. Times with performance.now().
PAGE_SEND_JS = """async ([pid, nMsgs, size, high, low, timeoutMs]) => {
  const peer = globalThis.rtcWidgets.peers.get(pid);
  const ch = peer.channel;
  ch.bufferedAmountLowThreshold = low;
  const done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no done from the kernel in time")), timeoutMs);
    const onMessage = (e) => {
      if (typeof e.data === "string" && e.data.startsWith("done:")) {
        clearTimeout(timer);
        ch.removeEventListener("message", onMessage);
        resolve([performance.now(), e.data]);
      }
    };
    ch.addEventListener("message", onMessage);
  });
  const buf = new Uint8Array(size);
  const view = new DataView(buf.buffer);
  let waits = 0;
  let refused = 0;
  const t0 = performance.now();
  for (let i = 0; i < nMsgs; i++) {
    if (ch.bufferedAmount > high) {
      waits++;
      await new Promise((r) => ch.addEventListener("bufferedamountlow", r, { once: true }));
    }
    view.setUint32(0, i);
    if (!peer.send(buf)) refused++;
  }
  const sentMs = performance.now() - t0;
  const [t1, text] = await done;
  const [, bytes, bad] = text.split(":");
  return { seconds: (t1 - t0) / 1000, sendLoopSeconds: sentMs / 1000, bytes: Number(bytes),
           bad_seq: Number(bad), waits, refused };
}"""


def _import_harness() -> Any:
    if str(HARNESS_DIR) not in sys.path:
        sys.path.insert(0, str(HARNESS_DIR))
    import harness

    return harness


def _proc_cpu_by_kind() -> dict[str, float]:
    """CPU seconds used so far by this process's descendants, grouped (kernel / chromium / jupyter-server)."""
    tick = os.sysconf("SC_CLK_TCK")
    procs: dict[int, tuple[int, str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                _, rest = f.read().rsplit(")", 1)
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = rest.split()
        procs[int(entry)] = (int(fields[1]), cmd, (int(fields[11]) + int(fields[12])) / tick)
    me = os.getpid()
    out: dict[str, float] = {}
    for pid, (_, cmd, cpu) in procs.items():
        p, hops = pid, 0
        while p in procs and p != me and hops < 30:
            p, hops = procs[p][0], hops + 1
        if p != me:
            continue
        kind = _kind(cmd)
        out[kind] = out.get(kind, 0.0) + cpu
    return out


def _cpu_delta(before: dict[str, float]) -> dict[str, float]:
    after = _proc_cpu_by_kind()
    return {k: round(after.get(k, 0.0) - before.get(k, 0.0), 3) for k in after}


def run_browser(cfg: dict[str, Any]) -> dict[str, Any]:
    harness = _import_harness()
    from playwright.sync_api import sync_playwright

    n_msgs, size, high, low = cfg["n_msgs"], cfg["size"], cfg["high"], cfg["low"]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rtcw-bench-") as tmp:
        lab = harness.LabServer(Path(tmp))
        t0 = time.monotonic()
        lab.start()
        log(f"JupyterLab up in {time.monotonic() - t0:.1f} s")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=harness.chromium_executable(),
                    args=harness.merged_chromium_args(),
                    chromium_sandbox=False,
                    headless=True,
                    timeout=60_000,
                )
                out["chromium_version"] = browser.version
                nb = None
                try:
                    nb = harness.Notebook(lab, browser, "bench_datachannel.ipynb")
                    log(f"notebook ready in {nb.ready_seconds:.1f} s")
                    out.update(_browser_measurements(nb, cfg, n_msgs, size, high, low))
                except BaseException:
                    if nb is not None:
                        log("page console (tail):\n" + "\n".join(nb.console[-30:]))
                    raise
                finally:
                    if nb is not None:
                        nb.close()
                    browser.close()
        finally:
            lab.stop()
    return out


def _browser_measurements(nb: Any, cfg: dict[str, Any], n_msgs: int, size: int, high: int, low: int) -> dict[str, Any]:
    k = nb.kernel
    shipped = (aiortc_echo_rtt, aiortc_bulk_send, aiortc_bulk_counter, install_sctp_counters, set_udp_rcvbuf)
    helpers = "\n\n".join(inspect.getsource(f) for f in shipped)
    k.execute("from typing import Any\nfrom collections.abc import Callable\n" + helpers)
    k.execute(KERNEL_CODE.replace("__PAYLOAD__", repr(ECHO_PAYLOAD)))
    k.execute(
        "ech = DataChannel(label='echo', echo=True)\nbulk = DataChannel(label='bulk')\n"
        "ech.start()\nbulk.start()\n"
        "await ech.wait_connected(timeout=30)\nawait bulk.wait_connected(timeout=30)\n"
        # A consumer from the start: without one, rtc_widgets keeps received messages in a backlog for the first
        # consumer (by design), and a later counter would count the engine-level runs' messages too.
        "bulk.on_message(lambda m: None)",
        timeout=60,
    )
    out: dict[str, Any] = {}
    pids = k.eval("[ech.peer_id, bulk.peer_id]")
    for pid in pids:
        nb.page.wait_for_function(
            "pid => globalThis.rtcWidgets?.peers.get(pid)?.channel?.readyState === 'open'",
            arg=pid,
            timeout=30_000,
            polling=50,
        )
    bulk_pid = pids[1]
    out["pair"] = nb.page.evaluate(
        """async pid => { const pc = globalThis.rtcWidgets.peers.get(pid).pc; const s = await pc.getStats();
          let pair = null; s.forEach((r) => { if (r.type === "transport") pair = s.get(r.selectedCandidatePairId); });
          if (!pair) return "?"; const l = s.get(pair.localCandidateId), r = s.get(pair.remoteCandidateId);
          return `${l.address}:${l.port} (${l.candidateType}) -> ${r.address}:${r.port} (${r.candidateType})`; }""",
        bulk_pid,
    )
    out["loop"] = k.eval("type(get_engine().loop).__module__ + '.' + type(get_engine().loop).__name__")
    out["max_message_size"] = k.eval("bulk.max_message_size")
    n, warm = cfg["samples"], cfg["warmup"]
    timeout = cfg["timeout"]

    log(f"RTT (a): ch.ping() x {n}")
    # Each series starts SETTLE_S after its cell starts: the page's main thread (which also delivers data-channel
    # messages and answers pings) is busy for a while redrawing JupyterLab when a cell starts (kernel "busy").
    k.execute(
        f"await asyncio.sleep({SETTLE_S})\nawait ech.ping({warm})\nrtt_ping = await ech.ping({n})", timeout=timeout
    )
    out["ping_rtt_ms"] = k.eval("rtt_ping")
    log(f"RTT (b): user-channel echo through the widget API x {n}")
    k.execute(
        f"await asyncio.sleep({SETTLE_S})\nawait widget_echo_rtt(ech, {warm})\n"
        f"rtt_widget = await widget_echo_rtt(ech, {n})",
        timeout=timeout,
    )
    out["widget_echo_rtt_ms"] = k.eval("rtt_widget")
    log(f"RTT (c): echo at the aiortc level on the engine loop x {n}")
    k.execute(
        f"await asyncio.sleep({SETTLE_S})\n"
        f"rtt_engine = await get_engine().run(aiortc_echo_rtt(ech.channel._dc, {warm}, ECHO_PAYLOAD))\n"
        f"rtt_engine = await get_engine().run(aiortc_echo_rtt(ech.channel._dc, {n}, ECHO_PAYLOAD))",
        timeout=timeout,
    )
    out["engine_echo_rtt_ms"] = k.eval("rtt_engine")
    # the engine-level echoes also reached the channel's fanout (no consumer: they wait in its backlog)
    out["echo_backlog_after_engine_rtt"] = k.eval("len(ech.channel.incoming._backlog)")

    if cfg["rcvbuf"]:
        setter = f"asyncio.sleep(0, set_udp_rcvbuf(c.peer.pc, {cfg['rcvbuf']}))"
        out["rcvbuf_granted"] = k.eval(f"[await get_engine().run({setter}) for c in (ech, bulk)]")
    out["udp_sockets_before"] = udp_buffer_sizes()
    mib = n_msgs * size / 2**20

    def transfer(key: str) -> dict[str, Any]:
        if key.startswith("k2b"):
            assert nb.page.evaluate(PAGE_COUNT_JS, [bulk_pid, n_msgs]) == "open"
            call = (
                "widget_bulk_send(bulk, {n}, {s}, {h})"
                if key == "k2b_widget"
                else "engine_bulk_send(bulk, {n}, {s}, {h}, {lo})"
            )
            cpu0, udp0, socks0 = _proc_cpu_by_kind(), udp_counters(), udp_sockets()
            k.execute(f"res = await {call.format(n=n_msgs, s=size, h=high, lo=low)}", timeout=timeout)
            ends = _cpu_delta(cpu0), udp_delta(udp0), udp_drops_by_owner(socks0)
            res = k.eval("res")
            res["page"] = nb.page.evaluate("() => globalThis.__bench")
        else:
            counter = "WidgetCounter" if key == "b2k_widget" else "EngineCounter"
            k.execute(f"counter = {counter}(bulk, {n_msgs})\ndropped0 = bulk.channel.incoming.dropped")
            cpu0, udp0, socks0 = _proc_cpu_by_kind(), udp_counters(), udp_sockets()
            res = nb.page.evaluate(PAGE_SEND_JS, [bulk_pid, n_msgs, size, high, low, timeout * 1000])
            ends = _cpu_delta(cpu0), udp_delta(udp0), udp_drops_by_owner(socks0)
            deadline = time.monotonic() + 5
            while k.eval("counter.cpu_s is None") and time.monotonic() < deadline:
                time.sleep(0.02)
            res["kernel"] = k.eval(
                "{'counted': counter.st, 'cpu_s': counter.cpu_s, "
                "'fanout_dropped': bulk.channel.incoming.dropped - dropped0}"
            )
            res["cpu_s"] = res["kernel"]["cpu_s"]
        res["cpu_s_by_process"], res["udp"], res["udp_drops_by_owner"] = ends
        res["verified"] = res["bytes"] == n_msgs * size and res["bad_seq"] == 0
        return res

    def show(label: str, name: str, res: dict[str, Any]) -> None:
        log(
            f"  [{label}] {name}, {mib:g} MiB: {mb_s(res):.1f} MB/s ({res['seconds']:.2f} s, "
            f"{res['udp'].get('RcvbufErrors', 0)} UDP drops, {res['cpu_s'].get('t3_expired', 0):g} T3 timeouts)"
        )

    # The first transfer each way on a fresh connection (SCTP slow start; reported apart, not in the medians)
    out["first_transfer"] = {}
    for key, name in (BROWSER_RUNS[0], BROWSER_RUNS[2]):
        out["first_transfer"][key] = res = transfer(key)
        show("first", name, res)
    for key, _ in BROWSER_RUNS:
        out[key] = []
    for rep in range(cfg["repeat"]):
        # alternate the order, so that no path always follows the same one
        for key, name in BROWSER_RUNS if rep % 2 == 0 else BROWSER_RUNS[::-1]:
            res = transfer(key)
            out[key].append(res)
            show(f"{rep + 1}/{cfg['repeat']}", name, res)
    out["fanout_backlog_after"] = k.eval("len(bulk.channel.incoming._backlog)")
    out["udp_sockets_after"] = udp_buffer_sizes()
    k.execute("ech.close()\nbulk.close()", timeout=30)
    return out


# --------------------------------------------------------------------------------------
# Statistics and reports
# --------------------------------------------------------------------------------------


def rtt_stats(samples: list[float]) -> dict[str, float]:
    import numpy as np

    a = np.asarray(samples, dtype=float)
    return {
        "n": len(a),
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
        "min": float(a.min()),
        "max": float(a.max()),
    }


def mb_s(run: dict[str, Any]) -> float:
    return run["bytes"] / run["seconds"] / MB


def machine_info(chromium_version: str | None) -> dict[str, Any]:
    import aiortc

    cpu_model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import uvloop

        uv = uvloop.__version__
    except ImportError:
        uv = None
    try:
        import aioice

        aioice_version = aioice.__version__
    except (ImportError, AttributeError):
        aioice_version = "?"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    git = shutil.which("git")
    commit = "?"
    if git:
        head = subprocess.run([git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT)
        dirty = subprocess.run(
            [git, "status", "--porcelain", "--", "rtc_widgets", "js/src"], capture_output=True, text=True, cwd=REPO_ROOT
        )
        commit = head.stdout.strip() or "?"
        if dirty.stdout.strip():
            commit += " + uncommitted changes in rtc_widgets/ or js/src/"
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiortc": aiortc.__version__,
        "aioice": aioice_version,
        "uvloop": uv,
        "chromium": chromium_version,
        "rtc_widgets": commit,
    }


def throughput_stats(runs: list[dict[str, Any]], expected_bytes: int) -> dict[str, Any]:
    rates = sorted(mb_s(r) for r in runs)
    return {
        "median": rates[len(rates) // 2]
        if len(rates) % 2
        else sum(rates[len(rates) // 2 - 1 : len(rates) // 2 + 1]) / 2,
        "runs": [round(mb_s(r), 2) for r in runs],
        "verified": all(r["bytes"] == expected_bytes and r["bad_seq"] == 0 for r in runs),
    }


def summarize(raw: dict[str, Any] | None, br: dict[str, Any] | None, expected_bytes: int) -> dict[str, Any]:
    s: dict[str, Any] = {"rtt_ms": {}, "throughput_mb_s": {}, "targets": []}
    if br:
        s["rtt_ms"]["ping (control channel)"] = rtt_stats(br["ping_rtt_ms"])
        s["rtt_ms"]["echo, widget API"] = rtt_stats(br["widget_echo_rtt_ms"])
        s["rtt_ms"]["echo, aiortc level on the engine"] = rtt_stats(br["engine_echo_rtt_ms"])
        for key, name in BROWSER_RUNS:
            s["throughput_mb_s"][name] = throughput_stats(br[key], expected_bytes)
    if raw:
        s["rtt_ms"]["raw aiortc echo"] = rtt_stats(raw["echo_rtt_ms"])
        for key, name, _, _ in RAW_RUNS:
            s["throughput_mb_s"][name] = throughput_stats(raw[key], expected_bytes)
    t = {name: v["median"] for name, v in s["throughput_mb_s"].items()}
    targets = s["targets"]
    for name in ("ping (control channel)", "echo, widget API"):
        if name in s["rtt_ms"]:
            v = s["rtt_ms"][name]["p50"]
            targets.append(
                {
                    "target": f"RTT p50 <= {TARGET_RTT_P50_MS} ms ({name})",
                    "value": f"{v:.3f} ms",
                    "met": v <= TARGET_RTT_P50_MS,
                }
            )
    for name in ("kernel -> browser, widget API", "browser -> kernel, widget API"):
        if name in t:
            targets.append(
                {
                    "target": f">= {TARGET_MB_S:g} MB/s ({name}, median)",
                    "value": f"{t[name]:.1f} MB/s",
                    "met": t[name] >= TARGET_MB_S,
                }
            )
    # the browser offers and the kernel answers: compare each direction with the raw run's same roles
    for name, raw_name in (
        ("kernel -> browser, widget API", "raw aiortc answerer -> offerer"),
        ("browser -> kernel, widget API", "raw aiortc offerer -> answerer"),
    ):
        if name in t and raw_name in t:
            ratio = t[name] / t[raw_name]
            targets.append(
                {
                    "target": f">= {TARGET_RATIO}x raw aiortc ({name} vs {raw_name}, medians)",
                    "value": f"{ratio:.2f}x",
                    "met": ratio >= TARGET_RATIO,
                }
            )
    return s


BROWSER_RUNS = (
    ("k2b_widget", "kernel -> browser, widget API"),
    ("k2b_engine", "kernel -> browser, aiortc level"),
    ("b2k_widget", "browser -> kernel, widget API"),
    ("b2k_engine", "browser -> kernel, aiortc level"),
)
RAW_RUNS = (
    ("a_to_b", "raw aiortc offerer -> answerer", "offerer", "answerer"),
    ("b_to_a", "raw aiortc answerer -> offerer", "answerer", "offerer"),
)


def _sum(runs: list[dict[str, Any]], get: Callable[[dict[str, Any]], float]) -> float:
    return sum(get(r) or 0 for r in runs)


def _drops_text(runs: list[dict[str, Any]]) -> str:
    dropped = _sum(runs, lambda r: r.get("udp", {}).get("RcvbufErrors", 0))
    received = _sum(runs, lambda r: r.get("udp", {}).get("InDatagrams", 0))
    by: dict[str, int] = {}
    for r in runs:
        for owner, n in r.get("udp_drops_by_owner", {}).items():
            by[owner] = by.get(owner, 0) + n
    where = ", ".join(f"at {k} {v}" for k, v in sorted(by.items()) if v)
    text = f"{dropped:.0f} of {received:.0f} ({dropped / max(received, 1):.1%})"
    return f"{text}: {where}" if where else text


def _pct(cpu: float, wall: float) -> str:
    return f"{100 * cpu / wall:.0f}%" if wall else "?"


def throughput_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    summary = result["summary"]["throughput_mb_s"]
    br, raw = result.get("browser"), result.get("raw")
    runs_of: list[tuple[str, list[dict[str, Any]], str, float]] = []
    if br:
        for key, name in BROWSER_RUNS:
            runs = br[key]
            wall = _sum(runs, lambda r: r["seconds"])
            kernel = _sum(runs, lambda r: r["cpu_s_by_process"].get("kernel", 0))
            engine = _sum(runs, lambda r: r["cpu_s"].get("engine", 0))
            worker = _sum(runs, lambda r: r["cpu_s"].get("worker", 0))
            chromium = _sum(runs, lambda r: r["cpu_s_by_process"].get("chromium", 0))
            cpu = (
                f"kernel {_pct(kernel, wall)} (engine thread {_pct(engine, wall)}"
                + (f", callback thread {_pct(worker, wall)}" if worker else "")
                + f"), Chromium {_pct(chromium, wall)}"
            )
            t3 = _sum(runs, lambda r: r["cpu_s"].get("t3_expired", 0))
            runs_of.append((name, runs, cpu, t3))
    if raw:
        for key, name, snd, rcv in RAW_RUNS:
            runs = raw[key]
            wall = _sum(runs, lambda r: r["seconds"])
            cpu = (
                f"{snd} (sender) {_pct(_sum(runs, lambda r: r['send_cpu_s']), wall)}, "
                f"{rcv} (receiver) {_pct(_sum(runs, lambda r: r['recv_cpu_s']), wall)}"
            )
            t3 = _sum(runs, lambda r: r["t3_expired"]["sender"] + r["t3_expired"]["receiver"])
            runs_of.append((name, runs, cpu, t3))
    for name, runs, cpu, t3 in runs_of:
        st = summary[name]
        rates = ", ".join(f"{v:.1f}" for v in st["runs"])
        ok = "" if st["verified"] else " (BYTES WRONG)"
        rows.append([name, f"**{st['median']:.1f}**{ok}", rates, _drops_text(runs), f"{t3:.0f}", cpu])
    return rows


def write_markdown(path: Path, result: dict[str, Any]) -> None:
    m, s, cfg = result["machine"], result["summary"], result["config"]
    lines = [
        "# Data-channel benchmark",
        "",
        f"Run {result['started']} in {result['seconds']:.0f} s with `python -m benchmarks.datachannel` "
        "(private network namespace, iceServers=[]).",
        "",
        f"Machine: {m['cpu_count']} CPUs ({m['cpu_model']}), Linux {m['kernel']}, Python {m['python']}, "
        f"aiortc {m['aiortc']}, aioice {m['aioice']}, uvloop {m['uvloop']}, Chromium {m['chromium']}; "
        f"rtc_widgets at {m.get('rtc_widgets', '?')}.",
        "",
        "Other load on the machine while measuring (CPU cores used by processes outside the benchmark, mean / peak "
        "over 0.5 s): "
        + "; ".join(
            f"{phase} phase {v['other_processes_cores_mean']:.2f} / {v['other_processes_cores_peak']:.2f} "
            f"(benchmark itself {v['benchmark_cores_mean']:.2f}, load average {v['loadavg_start'][0]:.1f} "
            f"-> {v['loadavg_end'][0]:.1f})"
            for phase, v in result.get("load", {}).items()
        )
        + ". Numbers taken while others use the CPUs are low and noisy.",
        "",
        f"RTT: {cfg['samples']} sequential samples of a {len(ECHO_PAYLOAD) + 4}-byte text message after "
        f"{cfg['warmup']} warm-up ones. Throughput: {cfg['n_msgs'] * cfg['size'] / 2**20:g} MiB in "
        f"{cfg['size'] // 1024} KiB binary messages, sender below {cfg['high'] // 1024} KiB buffered "
        f"(bufferedamountlow at {cfg['low'] // 1024} KiB where the API has it); MB/s = 10^6 B/s.",
        "",
        *(
            [
                f"**Experiment:** SO_RCVBUF set to {cfg['rcvbuf']} bytes on aiortc's UDP sockets (kernel and raw "
                "processes) once connected; the OS granted "
                f"{sorted(set((result.get('browser') or {}).get('rcvbuf_granted', [[0]])[0]))} bytes. "
                "Everything else is as in the default run.",
                "",
            ]
            if cfg["rcvbuf"]
            else []
        ),
        "## Round-trip time (ms)",
        "",
        "| path | p50 | p99 | mean | min | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, st in s["rtt_ms"].items():
        lines.append(
            f"| {name} | {st['p50']:.3f} | {st['p99']:.3f} | {st['mean']:.3f} | {st['min']:.3f} | {st['max']:.3f} |"
        )
    lines += [
        "",
        "## Throughput",
        "",
        f"{cfg['repeat']} runs per path, alternating paths. UDP datagrams dropped: discarded by the OS because the "
        "receiving socket's buffer was full (RcvbufErrors of all datagrams received in the namespace, summed over the "
        "runs; at which socket owner). T3 timeouts: aiortc's SCTP retransmission timer fired (each stalls the sender "
        "for >= 1 s); counted in aiortc only, Chromium's dcsctp is not instrumented. CPU: CPU time / wall time.",
        "",
        "| path | MB/s (median) | each run | UDP datagrams dropped | aiortc T3 timeouts | CPU (share of one core) |",
        "|---|---:|---|---|---:|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in throughput_rows(result)]
    firsts = []
    br, raw = result.get("browser"), result.get("raw")
    if br:
        for key, name in (BROWSER_RUNS[0], BROWSER_RUNS[2]):
            firsts.append((name, br["first_transfer"][key]))
    if raw:
        for key, name, _, _ in RAW_RUNS:
            firsts.append((name, raw["first_transfer"][key]))
    if firsts:
        lines += [
            "",
            "First transfer each way on a fresh connection (SCTP slow start; not in the medians): "
            + "; ".join(f"{name} {mb_s(r):.1f} MB/s ({_drops_text([r])} UDP datagrams dropped)" for name, r in firsts)
            + ".",
        ]
    lines += ["", "## Targets (issue #2; reported, not asserted)", "", "| target | measured | met |", "|---|---:|:-:|"]
    for t in s["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else 'NO'} |")
    lines += ["", f"Raw data: `{path.stem}.json`; figure: `{path.stem}.png`.", ""]
    path.write_text("\n".join(lines))


def write_plot(path: Path, result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1.1, 1]})
    series: list[tuple[str, list[float]]] = []
    br, raw = result.get("browser"), result.get("raw")
    if br:
        series += [
            ("ping (control channel)", br["ping_rtt_ms"]),
            ("echo, widget API", br["widget_echo_rtt_ms"]),
            ("echo, aiortc level on engine", br["engine_echo_rtt_ms"]),
        ]
    if raw:
        series.append(("raw aiortc echo", raw["echo_rtt_ms"]))
    for name, samples in series:
        a = np.sort(np.asarray(samples))
        ax1.step(a, np.arange(1, len(a) + 1) / len(a), where="post", label=f"{name} (p50 {np.median(a):.3f})")
    ax1.axvline(TARGET_RTT_P50_MS, color="k", ls="--", lw=1, label=f"target p50 {TARGET_RTT_P50_MS} ms")
    ax1.set_xscale("log")
    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500) if t <= max(max(v) for _, v in series) * 2]
    ax1.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    ax1.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax1.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax1.set_xlabel("round-trip time (ms, log scale)")
    ax1.set_ylabel("fraction of samples (CDF)")
    ax1.set_title("Data-channel RTT")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8, loc="lower right")

    t = result["summary"]["throughput_mb_s"]
    names = list(t)
    colors = ["tab:blue" if "widget" in n else "tab:cyan" if "aiortc level" in n else "tab:gray" for n in names]
    ax2.barh(names, [t[n]["median"] for n in names], color=colors, label="median")
    for i, n in enumerate(names):
        runs = t[n]["runs"]
        ax2.plot(runs, [i] * len(runs), "k.", ms=5, label="each run" if i == 0 else None)
        ax2.text(max([t[n]["median"], *runs]) + 0.6, i, f"{t[n]['median']:.1f}", va="center", fontsize=8)
    ax2.axvline(TARGET_MB_S, color="k", ls="--", lw=1, label=f"target {TARGET_MB_S:g} MB/s")
    ax2.invert_yaxis()
    ax2.set_xlabel(f"MB/s (10^6 B/s), {result['config']['repeat']} runs of {result['config']['mib']:g} MiB each")
    ax2.set_title("Data-channel throughput")
    ax2.tick_params(axis="y", labelsize=8)
    ax2.legend(fontsize=8, loc="lower right")
    m = result["machine"]
    fig.suptitle(
        f"rtc_widgets data channel: {m['cpu_count']} CPUs, Python {m['python']}, aiortc {m['aiortc']}, "
        f"Chromium {m['chromium']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.datachannel", description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=500, help="RTT samples per path (default 500)")
    p.add_argument("--warmup", type=int, default=20, help="warm-up round trips, not counted (default 20)")
    p.add_argument("--mb", type=float, default=32, help="MiB per throughput run (default 32)")
    p.add_argument("--repeat", type=int, default=5, help="throughput runs per path; the median is reported (default 5)")
    p.add_argument("--msg-kib", type=int, default=64, help="message size in KiB (default 64)")
    p.add_argument("--high-kib", type=int, default=1024, help="sender's buffered-bytes ceiling (default 1024 KiB)")
    p.add_argument("--low-kib", type=int, default=256, help="bufferedAmountLowThreshold (default 256 KiB)")
    p.add_argument("--timeout", type=float, default=120, help="per-step timeout in seconds (default 120)")
    p.add_argument(
        "--rcvbuf",
        type=int,
        default=0,
        help="experiment: set SO_RCVBUF to this many bytes on aiortc's UDP sockets (kernel and raw) once connected",
    )
    p.add_argument("--name", default="datachannel", help="output file stem (default datachannel)")
    p.add_argument("--skip-raw", action="store_true", help="leave out raw aiortc <-> aiortc")
    p.add_argument("--skip-browser", action="store_true", help="leave out browser <-> kernel")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for datachannel.{json,md,png}")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    ensure_namespace("benchmarks.datachannel", argv)
    size = args.msg_kib * 1024
    cfg = {
        "samples": args.samples,
        "warmup": args.warmup,
        "size": size,
        "n_msgs": max(1, int(args.mb * 2**20) // size),
        "high": args.high_kib * 1024,
        "low": args.low_kib * 1024,
        "timeout": args.timeout,
        "repeat": max(1, args.repeat),
        "rcvbuf": args.rcvbuf,
    }
    cfg["mib"] = cfg["n_msgs"] * size / 2**20
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    t_start = time.monotonic()
    raw = br = None
    timings: dict[str, float] = {}
    load: dict[str, Any] = {}
    if not args.skip_raw:
        log("raw aiortc <-> aiortc (two processes over the veth addresses)")
        t0 = time.monotonic()
        monitor = LoadMonitor()
        raw = run_raw(cfg)
        load["raw"] = monitor.stop()
        timings["raw"] = time.monotonic() - t0
        rates = {key: ", ".join(f"{mb_s(r):.1f}" for r in raw[key]) for key in ("a_to_b", "b_to_a")}
        log(
            f"  raw: echo p50 {rtt_stats(raw['echo_rtt_ms'])['p50']:.3f} ms; MB/s offerer->answerer {rates['a_to_b']}, "
            f"answerer->offerer {rates['b_to_a']} ({timings['raw']:.1f} s)"
        )
    if not args.skip_browser:
        log("browser <-> kernel (JupyterLab + Chromium + kernel)")
        t0 = time.monotonic()
        monitor = LoadMonitor()
        br = run_browser(cfg)
        load["browser"] = monitor.stop()
        timings["browser"] = time.monotonic() - t0
    result: dict[str, Any] = {
        "started": started,
        "config": cfg,
        "machine": machine_info(br.get("chromium_version") if br else None),
        "raw": raw,
        "browser": br,
        "timings_s": timings,
        "load": load,
    }
    result["summary"] = summarize(raw, br, cfg["n_msgs"] * cfg["size"])
    result["seconds"] = time.monotonic() - t_start
    out, stem = args.out, args.name
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(out / f"{stem}.md", result)
    write_plot(out / f"{stem}.png", result)
    print((out / f"{stem}.md").read_text())
    log(f"done in {result['seconds']:.0f} s; wrote {out}/{stem}.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
