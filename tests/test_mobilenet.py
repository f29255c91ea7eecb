"""MobileNet students: sizes from the papers' tables, log-mel front end, MAC counting."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from training.mobilenet import MobileNetConfig, MobileNetStudent, count_macs
from training.model import Wav2Small


@pytest.mark.parametrize("arch,params", [
    # torchvision's mobilenet_v3_small has 2,542,856 parameters with its 1000-class head
    # (1024*1000 + 1000 = 1,025,000) and 3-channel stem (2*16*9 = 288 more): 1,517,568 + our 64-mel bn0 (128)
    # and 3-output head (3,075)
    ("mobilenet_v3_small", 1_520_771),
    # timm 1.0.31's mobilenetv4_conv_small has 3,774,024: less its 1000-class classifier (1,281,000) and
    # 3-channel stem (2*32*9 = 576 more) leaves 2,492,448, and its body matches ours block for block
    # (checked once: its two 'cn' blocks per FusedIB sum to ours); + our 64-mel bn0 (128), - 1,280 because
    # timm's 960->1280 head conv has no bias but a BatchNorm (2,560) where ours is a Linear with bias
    # (1,280), + the 3-output layer (3,843)
    ("mobilenet_v4_conv_small", 2_495_139),
])
def test_parameter_counts(arch: str, params: int):
    assert MobileNetStudent(MobileNetConfig(arch=arch)).trainable_parameters() == params


@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "mobilenet_v4_conv_small"])
def test_forward_backward_on_speech(arch: str, speech_clips):
    torch.manual_seed(0)
    model = MobileNetStudent(MobileNetConfig(arch=arch))
    x = torch.from_numpy(np.stack([np.resize(c, 24000) for c in speech_clips[:4]]))  # short clips repeat
    y = model(x)
    assert y.shape == (4, 3) and torch.all(torch.isfinite(y))
    y.pow(2).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.all(torch.isfinite(g)) for g in grads)
    model.eval()
    with torch.no_grad():  # the prenorm makes the student gain-invariant, like Wav2Small and the teachers
        torch.testing.assert_close(model(0.1 * x), model(x), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="at least 512"):
        model(torch.zeros(1, 100))


def test_front_end_shape():
    model = MobileNetStudent()
    x = model.front(torch.randn(2, 16000))
    assert x.shape == (2, 1, 64, 97)  # (16000 - 512) // 160 + 1 frames: the 400-tap window sits in 512


def test_macs_match_the_papers_count_for_wav2small():
    # papers.md §1.2: about 64.4 M multiply-accumulates per second for the released 13-channel model
    assert count_macs(Wav2Small()) == pytest.approx(64.4e6, rel=0.005)
    # the MobileNets run at a 10 ms frame rate on 64 mels: cheaper per second than Wav2Small's 2 ms hop
    v3, v4 = MobileNetStudent(), MobileNetStudent(MobileNetConfig(arch="mobilenet_v4_conv_small"))
    assert count_macs(v3) < count_macs(v4) < count_macs(Wav2Small())
    with pytest.raises(ValueError, match="arch"):
        MobileNetStudent(MobileNetConfig(arch="resnet"))
