"""Post-training quantization of a float Wav2Small into the engine's integer tensors.

    model (float, eval) + calibration speech -> QuantizedModel(config, tensors)

What is int8 and what is wider was decided by measured fidelity (docs/numerics.md):
- front end: fixed point end to end (no calibration: it is scale-free after the prenorm);
  log-mel reaches layer 1 as int16 dB in Q8 (no int8 step on a 100 dB range);
- conv layers: int8 per-output-channel symmetric weights with BatchNorm folded in, int32 bias,
  int8 activations (zero point -128 after ReLU, scale from the calibration maximum);
- vox pooling: int16 value weights and int8 score weights (1x1 convs; measured: int8 values
  cost 0.0006 CCC, int8 scores nothing), int32 values and scores, softmax in Q20 fixed point;
  pooled values and Gram matrix int16 with `headroom` above the calibration maximum;
- head: int16 weights, one scale per output and part (pooled / Gram); an uncertainty head's
  log-sigma and speech rows int8 (format version 2: they rank, they need not be exact; the file
  stays within 16 KB).
The exporter computes every multiplier and shift here; C never turns a float into one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from wav2small import _engine
from wav2small.model import to_int16

from .metrics import ccc_numpy
from .model import OUTPUT_NAMES, Wav2Small, Wav2SmallConfig, hann_periodic

Q_PCM, Q_TRIG, Q_LOG, Q_DB = _engine.Q_PCM, _engine.Q_TRIG, _engine.Q_LOG, _engine.Q_DB
OUT_FRAC_BITS = 16  # outputs are int32 in Q16


class QuantizationError(ValueError):
    """A model whose values do not fit the engine's integer ranges."""


@dataclass
class QuantizedModel:
    config: dict                    # engine config (keys of w2s_config)
    tensors: dict[str, np.ndarray]  # name -> array, names and dtypes of _engine.layout()
    calibration: dict               # ranges seen during calibration, for the model card


def quantize_multiplier(m: float) -> tuple[int, int]:
    """Real multiplier -> (mult, shift) with m ~ mult * 2^(shift - 31), as TFLM encodes it."""
    if not math.isfinite(m) or m < 0:
        raise QuantizationError(f"multiplier {m} is not a finite non-negative number")
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)
    mult = round(q * (1 << 31))
    if mult == 1 << 31:
        mult //= 2
        shift += 1
    if shift < -31:  # below 2^-32: contributes nothing in int32 arithmetic
        return 0, 0
    if shift > 30:
        raise QuantizationError(f"multiplier {m:g} is too large for the engine")
    return mult, shift


def _multipliers(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pairs = [quantize_multiplier(float(v)) for v in np.ravel(m)]
    return np.array([p[0] for p in pairs], np.int32), np.array([p[1] for p in pairs], np.int32)


def _symmetric(w: np.ndarray, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel quantization to [-qmax, qmax] of `dtype` (axis 0 = channel);
    the most negative code is unused, as in TFLite. Returns the codes and the scales."""
    qmax = np.iinfo(dtype).max
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    scale = np.where(amax > 0, amax / qmax, 1.0)
    q = np.clip(np.rint(w / scale.reshape((-1,) + (1,) * (w.ndim - 1))), -qmax, qmax).astype(dtype)
    return q, scale


def _bias(b: np.ndarray, scale: np.ndarray, limit: int, what: str) -> np.ndarray:
    q = np.rint(b / scale)
    if np.abs(q).max(initial=0) > limit:
        raise QuantizationError(f"{what}: bias needs {np.abs(q).max():.3g} > {limit} steps")
    return q.astype(np.int32)


def fold_batchnorm(block) -> tuple[np.ndarray, np.ndarray]:
    """conv (no bias) + BatchNorm (eval) -> weight (C_out, 3, 3, C_in) and bias, float64."""
    w = block.conv.weight.detach().double().numpy()
    bn = block.norm
    inv = batchnorm_scale(bn)
    w = w * inv[:, None, None, None]
    b = bn.bias.detach().double().numpy() - bn.running_mean.detach().double().numpy() * inv
    return w.transpose(0, 2, 3, 1).copy(), b


def batchnorm_scale(bn) -> np.ndarray:
    """gamma / sqrt(running_var + eps) of an eval-mode BatchNorm (float64): the factor folded into the conv."""
    return bn.weight.detach().double().numpy() / np.sqrt(bn.running_var.detach().double().numpy() + bn.eps)


# ---- the grid: the value each tensor takes in the engine (used by quantize() and training/qat.py) -----


def conv_weight_codes(block) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A conv layer with BatchNorm folded in -> int8 codes (C_out, 3, 3, C_in), per-output-channel
    scales, and the float folded weight and bias they stand for."""
    w, b = fold_batchnorm(block)
    wq, s_w = _symmetric(w, np.int8)
    return wq, s_w, w, b


def activation_scale(ranges: dict, name: str) -> float:
    """Scale of a conv layer's int8 output (zero point -128 after ReLU): 256 levels up to the calibration maximum."""
    return max(ranges[name], 1e-6) / 255.0


def vox_weight_codes(model: Wav2Small) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vox pooling's 1x1 convs: int16 value weights and int8 score weights (C_out, C_in), per-channel scales."""
    v = model.vgg7
    lin_w, s_lin = _symmetric(v.lin.weight.detach().double().numpy()[:, :, 0, 0], np.int16)
    sof_w, s_sof = _symmetric(v.sof.weight.detach().double().numpy()[:, :, 0, 0], np.int8)
    return lin_w, s_lin, sof_w, s_sof


def vox_scales(ranges: dict, headroom: float) -> tuple[float, int, float]:
    """Scales of the int16 pooled values P and Gram matrix G (`headroom` above the calibration maximum):
    (s_pooled, gram_shift, s_gram)."""
    s_pooled = headroom * max(ranges["pooled"], 1e-6) / 32767.0
    gram_int = headroom * max(ranges["gram"], 1e-12) / s_pooled**2  # Gram in P-int16 units
    gram_shift = max(0, math.ceil(math.log2(gram_int / 32767.0)))
    return s_pooled, gram_shift, s_pooled**2 * 2.0**gram_shift


def head_weight_codes(model: Wav2Small, wide: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head weights as codes (n_outputs, C, F' + C), int16 for the first `wide` rows and int8 range
    for the rest, with one scale per output for the pooled part (columns :F') and one for the Gram
    part: (codes as int64, s_pooled_part, s_gram_part)."""
    cfg = model.cfg
    F2, C = cfg.pooled_mels, cfg.channels
    hw = model.adv.weight.detach().double().numpy().reshape(cfg.n_outputs, C, F2 + C)
    hq = np.zeros(hw.shape, np.int64)
    s_hp, s_hg = np.zeros(cfg.n_outputs), np.zeros(cfg.n_outputs)
    for k in range(cfg.n_outputs):
        dtype = np.int16 if k < wide else np.int8
        (hq[k, :, :F2],), (s_hp[k],) = _symmetric(hw[k, None, :, :F2], dtype)
        (hq[k, :, F2:],), (s_hg[k],) = _symmetric(hw[k, None, :, F2:], dtype)
    return hq, s_hp, s_hg


# ---- calibration --------------------------------------------------------------------------------


@torch.no_grad()
def calibrate(model: Wav2Small, clips: list[np.ndarray]) -> dict:
    """Largest activation of every layer (after ReLU) and largest |P| and |G| over the clips."""
    if not clips:
        raise QuantizationError("calibration needs at least one clip of speech")
    ranges: dict[str, float] = {}
    for pcm in clips:
        taps: dict = {}
        x = torch.as_tensor(np.asarray(pcm, dtype=np.float32))[None]
        model.vgg7.features(model.vgg7.logmel(x), taps)
        for name, v in taps.items():
            if name != "scores":
                ranges[name] = max(ranges.get(name, 0.0), float(v.abs().max()))
    return ranges


# ---- the whole model ----------------------------------------------------------------------------


def front_end_tensors(model: Wav2Small) -> dict[str, np.ndarray]:
    cfg = model.cfg
    window = hann_periodic(cfg.n_fft)
    cosine = np.cos(2 * np.pi * np.arange(cfg.n_fft) / cfg.n_fft)
    mel = model.vgg7.logmel_extractor.melW.detach().double().numpy().T     # (n_mels, n_bins)
    mel_shift = int(math.floor(math.log2(65535.0 / mel.max())))
    mel_q = np.rint(mel * 2.0**mel_shift).astype(np.uint16)
    pow_bits = 63 - int(mel_q.astype(np.int64).sum(axis=1).max()).bit_length()
    # each band is stored as its run of bins from the first to the last nonzero weight
    band = np.zeros((cfg.n_mels, 2), np.uint16)
    weights = []
    for j, row in enumerate(mel_q):
        nz = np.flatnonzero(row)
        first, stop = (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, 0)
        band[j] = first, stop - first
        weights.append(row[first:stop])
    pcm_eps = round(cfg.prenorm_eps * 2.0 ** (30 + 2 * Q_PCM))  # float PCM = int16 / 2^15
    amin = float(model.vgg7.logmel_extractor.amin)  # the floor the float model applies (its buffer)
    db_mult, db_shift = quantize_multiplier(10 * math.log10(2) * 2.0 ** (Q_DB - Q_LOG))
    params = [pcm_eps, mel_shift, pow_bits, round(math.log2(amin) * 2**Q_LOG), db_mult, db_shift]
    return {
        "front.params": np.array(params, np.int32),
        "window": np.rint(window * 2**Q_TRIG).astype(np.int32),
        "cosine": np.rint(cosine * 2**Q_TRIG).astype(np.int32),
        "mel.band": band,
        "mel": np.concatenate(weights).astype(np.uint16),
    }


def engine_config(cfg: Wav2SmallConfig, mel_weights: int) -> dict:
    """The file header's configuration of a model (docs/format.md)."""
    return dict(
        sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop=cfg.hop, n_mels=cfg.n_mels,
        channels=cfg.channels, n_layers=cfg.n_layers, pool_after=cfg.pool_after,
        n_outputs=cfg.n_outputs, out_frac_bits=OUT_FRAC_BITS, mel_weights=mel_weights,
        flags=(_engine.FLAG_UNCERTAINTY | (_engine.FLAG_STEADY if cfg.steady_block > 0 else 0)) if cfg.uncertainty else 0,
    )


def head_wide_rows(cfg: Wav2SmallConfig) -> int:
    """How many head rows the file stores as int16 (the rest int8): the engine's layout decides."""
    shapes = {name: shape for name, _, shape, _ in _engine.layout(engine_config(cfg, 0))[0]}
    return int(shapes["head.w"][0])


def quantize(model: Wav2Small, clips: list[np.ndarray], headroom: float = 2.0) -> QuantizedModel:
    """Quantize a float model (eval mode) using calibration clips of speech at 16 kHz."""
    model = model.eval()
    cfg = model.cfg
    ranges = calibrate(model, clips)
    t = front_end_tensors(model)
    out = 2.0**OUT_FRAC_BITS
    config = engine_config(cfg, len(t["mel"]))
    if cfg.uncertainty:  # the decision thresholds, in output units like the outputs they compare with
        t["decide.params"] = np.array([round(cfg.max_log_sigma * out), round(cfg.min_speech_logit * out),
                                       round(cfg.min_modulation_db * 2**Q_DB), cfg.mod_block], np.int32)
    if config["flags"] & _engine.FLAG_STEADY:  # the steadiness measure's constants and its threshold
        t["decide.steady"] = np.array([cfg.steady_block, round(cfg.steady_level_db * 2**Q_DB),
                                       round(cfg.steady_min_cos**2 * _engine.STEADY_COS2_ONE),
                                       round(cfg.max_steady * _engine.STEADY_ONE)], np.int32)

    # conv stack: activations int8 with zero point -128 (ReLU output is >= 0)
    s_in = 2.0**-Q_DB
    for i in range(1, cfg.n_layers + 1):
        wq, s_w, _, b = conv_weight_codes(getattr(model.vgg7, f"l{i}"))
        s_out = activation_scale(ranges, f"l{i}")
        t[f"l{i}.params"] = np.array([0 if i == 1 else 128, -128, -128, 127], np.int32)
        t[f"l{i}.w"] = wq
        t[f"l{i}.bias"] = _bias(b, s_in * s_w, 2**30, f"layer {i}")
        t[f"l{i}.mult"], t[f"l{i}.shift"] = _multipliers(s_in * s_w / s_out)
        s_in = s_out
    s_x = s_in  # the max-pool keeps its input's scale

    # vox pooling
    v = model.vgg7
    lin_w, s_lin, sof_w, s_sof = vox_weight_codes(model)
    s_pooled, gram_shift, s_gram = vox_scales(ranges, headroom)
    lin_b = _bias(v.lin.bias.detach().double().numpy(), s_x * s_lin, 2**29, "vox values")
    # shift the value accumulators so their worst case stays below 2^22 (vox.c bounds)
    worst = int((np.abs(lin_w.astype(np.int64)).sum(axis=1) * 256 + np.abs(lin_b.astype(np.int64))).max())
    value_shift = max(0, worst.bit_length() - 22)
    t["vox.params"] = np.array([128, gram_shift, value_shift], np.int32)
    t["vox.lin_w"] = lin_w
    t["vox.lin_b"] = lin_b
    t["vox.sof_w"] = sof_w
    t["vox.sof_b"] = _bias(v.sof.bias.detach().double().numpy(), s_x * s_sof, 2**21, "vox scores")
    t["vox.sof_mult"], t["vox.sof_shift"] = _multipliers(s_x * s_sof * math.log2(math.e) * 2.0**Q_LOG)
    t["vox.pool_mult"], t["vox.pool_shift"] = _multipliers(s_x * s_lin * 2.0**value_shift / s_pooled)
    lut = np.rint(2.0 ** (-np.arange(_engine.EXP_LUT_SIZE) / (_engine.EXP_LUT_SIZE - 1)) * 2.0**_engine.Q_EXP_LUT)
    t["vox.exp_lut"] = lut.astype(np.uint32)

    # head: int16 weights (int8 for an uncertainty head's rows: as many int16 rows as the layout
    # has), scales per output for the pooled part and the Gram part
    F2 = cfg.pooled_mels
    wide = head_wide_rows(cfg)
    hq, s_hp, s_hg = head_weight_codes(model, wide)
    # pre-shifts: the worst-case |sum| of int16 x int16 products must fit int32
    worst_p = int(np.abs(hq[:, :, :F2]).sum(axis=(1, 2)).max()) * 32768
    worst_g = int(np.abs(hq[:, :, F2:]).sum(axis=(1, 2)).max()) * 32768
    pre_p, pre_g = max(0, worst_p.bit_length() - 31), max(0, worst_g.bit_length() - 31)
    t["head.params"] = np.array([pre_p, pre_g], np.int32)
    t["head.w"] = hq[:wide].astype(np.int16)
    if wide < cfg.n_outputs:
        t["head.uw"] = hq[wide:].astype(np.int8)
    t["head.b"] = np.rint(model.adv.bias.detach().double().numpy() * out).astype(np.int32)
    t["head.mult_p"], t["head.shift_p"] = _multipliers(s_hp * s_pooled * 2.0**pre_p * out)
    t["head.mult_g"], t["head.shift_g"] = _multipliers(s_hg * s_gram * 2.0**pre_g * out)

    return QuantizedModel(config=config, tensors=t, calibration=ranges)


@torch.no_grad()
def engine_fidelity(float_model: Wav2Small, engine, clips: list[np.ndarray]) -> dict:
    """The int8 engine (a wav2small.Model) against the float model on the same int16 clips:
    per-output CCC, max |difference| and the float outputs' spread. With an uncertainty head the
    log-sigmas and the speech logit are compared too, as raw outputs."""
    f_out, c_out = [], []
    one = float(1 << engine.config["out_frac_bits"])
    for pcm in clips:
        q = to_int16(pcm)
        f_out.append(float_model(torch.from_numpy(q.astype(np.float32) / 32768)[None])[0].numpy())
        c_out.append(engine.predict_fixed(q)[: engine.config["n_outputs"]] / one)   # not the modulation
    f, c = np.array(f_out, np.float64), np.array(c_out, np.float64)
    names = list(OUTPUT_NAMES)
    if float_model.cfg.uncertainty:
        names += [f"log_sigma_{n}" for n in OUTPUT_NAMES] + ["speech_logit"]
    return {
        "clips": len(clips),
        "ccc": dict(zip(names, ccc_numpy(c, f).tolist())),
        "max_abs_diff": dict(zip(names, np.abs(c - f).max(axis=0).tolist())),
        "float_std": dict(zip(names, f.std(axis=0).tolist())),
    }


if __name__ == "__main__":
    raise SystemExit("training.quantize has no command line: use `wav2small convert` (training/convert.py)")
