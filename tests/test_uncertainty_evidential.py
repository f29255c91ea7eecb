"""--head=evidential of training.uncertainty (docs/uncertainty.md, fourteenth round): deep evidential
regression's loss for sigma, with training-only evidence rows, so that the file and the engine are
those of the Gaussian head."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import REPO
from scipy import stats


def test_evidential_nll_is_the_student_t_of_the_nig():
    """The NIG's marginal of the error is a Student t with 2 alpha degrees of freedom and scale^2 =
    beta (1 + nu) / (nu alpha); with beta = sigma^2 nu (alpha - 1) the loss must be its -log density."""
    from training.uncertainty import evidential_nll

    rng = np.random.default_rng(0)
    for _ in range(20):
        s, a, b, e = rng.normal(-2, 0.7), rng.normal(0, 1.5), rng.normal(0, 1.5), rng.normal(0, 0.2)
        nu, alpha = math.exp(a), 1 + math.exp(b)
        scale = math.sqrt(math.exp(2 * s) * nu * (alpha - 1) * (1 + nu) / (nu * alpha))
        got = evidential_nll(*(torch.tensor(v, dtype=torch.float64) for v in (e * e, s, a, b))).item()
        assert got == pytest.approx(-stats.t.logpdf(e, df=2 * alpha, scale=scale), rel=1e-9, abs=1e-9)


def test_evidence_enters_only_the_sigma_terms():
    """With evidence rows the nll and ood terms change and train them; ccc and speech are the
    Gaussian head's bit for bit; without them the loss is exactly the old one."""
    from training.uncertainty import evidence_total, loss_terms

    g = torch.Generator().manual_seed(0)
    out = torch.randn(7, 7, generator=g) * 0.3
    target = torch.rand(5, 3, generator=g)
    is_speech = torch.tensor([True] * 5 + [False] * 2)
    evidence = (torch.randn(7, 6, generator=g) * 0.5).requires_grad_()
    old = loss_terms(out, target, 5, is_speech, -1.2)
    new = loss_terms(out, target, 5, is_speech, -1.2, evidence=evidence, evidential_reg=0.1)
    assert list(new) == list(old) and all(torch.equal(new[k], old[k]) for k in ("ccc", "speech"))
    no_reg = loss_terms(out, target, 5, is_speech, -1.2, evidence=evidence, evidential_reg=0.0)
    assert torch.equal(no_reg["ood"], old["ood"])   # the ood pull on log sigma is shared
    assert new["ood"].item() == pytest.approx(
        old["ood"].item() + 0.1 * evidence_total(evidence[5:, :3], evidence[5:, 3:]).mean().item())
    (new["nll"] + new["ood"]).backward()
    assert evidence.grad[:5].abs().sum() > 0 and evidence.grad[5:].abs().sum() > 0


def test_evidential_training_ships_the_seven_engine_rows(tmp_path):
    """A few steps with --head=evidential: the saved model is the engine's 7-output head (the
    evidence rows stay in training), its thresholds are set, and the release card names the loss."""
    from training import release, uncertainty
    from training.model import load_safetensors

    run = tmp_path / "ev"
    rep = uncertainty.train(uncertainty.UQConfig(
        init=str(REPO / "training" / "default"), out_dir=str(run), max_iters=2, n_clips=120, batch_speech=4,
        batch_real=2, batch_ood=2, ood_per_kind=2, real_per_group=1, babble_bank=2, threads=1,
        head="evidential"))
    model = load_safetensors(run / "model.safetensors")
    assert model.cfg.n_outputs == 7 and model.cfg.uncertainty
    assert json.loads((run / "train.json").read_text())["config"]["head"] == "evidential"
    assert math.isfinite(rep["thresholds"]["max_sigma"]) and all(math.isfinite(h["nll"]) for h in rep["history"])
    assert "deep evidential regression" in release.recipe_notes(rep["config"])
    assert "evidential" not in release.recipe_notes({})
    with pytest.raises(SystemExit, match="--head must be"):
        uncertainty.train(uncertainty.UQConfig(init=str(REPO / "training" / "default"), out_dir=str(tmp_path / "x"),
                                               head="laplace"))
