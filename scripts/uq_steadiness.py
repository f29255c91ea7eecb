"""Which statistic of the log-mel tells the non-speech a head calls speech from the speech it hears?
(thirty-first round, docs/uncertainty.md)

    python scripts/uq_steadiness.py runs/rel/R37_s14/default.w2s ...   # --cache: training.uq_select's clips

For each released head (a .w2s with an uncertainty head) it takes, on training.uq_select's
validation clips only, the speech the head hears and the music, tone and effects clips it calls
speech by its speech logit and modulation alone (the steadiness, if the file has it, left out: this
is what chose it), and scores every clip by candidate statistics of the engine's own log-mel
(its trace), over blocks of 16 frames (32 ms):

  flux      mean absolute change of the bands between blocks (low: steady)
  peak      median over the louder half of the blocks of the loudest band above the bands' mean
  cent_sd   spread of the spectral centroid over the louder half of the blocks
  tilt      median low-minus-high band level over the louder half of the blocks
  level_sd  spread of the blocks' loudest band
  cosine    median over pairs of consecutive loud blocks (loudest band >= -10 dB) of the cosine
            of their shapes (bands minus the bands' mean): a held note keeps it near 1

and prints, per head and statistic, how many of the clips called speech lie beyond the 1 % of the
heard speech that is most like them (the statistic's 99th or 1st percentile over that speech,
whichever side the non-speech lies on), and how much of the noisy validation speech (white and
babble, 0-20 dB SNR) lies beyond it too.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from training.uq_select import DEFAULT_CACHE, N_VALUES, engine_runner, load_clips
from wav2small import Model, _engine

BLOCK = 16      # frames: 32 ms at a hop of 2 ms
LOUD_DB = -10.0


def statistics(logmel: np.ndarray) -> dict[str, float]:
    """The candidates of one clip's log-mel (T, F) in dB."""
    n = logmel.shape[0] // BLOCK
    b = logmel[: n * BLOCK].reshape(n, BLOCK, -1).mean(axis=1)
    top = b.max(axis=1)
    louder = top >= np.median(top)
    shape = b - b.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(shape, axis=1) + 1e-9
    cos = (shape[1:] * shape[:-1]).sum(axis=1) / (norm[1:] * norm[:-1])
    pair = (top[1:] >= LOUD_DB) & (top[:-1] >= LOUD_DB)
    weights = np.exp((b - top[:, None]) / 4.0)
    centroid = (weights * np.arange(b.shape[1])).sum(axis=1) / weights.sum(axis=1)
    half = b.shape[1] // 3
    return {"flux": float(np.abs(np.diff(b, axis=0)).mean()) if n > 1 else 0.0,
            "peak": float(np.median((top - b.mean(axis=1))[louder])),
            "cent_sd": float(centroid[louder].std()),
            "tilt": float(np.median((b[:, :half].mean(axis=1) - b[:, half:].mean(axis=1))[louder])),
            "level_sd": float(top.std()),
            "cosine": float(np.median(cos[pair])) if pair.any() else 0.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("heads", nargs="+", type=Path, help="released .w2s files with an uncertainty head")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="training.uq_select's clip cache")
    args = ap.parse_args(argv)
    for h in args.heads:
        if not h.is_file():
            ap.error(f"{h} is not a file")
        if not Model(h).has_uncertainty:
            ap.error(f"{h} has no uncertainty head: nothing calls its clips speech")
    data = load_clips(args.cache, print)
    trace_model = Model(args.heads[0])   # the log-mel is the front end's: the same for every head of one student

    def stats_of(clips: list[np.ndarray]) -> list[dict[str, float]]:
        return [statistics({s: a for s, _, a in trace_model._engine.trace(trace_model.prepare(c))}["logmel"]
                           / float(1 << _engine.Q_DB)) for c in clips]

    speech = stats_of(data["speech"])
    noisy = stats_of(data["noisy"])
    kinds = ("music", "tone", "effects")
    nonspeech = {k: stats_of(data["nonspeech"][k]) for k in kinds}
    for h in args.heads:
        run, (min_logit, _, min_mod, _) = engine_runner(h)

        def called(o: np.ndarray) -> np.ndarray:   # the decision without the steadiness
            return (o[:, 2 * N_VALUES] >= min_logit) & (o[:, 2 * N_VALUES + 1] >= min_mod)

        heard = called(run(data["speech"]))
        calls = {k: called(run(data["nonspeech"][k])) for k in kinds}
        print(f"{h}: hears {heard.sum()} of {len(heard)} speech clips; calls speech "
              + ", ".join(f"{k} {calls[k].sum()}" for k in kinds))
        for name in speech[0]:
            s = np.array([x[name] for x in speech])[heard]
            ns = np.array([x[name] for k in kinds for x, c in zip(nonspeech[k], calls[k]) if c])
            above = ns.size and np.median(ns) > np.median(s)
            bar = np.percentile(s, 99 if above else 1)
            beyond = (lambda v: v > bar) if above else (lambda v: v < bar)
            out = {k: sum(bool(beyond(x[name])) for x, c in zip(nonspeech[k], calls[k]) if c) for k in kinds}
            nz = np.array([x[name] for x in noisy])
            print(f"  {name:9s} {'>' if above else '<'} {bar:8.3f}: " + ", ".join(f"{k} {out[k]}/{calls[k].sum()}" for k in kinds)
                  + f"; noisy speech beyond it {np.mean(beyond(nz)):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
