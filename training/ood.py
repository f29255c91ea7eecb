"""Real-world data for the uncertainty head (issue 4): non-speech clips and corrupted speech.

    from training.ood import nonspeech, corrupt, corruption_grid
    train = nonspeech("train", seed=0, max_per_kind=200)   # list[Clip], 16 kHz float32 mono, 1-8 s
    test = nonspeech("eval")                              # other files, other generators, other voices
    for kind, level in corruption_grid():
        noisy = corrupt(pcm, 16000, kind, level, np.random.default_rng(0))

    python -m training.ood --list            # clips and seconds per split and kind on this machine

Non-speech KINDS, and where each split takes them from. The two splits never share a file, a
generator family or a babble voice (tests/test_ood.py checks the files and voices):

  kind     train                                         eval
  music    asterisk-moh-opsound-wav: cold_day,           asterisk-moh-opsound-wav: the_simplicity,
           robot_dity, morning_coffee;                   system; the other half of the openttd-openmsx
           half of the openttd-openmsx MIDI files        MIDI files (same renderer: timidity +
           (timidity + timgm6mb-soundfont);              timgm6mb-soundfont)
           numpy additive-synthesis melodies + chords
  noise    numpy FFT-shaped Gaussian noise               numpy time-domain generators: uniform white,
           (augment.colored_noise: white, pink,          Voss-McCartney pink, random-walk brown;
           brown), level -40..-10 dBFS RMS               level -46..-4 dBFS RMS; alsa-utils Noise.wav
  babble   6-12 overlapping voices from the groups       6-9 overlapping voices from the groups in
           training.corpus puts in "train" (ktuberling,  "val"/"test" (ktuberling sv/fi/lt, klettres
           klettres), only languages that have no        en/en_GB/hu/it/tn/da)
           val/test group
  tone     numpy: sines 80-4000 Hz, harmonic complexes,  sox synth: square/triangle/sawtooth/sine
           AM/FM tones, linear/log sweeps; extended:     tones, exponential sweeps, DTMF pairs;
           Fourier-series square/saw/triangle/buzz,      asterisk IVR beeps (beep, beeperr, 2-tones)
           random dual tones (steady or gated), beep
           trains of 1-3 pitches, repeated chirps and
           sirens of those waves (TONE_TRAIN_VARIANTS)
  silence  numpy: digital zero, TPDF dither (1 LSB of    sox: digital zero, white noise at -96..-70 dB;
           16 bit), Gaussian noise at -90..-60 dBFS,     asterisk silence/*.wav (8 kHz "silence")
           DC offset plus hiss
  effects  sound-theme-freedesktop (not its spoken       gnome-audio, sound-icons, openttd-opensfx
           audio-channel-* files), oxygen-sounds;        (game SFX)
           extended: numpy effects (bells, clicks,
           whooshes, zaps, impacts, engines, 8-bit
           blips, sequences: FX_TRAIN_VARIANTS) and
           1-3 of those UI sounds pitch/speed-shifted
           x0.5-2, some reversed, chained ("varied-ui")

The train split's "extended" generators (`extended=True`, the default here; `extended=False` gives the
original train split item for item, which the first heads were trained on) were added because tones
and effects were the kinds the head separated worst from speech; docs/uncertainty.md has what they did.

Synthetic clips also draw from disjoint random streams: train seeds are spawned from
[0x0A, seed, ...], eval seeds from [0x0E, seed, ...]. Long files are cut into consecutive segments
of 2-8 s (length drawn per segment; a last piece of 1-2 s is kept), rendered MIDI tunes give up to
four 2-8 s segments each; files shorter than 1 s are padded with digital zero to 1 s.
`max_per_kind` caps each kind, taking sources (package or generator) round-robin in equal shares,
and within a source its files round-robin, so a small cap still covers every source.

Corruptions of speech (`CORRUPTIONS`, `corrupt`): additive white Gaussian noise and babble at SNR
-10..30 dB in 5 dB steps (power over the whole clip), hard clipping after a drive of 6..30 dB,
telephone band (300-3400 Hz band-pass and 8 kHz; level 1 adds G.711 mu-law), dropouts (10..50 % of
the clip zeroed in 20-120 ms gaps) and coarse quantisation to 8..4 bits of the clip's peak.

Rendered MIDI is cached under $WAV2SMALL_CACHE/ood/ (see training.speech.default_cache_dir).
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import io
import math
import shutil
import struct
import subprocess
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from wav2small.audio import load, resample

from .augment import colored_noise, fir
from .cli import ToolError
from .files import atomic_path

SAMPLE_RATE = 16000
KINDS = ("music", "noise", "babble", "tone", "silence", "effects")
SPLITS = ("train", "eval")
MIN_SECONDS, MAX_SECONDS = 1.0, 8.0
Split = Literal["train", "eval"]

# the Debian packages each kind reads (what .ci/run installs); named in error messages
PACKAGES = {
    "music": ("asterisk-moh-opsound-wav", "openttd-openmsx", "timidity", "timgm6mb-soundfont"),
    "noise": ("alsa-utils",),
    "babble": ("ktuberling-data", "klettres-data"),
    "tone": ("sox", "asterisk-core-sounds-en-wav"),
    "silence": ("sox", "asterisk-core-sounds-en-wav"),
    "effects": ("sound-theme-freedesktop", "oxygen-sounds", "gnome-audio", "sound-icons", "openttd-opensfx"),
}


@dataclass(frozen=True, eq=False)
class Clip:
    name: str                 # unique within a split, e.g. "music/macroform-cold_day@12.0"
    kind: str                 # one of KINDS
    source: str               # package or generator, e.g. "asterisk-moh-opsound-wav", "numpy:melody"
    audio: np.ndarray         # float32 mono at `rate`
    rate: int = SAMPLE_RATE
    # every file the clip was made from: none if synthetic, the voice files for babble, and
    # "<opensfx.cat>#<index>" for a sound inside OpenTTD's sound container
    files: tuple[str, ...] = field(default=())

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.rate


@dataclass(frozen=True)
class _Item:
    """A clip not yet rendered: listing is cheap, rendering happens only for chosen items."""
    name: str
    kind: str
    source: str
    files: tuple[str, ...]
    seconds: float
    render: Callable[[], np.ndarray]   # some renders return (audio, the files they drew on)
    # the stretch [start, end) in seconds of files[0] that the clip plays, when it is cut from a
    # longer file (None: a whole file, or a generator's draw); other seeds cut a file at other points
    span: tuple[float, float] | None = None

    def rendered(self) -> tuple[np.ndarray, tuple[str, ...]]:
        """The audio, and the files it was made from."""
        out = self.render()
        return out if isinstance(out, tuple) else (out, self.files)


def same_stretch(a: _Item, b: _Item) -> bool:
    """Whether two items play some of the same stretch of one file: cut from it at other points
    (another seed's segments), neither is the other, yet they share audio."""
    return (a.span is not None and b.span is not None and a.files == b.files
            and a.span[0] < b.span[1] and b.span[0] < a.span[1])


def family(name: str) -> str:
    """What made a non-speech item, from its name: the generator of a synthetic effect
    (effects/fx-318 -> fx-blips, FX_TRAIN_VARIANTS by i mod 8 as _effects deals them), else the name
    without its kind, its cut ("@51.1") and its number ("-569"): varied-ui, melody, np, or the file's
    stem; the kind itself for items named by a number only (babble/12). The same few generators'
    draws are what heads call speech, so measures count by family."""
    kind, _, rest = name.partition("/")
    stem = rest.split("@", 1)[0]
    if stem.isdigit():   # babble/12: one family, the kind's
        return kind
    head, _, number = stem.rpartition("-")
    if not (head and number.isdigit()):
        return stem
    return f"fx-{FX_TRAIN_VARIANTS[int(number) % len(FX_TRAIN_VARIANTS)]}" if head == "fx" else head


# ------------------------------------------------------------------------------------------------
# helpers

def _rng(split: str, seed: int, *key: int | str) -> np.random.Generator:
    """Disjoint random streams per split: train entropy starts with 0x0A, eval with 0x0E."""
    words = [0x0A if split == "train" else 0x0E, int(seed)]
    for k in key:
        words.append(k if isinstance(k, int) else int(hashlib.sha256(k.encode()).hexdigest()[:8], 16))
    return np.random.default_rng(words)


def _length(split: str, seed: int, tag: str, i: int, lo: float = MIN_SECONDS) -> float:
    """Seconds of synthetic clip i: the first draw of its random stream, as its generator makes it."""
    return int(_rng(split, seed, tag, i).uniform(lo, MAX_SECONDS) * SAMPLE_RATE) / SAMPLE_RATE


def _fit(x: np.ndarray) -> np.ndarray:
    """float32, padded with zeros to MIN_SECONDS, cut to MAX_SECONDS, peak never above 1."""
    x = np.asarray(x, np.float64)
    n_min, n_max = int(MIN_SECONDS * SAMPLE_RATE), int(MAX_SECONDS * SAMPLE_RATE)
    if len(x) < n_min:
        x = np.concatenate([x, np.zeros(n_min - len(x))])
    x = x[:n_max]
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 1.0:
        x = x / peak
    return x.astype(np.float32)


def _same_length(x: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad to n samples (resampling round trips can be off by a sample)."""
    return x[:n] if len(x) >= n else np.concatenate([x, np.zeros(n - len(x), x.dtype)])


def _db(x: float) -> float:
    return 10 ** (x / 20)


def _at_rms(x: np.ndarray, dbfs: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return x * (_db(dbfs) / rms) if rms > 0 else x


def _duration(path: str | Path) -> float:
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return 0.0
    return info.frames / info.samplerate if info.samplerate else 0.0


@functools.lru_cache(maxsize=64)
def _load(path: str) -> np.ndarray:
    return load(path, SAMPLE_RATE)


def _segments(path: str, kind: str, source: str, split: str, seed: int,
              max_segments: int | None = None) -> list[_Item]:
    """A file as consecutive segments of 1-8 s (a short file is one padded clip)."""
    total = _duration(path)
    if total <= 0:
        return []
    rng = _rng(split, seed, "segments", path)
    items, start = [], 0.0
    stem = Path(path).stem
    while True:
        length = float(rng.uniform(2.0, MAX_SECONDS))
        if total - start < MIN_SECONDS and items:
            break
        length = min(length, total - start)
        a, b = start, start + length

        def render(a=a, b=b) -> np.ndarray:
            x = _load(path)
            return _fit(x[int(a * SAMPLE_RATE): int(b * SAMPLE_RATE)])

        items.append(_Item(f"{kind}/{stem}@{a:.1f}", kind, source, (path,), max(length, MIN_SECONDS), render,
                           span=(a, b)))
        start = b
        if start >= total - 1e-6 or (max_segments and len(items) >= max_segments):
            break
    return items


def _files(root: str, pattern: str, exclude: Sequence[str] = ()) -> list[str]:
    base = Path(root)
    if not base.is_dir():
        return []
    out = set()
    for p in base.glob(pattern):
        real = p.resolve()
        if real.is_file() and not any(e in real.name for e in exclude):
            out.add(str(real))
    return sorted(out)


def _need(files: Sequence, kind: str, what: str) -> None:
    if not files:
        raise ToolError(f"no {what} found for OOD kind {kind!r}: apt-get install -y "
                           + " ".join(PACKAGES[kind]))


# ------------------------------------------------------------------------------------------------
# music

MOH = "/usr/share/asterisk/moh"
MOH_TRAIN = ("macroform-cold_day", "macroform-robot_dity", "manolo_camp-morning_coffee")
MOH_EVAL = ("macroform-the_simplicity", "reno_project-system")
MIDI_DIR = "/usr/share/games/openttd/baseset/openmsx"
SOUNDFONT = "/usr/share/sounds/sf2/TimGM6mb.sf2"


def _midi_split(path: str) -> str:
    """Half the MIDI files train, half eval, by a hash of the file name (stable as files are added)."""
    return "train" if int(hashlib.sha256(Path(path).name.encode()).hexdigest()[:8], 16) % 2 == 0 else "eval"


def _cache_dir() -> Path:
    from .speech import default_cache_dir

    return default_cache_dir() / "ood"


def render_midi(path: str) -> str:
    """A MIDI file rendered by timidity with the TimGM6mb soundfont, 16 kHz mono, cached on disk."""
    if shutil.which("timidity") is None or not Path(SOUNDFONT).is_file():
        raise ToolError("MIDI rendering needs timidity and the TimGM6mb soundfont: "
                           "apt-get install -y timidity timgm6mb-soundfont")
    data = Path(path).read_bytes()
    key = hashlib.sha256(data + b"timgm6mb-16k-mono-v1").hexdigest()
    out = _cache_dir() / "midi" / f"{key}.wav"
    if out.is_file():
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "timidity.cfg"
        cfg.write_text(f"soundfont {SOUNDFONT}\n")
        wav = Path(tmp) / "out.wav"
        proc = subprocess.run(["timidity", "-c", str(cfg), "-Ow", "-s", str(SAMPLE_RATE), "--output-mono",
                               "-o", str(wav), path], capture_output=True, check=False)
        if proc.returncode != 0 or not wav.is_file():
            raise ToolError(f"timidity failed on {path}: {proc.stderr.decode(errors='replace')[-300:]}")
        with atomic_path(out) as tmp_out:
            shutil.move(str(wav), tmp_out)
    return str(out)


_NOTE = 440.0 * 2 ** ((np.arange(128) - 69) / 12)
_SCALES = ((0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10), (0, 2, 4, 7, 9), (0, 3, 5, 6, 7, 10))


def _melody(rng: np.random.Generator) -> np.ndarray:
    """numpy additive synthesis: a melody over a chord progression, random timbre, tempo and key."""
    seconds = float(rng.uniform(2.0, MAX_SECONDS))
    n = int(seconds * SAMPLE_RATE)
    out = np.zeros(n)
    root = int(rng.integers(45, 60))
    scale = _SCALES[int(rng.integers(len(_SCALES)))]
    beat = float(rng.uniform(0.15, 0.5))
    harmonics = rng.uniform(0, 1, 8) ** float(rng.uniform(1, 4))
    harmonics[0] = 1.0
    decay = float(rng.uniform(1.0, 8.0))

    def note(midi: int, start: float, length: float, amp: float) -> None:
        a, m = int(start * SAMPLE_RATE), int(length * SAMPLE_RATE)
        m = min(m, n - a)
        if m <= 0:
            return
        t = np.arange(m) / SAMPLE_RATE
        f = _NOTE[min(midi, 127)]
        wave = sum(h * np.sin(2 * np.pi * f * (k + 1) * t) for k, h in enumerate(harmonics) if f * (k + 1) < 7500)
        env = np.minimum(t / 0.01, 1.0) * np.exp(-decay * t)
        out[a:a + m] += amp * wave * env

    t = 0.0
    while t < seconds:                       # chords, one per bar of 4 beats
        degree = int(rng.integers(len(scale)))
        for step in (0, 2, 4):
            d = degree + step
            note(root - 12 + scale[d % len(scale)] + 12 * (d // len(scale)), t, 4 * beat, 0.3)
        t += 4 * beat
    t = 0.0
    while t < seconds:                       # melody
        d = int(rng.integers(0, 2 * len(scale)))
        length = beat * float(rng.choice([0.5, 1, 1, 2]))
        if rng.random() < 0.85:
            note(root + 12 + scale[d % len(scale)] + 12 * (d // len(scale)), t, length * 1.5, 0.5)
        t += length
    return _at_rms(out, float(rng.uniform(-30, -14)))


def _music(split: str, seed: int) -> dict[str, list[_Item]]:
    moh = _files(MOH, "*.wav")
    _need(moh, "music", "music-on-hold files")
    names = MOH_TRAIN if split == "train" else MOH_EVAL
    by_source: dict[str, list[_Item]] = {}
    for path in moh:
        if Path(path).stem in names:
            by_source[f"asterisk-moh-opsound-wav:{Path(path).stem}"] = _segments(
                path, "music", "asterisk-moh-opsound-wav", split, seed)
    midis = [m for m in _files(MIDI_DIR, "*.mid") if _midi_split(m) == split]
    _need(midis, "music", "MIDI files")

    def midi_items(mid: str) -> list[_Item]:
        # segments of the rendered file; the rendering (1-2 s per file) happens only on use
        rng = _rng(split, seed, "midi", mid)
        items = []
        start = float(rng.uniform(0, 10))
        for i in range(4):                   # up to four segments per tune
            length = float(rng.uniform(2.0, MAX_SECONDS))

            def render(a=start, b=start + length) -> np.ndarray:
                x = _load(render_midi(mid))
                seg = x[int(a * SAMPLE_RATE): int(b * SAMPLE_RATE)]
                return _fit(seg if seg.size else x[-int(MAX_SECONDS * SAMPLE_RATE):])

            # span: of the rendered tune, whose length is known only once rendered (a start past
            # its end plays the last MAX_SECONDS instead, which the span does not say)
            items.append(_Item(f"music/{Path(mid).stem}@{start:.1f}", "music", "openttd-openmsx+timidity",
                               (mid,), length, render, span=(start, start + length)))
            start += length + float(rng.uniform(5, 20))
        return items

    for mid in midis:
        by_source[f"openttd-openmsx:{Path(mid).stem}"] = midi_items(mid)
    if split == "train":
        by_source["numpy:melody"] = [
            _Item(f"music/melody-{i}", "music", "numpy:melody", (), _length(split, seed, "melody", i, 2.0),
                  lambda i=i: _fit(_melody(_rng(split, seed, "melody", i)))) for i in range(400)]
    return by_source


# ------------------------------------------------------------------------------------------------
# noise

def _voss_pink(n: int, rng: np.random.Generator, rows: int = 16) -> np.ndarray:
    """Voss-McCartney pink noise: the sum of `rows` random-hold generators updated at rates 1/2^k."""
    out = rng.uniform(-1, 1, n)
    for k in range(1, rows):
        step = 2 ** k
        held = rng.uniform(-1, 1, n // step + 2)
        offset = int(rng.integers(step))
        out += np.repeat(held, step)[offset:offset + n]
    return out - out.mean()


def _random_walk(n: int, rng: np.random.Generator) -> np.ndarray:
    """Brown noise as a random walk: the running sum of uniform white noise, linear trend removed."""
    x = np.cumsum(rng.uniform(-1, 1, n))
    t = np.arange(n)
    return x - np.polyval(np.polyfit(t, x, 1), t)


def _noise_train(i: int, split: str, seed: int) -> np.ndarray:
    rng = _rng(split, seed, "noise", i)
    n = int(rng.uniform(MIN_SECONDS, MAX_SECONDS) * SAMPLE_RATE)
    color = ("white", "pink", "brown")[i % 3]
    return colored_noise(n, color, rng) * _db(float(rng.uniform(-40, -10)))


def _noise_eval(i: int, split: str, seed: int) -> np.ndarray:
    rng = _rng(split, seed, "noise", i)
    n = int(rng.uniform(MIN_SECONDS, MAX_SECONDS) * SAMPLE_RATE)
    gen = i % 3
    x = rng.uniform(-1, 1, n) if gen == 0 else _voss_pink(n, rng) if gen == 1 else _random_walk(n, rng)
    return _at_rms(x, float(rng.uniform(-46, -4)))


def _noise(split: str, seed: int) -> dict[str, list[_Item]]:
    out: dict[str, list[_Item]] = {}
    if split == "train":
        for c, color in enumerate(("white", "pink", "brown")):
            out[f"numpy:fft-{color}"] = [
                _Item(f"noise/fft-{color}-{i}", "noise", "numpy:fft-colored-noise", (), _length(split, seed, "noise", i),
                      lambda i=i: _fit(_noise_train(i, split, seed))) for i in range(c, 600, 3)]
    else:
        for g, gen in enumerate(("uniform-white", "voss-pink", "random-walk-brown")):
            out[f"numpy:{gen}"] = [
                _Item(f"noise/{gen}-{i}", "noise", f"numpy:{gen}", (), _length(split, seed, "noise", i),
                      lambda i=i: _fit(_noise_eval(i, split, seed))) for i in range(g, 600, 3)]
        alsa = _files("/usr/share/sounds/alsa", "Noise.wav")
        _need(alsa, "noise", "alsa-utils' Noise.wav")
        out["alsa-utils:Noise.wav"] = _segments(alsa[0], "noise", "alsa-utils", split, seed)
    return out


# ------------------------------------------------------------------------------------------------
# babble: many overlapping real voices

# (package, root, pattern, corpus group of a path's first directory)
_VOICE_SOURCES = (
    ("ktuberling-data", "/usr/share/ktuberling/sounds", "*/*.ogg", lambda d: "ktuberling-" + d.split("@")[0]),
    ("ktuberling-data", "/usr/share/ktuberling/sounds", "*/*.wav", lambda d: "ktuberling-" + d.split("@")[0]),
    ("ktuberling-data", "/usr/share/ktuberling/sounds", "*/*.opus", lambda d: "ktuberling-" + d.split("@")[0]),
    ("klettres-data", "/usr/share/klettres", "*/alpha/*.ogg", lambda d: "klettres-" + d),
    ("klettres-data", "/usr/share/klettres", "*/syllab/*.ogg", lambda d: "klettres-" + d),
)


def _language(group: str) -> str:
    return group.split("-", 1)[1].split("_")[0]


@functools.lru_cache(maxsize=4)
def babble_voices(split: str) -> dict[str, tuple[str, ...]]:
    """Voice (corpus group) -> its files, for one split.

    eval: the groups training.corpus puts in val or test. train: the groups it puts in train, except
    every language that has a val/test group in any package (one volunteer may have recorded a
    language for both ktuberling and klettres), so no eval voice can also be a train voice.
    """
    from .corpus import group_split

    groups: dict[str, list[str]] = defaultdict(list)
    for _pkg, root, pattern, group in _VOICE_SOURCES:
        base = Path(root)
        for path in sorted(base.glob(pattern)) if base.is_dir() else ():
            rel = path.relative_to(base).parts
            groups[group(rel[0])].append(str(path.resolve()))
    held_out = {g for g in groups if group_split(g) != "train"}
    held_langs = {_language(g) for g in held_out}
    if split == "eval":
        chosen = held_out
    else:
        chosen = {g for g in groups if g not in held_out and _language(g) not in held_langs}
    return {g: tuple(sorted(set(groups[g]))) for g in sorted(chosen)}


@functools.lru_cache(maxsize=4096)
def _voice_clip(path: str) -> np.ndarray:
    x = load(path, SAMPLE_RATE)
    nz = np.flatnonzero(np.abs(x) > 0.01 * (np.abs(x).max() or 1))   # trim leading/trailing silence
    return x[nz[0]: nz[-1] + 1] if nz.size else x


def _voice_stream(files: Sequence[str], n: int, rng: np.random.Generator, factor: float = 1.0) -> np.ndarray:
    """One talker: random clips of one voice, back to back with short gaps, n samples, unit RMS.
    factor != 1: every clip played that many times faster (pitch and formants move together)."""
    out, parts = 0, []
    order = rng.permutation(len(files))
    k = 0
    while out < n:
        x = _voice_clip(files[order[k % len(order)]])
        if factor != 1.0:
            x = resample(x, round(SAMPLE_RATE * factor), SAMPLE_RATE)
        k += 1
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) or 1.0
        gap = np.zeros(int(rng.uniform(0.0, 0.25) * SAMPLE_RATE))
        parts += [x / rms, gap]
        out += len(x) + len(gap)
    s = np.concatenate(parts)
    start = int(rng.integers(0, max(1, len(s) - n)))
    s = s[start:start + n]
    return s / (float(np.sqrt(np.mean(s ** 2))) or 1.0)


BABBLE_VOICES = {"train": (6, 12), "eval": (6, 9)}   # talkers per babble clip, by split (inclusive)
BABBLE_DBFS = (-35.0, -12.0)                          # RMS level of a non-speech babble clip, drawn uniformly


def make_babble(split: str, n: int, rng: np.random.Generator, voices: int | tuple[int, int] | None = None,
                speed: float = 1.0) -> tuple[np.ndarray, tuple[str, ...]]:
    """Babble of n samples from distinct talkers of the split, unit RMS. Returns (audio, files used).

    voices: how many talkers, or an inclusive range to draw from (default BABBLE_VOICES[split]).
    speed > 1: each talker is played faster or slower by its own factor, log-uniform in
    [1/speed, speed], so that a voice can sound like one the split does not have (training only)."""
    pool = babble_voices(split)
    if len(pool) < 6:
        raise ToolError(f"babble ({split}) needs at least 6 voices, found {len(pool)}: "
                           "apt-get install -y ktuberling-data klettres-data")
    if voices is None:
        voices = BABBLE_VOICES["train" if split == "train" else "eval"]
    lo, hi = (voices, voices) if isinstance(voices, int) else voices
    if not 1 <= lo <= hi:
        raise ValueError(f"babble voices must be a range 1 <= lo <= hi, got {voices!r}")
    count = lo if lo == hi else int(rng.integers(lo, hi + 1))
    count = min(count, len(pool))
    names = sorted(pool)
    chosen = [names[j] for j in rng.choice(len(names), count, replace=False)]
    used: list[str] = []

    def streams() -> Iterator[np.ndarray]:
        for g in chosen:
            files = pool[g]
            picks = [files[j] for j in rng.choice(len(files), min(len(files), 12), replace=False)]
            used.extend(picks)
            factor = float(np.exp(rng.uniform(-np.log(speed), np.log(speed)))) if speed > 1.0 else 1.0
            yield _voice_stream(picks, n, rng, factor)

    return mix_talkers(streams(), n, rng), tuple(sorted(set(used)))


def at_babble_level(mix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A unit-RMS babble mix at the level of a non-speech babble clip, drawn from BABBLE_DBFS."""
    return mix * _db(float(rng.uniform(*BABBLE_DBFS)))


def mix_talkers(streams: Iterable[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """The babble rule: talkers of unit RMS (n samples each), each at a random gain of +-3 dB,
    summed and brought back to unit RMS. `streams` may be a generator: each talker's gain is drawn
    right after its stream, so a caller's draws and the gains interleave in a fixed order."""
    mix = np.zeros(n)
    for stream in streams:
        mix += stream * _db(float(rng.uniform(-3, 3)))
    return mix / (float(np.sqrt(np.mean(mix ** 2))) or 1.0)


def _babble(split: str, seed: int, voices: tuple[int, int] | None = None,
            speed: float = 1.0) -> dict[str, list[_Item]]:
    babble_voices(split)  # fails early with the package names

    def item(i: int) -> _Item:
        n = int(_rng(split, seed, "babble", i).uniform(2.0, MAX_SECONDS) * SAMPLE_RATE)
        return _Item(f"babble/{i}", "babble", "+".join(PACKAGES["babble"]), (), n / SAMPLE_RATE,
                     lambda: _babble_clip(split, seed, i, voices, speed))

    return {"babble": [item(i) for i in range(300)]}


def _babble_clip(split: str, seed: int, i: int, voices: tuple[int, int] | None,
                 speed: float) -> tuple[np.ndarray, tuple[str, ...]]:
    """Babble clip i of a split: (audio, the voice files in it)."""
    rng = _rng(split, seed, "babble", i)
    n = int(rng.uniform(2.0, MAX_SECONDS) * SAMPLE_RATE)
    audio, files = make_babble(split, n, rng, voices, speed)
    return _fit(at_babble_level(audio, rng)), files


# ------------------------------------------------------------------------------------------------
# tones and sweeps

# numpy tone generators of the train split: the first five are the original set (extended=False)
TONE_TRAIN_VARIANTS = ("sine", "harmonic", "am", "fm", "sweep",
                       "bandlimited", "dualtone", "beeps", "chirps")
_BASIC_TONES = 5
_NYQUIST_SAFE = 7800.0


def _waveform(phase: np.ndarray, f_max: float, shape: str, rng: np.random.Generator) -> np.ndarray:
    """A band-limited periodic wave of the given phase (radians): the Fourier series of a square,
    sawtooth or triangle wave (random roll-off tilt for "buzz"), harmonics only below 7.8 kHz at
    the highest instantaneous frequency f_max."""
    k_max = max(1, int(_NYQUIST_SAFE // max(f_max, 1.0)))
    out = np.zeros_like(phase)
    tilt = float(rng.uniform(0.6, 2.0))
    for k in range(1, k_max + 1):
        if shape == "square" and k % 2:
            out += np.sin(k * phase) / k
        elif shape == "sawtooth":
            out += (-1) ** (k + 1) * np.sin(k * phase) / k
        elif shape == "triangle" and k % 2:
            out += (-1) ** ((k - 1) // 2) * np.sin(k * phase) / k ** 2
        elif shape == "buzz":
            out += np.sin(k * phase) / k ** tilt
    return out


def _fade(x: np.ndarray, seconds: float = 0.005) -> np.ndarray:
    m = min(len(x) // 2, int(seconds * SAMPLE_RATE))
    if m > 0:
        ramp = np.linspace(0.0, 1.0, m)
        x = x.copy()
        x[:m] *= ramp
        x[-m:] *= ramp[::-1]
    return x


def _tone_train(i: int, split: str, seed: int, n_variants: int = len(TONE_TRAIN_VARIANTS)) -> np.ndarray:
    """Train tone i: variant TONE_TRAIN_VARIANTS[i % n_variants] (n_variants 5: the original split)."""
    rng = _rng(split, seed, "tone", i)
    n = int(rng.uniform(MIN_SECONDS, MAX_SECONDS) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f = float(np.exp(rng.uniform(np.log(80), np.log(4000))))
    which = TONE_TRAIN_VARIANTS[i % n_variants]
    shapes = ("square", "sawtooth", "triangle", "buzz")
    if which == "bandlimited":                       # square/saw/triangle/buzz by Fourier series
        f = min(f, 3000.0)
        x = _waveform(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi), f, shapes[int(rng.integers(4))], rng)
    elif which == "dualtone":                        # two random partials, steady or gated on/off
        f1, f2 = float(rng.uniform(300, 1100)), float(rng.uniform(1100, 2400))
        x = np.sin(2 * np.pi * f1 * t) + np.sin(2 * np.pi * f2 * t) * rng.uniform(0.5, 1.0)
        if rng.random() < 0.6:
            on, off = int(rng.uniform(0.04, 0.3) * SAMPLE_RATE), int(rng.uniform(0.03, 0.3) * SAMPLE_RATE)
            x = x * ((np.arange(n) % (on + off)) < on)
    elif which == "beeps":                           # alert/IVR-like bursts of 1-3 pitches with gaps
        x = np.zeros(n)
        pitches = np.exp(rng.uniform(np.log(300), np.log(3000), int(rng.integers(1, 4))))
        shape = ("sine", "square", "triangle")[int(rng.integers(3))]
        pos = int(rng.uniform(0, 0.3) * SAMPLE_RATE)
        step = 0
        while pos < n:
            m = min(n - pos, int(rng.uniform(0.05, 0.6) * SAMPLE_RATE))
            fb = float(pitches[step % len(pitches)])
            tb = np.arange(m) / SAMPLE_RATE
            ph = 2 * np.pi * fb * tb
            burst = np.sin(ph) if shape == "sine" else _waveform(ph, fb, shape, rng)
            x[pos:pos + m] = _fade(burst, 0.004)
            pos += m + int(rng.uniform(0.02, 0.6) * SAMPLE_RATE)
            step += 1
    elif which == "chirps":                          # up/down sweeps of a band-limited wave, repeated
        period = float(rng.uniform(0.08, min(2.0, n / SAMPLE_RATE)))
        f0, f1 = np.exp(rng.uniform(np.log(80), np.log(5000), 2))
        u = (t % period) / period
        if rng.random() < 0.4:                       # siren: up then down
            u = 1 - np.abs(2 * u - 1)
        inst = f0 * (f1 / f0) ** u if rng.random() < 0.5 else f0 + (f1 - f0) * u
        phase = 2 * np.pi * np.cumsum(inst) / SAMPLE_RATE
        shape = ("sine", "square", "sawtooth", "triangle")[int(rng.integers(4))]
        x = np.sin(phase) if shape == "sine" else _waveform(phase, float(max(f0, f1)), shape, rng)
    elif which == "sine":                            # pure sine
        x = np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    elif which == "harmonic":                        # harmonic complex (buzz)
        x = sum(np.sin(2 * np.pi * f * k * t) / k ** rng.uniform(0.5, 2) for k in range(1, 16) if f * k < 7800)
    elif which == "am":                              # AM tone
        x = np.sin(2 * np.pi * f * t) * (1 + 0.8 * np.sin(2 * np.pi * rng.uniform(2, 12) * t))
    elif which == "fm":                              # FM (vibrato/siren)
        depth, rate = rng.uniform(0.02, 0.3), rng.uniform(0.3, 8)
        phase = 2 * np.pi * np.cumsum(f * (1 + depth * np.sin(2 * np.pi * rate * t))) / SAMPLE_RATE
        x = np.sin(phase)
    else:                                            # linear or log sweep
        f0, f1 = np.exp(rng.uniform(np.log(60), np.log(7000), 2))
        inst = f0 + (f1 - f0) * t / t[-1] if rng.random() < 0.5 else f0 * (f1 / f0) ** (t / t[-1])
        x = np.sin(2 * np.pi * np.cumsum(inst) / SAMPLE_RATE)
    return _at_rms(x, float(rng.uniform(-35, -8)))


_DTMF = [(lo, hi) for lo in (697, 770, 852, 941) for hi in (1209, 1336, 1477)]


def _sox(args: list[str], n: int) -> np.ndarray:
    if shutil.which("sox") is None:
        raise ToolError("sox is not installed: apt-get install -y sox")
    cmd = ["sox", "-R", "-V1", "-n", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "32", "-e", "floating-point",
           "-t", "raw", "-", "synth", f"{n / SAMPLE_RATE:.4f}", *args]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise ToolError(f"sox failed: {' '.join(cmd)}: {proc.stderr.decode(errors='replace')}")
    x = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float64)
    return _same_length(x, n)


def _tone_eval(i: int, split: str, seed: int) -> np.ndarray:
    rng = _rng(split, seed, "tone", i)
    n = int(rng.uniform(MIN_SECONDS, MAX_SECONDS) * SAMPLE_RATE)
    which = i % 3
    if which == 0:
        shape = ("square", "triangle", "sawtooth", "sine")[int(rng.integers(4))]
        x = _sox([shape, f"{np.exp(rng.uniform(np.log(80), np.log(3000))):.1f}"], n)
    elif which == 1:
        f0, f1 = np.exp(rng.uniform(np.log(60), np.log(7000), 2))
        # sox renders falling square/triangle sweeps wrongly (a DC level): render rising, then reverse
        x = _sox([("sine", "square", "triangle")[int(rng.integers(3))], f"{min(f0, f1):.1f}/{max(f0, f1):.1f}"], n)
        x = x if f0 <= f1 else x[::-1]
    else:
        lo, hi = _DTMF[int(rng.integers(len(_DTMF)))]
        x = _sox(["sine", str(lo)], n) + _sox(["sine", str(hi)], n)
        if rng.random() < 0.5:                      # dialled digits: 100 ms on, 100 ms off
            x = x * ((np.arange(len(x)) // 1600) % 2 == 0)
    return _at_rms(x - x.mean(), float(rng.uniform(-38, -6)))


ASTERISK = "/usr/share/asterisk/sounds/en_US_f_Allison"
_IVR_TONES = ("beep.wav", "beeperr.wav", "ascending-2tone.wav", "descending-2tone.wav")


def _tone(split: str, seed: int, extended: bool = True) -> dict[str, list[_Item]]:
    if split == "train" and not extended:   # the original train tones, item for item
        return {"numpy:tone": [_Item(f"tone/np-{i}", "tone", "numpy:tone", (), _length(split, seed, "tone", i),
                                     lambda i=i: _fit(_tone_train(i, split, seed, _BASIC_TONES))) for i in range(500)]}
    if split == "train":
        # one queue per generator variant, so that a cap takes every variant in equal shares
        k = len(TONE_TRAIN_VARIANTS)
        return {f"numpy:tone-{TONE_TRAIN_VARIANTS[v]}": [
            _Item(f"tone/np-{i}", "tone", "numpy:tone", (), _length(split, seed, "tone", i),
                  lambda i=i: _fit(_tone_train(i, split, seed))) for i in range(v, 100 * k, k)] for v in range(k)}
    out = {"sox:tone": [_Item(f"tone/sox-{i}", "tone", "sox:synth", (), _length(split, seed, "tone", i),
                              lambda i=i: _fit(_tone_eval(i, split, seed))) for i in range(500)]}
    files = [f for f in _files(ASTERISK, "*.wav") if Path(f).name in _IVR_TONES]
    _need(files, "tone", "asterisk IVR beeps")
    out["asterisk-core-sounds-en-wav:beeps"] = [it for f in files for it in _segments(
        f, "tone", "asterisk-core-sounds-en-wav", split, seed)]
    return out


# ------------------------------------------------------------------------------------------------
# silence and near-silence

def _silence_train(i: int, split: str, seed: int) -> np.ndarray:
    rng = _rng(split, seed, "silence", i)
    n = int(rng.uniform(MIN_SECONDS, MAX_SECONDS) * SAMPLE_RATE)
    which = i % 4
    if which == 0:
        return np.zeros(n)
    if which == 1:                                   # TPDF dither, +-1 LSB of 16 bit
        return (rng.uniform(-0.5, 0.5, n) + rng.uniform(-0.5, 0.5, n)) / 32768
    if which == 2:
        return rng.standard_normal(n) * _db(float(rng.uniform(-90, -60)))
    return rng.uniform(-0.01, 0.01) + rng.standard_normal(n) * _db(float(rng.uniform(-90, -70)))


def _silence_eval(i: int, split: str, seed: int) -> np.ndarray:
    rng = _rng(split, seed, "silence", i)
    n = int(rng.uniform(MIN_SECONDS, MAX_SECONDS) * SAMPLE_RATE)
    if i % 2 == 0:
        return _sox(["sine", "0", "vol", "0"], n)
    return _sox(["whitenoise", "vol", f"{_db(float(rng.uniform(-96, -70))):.8f}"], n) * _db(float(rng.uniform(-1, 0)))


def _silence(split: str, seed: int) -> dict[str, list[_Item]]:
    if split == "train":
        return {"numpy:silence": [_Item(f"silence/np-{i}", "silence", "numpy:silence", (), _length(split, seed, "silence", i),
                                        lambda i=i: _fit(_silence_train(i, split, seed))) for i in range(400)]}
    files = _files(f"{ASTERISK}/silence", "*.wav")
    _need(files, "silence", "asterisk silence files")
    return {"sox:silence": [_Item(f"silence/sox-{i}", "silence", "sox:synth", (), _length(split, seed, "silence", i),
                                  lambda i=i: _fit(_silence_eval(i, split, seed))) for i in range(400)],
            "asterisk-core-sounds-en-wav:silence": [it for f in files for it in _segments(
                f, "silence", "asterisk-core-sounds-en-wav", split, seed)]}


# ------------------------------------------------------------------------------------------------
# UI sounds and effects

# (package, root, pattern, names to leave out: spoken words)
_EFFECTS = {
    "train": (
        ("sound-theme-freedesktop", "/usr/share/sounds/freedesktop/stereo", "*.oga", ("audio-channel-",)),
        ("oxygen-sounds", "/usr/share/sounds", "Oxygen-*.ogg", ()),
    ),
    "eval": (
        ("gnome-audio", "/usr/share/sounds", "*.wav", ()),
        ("gnome-audio", "/usr/share/sounds/gtk-events", "*.wav", ()),
        ("gnome-audio", "/usr/share/sounds/panel", "*.wav", ()),
        ("sound-icons", "/usr/share/sounds/sound-icons", "*.wav", ()),
    ),
}
OPENSFX = "/usr/share/games/openttd/baseset/opensfx/opensfx.cat"


def opensfx_sounds(path: str = OPENSFX) -> list[tuple[str, bytes]]:
    """(description, RIFF WAV bytes) of every sound in OpenTTD's opensfx.cat container.

    The file starts with a table of (offset, size) uint32 pairs (the first offset, with bit 31 set,
    gives the table length); each entry is a length-prefixed description followed by a WAV file."""
    data = Path(path).read_bytes()
    count = (struct.unpack_from("<I", data, 0)[0] & 0x7FFFFFFF) // 8
    out = []
    for i in range(count):
        off, size = struct.unpack_from("<II", data, 8 * i)
        off &= 0x7FFFFFFF
        name_len = data[off]
        name = data[off + 1: off + 1 + name_len].decode("utf-8", "replace").strip("\0")
        start = off + 1 + name_len
        if data[start:start + 4] == b"RIFF":
            length = struct.unpack_from("<I", data, start + 4)[0] + 8
            out.append((name, data[start:start + min(length, size)]))
    return out


# synthetic sound effects of the train split (numpy; the eval split has none of these generators)
FX_TRAIN_VARIANTS = ("bell", "clicks", "whoosh", "zap", "impact", "engine", "blips", "sequence")


def _fx_event(which: str, rng: np.random.Generator, max_n: int) -> np.ndarray:
    """One synthetic effect event, at most max_n samples, unit peak."""
    n = max(int(0.05 * SAMPLE_RATE), min(max_n, int(rng.uniform(0.15, 3.0) * SAMPLE_RATE)))
    t = np.arange(n) / SAMPLE_RATE
    if which == "bell":                              # inharmonic partials, exponential decays
        f0 = float(np.exp(rng.uniform(np.log(150), np.log(2500))))
        ratios = np.array([1.0, 2.0, 2.76, 3.0, 4.07, 5.4, 6.8, 8.93]) * rng.uniform(0.97, 1.03, 8)
        x = np.zeros(n)
        for r in ratios[rng.random(8) < 0.7]:
            if f0 * r < _NYQUIST_SAFE:
                x += rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * f0 * r * t) * np.exp(-t * rng.uniform(1, 8) * r ** 0.5)
    elif which == "clicks":                          # ticks: short damped bursts, regular or not
        x = np.zeros(n)
        rate = float(np.exp(rng.uniform(np.log(2), np.log(40))))
        jitter = float(rng.uniform(0, 0.9))
        fc = float(np.exp(rng.uniform(np.log(500), np.log(6000))))
        pos = 0.0
        while pos < n / SAMPLE_RATE:
            a = int(pos * SAMPLE_RATE)
            m = min(n - a, int(rng.uniform(0.001, 0.012) * SAMPLE_RATE) + 1)
            tc = np.arange(m) / SAMPLE_RATE
            x[a:a + m] += (np.sin(2 * np.pi * fc * tc) + rng.standard_normal(m) * rng.uniform(0, 1)) * np.exp(-tc * 600)
            pos += (1 + jitter * rng.uniform(-1, 1)) / rate
    elif which == "whoosh":                          # band-pass noise whose centre moves, rise and fall
        block = 800
        noise = rng.standard_normal(n + 256)
        c0, c1 = np.exp(rng.uniform(np.log(200), np.log(5000), 2))
        x = np.zeros(n)
        for a in range(0, n, block):
            c = c0 * (c1 / c0) ** (a / n)
            lo, hi = max(50.0, c / 1.6), min(7500.0, c * 1.6)
            seg = np.convolve(noise[a:a + block + 256], fir("bandpass", (lo, hi)), mode="same")[128:128 + block]
            x[a:a + block] = seg[: len(x[a:a + block])]
        # rise and fall; sin(pi) rounds to a tiny negative number for some n, and a negative base
        # to a fractional power is NaN (it made a --seed=1 uncertainty run diverge): floor at 0
        x *= np.maximum(np.sin(np.pi * t / t[-1]), 0.0) ** float(rng.uniform(0.5, 3))
    elif which == "zap":                             # laser: fast downward sweeps, repeated
        x = np.zeros(n)
        pos = 0
        while pos < n:
            m = min(n - pos, int(rng.uniform(0.05, 0.35) * SAMPLE_RATE))
            tz = np.arange(m) / SAMPLE_RATE
            f0, f1 = float(rng.uniform(1500, 6000)), float(rng.uniform(80, 600))
            inst = f0 * (f1 / f0) ** (tz / max(tz[-1], 1e-3))
            ph = 2 * np.pi * np.cumsum(inst) / SAMPLE_RATE
            w = np.sin(ph) if rng.random() < 0.5 else _waveform(ph, f0, "square", rng)
            x[pos:pos + m] = w * np.exp(-tz * rng.uniform(2, 15))
            pos += m + int(rng.uniform(0.0, 0.3) * SAMPLE_RATE)
    elif which == "impact":                          # explosion / thud: low noise burst + damped low sine
        lp = fir("lowpass", float(rng.uniform(300, 3000)))
        x = np.convolve(colored_noise(n, ("pink", "brown")[int(rng.integers(2))], rng), lp, mode="same")
        x = x / (np.abs(x).max() or 1.0) * np.exp(-t * rng.uniform(1.5, 10))
        x += rng.uniform(0, 1) * np.sin(2 * np.pi * rng.uniform(40, 120) * t) * np.exp(-t * rng.uniform(3, 12))
    elif which == "engine":                          # motor: low buzz, slowly varying speed, firing AM
        f = float(rng.uniform(25, 150)) * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 6)))
        ph = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
        x = _waveform(ph, float(f.max()), "buzz", rng) * (1 + 0.5 * np.sin(ph * rng.integers(1, 4)))
        x += 0.2 * colored_noise(n, "brown", rng) * np.abs(x).max()
    elif which == "blips":                           # 8-bit style arpeggio of square/pulse notes
        x = np.zeros(n)
        note = int(rng.integers(60, 90))
        step = int(rng.choice([-7, -5, -4, -3, 3, 4, 5, 7, 12]))
        pos = 0
        while pos < n:
            m = min(n - pos, int(rng.uniform(0.03, 0.15) * SAMPLE_RATE))
            fb = float(_NOTE[int(np.clip(note, 30, 110))])
            x[pos:pos + m] = _fade(_waveform(2 * np.pi * fb * np.arange(m) / SAMPLE_RATE, fb, "square", rng))
            pos += m + int(rng.uniform(0, 0.05) * SAMPLE_RATE)
            note += step if rng.random() < 0.8 else -step
    else:
        raise ValueError(which)
    return x / (np.abs(x).max() or 1.0)


def _fx_train(i: int, split: str, seed: int) -> np.ndarray:
    """Synthetic effect i: one kind of event (FX_TRAIN_VARIANTS), or a sequence of 2-4 of them."""
    rng = _rng(split, seed, "fx", i)
    n = int(rng.uniform(MIN_SECONDS, MAX_SECONDS) * SAMPLE_RATE)
    which = FX_TRAIN_VARIANTS[i % len(FX_TRAIN_VARIANTS)]
    if which != "sequence":
        x = _fx_event(which, rng, n)
    else:
        parts = []
        for _ in range(int(rng.integers(2, 5))):
            kind = FX_TRAIN_VARIANTS[int(rng.integers(len(FX_TRAIN_VARIANTS) - 1))]
            parts += [_fx_event(kind, rng, n // 2) * rng.uniform(0.3, 1.0),
                      np.zeros(int(rng.uniform(0, 0.5) * SAMPLE_RATE))]
        x = np.concatenate(parts)
    x = np.concatenate([np.zeros(int(rng.uniform(0, 0.3) * SAMPLE_RATE)), x])[:n]
    return _at_rms(x, float(rng.uniform(-35, -10)))


def _varied_ui(files: Sequence[str], i: int, split: str, seed: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """1-3 of the split's UI sounds, each pitch- and speed-shifted by resampling (x0.5..2), some
    reversed, in sequence with gaps, sometimes over a faint noise bed. Returns (audio, files)."""
    rng = _rng(split, seed, "varied-ui", i)
    picks = [files[j] for j in rng.choice(len(files), int(rng.integers(1, 4)), replace=False)]
    parts = []
    for f in picks:
        x = _load(f)[: int(3 * SAMPLE_RATE)]
        factor = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        x = resample(np.ascontiguousarray(x, np.float64), round(SAMPLE_RATE * factor), SAMPLE_RATE)
        if rng.random() < 0.3:
            x = x[::-1]
        parts += [x / (np.abs(x).max() or 1.0) * rng.uniform(0.3, 1.0), np.zeros(int(rng.uniform(0, 0.6) * SAMPLE_RATE))]
    x = np.concatenate(parts)
    if rng.random() < 0.4:
        x = x + colored_noise(len(x), ("white", "pink", "brown")[int(rng.integers(3))], rng) * _db(float(rng.uniform(-60, -35)))
    return _fit(_at_rms(x, float(rng.uniform(-35, -10)))), tuple(sorted(set(picks)))


def _effects(split: str, seed: int, extended: bool = True) -> dict[str, list[_Item]]:
    out: dict[str, list[_Item]] = {}
    for pkg, root, pattern, exclude in _EFFECTS[split]:
        for f in _files(root, pattern, exclude):
            out.setdefault(pkg, []).extend(_segments(f, "effects", pkg, split, seed, max_segments=3))
    if split == "train" and extended:
        k = len(FX_TRAIN_VARIANTS)
        for v, name in enumerate(FX_TRAIN_VARIANTS):
            out[f"numpy:fx-{name}"] = [_Item(f"effects/fx-{i}", "effects", "numpy:fx", (), _length(split, seed, "fx", i),
                                             lambda i=i: _fit(_fx_train(i, split, seed))) for i in range(v, 50 * k, k)]
        ui = sorted({f for pkg, root, pattern, exclude in _EFFECTS[split] for f in _files(root, pattern, exclude)})
        if ui:
            out["varied-ui"] = [_Item(f"effects/varied-ui-{i}", "effects", "varied-ui-sounds", (), 3.0,
                                      lambda i=i: _varied_ui(ui, i, split, seed)) for i in range(300)]
    if split == "eval" and Path(OPENSFX).is_file():
        items = []
        for i, (desc, wav) in enumerate(opensfx_sounds()):
            def render(wav=wav) -> np.ndarray:
                x, rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
                return _fit(resample(np.ascontiguousarray(x.mean(axis=1)), rate, SAMPLE_RATE))
            items.append(_Item(f"effects/opensfx-{i:02d}", "effects", "openttd-opensfx",
                               (f"{OPENSFX}#{i}",), 2.0, render))
        out["openttd-opensfx"] = items
    for pkg in {p for p, *_ in _EFFECTS[split]} | ({"openttd-opensfx"} if split == "eval" else set()):
        _need(out.get(pkg, []), "effects", f"{pkg} sounds")
    return out


_KIND_SOURCES: dict[str, Callable[[str, int], dict[str, list[_Item]]]] = {
    "music": _music, "noise": _noise, "babble": _babble, "tone": _tone, "silence": _silence, "effects": _effects,
}


# ------------------------------------------------------------------------------------------------
# the public listing

def _interleave(queues: list[list[_Item]]) -> list[_Item]:
    out: list[_Item] = []
    for depth in range(max((len(q) for q in queues), default=0)):
        out += [q[depth] for q in queues if depth < len(q)]
    return out


def _round_robin(by_source: dict[str, list[_Item]], rng: np.random.Generator, cap: int | None) -> list[_Item]:
    """Items interleaved so that a cap keeps every source in, in equal shares: round-robin over the
    sources (package or generator: Item.source), within a source round-robin over its files or
    generator variants, each of those shuffled."""
    families: dict[str, list[list[_Item]]] = defaultdict(list)
    for key in sorted(by_source):
        q = [by_source[key][j] for j in rng.permutation(len(by_source[key]))]
        if q:
            families[q[0].source].append(q)
    out = _interleave([_interleave(families[f]) for f in sorted(families)])
    return out if cap is None else out[:cap]


def items(split: Split, *, seed: int = 0, max_per_kind: int | None = 100,
          kinds: Sequence[str] = KINDS, extended: bool = True,
          babble_voices: tuple[int, int] | None = None, babble_speed: float = 1.0) -> list[_Item]:
    """What `nonspeech` would render, without rendering it (cheap: lists files and durations).
    `extended=False` leaves out the train split's added tone and effects generators (the train
    split as it was before them; the eval split is the same either way). `babble_voices` and
    `babble_speed` are make_babble's `voices` and `speed` for the babble clips (default: the
    split's talker count, voices as recorded)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    out = []
    for kind in kinds:
        if kind not in _KIND_SOURCES:
            raise ValueError(f"unknown OOD kind {kind!r}: {KINDS}")
        if kind in ("tone", "effects"):
            by_source = _KIND_SOURCES[kind](split, seed, extended)
        elif kind == "babble":
            by_source = _babble(split, seed, babble_voices, babble_speed)
        else:
            by_source = _KIND_SOURCES[kind](split, seed)
        out += _round_robin(by_source, _rng(split, seed, "pick", kind), max_per_kind)
    return out


def nonspeech(split: Split, *, seed: int = 0, max_per_kind: int | None = 100,
              kinds: Sequence[str] = KINDS, extended: bool = True,
              babble_voices: tuple[int, int] | None = None, babble_speed: float = 1.0) -> list[Clip]:
    """Non-speech clips of one split: every kind in `kinds`, at most `max_per_kind` each (None: all).

    Deterministic given (split, seed, max_per_kind, installed packages). Audio is float32 mono at
    16 kHz, 1 to 8 s, peak at most 1.0; levels vary by clip (-46..-4 dBFS RMS for noise, real files
    as recorded), so callers that want loudness-invariance should normalise themselves."""
    clips = []
    for it in items(split, seed=seed, max_per_kind=max_per_kind, kinds=kinds, extended=extended,
                    babble_voices=babble_voices, babble_speed=babble_speed):
        audio, files = it.rendered()
        clips.append(Clip(it.name, it.kind, it.source, audio, SAMPLE_RATE, files))
    return clips


# ------------------------------------------------------------------------------------------------
# corrupted speech

SNRS = tuple(range(-10, 31, 5))                  # dB
CORRUPTIONS: dict[str, tuple[float, ...]] = {
    "white": SNRS,                               # additive white Gaussian noise, level = SNR dB
    "babble": SNRS,                              # additive babble of 6-9 eval voices, level = SNR dB
    "clip": (6.0, 12.0, 20.0, 30.0),             # drive in dB above the clip's peak, then hard clip at it
    "telephone": (0.0, 1.0),                     # 300-3400 Hz at 8 kHz; 1: plus G.711 mu-law
    "dropout": (0.1, 0.2, 0.3, 0.5),             # fraction of the clip zeroed
    "quantize": (8.0, 6.0, 5.0, 4.0),            # bits (mid-tread, full scale = the clip's peak)
}
SNR_KINDS = tuple(kind for kind, levels in CORRUPTIONS.items() if levels is SNRS)  # additive noises


def corruption_grid() -> list[tuple[str, float]]:
    """Every (kind, level) of CORRUPTIONS, in its order: SNR rising (harshest first) for the noises,
    mildest first for the others."""
    return [(kind, float(level)) for kind, levels in CORRUPTIONS.items() for level in levels]


def add_noise(pcm: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """pcm + noise scaled so that mean power(pcm) / mean power(noise) is exactly snr_db."""
    x = np.asarray(pcm, np.float64)
    p_sig = float(np.mean(x ** 2))
    p_noise = float(np.mean(np.asarray(noise, np.float64) ** 2)) or 1.0
    return x + noise * math.sqrt(p_sig / p_noise * 10 ** (-snr_db / 10))


def _telephone(x: np.ndarray, mulaw: bool) -> np.ndarray:
    h = fir("bandpass", (300, 3400))
    y = np.convolve(np.convolve(x, h, mode="same"), h, mode="same")   # twice: steeper edges
    y8 = resample(y.astype(np.float64), SAMPLE_RATE, 8000)
    if mulaw:
        peak = float(np.max(np.abs(y8))) or 1.0
        v = y8 / peak
        mu = 255.0
        c = np.sign(v) * np.log1p(mu * np.abs(v)) / np.log1p(mu)
        c = np.round(c * 127) / 127                                 # 8-bit code
        y8 = peak * np.sign(c) * ((1 + mu) ** np.abs(c) - 1) / mu
    y = resample(y8, 8000, SAMPLE_RATE)
    return _same_length(y, len(x))


def corrupt(pcm: np.ndarray, rate: int, kind: str, level: float, rng: np.random.Generator,
            *, babble_split: Split = "eval", full_scale: bool = True) -> np.ndarray:
    """One corrupted copy of `pcm` (float, mono, any rate), same length, float32; deterministic given rng.

    Additive noise sets the SNR over the whole clip (speech pauses included), like the paper.
    `babble_split` picks the voices of the babble noise (eval voices by default; use "train" when
    corrupting speech for training). With `full_scale` (default) a result whose peak would exceed
    1.0 is scaled down as a whole (never clipped; the SNR is unchanged); with full_scale=False it
    is returned as is, so y - pcm is exactly the added noise."""
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {kind!r}: {list(CORRUPTIONS)}")
    x = np.asarray(pcm, np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("pcm must be a non-empty 1-D array")
    n = len(x)
    if kind == "white":
        y = add_noise(x, rng.standard_normal(n), level)
    elif kind == "babble":
        n16 = math.ceil(n * SAMPLE_RATE / rate)
        b, _ = make_babble(babble_split, n16, rng)
        if rate != SAMPLE_RATE:
            b = _same_length(resample(b, SAMPLE_RATE, rate), n)
        y = add_noise(x, b[:n], level)
    elif kind == "clip":
        peak = float(np.max(np.abs(x))) or 1.0
        y = np.clip(x * _db(level), -peak, peak)
    elif kind == "telephone":
        x16 = resample(x, rate, SAMPLE_RATE) if rate != SAMPLE_RATE else x
        y = _telephone(x16, mulaw=level >= 1)
        y = _same_length(resample(y, SAMPLE_RATE, rate), n) if rate != SAMPLE_RATE else y
    elif kind == "dropout":
        # gaps of 20-120 ms adding up to level * n samples, separated by at least 20 ms of signal
        target = round(level * n)
        lengths: list[int] = []
        while sum(lengths) < target:
            lengths.append(max(1, min(int(rng.uniform(0.02, 0.12) * rate), target - sum(lengths))))
        kept = n - target
        k = len(lengths)
        spacing = min(int(0.02 * rate), kept // (k + 1)) if k else 0
        free = kept - spacing * max(k - 1, 0)
        cuts = np.sort(rng.integers(0, free + 1, k))
        y = x.copy()
        for j, (cut, length) in enumerate(zip(cuts, lengths)):
            start = int(cut) + sum(lengths[:j]) + spacing * j
            y[start:start + length] = 0.0
    else:  # quantize
        peak = float(np.max(np.abs(x))) or 1.0
        steps = 2 ** (int(level) - 1)
        y = np.clip(np.round(x / peak * steps), -steps, steps - 1) / steps * peak
    peak = float(np.max(np.abs(y)))
    if full_scale and peak > 1.0:      # noise can push a loud clip past full scale: scale back, never clip
        y = y / peak
    return y.astype(np.float32)


# ------------------------------------------------------------------------------------------------
# command line

def summary(seed: int = 0, max_per_kind: int | None = None) -> dict[str, dict[str, dict]]:
    """{split: {kind: {"clips", "seconds", "sources": {source: clips}}}}, without rendering audio."""
    out: dict[str, dict[str, dict]] = {}
    for split in SPLITS:
        out[split] = {}
        for kind in KINDS:
            try:
                its = items(split, seed=seed, max_per_kind=max_per_kind, kinds=(kind,))
            except RuntimeError as e:
                out[split][kind] = {"clips": 0, "seconds": 0.0, "sources": {}, "error": str(e)}
                continue
            src: dict[str, int] = defaultdict(int)
            for it in its:
                src[it.source] += 1
            out[split][kind] = {"clips": len(its), "seconds": round(sum(i.seconds for i in its), 1),
                                "sources": dict(src)}
    return out


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.ood", description=__doc__.split("\n")[0])
    ap.add_argument("--list", action="store_true", help="clips and seconds per split and kind (the default)")
    ap.add_argument("--max_per_kind", type=int, default=None, help="cap per kind (default: everything)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic sources and of the clips picked per kind "
                    "(as training.uncertainty --seed)")
    args = ap.parse_args(argv)
    s = summary(args.seed, args.max_per_kind)
    print("synthetic sources are open-ended (counts are their default pools); MIDI segments may be shorter once rendered\n")
    for split in SPLITS:
        print(f"{split}:")
        for kind in KINDS:
            r = s[split][kind]
            if "error" in r:
                print(f"  {kind:8s}  MISSING: {r['error']}")
                continue
            srcs = ", ".join(f"{k} {v}" for k, v in sorted(r["sources"].items()))
            print(f"  {kind:8s} {r['clips']:5d} clips {r['seconds']:8.1f} s   ({srcs})")
        print()


if __name__ == "__main__":
    import training.cli

    training.cli.run(main, "python -m training.ood")
