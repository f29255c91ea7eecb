"""Offline speech: Debian clips, espeak-ng synthesis and its cache, the prosody annotator."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tool

from training import prosody, speech, variants
from training.metrics import ccc_numpy, ccc_torch
from training.prosody import VARIANTS, annotate, build_corpus, split_of
from training.speech import SynthParams, debian_speech_files, read_clip, synthesize, synthesize_many

needs_espeak = pytest.mark.usefixtures("espeak_ng")   # a failure, not a skip, when it is missing


# ------------------------------------------------------------------------------------------------
# Debian speech

def test_debian_speech_files_found_sorted_and_readable():
    files = debian_speech_files()
    if not files:
        pytest.fail("no speech package installed: apt-get install pocketsphinx-testdata alsa-utils "
                    "asterisk-core-sounds-en-wav (.ci/run does)")
    assert files == sorted(files) == debian_speech_files()  # deterministic
    assert len(set(files)) == len(files)
    assert not any(f.name == "Noise.wav" or "/silence/" in f.as_posix() or f.name == "beep.wav" for f in files)
    for f in files[:: max(1, len(files) // 12)]:  # a spread of packages, not all 1,900 clips
        pcm = read_clip(f)
        assert pcm.dtype == np.float32 and pcm.ndim == 1
        assert len(pcm) >= 0.5 * 16000
        assert np.sqrt(np.mean(pcm ** 2)) > 1e-3, f"{f} is silent"


def test_debian_speech_files_min_seconds_filters():
    files = debian_speech_files(min_seconds=0.0)
    longer = debian_speech_files(min_seconds=3.0)
    assert files and set(longer) <= set(files)
    assert len(longer) < len(files)


def test_debian_speech_files_skips_noise_and_missing_roots(tmp_path: Path):
    import soundfile as sf

    t = np.arange(16000) / 16000
    sf.write(tmp_path / "Noise.wav", 0.1 * np.sin(2 * np.pi * 440 * t), 16000)
    sf.write(tmp_path / "hello.wav", 0.1 * np.sin(2 * np.pi * 220 * t), 16000)
    sf.write(tmp_path / "short.wav", 0.1 * np.sin(2 * np.pi * 220 * t[:4000]), 16000)
    roots = [(str(tmp_path), "*.wav"), (str(tmp_path / "absent"), "*.wav")]
    assert [p.name for p in debian_speech_files(0.5, roots)] == ["hello.wav"]


# ------------------------------------------------------------------------------------------------
# synthesis

@needs_espeak
def test_spread_speech_takes_every_core_package_in_turn():
    """Not every n-th file of the sorted list, which is all asterisk prompts of one speaker: the
    tests' clips, convert's calibration and the VAD timing hear every core package's speakers."""
    from training.speech import CORE_SPEECH_SOURCES, packages_of, spread_speech

    picked = spread_speech(24)
    assert packages_of(picked) == "8 pocketsphinx-testdata, 8 alsa-utils, 8 asterisk-core-sounds-en-wav"
    assert len(set(picked)) == 24 and picked == spread_speech(24)
    every = debian_speech_files(roots=CORE_SPEECH_SOURCES)
    assert packages_of(every[:: len(every) // 24][:24]) == "24 asterisk-core-sounds-en-wav"   # why
    # a package with fewer files than its turn gives all it has; the rest come from the others
    more = spread_speech(48)
    assert packages_of(more).startswith("10 pocketsphinx-testdata, 8 alsa-utils, 30 ")
    assert sorted(spread_speech(10**6)) == every and spread_speech(0) == []


def test_synthesize_gives_audible_16k_float_audio():
    pcm = synthesize("The train leaves at seven.", variant="f3", pitch=70, rate=200)
    assert pcm.dtype == np.float32 and pcm.ndim == 1
    assert 0.8 < len(pcm) / 16000 < 4.0
    assert np.all(np.isfinite(pcm)) and np.abs(pcm).max() <= 1.0
    assert np.sqrt(np.mean(pcm ** 2)) > 0.01
    other = synthesize("The train leaves at seven.", sample_rate=8000)
    assert 0.8 < len(other) / 8000 < 4.0


@needs_espeak
def test_parameters_change_the_audio_and_amplitude_only_scales_it():
    text = "Could you pass me the salt, please?"
    base = synthesize(text, variant="m3")
    assert len(synthesize(text, variant="m3", rate=300)) < 0.8 * len(base)
    assert not np.array_equal(synthesize(text, variant="m3", pitch=90), base)
    assert not np.array_equal(synthesize(text, variant="m3", pitch_range=200), base)
    quiet = synthesize(text, variant="m3", amplitude=50)
    # amplitude is (close to) a pure gain: the model's RMS normalisation makes it invisible
    corr = np.corrcoef(quiet, base)[0, 1]
    assert corr > 0.99 and np.sqrt(np.mean(quiet ** 2)) < 0.7 * np.sqrt(np.mean(base ** 2))


@needs_espeak
def test_every_annotator_variant_is_honoured_by_espeak():
    # espeak-ng silently ignores unknown variants, and "en-gb+X" used to fall back to plain en-gb
    def digest(voice: str, variant: str | None) -> str:
        pcm = speech.render(SynthParams("Hello there.", voice=voice, variant=variant, sample_rate=8000))
        return hashlib.sha1(pcm.tobytes()).hexdigest()

    for voice in prosody.VOICES:
        plain = digest(voice, None)
        for v in VARIANTS:
            assert digest(voice, v.name) != plain, f"{voice}+{v.name} sounds like plain {voice}"


def test_bad_parameters_raise_clear_errors():
    with pytest.raises(ValueError, match="pitch"):
        SynthParams("hi", pitch=120)
    with pytest.raises(ValueError, match="empty"):
        SynthParams("   ")
    with pytest.raises(ValueError, match="voice"):
        SynthParams("hi", voice="-w out.wav")
    require_tool("espeak-ng")
    with pytest.raises(ValueError, match="no variant"):
        synthesize("hi", variant="nosuchvariant")
    with pytest.raises(RuntimeError, match="espeak-ng failed"):
        synthesize("hi", voice="xx-nosuch")


def test_missing_espeak_is_a_clear_runtime_error(monkeypatch):
    monkeypatch.setattr(speech, "ESPEAK", "espeak-ng-not-installed-here")
    with pytest.raises(RuntimeError, match="not installed"):
        synthesize("hello")
    with pytest.raises(RuntimeError, match="not installed"):
        synthesize_many([SynthParams("hello")])


@needs_espeak
def test_cache_reuse_and_no_temp_files(tmp_path: Path, monkeypatch):
    params = [SynthParams(t, variant=v, pitch=p) for t, v, p in
              [("One two three.", "m1", 20), ("Four five six.", "f2", 80), ("One two three.", "m1", 21)]]
    paths = synthesize_many(params, tmp_path, workers=2)
    assert len(set(paths)) == 3 and all(p.is_file() and p.is_relative_to(tmp_path) for p in paths)
    assert paths == [speech.cache_path(p, tmp_path) for p in params]
    mtimes = [p.stat().st_mtime_ns for p in paths]

    calls = []
    monkeypatch.setattr(speech, "render", lambda p: calls.append(p))  # must not be needed now
    again = synthesize_many(params, tmp_path)
    assert again == paths and calls == [] and [p.stat().st_mtime_ns for p in again] == mtimes
    assert not list(tmp_path.rglob(".*.tmp"))  # atomic writes left nothing behind
    pcm = read_clip(paths[1])
    assert pcm.dtype == np.float32 and np.sqrt(np.mean(pcm ** 2)) > 0.01


@needs_espeak
def test_a_clip_espeak_ng_cannot_render_is_skipped_when_asked(tmp_path: Path):
    """espeak-ng crashes (exit -11, every time) on one draw of the prosody annotator's seed 8, and
    renders "..." as silence: with a Skipped such clips are None and counted, the others made as
    ever; without one the first is a ToolError, as before."""
    from training.audio_io import Skipped
    from training.cli import ToolError

    silent = SynthParams("...")
    params = [SynthParams("One two three."), silent, SynthParams("Four five six.")]
    skipped = Skipped("test")
    with pytest.warns(UserWarning, match="espeak-ng could not render it: espeak-ng produced no audible samples"):
        paths = synthesize_many(params, tmp_path, skipped=skipped)
    assert paths[1] is None and paths[0].is_file() and paths[2].is_file() and len(skipped) == 1
    assert skipped.files[0][0] == str(speech.cache_path(silent, tmp_path))
    assert skipped.summary() == "test: skipped 1 unreadable audio file(s) (espeak-ng could not render it: 1)"
    with pytest.raises(ToolError, match="no audible samples"):
        synthesize_many(params, tmp_path)
    # the draw that crashes this Debian's espeak-ng: whatever a version does with it, nothing raises
    crash = SynthParams("This old radio still works perfectly.", "en-gb", "rob", 12, 109, 93, 154, 16000)
    assert crash in [it.params for it in build_corpus(2462, 8)[2461:]]
    skipped = Skipped("test")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        made = synthesize_many([crash], tmp_path, skipped=skipped)[0]
    assert (made is None) == (len(skipped) == 1) and (made is None or made.is_file())


def test_cache_dir_from_environment(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WAV2SMALL_CACHE", str(tmp_path))
    assert speech.default_cache_dir() == tmp_path
    monkeypatch.delenv("WAV2SMALL_CACHE")
    assert speech.default_cache_dir() == Path.home() / ".cache" / "wav2small"


def test_failed_cache_write_leaves_no_temp_file(tmp_path: Path):
    target = tmp_path / "a" / "clip.wav"
    with pytest.raises(ValueError):
        speech._write_wav(target, np.zeros((2, 2, 2), np.float32), 16000)  # 3-D: soundfile refuses
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_sentences_are_varied():
    assert 90 <= len(speech.SENTENCES) == len(set(speech.SENTENCES))
    assert any(s.endswith("?") for s in speech.SENTENCES) and any(s.endswith("!") for s in speech.SENTENCES)


# ------------------------------------------------------------------------------------------------
# prosody annotator

def test_annotator_is_deterministic_and_in_range():
    a, b = build_corpus(300, seed=7), build_corpus(300, seed=7)
    assert [x.params for x in a] == [x.params for x in b]
    assert all(np.array_equal(x.targets, y.targets) for x, y in zip(a, b))
    assert [x.params for x in build_corpus(100, seed=7)] == [x.params for x in a[:100]]
    assert [x.params for x in build_corpus(50, seed=8)] != [x.params for x in a[:50]]
    t = np.stack([x.targets for x in a])
    assert t.dtype == np.float32 and t.min() >= 0 and t.max() <= 1
    assert np.all(t.std(0) > 0.04)  # every dimension varies


def test_amplitude_and_text_do_not_change_targets():
    for item in build_corpus(50, seed=1):
        for amp in (0, 60, 150, 200):
            assert np.array_equal(annotate(dataclasses.replace(item.params, amplitude=amp)), item.targets)
        assert np.array_equal(annotate(dataclasses.replace(item.params, text="Something else.")), item.targets)


def test_rule_directions():
    p = SynthParams("x", variant="m3", pitch=50, rate=155, pitch_range=100)
    base = annotate(p)
    high = annotate(dataclasses.replace(p, pitch=90))
    fast = annotate(dataclasses.replace(p, rate=280))
    wide = annotate(dataclasses.replace(p, pitch_range=200))
    whisper = annotate(dataclasses.replace(p, variant="whisper"))
    croak = annotate(dataclasses.replace(p, variant="croak"))
    a, d, v = 0, 1, 2
    assert high[a] > base[a] and high[d] < base[d] and high[v] > base[v]
    assert fast[a] > base[a] and fast[d] < base[d] and fast[v] > base[v]
    assert wide[a] > base[a] and wide[v] > base[v]
    assert whisper[a] < base[a] and whisper[d] < base[d] and whisper[v] < base[v]
    assert croak[v] < base[v] and croak[a] < base[a]
    np.testing.assert_allclose(base, [0.5, 0.5, 0.5], atol=0.005)  # pitch 50 is z = 0.01
    # the same pitch setting means the same targets for a male and a female variant
    assert np.array_equal(annotate(dataclasses.replace(p, variant="f3")), base)


def test_split_by_voice_variant_is_disjoint():
    items = build_corpus(600, seed=3)
    by_split = {s: {it.params.variant for it in items if it.split == s} for s in prosody.SPLITS}
    assert all(by_split.values())
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"])
    assert not (by_split["val"] & by_split["test"])
    assert all(it.split == split_of(it.params) for it in items)
    # the voice (accent) is not the split key: both accents occur in every split
    for s in prosody.SPLITS:
        assert {it.params.voice for it in items if it.split == s} == set(prosody.VOICES)
    # both sexes in every split; breathy and rough voices are seen in training
    for s in prosody.SPLITS:
        assert {v.sex for v in VARIANTS if v.split == s} == {"f", "m"}
    train = [v for v in VARIANTS if v.split == "train"]
    assert sum(v.breathy for v in train) >= 2 and sum(v.rough == 1.0 for v in train) >= 2
    with pytest.raises(ValueError, match="not in the annotator"):
        split_of(SynthParams("x", variant="robosoft"))


@needs_espeak
def test_a_variant_file_renders_from_private_data_and_keeps_old_cache_keys(tmp_path: Path):
    """A clip with a variant_file renders from a private data directory: the installed f2's own text
    gives the installed f2's audio sample for sample, an edit changes it, nothing is written into the
    installed data, and clips without one keep the cache keys they had before the field existed."""
    text = variants.installed("f2")
    plain = SynthParams("Could you pass me the salt, please?", variant="f2")
    same = dataclasses.replace(plain, variant="f2-copy", variant_file=variants.edited(text, "f2-copy", {}))
    rough = dataclasses.replace(plain, variant="f2-rough",
                                variant_file=variants.edited(text, "f2-rough", {"flutter": "20"}))
    assert np.array_equal(speech.render(same), speech.render(plain))
    a, b = speech.render(rough), speech.render(plain)
    assert a.shape != b.shape or not np.allclose(a, b, atol=1e-3)
    installed = speech.espeak_data_dir() / "voices" / "!v"
    assert not (installed / "f2-copy").exists() and not (installed / "f2-rough").exists()
    old = json.dumps({"cache_version": speech._CACHE_VERSION, "engine": speech.espeak_version(),
                      **{k: v for k, v in dataclasses.asdict(plain).items() if k != "variant_file"}}, sort_keys=True)
    assert speech.clip_key(plain) == hashlib.sha256(old.encode()).hexdigest()
    assert len({speech.clip_key(p) for p in (plain, same, rough)}) == 3
    # an installed file is replaced in the private directory, never written through its link
    root = speech.private_data(tmp_path, {"f2": variants.edited(text, "f2", {"flutter": "20"})})
    mine = root / "espeak-ng-data" / "voices" / "!v" / "f2"
    assert not mine.is_symlink() and "flutter 20" in mine.read_text() and installed.joinpath("f2").read_text() == text
    assert (root / "espeak-ng-data" / "voices" / "!v" / "f3").is_symlink()
    with pytest.raises(ValueError, match="needs a variant name"):
        SynthParams("hi", variant_file=text)
    with pytest.raises(ValueError, match="data_path must be None"):
        speech.render(same, str(root))
    with pytest.raises(ValueError, match="bad variant name"):
        speech.private_data(tmp_path / "x", {"../f2": text})
    assert not (tmp_path / "x").exists()


def test_variant_file_text_is_read_and_edited_line_by_line():
    text = "name female3\ngender female\npitch 140 240\nroughness 4\nformant 1 120  75 150 -50\n"
    assert variants.edited(text, "probe", {"pitch": "120 230", "flutter": "20"}) == (
        "name probe\ngender female\npitch 120 230\nroughness 4\nformant 1 120  75 150 -50\nflutter 20\n")
    assert variants.value(text, "pitch", "82 118") == "140 240" and variants.value(text, "voicing", "100") == "100"
    assert variants.flutter(text) == 2 and variants.flutter(text + "flutter 12\n") == 12
    assert variants.formants(text)[1] == (120, 75, 150) and variants.formants(text)[0] == (100, 100, 100)


@needs_espeak
def test_derived_voices_are_drawn_reproducibly_and_labelled_by_their_own_flutter():
    """training.variants.derive: the same generator state gives the same voice, the name says its
    base, the pitch line is the base's, every formant moves; build_corpus(derived=...) changes only
    training clips of voiced variants, keeps every draw's prosody, and the annotator reads the rough
    cue from the derived file."""
    name, text = variants.derive("f2", np.random.default_rng(5))
    assert (name, text) == variants.derive("f2", np.random.default_rng(5))
    assert variants.base_of(name) == "f2" and variants.base_of("f2") == "f2" and f"name {name}\n" in text
    base = variants.installed("f2")
    assert variants.value(text, "pitch", "") == variants.value(base, "pitch", "") == "142 220"
    assert all(d[0] != b[0] for d, b in zip(variants.formants(text), variants.formants(base)))
    assert 2 <= variants.flutter(text) <= 20 and 30 <= int(variants.value(text, "voicing", "0")) <= 100
    plain, mixed = build_corpus(400, seed=3), build_corpus(400, seed=3, derived=0.5)
    assert [it.params for it in build_corpus(400, seed=3, derived=0.0)] == [it.params for it in plain]
    changed = [(p, m) for p, m in zip(plain, mixed) if p.params != m.params]
    assert 0.3 * sum(p.split == "train" for p in plain) < len(changed) < 0.7 * sum(p.split == "train" for p in plain)
    for p, m in changed:
        info = prosody.variant_info(p.params.variant)
        assert m.split == p.split == "train" and not info.breathy
        assert variants.base_of(m.params.variant) == p.params.variant
        assert dataclasses.replace(m.params, variant=p.params.variant, variant_file=None) == p.params
        rough = prosody.variant_of(m.params).rough
        assert rough == min(1.0, max(0.0, (variants.flutter(m.params.variant_file) - 2) / 18))
        # the targets differ from the base voice's by the rough cue alone
        np.testing.assert_allclose(m.targets, np.clip(annotate(p.params) + (rough - info.rough)
                                                      * np.asarray(prosody.RULES["rough"]), 0, 1), atol=1e-6)
    pcm = speech.render(changed[0][1].params)
    assert pcm.dtype == np.float32 and np.sqrt(np.mean(pcm ** 2)) > 1e-3
    with pytest.raises(ValueError, match="not in the annotator"):   # a derived-looking name needs its file
        split_of(SynthParams("x", variant=changed[0][1].params.variant))
    with pytest.raises(ValueError, match="share"):
        build_corpus(10, seed=0, derived=1.5)


# ------------------------------------------------------------------------------------------------
# metrics

def test_ccc_numpy_and_torch_agree():
    import torch

    rng = np.random.default_rng(0)
    t = rng.random((200, 3))
    p = 0.8 * t + 0.1 + 0.05 * rng.standard_normal((200, 3))
    c = ccc_numpy(p, t)
    np.testing.assert_allclose(ccc_torch(torch.tensor(p), torch.tensor(t)).numpy(), c, rtol=1e-6)
    np.testing.assert_allclose(ccc_numpy(t, t), 1.0)
    np.testing.assert_allclose(ccc_numpy(-t + 1, t)[0], -1.0, atol=0.05)
    assert np.all(c < 1) and np.all(c > 0.8)
    assert np.isnan(ccc_numpy(np.ones(4), np.ones(4))[0])
    # an offset and a scale are penalised as Lin (1989) has it: CCC(t + d, t) = 2 var / (2 var + d^2)
    # and CCC(a t, t) = 2 a var / ((1 + a^2) var + ((a - 1) mean)^2); no case above had unequal means
    var, mean = t.var(0), t.mean(0)
    for shifted, want in ((t + 0.3, 2 * var / (2 * var + 0.09)), (2 * t, 4 * var / (5 * var + mean**2))):
        np.testing.assert_allclose(ccc_numpy(shifted, t), want, rtol=1e-12)
        np.testing.assert_allclose(ccc_torch(torch.tensor(shifted), torch.tensor(t)).numpy(), want, rtol=1e-6)
