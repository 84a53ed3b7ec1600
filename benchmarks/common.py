"""What every benchmark shares: the private network namespace it re-executes itself in, and CPU accounting.

Like the test suite, a benchmark never touches the host network: run as root, it re-executes
``python -m benchmarks.NAME ARGS`` under ``unshare --net`` through ``tests/netns.py`` (lo and a veth pair, no route
out). CPU figures come from /proc: a process's user + system time over every thread, and the machine's busy time.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
NETNS_PY = REPO_ROOT / "tests" / "netns.py"
HARNESS_DIR = REPO_ROOT / "tests" / "browser"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def load_module(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ensure_namespace(module: str, argv: list[str]) -> None:
    """Re-exec ``python -m MODULE ARGV`` inside a fresh network namespace, or check that we already are in one."""
    netns = load_module("_rtcw_bench_netns", NETNS_PY)
    if os.environ.get(netns.ENV_FLAG) == "1":
        netns.check_isolated()
        return
    unshare = shutil.which("unshare")
    if unshare is None:
        sys.exit(f"{module}: `unshare` (util-linux) not found; benchmarks only run in a private network namespace")
    probe = subprocess.run([unshare, "--net", "--", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        sys.exit(
            f"{module}: `unshare --net true` failed ({probe.stderr.strip() or probe.returncode}); run as root "
            "(CAP_SYS_ADMIN). Benchmarks never use the host network."
        )
    os.chdir(REPO_ROOT)
    sys.stdout.flush()
    sys.stderr.flush()
    cmd = [sys.executable, "-m", module, *argv]
    os.execv(unshare, [unshare, "--net", "--", sys.executable, str(NETNS_PY), "--", *cmd])


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of every thread of ``pid`` so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15 of proc(5))


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs so far."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)
