"""Generated docs that measured the shipped default model name it (training.teachers.model_stamp):
a doc whose stamp is not the shipped file's was measured on a model we no longer ship and must be
regenerated with the command it quotes. A doc that keeps older runs below its newest (performance.md's
Results, newest first) is judged by its first stamp: the older sections say what they measured."""
from __future__ import annotations

import re

from conftest import DEFAULT_W2S, REPO

from training.teachers import model_stamp

# docs whose numbers are the shipped model's, and the command that regenerates each
MEASURED = {
    "docs/engine.md": "python scripts/stream_ccc.py --write",
    "docs/uncertainty-report.md": "python -m training.uq_report (the command at its top)",
    "docs/performance.md": "python scripts/bench.py --runs 40 (its newest Results section)",
}


def test_generated_docs_measured_the_shipped_model():
    want = model_stamp(DEFAULT_W2S)
    for doc, command in MEASURED.items():
        stamps = re.findall(r"default\.w2s sha256 [0-9a-f]{16}", (REPO / doc).read_text())
        assert stamps, f"{doc} names no model: regenerate it ({command})"
        assert stamps[0] == want, f"{doc} measured {stamps[0]}, the package ships {want}: {command}"
