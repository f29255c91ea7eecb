"""Augmentation: each step does what augment.py says, on real speech, deterministically."""
from __future__ import annotations

import numpy as np
import pytest

from training import augment


@pytest.fixture(scope="module")
def speech(speech_clips) -> np.ndarray:
    clip = max(speech_clips, key=len)[:48000]
    return (0.5 * clip / np.abs(clip).max()).astype(np.float32)


def band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2  # windowed: no leakage from the clip's edges
    f = np.fft.rfftfreq(len(x), 1 / 16000)
    return float(spec[(f >= lo) & (f < hi)].sum())


def test_views_are_a_pure_function_of_preset_and_seed(speech):
    p = augment.draw("strong", 123)
    assert p == augment.draw("strong", 123) and augment.key(p) == augment.key(augment.draw("strong", 123))
    assert np.array_equal(augment.apply(speech, p), augment.apply(speech, p))
    assert augment.draw("none", 5) == {} and augment.key({}) == ""
    assert np.array_equal(augment.apply(speech, {}), speech)
    drawn = [augment.draw("default", s) for s in range(400)]
    # each step appears at about its probability
    for step, prob in (("reverb", 0.3), ("filter", 0.3), ("noise", 0.5), ("clip", 0.1), ("gain", 0.5)):
        assert abs(np.mean([step in d for d in drawn]) - prob) < 0.08, step
    with pytest.raises(ValueError, match="preset"):
        augment.draw("loud", 0)


def test_noise_lands_at_the_requested_snr(speech):
    for color in ("white", "pink", "brown"):
        for snr in (0.0, 10.0, 25.0):
            y = augment.apply(speech, {"seed": 1, "noise": {"color": color, "snr": snr}})
            noise = y.astype(np.float64) - speech
            measured = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise ** 2))
            assert abs(measured - snr) < 0.2, (color, snr, measured)
    white = augment.colored_noise(32000, "white", np.random.default_rng(0))
    brown = augment.colored_noise(32000, "brown", np.random.default_rng(0))
    # brown noise has its energy at low frequencies, white noise spreads it evenly
    assert band_energy(brown, 0, 500) > 10 * band_energy(brown, 4000, 8000)
    assert 0.5 < band_energy(white, 0, 4000) / band_energy(white, 4000, 8000) < 2


def test_filters_cut_what_they_should():
    # white noise probes every band (the telephone speech clips have nothing above 4 kHz to cut)
    speech = (0.1 * np.random.default_rng(1).standard_normal(48000)).astype(np.float32)
    low = augment.apply(speech, {"seed": 0, "filter": {"kind": "lowpass", "hz": 2000}})
    assert band_energy(low, 3000, 8000) < 0.01 * band_energy(speech, 3000, 8000)
    assert band_energy(low, 100, 1500) > 0.8 * band_energy(speech, 100, 1500)
    high = augment.apply(speech, {"seed": 0, "filter": {"kind": "highpass", "hz": 400}})
    assert band_energy(high, 0, 250) < 0.02 * band_energy(speech, 0, 250)
    tel = augment.apply(speech, {"seed": 0, "filter": {"kind": "bandpass", "hz": [300, 3400]}})
    assert band_energy(tel, 4500, 8000) < 0.01 * band_energy(speech, 4500, 8000)


def test_reverb_adds_a_decaying_tail():
    rng = np.random.default_rng(0)
    h = augment.room_impulse(0.5, 6.0, rng)
    assert len(h) == 8000 and h[0] == 1.0
    tail = h[1:]
    assert abs(10 * np.log10(1.0 / np.sum(tail ** 2)) - 6.0) < 1e-6  # direct-to-reverberant ratio
    # energy 60 dB down after rt60: compare 50 ms windows at 0.05 s and 0.45 s (expect 0.4/0.5 * 60 = 48 dB)
    e1, e2 = np.sum(h[800:1600] ** 2), np.sum(h[7200:8000] ** 2)
    assert 40 < 10 * np.log10(e1 / e2) < 56
    click = np.zeros(16000, np.float32)
    click[100] = 0.5
    y = augment.apply(click, {"seed": 2, "reverb": {"rt60": 0.4, "drr": 3.0}})
    assert len(y) == len(click) and np.abs(y[2000:6000]).max() > 1e-3  # the room keeps ringing


def test_clipping_gain_and_full_scale(speech):
    y = augment.apply(speech, {"seed": 0, "clip": {"drive": 12.0}})
    assert np.abs(y).max() == pytest.approx(1.0) and np.mean(np.abs(y) >= 0.999) > 0.01
    quiet = augment.apply(speech, {"seed": 0, "gain": -20.0})
    np.testing.assert_allclose(quiet, speech * 0.1, rtol=1e-5, atol=1e-7)
    loud = augment.apply(speech * 1.9, {"seed": 0, "noise": {"color": "white", "snr": 0.0}})
    assert np.abs(loud).max() <= 1.0  # scaled back, never clipped by noise or reverb
    for s in range(30):
        p = augment.draw("strong", s)
        y = augment.apply(speech, p)
        assert y.dtype == np.float32 and len(y) == len(speech) and np.all(np.isfinite(y))
        assert np.abs(y).max() <= 1.0 and augment.describe(p)


def centroid(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / 16000)
    return float((spec * f).sum() / spec.sum())


def test_speaker_shift_scales_every_frequency(speech):
    tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32) * 0.5
    for r in (0.87, 1.15):
        y = augment.apply(tone, {"seed": 0, "shift": r})
        assert y.dtype == np.float32 and len(y) == len(tone)
        peak = np.fft.rfftfreq(8000, 1 / 16000)[np.argmax(np.abs(np.fft.rfft(y[:8000] * np.hanning(8000))))]
        assert abs(peak - 440 * r) < 4, (r, peak)  # 2 Hz bins
        # real speech: pitch and formants move together, so the spectral centroid moves by r too
        # (measured on the part before the tiled tail)
        z = augment.speaker_shift(speech.astype(np.float64), r)
        part = int(len(speech) * min(1.0, 1 / r)) - 1
        assert abs(centroid(z[:part]) / centroid(speech[: int(part * r)]) - r) < 0.03 * r
    np.testing.assert_allclose(augment.speaker_shift(speech.astype(np.float64), 1.0), speech, atol=1e-6)


def test_speaker_preset_adds_shifts_and_leaves_the_other_presets_alone():
    # "default" and "strong" draw what they drew before the shift existed (annotation cache keys, and
    # the runs behind docs/students.md, depend on it)
    assert augment.key(augment.draw("default", 999)) == \
        '{"noise":{"color":"brown","snr":23.58},"reverb":{"drr":0.43,"rt60":0.795},"seed":999,"v":1}'
    assert augment.key(augment.draw("strong", 123)) == \
        '{"noise":{"color":"pink","snr":14.34},"reverb":{"drr":9.62,"rt60":0.371},"seed":123,"v":1}'
    drawn = [augment.draw("speakers", s) for s in range(400)]
    shifts = [d["shift"] for d in drawn if "shift" in d]
    assert abs(len(shifts) / 400 - 0.5) < 0.08 and 0.87 <= min(shifts) and max(shifts) <= 1.15
    assert np.mean(np.array(shifts) > 1) == pytest.approx(0.5, abs=0.1)  # log-uniform: as many up as down
    for s, d in enumerate(drawn[:50]):  # the other steps are default's
        assert {k: v for k, v in d.items() if k != "shift"} == augment.draw("default", s)
    assert "speaker shift" in augment.describe(
        next(d for d in drawn if "shift" in d))
