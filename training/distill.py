"""Train Wav2Small on the prosody corpus (first step towards distillation from teachers).

Targets come from the rule-based prosody annotator (training/prosody.py), which stands in for the
teacher until a real one is wired in: the data pipeline, loss, schedule, evaluation, checkpoints and
export here are the parts a teacher-distillation run reuses; only `targets` will change.

Commands (run from the repository root):

    # the committed model training/default/{model.safetensors,train.json}: 3,000 clips (about 25 s
    # to synthesise, cached afterwards), 1,500 steps of 16 x 2 s crops; about 9 min on 2 idle cores
    python -m training.distill --out_dir=runs/default --crop_seconds=2
    cp runs/default/model.safetensors runs/default/train.json training/default/

    # a quick smoke run
    python -m training.distill --out_dir=runs/smoke --n_clips=64 --max_iters=20 --eval_interval=10

    # continue a run from out_dir/ckpt.pt, e.g. with a longer schedule
    python -m training.distill --out_dir=runs/x --resume=True --max_iters=6000

    python -m training.distill --help            # every option, with its default

Every option is `--key=value`; booleans take true/false. On --resume the checkpoint's config is
loaded and only the options given on the command line override it.

Data: `n_clips` espeak-ng clips drawn by `prosody.build_corpus(n_clips, seed)`, cached on disk
(training/speech.py), split by voice variant. Training examples are random `crop_seconds` crops;
clips shorter than that are padded (`pad`): "repeat" tiles the clip (default: every frame the model
sees is speech-like, as at inference; a zero tail would also lower the clip's RMS before the
model's unit-variance normalisation and add a silence segment never seen at inference), "zero"
appends silence. Evaluation uses (almost) whole clips: clips are sorted by length and batched, each
batch trimmed to its shortest clip.

Order and crops at step i are a pure function of (seed, i), so a resumed run sees the same batches
as an uninterrupted one. Loss: mean over arousal/dominance/valence of 1 - CCC on the batch.
Outputs in out_dir: ckpt.pt (every `checkpoint_interval` steps and at the end), model.safetensors
(best validation CCC, published key names, loadable by training.model.load_safetensors), train.json
(config, model args, eval history, final val/test CCC, per-voice bias and correlation).

Threads: with --threads=2 on a machine where another process keeps one core busy, steps got 3-4x
slower than with --threads=1 (OpenMP threads waiting on each other); use --threads=1 there.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from training.metrics import ccc_numpy, ccc_torch
from training.model import CONFIGS, Wav2Small, Wav2SmallConfig
from training.prosody import OUTPUTS, ProsodyItem, build_corpus, summary
from training.speech import synthesize_many


@dataclass
class TrainConfig:
    # I/O
    out_dir: str = field(default="runs/distill", metadata={"help": "where ckpt.pt, model.safetensors, train.json go"})
    resume: bool = field(default=False, metadata={"help": "continue from out_dir/ckpt.pt"})
    cache_dir: str = field(default="", metadata={"help": "clip cache; empty = $WAV2SMALL_CACHE or ~/.cache/wav2small"})
    # data
    n_clips: int = field(default=3000, metadata={"help": "clips drawn by the prosody annotator (all splits)"})
    seed: int = field(default=0, metadata={"help": "seeds corpus, model init, batch order and crops"})
    synth_workers: int = field(default=2, metadata={"help": "parallel espeak-ng processes"})
    crop_seconds: float = field(default=3.0, metadata={"help": "training crop length"})
    pad: str = field(default="repeat", metadata={"help": "short clips: repeat (tile) or zero (append silence)"})
    # model
    model: str = field(default="default", metadata={"help": f"training.model.CONFIGS key: {', '.join(CONFIGS)}"})
    # optimisation
    batch_size: int = field(default=16, metadata={"help": "clips per step"})
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
    # evaluation, logging, checkpoints
    eval_interval: int = field(default=250, metadata={"help": "validate every N steps (and at the end)"})
    eval_batch: int = field(default=16, metadata={"help": "clips per evaluation batch"})
    log_interval: int = field(default=100, metadata={"help": "print training loss every N steps"})
    checkpoint_interval: int = field(default=500, metadata={"help": "write ckpt.pt every N steps (and at the end)"})
    threads: int = field(default=2, metadata={"help": "torch.set_num_threads"})
    tune_malloc: bool = field(default=True, metadata={"help": "glibc only: keep freed activations in the heap "
                                                               "(fewer page faults, ~15%% faster steps)"})

    def validate(self) -> None:
        if self.model not in CONFIGS:
            raise ValueError(f"model must be one of {list(CONFIGS)}, got {self.model!r}")
        if self.pad not in ("repeat", "zero"):
            raise ValueError(f"pad must be 'repeat' or 'zero', got {self.pad!r}")
        for name in ("n_clips", "batch_size", "eval_interval", "eval_batch", "log_interval",
                     "checkpoint_interval", "threads", "synth_workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.crop_seconds <= 0.1:
            raise ValueError(f"crop_seconds must be > 0.1, got {self.crop_seconds}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"need 0 <= min_lr <= lr, got {self.min_lr}, {self.lr}")


# ------------------------------------------------------------------------------------------------
# command line

def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m training.distill",
        description="Train Wav2Small on espeak-ng clips labelled by the prosody annotator. "
                    "Options are --key=value; see the module docstring for full commands.",
    )
    for f in fields(TrainConfig):
        kind = _parse_bool if f.type in (bool, "bool") else type(f.default)
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
# data

@dataclass
class Split:
    clips: list[np.ndarray]   # int16 PCM at 16 kHz
    targets: np.ndarray       # (N, 3) float32
    voices: list[str] = field(default_factory=list)  # espeak-ng variant of each clip (the speaker)

    def __len__(self) -> int:
        return len(self.clips)


def load_corpus(cfg: TrainConfig, sample_rate: int) -> tuple[dict[str, Split], list[ProsodyItem]]:
    items = build_corpus(cfg.n_clips, cfg.seed)
    if sample_rate != items[0].params.sample_rate:
        raise ValueError(f"the model runs at {sample_rate} Hz but clips are {items[0].params.sample_rate} Hz")
    t0 = time.time()
    step = max(1, len(items) // 4)

    def progress(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            print(f"clips {done}/{total} ready ({time.time() - t0:.1f} s)", flush=True)

    paths = synthesize_many([it.params for it in items], cfg.cache_dir or None, cfg.synth_workers, progress)
    splits: dict[str, Split] = {}
    for name in ("train", "val", "test"):
        sel = [(p, it) for p, it in zip(paths, items) if it.split == name]
        clips = [sf.read(str(p), dtype="int16")[0] for p, _ in sel]
        targets = np.stack([it.targets for _, it in sel]) if sel else np.zeros((0, 3), np.float32)
        splits[name] = Split(clips, targets, [it.params.variant or "" for _, it in sel])
    if len(splits["train"]) < 1 or len(splits["val"]) < 2:
        raise ValueError(f"n_clips={cfg.n_clips} gives {len(splits['train'])} training and {len(splits['val'])} "
                         "validation clips; need at least 1 and 2: raise n_clips")
    return splits, items


def fit_length(pcm: np.ndarray, n: int, offset: int, pad: str) -> np.ndarray:
    """Exactly n samples: a crop from `offset` if the clip is long enough, else padded."""
    if len(pcm) >= n:
        return pcm[offset: offset + n]
    if pad == "repeat":
        return np.tile(pcm, -(-n // len(pcm)))[:n]
    return np.concatenate([pcm, np.zeros(n - len(pcm), dtype=pcm.dtype)])


def get_batch(split: Split, it: int, cfg: TrainConfig, n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch number `it`: epochs are seeded permutations, crop offsets are seeded by (seed, it)."""
    n = len(split)
    idx = np.arange(it * cfg.batch_size, (it + 1) * cfg.batch_size)
    order = {}
    picks = np.empty(len(idx), dtype=np.int64)
    for k, j in enumerate(idx):
        epoch = int(j // n)
        if epoch not in order:
            order[epoch] = np.random.default_rng([cfg.seed, 0, epoch]).permutation(n)
        picks[k] = order[epoch][j % n]
    rng = np.random.default_rng([cfg.seed, 1, it])
    x = np.empty((len(picks), n_samples), dtype=np.float32)
    for k, i in enumerate(picks):
        pcm = split.clips[i]
        offset = int(rng.integers(0, max(1, len(pcm) - n_samples + 1)))
        x[k] = fit_length(pcm, n_samples, offset, cfg.pad) / 32768.0
    return torch.from_numpy(x), torch.from_numpy(split.targets[picks])


@torch.no_grad()
def predict(model: Wav2Small, split: Split, batch: int) -> np.ndarray:
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


def evaluate(model: Wav2Small, split: Split, batch: int) -> dict[str, float]:
    c = ccc_numpy(predict(model, split, batch), split.targets)
    return {**{o: float(v) for o, v in zip(OUTPUTS, c)}, "mean": float(np.mean(c))}


def per_voice(model: Wav2Small, split: Split, batch: int) -> dict[str, dict[str, Any]]:
    """Bias (mean prediction - target) and within-voice Pearson r per held-out voice: shows whether
    errors are a per-speaker offset (the model misjudging the voice's baseline) or noise."""
    pred = predict(model, split, batch)
    voices = np.asarray(split.voices)
    out = {}
    for v in sorted(set(split.voices)):
        k = voices == v
        err = pred[k] - split.targets[k]
        r = [float(np.corrcoef(pred[k, j], split.targets[k, j])[0, 1]) if k.sum() > 2 else float("nan")
             for j in range(3)]
        out[v] = {"n": int(k.sum()), "bias": [round(float(e), 3) for e in err.mean(0)],
                  "r": [round(x, 3) for x in r]}
    return out


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


# ------------------------------------------------------------------------------------------------
# files

def _atomic(path: Path, write) -> None:
    """Write via a temp file in the same directory and os.replace, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    _atomic(path, lambda tmp: torch.save(state, tmp))


def save_model(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().clone() for k, v in state_dict.items()}
    _atomic(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))


def save_json(path: Path, obj: dict[str, Any]) -> None:
    _atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2) + "\n"))


# ------------------------------------------------------------------------------------------------
# main

def load_resume(cfg: TrainConfig, given: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    path = Path(cfg.out_dir) / "ckpt.pt"
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    merged = {**ckpt["config"], **given, "resume": True}
    return TrainConfig(**merged), ckpt


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


def train(cfg: TrainConfig, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or resume) training; returns the content of train.json."""
    ckpt = None
    if cfg.resume:
        cfg, ckpt = load_resume(cfg, given if given is not None else asdict(cfg))
    cfg.validate()
    t_start = time.time()
    if cfg.tune_malloc:
        tune_malloc()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out_dir = Path(cfg.out_dir)

    model_cfg = Wav2SmallConfig(**ckpt["model_args"]) if ckpt else CONFIGS[cfg.model]
    model = Wav2Small(model_cfg)
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
        print(f"resumed from {out_dir / 'ckpt.pt'} at step {iter_num} (best val CCC {best_ccc:.4f})")
    print(f"model {cfg.model}: {model.trainable_parameters():,} trainable parameters")

    splits, items = load_corpus(cfg, model_cfg.sample_rate)
    print(summary(items), flush=True)
    n_samples = int(round(cfg.crop_seconds * model_cfg.sample_rate))

    def checkpoint() -> None:
        save_checkpoint(out_dir / "ckpt.pt", {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": asdict(cfg),
            "model_args": model_cfg.to_dict(), "iter_num": iter_num, "best_ccc": best_ccc,
            "best_iter": best_iter, "best_model": best_state, "history": history,
            "rng_state": {"torch": torch.get_rng_state()},
        })

    model.train()
    t_log, it_log = time.time(), iter_num  # step timing leaves out evaluation
    last = min(cfg.max_iters, cfg.stop_at) if cfg.stop_at > 0 else cfg.max_iters
    while iter_num < last:
        lr = lr_at(iter_num, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = get_batch(splits["train"], iter_num, cfg, n_samples)
        loss = ccc_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        iter_num += 1
        if iter_num % cfg.log_interval == 0:
            dt = (time.time() - t_log) / max(1, iter_num - it_log)
            print(f"step {iter_num:5d}  loss {loss.item():.4f}  lr {lr:.2e}  {dt * 1000:.0f} ms/step", flush=True)
            t_log, it_log = time.time(), iter_num
        if iter_num % cfg.eval_interval == 0 or iter_num == cfg.max_iters:
            val = evaluate(model, splits["val"], cfg.eval_batch)
            score = val["mean"] if np.isfinite(val["mean"]) else -math.inf
            history.append({"iter": iter_num, "val": val})
            if score > best_ccc:
                best_ccc, best_iter = score, iter_num
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
            print(f"step {iter_num:5d}  val CCC " + "  ".join(f"{k} {v:.4f}" for k, v in val.items())
                  + f"  (best {best_ccc:.4f} @ {best_iter})", flush=True)
            t_log, it_log = time.time(), iter_num
        if iter_num % cfg.checkpoint_interval == 0 or iter_num == last:
            checkpoint()
    if iter_num < cfg.max_iters:
        print(f"stopped at step {iter_num} of {cfg.max_iters}; continue with --resume=true")
        return {"stopped_at": iter_num}

    model.load_state_dict(best_state)
    save_model(out_dir / "model.safetensors", best_state)
    final = {name: evaluate(model, splits[name], cfg.eval_batch) for name in ("val", "test") if len(splits[name]) > 1}
    report = {
        "config": asdict(cfg),
        "model_args": model_cfg.to_dict(),
        "trainable_parameters": model.trainable_parameters(),
        "clips": {name: len(s) for name, s in splits.items()},
        "best_iter": best_iter,
        "ccc": final,
        "per_voice": {name: per_voice(model, splits[name], cfg.eval_batch) for name in final},
        "history": history,
        "wall_seconds_this_invocation": round(time.time() - t_start, 1),
        "torch": torch.__version__,
        "overrides": {k: v for k, v in (given or {}).items()},
    }
    save_json(out_dir / "train.json", report)
    print(f"best step {best_iter}: " + "; ".join(
        f"{name} CCC " + " ".join(f"{k} {v:.4f}" for k, v in m.items()) for name, m in final.items()))
    print(f"wrote {out_dir / 'model.safetensors'} and {out_dir / 'train.json'} in {time.time() - t_start:.0f} s")
    return report


def main(argv: list[str] | None = None) -> None:
    cfg, given = parse_args(argv)
    train(cfg, given)


if __name__ == "__main__":
    main()
