"""--kind_shares: a kind's pool grows (--kind_pool) without taking draws from the others; --kind_weight
moves draws between kinds (twenty-eighth round)."""
import re

import numpy as np
import pytest

from training.uncertainty import Pools, UQConfig, batch, kind_draws, parse_kind_weight, share_probabilities, train


def test_shares_are_those_of_the_common_pool():
    common = dict.fromkeys(("music", "noise", "babble", "tone", "silence"), 150)
    assert kind_draws({**common, "effects": 150}, 150) == pytest.approx([1 / 6] * 6)
    # three times the effects: still a sixth of the draws, each effects clip a third as often
    wide = {**common, "effects": 450}
    assert kind_draws(wide, 150) == pytest.approx([1 / 6] * 6)
    p = share_probabilities(wide, 150)
    assert len(p) == 1200 and p.sum() == pytest.approx(1.0)
    assert p[-450:].sum() == pytest.approx(1 / 6) and p[-1] == pytest.approx(p[0] / 3)
    # a kind with fewer clips than --ood_per_kind keeps the smaller share it had; --espeak_babble's
    # clips, not capped by --ood_per_kind, count whole
    shares = kind_draws({"music": 150, "babble": 60, "effects": 450, "espeak_babble": 90}, 150)
    assert shares == pytest.approx([150 / 450, 60 / 450, 150 / 450, 90 / 450])


def _pools(n_music: int, n_effects: int, n: int) -> Pools:
    """Two kinds of non-speech, each clip a constant: music 1..n_music, effects -1..-n_effects."""
    ood = ([np.full(n, k, np.float32) for k in range(1, n_music + 1)]
           + [np.full(n, -k, np.float32) for k in range(1, n_effects + 1)])
    speech = [np.full(n, 0.5, np.float32) for _ in range(4)]
    return Pools(speech, np.zeros((4, 3)), speech[:1], ood, [])


@pytest.mark.parametrize("shares, effects_share", [(False, 0.75), (True, 0.5)])
def test_batches_draw_each_kind_as_often_as_the_common_pool(shares, effects_share):
    cfg = UQConfig(batch_speech=2, batch_real=1, batch_ood=8, crop_seconds=0.01, corrupt_prob=0.0, seed=4)
    n = int(cfg.crop_seconds * 16000)
    pools = _pools(10, 30, n)
    if shares:
        pools.ood_p = share_probabilities({"music": 10, "effects": 30}, 10)
    drawn = np.concatenate([batch(pools, cfg, it)[0][3:, 0].numpy() for it in range(300)])
    assert abs((drawn < 0).mean() - effects_share) < 0.05
    # every effects clip is drawn, so the wider pool is used whole
    assert len(set(drawn[drawn < 0].tolist())) == 30


def test_load_pools_logs_and_keeps_the_shares():
    from training.uncertainty import load_pools

    small = dict(n_clips=120, ood_per_kind=1, real_per_group=1, babble_bank=1, batch_speech=6, batch_real=1,
                 batch_ood=1, extended_nonspeech=True)
    plain = load_pools(UQConfig(**small, kind_pool="effects:3"), lambda m: None)
    assert plain.ood_p is None
    lines: list[str] = []
    pools = load_pools(UQConfig(**small, kind_pool="effects:3", kind_shares=True), lines.append)
    assert [len(x) for x in pools.ood] == [len(x) for x in plain.ood]   # the same pool, drawn otherwise
    assert len(pools.ood) == 8 and pools.ood_p == pytest.approx([1 / 6] * 5 + [1 / 18] * 3)
    assert any(line.startswith("--kind_shares: ") and "effects 3 clips, 16.7% of the draws" in line
               for line in lines)


def test_kind_weight_moves_draws_between_named_kinds_only():
    common = dict.fromkeys(("music", "noise", "babble", "tone", "silence"), 150)
    counts = {**common, "effects": 450}
    weights = parse_kind_weight("effects:2.25, noise:0.58,tone:0.58,silence:0.58")
    shares = dict(zip(counts, kind_draws(counts, 150, weights)))
    total = 2 + 2.25 + 3 * 0.58
    assert shares["effects"] == pytest.approx(2.25 / total) and shares["music"] == pytest.approx(1 / total)
    assert shares["noise"] == pytest.approx(0.58 / total) and sum(shares.values()) == pytest.approx(1.0)
    p = share_probabilities(counts, 150, weights)
    assert p[-450:].sum() == pytest.approx(shares["effects"]) and p[:150].sum() == pytest.approx(shares["music"])


@pytest.mark.parametrize("option, match", [
    ("--kind_weight=effects:2", "--kind_weight=effects:2 weighs the shares of --kind_shares's draws: add "
                                "--kind_shares=true"),
    ("--kind_weight=effect:2", "--kind_weight names kinds training.ood does not have: effect (it has music, "
                               "noise, babble, tone, silence, effects)"),
    ("--kind_weight=effects:0", "--kind_weight must be KIND:W[,KIND:W...] with W > 0 (e.g. effects:2.25), "
                                "got 'effects:0'"),
    ("--kind_weight=effects", "--kind_weight must be KIND:W"),
])
def test_bad_kind_weight_is_refused_before_the_pools(tmp_path, option, match):
    key, value = option[2:].split("=", 1)
    with pytest.raises(SystemExit, match=re.escape(match)):
        train(UQConfig(out_dir=str(tmp_path / "run"), **{key: value}))
    assert not (tmp_path / "run").exists()


def test_ood_seed_takes_the_non_speech_pool_of_another_seed_only():
    from training.ood import nonspeech
    from training.uncertainty import load_pools, voice_range

    small = dict(n_clips=120, ood_per_kind=1, real_per_group=1, babble_bank=1, batch_speech=6, batch_real=1,
                 batch_ood=1, seed=3)
    own = load_pools(UQConfig(**small), lambda m: None)
    other = load_pools(UQConfig(**small, ood_seed=7), lambda m: None)
    cfg = UQConfig(**small)
    want = [c.audio for c in nonspeech("train", seed=7, max_per_kind=1, extended=cfg.extended_nonspeech,
                                       babble_voices=voice_range(cfg.babble_voices),
                                       babble_speed=cfg.babble_speed)]
    assert len(other.ood) == len(want) and all(np.array_equal(a, b) for a, b in zip(other.ood, want))
    assert not all(np.array_equal(a, b) for a, b in zip(other.ood, own.ood))
    # everything else is --seed's
    assert all(np.array_equal(a, b) for a, b in zip(other.annotated, own.annotated))
    assert all(np.array_equal(a, b) for a, b in zip(other.real, own.real))


def test_data_seed_and_ood_seed_leave_the_seed_only_the_batches():
    from training.uncertainty import load_pools

    small = dict(n_clips=120, ood_per_kind=1, real_per_group=1, babble_bank=1, batch_speech=6, batch_real=1,
                 batch_ood=1)
    seven = load_pools(UQConfig(**small, seed=7), lambda m: None)
    moved = load_pools(UQConfig(**small, seed=3, data_seed=7, ood_seed=7), lambda m: None)
    for name in ("annotated", "real", "ood", "babble"):
        a, b = getattr(seven, name), getattr(moved, name)
        assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b)), name
    assert np.array_equal(seven.targets, moved.targets) and seven.voices == moved.voices
    own = load_pools(UQConfig(**small, seed=3), lambda m: None)
    assert not np.array_equal(own.targets, moved.targets)   # seed 3's corpus is another


def test_the_card_says_how_the_non_speech_pool_was_made():
    from dataclasses import asdict

    from training.release import recipe_notes

    plain = asdict(UQConfig())
    assert recipe_notes(plain) == ""
    flat = " ".join(recipe_notes({**plain, "kind_pool": "effects:450", "kind_shares": True,
                                  "kind_weight": "effects:2.25,noise:0.375", "ood_seed": 15,
                                  "data_seed": 15, "seed": 14}).split())
    assert "The non-speech pool held 450 effects clips (the other kinds 150 each)." in flat
    assert ("drawn kind by kind, each kind as often as a pool of 150 per kind draws it, times effects:2.25, "
            "noise:0.375.") in flat
    assert "Seed 15 chose the speech pools and the thresholds' clips (--data_seed), seed 14 the rest." in flat
    assert "Seed 15 chose the non-speech pool (--ood_seed), seed 14 the rest." in flat
