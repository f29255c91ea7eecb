"""The whole distillation pipeline through its command lines, as a user runs it, in well under 2 min:

corpus (Debian speech + espeak-ng) -> annotation by a wav2vec2 teacher in Hugging Face layout (a small
random stand-in: no emotion model can be had offline) -> training -> evaluation (float and int8
through the C engine) -> export (.w2s) -> prediction by the C engine.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.usefixtures("espeak_ng")   # a failure, not a skip, when it is missing

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, env: dict) -> str:
    r = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{' '.join(args)}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def test_corpus_teacher_training_evaluation_export_engine(tmp_path: Path):
    from training.teachers import make_random_dawn

    env = {**os.environ, "WAV2SMALL_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    corpus, teacher, out = tmp_path / "corpus", make_random_dawn(tmp_path / "teacher", seed=5), tmp_path / "run"

    # 1. corpus: every group of the installed speech packages (2 clips each) and 24 espeak-ng clips
    run("-m", "training.corpus", f"--out={corpus}", "--sources=debian,espeak", "--espeak=24", "--max_per_group=2",
        env=env)
    manifest = corpus / "manifest.csv"

    # 2 + 3. annotation (cached, with augmentation) and training
    common = [f"--corpus={manifest}", f"--teacher=dawn:{teacher}", "--augment=default", "--views=2",
              "--crop_seconds=1", "--batch_size=8", "--max_iters=12", "--warmup_iters=2", "--eval_interval=6",
              "--log_interval=6", "--threads=1"]
    log = run("-m", "training.distill", f"--out_dir={out}", *common, env=env)
    assert "teacher dawn:" in log and "best step" in log
    report = json.loads((out / "train.json").read_text())
    assert report["teacher"].startswith("dawn:") and report["annotations"] > 0
    # a second run with the same teacher, views and augmentation finds every annotation in the cache
    log2 = run("-m", "training.distill", f"--out_dir={tmp_path / 'run2'}", *common, "--max_iters=2",
               "--eval_interval=2", env=env)
    assert "/100%" not in log2.replace(" ", "") and f"{report['annotations']} annotations in the cache" in log2

    # 4. evaluation: student vs teacher on held-out speakers, float and int8 through the engine
    run("-m", "training.evaluate", f"--corpus={manifest}", f"--teacher=dawn:{teacher}", f"--out={tmp_path / 'students'}",
        "--calib=8", str(out), env=env)
    table = json.loads((tmp_path / "students.json").read_text())
    row = table["students"][0]
    assert row["student"] == "wav2small" and row["parameters"] == 10_806 and row["file"]["bytes"] > 10_000
    assert table["teacher"] == report["teacher"] and table["clips"] >= 5
    assert min(row["int8_vs_float"].values()) > 0.9  # the engine tracks the float student
    assert "python -m training.evaluate" in (tmp_path / "students.md").read_text()

    # 5. export with the package's converter, 6. prediction by the C engine
    w2s = tmp_path / "student.w2s"
    run("-m", "wav2small", "convert", str(out / "model.safetensors"), "-o", str(w2s), env=env)
    from training.corpus import read_manifest
    from training.model import load_safetensors
    from wav2small import Model
    from wav2small.audio import load
    from wav2small.model import to_int16

    test_file = next(e.path for e in read_manifest(manifest) if e.split == "test" and e.source.startswith("debian:"))
    printed = json.loads(run("-m", "wav2small", "predict", "--json", "--model", str(w2s), test_file, env=env))
    engine = Model(w2s).predict(to_int16(load(test_file)))
    assert [printed[0][k] for k in ("arousal", "dominance", "valence")] == pytest.approx(engine.as_array().tolist(),
                                                                                         abs=1e-6)
    pcm = to_int16(load(test_file)).astype(np.float32) / 32768
    with torch.no_grad():
        float_out = load_safetensors(out / "model.safetensors")(torch.from_numpy(pcm)[None])[0].numpy()
    # int8 within a few hundredths of the float model on this clip (docs/numerics.md measures the bounds)
    assert np.abs(engine.as_array() - float_out).max() < 0.05
