"""Float Wav2Small (training/model.py) against librosa and the published layout (papers.md §1.1)."""
from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch
from conftest import FRONT_CENTER
from safetensors.torch import save_file

from training.model import (
    CONFIGS,
    FRONT_END_KEYS,
    OUTPUT_NAMES,
    PublishedWeightsError,
    Wav2Small,
    Wav2SmallConfig,
    hann_periodic,
    infer_config,
    load_published,
    load_safetensors,
    slaney_mel,
)

SR = 16000
SPEECH = FRONT_CENTER


# ----------------------------------------------------------------------------------------------
# helpers

def speech_16k() -> np.ndarray:
    """A real spoken word ("front center") at 16 kHz."""
    import soundfile as sf
    import soxr

    if not SPEECH.exists():
        pytest.fail(f"{SPEECH} is needed: apt-get install alsa-utils (.ci/run does)")
    data, rate = sf.read(str(SPEECH), dtype="float32", always_2d=True)
    return soxr.resample(data.mean(axis=1), rate, SR, quality="VHQ").astype(np.float32)


def randomised(cfg: Wav2SmallConfig, seed: int = 0) -> Wav2Small:
    """A Wav2Small whose every learned tensor, BatchNorm statistics included, is random and non-default,
    so a loader that skips or mixes up any tensor changes the output."""
    torch.manual_seed(seed)
    model = Wav2Small(cfg)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name in FRONT_END_KEYS or t.dtype == torch.int64:
                continue
            if name.endswith("running_var") or name.endswith("norm.weight"):
                t.copy_(torch.rand_like(t) + 0.5)  # positive, away from 0
            else:
                t.copy_(torch.randn_like(t) * 0.1)
    return model.eval()


def htk_mel_buffer() -> torch.Tensor:
    """librosa's HTK-scale matrix as a melW buffer: a plausible wrong front end."""
    with warnings.catch_warnings():
        # HTK spacing leaves some of the 26 bands empty at n_fft=64, and librosa says so
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(librosa.filters.mel(sr=SR, n_fft=64, n_mels=26, htk=True).T.copy())


def unwindowed_imag_rows() -> torch.Tensor:
    """Imaginary DFT rows (33, 1, 64) without the Hann window: another plausible wrong front end."""
    ang = 2 * np.pi * np.outer(np.arange(33), np.arange(64)) / 64
    return torch.from_numpy(-np.sin(ang)[:, None, :])


def save_state(model: Wav2Small, path: Path, drop_front_end: bool) -> None:
    """Save the state dict with safetensors under the published key names, optionally without the
    frozen front end (whether audEERING's file holds it is unverified, papers.md §1.1)."""
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if drop_front_end:
        state = {k: v for k, v in state.items() if k not in FRONT_END_KEYS}
    save_file(state, str(path))


# ----------------------------------------------------------------------------------------------
# front end against librosa

@pytest.mark.parametrize(
    "sr,n_fft,n_mels", [(16000, 64, 26), (16000, 512, 80), (22050, 2048, 128), (8000, 256, 40)]
)
def test_slaney_mel_matches_librosa(sr: int, n_fft: int, n_mels: int) -> None:
    ours = slaney_mel(sr, n_fft, n_mels)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, dtype=np.float64)
    assert ours.shape == ref.shape == (n_mels, n_fft // 2 + 1)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_mel_buffer_is_librosa_default() -> None:
    """The buffer the model uses (float32, transposed to (n_bins, n_mels)) is librosa's matrix."""
    melW = Wav2Small().vgg7.logmel_extractor.melW.numpy()
    ref = librosa.filters.mel(sr=SR, n_fft=64, n_mels=26)
    assert melW.shape == (33, 26)
    np.testing.assert_allclose(melW, ref.T, rtol=0, atol=1e-6)


@pytest.mark.parametrize("n", [64, 400, 512])
def test_hann_periodic_matches_librosa(n: int) -> None:
    ref = librosa.filters.get_window("hann", n, fftbins=True)
    np.testing.assert_allclose(hann_periodic(n), ref, rtol=0, atol=1e-12)


def test_stft_power_matches_librosa_on_speech() -> None:
    """The frozen Conv1d pair gives |STFT|^2 with a periodic Hann window, no centring or padding."""
    y = speech_16k()
    power = Wav2Small().vgg7.spectrogram_extractor(torch.from_numpy(y)[None])[0].double().numpy()  # (T, 33)
    stft = librosa.stft(y.astype(np.float64), n_fft=64, hop_length=32, window="hann", center=False)
    ref = np.abs(stft) ** 2
    assert power.shape == ref.T.shape
    # float32 conv: error relative to the loudest bin, which spans ~100 dB above the quietest
    np.testing.assert_allclose(power, ref.T, rtol=1e-4, atol=1e-5 * ref.max())


def test_logmel_matches_librosa_power_to_db() -> None:
    """prenorm -> mel power -> 10 log10(max(., 1e-10)), with no ref subtraction and no top_db clipping."""
    y = speech_16k().astype(np.float64)
    x = y - y.mean()
    x = x / np.sqrt((x * x).mean() + 1e-7)
    S = np.abs(librosa.stft(x, n_fft=64, hop_length=32, window="hann", center=False)) ** 2
    mel = librosa.filters.mel(sr=SR, n_fft=64, n_mels=26) @ S
    ref = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    pcm = torch.from_numpy(y.astype(np.float32))[None]
    ours = Wav2Small().vgg7.logmel(pcm)[0, 0].double().numpy()  # (T, 26)
    # in dB: float32 DFT rounding shows only in bins ~90 dB below the peak (a few 1e-3 dB there)
    np.testing.assert_allclose(ours, ref.T, rtol=0, atol=1e-2)


# ----------------------------------------------------------------------------------------------
# shapes, sizes, outputs

@pytest.mark.parametrize("seconds,T,T_pooled", [(1, 499, 250), (5, 2499, 1250)])
def test_frame_counts(seconds: int, T: int, T_pooled: int) -> None:
    L = seconds * SR
    assert T == (L - 64) // 32 + 1 and T_pooled == -(-T // 2)  # the formulas of papers.md §1.1
    model = Wav2Small().eval()
    seen = {}
    model.vgg7.maxpool_A.register_forward_hook(lambda m, i, o: seen.update(pooled=tuple(o.shape)))
    pcm = torch.randn(2, L)
    with torch.no_grad():
        assert model.vgg7.logmel(pcm).shape == (2, 1, T, 26)
        model(pcm)
    assert seen["pooled"] == (2, 13, T_pooled, 13)


def test_parameter_counts() -> None:
    model = Wav2Small()
    assert model.trainable_parameters() == 10_806
    assert sum(p.numel() for p in model.parameters()) == 15_030  # + 2 x 33 x 64 frozen DFT rows
    assert model.adv.in_features == 338
    wide = Wav2Small(CONFIGS["wide"]).trainable_parameters()
    assert 60_000 <= wide <= 75_000


def test_output_order_and_shape() -> None:
    assert OUTPUT_NAMES == ("arousal", "dominance", "valence")
    model = randomised(Wav2SmallConfig())
    pcm = torch.randn(4, SR, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(pcm)
        one = model(pcm[2:3])
    assert out.shape == (4, 3) and out.dtype == torch.float32
    # row i belongs to clip i: nothing mixes across the batch
    torch.testing.assert_close(out[2:3], one, rtol=1e-5, atol=1e-5)


def test_gain_invariance() -> None:
    """Prenorm removes level: a clip and the same clip at +12 dB give the same output.

    Only up to the 1e-7 floor in sqrt(mean(x^2) + 1e-7): this clip has mean(x^2) ~ 5e-3, so at
    -20 dB the floor already moves the output by ~5e-3 (random weights), hence a louder copy here.
    """
    model = randomised(Wav2SmallConfig())
    pcm = torch.from_numpy(speech_16k())[None]
    with torch.no_grad():
        torch.testing.assert_close(model(4.0 * pcm), model(pcm), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# published weights

@pytest.mark.parametrize("cfg_name", ["default", "wide"])
@pytest.mark.parametrize("drop_front_end", [False, True])
def test_published_round_trip(tmp_path: Path, cfg_name: str, drop_front_end: bool) -> None:
    model = randomised(CONFIGS[cfg_name])
    path = tmp_path / "model.safetensors"
    save_state(model, path, drop_front_end)
    loaded = load_safetensors(path)
    assert loaded.cfg == model.cfg and not loaded.training
    pcm = torch.from_numpy(speech_16k())[None]
    with torch.no_grad():
        assert torch.equal(loaded(pcm), model(pcm))


def test_published_imag_sign_convention_accepted() -> None:
    """A negated imaginary DFT row (the other sign convention) gives the same power, so it loads."""
    model = randomised(Wav2SmallConfig())
    state = dict(model.state_dict())
    key = "vgg7.spectrogram_extractor.conv_imag.weight"
    state[key] = -state[key]
    pcm = torch.randn(1, SR)
    with torch.no_grad():
        assert torch.equal(load_published(state)(pcm), model(pcm))


@pytest.mark.parametrize(
    "key,corrupt",
    [
        ("vgg7.logmel_extractor.melW", lambda t: t + 1e-3 * (t > 0)),  # ~10% of a typical weight
        ("vgg7.logmel_extractor.melW", lambda t: htk_mel_buffer()),  # HTK mel scale instead of Slaney
        ("vgg7.logmel_extractor.amin", lambda t: torch.full_like(t, 1e-3)),
        ("vgg7.spectrogram_extractor.conv_real.weight", lambda t: t * 1.01),
        ("vgg7.spectrogram_extractor.conv_imag.weight", lambda t: unwindowed_imag_rows()),
    ],
    ids=["melW_offset", "melW_htk", "amin_1e-3", "conv_real_scaled", "conv_imag_no_window"],
)
def test_corrupted_front_end_rejected(key: str, corrupt) -> None:
    state = dict(randomised(Wav2SmallConfig()).state_dict())
    state[key] = corrupt(state[key]).float()
    with pytest.raises(PublishedWeightsError, match=re.escape(key)):
        load_published(state)


def test_small_amin_change_rejected() -> None:
    """amin = 1e-10 -> 1e-6 raises the floor by 40 dB: the tolerance must scale with the tensor."""
    state = dict(randomised(Wav2SmallConfig()).state_dict())
    state["vgg7.logmel_extractor.amin"] = torch.tensor([1e-6])
    with pytest.raises(PublishedWeightsError, match="amin"):
        load_published(state)


def test_front_end_of_wrong_size_rejected() -> None:
    """A mel matrix for another n_fft (e.g. 128 -> 65 bins) is an error, not a broadcast."""
    state = dict(randomised(Wav2SmallConfig()).state_dict())
    state["vgg7.logmel_extractor.melW"] = torch.from_numpy(slaney_mel(SR, 128, 26).T.copy()).float()
    with pytest.raises(PublishedWeightsError, match="melW"):
        load_published(state)


@pytest.mark.parametrize(
    "key", ["vgg7.l3.norm.running_var", "vgg7.sof.bias", "vgg7.l1.conv.weight", "adv.weight"]
)
def test_missing_key_rejected(key: str) -> None:
    state = dict(randomised(Wav2SmallConfig()).state_dict())
    del state[key]
    with pytest.raises(PublishedWeightsError):
        load_published(state)


def test_unexpected_key_rejected() -> None:
    state = dict(randomised(Wav2SmallConfig()).state_dict())
    state["vgg7.dropout.weight"] = torch.zeros(1)
    with pytest.raises(PublishedWeightsError, match="unexpected"):
        load_published(state)


def test_head_of_wrong_width_rejected() -> None:
    state = dict(randomised(Wav2SmallConfig()).state_dict())
    state["adv.weight"] = torch.zeros(3, 337)
    with pytest.raises(PublishedWeightsError, match="337"):
        load_published(state)


@pytest.mark.parametrize(
    "cfg",
    [CONFIGS["default"], CONFIGS["wide"], Wav2SmallConfig(channels=8, n_layers=5),
     Wav2SmallConfig(n_outputs=4)],
    ids=["default", "wide", "c8_l5", "4_outputs"],
)
@pytest.mark.parametrize("drop_front_end", [False, True])
def test_infer_config(cfg: Wav2SmallConfig, drop_front_end: bool) -> None:
    state = Wav2Small(cfg).state_dict()
    if drop_front_end:
        state = {k: v for k, v in state.items() if k not in FRONT_END_KEYS}
    got = infer_config(state)
    # channels, n_layers, n_outputs and n_mels are read from the tensors; the rest are the defaults
    assert dataclasses.asdict(got) == dataclasses.asdict(cfg)
