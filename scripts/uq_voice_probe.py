"""Does a model hear a voice's flutter (the annotator's "rough" cue) or its pitch setting?
(thirty-fourth round, docs/uncertainty.md)

    python scripts/uq_voice_probe.py                       # grandma against f3, 40 draws, the shipped model
    python scripts/uq_voice_probe.py --variant=grandma --other=f3 --n=40 --w2s=wav2small/models/default.w2s

The annotator (training/prosody.py) labels a clip by its espeak-ng parameters; one of its cues is
the variant file's `flutter` (F0 jitter), another the pitch, relative to the variant's own `pitch`
line. This draws `--n` parameter sets as the annotator draws them for `--variant`, renders each
with the variant's file edited in a private espeak-ng data directory (espeak-ng --path; nothing
installed is touched): as it is, with the flutter it lacks (2, espeak-ng's default, for a rough
variant; 20 for a smooth one), with `--other`'s pitch line, both edits; and `--other` itself,
plain and with the flutter it lacks. Every edit
keeps the draw (text, pitch, rate, range, amplitude), so what moves the model's A/D/V is the edit.
Prints per edit the model's mean A/D/V, its mean absolute error against the annotator's targets
for `--variant` and for `--other` (the same draw), and the mean of the largest sigma (a model
with an uncertainty head).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np

from training import prosody, speech, variants
from training.speech import SynthParams, private_data
from wav2small import Model

SECONDS = 4.0


def render(params: SynthParams, variant: str, path: Path) -> np.ndarray:
    """One clip as the corpus renders it, as `variant` of the data under `path`, cut to SECONDS."""
    return speech.render(dataclasses.replace(params, variant=variant), str(path))[: int(SECONDS * 16000)]


def edits_of(variant: str, other: str) -> dict[str, tuple[str, dict[str, str]]]:
    """Row label -> (base variant, edits) for the probe's table."""
    def line(name: str, key: str, default: str) -> str:
        return variants.value(variants.installed(name), key, default)

    pitch = line(other, "pitch", "82 118")   # espeak-ng's defaults: pitch 82 118, flutter 2
    # the flutter the variant does not have already (2: none, 20: the annotator's "fully rough")
    flutter, other_flutter = ("2" if line(name, "flutter", "2") != "2" else "20" for name in (variant, other))
    return {variant: (variant, {}), f"{variant}, flutter {flutter}": (variant, {"flutter": flutter}),
            f"{variant}, pitch {pitch}": (variant, {"pitch": pitch}),
            f"{variant}, pitch {pitch}, flutter {flutter}": (variant, {"pitch": pitch, "flutter": flutter}),
            other: (other, {}), f"{other}, flutter {other_flutter}": (other, {"flutter": other_flutter})}


def probe(model: Model, variant: str, other: str, n: int, seed: int) -> list[dict]:
    """One row per edit (edits_of): label, mean A/D/V, error against either variant's targets, sigma."""
    for name in (variant, other):
        prosody.variant_info(name)   # a clear error for a variant the annotator does not know
    rng = np.random.default_rng(seed)
    draws = [prosody.draw(rng, [prosody.variant_info(variant)]) for _ in range(n)]
    targets = {v: np.array([prosody.annotate(dataclasses.replace(p, variant=v)) for p in draws])
               for v in (variant, other)}
    rows = edits_of(variant, other)
    files = {f"probe{k}": variants.edited(variants.installed(base), f"probe{k}", edits)
             for k, (base, edits) in enumerate(rows.values())}
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        path = private_data(Path(tmp), files)
        for k, label in enumerate(rows):
            preds = [model.predict(render(p, f"probe{k}", path)) for p in draws]
            mean = np.array([q.as_array() for q in preds])
            sigma = [max(q.sigma) for q in preds if q.sigma is not None]
            out.append({"edit": label, "mean": mean.mean(axis=0).tolist(),
                        "error": {v: float(np.abs(mean - t).mean()) for v, t in targets.items()},
                        "sigma": float(np.mean(sigma)) if sigma else None})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--w2s", default="wav2small/models/default.w2s", help="model file")
    p.add_argument("--variant", default="grandma", help="the annotator's variant whose draws are rendered")
    p.add_argument("--other", default="f3", help="a variant to compare with (its pitch line, its targets)")
    p.add_argument("--n", type=int, default=40, help="parameter draws")
    p.add_argument("--seed", type=int, default=7, help="seed of the draws")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error(f"--n must be >= 1, got {args.n}")
    try:
        rows = probe(Model(args.w2s), args.variant, args.other, args.n, args.seed)
    except ValueError as e:
        p.error(str(e))
    v, o = args.variant, args.other
    print(f"{args.n} draws of {v} (seed {args.seed}), {args.w2s}; targets: the annotator's for {v} and for {o}\n")
    print(f"| edit | mean A / D / V | error vs {v}'s targets | error vs {o}'s targets | sigma (largest) |")
    print("|---|---|---|---|---|")
    for r in rows:
        sigma = "-" if r["sigma"] is None else f"{r['sigma']:.3f}"
        print(f"| {r['edit']} | " + " / ".join(f"{x:.3f}" for x in r["mean"])
              + f" | {r['error'][v]:.3f} | {r['error'][o]:.3f} | {sigma} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
