"""Would sigma's selective curve fall under a mean that noise makes worse? (thirty-ninth round,
docs/uncertainty.md)

    python scripts/uq_mean_swap.py       # the shipped model and deep ensemble, the report's clips (~2.5 min)

The shipped head's A/D/V are better on mildly corrupted speech than on clean speech (the eighth
round), so a sigma that rises with noise, as Spearman(sigma, -SNR) >= 0.8 asks, drops low-error
clips first. The distilled student the head starts from has no such robustness: its error grows
with noise. This keeps the report's clips (training.uq_report's evaluation set, its seed and cuts)
and pairs each mean -- the engine's, the distilled student's (float), the deep ensemble's (float)
-- with each ranking -- the engine's sigma, the ensemble's spread -- and measures what the report
measures of the selective curve: error at full coverage, area, rises of 19, the share of 200
random orders with no larger area, the corruption-known and voice-and-corruption-known oracles,
and how many of the 32 corruption cells have less error than clean speech. Nothing is trained: a
head trained to keep the student's mean under noise would differ, but no better than these rows'
oracles.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training.uq_report import report_eval_set, run_engine, run_ensemble, selective_measures  # noqa: E402


def row(mean: np.ndarray, unc: np.ndarray, targets: np.ndarray, corrupted: list[tuple[int, str, float]],
        voices: list[str]) -> dict:
    """The selective measures of one (mean, ranking) pair over clean clips and their corrupted copies."""
    curve, _ = selective_measures(mean, unc, targets, len(targets), corrupted, voices)
    b = curve["bounds"]
    return {"error": curve["mean_abs_error"], "area": curve["area"], "rises": curve["rises"],
            "random_share": curve["random"]["share_area_at_most_own"],
            "corruption_known": (b["corruption_known"]["area"], b["corruption_known"]["rises"]),
            "voice_and_corruption_known": (b["voice_and_corruption_known"]["area"],
                                           b["voice_and_corruption_known"]["rises"]),
            "cells_below_clean": b["cells_below_clean"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/uq_mean_swap.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--w2s", default="wav2small/models/default.w2s", help="model with an uncertainty head")
    p.add_argument("--student", default="training/default", help="the distilled student (a run directory)")
    p.add_argument("--ensemble", default="training/default,training/ens1,training/ens2",
                   help="comma-separated run directories of the deep ensemble")
    args = p.parse_args(argv)
    members = args.ensemble.split(",")
    for d in [args.student] + members:
        if not (Path(d) / "model.safetensors").is_file():
            p.error(f"{d}: no model.safetensors there (a run directory of training.distill is expected)")

    ev = report_eval_set(lambda m: print(m, file=sys.stderr))
    n = len(ev.targets)
    voices = [group for group, _ in ev.speech[:n]]
    clips = ev.annotated + [a for *_, a in ev.corrupted]
    engine = run_engine(args.w2s)(clips)
    ensemble = run_ensemble(members)(clips)
    means = {"engine": engine.mean, "distilled student (float)": run_ensemble([args.student])(clips).mean,
             "deep ensemble (float)": ensemble.mean}
    rankings = {"engine's σ": engine.uncertainty, "ensemble's spread": ensemble.uncertainty}

    print("| mean | ranked by | error at 100 / 50 / 20 / 5 % | area | rises of 19 | random orders no larger "
          "| corruption known: area, rises | voice and corruption known | cells below clean |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mname, mean in means.items():
        for uname, unc in rankings.items():
            r = row(mean, unc, ev.targets, ev.cells, voices)
            e = r["error"]
            print(f"| {mname} | {uname} | {e[0]:.4f} / {e[10]:.4f} / {e[16]:.4f} / {e[19]:.4f} | {r['area']:.4f} "
                  f"| {r['rises']} | {r['random_share']:.0%} "
                  f"| {r['corruption_known'][0]:.4f}, {r['corruption_known'][1]} "
                  f"| {r['voice_and_corruption_known'][0]:.4f}, {r['voice_and_corruption_known'][1]} "
                  f"| {r['cells_below_clean']} of 32 |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
