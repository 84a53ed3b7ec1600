"""JupyterLab servers with the rtc_widgets server extension switched on or off explicitly.

A dev venv may predate the ``etc/jupyter/jupyter_server_config.d/rtc_widgets.json`` that installing the package
adds, so these servers name the extension in their own config; ``extension=False`` switches it off even where
the config.d file is installed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import LabServer, artifact_path

EXTENSION = "rtc_widgets.server"


class ExtLabServer(LabServer):
    """A LabServer with ``jpserver_extensions[rtc_widgets.server] = extension`` and extra server config."""

    def __init__(self, base_dir: Path, *, extension: bool, config: dict[str, Any] | None = None) -> None:
        super().__init__(base_dir)
        self.extension = extension
        self.extra_config = config or {}

    def _write_config(self) -> None:
        super()._write_config()
        path = self.config_dir / "jupyter_server_config.json"
        cfg = json.loads(path.read_text())
        cfg["ServerApp"]["jpserver_extensions"] = {EXTENSION: self.extension}
        for section, values in self.extra_config.items():
            cfg.setdefault(section, {}).update(values)
        path.write_text(json.dumps(cfg, indent=1))

    def bus_files(self) -> list[Path]:
        return sorted(self.runtime_dir.glob("rtc-widgets-bus-*.json"))


def serve_lab(tmp_path_factory: pytest.TempPathFactory, name: str, **kw: Any) -> Iterator[ExtLabServer]:
    """For a module fixture: an ExtLabServer that lives while the fixture does; its log lands in test-artifacts/."""
    server = ExtLabServer(tmp_path_factory.mktemp(name), **kw)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        try:
            artifact_path(f"{name}.log").write_bytes(server.log_path.read_bytes())
        except OSError:
            pass
