"""Students side by side from their train.json: CCC against the annotator and per-voice bias.

    python scripts/student_voices.py training/default runs/dv50_s2 --voices=grandma,whisperf

training.distill writes, for the prosody corpus, the best step's validation and test CCC and per
held-out voice the mean signed error of A/D/V ("per_voice"). This prints one Markdown row per run:
its seed and --derived_voices, validation and test mean CCC, test CCC per dimension, and the bias of
each voice asked for (validation or test, wherever it is held out). Nothing is run again.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="training.distill output directories")
    p.add_argument("--voices", default="grandma", help="comma-separated held-out voices whose bias to show")
    args = p.parse_args(argv)
    voices = [v.strip() for v in args.voices.split(",") if v.strip()]
    print("| run | seed | derived voices | val CCC | test CCC | test A / D / V | "
          + " | ".join(f"{v}: bias A / D / V" for v in voices) + " |")
    print("|" + "---|" * (6 + len(voices)))
    for run in args.runs:
        print(row(run, voices))
    return 0


if __name__ == "__main__":
    sys.exit(main())
