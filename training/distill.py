"""Distil a student (Wav2Small or a MobileNet) from a teacher's arousal/dominance/valence outputs.

The paper's method: a large teacher annotates audio, the student learns from those outputs alone.
Teachers (training/teachers.py): the prosody annotator's rule table (`prosody`, the default, which
needs no model), a wav2vec2 checkpoint in Hugging Face layout (`dawn:DIR`), an ONNX graph
(`onnx:FILE`), a .w2s model (`w2s:FILE`), precomputed labels (`labels:CSV`) or the mean of several
(`ensemble:SPEC,SPEC`). Corpora: the prosody corpus (espeak-ng clips drawn by training/prosody.py,
the default) or a manifest from `python -m training.corpus` (Debian speech, espeak-ng, flite).

Commands (run from the repository root):

    # the committed default model training/default/{model.safetensors,train.json}: 3,000 clips (about
    # 25 s to synthesise, cached afterwards), 1,500 steps of 16 x 2 s crops; about 9 min on 2 idle cores
    python -m training.distill --out_dir=runs/default --crop_seconds=2 --floor_db=-60
    cp runs/default/model.safetensors runs/default/train.json training/default/

    # a quick smoke run
    python -m training.distill --out_dir=runs/smoke --n_clips=64 --max_iters=20 --eval_interval=10

    # distil from a real teacher on a built corpus, with augmentation; annotations are cached
    python -m training.corpus --out=runs/corpus
    python -m training.distill --out_dir=runs/dawn --corpus=runs/corpus/manifest.csv \\
        --teacher=dawn:/models/wav2vec2-large-robust-12-ft-emotion-msp-dim --augment=default --views=8

    # the paper's larger students
    python -m training.distill --out_dir=runs/mnv4 --student=mobilenet_v4_conv_small --lr=1e-3

    # two processes (DistributedDataParallel, gloo on CPU); same options
    torchrun --nproc_per_node 2 -m training.distill --out_dir=runs/ddp --threads=1

    # continue a run from out_dir/ckpt.pt, e.g. with a longer schedule
    python -m training.distill --out_dir=runs/x --resume=True --max_iters=6000

    # int8 through the C engine; quantization-aware fine-tuning if it loses > 0.005 CCC (or add
    # --qat=auto to the training command)
    python -m training.distill --out_dir=runs/x --resume=true --qat=auto

    python -m training.distill --help            # every option, with its default

Every option is `--key=value`; booleans take true/false. On --resume the checkpoint's config is
loaded and only the options given on the command line override it; the run's student and data
(RUN_IDENTITY: student, model, width, width_mult, floor_db, corpus, n_clips, teacher,
exclude_voices, derived_voices) cannot change, and neither can what those options name: the teacher's id and a
fingerprint of the training data (audio, voices, targets) are kept in the checkpoint and compared,
so a teacher or corpus rebuilt at the same path is refused; --stop_at is not inherited. An out_dir
that holds a run (ckpt.pt, train.json or model.safetensors) is never
overwritten: continue it with --resume=true or choose another out_dir. A non-finite loss stops the
run before the step, with the last checkpoint as it was.

Data. Training examples are random `crop_seconds` crops; clips shorter than that are padded (`pad`):
"repeat" tiles the clip (every frame the model sees is speech-like, as at inference; a zero tail
would also lower the clip's RMS before the unit-variance normalisation and add a silence segment
never seen at inference), "zero" appends silence. A crop over twice the median training clip is
warned about (most of it would be padding). Splits come from the corpus (by voice or speaker,
never by clip). Validation and test use (almost) whole clips: with a clip-level teacher (prosody,
labels) clips are sorted by length and batched, each batch trimmed to its shortest clip; with a
model teacher each clip (manifest corpora: its first `eval_seconds`) is scored whole, on exactly the
audio the teacher annotated.

Teacher outputs. Clip-level teachers give one target per clip for every crop. Model teachers
annotate views: with --annotate=cache, `views` crops (with their augmentations) per training clip
are fixed up front and annotated once through the on-disk cache (training/cache.py: content-hash
keys, resumable, progress); each step draws from those views. With --annotate=online the teacher
runs on each step's freshly cropped and augmented batch (slower, unlimited variety, no cache).

Augmentation (--augment=none|default|strong|speakers; training/augment.py documents each step and number):
synthetic room reverberation, low/high/band-pass filtering, white/pink/brown noise at a random SNR
(default 0..30 dB), overdrive clipping and gain; "speakers" adds pitch/formant shifts by resampling
(more voices from a corpus with few speakers). The student sees the same augmented audio the
teacher annotated; --noise_floor=P then adds 0.5-4 LSB of noise to a share P of the rows for the
student only, so that digital silence and the lowest bits stop moving it.

Determinism. Order, crops and augmentations at step i are a pure function of (seed, i), so a resumed
run sees the same batches as an uninterrupted one. Loss: mean over arousal/dominance/valence of
1 - CCC on the batch (--loss=mse: mean squared error). Under torchrun each of N processes takes
every N-th example of the global batch; predictions are gathered (differentiably) so the CCC is
computed over the whole batch, as in one process; gradients are averaged by DDP. BatchNorm
statistics are per process (SyncBatchNorm needs GPUs), so N processes do not reproduce one process
bit for bit.

Outputs in out_dir: ckpt.pt (every `checkpoint_interval` steps and at the end), model.safetensors
(best validation CCC; for Wav2Small with the published key names, loadable by
training.model.load_safetensors), train.json (config, model args, teacher id, eval history, final
val/test CCC, per-voice bias and correlation). training.evaluate measures students against the
teacher, float and int8 through the C engine.

Quantization-aware fine-tuning (Wav2Small students; training/qat.py): with --qat=auto, after
training the selected student is quantized, exported and run by the C engine on the validation
clips; if int8 loses more than qat_threshold (0.005) CCC against float in any dimension, it is
fine-tuned for qat_iters steps at qat_lr with the engine's rounding simulated (weights on their
int8/int16 per-channel grids, activations at the calibrated scales, straight-through gradients),
measured through the engine every qat_eval_interval steps, and the best int8 state is kept.
--qat=on always fine-tunes. QAT steps follow max_iters in ckpt.pt, so --stop_at and --resume work
in the phase; `--resume=true --qat=auto` applies it to a finished run. train.json gets "qat" (the
measurements before and after). The default model loses < 0.0003 and needs none.

Threads: with --threads=2 on a machine where another process keeps one core busy, steps got 3-4x
slower than with --threads=1 (OpenMP threads waiting on each other); use --threads=1 there.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import struct
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training import augment
from training.audio_io import Skipped, read_many
from training.cache import AnnotationCache, View, run_teacher
from training.files import atomic_path, held_run, write_atomic
from training.metrics import ccc_numpy, ccc_torch
from training.mobilenet import ARCHS as MOBILENETS
from training.mobilenet import MobileNetConfig, MobileNetStudent
from training.model import CONFIGS, Wav2Small, Wav2SmallConfig
from training.prosody import OUTPUTS, build_corpus, summary
from training.speech import default_cache_dir, synthesize_many
from training.teachers import Teacher, file_sha256, from_spec

STUDENTS = ("wav2small", *MOBILENETS)


@dataclass
class TrainConfig:
    # I/O
    out_dir: str = field(default="runs/distill", metadata={"help": "where ckpt.pt, model.safetensors, train.json go"})
    resume: bool = field(default=False, metadata={"help": "continue from out_dir/ckpt.pt"})
    cache_dir: str = field(default="", metadata={"help": "clip and annotation cache; empty = $WAV2SMALL_CACHE "
                                                         "or ~/.cache/wav2small"})
    # data
    corpus: str = field(default="prosody", metadata={"help": "prosody (espeak-ng clips drawn by training/prosody.py) "
                                                             "or a manifest.csv from python -m training.corpus"})
    n_clips: int = field(default=3000, metadata={"help": "corpus=prosody: clips drawn by the annotator (all splits)"})
    seed: int = field(default=0, metadata={"help": "seeds corpus, model init, batch order, crops and augmentation"})
    derived_voices: float = field(default=0.0, metadata={"help": "corpus=prosody: share of the training clips of "
                                                                 "voiced variants spoken instead by a new voice "
                                                                 "drawn from theirs, one per clip (formants, "
                                                                 "voicing, flutter: training/variants.py); "
                                                                 "validation and test are unchanged"})
    synth_workers: int = field(default=2, metadata={"help": "parallel espeak-ng processes"})
    crop_seconds: float = field(default=3.0, metadata={"help": "training crop length"})
    pad: str = field(default="repeat", metadata={"help": "short clips: repeat (tile) or zero (append silence)"})
    eval_seconds: float = field(default=8.0, metadata={"help": "manifest corpora: validation/test clips are cut "
                                                               "to their first N seconds"})
    exclude_voices: str = field(default="", metadata={"help": "comma-separated voices (speaker groups) left out of "
                                                            "the training split: a leave-voices-out student whose "
                                                            "errors on them are honest (training/uncertainty.py "
                                                            "--honest); validation and test are unchanged"})
    augment: str = field(default="none", metadata={"help": "none, default, strong or speakers (training/augment.py): "
                                                           "reverb, filtering, noise at random SNR, clipping, gain; "
                                                           "speakers adds pitch/formant shifts (resampling)"})
    noise_floor: float = field(default=0.0, metadata={"help": "share of each batch's rows the student hears with "
                                                              "0.5-4 LSB of Gaussian noise added (training/augment.py "
                                                              "noise_floor), after the teacher or the clip's targets "
                                                              "were taken: digital silence and the lowest bits then "
                                                              "move the student less; 0 = off"})
    # teacher
    teacher: str = field(default="prosody", metadata={"help": "prosody | labels:CSV | dawn:DIR | onnx:FILE | "
                                                              "onnx+norm:FILE | w2s:FILE | ensemble:SPEC,SPEC"})
    annotate: str = field(default="cache", metadata={"help": "model teachers: cache (annotate `views` fixed views "
                                                             "per clip once, on disk) or online (every batch)"})
    views: int = field(default=4, metadata={"help": "annotate=cache: crops (+ augmentations) per training clip"})
    teacher_batch: int = field(default=16, metadata={"help": "clips per teacher call"})
    allow_hub: bool = field(default=False, metadata={"help": "dawn: accept a hub name instead of a local "
                                                             "directory (needs network)"})
    # student
    student: str = field(default="wav2small", metadata={"help": f"{', '.join(STUDENTS)}"})
    model: str = field(default="default", metadata={"help": f"wav2small: training.model.CONFIGS key: {', '.join(CONFIGS)}"})
    width: int = field(default=0, metadata={"help": "wav2small: channels of every conv layer; 0 = the model's"})
    width_mult: float = field(default=1.0, metadata={"help": "mobilenets: channel multiplier"})
    floor_db: float = field(default=0.0, metadata={"help": "wav2small: log-mel floor in dB against the clip's unit "
                                                           "variance (the model's amin = 10^(dB/10)); at -60 the "
                                                           "digital silence of files and a 1 LSB noise floor give "
                                                           "the same log-mel; 0 = the model's (-100)"})
    # optimisation
    loss: str = field(default="ccc", metadata={"help": "ccc (mean of 1 - CCC per dimension) or mse"})
    batch_size: int = field(default=16, metadata={"help": "clips per step (over all processes)"})
    max_iters: int = field(default=1500, metadata={"help": "total optimiser steps"})
    stop_at: int = field(default=0, metadata={"help": "stop (with a checkpoint) after this step, e.g. to split a "
                                                       "run over sessions; the schedule still follows max_iters; 0 = off"})
    lr: float = field(default=3e-3, metadata={"help": "peak learning rate (AdamW)"})
    min_lr: float = field(default=1e-4, metadata={"help": "learning rate at the end of the cosine decay"})
    warmup_iters: int = field(default=100, metadata={"help": "linear warm-up steps"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (all trainable tensors)"})
    beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    beta2: float = field(default=0.99, metadata={"help": "AdamW beta2"})
    grad_clip: float = field(default=1.0, metadata={"help": "clip gradient norm; 0 = off"})
    # quantization-aware fine-tuning (training/qat.py; Wav2Small students)
    qat: str = field(default="off", metadata={"help": "after training: off; auto (measure int8 through the C engine "
                                                      "on the validation clips and fine-tune with the engine's "
                                                      "rounding simulated if it loses more than qat_threshold CCC "
                                                      "against float); on (always fine-tune). Works on a finished "
                                                      "run with --resume=true"})
    qat_threshold: float = field(default=0.005, metadata={"help": "qat=auto: largest tolerated int8 CCC loss in "
                                                                  "any dimension"})
    qat_iters: int = field(default=300, metadata={"help": "QAT steps (numbered after max_iters; stop_at and "
                                                          "resume work inside the phase)"})
    qat_lr: float = field(default=5e-5, metadata={"help": "QAT peak learning rate (cosine to a tenth of it)"})
    qat_eval_interval: int = field(default=100, metadata={"help": "QAT: recalibrate, export and measure through "
                                                                  "the C engine every N steps; the best int8 "
                                                                  "validation CCC (step 0 included) is kept"})
    qat_calib: int = field(default=24, metadata={"help": "QAT: calibration clips (the ones training.evaluate "
                                                         "calibrates on; prosody corpus: training clips)"})
    # evaluation, logging, checkpoints
    eval_interval: int = field(default=250, metadata={"help": "validate every N steps (and at the end)"})
    eval_batch: int = field(default=16, metadata={"help": "clips per evaluation batch"})
    log_interval: int = field(default=100, metadata={"help": "print training loss every N steps"})
    checkpoint_interval: int = field(default=500, metadata={"help": "write ckpt.pt every N steps (and at the end)"})
    threads: int = field(default=2, metadata={"help": "torch.set_num_threads (per process)"})
    tune_malloc: bool = field(default=True, metadata={"help": "glibc only: keep freed activations in the heap "
                                                               "(fewer page faults, ~15%% faster steps)"})

    def validate(self) -> None:
        if self.student not in STUDENTS:
            raise ValueError(f"student must be one of {STUDENTS}, got {self.student!r}")
        if self.model not in CONFIGS:
            raise ValueError(f"model must be one of {list(CONFIGS)}, got {self.model!r}")
        if self.pad not in ("repeat", "zero"):
            raise ValueError(f"pad must be 'repeat' or 'zero', got {self.pad!r}")
        if self.loss not in ("ccc", "mse"):
            raise ValueError(f"loss must be 'ccc' or 'mse', got {self.loss!r}")
        if self.augment not in augment.PRESETS:
            raise ValueError(f"augment must be one of {list(augment.PRESETS)}, got {self.augment!r}")
        if self.annotate not in ("cache", "online"):
            raise ValueError(f"annotate must be 'cache' or 'online', got {self.annotate!r}")
        for name in ("n_clips", "batch_size", "eval_interval", "eval_batch", "log_interval",
                     "checkpoint_interval", "threads", "synth_workers", "views", "teacher_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.width < 0 or self.width_mult <= 0:
            raise ValueError(f"width must be >= 0 and width_mult > 0, got {self.width}, {self.width_mult}")
        if self.floor_db > 0 or (self.floor_db < 0 and self.student != "wav2small"):
            raise ValueError(f"floor_db must be < 0 (wav2small students) or 0 for the model's, got {self.floor_db}")
        if self.crop_seconds <= 0.1:
            raise ValueError(f"crop_seconds must be > 0.1, got {self.crop_seconds}")
        if self.eval_seconds <= 0.1:
            raise ValueError(f"eval_seconds must be > 0.1, got {self.eval_seconds}")
        if self.qat not in ("off", "auto", "on"):
            raise ValueError(f"qat must be off, auto or on, got {self.qat!r}")
        if self.qat != "off" and self.student != "wav2small":
            raise ValueError(f"qat applies to wav2small students (the C engine runs only those), not {self.student}")
        if min(self.qat_iters, self.qat_eval_interval, self.qat_calib) < 1 or self.qat_lr <= 0:
            raise ValueError("qat_iters, qat_eval_interval and qat_calib must be >= 1 and qat_lr > 0")
        if not 0 <= self.min_lr <= self.lr or self.lr <= 0:
            raise ValueError(f"need lr > 0 and 0 <= min_lr <= lr, got {self.lr}, {self.min_lr}")
        if self.max_iters < 1 or self.warmup_iters < 0 or self.stop_at < 0:
            raise ValueError(f"need max_iters >= 1, warmup_iters >= 0 and stop_at >= 0, got "
                             f"{self.max_iters}, {self.warmup_iters}, {self.stop_at}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1) or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError(f"need 0 <= beta1, beta2 < 1 and weight_decay, grad_clip >= 0, got "
                             f"{self.beta1}, {self.beta2}, {self.weight_decay}, {self.grad_clip}")
        if not 0 <= self.noise_floor <= 1:
            raise ValueError(f"noise_floor is a share of each batch's rows, 0..1, got {self.noise_floor}")
        if not 0 <= self.derived_voices <= 1:
            raise ValueError(f"derived_voices is a share of the training clips, 0..1, got {self.derived_voices}")
        if self.derived_voices and self.corpus != "prosody":
            raise ValueError(f"derived_voices draws voices for the prosody corpus, not for {self.corpus!r}")
        if self.corpus != "prosody":
            from training.corpus import require_manifest
            require_manifest(self.corpus)


# ------------------------------------------------------------------------------------------------
# command line

def parse_bool(text: str) -> bool:
    """A command-line boolean: true/false, 1/0, yes/no or on/off; anything else is an error."""
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m training.distill",
        description="Distil a student (Wav2Small or a MobileNet) from a teacher's arousal/dominance/valence "
                    "outputs. Options are --key=value; the module docstring (printed below) has full commands.",
        epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for f in fields(TrainConfig):
        kind = parse_bool if f.type in (bool, "bool") else type(f.default)
        # default=SUPPRESS: only options actually given appear, so --resume can tell them apart
        ap.add_argument(f"--{f.name}", type=kind, default=argparse.SUPPRESS, metavar=type(f.default).__name__.upper(),
                        help=f"{f.metadata['help']} (default: {f.default})")
    return ap


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, dict[str, Any]]:
    """The config and the options given explicitly."""
    given = vars(build_parser().parse_args(argv))
    cfg = TrainConfig(**given)
    return cfg, given


# ------------------------------------------------------------------------------------------------
# distributed (torchrun sets RANK / WORLD_SIZE; one process otherwise)

@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def dist_setup() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")
    return Dist(torch.distributed.get_rank(), world)


class _GatherRows(torch.autograd.Function):
    """all_gather whose backward sums every process's gradient for this process's rows
    (a reduce-scatter): every process computes the same loss on the gathered batch, so after DDP's
    gradient averaging each parameter gets exactly the one-process gradient of that loss."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
        parts = [torch.empty_like(x) for _ in range(world)]
        torch.distributed.all_gather(parts, x.contiguous())
        ctx.rows = (rank * x.shape[0], (rank + 1) * x.shape[0])
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        torch.distributed.all_reduce(grad)
        return grad[ctx.rows[0]: ctx.rows[1]]


def gather_rows(x: torch.Tensor, dist: Dist, differentiable: bool) -> torch.Tensor:
    """Concatenate every process's rows (equal counts); with `differentiable` gradients flow back."""
    if dist.world == 1:
        return x
    if differentiable:
        return _GatherRows.apply(x)
    parts = [torch.empty_like(x) for _ in range(dist.world)]
    torch.distributed.all_gather(parts, x.contiguous())
    return torch.cat(parts)


# ------------------------------------------------------------------------------------------------
# data

@dataclass
class Split:
    clips: list[np.ndarray]   # int16 PCM at 16 kHz
    targets: np.ndarray       # (N, 3) float32 (clip-level teachers; model teachers: of the eval views)
    voices: list[str] = field(default_factory=list)  # speaker / voice group of each clip
    ids: list[str] = field(default_factory=list)     # content hash of each clip's file

    def __len__(self) -> int:
        return len(self.clips)


def _split(clips: list[np.ndarray], targets: list | None, voices: list[str], ids: list[str]) -> Split:
    t = np.asarray(targets, np.float32).reshape(-1, 3) if targets is not None else np.zeros((len(clips), 3), np.float32)
    return Split(clips, t, voices, ids)


def drop_voices(split: Split, voices: list[str]) -> Split:
    """The split without the clips of `voices` (names as in Split.voices; unknown names are an
    error, so that a typo cannot silently leave every voice in)."""
    names = {v.strip() for v in voices if v.strip()}
    unknown = names - set(split.voices)
    if unknown:
        raise ValueError(f"voices not in the split: {sorted(unknown)}")
    keep = [k for k, v in enumerate(split.voices) if v not in names]
    targets = split.targets[keep] if split.targets is not None else None
    return Split([split.clips[k] for k in keep], targets, [split.voices[k] for k in keep],
                 [split.ids[k] for k in keep])


def load_prosody_corpus(cfg: TrainConfig, sample_rate: int, log: Callable[[str], None],
                        skipped: Skipped | None = None) -> dict[str, Split]:
    """The espeak-ng clips of the prosody annotator, with its rule-table targets. A cached clip
    that cannot be read is left out and counted in `skipped` (training/audio_io.py)."""
    items = build_corpus(cfg.n_clips, cfg.seed, cfg.derived_voices)
    if sample_rate != items[0].params.sample_rate:
        raise ValueError(f"the model runs at {sample_rate} Hz but clips are {items[0].params.sample_rate} Hz")
    t0 = time.time()
    step = max(1, len(items) // 4)

    def progress(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            log(f"clips {done}/{total} ready ({time.time() - t0:.1f} s)")

    failed = skipped if skipped is not None else Skipped("prosody corpus")
    before = len(failed)
    paths = synthesize_many([it.params for it in items], cfg.cache_dir or None, cfg.synth_workers, progress,
                            failed)
    if len(failed) > before:   # the other clips, and so the other seeds' corpora, are as before
        log(f"{len(failed) - before} of {len(items)} clips left out: espeak-ng could not render them")
    splits: dict[str, Split] = {}
    for name in ("train", "val", "test"):
        sel = [(p, it) for p, it in zip(paths, items) if it.split == name and p is not None]
        keep, clips = read_many([p for p, _ in sel], sample_rate, skipped, int16=True)
        sel = [sel[k] for k in keep]
        splits[name] = _split(clips, [it.targets for _, it in sel] if sel else None,
                              [it.params.variant or "" for _, it in sel], [file_sha256(p) for p, _ in sel])
    log(summary(items))
    return splits


def load_manifest_corpus(cfg: TrainConfig, sample_rate: int, labelled_only: bool,
                         log: Callable[[str], None], skipped: Skipped | None = None) -> dict[str, Split]:
    """A corpus manifest (training/corpus.py); validation/test clips cut to eval_seconds. Files that
    cannot be read are left out and counted in `skipped` (training/audio_io.py)."""
    from training.corpus import read_manifest

    entries = read_manifest(cfg.corpus)
    if labelled_only:
        entries = [e for e in entries if e.targets is not None]
    cut = int(round(cfg.eval_seconds * sample_rate))
    splits = {}
    for name in ("train", "val", "test"):
        sel = [e for e in entries if e.split == name]
        keep, clips = read_many([e.path for e in sel], sample_rate, skipped, int16=True)
        sel = [sel[k] for k in keep]
        if name != "train":
            clips = [pcm[:cut] for pcm in clips]
        splits[name] = _split(clips, [e.targets for e in sel] if labelled_only and sel else None,
                              [e.group for e in sel], [e.sha256 for e in sel])
        hours = sum(len(c) for c in clips) / sample_rate / 3600
        log(f"{name:5s} {len(sel):5d} clips {hours:6.2f} h  {len({e.group for e in sel})} groups")
    return splits


def fit_length(pcm: np.ndarray, n: int, offset: int, pad: str) -> np.ndarray:
    """Exactly n samples: a crop from `offset` if the clip is long enough, else padded."""
    if len(pcm) >= n:
        return pcm[offset: offset + n]
    if pad == "repeat":
        return np.tile(pcm, -(-n // len(pcm)))[:n]
    return np.concatenate([pcm, np.zeros(n - len(pcm), dtype=pcm.dtype)])


def crop_warning(lengths: list[int], n: int, pad: str, sample_rate: int = 16000) -> str | None:
    """A warning when the crop is more than twice the median training clip: most crops are then
    mostly padding (repeats of the clip, or zeros), which a user rarely means."""
    median = float(np.median(lengths)) if lengths else 0.0
    if not lengths or n <= 2 * median:
        return None
    short = sum(length < n for length in lengths) / len(lengths)
    how = "repeated" if pad == "repeat" else "zero-padded"
    return (f"crop of {n / sample_rate:g} s is over twice the median training clip ({median / sample_rate:.2f} s): "
            f"{short:.0%} of the clips are {how} to fill it; a shorter --crop_seconds trains on more real audio")


def _epoch_picks(n: int, it: int, cfg: TrainConfig) -> np.ndarray:
    """Items of batch `it`: epochs are seeded permutations of range(n)."""
    idx = np.arange(it * cfg.batch_size, (it + 1) * cfg.batch_size)
    order = {}
    picks = np.empty(len(idx), dtype=np.int64)
    for k, j in enumerate(idx):
        epoch = int(j // n)
        if epoch not in order:
            order[epoch] = np.random.default_rng([cfg.seed, 0, epoch]).permutation(n)
        picks[k] = order[epoch][j % n]
    return picks


def _aug_seeds(it: int, cfg: TrainConfig) -> np.ndarray:
    # a stream of its own, so switching augmentation on does not move crops or order
    return np.random.default_rng([cfg.seed, 4, it]).integers(0, 2**31, size=cfg.batch_size)


def batch_views(split: Split, it: int, cfg: TrainConfig, n_samples: int) -> list[View]:
    """The views of batch `it` when views are drawn fresh each step (clip-level or online teacher)."""
    picks = _epoch_picks(len(split), it, cfg)
    rng = np.random.default_rng([cfg.seed, 1, it])
    seeds = _aug_seeds(it, cfg)
    views = []
    for k, i in enumerate(picks):
        offset = int(rng.integers(0, max(1, len(split.clips[i]) - n_samples + 1)))
        views.append(View(split.ids[i] if split.ids else str(i), offset, n_samples,
                          augment.key(augment.draw(cfg.augment, int(seeds[k])))))
    return views


def get_batch(split: Split, it: int, cfg: TrainConfig, n_samples: int,
              rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch number `it` with clip-level targets: epochs are seeded permutations, crop offsets are
    seeded by (seed, it), augmentations by their own stream. `rows` selects this process's share."""
    picks = _epoch_picks(len(split), it, cfg)
    views = batch_views(split, it, cfg, n_samples)
    keep = range(len(picks))[rows]
    x = np.stack([render_view(split.clips[picks[k]], views[k], cfg.pad) for k in keep]) if len(keep) else \
        np.zeros((0, n_samples), np.float32)
    return torch.from_numpy(x), torch.from_numpy(split.targets[picks[list(keep)]])


def render_view(pcm: np.ndarray, view: View, pad: str) -> np.ndarray:
    """The float32 audio of a view: crop (or pad) of the int16 clip, then its augmentation."""
    n = view.length or len(pcm) - view.offset
    x = fit_length(pcm, n, view.offset, pad).astype(np.float32) / 32768.0
    return augment.apply(x, json.loads(view.augment)) if view.augment else x


def cached_views(split: Split, cfg: TrainConfig, n_samples: int) -> list[View]:
    """annotate=cache: `views` fixed views per training clip, a pure function of (seed, clip, v)."""
    out = []
    for i, pcm in enumerate(split.clips):
        for v in range(cfg.views):
            rng = np.random.default_rng([cfg.seed, 3, i, v])
            offset = int(rng.integers(0, max(1, len(pcm) - n_samples + 1)))
            out.append(View(split.ids[i], offset, n_samples,
                            augment.key(augment.draw(cfg.augment, int(rng.integers(0, 2**31))))))
    return out


@torch.no_grad()
def predict(model: torch.nn.Module, split: Split, batch: int) -> np.ndarray:
    """Predictions for every clip, in split order. Clips are sorted by length and batched; each batch
    is trimmed to its shortest clip (centred), which loses only a few percent of the audio."""
    was_training = model.training
    model.eval()
    order = np.argsort([len(c) for c in split.clips], kind="stable")
    out = np.zeros((len(split), 3), dtype=np.float32)
    for start in range(0, len(order), batch):
        ids = order[start: start + batch]
        n = min(len(split.clips[i]) for i in ids)
        x = np.stack([split.clips[i][(len(split.clips[i]) - n) // 2:][:n] for i in ids]).astype(np.float32) / 32768.0
        out[ids] = model(torch.from_numpy(x)).numpy()
    model.train(was_training)
    return out


@torch.no_grad()
def predict_exact(model: torch.nn.Module, split: Split, batch: int) -> np.ndarray:
    """Predictions on each whole clip (the audio a model teacher annotated); only clips of equal
    length share a batch, since padding would change the per-clip normalisation."""
    was_training = model.training
    model.eval()
    out = np.zeros((len(split), 3), dtype=np.float32)
    by_len: dict[int, list[int]] = {}
    for i, c in enumerate(split.clips):
        by_len.setdefault(len(c), []).append(i)
    for ids in by_len.values():
        for start in range(0, len(ids), batch):
            part = ids[start: start + batch]
            x = np.stack([split.clips[i] for i in part]).astype(np.float32) / 32768.0
            out[part] = model(torch.from_numpy(x)).numpy()
    model.train(was_training)
    return out


def evaluate(model: torch.nn.Module, split: Split, batch: int, exact: bool = False) -> dict[str, float]:
    pred = (predict_exact if exact else predict)(model, split, batch)
    c = ccc_numpy(pred, split.targets)
    return {**{o: float(v) for o, v in zip(OUTPUTS, c)}, "mean": float(np.mean(c))}


def per_voice(model: torch.nn.Module, split: Split, batch: int, exact: bool = False) -> dict[str, dict[str, Any]]:
    """Bias (mean prediction - target) and within-voice Pearson r per held-out voice: shows whether
    errors are a per-speaker offset (the model misjudging the voice's baseline) or noise."""
    pred = (predict_exact if exact else predict)(model, split, batch)
    voices = np.asarray(split.voices)
    out = {}
    for v in sorted(set(split.voices)):
        k = voices == v
        err = pred[k] - split.targets[k]
        r = [float(np.corrcoef(pred[k, j], split.targets[k, j])[0, 1])
             if k.sum() > 2 and np.std(pred[k, j]) > 0 and np.std(split.targets[k, j]) > 0 else float("nan")
             for j in range(3)]
        out[v] = {"n": int(k.sum()), "bias": [round(float(e), 3) for e in err.mean(0)],
                  "r": [round(x, 3) for x in r]}
    return out


# ------------------------------------------------------------------------------------------------
# students

def build_student(cfg: TrainConfig, model_args: dict | None = None) -> tuple[torch.nn.Module, dict]:
    """The student and its architecture arguments (stored in checkpoints and train.json)."""
    if cfg.student == "wav2small":
        if model_args is None:
            base = CONFIGS[cfg.model]
            model_args = {**base.to_dict(), **({"channels": cfg.width} if cfg.width else {}),
                          **({"amin": 10.0 ** (cfg.floor_db / 10.0)} if cfg.floor_db else {})}
        return Wav2Small(Wav2SmallConfig(**model_args)), model_args
    if model_args is None:
        model_args = MobileNetConfig(arch=cfg.student, width=cfg.width_mult).to_dict()
    return MobileNetStudent(MobileNetConfig(**model_args)), model_args


def load_student(run_dir: str | Path) -> tuple[torch.nn.Module, str, dict]:
    """(model in eval mode, student kind, train.json) of a finished run."""
    from safetensors.torch import load_file

    from training.model import load_published

    run_dir = Path(run_dir)
    report = json.loads((run_dir / "train.json").read_text())
    kind = report["config"].get("student", "wav2small")
    state = load_file(str(run_dir / "model.safetensors"))
    if kind == "wav2small":
        # the run's config: the weights alone do not tell e.g. a raised log-mel floor (--floor_db)
        cfg = Wav2SmallConfig(**report["model_args"]) if "model_args" in report else None
        return load_published(state, cfg), kind, report
    model = MobileNetStudent(MobileNetConfig(**report["model_args"]))
    model.load_state_dict(state)
    return model.eval(), kind, report


def trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ------------------------------------------------------------------------------------------------
# optimisation

def lr_at(it: int, cfg: TrainConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to cfg.min_lr at max_iters."""
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / (cfg.warmup_iters + 1)
    span = max(1, cfg.max_iters - cfg.warmup_iters)
    progress = min(1.0, (it - cfg.warmup_iters) / span)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def ccc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (1.0 - ccc_torch(pred, target)).mean()


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.mse_loss(pred, target)


# ------------------------------------------------------------------------------------------------
# files

def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, command: str = "training.distill", marker: str = "student") -> dict[str, Any]:
    """A run's ckpt.pt; one that torch cannot read (truncated, damaged, not a checkpoint), or that
    another command wrote (its config lacks `marker`, an option only `command` has), is a ValueError
    that names it, not a traceback."""
    import pickle

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as e:
        why = str(e).split(". ")[0].rstrip(".") or type(e).__name__
    else:
        config = ckpt.get("config") if isinstance(ckpt, dict) else None
        if isinstance(config, dict) and marker in config:
            return ckpt
        if isinstance(config, dict):
            raise ValueError(f"{path} is not a {command} checkpoint (its config has no {marker}): resume it "
                             "with the command that wrote it, or start a new --out_dir")
        why = "no run's config in it"
    raise ValueError(f"{path} is not a readable checkpoint ({why}): start a new --out_dir, or restore the file")


def save_model(path: Path, state_dict: dict[str, torch.Tensor], config: dict | None = None) -> None:
    """safetensors; `config` (a Wav2SmallConfig dict) goes into the metadata for what the weights
    alone do not tell, e.g. an uncertainty head's thresholds (training.model.load_safetensors)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().clone() for k, v in state_dict.items()}
    meta = {"format": "pt", **({"wav2small_config": json.dumps(config)} if config else {})}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
        fix_metadata_order(tmp)


def fix_metadata_order(path: Path) -> None:
    """safetensors writes the metadata in the order of a Rust HashMap, which differs from process to
    process, so the same weights made files with different bytes (and sha256). Rewrite the header
    with the metadata keys in one order, the shipped files' (wav2small_config, then format); the
    header keeps its length, so the tensors' offsets are unchanged."""
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        meta = header.get("__metadata__")
        if not meta:
            return
        header["__metadata__"] = dict(sorted(meta.items(), reverse=True))
        raw = json.dumps(header, separators=(",", ":")).encode()
        if len(raw) > n:   # not the header safetensors wrote: leave it as it is
            return
        f.seek(8)
        f.write(raw.ljust(n, b" "))


def save_json(path: Path, obj: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(obj, indent=2) + "\n")


# ------------------------------------------------------------------------------------------------
# main

# What a run is: its student and its data. A resumed run keeps them (its best step was chosen on
# that validation set); the schedule, intervals and QAT options may change.
RUN_IDENTITY = ("student", "model", "width", "width_mult", "floor_db", "corpus", "n_clips", "teacher",
                "exclude_voices", "derived_voices")


def load_resume(cfg: TrainConfig, given: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    path = Path(cfg.out_dir) / "ckpt.pt"
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    ckpt = load_checkpoint(path)
    changed = [f"--{k}={given[k]} (the run has {ckpt['config'][k]!r})" for k in RUN_IDENTITY
               if k in given and k in ckpt["config"] and given[k] != ckpt["config"][k]]
    if changed:
        raise ValueError(f"--resume keeps the run's student and data; start a new --out_dir to change "
                         f"{', '.join(changed)}")
    kept = {k: v for k, v in ckpt["config"].items() if k != "stop_at"}   # a stop is not part of the run
    return TrainConfig(**{**kept, **given, "resume": True}), ckpt


def data_fingerprint(splits: dict[str, Split]) -> str:
    """16 hex digits of the audio, voices and clip-level targets of every split: what a run learns
    from, whatever paths and options named it (a corpus rebuilt in place changes it)."""
    h = hashlib.sha256()
    for name in sorted(splits):
        s = splits[name]
        h.update(f"{name}:{len(s)}:{','.join(s.voices)}\n".encode())
        for clip in s.clips:
            h.update(len(clip).to_bytes(8, "little"))
            h.update(np.ascontiguousarray(clip).tobytes())
        h.update(np.ascontiguousarray(s.targets, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def check_same_run(ckpt: dict[str, Any], teacher_id: str, data_id: str) -> None:
    """A resume must see the teacher and the data the run started with, not only the same options:
    a teacher or corpus rebuilt at the same path would mix two runs in one model."""
    for what, was, now in (("teacher", ckpt.get("teacher"), teacher_id), ("data", ckpt.get("data"), data_id)):
        if was is not None and was != now:   # checkpoints from before "data" was kept: not checked
            raise ValueError(f"--resume: the run's {what} has changed since it started ({was} then, {now} now; "
                             f"same options, other content): restore it, or start a new --out_dir")


def tune_malloc() -> bool:
    """Stop glibc from handing every large activation back to the OS and faulting it in again.

    By default blocks above a (dynamic) threshold are mmap'd and unmapped on free, and the heap top is
    trimmed, so each training step re-faults tens of MB of zeroed pages: measured 30,000+ minor faults
    and ~15-20 % of the step time in the kernel for batch 16 x 2 s. A 32 MB mmap threshold (glibc's
    maximum) and no trimming keep those blocks in the heap for reuse. Returns False where it does not
    apply (not glibc).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from <malloc.h>
    return bool(mallopt(m_trim_threshold, 1 << 30)) and bool(mallopt(m_mmap_threshold, 32 << 20))


class Targets:
    """Where a batch's inputs and targets come from: clip-level labels, the annotation cache, or the
    teacher run online. `batch(it, rows)` gives this process's rows of global batch `it`."""

    def __init__(self, cfg: TrainConfig, splits: dict[str, Split], teacher: Teacher | None, n_samples: int,
                 dist: Dist, log: Callable[[str], None]):
        self.cfg, self.splits, self.teacher, self.n, self.dist = cfg, splits, teacher, n_samples, dist
        self.clip_level = teacher is None or teacher.clip_level
        self.pcm = {i: c for s in splits.values() for i, c in zip(s.ids, s.clips)}
        self.train_views: list[View] = []
        self.train_targets = np.zeros((0, 3), np.float32)
        self.annotated = 0
        if teacher is None:
            return
        cache = AnnotationCache(Path(cfg.cache_dir or default_cache_dir()), teacher)
        # validation and test: each (cut) clip whole, clean
        eval_views = {name: [View(i, 0, len(c)) for i, c in zip(s.ids, s.clips)] for name, s in splits.items()
                      if name != "train"}
        if not self.clip_level and cfg.annotate == "cache":
            self.train_views = cached_views(splits["train"], cfg, n_samples)
        everything = [v for vs in eval_views.values() for v in vs] + self.train_views
        if teacher.clip_level:
            everything += [View(i) for i in splits["train"].ids]
        # each process annotates its share and writes its shards; then every process reads them all
        cache.annotate(everything[dist.rank:: dist.world], self.render, cfg.teacher_batch, progress=dist.main,
                       what=f"teacher {teacher.id[:40]}")
        dist.barrier()
        cache = AnnotationCache(Path(cfg.cache_dir or default_cache_dir()), teacher)
        for name, vs in eval_views.items():
            splits[name].targets = cache.annotate(vs, self.render, progress=False)
        if teacher.clip_level:
            splits["train"].targets = cache.annotate([View(i) for i in splits["train"].ids], self.render,
                                                     progress=False)
        elif self.train_views:
            self.train_targets = cache.annotate(self.train_views, self.render, progress=False)
        self.annotated = len(cache)
        log(f"teacher {teacher.id}: {len(cache)} annotations in the cache")

    def render(self, view: View) -> np.ndarray:
        return render_view(self.pcm[view.clip], view, self.cfg.pad)

    def batch(self, it: int, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        train = self.splits["train"]
        if self.clip_level:
            return get_batch(train, it, self.cfg, self.n, rows)
        if self.cfg.annotate == "cache":
            picks = _epoch_picks(len(self.train_views), it, self.cfg)[rows]
            x = np.stack([self.render(self.train_views[k]) for k in picks])
            return torch.from_numpy(x), torch.from_numpy(self.train_targets[picks])
        views = batch_views(train, it, self.cfg, self.n)[rows]
        x = np.stack([self.render(v) for v in views])
        return torch.from_numpy(x), torch.from_numpy(run_teacher(self.teacher, views, self.render))


def train(cfg: TrainConfig, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or resume) training; returns the content of train.json (on the main process)."""
    ckpt = None
    if cfg.resume:
        cfg, ckpt = load_resume(cfg, given if given is not None else asdict(cfg))
    cfg.validate()
    out_dir = Path(cfg.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir {out_dir} is a file")
    held = held_run(out_dir)
    if held and not cfg.resume:   # a finished run is never overwritten silently
        raise ValueError(held)
    dist = dist_setup()
    if cfg.batch_size % dist.world:
        raise ValueError(f"batch_size {cfg.batch_size} must be a multiple of the {dist.world} processes")
    if cfg.warmup_iters >= cfg.max_iters and dist.main:
        # a warning, not a cap: the schedule stays the one the options give (lr_at), so a run and its
        # resumption follow the same learning rates and the run's options say what it did
        warnings.warn(f"warmup_iters {cfg.warmup_iters} >= max_iters {cfg.max_iters}: the learning rate never leaves "
                      f"the warm-up (it reaches {lr_at(cfg.max_iters - 1, cfg):.3g}, not lr {cfg.lr:g}); "
                      "lower --warmup_iters", stacklevel=2)

    def log(msg: str) -> None:
        if dist.main:
            print(msg, flush=True)

    t_start = time.time()
    if cfg.tune_malloc:
        tune_malloc()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)

    model, model_args = build_student(cfg, ckpt["model_args"] if ckpt else None)
    sample_rate = 16000
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    iter_num, best_ccc, best_iter, history = 0, -math.inf, -1, []
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    if ckpt:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng_state"]["torch"])
        iter_num, best_ccc = ckpt["iter_num"], ckpt["best_ccc"]
        best_iter, history = ckpt["best_iter"], ckpt["history"]
        best_state = ckpt["best_model"]
        log(f"resumed from {out_dir / 'ckpt.pt'} at step {iter_num} (best val CCC {best_ccc:.4f})")
    log(f"student {cfg.student}: {trainable(model):,} trainable parameters" + (
        f"; {dist.world} processes" if dist.world > 1 else ""))

    # data and teacher
    teacher: Teacher | None = None
    if cfg.teacher != "prosody":
        teacher = from_spec(cfg.teacher, allow_hub=cfg.allow_hub, threads=cfg.threads)
    skipped = Skipped("training audio")  # unreadable files are left out, counted, reported in train.json
    if cfg.corpus == "prosody":
        splits = load_prosody_corpus(cfg, sample_rate, log, skipped)
    else:
        splits = load_manifest_corpus(cfg, sample_rate, labelled_only=cfg.teacher == "prosody", log=log,
                                      skipped=skipped)
    skipped.finish(log)
    if cfg.exclude_voices:
        splits["train"] = drop_voices(splits["train"], cfg.exclude_voices.split(","))
        log(f"left out voices {cfg.exclude_voices}: {len(splits['train'])} training clips remain")
    if len(splits["train"]) < 1 or len(splits["val"]) < 2:
        raise ValueError(f"the corpus gives {len(splits['train'])} training and {len(splits['val'])} validation "
                         "clips; need at least 1 and 2 (raise n_clips, or build a bigger corpus)")
    teacher_id = teacher.id if teacher is not None else "prosody-annotator"
    data_id = data_fingerprint(splits)
    if ckpt:
        check_same_run(ckpt, teacher_id, data_id)
    n_samples = int(round(cfg.crop_seconds * sample_rate))
    too_long = crop_warning([len(c) for c in splits["train"].clips], n_samples, cfg.pad, sample_rate)
    if too_long is not None and dist.main:
        warnings.warn(too_long, stacklevel=2)
    targets = Targets(cfg, splits, teacher, n_samples, dist, log)
    exact = not targets.clip_level

    net: torch.nn.Module = model
    if dist.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    rows = slice(dist.rank, None, dist.world)
    loss_fn = ccc_loss if cfg.loss == "ccc" else mse_loss

    def checkpoint(qat_state: dict | None = None) -> None:
        if dist.main:
            save_checkpoint(out_dir / "ckpt.pt", {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": asdict(cfg),
                "model_args": model_args, "iter_num": iter_num, "best_ccc": best_ccc,
                "best_iter": best_iter, "best_model": best_state, "history": history,
                "rng_state": {"torch": torch.get_rng_state()}, "teacher": teacher_id, "data": data_id,
                **({"qat": qat_state} if qat_state is not None else {}),
            })
        dist.barrier()

    net.train()
    t_log, it_log = time.time(), iter_num  # step timing leaves out evaluation
    last = min(cfg.max_iters, cfg.stop_at) if cfg.stop_at > 0 else cfg.max_iters
    while iter_num < last:
        # learning rate
        lr = lr_at(iter_num, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # forward (over the whole global batch for the loss) and backward
        x, y = targets.batch(iter_num, rows)
        if cfg.noise_floor > 0:  # drawn for the global batch: the same rows whatever the process count
            x = x + torch.from_numpy(augment.noise_floor(cfg.batch_size, x.shape[1], cfg.noise_floor,
                                                         cfg.seed, iter_num)[rows])
        pred = gather_rows(net(x), dist, differentiable=True)
        loss = loss_fn(pred, gather_rows(y, dist, differentiable=False))
        if not torch.isfinite(loss):   # a step on it would make every weight NaN, and the checkpoint too
            raise FloatingPointError(f"step {iter_num}: the loss is {loss.item()}; the last checkpoint "
                                     "is left as it was (non-finite targets or a learning rate too high?)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        iter_num += 1
        # log, evaluate, checkpoint
        if iter_num % cfg.log_interval == 0:
            dt = (time.time() - t_log) / max(1, iter_num - it_log)
            log(f"step {iter_num:5d}  loss {loss.item():.4f}  lr {lr:.2e}  {dt * 1000:.0f} ms/step")
            t_log, it_log = time.time(), iter_num
        if iter_num % cfg.eval_interval == 0 or iter_num == cfg.max_iters:
            if dist.main:
                val = evaluate(model, splits["val"], cfg.eval_batch, exact)
                score = val["mean"] if np.isfinite(val["mean"]) else -math.inf
                history.append({"iter": iter_num, "val": val})
                if score > best_ccc:
                    best_ccc, best_iter = score, iter_num
                    best_state = {k: v.clone() for k, v in model.state_dict().items()}
                log(f"step {iter_num:5d}  val CCC " + "  ".join(f"{k} {v:.4f}" for k, v in val.items())
                    + f"  (best {best_ccc:.4f} @ {best_iter})")
            dist.barrier()
            t_log, it_log = time.time(), iter_num
        if iter_num % cfg.checkpoint_interval == 0 or iter_num == last:
            checkpoint()
    if iter_num < cfg.max_iters:
        log(f"stopped at step {iter_num} of {cfg.max_iters}; continue with --resume=true")
        return {"stopped_at": iter_num}
    qat_entry = None
    if cfg.qat != "off":  # quantization-aware fine-tuning of the selected student (training/qat.py)
        from training import qat

        model.load_state_dict(best_state)
        qat_entry = qat.phase(cfg, model, params, targets, splits, loss_fn, dist, log,
                              ckpt.get("qat") if ckpt else None, checkpoint)
        if "stopped_at" in qat_entry:
            return {"stopped_at": qat_entry["stopped_at"]}
        best_state = {k: v.clone() for k, v in model.state_dict().items()}
    if not dist.main:
        dist.barrier()
        return {}

    model.load_state_dict(best_state)
    # the config in the metadata: the weights alone do not tell e.g. a raised log-mel floor (--floor_db)
    save_model(out_dir / "model.safetensors", best_state, config=model_args if cfg.student == "wav2small" else None)
    final = {name: evaluate(model, splits[name], cfg.eval_batch, exact) for name in ("val", "test")
             if len(splits[name]) > 1}
    report = {
        "config": asdict(cfg),
        "model_args": model_args,
        "trainable_parameters": trainable(model),
        "teacher": teacher_id,
        "data": data_id,
        "clips": {name: len(s) for name, s in splits.items()},
        "annotations": targets.annotated,
        "skipped_audio": skipped.report(),
        "best_iter": best_iter,
        "ccc": final,
        "per_voice": {name: per_voice(model, splits[name], cfg.eval_batch, exact) for name in final},
        "history": history,
        "processes": dist.world,
        "wall_seconds_this_invocation": round(time.time() - t_start, 1),
        "torch": torch.__version__,
        "overrides": {k: v for k, v in (given or {}).items()},
        **({"qat": qat_entry} if qat_entry is not None else {}),
    }
    save_json(out_dir / "train.json", report)
    skipped.finish(log)
    log(f"best step {best_iter}: " + "; ".join(
        f"{name} CCC " + " ".join(f"{k} {v:.4f}" for k, v in m.items()) for name, m in final.items()))
    log(f"wrote {out_dir / 'model.safetensors'} and {out_dir / 'train.json'} in {time.time() - t_start:.0f} s")
    dist.barrier()
    return report


def main(argv: list[str] | None = None) -> None:
    cfg, given = parse_args(argv)
    distributed = False
    try:
        train(cfg, given)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            distributed = True
            torch.distributed.destroy_process_group()
    if distributed:
        # gloo's worker threads can abort the interpreter's finalisation after a finished run
        # ("terminate called without an active exception", pytorch/pytorch#179291, seen in the tests): every
        # output is written and closed by now, so the process leaves without finalising
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    import training.cli

    training.cli.run(main, "python -m training.distill")
