"""Familiarity: make sigma grow with how far a clip's features lie from the speech the model was built on.

    python -m training.familiarity training/default_uq --out_dir=runs/fam --weight=1

The head's sigma learns the error of the voices it trains on, and all of those are familiar, so it
cannot rank the error of voices it has never heard (docs/uncertainty.md, third to ninth rounds).
An unsupervised measure does, a little: the distance of the 338 head inputs ([P, G],
model.Vgg7.features) from their distribution over the training speech, as in Mahalanobis
out-of-distribution detection. On held-out clean voices it ranks the head's error with Spearman
0.14 on validation and 0.23-0.27 on the report's clips, where sigma's is 0.03 and -0.03
(scripts/uq_familiarity.py). Measured, not shipped: docs/uncertainty.md, tenth round. The steps:

  1. features of the fit clips: the annotator's training clips and real speech of the training
     speaker groups (so that real speech, which the model is used on, counts as familiar), cut or
     zero-padded to `seconds`, in eval mode;
  2. d = squared whitened distance in the `rank` directions of largest variance of the
     standardised features (PCA): sum_i (v_i . z)^2 / lambda_i;
  3. one linear row g(x) = w . [P, G] + b fitted to log d by ridge regression on the same clips
     (R^2 0.91 for the twelfth round's head; a row on [P, G] can express quadratic forms of P), centred
     so that its mean over them is 0;
  4. `weight` * g is added to each log-sigma row of the head (weight 0.5 makes sigma grow as the
     distance, 1 as its square).

The head keeps its shape, so the file format and the engine are unchanged (the distance itself
would need `rank` x 338 more weights on the device); the fold is a change of weights, after which
every weight is snapped to its int8/int16 value again and the decision thresholds are chosen again
as training.uncertainty chooses them (clean validation speech at `coverage`). The run directory
written is a training.uncertainty run (model.safetensors + train.json, whose "familiarity" entry
records the fit), so training.release and training.uq_select take it as they take any other.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from .cli import HelpFormatter
from .files import held_run, read_json
from .model import Wav2Small, load_safetensors
from .uncertainty import N_VALUES, UQConfig, finish, real_speech, snap_to_grid

FIT_ANNOTATED = 800   # annotator training clips in a fit
FIT_SECONDS = 4.0     # fit clips are cut (or zero-padded) to this length, as the evaluations' clips


def head_inputs(model: Wav2Small, clips: list[np.ndarray], batch: int = 32) -> np.ndarray:
    """The 338 inputs of the last linear layer ([P, G]) of whole clips, float64 (N, 338); runs of
    equal-length clips go through in batches, a clip of another length alone (never padded: padding
    would change its prenorm and pooling)."""
    model.eval()
    out = []
    with torch.no_grad():
        i = 0
        while i < len(clips):
            j = i + 1
            while j < min(len(clips), i + batch) and len(clips[j]) == len(clips[i]):
                j += 1
            x = torch.from_numpy(np.stack(clips[i:j]).astype(np.float32))
            out.append(model.vgg7.features(model.vgg7.logmel(x)).double().numpy())
            i = j
    return np.concatenate(out) if out else np.zeros((0, model.cfg.head_inputs))


def fit_clips(n_annotated: int, real_per_group: int, seconds: float, n_clips: int, seed: int,
              log) -> list[np.ndarray]:
    """The clips the familiar distribution is fitted on: `n_annotated` of the annotator's training
    clips (a seeded draw) and real speech of the training speaker groups, each cut or zero-padded
    to `seconds` (so that the fit runs in batches; a short clip's padding is part of what the
    distance sees). No validation or test clip is among them."""
    from .distill import TrainConfig, load_prosody_corpus

    n = int(seconds * 16000)
    fit = lambda a: np.pad(a[:n], (0, max(0, n - len(a[:n])))).astype(np.float32)
    train = load_prosody_corpus(TrainConfig(n_clips=n_clips, seed=seed), 16000, log)["train"]
    pick = np.random.default_rng([seed, 0xFA3]).permutation(len(train.clips))[:n_annotated]
    clips = [fit(train.clips[i].astype(np.float32) / 32768.0) for i in sorted(pick)]
    real = [fit(a) for _, a in real_speech(("train",), real_per_group, seed, trim=True)]
    log(f"familiarity fit: {len(clips)} annotated training clips + {len(real)} real speech clips of "
        f"the training groups, {seconds:g} s")
    return clips + real


@dataclass
class Distance:
    """The squared whitened distance of head inputs from the fit clips' distribution, in its `rank`
    principal directions of largest variance: d = sum_i (v_i . z)^2 / lambda_i, z standardised."""
    mu: np.ndarray    # (D,) mean of the fit clips' features
    sd: np.ndarray    # (D,) their standard deviation (+1e-6)
    vec: np.ndarray   # (D, rank) principal directions of z
    lam: np.ndarray   # (rank,) their variances

    @classmethod
    def fit(cls, feats: np.ndarray, rank: int) -> Distance:
        if not 0 < rank <= feats.shape[1]:
            raise ValueError(f"rank must be in 1..{feats.shape[1]}, got {rank}")
        if len(feats) <= rank:
            raise ValueError(f"need more fit clips ({len(feats)}) than the rank ({rank})")
        mu, sd = feats.mean(axis=0), feats.std(axis=0) + 1e-6
        lam, vec = np.linalg.eigh(np.cov(((feats - mu) / sd).T))
        return cls(mu, sd, vec[:, -rank:], lam[-rank:])

    def log_d(self, feats: np.ndarray) -> np.ndarray:
        d = ((((feats - self.mu) / self.sd) @ self.vec) ** 2 / self.lam).sum(axis=1)
        return np.log(np.maximum(d, 1e-12))  # a clip exactly at the mean: finite


def fit_row(feats: np.ndarray, dist: Distance, ridge: float) -> tuple[np.ndarray, float, dict]:
    """(w, b, stats): the linear row g(x) = w . x + b fitted to dist.log_d by ridge regression on the
    standardised `feats` (N, D), centred on them (mean 0); stats has what a reader needs to judge it."""
    log_d = dist.log_d(feats)
    z = (feats - dist.mu) / dist.sd
    zc, yc = z - z.mean(axis=0), log_d - log_d.mean()
    coef = np.linalg.solve(zc.T @ zc + ridge * np.eye(z.shape[1]), zc.T @ yc)
    w = coef / dist.sd                               # in the raw feature units the head sees
    g = feats @ w
    b = -float(g.mean())
    resid = yc - (g + b)
    stats = {"clips": len(feats), "rank": len(dist.lam), "ridge": ridge,
             "log_d_mean": float(log_d.mean()), "log_d_sd": float(log_d.std()),
             "fit_r2": float(1 - resid.var() / log_d.var())}
    return w, b, stats


def fold(model: Wav2Small, w: np.ndarray, b: float, weight: float) -> None:
    """Add weight * (w . x + b) to every log-sigma row of the head; A/D/V and speech rows unchanged."""
    if not model.cfg.uncertainty:
        raise ValueError("the model has no uncertainty head (train one with python -m training.uncertainty)")
    with torch.no_grad():
        rows = slice(N_VALUES, 2 * N_VALUES)
        model.adv.weight[rows] += weight * torch.from_numpy(w).to(model.adv.weight.dtype)
        model.adv.bias[rows] += weight * b


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.familiarity", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("run", help="a training.uncertainty run directory (model.safetensors + train.json)")
    p.add_argument("--out_dir", required=True, help="where the folded run is written")
    p.add_argument("--weight", type=float, default=1.0, help="multiplier of the familiarity row in log sigma")
    p.add_argument("--rank", type=int, default=32, help="principal directions of the distance")
    p.add_argument("--ridge", type=float, default=1.0, help="ridge penalty of the row's fit (standardised features)")
    p.add_argument("--n_annotated", type=int, default=FIT_ANNOTATED, help="annotator training clips in the fit")
    p.add_argument("--real_per_group", type=int, default=None,
                   help="real speech files per training speaker group (default: the run's, as training.uncertainty "
                        "--familiarity_weight and scripts/uq_familiarity.py take it)")
    p.add_argument("--seconds", type=float, default=FIT_SECONDS, help="fit clips are cut (or padded) to this length")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    if Path(args.out_dir).resolve() == Path(args.run).resolve():
        raise SystemExit("--out_dir must differ from the run: the fold is not applied in place")
    # a run (finished or not) is never overwritten silently; a fold has no checkpoint to resume
    held = held_run(args.out_dir, can_resume=False)
    if held:
        raise SystemExit(held)
    torch.set_num_threads(args.threads)
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:6.0f} s] {msg}", file=sys.stderr, flush=True)

    src = Path(args.run)
    old = read_json(src / "train.json")
    known = {f.name for f in fields(UQConfig)}
    cfg = UQConfig(**{**{k: v for k, v in old["config"].items() if k in known}, "out_dir": args.out_dir,
                      "threads": args.threads})
    if args.real_per_group is None:
        args.real_per_group = cfg.real_per_group
    model = load_safetensors(src / "model.safetensors")
    if not model.cfg.uncertainty:   # before the fit's minutes of work, not after (fold says the same)
        raise SystemExit(f"{src} is not a training.uncertainty run: its model has no uncertainty head (a "
                         "training.distill run? give it to python -m training.uncertainty --init=RUN first)")
    clips = fit_clips(args.n_annotated, args.real_per_group, args.seconds, cfg.n_clips, cfg.seed, log)
    feats = head_inputs(model, clips)
    w, b, stats = fit_row(feats, Distance.fit(feats, args.rank), args.ridge)
    log(f"fit: log d {stats['log_d_mean']:.3f} +- {stats['log_d_sd']:.3f}, R^2 of the row {stats['fit_r2']:.3f}")
    fold(model, w, b, args.weight)
    snap_to_grid(model)
    extra = {k: old[k] for k in ("pools", "wall_seconds") if k in old}
    extra["familiarity"] = {"from": str(src), "weight": args.weight, "seconds": args.seconds,
                            "n_annotated": args.n_annotated, "real_per_group": args.real_per_group, **stats}
    finish(model, cfg, old.get("history", []), extra, log)
    return 0


if __name__ == "__main__":
    import training.cli

    training.cli.run(main, "python -m training.familiarity")
