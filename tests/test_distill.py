"""training.distill: options, batches, schedule, a tiny end-to-end run, resume."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from training import distill
from training.distill import Split, TrainConfig, fit_length, get_batch, lr_at, parse_args
from training.model import Wav2Small, load_safetensors

ROOT = Path(__file__).resolve().parents[1]
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def test_help_documents_every_option():
    out = subprocess.run([sys.executable, "-m", "training.distill", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for f in fields(TrainConfig):
        assert f"--{f.name}" in out.stdout


def test_key_value_overrides():
    cfg, given = parse_args(["--max_iters=7", "--lr=0.01", "--resume=false", "--pad=zero", "--out_dir=/x"])
    assert (cfg.max_iters, cfg.lr, cfg.resume, cfg.pad, cfg.out_dir) == (7, 0.01, False, "zero", "/x")
    assert given == {"max_iters": 7, "lr": 0.01, "resume": False, "pad": "zero", "out_dir": "/x"}
    assert parse_args([])[0] == TrainConfig()
    with pytest.raises(SystemExit):
        parse_args(["--resume=maybe"])
    with pytest.raises(ValueError, match="pad"):
        TrainConfig(pad="mirror").validate()


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(lr=1e-2, min_lr=1e-3, warmup_iters=10, max_iters=110)
    lrs = [lr_at(i, cfg) for i in range(111)]
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))
    assert lrs[10] == pytest.approx(1e-2) and lrs[110] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_batches_are_a_pure_function_of_seed_and_step():
    rng = np.random.default_rng(0)
    clips = [(rng.standard_normal(n) * 3000).astype(np.int16) for n in (800, 2000, 5000, 300, 1200)]
    split = Split(clips, rng.random((5, 3)).astype(np.float32))
    cfg = TrainConfig(batch_size=3, seed=5)
    x1, y1 = get_batch(split, 4, cfg, 1000)
    x2, y2 = get_batch(split, 4, cfg, 1000)
    assert x1.shape == (3, 1000) and y1.shape == (3, 3) and x1.dtype == torch.float32
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(get_batch(split, 5, cfg, 1000)[0], x1)
    # one epoch of batches visits every clip once (5 clips, batches of 3 -> steps 0..4 = 3 epochs)
    seen = torch.cat([get_batch(split, i, cfg, 1000)[1] for i in range(5)])
    for epoch in range(3):
        rows = {tuple(r.tolist()) for r in seen[5 * epoch: 5 * epoch + 5]}
        assert len(rows) == 5


def test_padding_modes():
    pcm = np.arange(1, 5, dtype=np.int16)
    assert fit_length(pcm, 10, 0, "repeat").tolist() == [1, 2, 3, 4, 1, 2, 3, 4, 1, 2]
    assert fit_length(pcm, 6, 0, "zero").tolist() == [1, 2, 3, 4, 0, 0]
    assert fit_length(np.arange(10, dtype=np.int16), 3, 4, "repeat").tolist() == [4, 5, 6]


def _tiny(out_dir: Path, cache: Path, **over) -> TrainConfig:
    base = dict(out_dir=str(out_dir), cache_dir=str(cache), n_clips=40, seed=1, crop_seconds=0.5,
                batch_size=4, max_iters=6, warmup_iters=2, eval_interval=3, log_interval=3,
                checkpoint_interval=3, eval_batch=8)
    base.update(over)
    return TrainConfig(**base)


@needs_espeak
def test_tiny_run_writes_loadable_model_and_resume_continues(tmp_path: Path):
    cache = tmp_path / "cache"
    full = distill.train(_tiny(tmp_path / "full", cache))
    out = tmp_path / "full"
    model = load_safetensors(out / "model.safetensors")
    from safetensors.torch import load_file

    assert set(load_file(str(out / "model.safetensors"))) == set(Wav2Small().state_dict())
    with torch.no_grad():
        y = model(torch.randn(2, 8000))
    assert y.shape == (2, 3) and torch.all(torch.isfinite(y))
    report = json.loads((out / "train.json").read_text())
    assert report["config"]["max_iters"] == 6 and set(report["ccc"]) == {"val", "test"}
    assert set(report["ccc"]["val"]) == {"arousal", "dominance", "valence", "mean"}
    assert [h["iter"] for h in report["history"]] == [3, 6] and full["best_iter"] in (3, 6)
    ckpt = torch.load(out / "ckpt.pt", weights_only=False)
    assert {"model", "optimizer", "config", "model_args", "iter_num", "best_ccc", "rng_state"} <= set(ckpt)
    assert ckpt["iter_num"] == 6

    # the same run split in two: stop after 3 steps, then --resume; must end bit-identical
    split_dir = tmp_path / "split"
    stopped = distill.train(_tiny(split_dir, cache, stop_at=3))
    assert stopped == {"stopped_at": 3} and not (split_dir / "model.safetensors").exists()
    assert torch.load(split_dir / "ckpt.pt", weights_only=False)["iter_num"] == 3
    cfg, given = parse_args([f"--out_dir={split_dir}", "--resume=true", "--stop_at=0"])
    resumed = distill.train(cfg, given)
    assert resumed["config"]["n_clips"] == 40  # from the checkpoint, not the command-line default
    a = torch.load(out / "ckpt.pt", weights_only=False)["model"]
    b = torch.load(split_dir / "ckpt.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["ccc"] == full["ccc"]
    assert not [p for p in tmp_path.rglob(".*.tmp")]  # atomic writes left nothing behind


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        distill.train(TrainConfig(out_dir=str(tmp_path), resume=True))
