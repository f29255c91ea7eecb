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


def test_load_pools_weights_the_named_voice_and_refuses_one_it_lacks():
    from training.uncertainty import load_pools

    small = dict(n_clips=120, ood_per_kind=1, real_per_group=1, babble_bank=1, batch_speech=6, batch_real=1,
                 batch_ood=1)
    plain = load_pools(UQConfig(**small), lambda m: None)
    assert plain.pick_p is None
    voice = plain.voices[0]
    k = sum(v == voice for v in plain.voices)
    lines: list[str] = []
    pools = load_pools(UQConfig(**small, voice_weight=f"{voice}:5"), lines.append)
    assert len(pools.pick_p) == len(pools.annotated)
    share = float(pools.pick_p[np.array(pools.voices) == voice].sum())
    assert np.isclose(share, 5 * k / (5 * k + len(pools.voices) - k))
    assert any(f"{k} clips of {voice}:5" in line for line in lines)
    with pytest.raises(SystemExit, match="does not have: nobody"):
        load_pools(UQConfig(**small, voice_weight="nobody:2"), lambda m: None)
