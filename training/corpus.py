"""Corpus manifests: audio files with speaker/group ids and a train/val/test split.

    python -m training.corpus --out=runs/corpus                       # everything installed, defaults
    python -m training.corpus --out=runs/corpus --espeak=3000 --flite=400 --max_per_group=200
    python -m training.corpus --out=runs/small --sources=debian,espeak --espeak=40 --max_per_group=4

writes <out>/manifest.csv (one row per file) and <out>/summary.json (clips and hours per split,
source and group, and the options); a corpus of other options already in <out> is replaced only with
--overwrite, and the same command run again leaves it as it is. Columns:

    path       absolute path of the audio file (any format soundfile reads, any rate; loaders resample)
    sha256     content hash of the file: the clip id in annotation caches and label files
    seconds    duration
    source     debian:<package> | espeak | flite
    group      speaker or voice pack: the unit of the split
    language   as far as the source tells it
    split      train | val | test
    arousal, dominance, valence   targets where the source has them (the prosody annotator's rule
               table for espeak clips, training/prosody.py), empty otherwise

Sources:
- real speech from Debian packages, whatever is installed (offline-data.md §3): pocketsphinx-testdata,
  alsa-utils, asterisk-core-sounds-{en,es,fr,it,ru}-wav (grouped by speaker: en and es are both
  Allison), ktuberling-data and klettres-data (one group per language: one volunteer each),
  hedgewars-data (one group per voice pack), supercollider-common, puredata-doc;
- espeak-ng clips drawn by the prosody annotator (voice variant = group, split by its table);
- flite clips (voices kal16, rms: train; awb: val; slt: test) with random speaking rate and pitch.

Splits are by group, never by clip. Real-speech groups go to train/val/test by a hash of the group
name (70/15/15 %), so a group's split does not change when other packages are installed. The audio
stays where it is (Debian files, the synthesis cache); nothing here is meant to be committed.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from . import prosody
from .audio_io import Skipped, UnreadableAudio, audio_seconds
from .cli import HelpFormatter, ToolError
from .files import atomic_path, write_atomic
from .speech import _NON_SPEECH, SENTENCES, default_cache_dir, synthesize_many
from .teachers import OUTPUTS, file_sha256

COLUMNS = ("path", "sha256", "seconds", "source", "group", "language", "split", *OUTPUTS)
SPLITS = ("train", "val", "test")


@dataclass
class Entry:
    path: str
    sha256: str
    seconds: float
    source: str
    group: str
    language: str
    split: str
    targets: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        # the precision the CSV keeps, so an entry and its read-back copy are equal
        self.seconds = round(float(self.seconds), 3)
        if self.targets is not None:
            self.targets = tuple(round(float(x), 6) for x in self.targets)

    def row(self) -> dict[str, str]:
        t = self.targets
        return {"path": self.path, "sha256": self.sha256, "seconds": f"{self.seconds:.3f}", "source": self.source,
                "group": self.group, "language": self.language, "split": self.split,
                **{o: ("" if t is None else f"{v:.6f}") for o, v in zip(OUTPUTS, t or (0, 0, 0))}}


# ------------------------------------------------------------------------------------------------
# real speech from Debian packages

@dataclass(frozen=True)
class DebianSource:
    package: str
    root: str
    pattern: str
    group: Callable[[tuple[str, ...]], str]     # path parts relative to root -> group
    language: Callable[[tuple[str, ...]], str] = field(default=lambda parts: "")


def _asterisk_speaker(parts: tuple[str, ...]) -> str:
    # directories are <lang>_<region>_<sex>_<name>: the speaker is the name (Allison reads en and es)
    return "asterisk-" + parts[0].split("_")[-1]


DEBIAN_SOURCES: tuple[DebianSource, ...] = (
    DebianSource("pocketsphinx-testdata", "/usr/share/pocketsphinx/test/data", "**/*.wav",
                 lambda p: "pocketsphinx", lambda p: "en"),
    DebianSource("alsa-utils", "/usr/share/sounds/alsa", "*.wav", lambda p: "alsa", lambda p: "en"),
    DebianSource("asterisk-core-sounds", "/usr/share/asterisk/sounds", "*_*_*_*/**/*.wav", _asterisk_speaker,
                 lambda p: "_".join(p[0].split("_")[:2])),
    # sr, sr@latin, sr@ijekavian... are one language in several scripts: one volunteer, one group
    DebianSource("ktuberling-data", "/usr/share/ktuberling/sounds", "*/*.ogg",
                 lambda p: f"ktuberling-{p[0].split('@')[0]}", lambda p: p[0].split("@")[0]),
    DebianSource("klettres-data", "/usr/share/klettres", "*/*/*.ogg",
                 lambda p: f"klettres-{p[0]}", lambda p: p[0]),
    DebianSource("hedgewars-data", "/usr/share/games/hedgewars/Data/Sounds/voices", "*/*.ogg",
                 lambda p: f"hedgewars-{p[0]}", lambda p: ""),
    DebianSource("supercollider-common", "/usr/share/SuperCollider/sounds", "a11wlk01.wav",
                 lambda p: "supercollider", lambda p: "en"),
    DebianSource("puredata-doc", "/usr/share/puredata/doc/sound", "voice*.wav", lambda p: "puredata", lambda p: "en"),
)


def group_split(group: str, fractions: tuple[float, float] = (0.70, 0.85)) -> str:
    """train / val / test from a hash of the group name alone."""
    u = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) / 2**32
    return "train" if u < fractions[0] else "val" if u < fractions[1] else "test"


def debian_entries(min_seconds: float = 0.5, max_per_group: int = 0, seed: int = 0,
                   sources: Iterable[DebianSource] = DEBIAN_SOURCES, skipped: Skipped | None = None) -> list[Entry]:
    """Real speech of the installed packages; at most max_per_group files per group (0 = all),
    a seeded choice so small corpora still cover every group. Files that cannot be read (not a
    regular file, empty, not audio, a truncated WAV: training/audio_io.py) are left out with a
    warning and counted in `skipped`."""
    skipped = skipped if skipped is not None else Skipped("corpus")
    by_group: dict[str, list[tuple[Path, DebianSource, tuple[str, ...]]]] = defaultdict(list)
    seen: set[Path] = set()
    for src in sources:
        base = Path(src.root)
        if not base.is_dir():
            continue
        for path in sorted(base.glob(src.pattern)):
            real = path.resolve()
            if real in seen or _NON_SPEECH.search(real.as_posix()):
                continue
            if not real.is_file():
                skipped.add(UnreadableAudio(path, "not a regular file: a directory, or a broken link"))
                continue
            seen.add(real)
            parts = path.relative_to(base).parts
            by_group[src.group(parts)].append((real, src, parts))
    entries = []
    hashes: set[str] = set()  # some packages ship one recording under several names (sr, sr@latin)
    for group in sorted(by_group):
        files = by_group[group]
        if max_per_group and len(files) > max_per_group:
            rng = np.random.default_rng([seed, int(hashlib.sha256(group.encode()).hexdigest()[:8], 16)])
            # draw a few extra: some files turn out shorter than min_seconds
            pick = rng.permutation(len(files))[: 2 * max_per_group]
            files = [files[i] for i in sorted(pick)]
        kept = 0
        for real, src, parts in files:
            try:
                seconds = audio_seconds(real)
                digest = file_sha256(real) if seconds >= min_seconds else ""
            except UnreadableAudio as e:
                skipped.add(e)
                continue
            except OSError as e:
                skipped.add(UnreadableAudio(real, f"cannot read: {e.strerror or e}"))
                continue
            if not digest or digest in hashes:
                continue
            hashes.add(digest)
            entries.append(Entry(str(real), digest, seconds, f"debian:{src.package}", group,
                                 src.language(parts), group_split(group)))
            kept += 1
            if max_per_group and kept >= max_per_group:
                break
    return entries


# ------------------------------------------------------------------------------------------------
# synthesis

def _probe(paths: list[Path], skipped: Skipped | None) -> list[tuple[int, float]]:
    """(index, seconds) of the readable files; the others are counted in `skipped`."""
    skipped = skipped if skipped is not None else Skipped("corpus")
    out = []
    for i, p in enumerate(paths):
        try:
            out.append((i, audio_seconds(p)))
        except UnreadableAudio as e:
            skipped.add(e)
    return out


def espeak_entries(n: int, seed: int, cache_dir: Path, workers: int = 2,
                   skipped: Skipped | None = None) -> list[Entry]:
    """n prosody-annotator draws (training/prosody.py), with their rule-table targets."""
    if n <= 0:
        return []
    items = prosody.build_corpus(n, seed)
    skipped = skipped if skipped is not None else Skipped("corpus")
    paths = synthesize_many([it.params for it in items], cache_dir, workers, skipped=skipped)
    rendered = [(p, it) for p, it in zip(paths, items) if p is not None]
    out = []
    for i, seconds in _probe([p for p, _ in rendered], skipped):
        path, it = rendered[i]
        out.append(Entry(str(path), file_sha256(path), seconds, "espeak", f"espeak-{it.params.variant}",
                         it.params.voice, it.split, tuple(float(x) for x in it.targets)))
    return out


FLITE = "flite"
FLITE_VOICES = {"kal16": ("m", "train"), "rms": ("m", "train"), "awb": ("m", "val"), "slt": ("f", "test")}


def flite_clip(text: str, voice: str, stretch: float, f0: float, cache_dir: Path) -> Path:
    """One cached flite clip (16 kHz WAV as flite writes it)."""
    exe = shutil.which(FLITE)
    if exe is None:
        raise ToolError("flite is not installed: apt-get install -y flite")
    key = hashlib.sha256(json.dumps([1, voice, text, round(stretch, 3), round(f0, 1)]).encode()).hexdigest()
    path = cache_dir / "flite" / key[:2] / f"{key}.wav"
    if path.is_file():
        return path
    with atomic_path(path) as tmp:
        cmd = [exe, "-voice", voice, "--setf", f"duration_stretch={stretch:.3f}",
               "--setf", f"int_f0_target_mean={f0:.1f}", "-t", text, "-o", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, check=False)
        if proc.returncode != 0 or sf.info(str(tmp)).frames == 0:
            raise ToolError(f"flite failed for {voice!r}: {proc.stderr.decode(errors='replace').strip()}")
    return path


def flite_entries(n: int, seed: int, cache_dir: Path, skipped: Skipped | None = None) -> list[Entry]:
    """n flite clips: voice, rate (duration stretch 0.7..1.4) and mean F0 drawn at random."""
    if n <= 0:
        return []
    rng = np.random.default_rng([seed, 7])
    voices = sorted(FLITE_VOICES)
    out = []
    for _ in range(n):
        voice = voices[int(rng.integers(len(voices)))]
        sex, split = FLITE_VOICES[voice]
        f0 = float(rng.uniform(140, 260) if sex == "f" else rng.uniform(80, 160))
        stretch = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
        text = SENTENCES[int(rng.integers(len(SENTENCES)))]
        p = flite_clip(text, voice, stretch, f0, cache_dir)
        for _, seconds in _probe([p], skipped):
            out.append(Entry(str(p), file_sha256(p), seconds, "flite", f"flite-{voice}", "en", split))
    return out


# ------------------------------------------------------------------------------------------------
# manifest files

def write_manifest(entries: list[Entry], out_dir: Path, skipped: Skipped | None = None,
                   options: dict | None = None) -> Path:
    """manifest.csv and summary.json (with the count of skipped unreadable files and, if given, the
    options that built it), each atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "manifest.csv"
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    for e in entries:
        w.writerow(e.row())
    write_atomic(path, buf.getvalue())
    info = summary(entries)
    if skipped is not None:
        info["skipped_audio"] = skipped.report()
    if options is not None:
        info["options"] = options
    write_atomic(out_dir / "summary.json", json.dumps(info, indent=2) + "\n")
    return path


def require_manifest(path: str | Path) -> Path:
    """The manifest's path, or FileNotFoundError saying how to build one (commands check it before
    they spend time on anything else)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no corpus manifest at {path}: build one with python -m training.corpus")
    return path


def read_manifest(path: str | Path) -> list[Entry]:
    path = require_manifest(path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and set(COLUMNS) - set(rows[0]):
        raise ValueError(f"{path}: missing columns {sorted(set(COLUMNS) - set(rows[0]))}")
    out = []
    for n, r in enumerate(rows, start=2):
        if r["split"] not in SPLITS:
            raise ValueError(f"{path} line {n}: split must be one of {SPLITS}, got {r['split']!r}")
        labelled = [r[o] != "" for o in OUTPUTS]
        if any(labelled) and not all(labelled):
            raise ValueError(f"{path} line {n}: give all of {OUTPUTS} or none")
        try:
            targets = tuple(float(r[o]) for o in OUTPUTS) if all(labelled) else None
        except ValueError:
            raise ValueError(f"{path} line {n}: {OUTPUTS} must be numbers, got "
                             f"{[r[o] for o in OUTPUTS]}") from None
        if targets is not None and not all(math.isfinite(t) for t in targets):
            raise ValueError(f"{path} line {n}: targets must be finite, got {targets}")
        try:
            seconds = float(r["seconds"])
        except ValueError:
            raise ValueError(f"{path} line {n}: seconds must be a number, got {r['seconds']!r}") from None
        out.append(Entry(r["path"], r["sha256"], seconds, r["source"], r["group"], r["language"],
                         r["split"], targets))
    groups: dict[str, set[str]] = defaultdict(set)
    for e in out:
        groups[e.group].add(e.split)
    mixed = sorted(g for g, s in groups.items() if len(s) > 1)
    if mixed:
        raise ValueError(f"{path}: groups {mixed[:5]} appear in more than one split (speaker leakage)")
    return out


def fingerprint(entries: list[Entry]) -> str:
    """16 hex digits that change with the corpus's content and nothing else: every clip's split, group,
    audio hash and targets, in any order; not the paths (a corpus moved or rebuilt elsewhere keeps it).
    Two corpora with the same fingerprint give the same teacher fits and students for the same seeds,
    thread counts and software (training.versions): a different fingerprint is the first suspect."""
    rows = sorted(f"{e.split}|{e.group}|{e.sha256}|{e.targets}" for e in entries)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def summary(entries: list[Entry]) -> dict:
    out: dict = {"fingerprint": fingerprint(entries)}
    for split in SPLITS:
        sel = [e for e in entries if e.split == split]
        by_source: dict[str, list[float]] = defaultdict(list)
        for e in sel:
            by_source[e.source].append(e.seconds)
        out[split] = {
            "clips": len(sel), "hours": round(sum(e.seconds for e in sel) / 3600, 3),
            "groups": sorted({e.group for e in sel}),
            "labelled": sum(e.targets is not None for e in sel),
            "by_source": {s: {"clips": len(v), "minutes": round(sum(v) / 60, 1)} for s, v in sorted(by_source.items())},
        }
    return out


def build(out_dir: Path | None, sources: set[str], espeak: int, flite: int, max_per_group: int, seed: int,
          cache_dir: Path, min_seconds: float = 0.5, workers: int = 2,
          skipped: Skipped | None = None) -> list[Entry]:
    """Collect the sources and write the manifest (out_dir None: only collect); unreadable audio
    files are left out, counted in `skipped` and in summary.json."""
    unknown = sources - {"debian", "espeak", "flite"}
    if unknown:
        raise ValueError(f"unknown sources {sorted(unknown)}: use debian, espeak, flite")
    skipped = skipped if skipped is not None else Skipped("corpus")
    entries: list[Entry] = []
    if "debian" in sources:
        entries += debian_entries(min_seconds, max_per_group, seed, skipped=skipped)
    if "espeak" in sources:
        entries += espeak_entries(espeak, seed, cache_dir, workers, skipped)
    if "flite" in sources:
        entries += flite_entries(flite, seed, cache_dir, skipped)
    if not entries:
        raise ToolError("no audio found: install e.g. espeak-ng pocketsphinx-testdata alsa-utils "
                           "asterisk-core-sounds-en-wav, or choose other --sources")
    if out_dir is not None:
        write_manifest(entries, out_dir, skipped)
    return entries


def built_with(out_dir: Path) -> dict | None:
    """The options summary.json says built the corpus in out_dir (None: not recorded, e.g. a corpus
    of an older version or written by hand)."""
    try:
        options = json.loads((out_dir / "summary.json").read_text()).get("options")
    except (OSError, ValueError, AttributeError):
        return None
    return options if isinstance(options, dict) else None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.corpus", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="directory for manifest.csv and summary.json")
    ap.add_argument("--sources", default="debian,espeak,flite", help="comma-separated: debian, espeak, flite")
    ap.add_argument("--espeak", type=int, default=2000, help="espeak-ng clips (prosody annotator draws)")
    ap.add_argument("--flite", type=int, default=200, help="flite clips (skipped if flite is not installed)")
    ap.add_argument("--max_per_group", type=int, default=0, help="cap on real clips per group (0 = all)")
    ap.add_argument("--min_seconds", type=float, default=0.5, help="drop shorter real clips")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthesis draws")
    ap.add_argument("--cache_dir", type=Path, default=None, help="synthesis cache (default $WAV2SMALL_CACHE "
                                                                "or ~/.cache/wav2small)")
    ap.add_argument("--workers", type=int, default=2, help="parallel espeak-ng processes")
    ap.add_argument("--overwrite", action="store_true", help="replace a corpus already in --out")
    args = ap.parse_args(argv)
    if min(args.espeak, args.flite, args.max_per_group, args.min_seconds) < 0 or args.workers < 1:
        ap.error("--espeak, --flite, --max_per_group and --min_seconds must be >= 0 and --workers >= 1")
    if args.out.exists() and not args.out.is_dir():
        ap.error(f"--out {args.out} is a file; the corpus is a directory (manifest.csv + summary.json)")
    sources = {s.strip() for s in args.sources.split(",") if s.strip()}
    if "flite" in sources and shutil.which(FLITE) is None:
        print("flite is not installed (apt-get install flite): leaving it out")
        sources.discard("flite")
    # what decides the content (not where the synthesis cache is or how many workers make it)
    options = {"sources": sorted(sources), "espeak": args.espeak, "flite": args.flite,
               "max_per_group": args.max_per_group, "min_seconds": args.min_seconds, "seed": args.seed}
    existing = (args.out / "manifest.csv").exists() and not args.overwrite
    recorded = built_with(args.out) if existing else None
    if existing and recorded != options:
        # runs, teachers and evaluations name a corpus by its path: another one in its place changes what
        # a later evaluation measures, and a resumed run refuses it (as training.teachers --overwrite)
        what = "of other options" if recorded else "that records no options (an older or hand-made one)"
        ap.error(f"--out {args.out} already holds a corpus (manifest.csv) {what}: choose another --out, "
                 "or --overwrite")
    skipped = Skipped("corpus")
    entries = build(None, sources, args.espeak, args.flite, args.max_per_group, args.seed,
                    args.cache_dir or default_cache_dir(), args.min_seconds, args.workers, skipped)
    s = summary(entries)
    if existing:   # the same options: the same corpus, unless the installed packages changed
        old = fingerprint(read_manifest(args.out / "manifest.csv"))
        if old != s["fingerprint"]:
            raise ToolError(f"--out {args.out} holds a corpus of these options with fingerprint {old}, but they "
                            f"now give {s['fingerprint']} (other installed packages?): choose another --out, "
                            "or --overwrite")
        print(f"{args.out / 'manifest.csv'} already holds this corpus (content fingerprint {old}): unchanged")
        return
    write_manifest(entries, args.out, skipped, options)
    for split in SPLITS:
        print(f"{split:5s} {s[split]['clips']:6d} clips {s[split]['hours']:7.3f} h  {len(s[split]['groups'])} groups  "
              + ", ".join(f"{k} {v['clips']}" for k, v in s[split]["by_source"].items()))
    print(skipped.summary())
    print(f"wrote {args.out / 'manifest.csv'} (content fingerprint {s['fingerprint']})")


if __name__ == "__main__":
    import training.cli

    training.cli.run(main, "python -m training.corpus")
