"""Wav2Small in PyTorch, all of it in this one file.

The architecture follows the audEERING release (huggingface.co/audeering/wav2small), see
../shared/reference/papers.md §1.1:

    pcm (B, L) -> prenorm -> STFT power (B, T, n_fft/2+1) -> log-mel (B, 1, T, n_mels)
    -> l1..l7: conv3x3 (no bias) + BatchNorm + ReLU, MaxPool(3, 2, 1) after l3   (B, C, T', F')
    -> vox pooling: P = sum_t lin(x) * softmax_t(sof(x))                        (B, C, F')
    -> [P, P @ P^T] flattened                                                   (B, C*(F'+C))
    -> adv: Linear -> (arousal, dominance, valence)

Module and buffer names match the published state dict, so `load_published` is a plain
`load_state_dict` plus a check of the frozen front-end tensors.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wav2small.model import OUTPUT_NAMES  # noqa: F401  (one list of the outputs, the runtime's)


@dataclass
class Wav2SmallConfig:
    sample_rate: int = 16000  # Hz; the front end is defined at this rate
    n_fft: int = 64           # STFT size = window length (4 ms)
    hop: int = 32             # STFT hop (2 ms)
    n_mels: int = 26          # Slaney mel bands over 0 .. sample_rate/2
    channels: int = 13        # width of every conv layer
    n_layers: int = 7         # conv3x3 + BN + ReLU layers
    pool_after: int = 3       # MaxPool(3, 2, 1) follows this layer (1-based)
    n_outputs: int = 3        # arousal, dominance, valence (7 with the uncertainty head)
    prenorm_eps: float = 1e-7  # x / sqrt(mean(x^2) + eps)
    amin: float = 1e-10       # log-mel floor (power)
    bn_eps: float = 1e-5      # BatchNorm2d default
    # Uncertainty head (training/uncertainty.py): outputs are then n values, n log-sigmas and a
    # speech logit; the engine decides with these thresholds (natural-log sigma, log-odds).
    uncertainty: bool = False
    max_log_sigma: float = 0.0
    min_speech_logit: float = 0.0
    # ... and the log-mel's modulation (dB; the engine's modulation.c): a level that rises and falls
    # less than this over blocks of mod_block frames is no speech (0: off)
    min_modulation_db: float = 0.0
    mod_block: int = 8
    # ... and the spectrum's steadiness (the engine's modulation.c; docs/uncertainty.md, thirty-first
    # round): a clip more than max_steady of whose pairs of consecutive loud blocks (steady_block
    # frames, loudest band >= steady_level_db) keep their spectral shape (cosine >= steady_min_cos)
    # is no speech: held tones, beeps, notes of a melody. steady_block 0: the file has no measure
    steady_block: int = 16
    steady_level_db: float = -10.0
    steady_min_cos: float = 0.997
    max_steady: float = 0.5

    def __post_init__(self) -> None:
        if self.uncertainty and (self.n_outputs < 3 or self.n_outputs % 2 == 0):
            raise ValueError(f"an uncertainty head needs 2n + 1 outputs, got {self.n_outputs}")

    @property
    def n_values(self) -> int:  # predictions proper (A/D/V), without uncertainty outputs
        return (self.n_outputs - 1) // 2 if self.uncertainty else self.n_outputs

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def pooled_mels(self) -> int:  # F' = ceil(n_mels / 2)
        return (self.n_mels + 1) // 2

    @property
    def head_inputs(self) -> int:  # C * (F' + C): pooled values and Gram matrix
        return self.channels * (self.pooled_mels + self.channels)

    def to_dict(self) -> dict:
        return asdict(self)


# Named configurations. "wide" is the ~72K-parameter size class of the paper.
CONFIGS = {
    "default": Wav2SmallConfig(),
    "wide": Wav2SmallConfig(channels=34),  # 70,383 trainable parameters
}


# ----------------------------------------------------------------------------------------------
# front-end constants (float, as librosa builds them)

def hann_periodic(n: int) -> np.ndarray:
    """librosa.filters.get_window('hann', n, fftbins=True)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def _hz_to_mel_slaney(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz_slaney(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def slaney_mel(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Mel filterbank (n_mels, n_fft/2+1): Slaney mel scale and area normalisation (librosa defaults)."""
    fmax = sr / 2 if fmax is None else fmax
    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_f = _mel_to_hz_slaney(np.linspace(_hz_to_mel_slaney(fmin), _hz_to_mel_slaney(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights


def dft_kernels(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Windowed DFT rows (n_bins, 1, n_fft) as Conv1d weights: real and imaginary parts."""
    n = np.arange(n_fft)
    k = np.arange(n_fft // 2 + 1)[:, None]
    w = hann_periodic(n_fft)
    ang = 2.0 * np.pi * k * n / n_fft
    return (w * np.cos(ang))[:, None, :], (-w * np.sin(ang))[:, None, :]


# ----------------------------------------------------------------------------------------------
# modules (attribute names = published state-dict keys)

class Spectrogram(nn.Module):
    """Power spectrogram by two frozen Conv1d (windowed DFT), no centring or padding."""

    def __init__(self, cfg: Wav2SmallConfig):
        super().__init__()
        re, im = dft_kernels(cfg.n_fft)
        self.hop = cfg.hop
        self.conv_real = nn.Conv1d(1, cfg.n_bins, cfg.n_fft, stride=cfg.hop, bias=False)
        self.conv_imag = nn.Conv1d(1, cfg.n_bins, cfg.n_fft, stride=cfg.hop, bias=False)
        self.conv_real.weight.data.copy_(torch.from_numpy(re).float())
        self.conv_imag.weight.data.copy_(torch.from_numpy(im).float())
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, T, n_bins)
        x = x[:, None, :]
        return (self.conv_real(x) ** 2 + self.conv_imag(x) ** 2).transpose(1, 2)


# 10 log10(x) as 10 / ln(10) * ln(x): torch hands log10 to MKL's vector math, whose results differ
# from CPU to CPU even with MKL_CBWR pinned (an AMD EPYC against an emulated Intel Haswell, on most
# log-mel batches), while torch.log is ATen's own code, the same on every CPU with the same vector
# unit; training.rebuild relies on it (docs/uncertainty.md, "Twenty-second round")
DB_PER_NEPER = 10.0 / math.log(10.0)


class LogMel(nn.Module):
    def __init__(self, cfg: Wav2SmallConfig):
        super().__init__()
        mel = slaney_mel(cfg.sample_rate, cfg.n_fft, cfg.n_mels)
        self.register_buffer("melW", torch.from_numpy(mel.T.copy()).float())  # (n_bins, n_mels)
        self.register_buffer("amin", torch.tensor([cfg.amin]))

    def forward(self, power: torch.Tensor) -> torch.Tensor:  # (B, T, n_bins) -> (B, 1, T, n_mels)
        mel = power[:, None] @ self.melW
        return DB_PER_NEPER * torch.log(torch.clamp(mel, min=float(self.amin)))


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, bn_eps: float):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(c_out, eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class Vgg7(nn.Module):
    def __init__(self, cfg: Wav2SmallConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.spectrogram_extractor = Spectrogram(cfg)
        self.logmel_extractor = LogMel(cfg)
        for i in range(1, cfg.n_layers + 1):
            setattr(self, f"l{i}", ConvBlock(1 if i == 1 else c, c, cfg.bn_eps))
        self.maxpool_A = nn.MaxPool2d(3, stride=2, padding=1)
        self.lin = nn.Conv2d(c, c, 1)  # values of vox pooling
        self.sof = nn.Conv2d(c, c, 1)  # attention scores of vox pooling

    def logmel(self, pcm: torch.Tensor) -> torch.Tensor:
        """Prenorm, STFT power, log-mel in dB: (B, L) -> (B, 1, T, n_mels)."""
        x = pcm - pcm.mean(dim=1, keepdim=True)
        x = x / torch.sqrt((x * x).mean(dim=1, keepdim=True) + self.cfg.prenorm_eps)
        return self.logmel_extractor(self.spectrogram_extractor(x))

    def features(self, logmel: torch.Tensor, taps: dict | None = None) -> torch.Tensor:
        """Conv stack and vox pooling: (B, 1, T, n_mels) -> (B, C * (F' + C)).

        If `taps` is a dict, the intermediate tensors are stored in it (for calibration):
        "l1".."l7" (after ReLU, before the pool), "scores" (sof), "pooled", "gram".
        """
        x = logmel
        for i in range(1, self.cfg.n_layers + 1):
            x = getattr(self, f"l{i}")(x)
            if taps is not None:
                taps[f"l{i}"] = x
            if i == self.cfg.pool_after:
                x = self.maxpool_A(x)
        # x: (B, C, T', F'); softmax over time (axis 2) per channel and mel bin
        scores = self.sof(x)
        pooled = (self.lin(x) * torch.softmax(scores, dim=2)).sum(dim=2)  # (B, C, F')
        gram = pooled @ pooled.transpose(1, 2)                            # (B, C, C)
        if taps is not None:
            taps.update(scores=scores, pooled=pooled, gram=gram)
        return torch.cat([pooled, gram], dim=2).flatten(1)


def modulation_db(logmel: torch.Tensor, block: int) -> torch.Tensor:
    """How much the level rises and falls, (B, 1, T, F) -> (B,): the standard deviation over blocks
    of `block` frames of the mean of each frame's loudest mel band (dB), a last partial block left
    out, 0 with fewer than two blocks. The float form of the engine's csrc/modulation.c."""
    top = logmel[:, 0].max(dim=2).values                                 # (B, T)
    n = top.shape[1] // block
    if n < 2:
        return torch.zeros(top.shape[0], dtype=top.dtype)
    return top[:, : n * block].reshape(top.shape[0], n, block).mean(dim=2).std(dim=1, unbiased=False)


class Wav2Small(nn.Module):
    def __init__(self, cfg: Wav2SmallConfig | None = None):
        super().__init__()
        self.cfg = cfg or Wav2SmallConfig()
        self.vgg7 = Vgg7(self.cfg)
        self.adv = nn.Linear(self.cfg.head_inputs, self.cfg.n_outputs)

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        """(B, L) float PCM at cfg.sample_rate -> (B, 3) arousal, dominance, valence."""
        return self.adv(self.vgg7.features(self.vgg7.logmel(pcm)))

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------------
# published weights

FRONT_END_KEYS = (
    "vgg7.spectrogram_extractor.conv_real.weight",
    "vgg7.spectrogram_extractor.conv_imag.weight",
    "vgg7.logmel_extractor.melW",
    "vgg7.logmel_extractor.amin",
)


class PublishedWeightsError(ValueError):
    """A state dict that does not fit the Wav2Small layout."""


def infer_config(state: dict) -> Wav2SmallConfig:
    """Read width, layer count and output count from a state dict with the published key names."""
    try:
        c = state["vgg7.l1.conv.weight"].shape[0]
        n_out, head_in = state["adv.weight"].shape
    except KeyError as e:
        raise PublishedWeightsError(f"missing key {e.args[0]!r}: not a Wav2Small state dict") from None
    n_layers = 0
    while f"vgg7.l{n_layers + 1}.conv.weight" in state:
        n_layers += 1
    # head_in = C * (ceil(n_mels/2) + C)
    pooled = head_in // c - c
    if pooled <= 0 or c * (pooled + c) != head_in:
        raise PublishedWeightsError(f"adv.weight has {head_in} inputs, which does not fit {c} channels")
    n_mels = 2 * pooled
    if "vgg7.logmel_extractor.melW" in state:
        n_mels = state["vgg7.logmel_extractor.melW"].shape[1]
    return Wav2SmallConfig(channels=c, n_layers=n_layers, n_outputs=n_out, n_mels=n_mels)


def load_published(state: dict, cfg: Wav2SmallConfig | None = None) -> Wav2Small:
    """Build a Wav2Small from a state dict with audEERING's key names.

    Frozen front-end tensors, if present, are compared with ours (they are rebuilt, not loaded),
    so a mismatch in the STFT window or the mel matrix is an error rather than a silent drift.
    """
    cfg = cfg or infer_config(state)
    model = Wav2Small(cfg)
    own = model.state_dict()
    for key in FRONT_END_KEYS:
        if key in state:
            theirs = torch.as_tensor(state[key]).float()
            ours = own[key]
            # the sign of the imaginary DFT row is a convention; power is the same either way
            # tolerance on the tensor's own scale: a fixed atol would hide a change of amin (1e-10)
            atol = 1e-5 * float(ours.abs().max())
            same = theirs.shape == ours.shape and (
                torch.allclose(theirs, ours, atol=atol, rtol=1e-4)
                or (key.endswith("conv_imag.weight") and torch.allclose(theirs, -ours, atol=atol, rtol=1e-4))
            )
            if not same:
                raise PublishedWeightsError(f"{key} differs from this front end (shape {tuple(theirs.shape)})")
    learned = {k: torch.as_tensor(v) for k, v in state.items() if k not in FRONT_END_KEYS}
    missing, unexpected = model.load_state_dict(learned, strict=False)
    missing = [k for k in missing if k not in FRONT_END_KEYS]
    if missing or unexpected:
        raise PublishedWeightsError(f"missing keys {missing}, unexpected keys {unexpected}")
    return model.eval()


class NotSafetensorsError(ValueError):
    """A weights file that safetensors cannot read (truncated, damaged, another format): a user's
    file, so training.cli shows one line that names it, not safetensors' traceback."""


def load_safetensors(path: str | Path) -> Wav2Small:
    """Weights with audEERING's key names; a config in the file's metadata (written by our
    trainers) is used as is, else the shape is read off the weights (published files)."""
    import json

    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    if Path(path).is_dir():   # safetensors says only "No such device (os error 19)"
        raise ValueError(f"{path} is a directory: give its model.safetensors")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except SafetensorError as e:
        raise NotSafetensorsError(f"{path} is not a safetensors weights file: {e}") from e
    cfg = Wav2SmallConfig(**json.loads(meta["wav2small_config"])) if "wav2small_config" in meta else None
    return load_published(state, cfg)
