"""The C engine against its NumPy reference (bit-exact) and against the float model (fidelity)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import to_int16

from training.export import model_bytes
from training.model import CONFIGS, Wav2Small
from training.quantize import engine_fidelity, quantize
from wav2small import _engine
from wav2small import _reference as ref

# ---- rounding rules: C vs NumPy, edge sweeps ----------------------------------------------------

I32 = np.iinfo(np.int32)


def _edge_int32(rng: np.random.Generator, n: int) -> np.ndarray:
    edges = [0, 1, -1, 2, -2, 3, -3, I32.max, I32.min, I32.max - 1, I32.min + 1, 1 << 30, -(1 << 30)]
    ties = [(2 * k + 1) << s for s in range(1, 31) for k in (0, 1) if (2 * k + 1) << s <= I32.max]
    vals = np.array(edges + ties + [-t for t in ties], dtype=np.int64)
    return np.concatenate([vals, rng.integers(I32.min, I32.max, n, endpoint=True)])


def test_requantize_matches_reference_on_edges_and_every_shift():
    rng = np.random.default_rng(0)
    acc = _edge_int32(rng, 3000)
    mults = np.array([0, 1, 1 << 30, (1 << 31) - 1, I32.min + 1 + (1 << 31) - 1, 1518500250], dtype=np.int64)
    for shift in range(-31, 31):
        for mult in list(mults) + list(rng.integers(1 << 30, 1 << 31, 3)):
            a = acc
            m = np.full_like(a, mult)
            s = np.full_like(a, shift)
            c_out = _engine.requantize(a, m, s)
            np.testing.assert_array_equal(c_out, ref.requantize(a, m, s), err_msg=f"mult={mult} shift={shift}")


def test_requantize_saturating_corner():
    a = np.array([I32.min], np.int64)
    m = np.array([I32.min], np.int64)  # SRDHM's one overflow case (not a valid file multiplier)
    assert _engine.requantize(a, m, np.array([0], np.int64))[0] == ref.requantize(a, m, 0)[0] == I32.max


def test_rshift_round_and_div_round_match_reference():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.integers(-(1 << 62), 1 << 62, 4000), np.arange(-40, 41), [-(1 << 62), (1 << 62)]])
    for s in list(range(64)):
        sv = np.full_like(x, s)
        np.testing.assert_array_equal(_engine.rshift_round(x, sv), ref.rshift_round(x, sv), err_msg=f"s={s}")
    for d in (1, 2, 3, 7, 1 << 19, (1 << 40) + 3):
        dv = np.full_like(x, d)
        np.testing.assert_array_equal(_engine.div_round(x, dv), ref.div_round(x, dv), err_msg=f"d={d}")


def test_log2_q16_matches_reference_and_is_accurate():
    rng = np.random.default_rng(2)
    v = np.concatenate([
        np.array([1, 2, 3, (1 << 30) - 1, 1 << 30, (1 << 31) + 1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1], np.uint64),
        (np.uint64(1) << rng.integers(0, 63, 2000).astype(np.uint64)) + rng.integers(0, 1 << 20, 2000).astype(np.uint64),
        rng.integers(1, 1 << 62, 2000, dtype=np.uint64),
    ])
    c_out = _engine.log2_q16(v)
    np.testing.assert_array_equal(c_out, ref.log2_q16(v))
    err = np.abs(c_out / 65536 - np.log2(v.astype(np.float64)))
    print(f"\nlog2_q16 max error {err.max():.2e} (log2 units)")
    assert err.max() < 1e-4


# ---- every stage of the engine, bit-exact ----------------------------------------------------------


def _compare_trace(engine_model: _engine.Model, pcm: np.ndarray) -> None:
    t = engine_model.tensors()
    cfg = engine_model.config
    got = engine_model.trace(pcm)
    want = ref.forward(t, cfg, pcm)
    assert [(s, l) for s, l, _ in got] == [(s, l) for s, l, _ in want]
    # feed each reference stage the engine's previous output, so a failure names its stage
    prev = None
    for (stage, layer, a), (_, _, b) in zip(got, want):
        if stage == "conv" and prev is not None and layer > 1:
            b = ref.conv3x3(t, layer, prev)
        elif stage == "pool":
            b = ref.maxpool(prev)
        if a.shape != b.shape or not np.array_equal(a, b):
            bad = np.argwhere(a.reshape(b.shape) != b)[:5] if a.size == b.size else "shape"
            pytest.fail(f"{stage} {layer}: engine {a.shape} differs from reference {b.shape} at {bad}")
        prev = a


def test_default_model_stages_bit_exact(default_model, speech_clips):
    for pcm in speech_clips[::4]:
        _compare_trace(default_model._engine, to_int16(pcm))


def test_other_shapes_bit_exact(speech_clips):
    """A wide random model and odd lengths/mel counts exercise every boundary of the kernels."""
    torch.manual_seed(3)
    for cfg in (CONFIGS["wide"], CONFIGS["default"].__class__(n_mels=15, channels=5, n_layers=4, pool_after=4)):
        model = Wav2Small(cfg).eval()
        em = _engine.Model(model_bytes(quantize(model, speech_clips[:3])))
        for pcm in (speech_clips[0][:64], speech_clips[1][:64 + 32 * 6], speech_clips[2][:16001]):
            _compare_trace(em, to_int16(pcm))


def test_silence_and_extremes_bit_exact(default_model):
    rng = np.random.default_rng(4)
    cases = {
        "digital silence": np.zeros(8000, np.int16),
        "one LSB": np.tile(np.array([0, 1], np.int16), 4000),
        "int16 extremes": np.tile(np.array([-32768, 32767], np.int16), 4000),
        "full-scale noise": rng.integers(-32768, 32768, 8000).astype(np.int16),
        "dc offset": np.full(8000, 12345, np.int16),
    }
    for name, pcm in cases.items():
        _compare_trace(default_model._engine, pcm)
        out = default_model._engine.predict(pcm)
        n = default_model.config["n_outputs"]
        assert out.shape == (n + 1 + default_model.has_steady,), name   # + the modulation (+ the steadiness)
        if name in ("digital silence", "dc offset"):   # a level that never moves, nothing loud
            assert out[n] == 0 and (not default_model.has_steady or out[n + 1] == 0), name


# ---- fidelity against the float model -------------------------------------------------------------


def test_logmel_within_bound_of_float_front_end(default_float, default_model, speech_clips):
    """C log-mel vs the float front end, the bound documented in docs/numerics.md: values above
    -60 dB (the clip normalised to unit variance): p99.9 < 0.05 dB, max < 0.5 dB; above -80 dB:
    p99.9 < 0.15 dB. Lower values are near-silent bins where the Q4 samples dominate."""
    c_all, f_all = [], []
    for pcm in speech_clips:
        q = to_int16(pcm)
        c_all.append(default_model._engine.trace(q)[1][2].astype(np.float64).ravel() / 2**_engine.Q_DB)
        with torch.no_grad():
            f_all.append(default_float.vgg7.logmel(torch.from_numpy(q.astype(np.float32) / 32768)[None]).numpy().ravel())
    c, f = np.concatenate(c_all), np.concatenate(f_all)
    d = np.abs(c - f)
    for floor in (-40, -60, -80):
        k = f > floor
        print(f"\nlog-mel |C - float| above {floor} dB ({k.sum()} values): median {np.median(d[k]):.4f}, "
              f"p99.9 {np.percentile(d[k], 99.9):.3f}, max {d[k].max():.3f} dB", end="")
    assert np.percentile(d[f > -60], 99.9) < 0.05 and d[f > -60].max() < 0.5
    assert np.percentile(d[f > -80], 99.9) < 0.15


def test_engine_ccc_vs_float_model(default_float, default_model, speech_clips):
    """The whole int8 engine against the float model it was quantized from, >= 20 real clips."""
    assert len(speech_clips) >= 20
    fid = engine_fidelity(default_float, default_model, speech_clips)
    print(f"\nengine vs float over {fid['clips']} clips: {fid}")
    # A/D/V: int8 costs < 0.002 CCC (issue 3 allows 0.005); the uncertainty outputs (log sigmas,
    # speech logit) only feed thresholds, so they are held to a looser 0.995
    values = [fid["ccc"][k] for k in ("arousal", "dominance", "valence")]
    assert min(values) >= 0.998 and min(fid["ccc"].values()) >= 0.995, fid
