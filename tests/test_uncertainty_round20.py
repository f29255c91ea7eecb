"""--voice_weight: annotated rows drawn more often from the named training voices (twentieth round)."""
import numpy as np
import pytest

from training.uncertainty import (Pools, UQConfig, annotated_picks, parse_voice_weight, pick_probabilities,
                                  train)


def _pools(voices: list[str], weight: str) -> Pools:
    clips = [np.zeros(16, np.float32) for _ in voices]
    p = Pools(clips, np.zeros((len(voices), 3)), [], [], [], list(voices))
    p.pick_p = pick_probabilities(p.voices, parse_voice_weight(weight))
    return p


def test_off_draws_as_before_and_weights_shift_the_draws():
    voices = ["whisper"] * 10 + ["aunty"] * 90
    cfg = UQConfig(batch_speech=16, seed=3)
    off = _pools(voices, "")
    assert off.pick_p is None
    # off: the recorded runs' draw, rng.integers of the step's generator
    rng = np.random.default_rng([3, 0x5A, 7])
    assert np.array_equal(annotated_picks(off, cfg, 7)[1], rng.integers(100, size=16))
    on = _pools(voices, "whisper:9")
    assert np.isclose(on.pick_p[:10].sum(), 90 / 180) and np.isclose(on.pick_p.sum(), 1.0)
    drawn = np.concatenate([annotated_picks(on, cfg, it)[1] for it in range(400)])
    share = (drawn < 10).mean()
    assert 0.45 < share < 0.55, share   # 10 % of the clips, half of the draws
    # a pure function of (seed, step)
    assert np.array_equal(annotated_picks(on, cfg, 11)[1], annotated_picks(on, cfg, 11)[1])


@pytest.mark.parametrize("spec", ["whisper", "whisper:0", "whisper:-2", ":3", "whisper:x", "whisper:inf"])
def test_malformed_weights_are_refused(spec):
    with pytest.raises(SystemExit, match="--voice_weight must be"):
        parse_voice_weight(spec)


def test_unknown_voice_is_named_and_refused_before_the_run(tmp_path):
    with pytest.raises(SystemExit, match="does not have: nobody"):
        pick_probabilities(["aunty", "whisper"], {"nobody": 2.0})
    with pytest.raises(SystemExit, match="--voice_weight must be"):
        train(UQConfig(out_dir=str(tmp_path / "run"), voice_weight="whisper:0"))
    assert not (tmp_path / "run").exists()
    assert parse_voice_weight(" whisper:4 , croak:2 ") == {"whisper": 4.0, "croak": 2.0}
