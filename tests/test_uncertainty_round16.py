"""The sixteenth round's options of training.uncertainty (docs/uncertainty.md): --sigma_rank_weight, a
pairwise hinge that makes the largest log sigma of an annotated row rank above that of every cleaner
row in the same batch (clean, or under additive noise at a higher SNR), and --speech_coverage, a
speech threshold set, like sigma's, from the share of clean validation speech it hears."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import REPO, record_calls

# a run small enough for a test: pools of a few clips, one step
SMALL = {"init": str(REPO / "training" / "default"), "n_clips": 120, "ood_per_kind": 1, "real_per_group": 1,
         "babble_bank": 1, "batch_speech": 16, "batch_real": 1, "batch_ood": 1, "max_iters": 1, "threads": 1}


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

    small = {**SMALL, "sigma_rank_weight": 1.0, "out_dir": str(tmp_path / "run")}
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


def _outs(logits: list[float], log_sigma: float = -2.0) -> np.ndarray:
    out = np.full((len(logits), 7), log_sigma)
    out[:, 6] = logits
    return out


def test_the_speech_threshold_hears_the_asked_share_of_every_set():
    from training.uncertainty import default_thresholds

    sure = _outs(list(np.linspace(1.0, 10.0, 100)))        # every clip well above the boundary
    unsure = _outs(list(np.linspace(-2.0, 7.9, 100)))      # 20 of 100 below it
    assert default_thresholds([sure, unsure], 0.95)[1] == 0.0   # off: the classifier's boundary
    for cov in (0.9, 0.97):
        _, bar = default_thresholds([sure, unsure], 0.95, cov)
        for v in (sure, unsure):
            assert (v[:, 6] >= bar).mean() >= cov
        # the largest such logit: one step higher loses the share in the set that decided it
        assert min((v[:, 6] >= np.nextafter(bar, np.inf)).mean() for v in (sure, unsure)) < cov
    _, bar = default_thresholds([sure], 0.95, 0.97)
    assert bar > 1.0                                          # a sure classifier gets a stricter bar
    assert default_thresholds([sure, unsure], 0.95, 0.97)[0] == default_thresholds([sure, unsure], 0.95)[0]


def test_speech_coverage_out_of_range_is_refused_before_the_run(tmp_path):
    from training import uncertainty

    for bad in (-0.1, 1.0):
        with pytest.raises(SystemExit, match="--speech_coverage"):
            uncertainty.train(uncertainty.UQConfig(speech_coverage=bad, out_dir=str(tmp_path / "x")))
    assert not (tmp_path / "x").exists()


# the selective measures' cells of corruptions this tiny set lacks are empty means (nan), not tested here
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_selection_counts_speech_at_the_models_own_threshold():
    """training.uq_select calls a clip speech at the model's min_speech_logit, not at logit 0."""
    from training.uq_select import measure

    rng = np.random.default_rng(0)
    clip = lambda: rng.standard_normal(400).astype(np.float32)   # noqa: E731 (content is irrelevant here)
    data = {"speech": [clip() for _ in range(4)], "targets": np.full((2, 3), 0.5),
            "nonspeech": {"music": [clip() for _ in range(4)]}, "babble_probe": {"p": [clip() for _ in range(2)]},
            "noisy": [clip() for _ in range(2)], "snr": np.array([0.0, 10.0]), "val_clips": [clip() for _ in range(3)],
            "val_targets": rng.random((3, 3)), "corrupted": [(0, "white", 0.0, clip())],
            "voices": ["f5", "m6"], "bank": [clip() for _ in range(2)]}
    logit = {id(c): v for c, v in zip(data["speech"], (-1.0, 0.5, 2.0, 3.0))}
    logit.update({id(c): v for c, v in zip(data["nonspeech"]["music"], (-3.0, 0.2, 0.8, 1.5))})

    mod = {id(data["speech"][3]): 2.0, id(data["nonspeech"]["music"][3]): 2.0}   # a steady level
    steady = {id(data["speech"][2]): 0.9, id(data["nonspeech"]["music"][2]): 0.9}   # a steady spectrum

    def run(clips):
        out = np.tile(np.linspace(0.1, 0.9, len(clips))[:, None], (1, 9))   # any A/D/V, sigma
        out[:, 3:6] = -2.0
        out[:, 6] = [logit.get(id(c), 0.0) for c in clips]
        out[:, 7] = [mod.get(id(c), 10.0) for c in clips]   # the modulation, dB
        out[:, 8] = [steady.get(id(c), 0.1) for c in clips]   # the steadiness, 0..1
        return out

    at0, at1 = measure(run, data), measure(run, data, 1.0)
    assert at0["heard_as_speech"] == {"espeak": 0.5, "real": 1.0}    # 2 annotated clips: -1.0, 0.5
    assert at1["heard_as_speech"] == {"espeak": 0.0, "real": 1.0}
    assert at0["called_speech"]["music"] == 0.75 and at1["called_speech"]["music"] == 0.25
    # answered: called speech and the largest log sigma (-2.0 here) within max_log_sigma
    assert at0["answered"]["espeak"] == 0.5 and at0["answered"]["real"] == 1.0      # no sigma limit
    assert measure(run, data, 0.0, -2.0)["answered"]["real"] == 1.0                 # at the limit: answered
    assert measure(run, data, 0.0, -2.5)["answered"] == {"espeak": 0.0, "real": 0.0, "snr_levels": [0.0, 10.0],
                                                          "noisy": [0.0, 0.0], "all_val_20db": {
                                                              "both": 0.0, "white": 0.0, "babble": 0.0, "clips": 6}}
    # and at the model's modulation threshold: the steady clips are no speech, whatever their logit
    at5 = measure(run, data, 0.0, math.inf, 5.0)
    assert at5["heard_as_speech"] == {"espeak": 0.5, "real": 0.5} and at5["called_speech"]["music"] == 0.5
    # and at a steadiness threshold: the clips of a steady spectrum are no speech as well
    both = measure(run, data, 0.0, math.inf, 5.0, 0.5)
    assert both["heard_as_speech"] == {"espeak": 0.5, "real": 0.0} and both["called_speech"]["music"] == 0.25


def _leaves(t: torch.Tensor) -> list[torch.Tensor]:
    """The tensors whose gradient a backward pass from t would accumulate (walks grad_fn only)."""
    seen, todo, found = set(), [t.grad_fn], []
    while todo:
        fn = todo.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        if hasattr(fn, "variable"):
            found.append(fn.variable)
        todo += [f for f, _ in fn.next_functions]
    return found


def test_the_head_only_rank_term_reaches_only_the_log_sigma_rows(monkeypatch, tmp_path):
    """--sigma_rank_trunk=false: the trainer ranks log sigma computed from detached head inputs, equal
    in value to the model's own, whose gradient can reach only the head's weight and bias."""
    from training import uncertainty

    small = {**SMALL, "sigma_rank_weight": 1.0}
    calls = record_calls(monkeypatch, uncertainty, "loss_terms")
    uncertainty.train(uncertainty.UQConfig(**small, out_dir=str(tmp_path / "trunk")))
    uncertainty.train(uncertainty.UQConfig(**small, sigma_rank_trunk=False, out_dir=str(tmp_path / "head")))
    (_, trunk), (args, head) = calls
    assert trunk["rank_log_sigma"] is None
    ranked = head["rank_log_sigma"]
    assert torch.allclose(ranked, args[0][:16, 3:6], atol=1e-6)
    shapes = sorted(tuple(t.shape) for t in _leaves(ranked))
    assert len(shapes) == 2 and shapes[0] == (7,) and shapes[1][0] == 7     # the head's bias and weight
    assert len(_leaves(args[0])) > 2                        # while the model's outputs reach the trunk


def test_real_shift_changes_only_some_real_rows_and_off_is_the_old_batch():
    from training import uncertainty

    small = {**SMALL, "real_per_group": 2, "batch_speech": 4, "batch_real": 8}
    cfg = uncertainty.UQConfig(**small)
    pools = uncertainty.load_pools(cfg, lambda m: None)
    old = uncertainty.batch(pools, cfg, 3)
    off = uncertainty.batch(pools, uncertainty.UQConfig(**small, real_shift_prob=0.0), 3)
    assert all(torch.equal(a, b) for a, b in zip(old, off))
    on = uncertainty.batch(pools, uncertainty.UQConfig(**small, real_shift_prob=0.5), 3)
    assert torch.equal(on[0][:4], old[0][:4]) and all(torch.equal(a, b) for a, b in zip(on[1:], old[1:]))
    changed = [not torch.equal(on[0][i], old[0][i]) for i in range(4, 12)]
    assert 0 < sum(changed) < 8 and on[0].shape == old[0].shape
