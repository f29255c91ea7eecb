"""Streaming (csrc/stream.c, wav2small.stream): constant memory, bit-identical with batch on a
whole clip when given the clip's prenorm statistics, for every chunking, on real speech and on
other model shapes; the running prenorm estimate against a NumPy model of its integer arithmetic."""
from __future__ import annotations

import subprocess
import threading
import warnings

import numpy as np
import pytest
import soxr
import torch
from conftest import REPO, record_calls, require_tool, to_int16

import wav2small
from training.export import model_bytes
from training.model import CONFIGS, Wav2Small
from training.quantize import quantize
from wav2small import _engine
from wav2small.errors import ArgumentError, AudioTooShortError, ClippingWarning, Wav2SmallError


def push_all(stream, pcm: np.ndarray, chunk: int, read_every: int = 0, n_fft: int = 64) -> None:
    for k, i in enumerate(range(0, len(pcm), chunk)):
        stream.push(pcm[i : i + chunk])
        if read_every and k % read_every == 0 and stream.samples >= n_fft:
            stream.read()  # must not change what follows


def engine_stream(model: _engine.Model, pcm: np.ndarray, chunk: int, read_every: int = 0) -> np.ndarray:
    """Stream through the binding directly (no per-chunk Python conversions: 1-sample chunks stay fast)."""
    s = _engine.Stream(model, _engine.PRENORM_FIXED, *model.clip_stats(pcm))
    push_all(s, pcm, chunk, read_every, model.config["n_fft"])
    return s.read()


# ---- bit-identical with batch -------------------------------------------------------------------------


def test_stream_equals_batch_on_real_speech_for_any_chunking(default_model, speech_clips):
    em = default_model._engine
    clips = [to_int16(c) for c in speech_clips[:6]]
    for n, pcm in enumerate(clips):
        batch = em.predict(pcm)
        chunks = (32, 33, 160, 1024, len(pcm)) + ((1, 7) if n < 2 else ())
        for chunk in chunks:
            got = engine_stream(em, pcm, chunk, read_every=(50 if chunk < 100 else 1) if n % 2 else 0)
            assert np.array_equal(got, batch), f"clip {n}, chunk {chunk}: {got} vs batch {batch}"


def test_two_pass_python_api_equals_predict(default_model, speech_clips):
    pcm = speech_clips[3]
    s = default_model.stream(stats=default_model.clip_stats(pcm))
    push_all(s, to_int16(pcm), 333)
    assert np.array_equal(s.read_fixed(), default_model.predict_fixed(pcm))
    assert s.read() == default_model.predict(pcm)
    assert s.samples == len(pcm) and s.arena_bytes == default_model._engine.stream_arena_size


def test_every_prefix_length_of_a_clip(default_model, speech_clips):
    """Short clips leave some layers with 0, 1 or 2 rows: the pending-row logic at its edges."""
    em = default_model._engine
    pcm = to_int16(speech_clips[5])
    for n in list(range(64, 64 + 32 * 24, 32)) + [65, 95, 97, 129, 1001, 4099]:
        part = pcm[:n]
        assert np.array_equal(engine_stream(em, part, 17, read_every=3), em.predict(part)), n


def test_read_at_any_time_then_go_on(default_model, speech_clips):
    """A read finishes a copy of the pending rows: reading any number of times changes nothing,
    and a read mid-clip equals batch on that prefix when given the prefix's statistics."""
    em = default_model._engine
    pcm = to_int16(speech_clips[6])
    cut = len(pcm) // 3
    s = _engine.Stream(em, _engine.PRENORM_FIXED, *em.clip_stats(pcm[:cut]))
    s.push(pcm[:cut])
    first = s.read()
    assert np.array_equal(first, em.predict(pcm[:cut]))
    assert np.array_equal(s.read(), first)
    s.push(pcm[cut:])
    s.read()
    s.reset()
    assert s.samples == 0
    with pytest.raises(AudioTooShortError):
        s.read()
    s.push(pcm[:cut])
    assert np.array_equal(s.read(), first)


def test_extreme_signals(default_model):
    em = default_model._engine
    rng = np.random.default_rng(5)
    for pcm in (np.zeros(4000, np.int16), np.tile(np.array([-32768, 32767], np.int16), 2000),
                rng.integers(-32768, 32768, 5000).astype(np.int16), np.full(3000, 12345, np.int16)):
        assert np.array_equal(engine_stream(em, pcm, 101), em.predict(pcm))


@pytest.fixture(scope="module")
def other_models(speech_clips):
    """Random models of other shapes: wide, odd mel count, pool after the last or the first layer,
    other STFT sizes (hop = n_fft, n_fft 128)."""
    torch.manual_seed(7)
    base = CONFIGS["default"].__class__
    cfgs = [
        CONFIGS["wide"],
        base(n_mels=15, channels=5, n_layers=4, pool_after=4),
        base(n_mels=7, channels=3, n_layers=3, pool_after=1),
        base(n_mels=9, channels=4, n_layers=5, pool_after=2, n_fft=128, hop=64),
        base(n_mels=12, channels=6, n_layers=2, pool_after=1, n_fft=32, hop=32),
        # one channel, pool after the last layer: AVX2 row stores once spilled into the line buffer
        base(n_mels=16, channels=1, n_layers=3, pool_after=3, hop=64),
    ]
    return [model_bytes(quantize(Wav2Small(cfg).eval(), speech_clips[:2])) for cfg in cfgs]


def test_other_shapes_stream_equals_batch(other_models, speech_clips):
    pcm = to_int16(speech_clips[2])[:20000]
    for data in other_models:
        em = _engine.Model(data)
        n_fft, hop = em.config["n_fft"], em.config["hop"]
        for n in [n_fft + hop * k for k in range(12)] + [n_fft + 1, 20000]:
            for chunk in (1, 37) if n < 2000 else (37, 5000):
                assert np.array_equal(engine_stream(em, pcm[:n], chunk, read_every=2), em.predict(pcm[:n])), (em.config, n, chunk)


def test_other_shapes_stream_equals_batch_on_every_kernel_set(other_models, speech_clips):
    """The same with each kernel set this CPU runs, not only the best: with 3 channels the AVX2 conv
    row's 8-byte stores once wrote past the row into the stream's saved input row (batch was right,
    the stream not); on an AVX-512 CPU layers whose input offset is -128 take the AVX2 kernel."""
    pcm = to_int16(speech_clips[2])[:6000]
    for data in other_models[1:]:   # the wide model: the test above
        em = _engine.Model(data)
        batch = em.predict(pcm)
        for isa in _engine.available_isas():
            em.set_isa(isa)
            assert em.isa == isa
            assert np.array_equal(em.predict(pcm), batch), (isa, em.config)
            assert np.array_equal(engine_stream(em, pcm, 37, read_every=3), batch), (isa, em.config)


def test_other_shapes_c_tests_with_canaries(other_models, tmp_path):
    """The C tests (test_w2s) on every other shape: nothing written past the stream arena, every
    chunking and prefix bit-identical with batch."""
    require_tool("make")
    out = tmp_path / "build"
    r = subprocess.run(["make", "-C", str(REPO / "csrc"), f"OUT={out}", str(out / "test_w2s")], check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for i, data in enumerate(other_models[1:]):  # the wide model is slow here; the test above has it
        path = tmp_path / f"shape{i}.w2s"
        path.write_bytes(data)
        r = subprocess.run([str(out / "test_w2s"), str(path)], check=False, capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.strip().endswith("test_w2s: PASS (0 failures)"), r.stdout


# ---- memory ------------------------------------------------------------------------------------------


def test_memory_is_constant_and_within_target(default_model, speech_clips):
    em = default_model._engine
    sizes = _engine.stream_sizes(em)
    assert sizes["total"] == em.stream_arena_size
    assert sizes["total"] >= sizes["state"] + sizes["vox"] + sizes["lines"] + max(sizes["work_push"], sizes["work_read"])
    assert sizes["total"] <= 8192, sizes  # issue 5: streaming working RAM <= 8 KB for any length
    assert em.nbytes <= 16384  # issue 5: model <= 16 KB, uncertainty head included
    # Python keeps nothing per pushed chunk either: 10 minutes of audio (int16 and float chunks, some
    # resampled) grow the traced heap by a few KB at most (the arena is fixed at creation)
    import tracemalloc

    s, r = default_model.stream(), default_model.stream(sample_rate=44100)
    chunk, chunk44 = to_int16(speech_clips[0])[:16000], np.resize(speech_clips[1], 44100).astype(np.float32)
    s.push(chunk)
    r.push(chunk44)   # first pushes allocate once (the resampler's filters)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(300):   # 300 x (1 s + 1 s at 44.1 kHz)
        s.push(chunk)
        r.push(chunk44)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 16384, grown
    assert s.arena_bytes == r.arena_bytes == sizes["total"] and s.seconds > 300


# ---- running prenorm ------------------------------------------------------------------------------------


def _div_round(x: int, d: int) -> int:  # w2s_div_round: nearest, ties away from zero
    return (x + d // 2) // d if x >= 0 else -((-x + d // 2) // d)


def running_prenorm(pcm: np.ndarray, n_fft: int, hop: int, log2_window: int, eps: int,
                    prior: tuple[int, int, int] = (0, 0, 0)) -> list[tuple[int, int]]:
    """NumPy/Python-int model of the running estimate: (mean, log2_var) used by each frame."""
    window = 1 << log2_window
    s, q, n = prior
    out = []
    for t in range((len(pcm) - n_fft) // hop + 1):
        block = pcm[t * hop + n_fft - (n_fft if t == 0 else hop) : t * hop + n_fft].astype(np.int64) * 16
        excess = n + len(block) - window
        if excess > 0:
            s -= _div_round(s, n) * excess
            q -= _div_round(q, n) * excess
            n -= excess
        s += int(block.sum())
        q += int((block * block).sum())
        n += len(block)
        mean = _div_round(s, n)
        var = max(_div_round(q, n) - mean * mean, 0)
        out.append((mean, int(_engine.log2_q16(np.array([var + eps], np.uint64))[0])))
    return out


def test_running_prenorm_matches_its_integer_model(default_model, speech_clips):
    em = default_model._engine
    eps = int(em.tensors()["front.params"][0])
    pcm = to_int16(speech_clips[7])[:30000]
    for k in (8, 12, 16):
        want = running_prenorm(pcm, 64, 32, k, eps)
        s = _engine.Stream(em, _engine.PRENORM_RUNNING, log2_window=k)
        pushed = 0
        for t in (0, 1, 2, 100, 777, len(want) - 1):  # after frame t is complete
            end = t * 32 + 64
            s.push(pcm[pushed:end])
            pushed = end
            assert s.prenorm() == want[t], (k, t)


def test_running_prenorm_prior_round_trips(default_model, speech_clips):
    """A prior of the clip's own statistics, weighted as a full window, starts the estimate there."""
    em = default_model._engine
    pcm = to_int16(speech_clips[4])
    mean, log2_var = em.clip_stats(pcm)
    s = _engine.Stream(em, _engine.PRENORM_RUNNING, mean, log2_var, log2_window=16, prior_samples=1 << 16)
    s.push(pcm[:64])  # one frame: 64 fresh samples against 65,536 of prior
    m2, v2 = s.prenorm()
    assert abs(m2 - mean) <= 1 + abs(mean) // 100 and abs(v2 - log2_var) < 65536 // 8


def test_running_stream_is_close_to_batch_and_chunking_free(default_model, speech_clips):
    pcm = to_int16(speech_clips[0])
    a, b = default_model.stream(), default_model.stream()
    push_all(a, pcm, 1000)
    push_all(b, pcm, 7, read_every=500)
    assert np.array_equal(a.read_fixed(), b.read_fixed())
    # measured 0.071 for this 1.1 s clip; 0.003-0.087 over the 24 test clips, the short full-band ones
    # furthest (the running estimate starts from a prior; docs/engine.md measures it on 40 clips)
    assert np.abs(a.read().as_array() - default_model.predict(pcm).as_array()).max() < 0.1
    # the running estimate follows its own clip: nearer its batch A/D/V than the other clips' are
    # (measured: 0.011 against 0.020 on average; a stream that ignored its input would be as far)
    clips = [to_int16(c) for c in speech_clips[:8]]
    running = [default_model.stream() for _ in clips]
    for s, c in zip(running, clips):
        s.push(c)
    r = np.array([s.read().as_array() for s in running])
    batch = np.array([default_model.predict(c).as_array() for c in clips])
    gap = np.abs(r[:, None, :] - batch[None, :, :]).mean(axis=2)   # gap[i, j]: stream i to batch j
    own, other = np.diag(gap).mean(), gap[~np.eye(len(clips), dtype=bool)].mean()
    assert own < 0.75 * other, (own, other)


# ---- Python API ----------------------------------------------------------------------------------------


def test_a_list_of_ints_is_int16_samples(default_model, speech_clips):
    """`pcm.tolist()` of an int16 clip was read as floats and clipped at 1.0: a square wave."""
    pcm = to_int16(speech_clips[1])[:16000]
    from_list, from_array = default_model.stream(), default_model.stream()
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # nothing clipped, nothing to say
        from_list.push(pcm.tolist())
    from_array.push(pcm)
    assert np.array_equal(from_list.read_fixed(), from_array.read_fixed())
    assert default_model.predict(pcm.tolist()) == default_model.predict(pcm)


def test_float_chunks_and_resampling(default_model, speech_clips):
    pcm = to_int16(speech_clips[1])
    s = default_model.stream(stats=default_model.clip_stats(pcm))
    push_all(s, pcm.astype(np.float32) / 32768.0, 500)  # floats are full scale 1.0, never rescaled
    assert np.array_equal(s.read_fixed(), default_model.predict_fixed(pcm))
    loud, full_scale = default_model.stream(), default_model.stream()
    with pytest.warns(ClippingWarning, match="reaches 3, beyond full scale 1.0: clipped"):
        loud.push(np.array([2.0, -3.0] * 100))  # clipped at full scale, with a word
    full_scale.push(np.array([1.0, -1.0] * 100))
    assert np.array_equal(loud.read_fixed(), full_scale.read_fixed())
    x44 = soxr.resample(pcm.astype(np.float32) / 32768.0, 16000, 44100)
    r = default_model.stream(stats=default_model.clip_stats(x44, 44100), sample_rate=44100)
    push_all(r, x44, 4410)
    assert 0 < len(default_model.prepare(x44, 44100)) - r.samples < 1600  # the resampler holds back a few ms
    # measured 0.003 (the resampler's stream holds back its last few ms); the clips differ by 0.02-0.04
    assert np.abs(r.read().as_array() - default_model.predict(x44, 44100).as_array()).max() < 0.01
    r.finish()   # the input has ended: what the resampler held is analysed, and the two passes are batch
    assert r.samples == len(default_model.prepare(x44, 44100))
    assert np.array_equal(r.read_fixed(), default_model.predict_fixed(x44, 44100))
    before = r.samples
    r.finish()   # nothing more to flush
    assert r.samples == before
    same_rate = default_model.stream(stats=default_model.clip_stats(pcm))
    push_all(same_rate, pcm, 700)
    same_rate.finish()   # nothing to flush at the model's rate
    assert np.array_equal(same_rate.read_fixed(), default_model.predict_fixed(pcm))


@pytest.mark.parametrize("rate", [16000, 48000])
def test_ready_says_when_read_can_answer(default_model, speech_clips, rate):
    """README's loop: push 10 ms chunks and read once ready. Before that read() raises; a resampling
    stream holds back the resampler's delay first (the audit's case: 48 kHz, 8 chunks)."""
    x = soxr.resample(speech_clips[0][:16000], 16000, rate) if rate != 16000 else speech_clips[0][:16000]
    s = default_model.stream(sample_rate=rate)
    first = None
    for k, i in enumerate(range(0, len(x), rate // 100)):
        s.push(x[i : i + rate // 100])
        if not s.ready:
            with pytest.raises(AudioTooShortError):
                s.read()
        elif first is None:
            first = k
        if s.ready:
            assert np.isfinite(s.read().as_array()).all()
    assert first == (0 if rate == 16000 else 7)   # 64 samples; at 48 kHz about 80 ms


def test_a_loud_float_chunk_is_clipped_before_resampling(default_model):
    """A float64 chunk beyond float32's range reached soxr as inf, came out as NaN and left the
    stream silent (and its filter poisoned) for the next ~1,200 samples; now it is clipped at full
    scale first."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(44100) * 0.1).astype(np.float32)
    loud, clipped = default_model.stream(sample_rate=44100), default_model.stream(sample_rate=44100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ClippingWarning)   # said, and tested above; nothing else may warn
        loud.push(np.full(441, 1e300))
        loud.push(x)
    clipped.push(np.ones(441, np.float32))
    clipped.push(x)
    assert np.array_equal(loud.read_fixed(), clipped.read_fixed())


def test_errors(default_model, monkeypatch):
    s = default_model.stream()
    with pytest.raises(AudioTooShortError):
        s.read()
    with pytest.raises(wav2small.errors.AudioError):
        s.push(np.zeros((10, 2), np.int16))
    bad_params = {  # each used to escape as IndexError, TypeError, a pybind11 signature or "NULL pointer"
        "log2_window must be within 8..20": dict(log2_window=_engine.STREAM_MAX_LOG2_WINDOW + 1),
        r"stats\[1\] \(log2_var\) must be within": dict(stats=(0, -5)),
        r"stats\[0\] \(mean\) must be within": dict(stats=(2**40, 0)),
        "stats must be a pair": dict(stats=(1,)),
        "prior must be a pair": dict(prior=5),
        "prior_samples must be within 0..65536": dict(prior_samples=2**40),
        "log2_window must be an int": dict(log2_window=12.5),
        "prior_samples must be within 0..256": dict(log2_window=8, prior_samples=257),
    }
    for match, kw in bad_params.items():
        with pytest.raises(ArgumentError, match=match):
            default_model.stream(**kw)
    assert issubclass(ArgumentError, Wav2SmallError) and issubclass(ArgumentError, ValueError)
    # the edges are accepted
    default_model.stream(log2_window=8, prior_samples=256, prior=(-_engine.STATS_MAX_ABS_MEAN, 0))
    default_model.stream(stats=(_engine.STATS_MAX_ABS_MEAN, _engine.STATS_MAX_LOG2_VAR))
    for rate in (True, "8000", float("nan"), float("inf"), 0, 10**400):   # a stream's rate is a setting
        with pytest.raises(ArgumentError, match="sample rate must be a positive number"):
            default_model.stream(sample_rate=rate)
    made = record_calls(monkeypatch, soxr, "ResampleStream")   # soxr hung on 2**80: refused before it
    for rate in (2**80, 1, 249.0):   # the others make 16,000 and 64+ samples of one
        with pytest.raises(ArgumentError, match="resamples by at most 64x"):
            default_model.stream(sample_rate=rate)
    assert made == []
    with pytest.raises(AudioTooShortError):
        default_model.clip_stats(np.zeros(10, np.int16))


def test_streams_in_threads(default_model, speech_clips):
    clips = [to_int16(c) for c in speech_clips[8:12]]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        s = default_model.stream(stats=default_model.clip_stats(clips[i]))
        push_all(s, clips[i], 160)
        results[i] = s.read_fixed()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(clips))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, pcm in enumerate(clips):
        assert np.array_equal(results[i], default_model.predict_fixed(pcm))
