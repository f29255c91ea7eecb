"""Exceptions of wav2small. Every failure of the engine or of the input maps to one of these."""
from __future__ import annotations


class Wav2SmallError(Exception):
    """Base class of every wav2small error."""


# --- model files ---------------------------------------------------------------------------------

class ModelError(Wav2SmallError, ValueError):
    """A model file or buffer the engine rejects."""


class ModelTruncatedError(ModelError):
    """The model data ends before its header says it does."""


class NotAModelError(ModelError):
    """The data does not start with the wav2small magic bytes."""


class ModelVersionError(ModelError):
    """The model was written in a format version this engine does not read."""


class ModelChecksumError(ModelError):
    """The CRC-32 of the model does not match: the file is corrupted."""


class ModelFormatError(ModelError):
    """Inconsistent sizes or values out of range in an otherwise well-formed file."""


# --- audio ---------------------------------------------------------------------------------------

class AudioError(Wav2SmallError, ValueError):
    """Audio that cannot be used: wrong shape or dtype, non-finite samples, unreadable file."""


class AudioTooShortError(AudioError):
    """Fewer samples than one analysis frame."""


class AudioTooLongError(AudioError):
    """More samples than the engine's limit."""


# --- other arguments -----------------------------------------------------------------------------

class ArgumentError(Wav2SmallError, ValueError):
    """A setting out of its range: thresholds, threads, a stream's parameters or sample rate."""


class ArgumentTypeError(ArgumentError, TypeError):
    """A setting of the wrong type (thresholds that are not a Thresholds)."""


# --- warnings ------------------------------------------------------------------------------------

class TruncatedAudioWarning(UserWarning):
    """A WAV file ends before its header says: the samples that are there are used."""


class ClippingWarning(UserWarning):
    """A stream was pushed floats beyond full scale (+-1.0): they were clipped there."""
