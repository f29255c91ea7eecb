"""Atomic file writes. Everything training writes (checkpoints, annotation shards, manifests,
synthesised and rendered audio, models, reports) goes through `atomic_path`, so a reader, or a run
restarted after a kill or a power cut, finds the old file or the new one, never half of one. And
the one check that a new training run does not write over an old one (`held_run`)."""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# what a training run (distill, uncertainty, familiarity) writes into its out_dir, finished or not
RUN_FILES = ("ckpt.pt", "train.json", "model.safetensors")
# what a finished one holds, and what release, uq_select and rebuild take from it
FINISHED_RUN = ("model.safetensors", "train.json")
TEMP_SUFFIX = ".tmp"  # temp files are hidden and end in this: ".<name>.<random>.tmp" beside the target


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path in `path`'s directory for the caller to write. When the block ends normally
    the data is fsync'ed (a rename of unsynced data can leave an empty file after a power cut on
    some file systems), made readable by all (mkstemp makes 0600; outputs are meant to be shared)
    and renamed over `path`. If the block raises, the temp file is removed and `path` is untouched.
    Missing parent directories are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write bytes, or text as UTF-8 with its newlines unchanged, through `atomic_path`."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8", newline="")
        else:
            tmp.write_bytes(data)


def held_run(out_dir: str | Path, can_resume: bool = True) -> str | None:
    """Why a new training run must not start in `out_dir` (it holds the files of one, which the run
    would write over), with how to continue that run where the command can; None when it may."""
    if Path(out_dir).exists() and not Path(out_dir).is_dir():   # else the run fails only when it writes
        return f"--out_dir {out_dir} is a file: choose a directory"
    held = [f for f in RUN_FILES if (Path(out_dir) / f).exists()]
    if not held:
        return None
    how = "continue it with --resume=true, or " if can_resume and "ckpt.pt" in held else ""
    return f"--out_dir {out_dir} already holds a run ({', '.join(held)}): {how}choose another --out_dir"


def missing_from_run(run_dir: str | Path) -> list[str]:
    """The files of a finished training run (FINISHED_RUN) that `run_dir` lacks."""
    return [f for f in FINISHED_RUN if not (Path(run_dir) / f).is_file()]


def read_json(path: str | Path) -> Any:
    """A JSON file a command reads (a run's train.json); one that does not parse is a ValueError
    that names it (json's own message says only where, not which file)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as e:   # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"{path} is not JSON: {e}") from None
