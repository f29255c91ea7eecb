"""Command line: `wav2small predict FILE...` and the commands other packages register.

Subcommands beyond `predict` come from the entry-point group "wav2small.commands" (the training
package registers `convert` there), so this runtime package never imports the training code.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from importlib.metadata import entry_points

from . import __version__
from .audio import load
from .errors import Wav2SmallError
from .model import OUTPUT_NAMES, Model


def _predict(args: argparse.Namespace) -> int:
    try:
        model = Model(args.model)
    except Wav2SmallError as e:
        print(f"wav2small: {e}", file=sys.stderr)
        return 2
    rows, failed = [], 0
    for path in args.files:
        try:
            p = model.predict(load(path, model.sample_rate), sample_rate=model.sample_rate)
        except Wav2SmallError as e:
            print(f"wav2small: {path}: {e}", file=sys.stderr)
            failed += 1
            continue
        rows.append({"file": path, **p.as_dict()})
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2)
        print()
    elif args.format == "csv":
        w = csv.DictWriter(sys.stdout, fieldnames=["file", *OUTPUT_NAMES])
        w.writeheader()
        w.writerows(rows)
    else:
        width = max([4] + [len(r["file"]) for r in rows])
        print(f"{'file':<{width}}  " + "  ".join(f"{n:>9}" for n in OUTPUT_NAMES))
        for r in rows:
            print(f"{r['file']:<{width}}  " + "  ".join(f"{r[n]:9.4f}" for n in OUTPUT_NAMES))
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wav2small", description="Speech emotion recognition: arousal, dominance, valence.")
    parser.add_argument("--version", action="version", version=f"wav2small {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="print arousal/dominance/valence of audio files")
    p.add_argument("files", nargs="+", help="audio files (any format soundfile reads, any sample rate)")
    p.add_argument("--model", default=None, help="a .w2s model file (default: the shipped model)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="format", action="store_const", const="json", help="JSON output")
    fmt.add_argument("--csv", dest="format", action="store_const", const="csv", help="CSV output")
    p.set_defaults(func=_predict, format="table")
    for ep in entry_points(group="wav2small.commands"):
        ep.load()(sub)  # each registers its own subparser and sets func
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
