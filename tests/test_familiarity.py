"""training.familiarity (docs/uncertainty.md, tenth round): the distance of the head inputs from the
training speech, and the linear row fitted to it that can be folded into the log-sigma rows."""
from __future__ import annotations

import numpy as np
import pytest
import torch


def _pg(n: int, seed: int, channels: int = 3, bins: int = 4) -> np.ndarray:
    """Features built as the head's are: pooled values P (channels x bins) and their Gram matrix
    P P^T, flattened per channel as [P, G]. A linear row on [P, G] can express quadratic forms of P,
    which is why it can follow a distance at all."""
    base = np.random.default_rng(99).normal(size=(channels, bins))
    p = base + 0.5 * np.random.default_rng(seed).normal(size=(n, channels, bins))
    return np.concatenate([p, p @ p.transpose(0, 2, 1)], axis=2).reshape(n, -1)


def test_distance_grows_away_from_the_fit_clips_and_checks_its_rank():
    from training.familiarity import Distance

    fit = _pg(400, seed=0)
    dist = Distance.fit(fit, 4)
    assert dist.vec.shape == (21, 4) and np.all(np.diff(dist.lam) >= 0)
    # a point moved along the direction of largest variance, further and further
    step = dist.vec[:, -1] * dist.sd * np.sqrt(dist.lam[-1])
    line = dist.mu + np.outer([0.0, 1.0, 2.0, 4.0, 8.0], step)
    assert np.all(np.diff(dist.log_d(line)[1:]) > 0)
    assert np.isclose(np.exp(dist.log_d(line[3:4]))[0], 16.0)  # 4 sd along a unit-variance direction
    with pytest.raises(ValueError, match="rank"):
        Distance.fit(fit, 0)
    with pytest.raises(ValueError, match="more fit clips"):
        Distance.fit(fit[:4], 4)


def test_row_is_centred_and_ranks_the_distance_of_clips_it_was_not_fitted_on():
    from training.familiarity import Distance, fit_row
    from training.uq_report import spearman

    fit, held_out = _pg(600, seed=1), _pg(300, seed=2)
    dist = Distance.fit(fit, 8)
    w, b, stats = fit_row(fit, dist, ridge=1.0)
    assert abs(float((fit @ w + b).mean())) < 1e-9
    assert 0.5 < stats["fit_r2"] <= 1.0 and stats["clips"] == 600 and stats["rank"] == 8
    assert spearman(held_out @ w + b, dist.log_d(held_out)) > 0.7  # measured 0.79


def test_fold_moves_only_the_log_sigma_rows_by_the_row():
    from training.familiarity import fold
    from training.model import Wav2Small
    from training.uncertainty import N_VALUES, with_uncertainty_head

    torch.manual_seed(0)
    base = Wav2Small().eval()
    model = with_uncertainty_head(base, -2.0).eval()
    x = torch.randn(2, 16000) * 0.1
    before = model(x).detach().double()
    feats = model.vgg7.features(model.vgg7.logmel(x)).detach().double().numpy()
    w = np.random.default_rng(0).normal(size=model.cfg.head_inputs) * 1e-3
    fold(model, w, 0.25, weight=0.5)
    after = model(x).detach().double()
    moved = torch.from_numpy(0.5 * (feats @ w + 0.25))
    assert torch.equal(after[:, :N_VALUES], before[:, :N_VALUES])
    assert torch.equal(after[:, 2 * N_VALUES], before[:, 2 * N_VALUES])
    for k in range(N_VALUES, 2 * N_VALUES):
        assert torch.allclose(after[:, k] - before[:, k], moved, atol=1e-5)
    with pytest.raises(ValueError, match="no uncertainty head"):
        fold(base, w, 0.0, 1.0)


def test_head_inputs_of_mixed_lengths_are_those_of_each_clip_alone():
    from training.familiarity import head_inputs
    from training.model import Wav2Small

    torch.manual_seed(1)
    model = Wav2Small().eval()
    rng = np.random.default_rng(0)
    clips = [rng.normal(0, 0.1, n).astype(np.float32) for n in (8000, 8000, 12000, 8000)]
    got = head_inputs(model, clips, batch=2)
    alone = np.concatenate([head_inputs(model, [c]) for c in clips])
    assert got.shape == (4, model.cfg.head_inputs)
    assert np.allclose(got, alone, atol=1e-5)
    assert head_inputs(model, []).shape == (0, model.cfg.head_inputs)


def test_cli_refuses_to_fold_in_place(tmp_path):
    from training.familiarity import main

    with pytest.raises(SystemExit, match="must differ"):
        main([str(tmp_path), f"--out_dir={tmp_path}"])


def test_cli_refuses_to_overwrite_a_run(tmp_path):
    """--out_dir holding a finished run was overwritten silently (training.uncertainty and
    training.distill refuse); refused before the fit clips are built."""
    from pathlib import Path

    from training.familiarity import main

    shipped = Path(__file__).resolve().parents[1] / "training" / "default_uq"
    out = tmp_path / "fam"
    out.mkdir()
    (out / "train.json").write_text("{}")
    (out / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(SystemExit, match=r"already holds a run \(train.json, model.safetensors\): choose another"):
        main([str(shipped), f"--out_dir={out}"])
    assert (out / "train.json").read_text() == "{}" and (out / "model.safetensors").read_bytes() == b"weights"


def test_training_spread_is_weight_squared_times_the_distance_ratio():
    """training.uncertainty --familiarity_weight: sigma's squared-error target gains
    (weight * sqrt(d / mean d))^2, d measured on the frozen --init student's head inputs."""
    from training.familiarity import Distance, head_inputs
    from training.model import Wav2Small
    from training.uncertainty import N_VALUES, Familiar, familiarity_spread

    torch.manual_seed(2)
    student = Wav2Small().eval()
    rng = np.random.default_rng(3)
    fit = [rng.normal(0, 0.1, 8000).astype(np.float32) for _ in range(24)]
    feats = head_inputs(student, fit)
    dist = Distance.fit(feats, 4)
    fam = Familiar(student, dist, float(np.log(np.exp(dist.log_d(feats)).mean())))
    x = torch.from_numpy(np.stack(fit[:5] + [rng.normal(0, 0.3, 8000).astype(np.float32)]))  # + one unseen
    got = familiarity_spread(fam, x, 0.05)
    ratio = np.exp(dist.log_d(head_inputs(student, list(x.numpy()))) - fam.centre)
    assert got.shape == (6, N_VALUES) and torch.equal(got[:, 0], got[:, 2])
    assert np.allclose(got[:, 0].numpy(), 0.05 ** 2 * ratio, rtol=1e-4)
    # over the fit clips the ratio averages 1: weight is the std added to a typical training clip
    assert np.isclose(familiarity_spread(fam, torch.from_numpy(np.stack(fit)), 0.05)[:, 0].mean().item(),
                      0.05 ** 2, rtol=1e-4)
    # --familiarity_rows=clean: the same values on the marked rows, zero on the others
    rows = torch.tensor([True, False, True, True, False, True])
    only = familiarity_spread(fam, x, 0.05, rows)
    assert torch.equal(only[rows], got[rows]) and not only[~rows].any()


def test_a_student_without_a_head_is_refused_before_the_fit(tmp_path):
    """training.familiarity on a training.distill run built its fit clips and features (minutes) and
    only then said, in fold(), that the model has no uncertainty head."""
    import subprocess
    import sys

    from conftest import REPO

    r = subprocess.run([sys.executable, "-m", "training.familiarity", "training/default",
                        f"--out_dir={tmp_path / 'out'}"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "python -m training.familiarity: error: training/default is not a training.uncertainty run: its model has no "
        "uncertainty head (a training.distill run? give it to python -m training.uncertainty --init=RUN first)"], r.stderr
    assert not (tmp_path / "out").exists()
