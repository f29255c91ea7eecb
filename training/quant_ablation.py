"""Which parts of Wav2Small tolerate int8? Fake-quantize one part at a time, measure CCC vs float.

    python -m training.quant_ablation training/default/model.safetensors [--clips 60]

Simulated in float (PyTorch), on real Debian speech; each row quantizes only the named part the way
an int8 engine would (symmetric per-channel weights, activations on the 256-level grid of their
calibration range) and reports CCC of the outputs against the unquantized model. This is the
measurement behind the precision choices in docs/numerics.md; the engine itself is measured
end to end by training/release.py and tests/test_engine.py.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from .cli import HelpFormatter
from .metrics import ccc_numpy
from .model import OUTPUT_NAMES, Wav2Small, load_safetensors
from .quantize import calibrate, fold_batchnorm
from .release import real_speech


def fake_quant_weights(w: torch.Tensor, bits: int) -> torch.Tensor:
    qmax = 2 ** (bits - 1) - 1
    s = (w.abs().reshape(w.shape[0], -1).max(1).values / qmax).clamp(min=1e-12)
    s = s.reshape(-1, *([1] * (w.ndim - 1)))
    return torch.round(w / s) * s


@torch.no_grad()
def forward(model: Wav2Small, pcm: torch.Tensor, ranges: dict, parts: set[str]) -> torch.Tensor:
    v = model.vgg7
    h = v.logmel(pcm)
    if "logmel" in parts:  # int8 over the calibrated log-mel range (ORT's choice)
        lo, hi = ranges["logmel_min"], ranges["logmel_max"]
        s = (hi - lo) / 255
        h = torch.clamp(torch.round((h - lo) / s), 0, 255) * s + lo
    for i in range(1, model.cfg.n_layers + 1):
        w, b = fold_batchnorm(getattr(v, f"l{i}"))
        w = torch.from_numpy(w.transpose(0, 3, 1, 2).copy()).float()
        if "conv_weights" in parts:
            w = fake_quant_weights(w, 8)
        h = F.relu(F.conv2d(h, w, torch.from_numpy(b).float(), padding=1))
        if "activations" in parts:
            s = ranges[f"l{i}"] / 255
            h = torch.clamp(torch.round(h / s), 0, 255) * s
        if i == model.cfg.pool_after:
            h = v.maxpool_A(h)
    lin_w = fake_quant_weights(v.lin.weight, 8) if "value_weights" in parts else v.lin.weight
    sof_w = fake_quant_weights(v.sof.weight, 8) if "score_weights" in parts else v.sof.weight
    pooled = (F.conv2d(h, lin_w, v.lin.bias) * torch.softmax(F.conv2d(h, sof_w, v.sof.bias), 2)).sum(2)
    if "pooled" in parts:
        s = ranges["pooled"] / 127
        pooled = torch.clamp(torch.round(pooled / s), -127, 127) * s
    gram = pooled @ pooled.transpose(1, 2)
    if "gram" in parts:
        s = ranges["gram"] / 127
        gram = torch.clamp(torch.round(gram / s), -127, 127) * s
    head_w = fake_quant_weights(model.adv.weight, 8) if "head_weights" in parts else model.adv.weight
    return F.linear(torch.cat([pooled, gram], 2).flatten(1), head_w, model.adv.bias)


ROWS = {
    "log-mel int8": {"logmel"},
    "conv weights int8": {"conv_weights"},
    "conv activations int8": {"activations"},
    "vox value weights int8": {"value_weights"},
    "vox score weights int8": {"score_weights"},
    "pooled P int8": {"pooled"},
    "Gram int8": {"gram"},
    "head weights int8": {"head_weights"},
    "engine's choice (conv int8, score weights int8)": {"conv_weights", "activations", "score_weights"},
}


def ablation(model: Wav2Small, clips: list[np.ndarray]) -> dict[str, np.ndarray]:
    ranges = calibrate(model, clips[::2])
    lm = [model.vgg7.logmel(torch.from_numpy(c)[None]) for c in clips[::2]]
    ranges["logmel_min"] = float(min(x.min() for x in lm))
    ranges["logmel_max"] = float(max(x.max() for x in lm))
    held_out = clips[1::2]
    ref = np.array([forward(model, torch.from_numpy(c)[None], ranges, set())[0].numpy() for c in held_out])
    out = {}
    for name, parts in ROWS.items():
        q = np.array([forward(model, torch.from_numpy(c)[None], ranges, parts)[0].numpy() for c in held_out])
        out[name] = ccc_numpy(q, ref)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.quant_ablation", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("weights", help="float model.safetensors")
    p.add_argument("--clips", type=int, default=60, help="real speech clips (half calibrate, half measure)")
    args = p.parse_args(argv)
    if args.clips < 4:   # CCC needs at least two measured clips
        p.error(f"--clips must be >= 4 (half calibrate, half measure, and CCC needs two), got {args.clips}")
    torch.set_num_threads(2)
    model = load_safetensors(args.weights)
    _, clips = real_speech(args.clips)
    print(f"| quantized part | CCC {' | CCC '.join(OUTPUT_NAMES)} |\n|---|---|---|---|")
    for name, ccc in ablation(model, clips).items():
        print(f"| {name} | " + " | ".join(f"{v:.5f}" for v in ccc) + " |")
    return 0


if __name__ == "__main__":
    import training.cli

    training.cli.run(main, "python -m training.quant_ablation")
