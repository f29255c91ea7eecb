"""The decision's modulation test (csrc/modulation.c): the engine against its NumPy reference and its
float form, its edges, the stream, and the decision it feeds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from wav2small import Thresholds, _engine
from wav2small import _reference as ref
from wav2small.model import to_int16

Q = float(1 << _engine.Q_DB)


def _modulation(engine: _engine.Model, pcm: np.ndarray) -> tuple[int, np.ndarray]:
    """The engine's modulation of one clip, and the log-mel frames it came from (the trace)."""
    stages = {s: a for s, _, a in engine.trace(pcm)}
    return int(stages["modulation"][0]), stages["logmel"]


def test_modulation_matches_reference_at_every_block_edge(default_model, speech_clips):
    """Clip lengths around whole blocks: one frame short of two blocks is 0, a partial last block
    is left out, and the engine equals the reference formula everywhere."""
    e = default_model._engine
    c, block = e.config, int(e.tensors()["decide.params"][3])
    pcm = to_int16(speech_clips[0])
    for frames in (1, block, 2 * block - 1, 2 * block, 2 * block + 1, 3 * block, 10 * block + 3):
        n = c["n_fft"] + (frames - 1) * c["hop"]
        got, logmel = _modulation(e, pcm[:n])
        assert logmel.shape[0] == frames
        assert got == ref.modulation(e.tensors(), logmel), frames
        if frames < 2 * block:
            assert got == 0, frames
    # the last partial block does not count: with the same prenorm statistics (a stream's fixed
    # ones, so that the shared frames are the same), 2 blocks and 3 blocks less one frame agree
    s = default_model.stream(stats=default_model.clip_stats(pcm))
    s.push(pcm[: c["n_fft"] + (2 * block - 1) * c["hop"]])
    at = c["n_outputs"]   # the outputs, then the modulation (then the steadiness)
    two = s.read_fixed()[at]
    s.push(pcm[c["n_fft"] + (2 * block - 1) * c["hop"]: c["n_fft"] + (3 * block - 2) * c["hop"]])
    assert two > 0 and s.read_fixed()[at] == two
    s.push(pcm[c["n_fft"] + (3 * block - 2) * c["hop"]: c["n_fft"] + (3 * block - 1) * c["hop"]])
    assert s.read_fixed()[at] != two   # the third block, complete


def test_modulation_extremes_stay_in_range(default_model):
    """Full-scale square waves switching on and off (the largest level swings int16 audio has) and
    long clips keep the sums in 64 bits: engine equals reference."""
    e = default_model._engine
    n = 16000 * 30
    on = (np.arange(n) // 800) % 2 == 0   # 50 ms on, 50 ms off
    loud = np.where(on, np.tile(np.array([-32768, 32767], np.int16), n // 2), 0).astype(np.int16)
    got, logmel = _modulation(e, loud)
    assert got == ref.modulation(e.tensors(), logmel)
    assert 20 * Q < got < 128 * Q   # tens of dB between full scale and the floor


def test_modulation_is_the_float_form(default_model, default_float, speech_clips):
    """The engine's integer modulation is training.model.modulation_db of the float log-mel, to a
    small fraction of a dB (the front ends differ by their rounding only)."""
    from training.model import modulation_db

    block = int(default_model._engine.tensors()["decide.params"][3])
    for clip in speech_clips[:6]:
        pcm = to_int16(clip)
        got = _modulation(default_model._engine, pcm)[0] / Q
        with torch.no_grad():
            want = float(modulation_db(default_float.vgg7.logmel(torch.from_numpy(pcm / 32768.0).float()[None]),
                                       block)[0])
        assert abs(got - want) < 0.05, (got, want)
        assert got > 5.0   # speech rises and falls


def test_stream_reads_the_batch_modulation(default_model, speech_clips):
    """A stream with the clip's own prenorm statistics reads the batch outputs, modulation included,
    after any chunking, and again after a reset."""
    pcm = to_int16(speech_clips[1])
    want = default_model.predict_fixed(pcm)
    s = default_model.stream(stats=default_model.clip_stats(pcm))
    for chunk in np.array_split(pcm, 7):
        s.push(chunk)
    assert np.array_equal(s.read_fixed(), want)
    s.reset()
    s.push(pcm)
    assert np.array_equal(s.read_fixed(), want)
    assert s.read().modulation_db == want[default_model.config["n_outputs"]] / Q


def test_decision_says_no_speech_to_a_steady_level(default_model, speech_clips):
    """With the speech probability and sigma tests opened wide, the modulation alone decides: speech
    is reliable, steady noise is "no speech"; min_modulation_db=0 lets the noise through, None keeps
    the model's threshold."""
    m = default_model
    assert m.thresholds.min_modulation_db == pytest.approx(5.0)
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(32000) * 3000).astype(np.int16)
    speech = to_int16(speech_clips[2])
    wide = Thresholds(max_sigma=1e6, min_speech_prob=0.0)
    p_noise, p_speech = m.predict(noise, thresholds=wide), m.predict(speech, thresholds=wide)
    assert p_noise.modulation_db < 5.0 < p_speech.modulation_db
    assert p_noise.decision == "no speech" and p_speech.decision == "reliable"
    assert m.predict(noise, thresholds=Thresholds(1e6, 0.0, 0.0)).decision == "reliable"
    assert m.predict(speech, thresholds=Thresholds(1e6, 0.0, p_speech.modulation_db + 0.01)).decision == "no speech"
    # the same decisions from kept outputs, and the engine's own w2s_decide with the model's thresholds
    q = m.predict_fixed(noise)
    assert m.from_fixed(q, wide).decision == "no speech"
    assert m._engine.decide(q, *m._engine.thresholds) == _engine.NO_SPEECH


@pytest.mark.parametrize("bad", [-1.0, 200.0, float("nan"), "5", True])
def test_thresholds_refuse_a_bad_modulation(bad):
    with pytest.raises(ValueError, match="min_modulation_db"):
        Thresholds(0.2, 0.5, bad)


def test_model_file_refuses_bad_modulation_constants(default_model):
    """decide.params' block length (1..64) and threshold (0..32767), and decide.steady's block
    length (1..64), level (int16), cos^2 (0..4096) and threshold (0..32768) are checked when the
    file loads."""
    import struct
    import zlib

    from wav2small.errors import ModelFormatError

    data = bytearray(_default_path().read_bytes())
    end = len(data) - 4   # decide.params then decide.steady close the tensors
    steady = end - 16     # [steady_block, steady_level, steady_cos2, max_steady]
    params = steady - 16  # [.., min_modulation, mod_block]
    for offset, value in ((params + 12, 0), (params + 12, 65), (params + 8, -1), (params + 8, 32768),
                          (steady, 0), (steady, 65), (steady + 4, -32769), (steady + 4, 32768),
                          (steady + 8, -1), (steady + 8, 4097), (steady + 12, -1), (steady + 12, 32769)):
        bad = bytearray(data)
        struct.pack_into("<i", bad, offset, value)
        struct.pack_into("<I", bad, end, zlib.crc32(bad[:end]))
        with pytest.raises(ModelFormatError):
            _engine.Model(bytes(bad))


def _default_path():
    from importlib import resources

    return resources.files("wav2small") / "models" / "default.w2s"
