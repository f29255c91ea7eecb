"""Every kernel set of the engine (csrc/kernels.h) against the portable C kernels, bit for bit.

On x86 one build carries the portable, SSE4.1, AVX2 and AVX-512 VNNI kernels and picks one at run
time; `_engine.Model.set_isa` forces a set, so each set available on this CPU runs the same clips
and models as the portable one and every stage of the trace must be identical. The ARM sets (NEON,
DSP) are compiled only for ARM: tests/test_arm.py runs them under qemu against the host outputs.
No timing here: speed is measured by scripts/bench.py.
"""
from __future__ import annotations

import platform
import types

import numpy as np
import pytest
import torch
from conftest import to_int16

from training.export import model_bytes
from training.model import Wav2Small, Wav2SmallConfig
from training.quantize import quantize
from wav2small import _engine

SIMD = [s for s in _engine.available_isas() if s != "portable"]


def _model(data: bytes, isa: str) -> _engine.Model:
    m = _engine.Model(data)
    m.set_isa(isa)
    assert m.isa == isa   # else every comparison below would compare a kernel set with itself
    return m


def _same_trace(data: bytes, pcm: np.ndarray, what: str) -> None:
    """Each SIMD set's trace equals the portable one, stage by stage; name the first mismatch."""
    want = _model(data, "portable").trace(pcm)
    for isa in SIMD:
        got = _model(data, isa).trace(pcm)
        assert [(s, l) for s, l, _ in got] == [(s, l) for s, l, _ in want]
        for (stage, layer, a), (_, _, b) in zip(got, want):
            if not np.array_equal(a, b):
                bad = np.argwhere(a != b)[:5]
                pytest.fail(f"{what}: {isa} differs from portable at {stage} {layer}, indices {bad.tolist()}")


def _random_conv(data: bytes, seed: int) -> bytes:
    """The same model with random conv layers inside the format's ranges: int8 weights including
    -128, offsets including their extremes (input_offset -128 and 128), saturating shifts."""
    rng = np.random.default_rng(seed)
    em = _engine.Model(data)
    cfg, t = dict(em.config), em.tensors()
    C = cfg["channels"]
    for layer in range(1, cfg["n_layers"] + 1):
        lim = 32768 if layer == 1 else 128
        off = int(rng.choice([-lim, lim, 0, int(rng.integers(-lim, lim + 1))]))
        lo = int(rng.integers(-128, 100))
        t[f"l{layer}.params"] = np.array([off, int(rng.integers(-128, 128)), lo, int(rng.integers(lo, 128))], np.int32)
        w = t[f"l{layer}.w"]
        t[f"l{layer}.w"] = rng.integers(-128, 128, w.shape).astype(np.int8)
        t[f"l{layer}.bias"] = rng.integers(-(1 << 24), 1 << 24, C).astype(np.int32)
        t[f"l{layer}.mult"] = rng.integers(1 << 30, (1 << 31) - 1, C).astype(np.int32)
        # mostly the shifts a real layer has, some at the ends of the range (saturation, rounding)
        t[f"l{layer}.shift"] = np.where(rng.random(C) < 0.7, rng.integers(-16, -6, C),
                                        rng.choice([-31, -30, -1, 0, 1, 29, 30], C)).astype(np.int32)
    return model_bytes(types.SimpleNamespace(config=cfg, tensors=t))


def _random_vox(data: bytes, seed: int) -> bytes:
    """The same model with random vox-pooling weights inside the format's checks: int16 value
    weights including -32768, int8 score weights including -128, input offsets -128 and 128,
    score multipliers from 0 to saturation (softmax references that jump far, weights that
    underflow to 0), the smallest value shift the weights allow."""
    rng = np.random.default_rng(seed)
    em = _engine.Model(data)
    cfg, t = dict(em.config), em.tensors()
    C = cfg["channels"]
    mag = int(rng.choice([1 << 6, 1 << 12, 32768]))
    lin_w = rng.integers(-mag, mag, (C, C)).astype(np.int16)
    lin_w.flat[:: 7] = -mag
    lin_b = rng.integers(-(1 << 29), 1 << 29, C).astype(np.int32)
    worst = int((np.abs(lin_b.astype(np.int64)) + 256 * np.abs(lin_w.astype(np.int64)).sum(1)).max())
    shift = 0
    while worst >= 1 << (22 + shift):
        shift += 1
    sof_w = rng.integers(-128, 128, (C, C)).astype(np.int8)
    sof_w.flat[:: 5] = -128
    off = int(rng.choice([-128, 128, int(rng.integers(-128, 129))]))
    t["vox.params"] = np.array([off, t["vox.params"][1], shift], np.int32)
    t["vox.lin_w"], t["vox.lin_b"], t["vox.sof_w"] = lin_w, lin_b, sof_w
    t["vox.sof_b"] = rng.integers(-(1 << 21), 1 << 21, C).astype(np.int32)
    t["vox.sof_mult"] = rng.integers(0, (1 << 31) - 1, C).astype(np.int32)
    t["vox.sof_shift"] = rng.choice([-31, -12, -3, 0, 3, 12, 30], C).astype(np.int32)
    return model_bytes(types.SimpleNamespace(config=cfg, tensors=t))


def test_kernel_sets_are_listed():
    avail = _engine.available_isas()
    assert avail[0] == "portable" and _engine.best_isa() in avail
    if platform.machine() in ("x86_64", "AMD64"):
        assert "sse4.1" in avail, "the x86 build must carry its SIMD kernels (runtime dispatch)"
    m = _engine.Model(_engine_default_bytes())
    assert m.isa == _engine.best_isa()
    with pytest.raises(ValueError):
        m.set_isa("no-such-set")
    for name in ("neon", "dsp", "sse4.1", "avx2", "avx512vnni"):
        if name not in avail:
            with pytest.raises(ValueError, match="not available"):
                m.set_isa(name)


def _engine_default_bytes() -> bytes:
    from importlib import resources

    return resources.files("wav2small").joinpath("models", "default.w2s").read_bytes()


@pytest.mark.skipif(not SIMD, reason="no SIMD kernel set in this build on this CPU")
def test_default_model_every_stage_on_real_speech(speech_clips):
    data = _engine_default_bytes()
    for i, pcm in enumerate(speech_clips[::3]):
        _same_trace(data, to_int16(pcm), f"clip {i}")


@pytest.mark.skipif(not SIMD, reason="no SIMD kernel set in this build on this CPU")
def test_edge_signals_and_lengths():
    data = _engine_default_bytes()
    rng = np.random.default_rng(1)
    for n in (64, 65, 96, 64 + 32 * 5, 1000):  # one frame, odd tails, a few frames
        _same_trace(data, rng.integers(-32768, 32768, n).astype(np.int16), f"noise {n}")
    _same_trace(data, np.tile(np.array([-32768, 32767], np.int16), 2000), "extremes")
    _same_trace(data, np.zeros(2000, np.int16), "silence")


@pytest.mark.skipif(not SIMD, reason="no SIMD kernel set in this build on this CPU")
@pytest.mark.parametrize("shape", [
    (26, 13, 7, 3),   # the default shape: the specialised 128-lane patch
    (15, 5, 4, 4),    # odd widths, pool after the last layer
    (40, 16, 3, 1),   # 3 C = 48, 9 C = 144: the general loops
    (2, 11, 3, 2),    # two mel bins: every column is an edge
    (9, 64, 2, 1),    # the widest the format allows
])
def test_random_models(shape, speech_clips):
    """Quantized random float models of several shapes, then random conv layers, then random
    vox-pooling weights on top."""
    n_mels, channels, n_layers, pool_after = shape
    torch.manual_seed(sum(shape))
    cfg = Wav2SmallConfig(n_mels=n_mels, channels=channels, n_layers=n_layers, pool_after=pool_after)
    data = model_bytes(quantize(Wav2Small(cfg).eval(), [c[:16000] for c in speech_clips[:3]]))
    clips = [to_int16(speech_clips[3][:8000]), to_int16(speech_clips[4][:64 + 32 * 3])]
    for pcm in clips:
        _same_trace(data, pcm, f"{shape} quantized")
    for seed in range(3):
        rnd = _random_conv(data, seed)
        for pcm in clips:
            _same_trace(rnd, pcm, f"{shape} random conv {seed}")
        rnd = _random_vox(data, seed)
        for pcm in clips:
            _same_trace(rnd, pcm, f"{shape} random vox {seed}")


@pytest.mark.skipif(not SIMD, reason="no SIMD kernel set in this build on this CPU")
@pytest.mark.parametrize("n_fft,n_mels", [(8, 3), (12, 4), (20, 8), (32, 13), (48, 20)])
def test_front_end_fft_sizes(n_fft, n_mels, speech_clips):
    """Window sizes other than the default 64: the front end's folds of the DFT (n with N - n, and
    n with N/2 - n; the middle term alone when N/4 is odd or even) on every set, real speech and
    full-scale extremes."""
    torch.manual_seed(n_fft)
    cfg = Wav2SmallConfig(n_fft=n_fft, hop=n_fft // 2, n_mels=n_mels, n_layers=2, pool_after=1)
    data = model_bytes(quantize(Wav2Small(cfg).eval(), [c[:16000] for c in speech_clips[:2]]))
    extremes = np.where(np.arange(4000) % 3 == 0, 32767, -32768).astype(np.int16)
    for pcm in (to_int16(speech_clips[2][:8000]), extremes):
        _same_trace(data, pcm, f"n_fft {n_fft}")


@pytest.mark.skipif(not SIMD, reason="no SIMD kernel set in this build on this CPU")
def test_stream_uses_the_same_kernels(speech_clips):
    """A stream (row kernels one frame at a time, the per-frame front end) under each set."""
    from wav2small import Model

    pcm = to_int16(speech_clips[0][:24000])
    outs = {}
    for isa in ["portable"] + SIMD:
        m = Model()
        m._engine.set_isa(isa)
        assert m._engine.isa == isa
        stats = m._engine.clip_stats(pcm)
        s = _engine.Stream(m._engine, _engine.PRENORM_FIXED, *stats)
        for i in range(0, len(pcm), 777):
            s.push(pcm[i : i + 777])
        outs[isa] = s.read()
        assert np.array_equal(outs[isa], m._engine.predict(pcm)), isa
    for isa in SIMD:
        assert np.array_equal(outs[isa], outs["portable"]), isa


def test_predict_many_threads(speech_clips):
    """Model.predict on a list spreads clips over threads: same results for any thread count."""
    from wav2small import Model

    m = Model()
    clips = [to_int16(c) for c in speech_clips[:8]]
    one = [m.predict(c) for c in clips]
    for threads in (1, 2, 3, None):
        assert m.predict(clips, threads=threads) == one, threads
    raw = m._engine.predict_many(clips, 2)
    assert all(np.array_equal(a, m._engine.predict(c)) for a, c in zip(raw, clips))
    with pytest.raises(ValueError):
        m.predict(clips, threads=0)
    from wav2small.errors import AudioTooShortError

    with pytest.raises(AudioTooShortError):
        m._engine.predict_many([clips[0], clips[1][:10]], 2)
