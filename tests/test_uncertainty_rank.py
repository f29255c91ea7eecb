"""Session 20's option of training.uncertainty (docs/uncertainty.md): --sigma_rank_weight, a pairwise
hinge that makes the largest log sigma of an annotated row rank above that of every cleaner row in the
same batch (clean, or under additive noise at a higher SNR)."""
from __future__ import annotations

import math

import torch
from conftest import REPO, record_calls


def test_the_rank_hinge_counts_only_pairs_in_the_wrong_order_or_too_close():
    from training.uncertainty import sigma_rank_loss

    nan, inf = math.nan, math.inf
    snr = torch.tensor([inf, 20.0, 0.0, nan], dtype=torch.float64)
    # in order with room to spare: no loss, whatever the unranked row says
    assert sigma_rank_loss(torch.tensor([-3.0, -2.0, -1.0, 5.0]), snr, 0.05).item() == 0.0
    # one pair (clean vs 20 dB) too close, by 0.05 - 0.01; three ordered pairs in all
    got = sigma_rank_loss(torch.tensor([-2.0, -1.99, -1.0, 5.0]), snr, 0.05).item()
    assert math.isclose(got, 0.04 / 3, rel_tol=1e-5)
    # reversed: the 0 dB row below the clean one
    got = sigma_rank_loss(torch.tensor([-1.0, -2.0, -3.0, 0.0]), snr, 0.0).item()
    assert math.isclose(got, (1.0 + 2.0 + 1.0) / 3, rel_tol=1e-6)
    # equal SNRs and unranked rows make no pair
    assert sigma_rank_loss(torch.tensor([1.0, 0.0]), torch.tensor([5.0, 5.0]), 0.05).item() == 0.0
    assert sigma_rank_loss(torch.tensor([1.0, 0.0]), torch.tensor([nan, 5.0]), 0.05).item() == 0.0


def test_the_rank_term_uses_the_largest_sigma_and_leaves_the_other_terms():
    from training.uncertainty import loss_terms

    g = torch.Generator().manual_seed(0)
    out = (torch.randn(6, 7, generator=g) * 0.3).requires_grad_(True)
    target = torch.rand(4, 3, generator=g)
    is_speech = torch.tensor([True] * 4 + [False] * 2)
    snr = torch.tensor([math.inf, 10.0, -5.0, math.nan], dtype=torch.float64)
    old = loss_terms(out, target, 4, is_speech, -1.2)
    off = loss_terms(out, target, 4, is_speech, -1.2, rank_snr=snr, rank_weight=0.0, rank_margin=0.05)
    assert set(off) == set(old) and all(torch.equal(off[k], old[k]) for k in old)
    new = loss_terms(out, target, 4, is_speech, -1.2, rank_snr=snr, rank_weight=2.0, rank_margin=0.05)
    assert all(torch.equal(new[k], old[k]) for k in old)
    u = out[:4, 3:6].max(dim=1).values.detach()
    pairs = [(1, 0), (2, 0), (2, 1)]   # (noisier, cleaner)
    want = 2.0 * sum(max(0.0, 0.05 - float(u[i] - u[j])) for i, j in pairs) / len(pairs)
    assert math.isclose(new["rank"].item(), want, rel_tol=1e-5)
    # its gradient reaches only log sigma of the ranked rows, never mu, the speech logit or other rows
    new["rank"].backward()
    grad = out.grad
    assert grad[:, :3].abs().sum() == 0 and grad[:, 6].abs().sum() == 0
    assert grad[3:].abs().sum() == 0
    if want > 0:
        assert grad[:3, 3:6].abs().sum() > 0


def test_descending_the_rank_term_orders_sigma_by_snr():
    """The sign: gradient steps on the term alone give lower-SNR rows the larger sigma, noise above
    clean, and leave unranked rows where they were."""
    from training.uncertainty import sigma_rank_loss

    torch.manual_seed(0)
    u = torch.zeros(8, requires_grad=True)
    snr = torch.tensor([math.inf, math.inf, 30.0, 20.0, 10.0, 0.0, -10.0, math.nan], dtype=torch.float64)
    opt = torch.optim.SGD([u], lr=0.5)
    for _ in range(50):
        opt.zero_grad()
        sigma_rank_loss(u, snr, 0.1).backward()
        opt.step()
    ranked = u.detach()[2:7]
    assert bool((ranked[1:] > ranked[:-1]).all())        # lower SNR, larger sigma
    assert bool((ranked[0] > u.detach()[:2]).all())      # any noise above clean
    assert u.detach()[7] == 0.0                          # the unranked row never moves


def test_the_trainer_ranks_clean_and_noisy_rows_and_leaves_other_corruptions_out(monkeypatch, tmp_path):
    """train() hands loss_terms each annotated row's place in the ranking: inf for clean rows, the
    SNR for rows under white noise or babble, nan for the others, and the run records a rank term."""
    from training import uncertainty

    small = {"init": str(REPO / "training" / "default"), "n_clips": 120, "ood_per_kind": 1, "real_per_group": 1,
             "babble_bank": 1, "batch_speech": 16, "batch_real": 1, "batch_ood": 1, "max_iters": 1, "threads": 1,
             "sigma_rank_weight": 1.0, "out_dir": str(tmp_path / "run")}
    cfg = uncertainty.UQConfig(**small)
    pools = uncertainty.load_pools(cfg, lambda m: None)
    *_, clean, snr = uncertainty.batch(pools, cfg, 0, with_clean=True, with_snr=True)
    calls = record_calls(monkeypatch, uncertainty, "loss_terms")
    report = uncertainty.train(cfg)
    (_, kw), = calls
    got = kw["rank_snr"]
    assert kw["rank_weight"] == 1.0 and kw["rank_margin"] == cfg.sigma_rank_margin
    assert torch.isinf(got[clean]).all() and not torch.isinf(got[~clean]).any()
    noisy = ~clean & ~torch.isinf(snr)
    assert clean.any() and noisy.any() and (~clean & ~noisy).any()   # step 0 of seed 0 has all three
    assert torch.equal(got[noisy], snr[noisy]) and torch.isnan(got[~clean & ~noisy]).all()
    assert "rank" in report["history"][0]
