"""Annotation cache: each teacher output is computed once per (clip, crop, augmentation, teacher).

A view is a crop of a clip, optionally augmented; it is named by the clip's content hash, the crop
(offset and length in 16 kHz samples; length 0 = the whole clip) and the augmentation parameters
(training/augment.py, canonical JSON). Its key is the SHA-256 of those and the teacher's id (which
hashes the teacher's weights), so a changed clip, crop, augmentation or teacher never reuses a stale
value. Clip-level teachers (labels) key on the clip alone.

On disk, under <root>/annotations/<teacher hash>/:

    teacher.txt             the teacher id, for people
    shard-<hash>.npz        keys (S,) and values (S, 3) float32 of one finished chunk

Shards are written atomically (temp file + rename) as each chunk of views finishes, so a killed
annotation run loses at most one chunk and the next run continues where it stopped. Progress is
printed as views done, rate and time left.

    cache = AnnotationCache(root, teacher)
    targets = cache.annotate(views, render)      # render(view) -> float32 waveform
"""
from __future__ import annotations

import hashlib
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import atomic_path, write_atomic
from .teachers import Teacher


@dataclass(frozen=True)
class View:
    clip: str          # content hash of the clip (corpus sha256 column)
    offset: int = 0    # first sample of the crop at 16 kHz
    length: int = 0    # samples; 0 = the whole clip from offset
    augment: str = ""  # training.augment.key(params); '' = clean

    def key(self, teacher: Teacher) -> str:
        if teacher.clip_level:
            text = f"{teacher.id}|{self.clip}"
        else:
            text = f"{teacher.id}|{self.clip}|{self.offset}|{self.length}|{self.augment}"
        return hashlib.sha256(text.encode()).hexdigest()


class Progress:
    """One status line, rewritten in place on a terminal and printed every ~10 % otherwise."""

    def __init__(self, total: int, what: str, stream=None):
        self.total, self.what, self.t0 = total, what, time.time()
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.next_report = 0

    def update(self, done: int) -> None:
        if not self.tty and done < self.next_report and done < self.total:
            return
        self.next_report = done + max(1, self.total // 10)
        dt = time.time() - self.t0
        rate = done / dt if dt > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        line = (f"{self.what}: {done}/{self.total} ({100 * done / max(1, self.total):.0f}%) "
                f"{rate:.1f}/s, {eta:.0f} s left")
        end = "\r" if self.tty and done < self.total else "\n"
        print(line, end=end, file=self.stream, flush=True)


class AnnotationCache:
    def __init__(self, root: str | Path, teacher: Teacher, shard_size: int = 256):
        self.teacher = teacher
        self.dir = Path(root) / "annotations" / hashlib.sha256(teacher.id.encode()).hexdigest()[:16]
        self.shard_size = shard_size
        self.values: dict[str, np.ndarray] = {}
        self._load()

    def _load(self) -> None:
        if not self.dir.is_dir():
            return
        for shard in sorted(self.dir.glob("shard-*.npz")):
            try:
                with np.load(shard) as z:
                    loaded = dict(zip(map(str, z["keys"]), z["values"]))
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
                # not written by _write_shard (that is atomic): damaged on disk. Its views are
                # annotated again and land in a new shard; the run goes on.
                warnings.warn(f"annotation cache: ignoring unreadable shard {shard} ({type(e).__name__}: {e})")
                continue
            self.values.update(loaded)

    def _write_shard(self, keys: list[str], values: np.ndarray) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        label = self.dir / "teacher.txt"
        if not label.is_file():
            write_atomic(label, self.teacher.id + "\n")
        name = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
        with atomic_path(self.dir / f"shard-{name}.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, keys=np.array(keys), values=values.astype(np.float32))

    def __len__(self) -> int:
        return len(self.values)

    def annotate(self, views: Sequence[View], render: Callable[[View], np.ndarray], batch: int = 16,
                 progress: bool = True, what: str = "annotating") -> np.ndarray:
        """Teacher outputs (N, 3) for `views`, computing and storing the missing ones."""
        keys = [v.key(self.teacher) for v in views]
        todo: dict[str, View] = {}
        for k, v in zip(keys, views):
            if k not in self.values and k not in todo:
                todo[k] = v
        if todo:
            bar = Progress(len(todo), f"{what} ({len(self.values)} cached)") if progress else None
            items = list(todo.items())
            done = 0
            for start in range(0, len(items), self.shard_size):
                chunk = items[start: start + self.shard_size]
                out = np.zeros((len(chunk), 3), np.float32)
                for b in range(0, len(chunk), batch):
                    part = chunk[b: b + batch]
                    out[b: b + len(part)] = run_teacher(self.teacher, [v for _, v in part], render)
                    done += len(part)
                    if bar:
                        bar.update(done)
                self._write_shard([k for k, _ in chunk], out)
                for (k, _), value in zip(chunk, out):
                    self.values[k] = value
        return np.stack([self.values[k] for k in keys]) if keys else np.zeros((0, 3), np.float32)


def run_teacher(teacher: Teacher, views: Sequence[View], render: Callable[[View], np.ndarray]) -> np.ndarray:
    """Teacher outputs for views without caching (the online mode); checks shape and finiteness."""
    if teacher.clip_level:  # labels need no audio: skip rendering, hand over placeholders
        waves = [np.zeros(1, np.float32)] * len(views)
    else:
        waves = [render(v) for v in views]
    out = np.asarray(teacher(waves, [v.clip for v in views]), np.float32)
    if out.shape != (len(views), 3):
        raise ValueError(f"teacher {teacher.id} returned shape {out.shape} for {len(views)} clips, expected (N, 3)")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"teacher {teacher.id} returned non-finite values")
    return out
