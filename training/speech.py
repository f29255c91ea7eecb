"""Offline speech for training and tests: real clips from Debian packages, espeak-ng synthesis.

Real speech (see ../shared/reference/offline-data.md §3) is whatever the installed Debian packages
ship; `debian_speech_files()` finds it. Synthetic speech comes from espeak-ng (formant synthesis,
fully controllable prosody); `synthesize()` makes one clip, `synthesize_many()` makes many in parallel
and caches them on disk so tests and training runs reuse clips instead of re-synthesising.

    from training.speech import SynthParams, synthesize, synthesize_many, read_clip
    pcm = synthesize("Good morning.", variant="f3", pitch=70, rate=200)      # float32, 16 kHz
    paths = synthesize_many([SynthParams("Good morning.", pitch=p) for p in (20, 50, 80)])
    pcm = read_clip(paths[0])

Cache: $WAV2SMALL_CACHE or ~/.cache/wav2small; one 16-bit WAV per clip under espeak/<xx>/<sha256>.wav,
the hash covering every synthesis parameter and the espeak-ng version.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf

from wav2small.audio import load, resample

from .audio_io import Skipped, UnreadableAudio
from .cli import ToolError
from .files import atomic_path

ESPEAK = "espeak-ng"

# ------------------------------------------------------------------------------------------------
# real speech shipped by Debian packages

# (directory, glob) pairs; each is searched only if the package that owns it is installed.
_SPEECH_SOURCES: tuple[tuple[str, str], ...] = (
    ("/usr/share/pocketsphinx/test/data", "**/*.wav"),           # pocketsphinx-testdata
    ("/usr/share/sounds/alsa", "*.wav"),                         # alsa-utils
    ("/usr/share/asterisk/sounds", "**/*.wav"),                  # asterisk-core-sounds-*-wav
    ("/usr/share/ktuberling/sounds", "*/*.ogg"),                 # ktuberling-data
    ("/usr/share/klettres", "*/alpha/*.ogg"),                    # klettres-data
    ("/usr/share/klettres", "*/syllab/*.ogg"),
    ("/usr/share/games/hedgewars/Data/Sounds/voices", "*/*.ogg"),  # hedgewars-data (acted)
    ("/usr/share/SuperCollider/sounds", "a11wlk01.wav"),         # supercollider-common
    ("/usr/share/puredata/doc/sound", "voice*.wav"),             # puredata-doc
)

# The packages .ci/run installs: tests, calibration of the default model and its card use only
# these, so their numbers are the same on every machine whatever else is installed.
CORE_SPEECH_SOURCES: tuple[tuple[str, str], ...] = (
    ("/usr/share/pocketsphinx/test/data", "**/*.wav"),           # pocketsphinx-testdata
    ("/usr/share/sounds/alsa", "*.wav"),                         # alsa-utils
    # the package's own directory: the "en" symlink to it comes from asterisk-core-sounds-en,
    # which --no-install-recommends leaves out
    ("/usr/share/asterisk/sounds/en_US_f_Allison", "*.wav"),     # asterisk-core-sounds-en-wav
)

# the Debian package of each core source, for reports that say what they measured on
CORE_SPEECH_PACKAGES: dict[str, str] = {
    "/usr/share/pocketsphinx/test/data": "pocketsphinx-testdata",
    "/usr/share/sounds/alsa": "alsa-utils",
    "/usr/share/asterisk/sounds/en_US_f_Allison": "asterisk-core-sounds-en-wav",
}


def packages_of(files: Sequence[str | Path]) -> str:
    """Which core packages the files come from, with counts: "8 pocketsphinx-testdata, 8 alsa-utils"."""
    counts: dict[str, int] = {}
    for f in files:
        name = next((pkg for root, pkg in CORE_SPEECH_PACKAGES.items()
                     if Path(f).resolve().is_relative_to(Path(root).resolve())), "other")
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{n} {pkg}" for pkg, n in counts.items())


# Files inside those directories that are not speech: test noise, IVR tones and silence.
_NON_SPEECH = re.compile(
    r"(^|/)(Noise\.wav|beep\.wav|beeperr\.wav|ascending-2tone\.wav|descending-2tone\.wav)$"
    r"|(^|/)silence/"
)


def debian_speech_files(min_seconds: float = 0.5, roots: Sequence[tuple[str, str]] | None = None) -> list[Path]:
    """Real human speech clips from installed Debian packages, sorted, without duplicates.

    Symlinked directories (asterisk installs en -> en_US_f_Allison) are resolved so each file is
    listed once. Headerless .raw files (pocketsphinx) are left out because `wav2small.audio.load`
    cannot read them without being told the format. Clips shorter than `min_seconds` are dropped.
    """
    found: set[Path] = set()
    for root, pattern in roots if roots is not None else _SPEECH_SOURCES:
        base = Path(root)
        if not base.is_dir():
            continue
        for path in base.glob(pattern):
            real = path.resolve()
            if not real.is_file() or _NON_SPEECH.search(real.as_posix()):
                continue
            if _duration(real) >= min_seconds:
                found.add(real)
    return sorted(found)


def spread_speech(n: int, roots: Sequence[tuple[str, str]] = CORE_SPEECH_SOURCES,
                  min_seconds: float = 0.5) -> list[Path]:
    """n real speech files taken in turn from each source of `roots` (each package), evenly spaced
    within it, in that order; deterministic. Every n-th file of the sorted list would take all of
    them from asterisk's hundreds of prompts of one speaker in telephone band (pocketsphinx and
    alsa-utils hold the full-band speech and the other speakers). Fewer than n if fewer exist."""
    files = debian_speech_files(min_seconds, roots)
    groups = [[f for f in files if f.is_relative_to(Path(root).resolve())] for root, _ in roots]
    groups = [g for g in groups if g]
    take = [0] * len(groups)
    for k in range(min(n, len(files))):   # round robin over the sources that still have files
        open_ = [i for i, g in enumerate(groups) if take[i] < len(g)]
        take[open_[k % len(open_)]] += 1
    return [f for g, m in zip(groups, take) for f in (g[round(j * len(g) / m)] for j in range(m))]


def _duration(path: Path) -> float:
    """Seconds, or 0.0 for a file training/audio_io.py would skip (not usable speech)."""
    from .audio_io import UnreadableAudio, audio_seconds

    try:
        return audio_seconds(path)
    except UnreadableAudio:
        return 0.0


# ------------------------------------------------------------------------------------------------
# espeak-ng synthesis

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # voice and variant names; also keeps them from being options

# espeak-ng 1.51 resolves "en-gb+<variant>" to an (uninstalled) mbrola voice and silently falls back
# to plain British English without the variant; "en" is the same British voice file (gmw/en) and
# honours variants. Plain "en-gb" and "en" give identical audio, so the alias is always safe.
_VOICE_ALIASES = {"en-gb": "en"}


@dataclass(frozen=True)
class SynthParams:
    """Everything that determines one synthesised clip (and therefore its cache key)."""

    text: str
    voice: str = "en-us"          # espeak-ng language voice
    variant: str | None = None    # espeak-ng variant (m1..m8, f1..f5, klatt, croak, whisper, ...)
    pitch: int = 50               # -p, 0..99: base pitch relative to the variant's own
    rate: int = 175               # -s, words per minute, 80..450
    amplitude: int = 100          # -a, 0..200; above ~150 espeak-ng output clips
    pitch_range: int = 100        # SSML <prosody range>, % of the variant's own range, 0..200
                                  # (espeak-ng saturates above +100%)
    sample_rate: int = 16000      # output rate (espeak-ng itself renders at 22,050 Hz)
    variant_file: str | None = None   # the text of an espeak-ng variant file rendered as `variant`
                                      # in place of any installed one (a voice of training.variants)

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError("text is empty")
        if not _NAME.match(self.voice):
            raise ValueError(f"bad voice name {self.voice!r}")
        if self.variant is not None and not _NAME.match(self.variant):
            raise ValueError(f"bad variant name {self.variant!r}")
        if self.variant_file is not None and self.variant is None:
            raise ValueError("a variant_file needs a variant name to be rendered as")
        for name, lo, hi in (("pitch", 0, 99), ("rate", 80, 450), ("amplitude", 0, 200),
                             ("pitch_range", 0, 200), ("sample_rate", 1000, 192000)):
            value = getattr(self, name)
            if not (isinstance(value, int) and lo <= value <= hi):
                raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")

    def ssml(self) -> str:
        # Always SSML, even at the default range, so every clip goes through the same code path
        # (espeak-ng's plain-text and SSML paths differ slightly in pauses).
        return f'<speak><prosody range="{self.pitch_range - 100:+d}%">{escape(self.text)}</prosody></speak>'

    def command(self) -> list[str]:
        voice = _VOICE_ALIASES.get(self.voice, self.voice)
        if self.variant is not None:
            voice = f"{voice}+{self.variant}"
        return [ESPEAK, "-m", "-v", voice, "-p", str(self.pitch), "-s", str(self.rate),
                "-a", str(self.amplitude), "--stdin", "--stdout"]


def _espeak_path() -> str:
    path = shutil.which(ESPEAK)
    if path is None:
        raise ToolError(f"{ESPEAK} is not installed: apt-get install -y espeak-ng")
    return path


@functools.lru_cache(maxsize=1)
def espeak_version() -> str:
    """E.g. 'eSpeak NG text-to-speech: 1.51  Data at: ...'; part of every cache key."""
    out = subprocess.run([_espeak_path(), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@functools.lru_cache(maxsize=4)
def espeak_variants(data_path: str | None = None) -> frozenset[str]:
    """Variant names (the part after '+') of the installed data, or of the data under `data_path`
    (espeak-ng --path); espeak-ng ignores unknown ones silently."""
    cmd = [_espeak_path(), *([f"--path={data_path}"] if data_path else []), "--voices=variant"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    names = set()
    for line in out.stdout.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5 and cols[4].startswith("!v/"):
            names.add(cols[4][3:])
    return frozenset(names)


def espeak_data_dir() -> Path:
    """Where the installed espeak-ng reads its data ('Data at: ...' in its version line)."""
    found = re.search(r"Data at:\s*(\S+)", espeak_version())
    if not found:
        raise ToolError(f"cannot tell where espeak-ng's data is from: {espeak_version()!r}")
    return Path(found.group(1))


def private_data(root: Path, variants: dict[str, str]) -> Path:
    """An espeak-ng data directory under `root` that is the installed one plus the variant files
    `variants` (name -> text), which replace installed ones of the same name; returns the directory
    to pass as espeak-ng --path. Everything else is a symbolic link into the installed data (a few
    hundred links, not 13 MB of copies), and no link is ever written through: the installed data
    stays as it was."""
    def mirror(source: Path, dest: Path, skip: set[str]) -> None:
        dest.mkdir(parents=True)
        for entry in source.iterdir():
            if entry.name not in skip:
                (dest / entry.name).symlink_to(entry)

    bad = [name for name in variants if not _NAME.match(name)]
    if bad:
        raise ValueError(f"bad variant name {bad[0]!r}")
    installed = espeak_data_dir()
    data = Path(root) / "espeak-ng-data"
    mirror(installed, data, {"voices"})
    mirror(installed / "voices", data / "voices", {"!v"})
    mirror(installed / "voices" / "!v", data / "voices" / "!v", set(variants))
    for name, text in variants.items():
        (data / "voices" / "!v" / name).write_text(text)
    return Path(root)


def render(params: SynthParams, data_path: str | None = None) -> np.ndarray:
    """Run espeak-ng for one clip (audio through a pipe); float32 at params.sample_rate.
    `data_path`: a directory holding an espeak-ng-data of its own (espeak-ng --path), else the
    installed data. A clip with a variant_file is rendered from a private data directory made for it
    (private_data, in a temporary directory removed after)."""
    if params.variant_file is not None:
        if data_path is not None:
            raise ValueError("a clip with a variant_file brings its own data: data_path must be None")
        assert params.variant is not None   # SynthParams checks it
        with tempfile.TemporaryDirectory(prefix="wav2small-espeak-") as root:
            path = str(private_data(Path(root), {params.variant: params.variant_file}))
            return render(replace(params, variant_file=None), path)
    cmd = params.command()
    cmd[0:1] = [_espeak_path(), *([f"--path={data_path}"] if data_path else [])]
    if params.variant is not None and params.variant not in espeak_variants(data_path):
        raise ValueError(f"espeak-ng has no variant {params.variant!r}")
    proc = subprocess.run(cmd, input=params.ssml().encode("utf-8"), capture_output=True)
    if proc.returncode != 0 or not proc.stdout:
        msg = proc.stderr.decode("utf-8", "replace").strip()
        raise ToolError(f"espeak-ng failed (exit {proc.returncode}) for {params}: {msg or 'no audio'}")
    pcm, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    if pcm.ndim != 1 or pcm.size == 0 or not np.any(pcm):
        raise ToolError(f"espeak-ng produced no audible samples for {params}")
    return np.ascontiguousarray(resample(pcm, rate, params.sample_rate), dtype=np.float32)


def synthesize(
    text: str,
    voice: str = "en-us",
    pitch: int = 50,
    rate: int = 175,
    amplitude: int = 100,
    variant: str | None = None,
    sample_rate: int = 16000,
    pitch_range: int = 100,
) -> np.ndarray:
    """One espeak-ng utterance as mono float32 at `sample_rate` (not cached)."""
    return render(SynthParams(text, voice, variant, pitch, rate, amplitude, pitch_range, sample_rate))


# ------------------------------------------------------------------------------------------------
# cached, parallel synthesis

def default_cache_dir() -> Path:
    return Path(os.environ.get("WAV2SMALL_CACHE") or Path.home() / ".cache" / "wav2small")


# Bump when rendering changes in a way the parameters do not show (e.g. the en-gb alias).
_CACHE_VERSION = 1


def clip_key(params: SynthParams) -> str:
    meta = {"cache_version": _CACHE_VERSION, "engine": espeak_version()}
    fields = asdict(params)
    if fields["variant_file"] is None:   # so that the keys of installed voices' clips stay as they were
        del fields["variant_file"]
    blob = json.dumps({**meta, **fields}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def cache_path(params: SynthParams, cache_dir: Path | str | None = None) -> Path:
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = clip_key(params)
    return root / "espeak" / key[:2] / f"{key}.wav"


def _write_wav(path: Path, pcm: np.ndarray, sample_rate: int) -> None:
    with atomic_path(path) as tmp:
        sf.write(tmp, pcm, sample_rate, subtype="PCM_16", format="WAV")


def synthesize_cached(params: SynthParams, cache_dir: Path | str | None = None) -> Path:
    """Path of the cached clip for `params`, synthesising it first if needed."""
    path = cache_path(params, cache_dir)
    if not path.is_file():
        _write_wav(path, render(params), params.sample_rate)
    return path


def synthesize_many(
    params: Iterable[SynthParams],
    cache_dir: Path | str | None = None,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    skipped: Skipped | None = None,
) -> list[Path | None]:
    """Cached clips for many parameter sets, in input order.

    Threads are enough for parallelism: each one waits on an espeak-ng subprocess. `progress(done,
    total)` is called after each clip. espeak-ng crashes on a few parameter sets (a segfault, every
    time, on one draw of the prosody annotator's seed 8): with `skipped` such a clip is None in the
    result and counted there; without it, the first one raises ToolError.
    """
    items = list(params)
    _espeak_path()  # fail early and clearly, not once per worker
    done = 0

    def one(p: SynthParams) -> Path | None:
        try:
            return synthesize_cached(p, cache_dir)
        except ToolError as e:
            if skipped is None:
                raise
            skipped.add(UnreadableAudio(cache_path(p, cache_dir), f"espeak-ng could not render it: {e}"))
            return None

    paths: list[Path | None] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for path in pool.map(one, items):
            paths.append(path)
            done += 1
            if progress is not None:
                progress(done, len(items))
    return paths


def read_clip(path: Path | str, sample_rate: int = 16000) -> np.ndarray:
    """A cached (or any) clip as float32 mono at `sample_rate` (wav2small.AudioError if unreadable)."""
    return load(path, sample_rate)


# ------------------------------------------------------------------------------------------------
# text: short, varied English sentences (written for this project), statements, questions,
# exclamations and lists, 3 to 14 words, so clips are about 1 to 5 s at normal rates.

SENTENCES: tuple[str, ...] = (
    "The train leaves at seven in the morning.",
    "Could you pass me the salt, please?",
    "I left my umbrella on the bus again.",
    "We painted the kitchen a pale shade of green.",
    "Nobody told me the meeting had been moved.",
    "Turn left after the bakery and keep going.",
    "Is this the way to the river?",
    "The children built a tower out of old boxes.",
    "She plays the violin every Sunday afternoon.",
    "That was the best soup I have ever tasted!",
    "Please close the window before you leave.",
    "The library opens again on Monday.",
    "He forgot to water the plants for a week.",
    "Where did you put the car keys?",
    "The storm knocked down two trees on our street.",
    "I think we should wait a little longer.",
    "The museum was full of old clocks and maps.",
    "My brother is learning to fly small planes.",
    "Why is the printer making that noise?",
    "We need more eggs, milk, and bread.",
    "The cat is sleeping on the warm laptop.",
    "You can leave your coat on the chair.",
    "They walked along the beach until sunset.",
    "Have you seen the new bridge downtown?",
    "The numbers do not add up at all.",
    "I will call you when I get home.",
    "The garden looks lovely after the rain.",
    "Stop right there and listen to me!",
    "Our neighbours are moving to another city.",
    "The soup needs a little more pepper.",
    "Which platform does the next train use?",
    "He read the whole book in one night.",
    "The lights went out during the film.",
    "I have never been so surprised in my life!",
    "Put the blue folder on the top shelf.",
    "The bus was late for the third time today.",
    "Do you want tea or coffee?",
    "We found a small bird with a broken wing.",
    "The shop on the corner sells fresh bread.",
    "It is much colder than it was yesterday.",
    "Somebody has eaten all the biscuits.",
    "The concert starts in twenty minutes.",
    "Could we talk about this tomorrow instead?",
    "My phone fell into the lake.",
    "The new teacher speaks four languages.",
    "Let us meet outside the cinema at eight.",
    "The road is closed because of the flood.",
    "What a wonderful surprise this is!",
    "I can hear the sea from my window.",
    "The dog chased the ball across the field.",
    "Nothing in this drawer belongs to me.",
    "Why does the clock always run slow?",
    "The report is due at the end of the month.",
    "She laughed so hard that she cried.",
    "Remember to switch off the oven.",
    "The mountain path was steep and narrow.",
    "I would like a table for two, please.",
    "Our flight has been delayed by an hour.",
    "The paint on the door is still wet.",
    "How many people are coming to dinner?",
    "He always sings while he cooks.",
    "The pencils are in the second drawer.",
    "I cannot believe we missed the last bus!",
    "The baby finally fell asleep.",
    "There is a strange smell in the hallway.",
    "They planted apple trees behind the school.",
    "Are you sure this is the right address?",
    "The wind blew the papers off the desk.",
    "We should buy tickets before they sell out.",
    "This old radio still works perfectly.",
    "The fish market is busy on Fridays.",
    "Please speak a little more slowly.",
    "Who left the front door open?",
    "The hotel room had a view of the harbour.",
    "I lost count after the first hundred.",
    "The snow melted in a single afternoon.",
    "Bring a warm jacket, it gets cold at night.",
    "That noise kept me awake all night.",
    "The recipe calls for three ripe bananas.",
    "When does the swimming pool close?",
    "My grandmother grew up on a farm.",
    "The screen went black without any warning.",
    "We walked for hours and saw nobody.",
    "The parcel arrived two days early.",
    "Do not touch the plates, they are hot!",
    "The orchestra tuned their instruments.",
    "He has a collection of old stamps.",
    "Is there a pharmacy near here?",
    "The boat drifted slowly towards the island.",
    "I finally finished painting the fence.",
    "Everyone stood up when the judge came in.",
    "The price of coffee went up again.",
    "Where were you at nine last night?",
    "A thin fog covered the whole valley.",
    "The students handed in their essays.",
    "We are out of milk, sugar, and tea.",
    "You did a really good job today.",
    "The elevator is out of order again.",
    "Can anyone explain what just happened?",
    "The leaves turn red early this year.",
)
