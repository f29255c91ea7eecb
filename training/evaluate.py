"""The student table: each student against the teacher on held-out clips, float and int8.

    python -m training.evaluate --corpus=runs/corpus/manifest.csv --teacher=prosody \\
        --out=docs/students runs/w2s runs/w2s-wide runs/mnv3 runs/mnv4

For every student run directory (model.safetensors + train.json from training.distill) it measures,
on the `split` (default test) clips of the corpus, each cut to its first `eval_seconds`:

- CCC per dimension (arousal, dominance, valence) of the float student against the teacher, over all
  clips and separately over real (Debian) and synthetic (espeak-ng, flite) speech;
- the same for the int8 model run by the C engine (Wav2Small students: training.quantize, calibrated
  on `calib` training clips, training.export to .w2s, wav2small.Model), and the CCC it loses;
- trainable parameters, multiply-accumulates per second of audio (training.mobilenet.count_macs:
  convolutions, linear layers, matrix products), and the size of the deployed file (.w2s for
  Wav2Small; float32 safetensors for MobileNets, which the engine does not run).

Teacher targets come from the same annotation cache as training (same keys), so a teacher already
run by training.distill is not run again. `--teacher=prosody` uses the prosody annotator's targets
of the labelled (espeak-ng) clips. Writes <out>.md and <out>.json; the Markdown holds the command.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .cache import AnnotationCache, View
from .corpus import Entry, read_manifest
from .distill import Split, load_student, predict_exact, render_view
from .metrics import ccc_numpy
from .mobilenet import count_macs
from .speech import default_cache_dir
from .teachers import OUTPUTS, from_spec


def load_split(manifest: str | Path, split: str, eval_seconds: float, labelled_only: bool) -> tuple[list[Entry], Split]:
    from wav2small.audio import load
    from wav2small.model import to_int16

    entries = [e for e in read_manifest(manifest) if e.split == split and (e.targets is not None or not labelled_only)]
    if len(entries) < 3:
        raise ValueError(f"{manifest}: only {len(entries)} {'labelled ' if labelled_only else ''}{split} clips; need 3")
    cut = int(round(eval_seconds * 16000))
    clips = [to_int16(load(e.path))[:cut] for e in entries]
    targets = np.array([e.targets for e in entries], np.float32) if labelled_only else np.zeros((len(clips), 3), np.float32)
    return entries, Split(clips, targets, [e.group for e in entries], [e.sha256 for e in entries])


def teacher_targets(spec: str, split: Split, cache_dir: Path, threads: int = 1) -> tuple[np.ndarray, str]:
    if spec == "prosody":
        return split.targets, "prosody-annotator"
    teacher = from_spec(spec, threads=threads)
    cache = AnnotationCache(cache_dir, teacher)
    pcm = dict(zip(split.ids, split.clips))
    views = [View(i, 0, len(c)) for i, c in zip(split.ids, split.clips)]
    return cache.annotate(views, lambda v: render_view(pcm[v.clip], v, "repeat"), what="teacher (eval)"), teacher.id


def calibration_clips(manifest: str | Path, n: int, seconds: float = 6.0) -> list[np.ndarray]:
    """n training clips spread over the manifest, real speech first (the engine runs on real audio)."""
    from wav2small.audio import load

    train = [e for e in read_manifest(manifest) if e.split == "train"]
    real = [e for e in train if e.source.startswith("debian:")]
    pool = real if len(real) >= n else train
    if not pool:
        raise ValueError(f"{manifest} has no training clips to calibrate on")
    picked = pool[:: max(1, len(pool) // n)][:n]
    return [load(e.path)[: int(seconds * 16000)] for e in picked]


def ccc_dict(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    if len(pred) < 2:
        return {o: float("nan") for o in OUTPUTS}
    return {o: float(v) for o, v in zip(OUTPUTS, ccc_numpy(pred, target))}


def by_subset(pred: np.ndarray, target: np.ndarray, entries: list[Entry]) -> dict[str, dict]:
    real = np.array([e.source.startswith("debian:") for e in entries])
    out = {"all": {"clips": len(entries), **ccc_dict(pred, target)}}
    for name, mask in (("real", real), ("synthetic", ~real)):
        if mask.sum() >= 3:
            out[name] = {"clips": int(mask.sum()), **ccc_dict(pred[mask], target[mask])}
    return out


def evaluate_student(run_dir: Path, entries: list[Entry], split: Split, targets: np.ndarray,
                     calib: list[np.ndarray] | None) -> dict:
    from wav2small import Model

    from .export import write_model
    from .quantize import quantize

    model, kind, report = load_student(run_dir)
    t0 = time.time()
    pred = predict_exact(model, split, 16)
    row: dict = {
        "run": str(run_dir), "student": kind, "model_args": report.get("model_args", {}),
        "trained_with": report.get("teacher", "?"), "train_steps": report.get("config", {}).get("max_iters"),
        "train_command": "python -m training.distill " + " ".join(
            shlex.quote(f"--{k}={v}") for k, v in report.get("overrides", {}).items()),
        "train_minutes": round(report.get("wall_seconds_this_invocation", float("nan")) / 60, 1),
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "macs_per_second": int(count_macs(model)),
        "float": by_subset(pred, targets, entries),
    }
    if kind == "wav2small" and calib is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "student.w2s"
            data = write_model(quantize(model, calib), path)
            engine = Model(path)
            q = np.stack([engine.predict(c).as_array() for c in split.clips]).astype(np.float32)
        row["file"] = {"kind": ".w2s (int8 engine)", "bytes": len(data)}
        row["int8"] = by_subset(q, targets, entries)
        row["int8_loss"] = {o: row["float"]["all"][o] - row["int8"]["all"][o] for o in OUTPUTS}
        row["int8_vs_float"] = ccc_dict(q, pred)
    else:
        row["file"] = {"kind": "float32 safetensors", "bytes": (run_dir / "model.safetensors").stat().st_size}
    row["seconds"] = round(time.time() - t0, 1)
    return row


def markdown(result: dict) -> str:
    def f(x: float, fmt: str = ".3f") -> str:
        return "n/a" if x is None or not np.isfinite(x) else format(x, fmt)

    lines = [
        "# Students against the teacher",
        "",
        f"Teacher: `{result['teacher']}`. Corpus: `{result['corpus']}`, split `{result['split']}` "
        f"({result['clips']} clips, each cut to its first {result['eval_seconds']} s; groups (speakers, voices) "
        "never seen in training). CCC of each student's outputs against the teacher's, per dimension. "
        "docs/distillation.md says which teachers exist offline and what these numbers do and do not mean.",
        "",
        "| student | parameters | MACs / s of audio | file | float A | float D | float V | int8 A | int8 D | int8 V "
        "| int8 loss (max) |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["students"]:
        fl, q = r["float"]["all"], r.get("int8", {}).get("all", {})
        loss = max(r["int8_loss"].values()) if "int8_loss" in r else None
        lines.append(
            f"| {r['student']} ({Path(r['run']).name}) | {r['parameters']:,} | {r['macs_per_second'] / 1e6:.1f} M "
            f"| {r['file']['bytes'] / 1024:.1f} KB {r['file']['kind']} | "
            + " | ".join(f(fl[o]) for o in OUTPUTS) + " | "
            + " | ".join(f(q.get(o)) for o in OUTPUTS) + f" | {f(loss, '.4f')} |")
    lines += ["", "By kind of speech (float | int8):", "",
              "| student | subset | clips | arousal | dominance | valence |", "|---|---|---:|---|---|---|"]
    for r in result["students"]:
        for subset, m in r["float"].items():
            q = r.get("int8", {}).get(subset, {})
            lines.append(f"| {Path(r['run']).name} | {subset} | {m['clips']} | "
                         + " | ".join(f"{f(m[o])} / {f(q.get(o))}" for o in OUTPUTS) + " |")
    lines += ["", "Students trained with (wall time of the run on the shared 2-core machine):", "", "```bash"]
    lines += [f"{r['train_command']}   # {r['train_minutes']} min" for r in result["students"]]
    lines += ["```", "", "Made by:", "", "```bash", result["command"], "```", "",
              f"{result['date']}, {result['wall_seconds']} s on {result['threads']} thread(s). MACs count "
              "convolutions, linear layers and matrix products (torch's FLOP counter / 2). int8 runs through the "
              "C engine (wav2small.Model) after training.quantize, calibrated on "
              f"{result['calibration_clips']} training clips; MobileNets have no int8 engine path.", ""]
    return "\n".join(lines)


def run(args: argparse.Namespace, argv: list[str]) -> dict:
    torch.set_num_threads(args.threads)
    t0 = time.time()
    labelled_only = args.teacher == "prosody"
    entries, split = load_split(args.corpus, args.split, args.eval_seconds, labelled_only)
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    targets, teacher_id = teacher_targets(args.teacher, split, cache_dir, args.threads)
    calib = calibration_clips(args.corpus, args.calib) if args.calib > 0 else None
    students = []
    for run_dir in args.runs:
        print(f"evaluating {run_dir}", flush=True)
        students.append(evaluate_student(Path(run_dir), entries, split, targets, calib))
    result = {
        "teacher": teacher_id, "corpus": str(args.corpus), "split": args.split, "clips": len(entries),
        "eval_seconds": args.eval_seconds, "calibration_clips": len(calib) if calib else 0,
        "students": students, "threads": args.threads,
        "command": "python -m training.evaluate " + " ".join(shlex.quote(a) for a in argv),
        "date": datetime.date.today().isoformat(), "wall_seconds": round(time.time() - t0, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    return result


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="student run directories (training.distill out_dir)")
    ap.add_argument("--corpus", required=True, help="manifest.csv from python -m training.corpus")
    ap.add_argument("--teacher", default="prosody", help="teacher spec as in training.distill (default prosody)")
    ap.add_argument("--split", default="test", choices=("val", "test"))
    ap.add_argument("--eval_seconds", type=float, default=8.0, help="clips are cut to their first N seconds")
    ap.add_argument("--calib", type=int, default=24, help="training clips for int8 calibration (0 = float only)")
    ap.add_argument("--cache_dir", default="", help="annotation cache (default $WAV2SMALL_CACHE or ~/.cache/wav2small)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="docs/students", help="writes OUT.md and OUT.json")
    args = ap.parse_args(argv)
    result = run(args, argv)
    for r in result["students"]:
        fl = r["float"]["all"]
        q = r.get("int8", {}).get("all", {})
        print(f"{Path(r['run']).name}: float " + " ".join(f"{o[0].upper()} {fl[o]:.3f}" for o in OUTPUTS)
              + ("; int8 " + " ".join(f"{o[0].upper()} {q[o]:.3f}" for o in OUTPUTS) if q else ""))
    print(f"wrote {Path(args.out).with_suffix('.md')} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
