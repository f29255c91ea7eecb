"""The uncertainty head: format, engine (bit-exact, decision), Python API and CLI, training, report."""
from __future__ import annotations

import json
import math
import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import DEFAULT_W2S, REPO, load_script, to_int16
from test_engine import _compare_trace

import wav2small
from training.export import model_bytes
from training.model import Wav2Small, Wav2SmallConfig
from training.quantize import quantize
from wav2small import Model, Thresholds, _engine
from wav2small.errors import ArgumentError, ArgumentTypeError, ModelFormatError


@pytest.fixture(scope="module")
def uq_bytes(speech_clips) -> bytes:
    """A random-init model with an uncertainty head, quantized by the real exporter."""
    torch.manual_seed(11)
    cfg = Wav2SmallConfig(n_outputs=7, uncertainty=True, max_log_sigma=math.log(0.2), min_speech_logit=0.5)
    return model_bytes(quantize(Wav2Small(cfg).eval(), speech_clips[:3]))


def _patch_header(data: bytes, offset: int, value: int) -> bytes:
    b = bytearray(data)
    struct.pack_into("<I", b, offset, value)
    struct.pack_into("<I", b, len(b) - 4, zlib.crc32(bytes(b[:-4])))
    return bytes(b)


def test_config_rejects_an_even_output_count():
    with pytest.raises(ValueError, match="2n \\+ 1"):
        Wav2SmallConfig(n_outputs=6, uncertainty=True)


def test_head_is_in_the_file_and_bit_exact(uq_bytes, speech_clips):
    m = Model.from_bytes(uq_bytes)
    assert m.has_uncertainty and m.has_steady and m.config["n_outputs"] == 7
    assert m.config["flags"] == _engine.FLAG_UNCERTAINTY | _engine.FLAG_STEADY
    t = m.thresholds
    assert t.max_sigma == pytest.approx(0.2, rel=1e-4)
    assert t.min_speech_prob == pytest.approx(1 / (1 + math.exp(-0.5)), rel=1e-4)
    assert t.max_steady == 0.5
    # the modulation threshold (off: the config's default) and its block length follow; then the
    # steadiness's block, level (-10 dB in Q8), cos^2 (0.997^2 in Q12) and threshold (0.5 in Q15)
    assert m._engine.tensors()["decide.params"].tolist() == [round(math.log(0.2) * 65536), 32768, 0, 8]
    assert m._engine.tensors()["decide.steady"].tolist() == [16, -2560, 4071, 16384]
    tone = np.sin(2 * np.pi * 700 * np.arange(16000) / 16000).astype(np.float32)
    clips = (speech_clips[0][:64], speech_clips[1][:16001], tone, np.concatenate([speech_clips[2][:16000], tone]))
    for pcm in clips:
        _compare_trace(m._engine, to_int16(pcm))  # all 7 outputs and both measures equal the NumPy reference
    assert m.predict(tone).steady == 1.0 and m.predict(tone).decision == "no speech"   # a held tone
    assert 0.0 < m.predict(clips[3]).steady < 1.0


def test_unknown_flags_and_a_missing_head_are_format_errors(uq_bytes):
    with pytest.raises(ModelFormatError):
        Model.from_bytes(_patch_header(uq_bytes, 12, 4 | 3))  # an undefined flag
    with pytest.raises(ModelFormatError):
        Model.from_bytes(_patch_header(uq_bytes, 12, 1))  # no steadiness flag: decide.steady is left over
    with pytest.raises(ModelFormatError):
        Model.from_bytes(_patch_header(uq_bytes, 12, 2))  # the steadiness without the head it belongs to
    with pytest.raises(ModelFormatError):
        Model.from_bytes(_patch_header(uq_bytes, 12, 0))  # no flag: decide.params is left over


def test_decision_rule_of_the_engine(uq_bytes, speech_clips):
    m = Model.from_bytes(uq_bytes)
    tone = np.sin(2 * np.pi * 700 * np.arange(8000) / 16000).astype(np.float32)   # speech, then a held tone
    q = m.predict_fixed(np.concatenate([speech_clips[2][:16000], tone]))
    log_sigma, logit, mod, st = q[3:6], int(q[6]), int(q[7]), int(q[8])
    top = int(log_sigma.max())
    assert st > 0   # a clip with some loud blocks of the same shape: the steadiness threshold can bite
    cases = {  # thresholds -> what the rule in csrc/w2s.h says
        (top, logit, mod, st): _engine.RELIABLE,               # all at their limit: still reliable
        (top - 1, logit, mod, st): _engine.TOO_UNCERTAIN,      # one sigma above
        (top, logit + 1, mod, st): _engine.NO_SPEECH,          # logit below
        (top, logit, mod + 1, st): _engine.NO_SPEECH,          # modulation below
        (top, logit, mod, st - 1): _engine.NO_SPEECH,          # steadiness above
        (top - 1, logit + 1, mod, st): _engine.NO_SPEECH,      # speech is checked first
        (top - 1, logit, mod + 1, st): _engine.NO_SPEECH,      # the modulation too
        (top - 1, logit, mod, st - 1): _engine.NO_SPEECH,      # and the steadiness
    }
    for (max_ls, min_logit, min_mod, max_st), want in cases.items():
        assert m._engine.decide(q, max_ls, min_logit, min_mod, max_st) == want
    with pytest.raises(ValueError, match="9 outputs"):
        m._engine.decide(q[:3], 0, 0, 0, 0)


def test_prediction_fields_and_user_thresholds(uq_bytes, speech_clips):
    m = Model.from_bytes(uq_bytes)
    pcm = speech_clips[3]
    q = m.predict_fixed(pcm)
    p = m.predict(pcm)
    x = q / 65536.0
    assert p.as_array() == pytest.approx(x[:3], abs=1e-6)
    assert p.sigma == pytest.approx(tuple(np.exp(x[3:6])), rel=1e-9)
    assert p.speech_prob == pytest.approx(1 / (1 + np.exp(-x[6])), rel=1e-9)
    assert p.decision in ("reliable", "no speech", "too uncertain")
    assert m.predict(pcm, thresholds=Thresholds(max_sigma=1e-6, min_speech_prob=0.0)).decision == "too uncertain"
    assert m.predict(pcm, thresholds=Thresholds(max_sigma=1e6, min_speech_prob=0.0)).decision == "reliable"
    assert m.predict(pcm, thresholds=Thresholds(max_sigma=1e6, min_speech_prob=1.0)).decision == "no speech"
    # the thresholds change only the decision
    assert m.predict(pcm, thresholds=Thresholds(1e-6, 0.0)).sigma == p.sigma
    # the steadiness: the file's threshold, or the caller's (1: off)
    tone = np.sin(2 * np.pi * 700 * np.arange(16000) / 16000).astype(np.float32)
    held = m.predict(tone, thresholds=Thresholds(1e6, 0.0))
    assert held.steady == 1.0 and held.decision == "no speech"
    assert m.predict(tone, thresholds=Thresholds(1e6, 0.0, 0.0, 1.0)).decision == "reliable"
    assert p.steady == q[8] / 32768
    for bad in ((0.0, 0.5), (-1.0, 0.5), (float("nan"), 0.5), (0.1, 1.5), (0.1, -0.1), (0.1, 0.5, None, 1.5),
                (0.1, 0.5, None, -0.1), (0.1, 0.5, None, float("nan"))):
        with pytest.raises(ArgumentError):
            Thresholds(*bad)
    with pytest.raises(ArgumentTypeError, match="Thresholds"):
        m.predict(pcm, thresholds=(0.1, 0.5))


def test_stream_reads_the_same_prediction(uq_bytes, speech_clips):
    m = Model.from_bytes(uq_bytes)
    tone = 0.3 * np.sin(2 * np.pi * 700 * np.arange(12000) / 16000).astype(np.float32)
    pcm = np.concatenate([speech_clips[4], tone])   # a steadiness between 0 and 1, as the decision reads it
    s = m.stream(stats=m.clip_stats(pcm))
    for i in range(0, len(pcm), 777):
        s.push(pcm[i:i + 777])
    got = s.read()
    assert got == m.predict(pcm) and 0.0 < got.steady < 1.0


def test_steadiness_search_scores_a_held_tone_steady_and_speech_not(default_model, speech_clips):
    """scripts/uq_steadiness.py's statistics (the thirty-first round's search) on the engine's log-mel:
    a held tone keeps its shape between blocks (cosine 1, no flux), real speech does not."""
    mod = load_script(REPO / "scripts" / "uq_steadiness.py")

    def stats(pcm):
        logmel = {s: a for s, _, a in default_model._engine.trace(to_int16(pcm))}["logmel"]
        return mod.statistics(logmel / float(1 << _engine.Q_DB))

    tone = stats(0.3 * np.sin(2 * np.pi * 700 * np.arange(32000) / 16000))
    assert set(tone) == {"flux", "peak", "cent_sd", "tilt", "level_sd", "cosine"}
    assert tone["cosine"] > 0.999 and tone["flux"] < 0.5 and tone["level_sd"] < 0.5
    speech = [stats(c) for c in speech_clips[:6]]
    assert all(s["cosine"] < 0.99 and s["flux"] > tone["flux"] for s in speech), speech


def test_uq_shrink_pulls_only_the_mean_toward_the_centre(speech_clips):
    """scripts/uq_shrink.py (the thirty-second round's probe) on the shipped engine's outputs: k = 1
    leaves every row as it is, k = 0.5 halves each A/D/V's distance from the centre, and sigma, the
    speech logit and the rest (what the selective curve is ranked by) never move."""
    from training.uq_select import engine_runner

    mod = load_script(REPO / "scripts" / "uq_shrink.py")

    run, _ = engine_runner(DEFAULT_W2S)
    rows = run(speech_clips[:6])
    sets = {"clean": rows, "speech": rows, "corrupted": rows[:3], "noisy": rows[3:], "targets": rows[:, :3]}
    centre = np.array([0.5, 0.45, 0.55])
    same = mod.shrunk(sets, 1.0, centre)
    assert all(np.array_equal(same[k], sets[k]) for k in ("clean", "speech", "corrupted", "noisy"))
    half = mod.shrunk(sets, 0.5, centre)
    np.testing.assert_allclose(half["clean"][:, :3] - centre, 0.5 * (rows[:, :3] - centre), atol=1e-12)
    assert np.array_equal(half["clean"][:, 3:], rows[:, 3:]) and np.array_equal(sets["clean"], rows)
    np.testing.assert_array_equal(mod.max_sigma(half["clean"]), np.exp(rows[:, 3:6]).max(axis=1))


def test_uq_mean_swap_pairs_any_mean_with_any_ranking(speech_clips):
    """scripts/uq_mean_swap.py (the thirty-ninth round): the distilled student's float mean ranked by
    the shipped engine's sigma, on real clips and noisy copies. The copies are scored against their
    clean clip's targets, the error at full coverage is the mean's whatever the ranking, the clips'
    own error as the ranking gives a curve without rises, and a run directory without a model is
    refused by name."""
    from training.uq_report import run_engine, run_ensemble

    mod = load_script(REPO / "scripts" / "uq_mean_swap.py")
    rng = np.random.default_rng(5)
    clean = [c[:24000] for c in speech_clips[:6]]
    levels = {0.0: 0.05, 10.0: 0.015}   # two cells, so that the report's Spearman over cells has a meaning
    noisy = [(c + rng.normal(0, sd, c.shape)).astype(np.float32) for sd in levels.values() for c in clean]
    corrupted = [(i, "white", level) for level in levels for i in range(6)]
    student = run_ensemble([str(REPO / "training" / "default")])(clean + noisy).mean
    engine = run_engine(DEFAULT_W2S)(clean + noisy)
    targets = student[:6] + 0.05
    voices = ["a", "a", "a", "b", "b", "b"]
    r = mod.row(student, engine.uncertainty, targets, corrupted, voices)
    err = np.abs(student - np.concatenate([targets] * 3)).mean(axis=1)
    assert r["error"][0] == pytest.approx(err.mean())
    assert r["cells_below_clean"] == sum(err[k:k + 6].mean() < err[:6].mean() for k in (6, 12))
    assert mod.row(student, err, targets, corrupted, voices)["rises"] == 0
    assert mod.row(engine.mean, engine.uncertainty, targets, corrupted, voices)["error"][0] == pytest.approx(
        np.abs(engine.mean - np.concatenate([targets] * 3)).mean())
    with pytest.raises(SystemExit):
        mod.main(["--student=/nonexistent/run"])


def test_uq_voice_probe_renders_as_the_corpus_and_edits_only_what_it_says(tmp_path):
    """scripts/uq_voice_probe.py (the thirty-fourth round's probe): a variant file copied into its
    private espeak-ng data (training.speech.private_data) renders the corpus's clip sample for
    sample, an edited line changes the audio, the installed data is untouched, and the table has one
    row per edit."""
    from training import prosody, variants
    from training.speech import espeak_data_dir, private_data, render

    mod = load_script(REPO / "scripts" / "uq_voice_probe.py")
    source = espeak_data_dir() / "voices" / "!v"
    f3 = (source / "f3").read_text()
    path = private_data(tmp_path, {"copy": variants.edited(f3, "copy", {}),
                                   "low": variants.edited(f3, "low", {"pitch": "80 120"})})
    assert not (source / "copy").exists() and (tmp_path / "espeak-ng-data" / "voices" / "!v" / "low").exists()
    draw = prosody.draw(np.random.default_rng(0), [prosody.variant_info("f3")])
    corpus = render(draw)[: int(mod.SECONDS * 16000)]
    assert np.array_equal(mod.render(draw, "copy", path), corpus)
    low = mod.render(draw, "low", path)
    assert low.shape != corpus.shape or not np.allclose(low, corpus, atol=1e-3)
    rows = mod.probe(Model(DEFAULT_W2S), "grandma", "f3", n=2, seed=0)
    assert [r["edit"] for r in rows] == ["grandma", "grandma, flutter 2", "grandma, pitch 140 240",
                                         "grandma, pitch 140 240, flutter 2", "f3", "f3, flutter 20"]
    assert all(len(r["mean"]) == 3 and set(r["error"]) == {"grandma", "f3"} and r["sigma"] > 0 for r in rows)
    with pytest.raises(ValueError, match="not in the annotator's table"):
        mod.probe(Model(DEFAULT_W2S), "nope", "f3", n=1, seed=0)


def test_uq_cue_whatif_annotates_the_same_draws_without_only_the_cues_it_names(capsys):
    """scripts/uq_cue_whatif.py (the thirty-eighth round), through prosody.annotate's `without`: with
    no cue dropped the targets are the corpus's; dropping "rough" moves a rough voice's targets by exactly the rule (where nothing
    clips) and leaves a smooth voice's as they are; an unknown cue is refused by name."""
    from training import prosody

    mod = load_script(REPO / "scripts" / "uq_cue_whatif.py")
    rng = np.random.default_rng(3)
    for name in ("grandma", "f3", "whisperf"):
        for _ in range(20):
            params = prosody.draw(rng, [prosody.variant_info(name)])
            plain = prosody.annotate(params)
            assert np.array_equal(prosody.annotate(params, set()), plain)
            free = prosody.annotate(params, {"rough"})
            rough = prosody.variant_of(params).rough
            if name == "grandma":
                assert rough == 1.0
                expected = np.clip(plain - np.asarray(prosody.RULES["rough"], np.float32), 0, 1)
                inside = (plain > 0) & (plain < 1) & (expected > 0) & (expected < 1)
                np.testing.assert_allclose(free[inside], expected[inside], atol=1e-6)
                assert free[0] >= plain[0] and free[1] == plain[1] and free[2] >= plain[2]
            else:
                assert rough == 0.0 and np.array_equal(free, plain)
    with pytest.raises(SystemExit):
        mod.main(["--without=rough,loudness"])
    assert "unknown cue(s) ['loudness']" in capsys.readouterr().err


def test_model_file_without_the_steadiness_decides_without_it(speech_clips):
    """A file of a head released before the measure (steady_block 0 writes one): no steadiness in
    the outputs, a held tone decided by the speech output alone, and a max_steady refused."""
    torch.manual_seed(11)
    cfg = Wav2SmallConfig(n_outputs=7, uncertainty=True, max_log_sigma=math.log(0.2), min_speech_logit=0.5,
                          steady_block=0)
    m = Model.from_bytes(model_bytes(quantize(Wav2Small(cfg).eval(), speech_clips[:3])))
    assert m.config["flags"] == _engine.FLAG_UNCERTAINTY and not m.has_steady
    assert "decide.steady" not in m._engine.tensors() and m._engine.thresholds[3] == _engine.STEADY_ONE
    tone = np.sin(2 * np.pi * 700 * np.arange(16000) / 16000).astype(np.float32)
    p = m.predict(tone, thresholds=Thresholds(1e6, 0.0))
    assert len(m.predict_fixed(tone)) == 8 and p.steady is None and p.decision == "reliable"
    assert m.thresholds.max_steady is None
    with pytest.raises(ArgumentError, match="no steadiness measure"):
        m.predict(tone, thresholds=Thresholds(1e6, 0.0, None, 0.5))


def test_model_without_head_says_unknown(distilled_float, speech_clips):
    m = Model.from_bytes(model_bytes(quantize(distilled_float, speech_clips[:3])))
    p = m.predict(speech_clips[0])
    assert not m.has_uncertainty and m.thresholds is None
    assert (p.sigma, p.speech_prob, p.decision, p.reliable) == (None, None, "unknown", False)
    with pytest.raises(ArgumentError, match="no uncertainty head: thresholds need one"):   # not ignored
        m.predict(speech_clips[0], thresholds=Thresholds(0.2, 0.5))


# ---- the shipped default model --------------------------------------------------------------------


def test_shipped_model_hears_speech_and_refuses_non_speech(default_model, speech_clips):
    """Behaviour of the trained head on clips its training never saw (the held-out numbers are in
    docs/uncertainty.md): real speech is speech; noise, a tone and silence are not."""
    assert default_model.has_uncertainty
    preds = default_model.predict(speech_clips)
    heard = np.mean([p.speech_prob >= default_model.thresholds.min_speech_prob for p in preds])
    assert heard >= 0.8, [round(p.speech_prob, 3) for p in preds]
    rng = np.random.default_rng(5)
    t = np.arange(48000) / 16000
    others = {
        "white noise": rng.normal(0, 0.1, 48000),
        "1 kHz tone": 0.3 * np.sin(2 * np.pi * 1000 * t),
        "silence": np.zeros(48000),
    }
    for name, x in others.items():
        p = default_model.predict(x)
        assert not p.reliable, (name, p)
        assert name == "1 kHz tone" or p.decision == "no speech", (name, p)
    print("\nspeech prob of real speech:", np.round([p.speech_prob for p in preds], 3))


def test_uncertainty_grows_with_noise(default_model, speech_clips):
    from training.ood import corrupt

    rng = np.random.default_rng(6)
    mean_sigma = []
    for snr in (30, 10, -10):
        s = [max(default_model.predict(corrupt(c, 16000, "white", snr, rng)).sigma) for c in speech_clips[:8]]
        mean_sigma.append(float(np.mean(s)))
    assert mean_sigma[0] < mean_sigma[1] < mean_sigma[2], mean_sigma


def test_cli_shows_uncertainty_and_takes_thresholds(tmp_path, speech_files):
    files = [str(f) for f in speech_files[:2]]
    run = lambda *a: subprocess.run([sys.executable, "-m", "wav2small", "predict", *a], capture_output=True, text=True)  # noqa: E731
    table = run(*files)
    assert table.returncode == 0, table.stderr
    head = table.stdout.splitlines()[0].split()
    assert head[:4] == ["file", "arousal", "dominance", "valence"]
    assert head[-4:] == ["speech_prob", "mod_dB", "steady", "decision"]
    rows = json.loads(run("--json", "--max-sigma", "1e-9", *files).stdout)
    assert all(r["decision"] in ("too uncertain", "no speech") for r in rows)
    assert set(rows[0]) == {"file", "arousal", "dominance", "valence", "sigma_arousal", "sigma_dominance",
                            "sigma_valence", "speech_prob", "modulation_db", "steady", "decision"}
    rows = json.loads(run("--json", "--min-speech-prob", "1", *files).stdout)
    assert [r["decision"] for r in rows] == ["no speech"] * 2
    # a modulation threshold above the clips' own says "no speech" as well; 0 leaves the rest to decide
    top = max(r["modulation_db"] for r in rows)
    assert [r["decision"] for r in json.loads(run("--json", "--min-modulation-db", f"{top + 0.1}", *files).stdout)] \
        == ["no speech"] * 2
    open_ = json.loads(run("--json", "--min-modulation-db", "0", "--min-speech-prob", "0", "--max-sigma", "1e6",
                           *files).stdout)
    assert [r["decision"] for r in open_] == ["reliable"] * 2
    bad = run("--max-sigma", "-1", *files)
    assert bad.returncode == 2 and "argument --max-sigma: must be a positive number" in bad.stderr
    bad = run("--min-modulation-db", "-1", *files)
    assert bad.returncode == 2 and "argument --min-modulation-db: must be within 0.." in bad.stderr
    # a held tone is too steady to be speech; --max-steady 1 leaves it to the other tests
    tone = tmp_path / "tone.wav"
    sf.write(tone, (0.3 * np.sin(2 * np.pi * 700 * np.arange(32000) / 16000)).astype(np.float32), 16000)
    wide = ("--min-modulation-db", "0", "--min-speech-prob", "0", "--max-sigma", "1e6")
    held = json.loads(run("--json", *wide, str(tone)).stdout)[0]
    assert held["steady"] == 1.0 and held["decision"] == "no speech"
    assert json.loads(run("--json", *wide, "--max-steady", "1", str(tone)).stdout)[0]["decision"] == "reliable"
    bad = run("--max-steady", "1.5", *files)
    assert bad.returncode == 2 and "argument --max-steady: must be within 0..1" in bad.stderr


def test_top_level_predict_passes_thresholds(speech_clips):
    assert wav2small.predict(speech_clips[0]).decision == "reliable"   # the model's own thresholds
    p = wav2small.predict(speech_clips[0], thresholds=Thresholds(max_sigma=1e-6, min_speech_prob=0.0))
    assert p.decision == "too uncertain" and not p.reliable   # the given ones changed the answer


# ---- training and the report -----------------------------------------------------------------------


def test_losses_have_their_minimum_where_they_should():
    from training.uncertainty import loss_terms

    target = torch.tensor([[0.5, 0.5, 0.5], [0.2, 0.4, 0.6]])
    err = 0.1

    def nll(log_sigma: float) -> float:
        out = torch.cat([target + err, torch.full((2, 3), log_sigma), torch.zeros(2, 1)], dim=1)
        return loss_terms(out, target, 2, torch.ones(2, dtype=torch.bool), 0.0)["nll"].item()
    grid = np.linspace(-5, 0, 501)
    assert grid[np.argmin([nll(v) for v in grid])] == pytest.approx(math.log(err), abs=0.01)
    # OOD rows: log sigma pulled to its target, speech logit to "not speech"
    out = torch.full((3, 7), -3.0)  # sigma far below the OOD target
    out[:, 6] = 0.0
    out.requires_grad_(True)
    terms = loss_terms(out, target[:1], 1, torch.tensor([True, False, False]), math.log(0.3))
    (terms["ood"] + terms["speech"]).backward()
    assert (out.grad[1:, 3:6] < 0).all() and (out.grad[1:, 6] > 0).all() and (out.grad[0, 6] < 0)


def test_report_metrics():
    from training.uq_report import (
        area,
        auroc,
        by_corruption,
        by_voice,
        ccc_bins,
        count_rises,
        error_sources,
        random_ranking,
        selective_curve,
        spearman,
    )

    assert auroc(np.array([2, 3]), np.array([0, 1])) == 1.0
    assert auroc(np.array([0, 1]), np.array([2, 3])) == 0.0
    assert auroc(np.array([1, 1]), np.array([1, 1])) == 0.5
    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 1, 300), rng.normal(0, 1, 300)
    brute = np.mean([[x > y for y in b] for x in a])
    assert auroc(a, b) == pytest.approx(brute)
    assert spearman(np.arange(10), np.arange(10) ** 3) == pytest.approx(1.0)
    err = rng.random(200)
    cover, oracle = selective_curve(err, err)
    assert np.all(np.diff(oracle) <= 0) and cover[0] == 1.0
    assert area(cover, oracle) < area(*selective_curve(err, rng.random(200)))
    # random orders of the same clips: what an uncertainty that knows nothing does
    chance = random_ranking(err, area(cover, oracle))
    assert chance == random_ranking(err, area(cover, oracle))   # seeded
    assert chance["share_area_at_most_own"] == 0.0   # no random order ranks as well as the oracle
    assert random_ranking(err, area(*selective_curve(err, -err)))["share_area_at_most_own"] == 1.0
    assert chance["area_mean"] == pytest.approx(err.mean(), rel=0.05)   # dropping at random keeps the mean
    assert 5 < chance["rises_mean"] < 14 and chance["rises_sd"] > 0   # about half of 19 steps rise
    assert np.all(np.array(chance["band_5"]) <= np.array(chance["band_95"])) and len(chance["band_5"]) == 20
    # per-corruption cells: clips 0 and 1, two kinds; error rises with sigma in "white", not in "clip"
    cells = [(0, "white", 10.0), (1, "white", 10.0), (0, "white", 0.0), (1, "white", 0.0), (0, "clip", 6.0), (1, "clip", 6.0)]
    # and each cell's spread of the outputs: "white 10" outputs 0 and 1 (sd 0.5), "clip 6" constant (0)
    outs = np.array([[0.0] * 3, [1.0] * 3, [0.2] * 3, [0.2] * 3, [0.5] * 3, [0.5] * 3])
    t = by_corruption(np.array([0.1, 0.2, 9.0]), np.array([1.0, 3.0, 9.0]), np.array([0.2, 0.4, 0.6, 0.8, 0.0, 0.2]),
                      np.array([2.0, 2.0, 4.0, 4.0, 5.0, 5.0]), cells,
                      np.array([[0.0] * 3, [0.4] * 3, [9.0] * 3]), outs)
    assert t["clean"] == {"error": pytest.approx(0.15), "sigma": 2.0, "clips": 2,
                          "spread": pytest.approx(0.2)}
    assert [(c["kind"], c["level"]) for c in t["cells"]] == [("white", 10.0), ("white", 0.0), ("clip", 6.0)]
    assert [c["error"] for c in t["cells"]] == pytest.approx([0.3, 0.7, 0.1])
    assert [c["sigma"] for c in t["cells"]] == [2.0, 4.0, 5.0] and t["spearman_cells"] == pytest.approx(-0.5)
    assert [c["spread"] for c in t["cells"]] == pytest.approx([0.5, 0.0, 0.0])
    # the partial oracles: 2 clean clips, then copies in "white 0" (worse) and "clip 6" (better than clean)
    err = np.array([0.1, 0.3, 0.5, 0.7, 0.0, 0.2])
    b = error_sources(err, 2, [(0, "white", 0.0), (1, "white", 0.0), (0, "clip", 6.0), (1, "clip", 6.0)])
    assert b["cells_below_clean"] == 1 and b["cells"] == 2
    assert b["corruption_known"]["variance_share"] == pytest.approx(14 / 17)  # cell means 0.2 / 0.6 / 0.1
    assert b["clip_known"]["variance_share"] == pytest.approx(3 / 17)  # clip 0 and copies 0.2, clip 1 0.4
    # knowing the cell ranks "white 0" first and "clip 6" last: the error never rises
    assert b["corruption_known"]["rises"] == 0
    assert b["corruption_known"]["area"] < area(*selective_curve(err, -err))
    assert "voice_known" not in b   # only with the clips' voices
    # the voice oracles: clips 0 and 1 of voice "a", clip 2 of "b"; each with a copy in "white 0"
    err = np.array([0.1, 0.3, 0.5, 0.2, 0.4, 0.9])
    cells = [(0, "white", 0.0), (1, "white", 0.0), (2, "white", 0.0)]
    b = error_sources(err, 3, cells, ["a", "a", "b"])
    # voice means 0.25 ("a": 0.1 0.3 0.2 0.4) and 0.7 ("b": 0.5 0.9) around 0.4: 0.045 of 0.4 / 6
    assert b["voice_known"]["variance_share"] == pytest.approx(0.045 / (0.4 / 6))
    # voice + cell (clean 0.3, white 0.5) ranks 0.1 0.3 | 0.2 0.4 | 0.5 | 0.9: the error never rises
    assert b["voice_and_corruption_known"]["rises"] == 0
    # with the method's uncertainty, which calls voice "b" (more error) the most certain: the oracle
    # keeps voice "a" first, in unc's order within it (errors 0.1 0.2 0.3 0.4, then b's 0.5 0.9)
    unc = np.array([0.2, 0.6, 0.0, 0.4, 0.8, 0.1])
    b = error_sources(err, 3, cells, ["a", "a", "b"], unc)
    assert b["voice_known_sigma_within"]["rises"] == 0 and "variance_share" not in b["voice_known_sigma_within"]
    assert count_rises(selective_curve(err, unc)[1]) > 0
    assert b["voice_known_sigma_within"]["area"] < area(*selective_curve(err, unc))
    with pytest.raises(ValueError, match="one per clean clip"):
        error_sources(err, 3, cells, ["a", "b"])
    # the table per voice, worst first, with the signed error of each dimension
    rows = by_voice(np.array([[0.5] * 3, [0.7] * 3, [0.2, 0.4, 0.6]]), np.array([1.0, 3.0, 2.0]),
                    np.array([[0.4] * 3, [0.4] * 3, [0.4] * 3]), ["a", "a", "b"])
    assert [r["voice"] for r in rows] == ["a", "b"] and [r["clips"] for r in rows] == [2, 1]
    assert rows[0]["error"] == pytest.approx(0.2) and rows[0]["sigma"] == 2.0
    assert rows[1]["bias"] == pytest.approx([-0.2, 0.0, 0.2]) and rows[1]["error"] == pytest.approx(0.4 / 3)
    # the paper's bins: CCC per 20 % of clips by uncertainty; outputs exact where sigma is low
    tgt = rng.random((100, 3))
    noisy = tgt + np.linspace(0, 1, 100)[:, None] * rng.normal(0, 0.5, (100, 3))
    per_bin = ccc_bins(noisy, tgt, np.linspace(0, 1, 100))
    assert len(per_bin) == 5 and per_bin[0] > 0.95 and per_bin[-1] < per_bin[0]


def test_training_release_and_report_end_to_end(tmp_path, monkeypatch):
    """A few steps of training.uncertainty from the distilled student, the release into a model file
    with the head, and the report on a few clips: every piece of the real path, small."""
    from training import release, uncertainty, uq_report

    run = tmp_path / "uq"
    rep = uncertainty.train(uncertainty.UQConfig(
        init=str(REPO / "training" / "default"), out_dir=str(run), max_iters=2, n_clips=120, batch_speech=4, batch_real=2, batch_ood=2,
        ood_per_kind=2, real_per_group=1, babble_bank=2, threads=1))
    assert set(rep["thresholds"]) >= {"max_sigma", "min_speech_prob"} and rep["pools"]["non_speech"] >= 12
    models = tmp_path / "models"
    fid = release.release(run, models, n_clips=6)
    assert set(fid["ccc"]) >= {"log_sigma_arousal", "speech_logit"}
    m = Model(models / "default.w2s")
    assert m.has_uncertainty and m.thresholds.max_sigma == pytest.approx(rep["thresholds"]["max_sigma"], rel=1e-3)
    card = (models / "default.md").read_text()
    assert "Uncertainty head" in card and "not trained on human emotion ratings" in card.lower()
    out = tmp_path / "report"
    assert uq_report.main([f"--w2s={models / 'default.w2s'}", f"--base={REPO / 'training' / 'default'}", f"--ensemble={REPO / 'training' / 'default'}",
                           f"--out={out}", "--annotated=4", "--real_per_group=1", "--ood_per_kind=1",
                           "--seconds=1", "--corrupt_clips=1", "--mc_steps=1", "--n_clips=120", "--threads=1"]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert {"engine: sigma", "engine: 1 - speech prob", "mc dropout: sigma", "deep ensemble: sigma",
            "silero-vad: 1 - speech prob"} <= set(res["auroc"])
    assert all(0.0 <= v <= 1.0 for per in res["auroc"].values() for v in per.values())
    from training.ood import corruption_grid

    assert set(res["corruptions"]) == {"engine", "mc dropout", "deep ensemble"}
    assert len(res["corruptions"]["engine"]["cells"]) == len(corruption_grid())
    assert "Spearman over cells" in out.with_suffix(".md").read_text()
    # the voice oracles and the table per voice: one row per voice of the 4 clean clips
    sel = res["selective"]["engine"]
    assert {"voice_known", "voice_and_corruption_known"} <= set(sel["bounds"])
    assert sum(r["clips"] for r in sel["by_voice"]) == 4 and all(r["voice"].startswith("espeak-ng:")
                                                                 for r in sel["by_voice"])
    assert "| voice | clips | engine: error" in out.with_suffix(".md").read_text()
    assert (out / "sigma_vs_snr.png").stat().st_size > 1000 and (out / "selective.png").stat().st_size > 1000
    assert "python -m training.uq_report" in out.with_suffix(".md").read_text()
    # the operating points: the model's own thresholds first, agreeing with the decisions table
    ops, dec = res["operating_points"]["engine"], res["decisions"]["engine"]
    assert len(ops) == 16 and (ops[0]["max_sigma"], ops[0]["min_speech_prob"], ops[0]["min_modulation_db"]) == \
        pytest.approx((m.thresholds.max_sigma, m.thresholds.min_speech_prob, m.thresholds.min_modulation_db))
    assert [r["min_modulation_db"] for r in ops[8:]] == [0.0] * 8   # the gate off: --min_modulations' default
    assert all(ops[0]["reliable"][kind] == pytest.approx(d.get("reliable", 0.0)) for kind, d in dec.items())
    assert {"0 dB", "5 dB", "10 dB", "clean"} <= set(ops[0]["error"])
    assert "## Answering noisy speech" in out.with_suffix(".md").read_text()


def test_a_stopped_run_resumes_to_the_uninterrupted_result(tmp_path):
    """--stop_at leaves a checkpoint; --resume=true with only --out_dir continues it (the options come
    from the run) and ends with the weights and history of a run that never stopped, bit for bit
    (the weight average of --ema_decay included). A held out_dir is never overwritten, and a resume
    that changes the recipe is refused."""
    from training import uncertainty
    from training.uncertainty import UQConfig

    small = dict(init=str(REPO / "training" / "default"), max_iters=4, checkpoint_interval=3, n_clips=120,
                 batch_speech=4, batch_real=2, batch_ood=2, ood_per_kind=2, real_per_group=1, babble_bank=2,
                 threads=1, seed=5, ema_decay=0.5)
    whole = uncertainty.train(UQConfig(**small, out_dir=str(tmp_path / "whole")))
    assert uncertainty.train(UQConfig(**small, out_dir=str(tmp_path / "parts"), stop_at=1)) == {"stopped_at": 1}
    assert not (tmp_path / "parts" / "model.safetensors").exists()
    with pytest.raises(SystemExit, match="holds a run"):
        uncertainty.train(UQConfig(**small, out_dir=str(tmp_path / "parts")))
    with pytest.raises(ValueError, match="--lr=0.5 \\(the run has 0.001\\)"):
        uncertainty.train(UQConfig.parse([f"--out_dir={tmp_path / 'parts'}", "--resume=true", "--lr=0.5"]))
    parts = uncertainty.train(UQConfig.parse([f"--out_dir={tmp_path / 'parts'}", "--resume=true"]))
    assert parts["history"] == whole["history"] and parts["ccc"] == whole["ccc"]
    assert parts["thresholds"] == whole["thresholds"]
    from safetensors.torch import load_file

    a, b = (load_file(tmp_path / d / "model.safetensors") for d in ("parts", "whole"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.load(tmp_path / "parts" / "ckpt.pt", weights_only=False)["iter_num"] == 4
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        UQConfig.parse([f"--out_dir={tmp_path / 'none'}", "--resume=true"])


def test_from_fixed_decides_as_predict(default_model, speech_clips):
    """Model.from_fixed re-decides kept engine outputs under any thresholds exactly as predict()
    would decide the clip, and rejects what predict_fixed() cannot have returned."""
    m = default_model
    noise = np.random.default_rng(0).standard_normal(32000).astype(np.float32) * 0.1
    grid = (None, Thresholds(1e-6, 0.0), Thresholds(1e6, 0.0), Thresholds(1e6, 1.0), Thresholds(0.25, 0.2))
    seen = set()
    for pcm in (*speech_clips[:3], noise):
        q = m.predict_fixed(pcm)
        for th in grid:
            p = m.from_fixed(q, th)
            assert p == m.predict(pcm, thresholds=th)
            # and that decision is w2s.h's rule, written out here on the Prediction's own values
            t = th or m.thresholds
            bar_db = m.thresholds.min_modulation_db if t.min_modulation_db is None else t.min_modulation_db
            want = ("no speech" if p.speech_prob < t.min_speech_prob or p.modulation_db < bar_db else
                    "too uncertain" if max(p.sigma) > t.max_sigma else "reliable")
            assert p.decision == want, (th, p)
            seen.add(want)
    assert seen == {"no speech", "too uncertain", "reliable"}   # the grid reaches every branch
    for bad in (q.astype(np.float64), q[:3], q[:7], np.full(8, 2**40, np.int64)):
        with pytest.raises(ArgumentError, match="int32 outputs of predict_fixed"):
            m.from_fixed(bad)
    with pytest.raises(ArgumentTypeError, match="Thresholds"):
        m.from_fixed(q, (0.1, 0.5))


def test_operating_points_are_the_decisions_of_predict(default_model, speech_clips):
    """The report's operating-points table: per thresholds, each group's share called reliable is
    that of predict() under the same thresholds, and the error is the mean over the clips answered."""
    from training.uq_report import operating_points

    m = default_model
    rng = np.random.default_rng(1)
    clips = [*speech_clips[:4], *(rng.standard_normal(16000).astype(np.float32) * a for a in (0.01, 0.3))]
    fixed = [m.predict_fixed(c) for c in clips]
    is_speech = np.array([True] * 4 + [False] * 2)
    err = np.linspace(0.05, 0.2, 4)
    grid = [m.thresholds, Thresholds(0.25, 0.2), Thresholds(1e6, 0.0), Thresholds(1e-6, 0.0), Thresholds(1e6, 0.0, 0.0)]
    def redecide(th: Thresholds) -> list[str]:   # one set of clips, two groups of it
        return [m.from_fixed(q, th).decision for q in fixed]

    rows = operating_points({"speech": (redecide, is_speech, err), "noise": (redecide, ~is_speech, None)}, grid)
    for th, row in zip(grid, rows):
        ok = np.array([m.predict(c, thresholds=th).reliable for c in clips])
        assert (row["max_sigma"], row["min_speech_prob"]) == (th.max_sigma, th.min_speech_prob)
        assert row["reliable"] == {"speech": ok[:4].mean(), "noise": ok[4:].mean()}
        assert row["error"] == {"speech": err[ok[:4]].mean() if ok[:4].any() else None}
    # steady noise is "no speech" by the model's modulation threshold even where every other test is open
    assert rows[2]["reliable"] == {"speech": 1.0, "noise": 0.0} and rows[3]["error"] == {"speech": None}
    assert rows[4]["reliable"] == {"speech": 1.0, "noise": 1.0}


def test_threshold_grid_has_the_model_default_first_and_no_repeated_row():
    """--max_sigmas / --min_speech_probs / --min_modulations that repeat a value, or the model's own,
    add no second row."""
    from training.uq_report import _floats, threshold_grid

    d = Thresholds(0.2, 0.5)
    grid = threshold_grid(d, [0.25, 0.2, 0.25], [0.5, 0.8])
    assert grid == [d, Thresholds(0.25, 0.5), Thresholds(0.2, 0.8), Thresholds(0.25, 0.8)]
    d = Thresholds(0.2, 0.5, 5.0)
    grid = threshold_grid(d, [0.25], [], [0.0, 5.0, 0.0])
    assert grid == [d, Thresholds(0.25, 0.5, 5.0), Thresholds(0.2, 0.5, 0.0), Thresholds(0.25, 0.5, 0.0)]
    assert _floats(" 0.2, 0.8,", "--x") == [0.2, 0.8]
    with pytest.raises(ValueError, match="--x: expected comma-separated numbers"):
        _floats("0.2;0.8", "--x")


def test_extreme_outputs_convert_without_overflow(uq_bytes):
    """An odd model can put any int32 in the log-sigma and logit outputs (found by review of the
    atheris harness): the conversion saturates instead of raising OverflowError."""
    from wav2small.model import prediction_from_fixed

    m = Model.from_bytes(uq_bytes)
    for v in (2**31 - 1, -2**31):
        p = prediction_from_fixed(m._engine, np.full(9, v, np.int32))   # + the modulation and the steadiness
        assert all(math.isfinite(s) and s >= 0 for s in p.sigma) and 0.0 <= p.speech_prob <= 1.0
    t = Thresholds.from_fixed(2**31 - 1, -2**31, 16)
    assert math.isfinite(t.max_sigma) and t.min_speech_prob == 0.0


# ---- the extended training non-speech (training/ood.py) and the ensemble signal -------------------


def _stft_peaks(x: np.ndarray, frame: int = 512) -> np.ndarray:
    """Frequency (Hz) of the strongest bin of each frame that has any energy."""
    frames = [x[a:a + frame] for a in range(0, len(x) - frame, frame)]
    peaks = [np.argmax(np.abs(np.fft.rfft(f * np.hanning(frame)))) * 16000 / frame
             for f in frames if np.sqrt(np.mean(f ** 2)) > 1e-4]
    return np.array(peaks)


def _tonality(x: np.ndarray, share: float = 0.02) -> float:
    """Share of the spectral energy in the strongest `share` of the bins (1.0: a line spectrum)."""
    spec = np.sort(np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2)[::-1]
    return float(spec[: max(1, int(share * len(spec)))].sum() / spec.sum())


def test_extended_train_tones_are_what_they_claim():
    from training import ood

    variants = ood.TONE_TRAIN_VARIANTS
    for v, name in enumerate(variants):
        for i in (v, v + len(variants), v + 2 * len(variants)):   # clip i is variant i % len(variants)
            x = ood._tone_train(i, "train", 0)
            assert np.isfinite(x).all() and 10 * np.log10(np.mean(x ** 2)) > -40, (name, i)
            if name in ("sine", "harmonic", "bandlimited"):
                assert _tonality(x) > 0.9, (name, i, _tonality(x))   # a line spectrum
            if name == "beeps":   # bursts with gaps of digital silence (>= 20 ms)
                silent = np.convolve((x == 0).astype(float), np.ones(320), mode="valid") == 320
                assert silent.any() and _tonality(x, 0.05) > 0.5, (name, i)
            if name in ("chirps", "sweep"):   # the pitch moves
                assert len(np.unique(np.round(_stft_peaks(x) / 50))) >= 4, (name, i)
    # a band-limited square has only odd harmonics, a sawtooth all of them
    rng = np.random.default_rng(0)
    phase = 2 * np.pi * 250 * np.arange(16000) / 16000
    spec = np.abs(np.fft.rfft(ood._waveform(phase, 250.0, "square", rng)))   # 1 Hz bins
    assert spec[500] < 1e-6 * spec[250] and spec[750] > 0.3 * spec[250] and spec[8000:].max() < 1e-6 * spec[250]
    spec = np.abs(np.fft.rfft(ood._waveform(phase, 250.0, "sawtooth", rng)))
    assert spec[500] == pytest.approx(spec[250] / 2, rel=1e-3)


def test_synthetic_effects_are_what_they_claim():
    from training import ood

    variants = ood.FX_TRAIN_VARIANTS
    for v, name in enumerate(variants):
        x = ood._fx_train(v, "train", 0)
        assert np.isfinite(x).all() and np.abs(x).max() > 0 and 1.0 * 16000 <= len(x) <= 8 * 16000, name
        rng = np.random.default_rng(v)
        if name in ("bell", "impact"):   # a struck sound decays
            e = ood._fx_event(name, rng, 3 * 16000)
            q = len(e) // 4
            assert np.mean(e[-q:] ** 2) < 0.3 * np.mean(e[:q] ** 2), name
        if name == "clicks":   # impulsive: a high crest factor
            e = ood._fx_event(name, rng, 3 * 16000)
            assert np.abs(e).max() / np.sqrt(np.mean(e ** 2)) > 4, name
        if name == "zap":   # pitch falls within a zap
            e = ood._fx_event(name, rng, 3 * 16000)
            p = _stft_peaks(e[: int(0.05 * 16000)], 256)
            assert len(p) == 0 or p[0] >= p[-1], name


def test_extended_flag_adds_only_train_generators():
    from training import ood

    kinds = ("tone", "effects")
    basic = ood.items("train", max_per_kind=None, kinds=kinds, extended=False)
    ext = ood.items("train", max_per_kind=None, kinds=kinds)
    assert {it.source for it in ext} - {it.source for it in basic} == {"numpy:fx", "varied-ui-sounds"}
    n = len(ood.TONE_TRAIN_VARIANTS)
    # basic: the original 500 tones (variant i % 5); extended: 100 of each of the n variants (i % n)
    assert {it.name for it in basic if it.kind == "tone"} == {f"tone/np-{i}" for i in range(500)}
    ext_ids = [int(it.name.split("-")[-1]) for it in ext if it.kind == "tone"]
    assert len(ext_ids) == 100 * n and {i % n for i in ext_ids} == set(range(n))
    # the eval split does not depend on the flag
    assert ([it.name for it in ood.items("eval", max_per_kind=None, kinds=kinds, extended=False)]
            == [it.name for it in ood.items("eval", max_per_kind=None, kinds=kinds)])
    # a cap still takes every train source of effects
    capped = ood.items("train", max_per_kind=8, kinds=("effects",))
    assert {it.source for it in capped} == {it.source for it in ext if it.kind == "effects"}


def test_varied_ui_sounds_come_from_train_files_only():
    from training import ood

    train_files = {f for it in ood.items("train", max_per_kind=None, kinds=("effects",)) for f in it.files}
    eval_files = {f for it in ood.items("eval", max_per_kind=None, kinds=("effects",)) for f in it.files}
    varied = [c for c in ood.nonspeech("train", max_per_kind=40, kinds=("effects",)) if c.source == "varied-ui-sounds"]
    assert len(varied) >= 5
    for c in varied:
        assert c.files and set(c.files) <= train_files and not set(c.files) & eval_files, c.name
        assert np.isfinite(c.audio).all() and np.abs(c.audio).max() <= 1.0 and np.abs(c.audio).max() > 0
    # pitch-shifted: not a copy of any one file
    one = varied[0]
    src = ood._load(one.files[0])
    assert not (len(src) >= len(one.audio) and np.allclose(src[: len(one.audio)], one.audio))


def test_ensemble_spread_and_its_loss(speech_clips):
    from training.uncertainty import UQConfig, ensemble_spread, load_ensemble, loss_terms

    members = load_ensemble(UQConfig().ensemble)          # the default: three distilled students
    assert len(members) == 3 and not any(q.requires_grad for m in members for q in m.parameters())
    x = torch.from_numpy(np.stack([c[:16000] for c in speech_clips[:4]]).astype(np.float32))
    s = ensemble_spread(members, x, 3.0)
    ys = torch.stack([m(x)[:, :3] for m in members])
    assert s.shape == (4, 3) and (s > 0).all()
    assert torch.allclose(s, (3.0 * ys.std(0, unbiased=False)) ** 2)
    assert ensemble_spread(members[:1], x, 3.0) is None and ensemble_spread(members, x, 0.0) is None
    assert torch.count_nonzero(ensemble_spread([members[0], members[0]], x, 3.0)) == 0
    # two members a constant c apart in every output: std c / 2, so (weight c / 2)^2 everywhere
    import copy

    shifted = copy.deepcopy(members[0])
    with torch.no_grad():
        shifted.adv.bias[:3] += torch.tensor([0.1, 0.2, 0.4])
    want = (3.0 * torch.tensor([0.1, 0.2, 0.4]) / 2) ** 2
    assert torch.allclose(ensemble_spread([members[0], shifted], x, 3.0), want.expand(4, 3), rtol=1e-4)
    # the NLL's optimum moves from the error to sqrt(error^2 + spread)
    target = torch.full((1, 3), 0.5)
    spread = torch.full((1, 3), 0.2 ** 2)

    def nll(log_sigma: float, sp) -> float:
        out = torch.cat([target + 0.1, torch.full((1, 3), log_sigma), torch.zeros(1, 1)], dim=1)
        return loss_terms(out, target, 1, torch.ones(1, dtype=torch.bool), 0.0, spread=sp)["nll"].item()
    grid = np.linspace(-5, 0, 501)
    assert grid[np.argmin([nll(v, None) for v in grid])] == pytest.approx(math.log(0.1), abs=0.01)
    assert grid[np.argmin([nll(v, spread) for v in grid])] == pytest.approx(0.5 * math.log(0.05), abs=0.01)


def test_new_flags_parse_and_have_help():
    from training.uncertainty import UQConfig

    cfg = UQConfig.parse(["--extended_nonspeech=true", "--ensemble=", "--ensemble_weight=3"])
    assert cfg.extended_nonspeech is True and cfg.ensemble == "" and cfg.ensemble_weight == 3.0
    default = UQConfig.parse([])   # the shipped head: none of the measured options
    assert not default.extended_nonspeech and default.ensemble_weight == 0 and default.voice_shift_prob == 0
    assert UQConfig.parse(["--snap_to_grid=on", "--extended_nonspeech=0"]).snap_to_grid is True
    with pytest.raises(SystemExit):   # a mistyped boolean used to mean False without a word
        UQConfig.parse(["--extended_nonspeech=ture"])
    from training import uncertainty

    # checked before any data is built (a bad coverage used to fail at the end of a 15-minute run)
    for bad, match in ((dict(coverage=1.5), "coverage"), (dict(ood_bn="foo"), "ood_bn"),
                       (dict(max_iters=0), "max_iters"), (dict(threads=0), "threads")):
        with pytest.raises(SystemExit, match=match):
            uncertainty.train(UQConfig(**bad))
    out = subprocess.run([sys.executable, "-m", "training.uncertainty", "--help"], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout
    for flag in ("--extended_nonspeech", "--ensemble ", "--ensemble_weight", "--trim_real"):
        assert flag in out
    assert "second-opinion" in out and "synthetic effects" in out


def test_flags_change_the_training_pool():
    from training.uncertainty import UQConfig, load_pools

    small = dict(n_clips=120, ood_per_kind=8, real_per_group=1, babble_bank=1)
    a = load_pools(UQConfig(**small, extended_nonspeech=True), lambda m: None)
    b = load_pools(UQConfig(**small), lambda m: None)
    assert len(a.ood) == len(b.ood) == 48      # 8 per kind either way
    same = sum(any(len(x) == len(y) and np.array_equal(x, y) for y in b.ood) for x in a.ood)
    assert 24 <= same < 48                     # music, noise, babble, silence equal; tones and effects not all


def test_voice_shift_moves_pitch_and_keeps_length():
    from training.uncertainty import voice_shift

    t = np.arange(32000) / 16000
    x = (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    for factor in (0.8, 1.25):
        y = voice_shift(x, factor)
        assert len(y) == len(x) and y.dtype == np.float32
        peak = np.argmax(np.abs(np.fft.rfft(y[:16000] * np.hanning(16000))))   # 1 Hz bins
        assert peak == pytest.approx(200 * factor, abs=2)
    assert np.allclose(voice_shift(x, 1.0), x, atol=1e-4)


def test_voice_shifted_rows_train_sigma_not_the_mean():
    """--voice_shift_prob: shifted rows are in the batch (their audio differs) but out of the mean's rows."""
    from training.uncertainty import UQConfig, batch, load_pools

    small = dict(n_clips=120, ood_per_kind=1, real_per_group=1, babble_bank=1, batch_speech=6, batch_real=1,
                 batch_ood=1)
    pools = load_pools(UQConfig(**small), lambda m: None)
    x0, y0, s0, rows0 = batch(pools, UQConfig(**small), 3)
    x1, y1, s1, rows1 = batch(pools, UQConfig(**small, voice_shift_prob=1.0), 3)
    assert bool(rows0.all()) and not bool(rows1.any())          # default: every annotated row teaches the mean
    assert torch.equal(s0, s1) and x0.shape == x1.shape
    assert not torch.allclose(x0[:6], x1[:6])
    off = UQConfig.parse(["--voice_shift_prob=0"])
    assert torch.equal(batch(pools, UQConfig(**{**small, "voice_shift_prob": off.voice_shift_prob}), 3)[0], x0)


def test_release_reproduces_the_shipped_model(tmp_path):
    """`python -m training.release training/default_uq` (the documented command) makes the shipped
    model: same layout, and the same outputs up to the float calibration's last bits (PyTorch's
    reductions differ with the thread count and CPU: measured up to 1e-4, 3e-4 on the speech
    logit). Calibrating on another non-speech split moved outputs by 1e-3 to 3e-2."""
    from training import release
    from training.ood import nonspeech

    release.release(REPO / "training" / "default_uq", tmp_path)
    again, shipped = Model(tmp_path / "default.w2s"), Model()
    assert again.config == shipped.config and again.nbytes == shipped.nbytes
    assert again._engine.thresholds == shipped._engine.thresholds   # the modulation's too (5 dB)
    _, clips = release.real_speech(48)
    clips = clips[1::2] + [c.audio for c in nonspeech("eval", max_per_kind=2)]  # not calibration's
    diff = np.max([np.abs(again.predict_fixed(x) - shipped.predict_fixed(x)) for x in clips], axis=0) / 65536
    assert np.all(diff[:6] <= 5e-4) and diff[6] <= 2e-3 and diff[7] == 0, diff   # the modulation: no weights


def test_the_release_command_runs_under_the_kernel_cap_and_gives_the_shipped_bytes(tmp_path, capfd):
    """`python -m training.release` started by hand starts itself again under training.rebuild's cap,
    so that on a machine of the shipped head's kernel probe it writes the shipped file byte for byte
    (uncapped, the calibration's last bits follow the CPU's kernels)."""
    from training import rebuild, release

    assert release.main([str(REPO / "training" / "default_uq"), f"--out_dir={tmp_path / 'rel'}"]) == 0
    out = capfd.readouterr().out
    pinned = rebuild.pinned_here(tmp_path / "pin")
    assert pinned, "this test needs an x86-64 CPU with AVX2 and FMA"
    assert "float kernels pinned to AVX2" in out and f"wrote {tmp_path / 'rel' / 'default.w2s'}" in out
    built = rebuild.read_built(REPO / "training" / "default_uq")
    if built is not None and built["kernel_probe"] == rebuild.probe_here({**os.environ, **pinned}):
        assert (tmp_path / "rel" / "default.w2s").read_bytes() == DEFAULT_W2S.read_bytes()


def _fake_fold_students(tmp_path, voices: list[list[str]]) -> str:
    """Leave-voices-out students as training.distill writes them (weights + train.json's config),
    here random-init: the code path is the same, and a test cannot afford three distillations."""
    from training.distill import save_json, save_model

    dirs = []
    for k, left in enumerate(voices):
        torch.manual_seed(100 + k)
        d = tmp_path / f"fold{k}"
        d.mkdir()
        save_model(d / "model.safetensors", Wav2Small().state_dict(), config=Wav2Small().cfg.to_dict())
        save_json(d / "train.json", {"config": {"exclude_voices": ",".join(left)}})
        dirs.append(str(d))
    return ",".join(dirs)


def test_honest_voice_gap_and_the_batch_it_follows(tmp_path):
    """--honest: each annotated clip's gap comes from the student that left its voice out, is >= 0,
    and step `it` adds the gap of exactly the clips its batch drew; the batch itself is unchanged."""
    from training.uncertainty import UQConfig, annotated_picks, batch, honest_students, load_pools

    small = dict(n_clips=120, ood_per_kind=1, real_per_group=1, babble_bank=1, batch_speech=6, batch_real=1,
                 batch_ood=1)
    plain = load_pools(UQConfig(**small), lambda m: None)
    assert plain.gap is None and len(plain.voices) == len(plain.annotated)
    names = sorted(set(plain.voices))
    spec = _fake_fold_students(tmp_path, [names[0::2], names[1::2]])
    assert [left for _, left in honest_students(spec)] == [set(names[0::2]), set(names[1::2])]
    pools = load_pools(UQConfig(**small, honest=spec), lambda m: None)
    assert pools.gap.shape == (len(pools.annotated), 3) and (pools.gap >= 0).all() and (pools.gap > 0).any()
    # the gap of one clip, by hand: its fold's squared error minus the init student's, floored at 0
    from training.uncertainty import load_ensemble

    k = 3
    fold = next(m for m, left in honest_students(spec) if pools.voices[k] in left)
    x = torch.from_numpy(pools.annotated[k])[None]
    with torch.no_grad():
        e_fold = (fold(x)[0].double().numpy() - pools.targets[k]) ** 2
        e_ref = (load_ensemble(UQConfig().init)[0](x)[0].double().numpy() - pools.targets[k]) ** 2
    assert np.allclose(pools.gap[k], np.maximum(0, e_fold - e_ref), atol=1e-6)
    # the batch does not depend on the flag; annotated_picks names its clips
    cfg = UQConfig(**small, honest=spec)
    x0, y0, *_ = batch(plain, UQConfig(**small), 5)
    x1, y1, *_ = batch(pools, cfg, 5)
    assert torch.equal(x0, x1) and torch.equal(y0, y1)
    assert np.allclose(pools.targets[annotated_picks(pools, cfg, 5)[1]], y1.numpy())
    (tmp_path / "none").mkdir()
    with pytest.raises(SystemExit, match="left out no voices"):  # a student that heard every voice
        honest_students(_fake_fold_students(tmp_path / "none", [[]]))


def test_release_replaces_the_package_model_only_in_a_checkout(tmp_path):
    from training.release import PACKAGE_MODELS, in_checkout

    assert in_checkout()   # this repository: the release flow writes wav2small/models
    installed = tmp_path / "site-packages" / "wav2small" / "models"
    installed.mkdir(parents=True)
    assert not in_checkout(installed) and PACKAGE_MODELS.is_dir()


def test_release_card_names_the_runs_non_default_options():
    """The card's rebuild command carries every training.uncertainty option the run changed."""
    from dataclasses import asdict

    from training.release import uq_flags
    from training.uncertainty import UQConfig

    shipped = json.loads((REPO / "training" / "default_uq" / "train.json").read_text())
    # the shipped head's options (docs/uncertainty.md, R44 seed 17; out_dir and a thresholds-only rerun left out;
    # its threads, 2, are the default)
    assert uq_flags(shipped) == (" --seed=17 --mean_on_clean=False --max_iters=1200 --ema_decay=0.995"
                                 " --kind_pool=effects:450 --kind_shares=True"
                                 " --kind_weight=effects:2.25,noise:0.375,silence:0.375 --extended_nonspeech=True"
                                 " --keep_adv=60.0 --snap_to_grid=True --familiarity_weight=0.06 --nonspeech_weight=3.0"
                                 " --speech_min_snr=10.0 --sigma_rank_weight=1.0 --sigma_rank_margin=0.1"
                                 " --voice_weight=whisper:4 --speech_coverage=0.96 --coverage_snr=20.0")
    assert uq_flags({"config": {**asdict(UQConfig()), "out_dir": "x", "thresholds_only": True, "resume": True,
                                "checkpoint_interval": 7, "stop_at": 3}}) == ""   # how it ran, not what
    changed = {"config": {**asdict(UQConfig()), "honest": "a,b", "honest_weight": 2.0, "threads": 1}}
    assert uq_flags(changed) == " --honest=a,b --honest_weight=2.0 --threads=1"


def test_ood_bn_keeps_nonspeech_out_of_batchnorm_statistics():
    """--ood_bn: 'speech' normalises every row with the speech rows' statistics and moves the running
    statistics as the speech rows alone would; 'eval' normalises non-speech by the running statistics;
    'batch' (the default) is the plain forward pass."""
    import copy

    from training.model import Wav2Small, Wav2SmallConfig
    from training.uncertainty import UQConfig, forward_batch

    torch.manual_seed(0)
    model = Wav2Small(Wav2SmallConfig(n_outputs=7, uncertainty=True)).train()
    x = torch.randn(6, 8000) * torch.tensor([0.1, 0.2, 0.1, 0.3, 3.0, 0.001])[:, None]
    bn_stats = lambda m: [(b.running_mean.clone(), b.running_var.clone(), int(b.num_batches_tracked))
                          for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]

    def same(a, b):
        return all(torch.allclose(p, q, atol=1e-6) and torch.allclose(r, s, atol=1e-6) and n == k
                   for (p, r, n), (q, s, k) in zip(a, b))

    # speech: the speech rows' outputs are those of a train-mode pass over the speech rows alone
    m1, ref = copy.deepcopy(model), copy.deepcopy(model)
    out = forward_batch(m1, x, 4, "speech")
    assert torch.allclose(out[:4], ref(x[:4]), atol=1e-5)
    assert same(bn_stats(m1), bn_stats(ref)) and not same(bn_stats(m1), bn_stats(model))
    assert "forward" not in vars(next(b for b in m1.modules() if isinstance(b, torch.nn.BatchNorm2d)))
    out.sum().backward()                                  # gradients flow through the replaced BatchNorm
    # eval: speech rows in train mode, then the non-speech rows by the running statistics
    m2, ref = copy.deepcopy(model), copy.deepcopy(model)
    out = forward_batch(m2, x, 4, "eval")
    ref(x[:4])
    assert same(bn_stats(m2), bn_stats(ref))
    assert torch.allclose(out[4:], ref.eval()(x[4:]), atol=1e-6)
    # batch: the plain pass
    m3, ref = copy.deepcopy(model), copy.deepcopy(model)
    assert torch.equal(forward_batch(m3, x, 4, "batch"), ref(x))
    assert UQConfig.parse([]).ood_bn == "batch" and UQConfig.parse([]).ood_trunk is True
    # ood_trunk=False: the non-speech rows' loss reaches the head rows only
    for mode in ("batch", "speech"):
        m4 = copy.deepcopy(model)
        forward_batch(m4, x, 4, mode, ood_trunk=False)[4:].sum().backward()
        assert m4.adv.weight.grad.abs().sum() > 0
        assert all(p.grad is None or not p.grad.any() for n, p in m4.named_parameters() if not n.startswith("adv."))


def test_selection_measures_on_validation_clips(uq_bytes, tmp_path):
    """training.uq_select's clips (small) and measures through the engine, selective prediction included."""
    from training.ood import corruption_grid
    from training.ood import family
    from training.uq_select import build, detail_line, engine_runner, measure, noisy_at_20db

    data = build(lambda m: None, n_val=4, real_per_group=1, per_kind=1, noisy=1, n_clips=120, per_probe=2)
    assert len(data["corrupted"]) == len(corruption_grid()) and data["targets"].shape == (4, 3)
    assert [len(v) for v in data["babble_probe"].values()] == [2, 2]
    path = tmp_path / "uq.w2s"
    path.write_bytes(uq_bytes)
    run, thresholds = engine_runner(path)
    r = measure(run, data, *thresholds)
    assert set(r) == {"auroc_sigma", "auroc_speech_prob", "spearman_sigma_minus_snr", "selective", "lsb_sensitivity",
                      "ccc", "called_speech", "heard_as_speech", "babble_probe", "answered", "heard_by_group",
                      "called_speech_clips", "called_speech_by_family", "trained_nonspeech_left_out"}
    assert set(r["trained_nonspeech_left_out"].values()) == {0}
    # the clips a run trained on are left out of every non-speech measure (here: the one music clip)
    trained = {kind: np.array([kind == "music"] * len(v)) for kind, v in data["nonspeech"].items()}
    left = measure(run, data, *thresholds, trained=trained)
    assert left["trained_nonspeech_left_out"]["music"] == 1 and "music" not in left["called_speech"]
    assert "music" not in left["auroc_sigma"] and left["called_speech"] == {
        k: v for k, v in r["called_speech"].items() if k != "music"}
    assert "left out, in the run's training pool: music 1" in detail_line(left)
    # answered: the engine's own decision (w2s_decide) at the model file's thresholds, and at thresholds
    # in the middle of the noisy clips' outputs (this random head answers nothing at its own)
    model = wav2small.Model(path)
    noisy_out = run(data["noisy"])
    mid = (float(np.median(noisy_out[:, 6])), float(np.median(noisy_out[:, 3:6].max(axis=1))))
    at_mid = Thresholds(math.exp(mid[1]), 1 / (1 + math.exp(-mid[0])))
    for th, got in ((None, r["answered"]), (at_mid, measure(run, data, *mid, *thresholds[2:])["answered"])):
        def reliable(clips):
            return np.array([model.from_fixed(model.predict_fixed(c), th).reliable for c in clips])
        ok, ok_noisy, levels = reliable(data["speech"]), reliable(data["noisy"]), sorted(set(data["snr"].tolist()))
        assert got["espeak"] == float(ok[:4].mean()) and got["real"] == float(ok[4:].mean())
        assert got["snr_levels"] == levels
        assert got["noisy"] == [float(ok_noisy[data["snr"] == lv].mean()) for lv in levels]
        # every validation clip at 20 dB: white copies first, then babble, the same clips on every call
        many = noisy_at_20db(data)
        ok_many = reliable(many)
        assert len(many) == 2 * len(data["val_clips"]) and all(len(c) <= 64000 for c in many)
        assert got["all_val_20db"] == {"both": float(ok_many.mean()), "white": float(ok_many[:len(many) // 2].mean()),
                                       "babble": float(ok_many[len(many) // 2:].mean()), "clips": len(many)}
    assert 0 < np.mean(got["noisy"]) < 1
    assert all(np.array_equal(a, b) for a, b in zip(noisy_at_20db(data), many))
    clean = data["val_clips"][0][:64000]   # the white copy is that clip at 20 dB SNR
    assert 10 * np.log10(np.mean(clean.astype(np.float64) ** 2)
                         / np.mean((many[0] - clean).astype(np.float64) ** 2)) == pytest.approx(20.0, abs=0.05)
    # called speech: the speech logit at the model file's threshold (the fixture's 0.5)
    bar = thresholds[0]
    assert bar == 0.5
    for kind, clips in data["nonspeech"].items():
        assert r["called_speech"][kind] == float((run(clips)[:, 6] >= bar).mean())
    heard = run(data["speech"])[:, 6] >= bar
    assert r["heard_as_speech"] == {"espeak": float(heard[:4].mean()), "real": float(heard[4:].mean())}
    # per speaker group (one file each here) and by name: the same decisions, itemised
    groups = data["real_groups"]
    assert len(groups) == len(data["speech"]) - 4 and len(set(groups)) == len(groups) > 1
    assert r["heard_by_group"] == {g: float(h) for g, h in sorted(zip(groups, heard[4:]))}
    for kind, clips in data["nonspeech"].items():
        called = run(clips)[:, 6] >= bar
        assert r["called_speech_clips"][kind] == [n for n, c in zip(data["nonspeech_names"][kind], called) if c]
        assert all(n.startswith(kind + "/") for n in data["nonspeech_names"][kind])
        fams = r["called_speech_by_family"][kind]   # one clip per kind here: its family, called or not
        assert fams == {family(data["nonspeech_names"][kind][0]): [int(called[0]), 1]}
        assert (f"{kind}: {next(iter(fams))} 1/1" in detail_line(r)) == bool(called[0])
    line = detail_line(r)
    assert ("every file of every group" in line) == all(heard[4:])
    assert all(g in line for g, h in zip(groups, heard[4:]) if not h)
    # the other measures recomputed from the engine's outputs with uq_report's tested metrics
    from training.metrics import ccc_numpy
    from training.uq_report import auroc, spearman

    sp = run(data["speech"])
    for name, probe in r["babble_probe"].items():
        b = run(data["babble_probe"][name])
        assert probe["called_speech"] == float((b[:, 6] >= bar).mean())
        assert probe["auroc_sigma"] == auroc(b[:, 3:6].max(axis=1), sp[:, 3:6].max(axis=1))
        assert probe["auroc_speech_prob"] == auroc(-b[:, 6], -sp[:, 6])
    noisy = run(data["noisy"])
    assert r["spearman_sigma_minus_snr"] == spearman(noisy[:, 3:6].max(axis=1), -data["snr"])
    want = ccc_numpy(run(data["val_clips"])[:, :3], data["val_targets"])
    assert list(r["ccc"]) == ["arousal", "dominance", "valence"] and np.allclose(list(r["ccc"].values()), want)
    assert all(0 <= v < 1 for v in r["lsb_sensitivity"].values())
    sel = r["selective"]
    # at full coverage the curve is the plain mean error over clean + corrupted clips
    out = run(data["speech"][:4] + [a for *_, a in data["corrupted"]])
    t = np.concatenate([data["targets"], data["targets"][[i for i, *_ in data["corrupted"]]]])
    assert sel["coverage"][0] == 1.0 and sel["mean_abs_error"][0] == pytest.approx(np.abs(out[:, :3] - t).mean())
    assert sel["monotonic"] == (sel["rises"] == 0) and sel["area"] > 0
    assert -1.0 <= sel["spearman_cells"] <= 1.0
    # the table per corruption: one row per cell of the grid, the clean row over the corrupted clips' sources
    table = sel["by_corruption"]
    assert len(table["cells"]) == len(corruption_grid())
    assert table["clean"]["clips"] == len({i for i, *_ in data["corrupted"]})
    white = [c for c in table["cells"] if c["kind"] == "white"]
    n = len(data["speech"][:4])
    cell = (white[0]["kind"], white[0]["level"])
    copies = [j for j, (_, k, lv, _) in enumerate(data["corrupted"]) if (k, lv) == cell]
    assert white[0]["error"] == pytest.approx(np.abs(out[n:][copies, :3] - t[n:][copies]).mean())


def test_trained_clips_are_the_runs_own_pool_items():
    """uq_select's validation non-speech is seed 0's listing after its first 150 items; a run of
    another seed draws its pool from its own listing, which holds some of the same whole files (the
    Oxygen effects): those, and only those, are found, by name and samples."""
    from dataclasses import asdict

    from training.ood import items
    from training.uncertainty import UQConfig
    from training.uq_select import SECONDS, trained_clips

    n = int(SECONDS * 16000)
    listing = items("train", seed=0, max_per_kind=170, kinds=("effects",), extended=True)[150:]
    clips = [np.asarray(it.rendered()[0], np.float32)[:n] for it in listing]
    data = {"nonspeech": {"effects": clips}, "nonspeech_names": {"effects": [it.name for it in listing]}}
    cfg = asdict(UQConfig(extended_nonspeech=True))
    assert not trained_clips(data, {**cfg, "seed": 0})["effects"].any()   # seed 0: the listing's other part
    got = trained_clips(data, {**cfg, "seed": 5})["effects"]
    pool = {it.name for it in items("train", seed=5, max_per_kind=150, kinds=("effects",), extended=True)}
    assert got.any() and all(listing[i].name in pool for i in np.flatnonzero(got))
    assert all(not listing[i].name.startswith("effects/fx-") for i in np.flatnonzero(got))   # no generator draw
    # --ood_seed: the pool is that seed's listing, whatever --seed trains with
    assert np.array_equal(trained_clips(data, {**cfg, "seed": 0, "ood_seed": 5})["effects"], got)
    assert not trained_clips(data, {**cfg, "seed": 5, "ood_seed": 0})["effects"].any()


def test_trained_clips_include_other_cuts_of_the_same_file():
    """A run of another seed cuts the music-on-hold files at other points: a validation stretch
    that overlaps one of its pool's segments was heard in training, although no pool item has its
    name; stretches that overlap none stay."""
    from dataclasses import asdict, replace

    from training.ood import items, same_stretch
    from training.uncertainty import UQConfig
    from training.uq_select import SECONDS, trained_clips

    n = int(SECONDS * 16000)
    listing = [it for it in items("train", seed=0, max_per_kind=190, kinds=("music",))[150:]
               if it.source == "asterisk-moh-opsound-wav"]
    clips = [np.asarray(it.rendered()[0], np.float32)[:n] for it in listing]
    data = {"nonspeech": {"music": clips}, "nonspeech_names": {"music": [it.name for it in listing]}}
    cfg = asdict(UQConfig(extended_nonspeech=True))
    assert not trained_clips(data, {**cfg, "seed": 0})["music"].any()
    got = trained_clips(data, {**cfg, "seed": 5})["music"]
    pool = items("train", seed=5, max_per_kind=150, kinds=("music",))
    assert {listing[i].name for i in np.flatnonzero(got)} - {it.name for it in pool}   # not found by name
    for it, heard in zip(listing, got):   # the clip is cut to SECONDS: its first seconds count
        overlaps = any(same_stretch(it, p) for p in pool)
        assert overlaps or not heard, it.name
        short = replace(it, span=(it.span[0], it.span[0] + 0.5))
        assert heard or not any(same_stretch(short, p) for p in pool), it.name
    assert 0 < got.sum() < len(listing)


def test_trim_digital_silence():
    from training.uncertainty import trim_digital_silence

    x = np.zeros(48000, np.float32)
    x[16000:24000] = 0.1
    x[30000] = 1.5 / 32768  # within 2 LSB of zero: silence
    assert np.array_equal(trim_digital_silence(x), x[16000:24000])
    assert trim_digital_silence(np.zeros(16000, np.float32)) is None
    assert trim_digital_silence(x, min_seconds=0.6) is None  # 0.5 s of sound left: too little


def test_trim_real_takes_the_digital_silence_off_the_real_speech_pool():
    """--trim_real: the pool's real speech starts and ends with sound (klettres' files carry up to
    seconds of zeros); without it the files are as packaged."""
    from training.uncertainty import UQConfig, load_pools

    small = dict(n_clips=120, ood_per_kind=1, real_per_group=1, babble_bank=1)
    plain = load_pools(UQConfig(**small), lambda m: None)
    trimmed = load_pools(UQConfig(**small, trim_real=True), lambda m: None)
    sound_at_both_ends = lambda x: min(abs(x[0]), abs(x[-1])) * 32768.0 > 2
    assert trimmed.real and all(sound_at_both_ends(x) for x in trimmed.real)
    assert not all(sound_at_both_ends(x) for x in plain.real)   # some packaged files start or end in zeros
    assert len(trimmed.real) <= len(plain.real) and sum(map(len, trimmed.real)) < sum(map(len, plain.real))
    assert [len(x) for x in plain.ood] == [len(x) for x in trimmed.ood]   # nothing else changes


def test_selection_summary_over_seeds(tmp_path):
    from training.uq_select import main, summarize, variant_of

    assert variant_of("runs/K30S_s2") == "K30S" and variant_of("runs/old") == "old" and variant_of("a_sx") == "a_sx"

    def one(c: float) -> dict:
        return {"int8": {"ccc": {"arousal": c, "dominance": c, "valence": c}, "auroc_sigma": {"all": 0.9, "babble": 0.8},
                         "auroc_speech_prob": {"all": 0.95}, "spearman_sigma_minus_snr": 0.8,
                         "selective": {"area": 0.06, "rises": 3}, "lsb_sensitivity": {"real": 0.02}}}
    res = {"r/A_s0": one(0.6), "r/A_s1": one(0.8), "r/B_s0": one(0.5)}
    table = summarize(res).splitlines()
    assert table[2].startswith("| A | 2 | 0.700 ± 0.141 |") and table[3].startswith("| B | 1 | 0.500 |")
    assert table[3].endswith("| nan | nan | nan |")     # measures these runs' JSON predates
    f = tmp_path / "sel.json"
    f.write_text(json.dumps(res))
    assert main([str(f), "--summarize=1"]) == 0


def test_the_rule_for_a_new_head_names_each_line_it_fails(tmp_path, capsys):
    """training.uq_select --verdict: the documented rule as code, on --out JSON without measuring."""
    from training.uq_select import PROBE_VOICES, RULE, SHIPPED_MEAN_CCC, main, verdict

    good = {"int8": {"auroc_sigma": {"all": 0.995}, "auroc_speech_prob": {"all": 0.997},
                     "spearman_sigma_minus_snr": 0.85, "heard_as_speech": {"espeak": 1.0, "real": 0.96},
                     "babble_probe": {f"espeak-ng validation voices x{PROBE_VOICES}": {"called_speech": 0.1}},
                     "called_speech": {"music": 0.05, "effects": 0.10},   # a bar itself is met
                     "ccc": {"arousal": SHIPPED_MEAN_CCC + 0.02, "dominance": SHIPPED_MEAN_CCC,
                             "valence": SHIPPED_MEAN_CCC - 0.01},
                     "answered": {"all_val_20db": {"both": 0.93}}},
            "fidelity_ccc": {"arousal": 0.9999, "speech_logit": 0.9985}}
    assert [ok for *_, ok in verdict(good)] == [True] * len(RULE)
    assert dict((n, v) for n, v, _ in verdict(good))["mean CCC"] == pytest.approx(SHIPPED_MEAN_CCC + 0.01 / 3)
    bad = json.loads(json.dumps(good))
    bad["int8"]["heard_as_speech"]["real"] = 0.9375
    bad["fidelity_ccc"]["speech_logit"] = 0.997
    bad["int8"]["ccc"] = {"arousal": SHIPPED_MEAN_CCC - 0.001, "dominance": SHIPPED_MEAN_CCC, "valence": SHIPPED_MEAN_CCC}
    del bad["int8"]["answered"]["all_val_20db"]   # a result from before the measure
    failed = [n for n, v, ok in verdict(bad) if not ok]
    assert failed == ["real speech heard", "int8 fidelity (worst output)", "mean CCC",
                      "answered at 20 dB SNR, every validation clip"]
    assert math.isnan(verdict(bad)[-1][1])
    f = tmp_path / "sel.json"
    f.write_text(json.dumps({"runs/A_s0": good, "runs/A_s1": bad}))
    assert main([str(f), "--verdict=1"]) == 0
    out = capsys.readouterr().out
    assert "runs/A_s0: qualifies" in out and ("runs/A_s1: fails: real speech heard, int8 fidelity (worst output), "
                                              "mean CCC, answered at 20 dB SNR, every validation clip") in out
    assert "    FAIL real speech heard 0.9375" in out and "    ok   AUROC σ 0.9950" in out
    (tmp_path / "cut.json").write_text('{"runs/A_s0": ')
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "cut.json"), "--verdict=1"])
    assert e.value.code == 2 and "cut.json is not a JSON file written by --out" in capsys.readouterr().err


def test_the_rule_table_prints_each_run_as_the_docs_tabulate_it(tmp_path, capsys):
    """training.uq_select --table: docs/uncertainty.md's per-head tables come from a command, the short
    names of the lines a run fails included; a result from before the family counts shows dashes."""
    from training.uq_select import DECIDING_FAMILIES, PROBE_VOICES, SHIPPED_MEAN_CCC, main

    c = SHIPPED_MEAN_CCC
    run = {"int8": {"ccc": {"arousal": c + 0.01, "dominance": c, "valence": c - 0.01},
                    "auroc_sigma": {"all": 0.993, "music": 0.99, "tone": 0.994, "effects": 0.974},
                    "auroc_speech_prob": {"all": 0.996}, "spearman_sigma_minus_snr": 0.878,
                    "heard_as_speech": {"espeak": 1.0, "real": 0.9625},
                    "babble_probe": {f"train voices x{PROBE_VOICES}": {"called_speech": 0.175},
                                     f"espeak-ng validation voices x{PROBE_VOICES}": {"called_speech": 0.2}},
                    "called_speech": {"music": 0.092, "effects": 0.155},
                    "answered": {"all_val_20db": {"both": 0.9467}},
                    "called_speech_by_family": {"effects": {"fx-blips": [5, 11], "varied-ui": [16, 94]},
                                                "music": {"melody": [15, 146]}}},
           "fidelity_ccc": {"arousal": 0.99998, "speech_logit": 0.99981}}
    old = json.loads(json.dumps(run))
    del old["int8"]["called_speech_by_family"]
    f = tmp_path / "sel.json"
    f.write_text(json.dumps({"runs/R_s14": run, "runs/R_s13": old}))
    assert main([str(f), "--table=1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| head | CCC A / D / V (int8) |") and lines[0].endswith("| fails |")
    assert lines[1] == "|---" * 10 + "|"
    assert lines[2] == (f"| runs/R_s14 | {c + 0.01:.3f} / {c:.3f} / {c - 0.01:.3f} ({c:.4f}) | 0.993 (0.990, 0.994, "
                        "0.974) / 0.996 | 0.878 | 1.000 / 0.963 | 0.175 / 0.200 | 0.092 / 0.155 | 0.947 | 0.9998 | "
                        "effects |")
    fams = lines[lines.index("") + 1:]
    assert fams[0] == "| head | " + " | ".join(name for _, name in DECIDING_FAMILIES) + " |"
    assert fams[2] == "| runs/R_s14 | 5/11 | – | 16/94 | 15/146 |"
    assert fams[3] == "| runs/R_s13 | – | – | – | – |"
    del old["int8"]["babble_probe"]   # a result from before a measure the table shows: an error, not a crash
    f.write_text(json.dumps({"runs/R_s13": old}))
    with pytest.raises(SystemExit) as e:
        main([str(f), "--table=1"])
    assert e.value.code == 2 and "lack the int8 engine's measure 'babble_probe'" in capsys.readouterr().err


def test_uq_select_rebuilds_an_unreadable_clip_cache(tmp_path):
    """A cache cut off mid-write (the clips take minutes to build at full size) is rebuilt, not a
    crash in every later run; it is written whole or not at all, and read back as built."""
    from training import uq_select

    cache = tmp_path / "clips.pkl"
    cache.write_bytes(b"\x80\x04\x95\x10\x00")   # the first bytes of a pickle, cut off
    small = dict(n_val=4, real_per_group=1, per_kind=1, noisy=1, n_clips=120, per_probe=2)
    said = []
    data = uq_select.load_clips(cache, said.append, **small)
    assert data["version"] == uq_select.CACHE_VERSION and "unreadable" in said[0]
    n_said = len(said)
    again = uq_select.load_clips(cache, said.append, **small)   # from the cache: nothing built or said
    assert len(said) == n_said and again.keys() == data.keys() and np.array_equal(again["targets"], data["targets"])
    assert all(np.array_equal(a, b) for a, b in zip(again["val_clips"], data["val_clips"]))
    assert not list(tmp_path.glob("*.tmp"))
    n_said = len(said)
    bigger = uq_select.load_clips(cache, said.append, **{**small, "per_kind": 2})   # another size: built again
    assert "holds 1 non-speech clips per kind, not 2" in said[n_said]
    assert bigger["per_kind"] == 2 and all(len(v) == 2 for v in bigger["nonspeech"].values())


def test_uq_report_checks_its_inputs_before_building_anything(tmp_path):
    def report(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "training.uq_report", f"--out={tmp_path / 'r'}", *args],
                              capture_output=True, text=True, cwd=REPO, timeout=60)

    for args, match in ((["--w2s=/nonexistent.w2s"], "no model file"),
                        ([f"--base={tmp_path}"], "no model.safetensors"),
                        (["--ensemble=training/default,nowhere"], "in nowhere"), (["--threads=0"], "threads"),
                        (["--max_sigmas=0.2;0.3"], "comma-separated")):
        r = report(*args)
        assert r.returncode == 2 and match in r.stderr and "eval set" not in r.stderr, (args, r.stderr[-500:])


def test_release_needs_the_runs_train_json(tmp_path):
    """Without train.json the card would be '?' and 'nan' with a wrong rebuild command, written by
    default over the package's model."""
    from training import release

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.safetensors").write_bytes((REPO / "training" / "default_uq" / "model.safetensors")
                                                        .read_bytes())
    with pytest.raises(SystemExit, match="has no train.json"):
        release.release(tmp_path / "run", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_uq_report_refuses_a_model_without_head_and_bad_counts(tmp_path, capsys):
    """A .w2s without the uncertainty head failed only after ~3 minutes ("axis 1 is out of bounds");
    --seconds and the clip counts are checked before any clip is built."""
    from training import uq_report

    torch.manual_seed(0)
    noise = [np.random.default_rng(k).normal(0, 0.1, 16000).astype(np.float32) for k in range(2)]
    plain = tmp_path / "plain.w2s"
    plain.write_bytes(model_bytes(quantize(Wav2Small().eval(), noise)))
    assert not Model(plain).has_uncertainty
    common = [f"--out={tmp_path / 'r'}", "--base=", "--silero=0"]
    for args, match in (([f"--w2s={plain}"], "has no uncertainty head: release a training.uncertainty run"),
                        (["--seconds=0"], "--seconds is the length clips are cut to, > 0, got 0"),
                        (["--seconds=-1"], "> 0, got -1"),
                        (["--annotated=0"], "--annotated must be >= 1, got 0"),
                        (["--annotated=-5"], "--annotated must be >= 1, got -5"),
                        (["--corrupt_clips=0"], "--corrupt_clips must be >= 1"),
                        (["--mc_p=1"], "--mc_p is a dropout probability")):
        with pytest.raises(SystemExit) as e:
            uq_report.main([*common, *args])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "python -m training.uq_report: error: " in err and match in err, (args, err)
        assert "eval set" not in err and not (tmp_path / "r.md").exists()


def test_uq_select_checks_runs_and_threads_before_building_the_clips(tmp_path, capsys):
    """A plain distill run (no thresholds) gave KeyError: 'thresholds' after the validation set was
    built (minutes), --threads=0 a RuntimeError traceback, a missing run was found only after the set."""
    from training import uq_select

    cache = tmp_path / "clips.pkl"
    plain = "training/default is not a training.uncertainty run: its train.json has no decision thresholds"
    missing = "nowhere is not a training.uncertainty run: no model.safetensors or train.json"
    for runs, args, match in (([REPO / "training" / "default"], [], plain), ([tmp_path / "nowhere"], [], missing),
                              ([REPO / "training" / "default_uq"], ["--threads=0"], "--threads must be >= 1, got 0"),
                              ([REPO / "training" / "default_uq"], ["--per_kind=0"], "--per_kind must be >= 1, got 0")):
        with pytest.raises(SystemExit) as e:
            uq_select.main([*map(str, runs), f"--cache={cache}", *args])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "python -m training.uq_select: error: " in err and match in err, err
        assert not cache.exists()


def test_mean_on_clean_false_leaves_the_clean_rows_to_the_keep_term():
    """--mean_on_clean=false: the same batch (audio, targets, which rows are clean), but the mean's
    rows are exactly the corrupted ones."""
    from training.uncertainty import UQConfig, batch, load_pools

    small = dict(n_clips=120, ood_per_kind=1, real_per_group=1, babble_bank=1, batch_speech=8, batch_real=1,
                 batch_ood=1)
    pools = load_pools(UQConfig(**small), lambda m: None)
    x0, y0, s0, rows0, clean0 = batch(pools, UQConfig(**small), 2, with_clean=True)
    x1, y1, s1, rows1, clean1 = batch(pools, UQConfig(**small, mean_on_clean=False, keep_adv=1.0), 2, with_clean=True)
    assert torch.equal(x0, x1) and torch.equal(y0, y1) and torch.equal(s0, s1) and torch.equal(clean0, clean1)
    assert bool(rows0.all()) and 0 < int(clean1.sum()) < 8      # this step has both kinds of rows
    assert torch.equal(rows1, ~clean1)


def test_weight_average_follows_its_formula():
    """WeightAverage after steps 0..2 of weights w_t: avg <- d_t avg + (1 - d_t) w_t with
    d_t = min(decay, (1 + t) / (10 + t)); BatchNorm's running statistics are averaged alike, its
    step counter copied; loaded back, the model holds the average."""
    from training.uncertainty import WeightAverage

    model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    avg = WeightAverage(model, decay=0.5)
    want = 1.0
    for t, w in enumerate((3.0, 5.0, 9.0)):
        with torch.no_grad():
            model[0].weight.fill_(w)
            model[1].running_mean.fill_(w)
            model[1].num_batches_tracked.fill_(t + 7)
        avg.update(model, t)
        d = min(0.5, (1 + t) / (10 + t))
        want = d * want + (1 - d) * w
    state = avg.state_dict()
    assert state["0.weight"][0].tolist() == pytest.approx([want, want])
    assert 3.0 < want < 9.0 and state["1.num_batches_tracked"].item() == 9
    model.load_state_dict(state)
    assert model[0].weight[0, 0].item() == pytest.approx(want)


@pytest.mark.parametrize("option, match", [
    ("--mean_on_clean=false", "--mean_on_clean=false leaves the clean rows' A/D/V to the keep term and the CCC "
                              "term to the corrupted rows: it needs --keep_adv > 0 and --mean_on_corrupted=true, "
                              "got --keep_adv=0 --mean_on_corrupted=true"),
    ("--batch_speech=0", "--batch_speech must be >= 2"),
    ("--batch_speech=1", "--batch_speech must be >= 2"),
    ("--crop_seconds=-1", "--crop_seconds must be > 0.1, got -1"),
    ("--batch_ood=-2", "--batch_ood is a number of clips per step, >= 0, got -2"),
    ("--batch_real=-1", "--batch_real is a number of clips per step, >= 0"),
    ("--corrupt_prob=5", "--corrupt_prob is a share of rows, within 0..1, got 5"),
    ("--n_clips=-1", "--n_clips is the prosody corpus size, >= 1, got -1"),
    ("--derived_voices=2", "--derived_voices is a share of the annotated training clips, 0..1, got 2.0"),
    ("--babble_bank=0", "--babble_bank must be >= 1"),
    ("--real_per_group=0", "--real_per_group must be >= 1"),
    ("--voice_shift_prob=1.5", "--voice_shift_prob is a share of rows"),
    ("--ema_decay=1", "--ema_decay is a decay within 0..1 (0 = off), got 1.0"),
    ("--kind_pool=effect:450", "--kind_pool must be KIND:N[,KIND:N...] with KIND one of music, noise, babble, "
                               "tone, silence, effects and N >= 1 (e.g. effects:450), got 'effect:450'"),
    ("--kind_pool=effects:0", "--kind_pool must be KIND:N"),
    ("--kind_pool=effects:many", "--kind_pool must be KIND:N"),
])
def test_uncertainty_refuses_bad_counts_before_the_pools(tmp_path, option, match):
    """--batch_speech=0 failed after 84 s of pool building, --crop_seconds=-1 and --batch_ood=-2 with
    numpy errors, --corrupt_prob=5 was accepted, --n_clips=-1 was reported as "n must be >= 0"."""
    from training import uncertainty

    with pytest.raises(SystemExit, match=re.escape(match)):
        uncertainty.main([f"--out_dir={tmp_path / 'uq'}", option])
    assert not (tmp_path / "uq").exists()


def test_kind_pool_sizes_the_named_kinds_and_keeps_the_common_pool():
    """--kind_pool=effects:N takes the first N items of the effects listing and leaves every other
    kind, and the order of the pool, as one call of training.ood with --ood_per_kind gives it (the
    recorded runs' pools, bit for bit)."""
    from training.ood import KINDS, items
    from training.uncertainty import pool_sizes

    assert pool_sizes(7, "") == dict.fromkeys(KINDS, 7)
    sizes = pool_sizes(7, "effects:20, tone:3")
    assert list(sizes) == list(KINDS) and sizes["effects"] == 20 and sizes["tone"] == 3 and sizes["music"] == 7
    joint = [it.name for it in items("train", seed=3, max_per_kind=7, extended=True)]
    by_kind = [it.name for kind, n in pool_sizes(7, "").items()
               for it in items("train", seed=3, max_per_kind=n, kinds=(kind,), extended=True)]
    assert by_kind == joint
    effects = [it.name for it in items("train", seed=3, max_per_kind=20, kinds=("effects",), extended=True)]
    assert effects[:7] == [n for n in joint if n.startswith("effects/")]


def test_every_uncertainty_option_has_a_help_line(capsys):
    """21 of the 62 options of --help had no description (theirs were comments on UQConfig)."""
    from dataclasses import fields

    from test_training_cli import option_help

    from training import uncertainty

    with pytest.raises(SystemExit) as e:
        uncertainty.main(["--help"])
    assert e.value.code == 0
    got = option_help(capsys.readouterr().out)
    assert set(got) == {"-h"} | {f"--{f.name}" for f in fields(uncertainty.UQConfig)}
    assert [k for k, v in got.items() if not v] == []
    assert got["--batch_speech"].startswith("annotated espeak-ng clips per step")
