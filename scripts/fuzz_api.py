"""atheris harness for the Python API: whatever it is given, only wav2small.errors may escape.

    python scripts/fuzz_api.py WORK_DIR [libFuzzer options]      # or: scripts/fuzz.sh api

Each input picks one call and builds its arguments from the fuzz bytes:
  0  Model.from_bytes(arbitrary bytes, bytearray, memoryview, or not bytes at all)
  1  Model.from_bytes(the default model with a few bytes changed and its CRC-32 fixed up, so the
     engine's value checks and Model's own checks are reached), then predict if it loads
  2  Model(path): a file of arbitrary bytes, a missing file, a directory, a name with NUL bytes
  3  Model.predict(array): any dtype, byte order, shape, strides and bit pattern (NaN, Inf,
     subnormals, int16 extremes, huge floats) at any rate (0, negative, NaN, huge, a string)
  4  Model.predict(list): numbers, huge ints, None, strings, nested lists, lists of clips
A call may raise a wav2small.errors.Wav2SmallError; anything else escaping is a finding, and so
is a numpy warning (warnings are errors here: an overflow or invalid cast on the way to the
engine is silent garbage). A result must be a Prediction, or a list of them, of finite floats.
"""
from __future__ import annotations

import atexit
import math
import shutil
import struct
import sys
import tempfile
import warnings
import zlib
from pathlib import Path

import atheris
import numpy as np

with atheris.instrument_imports(include=["wav2small"]):
    import wav2small
    from wav2small import Model, Prediction
    from wav2small.errors import Wav2SmallError

MODEL = Model()
DEFAULT_BYTES = (Path(wav2small.__file__).parent / "models" / "default.w2s").read_bytes()
TMP = Path(tempfile.mkdtemp(prefix="w2s-fuzz-api-"))
atexit.register(shutil.rmtree, TMP, True)
DTYPES = ["int16", "<i2", ">i2", "float32", ">f4", "float64", "int8", "uint8", "uint16", "int32", "int64",
          "float16", "complex64", "bool", "object", "U2"]
# A clip the resampler would turn into more than a second of 16 kHz audio is cut: long clips are
# valid input, just slow; one past the engine's limit is kept (it must fail fast, before resampling).
MAX_RUN_SAMPLES = 16000


def rate(fdp: atheris.FuzzedDataProvider) -> object:
    kind = fdp.ConsumeIntInRange(0, 7)
    if kind <= 3:
        return MODEL.sample_rate
    if kind == 4:
        return fdp.PickValueInList([8000, 11025, 22050, 44100, 48000, 96000, 1, 7])
    if kind == 5:
        return fdp.ConsumeIntInRange(-(2**40), 2**40)
    if kind == 6:
        return fdp.ConsumeFloat()  # NaN, inf, subnormals, huge
    return fdp.PickValueInList(["16000", None, True, 2**80, -0.0, 1e-300, [16000]])


def fit(x: object, sample_rate: object) -> object:
    """Cut a clip (array, list, or each clip of a batch) that resampling would make long, but not
    one past the engine's limit."""
    if isinstance(x, list) and x and all(isinstance(c, np.ndarray) for c in x):
        return [fit(c, sample_rate) for c in x]
    if not isinstance(x, (list, np.ndarray)) or getattr(x, "ndim", 1) == 0 or isinstance(sample_rate, bool):
        return x
    if not isinstance(sample_rate, (int, float)) or not math.isfinite(sample_rate) or sample_rate <= 0:
        return x
    n_out = len(x) * MODEL.sample_rate / sample_rate
    if MAX_RUN_SAMPLES < n_out <= wav2small._engine.MAX_SAMPLES + 1:
        return x[: max(1, int(MAX_RUN_SAMPLES * sample_rate / MODEL.sample_rate))]
    return x


def array(fdp: atheris.FuzzedDataProvider) -> np.ndarray:
    dtype = np.dtype(fdp.PickValueInList(DTYPES))
    ndim = fdp.ConsumeIntInRange(0, 3) if fdp.ConsumeBool() else 1
    raw = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 4096))
    if dtype.kind == "O":
        flat = np.array([int(b) - 128 for b in raw] + [None] * (len(raw) % 3), dtype=object)
    elif dtype.kind == "U":
        flat = np.array([raw[i : i + 2].decode("latin-1") for i in range(0, len(raw), 2)], dtype=dtype)
    else:
        flat = np.frombuffer(raw[: len(raw) - len(raw) % dtype.itemsize], dtype=dtype).copy()
    if ndim == 0:
        return flat[0] if flat.size else np.array(0, dtype)
    if ndim > 1:
        rows = fdp.ConsumeIntInRange(1, 3)
        flat = flat[: flat.size - flat.size % rows].reshape(rows, -1)
        if ndim == 3:
            flat = flat[..., None]
    view = fdp.ConsumeIntInRange(0, 4)  # contiguous, reversed, strided, a column, Fortran order
    if view == 1:
        flat = flat[::-1]
    elif view == 2:
        flat = flat[:: fdp.ConsumeIntInRange(2, 5)]
    elif view == 3 and flat.ndim == 1 and flat.size >= 2:
        flat = flat[: flat.size - flat.size % 2].reshape(-1, 2)[:, 1]
    elif view == 4:
        flat = np.asfortranarray(flat)
    return flat


def sample_list(fdp: atheris.FuzzedDataProvider) -> list:
    n = fdp.ConsumeIntInRange(0, 600)
    kind = fdp.ConsumeIntInRange(0, 3)
    if kind == 0:
        return [fdp.ConsumeFloat() for _ in range(n)]
    if kind == 1:
        return [fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 80)) for _ in range(n)]  # up to 2^640
    if kind == 2:
        return [fdp.PickValueInList([0.5, -1, None, "a", 1j, [0.1], True, b"x"]) for _ in range(n)]
    return [array(fdp) for _ in range(fdp.ConsumeIntInRange(1, 3))]  # a batch of clips


def check(result: object) -> None:
    results = result if isinstance(result, list) else [result]
    for p in results:
        if not isinstance(p, Prediction) or not all(math.isfinite(v) for v in p.as_array()):
            raise AssertionError(f"predict returned {result!r}")


def changed_default(fdp: atheris.FuzzedDataProvider) -> bytes:
    data = bytearray(DEFAULT_BYTES)
    for _ in range(fdp.ConsumeIntInRange(1, 8)):
        data[fdp.ConsumeIntInRange(0, len(data) - 5)] = fdp.ConsumeIntInRange(0, 255)
    struct.pack_into("<I", data, len(data) - 4, zlib.crc32(data[:-4]))
    return bytes(data)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    action = fdp.ConsumeIntInRange(0, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            if action == 0:
                blob = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 20000))
                wrap = fdp.ConsumeIntInRange(0, 4)
                arg = [blob, bytearray(blob), memoryview(blob), blob.decode("latin-1"), len(blob)][wrap]
                Model.from_bytes(arg)
            elif action == 1:
                model = Model.from_bytes(changed_default(fdp))
                r = rate(fdp)
                check(model.predict(fit(array(fdp), r), sample_rate=r))
            elif action == 2:
                kind = fdp.ConsumeIntInRange(0, 2)
                if kind == 0:
                    path = TMP / "model.w2s"
                    path.write_bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 20000)))
                elif kind == 1:  # a name inside TMP (never a device such as /dev/zero)
                    path = str(TMP / fdp.ConsumeUnicodeNoSurrogates(300).replace("/", "_"))
                else:
                    path = TMP
                Model(path)
            else:
                r = rate(fdp)
                pcm = array(fdp) if action == 3 else sample_list(fdp)
                check(MODEL.predict(fit(pcm, r), sample_rate=r))
        except Wav2SmallError:
            pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
