"""Does sigma rank unfamiliar voices once it knows how far a clip lies from the training speech?

    python scripts/uq_familiarity.py training/default_uq   # --cache: training.uq_select's clips (its default)

Float model only (the engine's numbers for the folded row come from training.familiarity and
training.uq_select --engine=1). The distance and the row are fitted as training.familiarity fits
them (the run's seed, training clips and real speech of the training speaker groups). For each
uncertainty score it prints, on validation (training.uq_select's clips) and on the report's
evaluation clips (training.uq_report's set, 4 s):

  * selective prediction over clean and corrupted annotated clips: area and rises (uq_report's measures);
  * AUROC of the score for speech against each non-speech kind (mean; silence and effects);
  * Spearman(score, -SNR) over the white and babble noise copies;
  * Spearman(score, error) over the clean annotated clips: does it rank unfamiliar voices?

Scores: the head's largest log sigma ("sigma"); plus weight * (log d - its mean over the fit clips),
d the squared whitened distance of the head inputs in `rank` principal directions ("quadratic":
needs rank x 338 more weights on the device); plus weight * the linear row fitted to log d
("folded row": what training.familiarity adds to the log-sigma rows, free on the device).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training.familiarity import FIT_ANNOTATED, FIT_SECONDS, Distance, fit_clips, fit_row, head_inputs  # noqa: E402
from training.model import load_safetensors  # noqa: E402
from training.uncertainty import N_VALUES  # noqa: E402
from training.uq_report import SNR_KINDS, auroc, report_eval_set, selective_measures, spearman  # noqa: E402
from training.uq_select import DEFAULT_CACHE, load_clips  # noqa: E402


def scored_sets(model, cache: Path, log) -> dict:
    """Head inputs of every clip group of the validation and evaluation sets, with what each needs."""
    val = load_clips(cache, log)
    n = len(val["targets"])
    ev = report_eval_set(log)
    snr_rows = [j for j, (_, kind, _, _) in enumerate(ev.corrupted) if kind in SNR_KINDS]
    return {
        "validation": {"annotated": head_inputs(model, val["speech"][:n] + [a for *_, a in val["corrupted"]]),
                       "targets": val["targets"], "corrupted": [(i, k, lv) for i, k, lv, _ in val["corrupted"]],
                       "speech": head_inputs(model, val["speech"]),
                       "nonspeech": {k: head_inputs(model, v) for k, v in val["nonspeech"].items()},
                       "noisy": head_inputs(model, val["noisy"]), "snr": val["snr"]},
        "evaluation": {"annotated": head_inputs(model, ev.annotated + [a for *_, a in ev.corrupted]),
                       "targets": ev.targets, "corrupted": ev.cells,
                       "speech": head_inputs(model, [a for _, a in ev.speech]),
                       "nonspeech": {k: head_inputs(model, v) for k, v in ev.nonspeech.items()},
                       "noisy": head_inputs(model, [ev.corrupted[j][3] for j in snr_rows]),
                       "snr": np.array([ev.corrupted[j][2] for j in snr_rows])},
    }


def measures(head, score, s: dict) -> dict:
    """head(feats) -> outputs (N, 7); score(feats, outputs) -> (N,) uncertainty."""
    u = lambda f: score(f, head(f))
    out, ua = head(s["annotated"]), u(s["annotated"])
    n = len(s["targets"])
    curve, _ = selective_measures(out[:, :N_VALUES], ua, s["targets"], n, s["corrupted"])
    err = np.abs(out[:n, :N_VALUES] - s["targets"]).mean(axis=1)
    sp = u(s["speech"])
    au = {k: auroc(u(v), sp) for k, v in s["nonspeech"].items()}
    return {"area": curve["area"], "rises": curve["rises"], "auroc": float(np.mean(list(au.values()))),
            "auroc_silence": au["silence"], "auroc_effects": au["effects"],
            "spearman_snr": spearman(u(s["noisy"]), -s["snr"]),
            "spearman_error_clean": spearman(ua[:n], err)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a training.uncertainty run (model.safetensors + train.json)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="training.uq_select's clips")
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--ridge", type=float, default=1.0)
    p.add_argument("--weights", default="0.5,1", help="comma-separated weights of the familiarity term")
    p.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON")
    args = p.parse_args()
    torch.set_num_threads(1)
    log = lambda m: print(m, file=sys.stderr, flush=True)
    model = load_safetensors(Path(args.run) / "model.safetensors").eval()
    w_head = model.adv.weight.detach().double().numpy()
    b_head = model.adv.bias.detach().double().numpy()
    head = lambda f: f @ w_head.T + b_head
    cfg = json.loads((Path(args.run) / "train.json").read_text())["config"]
    fit = head_inputs(model, fit_clips(FIT_ANNOTATED, cfg["real_per_group"], FIT_SECONDS, cfg["n_clips"], cfg["seed"], log))
    dist = Distance.fit(fit, args.rank)
    centre = float(dist.log_d(fit).mean())
    w, b, stats = fit_row(fit, dist, args.ridge)
    log(f"row fit: {json.dumps(stats)}")
    sigma = lambda f, o: o[:, N_VALUES:2 * N_VALUES].max(axis=1)
    scores = {"sigma": sigma}
    for a in [float(x) for x in args.weights.split(",")]:
        scores[f"sigma + {a:g} x quadratic"] = lambda f, o, a=a: sigma(f, o) + a * (dist.log_d(f) - centre)
        scores[f"sigma + {a:g} x folded row"] = lambda f, o, a=a: sigma(f, o) + a * (f @ w + b)
    sets = scored_sets(model, args.cache, log)
    res = {name: {k: measures(head, sc, s) for k, s in sets.items()} for name, sc in scores.items()}
    cols = ("area", "rises", "auroc", "auroc_silence", "auroc_effects", "spearman_snr", "spearman_error_clean")
    print("| score | " + " | ".join(f"{k[:4]}. {c}" for k in sets for c in cols) + " |")
    print("|---" * (1 + len(sets) * len(cols)) + "|")
    for name, r in res.items():
        print(f"| {name} | " + " | ".join(str(r[k][c]) if c == "rises" else f"{r[k][c]:.4f}" if c == "area"
                                          else f"{r[k][c]:.3f}" for k in sets for c in cols) + " |")
    if args.out:
        args.out.write_text(json.dumps({"fit": stats, "results": res}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
