"""NumPy model of the C engine's integer arithmetic, for the bit-exact tests.

Not used by predict(). One function per C stage with the same name and argument order; every
product is int64 (or float64 where the sum provably stays below 2^53, which is exact), every
shift is arithmetic, every rounding calls one of the three rules below (csrc/requant.h).
Tensors come from the C parser (`_engine.Model.tensors()`), fixed-point conventions from the
C header (`_engine.Q_*`), so no constant is written twice.
"""
from __future__ import annotations

import math

import numpy as np

from . import _engine

Q_PCM, Q_TRIG, Q_LOG, Q_DB = _engine.Q_PCM, _engine.Q_TRIG, _engine.Q_LOG, _engine.Q_DB
Q_WINDOWED = _engine.Q_WINDOWED
Q_EXP_LUT, Q_EXP = _engine.Q_EXP_LUT, _engine.Q_EXP
EXP_LUT_BITS = int(np.log2(_engine.EXP_LUT_SIZE - 1))
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

# ---- rounding rules (requant.h) ------------------------------------------------------------------


def _i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def rshift_round(x, s) -> np.ndarray:
    """x / 2^s, nearest, ties away from zero; s >= 0; s >= 63 gives 0."""
    x, s = np.broadcast_arrays(_i64(x), _i64(s))
    sc = np.clip(s, 0, 62)
    mask = (np.int64(1) << sc) - 1
    rem = x & mask
    threshold = (mask >> 1) + (x < 0)
    r = (x >> sc) + (rem > threshold)
    return np.where(s <= 0, x, np.where(s >= 63, 0, r))


def div_round(x, d) -> np.ndarray:
    """x / d, nearest, ties away from zero; d > 0 (C integer division truncates)."""
    x, d = _i64(x), _i64(d)
    a = (np.abs(x) + d // 2) // d
    return np.where(x >= 0, a, -a)


def srdhm(a, b) -> np.ndarray:
    a, b = _i64(a), _i64(b)
    ab = a * b
    nudge = np.where(ab >= 0, np.int64(1) << 30, 1 - (np.int64(1) << 30))
    q = ab + nudge
    r = np.where(q >= 0, q >> 31, -((-q) >> 31))  # truncation toward zero
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, r)


def requantize(acc, mult, shift) -> np.ndarray:
    """TFLM double rounding: acc * mult * 2^(shift - 31)."""
    acc, mult, shift = np.broadcast_arrays(_i64(acc), _i64(mult), _i64(shift))
    left = np.maximum(shift, 0)
    x = np.clip(acc << left, INT32_MIN, INT32_MAX)
    return rshift_round(srdhm(x, mult), np.maximum(-shift, 0))


def sat(x, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(_i64(x), info.min, info.max).astype(dtype)


# ---- front end (frontend.c) ----------------------------------------------------------------------


def bit_length(v) -> np.ndarray:
    x = np.asarray(v, dtype=np.uint64).copy()
    n = np.zeros(x.shape, dtype=np.int64)
    for s in (32, 16, 8, 4, 2, 1):
        big = x >= (np.uint64(1) << np.uint64(s))
        n += np.where(big, s, 0)
        x = np.where(big, x >> np.uint64(s), x)
    return n + (x > 0)


def log2_q16(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.uint64)
    msb = bit_length(v) - 1
    up = np.maximum(30 - msb, 0).astype(np.uint64)
    down = np.maximum(msb - 30, 0).astype(np.uint64)
    x = (v >> down) << up
    frac = np.zeros(v.shape, dtype=np.int64)
    for i in range(1, Q_LOG + 1):
        x = (x * x) >> np.uint64(30)
        big = x >= (np.uint64(1) << np.uint64(31))
        x = np.where(big, x >> np.uint64(1), x)
        frac |= np.where(big, 1 << (Q_LOG - i), 0)
    return (msb << Q_LOG) + frac


def prenorm_s16(t: dict, pcm: np.ndarray) -> tuple[int, int]:
    """(mean, log2_var) of the whole clip; see frontend.c."""
    n = len(pcm)
    x = pcm.astype(np.int64)
    mean = int(div_round(int(x.sum()) * (1 << Q_PCM), n))
    d = x * (1 << Q_PCM) - mean
    sq = int((d * d).sum(dtype=np.uint64))
    eps = int(t["front.params"][0])
    var = (sq + n // 2) // n + eps
    return mean, int(log2_q16(np.array([var], dtype=np.uint64))[0])


def mel_matrix(t: dict, bins: int) -> np.ndarray:
    """The mel filterbank as a dense (F, bins) uint16 matrix from its stored bands (`mel.band`:
    first bin and count per band, `mel`: the bands' weights one after the other)."""
    band = t["mel.band"].astype(np.int64)
    dense = np.zeros((len(band), bins), np.uint16)
    ends = np.cumsum(band[:, 1])
    for j, (first, count) in enumerate(band):
        dense[j, first : first + count] = t["mel"][ends[j] - count : ends[j]]
    return dense


def logmel_s16(t: dict, cfg: dict, pcm: np.ndarray, mean: int, log2_var: int) -> np.ndarray:
    """All frames: int16 PCM -> (T, n_mels) log-mel in dB, Q_DB."""
    n_fft, hop = cfg["n_fft"], cfg["hop"]
    _, mel_shift, pow_bits, log_floor, db_mult, db_shift = (int(v) for v in t["front.params"])
    T = (len(pcm) - n_fft) // hop + 1
    idx = np.arange(T)[:, None] * hop + np.arange(n_fft)[None, :]
    d = pcm.astype(np.int64)[idx] * (1 << Q_PCM) - mean                       # (T, N)
    xw = rshift_round(d * t["window"].astype(np.int64), Q_TRIG + Q_PCM - Q_WINDOWED)
    n = np.arange(n_fft)
    k = np.arange(n_fft // 2 + 1)[:, None]
    cos_idx = (k * n) % n_fft
    sin_idx = (cos_idx + 3 * (n_fft // 4)) % n_fft
    cosine = t["cosine"].astype(np.int64)
    # |xw| <= 2^24, |table| <= 2^30, N <= 256: sums < 2^62, so integer matmul (float64 is not exact)
    re = rshift_round(xw @ cosine[cos_idx].T, Q_TRIG + Q_WINDOWED - Q_PCM)
    im = rshift_round(xw @ cosine[sin_idx].T, Q_TRIG + Q_WINDOWED - Q_PCM)
    power = (re * re).astype(np.uint64) + (im * im).astype(np.uint64)        # (T, bins)
    e = np.maximum(bit_length(power.max(axis=1)) - pow_bits, 0)              # (T,)
    eu = e.astype(np.uint64)[:, None]
    half = np.where(eu > 0, np.uint64(1) << (np.maximum(eu, 1) - np.uint64(1)), np.uint64(0))
    power = (power + half) >> eu
    mel = mel_matrix(t, n_fft // 2 + 1).astype(np.uint64)                    # (F, bins)
    m = np.zeros((T, mel.shape[0]), dtype=np.uint64)
    for kk in range(mel.shape[1]):  # uint64 sums: too wide for float64
        m += mel[None, :, kk] * power[:, kk : kk + 1]
    safe = np.where(m == 0, np.uint64(1), m)
    L = log2_q16(safe) + (e[:, None] - mel_shift) * (1 << Q_LOG) - log2_var
    L = np.where(m == 0, log_floor, np.maximum(L, log_floor))
    return sat(requantize(L, db_mult, db_shift), np.int16)


# ---- conv stack (conv.c, pool.c) ------------------------------------------------------------------


def conv3x3(t: dict, layer: int, x: np.ndarray) -> np.ndarray:
    """(T, F, C_in) int16/int8 -> (T, F, C_out) int8; padding taps skipped."""
    in_off, out_off, act_min, act_max = (int(v) for v in t[f"l{layer}.params"])
    w = t[f"l{layer}.w"].astype(np.float64)                                   # (Co, 3, 3, Ci)
    x = x.reshape(x.shape[0], x.shape[1], -1)
    T, F, _ = x.shape
    xp = np.zeros((T + 2, F + 2, x.shape[2]), dtype=np.float64)
    xp[1:-1, 1:-1] = x.astype(np.int64) + in_off                              # padding stays 0
    acc = np.zeros((T, F, w.shape[0]), dtype=np.float64)                      # |acc| < 2^31: exact
    for ky in range(3):
        for kx in range(3):
            acc += xp[ky : ky + T, kx : kx + F] @ w[:, ky, kx, :].T
    acc = np.rint(acc).astype(np.int64) + t[f"l{layer}.bias"]
    y = requantize(acc, t[f"l{layer}.mult"], t[f"l{layer}.shift"]) + out_off
    return np.clip(y, act_min, act_max).astype(np.int8)


def maxpool(x: np.ndarray) -> np.ndarray:
    """(T, F, C) int8 -> (ceil(T/2), ceil(F/2), C); padding never wins."""
    T, F, C = x.shape
    xp = np.full((T + 2 + (T % 2), F + 2 + (F % 2), C), -129, dtype=np.int16)
    xp[1 : T + 1, 1 : F + 1] = x
    T2, F2 = (T + 1) // 2, (F + 1) // 2
    out = np.full((T2, F2, C), -129, dtype=np.int16)
    for ky in range(3):
        for kx in range(3):
            out = np.maximum(out, xp[ky : ky + 2 * T2 : 2, kx : kx + 2 * F2 : 2])
    return out.astype(np.int8)


# ---- vox pooling, Gram, head (vox.c, head.c) ------------------------------------------------------


def exp2_neg(lut: np.ndarray, n: np.ndarray) -> np.ndarray:
    """2^(-n / 2^Q_LOG) in Q_EXP for n >= 0 (int64 arrays)."""
    frac_bits = Q_LOG - EXP_LUT_BITS
    k = n >> Q_LOG
    r = n & ((1 << Q_LOG) - 1)
    idx, fr = r >> frac_bits, r & ((1 << frac_bits) - 1)
    a, b = lut.astype(np.int64)[idx], lut.astype(np.int64)[idx + 1]
    v = a - (((a - b) * fr + (1 << (frac_bits - 1))) >> frac_bits)
    s = (Q_EXP_LUT - Q_EXP) + k
    sc = np.clip(s, 1, 62)
    return np.where(s >= 63, 0, (v + (np.int64(1) << (sc - 1))) >> sc)


def vox(t: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T', F', C) int8 -> pooled (C, F') int16 and Gram (C, C) int16, online over frames."""
    off, gram_shift, value_shift = (int(v) for v in t["vox.params"])
    xi = x.astype(np.int64) + off
    value = rshift_round(xi @ t["vox.lin_w"].astype(np.int64).T + t["vox.lin_b"], value_shift)  # (T', F', C)
    score = xi @ t["vox.sof_w"].astype(np.int64).T + t["vox.sof_b"]
    z = requantize(score, t["vox.sof_mult"], t["vox.sof_shift"])               # Q_LOG
    r = -((-z) >> Q_LOG)                                                       # ceil
    lut = t["vox.exp_lut"]
    ref, total, acc = r[0].copy(), np.zeros(r.shape[1:], np.int64), np.zeros(r.shape[1:], np.int64)
    for i in range(x.shape[0]):
        k = np.maximum(r[i] - ref, 0)
        total, acc = rshift_round(total, k), rshift_round(acc, k)
        ref = np.maximum(ref, r[i])
        e = exp2_neg(lut, ref * (1 << Q_LOG) - z[i])
        total += e
        acc += e * value[i]
    p = np.clip(div_round(acc, total), INT32_MIN, INT32_MAX)                  # (F', C)
    pooled = sat(requantize(p, t["vox.pool_mult"], t["vox.pool_shift"]), np.int16).T.copy()
    g = pooled.astype(np.int64) @ pooled.astype(np.int64).T
    return pooled, sat(rshift_round(g, gram_shift), np.int16)


def head(t: dict, pooled: np.ndarray, gram: np.ndarray) -> np.ndarray:
    pre_p, pre_g = (int(v) for v in t["head.params"])
    F2 = pooled.shape[1]
    # (K, C, F'+C): the int16 rows, then an uncertainty head's int8 rows
    w = np.concatenate([t[n].astype(np.int64) for n in ("head.w", "head.uw") if n in t])
    ap = np.einsum("kcj,cj->k", w[:, :, :F2], pooled.astype(np.int64))
    ag = np.einsum("kcj,cj->k", w[:, :, F2:], gram.astype(np.int64))
    p32 = np.clip(rshift_round(ap, pre_p), INT32_MIN, INT32_MAX)
    g32 = np.clip(rshift_round(ag, pre_g), INT32_MIN, INT32_MAX)
    y = requantize(p32, t["head.mult_p"], t["head.shift_p"]) + requantize(
        g32, t["head.mult_g"], t["head.shift_g"]) + t["head.b"]
    return np.clip(y, INT32_MIN, INT32_MAX).astype(np.int32)


# ---- modulation (modulation.c) ----------------------------------------------------------------------


def modulation(t: dict, logmel: np.ndarray) -> int:
    """The standard deviation over blocks of mod_block frames of the block means (rounded to dB
    Q_DB) of each frame's loudest mel band, dB in Q_DB: a last partial block left out, 0 with fewer
    than two blocks."""
    block = int(t["decide.params"][3])
    n = logmel.shape[0] // block
    if n < 2:
        return 0
    v = div_round(logmel[: n * block].astype(np.int64).max(axis=1).reshape(n, block).sum(axis=1), block)
    s1, s2 = int(v.sum()), int((v * v).sum())
    mu = int(div_round(s1, n))
    return math.isqrt(int(div_round(s2 - 2 * mu * s1 + n * mu * mu, n)))


def steady(t: dict, logmel: np.ndarray) -> int:
    """The share (Q15) of consecutive loud blocks of B = steady_block frames whose spectral shapes
    (each band's block sum S times F minus the bands' total, over F B 2^(Q_DB-1): dB Q1) have cos^2
    >= steady_cos2 / 2^12 with a positive dot product; a block is loud when max S >= steady_level B.
    A last partial block is left out; 0 without a pair."""
    block, level, cos2 = (int(v) for v in t["decide.steady"][:3])
    n, f = logmel.shape[0] // block, logmel.shape[1]
    s = logmel[: n * block].astype(np.int64).reshape(n, block, f).sum(axis=1)
    d = div_round(f * s - s.sum(axis=1, keepdims=True), f * block * (1 << (Q_DB - 1)))
    loud = s.max(axis=1) >= level * block if n else np.zeros(0, bool)
    pairs = same = 0
    for k in range(1, n):
        if loud[k] and loud[k - 1]:
            pairs += 1
            dot = int((d[k] * d[k - 1]).sum())
            n_now, n_last = int((d[k] * d[k]).sum()), int((d[k - 1] * d[k - 1]).sum())
            same += dot > 0 and dot * dot * _engine.STEADY_COS2_ONE >= cos2 * n_now * n_last
    return int(div_round(same * _engine.STEADY_ONE, pairs)) if pairs else 0


# ---- whole forward pass (engine.c) ----------------------------------------------------------------


def forward(t: dict, cfg: dict, pcm: np.ndarray) -> list[tuple[str, int, np.ndarray]]:
    """Every stage output, in the order and shapes of the engine's trace."""
    stages = []
    mean, log2_var = prenorm_s16(t, pcm)
    stages.append(("prenorm", 0, np.array([mean, log2_var], dtype=np.int32)))
    x = logmel_s16(t, cfg, pcm, mean, log2_var)
    stages.append(("logmel", 0, x))
    if "decide.params" in t:  # an uncertainty head's decision reads the log-mel's modulation too
        stages.append(("modulation", 0, np.array([modulation(t, x)], dtype=np.int32)))
    if "decide.steady" in t:  # and, with the measure in the file, its spectrum's steadiness
        stages.append(("steady", 0, np.array([steady(t, x)], dtype=np.int32)))
    for layer in range(1, cfg["n_layers"] + 1):
        x = conv3x3(t, layer, x)
        stages.append(("conv", layer, x))
        if layer == cfg["pool_after"]:
            x = maxpool(x)
            stages.append(("pool", layer, x))
    pooled, gram = vox(t, x)
    stages += [("pooled", 0, pooled), ("gram", 0, gram)]
    stages.append(("output", 0, head(t, pooled, gram)))
    return stages
