"""Does a mean pulled toward the middle make selective prediction fall? (thirty-second round,
docs/uncertainty.md)

    python scripts/uq_shrink.py   # --cache: training.uq_select's clips (its default)

The shipped head's error against the annotator is lower on mildly corrupted speech than on clean
speech, where its A/D/V keep the annotator's full spread (a CCC-trained mean); noise pulls the
outputs toward the middle. If that spread is what makes clean speech the worse part, a mean pulled
toward the middle everywhere, A' = c + k (A - c) with c the centre of the validation targets (the
mean-squared-error fit of a CCC-trained output shrinks it by about its correlation), would make
clean speech the better part, and the selective curve, whose most certain end is clean speech,
could fall. This scales the shipped engine's A/D/V (wav2small/models/default.w2s, int8) by k, keeps
its sigma as the score, and prints per k, on validation (training.uq_select's clips) and on the
report's evaluation clips (training.uq_report's set, 4 s): CCC against the annotator on the clean
annotated clips (mean of A/D/V), the selective area, how often the curve rises (of 19 steps), and
in how many of the 32 corruption cells the error is below the same clips' clean error.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from training.metrics import ccc_numpy
from training.uq_report import error_sources

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uq_closeness import clip_errors, measures, probe_parser, shipped_sets  # noqa: E402


def shrunk(sets: dict, k: float, centre: np.ndarray) -> dict:
    """The sets with every row's A/D/V (columns 0-2) pulled toward centre by k (1: unchanged)."""
    out = dict(sets)
    for key in ("clean", "speech", "corrupted", "noisy"):
        rows = sets[key].copy()
        rows[:, :3] = centre + k * (rows[:, :3] - centre)
        out[key] = rows
    return out


def max_sigma(rows: np.ndarray) -> np.ndarray:
    return np.exp(rows[:, 3:6]).max(axis=1)


def main(argv: list[str] | None = None) -> int:
    args = probe_parser(__doc__, "--k", "1,0.9,0.8,0.7,0.6", "values of k (1: the engine's own mean)").parse_args(argv)
    val, ev = shipped_sets(args.cache)
    centre = val["targets"].mean(axis=0)
    print("| k | val. CCC | area | rises | cells below clean | eval. CCC | area | rises | cells below clean |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in (float(x) for x in args.k.split(",")):
        cols = []
        for sets in (val, ev):
            s = shrunk(sets, k, centre)
            a, r, _, _ = measures(s, max_sigma)
            below = error_sources(clip_errors(s), len(s["clean"]), s["cells"])["cells_below_clean"]
            cols += [f"{float(np.mean(ccc_numpy(s['clean'][:, :3], s['targets']))):.3f}", f"{a:.4f}", str(r), str(below)]
        print(f"| {k:g} | " + " | ".join(cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
