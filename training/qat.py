"""Quantization-aware fine-tuning (QAT) of a Wav2Small student, measured through the C engine.

    python -m training.distill --out_dir=runs/w2s ... --qat=auto            # as part of training
    python -m training.distill --out_dir=runs/w2s --resume=true --qat=auto  # on a finished run

After training (or on a finished run resumed with --qat), `phase` measures the validation clips'
CCC against the teacher twice: the float student, and the int8 model that training.quantize makes
of it, exported and run by the C engine (wav2small.Model). If int8 loses more than `qat_threshold`
(default 0.005) in any dimension (--qat=auto), or always (--qat=on), the student is fine-tuned for
`qat_iters` steps at a low learning rate with the engine's rounding simulated in the forward pass:

- every weight tensor takes the value of its engine code: conv layers int8 per output channel with
  BatchNorm folded in, vox values int16 and scores int8 per output channel, head int16 (int8 for
  an uncertainty head's rows) with one scale per output and part (pooled / Gram). The codes and scales come from training.quantize's own
  functions (conv_weight_codes, vox_weight_codes, head_weight_codes), recomputed from the current
  weights at every step, so the grid is exactly the one the exporter will use;
- activations are rounded where the engine stores them: the log-mel as int16 dB in Q8, each conv
  layer's ReLU output on 256 levels up to its calibrated maximum (activation_scale), the pooled
  values and the Gram matrix on their int16 grids (vox_scales). Calibration (training.quantize.
  calibrate, on the same clips the exporter calibrates on) is redone at every QAT evaluation;
- rounding passes the gradient straight through (STE); clamping passes none beyond the range;
- BatchNorm is frozen (running statistics, as folded); biases stay float (the engine's are int32 at
  the accumulator's scale, far finer than the weights).

Every `qat_eval_interval` steps the model is exported and measured through the C engine again; the
state with the best int8 validation CCC (the unmodified student included) is kept, so QAT never
ships a worse int8 model on the validation clips. QAT steps are numbered after training
(max_iters + 1 ...), written to ckpt.pt under "qat" with their optimizer state, and --resume /
--stop_at work inside the phase as they do in training (a resumed run ends bit-identical).
train.json gets "qat": the measurement before, each evaluation, the chosen step and after.

What is not simulated: the fixed-point front end (STFT, mel, log2) beyond the Q8 rounding of its
output, the Q20 softmax, the value-accumulator shift and the head's pre-shifts; each moves outputs
by far less than the int8 activations (docs/numerics.md measures them).
"""
from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import ccc_numpy
from .model import OUTPUT_NAMES, Wav2Small
from .quantize import (
    Q_DB,
    activation_scale,
    batchnorm_scale,
    calibrate,
    conv_weight_codes,
    head_weight_codes,
    head_wide_rows,
    quantize,
    vox_scales,
    vox_weight_codes,
)

HEADROOM = 2.0  # training.quantize.quantize's default, which every exporter here uses


# ---- the engine's grid in the forward pass --------------------------------------------------------

def ste(x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """`value` in the forward pass, the identity's gradient in the backward pass."""
    return x + (value - x).detach()


def fake_quant(x: torch.Tensor, scale: float, lo: int, hi: int) -> torch.Tensor:
    """x on the grid scale * {lo..hi}: clamped (no gradient outside), rounded (straight through)."""
    x = torch.clamp(x, lo * scale, hi * scale)
    return ste(x, torch.round(x / scale) * scale)


class Grid:
    """What the exporter would make of `model` now: weight offsets (engine value - float value, constant
    tensors added to the float weights) and activation scales for calibration `ranges`."""

    def __init__(self, model: Wav2Small, ranges: dict, headroom: float = HEADROOM):
        cfg, v = model.cfg, model.vgg7
        self.delta: dict[str, torch.Tensor] = {}
        self.act: dict[str, float] = {}
        for i in range(1, cfg.n_layers + 1):
            block = getattr(v, f"l{i}")
            wq, s_w, w, _ = conv_weight_codes(block)
            folded_delta = (wq * s_w[:, None, None, None] - w).transpose(0, 3, 1, 2)  # (C_out, C_in, 3, 3)
            inv = batchnorm_scale(block.norm)[:, None, None, None]
            # BatchNorm (frozen) multiplies the conv output by inv: offset the conv weight by delta / inv
            conv_delta = np.divide(folded_delta, inv, out=np.zeros_like(folded_delta), where=inv != 0)
            self.delta[f"l{i}"] = torch.from_numpy(conv_delta).float()
            self.act[f"l{i}"] = activation_scale(ranges, f"l{i}")
        lin_q, s_lin, sof_q, s_sof = vox_weight_codes(model)
        self.delta["lin"] = torch.from_numpy(lin_q * s_lin[:, None] - v.lin.weight.detach().double().numpy()[:, :, 0, 0]
                                             ).float()[:, :, None, None]
        self.delta["sof"] = torch.from_numpy(sof_q * s_sof[:, None] - v.sof.weight.detach().double().numpy()[:, :, 0, 0]
                                             ).float()[:, :, None, None]
        hq, s_hp, s_hg = head_weight_codes(model, head_wide_rows(cfg))
        F2 = cfg.pooled_mels
        deq = hq.astype(np.float64)
        deq[:, :, :F2] *= s_hp[:, None, None]
        deq[:, :, F2:] *= s_hg[:, None, None]
        self.delta["adv"] = torch.from_numpy(deq.reshape(cfg.n_outputs, -1)
                                             - model.adv.weight.detach().double().numpy()).float()
        self.s_pooled, _, self.s_gram = vox_scales(ranges, headroom)


def fake_quant_forward(model: Wav2Small, pcm: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Wav2Small.forward with the engine's rounding (BatchNorm must be in eval mode: it is folded)."""
    v, cfg = model.vgg7, model.cfg
    x = v.logmel(pcm)
    x = ste(x, torch.round(x * 2.0**Q_DB) / 2.0**Q_DB)  # the engine's log-mel: int16 dB in Q8
    for i in range(1, cfg.n_layers + 1):
        block = getattr(v, f"l{i}")
        x = F.relu(block.norm(F.conv2d(x, block.conv.weight + grid.delta[f"l{i}"], padding=1)))
        x = fake_quant(x, grid.act[f"l{i}"], 0, 255)  # int8 with zero point -128
        if i == cfg.pool_after:
            x = v.maxpool_A(x)
    scores = F.conv2d(x, v.sof.weight + grid.delta["sof"], v.sof.bias)
    values = F.conv2d(x, v.lin.weight + grid.delta["lin"], v.lin.bias)
    pooled = fake_quant((values * torch.softmax(scores, dim=2)).sum(dim=2), grid.s_pooled, -32767, 32767)
    gram = fake_quant(pooled @ pooled.transpose(1, 2), grid.s_gram, -32767, 32767)
    return F.linear(torch.cat([pooled, gram], dim=2).flatten(1), model.adv.weight + grid.delta["adv"], model.adv.bias)


def inflate_channel(model: Wav2Small, layer: int, channel: int, factor: float) -> None:
    """Scale one channel of conv layer `layer`'s output by `factor` > 0 and the next layer's weights on
    it by 1 / factor. ReLU and max-pooling commute with a positive scale, so the float model computes
    the same function, but that layer's calibrated int8 range grows by `factor` for every channel:
    a deliberately coarse int8 model, for testing and demonstrating QAT."""
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    v = model.vgg7
    with torch.no_grad():
        bn = getattr(v, f"l{layer}").norm
        bn.weight[channel] *= factor
        bn.bias[channel] *= factor
        if layer < model.cfg.n_layers:
            getattr(v, f"l{layer + 1}").conv.weight[:, channel] /= factor
        else:
            v.lin.weight[:, channel] /= factor
            v.sof.weight[:, channel] /= factor


# ---- measuring through the C engine -----------------------------------------------------------------

def engine_predictions(model: Wav2Small, calib: list[np.ndarray], clips: list[np.ndarray]) -> tuple[np.ndarray, bytes]:
    """Quantize (calibrated on `calib`), export a .w2s, run every int16 clip through the C engine:
    ((N, 3) outputs, the file's bytes)."""
    from wav2small import Model

    from .export import write_model

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "student.w2s"
        data = write_model(quantize(model.eval(), calib, HEADROOM), path)
        engine = Model(path)
        out = np.stack([engine.predict(c).as_array() for c in clips]).astype(np.float32)
    return out, data


def measure(model: Wav2Small, calib: list[np.ndarray], split) -> dict[str, Any]:
    """Float and int8 (C engine) CCC against the split's targets, whole clips; `loss` = float - int8."""
    from .distill import predict_exact

    f = predict_exact(model, split, 16)
    q, _ = engine_predictions(model, calib, split.clips)
    fc, qc = ccc_numpy(f, split.targets), ccc_numpy(q, split.targets)
    r = lambda a: {o: round(float(x), 5) for o, x in zip(OUTPUT_NAMES, a)}
    return {"clips": len(split), "float": r(fc), "int8": r(qc), "loss": r(fc - qc),
            "max_loss": round(float(np.nanmax(fc - qc)), 5), "int8_mean": round(float(np.nanmean(qc)), 5),
            "int8_vs_float": r(ccc_numpy(q, f))}


def calibration_set(cfg, splits: dict) -> list[np.ndarray]:
    """The clips the exporter calibrates on: a manifest's training clips as training.evaluate picks
    them (6 s each; the labelled espeak-ng clips for the prosody annotator's student, which trains on
    those only, else real speech first); for the prosody corpus, training clips spread over the split."""
    if cfg.corpus != "prosody":
        from .evaluate import calibration_clips

        return calibration_clips(cfg.corpus, cfg.qat_calib, labelled_only=cfg.teacher == "prosody")
    train = splits["train"].clips
    picked = train[:: max(1, len(train) // cfg.qat_calib)][: cfg.qat_calib]
    return [c[: 6 * 16000].astype(np.float32) / 32768.0 for c in picked]


# ---- the phase in training.distill ------------------------------------------------------------------

def _lr(cfg, k: int) -> float:
    """Cosine from qat_lr to qat_lr / 10 over the phase."""
    return cfg.qat_lr * (0.1 + 0.45 * (1.0 + math.cos(math.pi * k / cfg.qat_iters)))


def _clone(state: dict) -> dict:
    return {k: v.detach().clone() for k, v in state.items()}


def phase(cfg, model: Wav2Small, params: list, targets, splits: dict, loss_fn: Callable, dist, log: Callable,
          saved: dict | None, checkpoint: Callable[[dict], None]) -> dict[str, Any]:
    """Run (or continue, from `saved` = ckpt["qat"]) the QAT phase on `model` (the trained student).
    `checkpoint(state)` writes ckpt.pt with "qat": state. Returns the train.json entry, with
    "stopped_at" if --stop_at ended the phase early; `model` is left holding the chosen weights."""
    from .distill import gather_rows

    calib = calibration_set(cfg, splits)
    val = splits["val"]
    state = saved
    if state is not None and not state["ran"]:
        state = None  # only measured last time: measure again (the mode or threshold may have changed)
    if state is None:
        if dist.world > 1:  # every process starts from the main process's (selected) student
            for t in model.state_dict().values():
                torch.distributed.broadcast(t, 0)
        pre = measure(model, calib, val) if dist.main else None
        if dist.world > 1:
            box = [pre]
            torch.distributed.broadcast_object_list(box, 0)
            pre = box[0]
        run = cfg.qat == "on" or pre["max_loss"] > cfg.qat_threshold
        log(f"int8 (C engine) vs float on {pre['clips']} validation clips: CCC loss "
            + " ".join(f"{k} {v:+.4f}" for k, v in pre["loss"].items())
            + (f"; quantization-aware fine-tuning for {cfg.qat_iters} steps" if run
               else f"; within {cfg.qat_threshold}, no fine-tuning"))
        state = {"mode": cfg.qat, "threshold": cfg.qat_threshold, "pre": pre, "ran": run, "step": 0,
                 "history": [], "done": not run}
        if run:
            state.update(best=pre["int8_mean"], best_step=0, best_model=_clone(model.state_dict()),
                         ranges=calibrate(model.eval(), calib))
        else:
            state.update(post=pre, best_step=0)
    if state["done"]:
        if state["ran"]:
            model.load_state_dict(state["best_model"])
        checkpoint(state)
        return _entry(state)

    if "model" in state:
        model.load_state_dict(state["model"])
    optimizer = torch.optim.AdamW(params, lr=cfg.qat_lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    if "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    model.eval()  # BatchNorm frozen: the engine folds its running statistics
    rows = slice(dist.rank, None, dist.world)
    stop = cfg.qat_iters if cfg.stop_at <= 0 else min(cfg.qat_iters, max(0, cfg.stop_at - cfg.max_iters))
    while state["step"] < stop:
        k = state["step"]
        lr = _lr(cfg, k)
        for group in optimizer.param_groups:
            group["lr"] = lr
        grid = Grid(model, state["ranges"])
        x, y = targets.batch(cfg.max_iters + k, rows)
        pred = gather_rows(fake_quant_forward(model, x, grid), dist, differentiable=True)
        loss = loss_fn(pred, gather_rows(y, dist, differentiable=False))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if dist.world > 1:  # what DDP does: average the (already whole-batch) gradients
            for p in params:
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)
                    p.grad /= dist.world
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        state["step"] = k = k + 1
        if k % cfg.log_interval == 0:
            log(f"qat step {k:4d}  loss {loss.item():.4f}  lr {lr:.2e}")
        if k % cfg.qat_eval_interval == 0 or k == cfg.qat_iters:
            state["ranges"] = calibrate(model, calib)
            if dist.main:
                m = measure(model, calib, val)
                state["history"].append({"step": k, **m})
                if m["int8_mean"] > state["best"]:
                    state.update(best=m["int8_mean"], best_step=k, best_model=_clone(model.state_dict()))
                log(f"qat step {k:4d}  val CCC float " + " ".join(f"{v:.4f}" for v in m["float"].values())
                    + "  int8 " + " ".join(f"{v:.4f}" for v in m["int8"].values())
                    + f"  (best int8 mean {state['best']:.4f} @ {state['best_step']})")
            dist.barrier()
        if k % cfg.checkpoint_interval == 0 or k == stop:
            state.update(model=_clone(model.state_dict()), optimizer=optimizer.state_dict())
            if k == cfg.qat_iters:
                state["done"] = True
                model.load_state_dict(state["best_model"])
                if dist.main:  # the chosen state's measurement (the same numbers measure() gives again)
                    chosen = [h for h in state["history"] if h["step"] == state["best_step"]]
                    state["post"] = {k: v for k, v in chosen[0].items() if k != "step"} if chosen else state["pre"]
            checkpoint(state)
    if not state["done"]:
        if state["step"] == 0:  # --stop_at=max_iters: keep the measurement
            checkpoint(state)
        log(f"stopped at QAT step {state['step']} of {cfg.qat_iters}; continue with --resume=true")
        return {"stopped_at": cfg.max_iters + state["step"]}
    post = state.get("post")
    if post is not None:
        log(f"after QAT (step {state['best_step']} of {cfg.qat_iters}): int8 CCC loss "
            + " ".join(f"{k} {v:+.4f}" for k, v in post["loss"].items())
            + f" (before: max {state['pre']['max_loss']:+.4f})")
    return _entry(state)


def _entry(state: dict) -> dict[str, Any]:
    """train.json's "qat": the measurements, not the tensors."""
    keep = ("mode", "threshold", "ran", "pre", "history", "best_step", "post")
    out = {k: state[k] for k in keep if k in state}
    out["steps"] = state["step"]
    return out


if __name__ == "__main__":
    raise SystemExit("training.qat has no command line: it runs inside training.distill, with --qat=auto or "
                     "--qat=on (on a finished run: python -m training.distill --out_dir=RUN --resume=true --qat=auto)")
