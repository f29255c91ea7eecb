"""Audio input: reading files, checking arrays, resampling to the model rate."""
from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np

from .errors import AudioError

AudioLike = Union[np.ndarray, Sequence[float], Sequence[int]]


def as_mono(pcm: AudioLike) -> np.ndarray:
    """Check a clip and return it as a 1-D int16 or float array (no copy when already fine).

    int16 is kept as is; float32/float64 must be finite and are read as full scale = 1.0; lists are
    read as float. Anything else (2-D, bool, int32, complex, object, ...) raises AudioError.
    """
    if isinstance(pcm, (list, tuple)):
        try:
            # numpy only warns on complex numbers (dropping the imaginary part): an error here; its
            # RuntimeWarning on NaN scalars is moot, the non-finite check below names them
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                warnings.simplefilter("error", np.exceptions.ComplexWarning)  # a RuntimeWarning: goes first
                pcm = np.asarray(pcm, dtype=np.float64)
        except (TypeError, ValueError, OverflowError, np.exceptions.ComplexWarning) as e:
            # OverflowError: ints beyond float64
            raise AudioError(f"a list of samples must hold real numbers only ({e})") from None
    if not isinstance(pcm, np.ndarray):
        raise AudioError(f"expected a numpy array or a list of samples, got {type(pcm).__name__}")
    if pcm.ndim != 1:
        raise AudioError(
            f"expected a 1-D mono clip, got shape {pcm.shape}; mix down first, e.g. pcm.mean(axis=1)"
        )
    if pcm.dtype == np.int16:
        return pcm
    if pcm.dtype not in (np.float32, np.float64):
        raise AudioError(f"unsupported dtype {pcm.dtype}: use int16, float32 or float64 samples")
    if not np.all(np.isfinite(pcm)):
        bad = int(np.count_nonzero(~np.isfinite(pcm)))
        raise AudioError(f"the clip holds {bad} NaN or infinite sample(s)")
    return pcm


def check_rate(rate: object) -> float:
    """A sample rate as given (a positive, finite number of Hz), else AudioError. soxr would hang
    on NaN, infinite or absurd rates instead of failing."""
    if not isinstance(rate, numbers.Real) or isinstance(rate, bool) or not math.isfinite(rate) or rate <= 0:
        raise AudioError(f"a sample rate must be a positive number of Hz, got {rate!r}")
    return rate


def resample(pcm: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample with soxr (VHQ); int16 stays int16, floats keep their dtype.

    Floats louder than full scale are first divided by a power of two (exact, and the gain is
    invisible to the model): near the float maximum the resampler's overshoot would overflow to
    inf and turn the clip into NaNs.
    """
    check_rate(rate_in)
    check_rate(rate_out)
    if rate_in == rate_out:
        return pcm
    import soxr

    if pcm.dtype != np.int16 and pcm.size:
        peak = float(np.max(np.abs(pcm)))
        if peak > 1.0:
            pcm = pcm * pcm.dtype.type(2.0 ** -math.frexp(peak)[1])
    return soxr.resample(pcm, rate_in, rate_out, quality="VHQ")


def load(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Read any file soundfile can read, mix to mono, resample; returns float32 in [-1, 1]."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(f"cannot read {path}: {e}") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path} holds no samples")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(resample(mono, rate, sample_rate), dtype=np.float32)
