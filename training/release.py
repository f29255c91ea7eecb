"""Quantize a trained float model into the package's default model and write its model card.

    python -m training.release training/default       # reads model.safetensors + train.json there

Writes wav2small/models/default.w2s and wav2small/models/default.md. Calibration uses every
other clip of a spread of real Debian speech; fidelity (int8 engine vs float model) is measured on
the clips calibration did not see, so the card's numbers come from this run, not from memory.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np
import torch

from wav2small import Model
from wav2small.audio import load

from .export import write_model
from .model import OUTPUT_NAMES, load_safetensors
from .quantize import engine_fidelity, quantize
from .speech import CORE_SPEECH_SOURCES, debian_speech_files

PACKAGE_MODELS = Path(__file__).resolve().parent.parent / "wav2small" / "models"


def real_speech(n: int, seconds: float = 6.0) -> tuple[list[str], list[np.ndarray]]:
    """n clips spread over the core Debian speech packages (the same set on every machine)."""
    files = debian_speech_files(roots=CORE_SPEECH_SOURCES)
    if len(files) < n:
        raise SystemExit(f"need {n} real speech files, found {len(files)}: apt-get install "
                         "pocketsphinx-testdata alsa-utils asterisk-core-sounds-en-wav")
    picked = files[:: len(files) // n][:n]
    return [str(f) for f in picked], [load(f)[: int(seconds * 16000)] for f in picked]


def card(train: dict, fid: dict, nbytes: int, params: int) -> str:
    ccc = train.get("ccc", {})
    t = ccc.get("test", {})
    v = ccc.get("val", {})
    cfg = train.get("config", {})
    overrides = train.get("overrides", {})
    distill_args = " ".join(f"--{k}={v}" for k, v in overrides.items())
    out = overrides.get("out_dir", "runs/default")
    wall = f"{train['wall_seconds_this_invocation'] / 60:.0f} min" if "wall_seconds_this_invocation" in train else "minutes"

    def row(d: dict, fmt: str = ".3f") -> str:
        return " | ".join(f"{d.get(k, float('nan')):{fmt}}" for k in OUTPUT_NAMES)

    return f"""# Default model: Wav2Small distilled from a prosody annotator

**Not trained on human emotion ratings.** No arousal/dominance/valence model or emotion corpus can
be had on the machines this package is built on, so this model learned to reproduce a documented
*prosody annotator* (training/prosody.py): synthesised speech (espeak-ng) whose voice, pitch, pitch
range, speaking rate and voice quality are drawn at random, with A/D/V targets set from those
parameters by a rule table from the prosody–emotion literature. It tracks those acoustic cues in
real speech; it does not know how people rate emotions. For research-grade A/D/V, convert the
published audEERING weights or distil from a real teacher (README).

| | |
|---|---|
| architecture | Wav2Small, {params:,} trainable parameters (13 channels, 26 mels) |
| file | default.w2s, {nbytes:,} bytes, format version 1 |
| outputs | arousal, dominance, valence (nominally 0..1, not clipped) |
| training data | {train.get('clips', {}).get('train', '?')} synthesised clips ({cfg.get('n_clips', '?')} in the corpus, seed {cfg.get('seed', '?')}), split by voice |
| training | {cfg.get('max_iters', '?')} steps, batch {cfg.get('batch_size', '?')}, crops of {cfg.get('crop_seconds', '?')} s, loss 1 − CCC |

## CCC against the annotator (float model, held-out voices)

| split | arousal | dominance | valence |
|---|---|---|---|
| validation | {row(v)} |
| test | {row(t)} |

## int8 engine vs float model

Over {fid['clips']} real speech clips from Debian packages that calibration did not see:

| | arousal | dominance | valence |
|---|---|---|---|
| CCC (engine vs float) | {row(fid['ccc'], '.5f')} |
| max abs difference | {row(fid['max_abs_diff'], '.4f')} |
| float output std | {row(fid['float_std'], '.4f')} |

Quantization: calibrated on real speech from Debian packages (pocketsphinx-testdata, alsa-utils,
asterisk-core-sounds-en-wav); docs/numerics.md describes the integer arithmetic.

## Rebuild from nothing

```bash
python -m training.distill {distill_args}   # {wall} on 2 cores, deterministic
cp {out}/model.safetensors {out}/train.json training/default/
python -m training.release training/default                  # this card and default.w2s
```

The numbers above come from that release run ({datetime.date.today().isoformat()}).
"""


def release(src: Path, out_dir: Path = PACKAGE_MODELS, n_clips: int = 48) -> dict:
    model = load_safetensors(src / "model.safetensors")
    train = json.loads((src / "train.json").read_text()) if (src / "train.json").exists() else {}
    _, clips = real_speech(n_clips)
    calib, held_out = clips[0::2], clips[1::2]
    data = write_model(quantize(model, calib), out_dir / "default.w2s")
    fid = engine_fidelity(model, Model(out_dir / "default.w2s"), held_out)
    (out_dir / "default.md").write_text(card(train, fid, len(data), model.trainable_parameters()))
    return fid


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.release", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, help="directory with model.safetensors (and train.json)")
    p.add_argument("--out_dir", type=Path, default=PACKAGE_MODELS)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    fid = release(args.src, args.out_dir)
    print(json.dumps(fid, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
