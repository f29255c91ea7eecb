"""Command line: `wav2small predict FILE...` and the commands other packages register.

Subcommands beyond `predict` come from the entry-point group "wav2small.commands" (the training
package registers `convert` there), so this runtime package never imports the training code, and
`wav2small predict` does not even load the plugins.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import warnings
from importlib.metadata import entry_points

import numpy as np

from . import __version__
from .audio import display_name, read, read_bytes
from .errors import AudioError, Wav2SmallError
from .model import MAX_MODULATION_DB, OUTPUT_NAMES, Model, Prediction, Thresholds

SIGMA_NAMES = tuple(f"sigma_{n}" for n in OUTPUT_NAMES)


def _row(path: str, p: Prediction) -> dict:
    """One flat row per file: A/D/V, then (with an uncertainty head) sigmas, speech_prob,
    modulation_db, steady (a model file with that measure), decision."""
    row: dict = {"file": path, **{n: getattr(p, n) for n in OUTPUT_NAMES}}
    if p.sigma is not None:
        row.update(zip(SIGMA_NAMES, p.sigma))
        row.update(speech_prob=p.speech_prob, modulation_db=p.modulation_db)
        if p.steady is not None:
            row.update(steady=p.steady)
        row.update(decision=p.decision)
    return row


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:   # argparse would name this function in its message
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def _positive(text: str) -> float:
    v = _number(text)
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def _probability(text: str) -> float:
    v = _number(text)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {text}")
    return v


def _modulation(text: str) -> float:
    v = _number(text)
    if not 0.0 <= v <= MAX_MODULATION_DB:
        raise argparse.ArgumentTypeError(f"must be within 0..{MAX_MODULATION_DB:g} dB, got {text}")
    return v


def _read(path: str, max_seconds: float) -> tuple[np.ndarray, int]:
    """read() of a file, or of standard input for "-"; warnings (a truncated WAV) go to stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if path == "-":
            if sys.stdin is None:
                raise AudioError("cannot read standard input: it is closed")
            pcm, rate = read_bytes(sys.stdin.buffer.read(), "standard input", max_seconds)
        else:
            pcm, rate = read(path, max_seconds)     # its messages name the file
    for w in caught:
        print(f"wav2small: warning: {w.message}", file=sys.stderr)
    return pcm, rate


def _predict(args: argparse.Namespace) -> int:
    try:
        model = Model(args.model)
        thresholds = model.thresholds
        given = (args.max_sigma, args.min_speech_prob, args.min_modulation_db, args.max_steady)
        if any(v is not None for v in given):
            if thresholds is None:
                raise Wav2SmallError(f"{args.model}: this model has no uncertainty head; --max-sigma, "
                                     "--min-speech-prob, --min-modulation-db and --max-steady need one")
            if args.max_steady is not None and not model.has_steady:
                raise Wav2SmallError(f"{args.model}: this model file has no steadiness measure "
                                     "(a release from before it): --max-steady needs one")
            thresholds = Thresholds(
                args.max_sigma if args.max_sigma is not None else thresholds.max_sigma,
                args.min_speech_prob if args.min_speech_prob is not None else thresholds.min_speech_prob,
                args.min_modulation_db if args.min_modulation_db is not None else thresholds.min_modulation_db,
                args.max_steady if args.max_steady is not None else thresholds.max_steady)
    except (Wav2SmallError, ValueError) as e:
        print(f"wav2small: {e}", file=sys.stderr)
        return 2
    if args.files.count("-") > 1:
        print("wav2small: - (standard input) can be given once: it holds one file", file=sys.stderr)
        return 2
    rows, failed = [], 0
    for path in args.files:
        name = display_name(path)
        try:
            pcm, rate = _read(path, model.max_seconds)
        except Wav2SmallError as e:
            print(f"wav2small: {e}", file=sys.stderr)
            failed += 1
            continue
        try:  # at the file's own rate: predict checks the length before it resamples
            p = model.predict(pcm, sample_rate=rate, thresholds=thresholds)
        except Wav2SmallError as e:
            print(f"wav2small: {name}: {e}", file=sys.stderr)
            failed += 1
            continue
        rows.append(_row(name, p))
    try:
        _write(rows, args.format, model.has_uncertainty, model.has_steady)
        sys.stdout.flush()   # here, where a failed write is ours to report, not at the interpreter's exit
    except BrokenPipeError:
        raise
    except OSError as e:      # standard output unwritable (a full disk, /dev/full)
        print(f"wav2small: cannot write the results: {e.strerror or e}", file=sys.stderr)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # the unflushed rest, at exit
        return 1
    return 1 if failed else 0


def _write(rows: list[dict], fmt: str, uncertainty: bool, steady: bool = False) -> None:
    """The rows to standard output as a table, JSON or CSV."""
    fields = ["file", *OUTPUT_NAMES] + ([*SIGMA_NAMES, "speech_prob", "modulation_db", *(["steady"] if steady else []),
                                         "decision"] if uncertainty else [])
    if fmt == "json":
        json.dump(rows, sys.stdout, indent=2)
        print()
    elif fmt == "csv":
        w = csv.DictWriter(sys.stdout, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    elif rows:   # a table of no rows (every file failed) would be a header alone
        width = max([4] + [len(r["file"]) for r in rows])
        names = [f for f in fields[1:] if f != "decision"]
        # σ where standard output can encode it (not in an ASCII or Latin-1 locale)
        sigma = "σ_" if _encodes(sys.stdout, "σ") else "sigma_"
        titles = [n.replace("sigma_", sigma).replace("modulation_db", "mod_dB") for n in names]
        cols = [max(9, len(t)) for t in titles]   # a value is 9 wide; a longer title widens its column
        head = f"{'file':<{width}}  " + "  ".join(f"{t:>{c}}" for t, c in zip(titles, cols))
        print(head + ("  decision" if uncertainty else ""))
        for r in rows:
            line = f"{r['file']:<{width}}  " + "  ".join(f"{r[n]:{c}.4f}" for n, c in zip(names, cols))
            print(line + (f"  {r['decision']}" if uncertainty else ""))


def _encodes(stream: object, text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def build_parser(plugins: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wav2small", description="Speech emotion recognition: arousal, dominance, valence.")
    parser.add_argument("--version", action="version", version=f"wav2small {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="print arousal/dominance/valence of audio files")
    p.add_argument("files", nargs="+", help="audio files (any format soundfile reads, any sample rate); "
                                            "- reads one from standard input")
    p.add_argument("--model", default=None, help="a .w2s model file (default: the shipped model)")
    p.add_argument("--max-sigma", type=_positive, default=None,
                   help="call a result 'too uncertain' when any sigma exceeds this (default: the model's)")
    p.add_argument("--min-speech-prob", type=_probability, default=None,
                   help="call a clip 'no speech' below this speech probability (default: the model's)")
    p.add_argument("--min-modulation-db", type=_modulation, default=None,
                   help="call a clip 'no speech' when its level rises and falls less than this over time "
                        "(dB; babble of many talkers, steady noise; 0 = off; default: the model's)")
    p.add_argument("--max-steady", type=_probability, default=None,
                   help="call a clip 'no speech' when more than this share of its loud blocks keep their "
                        "spectral shape (held tones, beeps, melodies; 0..1, 1 = off; default: the model's)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="format", action="store_const", const="json", help="JSON output")
    fmt.add_argument("--csv", dest="format", action="store_const", const="csv", help="CSV output")
    p.set_defaults(func=_predict, format="table")
    for ep in entry_points(group="wav2small.commands") if plugins else ():
        try:
            ep.load()(sub)  # each registers its own subparser and sets func
        except Exception as e:  # noqa: BLE001 - a broken or shadowed plugin must not take predict with it
            print(f"wav2small: the {ep.name!r} command is unavailable ({ep.value}: {type(e).__name__}: {e})",
                  file=sys.stderr)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(plugins=argv[:1] != ["predict"]).parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:   # the reader went away (`| head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # no second error at exit
        return 1


if __name__ == "__main__":
    sys.exit(main())
