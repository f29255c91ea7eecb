"""espeak-ng variant files: read a line, edit lines, and draw new voices from an installed one.

A variant file (espeak-ng-data/voices/!v/NAME) is espeak-ng's "speaker": its pitch line, formant
frequencies/heights/widths, voicing, F0 jitter (`flutter`) and the like. The prosody annotator's
corpus (training/prosody.py) has 36 of them for training, and a student trained on so few learns
the voices as well as the prosody: on a held-out voice whose formants and voicing differ from every
training voice (espeak-ng's grandma) it is wrong about arousal and valence on nearly every clip
(docs/uncertainty.md, thirty-fourth round). `derive` makes a new voice from a training one by
drawing its vocal tract and voice source at random, keeping the base's pitch line (the annotator's
pitch cue is relative to it) and everything else, so that a corpus can speak with as many voices
as it has clips (`build_corpus(..., derived=...)`). The draw's ranges, per voice:

    formant frequencies   all scaled by one factor (vocal tract length), log-uniform 0.90 .. 1.12,
                          then each by its own, uniform 0.95 .. 1.05
    formant heights       each times a log-uniform factor 0.67 .. 1.5; formants 6-8 (the top of the
                          spectrum) instead set to 10-40 % in 3 of 10 voices, as in espeak-ng's
                          grandma and shelby
    formant widths        each times a log-uniform factor 0.8 .. 1.25
    voicing               uniform 30 .. 100 % (espeak-ng's default 100; grandma 50, shelby 40)
    roughness             uniform 0 .. 4 (espeak-ng's default 2)
    flutter               uniform 2 .. 20 (F0 jitter: 2 = espeak-ng's default, 20 = "croaky"); the
                          annotator's rough cue reads it from the file
"""
from __future__ import annotations

import hashlib
import math
import re

import numpy as np

from .speech import espeak_data_dir

N_FORMANTS = 9                     # espeak-ng's formant lines 0..8
DEFAULT_FORMANT = (100, 100, 100)  # frequency, height, width in % when a file has no line for it
DEFAULT_FLUTTER = 2


def _is_key(line: str, key: str) -> bool:
    """Whether a variant file's line sets `key` (its first word)."""
    return re.match(rf"\s*{key}\b", line) is not None


def installed(name: str) -> str:
    """The text of an installed variant file (FileNotFoundError names the file)."""
    return (espeak_data_dir() / "voices" / "!v" / name).read_text()


def value(text: str, key: str, default: str) -> str:
    """What the first line setting `key` gives it, else `default` (e.g. value(text, "flutter", "2"))."""
    return next((line.split(None, 1)[1].strip() for line in text.splitlines()
                 if _is_key(line, key) and len(line.split()) > 1), default)


def flutter(text: str) -> int:
    """The file's F0 jitter setting (espeak-ng's default when it has none)."""
    return int(float(value(text, "flutter", str(DEFAULT_FLUTTER))))


def edited(text: str, name: str, edits: dict[str, str]) -> str:
    """`text` with its `name` line set to `name` and each key's line (e.g. "flutter") set to the key
    and its value, added at the end when the file has none."""
    lines = text.splitlines()
    for key, val in {"name": name, **edits}.items():
        hit = [i for i, line in enumerate(lines) if _is_key(line, key)]
        for i in hit:
            lines[i] = f"{key} {val}"
        if not hit:
            lines.append(f"{key} {val}")
    return "\n".join(lines) + "\n"


def formants(text: str) -> list[tuple[int, int, int]]:
    """(frequency, height, width) in % for formants 0..8; a line's optional fourth number (a shift
    in Hz) is dropped, and a formant without a line is espeak-ng's default."""
    out = [DEFAULT_FORMANT] * N_FORMANTS
    for line in text.splitlines():
        cols = line.split()
        if len(cols) >= 5 and cols[0] == "formant" and cols[1].isdigit() and int(cols[1]) < N_FORMANTS:
            out[int(cols[1])] = (int(cols[2]), int(cols[3]), int(cols[4]))
    return out


def derive(base: str, rng: np.random.Generator) -> tuple[str, str]:
    """A new voice drawn from the installed variant `base` (the module's ranges): (name, file text).
    The name is the base's and a hash of the text, so equal draws are one voice and the name alone
    says which training voice it came from (base_of)."""
    source = installed(base)
    scale = math.exp(rng.uniform(math.log(0.90), math.log(1.12)))
    muffled = rng.random() < 0.3
    edits: dict[str, str] = {}
    for k, (freq, height, width) in enumerate(formants(source)):
        f = freq * scale * rng.uniform(0.95, 1.05)
        h = height * math.exp(rng.uniform(math.log(0.67), math.log(1.5)))
        if muffled and k >= 6:
            h = rng.uniform(10, 40)
        w = width * math.exp(rng.uniform(math.log(0.8), math.log(1.25)))
        edits[f"formant {k}"] = f"{round(f)} {round(h)} {round(w)}"
    edits["voicing"] = str(int(rng.integers(30, 101)))
    edits["roughness"] = str(int(rng.integers(0, 5)))
    edits["flutter"] = str(int(rng.integers(2, 21)))
    text = edited(source, "derived", edits)
    name = f"{base}-d{hashlib.sha256(text.encode()).hexdigest()[:10]}"
    return name, text.replace("name derived\n", f"name {name}\n", 1)


def base_of(name: str) -> str:
    """The installed variant a derived voice's name comes from (a plain name is its own base)."""
    found = re.fullmatch(r"(.+)-d[0-9a-f]{10}", name)
    return found.group(1) if found else name
