"""Where a model's sensitivity to the lowest input bits comes from: digital silence or the sound.

    python scripts/uq_lowbits.py wav2small/models/default.w2s [other.w2s ...]

For every model (int8, through the C engine) and every clip: the clip as int16, and the same with
+-1 LSB of random noise (uniform on -1, 0, 1) added (a) everywhere, (b) only inside digital silence
(samples whose 64-sample neighbourhood is at least 90 % exact zeros), (c) only outside it. Prints the
mean absolute change of A/D/V per condition, for real speech of training.corpus's test speaker
groups as packaged (cut to 4 s, untrimmed: some files carry seconds of zeros) and for the
annotator's held-out espeak-ng clips (4 s). A microphone never delivers exact zeros; files do.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training.distill import TrainConfig, load_prosody_corpus  # noqa: E402
from training.uncertainty import real_speech  # noqa: E402
from wav2small import Model  # noqa: E402
from wav2small.model import to_int16  # noqa: E402

SECONDS = 4.0


def silence_mask(pcm: np.ndarray, width: int = 64) -> np.ndarray:
    """Samples inside digital silence: at least 90 % exact zeros in their `width` neighbourhood."""
    zeros = np.convolve((pcm == 0).astype(np.float64), np.ones(width), "same")
    return zeros >= 0.9 * width


def clips(n_espeak: int, per_group: int) -> dict[str, list[np.ndarray]]:
    n = int(SECONDS * 16000)
    test = load_prosody_corpus(TrainConfig(n_clips=3000, seed=0), 16000, lambda m: None)["test"]
    espeak = [c[:n].astype(np.int16) for c in test.clips[:n_espeak]]
    real = [to_int16(a[:n]) for _, a in real_speech(("test",), per_group, 0)]
    return {"real speech (test groups)": real, "espeak-ng (test voices)": espeak}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", type=Path, help=".w2s files")
    p.add_argument("--espeak", type=int, default=60, help="held-out espeak-ng clips")
    p.add_argument("--per_group", type=int, default=15, help="real speech files per test speaker group")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    sets = clips(args.espeak, args.per_group)
    print("| model | clips | digital silence | +-1 LSB everywhere | only in digital silence | only outside it |")
    print("|---|---|---|---|---|---|")
    for path in args.models:
        model = Model(path)
        adv = lambda pcm: model.predict(pcm).as_array()  # noqa: E731
        for name, pcms in sets.items():
            rng = np.random.default_rng(args.seed)
            moved = {"all": [], "silence": [], "sound": []}
            share = []
            for pcm in pcms:
                noise = rng.integers(-1, 2, len(pcm))
                quiet = silence_mask(pcm)
                share.append(quiet.mean())
                base = adv(pcm)
                for key, where in (("all", 1), ("silence", quiet), ("sound", ~quiet)):
                    x = np.clip(pcm.astype(np.int32) + noise * where, -32768, 32767).astype(np.int16)
                    moved[key].append(np.abs(adv(x) - base).mean())
            print(f"| {path} | {name}: {len(pcms)} | {np.mean(share):.0%} | " + " | ".join(
                f"{np.mean(moved[k]):.4f} (max {np.max(moved[k]):.3f})" for k in ("all", "silence", "sound")) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
