"""Real-browser harness: a JupyterLab server, Chromium (Playwright) and a kernel client.

Used through the fixtures in ``tests/browser/conftest.py``; importable on its own so that
benchmarks or notebooks checks can reuse it. Everything here assumes it runs inside the
private network namespace set up by ``tests/conftest.py``.

Two routes into a notebook opened in a real page (see /work/shared/TESTING.md):

* route A (``Notebook.run_cell_ui``): type into a cell and press Shift+Enter;
* route B (``Notebook.kernel``): execute code in the page's own kernel straight over ZMQ
  (a ``jupyter_client.BlockingKernelClient`` on the kernel's connection file). The kernel
  broadcasts iopub to every subscriber, so widgets created this way are created in the
  page's widget manager too.
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"
KERNEL_NAME = "rtcw"
KERNEL_DISPLAY_NAME = "rtcw (tests)"

#: Chromium flags every browser of the suite gets (headless is set by Playwright).
CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-sandbox",  # we run as root
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-pings",
)

#: Features to disable. Measured: Chromium honours only the LAST ``--disable-features``
#: switch, and Playwright passes its own list before ours, so ``merged_chromium_args``
#: emits ONE switch holding Playwright 1.65's list (copied below) plus ours.
PLAYWRIGHT_DISABLED_FEATURES: tuple[str, ...] = (
    "AvoidUnnecessaryBeforeUnloadCheckSync",
    "DestroyProfileOnBrowserClose",
    "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable",
    "LensOverlay",
    "MediaRouter",
    "PaintHolding",
    "ThirdPartyStoragePartitioning",
    "AvoidCorsURLLoaderRestartOnRedirect",
    "OptimizationHints",
    "NetworkTimeServiceQuerying",
    "AimEnabled",
    "PreconnectToSearch",
)
DISABLED_FEATURES: tuple[str, ...] = (
    *PLAYWRIGHT_DISABLED_FEATURES,
    "WebRtcHideLocalIpsWithMdns",  # real host candidates (198.18.0.x), no mDNS names
    "DialMediaRouteProvider",
    "Translate",
    "CertificateTransparencyComponentUpdater",
    "AutofillServerCommunication",
)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def chromium_executable() -> str:
    """``$RTCW_CHROMIUM``, else Debian's ``/usr/bin/chromium``, else ``chromium`` on PATH."""
    env = os.environ.get("RTCW_CHROMIUM")
    if env:
        return env
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.path.exists(candidate):
            return candidate
    raise FileNotFoundError(
        "Chromium not found: install it with `apt-get install -y chromium` "
        "(or point RTCW_CHROMIUM at a chromium binary)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def artifact_path(name: str) -> Path:
    """A path under ``test-artifacts/`` (created), with the name made filesystem-safe."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "artifact"
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR / safe


# --------------------------------------------------------------------------------------
# JupyterLab server
# --------------------------------------------------------------------------------------


class LabServer:
    """A ``jupyter lab`` subprocess on 127.0.0.1 with fully isolated Jupyter/IPython dirs.

    Labextensions still come from the venv (``sys.prefix/share/jupyter`` is always on the
    Jupyter data path) and server extensions from ``sys.prefix/etc/jupyter``; user-level
    dirs (``~/.jupyter``, ``~/.local/share/jupyter``, ``~/.ipython``) are replaced by
    directories under ``base_dir``.
    """

    def __init__(self, base_dir: Path, *, extra_args: Sequence[str] = ()) -> None:
        self.base_dir = Path(base_dir)
        self.root_dir = self.base_dir / "root"
        self.config_dir = self.base_dir / "config"
        self.data_dir = self.base_dir / "data"
        self.runtime_dir = self.base_dir / "runtime"
        self.ipython_dir = self.base_dir / "ipython"
        self.log_path = self.base_dir / "jupyterlab.log"
        self.token = secrets.token_hex(24)
        self.port = 0
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self._log_file: Any = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- setup ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            JUPYTER_CONFIG_DIR=str(self.config_dir),
            JUPYTER_DATA_DIR=str(self.data_dir),
            JUPYTER_RUNTIME_DIR=str(self.runtime_dir),
            IPYTHONDIR=str(self.ipython_dir),
            JUPYTER_PLATFORM_DIRS="1",
            JUPYTER_PREFER_ENV_PATH="1",
            PYTHONUNBUFFERED="1",
            PYDEVD_DISABLE_FILE_VALIDATION="1",
            MPLBACKEND="agg",
        )
        # the venv must win over anything user-level
        env.pop("JUPYTER_PATH", None)
        env.pop("JUPYTER_CONFIG_PATH", None)
        return env

    def _write_config(self) -> None:
        for d in (self.root_dir, self.config_dir, self.data_dir, self.runtime_dir, self.ipython_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.runtime_dir, 0o700)
        kdir = self.data_dir / "kernels" / KERNEL_NAME
        kdir.mkdir(parents=True, exist_ok=True)
        (kdir / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": KERNEL_DISPLAY_NAME,
                    "language": "python",
                    "metadata": {"debugger": False},
                },
                indent=1,
            )
        )
        server_config = {
            "ServerApp": {
                "ip": "127.0.0.1",
                "port": self.port,
                "port_retries": 0,
                "open_browser": False,
                "allow_root": True,
                "root_dir": str(self.root_dir),
                "allow_remote_access": False,
                "terminals_enabled": False,
                # the server extension on, as installing the package does (the dev venv may predate its config.d file)
                "jpserver_extensions": {"rtc_widgets.server": True},
            },
            "IdentityProvider": {"token": self.token},
            "LabApp": {
                "news_url": None,
                "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
            },
            "LabServerApp": {"open_browser": False},
            # the kernel's ZMQ sockets stay on loopback
            "KernelManager": {"transport": "tcp", "ip": "127.0.0.1"},
            "MappingKernelManager": {"default_kernel_name": KERNEL_NAME},
            "KernelSpecManager": {"ensure_native_kernel": False},
        }
        (self.config_dir / "jupyter_server_config.json").write_text(json.dumps(server_config, indent=1))
        labconfig = self.config_dir / "labconfig"
        labconfig.mkdir(exist_ok=True)
        (labconfig / "page_config.json").write_text(
            json.dumps(
                {
                    "disabledExtensions": {
                        # the "receive Jupyter news?" toast and the update check
                        "@jupyterlab/apputils-extension:announcements": True,
                    }
                },
                indent=1,
            )
        )
        # the notebook opens with only the notebook (no restored workspace, no side panel state)
        settings = self.config_dir / "lab" / "user-settings" / "@jupyterlab"
        (settings / "apputils-extension").mkdir(parents=True, exist_ok=True)
        (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> None:
        t0 = time.monotonic()
        last_err = ""
        for _attempt in range(3):
            self.port = free_port()
            self._write_config()
            self._log_file = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterlab", "--no-browser"],
                cwd=self.root_dir,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    last_err = f"jupyter lab exited with {self.proc.returncode}"
                    break
                try:
                    status = self.api("GET", "/api/status", timeout=2)
                    if isinstance(status, dict) and "started" in status:
                        self.startup_seconds = time.monotonic() - t0
                        return
                except (OSError, urllib.error.URLError, ValueError) as exc:
                    last_err = repr(exc)
                time.sleep(0.2)
            else:
                last_err = f"no answer from {self.url}/api/status within {timeout:.0f}s ({last_err})"
            self.stop()
            if "address already in use" not in self.log_tail(30).lower():
                break
        raise RuntimeError(f"JupyterLab did not start: {last_err}\n--- log tail ---\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- REST ------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with self._opener.open(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def sessions(self) -> list[dict[str, Any]]:
        return self.api("GET", "/api/sessions")

    def kernels(self) -> list[dict[str, Any]]:
        return self.api("GET", "/api/kernels")

    def connection_file(self, kernel_id: str) -> Path:
        return self.runtime_dir / f"kernel-{kernel_id}.json"

    def new_notebook(self, name: str, cells: Sequence[str] = ("",)) -> Path:
        """Write ``name`` (an ``.ipynb``) into the server root with the ``rtcw`` kernelspec."""
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {
            "name": KERNEL_NAME,
            "display_name": KERNEL_DISPLAY_NAME,
            "language": "python",
        }
        nb.metadata["language_info"] = {"name": "python"}
        nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
        path = self.root_dir / name
        nbformat.write(nb, path)
        return path


# --------------------------------------------------------------------------------------
# Route B: a kernel client
# --------------------------------------------------------------------------------------


class KernelError(AssertionError):
    """Code executed through ``KernelClient.execute`` raised; carries the traceback."""

    def __init__(self, ename: str, evalue: str, traceback: str, code: str) -> None:
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback
        self.code = code
        super().__init__(f"{ename}: {evalue}\n--- code ---\n{code}\n--- traceback ---\n{traceback}")


class KernelTimeout(TimeoutError):
    pass


@dataclass
class ExecResult:
    """What one ``execute`` produced (outputs whose parent is our request only)."""

    stdout: str = ""
    stderr: str = ""
    #: ``text/plain`` of the cell's last expression (``Out[n]``), or None
    result: str | None = None
    #: data bundles of display_data messages, in order
    displays: list[dict[str, Any]] = field(default_factory=list)
    execution_count: int | None = None
    seconds: float = 0.0

    def __str__(self) -> str:
        return self.stdout + (self.result or "")


class KernelClient:
    """Executes code in a running kernel over ZMQ, next to the page's own connection."""

    def __init__(self, connection_file: Path, ready_timeout: float = 30.0) -> None:
        from jupyter_client import BlockingKernelClient

        self.connection_file = Path(connection_file)
        self.client = BlockingKernelClient(connection_file=str(self.connection_file))
        self.client.load_connection_file()
        self.client.start_channels()
        # also proves the iopub subscription is live (avoids ZMQ's slow-joiner loss)
        self.client.wait_for_ready(timeout=ready_timeout)

    def execute(self, code: str, timeout: float = 30.0) -> ExecResult:
        """Run ``code`` (top-level ``await`` allowed); raise KernelError / KernelTimeout."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        msg_id = self.client.execute(code, store_history=False, allow_stdin=False, stop_on_error=False)
        res = ExecResult()
        error: KernelError | None = None
        idle = False
        reply: dict[str, Any] | None = None
        while not (idle and reply is not None):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KernelTimeout(
                    f"kernel did not finish within {timeout}s (idle={idle}, reply={reply is not None})"
                    f"\n--- code ---\n{code}\n--- stdout so far ---\n{res.stdout}\n--- stderr ---\n{res.stderr}"
                )
            if not idle:
                try:
                    msg = self.client.get_iopub_msg(timeout=min(remaining, 0.5))
                except queue.Empty:
                    msg = None
                if msg is not None and msg["parent_header"].get("msg_id") == msg_id:
                    kind = msg["msg_type"]
                    content = msg["content"]
                    if kind == "stream":
                        if content.get("name") == "stderr":
                            res.stderr += content.get("text", "")
                        else:
                            res.stdout += content.get("text", "")
                    elif kind == "execute_result":
                        res.result = content.get("data", {}).get("text/plain")
                        res.execution_count = content.get("execution_count")
                    elif kind == "display_data":
                        res.displays.append(content.get("data", {}))
                    elif kind == "error":
                        error = KernelError(
                            content.get("ename", "?"),
                            content.get("evalue", ""),
                            strip_ansi("\n".join(content.get("traceback", []))),
                            code,
                        )
                    elif kind == "status" and content.get("execution_state") == "idle":
                        idle = True
            if reply is None:
                try:
                    msg = self.client.get_shell_msg(timeout=0 if not idle else min(remaining, 0.5))
                except queue.Empty:
                    msg = None
                if msg is not None and msg["parent_header"].get("msg_id") == msg_id:
                    reply = msg
        res.seconds = time.monotonic() - t0
        assert reply is not None
        content = reply["content"]
        if error is None and content.get("status") == "error":
            error = KernelError(
                content.get("ename", "?"),
                content.get("evalue", ""),
                strip_ansi("\n".join(content.get("traceback", []))),
                code,
            )
        if error is None and content.get("status") == "aborted":
            error = KernelError("Aborted", "execution aborted", "", code)
        if error is not None:
            raise error
        if res.execution_count is None:
            res.execution_count = content.get("execution_count")
        return res

    def eval(self, expr: str, timeout: float = 30.0) -> Any:
        """Value of the Python expression ``expr`` in the kernel, moved over JSON."""
        marker = "__RTCW_JSON__"
        code = f"import json as _rtcw_json\nprint({marker!r} + _rtcw_json.dumps(({expr})))\ndel _rtcw_json\n"
        out = self.execute(code, timeout=timeout).stdout
        for line in reversed(out.splitlines()):
            if line.startswith(marker):
                return json.loads(line[len(marker) :])
        raise AssertionError(f"eval({expr!r}): no JSON line in output {out!r}")

    def close(self) -> None:
        try:
            self.client.stop_channels()
        except Exception:
            pass


# --------------------------------------------------------------------------------------
# The probe widget: an inline anywidget that reports its model to the page
# --------------------------------------------------------------------------------------

#: Executed in the kernel (route B) to define ``_RtcwProbe``. In the page, ``initialize``
#: (runs once per model, also without any view):
#:   * appends ``tag`` to ``globalThis.__rtcwSeen``;
#:   * answers ``echo = "seen:" + tag`` back to the kernel (a page -> kernel round trip);
#:   * exposes the page's widget manager as ``globalThis.__rtcwModelState(model_id)``, an
#:     async function returning the JSON state of any widget model the page holds, or null.
#: ``render`` appends to ``globalThis.__rtcwRendered`` and shows ``rtcw probe <tag>``.
PROBE_DEFINITION = r'''
import anywidget as _rtcw_anywidget
import traitlets as _rtcw_traitlets

class _RtcwProbe(_rtcw_anywidget.AnyWidget):
    _esm = """
    export default {
      initialize({ model }) {
        const tag = model.get("tag");
        const wm = model.widget_manager;
        globalThis.__rtcwModelState = async (id) => {
          let m;
          try { m = await wm.get_model(id); } catch (e) { return null; }
          if (!m) return null;
          const state = {};
          for (const [k, v] of Object.entries(m.attributes)) {
            try { state[k] = JSON.parse(JSON.stringify(v)); } catch (e) { state[k] = String(v); }
          }
          return state;
        };
        globalThis.__rtcwSetModel = async (id, key, value) => {
          const m = await wm.get_model(id);
          m.set(key, value);
          m.save_changes();
        };
        // send a custom comm message from the page to any model (fuzzing the kernel end)
        globalThis.__rtcwSendCustom = async (id, contents) => {
          const m = await wm.get_model(id);
          for (const c of contents) m.send(c);
          return contents.length;
        };
        // record the custom messages the kernel sends to a model
        globalThis.__rtcwListen = async (id) => {
          const m = await wm.get_model(id);
          const got = (globalThis.__rtcwCustom = globalThis.__rtcwCustom || {})[id] = [];
          m.on("msg:custom", (c) => got.push(c));
        };
        globalThis.__rtcwSeen = (globalThis.__rtcwSeen || []).concat([tag]);
        model.set("echo", "seen:" + tag);
        model.save_changes();
      },
      render({ model, el }) {
        const tag = model.get("tag");
        globalThis.__rtcwRendered = (globalThis.__rtcwRendered || []).concat([tag]);
        el.classList.add("rtcw-probe");
        el.dataset.tag = tag;
        el.textContent = "rtcw probe " + tag;
      },
    };
    """
    tag = _rtcw_traitlets.Unicode("").tag(sync=True)
    echo = _rtcw_traitlets.Unicode("").tag(sync=True)

_rtcw_probes = globals().setdefault("_rtcw_probes", {})
'''


# --------------------------------------------------------------------------------------
# A notebook open in a real page
# --------------------------------------------------------------------------------------


class Notebook:
    """A notebook open in its own browser context/page, with its kernel.

    Attributes: ``page`` (Playwright Page), ``kernel_id``, ``session_id``, ``kernel``
    (KernelClient, route B), ``name`` / ``path`` (the .ipynb), ``url``, ``lab``,
    ``console`` (list of "[type] text" lines from the page console and page errors),
    ``ready_seconds`` (page open -> kernel idle in the status bar -> client ready).
    """

    def __init__(self, lab: LabServer, browser: Any, name: str, *, ready_timeout: float = 60.0) -> None:
        self.lab = lab
        self.browser = browser
        self.name = name
        self.path = lab.new_notebook(name)
        self.url = f"{lab.url}/lab/tree/{name}?token={lab.token}&reset"
        self.console: list[str] = []
        self.kernel_id: str | None = None
        self.session_id: str | None = None
        self.kernel: KernelClient = None  # type: ignore[assignment]
        self._ui_cells = 0
        self._probe_defined = False
        t0 = time.monotonic()
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        try:
            self.context.grant_permissions(["camera", "microphone"], origin=lab.url)
        except Exception:
            pass
        self.page = self.context.new_page()
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda exc: self.console.append(f"[pageerror] {exc}"))
        self.page.on("crash", lambda _p: self.console.append("[crash] page crashed"))
        self.page.set_default_timeout(30_000)
        try:
            self.page.goto(self.url, wait_until="domcontentloaded", timeout=60_000)
            self._wait_ready(ready_timeout)
        except BaseException as exc:
            saved = self.save_failure_artifacts(f"not-ready-{Path(name).stem}")
            self.close()
            raise RuntimeError(
                f"notebook {name} did not become ready: {exc!r}\n"
                f"artifacts: {', '.join(map(str, saved))}\n"
                f"--- page console (tail) ---\n" + "\n".join(self.console[-40:]) + "\n"
                f"--- jupyterlab log (tail) ---\n{lab.log_tail(40)}"
            ) from exc
        self.ready_seconds = time.monotonic() - t0

    def _on_console(self, msg: Any) -> None:
        try:
            self.console.append(f"[{msg.type}] {msg.text}")
        except Exception as exc:  # never let a logging callback break a test
            self.console.append(f"[console-error] {exc!r}")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        # 1. the page created a session (and kernel) for this path
        while True:
            for s in self.lab.sessions():
                if s.get("path") == self.name and s.get("kernel"):
                    self.session_id = s["id"]
                    self.kernel_id = s["kernel"]["id"]
            if self.kernel_id:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"no session for {self.name} after {timeout}s")
            time.sleep(0.2)
        # 2. the page's kernel connection is live: the status bar (not the toolbar) says Idle
        remaining = max(1.0, deadline - time.monotonic())
        self.page.locator("#jp-main-statusbar").get_by_text(re.compile(r"\|\s*Idle")).first.wait_for(
            state="visible", timeout=remaining * 1000
        )
        # 3. our own ZMQ client on the kernel's connection file
        cf = self.lab.connection_file(self.kernel_id)
        while not cf.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"connection file {cf} missing")
            time.sleep(0.1)
        self.kernel = KernelClient(cf, ready_timeout=max(5.0, deadline - time.monotonic()))

    # -- route A -------------------------------------------------------------------------

    def cell(self, index: int) -> Any:
        return self.page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(index)

    def run_cell_ui(self, code: str, timeout: float = 60.0) -> Any:
        """Put ``code`` into the next unused cell, Shift+Enter, wait until it has run.

        Returns the cell's ``.jp-OutputArea-output`` locator (may match several outputs).
        The text is inserted in one go (no per-key auto-indent or bracket closing).
        """
        index = self._ui_cells
        cell = self.cell(index)
        cell.wait_for(state="visible", timeout=timeout * 1000)
        editor = cell.locator(".cm-content")
        editor.click()
        self.page.keyboard.press("ControlOrMeta+a")
        self.page.keyboard.press("Delete")
        self.page.keyboard.insert_text(code)
        self.page.keyboard.press("Shift+Enter")
        self._ui_cells += 1
        prompt = cell.locator(".jp-InputArea-prompt")
        self.page.wait_for_function(
            "el => /\\[\\d+\\]/.test(el.textContent)",
            arg=prompt.element_handle(timeout=timeout * 1000),
            timeout=timeout * 1000,
        )
        return cell.locator(".jp-OutputArea-output")

    def screenshot(self, name: str, full_page: bool = False) -> Path:
        """Save a PNG under ``test-artifacts/`` and return its path."""
        if not name.endswith(".png"):
            name += ".png"
        path = artifact_path(name)
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    # -- probe widget ----------------------------------------------------------------------

    def create_probe(self, tag: str, timeout: float = 30.0) -> float:
        """Create a probe anywidget with ``tag`` through route B; wait until the page's
        widget manager has it (``initialize`` ran) and the page answered the kernel.

        Returns the seconds it took. The widget lives in the kernel as ``_rtcw_probes[tag]``.
        """
        t0 = time.monotonic()
        if not self._probe_defined:
            self.kernel.execute(PROBE_DEFINITION)
            self._probe_defined = True
        self.kernel.execute(f"_rtcw_probes[{tag!r}] = _RtcwProbe(tag={tag!r})")
        self.page.wait_for_function(
            "tag => (globalThis.__rtcwSeen || []).includes(tag)",
            arg=tag,
            timeout=timeout * 1000,
            polling=100,
        )
        deadline = t0 + timeout
        while self.kernel.eval(f"_rtcw_probes[{tag!r}].echo") != f"seen:{tag}":
            if time.monotonic() > deadline:
                raise TimeoutError(f"probe {tag!r}: the page never answered the kernel")
            time.sleep(0.1)
        return time.monotonic() - t0

    def seen_tags(self) -> list[str]:
        return self.page.evaluate("() => globalThis.__rtcwSeen || []")

    def model_state(self, model_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """State of widget model ``model_id`` as the PAGE's widget manager holds it.

        Waits until the page has the model. Creates a probe first if none exists (the
        probe exposes the widget manager). Values that are not JSON come back as strings.
        """
        if not self._probe_defined or not self.seen_tags():
            self.create_probe("__harness__", timeout=timeout)
        handle = self.page.wait_for_function(
            "async id => await globalThis.__rtcwModelState(id)",
            arg=model_id,
            timeout=timeout * 1000,
            polling=100,
        )
        return handle.json_value()

    def send_custom(self, model_id: str, contents: Sequence[Any]) -> int:
        """Send each of ``contents`` as a custom comm message from the PAGE to the kernel's model."""
        if not self._probe_defined or not self.seen_tags():
            self.create_probe("__harness__")
        return self.page.evaluate("([id, cs]) => globalThis.__rtcwSendCustom(id, cs)", [model_id, list(contents)])

    def listen_custom(self, model_id: str) -> None:
        """Start recording the custom messages the kernel sends to ``model_id`` (see ``custom_received``)."""
        if not self._probe_defined or not self.seen_tags():
            self.create_probe("__harness__")
        self.page.evaluate("id => globalThis.__rtcwListen(id)", model_id)

    def custom_received(self, model_id: str) -> list[Any]:
        return self.page.evaluate("id => (globalThis.__rtcwCustom || {})[id] || []", model_id)

    def set_model_value(self, model_id: str, key: str, value: Any) -> None:
        """Set ``key`` on a widget model from the PAGE side and sync it to the kernel."""
        if not self._probe_defined or not self.seen_tags():
            self.create_probe("__harness__")
        self.page.evaluate("([id, k, v]) => globalThis.__rtcwSetModel(id, k, v)", [model_id, key, value])

    # -- teardown --------------------------------------------------------------------------

    def save_failure_artifacts(self, prefix: str) -> list[Path]:
        saved: list[Path] = []
        try:
            saved.append(self.screenshot(prefix + ".png", full_page=True))
        except Exception as exc:
            self.console.append(f"[harness] screenshot failed: {exc!r}")
        log = artifact_path(prefix + ".console.log")
        log.write_text("\n".join(self.console) + "\n")
        saved.append(log)
        return saved

    def close(self) -> None:
        if self.kernel is not None:
            self.kernel.close()
        try:
            self.context.close()
        except Exception:
            pass
        try:
            if self.session_id:
                self.lab.api("DELETE", f"/api/sessions/{self.session_id}", timeout=30)
            elif self.kernel_id:
                self.lab.api("DELETE", f"/api/kernels/{self.kernel_id}", timeout=30)
        except (OSError, urllib.error.URLError):
            pass


def merged_chromium_args(extra_args: Sequence[str] = ()) -> list[str]:
    """Our flags + ``extra_args``; every ``--disable-features=`` merged into one switch."""
    disabled = list(DISABLED_FEATURES)
    args: list[str] = []
    for arg in [*CHROMIUM_ARGS, *extra_args]:
        if arg.startswith("--disable-features="):
            disabled += [f for f in arg.split("=", 1)[1].split(",") if f]
        else:
            args.append(arg)
    return [*args, "--disable-features=" + ",".join(dict.fromkeys(disabled))]
