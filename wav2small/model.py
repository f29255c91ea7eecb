"""Model: a loaded .w2s file and the C engine that runs it."""
from __future__ import annotations

import math
import numbers
import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, overload

import numpy as np

try:
    from . import _engine
except ImportError:
    _here = Path(__file__).parent
    if any(f.suffix != ".pyi" for f in _here.glob("_engine.*")):
        raise   # built, but it does not load: its own reason
    # Python's own message blames "a circular import": the usual cause is a source checkout found
    # before the installed package (python run from the repository's root)
    raise ImportError(f"wav2small's C engine is not built in {_here}: this is a source tree without it, "
                      "found before any installed wav2small (python started in a checkout's root?). "
                      "Run from another directory, or build it here: pip install -e .") from None
from .audio import AudioLike, as_mono, check_rate, is_finite, resample
from .errors import (
    ArgumentError,
    ArgumentTypeError,
    AudioError,
    AudioTooLongError,
    AudioTooShortError,
    ModelError,
    ModelVersionError,
    NotAModelError,
)

if TYPE_CHECKING:
    from .stream import Stream

OUTPUT_NAMES = ("arousal", "dominance", "valence")
DEFAULT_MODEL = "default.w2s"

# What a model with an uncertainty head says of a clip (the engine's w2s_decision codes).
RELIABLE, NO_SPEECH, TOO_UNCERTAIN, UNKNOWN = "reliable", "no speech", "too uncertain", "unknown"
_DECISIONS = {_engine.RELIABLE: RELIABLE, _engine.NO_SPEECH: NO_SPEECH,
              _engine.TOO_UNCERTAIN: TOO_UNCERTAIN, _engine.NO_DECISION: UNKNOWN}


@dataclass(frozen=True)
class Prediction:
    """Arousal, dominance and valence of one clip (nominally 0..1, not clipped).

    With a model that has an uncertainty head (the default model has one):
    sigma: the predicted standard deviation of each of A/D/V, in the same units;
    speech_prob: how sure the model is that the clip is speech at all (0..1);
    modulation_db: how much the clip's level rises and falls over time (dB; clean speech of one
    talker mostly 10-25, babble of several talkers 3-8, steady noise and silence 0-3);
    steady: the share of the clip's loud 32 ms blocks whose spectral shape the next block keeps
    (0..1; speech mostly below 0.2, held tones, beeps and notes of a melody above 0.5), None for
    a model file without the measure;
    decision: "reliable", "no speech" or "too uncertain" (by Thresholds); "unknown" for a model
    without the head, whose sigma, speech_prob, modulation_db and steady are None.
    """

    arousal: float
    dominance: float
    valence: float
    sigma: tuple[float, float, float] | None = None
    speech_prob: float | None = None
    decision: str = UNKNOWN
    modulation_db: float | None = None
    steady: float | None = None

    @property
    def reliable(self) -> bool:
        """True only when the model vouches for the values (decision "reliable")."""
        return self.decision == RELIABLE

    def as_array(self) -> np.ndarray:
        return np.array([self.arousal, self.dominance, self.valence], dtype=np.float32)

    def as_dict(self) -> dict:
        return asdict(self)


def _sigmoid(x: float) -> float:
    """1 / (1 + e^-x) without overflow for any int32-derived x."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _exp(x: float) -> float:
    """e^x, saturating at the largest finite float instead of overflowing (odd models' outputs)."""
    return math.exp(min(x, 709.0))


@dataclass(frozen=True)
class Thresholds:
    """When a prediction is "reliable": speech_prob >= min_speech_prob, modulation_db >=
    min_modulation_db, steady <= max_steady (a model file with that measure), and every sigma <=
    max_sigma.

    Each model file carries its defaults (Model.thresholds); pass your own to predict() to trade
    coverage for accuracy (a smaller max_sigma answers less often and is wrong less often).
    min_modulation_db None keeps the model's own; 0 lets every clip through that test (speech in
    heavy noise, at the price of babble taken for speech). max_steady None keeps the model's own;
    1 lets every clip through that test (held vowels, at the price of beeps and melodies taken for
    speech).
    """

    max_sigma: float
    min_speech_prob: float
    min_modulation_db: float | None = None
    max_steady: float | None = None
    # (frac_bits, max_log_sigma, min_speech_logit) of thresholds read from a model file: fixed()
    # gives those back exactly, where the floats alone can round (a logit of 40 is a probability of 1.0)
    _exact: tuple[int, int, int] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        def real(v: object) -> bool:   # numpy scalars too; bool is not a threshold
            return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))

        if not (real(self.max_sigma) and self.max_sigma > 0 and is_finite(self.max_sigma)):
            raise ArgumentError(f"max_sigma must be a positive, finite number, got {self.max_sigma!r}")
        if not (real(self.min_speech_prob) and 0.0 <= self.min_speech_prob <= 1.0):
            raise ArgumentError(f"min_speech_prob must be within 0..1, got {self.min_speech_prob!r}")
        m = self.min_modulation_db
        if m is not None and not (real(m) and 0.0 <= m <= MAX_MODULATION_DB):
            raise ArgumentError(f"min_modulation_db must be None or within 0..{MAX_MODULATION_DB:g} dB, got {m!r}")
        st = self.max_steady
        if st is not None and not (real(st) and 0.0 <= st <= 1.0):
            raise ArgumentError(f"max_steady must be None or within 0..1, got {st!r}")
        if st is not None:
            object.__setattr__(self, "max_steady", float(st))
        object.__setattr__(self, "max_sigma", float(self.max_sigma))
        object.__setattr__(self, "min_speech_prob", float(self.min_speech_prob))
        if m is not None:
            object.__setattr__(self, "min_modulation_db", float(m))

    def modulation_fixed(self) -> int | None:
        """min_modulation_db in the engine's units (dB Q_DB), None for the model's own."""
        m = self.min_modulation_db
        return None if m is None else round(m * _DB_ONE)

    def steady_fixed(self) -> int | None:
        """max_steady in the engine's units (Q15), None for the model's own."""
        st = self.max_steady
        return None if st is None else round(st * _engine.STEADY_ONE)

    def fixed(self, frac_bits: int) -> tuple[int, int]:
        """(max_log_sigma, min_speech_logit) in the engine's output units."""
        if self._exact is not None and self._exact[0] == frac_bits:
            return self._exact[1], self._exact[2]
        limit = 2**31 - 1
        one = float(1 << frac_bits)
        p = self.min_speech_prob
        logit = -math.inf if p == 0.0 else math.inf if p == 1.0 else math.log(p / (1.0 - p))
        def clamp(v: float) -> int:
            return int(max(-limit - 1, min(limit, round(v) if math.isfinite(v) else v)))

        return clamp(math.log(self.max_sigma) * one), clamp(logit * one)

    @classmethod
    def from_fixed(cls, max_log_sigma: int, min_speech_logit: int, frac_bits: int,
                   min_modulation: int = 0, max_steady: int | None = None) -> Thresholds:
        """Thresholds of a model file (max_steady None: a file without the steadiness measure)."""
        one = float(1 << frac_bits)
        # exp of a very negative log sigma underflows to 0.0, which no Thresholds takes
        t = cls(max(_exp(max_log_sigma / one), _TINY), _sigmoid(min_speech_logit / one),
                min_modulation / _DB_ONE, None if max_steady is None else max_steady / _engine.STEADY_ONE)
        object.__setattr__(t, "_exact", (frac_bits, int(max_log_sigma), int(min_speech_logit)))
        return t


_TINY = math.ulp(0.0)   # the smallest positive float
_DB_ONE = float(1 << _engine.Q_DB)   # 1 dB in the engine's log-mel and modulation units
MAX_MODULATION_DB = 32767 / _DB_ONE   # the largest threshold a model file holds


def _check_thresholds(thresholds: object, flags: int) -> None:
    if thresholds is None:
        return
    if not isinstance(thresholds, Thresholds):
        raise ArgumentTypeError(f"thresholds must be a wav2small.Thresholds, got {type(thresholds).__name__}")
    if not flags & _engine.FLAG_UNCERTAINTY:   # they would decide nothing: say so rather than ignore them
        raise ArgumentError("this model has no uncertainty head: thresholds need one")
    if thresholds.max_steady is not None and not flags & _engine.FLAG_STEADY:
        raise ArgumentError("this model file has no steadiness measure (a release from before it): "
                            "max_steady needs one; give None")


def prediction_from_fixed(engine: _engine.Model, q: np.ndarray, thresholds: Thresholds | None = None) -> Prediction:
    """A Prediction from the engine's int32 outputs; the decision is the engine's (w2s_decide)."""
    c = engine.config
    x = q.astype(np.float64) / float(1 << c["out_frac_bits"])
    arousal, dominance, valence = (float(v) for v in x[:3])
    if not c["flags"] & _engine.FLAG_UNCERTAINTY:
        return Prediction(arousal, dominance, valence)
    own = engine.thresholds
    assert own is not None, "the engine gives every model with an uncertainty head its thresholds"
    if thresholds is None:
        fixed = own
    else:
        mod, st = thresholds.modulation_fixed(), thresholds.steady_fixed()
        fixed = (*thresholds.fixed(c["out_frac_bits"]), own[2] if mod is None else mod, own[3] if st is None else st)
    n = len(OUTPUT_NAMES)
    s_a, s_d, s_v = (_exp(float(v)) for v in x[n : 2 * n])
    return Prediction(
        arousal, dominance, valence,
        sigma=(s_a, s_d, s_v),
        speech_prob=_sigmoid(float(x[2 * n])),
        decision=_DECISIONS[engine.decide(q, *fixed)],
        modulation_db=float(q[2 * n + 1]) / _DB_ONE,
        steady=float(q[2 * n + 2]) / _engine.STEADY_ONE if c["flags"] & _engine.FLAG_STEADY else None,
    )


def to_int16(pcm: np.ndarray) -> np.ndarray:
    """int16 as is; floats are full scale +-1.0. A louder float clip is scaled down to its peak
    instead of clipping: the model normalises every clip's variance, so the gain is invisible."""
    if pcm.dtype == np.int16:
        return np.ascontiguousarray(pcm)
    peak = float(np.max(np.abs(pcm))) if pcm.size else 0.0
    scale = 32768.0 if peak <= 1.0 else 32767.0 / peak
    return np.clip(np.rint(pcm * scale), -32768, 32767).astype(np.int16)


def _is_batch(pcm: object) -> bool:
    return isinstance(pcm, (list, tuple)) and len(pcm) > 0 and all(
        isinstance(c, (np.ndarray, list, tuple)) for c in pcm
    )


def _model_hint(e: ModelError, data: bytes) -> str:
    """What to do about a rejected model file, where the bytes tell."""
    if isinstance(e, NotAModelError) and data[8:9] == b"{":   # a u64 header size, then JSON: safetensors
        return "; it looks like float safetensors weights: convert them with `wav2small convert`"
    if isinstance(e, ModelVersionError) and len(data) >= 6:
        version = int.from_bytes(data[4:6], "little")   # docs/format.md: u16 at byte 4
        return f"; the file is version {version}, this engine reads version {_engine.FORMAT_VERSION}"
    return ""


class Model:
    """A Wav2Small model run by the int8 C engine.

    Model() loads the default model shipped in the package; Model(path) loads any .w2s file.
    One Model may be shared by threads: the engine keeps no state in it.
    """

    def __init__(self, path: str | Path | None = None):
        if path is None:
            data = resources.files("wav2small").joinpath("models", DEFAULT_MODEL).read_bytes()
            self.path: Path | None = None
            self._source = "default"
        else:
            if not str(path):   # Path("") is the working directory, whose error would be "Is a directory"
                raise ModelError("the model path is empty: give a .w2s file, or no path for the default model")
            self.path = Path(path)
            try:
                data = self.path.read_bytes()
            except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
                raise ModelError(f"cannot read model file {path}: {getattr(e, 'strerror', None) or e}") from None
            self._source = str(path)
        self._load(data, str(path) if path is not None else "the default model")

    @classmethod
    def from_bytes(cls, data: bytes) -> Model:
        try:  # any bytes-like object; bytes(n) of an int would make n zero bytes instead
            data = memoryview(data).tobytes()
        except TypeError:
            raise ModelError(f"model data must be bytes-like, got {type(data).__name__}") from None
        self = cls.__new__(cls)
        self.path = None
        self._source = f"<{len(data)} bytes>"
        self._load(data, "model bytes")
        return self

    def _load(self, data: bytes, what: str) -> None:
        try:
            self._engine = _engine.Model(data)
        except ModelError as e:
            raise type(e)(f"{what}: {e}{_model_hint(e, data)}") from None
        self.config: dict = self._engine.config
        self.sample_rate: int = self.config["sample_rate"]
        n, want = self.config["n_outputs"], len(OUTPUT_NAMES)
        if self.config["flags"] & _engine.FLAG_UNCERTAINTY:
            want = 2 * want + 1  # values, log-sigmas, speech logit
        if n != want:
            raise ModelError(f"{what} has {n} outputs; this version reads {want} (A/D/V"
                             f"{', their sigmas and a speech logit' if want > 3 else ''})")

    @property
    def has_uncertainty(self) -> bool:
        """Whether predictions carry sigma, speech_prob and a decision."""
        return bool(self.config["flags"] & _engine.FLAG_UNCERTAINTY)

    @property
    def has_steady(self) -> bool:
        """Whether the decision also reads the spectrum's steadiness (Prediction.steady)."""
        return bool(self.config["flags"] & _engine.FLAG_STEADY)

    @property
    def thresholds(self) -> Thresholds | None:
        """The model's default decision thresholds (None without an uncertainty head)."""
        t = self._engine.thresholds
        return None if t is None else Thresholds.from_fixed(t[0], t[1], self.config["out_frac_bits"], t[2],
                                                            t[3] if self.has_steady else None)

    def __repr__(self) -> str:
        c = self.config
        return f"Model({self._source!r}, channels={c['channels']}, n_mels={c['n_mels']}, {self._engine.nbytes} bytes)"

    @property
    def nbytes(self) -> int:
        return self._engine.nbytes

    @property
    def max_seconds(self) -> float:
        """The longest clip predict() takes, at any rate (the engine's 2^24 samples at the model's)."""
        return _engine.MAX_SAMPLES / self.sample_rate

    def prepare(self, pcm: AudioLike, sample_rate: float = 16000) -> np.ndarray:
        """Check, resample and convert one clip to the engine's int16 input."""
        x = as_mono(pcm)
        given = "" if sample_rate == self.sample_rate else f" ({len(x)} at {sample_rate} Hz)"
        # lengths are checked before resampling too (with a sample of slack for rounding), so a
        # clip beyond the engine's limit fails at once instead of after resampling it
        self._check_length(len(x) * self.sample_rate / check_rate(sample_rate), given, slack=1)
        x = resample(x, sample_rate, self.sample_rate)
        self._check_length(len(x), given)
        return to_int16(x)

    def _check_length(self, n: float, given: str, slack: int = 0) -> None:
        """n samples at the model's rate must fill one frame and stay within the engine's limit."""
        rate, n_fft, limit = self.sample_rate, self.config["n_fft"], _engine.MAX_SAMPLES
        if n < n_fft - slack:
            raise AudioTooShortError(
                f"clip has {n:.0f} samples at {rate} Hz{given}; at least {n_fft} "
                f"({1000 * n_fft / rate:.0f} ms) are needed"
            )
        if n > limit + slack:
            raise AudioTooLongError(
                f"clip has {n:.0f} samples at {rate} Hz{given}; the engine takes at most {limit} "
                f"({limit / rate / 60:.1f} min): split it, e.g. into 1-minute pieces"
            )

    def predict_fixed(self, pcm: AudioLike, sample_rate: float = 16000) -> np.ndarray:
        """The engine's raw int32 outputs (value / 2^out_frac_bits), for bit-exact comparisons; with
        an uncertainty head one more after them, the modulation (dB / 2^Q_DB) the decision reads."""
        return self._engine.predict(self.prepare(pcm, sample_rate))

    @overload
    def predict(self, pcm: AudioLike, sample_rate: float = 16000, *,
                thresholds: Thresholds | None = None, threads: int | None = None) -> Prediction: ...
    @overload
    def predict(self, pcm: list[AudioLike] | tuple[AudioLike, ...], sample_rate: float = 16000, *,
                thresholds: Thresholds | None = None, threads: int | None = None) -> list[Prediction]: ...

    def predict(self, pcm, sample_rate: float = 16000, *, thresholds: Thresholds | None = None,
                threads: int | None = None):
        """Arousal, dominance, valence of a clip, or of each clip of a list.

        pcm: 1-D numpy int16/float32/float64 array or a list of numbers (one clip), or a list of
        such clips. Floats are full scale +-1.0. Other rates than the model's are resampled.
        thresholds: when the decision says "reliable" (default: the model's, Model.thresholds).
        threads: for a list, how many threads run the engine at once (the GIL is released while
        they do; default: one per CPU, at most one per clip). Results are the same for any count.
        """
        _check_thresholds(thresholds, self.config["flags"])
        if threads is not None and (isinstance(threads, (bool, np.bool_))
                                    or not isinstance(threads, numbers.Integral) or threads < 1):
            raise ArgumentError(f"threads must be a positive int or None, got {threads!r}")
        if _is_batch(pcm):
            clips = []
            for i, c in enumerate(pcm):
                try:
                    clips.append(self.prepare(c, sample_rate))
                except AudioError as e:   # which of a thousand clips is bad: say so
                    raise type(e)(f"clip {i} of the {len(pcm)}: {e}") from None
            # more threads than clips would idle
            n = min(len(clips), int(threads) if threads is not None else os.cpu_count() or 1)
            return [prediction_from_fixed(self._engine, q, thresholds)
                    for q in self._engine.predict_many(clips, n)]
        return self._predict_one(pcm, sample_rate, thresholds)

    def from_fixed(self, fixed: np.ndarray, thresholds: Thresholds | None = None) -> Prediction:
        """The Prediction of outputs kept from predict_fixed(), decided under `thresholds` (default:
        the model's) by the engine's own rule: comparing thresholds over a data set needs one run of
        the model, not one per candidate."""
        _check_thresholds(thresholds, self.config["flags"])
        q = np.asarray(fixed)
        # + the modulation, + the steadiness: as the binding returns them
        n = self.config["n_outputs"] + self.has_uncertainty + self.has_steady
        if q.dtype.kind not in "iu" or q.shape != (n,) or q.size and (q.min() < -2**31 or q.max() >= 2**31):
            raise ArgumentError(f"fixed must be the {n} int32 outputs of predict_fixed(), got dtype {q.dtype}, "
                             f"shape {q.shape}")
        return prediction_from_fixed(self._engine, q.astype(np.int32), thresholds)

    def clip_stats(self, pcm: AudioLike, sample_rate: float = 16000) -> tuple[int, int]:
        """The prenorm statistics (mean, log2_var) of a whole clip, as predict() computes them:
        pass them to stream() to stream a finished clip bit-identically with predict()."""
        return self._engine.clip_stats(self.prepare(pcm, sample_rate))

    def stream(self, stats: tuple[int, int] | None = None, *, prior: tuple[int, int] | None = None,
               prior_samples: int | None = None, log2_window: int | None = None,
               sample_rate: float | None = None) -> Stream:
        """A Stream: push chunks, read A/D/V at any time, in constant memory (wav2small.stream).

        stats: prenorm statistics to use throughout (clip_stats() of the clip: bit-identical with
        predict(); or a calibrated device level). None estimates them as the audio comes, over
        ~2^log2_window samples, starting from `prior` weighted as `prior_samples` samples.
        sample_rate: rate of the pushed audio (default: the model's); other rates are resampled.
        """
        from .stream import Stream

        return Stream(self, stats=stats, prior=prior, prior_samples=prior_samples,
                      log2_window=log2_window, sample_rate=sample_rate)

    def _predict_one(self, pcm: AudioLike, sample_rate: float, thresholds: Thresholds | None = None) -> Prediction:
        return prediction_from_fixed(self._engine, self.predict_fixed(pcm, sample_rate), thresholds)
