"""Every bad input of docs/reliability.md's table and what it gets: a specific wav2small.errors
exception with a message saying what was wrong, or a valid prediction, never a crash or garbage.

Rows already tested elsewhere are only referenced in the table (tests/test_api.py,
tests/test_format.py, csrc/test_w2s.c); this file holds the rest. No speech files needed: the
clips are synthetic, so the file also runs quickly against the sanitised engine
(scripts/sanitize.sh python tests/test_bad_input.py).
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import warnings
import zlib
from fractions import Fraction
from importlib import resources

import numpy as np
import pytest
import soundfile as sf
from conftest import FRONT_CENTER, record_calls

import wav2small
from wav2small import Model, Thresholds, _engine
from wav2small.errors import (
    ArgumentError,
    AudioError,
    AudioTooLongError,
    AudioTooShortError,
    ModelChecksumError,
    ModelError,
    ModelFormatError,
    ModelTruncatedError,
    ModelVersionError,
    NotAModelError,
    Wav2SmallError,
)

MAX = _engine.MAX_SAMPLES


def _clip(n: int = 16000, seed: int = 0) -> np.ndarray:
    """A chirp over noise, float32 with peak 0.5: a stand-in for speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = np.sin(2 * np.pi * (150 + 900 * t) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    x = x + 0.05 * rng.standard_normal(n)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def _default_bytes() -> bytes:
    return resources.files("wav2small").joinpath("models", "default.w2s").read_bytes()


def _finite(p) -> bool:
    return bool(np.all(np.isfinite(p.as_array())))


# ---- audio: lengths ------------------------------------------------------------------------------


def test_one_frame_is_enough():
    """64 samples (one STFT frame) is the shortest clip; 63 is refused (tests/test_api.py)."""
    assert _finite(wav2small.predict(_clip(64)))
    with pytest.raises(AudioTooShortError, match="63 samples at 16000 Hz; at least 64"):
        wav2small.predict(_clip(63))


def test_too_short_after_resampling_is_caught_before_it():
    with pytest.raises(AudioTooShortError, match="at least 64"):
        wav2small.predict(_clip(100), sample_rate=48000)  # 33 samples at 16 kHz
    with pytest.raises(AudioTooShortError):
        wav2small.predict(np.zeros(0, np.int16), sample_rate=44100)


@pytest.mark.parametrize("rate", [16000, 44100])
def test_very_long_audio_fails_fast_and_clearly(rate, monkeypatch):
    """Past the engine's limit (2^24 samples at 16 kHz, 17.5 min) the clip is refused before it is
    resampled or converted; a broadcast view costs no memory, so only the checks can take time."""
    n = MAX + 1 if rate == 16000 else int(MAX * rate / 16000) + 1000
    long_clip = np.broadcast_to(np.float32(0.1), (n,))

    real_resample = wav2small.model.resample

    def no_resampling(pcm, rate_in, rate_out):   # the same rate is no resampling
        if rate_in != rate_out:
            raise AssertionError("the length check should come before resampling")
        return real_resample(pcm, rate_in, rate_out)

    monkeypatch.setattr(wav2small.model, "resample", no_resampling)
    converted = record_calls(monkeypatch, wav2small.model, "to_int16")
    with pytest.raises(AudioTooLongError, match=f"at most {MAX} .*17.5 min"):
        wav2small.predict(long_clip, sample_rate=rate)
    assert converted == []   # nor converted: 2^24 samples of work before the refusal


def test_longest_clip_is_accepted_by_the_engine_check():
    """MAX_SAMPLES itself is legal: the engine's arena query accepts it and refuses one more."""
    m = Model()
    assert m._engine.arena_size(MAX) > 0
    assert m._engine.arena_size(MAX + 1) == 0


# ---- audio: values -----------------------------------------------------------------------------


@pytest.mark.parametrize("name, pcm", [
    ("digital silence", np.zeros(4000, np.int16)),
    ("one LSB", np.tile(np.array([0, 1], np.int16), 2000)),
    ("int16 extremes alternating", np.tile(np.array([-32768, 32767], np.int16), 2000)),
    ("all +32767 (DC)", np.full(4000, 32767, np.int16)),
    ("all -32768 (DC)", np.full(4000, -32768, np.int16)),
    ("full-scale square wave", np.repeat(np.tile(np.array([-32768, 32767], np.int16), 50), 40)),
    ("subnormal floats", np.full(4000, 5e-324)),
])
def test_extreme_values_give_a_finite_repeatable_prediction(name, pcm):
    """The integer engine has no overflow path for any int16 value (bit-exact against the NumPy
    reference for the same cases: tests/test_engine.py::test_silence_and_extremes_bit_exact)."""
    p = wav2small.predict(pcm)
    assert _finite(p) and p == wav2small.predict(pcm.copy()), name


@pytest.mark.parametrize("rate", [16000, 44100])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_float_amplitude_is_scaled_not_overflowed(dtype, rate):
    """Floats up to the dtype's maximum are scaled to their peak; resampling them used to overflow
    to inf and turn the clip into NaNs (found while writing the API fuzzer)."""
    unit = _clip(8000, seed=1).astype(dtype)
    unit /= np.abs(unit).max()
    huge = unit * np.finfo(dtype).max
    assert np.all(np.isfinite(huge))
    with np.errstate(all="raise"):  # no overflow or invalid value anywhere on the way
        got = wav2small.predict(huge, sample_rate=rate).as_array()
    want = wav2small.predict(unit * dtype(2.0), sample_rate=rate).as_array()  # peak > 1: same path
    # resampled, the two differ by float rounding that flips int16 LSBs, and the int8 model moves a
    # little with them: 0.0008 for the head of rounds 1-4, 0.0021 for the fifth round's; such LSB flips
    # move A/D/V mostly inside digital silence (docs/uncertainty.md, sixth round; scripts/uq_lowbits.py)
    assert np.allclose(got, want, atol=3e-3), (got, want)


@pytest.mark.parametrize("bad", [
    np.array([0.1, np.nan] * 100, np.float32),
    np.array([0.1, -np.inf] * 100),
    [0.1, float("nan")] * 100,
    [0.1, None] * 100,  # None reads as NaN in a float array
    [0.1, None] * 100 + [2**70],  # the same through an object array, without a warning (atheris)
    [np.float32("nan")] * 100,  # numpy warned while casting it; an error with warnings as errors (atheris)
])
def test_non_finite_samples_are_refused(bad):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AudioError, match="NaN or infinite"):
            wav2small.predict(bad)


# ---- audio: types, shapes, layouts -------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["int8", "uint8", "uint16", "int32", "int64", "float16", "complex64",
                                   "bool", "object", "U3", ">i4"])
def test_wrong_dtype_is_refused_with_its_name(dtype):
    pcm = np.zeros(4000, dtype=dtype)
    with pytest.raises(AudioError, match=f"unsupported dtype {np.dtype(dtype).newbyteorder('=')}"):
        wav2small.predict(pcm)


@pytest.mark.parametrize("dtype", [">i2", ">f4", ">f8"])
def test_big_endian_samples_are_read_as_their_values(dtype):
    """Samples as a big-endian file holds them (np.frombuffer of AIFF data): the same clip."""
    x = _clip(4000)
    native = (x * 32767).astype(np.int16) if dtype == ">i2" else x.astype(dtype[1:])
    assert wav2small.predict(native.astype(dtype)) == wav2small.predict(native)


@pytest.mark.parametrize("shape, hint", [((4000, 2), "axis=1"), ((2, 4000), "axis=0"), ((1, 4000), "axis=0"),
                                         ((4000, 1, 1), "axis=1"), ((), None)])
def test_not_one_dimensional_is_refused(shape, hint):
    """The hint names the channel axis of the shape given: (samples, channels) as soundfile reads,
    (channels, samples) as librosa and torchaudio do (it said axis=1 for both)."""
    pcm = np.zeros(shape, np.float32)
    match = rf"1-D mono.*pcm\.mean\({hint}\)" if hint else "got shape ()"
    with pytest.raises(AudioError, match=match):
        wav2small.predict(pcm)


def test_a_list_of_ints_is_int16_and_must_fit_it():
    x = (_clip(4000) * 32767).astype(np.int16)
    assert wav2small.predict(x.tolist()) == wav2small.predict(x)
    assert wav2small.predict([*x.tolist()[:-1], 0.5]) == wav2small.predict(np.array([*x[:-1], 0.5]))  # floats
    for bad in ([40000, 0] * 2000, [-32769, 0] * 2000):
        with pytest.raises(AudioError, match=r"a list of ints is read as int16 samples, but it holds -?\d+\.\.\d+"):
            wav2small.predict(bad)


def test_scalars_and_other_objects_are_refused():
    for bad in (np.float32(0.5), 0.5, "speech.wav", b"\x00\x01" * 100, {"pcm": [0.1]}):
        with pytest.raises(AudioError):
            wav2small.predict(bad)


@pytest.mark.parametrize("bad, match", [
    ([0.1, "a"] * 100, "numbers only"),
    ([0.1, 10**400] * 100, "numbers only"),  # an int beyond float64 used to raise OverflowError
    ([0.1, 1j] * 100, "numbers only"),
    ([np.complex128(0.1 + 0.2j)] * 100, "real numbers only"),  # numpy complex scalars only warned (atheris)
    ([[0.1] * 100, 0.5], "numbers only"),  # ragged
    (["0.5"] * 100, "found text"),          # numpy would read numeric strings as numbers
    ([b"1"] * 100, "found bytes"),
    ([True, False] * 50, "found bool"),
    ([0.1, True] * 50 + [2**70], "found bool"),   # an int beyond int64 makes an object array
])
def test_lists_that_are_not_samples_are_refused(bad, match):
    with pytest.raises(AudioError, match=match):
        wav2small.predict(bad)


def test_a_list_with_an_int_beyond_int64_is_still_samples():
    x = [0.1, -0.2] * 50 + [2**70]
    assert wav2small.predict(x) == wav2small.predict(np.array(x, np.float64))


def test_masked_arrays_are_refused():
    """The engine would read the values under the mask (a NaN there became a garbage prediction)."""
    x = np.ma.masked_array(_clip(4000), mask=np.zeros(4000, bool))
    x[10] = np.ma.masked
    with pytest.raises(AudioError, match=r"masked arrays.*filled\(0\)"):
        wav2small.predict(x)
    plain = _clip(4000).copy()
    plain[10] = 0.0
    assert wav2small.predict(x.filled(0)) == wav2small.predict(plain)   # filled: an ordinary clip


def test_non_contiguous_views_give_the_contiguous_result():
    """Strided, reversed, column and read-only views are read correctly (a column of a stereo
    array: tests/test_api.py::test_non_contiguous_and_strided_input)."""
    x = _clip(12000, seed=2)
    as_int16 = np.rint(x * 32767).astype(np.int16)
    views = {
        "every other sample": (x[::2], np.ascontiguousarray(x[::2])),
        "reversed": (x[::-1], x[::-1].copy()),
        "int16 column of (n, 2)": (np.stack([as_int16, -as_int16], axis=1)[:, 1], -as_int16),
        "read-only buffer": (np.frombuffer(as_int16.tobytes(), np.int16), as_int16),
        "Fortran-order column": (np.asfortranarray(np.stack([x, x], axis=1))[:, 0], x),
    }
    for name, (view, copy) in views.items():
        assert wav2small.predict(view) == wav2small.predict(copy), name


@pytest.mark.parametrize("rate", [0, -16000, float("nan"), float("inf"), "16000", None, True, [16000]])
def test_bad_sample_rate_is_refused(rate):
    """soxr used to hang on NaN and infinite rates; now every rate is checked first."""
    with pytest.raises(AudioError, match="sample rate must be a positive number"):
        wav2small.predict(_clip(4000), sample_rate=rate)


def test_absurd_but_valid_rates_fail_on_length_not_in_the_resampler(monkeypatch):
    """soxr does not return (20 s and counting) when asked to resample at 1e30 Hz: the length check
    must come first, so the resampler is never called."""
    resampled = record_calls(monkeypatch, wav2small.model, "resample")
    with pytest.raises(AudioTooShortError):
        wav2small.predict(_clip(4000), sample_rate=1e30)  # 4000 samples in 4e-27 s
    with pytest.raises(AudioTooLongError):
        wav2small.predict(_clip(4000), sample_rate=1e-3)  # 4000 samples over 46 days
    assert resampled == []


def test_a_short_clip_in_a_batch_is_refused():
    with pytest.raises(AudioTooShortError, match="10 samples"):
        wav2small.predict([_clip(4000), _clip(10)])


# ---- model files ---------------------------------------------------------------------------------


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


# bad model bytes -> (exception, C status of w2s_model_init); the Python cases of tests/test_api.py
# ::test_model_file_errors, here through the binding to show each gets its own status code
MODEL_CASES = {
    "empty": (lambda d: b"", ModelTruncatedError, -2),
    "3 bytes": (lambda d: d[:3], ModelTruncatedError, -2),
    "header only": (lambda d: d[:64], ModelTruncatedError, -2),
    "truncated by one byte": (lambda d: d[:-1], ModelTruncatedError, -2),
    "wrong magic": (lambda d: b"RIFF" + d[4:], NotAModelError, -3),
    "newer version": (lambda d: d[:4] + struct.pack("<H", _engine.FORMAT_VERSION + 1) + d[6:], ModelVersionError, -4),
    "older version": (lambda d: d[:4] + struct.pack("<H", _engine.FORMAT_VERSION - 1) + d[6:], ModelVersionError, -4),
    "flipped bit": (lambda d: d[:5000] + bytes([d[5000] ^ 1]) + d[5001:], ModelChecksumError, -5),
    "wrong checksum": (lambda d: d[:-4] + bytes(4), ModelChecksumError, -5),
    "undefined flag set, CRC fixed": (lambda d: _with_crc(d[:12] + b"\x07" + d[13:-4]), ModelFormatError, -6),
}


@pytest.mark.parametrize("name", list(MODEL_CASES))
def test_bad_model_bytes_get_their_own_status(name):
    change, exc, status = MODEL_CASES[name]
    blob = change(_default_bytes())
    with pytest.raises(exc, match=rf"model bytes: .*\(status {status}\)"):
        Model.from_bytes(blob)


def test_c_status_codes_are_distinct_and_described():
    """w2s_status: W2S_OK and nine errors, each with its own code and description."""
    text = {code: _engine.status_str(code) for code in range(0, -10, -1)}
    assert len(set(text.values())) == 10 and "unknown" not in " ".join(text.values())
    assert _engine.status_str(-99) == "unknown status"


def test_model_bytes_of_the_wrong_type_are_refused():
    for bad in ("W2SM", 12, None, [1, 2]):
        with pytest.raises(ModelError, match="bytes-like"):
            Model.from_bytes(bad)
    # any bytes-like object is fine
    data = _default_bytes()
    assert Model.from_bytes(bytearray(data)).config == Model.from_bytes(memoryview(data)).config


def test_unreadable_model_paths(tmp_path):
    for path, match in ((tmp_path / "missing.w2s", "No such file"), (tmp_path, "Is a directory"),
                        (str(tmp_path / "a\0b.w2s"), "null byte")):
        with pytest.raises(ModelError, match=f"cannot read model file .*{match}"):
            Model(path)
    # Path("") is the working directory: an empty path is named as such, not as "Is a directory"
    with pytest.raises(ModelError, match="the model path is empty"):
        Model("")
    r = _cli("predict", "--model", "", FRONT_CENTER)
    assert r.returncode == 2 and "the model path is empty" in r.stderr.decode(), r.stderr


def _model_file(config: dict, tensors: dict) -> bytes:
    """A .w2s file from a config and tensors, laid out by the engine (as training/export.py writes)."""
    keys = ("sample_rate", "n_fft", "hop", "n_mels", "channels", "n_layers", "pool_after", "n_outputs",
            "out_frac_bits", "mel_weights")
    entries, end = _engine.layout(config)
    buf = bytearray(end)
    buf[:56] = struct.pack("<IHHII10i", _engine.FORMAT_MAGIC, _engine.FORMAT_VERSION, _engine.HEADER_BYTES,
                           end + 4, config.get("flags", 0), *(config[k] for k in keys))
    for name, _, _, offset in entries:
        raw = np.ascontiguousarray(tensors[name]).tobytes()
        buf[offset : offset + len(raw)] = raw
    return _with_crc(bytes(buf))


def test_valid_model_with_other_than_three_outputs_is_refused():
    """The engine reads any output count; this Python version maps exactly A/D/V."""
    m = _engine.Model(_default_bytes())
    config, tensors = dict(m.config, n_outputs=2, flags=0), m.tensors()
    for name in ("head.w", "head.b", "head.mult_p", "head.shift_p", "head.mult_g", "head.shift_g"):
        tensors[name] = tensors[name][:2]
    blob = _model_file(config, tensors)
    assert _engine.Model(blob).config["n_outputs"] == 2  # a valid file for the engine
    with pytest.raises(ModelError, match="has 2 outputs; this version reads 3"):
        Model.from_bytes(blob)


def test_every_error_is_a_wav2small_error_and_a_value_error():
    """Callers can catch everything with one class, or as ValueError."""
    for exc in (AudioError, AudioTooShortError, AudioTooLongError, ModelError, ModelTruncatedError,
                NotAModelError, ModelVersionError, ModelChecksumError, ModelFormatError, ArgumentError):
        assert issubclass(exc, Wav2SmallError) and issubclass(exc, ValueError)


def _mel_edit(edit) -> tuple[dict, dict]:
    """The default model's config and tensors with its mel bands changed by `edit(band, weights)`,
    which returns the new (band, weights)."""
    m = _engine.Model(_default_bytes())
    tensors = m.tensors()
    band, weights = edit(tensors["mel.band"].astype(np.int64), tensors["mel"].copy())
    tensors["mel.band"], tensors["mel"] = band.astype(np.uint16), weights.astype(np.uint16)
    return dict(m.config, mel_weights=len(weights)), tensors


def _band_past_the_end(band, weights):
    band[-1, 0] = 64 // 2 + 1 - band[-1, 1] + 1  # ends one bin past the spectrum (n_fft 64)
    return band, weights


def _drop_a_count(band, weights):
    band[0, 1] -= 1  # the weights no longer add up to the header's count
    return band, weights


@pytest.mark.parametrize("edit", [_band_past_the_end, _drop_a_count],
                         ids=["band past the last bin", "counts do not sum to mel_weights"])
def test_inconsistent_mel_bands_are_refused(edit):
    config, tensors = _mel_edit(edit)
    with pytest.raises(ModelFormatError, match=r"\(status -6\)"):
        Model.from_bytes(_model_file(config, tensors))


def test_mel_bands_may_store_zeros():
    """A band stored with explicit zero weights around it (a denser file) predicts the same."""
    def widen_last(band, weights):
        first, count = band[-1]
        band[-1] = 0, first + count + 1  # zeros before the band and one bin after it
        w = np.concatenate([weights[: len(weights) - count], np.zeros(first), weights[len(weights) - count :], [0]])
        return band, w

    config, tensors = _mel_edit(widen_last)
    wider = Model.from_bytes(_model_file(config, tensors))
    pcm = np.random.default_rng(3).standard_normal(16000).astype(np.float32) * 0.1
    assert wider.nbytes > Model().nbytes
    np.testing.assert_array_equal(wider.predict_fixed(pcm), Model().predict_fixed(pcm))


# ---- thresholds and threads ----------------------------------------------------------------------


def _with_decide_params(max_log_sigma: int, min_speech_logit: int) -> Model:
    """The default model with other default thresholds in its file (CRC recomputed)."""
    data = bytearray(_default_bytes())
    off = {name: o for name, _, _, o in _engine.layout(Model().config)[0]}["decide.params"]
    data[off:off + 8] = struct.pack("<ii", max_log_sigma, min_speech_logit)
    data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))
    return Model.from_bytes(bytes(data))


def test_model_thresholds_give_back_the_engine_decision_exactly():
    """Model.thresholds passed back to predict() decide as the engine's own defaults, even where
    the float form rounds: a speech logit of 40 is a probability of 1.0 in float, and a log sigma
    of INT32_MIN ("never reliable") a sigma of 0.0, which Thresholds refuses from a user."""
    rng = np.random.default_rng(4)
    q0 = Model().predict_fixed(_clip(4000))
    for max_ls, min_logit in ((-2**31, 0), (0, 40 << 16), (2**31 - 1, -2**31)):
        m = _with_decide_params(max_ls, min_logit)
        t = m.thresholds
        assert t.fixed(m.config["out_frac_bits"]) == (max_ls, min_logit)
        for _ in range(20):   # raw outputs at and around both thresholds, decided both ways
            q = q0.copy()
            q[3:6] = np.clip(max_ls + rng.integers(-2, 3, 3), -2**31, 2**31 - 1)
            q[6] = np.clip(min_logit + rng.integers(-2, 3), -2**31, 2**31 - 1)
            q[7] = t.modulation_fixed() + rng.integers(-2, 3)   # around the modulation threshold too
            assert m.from_fixed(q).decision == m.from_fixed(q, thresholds=t).decision
    assert _with_decide_params(-2**31, -2**31).predict(_clip()).decision == "too uncertain"
    # the same floats typed in by a user compare equal
    m = Model()
    t = m.thresholds
    assert Thresholds(t.max_sigma, t.min_speech_prob, t.min_modulation_db, t.max_steady) == t
    assert Thresholds(t.max_sigma, t.min_speech_prob).min_modulation_db is None   # None: the model's own


@pytest.mark.parametrize("max_sigma, min_prob", [(np.float32(0.25), 0.5), (0.25, np.float64(0.5)),
                                                 (np.int64(1), 0), (Fraction(1, 4), Fraction(1, 2))])
def test_thresholds_take_any_real_number(max_sigma, min_prob):
    t = Thresholds(max_sigma, min_prob)
    assert type(t.max_sigma) is float and type(t.min_speech_prob) is float
    assert t == Thresholds(float(max_sigma), float(min_prob))


@pytest.mark.parametrize("bad", [(True, 0.5), (0.25, False), (np.bool_(True), 0.5), ("0.25", 0.5),
                                 (None, 0.5), (10**400, 0.5)])   # an int beyond float raised OverflowError
def test_thresholds_refuse_bools_and_non_numbers(bad):
    with pytest.raises(ValueError, match="max_sigma|min_speech_prob"):
        Thresholds(*bad)


def test_thread_counts_beyond_the_clips_or_as_numpy_ints():
    clips = [_clip(4000, seed=s) for s in range(3)]
    one = [wav2small.predict(c) for c in clips]
    assert wav2small.predict(tuple(clips), threads=2) == one   # the module's predict takes threads too
    for threads in (2**31, 2**80, np.int64(2)):
        assert Model().predict(clips, threads=threads) == one
    for bad in (0, -1, True, 2.0, "2"):
        with pytest.raises(ArgumentError, match="threads"):
            Model().predict(clips, threads=bad)


# ---- the command line: files ---------------------------------------------------------------------


def _cli(*args: str | bytes, cwd=None, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wav2small", *args], capture_output=True, cwd=cwd, input=stdin)


def test_cli_reads_names_that_are_not_utf8(tmp_path):
    """A Latin-1 file name (old archives) is read and printed with an escape; it used to crash the
    CLI with UnicodeEncodeError and lose every other file's row."""
    good = tmp_path / "good.wav"
    sf.write(good, _clip(), 16000)
    latin1 = os.fsencode(tmp_path) + b"/caf\xe9.wav"
    shutil.copy(good, latin1)
    for fmt in ((), ("--csv",)):
        r = _cli("predict", *fmt, str(good), latin1)
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode("utf-8")   # valid UTF-8 whatever the names
        assert "caf\\xe9.wav" in out and "good.wav" in out, out
    rows = json.loads(_cli("predict", "--json", str(good), latin1).stdout)
    assert rows[1]["file"].endswith("caf\\xe9.wav") and rows[0]["arousal"] == rows[1]["arousal"]


def test_cli_names_missing_files_and_directories(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, _clip(), 16000)
    r = _cli("predict", str(tmp_path / "missing.wav"), str(tmp_path), str(good))
    err = r.stderr.decode()
    assert r.returncode == 1 and "good.wav" in r.stdout.decode()
    assert "missing.wav: no such file" in err and "it is a directory" in err, err
    # every file failed: no table, where a header alone would read as a result with no rows
    r = _cli("predict", str(tmp_path / "missing.wav"), str(tmp_path))
    assert r.returncode == 1 and r.stdout == b"" and "missing.wav: no such file" in r.stderr.decode()
    # JSON and CSV stay well formed: an empty list, a header
    assert json.loads(_cli("predict", "--json", str(tmp_path)).stdout) == []
    assert _cli("predict", "--csv", str(tmp_path)).stdout.decode().startswith("file,arousal")


def test_empty_files_and_empty_standard_input_say_so(tmp_path):
    """libsndfile's "Format not recognised." named the wrong problem for a file of no bytes."""
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty.wav: the file is empty"):
        wav2small.audio.read(empty)
    with pytest.raises(AudioError, match="cannot read audio data: it is empty"):
        wav2small.audio.read_bytes(b"")
    r = _cli("predict", "-", stdin=b"")
    assert r.returncode == 1 and "cannot read standard input: it is empty" in r.stderr.decode(), r.stderr


def test_cli_checks_a_file_length_before_resampling_it(tmp_path, monkeypatch, capsys):
    """A small file with an absurd rate in its header (1 Hz: 16,000 x more samples after
    resampling, 12.8 GB for this one) fails at once on its length, before the resampler is asked;
    the good file's row stays."""
    from wav2small.__main__ import main

    good, low = tmp_path / "good.wav", tmp_path / "rate1.wav"
    sf.write(good, _clip(), 16000)
    sf.write(low, np.zeros(200_000, np.int16), 1)
    resampled = record_calls(monkeypatch, wav2small.model, "resample")
    assert main(["predict", str(low), str(good)]) == 1
    out, err = capsys.readouterr()
    assert "good.wav" in out and "rate1.wav is 3333.3 min long; the model takes at most 17.5 min" in err
    assert [args[1] for args, _ in resampled] == [16000]   # the good file only (a no-op at its rate)


def test_a_file_too_long_is_refused_from_its_header(tmp_path, monkeypatch):
    """An hour of 48 kHz stereo was decoded (2 GB) before predict refused it; the header says enough."""
    import soundfile

    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(int(17.6 * 60 * 100), np.int16), 100)   # 17.6 min, a small file
    decoded = record_calls(monkeypatch, soundfile.SoundFile, "read")
    for read in (lambda: wav2small.audio.read(long, max_seconds=Model().max_seconds),
                 lambda: wav2small.audio.read_bytes(long.read_bytes(), "stdin", max_seconds=Model().max_seconds)):
        with pytest.raises(AudioTooLongError, match="is 17.6 min long; the model takes at most 17.5 min: split it"):
            read()
    assert decoded == []
    assert len(wav2small.audio.read(long)[0]) == 17.6 * 60 * 100   # without a limit it is read


def test_cli_says_what_went_wrong_without_a_traceback(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, _clip(), 16000)
    # an output encoding without σ (a C or Latin-1 locale): ASCII titles, not UnicodeEncodeError
    r = subprocess.run([sys.executable, "-m", "wav2small", "predict", str(good)], capture_output=True,
                       env={**os.environ, "PYTHONIOENCODING": "latin-1"})
    assert r.returncode == 0 and b"sigma_arousal" in r.stdout and not r.stderr, r.stderr
    assert "σ_arousal" in _cli("predict", str(good)).stdout.decode()
    with open("/dev/full", "wb") as full:   # an unwritable standard output
        r = subprocess.run([sys.executable, "-m", "wav2small", "predict", "--json", str(good)], stdout=full,
                           stderr=subprocess.PIPE)
    assert r.returncode == 1 and r.stderr.decode() == "wav2small: cannot write the results: No space left on device\n"
    r = subprocess.run([sys.executable, "-m", "wav2small", "predict", "-"], stdin=subprocess.DEVNULL,
                       capture_output=True, preexec_fn=lambda: os.close(0))   # standard input closed
    assert r.returncode == 1 and r.stderr.decode() == "wav2small: cannot read standard input: it is closed\n"
    r = _cli("predict", "-", "-")
    assert r.returncode == 2 and b"- (standard input) can be given once" in r.stderr
    # a damaged AIFF header makes libsndfile seek before the start: a clean message, no callback traceback
    r = subprocess.run([sys.executable, "-m", "wav2small", "predict", "-"], capture_output=True,
                       input=b"FORM\x00\x00\x00\x20AIFFCOMM\xff\xff\xff\xf0" + b"junk" * 3)
    assert r.returncode == 1 and r.stderr.decode().startswith("wav2small: cannot read standard input:")
    assert b"Traceback" not in r.stderr and b"Exception ignored" not in r.stderr, r.stderr


def test_a_model_from_bytes_is_not_called_the_default():
    data = _default_bytes()
    assert repr(Model.from_bytes(data)).startswith(f"Model('<{len(data)} bytes>'")
    assert repr(Model()).startswith("Model('default'")
