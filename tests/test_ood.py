"""OOD data (training/ood.py) and the silero-vad baseline (training/vad_baseline.py), on real audio.

Every Debian package these tests read is installed by .ci/run; a missing one fails with its name
(no skips)."""
from __future__ import annotations

import numpy as np
import pytest

from training import ood
from training.vad_baseline import SileroVAD, reduce_probs

N_PER_KIND = 6


@pytest.fixture(scope="module")
def clips() -> dict[str, list[ood.Clip]]:
    return {split: ood.nonspeech(split, seed=0, max_per_kind=N_PER_KIND) for split in ood.SPLITS}


@pytest.fixture(scope="module")
def listing() -> dict[str, list]:
    return {split: ood.items(split, seed=0, max_per_kind=None) for split in ood.SPLITS}


@pytest.fixture(scope="module")
def speech(speech_clips) -> np.ndarray:
    clip = max(speech_clips, key=len)[:48000].astype(np.float64)
    return (0.5 * clip / np.abs(clip).max()).astype(np.float32)


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD()


def power_db(x) -> float:
    return 10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2))


def band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / 16000)
    return float(spec[(f >= lo) & (f < hi)].sum())


# ------------------------------------------------------------------------------------------------
# non-speech clips

def test_every_kind_in_both_splits_and_clips_are_well_formed(clips):
    for split, cs in clips.items():
        assert {c.kind for c in cs} == set(ood.KINDS), split
        for kind in ood.KINDS:
            assert sum(c.kind == kind for c in cs) == N_PER_KIND, (split, kind)
        assert len({c.name for c in cs}) == len(cs), "clip names must be unique within a split"
        for c in cs:
            a = c.audio
            assert c.rate == 16000 and a.dtype == np.float32 and a.ndim == 1, c.name
            assert np.all(np.isfinite(a)), c.name
            assert 1.0 <= c.seconds <= 8.0, (c.name, c.seconds)
            assert np.max(np.abs(a)) <= 1.0, c.name
            assert c.source and c.name.startswith(c.kind + "/"), c.name
        # non-silent kinds are audible; silence is at most near-silence
        for c in cs:
            level = power_db(c.audio) if np.any(c.audio) else -np.inf
            if c.kind == "silence":
                assert level < -35, (c.name, level)
            elif c.kind in ("noise", "babble", "tone"):
                assert level > -50, (c.name, level)


def test_each_kind_draws_on_several_sources(listing):
    for split, its in listing.items():
        for kind in ("music", "effects"):
            sources = {it.source for it in its if it.kind == kind}
            assert len(sources) >= 2, (split, kind, sources)
        real = {it.kind for it in its if it.files}
        assert {"music", "effects"} <= real, (split, real)   # real recordings, not only generators
        # a cap takes sources round-robin, so a small cap still has every source of a kind
        capped = ood.items(split, max_per_kind=8, kinds=("music", "effects"))
        for kind in ("music", "effects"):
            assert ({it.source for it in capped if it.kind == kind}
                    == {it.source for it in its if it.kind == kind}), (split, kind)


def test_splits_share_no_file_and_no_generator(listing, clips):
    files = {s: {f for it in its for f in it.files} for s, its in listing.items()}
    assert files["train"] and files["eval"]
    assert not files["train"] & files["eval"], sorted(files["train"] & files["eval"])[:5]
    generators = {s: {it.source for it in its if not it.files and it.kind != "babble"} for s, its in listing.items()}
    assert generators["train"] and generators["eval"]
    assert not generators["train"] & generators["eval"], generators
    # rendered clips name the same files their listing did (babble names its voice files)
    for split, cs in clips.items():
        rendered = {f for c in cs for f in c.files if c.kind != "babble"}
        assert rendered <= files[split]


def test_babble_uses_many_voices_and_eval_voices_are_unseen(clips):
    pools = {s: ood.babble_voices(s) for s in ood.SPLITS}
    for split, pool in pools.items():
        assert len(pool) >= 6, (split, sorted(pool))
    assert not set(pools["train"]) & set(pools["eval"])
    langs = {s: {ood._language(g) for g in pool} for s, pool in pools.items()}
    assert not langs["train"] & langs["eval"], "a language in both splits may be the same volunteer"
    files = {s: {f for fs in pool.values() for f in fs} for s, pool in pools.items()}
    assert not files["train"] & files["eval"]
    from training.corpus import group_split

    assert all(group_split(g) != "train" for g in pools["eval"]), "eval babble voices must be held out"
    for split, cs in clips.items():
        voice_of = {f: g for g, fs in pools[split].items() for f in fs}
        for c in cs:
            if c.kind == "babble":
                assert set(c.files) <= files[split], c.name
                assert len({voice_of[f] for f in c.files}) >= 6, c.name


def test_nonspeech_is_deterministic(clips):
    again = ood.nonspeech("eval", seed=0, max_per_kind=N_PER_KIND)
    assert [c.name for c in again] == [c.name for c in clips["eval"]]
    for a, b in zip(again, clips["eval"]):
        assert np.array_equal(a.audio, b.audio) and a.files == b.files, a.name
    other = ood.nonspeech("train", seed=1, max_per_kind=2, kinds=("noise", "babble"))
    first = ood.nonspeech("train", seed=0, max_per_kind=2, kinds=("noise", "babble"))
    assert not any(len(a.audio) == len(b.audio) and np.array_equal(a.audio, b.audio) for a, b in zip(other, first))
    with pytest.raises(ValueError, match="split"):
        ood.nonspeech("test")
    with pytest.raises(ValueError, match="kind"):
        ood.nonspeech("train", kinds=("speech",))


def test_a_segment_span_is_the_stretch_of_its_file_it_plays(listing):
    """A clip cut from a longer file says which stretch (training.ood._Item.span); another seed cuts
    the file at other points, so its segments overlap this seed's without being equal to any."""
    moh = [it for it in listing["train"] if it.name.startswith("music/macroform-cold_day@")]
    assert len(moh) > 10 and all(it.span is not None and it.files == moh[0].files for it in moh)
    it = sorted(moh, key=lambda it: it.span)[3]
    audio, _ = it.rendered()
    whole = ood._load(it.files[0])
    a, b = (int(t * ood.SAMPLE_RATE) for t in it.span)
    assert np.array_equal(audio, ood._fit(whole[a:b]))
    spans = sorted(x.span for x in moh)
    assert all(p[1] == q[0] for p, q in zip(spans, spans[1:]))   # consecutive, no overlap
    assert not any(ood.same_stretch(x, y) for x in moh for y in moh if x is not y)
    other = [x for x in ood.items("train", seed=5, max_per_kind=None, kinds=("music",)) if x.files == it.files]
    assert any(ood.same_stretch(it, x) for x in other) and it.span not in [x.span for x in other]
    melody = next(x for x in listing["train"] if x.source == "numpy:melody")
    assert melody.span is None and not ood.same_stretch(melody, melody)   # a generator's draw: no file


def test_list_command_shows_every_split_and_kind(capsys):
    ood.main(["--list"])
    out = capsys.readouterr().out
    assert "MISSING" not in out, out
    for split in ood.SPLITS:
        assert f"{split}:" in out
    for kind in ood.KINDS:
        assert out.count(f"  {kind} ") == 2, (kind, out)


# ------------------------------------------------------------------------------------------------
# corrupted speech

def test_grid_covers_the_protocol():
    grid = ood.corruption_grid()
    for kind in ("white", "babble"):
        assert [lvl for k, lvl in grid if k == kind] == list(range(-10, 31, 5))
    assert {k for k, _ in grid} == {"white", "babble", "clip", "telephone", "dropout", "quantize"}
    assert ood.SNR_KINDS == ("white", "babble")


@pytest.mark.parametrize("kind", ["white", "babble"])
def test_additive_noise_lands_at_the_requested_snr(speech, kind):
    for snr in ood.SNRS:
        y = ood.corrupt(speech, 16000, kind, snr, np.random.default_rng(snr + 100), full_scale=False)
        noise = y.astype(np.float64) - speech
        measured = power_db(speech) - power_db(noise)
        assert abs(measured - snr) < 0.5, (kind, snr, measured)
        # the default scales a mixture past full scale down as a whole: same SNR, peak <= 1
        z = ood.corrupt(speech, 16000, kind, snr, np.random.default_rng(snr + 100))
        g = np.max(np.abs(z)) / np.max(np.abs(y)) if np.max(np.abs(y)) > 1 else 1.0
        assert np.max(np.abs(z)) <= 1.0
        np.testing.assert_allclose(z, y * g, atol=1e-6)


def test_babble_noise_is_speech_like_not_white(speech):
    y = ood.corrupt(speech, 16000, "babble", 0, np.random.default_rng(0), full_scale=False)
    noise = y.astype(np.float64) - speech
    # babble has its energy below 4 kHz like speech; white noise spreads it evenly
    assert band_energy(noise, 100, 4000) > 5 * band_energy(noise, 4000, 8000)


def test_corruptions_are_deterministic_and_keep_length(speech):
    for kind, level in ood.corruption_grid():
        a = ood.corrupt(speech, 16000, kind, level, np.random.default_rng(7))
        b = ood.corrupt(speech, 16000, kind, level, np.random.default_rng(7))
        assert a.dtype == np.float32 and a.shape == speech.shape and np.all(np.isfinite(a)), (kind, level)
        assert np.array_equal(a, b), (kind, level)
    odd = speech[:22051]          # other rates and odd lengths keep their length too
    for kind, level in ood.corruption_grid():
        assert ood.corrupt(odd, 22050, kind, level, np.random.default_rng(0)).shape == odd.shape, (kind, level)
    c = ood.corrupt(speech, 16000, "white", 10, np.random.default_rng(8))
    assert not np.array_equal(c, ood.corrupt(speech, 16000, "white", 10, np.random.default_rng(7)))
    with pytest.raises(ValueError, match="corruption"):
        ood.corrupt(speech, 16000, "reverb", 1, np.random.default_rng(0))


def test_clipping_flattens_more_as_the_drive_grows(speech):
    peak = np.max(np.abs(speech))
    fractions = []
    for drive in ood.CORRUPTIONS["clip"]:
        y = ood.corrupt(speech, 16000, "clip", drive, np.random.default_rng(0))
        assert np.max(np.abs(y)) == pytest.approx(peak)
        fractions.append(np.mean(np.abs(y) >= peak * 0.9999))
    assert fractions == sorted(fractions) and fractions[0] > 0.005 and fractions[-1] > 0.3, fractions


@pytest.mark.parametrize("level", ood.CORRUPTIONS["telephone"])
def test_telephone_band_keeps_300_to_3400_hz(level):
    probe = (0.1 * np.random.default_rng(1).standard_normal(48000)).astype(np.float32)  # white: every band
    y = ood.corrupt(probe, 16000, "telephone", level, np.random.default_rng(0))
    assert band_energy(y, 0, 250) < 0.01 * band_energy(probe, 0, 250)            # -20 dB
    assert band_energy(y, 3600, 8000) < 1e-4 * band_energy(probe, 3600, 8000)    # -40 dB
    assert 0.8 < band_energy(y, 400, 3000) / band_energy(probe, 400, 3000) < 1.25


def test_quantisation_leaves_at_most_2_to_the_bits_levels(speech):
    errors = []
    for bits in ood.CORRUPTIONS["quantize"]:
        y = ood.corrupt(speech, 16000, "quantize", bits, np.random.default_rng(0))
        assert len(np.unique(y)) <= 2 ** int(bits), bits
        errors.append(power_db(y.astype(np.float64) - speech))
    assert errors == sorted(errors), errors                      # fewer bits, more error
    assert errors[-1] - errors[0] > 15                           # about 6 dB per bit over 8 -> 4 bits


def test_dropouts_zero_the_requested_fraction(speech):
    loud = np.where(speech == 0, 1e-3, speech).astype(np.float32)   # no zeros before the dropouts
    for frac in ood.CORRUPTIONS["dropout"]:
        y = ood.corrupt(loud, 16000, "dropout", frac, np.random.default_rng(0))
        zero = y == 0
        assert abs(zero.mean() - frac) < 0.02, (frac, zero.mean())
        np.testing.assert_array_equal(y[~zero], loud[~zero])
        runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], zero.astype(int), [0]]))))[::2]
        assert runs.max() <= 0.25 * 16000, "gaps are short dropouts, not a cut"


# ------------------------------------------------------------------------------------------------
# silero-vad baseline

def test_silero_scores_real_speech_above_noise_and_silence(vad, speech_clips, clips):
    speech_scores = vad.scores(speech_clips)
    rng = np.random.default_rng(0)
    white = [(0.1 * rng.standard_normal(48000)).astype(np.float32) for _ in range(8)]
    silence = [np.zeros(32000, np.float32), (rng.standard_normal(32000) * 1e-4).astype(np.float32)]
    silence += [c.audio for split in clips.values() for c in split if c.kind == "silence"]
    assert speech_scores.mean() > vad.scores(white).mean() + 0.5
    assert speech_scores.mean() > vad.scores(silence).mean() + 0.5
    assert np.median(speech_scores) > 0.9
    # the eval non-speech clips as a whole score low
    nonspeech = vad.scores([c.audio for c in clips["eval"] if c.kind != "babble"])
    assert np.median(nonspeech) < 0.2


def test_silero_runs_the_packaged_model_like_the_package(vad, speech):
    assert vad.path.name == "silero_vad.onnx" and "silero_vad" in vad.path.parts
    assert 1_000_000 < vad.model_bytes < 5_000_000
    probs = vad.frame_probs(speech)
    assert probs.shape == (-(-len(speech) // 512),) and np.all((probs >= 0) & (probs <= 1))
    # frame for frame what the package's own wrapper computes (its 64-sample context, padding, state)
    import torch
    from silero_vad.utils_vad import OnnxWrapper

    ref = OnnxWrapper(str(vad.path), force_onnx_cpu=True).audio_forward(torch.from_numpy(speech.astype(np.float32)),
                                                                       16000)
    np.testing.assert_allclose(probs, ref.numpy()[0], atol=1e-6)
    # batching clips changes nothing (each clip has its own state)
    batched = vad.frame_probs_batch([speech, speech[:20000]])
    np.testing.assert_allclose(batched[0], probs, atol=1e-6)
    np.testing.assert_allclose(batched[1], vad.frame_probs(speech[:20000]), atol=1e-6)
    # other rates are resampled
    import soxr

    assert abs(vad.score(soxr.resample(speech, 16000, 8000), rate=8000) - vad.score(speech)) < 0.2
    t = vad.timing([speech])
    assert t["audio_seconds"] == pytest.approx(3.0) and t["model_bytes"] == vad.model_bytes
    assert reduce_probs(np.array([0.0, 0.5, 1.0]), "max") == 1.0
    assert reduce_probs(np.array([0.0, 0.5, 1.0]), "mean") == 0.5
    with pytest.raises(ValueError, match="reduce"):
        reduce_probs(probs, "median")


def test_whoosh_envelope_is_finite_at_every_length():
    """The whoosh's rise-and-fall envelope sin(pi t / T) rounds to a tiny negative number at its last
    sample for some lengths (806 samples is one); to a fractional power that was NaN, and one such
    clip in the --seed=1 extended train pool made an uncertainty run diverge."""
    from training import ood

    for seed in range(20):
        for n in (806, 819, 857, 1000, 4001):
            x = ood._fx_event("whoosh", np.random.default_rng(seed), n)
            assert np.isfinite(x).all(), (seed, n)


def test_babble_talker_count_and_speed():
    """make_babble's voices (a count or an inclusive range) and speed (training.uncertainty's
    --babble_voices / --babble_speed); the defaults draw exactly what they drew before the options."""
    pool = ood.babble_voices("train")
    voice_of = {f: g for g, fs in pool.items() for f in fs}
    n = 8000

    def talkers(files):
        return len({voice_of[f] for f in files})

    for count in (1, 4):
        _, files = ood.make_babble("train", n, np.random.default_rng(0), voices=count)
        assert talkers(files) == count
    drawn = {talkers(ood.make_babble("train", n, np.random.default_rng(s), voices=(4, 5))[1]) for s in range(12)}
    assert drawn == {4, 5}
    a, fa = ood.make_babble("train", n, np.random.default_rng(3))
    b, fb = ood.make_babble("train", n, np.random.default_rng(3), voices=ood.BABBLE_VOICES["train"])
    assert np.array_equal(a, b) and fa == fb
    fast, ff = ood.make_babble("train", n, np.random.default_rng(3), speed=1.25)
    assert 6 <= talkers(ff) <= 12 and not np.allclose(fast, a)
    assert np.sqrt(np.mean(fast ** 2)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="voices"):
        ood.make_babble("train", n, np.random.default_rng(0), voices=(5, 4))
    listed = ood.nonspeech("train", seed=0, max_per_kind=2, kinds=("babble",), babble_voices=(4, 4))
    assert [talkers(c.files) for c in listed] == [4, 4]


def test_mix_talkers_gains_and_draw_order():
    """The babble rule: each unit-RMS talker at +-3 dB, the sum at unit RMS; a generator's draws and
    the gains interleave (stream, its gain, next stream ...)."""
    n = 4000
    order = []

    def streams(rng):
        for k in range(3):
            order.append(f"stream {k}")
            x = rng.standard_normal(n)
            yield x / np.sqrt(np.mean(x ** 2))

    rng = np.random.default_rng(7)
    mix = ood.mix_talkers(streams(rng), n, rng)
    assert np.sqrt(np.mean(mix ** 2)) == pytest.approx(1.0)
    # the same draws by hand, in the documented order
    ref = np.random.default_rng(7)
    by_hand = np.zeros(n)
    for _ in range(3):
        x = ref.standard_normal(n)
        by_hand += x / np.sqrt(np.mean(x ** 2)) * 10 ** (ref.uniform(-3, 3) / 20)
    assert np.allclose(mix, by_hand / np.sqrt(np.mean(by_hand ** 2)))
    assert order == ["stream 0", "stream 1", "stream 2"]
    one = ood.mix_talkers([np.ones(n)], n, np.random.default_rng(0))   # one talker: its gain cancels
    assert np.allclose(one, 1.0)
    assert np.array_equal(ood.mix_talkers([], n, rng), np.zeros(n))


def test_family_names_the_generator_or_file_an_item_came_from():
    from training.ood import FX_TRAIN_VARIANTS, family

    assert family("effects/fx-318") == "fx-blips" and family("effects/fx-263") == "fx-sequence"
    assert family("effects/varied-ui-33") == "varied-ui" and family("music/melody-4") == "melody"
    assert family("music/macroform-cold_day@51.1") == "macroform-cold_day" and family("tone/np-569") == "np"
    assert family("babble/12") == "babble"
    # _effects deals fx-i to its variants by i mod 8: each variant's items carry its own family
    from training.ood import _effects

    fx = {key: its for key, its in _effects("train", 0).items() if key.startswith("numpy:fx-")}
    assert sorted(fx) == sorted(f"numpy:fx-{v}" for v in FX_TRAIN_VARIANTS)
    for key, its in fx.items():
        assert {family(it.name) for it in its} == {key.split(":", 1)[1]}
