"""Stream: Wav2Small over a live signal, in constant memory (the C engine's w2s_stream).

    s = model.stream()                        # running prenorm estimate: endless input
    for chunk in microphone:                  # any chunk size, int16 or float (full scale 1.0)
        s.push(chunk)
        p = s.read()                          # A/D/V of everything pushed so far

    s = model.stream(stats=model.clip_stats(pcm))   # a finished clip: two passes,
    s.push(pcm); s.read() == model.predict(pcm)     # bit-identical with batch (floats within +-1.0)

    s = model.stream(stats=model.clip_stats(pcm, sample_rate=48000), sample_rate=48000)
    s.push(pcm); s.finish(); s.read() == model.predict(pcm, sample_rate=48000)   # float32 pcm

Prenorm normalises a clip by its own mean and variance. A stream cannot see the future, so by
default it estimates them as the audio comes, over the last ~2^log2_window samples. It can start
from a prior level (prior, weighted as prior_samples samples; the default prior is speech at
-26 dBFS, unweighted), which keeps a clip's first frames from being normalised by their own
near-silence when the device's level is known. docs/engine.md gives what each choice costs in
CCC against batch.
"""
from __future__ import annotations

import numbers
import threading
import warnings

import numpy as np

from . import _engine
from .audio import AudioLike, as_mono, check_rate
from .errors import ArgumentError, ClippingWarning
from .model import Prediction, prediction_from_fixed

__all__ = ["Stream"]


def chunk_to_int16(pcm: np.ndarray) -> np.ndarray:
    """int16 as is; floats are full scale +-1.0 and clipped there. Unlike Model.predict, a chunk is
    never scaled to its own peak: that gain would change from chunk to chunk."""
    if pcm.dtype == np.int16:
        return np.ascontiguousarray(pcm)
    return np.clip(np.rint(pcm * 32768.0), -32768, 32767).astype(np.int16)


# Resampling in a stream, by at most this ratio either way (250 Hz .. 1.024 MHz for a 16 kHz model):
# at absurd ratios soxr builds its filters for ever, and each pushed sample becomes this many.
MAX_RATE_RATIO = 64


def _integer(v: object, name: str, lo: int, hi: int) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise ArgumentError(f"{name} must be an int, got {v!r}")
    if not lo <= int(v) <= hi:
        raise ArgumentError(f"{name} must be within {lo}..{hi}, got {v}")
    return int(v)


def _stats(v: object, name: str) -> tuple[int, int]:
    """Prenorm statistics (mean, log2_var) as Model.clip_stats gives them, within the engine's ranges."""
    if not isinstance(v, (tuple, list)) or len(v) != 2:
        raise ArgumentError(f"{name} must be a pair (mean, log2_var) as Model.clip_stats() returns, "
                            f"got {v!r}")
    return (_integer(v[0], f"{name}[0] (mean)", -_engine.STATS_MAX_ABS_MEAN, _engine.STATS_MAX_ABS_MEAN),
            _integer(v[1], f"{name}[1] (log2_var)", 0, _engine.STATS_MAX_LOG2_VAR))


class Stream:
    """A running Wav2Small: push audio chunks, read arousal, dominance and valence at any time.

    Made by Model.stream(). Memory stays constant however long the stream runs (about 8 KB of
    engine state); a stream is limited to 2^20 analysis frames (35 min at 16 kHz) between resets.
    Calls are serialised by a lock, so a stream may be handed between threads.
    """

    def __init__(self, model, stats: tuple[int, int] | None = None, prior: tuple[int, int] | None = None,
                 prior_samples: int | None = None, log2_window: int | None = None,
                 sample_rate: float | None = None):
        self.model = model
        self.stats = None if stats is None else _stats(stats, "stats")
        self.prior = _engine.STREAM_DEFAULT_PRIOR if prior is None else _stats(prior, "prior")
        self.log2_window = _engine.STREAM_DEFAULT_LOG2_WINDOW if log2_window is None else _integer(
            log2_window, "log2_window", _engine.STREAM_MIN_LOG2_WINDOW, _engine.STREAM_MAX_LOG2_WINDOW)
        self.prior_samples = _engine.STREAM_DEFAULT_PRIOR_SAMPLES if prior_samples is None else _integer(
            prior_samples, "prior_samples", 0, 1 << self.log2_window)
        self.sample_rate = model.sample_rate if sample_rate is None else check_rate(sample_rate, ArgumentError)
        ratio = self.sample_rate / model.sample_rate
        if not 1 / MAX_RATE_RATIO <= ratio <= MAX_RATE_RATIO:
            lo, hi = model.sample_rate / MAX_RATE_RATIO, model.sample_rate * MAX_RATE_RATIO
            raise ArgumentError(f"a stream resamples by at most {MAX_RATE_RATIO}x: sample_rate must be "
                                f"within {lo:g}..{hi:g} Hz, got {sample_rate!r}")
        if self.stats is None:
            self._engine = _engine.Stream(model._engine, _engine.PRENORM_RUNNING, *self.prior,
                                          log2_window=self.log2_window, prior_samples=self.prior_samples)
        else:
            self._engine = _engine.Stream(model._engine, _engine.PRENORM_FIXED, *self.stats)
        self._lock = threading.Lock()
        self._resampler = None
        self._new_resampler()

    def _new_resampler(self) -> None:
        if self.sample_rate == self.model.sample_rate:
            self._resampler = None
            return
        import soxr

        self._resampler = soxr.ResampleStream(self.sample_rate, self.model.sample_rate, 1,
                                              dtype="float32", quality="VHQ")

    def __repr__(self) -> str:
        mode = "fixed stats" if self.stats else f"running prenorm over 2^{self.log2_window} samples"
        return f"Stream({mode}, {self.seconds:.2f} s pushed, {self.arena_bytes} bytes)"

    @property
    def samples(self) -> int:
        """Samples (at the model's rate) pushed since the start or the last reset."""
        return self._engine.samples

    @property
    def ready(self) -> bool:
        """Whether read() has something to analyse: one frame (n_fft samples at the model's rate)
        has reached the engine. A resampling stream holds back its filter delay first, so that
        takes 55-115 ms of input, by rate (56 from 32 kHz, 77-85 from 11.025-96 kHz, 112 from
        8 kHz), instead of 4 ms."""
        return self.samples >= self.model.config["n_fft"]

    @property
    def seconds(self) -> float:
        return self.samples / self.model.sample_rate

    @property
    def arena_bytes(self) -> int:
        """The engine's working memory for this stream (independent of how long it runs)."""
        return self._engine.arena_bytes

    def push(self, pcm: AudioLike) -> None:
        """Feed a chunk: 1-D int16, float32/float64 (full scale +-1.0) or a list; any length.

        Floats beyond +-1.0 are clipped there, with a ClippingWarning: unlike Model.predict, a
        stream cannot scale a clip to a peak it has not seen yet."""
        x = as_mono(pcm)
        if x.dtype != np.int16 and x.size:
            peak = float(np.max(np.abs(x)))
            if peak > 1.0:
                warnings.warn(f"a float chunk reaches {peak:.4g}, beyond full scale 1.0: clipped (floats that "
                              "hold int16 values need dividing by 32768)", ClippingWarning, stacklevel=2)
        with self._lock:
            if self._resampler is not None:
                # floats clipped at full scale first, as chunk_to_int16 would: beyond float32's range a
                # sample would reach the resampler as inf and come out as NaN (silence)
                if x.dtype == np.int16:
                    x = x.astype(np.float32) / 32768.0
                else:
                    x = np.clip(x, -1.0, 1.0).astype(np.float32)
                x = self._resampler.resample_chunk(x)
            self._engine.push(chunk_to_int16(x))

    def finish(self) -> None:
        """The input has ended: push what the resampler still holds (its filter delay, about 50 ms
        of audio when the stream's rate is not the model's), so that read() covers every sample
        pushed; a finished clip then reads as Model.predict at that rate. Without it the last
        samples of a resampled stream are never analysed. At the model's rate it does nothing.
        Pushing after finish() goes on as new audio (the resampler starts again)."""
        with self._lock:
            if self._resampler is not None:
                tail = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
                self._engine.push(chunk_to_int16(tail))
                self._new_resampler()

    def read_fixed(self) -> np.ndarray:
        """The engine's raw int32 outputs (value / 2^out_frac_bits) for all audio so far."""
        with self._lock:
            return self._engine.read()

    def read(self) -> Prediction:
        """Arousal, dominance and valence of all audio pushed so far; the stream goes on.

        Raises AudioTooShortError before the first analysis frame (n_fft samples): see ready."""
        return prediction_from_fixed(self.model._engine, self.read_fixed())

    def reset(self) -> None:
        """Start over (a new clip); the parameters stay."""
        with self._lock:
            self._engine.reset()
            self._new_resampler()
