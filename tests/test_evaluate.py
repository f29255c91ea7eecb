"""training.evaluate: the student table, checked against independent computations."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO

from training import distill, evaluate
from training.metrics import ccc_numpy
from training.model import load_safetensors

pytestmark = pytest.mark.usefixtures("espeak_ng")   # a failure, not a skip, when it is missing


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    from training.corpus import build

    root = tmp_path_factory.mktemp("corpus")
    build(root / "c", {"debian", "espeak"}, espeak=60, flite=0, max_per_group=1, seed=0, cache_dir=root / "cache")
    return root / "c" / "manifest.csv"


def test_default_model_and_a_mobilenet_against_the_annotator(tmp_path: Path, manifest: Path):
    mnv4 = tmp_path / "mnv4"
    distill.train(distill.TrainConfig(out_dir=str(mnv4), corpus=str(manifest), student="mobilenet_v4_conv_small",
                                      max_iters=2, warmup_iters=1, eval_interval=2, batch_size=4, crop_seconds=0.5,
                                      threads=1, cache_dir=str(tmp_path / "cache")))
    out = tmp_path / "students"
    argv = [str(REPO / "training" / "default"), str(mnv4), f"--corpus={manifest}", f"--out={out}", "--calib=8",
            f"--cache_dir={tmp_path / 'cache'}"]
    assert evaluate.main(argv) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    w2s, mn = result["students"]
    assert result["teacher"] == "prosody-annotator" and result["split"] == "test"
    from training.corpus import fingerprint, read_manifest
    assert result["corpus_fingerprint"] == fingerprint(read_manifest(manifest))
    assert f"content fingerprint `{result['corpus_fingerprint']}`" in out.with_suffix(".md").read_text()
    assert result["versions"]["torch"] == torch.__version__ and "transformers" in result["versions"]
    assert f"torch {torch.__version__}" in out.with_suffix(".md").read_text()

    # the float CCC is that of the shipped float model on the held-out espeak voices, recomputed here
    entries, split = evaluate.load_split(manifest, "test", 8.0, labelled_only=True)
    assert result["clips"] == len(entries) >= 5 and all(e.source == "espeak" for e in entries)
    model = load_safetensors(REPO / "training" / "default" / "model.safetensors")
    with torch.no_grad():
        pred = np.stack([model(torch.from_numpy(c.astype(np.float32) / 32768)[None])[0].numpy() for c in split.clips])
    want = ccc_numpy(pred, split.targets)
    got = [w2s["float"]["all"][k] for k in ("arousal", "dominance", "valence")]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert min(got) > 0.2  # the default model learned the annotator's cues (its card: test CCC 0.70/0.79/0.24)

    assert w2s["parameters"] == 10_806 and w2s["macs_per_second"] == pytest.approx(64.4e6, rel=0.005)
    assert w2s["file"]["kind"].startswith(".w2s") and 14_000 < w2s["file"]["bytes"] < 20_000
    assert min(w2s["int8_vs_float"].values()) > 0.99 and max(w2s["int8_loss"].values()) < 0.02
    assert mn["student"] == "mobilenet_v4_conv_small" and "int8" not in mn and mn["parameters"] == 2_495_139
    assert mn["file"]["bytes"] > 4 * mn["parameters"]  # float32 weights

    md = out.with_suffix(".md").read_text()
    assert "| wav2small (default) | 10,806 | 64.4 M |" in md and "mobilenet_v4_conv_small (mnv4)" in md
    assert "python -m training.evaluate " + " ".join(argv[:2]) in md


def test_the_annotators_student_is_calibrated_on_the_clips_it_trained_on(manifest: Path):
    """Regression: the prosody annotator's students train on the labelled espeak-ng clips only, but
    were calibrated on real speech, whose activations are smaller: their int8 models clipped on their
    own espeak-ng test clips (runs/final/prosody/w2s lost 0.0065 CCC; 150 QAT steps did not help)."""
    from training.qat import engine_predictions

    picked = evaluate.calibration_entries(manifest, 6, labelled_only=True)
    assert len(picked) == 6 and all(e.split == "train" and e.source == "espeak" and e.targets is not None
                                    for e in picked)
    assert all(e.source.startswith("debian:") for e in evaluate.calibration_entries(manifest, 2))  # real first

    # the shipped default model (a student of the annotator): int8 follows float more closely on the
    # held-out espeak-ng clips when calibrated on espeak-ng training clips than on real speech
    model = load_safetensors(REPO / "training" / "default" / "model.safetensors")
    _, split = evaluate.load_split(manifest, "test", 6.0, labelled_only=True)
    with torch.no_grad():
        pred = np.stack([model(torch.from_numpy(c.astype(np.float32) / 32768)[None])[0].numpy() for c in split.clips])
    err = {}
    for labelled in (True, False):
        q, _ = engine_predictions(model, evaluate.calibration_clips(manifest, 6, labelled_only=labelled), split.clips)
        err[labelled] = float(np.abs(q - pred).max())
    assert err[True] < err[False], err


def test_needs_enough_clips(tmp_path: Path, manifest: Path):
    with pytest.raises(ValueError, match="need 3"):
        evaluate.load_split(_one_row(manifest, tmp_path), "test", 8.0, labelled_only=False)


def _one_row(manifest: Path, tmp_path: Path) -> Path:
    lines = manifest.read_text().splitlines()
    test_rows = [line for line in lines[1:] if ",test," in line][:1]
    path = tmp_path / "one.csv"
    path.write_text("\n".join([lines[0], *test_rows]) + "\n")
    return path


def _row(run: str, student: str, a: float, loss: float | None, subsets=("all", "real")) -> dict:
    ccc = {"arousal": a, "dominance": a - 0.1, "valence": a - 0.2}
    row = {"run": run, "student": student, "parameters": 10_806, "macs_per_second": 64_400_000,
           "file": {"kind": ".w2s (int8 engine)", "bytes": 16_000}, "train_command": "python -m training.distill",
           "train_minutes": 1.0, "float": {s: {"clips": 9, **ccc} for s in subsets}, "qat": None}
    if loss is not None:
        row["int8"] = {s: {"clips": 9, **{k: v - loss for k, v in ccc.items()}} for s in subsets}
        row["int8_loss"] = {k: loss for k in ccc}
        row["qat"] = {"mode": "auto", "ran": loss > 0.005, "steps": 300 if loss > 0.005 else 0,
                      "val_loss_before": loss, "val_int8_before": 0.5, "val_loss_after": 0.001, "val_int8_after": 0.6}
    return row


def test_merged_report_names_the_stand_ins_and_checks_the_targets(tmp_path: Path):
    """--merge: one page from one result per teacher, the script quoted at the top, the issue's
    targets checked on held-out real speech where there is some."""
    common = {"corpus": "m.csv", "split": "test", "clips": 9, "eval_seconds": 6.0, "calibration_clips": 24,
              "threads": 1, "command": "python -m training.evaluate x", "date": "2026-01-01", "wall_seconds": 1.0}
    prosody = {**common, "teacher": "prosody-annotator",
               "students": [_row("p/w2s", "wav2small", 0.9, 0.001, ("all",)), _row("p/mnv3", "mobilenet_v3_small", 0.8, None)]}
    standin = {**common, "teacher": "dawn:0123456789abcdef",
               "students": [_row("s/w2s", "wav2small", 0.97, 0.02)]}
    paths = []
    for name, res in (("prosody", prosody), ("standin", standin)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(res))
    script = tmp_path / "make.sh"
    script.write_text("#!/bin/sh\npython -m training.distill --out_dir=x\n")
    out = tmp_path / "students"
    assert evaluate.main(["--merge", *map(str, paths), f"--script={script}", f"--out={out}"]) == 0
    md = out.with_suffix(".md").read_text()
    assert "python -m training.distill --out_dir=x" in md.split("## The issue's targets")[0]  # commands at the top
    assert "prosody annotator" in md and "stand-in wav2vec2 teacher" in md and "NOT audEERING's model" in md
    merged = json.loads(out.with_suffix(".json").read_text())
    (p_row, s_row) = merged["targets"]  # Wav2Small students only
    assert p_row["subset"] == "all" and s_row["subset"] == "real"
    assert s_row["meets"] == {"arousal": True, "dominance": False, "valence": False}  # .97/.87/.77 vs .95/.90/.80
    assert p_row["meets"] == {"arousal": False, "dominance": False, "valence": False} and p_row["int8_within"]
    assert s_row["int8_within"] is False and "0.0200 ✗" in md
    assert "| w2s | 0.0200 | yes | 300 | 0.0010 | 0.500 → 0.600 |" in md  # the QAT table
    assert len(merged["reports"]) == 2
    assert merged["date"] == "2026-01-01"   # when the measurements were made, however late the merge
    # the int8 loss of the targets table comes from the clips its CCC columns do (the real ones)
    mixed = _row("s/w2s", "wav2small", 0.97, 0.02)
    mixed["int8"]["real"] = {"clips": 9, **{k: v - 0.001 for k, v in mixed["float"]["real"].items() if k != "clips"}}
    (row,) = evaluate.targets_table([{**standin, "students": [mixed]}])
    assert row["subset"] == "real" and row["int8_loss"] == pytest.approx(0.001) and row["int8_within"]


def test_merged_report_takes_the_budget_story_from_the_note(tmp_path: Path):
    """--merge: the page does not claim budgets of its own ("deliberately small"); what the budgets
    were and how the run went comes from --note, printed after the script."""
    common = {"corpus": "m.csv", "split": "test", "clips": 9, "eval_seconds": 6.0, "calibration_clips": 24,
              "threads": 1, "command": "python -m training.evaluate x", "date": "2026-01-01", "wall_seconds": 1.0}
    res = {**common, "teacher": "dawn:0123456789abcdef", "students": [_row("s/w2s", "wav2small", 0.9, 0.001)]}
    path = tmp_path / "standin.json"
    path.write_text(json.dumps(res))
    script = tmp_path / "make.sh"
    script.write_text("#!/bin/sh\necho budgets\n")
    out = tmp_path / "students"
    note = "Ran uninterrupted in 3,000 s; 6,000 steps for the default student."
    assert evaluate.main(["--merge", str(path), f"--script={script}", f"--out={out}", f"--note={note}"]) == 0
    md = out.with_suffix(".md").read_text()
    head = md.split("## The issue's targets")[0]
    assert head.index("echo budgets") < head.index(note)
    assert "deliberately small" not in md and "a few hundred steps" not in md
    assert json.loads(out.with_suffix(".json").read_text())["note"] == note


def test_bad_options_and_run_dirs_fail_before_any_work(tmp_path: Path, manifest: Path):
    """A run directory without a model, or a cut of 0 s, fails at once (it used to after the teacher
    annotated and the runs before it were evaluated, or deep inside conv1d)."""
    for args, match in (([str(REPO / "training" / "default"), str(tmp_path)], "no model.safetensors or train.json in"),
                        ([str(REPO / "training" / "default"), "--eval_seconds=0"], "eval_seconds > 0.1"),
                        ([str(REPO / "training" / "default"), "--threads=0"], "threads >= 1")):
        r = subprocess.run([sys.executable, "-m", "training.evaluate", f"--corpus={manifest}",
                            f"--out={tmp_path / 'r'}", *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and match in r.stderr and "evaluating" not in r.stdout, (args, r.stderr[-400:])


def test_a_run_whose_train_json_is_cut_off_is_named(tmp_path: Path, manifest: Path, capsys):
    """A cut-off train.json ended in a JSONDecodeError traceback."""
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(REPO / "training" / "default" / "model.safetensors", run / "model.safetensors")
    (run / "train.json").write_text('{"config": ')
    with pytest.raises(SystemExit) as e:
        evaluate.main([str(run), f"--corpus={manifest}", f"--out={tmp_path / 'r'}"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"python -m training.evaluate: error: {run / 'train.json'} is not JSON" in err, err
    assert not (tmp_path / "r.md").exists()


def test_merge_names_a_file_that_is_not_an_evaluation(tmp_path: Path, capsys):
    """--merge with e.g. a train.json ended in KeyError: 'students'."""
    bad_json = tmp_path / "cut.json"
    bad_json.write_text('{"teacher": ')
    for path, match in ((REPO / "training" / "default" / "train.json",
                         "train.json is not a training.evaluate result: it has no students, corpus, split, "),
                        (bad_json, "cut.json is not JSON")):
        with pytest.raises(SystemExit) as e:
            evaluate.main(["--merge", str(path), f"--out={tmp_path / 'm'}"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "python -m training.evaluate: error: " in err and match in err, err
        assert not (tmp_path / "m.md").exists()


def _run_of(teacher_spec: str, teacher_id: str, where: Path) -> Path:
    """The shipped distilled student as if distilled from another teacher (its train.json says so)."""
    import shutil

    where.mkdir()
    shutil.copy(REPO / "training" / "default" / "model.safetensors", where / "model.safetensors")
    report = json.loads((REPO / "training" / "default" / "train.json").read_text())
    report["teacher"], report["config"]["teacher"] = teacher_id, teacher_spec
    (where / "train.json").write_text(json.dumps(report))
    return where


def test_the_teacher_is_the_runs_unless_given_and_another_is_warned_about(tmp_path: Path, capsys):
    """A run distilled from dawn:DIR was scored against the default --teacher=prosody, silently."""
    import warnings

    from training.teachers import DawnTeacher, make_random_dawn

    dawn = make_random_dawn(tmp_path / "teacher", seed=1)
    dawn_run = _run_of(f"dawn:{dawn}", DawnTeacher(dawn).id, tmp_path / "dawn_run")
    prosody_run = REPO / "training" / "default"
    nowhere = f"--corpus={tmp_path / 'none.csv'}"   # the teacher is settled before the corpus is read

    # no --teacher: the runs' own, with no warning (the missing corpus is the next thing said)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FileNotFoundError, match="no corpus manifest"):
            evaluate.main([nowhere, str(dawn_run)])
    assert f"teacher: dawn:{dawn} (the runs' train.json)" in capsys.readouterr().out
    # runs of two teachers: --teacher must choose
    with pytest.raises(SystemExit) as e:
        evaluate.main([nowhere, str(prosody_run), str(dawn_run)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "the runs were distilled from different teachers" in err
    assert f"{prosody_run}: prosody; {dawn_run}: dawn:{dawn}" in err and "choose one with --teacher" in err
    # another teacher given: measured, with a warning naming both
    said = re.escape(f"{dawn_run} was distilled from dawn:{dawn} ({DawnTeacher(dawn).id}), measured here against "
                     "prosody (prosody-annotator)")
    with pytest.warns(UserWarning, match=said), pytest.raises(FileNotFoundError, match="no corpus manifest"):
        evaluate.main([nowhere, "--teacher=prosody", str(dawn_run), str(prosody_run)])
    # the teacher a run names but that is gone: said with where it came from
    gone = _run_of(f"dawn:{tmp_path / 'gone'}", "dawn:0123456789abcdef", tmp_path / "gone_run")
    with pytest.raises(ValueError, match=r"not a directory.*the teacher .*gone_run/train.json names: choose one "
                                         "with --teacher"):
        evaluate.main([nowhere, str(gone)])
