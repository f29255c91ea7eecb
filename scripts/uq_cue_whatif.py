"""Would the selective curve fall against an annotator without the cue the student cannot hear?
(thirty-eighth round, docs/uncertainty.md)

    python scripts/uq_cue_whatif.py                          # the shipped model, the report's clips
    python scripts/uq_cue_whatif.py --w2s=wav2small/models/default.w2s --without=rough --without=rough,breathy

The annotator (training/prosody.py) labels each clip by a rule table over its espeak-ng parameters.
Its "rough" cue is the variant file's flutter, which the student does not hear
(scripts/uq_voice_probe.py), and it carries most of the report's selective error (one held-out
rough voice, grandma). This keeps the report's clips and the engine's outputs on them
(training.uq_report's evaluation set, the same seed and cuts) and only annotates them again with
some cues' rules set to zero, then measures what the report measures of the selective curve:
area and rises of 19, what 200 random orders of the same clips do, the voice-known oracle, and
Spearman(sigma, error) over the clean clips; then how well each of the engine's other per-clip
outputs ranks the clean clips' error (Spearman). The model is not retrained, so this is the most that
annotator change could give the head as it is: a student trained on the other targets would
differ, mostly on the training split's rough voices.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training import prosody  # noqa: E402
from training.uq_report import REPORT_SET, report_eval_set, run_engine, selective_measures, spearman  # noqa: E402
from wav2small import Model  # noqa: E402


def test_items(n_clips: int) -> list[prosody.ProsodyItem]:
    """The test split of the corpus the report draws its annotated clips from, in its order."""
    return [it for it in prosody.build_corpus(n_clips, 0) if it.split == "test"]


def summarise(label: str, mean: np.ndarray, unc: np.ndarray, targets: np.ndarray,
              corrupted: list[tuple[int, str, float]], voices: list[str]) -> dict:
    n = len(targets)
    curve, _ = selective_measures(mean, unc, targets, n, corrupted, voices)
    err_clean = np.abs(mean[:n] - targets).mean(axis=1)
    r = curve["random"]
    row = {"targets": label, "error_100": curve["mean_abs_error"][0], "area": curve["area"], "rises": curve["rises"],
           "random_area": f'{r["area_mean"]:.4f} ± {r["area_sd"]:.4f}',
           "random_rises": f'{r["rises_mean"]:.1f} ± {r["rises_sd"]:.1f}',
           "random_share": r["share_area_at_most_own"],
           "voice_known": (curve["bounds"]["voice_known"]["area"], curve["bounds"]["voice_known"]["rises"]),
           "spearman_sigma_error_clean": spearman(unc[:n], err_clean),
           "worst_voices": [(v["voice"], round(v["error"], 3)) for v in curve["by_voice"][:3]]}
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/uq_cue_whatif.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--w2s", default="wav2small/models/default.w2s", help="model with an uncertainty head")
    p.add_argument("--without", action="append", default=None,
                   help="comma-separated cues of the rule table to set to zero; repeat for more rows "
                        f"(cues: {', '.join(prosody.RULES)}; default: rough, and rough,breathy)")
    args = p.parse_args(argv)
    drops = [set(s.split(",")) for s in (args.without or ["rough", "rough,breathy"])]
    for d in drops:
        if not d <= set(prosody.RULES):
            p.error(f"unknown cue(s) {sorted(d - set(prosody.RULES))}; the rule table has {', '.join(prosody.RULES)}")

    ev = report_eval_set(lambda m: print(m, file=sys.stderr))
    items = test_items(REPORT_SET["n_clips"])
    chosen = [items[i] for i in ev.picked]
    as_annotated = np.stack([prosody.annotate(it.params) for it in chosen])
    if not np.array_equal(as_annotated, ev.targets):
        raise SystemExit("the corpus' test split is not the report's (a clip could not be rendered?): "
                         "the targets do not match")
    voices = [it.params.variant or "" for it in chosen]

    res = run_engine(args.w2s)(ev.annotated + [a for *_, a in ev.corrupted])
    unc = res.uncertainty
    targets = [ev.targets] + [np.stack([prosody.annotate(it.params, d) for it in chosen]) for d in drops]
    labels = ["as annotated"] + ["without " + " and ".join(sorted(d)) for d in drops]
    rows = [summarise(label, res.mean, unc, t, ev.cells, voices) for label, t in zip(labels, targets)]

    # what else the pass gives per clip, against each set of targets' clean error
    model = Model(args.w2s)
    preds = [model.predict(c) for c in ev.annotated]
    n = len(ev.targets)
    signals = {"largest σ": unc[:n], "σ arousal": res.sigma[:n, 0], "σ dominance": res.sigma[:n, 1],
               "σ valence": res.sigma[:n, 2], "speech probability": res.speech[:n],
               "modulation": np.array([q.modulation_db for q in preds]),
               "steadiness": np.array([q.steady for q in preds]),
               "A/D/V's distance from the middle": np.abs(res.mean[:n] - 0.5).mean(axis=1)}

    print("| targets | error at 100 % | area | rises of 19 | 200 random orders: area | rises | share no larger "
          "| voice known: area, rises | Spearman(σ, error), clean | worst voices |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f'| {r["targets"]} | {r["error_100"]:.4f} | {r["area"]:.4f} | {r["rises"]} | {r["random_area"]} '
              f'| {r["random_rises"]} | {r["random_share"]:.0%} | {r["voice_known"][0]:.4f}, {r["voice_known"][1]} '
              f'| {r["spearman_sigma_error_clean"]:.3f} | '
              + ", ".join(f"{v} {e}" for v, e in r["worst_voices"]) + " |")
    print()
    print("| Spearman with the clean clips' error | " + " | ".join(r["targets"] for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for name, v in signals.items():
        print(f"| {name} | " + " | ".join(f"{spearman(v, np.abs(res.mean[:n] - t).mean(axis=1)):+.3f}"
                                        for t in targets) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
