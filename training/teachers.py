"""Teachers: models whose arousal/dominance/valence outputs the students learn from.

A teacher is any object with

    teacher(waves: Sequence[np.ndarray], ids: Sequence[str] | None = None) -> np.ndarray  # (N, 3) float32
    teacher.id          # str: changes whenever its outputs could change (weights hash); a cache key
    teacher.clip_level  # bool: True if outputs depend on the clip only (labels), not on crop/augmentation

`waves` are mono float32 clips at 16 kHz (full scale 1.0), of any lengths. `ids` are the clips'
content hashes (corpus `sha256` column); only `LabelsTeacher` needs them. Output columns are
arousal, dominance, valence, raw (not clipped: papers.md §1.3, "do not use clip() for distillation").

    dawn:DIR        DawnTeacher      wav2vec2 + regression head in Hugging Face layout (audEERING
                                     wav2vec2-large-robust-12-ft-emotion-msp-dim), read from a local
                                     directory; no hub access unless allow_hub=True
    onnx:FILE       OnnxTeacher      any ONNX graph taking a (1, L) float waveform, giving 3 values
    w2s:FILE        Wav2SmallTeacher any .w2s model file, run by the int8 C engine
    labels:CSV      LabelsTeacher    per-clip targets: columns sha256 (or path) + arousal, dominance, valence
    ensemble:A,B    EnsembleTeacher  the mean of several teachers (the paper's teacher fuses Dawn and a WavLM
                                     model; the mean is our reading, papers.md §1.3 marks it unverified)

`from_spec("dawn:/models/msp-dim")` builds one from the strings `python -m training.distill
--teacher=...` takes.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import math
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

OUTPUTS = ("arousal", "dominance", "valence")


class TeacherError(ValueError):
    """A teacher that cannot be built or cannot annotate the clips it is given."""


@runtime_checkable
class Teacher(Protocol):
    id: str
    clip_level: bool

    def __call__(self, waves: Sequence[np.ndarray], ids: Sequence[str] | None = None) -> np.ndarray: ...


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def model_stamp(path: str | Path) -> str:
    """How a generated doc names the model it measured: file name and the first 16 hex digits of
    its sha256 (tests/test_docs_models.py checks every stamp in docs/ against the shipped file)."""
    return f"{Path(path).name} sha256 {file_sha256(path)[:16]}"


def _check_waves(waves: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = []
    for i, w in enumerate(waves):
        a = np.asarray(w)
        if a.ndim != 1 or a.size == 0:
            raise TeacherError(f"clip {i}: expected a non-empty 1-D waveform, got shape {a.shape}")
        if a.dtype == np.int16:
            a = a.astype(np.float32) / 32768.0
        a = a.astype(np.float32, copy=False)
        if not np.all(np.isfinite(a)):
            raise TeacherError(f"clip {i} holds NaN or infinite samples")
        out.append(a)
    return out


def normalize(wave: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Zero mean, unit variance: what Wav2Vec2FeatureExtractor(do_normalize=True) does per clip."""
    w = wave.astype(np.float32, copy=False)
    return ((w - w.mean()) / np.sqrt(w.var() + eps)).astype(np.float32)


def _by_length(waves: list[np.ndarray], max_batch: int) -> list[list[int]]:
    """Indices grouped into batches of equal-length clips: padding would change a mean-pooled teacher's
    output (the audEERING model takes no attention mask), so only equal lengths share a batch."""
    groups: dict[int, list[int]] = {}
    for i, w in enumerate(waves):
        groups.setdefault(len(w), []).append(i)
    return [ids[k: k + max_batch] for ids in groups.values() for k in range(0, len(ids), max_batch)]


# ------------------------------------------------------------------------------------------------
# Dawn: wav2vec2 + regression head

# Head parameter names of audEERING's EmotionModel (model card code: self.wav2vec2 = Wav2Vec2Model,
# self.classifier = RegressionHead with dense, dropout, out_proj). Checked by the tests.
DAWN_HEAD_KEYS = ("classifier.dense.weight", "classifier.dense.bias",
                  "classifier.out_proj.weight", "classifier.out_proj.bias")


@functools.lru_cache(maxsize=1)
def _dawn_class():
    """The model class, built on first use so importing this module does not import transformers."""
    try:
        import torch
        from torch import nn
        from transformers import Wav2Vec2Model
        from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2PreTrainedModel
        from transformers.utils import logging as hf_logging
    except ImportError as e:
        raise TeacherError(f"the dawn teacher needs transformers: pip install transformers ({e})") from None
    hf_logging.disable_progress_bar()

    class RegressionHead(nn.Module):
        """dense (hidden -> hidden) -> tanh -> out_proj (hidden -> num_labels); dropout as in training."""

        def __init__(self, config):
            super().__init__()
            self.dense = nn.Linear(config.hidden_size, config.hidden_size)
            self.dropout = nn.Dropout(config.final_dropout)
            self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.tanh(self.dense(self.dropout(x)))
            return self.out_proj(self.dropout(x))

    class DawnModel(Wav2Vec2PreTrainedModel):
        """wav2vec2 encoder -> mean over time of the last hidden state -> RegressionHead."""

        def __init__(self, config):
            super().__init__(config)
            self.wav2vec2 = Wav2Vec2Model(config)
            self.classifier = RegressionHead(config)
            self.post_init()

        def forward(self, input_values: torch.Tensor) -> torch.Tensor:  # (B, L) normalised -> (B, 3)
            hidden = self.wav2vec2(input_values)[0]  # (B, T, hidden)
            return self.classifier(hidden.mean(dim=1))

    return DawnModel


def dawn_model_class():
    """The transformers class DawnTeacher loads (for building test checkpoints with save_pretrained)."""
    return _dawn_class()


class DawnTeacher:
    """audEERING's dimensional wav2vec2 model (or any checkpoint with its layout), from a local directory.

    The directory is what `save_pretrained` writes and what a Hugging Face download holds: config.json
    plus model.safetensors or pytorch_model.bin. Loading refuses a checkpoint with missing or unexpected
    weights (transformers would otherwise initialise missing ones at random and only warn).
    """

    clip_level = False

    def __init__(self, path: str | Path, allow_hub: bool = False, max_batch: int = 8, threads: int | None = None):
        import torch

        self.path = str(path)
        local = Path(path)
        if not local.is_dir() and not allow_hub:
            raise TeacherError(f"dawn teacher: {path} is not a directory; download the checkpoint first "
                               "(config.json + weights) or pass allow_hub=True on a machine with network")
        if local.is_dir() and not (local / "config.json").is_file():
            # transformers would go on with a default (wav2vec2-base) config and fail on the weights' shapes
            raise TeacherError(f"dawn teacher: {path} has no config.json (a Hugging Face model directory holds "
                               "config.json and the weights)")
        if threads:
            torch.set_num_threads(threads)
        cls = _dawn_class()
        from transformers.utils import logging as hf_logging

        # transformers logs a table of every missing, unexpected and mismatched weight (dozens of lines)
        # before it raises; the checks below and the error here say it in one line
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            model, info = cls.from_pretrained(str(path), local_files_only=not allow_hub, output_loading_info=True)
        except (OSError, ValueError, RuntimeError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if "ignore_mismatched_sizes" in reason:   # its words point to the table just silenced
                reason = "the shapes of its weights differ from those its config.json gives"
            raise TeacherError(f"dawn teacher: cannot load {path} as a wav2vec2 teacher: {reason}") from None
        finally:
            hf_logging.set_verbosity(verbosity)
        missing, unexpected = sorted(info["missing_keys"]), sorted(info["unexpected_keys"])
        if missing or unexpected or info.get("mismatched_keys"):
            raise TeacherError(f"dawn teacher: {path} does not have the expected layout: missing {missing[:8]}, "
                               f"unexpected {unexpected[:8]}, mismatched {list(info.get('mismatched_keys', []))[:8]}")
        if model.config.num_labels != 3:
            raise TeacherError(f"dawn teacher: the head has {model.config.num_labels} outputs, expected 3 (A, D, V)")
        self.model = model.eval()
        self.max_batch = max_batch
        self.id = "dawn:" + (self._content_hash(local) if local.is_dir() else str(path))

    @staticmethod
    def _content_hash(root: Path) -> str:
        h = hashlib.sha256()
        for name in sorted(p.name for p in root.iterdir() if p.is_file()):
            if name == "config.json" or name.endswith((".safetensors", ".bin")):
                h.update(name.encode() + file_sha256(root / name).encode())
        return h.hexdigest()[:16]

    def __call__(self, waves: Sequence[np.ndarray], ids: Sequence[str] | None = None) -> np.ndarray:
        import torch

        clips = [normalize(w) for w in _check_waves(waves)]
        out = np.zeros((len(clips), 3), np.float32)
        with torch.no_grad():
            for batch in _by_length(clips, self.max_batch):
                x = torch.from_numpy(np.stack([clips[i] for i in batch]))
                out[batch] = self.model(x).numpy()
        return out


# ------------------------------------------------------------------------------------------------
# ONNX

class OnnxTeacher:
    """Any ONNX graph with one float waveform input ((1, L) or (L,)) and an output holding 3 values.

    `output`: the output's name; by default "logits" if there is one (audEERING's ONNX export has
    "hidden_states" and "logits"), else the only output with 3 values. `normalize`: apply the
    zero-mean/unit-variance step first, for graphs that expect it done outside (audEERING's does).
    """

    clip_level = False

    def __init__(self, path: str | Path, output: str | None = None, normalize_input: bool = False,
                 threads: int = 1):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise TeacherError(f"the onnx teacher needs onnxruntime ({e})") from None
        if not Path(path).is_file():
            raise TeacherError(f"onnx teacher: no file {path}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 -- onnxruntime raises its own pybind exception types
            raise TeacherError(f"onnx teacher: cannot load {path}: {e}") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise TeacherError(f"onnx teacher: expected one input, {path} has {[i.name for i in inputs]}")
        self.input = inputs[0].name
        self.rank = len(inputs[0].shape)
        if self.rank not in (1, 2):
            raise TeacherError(f"onnx teacher: input {self.input} has shape {inputs[0].shape}; want (1, L) or (L,)")
        names = [o.name for o in self.session.get_outputs()]
        self.output = output or ("logits" if "logits" in names else None)
        if self.output is not None and self.output not in names:
            raise TeacherError(f"onnx teacher: no output {self.output!r} in {names}")
        self.candidates = names
        self.normalize_input = normalize_input
        self.id = f"onnx:{file_sha256(path)[:16]}:{self.output}:{int(normalize_input)}"

    def _pick(self, results: list[np.ndarray]) -> np.ndarray:
        if self.output is not None:
            r = results[self.candidates.index(self.output)]
        else:
            threes = [r for r in results if np.asarray(r).size == 3]
            if len(threes) != 1:
                raise TeacherError(f"onnx teacher: cannot tell which output holds A/D/V among {self.candidates}; "
                                   "pass output=NAME")
            r = threes[0]
        r = np.asarray(r, np.float32).reshape(-1)
        if r.size != 3:
            raise TeacherError(f"onnx teacher: output has {r.size} values, expected 3")
        return r

    def __call__(self, waves: Sequence[np.ndarray], ids: Sequence[str] | None = None) -> np.ndarray:
        out = np.zeros((len(waves), 3), np.float32)
        for i, w in enumerate(_check_waves(waves)):
            x = normalize(w) if self.normalize_input else w
            x = x[None] if self.rank == 2 else x
            out[i] = self._pick(self.session.run(None, {self.input: x}))
        return out


# ------------------------------------------------------------------------------------------------
# Wav2Small (.w2s, int8 engine)

class Wav2SmallTeacher:
    """Any .w2s file (e.g. converted published Wav2Small weights), run by the C engine."""

    clip_level = False

    def __init__(self, path: str | Path):
        from wav2small import Model
        from wav2small.errors import Wav2SmallError

        try:
            self.model = Model(path)
        except (Wav2SmallError, OSError) as e:
            raise TeacherError(f"w2s teacher: cannot load {path}: {e}") from None
        self.id = f"w2s:{file_sha256(path)[:16]}"

    def __call__(self, waves: Sequence[np.ndarray], ids: Sequence[str] | None = None) -> np.ndarray:
        clips = _check_waves(waves)
        if not clips:
            return np.zeros((0, 3), np.float32)
        return np.stack([self.model.predict(w).as_array() for w in clips]).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# labels and ensembles

class LabelsTeacher:
    """Precomputed per-clip targets from a CSV: a `sha256` column (content hash of the audio file) or a
    `path` column (hashed on load; relative paths are relative to the CSV), and arousal, dominance,
    valence. The same targets apply to every crop and augmentation of a clip (clip_level)."""

    clip_level = True

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise TeacherError(f"labels teacher: no file {path}")
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise TeacherError(f"labels teacher: {path} has no rows")
        cols = set(rows[0])
        missing = [c for c in OUTPUTS if c not in cols]
        if missing or not ({"sha256", "path"} & cols):
            raise TeacherError(f"labels teacher: {path} needs columns sha256 or path, and {', '.join(OUTPUTS)}; "
                               f"missing {missing or ['sha256/path']}")
        self.table: dict[str, np.ndarray] = {}
        for n, row in enumerate(rows, start=2):
            key = row.get("sha256") or ""
            if not key:
                p = Path(row["path"])
                key = file_sha256(p if p.is_absolute() else path.parent / p)
            try:
                value = np.array([float(row[c]) for c in OUTPUTS], np.float32)
            except ValueError as e:
                raise TeacherError(f"labels teacher: {path} line {n}: {e}") from None
            if not np.all(np.isfinite(value)):
                raise TeacherError(f"labels teacher: {path} line {n}: non-finite target")
            self.table[key] = value
        self.id = f"labels:{file_sha256(path)[:16]}"

    def __call__(self, waves: Sequence[np.ndarray], ids: Sequence[str] | None = None) -> np.ndarray:
        if ids is None or len(ids) != len(waves):
            raise TeacherError("labels teacher: needs the clip ids (content hashes) of the waves")
        unknown = [i for i in ids if i not in self.table]
        if unknown:
            raise TeacherError(f"labels teacher: no targets for {len(unknown)} clip(s), e.g. {unknown[0]}")
        return np.stack([self.table[i] for i in ids]) if ids else np.zeros((0, 3), np.float32)


class EnsembleTeacher:
    """The (weighted) mean of several teachers' outputs."""

    def __init__(self, teachers: Sequence[Teacher], weights: Sequence[float] | None = None):
        if not teachers:
            raise TeacherError("ensemble teacher: no members")
        w = np.ones(len(teachers)) if weights is None else np.asarray(weights, np.float64)
        if w.shape != (len(teachers),) or np.any(w < 0) or w.sum() <= 0:
            raise TeacherError(f"ensemble teacher: bad weights {weights}")
        self.teachers = list(teachers)
        self.weights = (w / w.sum()).astype(np.float32)
        self.clip_level = all(t.clip_level for t in self.teachers)
        self.id = "ensemble(" + ",".join(f"{t.id}*{x:.4g}" for t, x in zip(self.teachers, self.weights)) + ")"

    def __call__(self, waves: Sequence[np.ndarray], ids: Sequence[str] | None = None) -> np.ndarray:
        outs = [t(waves, ids) for t in self.teachers]
        return np.tensordot(self.weights, np.stack(outs), axes=1).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# specs

def from_spec(spec: str, allow_hub: bool = False, threads: int = 1) -> Teacher:
    """A teacher from a `kind:argument` string (see the module docstring). `prosody` is not a waveform
    teacher: training.distill maps it to the labels of the prosody corpus."""
    kind, _, arg = spec.partition(":")
    if kind not in TEACHER_KINDS:   # before the argument: "prosdy" is a typo, not a missing argument
        raise TeacherError(f"unknown teacher kind {kind!r} in {spec!r}: use {', '.join(TEACHER_KINDS)} "
                           "(or prosody, training.distill's annotator)")
    if kind == "ensemble":
        parts = [p for p in arg.split(",") if p]
        return EnsembleTeacher([from_spec(p, allow_hub, threads) for p in parts])
    if not arg:
        raise TeacherError(f"teacher spec {spec!r} needs an argument, e.g. dawn:/path/to/checkpoint")
    if kind == "dawn":
        return DawnTeacher(arg, allow_hub=allow_hub, threads=threads)
    if kind == "onnx":
        return OnnxTeacher(arg, threads=threads)
    if kind == "onnx+norm":
        return OnnxTeacher(arg, normalize_input=True, threads=threads)
    if kind == "w2s":
        return Wav2SmallTeacher(arg)
    return LabelsTeacher(arg)   # kind == "labels"


TEACHER_KINDS = ("dawn", "onnx", "onnx+norm", "w2s", "labels", "ensemble")


def make_random_dawn(path: str | Path, seed: int = 0, hidden: int = 64, layers: int = 2) -> Path:
    """Write a small randomly initialised checkpoint in the Dawn layout (save_pretrained) to `path`.

    No emotion model can be had offline (offline-data.md): this is the stand-in teacher that CI
    uses to run the real loading path (config.json + model.safetensors -> DawnTeacher) and the
    whole pipeline. Its outputs are a fixed random function of the audio, not emotion ratings.
    The encoder config is offline-data.md §5's (about 100K parameters).
    """
    import torch
    from transformers import Wav2Vec2Config

    cfg = Wav2Vec2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                         intermediate_size=2 * hidden, conv_dim=(32,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2),
                         conv_stride=(5, 2, 2, 2, 2, 2, 2), num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=4, do_stable_layer_norm=True, feat_extract_norm="layer",
                         num_labels=3, id2label=dict(enumerate(OUTPUTS)), label2id={o: i for i, o in enumerate(OUTPUTS)})
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = _dawn_class()(cfg)
    finally:
        torch.random.set_rng_state(state)
    model.save_pretrained(str(path))
    return Path(path)


# ------------------------------------------------------------------------------------------------
# a trained stand-in wav2vec2 teacher (for measuring distillation where no emotion model exists)

def fit_standin(out: str | Path, manifest: str | Path, steps: int = 800, seed: int = 0, hidden: int = 64,
                layers: int = 2, crop_seconds: float = 2.0, batch: int = 16, lr: float = 1e-3,
                threads: int = 1, log=print) -> Path:
    """Train a small Dawn-layout wav2vec2 (make_random_dawn) on the prosody annotator's targets of a
    corpus manifest's labelled training clips (loss 1 - CCC, AdamW, cosine), then save_pretrained it.

    The result is a genuine wav2vec2 + regression-head teacher in the published layout whose outputs
    follow prosodic cues on any audio, real speech included. It is NOT an emotion model: it only
    makes student-vs-teacher measurements on real speech possible offline (docs/students.md).
    Deterministic for a given (manifest, seed, steps) on one thread.
    """
    import torch

    from .audio_io import Skipped, read_many
    from .corpus import read_manifest
    from .metrics import ccc_torch

    torch.set_num_threads(threads)
    entries = [e for e in read_manifest(manifest) if e.split == "train" and e.targets is not None]
    skipped = Skipped("stand-in teacher clips")
    keep, clips = read_many([e.path for e in entries], 16000, skipped)  # unreadable files: left out, warned
    entries = [entries[k] for k in keep]
    skipped.finish(log)
    if len(entries) < batch:
        raise TeacherError(f"{manifest}: {len(entries)} labelled training clips; need at least {batch}")
    targets = torch.tensor([e.targets for e in entries], dtype=torch.float32)
    tmp = Path(out).with_name(Path(out).name + ".init")
    make_random_dawn(tmp, seed=seed, hidden=hidden, layers=layers)
    model = _dawn_class().from_pretrained(str(tmp), local_files_only=True)
    # every layer every step, no SpecAugment masking: a tiny model needs no such regularisation.
    # (mask_time_prob stays > 0: it decides whether masked_spec_embed exists, and the saved
    # weights must load back strictly.)
    model.config.layerdrop = 0.0
    model.config.apply_spec_augment = False
    shutil.rmtree(tmp)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    torch.manual_seed(seed)  # dropout draws
    n = int(crop_seconds * 16000)
    model.train()
    t0 = time.time()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * step / steps))
        rng = np.random.default_rng([seed, step])
        picks = rng.choice(len(clips), size=batch, replace=False)
        x = []
        for i in picks:
            c = clips[i]
            c = np.tile(c, -(-n // len(c))) if len(c) < n else c
            o = int(rng.integers(0, len(c) - n + 1))
            x.append(normalize(c[o: o + n]))
        pred = model(torch.from_numpy(np.stack(x)))
        loss = (1 - ccc_torch(pred, targets[picks])).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % max(1, steps // 10) == 0:
            log(f"stand-in teacher step {step + 1}/{steps}  loss {loss.item():.4f}  "
                f"{time.time() - t0:.0f} s")
    model.eval()
    model.save_pretrained(str(out))
    return Path(out)


def main(argv: list[str] | None = None) -> None:
    import argparse

    from .cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="python -m training.teachers", description=(
        "Train the stand-in wav2vec2 teacher: a small Dawn-layout model fitted to the prosody annotator's "
        "targets of a corpus (see fit_standin). Usage: python -m training.teachers --out=runs/teacher "
        "--corpus=runs/corpus/manifest.csv"), formatter_class=HelpFormatter)
    ap.add_argument("--out", required=True, help="directory for config.json + model.safetensors")
    ap.add_argument("--corpus", required=True, help="manifest.csv with labelled (espeak-ng) training clips")
    ap.add_argument("--steps", type=int, default=800, help="training steps")
    ap.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the batches")
    ap.add_argument("--hidden", type=int, default=64, help="wav2vec2 hidden size")
    ap.add_argument("--layers", type=int, default=2, help="wav2vec2 transformer layers")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--overwrite", action="store_true", help="replace a teacher already in --out")
    args = ap.parse_args(argv)
    for name in ("steps", "threads", "layers"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.hidden < 4 or args.hidden % 4:   # 2 attention heads and 4 positional-convolution groups share it
        ap.error(f"--hidden must be a positive multiple of 4 (the positional convolution's 4 groups and the 2 "
                 f"attention heads divide it), got {args.hidden}")
    if args.seed < 0:
        ap.error(f"--seed must be >= 0, got {args.seed}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        ap.error(f"--out {args.out} is a file; the teacher is a directory (config.json + model.safetensors)")
    if (Path(args.out) / "config.json").exists() and not args.overwrite:
        # students distilled from it (and their annotation caches) name it by its content: a new one
        # in its place would silently mix two teachers in a resumed run
        ap.error(f"--out {args.out} already holds a teacher: choose another --out, or --overwrite")
    path = fit_standin(args.out, args.corpus, args.steps, args.seed, args.hidden, args.layers, threads=args.threads)
    print(f"wrote {path}: load it with --teacher=dawn:{path} ({DawnTeacher(path).id})")


if __name__ == "__main__":
    import training.cli

    training.cli.run(main, "python -m training.teachers")
