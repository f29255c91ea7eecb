"""Audio input: reading files, checking arrays, resampling to the model rate."""
from __future__ import annotations

import io
import math
import numbers
import os
import stat
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, SupportsFloat, Union

import numpy as np

from .errors import AudioError, AudioTooLongError, TruncatedAudioWarning, Wav2SmallError

AudioLike = Union[np.ndarray, Sequence[float], Sequence[int]]


def as_mono(pcm: AudioLike) -> np.ndarray:
    """Check a clip and return it as a 1-D int16 or float array (no copy when already fine).

    int16 is kept as is; float32/float64 must be finite and are read as full scale = 1.0. A list of
    ints is int16 samples (`pcm.tolist()` of an int16 array), a list with any float in it is floats.
    Anything else (2-D, bool, int32, complex, object, ...) raises AudioError.
    """
    if isinstance(pcm, (list, tuple)):
        pcm = _list_samples(pcm)
    if isinstance(pcm, np.ma.MaskedArray):
        # the engine would read the hidden values under the mask as samples
        raise AudioError("masked arrays are not read: fill the masked samples first, e.g. pcm.filled(0)")
    if not isinstance(pcm, np.ndarray):
        raise AudioError(f"expected a numpy array or a list of samples, got {type(pcm).__name__}")
    if pcm.ndim != 1:
        # (samples, channels) as soundfile reads, or (channels, samples) as librosa and torchaudio
        axis = 0 if pcm.ndim == 2 and pcm.shape[0] < pcm.shape[1] else 1
        raise AudioError(
            f"expected a 1-D mono clip, got shape {pcm.shape}; mix down first, e.g. pcm.mean(axis={axis})"
        )
    if pcm.dtype.kind in "if" and not pcm.dtype.isnative:   # big-endian data read from a file
        pcm = pcm.astype(pcm.dtype.newbyteorder("="))
    if pcm.dtype == np.int16:
        return pcm
    if pcm.dtype not in (np.float32, np.float64):
        raise AudioError(f"unsupported dtype {pcm.dtype}: use int16, float32 or float64 samples")
    if not np.all(np.isfinite(pcm)):
        bad = int(np.count_nonzero(~np.isfinite(pcm)))
        raise AudioError(f"the clip holds {bad} NaN or infinite sample(s)")
    return pcm


def _list_samples(pcm: list | tuple) -> np.ndarray:
    """A list of ints as int16 samples, any other list of numbers as float64 (None as NaN, which
    the finite check names); strings, bytes, bools and complex numbers raise AudioError (numpy
    would turn "0.5" or True into a sample)."""
    def refuse(why: str) -> AudioError:
        return AudioError(f"a list of samples must hold real numbers only ({why})")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # NaN scalars: named by the finite check
            raw = np.asarray(pcm)
    except (TypeError, ValueError) as e:                      # ragged nesting
        raise refuse(str(e)) from None
    if raw.dtype.kind == "O":                                 # None, ints beyond int64, or mixed types
        for x in raw.flat:
            if x is not None and (isinstance(x, bool) or not isinstance(x, numbers.Real)):
                raise refuse(f"found {type(x).__name__} {x!r}")
    elif raw.dtype.kind not in "iuf":
        kinds = {"U": "text", "S": "bytes", "b": "bool", "c": "complex"}
        raise refuse(f"found {kinds.get(raw.dtype.kind, raw.dtype.name)} values")
    elif raw.dtype.kind in "iu":
        # int16 samples, which a stream must not read as floats clipped at 1.0
        if raw.size and (raw.min() < -32768 or raw.max() > 32767):
            raise AudioError(f"a list of ints is read as int16 samples, but it holds {raw.min()}..{raw.max()}: "
                             "pass int16 values, or floats with full scale 1.0")
        return raw.astype(np.int16)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # None -> NaN
            return raw.astype(np.float64)
    except OverflowError as e:                                # ints beyond float64
        raise refuse(str(e)) from None


def check_rate(rate: object, error: type[Wav2SmallError] = AudioError) -> float:
    """A sample rate as given (a positive, finite number of Hz), else `error` (a clip's rate is part
    of its audio; a stream's is a setting). soxr would hang on NaN, infinite or absurd rates."""
    if not isinstance(rate, numbers.Real) or isinstance(rate, bool) or not is_finite(rate) or rate <= 0:
        raise error(f"a sample rate must be a positive number of Hz, got {rate!r}")
    return float(rate)


def is_finite(v: SupportsFloat) -> bool:
    """math.isfinite, False for ints too large for a float instead of OverflowError."""
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def resample(pcm: np.ndarray, rate_in: float, rate_out: float) -> np.ndarray:
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


def read(path: str | Path, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Read any file soundfile can read and mix it to mono: (float32 in [-1, 1], the file's rate).

    max_seconds: a longer file raises AudioTooLongError from its header, before it is decoded (an
    hour of 48 kHz stereo would take 2 GB first); Model.max_seconds is the engine's limit."""
    name = display_name(path)
    if not os.path.exists(path):
        raise AudioError(f"cannot read {name}: no such file")
    if os.path.isdir(path):
        raise AudioError(f"cannot read {name}: it is a directory")
    try:   # libsndfile says only "System error." of a file it may not open
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                # a pipe (`cat a.wav | wav2small predict /dev/stdin`, a FIFO, `<(...)`): libsndfile
                # must seek, so it is read whole first, as standard input is
                return read_bytes(f.read(), name, max_seconds)
            if stat.S_ISREG(st.st_mode) and st.st_size == 0:   # libsndfile: "Format not recognised."
                raise AudioError(f"cannot read {name}: the file is empty")
    except OSError as e:
        raise AudioError(f"cannot read {name}: {e.strerror or e}") from None
    # as bytes: soundfile would encode a str strictly, and a name need not be valid UTF-8
    mono, rate = _decode(os.fsencode(path), name, max_seconds)
    _warn_truncated(name, wav_shortfall(path), len(mono))
    return mono, rate


def _warn_truncated(name: str, short: int, n_samples: int) -> None:
    if short:   # a recording cut off: what is there is still audio, so it is used, with a word
        warnings.warn(f"{name} is truncated: its WAV header promises {short} more bytes of samples; "
                      f"using the {n_samples} samples present", TruncatedAudioWarning, stacklevel=3)


def read_bytes(data: bytes, name: str = "audio data", max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """read() of a whole file held in memory (e.g. standard input); `name` is what errors call it."""
    if not data:
        raise AudioError(f"cannot read {name}: it is empty")
    mono, rate = _decode(_QuietSeek(data), name, max_seconds)
    _warn_truncated(name, _riff_shortfall(io.BytesIO(data), len(data)), len(mono))
    return mono, rate


class _QuietSeek(io.BytesIO):
    """BytesIO whose seeks before the start leave the position alone instead of raising: soundfile
    seeks from a C callback, where an exception is printed as a traceback (a damaged header asks for
    negative offsets) before libsndfile's own error, which _decode reports."""

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        try:
            return super().seek(offset, whence)
        except ValueError:
            return self.tell()


def _decode(source: object, name: str, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        with sf.SoundFile(source) as f:
            rate = f.samplerate
            if max_seconds is not None and f.frames > max_seconds * rate:
                raise AudioTooLongError(f"{name} is {f.frames / rate / 60:.1f} min long; the model takes at most "
                                        f"{max_seconds / 60:.1f} min: split it, e.g. into 1-minute pieces")
            data = f.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        why = getattr(e, "error_string", None) or str(e)   # libsndfile's reason, without the name as bytes
        raise AudioError(f"cannot read {name}: {why}") from None
    if data.shape[0] == 0:
        raise AudioError(f"{name} holds no samples")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(mono), int(rate)


def wav_shortfall(path: str | Path) -> int:
    """Bytes of sample data a RIFF/WAVE header promises beyond the end of the file (0: none missing,
    not a WAV, or a streamed WAV whose header leaves the size open; 0 for a pipe or device too)."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        return 0
    with open(path, "rb") as f:
        return _riff_shortfall(f, st.st_size)


def _riff_shortfall(f: BinaryIO, size: int) -> int:
    """wav_shortfall of an open file of `size` bytes."""
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return 0
    pos = 12
    while pos + 8 <= size:
        f.seek(pos)
        chunk, n = struct.unpack("<4sI", f.read(8))
        if chunk == b"data":
            if n in (0, 0xFFFFFFFF, 0x7FFFFFFF):
                return 0  # streamed: length not known when the header was written
            return max(0, pos + 8 + n - size)
        pos += 8 + n + (n & 1)
    return 0


def load(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """read() and resample to `sample_rate`; returns float32 in [-1, 1]. (Model.predict(*read(path))
    checks the clip's length before resampling it, which a file with an absurd rate needs.)"""
    mono, rate = read(path)
    return np.ascontiguousarray(resample(mono, rate, sample_rate), dtype=np.float32)


def display_name(path: str | Path) -> str:
    """A file name fit to print: bytes that are not UTF-8 (a Latin-1 name) shown as \\xe9 escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
