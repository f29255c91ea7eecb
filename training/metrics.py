"""Concordance correlation coefficient (Lin 1989), per output dimension.

    CCC = 2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2)

Population (ddof = 0) moments over axis 0, as in audmetric.concordance_cc and the A/D/V literature.
`ccc_torch` is differentiable (the training loss is 1 - CCC); `ccc_numpy` is for evaluation.
"""
from __future__ import annotations

import numpy as np
import torch


def ccc_torch(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(N, D) x (N, D) -> (D,). `eps` keeps the gradient finite when a batch has constant targets."""
    if pred.shape != target.shape or pred.ndim != 2:
        raise ValueError(f"expected two (N, D) tensors of the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    mp, mt = pred.mean(0), target.mean(0)
    dp, dt = pred - mp, target - mt
    cov = (dp * dt).mean(0)
    denom = dp.pow(2).mean(0) + dt.pow(2).mean(0) + (mp - mt).pow(2)
    return 2.0 * cov / (denom + eps)


def ccc_numpy(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(N, D) x (N, D) -> (D,) float64; NaN where undefined (both columns constant and equal)."""
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.ndim == 1:
        p, t = p[:, None], t[:, None]
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"expected two (N, D) arrays of the same shape, got {p.shape} and {t.shape}")
    mp, mt = p.mean(0), t.mean(0)
    cov = ((p - mp) * (t - mt)).mean(0)
    denom = p.var(0) + t.var(0) + (mp - mt) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2.0 * cov / np.where(denom > 0, denom, 1.0), np.nan)
