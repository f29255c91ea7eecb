"""Training never loses work (docs/reliability.md §5).

- Unreadable or corrupt audio files (a WAV cut short, random bytes named .wav, an empty file, a
  directory named x.wav, NaN samples, a missing file) are skipped with a warning and counted by
  corpus building, the distillation loaders (train.json "skipped_audio") and evaluation; the run
  goes on with the rest.
- Checkpoints, annotation shards, manifests and reports are written atomically; a damaged shard is
  ignored and recomputed.
- A real `python -m training.distill` process killed with SIGKILL after its first checkpoint and
  resumed with --resume=true ends with the same train.json metrics and the same weights, bit for
  bit, as an uninterrupted run with the same seed.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import CountingTeacher

from training import distill
from training.audio_io import (
    Skipped,
    UnreadableAudio,
    UnreadableAudioWarning,
    audio_seconds,
    read_audio,
    read_int16,
    read_many,
)
from training.corpus import COLUMNS, DebianSource, debian_entries, read_manifest, write_manifest
from training.teachers import OUTPUTS, file_sha256

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000


def _clip(k: int, seconds: float = 1.0) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A voiced-sounding tone whose pitch and loudness follow its targets (so CCC is meaningful)."""
    rng = np.random.default_rng(k)
    a, d, v = (float(x) for x in rng.uniform(0.1, 0.9, 3))
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 90 + 200 * a
    x = sum(np.sin(2 * np.pi * f0 * h * t + h) / h for h in range(1, 6))
    x = (0.1 + 0.5 * d) * x / 3 + 0.02 * v * rng.standard_normal(len(t))
    return (x * 20000).clip(-32768, 32767).astype(np.int16), (a, d, v)


def _bad_files(root: Path) -> dict[str, Path]:
    """The broken files of the brief, next to the good ones: each must be skipped, not fatal."""
    root.mkdir(parents=True, exist_ok=True)
    good, _ = _clip(999)
    sf.write(root / "whole.wav", good, RATE, subtype="PCM_16")
    data = (root / "whole.wav").read_bytes()
    out = {
        "truncated": root / "truncated.wav",       # cut in the middle of its samples
        "header_only": root / "header_cut.wav",    # cut inside the header
        "random": root / "random.wav",             # random bytes named .wav
        "empty": root / "empty.wav",               # zero bytes
        "directory": root / "x.wav",               # a directory named x.wav
    }
    out["truncated"].write_bytes(data[: len(data) // 2])
    out["header_only"].write_bytes(data[:30])
    out["random"].write_bytes(np.random.default_rng(5).bytes(4000))
    out["empty"].write_bytes(b"")
    out["directory"].mkdir(exist_ok=True)
    (root / "whole.wav").unlink()
    return out


# ------------------------------------------------------------------------------------------------
# the shared reader (training/audio_io.py)

def test_every_kind_of_bad_file_is_named_and_good_files_read_as_before(tmp_path: Path):
    bad = _bad_files(tmp_path)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(4000, np.nan, np.float32), RATE, subtype="FLOAT")
    short = tmp_path / "short.wav"
    sf.write(short, np.ones(100, np.int16), RATE, subtype="PCM_16")
    reasons = {"truncated": "truncated", "header_only": "not readable audio", "random": "not readable audio",
               "empty": "empty", "directory": "not a regular file"}
    for kind, path in bad.items():
        with pytest.raises(UnreadableAudio) as e:
            read_audio(path)
        assert e.value.reason.startswith(reasons[kind]) and e.value.path == str(path), (kind, e.value)
        with pytest.raises(UnreadableAudio):
            audio_seconds(path)
    for path, reason in ((nan, "corrupt samples"), (short, "too short"), (tmp_path / "missing.wav", "missing")):
        with pytest.raises(UnreadableAudio, match=reason):
            read_audio(path)

    # a good 16-bit file comes back sample for sample, as sf.read(dtype=int16) gives it
    pcm, _ = _clip(1)
    good = tmp_path / "good.wav"
    sf.write(good, pcm, RATE, subtype="PCM_16")
    assert np.array_equal(read_int16(good), sf.read(good, dtype="int16")[0])
    assert audio_seconds(good) == len(pcm) / RATE
    # a streamed WAV (data size left open in the header) is not "truncated"
    streamed = bytearray(good.read_bytes())
    at = streamed.index(b"data") + 4
    streamed[at: at + 4] = b"\xff\xff\xff\xff"
    (tmp_path / "streamed.wav").write_bytes(bytes(streamed))
    assert len(read_int16(tmp_path / "streamed.wav")) == len(pcm)

    skipped = Skipped("test files")
    with pytest.warns(UnreadableAudioWarning) as record:
        keep, clips = read_many([good, *bad.values(), nan, good], skipped=skipped, int16=True)
    assert keep == [0, 7] and len(clips) == 2 and len(skipped) == 6 and len(record) == 6
    report = skipped.report()
    assert report["count"] == 6 and {f["path"] for f in report["files"]} == {str(p) for p in [*bad.values(), nan]}
    assert "skipped 6 unreadable audio file(s)" in skipped.summary()


def test_warnings_stop_after_the_first_twenty_but_the_count_goes_on(tmp_path: Path):
    skipped = Skipped("many")
    with pytest.warns(UnreadableAudioWarning) as record:
        read_many([tmp_path / f"missing{i}.wav" for i in range(50)], skipped=skipped)
    assert len(skipped) == 50 and len(record) == 20 and "only counted" in str(record[-1].message)


# ------------------------------------------------------------------------------------------------
# corpus building, training and evaluation skip them

def test_corpus_building_skips_and_counts_unreadable_files(tmp_path: Path):
    src = tmp_path / "package"
    bad = _bad_files(src / "speaker")
    for k in range(3):
        sf.write(src / "speaker" / f"good{k}.wav", _clip(k)[0], RATE, subtype="PCM_16")
    source = DebianSource("test-package", str(src), "*/*.wav", lambda p: "test-speaker", lambda p: "en")
    skipped = Skipped("corpus")
    with pytest.warns(UnreadableAudioWarning):
        entries = debian_entries(min_seconds=0.5, sources=[source], skipped=skipped)
    assert sorted(Path(e.path).name for e in entries) == ["good0.wav", "good1.wav", "good2.wav"]
    assert sorted(Path(p).name for p, _ in skipped.files) == sorted(p.name for p in bad.values())
    write_manifest(entries, tmp_path / "corpus", skipped)
    assert read_manifest(tmp_path / "corpus" / "manifest.csv") == entries
    summary = json.loads((tmp_path / "corpus" / "summary.json").read_text())
    assert summary["skipped_audio"]["count"] == len(bad) == 5
    assert not list((tmp_path / "corpus").glob(".*"))  # atomic writes left no temp file


def _manifest(root: Path, with_bad: bool = True) -> Path:
    """24 good labelled clips in 6 groups (4 train, 1 val, 1 test) and, with_bad, the broken files
    of _bad_files in train and val."""
    rows = []
    for k in range(24):
        group = k % 6
        split = "train" if group < 4 else "val" if group == 4 else "test"
        pcm, targets = _clip(k, seconds=0.6 + 0.05 * (k % 5))
        path = root / "audio" / f"clip{k}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, pcm, RATE, subtype="PCM_16")
        rows.append((path, file_sha256(path), len(pcm) / RATE, f"g{group}", split, targets))
    if with_bad:
        for i, path in enumerate(_bad_files(root / "bad").values()):
            fake = hashlib.sha256(str(path).encode()).hexdigest()
            rows.append((path, fake, 1.0, "g0" if i < 3 else "g4", "train" if i < 3 else "val", (0.5, 0.5, 0.5)))
    out = root / "manifest.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for path, sha, seconds, group, split, t in rows:
            w.writerow({"path": str(path), "sha256": sha, "seconds": f"{seconds:.3f}", "source": "test",
                        "group": group, "language": "en", "split": split,
                        **{o: f"{v:.6f}" for o, v in zip(OUTPUTS, t)}})
    return out


def test_a_training_run_skips_bad_files_and_reports_them(tmp_path: Path):
    manifest = _manifest(tmp_path)
    cfg = distill.TrainConfig(out_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"), corpus=str(manifest),
                              seed=1, crop_seconds=0.5, batch_size=4, max_iters=4, warmup_iters=1, eval_interval=2,
                              log_interval=2, checkpoint_interval=2, eval_batch=8, threads=1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        report = distill.train(cfg)
    assert sum(issubclass(w.category, UnreadableAudioWarning) for w in record) == 5
    assert report["clips"] == {"train": 16, "val": 4, "test": 4}
    assert report["skipped_audio"]["count"] == 5
    on_disk = json.loads((tmp_path / "run" / "train.json").read_text())
    assert on_disk["skipped_audio"] == report["skipped_audio"]
    assert all(np.isfinite(v) for m in report["ccc"].values() for v in m.values())

    # evaluation reads its split through the same reader
    from training.evaluate import load_split

    with pytest.warns(UnreadableAudioWarning):
        entries, split = load_split(manifest, "val", eval_seconds=8.0, labelled_only=True)
    assert len(entries) == len(split) == 4


# ------------------------------------------------------------------------------------------------
# atomic files

def test_a_failed_write_leaves_the_previous_checkpoint_whole(tmp_path: Path):
    path = tmp_path / "ckpt.pt"
    distill.save_checkpoint(path, {"iter_num": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full, say")

    with pytest.raises(RuntimeError, match="disk full"):
        distill.save_checkpoint(path, {"iter_num": 2, "x": Unpicklable()})
    assert torch.load(path, weights_only=False) == {"iter_num": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_atomic_writes_keep_text_exact_and_leave_the_old_file_on_failure(tmp_path: Path):
    from training.files import atomic_path, write_atomic

    path = tmp_path / "new" / "dir" / "report.md"
    write_atomic(path, "a\r\nb\n")
    assert path.read_bytes() == b"a\r\nb\n" and path.stat().st_mode & 0o777 == 0o644
    with pytest.raises(OSError, match="disk full"):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise OSError("disk full, say")
    assert path.read_bytes() == b"a\r\nb\n" and sorted(p.name for p in path.parent.iterdir()) == ["report.md"]


def test_a_damaged_annotation_shard_is_recomputed_not_fatal(tmp_path: Path, speech_clips):
    from training.cache import AnnotationCache, View

    speech = speech_clips[0][:16000].astype(np.float32)
    views = [View(f"c{i}", 0, 8000 + 100 * i) for i in range(6)]
    render = lambda v: speech[:v.length]
    teacher = CountingTeacher()
    first = AnnotationCache(tmp_path, teacher, shard_size=3).annotate(views, render, progress=False)
    shards = sorted(tmp_path.rglob("shard-*.npz"))
    assert len(shards) == 2 and teacher.clips == 6
    shards[0].write_bytes(shards[0].read_bytes()[:40])  # damaged on disk (not by the atomic writer)
    teacher = CountingTeacher()
    with pytest.warns(UserWarning, match="unreadable shard"):
        again = AnnotationCache(tmp_path, teacher, shard_size=3).annotate(views, render, progress=False)
    assert teacher.clips == 3 and np.array_equal(again, first)


# ------------------------------------------------------------------------------------------------
# SIGKILL, then --resume

TINY = ["--crop_seconds=0.5", "--batch_size=4", "--max_iters=40", "--warmup_iters=2", "--eval_interval=10",
        "--log_interval=10", "--checkpoint_interval=2", "--eval_batch=8", "--threads=1", "--seed=3"]


def _distill(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "training.distill", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def test_a_run_killed_with_sigkill_and_resumed_ends_as_an_uninterrupted_one(tmp_path: Path):
    manifest = _manifest(tmp_path / "data")
    common = [f"--corpus={manifest}", f"--cache_dir={tmp_path / 'cache'}", *TINY]
    whole, broken = tmp_path / "whole", tmp_path / "broken"

    _finish(_distill([f"--out_dir={whole}", *common]))

    proc = _distill([f"--out_dir={broken}", *common])
    ckpt = broken / "ckpt.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed:\n{out}"
    # killed mid-run: a whole checkpoint from before the end, no results yet
    at = torch.load(ckpt, weights_only=False)["iter_num"]
    assert 2 <= at < 40 and at % 2 == 0
    assert not (broken / "train.json").exists() and not (broken / "model.safetensors").exists()

    log = _finish(_distill([f"--out_dir={broken}", "--resume=true"]))
    assert f"resumed from {ckpt} at step {at}" in log

    a = json.loads((whole / "train.json").read_text())
    b = json.loads((broken / "train.json").read_text())
    for key in ("ccc", "per_voice", "history", "best_iter", "clips", "skipped_audio"):
        assert a[key] == b[key], key
    assert a["skipped_audio"]["count"] == 5
    from safetensors.torch import load_file

    wa, wb = load_file(str(whole / "model.safetensors")), load_file(str(broken / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ca = torch.load(whole / "ckpt.pt", weights_only=False)
    cb = torch.load(broken / "ckpt.pt", weights_only=False)
    assert ca["iter_num"] == cb["iter_num"] == 40
    assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])


# ------------------------------------------------------------------------------------------------
# how a command ends on a user's mistake (training/cli.py)

def test_a_user_error_is_one_line_and_status_1_a_bug_keeps_its_traceback(tmp_path: Path):
    args = [sys.executable, "-m", "training.uncertainty", f"--init={tmp_path / 'no-run'}",
            f"--out_dir={tmp_path / 'out'}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("WAV2SMALL_TRACEBACK", None)
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == ("python -m training.uncertainty: error: No such file or "
                                                    f"directory: {tmp_path / 'no-run' / 'model.safetensors'}")
    assert "Traceback" not in proc.stderr
    proc = subprocess.run(args, cwd=ROOT, env={**env, "WAV2SMALL_TRACEBACK": "1"}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "FileNotFoundError" in proc.stderr


def test_run_maps_each_kind_of_ending_to_its_status(capsys, monkeypatch):
    from training.cli import ToolError, run

    monkeypatch.delenv("WAV2SMALL_TRACEBACK", raising=False)

    def raising(e: BaseException):
        def main():
            raise e
        return main

    cases = [(lambda: None, 0, ""), (lambda: 3, 3, ""),
             (raising(ToolError("sox is not installed")), 1, "prog: error: sox is not installed"),
             (raising(PermissionError(13, "Permission denied", "/x/y")), 1, "prog: error: Permission denied: /x/y"),
             (raising(KeyboardInterrupt()), 130, "prog: interrupted")]
    def warns():
        warnings.warn("crop of 30 s is over twice the median training clip")
    cases.append((warns, 0, "prog: warning: crop of 30 s is over twice the median training clip"))
    for main, status, line in cases:
        with pytest.raises(SystemExit) as e, warnings.catch_warnings():
            warnings.simplefilter("always")
            run(main, "prog")
        assert e.value.code == status and capsys.readouterr().err.strip() == line
    with pytest.raises(TypeError):   # a bug is not a user's mistake: its traceback stays
        run(raising(TypeError("bug")), "prog")


@pytest.mark.parametrize("module, args", [
    ("training.uncertainty", ["--init={run}", "--out_dir={tmp}/out"]),
    ("training.familiarity", ["{run}", "--out_dir={tmp}/out"]),
    ("training.onnx_export", ["{run}/model.safetensors", "-o", "{tmp}/x.onnx"]),
])
def test_a_damaged_weights_file_is_named_in_one_line(module, args, tmp_path: Path):
    """A truncated model.safetensors ended every command that reads one with safetensors' traceback
    (SafetensorError is none of training.cli's user errors); training.convert alone said what it was."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes((ROOT / "training" / "default" / "model.safetensors").read_bytes()[:500])
    (run / "train.json").write_bytes((ROOT / "training" / "default" / "train.json").read_bytes())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("WAV2SMALL_TRACEBACK", None)
    proc = subprocess.run([sys.executable, "-m", module, *(a.format(run=run, tmp=tmp_path) for a in args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"python -m {module}: error: {run / 'model.safetensors'} is not a safetensors weights file: "), proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("module", ["training.distill", "training.uncertainty"])
@pytest.mark.parametrize("damage", [b"PK\x03\x04 half a zip", b"not a checkpoint"])
def test_a_damaged_checkpoint_is_named_in_one_line_and_kept(module, damage, tmp_path: Path):
    """--resume=true on a truncated or foreign ckpt.pt ended in torch's traceback (a RuntimeError or
    an UnpicklingError, none of training.cli's user errors)."""
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(damage)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("WAV2SMALL_TRACEBACK", None)
    proc = subprocess.run([sys.executable, "-m", module, f"--out_dir={tmp_path}", "--resume=true"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"python -m {module}: error: {ckpt} is not a readable checkpoint ("), last
    assert last.endswith("): start a new --out_dir, or restore the file"), last
    assert ckpt.read_bytes() == damage and [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_a_damaged_train_json_is_named(tmp_path: Path):
    """training.release and training.familiarity printed json's bare "Expecting property name ...:
    line 1 column 2" for a damaged train.json, without saying which file (uq_select named it)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes((ROOT / "training" / "default_uq" / "model.safetensors").read_bytes())
    (run / "train.json").write_text("{bad")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("WAV2SMALL_TRACEBACK", None)
    proc = subprocess.run([sys.executable, "-m", "training.familiarity", str(run), f"--out_dir={tmp_path / 'out'}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"python -m training.familiarity: error: {run / 'train.json'} is not JSON: Expecting property name"), proc.stderr
    from training.release import release

    with pytest.raises(ValueError, match=f"^{re.escape(str(run / 'train.json'))} is not JSON: "):
        release(run, out_dir=tmp_path / "release")
    assert not (tmp_path / "out").exists() and not (tmp_path / "release").exists()


@pytest.mark.parametrize("module, args", [
    ("training.onnx_export", ["{run}", "-o", "{tmp}/x.onnx"]),
    ("training.quant_ablation", ["{run}"]),
])
def test_a_run_directory_given_for_its_weights_file_is_named(module, args, tmp_path: Path):
    """A run directory where a .safetensors file is expected said only "No such device (os error 19)"
    (safetensors mapping a directory); training.convert already said which file to give."""
    run = ROOT / "training" / "default"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("WAV2SMALL_TRACEBACK", None)
    proc = subprocess.run([sys.executable, "-m", module, *(a.format(run=run, tmp=tmp_path) for a in args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == (
        f"python -m {module}: error: {run} is a directory: give its model.safetensors"), proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("module, other, marker", [("training.distill", "init", "student"),
                                                   ("training.uncertainty", "student", "init")])
def test_the_other_commands_checkpoint_is_refused_in_one_line(module, other, marker, tmp_path: Path):
    """training.uncertainty --resume=true on a training.distill run ended in load_state_dict's size
    mismatch, and training.distill on an uncertainty run in TrainConfig's TypeError (tracebacks)."""
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"iter_num": 2, "config": {other: "x", "seed": 0}}, ckpt)
    before = ckpt.read_bytes()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("WAV2SMALL_TRACEBACK", None)
    proc = subprocess.run([sys.executable, "-m", module, f"--out_dir={tmp_path}", "--resume=true"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == (
        f"python -m {module}: error: {ckpt} is not a {module} checkpoint (its config has no {marker}): resume it "
        "with the command that wrote it, or start a new --out_dir"), proc.stderr
    assert ckpt.read_bytes() == before
