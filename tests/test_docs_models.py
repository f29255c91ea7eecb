"""Generated docs that measured the shipped default model name it (training.teachers.model_stamp):
a doc whose stamp is not the shipped file's was measured on a model we no longer ship and must be
regenerated with the command it quotes. A doc that keeps older runs below its newest (performance.md's
Results, newest first) is judged by its first stamp: the older sections say what they measured."""
from __future__ import annotations

import json
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


def test_uncertainty_results_quote_the_report():
    """docs/uncertainty.md's "Results" section quotes the generated report (docs/uncertainty-report.json,
    written with the .md by `python -m training.uq_report`): a report regenerated without the prose
    that cites it fails here, naming the figure to update (the prose had drifted by hand before)."""
    report = json.loads((REPO / "docs" / "uncertainty-report.json").read_text())
    page = (REPO / "docs" / "uncertainty.md").read_text()
    results = page.split("\n## Results (from uncertainty-report.md)\n", 1)[1].split("\n## ", 1)[0]
    auroc = {name: kinds["all"] for name, kinds in report["auroc"].items()}
    sel = report["selective"]["engine"]
    err = dict(zip((round(c, 2) for c in sel["coverage"]), sel["mean_abs_error"]))
    snr = report["snr"]["engine"]
    answered = dict(zip(snr["levels"], snr["answered"]))

    def pct(share: float) -> str:  # rounded as the report rounds; the page writes "17 %" for its "17%"
        return f"{share:.0%}".rstrip("%")

    quoted = [
        f"{auroc['engine: sigma']:.3f} (σ), {auroc['engine: 1 - speech prob']:.3f} (speech probability)",
        f"silero-vad {auroc['silero-vad: 1 - speech prob']:.3f}",
        f"{snr['spearman_vs_minus_snr']:.3f} [",
        f"{err[1.0]:.3f} at 100 % coverage, {err[0.5]:.3f} at 50 %, {err[0.2]:.3f} at 20 %",
        f"area {sel['area']:.4f}",
        f"{sel['rises']} rises",
        f"{pct(sel['random']['share_area_at_most_own'])} % of {sel['random']['n']} random orders",
        " / ".join(pct(answered[lv]) for lv in (0.0, 5.0, 10.0, 15.0)) + " % at 0 / 5 / 10 / 15 dB SNR",
        f"{pct(report['decisions']['engine']['speech'].get('reliable', 0))} % of the held-out speech",
        f"mean AUROC of {auroc['mc dropout: sigma']:.3f} and {auroc['deep ensemble: sigma']:.3f}",
    ]
    missing = [q for q in quoted if q not in results]
    assert not missing, f"docs/uncertainty.md's Results no longer quote the report: {missing}"
