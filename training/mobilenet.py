"""MobileNet students in plain torch (no torchvision, no timm), taking log-mel input.

The paper's larger students (arXiv 2408.13920: MobileNet-V4-Small 3.12M parameters, and MobileNet-V3
variants) are image networks run on a log-mel "image". How the paper feeds them is not published
(papers.md §2.2); here:

    pcm (B, L) -> prenorm (zero mean, unit RMS, as Wav2Small: gain-invariant like the teachers)
    -> STFT power (25 ms Hann window, 10 ms hop, 512-point FFT, no centring)
    -> 64 Slaney mel bands 0..8 kHz -> 10 log10(max(., 1e-10)) (computed as DB_PER_NEPER ln) -> BatchNorm over mel bands (PANNs' bn0)
    -> (B, 1, 64 mels, T frames) -> MobileNet body with a 1-channel stem
    -> global average pool -> head -> (B, 3) arousal, dominance, valence

Bodies, from the papers' architecture tables (our implementation; dropout left out: the students are
trained on teacher outputs with augmentation and no classification head to regularise):

- MobileNetV3-Small (Howard et al. 2019, Table 2): conv 3x3/2 16 h-swish, 11 inverted-residual
  "bneck" blocks (3x3/5x5 depthwise, squeeze-excite with hard-sigmoid, ReLU or h-swish), conv 1x1
  576, pool, 1024 h-swish, 3 outputs.
- MobileNetV4-Conv-Small (Qin et al. 2024, Table 11 / Appendix): conv 3x3/2 32, two FusedIB, Universal
  Inverted Bottlenecks (ExtraDW, IB, ConvNext variants), conv 1x1 960, pool, 1280, 3 outputs.

Both bodies have the parameter counts of torchvision's and timm's implementations; tests/test_mobilenet.py
shows the arithmetic from their counts to ours.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .model import DB_PER_NEPER, slaney_mel


@dataclass
class MobileNetConfig:
    arch: str = "mobilenet_v3_small"  # or mobilenet_v4_conv_small
    sample_rate: int = 16000
    n_fft: int = 512
    win: int = 400                    # 25 ms
    hop: int = 160                    # 10 ms
    n_mels: int = 64
    width: float = 1.0                # channel multiplier (rounded to multiples of 8)
    n_outputs: int = 3

    def to_dict(self) -> dict:
        return asdict(self)


ARCHS = ("mobilenet_v3_small", "mobilenet_v4_conv_small")


def _div8(c: float) -> int:
    """Round channels to a multiple of 8, never more than 10 % down (the MobileNet convention)."""
    v = max(8, int(c + 4) // 8 * 8)
    return v + 8 if v < 0.9 * c else v


class ConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1, act: type | None = nn.ReLU):
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
                                   nn.BatchNorm2d(c_out)]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)


# ------------------------------------------------------------------------------------------------
# front end

class LogMelFrontEnd(nn.Module):
    def __init__(self, cfg: MobileNetConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.win, periodic=True))
        mel = slaney_mel(cfg.sample_rate, cfg.n_fft, cfg.n_mels)
        self.register_buffer("melW", torch.from_numpy(mel.T.copy()).float())  # (n_fft/2+1, n_mels)
        self.bn0 = nn.BatchNorm2d(cfg.n_mels)

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, 1, n_mels, T)
        x = pcm - pcm.mean(dim=1, keepdim=True)
        x = x / torch.sqrt((x * x).mean(dim=1, keepdim=True) + 1e-7)
        spec = torch.stft(x, self.cfg.n_fft, self.cfg.hop, self.cfg.win, self.window, center=False,
                          return_complex=True)                       # (B, n_fft/2+1, T)
        mel = spec.abs().pow(2).transpose(1, 2) @ self.melW          # (B, T, n_mels)
        logmel = DB_PER_NEPER * torch.log(torch.clamp(mel, min=1e-10))   # not log10: see DB_PER_NEPER
        x = self.bn0(logmel.transpose(1, 2)[:, :, None, :])          # mel bands as channels: (B, M, 1, T)
        return x.transpose(1, 2)                                      # (B, 1, M, T)


# ------------------------------------------------------------------------------------------------
# MobileNetV3-Small

class SqueezeExcite(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        mid = _div8(c / 4)
        self.fc1, self.fc2 = nn.Conv2d(c, mid, 1), nn.Conv2d(mid, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))


class _Residual(nn.Module):
    """A block of layers, with the input added back when the shape allows (stride 1, c_in == c_out)."""

    def __init__(self, layers: list[nn.Module], c_in: int, c_out: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class Bneck(_Residual):
    """MobileNetV3 inverted residual: [1x1 expand] -> kxk depthwise (stride) -> [SE] -> 1x1 project."""

    def __init__(self, c_in: int, k: int, exp: int, c_out: int, se: bool, act: type, stride: int):
        layers: list[nn.Module] = []
        if exp != c_in:
            layers.append(ConvBN(c_in, exp, 1, act=act))
        layers.append(ConvBN(exp, exp, k, stride, groups=exp, act=act))
        if se:
            layers.append(SqueezeExcite(exp))
        layers.append(ConvBN(exp, c_out, 1, act=None))
        super().__init__(layers, c_in, c_out, stride)


# (kernel, expansion, out, SE, activation, stride): Howard et al. 2019, Table 2
V3_SMALL = [
    (3, 16, 16, True, "RE", 2), (3, 72, 24, False, "RE", 2), (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2), (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1), (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1), (5, 576, 96, True, "HS", 1),
]


def _v3_small(width: float, n_out: int) -> tuple[nn.Module, nn.Module]:
    acts = {"RE": nn.ReLU, "HS": nn.Hardswish}
    c = _div8(16 * width)
    layers: list[nn.Module] = [ConvBN(1, c, 3, 2, act=nn.Hardswish)]
    for k, exp, out, se, act, s in V3_SMALL:
        layers.append(Bneck(c, k, _div8(exp * width), _div8(out * width), se, acts[act], s))
        c = _div8(out * width)
    last = _div8(576 * width)
    layers.append(ConvBN(c, last, 1, act=nn.Hardswish))
    head = nn.Sequential(nn.Linear(last, 1024), nn.Hardswish(), nn.Linear(1024, n_out))
    return nn.Sequential(*layers), head


# ------------------------------------------------------------------------------------------------
# MobileNetV4-Conv-Small

class FusedIB(_Residual):
    """kxk full conv expand (stride) -> 1x1 project."""

    def __init__(self, c_in: int, k: int, exp: int, c_out: int, stride: int):
        super().__init__([ConvBN(c_in, exp, k, stride), ConvBN(exp, c_out, 1, act=None)], c_in, c_out, stride)


class UIB(_Residual):
    """Universal Inverted Bottleneck: [start depthwise k1] -> 1x1 expand -> [middle depthwise k2] ->
    1x1 project. ExtraDW has both depthwise convs, IB only the middle one, ConvNext only the start one.
    The stride goes to the middle depthwise conv if there is one, else to the start one."""

    def __init__(self, c_in: int, k1: int, k2: int, exp: int, c_out: int, stride: int):
        layers: list[nn.Module] = []
        if k1:
            layers.append(ConvBN(c_in, c_in, k1, 1 if k2 else stride, groups=c_in, act=None))
        layers.append(ConvBN(c_in, exp, 1))
        if k2:
            layers.append(ConvBN(exp, exp, k2, stride, groups=exp))
        layers.append(ConvBN(exp, c_out, 1, act=None))
        super().__init__(layers, c_in, c_out, stride)


# (block, k1, k2, expanded, out, stride): Qin et al. 2024, MNv4-Conv-S table
V4_CONV_SMALL = [
    ("fused", 0, 3, 32, 32, 2), ("fused", 0, 3, 96, 64, 2),
    ("uib", 5, 5, 192, 96, 2), ("uib", 0, 3, 192, 96, 1), ("uib", 0, 3, 192, 96, 1),
    ("uib", 0, 3, 192, 96, 1), ("uib", 0, 3, 192, 96, 1), ("uib", 3, 0, 384, 96, 1),
    ("uib", 3, 3, 576, 128, 2), ("uib", 5, 5, 512, 128, 1), ("uib", 0, 5, 512, 128, 1),
    ("uib", 0, 5, 384, 128, 1), ("uib", 0, 3, 512, 128, 1), ("uib", 0, 3, 512, 128, 1),
]


def _v4_conv_small(width: float, n_out: int) -> tuple[nn.Module, nn.Module]:
    c = _div8(32 * width)
    layers: list[nn.Module] = [ConvBN(1, c, 3, 2)]
    for kind, k1, k2, exp, out, s in V4_CONV_SMALL:
        e, o = _div8(exp * width), _div8(out * width)
        layers.append(FusedIB(c, k2, e, o, s) if kind == "fused" else UIB(c, k1, k2, e, o, s))
        c = o
    last = _div8(960 * width)
    layers.append(ConvBN(c, last, 1))
    head = nn.Sequential(nn.Linear(last, 1280), nn.ReLU(), nn.Linear(1280, n_out))
    return nn.Sequential(*layers), head


# ------------------------------------------------------------------------------------------------

class MobileNetStudent(nn.Module):
    def __init__(self, cfg: MobileNetConfig | None = None):
        super().__init__()
        self.cfg = cfg or MobileNetConfig()
        if self.cfg.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.cfg.arch!r}")
        self.front = LogMelFrontEnd(self.cfg)
        build = _v3_small if self.cfg.arch == "mobilenet_v3_small" else _v4_conv_small
        self.body, self.head = build(self.cfg.width, self.cfg.n_outputs)

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        """(B, L) float PCM at 16 kHz (L >= n_fft = 512 samples) -> (B, 3)."""
        if pcm.shape[-1] < self.cfg.n_fft:
            raise ValueError(f"need at least {self.cfg.n_fft} samples, got {pcm.shape[-1]}")
        x = self.body(self.front(pcm))
        return self.head(x.mean(dim=(2, 3)))

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def count_macs(model: nn.Module, seconds: float = 1.0, sample_rate: int = 16000) -> int:
    """Multiply-accumulates for one clip of `seconds`: convolutions, linear layers and matrix products
    (torch's FLOP counter counts 2 per MAC). Elementwise work (BN, activations, softmax) is left out,
    as in the papers' counts."""
    from torch.utils.flop_counter import FlopCounterMode

    was = model.training
    model.eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, int(seconds * sample_rate))).astype(np.float32))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was)
    return counter.get_total_flops() // 2
