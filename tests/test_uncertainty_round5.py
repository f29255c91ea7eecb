"""The fifth round's options of training.uncertainty (docs/uncertainty.md): --keep_adv, a
distillation term that holds A/D/V to the frozen --init student (off, 0, the loss is exactly the
old one), and --l1_on_grid, the first conv layer on its int8 grid and frozen."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import REPO, record_calls


def _outputs(seed: int = 0, rows: int = 7, n_annotated: int = 5) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(rows, 7, generator=g) * 0.3
    target = torch.rand(n_annotated, 3, generator=g)
    anchor = torch.rand(n_annotated, 3, generator=g)
    is_speech = torch.tensor([True] * (rows - 2) + [False] * 2)
    return out, target, anchor, is_speech


def test_weight_zero_is_the_old_loss_exactly():
    from training.uncertainty import loss_terms

    out, target, anchor, is_speech = _outputs()
    rows = torch.tensor([True, False, True, True, False])
    old = loss_terms(out, target, 5, is_speech, -1.2)
    for kw in ({}, {"anchor": anchor, "anchor_rows": rows, "keep_weight": 0.0}, {"anchor": None, "keep_weight": 3.0}):
        new = loss_terms(out, target, 5, is_speech, -1.2, **kw)
        assert list(new) == list(old) == ["ccc", "nll", "speech", "ood"]
        assert all(torch.equal(new[k], old[k]) for k in old)   # bit for bit
    # the same for the other optional inputs (mean rows, spread)
    clean = torch.tensor([True, True, False, True, True])
    spread = torch.full((5, 3), 0.01)
    a = loss_terms(out, target, 5, is_speech, -1.2, clean, spread)
    b = loss_terms(out, target, 5, is_speech, -1.2, clean, spread, anchor, rows, 0.0)
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_keep_term_is_the_weighted_squared_distance_on_the_marked_rows():
    from training.uncertainty import loss_terms

    out, target, anchor, is_speech = _outputs(1)
    rows = torch.tensor([True, False, True, True, False])
    out.requires_grad_(True)
    old = loss_terms(out, target, 5, is_speech, -1.2)
    new = loss_terms(out, target, 5, is_speech, -1.2, anchor=anchor, anchor_rows=rows, keep_weight=30.0)
    want = 30.0 * ((out[:5, :3][rows] - anchor[rows]) ** 2).mean()
    assert torch.allclose(new["keep"], want) and new["keep"] > 0
    assert all(torch.equal(new[k], old[k]) for k in old)          # the other terms do not change
    assert torch.allclose(sum(new.values()), sum(old.values()) + want)
    # its gradient reaches the A/D/V outputs of the marked rows only
    (g,) = torch.autograd.grad(new["keep"], out)
    assert g[:5, :3][rows].abs().sum() > 0
    assert not g[:5, :3][~rows].any() and not g[:, 3:].any() and not g[5:].any()
    assert torch.allclose(g[:5, :3][rows], 30.0 * 2 * (out[:5, :3][rows] - anchor[rows]) / (3 * int(rows.sum())))
    # all rows by default; no marked row: zero
    every = loss_terms(out, target, 5, is_speech, -1.2, anchor=anchor, keep_weight=2.0)["keep"]
    assert torch.allclose(every, 2.0 * ((out[:5, :3] - anchor) ** 2).mean())
    none = loss_terms(out, target, 5, is_speech, -1.2, anchor=anchor, anchor_rows=torch.zeros(5, dtype=torch.bool),
                      keep_weight=2.0)["keep"]
    assert none.item() == 0.0


def test_batch_reports_its_clean_rows_without_changing():
    """batch(..., with_clean=True) is the same batch plus which annotated rows are uncorrupted."""
    from training.uncertainty import UQConfig, batch, load_pools

    small = {"n_clips": 120, "ood_per_kind": 1, "real_per_group": 1, "babble_bank": 1, "batch_speech": 8,
             "batch_real": 1, "batch_ood": 1}
    pools = load_pools(UQConfig(**small), lambda m: None)
    cfg = UQConfig(**small)
    plain = batch(pools, cfg, 4)
    *same, clean = batch(pools, cfg, 4, with_clean=True)
    assert len(plain) == 4 and all(torch.equal(a, b) for a, b in zip(plain, same))
    assert clean.dtype == torch.bool and clean.shape == (8,) and clean.any() and not clean.all()
    n = int(cfg.crop_seconds * 16000)
    picks = np.random.default_rng([cfg.seed, 0x5A, 4]).integers(len(pools.annotated), size=8)
    for row, (i, c) in enumerate(zip(picks, clean.tolist())):  # a clean row is a crop of its clip, as it is
        x = pools.annotated[i]
        found = any(np.array_equal(plain[0][row].numpy(), np.resize(x, len(x) + n)[o:o + n])
                    for o in range(max(1, len(x) - n + 1)))
        assert found == c or len(x) < n, (row, c)


def test_training_adds_the_term_and_only_it(tmp_path, monkeypatch):
    """Two short runs from the distilled student, keep_adv 0 and 5: same batches, same first step's
    terms; the second has the keep term (the squared distance to the frozen init student's A/D/V on
    the clean rows) and ends elsewhere. --keep_adv parses and is documented."""
    import subprocess
    import sys

    from training import uncertainty

    small = {"init": str(REPO / "training" / "default"), "max_iters": 2, "n_clips": 120, "batch_speech": 6,
             "batch_real": 1, "batch_ood": 2, "ood_per_kind": 2, "real_per_group": 1, "babble_bank": 2, "threads": 1}
    seen = record_calls(monkeypatch, uncertainty, "loss_terms")
    off = uncertainty.train(uncertainty.UQConfig(**small, out_dir=str(tmp_path / "off")))
    n_off = len(seen)
    on = uncertainty.train(uncertainty.UQConfig(**small, out_dir=str(tmp_path / "on"), keep_adv=5.0))
    assert "keep" not in off["history"][0] and on["history"][0]["keep"] > 0
    assert all(off["history"][0][k] == on["history"][0][k] for k in ("ccc", "nll", "speech", "ood"))
    # step 0 of the keep run: the anchor is the init student's (eval mode) output on the clean rows
    args = seen[n_off][0]
    anchor, rows, weight = args[7], args[8], args[9]
    assert weight == 5.0 and rows.any()
    x, _, _, _, clean = uncertainty.batch(uncertainty.load_pools(uncertainty.UQConfig(**small), lambda m: None),
                                          uncertainty.UQConfig(**small), 0, with_clean=True)
    assert torch.equal(rows, clean)
    init = uncertainty.load_ensemble(small["init"])[0]
    with torch.no_grad():
        want = init(x[:6][clean])[:, :3]
    assert torch.allclose(anchor[rows], want, atol=1e-6) and not anchor[~rows].any()
    # without the option the call passes no anchor at all
    assert seen[0][0][7] is None and seen[0][0][9] == 0.0
    a = uncertainty.load_safetensors(tmp_path / "off" / "model.safetensors").state_dict()
    b = uncertainty.load_safetensors(tmp_path / "on" / "model.safetensors").state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert uncertainty.UQConfig.parse(["--keep_adv=2.5"]).keep_adv == 2.5 and uncertainty.UQConfig().keep_adv == 0
    out = subprocess.run([sys.executable, "-m", "training.uncertainty", "--help"], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout
    assert "--keep_adv" in out and "frozen copy" in out


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_release_card_names_keep_adv_only_when_set(weight):
    from dataclasses import asdict

    from training.release import uq_flags
    from training.uncertainty import UQConfig

    cfg = {"config": {**asdict(UQConfig()), "keep_adv": weight}}
    assert uq_flags(cfg) == ("" if weight == 0 else " --keep_adv=1.0")


def test_first_layer_on_grid_is_what_the_exporter_makes_and_stays_frozen(tmp_path):
    """--l1_on_grid: the snapped layer quantizes to the same codes, its float (folded) weights are
    those codes times their scales, and the training leaves it and its BatchNorm untouched while
    the rest of the trunk learns."""
    from training import uncertainty
    from training.model import load_safetensors
    from training.quantize import conv_weight_codes

    base = load_safetensors(REPO / "training" / "default" / "model.safetensors")
    m = uncertainty.with_uncertainty_head(base, -2.3)
    before = conv_weight_codes(m.vgg7.l1)
    uncertainty.snap_first_layer(m)
    codes, scale, folded, bias = conv_weight_codes(m.vgg7.l1)
    assert np.array_equal(codes, before[0]) and np.allclose(scale, before[1], rtol=1e-6)
    assert np.abs(folded - codes * scale[:, None, None, None]).max() <= 1e-6 * np.abs(folded).max()
    assert np.array_equal(bias, before[3]) and not any(q.requires_grad for q in m.vgg7.l1.parameters())
    small = {"init": str(REPO / "training" / "default"), "max_iters": 3, "n_clips": 120, "batch_speech": 6,
             "batch_real": 1, "batch_ood": 2, "ood_per_kind": 2, "real_per_group": 1, "babble_bank": 2, "threads": 1}
    uncertainty.train(uncertainty.UQConfig(**small, out_dir=str(tmp_path / "g"), l1_on_grid=True))
    trained = load_safetensors(tmp_path / "g" / "model.safetensors")
    for name, t in m.vgg7.l1.state_dict().items():
        assert torch.equal(trained.vgg7.l1.state_dict()[name], t), name       # weights and running statistics
    assert not torch.equal(trained.vgg7.l2.conv.weight, m.vgg7.l2.conv.weight)   # the rest learns
    assert np.array_equal(conv_weight_codes(trained.vgg7.l1)[0], codes)
    with pytest.raises(SystemExit, match="ood_bn=batch"):
        uncertainty.train(uncertainty.UQConfig(**small, out_dir=str(tmp_path / "x"), l1_on_grid=True, ood_bn="speech"))
    assert uncertainty.UQConfig.parse(["--l1_on_grid=true"]).l1_on_grid and not uncertainty.UQConfig().l1_on_grid


def test_snap_to_grid_gives_the_float_model_the_engines_weights():
    """--snap_to_grid: every quantized weight becomes the value of its code; quantizing again gives
    the same codes, the offsets to the grid vanish, and a second snap changes nothing. The shipped
    head is on the grid."""
    from training.model import load_safetensors
    from training.qat import Grid
    from training.quantize import conv_weight_codes, head_weight_codes, head_wide_rows, vox_weight_codes
    from training.uncertainty import UQConfig, snap_to_grid

    def codes(m):
        out = [conv_weight_codes(getattr(m.vgg7, f"l{i}"))[0] for i in range(1, m.cfg.n_layers + 1)]
        return [*out, *vox_weight_codes(m)[0::2], head_weight_codes(m, head_wide_rows(m.cfg))[0]]

    from training.uncertainty import with_uncertainty_head

    m = with_uncertainty_head(load_safetensors(REPO / "training" / "default" / "model.safetensors"), -2.3).eval()
    ranges = {**{f"l{i}": 1.0 for i in range(1, m.cfg.n_layers + 1)}, "pooled": 1.0, "gram": 1.0}
    before = codes(m)
    offsets = Grid(m, ranges).delta
    assert all(float(d.abs().max()) > 1e-6 for d in offsets.values())      # not on the grid yet
    adv = m.adv.weight.detach().clone()
    snap_to_grid(m)
    assert all(np.array_equal(a, b) for a, b in zip(before, codes(m)))
    for name, d in Grid(m, ranges).delta.items():
        assert float(d.abs().max()) < 1e-7, name
    assert torch.allclose(m.adv.weight, adv + offsets["adv"])
    state = {k: v.clone() for k, v in m.state_dict().items()}
    snap_to_grid(m)
    assert all(torch.allclose(state[k], v, rtol=0, atol=1e-7) for k, v in m.state_dict().items())
    assert UQConfig.parse(["--snap_to_grid=true"]).snap_to_grid and not UQConfig().snap_to_grid
    # the shipped head was trained with it: its float weights are the engine's
    shipped = load_safetensors(REPO / "training" / "default_uq" / "model.safetensors").eval()
    assert all(float(d.abs().max()) < 1e-7 for d in Grid(shipped, ranges).delta.values())


def test_card_says_what_the_options_did():
    from dataclasses import asdict

    from training.release import recipe_notes
    from training.uncertainty import UQConfig

    assert recipe_notes(asdict(UQConfig())) == ""
    text = recipe_notes({**asdict(UQConfig()), "extended_nonspeech": True, "keep_adv": 30.0, "snap_to_grid": True})
    flat = " ".join(text.split())
    assert "extended generators" in flat and "weight 30)" in flat and "engine's weights" in flat
    flat = " ".join(recipe_notes({**asdict(UQConfig()), "familiarity_weight": 0.06}).split())
    assert "unfamiliar" in flat and "(0.06 x" in flat and "training.familiarity" in flat
    assert "clean clips only" not in flat and "weighed" not in flat
    flat = " ".join(recipe_notes({**asdict(UQConfig()), "familiarity_weight": 0.06, "familiarity_rows": "clean",
                                  "nonspeech_weight": 3.0}).split())
    assert "clean clips only" in flat and "weighed 3 times a speech clip" in flat
    flat = " ".join(recipe_notes({**asdict(UQConfig()), "speech_min_snr": 0.0, "babble_voices": "4-12",
                                  "babble_speed": 1.25}).split())
    assert "below 0 dB SNR had no speech/non-speech target" in flat
    assert "4-12 training voices at once, each voice played up to 1.25 times" in flat
    assert "played" not in recipe_notes({**asdict(UQConfig()), "babble_voices": "4-12"})
    flat = " ".join(recipe_notes({**asdict(UQConfig()), "espeak_babble": 150}).split())
    assert "150 more non-speech clips were babble of the annotator's espeak-ng training voices" in flat
    assert all(len(line) <= 100 for line in text.splitlines())
    # the shipped head's later options (R31), each said once
    flat = " ".join(recipe_notes({**asdict(UQConfig()), "mean_on_clean": False, "sigma_rank_weight": 1.0,
                                  "sigma_rank_margin": 0.1, "voice_weight": "whisper:4,klatt3:2"}).split())
    assert "clean annotated clips had no CCC term of their own" in flat
    assert "(weight 1, margin 0.1)" in flat and "sigma rises with noise" in flat
    assert "the whisper voice's 4 times, the klatt3 voice's 2 times as often" in flat
    assert "moving average" not in flat
    flat = " ".join(recipe_notes({**asdict(UQConfig()), "ema_decay": 0.995}).split())
    assert "an exponential moving average of the training steps' (decay 0.995," in flat


def test_card_says_where_the_thresholds_come_from():
    from dataclasses import asdict

    from training.release import threshold_origin
    from training.uncertainty import UQConfig

    flat = " ".join(threshold_origin(asdict(UQConfig())).split())
    assert flat == ("The sigma threshold is the 95% quantile of the largest sigma over clean validation speech "
                    "(each set apart, the largest threshold kept); the speech probability's is the classifier's "
                    "own boundary.")
    flat = " ".join(threshold_origin({**asdict(UQConfig()), "coverage_snr": 20.0, "speech_coverage": 0.96}).split())
    assert "and over that speech under white noise and under babble at 20 dB SNR" in flat
    assert flat.endswith("the speech probability's hears 96% of the clean validation speech.")


def test_noise_floor_is_small_seeded_and_off_by_default():
    """--noise_floor: Gaussian noise of 0.5-4 LSB RMS on the chosen share of rows, a pure function of
    (seed, step) drawn apart from the batch; share 0 returns the very same tensor."""
    from training.augment import NOISE_FLOOR_LSB
    from training.uncertainty import UQConfig, with_noise_floor

    x = torch.zeros(400, 16000)
    assert with_noise_floor(x, 0.0, 0, 3) is x and UQConfig().noise_floor == 0.0
    y = with_noise_floor(x, 0.5, 0, 3)
    assert torch.equal(y, with_noise_floor(x, 0.5, 0, 3)) and not torch.equal(y, with_noise_floor(x, 0.5, 0, 4))
    rms = y.pow(2).mean(dim=1).sqrt() * 32768
    heard = rms > 0
    assert 0.4 < heard.float().mean() < 0.6  # about half the rows
    assert NOISE_FLOOR_LSB[0] * 0.95 < rms[heard].min() and rms[heard].max() < NOISE_FLOOR_LSB[1] * 1.05
    # added to the audio, whatever it is
    assert torch.allclose(with_noise_floor(x + 0.25, 1.0, 0, 3) - 0.25, with_noise_floor(x, 1.0, 0, 3), atol=1e-6)
    assert UQConfig.parse(["--noise_floor=0.5"]).noise_floor == 0.5


def test_noise_floor_changes_what_the_student_hears_not_the_anchor(tmp_path, monkeypatch):
    """Two 1-step runs with the keep term, noise floor off and on: the same batch and anchor (the frozen
    student hears the rows without the noise), different outputs of the student."""
    from training import uncertainty

    small = {"init": str(REPO / "training" / "default"), "max_iters": 1, "n_clips": 120, "batch_speech": 6,
             "batch_real": 1, "batch_ood": 2, "ood_per_kind": 2, "real_per_group": 1, "babble_bank": 2,
             "threads": 1, "keep_adv": 5.0}
    calls = record_calls(monkeypatch, uncertainty, "loss_terms")
    uncertainty.train(uncertainty.UQConfig(**small, out_dir=str(tmp_path / "off")))
    uncertainty.train(uncertainty.UQConfig(**small, out_dir=str(tmp_path / "on"), noise_floor=1.0))
    (out0, y0, *_, anchor0, rows0, _), (out1, y1, *_, anchor1, rows1, _) = [args for args, _ in calls]
    assert torch.equal(y0, y1) and torch.equal(rows0, rows1) and torch.equal(anchor0, anchor1)
    assert not torch.equal(out0, out1)


def test_nonspeech_weight_weighs_the_non_speech_rows_of_the_speech_term_only():
    """--nonspeech_weight=W: the speech term is sum(w * cross-entropy) / B with w = W on
    non-speech rows and 1 on speech rows; W = 1 is the old loss bit for bit."""
    from training.uncertainty import loss_terms

    out, target, _, is_speech = _outputs(2)
    old = loss_terms(out, target, 5, is_speech, -1.2)
    same = loss_terms(out, target, 5, is_speech, -1.2, nonspeech_weight=1.0)
    assert all(torch.equal(same[k], old[k]) for k in old)
    new = loss_terms(out, target, 5, is_speech, -1.2, nonspeech_weight=3.0)
    assert all(torch.equal(new[k], old[k]) for k in old if k != "speech")
    logit = out[:, 6].double()
    ce = -torch.where(is_speech, torch.log(torch.sigmoid(logit)), torch.log(1 - torch.sigmoid(logit)))
    want = (torch.where(is_speech, 1.0, 3.0).double() * ce).sum() / len(ce)
    assert torch.isclose(new["speech"].double(), want, rtol=1e-5)
    assert new["speech"] > old["speech"]


def test_familiarity_rows_must_be_all_or_clean(tmp_path):
    from training.uncertainty import UQConfig, train

    with pytest.raises(SystemExit, match="familiarity_rows"):
        train(UQConfig(familiarity_rows="corrupted", out_dir=str(tmp_path)))


@pytest.mark.parametrize("spec", ["4-", "x-9", "9-4", "0-3", ""])
def test_babble_voices_must_be_a_range(tmp_path, spec):
    from training.uncertainty import UQConfig, train, voice_range

    with pytest.raises(SystemExit, match="babble_voices"):
        train(UQConfig(babble_voices=spec, out_dir=str(tmp_path)))
    assert voice_range("4-12") == (4, 12) and voice_range("6") == (6, 6)
    with pytest.raises(SystemExit, match="babble_speed"):
        train(UQConfig(babble_speed=0.8, out_dir=str(tmp_path)))
    with pytest.raises(SystemExit, match="espeak_babble"):
        train(UQConfig(espeak_babble=-1, out_dir=str(tmp_path)))


def test_espeak_babble_mixes_distinct_voices_into_the_pool():
    """--espeak_babble: clips of several annotated voices at once (each at most once per clip), unit
    RMS before a -35..-12 dBFS level, added to the non-speech pool only; 0 leaves the pool as it was."""
    from training.ood import mix_talkers
    from training.uncertainty import UQConfig, clip_babble, load_pools, talker_streams

    rng = np.random.default_rng(0)
    # eight voices, each a sine of its own frequency: what a mix holds is visible in its spectrum
    freqs = [200.0 * (k + 1) for k in range(8)]
    t = np.arange(8000) / 16000
    clips = [np.sin(2 * np.pi * f * t) * (k % 3 + 1) for f in freqs for k in range(2)]
    voices = [f"v{k}" for k in range(8) for _ in range(2)]
    streams = list(talker_streams(clips, voices, 5, 16000, np.random.default_rng(1)))
    assert len(streams) == 5 and all(np.sqrt(np.mean(x ** 2)) == pytest.approx(1.0) for x in streams)
    peaks = {int(np.argmax(np.abs(np.fft.rfft(x)))) for x in streams}
    assert len(peaks) == 5                                   # five different voices
    assert len(list(talker_streams(clips, voices, 20, 16000, rng))) == 8   # never more than there are
    out = clip_babble(clips, voices, 6, (3, 4), np.random.default_rng(2), seconds=1.0)
    assert len(out) == 6 and all(x.dtype == np.float32 and len(x) == 16000 for x in out)
    for x in out:
        spectrum = np.abs(np.fft.rfft(x))
        assert 3 <= int((spectrum > 0.1 * spectrum.max()).sum()) <= 4
        assert -35.5 <= 20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2))) <= -11.5
    one = mix_talkers(talker_streams(clips, voices, 1, 16000, np.random.default_rng(3)), 16000, rng)
    assert np.sqrt(np.mean(one ** 2)) == pytest.approx(1.0)

    small = dict(n_clips=120, ood_per_kind=4, real_per_group=1, babble_bank=1)
    plain = load_pools(UQConfig(**small), lambda m: None)
    more = load_pools(UQConfig(**small, espeak_babble=5), lambda m: None)
    assert len(more.ood) == len(plain.ood) + 5
    assert all(np.array_equal(a, b) for a, b in zip(plain.ood, more.ood))
    assert all(np.array_equal(a, b) for a, b in zip(plain.annotated, more.annotated))


def test_speech_labelled_leaves_rows_out_of_the_speech_term_only():
    """speech_labelled (--speech_min_snr): unmarked rows weigh 0 in the speech cross-entropy, which
    is still divided by the batch size; all rows marked is the old term bit for bit."""
    from training.uncertainty import loss_terms

    out, target, _, is_speech = _outputs(3)
    old = loss_terms(out, target, 5, is_speech, -1.2)
    every = loss_terms(out, target, 5, is_speech, -1.2, speech_labelled=torch.ones(7, dtype=torch.bool))
    assert all(torch.equal(every[k], old[k]) for k in old)
    marked = torch.tensor([True, False, True, False, True, True, True])
    for w in (1.0, 3.0):
        new = loss_terms(out, target, 5, is_speech, -1.2, nonspeech_weight=w, speech_labelled=marked)
        assert all(torch.equal(new[k], old[k]) for k in old if k != "speech")
        logit = out[:, 6].double()
        ce = -torch.where(is_speech, torch.log(torch.sigmoid(logit)), torch.log(1 - torch.sigmoid(logit)))
        want = (marked.double() * torch.where(is_speech, 1.0, w).double() * ce).sum() / len(ce)
        assert torch.isclose(new["speech"].double(), want, rtol=1e-5)


def test_batch_reports_the_snr_of_its_noisy_rows(monkeypatch, tmp_path):
    """batch(..., with_snr=True) is the same batch plus each annotated row's SNR under additive
    noise (inf for clean rows and other corruptions), and train() leaves the rows under
    --speech_min_snr out of the speech term (every row in it by default)."""
    from training import uncertainty
    from training.ood import SNRS

    small = {"init": str(REPO / "training" / "default"), "n_clips": 120, "ood_per_kind": 1, "real_per_group": 1,
             "babble_bank": 1, "batch_speech": 16, "batch_real": 1, "batch_ood": 1, "max_iters": 1, "threads": 1}
    cfg = uncertainty.UQConfig(**small)
    pools = uncertainty.load_pools(cfg, lambda m: None)
    plain = uncertainty.batch(pools, cfg, 0, with_clean=True)
    *same, snr = uncertainty.batch(pools, cfg, 0, with_clean=True, with_snr=True)
    assert len(same) == 5 and all(torch.equal(a, b) for a, b in zip(plain, same))
    clean = same[4]
    assert snr.shape == (16,) and torch.isinf(snr[clean]).all()
    noisy = snr[~torch.isinf(snr)]
    assert len(noisy) and set(noisy.tolist()) <= set(map(float, SNRS)), snr
    calls = record_calls(monkeypatch, uncertainty, "loss_terms")
    uncertainty.train(uncertainty.UQConfig(**small, out_dir=str(tmp_path / "off")))
    uncertainty.train(uncertainty.UQConfig(**small, out_dir=str(tmp_path / "on"), speech_min_snr=100.0))
    (_, off), (_, on) = calls
    assert off["speech_labelled"] is None
    want = torch.ones(18, dtype=torch.bool)
    want[:16] = torch.isinf(snr)       # at 100 dB every noisy row is under the bar, the others are not
    assert torch.equal(on["speech_labelled"], want)
