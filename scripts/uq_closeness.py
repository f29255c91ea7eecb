"""Does an A/D/V near the middle say the engine is unsure? (fifteenth round, docs/uncertainty.md)

    python scripts/uq_closeness.py   # --cache: training.uq_select's clips (its default)

A student trained for CCC pulls what it cannot tell toward the middle, so a prediction near the
centre of the targets could mark a clip whose error is large. This scores each clip of the shipped
engine (wav2small/models/default.w2s, int8) by its largest sigma plus k times how close each
dimension is to the centre, relu(1 - |A/D/V - centre| / sd), the centre and sd being those of the
annotated validation targets, and prints, on validation (training.uq_select's clips; --cache as
there) and on the report's evaluation clips (training.uq_report's set, 4 s):

  * selective prediction over clean and corrupted annotated clips: area and rises (uq_report's measures);
  * Spearman(score, -SNR) over white and babble noise copies;
  * mean AUROC of the score for speech against each non-speech kind.

k is to be chosen on validation; the evaluation columns are shown to say whether the choice holds.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from training.uq_report import area, auroc, build_eval_set, count_rises, selective_curve, spearman
from training.uq_select import DEFAULT_CACHE, engine_runner, load_clips

SHIPPED = Path(__file__).resolve().parent.parent / "wav2small" / "models" / "default.w2s"


def score(out: np.ndarray, k: float, centre: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """out: (N, 7) engine outputs (A/D/V, log sigmas, speech logit) as floats."""
    close = np.maximum(0.0, 1.0 - np.abs(out[:, :3] - centre) / sd)
    return (np.exp(out[:, 3:6]) + k * close).max(axis=1)


def clip_errors(sets: dict) -> np.ndarray:
    """Mean absolute A/D/V error against the annotator of each clean clip, then each corrupted copy."""
    out = np.concatenate([sets["clean"], sets["corrupted"]])
    t = np.concatenate([sets["targets"], sets["targets"][sets["corrupted_of"]]])
    return np.abs(out[:, :3] - t).mean(axis=1)


def measures(sets: dict, score: Callable[[np.ndarray], np.ndarray]) -> tuple[float, int, float, float]:
    """(selective area, rises, Spearman(score, -SNR), mean AUROC) of one set of outputs (rows: the
    engine's outputs first, A/D/V in columns 0-2), each clip scored by score(rows)."""
    cover, err = selective_curve(clip_errors(sets), score(np.concatenate([sets["clean"], sets["corrupted"]])))
    sp = score(sets["speech"])
    au = float(np.mean([auroc(score(v), sp) for v in sets["nonspeech"].values()]))
    return area(cover, err), count_rises(err), spearman(score(sets["noisy"]), -sets["snr"]), au


def validation_sets(cache: Path, run) -> dict:
    d = load_clips(cache, lambda m: print(m, file=sys.stderr))
    n = len(d["targets"])
    speech = run(d["speech"])
    return {"targets": d["targets"], "clean": speech[:n], "speech": speech,
            "corrupted": run([a for *_, a in d["corrupted"]]),
            "corrupted_of": [i for i, *_ in d["corrupted"]], "cells": [(i, k, lv) for i, k, lv, _ in d["corrupted"]],
            "nonspeech": {k: run(v) for k, v in d["nonspeech"].items()},
            "noisy": run(d["noisy"]), "snr": d["snr"]}


def evaluation_sets(run) -> dict:
    es = build_eval_set(150, 8, 60, 4.0, 30, 0, lambda m: print(m, file=sys.stderr))
    snr_rows = [(a, lvl) for _, kind, lvl, a in es.corrupted if kind in ("white", "babble")]
    return {"targets": es.targets, "clean": run(es.annotated), "speech": run([a for _, a in es.speech]),
            "corrupted": run([a for *_, a in es.corrupted]), "corrupted_of": [i for i, *_ in es.corrupted],
            "cells": [(i, k, lv) for i, k, lv, _ in es.corrupted], "nonspeech": {k: run(v) for k, v in es.nonspeech.items()},
            "noisy": run([a for a, _ in snr_rows]), "snr": np.array([lvl for _, lvl in snr_rows], float)}


def probe_parser(doc: str | None, values: str, default: str, what: str) -> argparse.ArgumentParser:
    """The command line of a probe of the shipped engine: --cache and the values it tries."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="training.uq_select's clip cache")
    p.add_argument(values, default=default, help=what)
    return p


def shipped_sets(cache: str) -> tuple[dict, dict]:
    """The shipped engine's outputs on the validation sets and on the report's evaluation sets."""
    run, _ = engine_runner(SHIPPED)
    return validation_sets(Path(cache), run), evaluation_sets(run)


def main(argv: list[str] | None = None) -> int:
    args = probe_parser(__doc__, "--weights", "0,0.01,0.02,0.03,0.05,0.08", "values of k").parse_args(argv)
    val, ev = shipped_sets(args.cache)
    centre, sd = val["targets"].mean(axis=0), val["targets"].std(axis=0)
    print("| k | val. area | rises | Spearman(score, −SNR) | AUROC | eval. area | rises | Spearman | AUROC |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in (float(x) for x in args.weights.split(",")):
        (a, r, s, u), (ea, er, es_, eu) = (measures(sets, lambda o, k=k: score(o, k, centre, sd)) for sets in (val, ev))
        print(f"| {k:g} | {a:.4f} | {r} | {s:.3f} | {u:.3f} | {ea:.4f} | {er} | {es_:.3f} | {eu:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
