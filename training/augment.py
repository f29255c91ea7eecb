"""Waveform augmentation for distillation: the student should match the teacher on degraded audio too.

Every augmented view is a pure function of (clip, preset, seed): `draw(preset, seed)` picks the
parameters, `apply(wave, params)` renders them. So an augmented view can be named by its parameters
(the annotation cache keys on them) and recomputed bit-identically on any machine. Noise is
generated, not read from files, for the same reason.

Steps, in this order (each applied with its own probability; `PRESETS` holds the numbers):

    shift    another speaker, roughly (preset "speakers" only): the waveform resampled by a factor r
             drawn log-uniformly in [shift_min, shift_max], which scales pitch and formants by r (and
             the tempo, as speed perturbation does); band-limited (FFT) resampling, the result tiled or
             cut back to the input's length. With --annotate=online the teacher annotates the shifted
             audio, so the targets follow the new voice
    reverb   synthetic room: exponentially decaying Gaussian noise impulse response with RT60 drawn
             in [rt60_min, rt60_max] s, mixed with the direct path at a direct-to-reverberant ratio
             in [drr_min, drr_max] dB (what a hearing aid hears in a room)
    filter   band limiting by a windowed-sinc FIR (129 taps): low-pass (cut-off 1.5..4 kHz: muffled,
             cheap microphones), high-pass (100..400 Hz: small loudspeakers), or telephone band-pass
             (300..3400 Hz)
    noise    additive white, pink (1/f) or brown (1/f^2) noise at an SNR drawn uniformly in
             [snr_min, snr_max] dB over the whole clip
    clip     overdrive: gain of drive_min..drive_max dB, then hard clipping at full scale
    gain     overall level change of gain_min..gain_max dB (never above 0 dB, so it cannot clip):
             the int8 engine sees int16 input, where quiet clips lose resolution

Wav2Small and the audEERING teachers normalise every clip's variance, so plain gain is invisible to
both except through int16 resolution and clipping; it is kept for the engine's sake.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np

SAMPLE_RATE = 16000
NOISE_FLOOR_LSB = (0.5, 4.0)  # RMS range of noise_floor's noise, int16 LSBs (log-uniform)
VERSION = 1  # bump when `apply` changes what a given parameter set renders (it is part of cache keys)


@dataclass(frozen=True)
class AugmentConfig:
    p_reverb: float = 0.3
    rt60_min: float = 0.15      # s
    rt60_max: float = 0.8
    drr_min: float = 0.0        # dB, direct-to-reverberant ratio
    drr_max: float = 12.0
    p_filter: float = 0.3
    p_noise: float = 0.5
    snr_min: float = 0.0        # dB
    snr_max: float = 30.0
    p_clip: float = 0.1
    drive_min: float = 3.0      # dB of gain before hard clipping
    drive_max: float = 20.0
    p_gain: float = 0.5
    gain_min: float = -30.0     # dB
    gain_max: float = 0.0
    p_shift: float = 0.0        # speaker shift; 0 in "default" and "strong", whose draws stay as they were
    shift_min: float = 0.87     # resampling factor: pitch and formants x r (0.87..1.15: about -/+ 2.4 semitones)
    shift_max: float = 1.15


PRESETS: dict[str, AugmentConfig | None] = {
    "none": None,
    "default": AugmentConfig(),
    # harsher conditions, for robustness studies
    "strong": AugmentConfig(p_reverb=0.5, p_filter=0.5, p_noise=0.8, snr_min=-5.0, snr_max=20.0, p_clip=0.2),
    # "default" plus speaker variety (pitch and formants shifted together), for a student whose teacher
    # annotates online: a corpus with few real speakers gets more voices
    "speakers": AugmentConfig(p_shift=0.5),
}


def draw(preset: str, seed: int) -> dict:
    """The parameters of one augmented view: a JSON-serialisable dict (empty for 'none')."""
    if preset not in PRESETS:
        raise ValueError(f"unknown augmentation preset {preset!r}: {list(PRESETS)}")
    cfg = PRESETS[preset]
    if cfg is None:
        return {}
    rng = np.random.default_rng([VERSION, seed])
    p: dict = {"v": VERSION, "seed": int(seed)}
    u = rng.random(5)  # one coin per step, drawn up front so each step's draw does not shift the others
    if u[0] < cfg.p_reverb:
        p["reverb"] = {"rt60": round(float(rng.uniform(cfg.rt60_min, cfg.rt60_max)), 3),
                       "drr": round(float(rng.uniform(cfg.drr_min, cfg.drr_max)), 2)}
    if u[1] < cfg.p_filter:
        kind = ("lowpass", "highpass", "bandpass")[int(rng.integers(3))]
        if kind == "lowpass":
            p["filter"] = {"kind": kind, "hz": round(float(rng.uniform(1500, 4000)))}
        elif kind == "highpass":
            p["filter"] = {"kind": kind, "hz": round(float(rng.uniform(100, 400)))}
        else:
            p["filter"] = {"kind": kind, "hz": [300, 3400]}
    if u[2] < cfg.p_noise:
        p["noise"] = {"color": ("white", "pink", "brown")[int(rng.integers(3))],
                      "snr": round(float(rng.uniform(cfg.snr_min, cfg.snr_max)), 2)}
    if u[3] < cfg.p_clip:
        p["clip"] = {"drive": round(float(rng.uniform(cfg.drive_min, cfg.drive_max)), 2)}
    if u[4] < cfg.p_gain:
        p["gain"] = round(float(rng.uniform(cfg.gain_min, cfg.gain_max)), 2)
    if cfg.p_shift > 0:  # a stream of its own: the other steps draw exactly what they drew before
        shift_rng = np.random.default_rng([VERSION, seed, 2])
        if shift_rng.random() < cfg.p_shift:
            lo, hi = math.log(cfg.shift_min), math.log(cfg.shift_max)
            p["shift"] = round(math.exp(float(shift_rng.uniform(lo, hi))), 4)
    return p


def key(params: dict) -> str:
    """Canonical text of a parameter set (part of annotation cache keys); '' for no augmentation."""
    return json.dumps(params, sort_keys=True, separators=(",", ":")) if params else ""


# ------------------------------------------------------------------------------------------------
# the steps

def _sinc_lowpass(cutoff_hz: float, taps: int = 129) -> np.ndarray:
    n = np.arange(taps) - (taps - 1) / 2
    fc = cutoff_hz / SAMPLE_RATE
    h = 2 * fc * np.sinc(2 * fc * n) * np.hamming(taps)
    return h / h.sum()


def fir(kind: str, hz) -> np.ndarray:
    """FIR taps for a low-pass, high-pass (spectral inversion of the low-pass) or band-pass."""
    if kind == "lowpass":
        return _sinc_lowpass(float(hz))
    if kind == "highpass":
        h = -_sinc_lowpass(float(hz))
        h[len(h) // 2] += 1.0
        return h
    if kind == "bandpass":
        lo, hi = hz
        return _sinc_lowpass(float(hi)) - _sinc_lowpass(float(lo))
    raise ValueError(f"unknown filter kind {kind!r}")


def room_impulse(rt60: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Direct path (1.0 at t = 0) plus a diffuse tail whose energy is drr_db below it; the tail decays
    by 60 dB in rt60 seconds and starts after 2.5 ms (the first reflections)."""
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # ln(1000) = 6.9078: -60 dB at rt60
    tail[: int(0.0025 * SAMPLE_RATE)] = 0.0
    tail *= math.sqrt(10 ** (-drr_db / 10) / max(np.sum(tail ** 2), 1e-12))
    tail[0] = 1.0
    return tail


def colored_noise(n: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with power spectrum 1/f^alpha: white 0, pink 1, brown 2 (DC removed)."""
    alpha = {"white": 0.0, "pink": 1.0, "brown": 2.0}[color]
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    f[0] = f[1] if n > 1 else 1.0
    spec *= f ** (-alpha / 2)
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)
    return x / max(float(np.sqrt(np.mean(x ** 2))), 1e-12)


def speaker_shift(x: np.ndarray, r: float) -> np.ndarray:
    """x resampled so that every frequency is multiplied by r (pitch, formants, tempo), same length.

    Band-limited: the spectrum is cut (r > 1, which also removes what would alias) or zero-padded
    (r < 1) to the new length. A shorter result is tiled, as training pads short clips ("repeat"), a
    longer one cut to its start."""
    n = len(x)
    m = max(2, int(round(n / r)))
    spec = np.fft.rfft(x)
    keep = min(len(spec), m // 2 + 1)
    out = np.zeros(m // 2 + 1, complex)
    out[:keep] = spec[:keep]
    y = np.fft.irfft(out, m) * (m / n)
    return np.tile(y, -(-n // m))[:n] if m < n else y[:n]


def _fft_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Causal convolution, output as long as x."""
    size = 1 << (len(x) + len(h) - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[: len(x)]


def apply(wave: np.ndarray, params: dict) -> np.ndarray:
    """Render one view: float32 in, float32 out, same length; a pure function of (wave, params)."""
    x = np.asarray(wave, np.float64)
    if not params:
        return np.asarray(wave, np.float32)
    rng = np.random.default_rng([VERSION, params["seed"], 1])  # noise and room draws
    if "shift" in params:
        x = speaker_shift(x, float(params["shift"]))
    if "reverb" in params:
        r = params["reverb"]
        x = _fft_convolve(x, room_impulse(r["rt60"], r["drr"], rng))
    if "filter" in params:
        h = fir(params["filter"]["kind"], params["filter"]["hz"])
        x = np.convolve(x, h, mode="same")
    if "noise" in params:
        rms = float(np.sqrt(np.mean(x ** 2)))
        x = x + colored_noise(len(x), params["noise"]["color"], rng) * rms * 10 ** (-params["noise"]["snr"] / 20)
    if "clip" in params:
        peak = float(np.abs(x).max()) or 1.0
        # drive relative to the clip's own peak, so a quiet recording is driven as hard as a loud one
        x = np.clip(x / peak * 10 ** (params["clip"]["drive"] / 20), -1.0, 1.0)
    peak = float(np.abs(x).max())
    if peak > 1.0:  # reverb and noise can push a loud clip past full scale: scale back, do not clip
        x = x / peak
    if "gain" in params:
        x = x * 10 ** (params["gain"] / 20)
    return x.astype(np.float32)


def describe(params: dict) -> str:
    if not params:
        return "clean"
    parts = []
    if "shift" in params:
        parts.append(f"speaker shift x{params['shift']}")
    if "reverb" in params:
        parts.append(f"reverb rt60 {params['reverb']['rt60']} s drr {params['reverb']['drr']} dB")
    if "filter" in params:
        parts.append(f"{params['filter']['kind']} {params['filter']['hz']} Hz")
    if "noise" in params:
        parts.append(f"{params['noise']['color']} noise {params['noise']['snr']} dB SNR")
    if "clip" in params:
        parts.append(f"clipped +{params['clip']['drive']} dB")
    if "gain" in params:
        parts.append(f"gain {params['gain']} dB")
    return ", ".join(parts)


def as_dict(preset: str) -> dict | None:
    cfg = PRESETS[preset]
    return asdict(cfg) if cfg is not None else None


def noise_floor(n_rows: int, length: int, share: float, seed: int, step: int) -> np.ndarray:
    """(n_rows, length) float32 noise to add to a training batch: Gaussian of NOISE_FLOOR_LSB RMS
    (log-uniform) on a `share` of the rows, zero on the others; a pure function of (seed, step),
    drawn apart from every other stream so that the batch itself does not change.

    Real microphones never deliver digital silence, files often do; a student that only heard it
    exactly zero moves its outputs with the lowest bits there (docs/uncertainty.md, sixth round)."""
    rng = np.random.default_rng([seed, 0xF1, step])
    heard = rng.random(n_rows) < share
    lo, hi = math.log(NOISE_FLOOR_LSB[0]), math.log(NOISE_FLOOR_LSB[1])
    rms = np.exp(rng.uniform(lo, hi, n_rows)) * heard / 32768.0
    return (rng.standard_normal((n_rows, length)) * rms[:, None]).astype(np.float32)
