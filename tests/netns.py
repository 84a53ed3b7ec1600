"""Private network namespace for the test suite.

Usage (as root, already inside a fresh network namespace, e.g. under ``unshare --net``)::

    unshare --net -- python tests/netns.py -- COMMAND [ARGS...]

brings ``lo`` up, adds a veth pair whose two ends both stay in this namespace
(198.18.0.1/24 on ``rtcw0`` and 198.18.0.2/24 on ``rtcw1``, RFC 2544 benchmarking range),
checks that nothing else exists, sets ``RTCW_NETNS=1`` plus proxy-free environment and
execs COMMAND. ``tests/conftest.py`` uses this to re-run the whole pytest command inside
the namespace; it is usable on its own, e.g.
``unshare --net -- python tests/netns.py -- bash``.

The veth pair gives Chromium and aioice a non-loopback host candidate (aioice leaves out
127.0.0.1, Chromium needs ``--allow-loopback-in-peer-connection`` for loopback): traffic
between 198.18.0.1 and 198.18.0.2 never leaves this namespace.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

VETH_A = "rtcw0"
VETH_B = "rtcw1"
ADDR_A = "198.18.0.1"
ADDR_B = "198.18.0.2"
PREFIX = 24
ALLOWED_IFACES = frozenset({"lo", VETH_A, VETH_B})
ENV_FLAG = "RTCW_NETNS"

_PROXY_VARS = (
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "all_proxy",
    "socks_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "ALL_PROXY",
    "SOCKS_PROXY",
)


class NetnsError(RuntimeError):
    pass


def _ip(*args: str) -> None:
    ip = shutil.which("ip") or "/usr/sbin/ip"
    proc = subprocess.run([ip, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()}")


def _sysctl(key: str, value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError:
        pass  # best effort (IPv6 may be disabled altogether)


def interface_names() -> set[str]:
    return {name for _, name in socket.if_nameindex()}


def check_isolated() -> None:
    """Raise NetnsError unless only lo and the veth pair exist (i.e. we are in our namespace)."""
    names = interface_names()
    extra = names - ALLOWED_IFACES
    if extra:
        raise NetnsError(
            f"not inside the private test network namespace: interfaces {sorted(extra)} exist "
            f"(allowed: {sorted(ALLOWED_IFACES)})"
        )


def setup() -> None:
    """Configure the (fresh, empty) current network namespace."""
    names = interface_names()
    if names - {"lo"}:
        raise NetnsError(
            f"refusing to configure a namespace that already has interfaces {sorted(names)}; "
            "run this under `unshare --net`"
        )
    _ip("link", "set", "lo", "up")
    _ip("link", "add", VETH_A, "type", "veth", "peer", "name", VETH_B)
    for dev in (VETH_A, VETH_B):
        # no duplicate address detection: IPv6 link-local addresses usable at once
        _sysctl(f"net.ipv6.conf.{dev}.accept_dad", "0")
    _ip("addr", "add", f"{ADDR_A}/{PREFIX}", "dev", VETH_A)
    _ip("addr", "add", f"{ADDR_B}/{PREFIX}", "dev", VETH_B)
    _ip("link", "set", VETH_A, "up")
    _ip("link", "set", VETH_B, "up")
    check_isolated()
    # the veth carrier comes up asynchronously; make sure both addresses are usable
    deadline = time.monotonic() + 5
    while True:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((ADDR_A, 0))
                s.connect((ADDR_B, 9))
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def isolated_env(env: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if env is None else env)
    for var in _PROXY_VARS:
        env.pop(var, None)
    env["no_proxy"] = env["NO_PROXY"] = "*"
    env[ENV_FLAG] = "1"
    return env


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("usage: unshare --net -- python tests/netns.py -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    try:
        setup()
    except (NetnsError, OSError) as exc:
        print(f"tests/netns.py: cannot set up the private test network namespace: {exc}", file=sys.stderr)
        return 3
    env = isolated_env()
    os.execvpe(argv[0], argv, env)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
