"""Reading training audio without letting one bad file end a run.

Every place the training code reads audio (corpus building, the distillation loaders, evaluation
splits and the stand-in teacher) goes through this module, so they all skip the same files for the
same reasons and say so the same way:

    skipped = Skipped("training audio")
    for e in entries:
        pcm = read_int16(e.path, skipped=skipped)   # None if the file cannot be used
        ...
    skipped.finish(log)           # "training audio: skipped 3 unreadable audio file(s) (empty: 1; ...)"
    report["skipped_audio"] = skipped.report()

A file is unusable, and skipped with a warning, when it is missing, not a regular file (a
directory named x.wav), empty, not audio libsndfile recognises (random bytes), a WAV whose header
promises more sample data than the file holds (cut off while copying or writing), holds NaN or
infinite samples, or is shorter than `MIN_SECONDS`. Each skip is one `UnreadableAudioWarning`
(the first `WARN_FIRST` of a Skipped; after that they are only counted) and one entry in
`Skipped.report()`. Reading functions without a `skipped` argument raise `UnreadableAudio`
instead.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from wav2small.audio import wav_shortfall

# Shorter clips hold no speech, and the students cannot run on them (Wav2Small needs one 64-sample
# frame, the MobileNets more); corpora keep clips of 0.5 s and longer anyway.
MIN_SECONDS = 0.1
WARN_FIRST = 20          # warnings per Skipped; later skips are only counted
LISTED = 100             # files named in Skipped.report()


class UnreadableAudio(ValueError):
    """An audio file that cannot be used for training; `path` and `reason` say which and why."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


class UnreadableAudioWarning(UserWarning):
    """Issued for each skipped audio file (the first WARN_FIRST of a Skipped)."""


class Skipped:
    """Files skipped by one stage (corpus building, a training run, an evaluation): count, names, reasons."""

    def __init__(self, what: str = "audio"):
        self.what = what
        self.files: list[tuple[str, str]] = []

    def add(self, err: UnreadableAudio) -> None:
        self.files.append((err.path, err.reason))
        n = len(self.files)
        if n <= WARN_FIRST:
            more = f" (further skips of {self.what} are only counted)" if n == WARN_FIRST else ""
            warnings.warn(f"skipping unreadable audio file {err.path}: {err.reason}{more}",
                          UnreadableAudioWarning, stacklevel=3)

    def __len__(self) -> int:
        return len(self.files)

    def summary(self) -> str:
        if not self.files:
            return f"{self.what}: every audio file was readable"
        kinds: dict[str, int] = {}
        for _, reason in self.files:
            kind = reason.split(":")[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        return (f"{self.what}: skipped {len(self.files)} unreadable audio file(s) ("
                + "; ".join(f"{k}: {v}" for k, v in sorted(kinds.items())) + ")")

    def finish(self, log: Callable[[str], None] = print) -> None:
        """Log the count (only if something was skipped)."""
        if self.files:
            log(self.summary())

    def report(self) -> dict:
        """For train.json: {"count": N, "files": [{"path", "reason"}, ...] (the first LISTED)}."""
        return {"count": len(self.files),
                "files": [{"path": p, "reason": r} for p, r in self.files[:LISTED]]}


def check_file(path: str | Path) -> Path:
    """The path, if it names a non-empty regular file and is not a WAV cut short; else UnreadableAudio."""
    p = Path(path)
    try:
        if not p.exists():
            raise UnreadableAudio(path, "missing: no such file")
        if not p.is_file():
            raise UnreadableAudio(path, "not a regular file: a directory or device")
        if p.stat().st_size == 0:
            raise UnreadableAudio(path, "empty: 0 bytes")
        short = wav_shortfall(p)
    except OSError as e:
        raise UnreadableAudio(path, f"cannot read: {e.strerror or e}") from None
    if short:
        raise UnreadableAudio(path, f"truncated: the WAV header promises {short} more bytes of samples")
    return p


def audio_seconds(path: str | Path, min_seconds: float = 0.0) -> float:
    """Duration from the header (no decoding), for corpus building; UnreadableAudio if unusable."""
    import soundfile as sf

    p = check_file(path)
    try:
        info = sf.info(str(p))
    except Exception as e:  # noqa: BLE001 - libsndfile reports bad files in several ways
        raise UnreadableAudio(path, f"not readable audio: {e}") from None
    if not info.samplerate or info.frames <= 0:
        raise UnreadableAudio(path, "no samples")
    seconds = info.frames / info.samplerate
    if seconds < min_seconds:
        raise UnreadableAudio(path, f"too short: {seconds:.3f} s, less than {min_seconds} s")
    return seconds


def read_audio(path: str | Path, sample_rate: int = 16000, min_seconds: float = MIN_SECONDS,
               skipped: Skipped | None = None) -> np.ndarray | None:
    """Mono float32 at `sample_rate` (wav2small.audio.load), after the checks above.

    With `skipped`, an unusable file is recorded there (with a warning) and None is returned;
    without it, UnreadableAudio is raised."""
    from wav2small.audio import load

    try:
        p = check_file(path)
        try:
            pcm = load(p, sample_rate)
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - AudioError, and whatever a decoder or resampler raises
            raise UnreadableAudio(path, f"not readable audio: {e}") from None
        if not np.all(np.isfinite(pcm)):
            raise UnreadableAudio(path, "corrupt samples: NaN or infinite values")
        if len(pcm) < max(1, min_seconds * sample_rate):
            raise UnreadableAudio(path, f"too short: {len(pcm)} samples, less than {min_seconds} s")
    except UnreadableAudio as e:
        if skipped is None:
            raise
        skipped.add(e)
        return None
    return pcm


def read_int16(path: str | Path, sample_rate: int = 16000, min_seconds: float = MIN_SECONDS,
               skipped: Skipped | None = None) -> np.ndarray | None:
    """As read_audio, as int16 PCM (wav2small.model.to_int16: a 16-bit file at `sample_rate` comes
    back sample for sample as stored)."""
    from wav2small.model import to_int16

    pcm = read_audio(path, sample_rate, min_seconds, skipped)
    return None if pcm is None else to_int16(pcm)


def read_many(paths, sample_rate: int = 16000, skipped: Skipped | None = None, int16: bool = False,
              min_seconds: float = MIN_SECONDS) -> tuple[list[int], list[np.ndarray]]:
    """(indices of the usable files, their clips): the usual loop over a list of files."""
    read = read_int16 if int16 else read_audio
    skipped = skipped if skipped is not None else Skipped()
    keep, clips = [], []
    for i, p in enumerate(paths):
        pcm = read(p, sample_rate, min_seconds, skipped)
        if pcm is not None:
            keep.append(i)
            clips.append(pcm)
    return keep, clips

