"""The student table: each student against the teacher on held-out clips, float and int8.

    python -m training.evaluate --corpus=runs/corpus/manifest.csv --teacher=prosody \\
        --out=docs/students runs/w2s runs/w2s-wide runs/mnv3 runs/mnv4

For every student run directory (model.safetensors + train.json from training.distill) it measures,
on the `split` (default test) clips of the corpus, each cut to its first `eval_seconds`:

- CCC per dimension (arousal, dominance, valence) of the float student against the teacher, over all
  clips and separately over real (Debian) and synthetic (espeak-ng, flite) speech;
- the same for the int8 model run by the C engine (Wav2Small students: training.quantize, calibrated
  on `calib` training clips of the kind the student trained on (calibration_entries), training.export
  to .w2s, wav2small.Model), and the CCC it loses;
- trainable parameters, multiply-accumulates per second of audio (training.mobilenet.count_macs:
  convolutions, linear layers, matrix products), and the size of the deployed file (.w2s for
  Wav2Small; float32 safetensors for MobileNets, which the engine does not run).

Teacher targets come from the same annotation cache as training (same keys), so a teacher already
run by training.distill is not run again. `--teacher=prosody` uses the prosody annotator's targets
of the labelled (espeak-ng) clips. Without --teacher, the teacher is the one the runs were distilled
from (their train.json; runs of different teachers need --teacher); a --teacher other than a run's
own is measured with a warning. Writes <out>.md and <out>.json; the Markdown holds the command.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .audio_io import Skipped, read_many
from .cache import AnnotationCache, View
from .cli import HelpFormatter, describe
from .corpus import Entry, fingerprint, read_manifest
from .distill import Split, load_student, predict_exact, render_view
from .files import FINISHED_RUN, missing_from_run, read_json, write_atomic
from .metrics import ccc_numpy
from .mobilenet import count_macs
from .speech import default_cache_dir
from .teachers import OUTPUTS, Teacher, TeacherError, from_spec
from .versions import versions


def load_split(manifest: str | Path, split: str, eval_seconds: float, labelled_only: bool) -> tuple[list[Entry], Split]:
    """The split's clips; unreadable files are left out with a warning (training/audio_io.py)."""
    entries = [e for e in read_manifest(manifest) if e.split == split and (e.targets is not None or not labelled_only)]
    skipped = Skipped(f"{split} split")
    keep, clips = read_many([e.path for e in entries], 16000, skipped, int16=True)
    entries = [entries[k] for k in keep]
    skipped.finish()
    if len(entries) < 3:
        raise ValueError(f"{manifest}: only {len(entries)} {'labelled ' if labelled_only else ''}{split} clips; need 3")
    cut = int(round(eval_seconds * 16000))
    clips = [c[:cut] for c in clips]
    targets = np.array([e.targets for e in entries], np.float32) if labelled_only else np.zeros((len(clips), 3), np.float32)
    return entries, Split(clips, targets, [e.group for e in entries], [e.sha256 for e in entries])


PROSODY_ID = "prosody-annotator"   # train.json's "teacher" of a student of the prosody annotator


def recorded_teacher(run_dir: str | Path) -> tuple[str, str]:
    """(spec, id) of the teacher a training.distill run was distilled from: train.json's config.teacher
    (the --teacher it was given) and "teacher" (its content id; runs from before it: the spec).
    ValueError naming the file if it is not a run's train.json."""
    path = Path(run_dir) / "train.json"
    report = read_json(path)
    if not isinstance(report, dict):
        raise ValueError(f"{path} is not a training run's train.json (not a JSON object)")
    spec = report.get("config", {}).get("teacher", "prosody")
    return spec, report.get("teacher") or (PROSODY_ID if spec == "prosody" else spec)


def teacher_targets(teacher: Teacher | None, split: Split, cache_dir: Path) -> tuple[np.ndarray, str]:
    """The split's targets from `teacher` (None: the prosody annotator's labels) and its id."""
    if teacher is None:
        return split.targets, PROSODY_ID
    cache = AnnotationCache(cache_dir, teacher)
    pcm = dict(zip(split.ids, split.clips))
    views = [View(i, 0, len(c)) for i, c in zip(split.ids, split.clips)]
    return cache.annotate(views, lambda v: render_view(pcm[v.clip], v, "repeat"), what="teacher (eval)"), teacher.id


def calibration_entries(manifest: str | Path, n: int, labelled_only: bool = False) -> list[Entry]:
    """n training clips spread over the manifest, drawn from the clips the student was trained on:
    with `labelled_only` (a student of the prosody annotator, which trains on the labelled espeak-ng
    clips only) those; otherwise real speech first (the engine runs on real audio).

    Why not real speech for every student: int8 activation ranges are the calibration maxima, and an
    annotator's student sees larger activations on espeak-ng than on real speech. Calibrated on real
    speech, its int8 model clipped them on its own (espeak-ng) validation and test clips and lost up
    to 0.0066 / 0.0065 CCC (val / test); calibrated on 24 espeak-ng training clips, 0.0017 / 0.0002
    (runs/final/prosody/w2s, 2026-12-02)."""
    train = [e for e in read_manifest(manifest) if e.split == "train" and (e.targets is not None or not labelled_only)]
    real = [e for e in train if e.source.startswith("debian:")]
    pool = real if len(real) >= n else train
    if not pool:
        raise ValueError(f"{manifest} has no {'labelled ' if labelled_only else ''}training clips to calibrate on")
    return pool[:: max(1, len(pool) // n)][:n]


def calibration_clips(manifest: str | Path, n: int, seconds: float = 6.0,
                      labelled_only: bool = False) -> list[np.ndarray]:
    """The clips of calibration_entries, cut to `seconds`; an unreadable file is left out with a warning."""
    picked = calibration_entries(manifest, n, labelled_only)
    _, clips = read_many([e.path for e in picked], 16000, Skipped("calibration clips"))
    return [c[: int(seconds * 16000)] for c in clips]


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


def train_command(config: dict) -> str:
    """The training command of a run: its options that differ from the defaults (a resumed run's too)."""
    from .distill import TrainConfig

    default = TrainConfig()
    opts = {k: v for k, v in config.items() if k not in ("resume", "stop_at") and getattr(default, k, None) != v}
    return "python -m training.distill " + " ".join(shlex.quote(f"--{k}={v}") for k, v in opts.items())


def qat_summary(report: dict) -> dict | None:
    """train.json's quantization-aware fine-tuning entry, in short (None: the run never checked)."""
    q = report.get("qat")
    if not q:
        return None
    out = {"mode": q.get("mode"), "ran": bool(q.get("ran")), "steps": q.get("steps", 0),
           "val_loss_before": q["pre"]["max_loss"], "val_int8_before": q["pre"]["int8_mean"]}
    if q.get("post"):
        out.update(val_loss_after=q["post"]["max_loss"], val_int8_after=q["post"]["int8_mean"],
                   chosen_step=q.get("best_step"))
    return out


def evaluate_student(run_dir: Path, entries: list[Entry], split: Split, targets: np.ndarray,
                     calib: list[np.ndarray] | None) -> dict:
    from .qat import engine_predictions

    model, kind, report = load_student(run_dir)
    t0 = time.time()
    pred = predict_exact(model, split, 16)
    row: dict = {
        "run": str(run_dir), "student": kind, "model_args": report.get("model_args", {}),
        "trained_with": report.get("teacher", "?"), "train_steps": report.get("config", {}).get("max_iters"),
        "train_command": train_command(report.get("config", {})),
        "qat": qat_summary(report),
        "train_minutes": round(report.get("wall_seconds_this_invocation", float("nan")) / 60, 1),
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "macs_per_second": int(count_macs(model)),
        "float": by_subset(pred, targets, entries),
    }
    if kind == "wav2small" and calib is not None:
        q, data = engine_predictions(model, calib, split.clips)
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
        f"Teacher: `{result['teacher']}`. Corpus: `{result['corpus']}`"
        + (f" (content fingerprint `{result['corpus_fingerprint']}`)"
           if "corpus_fingerprint" in result else "")
        + f", split `{result['split']}` "
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
    checked = [r for r in result["students"] if r.get("qat")]
    if checked:
        lines += ["", "Quantization-aware fine-tuning (training.distill --qat; validation clips, int8 through the C "
                  "engine; loss = float CCC - int8 CCC, largest of A/D/V):", "",
                  "| student | int8 loss before | fine-tuned | steps | int8 loss after | int8 mean CCC before → after |",
                  "|---|---:|---|---:|---:|---|"]
        for r in checked:
            q = r["qat"]
            lines.append(f"| {Path(r['run']).name} | {f(q['val_loss_before'], '.4f')} | "
                         f"{'yes' if q['ran'] else 'no'} "
                         f"| {q['steps']} | {f(q.get('val_loss_after'), '.4f')} | "
                         f"{f(q['val_int8_before'])} → {f(q.get('val_int8_after'))} |")
    lines += ["", "Students trained with (wall time of each run's last invocation on the shared 2-core machine):",
              "", "```bash"]
    lines += [f"{r['train_command']}   # {r['train_minutes']} min" for r in result["students"]]
    lines += ["```", "", "Made by:", "", "```bash", result["command"], "```", "",
              f"{result['date']}, {result['wall_seconds']} s on {result['threads']} thread(s). MACs count "
              "convolutions, linear layers and matrix products (torch's FLOP counter / 2). int8 runs through the "
              "C engine (wav2small.Model) after training.quantize, calibrated on "
              f"{result['calibration_clips']} training clips ({'labelled espeak-ng' if result['teacher'] == 'prosody-annotator' else 'real speech first'}, "
              "the kind the students trained on); MobileNets have no int8 engine path.", ""]
    if "versions" in result:
        lines += ["Software: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + ".", ""]
    return "\n".join(lines)


# ---- one report from several (one per teacher) --------------------------------------------------

TARGETS = {"arousal": 0.95, "dominance": 0.90, "valence": 0.80}  # issue 3: Wav2Small vs a wav2vec2 teacher
INT8_BUDGET = 0.005


def describe_teacher(teacher_id: str) -> str:
    if teacher_id == "prosody-annotator":
        return ("**the prosody annotator** (training/prosody.py): a documented rule table from espeak-ng's pitch, "
                "pitch range, rate and voice quality to A/D/V. A stand-in, not an emotion model; only the espeak-ng "
                "clips have its targets, so it is measured on held-out espeak-ng voices.")
    if teacher_id.startswith("dawn:"):
        return (f"**a stand-in wav2vec2 teacher** (`{teacher_id}`): a small wav2vec2 in audEERING's Dawn layout "
                "(encoder → mean over time → dense/tanh/out_proj, about 100 K parameters, `python -m "
                "training.teachers`) fitted to the prosody annotator's targets, then used exactly as the real "
                "teacher would be, on all audio. It is NOT audEERING's model and not an emotion model: the numbers "
                "say how well the students follow a small wav2vec2 on held-out real (Debian) and synthetic speech.")
    return f"`{teacher_id}`."


def targets_table(results: list[dict]) -> list[dict]:
    """Each Wav2Small student against the issue's targets: CCC on held-out real speech where the split has
    some (else all clips), and the int8 loss (float CCC - int8 CCC, largest of A/D/V) on the same clips."""
    rows = []
    for res in results:
        for r in res["students"]:
            if r["student"] != "wav2small":
                continue
            subset = "real" if "real" in r["float"] else "all"
            fl = r["float"][subset]
            loss = max(fl[o] - r["int8"][subset][o] for o in OUTPUTS) if r.get("int8") else None
            rows.append({"teacher": res["teacher"], "run": r["run"], "subset": subset, "clips": fl["clips"],
                         "float": {o: fl[o] for o in OUTPUTS},
                         "meets": {o: bool(np.isfinite(fl[o]) and fl[o] >= t) for o, t in TARGETS.items()},
                         "int8_loss": loss, "int8_within": loss is not None and loss <= INT8_BUDGET})
    return rows


RESULT_KEYS = ("students", "teacher", "corpus", "split", "clips", "eval_seconds", "calibration_clips", "command",
               "date", "wall_seconds", "threads")   # what markdown() reads of a result


def read_result(path: str | Path) -> dict:
    """A training.evaluate JSON result; a ValueError naming the file if it is not one (e.g. a train.json)."""
    try:
        result = json.loads(Path(path).read_text())
    except ValueError as e:
        raise ValueError(f"{path} is not JSON ({e}): --merge takes the OUT.json files of earlier evaluations") from None
    missing = [k for k in RESULT_KEYS if k not in result] if isinstance(result, dict) else list(RESULT_KEYS)
    if missing:
        raise ValueError(f"{path} is not a training.evaluate result: it has no {', '.join(missing)} "
                         "(--merge takes the OUT.json files of earlier evaluations)")
    return result


def merge(paths: list[str], script: str | None, out: str | Path, note: str = "") -> dict:
    """One Markdown + JSON report from several training.evaluate JSON results (one per teacher)."""
    results = [read_result(p) for p in paths]
    rows = targets_table(results)
    # the date the measurements were made (a page merged again later keeps it)
    date = max((r["date"] for r in results if "date" in r), default=datetime.date.today().isoformat())
    merged = {"script": script, "date": date, "note": note, "reports": results,
              "targets": rows}
    lines = ["# Students against the teachers (stand-ins)", ""]
    if script:
        lines += [f"Made by `{script}` ({merged['date']}); every command it ran is below and in the sections, and "
                  "running it again on the same machine, with the same corpus and teacher, reproduces this page (finished "
                  "steps are skipped; docs/distillation.md, \"The corpus\", says how close another machine comes):", "", "```bash",
                  Path(script).read_text().rstrip("\n"), "```", ""]
    if note:
        lines += [note, ""]
    lines += ["No arousal/dominance/valence model can be had offline (docs/distillation.md, \"What can be measured "
              "here\"), so **every teacher on this page is a stand-in**:", ""]
    lines += [f"{k + 1}. {describe_teacher(r['teacher'])}" for k, r in enumerate(results)]
    lines += ["", "What the training budgets were and how the run went is the script's business (its comments and "
              "--note, above); the numbers are what those budgets reached, not what each architecture can reach.", "",
              "## The issue's targets", "",
              f"Issue 3 asks a Wav2Small student for CCC against a wav2vec2 teacher on held-out real speech of at least "
              f"{TARGETS['arousal']} / {TARGETS['dominance']} / {TARGETS['valence']} (A / D / V), and int8 through the "
              f"C engine costing at most {INT8_BUDGET} CCC. Measured here (float CCC; ✗ = target not met):", "",
              "| teacher | student | clips | arousal | dominance | valence | int8 loss (max) |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        cells = [f"{r['float'][o]:.3f} {'✓' if r['meets'][o] else '✗'}" for o in OUTPUTS]
        loss = "n/a" if r["int8_loss"] is None else f"{r['int8_loss']:.4f} {'✓' if r['int8_within'] else '✗'}"
        lines.append(f"| {r['teacher'][:24]} | {Path(r['run']).name} | {r['clips']} ({r['subset']}) | "
                     + " | ".join(cells) + f" | {loss} |")
    lines += ["", "The targets are for audEERING's wav2vec2 teacher; neither stand-in is that teacher, so ✗ here says "
              "what these runs reached, not what the method reaches with the real one.", ""]
    for r in results:
        body = markdown(r).splitlines()
        body[0] = "## " + ("Prosody annotator" if r["teacher"] == "prosody-annotator" else
                           "Stand-in wav2vec2 teacher" if r["teacher"].startswith("dawn:") else r["teacher"])
        lines += body + [""]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out.with_suffix(".json"), json.dumps(merged, indent=2, ensure_ascii=False) + "\n")
    write_atomic(out.with_suffix(".md"), "\n".join(lines).rstrip() + "\n")
    return merged


def run(args: argparse.Namespace, argv: list[str], recorded: dict[str, tuple[str, str]],
        from_runs: bool = False) -> dict:
    """The evaluation of main's arguments; `recorded`: each run's recorded_teacher; `from_runs`:
    --teacher is the one the runs' train.json names."""
    torch.set_num_threads(args.threads)
    t0 = time.time()
    labelled_only = args.teacher == "prosody"
    # the teacher before the clips: a teacher that does not load, or is not the runs', is told at once
    teacher = None
    if not labelled_only:
        try:
            teacher = from_spec(args.teacher, threads=args.threads)
        except TeacherError as e:
            if not from_runs:
                raise
            raise TeacherError(f"{e} (the teacher {args.runs[0]}/train.json names: choose one with --teacher)") from None
    teacher_id = PROSODY_ID if teacher is None else teacher.id
    for run_dir, (spec, run_teacher) in recorded.items():
        if run_teacher != teacher_id:   # e.g. a dawn:DIR student scored against the annotator's labels
            warnings.warn(f"{run_dir} was distilled from {spec} ({run_teacher}), measured here against "
                          f"{args.teacher} ({teacher_id})", stacklevel=2)
    entries, split = load_split(args.corpus, args.split, args.eval_seconds, labelled_only)
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    targets, teacher_id = teacher_targets(teacher, split, cache_dir)
    calib = calibration_clips(args.corpus, args.calib, labelled_only=labelled_only) if args.calib > 0 else None
    students = []
    for run_dir in args.runs:
        print(f"evaluating {run_dir}", flush=True)
        students.append(evaluate_student(Path(run_dir), entries, split, targets, calib))
    result = {
        "teacher": teacher_id, "corpus": str(args.corpus),
        "corpus_fingerprint": fingerprint(read_manifest(args.corpus)),
        "split": args.split, "clips": len(entries),
        "eval_seconds": args.eval_seconds, "calibration_clips": len(calib) if calib else 0,
        "students": students, "threads": args.threads,
        "command": "python -m training.evaluate " + " ".join(shlex.quote(a) for a in argv),
        "date": datetime.date.today().isoformat(), "wall_seconds": round(time.time() - t0, 1),
        "versions": versions(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    write_atomic(out.with_suffix(".md"), markdown(result))
    return result


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("runs", nargs="+", help="student run directories (training.distill out_dir); with --merge, "
                                            "JSON results of earlier evaluations")
    ap.add_argument("--corpus", help="manifest.csv from python -m training.corpus (required unless --merge)")
    ap.add_argument("--teacher", default=None, help="teacher spec as in training.distill (default: the one the runs "
                    "were distilled from, as their train.json records it)")
    ap.add_argument("--split", default="test", choices=("val", "test"), help="held-out split to evaluate on")
    ap.add_argument("--eval_seconds", type=float, default=8.0, help="clips are cut to their first N seconds")
    ap.add_argument("--calib", type=int, default=24, help="training clips for int8 calibration (0 = float only)")
    ap.add_argument("--cache_dir", default="", help="annotation cache (default $WAV2SMALL_CACHE or ~/.cache/wav2small)")
    ap.add_argument("--threads", type=int, default=1, help="torch and engine threads")
    ap.add_argument("--out", default="runs/students", help="writes OUT.md and OUT.json (the repository's report is "
                    "docs/students: scripts/make_students_report.sh)")
    ap.add_argument("--merge", action="store_true", help="combine the JSON results given as RUNS (one per teacher) "
                    "into one report, with the issue's targets checked")
    ap.add_argument("--script", default="", help="--merge: the script that made everything, quoted at the top")
    ap.add_argument("--note", default="", help="--merge: a paragraph after the script (e.g. what this run left out)")
    args = ap.parse_args(argv)
    if args.merge:
        for path in args.runs:   # every file before anything is written
            try:
                read_result(path)
            except (OSError, ValueError) as e:
                ap.error(describe(e))
        merge(args.runs, args.script or None, args.out, args.note)
        print(f"wrote {Path(args.out).with_suffix('.md')} and .json")
        return 0
    if not args.corpus:
        ap.error("--corpus is required")
    if args.eval_seconds <= 0.1 or args.threads < 1 or args.calib < 0:
        ap.error(f"need --eval_seconds > 0.1, --threads >= 1 and --calib >= 0, got {args.eval_seconds}, "
                 f"{args.threads}, {args.calib}")
    for r in args.runs:   # before the teacher annotates and the runs before it are evaluated
        missing = missing_from_run(r)
        if missing:
            ap.error(f"no {' or '.join(missing)} in {r} (a training.distill run has "
                     f"{' and '.join(FINISHED_RUN)})")
    try:
        recorded = {r: recorded_teacher(r) for r in args.runs}
    except (OSError, ValueError) as e:
        ap.error(describe(e))
    from_runs = args.teacher is None
    if from_runs:   # the teacher the runs learned from, not a default that may be another
        if len({tid for _, tid in recorded.values()}) > 1:
            ap.error("the runs were distilled from different teachers ("
                     + "; ".join(f"{r}: {spec}" for r, (spec, _) in recorded.items()) + "): choose one with --teacher")
        args.teacher = recorded[args.runs[0]][0]
        print(f"teacher: {args.teacher} (the runs' train.json)", flush=True)
    result = run(args, argv, recorded, from_runs)
    for r in result["students"]:
        fl = r["float"]["all"]
        q = r.get("int8", {}).get("all", {})
        print(f"{Path(r['run']).name}: float " + " ".join(f"{o[0].upper()} {fl[o]:.3f}" for o in OUTPUTS)
              + ("; int8 " + " ".join(f"{o[0].upper()} {q[o]:.3f}" for o in OUTPUTS) if q else ""))
    print(f"wrote {Path(args.out).with_suffix('.md')} and .json")
    return 0


if __name__ == "__main__":
    import training.cli

    training.cli.run(main, "python -m training.evaluate")
