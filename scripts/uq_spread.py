"""Does the deep ensemble's spread, added to the engine's sigma, make selective prediction fall?
(twenty-sixth round, docs/uncertainty.md)

    python scripts/uq_spread.py   # --cache: training.uq_select's clips (its default)

The deep ensemble ranks the error of unfamiliar voices better than sigma does (second round), so an
engine that ran its members beside the head could add their disagreement to sigma. This scores each
clip by the shipped engine's sigma (wav2small/models/default.w2s, int8) combined with the spread of
A/D/V over the head's own mean and the members' (training/default, ens1, ens2, float): per clip, sd =
the largest over A/D/V of their standard deviation, and the score either sqrt(sigma^2 + (w sd)^2)
("rss") or max(sigma, w sd) ("max"), sigma the largest of the head's three. It prints, on validation
(training.uq_select's clips) and on the report's evaluation clips (training.uq_report's set, 4 s),
the measures of scripts/uq_closeness.py: selective area and rises, Spearman(score, -SNR), mean AUROC.

w is to be chosen on validation; the evaluation columns say whether the choice holds. The members
run in float here; on a device they would be three more passes of the trunk.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from uq_closeness import SHIPPED, evaluation_sets, measures, validation_sets

from training.model import load_safetensors
from training.uq_select import DEFAULT_CACHE, N_VALUES, engine_runner

N_ENGINE = 2 * N_VALUES + 2   # A/D/V, their log sigmas, the speech logit, the modulation


def with_members(run, members: list[torch.nn.Module]):
    """run(clips) -> the engine's (N, 8) outputs, then each member's A/D/V: (N, 8 + 3 M)."""
    @torch.no_grad()
    def both(clips: list[np.ndarray]) -> np.ndarray:
        ys = [np.concatenate([m(torch.from_numpy(np.asarray(c, np.float32))[None])[0, :N_VALUES].numpy()
                              for m in members]) for c in clips]
        return np.concatenate([run(clips), np.array(ys, np.float64)], axis=1)
    return both


def spread_score(out: np.ndarray, w: float, how: str) -> np.ndarray:
    """The score of each row of with_members' outputs (see the module's text)."""
    sigma = np.exp(out[:, N_VALUES:2 * N_VALUES]).max(axis=1)
    points = np.concatenate([out[:, None, :N_VALUES], out[:, N_ENGINE:].reshape(len(out), -1, N_VALUES)], axis=1)
    sd = points.std(axis=1).max(axis=1)
    return np.sqrt(sigma ** 2 + (w * sd) ** 2) if how == "rss" else np.maximum(sigma, w * sd)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="training.uq_select's clip cache")
    p.add_argument("--members", default="training/default,training/ens1,training/ens2",
                   help="the ensemble's students (run directories)")
    p.add_argument("--weights", default="0,1,2,3,5", help="values of w")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    members = [load_safetensors(REPO / d / "model.safetensors").eval() for d in args.members.split(",")]
    run = with_members(engine_runner(SHIPPED)[0], members)
    val, ev = validation_sets(Path(args.cache), run), evaluation_sets(run)
    print("| score | w | val. area | rises | Spearman(score, −SNR) | AUROC | eval. area | rises | Spearman | AUROC |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for how in ("rss", "max"):
        for w in (float(x) for x in args.weights.split(",")):
            (a, r, s, u), (ea, er, es_, eu) = (measures(sets, lambda o, w=w, how=how: spread_score(o, w, how))
                                              for sets in (val, ev))
            print(f"| {how} | {w:g} | {a:.4f} | {r} | {s:.3f} | {u:.3f} | {ea:.4f} | {er} | {es_:.3f} | {eu:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
