"""wav2small: speech emotion recognition (arousal, dominance, valence) small enough for a hearing aid.

    import wav2small
    p = wav2small.predict(pcm, sample_rate=16000)   # pcm: 1-D int16 or float array
    p.arousal, p.dominance, p.valence

The model runs in an int8 C engine; this package does not need PyTorch.
"""
from __future__ import annotations

import threading
from typing import overload

from .audio import AudioLike
from .model import Model, Prediction, Thresholds

__version__ = "0.1.0"
__all__ = ["Model", "Prediction", "Thresholds", "__version__", "predict"]

_default: Model | None = None
_default_lock = threading.Lock()


def _default_model() -> Model:
    global _default
    with _default_lock:
        if _default is None:
            _default = Model()
        return _default


@overload
def predict(pcm: AudioLike, sample_rate: float = 16000, *, thresholds: Thresholds | None = None,
            threads: int | None = None) -> Prediction: ...
@overload
def predict(pcm: list[AudioLike] | tuple[AudioLike, ...], sample_rate: float = 16000, *,
            thresholds: Thresholds | None = None, threads: int | None = None) -> list[Prediction]: ...


def predict(pcm, sample_rate: float = 16000, *, thresholds: Thresholds | None = None,
            threads: int | None = None):
    """Arousal, dominance and valence of a clip (or of each clip of a list) with the default model,
    with each one's uncertainty and whether to trust it (Prediction.decision).

    See Model.predict for the accepted inputs and for threads.
    """
    return _default_model().predict(pcm, sample_rate=sample_rate, thresholds=thresholds, threads=threads)
