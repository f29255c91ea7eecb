"""Model: a loaded .w2s file and the C engine that runs it."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import overload

import numpy as np

from . import _engine
from .audio import AudioLike, as_mono, resample
from .errors import AudioTooShortError, ModelError

OUTPUT_NAMES = ("arousal", "dominance", "valence")
DEFAULT_MODEL = "default.w2s"


@dataclass(frozen=True)
class Prediction:
    """Arousal, dominance and valence of one clip (nominally 0..1, not clipped)."""

    arousal: float
    dominance: float
    valence: float

    def as_array(self) -> np.ndarray:
        return np.array([self.arousal, self.dominance, self.valence], dtype=np.float32)

    def as_dict(self) -> dict:
        return asdict(self)


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


class Model:
    """A Wav2Small model run by the int8 C engine.

    Model() loads the default model shipped in the package; Model(path) loads any .w2s file.
    One Model may be shared by threads: the engine keeps no state in it.
    """

    def __init__(self, path: str | Path | None = None):
        if path is None:
            data = resources.files("wav2small").joinpath("models", DEFAULT_MODEL).read_bytes()
            self.path: Path | None = None
        else:
            self.path = Path(path)
            try:
                data = self.path.read_bytes()
            except OSError as e:
                raise ModelError(f"cannot read model file {path}: {e.strerror}") from None
        self._load(data, str(path) if path is not None else "the default model")

    @classmethod
    def from_bytes(cls, data: bytes) -> Model:
        self = cls.__new__(cls)
        self.path = None
        self._load(bytes(data), "model bytes")
        return self

    def _load(self, data: bytes, what: str) -> None:
        try:
            self._engine = _engine.Model(data)
        except ModelError as e:
            raise type(e)(f"{what}: {e}") from None
        self.config: dict = self._engine.config
        self.sample_rate: int = self.config["sample_rate"]
        if self.config["n_outputs"] != len(OUTPUT_NAMES):
            raise ModelError(f"{what} has {self.config['n_outputs']} outputs; this version reads 3 (A/D/V)")

    def __repr__(self) -> str:
        c = self.config
        src = str(self.path) if self.path else "default"
        return f"Model({src!r}, channels={c['channels']}, n_mels={c['n_mels']}, {self._engine.nbytes} bytes)"

    @property
    def nbytes(self) -> int:
        return self._engine.nbytes

    def prepare(self, pcm: AudioLike, sample_rate: int = 16000) -> np.ndarray:
        """Check, resample and convert one clip to the engine's int16 input."""
        x = as_mono(pcm)
        x = resample(x, sample_rate, self.sample_rate)
        if len(x) < self.config["n_fft"]:
            raise AudioTooShortError(
                f"clip has {len(x)} samples at {self.sample_rate} Hz; at least {self.config['n_fft']} "
                f"({1000 * self.config['n_fft'] / self.sample_rate:.0f} ms) are needed"
            )
        return to_int16(x)

    def predict_fixed(self, pcm: AudioLike, sample_rate: int = 16000) -> np.ndarray:
        """The engine's raw int32 outputs (value / 2^out_frac_bits), for bit-exact comparisons."""
        return self._engine.predict(self.prepare(pcm, sample_rate))

    @overload
    def predict(self, pcm: AudioLike, sample_rate: int = 16000) -> Prediction: ...
    @overload
    def predict(self, pcm: list[AudioLike], sample_rate: int = 16000) -> list[Prediction]: ...

    def predict(self, pcm, sample_rate: int = 16000):
        """Arousal, dominance, valence of a clip, or of each clip of a list.

        pcm: 1-D numpy int16/float32/float64 array or a list of numbers (one clip), or a list of
        such clips. Floats are full scale +-1.0. Other rates than the model's are resampled.
        """
        if _is_batch(pcm):
            return [self._predict_one(c, sample_rate) for c in pcm]
        return self._predict_one(pcm, sample_rate)

    def _predict_one(self, pcm: AudioLike, sample_rate: int) -> Prediction:
        q = self.predict_fixed(pcm, sample_rate)
        values = q.astype(np.float64) / float(1 << self.config["out_frac_bits"])
        return Prediction(*(float(v) for v in values))
