"""Students side by side from their train.json: CCC against the annotator and per-voice bias.

    python scripts/student_voices.py training/default runs/dv50_s2 --voices=grandma,whisperf
    python scripts/student_voices.py training/default runs/dvc_s4 --rule_clips   # and the rule's clips

training.distill writes, for the prosody corpus, the best step's validation and test CCC and per
held-out voice the mean signed error of A/D/V ("per_voice"). This prints one Markdown row per run:
its seed and --derived_voices, validation and test mean CCC, test CCC per dimension, and the bias of
each voice asked for (validation or test, wherever it is held out). Nothing is run again, except
with --rule_clips: a run's validation CCC is on its own seed's draw of clips, while the mean CCC line
of training.uq_select's rule is on seed 0's, so --rule_clips also runs each student (float) on the
validation clips of uq_select's cache and adds their mean CCC A / D / V, the number a head of that
student starts from.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def row(run: Path, voices: list[str]) -> str:
    try:
        record = json.loads((run / "train.json").read_text())
    except FileNotFoundError:
        raise SystemExit(f"{run}: no train.json (not a finished training.distill run)") from None
    cfg, ccc = record["config"], record["ccc"]
    per_voice = {v: b for split in record.get("per_voice", {}).values() for v, b in split.items()}
    cells = [str(run), str(cfg.get("seed")), f"{cfg.get('derived_voices', 0.0):g}",
             f"{ccc['val']['mean']:.3f}", f"{ccc['test']['mean']:.3f}",
             " / ".join(f"{ccc['test'][k]:.3f}" for k in ("arousal", "dominance", "valence"))]
    for v in voices:
        cells.append(" / ".join(f"{b:+.3f}" for b in per_voice[v]["bias"]) if v in per_voice else "–")
    return "| " + " | ".join(cells) + " |"


def rule_clips_ccc(run: Path, cache: dict) -> np.ndarray:
    """CCC A / D / V of the run's float student on the cache's validation clips (training.uq_select's,
    where its rule reads mean CCC), each clip whole."""
    import torch

    from training.distill import load_student
    from training.metrics import ccc_numpy

    model, _, _ = load_student(run)
    with torch.no_grad():
        out = np.concatenate([model(torch.from_numpy(np.asarray(c, np.float32)[None])).numpy()[:, :3]
                              for c in cache["val_clips"]])
    return ccc_numpy(out, np.asarray(cache["val_targets"], np.float64))


def load_cache(path: Path) -> dict:
    import pickle

    try:
        with open(path, "rb") as f:
            cache = pickle.load(f)
    except FileNotFoundError:
        raise SystemExit(f"{path}: no clip cache; python -m training.uq_select RUN builds it, or give "
                         "--rule_clips=PATH") from None
    if "val_clips" not in cache or "val_targets" not in cache:
        raise SystemExit(f"{path}: not a training.uq_select clip cache (no val_clips / val_targets)")
    return cache


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="training.distill output directories")
    p.add_argument("--voices", default="grandma", help="comma-separated held-out voices whose bias to show")
    p.add_argument("--rule_clips", nargs="?", const="", default=None, metavar="PATH",
                   help="also each student's CCC on training.uq_select's validation clips (its cache; "
                        "default: the cache uq_select uses)")
    args = p.parse_args(argv)
    voices = [v.strip() for v in args.voices.split(",") if v.strip()]
    cache = None
    if args.rule_clips is not None:
        from training.uq_select import DEFAULT_CACHE

        cache = load_cache(Path(args.rule_clips) if args.rule_clips else DEFAULT_CACHE)
    print("| run | seed | derived voices | val CCC | test CCC | test A / D / V | "
          + " | ".join(f"{v}: bias A / D / V" for v in voices)
          + (" | rule's clips: CCC A / D / V (mean)" if cache is not None else "") + " |")
    print("|" + "---|" * (6 + len(voices) + (cache is not None)))
    for run in args.runs:
        line = row(run, voices)
        if cache is not None:
            c = rule_clips_ccc(run, cache)
            line += " " + " / ".join(f"{x:.3f}" for x in c) + f" ({float(np.mean(c)):.4f}) |"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
