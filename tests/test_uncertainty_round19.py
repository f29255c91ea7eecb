"""Nineteenth round (docs/uncertainty.md): sigma's threshold set on noisy validation speech as well as
clean (--coverage_snr)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import REPO

SMALL = {"n_clips": 120, "real_per_group": 1, "threads": 1}


def test_noisy_copies_are_white_noise_and_babble_of_every_clip_and_deterministic():
    from training.uncertainty import noisy_copies

    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (8000, 12000, 16000)]
    sets = noisy_copies(clips, 20.0, seed=3)
    assert len(sets) == 2 and all(len(s) == len(clips) for s in sets)
    for s in sets:
        assert [len(c) for c in s] == [len(c) for c in clips]
        assert all(0 < np.abs(c - x).max() and c.dtype == np.float32 for c, x in zip(s, clips))
    assert not np.array_equal(sets[0][0], sets[1][0])                   # white noise, then babble
    again = noisy_copies(clips, 20.0, seed=3)
    assert all(np.array_equal(a, b) for s, t in zip(sets, again) for a, b in zip(s, t))
    louder = noisy_copies(clips, 5.0, seed=3)                           # more noise at a lower SNR
    residual = lambda ss: sum(float(np.sum((c - x) ** 2)) for s in ss for c, x in zip(s, clips))  # noqa: E731
    assert residual(louder) > 5 * residual(sets)


def test_the_sigma_threshold_answers_the_noisy_speech_too(tmp_path):
    """--thresholds_only --coverage_snr=20 on the shipped head: sigma's threshold answers `coverage`
    of the clean sets and of both noisy sets, and is the smallest that does; the speech threshold and
    the clean-only threshold (the same run without the option) are unchanged."""
    from training import uncertainty
    from training.model import load_safetensors

    runs = {}
    for name, extra in (("clean", {}), ("noisy", {"coverage_snr": 20.0})):
        out = tmp_path / name
        shutil.copytree(REPO / "training" / "default_uq", out)
        runs[name] = uncertainty.train(uncertainty.UQConfig(**SMALL, **extra, out_dir=str(out), thresholds_only=True))
    clean, noisy = runs["clean"]["thresholds"], runs["noisy"]["thresholds"]
    assert noisy["min_speech_logit"] == clean["min_speech_logit"] == 0.0
    assert noisy["max_log_sigma"] >= clean["max_log_sigma"] and "20 dB SNR" in noisy["from"]
    assert "dB" not in clean["from"]
    cfg = uncertainty.UQConfig(**SMALL)
    annotated, real, _ = uncertainty.held_out_speech(cfg, lambda m: None)
    model = load_safetensors(tmp_path / "noisy" / "model.safetensors")
    sets = [annotated["val"][0], real, *uncertainty.noisy_copies(annotated["val"][0], 20.0, cfg.seed)]
    largest = [uncertainty.outputs(model, s)[:, 3:6].max(axis=1) for s in sets]
    limit = noisy["max_log_sigma"]
    # the 95 % quantile (interpolated) of every set's largest log sigma, the largest of them
    assert limit == pytest.approx(max(float(np.quantile(v, 0.95)) for v in largest))
    assert all((v <= limit).mean() >= 0.95 - 1 / len(v) for v in largest)
    assert max(float(np.quantile(v, 0.95)) for v in largest[2:]) > runs["clean"]["thresholds"]["max_log_sigma"]
    assert json.loads((tmp_path / "noisy" / "train.json").read_text())["config"]["coverage_snr"] == 20.0


@pytest.mark.parametrize("bad", [3.0, 41.0, -10.0])
def test_coverage_snr_out_of_range_is_refused_before_the_run(tmp_path, bad):
    from training import uncertainty

    with pytest.raises(SystemExit, match="--coverage_snr"):
        uncertainty.train(uncertainty.UQConfig(coverage_snr=bad, out_dir=str(tmp_path / "x")))
    assert not (tmp_path / "x").exists()
