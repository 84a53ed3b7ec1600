"""Three-host topologies for network tests, built inside the suite's private namespace and torn down afterwards.

::

    this namespace ("kernel": JupyterLab + kernel)      router namespace               browser namespace
    rtk0 10.77.1.2  ─────────── veth ───────────  rtk1 10.77.1.1   rtb0 10.77.2.1 ─── veth ─── rtb1 10.77.2.2
                                                   coturn :443 (use-auth-secret)              Chromium

The router forwards only TCP from the browser to JupyterLab's port (the page and its websockets); no UDP, nothing
towards the browser from this side. This namespace may send out of ``rtk0`` only TCP to the router's port 443 and
the server's own replies. So no direct media path exists: WebRTC must go through TURN over TCP 443.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

KERNEL_IP = "10.77.1.2"
ROUTER_KERNEL_IP = "10.77.1.1"
ROUTER_BROWSER_IP = "10.77.2.1"
BROWSER_IP = "10.77.2.2"
TURN_PORT = 443
CHAIN = "RTCW_TURN"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def in_ns(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *args, check=check)


@dataclass
class TurnTopology:
    """Builds the picture above; ``jupyter_port`` is the one port the router lets the browser reach."""

    jupyter_port: int
    workdir: Path
    suffix: str = field(default_factory=lambda: f"{os.getpid()}{secrets.token_hex(2)}")
    turn_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    turn: subprocess.Popen[bytes] | None = None

    @property
    def router(self) -> str:
        return f"rtcwR{self.suffix}"

    @property
    def browser(self) -> str:
        return f"rtcwB{self.suffix}"

    @property
    def turn_url(self) -> str:
        return f"turn:{ROUTER_KERNEL_IP}:{TURN_PORT}?transport=tcp"

    def up(self) -> None:
        if os.environ.get("RTCW_NETNS") != "1":
            raise RuntimeError("refusing to build a topology outside the test's private network namespace")
        for tool in ("ip", "iptables", "turnserver"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} is missing: apt-get install -y iproute2 iptables coturn")
        r, b = self.router, self.browser
        sh("ip", "netns", "add", r)
        sh("ip", "netns", "add", b)
        sh("ip", "link", "add", "rtk0", "type", "veth", "peer", "name", "rtk1", "netns", r)
        in_ns(r, "ip", "link", "add", "rtb0", "type", "veth", "peer", "name", "rtb1", "netns", b)
        sh("ip", "addr", "add", f"{KERNEL_IP}/24", "dev", "rtk0")
        sh("ip", "link", "set", "rtk0", "up")
        sh("ip", "route", "add", "10.77.2.0/24", "via", ROUTER_KERNEL_IP)
        for ns, dev, ip in ((r, "rtk1", ROUTER_KERNEL_IP), (r, "rtb0", ROUTER_BROWSER_IP), (b, "rtb1", BROWSER_IP)):
            in_ns(ns, "ip", "addr", "add", f"{ip}/24", "dev", dev)
            in_ns(ns, "ip", "link", "set", dev, "up")
            in_ns(ns, "ip", "link", "set", "lo", "up")
        in_ns(b, "ip", "route", "add", "default", "via", ROUTER_BROWSER_IP)
        # router: forwards only the browser's TCP to JupyterLab (and its replies)
        in_ns(r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        in_ns(r, "iptables", "-P", "FORWARD", "DROP")
        in_ns(r, "iptables", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
        in_ns(
            r, "iptables", "-A", "FORWARD", "-p", "tcp", "-s", BROWSER_IP, "-d", KERNEL_IP,
            "--dport", str(self.jupyter_port), "-j", "ACCEPT",
        )  # fmt: skip
        # this namespace: out of rtk0 only TCP to TURN :443 and the server's answers to the page
        sh("iptables", "-N", CHAIN)
        sh("iptables", "-A", CHAIN, "-p", "tcp", "-d", ROUTER_KERNEL_IP, "--dport", str(TURN_PORT), "-j", "ACCEPT")
        sh("iptables", "-A", CHAIN, "-p", "tcp", "--sport", str(self.jupyter_port), "-j", "ACCEPT")
        sh("iptables", "-A", CHAIN, "-j", "DROP")
        sh("iptables", "-I", "OUTPUT", "-o", "rtk0", "-j", CHAIN)
        self._start_turn()

    def _start_turn(self) -> None:
        log = open(self.workdir / "turnserver.log", "wb")
        self.turn = subprocess.Popen(
            [
                "ip", "netns", "exec", self.router, "turnserver", "-n",
                f"--listening-ip={ROUTER_KERNEL_IP}", f"--listening-ip={ROUTER_BROWSER_IP}",
                f"--relay-ip={ROUTER_BROWSER_IP}", f"--listening-port={TURN_PORT}",
                "--use-auth-secret", f"--static-auth-secret={self.turn_secret}", "--realm=rtcw.test",
                "--no-tls", "--no-dtls", "--no-cli", "--fingerprint", "--min-port=49200", "--max-port=49300",
                "--log-file=stdout", "--simple-log", "--verbose",
                f"--pidfile={self.workdir / 'turnserver.pid'}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.turn.poll() is not None:
                raise RuntimeError(f"turnserver exited: {self.turn_log()[-2000:]}")
            probe = in_ns(self.router, "ss", "-ltn", check=False).stdout
            if f"{ROUTER_KERNEL_IP}:{TURN_PORT}" in probe:
                return
            time.sleep(0.1)
        raise RuntimeError(f"turnserver did not listen on :{TURN_PORT}: {self.turn_log()[-2000:]}")

    def turn_log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.workdir / "turnserver.log").read_text(errors="replace")
        return ""

    def chromium_wrapper(self, chromium: str) -> str:
        """An executable that runs Chromium inside the browser namespace (Playwright talks to it over pipes)."""
        path = self.workdir / "chromium-in-browser-ns"
        path.write_text(f'#!/bin/sh\nexec ip netns exec {self.browser} {chromium} "$@"\n')
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return str(path)

    def down(self) -> None:
        if self.turn is not None and self.turn.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.turn.pid, 15)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.turn.wait(5)
        sh("iptables", "-D", "OUTPUT", "-o", "rtk0", "-j", CHAIN, check=False)
        sh("iptables", "-F", CHAIN, check=False)
        sh("iptables", "-X", CHAIN, check=False)
        sh("ip", "link", "del", "rtk0", check=False)
        sh("ip", "netns", "del", self.browser, check=False)
        sh("ip", "netns", "del", self.router, check=False)


def tcp_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
