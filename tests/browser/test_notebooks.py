"""Every tutorial in notebooks/ runs in a real JupyterLab page, cell by cell, as a user would run it."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from harness import REPO_ROOT, Notebook

pytestmark = pytest.mark.browser

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))

#: What a correct run prints, per notebook: (cell index among code cells, regex its output must match).
EXPECTED = {
    "01-data-channels.ipynb": [
        (1, r"\('connected', 262144\)"),
        (5, r"echo round trip: median \d+\.\d+ ms"),
        (6, r"ping: median \d+\.\d+ ms"),
        (8, r"\b(4[5-9]|50) of 50 echoes handled during the sleep"),
        (9, r"'closed'"),
    ],
    "02-stats.ipynb": [
        (1, r"'connected'"),
        (3, r"sent 1,000,000 bytes"),
        (6, r"peak kernel → browser, as the browser measured it: \d{3,} kbit/s"),
        (7, r"the browser received (0\.9\d|1\.0\d) MB on the channel"),
        (9, r"browser\s+new → connecting → connected"),
        (9, r"kernel\s+new → connecting → connected"),
        (11, r"selected pair: kernel (host|prflx) udp ↔ browser (host|prflx)"),
        (12, r"\('application', 'UDP/DTLS/SCTP', 'sendrecv'\)"),
        (15, r"the browser sends \d+ fps, the kernel receives \d+ fps"),
        (16, r"2 peer\(s\) saved"),
        (16, r"DataChannel \w+: \d+ samples, \d+ events"),
        (17, r"'closed'"),
    ],
    "03-camera-and-microphone.ipynb": [
        (1, r"\(\(480, 640, 3\), dtype\('uint8'\)\)"),
        (3, r"[1-9]\d* frames measured in 2 s while the cell slept; received \d+, skipped \d+, \d+ fps now"),
        (4, r"clip\.mp4 h264 640x480 [12]\.\d s"),
        (5, r"3[12]\d{3} samples \(\d\.\d\d s\), loudest frequency \d+ Hz"),
        (6, r"\('closed', 'closed'\)"),
    ],
    "04-output-and-hard-networks.ipynb": [
        (0, r"camera: connected \| output: connected"),
        (1, r"kernel: received [1-9]\d* frames, sent [1-9]\d* inverted ones \(640x480\)"),
        (1, r"browser: decodes [1-9]\d* fps of them"),
        (2, r"queued 2[34]\d{3} samples at 48000 Hz \(0\.[45]\d s\), \d+ played so far"),
        (3, r"transport 'webrtc', error ''"),
        (3, r"selected pair: kernel (host|prflx) udp ↔ browser (host|prflx) udp"),
        (4, r"transports: relay relay relay"),
        (4, r"relay requested \(relay_after=0\)\. Media and data now travel through the Jupyter server"),
        (5, r"snapshot \(480, 640, 3\), recording \(16000, 1\), loudest frequency (3[6-9]\d|4[0-4]\d) Hz"),
        (5, r"the relayed output sent [1-9]\d* frames of 320x240"),
        (6, r"relayed frames reach the kernel \d+ ms after capture, at [1-9]\d* fps"),
        (7, r"would use: \[\{'urls': 'turn:turn\.example\.org:443\?transport=tcp', 'username': 'workshop'"),
        (7, r"restored: \[\]"),
        (8, r"RTC_WIDGETS_ICE_SERVERS → \[\{'urls': 'turns:turn\.example\.org:443'"),
        (8, r"unset → \[\]"),
        (9, r"\['closed', 'closed', 'closed', 'closed', 'closed', 'closed'\]"),
    ],
}


def test_there_are_tutorials() -> None:
    assert NOTEBOOKS, "notebooks/ holds no tutorial"
    assert {p.name for p in NOTEBOOKS} <= set(EXPECTED), "add the expected outputs of every tutorial to EXPECTED"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_tutorial_runs_cell_by_cell_without_errors(path: Path, notebook: Notebook) -> None:
    cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    outputs: list[str] = []
    for i, source in enumerate(cells):
        out = notebook.run_cell_ui(source, timeout=90)
        text = "\n".join(out.all_inner_texts())
        outputs.append(text)
        assert not re.search(r"Traceback|Error\b", text), f"cell {i} of {path.name} failed:\n{source}\n---\n{text}"
    notebook.screenshot(f"notebook-{path.stem}", full_page=True)
    for index, pattern in EXPECTED[path.name]:
        assert re.search(pattern, outputs[index]), f"cell {index} of {path.name}: {outputs[index]!r} !~ {pattern}"
