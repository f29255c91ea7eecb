"""The ninth round's option of training.uncertainty (docs/uncertainty.md): --ccc_by_corruption, the
CCC term taken on clean and on corrupted annotated rows apart, so that the corrupted rows' outputs
must keep the targets' spread on their own instead of hedging towards the middle."""
from __future__ import annotations

import torch


def _batch(seed: int = 0, n: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(n + 2, 7, generator=g) * 0.1 + 0.5
    target = torch.rand(n, 3, generator=g)
    is_speech = torch.tensor([True] * n + [False] * 2)
    return out, target, is_speech


def test_grouped_ccc_is_the_mean_over_groups_and_leaves_the_other_terms():
    from training.metrics import ccc_torch
    from training.uncertainty import loss_terms

    out, target, is_speech = _batch()
    groups = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    old = loss_terms(out, target, 8, is_speech, -1.2)
    new = loss_terms(out, target, 8, is_speech, -1.2, ccc_groups=groups)
    mu = out[:8, :3]
    want = torch.stack([1 - ccc_torch(mu[groups == k], target[groups == k]).mean() for k in (0, 1)]).mean()
    assert torch.allclose(new["ccc"], want)
    assert not torch.allclose(new["ccc"], old["ccc"])
    assert all(torch.equal(new[k], old[k]) for k in ("nll", "speech", "ood"))
    # one group is the ungrouped term; a group of one row is left out (no CCC of one value)
    one = loss_terms(out, target, 8, is_speech, -1.2, ccc_groups=torch.zeros(8))["ccc"]
    assert torch.allclose(one, old["ccc"])
    lone = torch.tensor([0, 0, 0, 0, 0, 0, 0, 1])
    rows = lone == 0
    assert torch.allclose(loss_terms(out, target, 8, is_speech, -1.2, ccc_groups=lone)["ccc"],
                          1 - ccc_torch(mu[rows], target[rows]).mean())
    # only the mean rows (`clean`) count, within each group
    mean_rows = torch.tensor([True, True, True, False, True, True, True, True])
    got = loss_terms(out, target, 8, is_speech, -1.2, clean=mean_rows, ccc_groups=groups)["ccc"]
    want = torch.stack([1 - ccc_torch(mu[mean_rows & (groups == k)], target[mean_rows & (groups == k)]).mean()
                        for k in (0, 1)]).mean()
    assert torch.allclose(got, want)


def test_grouped_ccc_punishes_a_corrupted_group_that_hedges():
    """Clean rows exact, corrupted rows pulled towards the middle: the pooled CCC hardly minds (the
    clean rows carry the spread), the grouped one does, and its gradient spreads the hedged rows out."""
    from training.uncertainty import loss_terms

    g = torch.Generator().manual_seed(3)
    target = torch.rand(16, 3, generator=g)
    groups = torch.arange(16) % 2
    mu = target.clone()
    hedged = groups == 1
    mu[hedged] = target[hedged].mean(0) + 0.3 * (target[hedged] - target[hedged].mean(0))
    out = torch.cat([mu, torch.zeros(16, 4)], 1).requires_grad_(True)
    speech = torch.ones(16, dtype=torch.bool)
    pooled = loss_terms(out, target, 16, speech, -1.2)["ccc"]
    grouped = loss_terms(out, target, 16, speech, -1.2, ccc_groups=groups)["ccc"]
    assert grouped > pooled
    (grad,) = torch.autograd.grad(grouped, out)
    step = out.detach()[:, :3] - 0.1 * grad[:, :3]
    assert (step[hedged].std(0) > mu[hedged].std(0)).all()


def test_flag_parses_and_is_off_by_default():
    from training.uncertainty import UQConfig

    assert UQConfig().ccc_by_corruption is False
    assert UQConfig.parse(["--ccc_by_corruption=true"]).ccc_by_corruption is True


def test_training_passes_the_corrupted_rows_as_the_second_group(tmp_path, monkeypatch):
    """One step with the flag: loss_terms gets the batch's corrupted annotated rows as group 1, the
    clean ones as group 0; without it, no groups (the loss of every earlier run)."""
    from conftest import REPO, record_calls

    from training import uncertainty

    small = {"init": str(REPO / "training" / "default"), "max_iters": 1, "n_clips": 120, "batch_speech": 6,
             "batch_real": 1, "batch_ood": 2, "ood_per_kind": 2, "real_per_group": 1, "babble_bank": 2,
             "threads": 1, "seed": 3}
    calls = record_calls(monkeypatch, uncertainty, "loss_terms")
    uncertainty.train(uncertainty.UQConfig(**small, out_dir=str(tmp_path / "off")))
    uncertainty.train(uncertainty.UQConfig(**small, out_dir=str(tmp_path / "on"), ccc_by_corruption=True))
    seen = [kwargs.get("ccc_groups") for _, kwargs in calls]
    cfg = uncertainty.UQConfig(**small)
    *_, clean = uncertainty.batch(uncertainty.load_pools(cfg, lambda m: None), cfg, 0, with_clean=True)
    assert seen[0] is None
    assert torch.equal(seen[1], (~clean).long()) and 0 < int(seen[1].sum()) < 6
