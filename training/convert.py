"""Convert float Wav2Small weights (safetensors with audEERING's key names) to a .w2s model.

    python -m training.convert model.safetensors -o model.w2s [--header model.h] [--calib FILE_OR_DIR ...]
    wav2small convert model.safetensors -o model.w2s          # the same, through the wav2small CLI

Quantization is calibrated on speech: the files given with --calib (audio files or directories),
or else real speech taken in turn from the Debian packages pocketsphinx-testdata, alsa-utils and
asterisk-core-sounds-en-wav (training.speech.CORE_SPEECH_SOURCES).
Needs PyTorch (pip install 'wav2small[train]').
"""
from __future__ import annotations

import argparse
import re
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .cli import HelpFormatter

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au"}


def calibration_files(paths: list[str]) -> list[Path]:
    """Audio files named directly or found (recursively, sorted) in the named directories."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"calibration path {p} does not exist")
    return files


def load_calibration(paths: list[str], limit: int = 64, seconds: float = 8.0,
                     log: Callable[[str], None] = lambda msg: None) -> list[np.ndarray]:
    """Up to `limit` clips of at most `seconds`, mono float32 at 16 kHz."""
    from wav2small.audio import load

    if paths:
        files = calibration_files(paths)
        picked = files[:: max(1, len(files) // limit)][:limit]
    else:
        from .speech import spread_speech

        picked = files = spread_speech(limit)   # every package's speakers, not one package's
    if not files and paths:   # a ValueError: the command's one-line "wav2small convert: ..." and status 2
        raise ValueError(f"no calibration audio in --calib {' '.join(paths)}: give audio files or directories "
                         f"holding some ({', '.join(sorted(AUDIO_SUFFIXES))})")
    if not files:
        raise ValueError("no calibration speech: pass --calib FILES_OR_DIRS, or install Debian speech packages "
                         "(apt-get install pocketsphinx-testdata alsa-utils)")
    log(f"calibrating on {len(picked)} clips of {'the given audio' if paths else 'Debian speech'}")
    return [load(f)[: int(seconds * 16000)] for f in picked]


def header_array_name(header: str) -> str:
    """The C array's name for a header path: its file name made an identifier (`8k model.h` ->
    `w2s_8k_model_data`). Any file name a shell accepts must do: a name that is not an identifier
    used to fail only after the calibration, with the .w2s written and no header."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", Path(header).stem) + "_data"
    return "w2s_" + name if name[0].isdigit() else name


def convert(weights: str, out: str, header: str | None = None, calib: list[str] | None = None,
            headroom: float = 2.0, log: Callable[[str], None] = lambda msg: None) -> bytes:
    from .export import write_header, write_model
    from .model import NotSafetensorsError, load_safetensors
    from .quantize import quantize

    if headroom <= 0:
        raise ValueError(f"headroom must be > 0, got {headroom}")
    if Path(weights).is_dir():
        raise ValueError(f"{weights} is a directory: give its model.safetensors")
    for target in (out, header):   # the float weights must survive the conversion
        if target and Path(target).exists() and Path(target).resolve() == Path(weights).resolve():
            raise ValueError(f"the output {target} is the input weights file: choose another path")
    from wav2small import _engine

    try:
        model = load_safetensors(weights)
    except NotSafetensorsError as e:   # safetensors' words ("header too large") do not name the file's problem
        with open(weights, "rb") as f:   # the magic the exporter writes (training/export.py)
            is_w2s = f.read(4) == struct.pack("<I", _engine.FORMAT_MAGIC)
        hint = " (it is already a .w2s model)" if is_w2s else ""
        raise ValueError(f"{weights} is not a safetensors weights file{hint}: {e.__cause__}") from None
    qm = quantize(model, load_calibration(calib or [], log=log), headroom=headroom)
    data = write_model(qm, out)
    if header:
        write_header(data, header, name=header_array_name(header), source=Path(weights).name)
    return data


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("weights", help="float weights: model.safetensors with the published key names")
    p.add_argument("-o", "--out", required=True, help="output .w2s file")
    p.add_argument("--header", default=None, help="also write a C header with the model bytes")
    p.add_argument("--calib", nargs="*", default=[], help="calibration audio files or directories")
    p.add_argument("--headroom", type=float, default=2.0, help="range above the calibration maximum for pooled values")


def _run(args: argparse.Namespace) -> int:
    try:   # everything convert imports beyond the runtime package
        import safetensors  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        print(f"wav2small convert needs the training extras ({e.name} is not installed): "
              "pip install torch==2.13.0 'wav2small[train]' (in a checkout: pip install -e '.[train]')",
              file=sys.stderr)
        return 2
    from safetensors import SafetensorError

    from wav2small.errors import Wav2SmallError

    from .model import PublishedWeightsError
    from .quantize import QuantizationError

    try:
        data = convert(args.weights, args.out, args.header, args.calib, args.headroom,
                       log=lambda msg: print(f"wav2small convert: {msg}", file=sys.stderr, flush=True))
    except (OSError, ValueError, SafetensorError, PublishedWeightsError, QuantizationError,
            Wav2SmallError) as e:
        print(f"wav2small convert: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({len(data)} bytes)" + (f" and {args.header}" if args.header else ""))
    return 0


def register(subparsers) -> None:
    """Entry point of the wav2small CLI (group "wav2small.commands"); imports nothing heavy."""
    p = subparsers.add_parser("convert", help="convert float safetensors weights to a .w2s model",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=_run)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.convert", description=__doc__,
                                formatter_class=HelpFormatter)
    add_arguments(p)
    return _run(p.parse_args(argv))


if __name__ == "__main__":
    import training.cli

    training.cli.run(main, "python -m training.convert")
