"""The uncertainty report: Markdown + JSON + PNG plots (issue 4), from one command.

    python -m training.uq_report --w2s=wav2small/models/default.w2s --base=training/default \\
        --ensemble=training/default,training/ens1,training/ens2 --out=docs/uncertainty-report

Everything here runs on audio no training run saw: the prosody annotator's espeak-ng clips of the
held-out (test) voices, real speech of training.corpus's test speaker groups (leading and trailing
digital silence trimmed: some packaged recordings start with seconds of it), and training.ood's
"eval" non-speech (other files and generators than the uncertainty head was trained on).

Methods compared on the same clips:
  engine   the shipped int8 model through the C engine: sigma per dimension and a speech logit
           from the same pass (training/uncertainty.py)
  mc       MC dropout: the base student (--base) fine-tuned with dropout on the head input, then 20
           stochastic passes (PyTorch); uncertainty = std of the passes
  ensemble a deep ensemble of independently distilled students (--ensemble, PyTorch); std of members
  silero   silero-vad (speech vs non-speech only), the PyPI package's ONNX model

Measurements: AUROC of each uncertainty for speech vs each non-speech kind; uncertainty vs SNR of
corrupted speech (Spearman over clips); selective prediction (error against the annotator as the
most uncertain clips are dropped, and its area) and, per corruption and per voice, mean error and
uncertainty, with partial oracles that know a clip's corruption, voice or source clip;
how the engine's decision splits each kind, and how it would at other thresholds (--max_sigmas,
--min_speech_probs, --min_modulations): how much noisy speech is answered for how much non-speech
called speech.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from wav2small import Model, Thresholds, _engine

from .cli import HelpFormatter
from .files import atomic_path, write_atomic
from .metrics import ccc_numpy
from .ood import SNR_KINDS
from .teachers import model_stamp
from .uncertainty import N_VALUES

# the SNRs (white noise and babble) of the operating-points table: where a noisy place's speech lies
OPERATING_SNRS = (0.0, 5.0, 10.0)

# ------------------------------------------------------------------------------------------------
# metrics (plain numpy, tested in tests/test_uncertainty.py)


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties count half (Mann-Whitney U)."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    i = 0
    while i < len(allv):  # average ranks over ties
        j = i
        while j + 1 < len(allv) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    def rank(x: np.ndarray) -> np.ndarray:
        return np.argsort(np.argsort(x, kind="mergesort"), kind="mergesort").astype(np.float64)
    ra, rb = rank(np.asarray(a)), rank(np.asarray(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def selective_curve(err: np.ndarray, unc: np.ndarray, steps: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Mean error of the clips kept when the most uncertain are dropped: coverage 1 .. 1/steps."""
    order = np.argsort(unc, kind="mergesort")  # most certain first
    cover = np.linspace(1.0, 1.0 / steps, steps)
    mean_err = np.array([err[order[: max(1, int(round(c * len(err))))]].mean() for c in cover])
    return cover, mean_err


def by_corruption(err_clean: np.ndarray, unc_clean: np.ndarray, err: np.ndarray, unc: np.ndarray,
                  cells: list[tuple[int, str, float]], mean_clean: np.ndarray, mean: np.ndarray) -> dict:
    """Mean error and mean uncertainty per (corruption, level) cell, against the same clips clean,
    and the spread of the outputs (`mean_clean`, `mean`: (N, 3)): their standard deviation over the
    cell's clips, averaged over A/D/V.

    Selective prediction works when uncertainty and error rise together; this table says, per
    corruption, whether they do (Spearman over the cells). Outputs that spread less than clean
    ones are pulled toward the middle, which can lower the absolute error of a student that is
    unsure anyway."""
    clips = sorted({i for i, _, _ in cells})
    keys = list(dict.fromkeys((kind, level) for _, kind, level in cells))

    def spread(x: np.ndarray) -> float:
        return float(np.asarray(x, np.float64).std(axis=0).mean())

    rows = []
    for kind, level in keys:
        m = np.array([(k, lv) == (kind, level) for _, k, lv in cells])
        rows.append({"kind": kind, "level": level, "error": float(err[m].mean()),
                     "sigma": float(unc[m].mean()), "spread": spread(mean[m])})
    return {"clean": {"error": float(err_clean[clips].mean()), "sigma": float(unc_clean[clips].mean()),
                      "clips": len(clips), "spread": spread(mean_clean[clips])},
            "cells": rows,
            "spearman_cells": spearman(np.array([r["error"] for r in rows]), np.array([r["sigma"] for r in rows]))}


def selective_measures(mean: np.ndarray, unc: np.ndarray, targets: np.ndarray, n_clean: int,
                       corrupted: list[tuple[int, str, float]],
                       voices: Sequence[str] | None = None) -> tuple[dict, dict]:
    """Selective prediction over clips [0, n_clean) and their corrupted copies after them
    (`corrupted`: (clean clip index, kind, level) per copy): mean (N, 3) against the clean clips'
    targets, uncertainty (N,); `voices`: the voice of each clean clip, for the voice oracles and the
    table per voice. Returns the curve with its area, the oracle's area, whether the error falls
    monotonically and how often it rises, and what random rankings of the same clips do
    (random_ranking); and by_corruption's table."""
    t = np.concatenate([targets, targets[[i for i, _, _ in corrupted]]])
    err = np.abs(mean - t).mean(axis=1)
    cover, mean_err = selective_curve(err, unc)
    _, oracle = selective_curve(err, err)
    rises = count_rises(mean_err)
    curve = {"coverage": cover.tolist(), "mean_abs_error": mean_err.tolist(), "area": area(cover, mean_err),
             "oracle_area": area(cover, oracle), "monotonic": rises == 0, "rises": rises,
             "bounds": error_sources(err, n_clean, corrupted, voices, unc), "ccc_bins": ccc_bins(mean, t, unc)}
    curve["random"] = random_ranking(err, curve["area"])
    if voices is not None:
        curve["by_voice"] = by_voice(mean[:n_clean], unc[:n_clean], targets, voices)
    return curve, by_corruption(err[:n_clean], unc[:n_clean], err[n_clean:], unc[n_clean:], corrupted,
                                mean[:n_clean], mean[n_clean:])


def ccc_bins(mean: np.ndarray, targets: np.ndarray, unc: np.ndarray, bins: int = 5) -> list[float]:
    """The paper's selective measure (papers.md 1.5): clips sorted by uncertainty, most certain first,
    cut into `bins` equal bins; CCC against the targets in each, averaged over A/D/V. A bin's CCC also
    depends on how widely its targets spread, so it can fall where the error does not rise."""
    order = np.argsort(unc, kind="mergesort")
    return [float(np.nanmean(ccc_numpy(mean[b], targets[b]))) for b in np.array_split(order, bins)]


def group_means(values: np.ndarray, keys: Sequence) -> np.ndarray:
    """Each element's group mean: the mean of `values` over the elements with the same key."""
    _, inv = np.unique(np.asarray(keys), return_inverse=True)
    return (np.bincount(inv, weights=values) / np.bincount(inv))[inv]


def error_sources(err: np.ndarray, n_clean: int, corrupted: list[tuple[int, str, float]],
                  voices: Sequence[str] | None = None, unc: np.ndarray | None = None) -> dict:
    """What an uncertainty could reach on this set: the curves of partial oracles, one that knows
    only each clip's corruption (it ranks a clip by the mean error of its (kind, level) cell, clean
    being a cell) and one that knows only which clean clip a clip was made from (it ranks a clip by
    the mean error of that clip and its copies), and the share of the error's variance between
    those groups. A sigma that follows the corruption can do at best what the first does: when
    corrupted cells have less error than clean speech, its curve falls only by calling clean speech
    the most uncertain. With `voices` (the voice of each clean clip), two more: one that knows only
    the voice (the mean error of the voice's clips and their copies), the most a sigma that knows
    which voices are unfamiliar could use, and one that knows voice and corruption (the two means
    added); with `unc` as well, the method's own uncertainty given that knowledge of voices: whole
    voices ranked by their error, clips within a voice by `unc`."""
    cell = ["clean"] * n_clean + [f"{kind} {level:g}" for _, kind, level in corrupted]
    source = np.concatenate([np.arange(n_clean), [i for i, _, _ in corrupted]])
    by_cell = group_means(err, cell)
    cell_mean = {c: float(m) for c, m in zip(cell, by_cell)}   # each cell's mean, in order of first use
    oracles = [("corruption_known", by_cell), ("clip_known", group_means(err, source))]
    if voices is not None:
        if len(voices) != n_clean:
            raise ValueError(f"voices: one per clean clip ({n_clean}), got {len(voices)}")
        by_voice = group_means(err, np.asarray(voices)[source])
        oracles += [("voice_known", by_voice), ("voice_and_corruption_known", by_voice + by_cell)]
        if unc is not None:   # voices by error (0, 1, ...), clips by unc's rank scaled into [0, 1)
            voice_rank = np.unique(by_voice, return_inverse=True)[1]
            within = np.argsort(np.argsort(unc, kind="mergesort"), kind="mergesort") / len(unc)
            oracles.append(("voice_known_sigma_within", voice_rank + within))
    clean = cell_mean.pop("clean")
    out: dict = {"cells_below_clean": sum(v < clean for v in cell_mean.values()), "cells": len(cell_mean)}
    for name, u in oracles:
        cover, e = selective_curve(err, u)
        out[name] = {"area": area(cover, e), "rises": count_rises(e)}
        if name != "voice_known_sigma_within":   # a ranking, not an error: its variance says nothing
            out[name]["variance_share"] = float(np.var(u) / np.var(err)) if np.var(err) > 0 else 0.0
    return out


def by_voice(mean: np.ndarray, unc: np.ndarray, targets: np.ndarray, voices: Sequence[str]) -> list[dict]:
    """Per voice of the clean clips, worst first: clips, mean absolute error (mean of A/D/V), mean
    uncertainty, and the mean signed error of each of A/D/V (a student that is wrong about a whole
    voice errs the same way on each of its clips, which no per-clip noise explains)."""
    v = np.asarray(voices)
    rows = []
    for name in sorted(set(v.tolist())):
        m = v == name
        diff = mean[m] - targets[m]
        rows.append({"voice": name, "clips": int(m.sum()), "error": float(np.abs(diff).mean()),
                     "sigma": float(unc[m].mean()), "bias": diff.mean(axis=0).tolist()})
    return sorted(rows, key=lambda r: -r["error"])


def random_ranking(err: np.ndarray, own_area: float, n: int = 200, seed: int = 0) -> dict:
    """What a ranking that knows nothing does on these errors: the selective curves of `n` random
    orders of the clips (seeded), their area and rises as mean and standard deviation, the 5th and
    95th percentile of their error at each coverage (the plot's band), and the share of them whose
    area is at most `own_area`, the method's (near 0: the method ranks the error better than chance;
    near 0.5 or above: no better). Rises are counted on the same 20 steps as the method's, so their
    count means something only beside this one."""
    rng = np.random.default_rng(seed)
    runs = [selective_curve(err, rng.permutation(len(err))) for _ in range(n)]
    cover, curves = runs[0][0], np.array([c for _, c in runs])
    areas = np.array([area(cover, c) for c in curves])
    rises = np.array([count_rises(c) for c in curves])
    return {"n": n, "area_mean": float(areas.mean()), "area_sd": float(areas.std()),
            "rises_mean": float(rises.mean()), "rises_sd": float(rises.std()),
            "share_area_at_most_own": float(np.mean(areas <= own_area)),
            "band_5": np.percentile(curves, 5, axis=0).tolist(), "band_95": np.percentile(curves, 95, axis=0).tolist()}


def count_rises(mean_err: np.ndarray) -> int:
    """How often a selective curve's error rises as coverage shrinks (0: it falls monotonically)."""
    return int(np.sum(np.diff(mean_err) > 1e-12))


def area(cover: np.ndarray, mean_err: np.ndarray) -> float:
    """Area under the error-coverage curve (lower is better), normalised to the coverage span."""
    return float(np.trapezoid(mean_err[::-1], cover[::-1]) / (cover.max() - cover.min()))


def _floats(text: str, flag: str) -> list[float]:
    """A comma-separated list of numbers given on the command line."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{flag}: expected comma-separated numbers, got {text!r}") from None


def threshold_grid(default: Thresholds, max_sigmas: Sequence[float], min_speech_probs: Sequence[float],
                   min_modulations: Sequence[float] = ()) -> list[Thresholds]:
    """Every combination of the given values and the model's own, the model's own first (modulation
    outermost, then speech probability, then sigma); a value given twice (or equal to the model's)
    makes one row, not two."""
    sigmas = dict.fromkeys([default.max_sigma, *max_sigmas])
    probs = dict.fromkeys([default.min_speech_prob, *min_speech_probs])
    mods = dict.fromkeys([default.min_modulation_db, *min_modulations])
    return [Thresholds(s, q, m) for m in mods for q in probs for s in sigmas]


def operating_points(groups: dict[str, tuple[Callable[[Thresholds], list[str]], np.ndarray, np.ndarray | None]],
                     grid: Sequence[Thresholds]) -> list[dict]:
    """The decision at other thresholds. `groups`: name -> (the decision of a set of clips under given
    thresholds, a mask picking the group's clips from that set, the group's per-clip errors or None).
    Per thresholds of `grid`: the share of each group called reliable and, where errors are given,
    the mean error of the clips answered (None when none is)."""
    rows = []
    for th in grid:
        row: dict = {"max_sigma": th.max_sigma, "min_speech_prob": th.min_speech_prob,
                     "min_modulation_db": th.min_modulation_db, "reliable": {}, "error": {}}
        decided: dict[int, np.ndarray] = {}   # one decision run per set of clips, shared by its groups
        for name, (redecide, mask, err) in groups.items():
            if id(redecide) not in decided:
                decided[id(redecide)] = np.array([d == "reliable" for d in redecide(th)])
            ok = decided[id(redecide)][mask]
            row["reliable"][name] = float(ok.mean())
            if err is not None:
                row["error"][name] = float(err[ok].mean()) if ok.any() else None
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------
# data


@dataclass
class EvalSet:
    speech: list[tuple[str, np.ndarray]]                   # (group, float32 16 kHz): espeak test + real
    nonspeech: dict[str, list[np.ndarray]]                 # kind -> clips
    annotated: list[np.ndarray]                            # espeak test clips (clean)
    targets: np.ndarray                                    # (N, 3)
    corrupted: list[tuple[int, str, float, np.ndarray]] = field(default_factory=list)  # (clip idx, kind, level, audio)
    picked: list[int] = field(default_factory=list)   # each annotated clip's index in the corpus' test split

    @property
    def cells(self) -> list[tuple[int, str, float]]:
        """(clean clip index, kind, level) of each corrupted copy, in order: what selective_measures takes."""
        return [(i, kind, level) for i, kind, level, _ in self.corrupted]


# the report's evaluation set as its command builds it by default (main's defaults): the probes in
# scripts/ that measure on the report's own clips build it through report_eval_set
REPORT_SET = {"n_annotated": 150, "real_per_group": 15, "ood_per_kind": 60, "seconds": 4.0, "corrupt_clips": 30,
              "seed": 0, "n_clips": 3000}


def report_eval_set(log: Callable[[str], None]) -> EvalSet:
    """build_eval_set with the report's defaults (REPORT_SET): the clips the committed report measured."""
    return build_eval_set(log=log, **REPORT_SET)


def build_eval_set(n_annotated: int, real_per_group: int, ood_per_kind: int, seconds: float,
                   corrupt_clips: int, seed: int, log: Callable[[str], None], n_clips: int = 3000) -> EvalSet:
    from .distill import TrainConfig, load_prosody_corpus
    from .ood import CORRUPTIONS, make_babble, nonspeech
    from .uncertainty import corrupt_with_bank, real_speech

    n = int(seconds * 16000)
    test = load_prosody_corpus(TrainConfig(n_clips=n_clips, seed=0), 16000, log)["test"]
    pick = np.random.default_rng([seed, 1]).permutation(len(test))[:n_annotated]
    annotated = [test.clips[i][:n].astype(np.float32) / 32768.0 for i in pick]
    targets = test.targets[pick]
    # "val" set the thresholds; leading digital silence trimmed, or a 4 s cut can hold no speech
    real = [(g, a[:n]) for g, a in real_speech(("test",), real_per_group, seed, trim=True)]
    speech = [("espeak-ng:" + test.voices[i], a) for i, a in zip(pick, annotated)] + real
    ns: dict[str, list[np.ndarray]] = {}
    for c in nonspeech("eval", seed=seed, max_per_kind=ood_per_kind):
        ns.setdefault(c.kind, []).append(c.audio[:n])
    rng = np.random.default_rng([seed, 2])
    # babble of evaluation voices, made once (each one reads many files)
    bank = [make_babble("eval", n, rng)[0] for _ in range(8)]
    corrupted = [(i, kind, float(level), corrupt_with_bank(annotated[i], kind, level, rng, bank, "eval"))
                 for i in range(min(corrupt_clips, len(annotated)))
                 for kind, levels in CORRUPTIONS.items() for level in levels]
    log(f"eval set: {len(annotated)} annotated + {len(real)} real speech clips, "
        + ", ".join(f"{k} {len(v)}" for k, v in ns.items()) + f", {len(corrupted)} corrupted")
    return EvalSet(speech, ns, annotated, targets, corrupted, pick.tolist())


# ------------------------------------------------------------------------------------------------
# methods: each maps clips -> (mean (N, 3), sigma (N, 3), speech score (N,) or None)


@dataclass
class Result:
    mean: np.ndarray
    sigma: np.ndarray
    speech: np.ndarray | None = None   # higher = more speech-like
    decision: list[str] | None = None
    seconds: float = 0.0               # wall time of the whole call
    # the decision of every clip under other thresholds, from the same outputs (the engine only)
    redecide: Callable[[Thresholds], list[str]] | None = None

    @property
    def uncertainty(self) -> np.ndarray:
        """One number per clip: the largest sigma over the dimensions."""
        return self.sigma.max(axis=1)


def run_engine(w2s_path: str) -> Callable[[list[np.ndarray]], Result]:
    model = Model(w2s_path)

    def run(clips: list[np.ndarray]) -> Result:
        t0 = time.perf_counter()
        fixed = [model.predict_fixed(c) for c in clips]
        preds = [model.from_fixed(q) for q in fixed]
        seconds = time.perf_counter() - t0
        return Result(np.array([p.as_array() for p in preds], np.float64),
                      np.array([p.sigma for p in preds], np.float64),
                      np.array([p.speech_prob for p in preds], np.float64),
                      [p.decision for p in preds], seconds,
                      lambda th: [model.from_fixed(q, th).decision for q in fixed])
    return run


class HeadDropout(torch.nn.Module):
    """A Wav2Small with dropout on the 338 head inputs: the layer MC dropout samples."""

    def __init__(self, base, p: float):
        super().__init__()
        self.base, self.drop = base, torch.nn.Dropout(p)

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        v = self.base.vgg7
        return self.base.adv(self.drop(v.features(v.logmel(pcm))))


def train_mc_dropout(base_dir: str, p: float, steps: int, seed: int, log: Callable[[str], None],
                     n_clips: int = 3000) -> HeadDropout:
    """Fine-tune the base student with head dropout on clean annotated train clips (CCC loss)."""
    from .distill import TrainConfig, load_prosody_corpus
    from .metrics import ccc_torch
    from .model import load_safetensors
    from .uncertainty import crop

    torch.manual_seed(seed)
    model = HeadDropout(load_safetensors(Path(base_dir) / "model.safetensors"), p)
    train = load_prosody_corpus(TrainConfig(n_clips=n_clips, seed=0), 16000, log)["train"]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    rng = np.random.default_rng([seed, 3])
    for it in range(steps):
        model.train()
        idx = rng.integers(len(train), size=16)
        x = torch.from_numpy(np.stack([crop(train.clips[i], 32000, rng) for i in idx]).astype(np.float32) / 32768)
        loss = 1 - ccc_torch(model(x), torch.from_numpy(train.targets[idx]).float()).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % 100 == 0:
            log(f"mc dropout step {it}/{steps} loss {loss.item():.3f}")
    return model


def run_mc_dropout(model: HeadDropout, passes: int = 20) -> Callable[[list[np.ndarray]], Result]:
    def run(clips: list[np.ndarray]) -> Result:
        t0 = time.perf_counter()
        model.train()  # dropout on; BatchNorm must not update: freeze it
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
        mean, sd = [], []
        with torch.no_grad():
            for c in clips:
                x = torch.from_numpy(np.asarray(c, np.float32))[None].expand(passes, -1)
                y = model(x).numpy()
                mean.append(y.mean(0))
                sd.append(y.std(0))
        return Result(np.array(mean), np.array(sd), None, None, time.perf_counter() - t0)
    return run


def run_ensemble(dirs: list[str]) -> Callable[[list[np.ndarray]], Result]:
    from .model import load_safetensors

    members = [load_safetensors(Path(d) / "model.safetensors").eval() for d in dirs]

    def run(clips: list[np.ndarray]) -> Result:
        t0 = time.perf_counter()
        with torch.no_grad():
            ys = np.array([[m(torch.from_numpy(np.asarray(c, np.float32))[None])[0, :N_VALUES].numpy()
                            for m in members] for c in clips])  # (N, M, 3)
        return Result(ys.mean(1), ys.std(1), None, None, time.perf_counter() - t0)
    return run


# ------------------------------------------------------------------------------------------------
# the report


def evaluate(es: EvalSet, methods: dict[str, Callable[[list[np.ndarray]], Result]],
             silero: Callable[[list[np.ndarray]], np.ndarray] | None, log: Callable[[str], None],
             grid: Sequence[Thresholds] = ()) -> dict:
    """Every measure of the report for each method (and silero-vad); `grid`: the thresholds of the
    operating-points table, for methods that decide (the engine)."""
    speech = [a for _, a in es.speech]
    res: dict = {"auroc": {}, "snr": {}, "selective": {}, "corruptions": {}, "decisions": {}, "timing": {},
                 "operating_points": {}}
    seconds_speech = sum(len(a) for a in speech) / 16000
    for name, run in methods.items():
        log(f"running {name}")
        sp = run(speech)
        res["timing"][name] = {"ms_per_audio_second": 1000 * sp.seconds / seconds_speech}
        scores = {"sigma": (sp.uncertainty, {})}
        if sp.speech is not None:
            scores["1 - speech prob"] = (1 - sp.speech, {})
        ns_runs = {}
        for kind, clips in es.nonspeech.items():
            ns = ns_runs[kind] = run(clips)
            scores["sigma"][1][kind] = auroc(ns.uncertainty, sp.uncertainty)
            if sp.speech is not None:
                scores["1 - speech prob"][1][kind] = auroc(1 - ns.speech, 1 - sp.speech)
            if ns.decision is not None:
                res["decisions"].setdefault(name, {})[kind] = {d: ns.decision.count(d) / len(ns.decision)
                                                               for d in sorted(set(ns.decision))}
        for score, (_, per_kind) in scores.items():
            per_kind["all"] = float(np.mean(list(per_kind.values())))
            res["auroc"][f"{name}: {score}"] = per_kind
        if sp.decision is not None:
            res["decisions"].setdefault(name, {})["speech"] = {d: sp.decision.count(d) / len(sp.decision)
                                                               for d in sorted(set(sp.decision))}
        # corrupted speech: uncertainty vs SNR, and selective prediction on clean + corrupted
        clean = run(es.annotated)
        cor = run([a for *_, a in es.corrupted])
        snr_rows = [(j, lvl) for j, (_, kind, lvl, _) in enumerate(es.corrupted) if kind in SNR_KINDS]
        u = np.array([cor.uncertainty[j] for j, _ in snr_rows])
        snr = np.array([lvl for _, lvl in snr_rows])
        levels = sorted(set(snr.tolist()))
        res["snr"][name] = {"spearman_vs_minus_snr": spearman(u, -snr),
                            "levels": levels, "mean_sigma": [float(u[snr == lv].mean()) for lv in levels],
                            "clean_mean_sigma": float(clean.uncertainty.mean())}
        if cor.decision is not None:
            res["snr"][name]["answered"] = [float(np.mean([cor.decision[j] == "reliable"
                                                           for j, lv in snr_rows if lv == level])) for level in levels]
        if sp.redecide is not None and grid:
            src = [i for i, *_ in es.corrupted]
            err_cor = np.abs(cor.mean - es.targets[src]).mean(axis=1)
            groups = {"speech": (sp.redecide, np.ones(len(speech), bool), None),
                      "clean": (clean.redecide, np.ones(len(clean.mean), bool),
                                np.abs(clean.mean - es.targets).mean(axis=1))}
            for level in OPERATING_SNRS:
                mask = np.array([kind in SNR_KINDS and lvl == level for _, kind, lvl, _ in es.corrupted])
                groups[f"{level:g} dB"] = (cor.redecide, mask, err_cor[mask])
            groups.update({kind: (r.redecide, np.ones(len(r.mean), bool), None) for kind, r in ns_runs.items()})
            res["operating_points"][name] = operating_points(groups, grid)
        res["selective"][name], res["corruptions"][name] = selective_measures(
            np.concatenate([clean.mean, cor.mean]), np.concatenate([clean.uncertainty, cor.uncertainty]),
            es.targets, len(clean.mean), es.cells,
            [group for group, _ in es.speech[:len(es.annotated)]])
    if silero is not None:
        log("running silero-vad")
        t0 = time.perf_counter()
        sp = silero(speech)
        res["timing"]["silero-vad"] = {"ms_per_audio_second": 1000 * (time.perf_counter() - t0) / seconds_speech}
        per_kind = {kind: auroc(1 - silero(clips), 1 - sp) for kind, clips in es.nonspeech.items()}
        per_kind["all"] = float(np.mean(list(per_kind.values())))
        res["auroc"]["silero-vad: 1 - speech prob"] = per_kind
    return res


def _save_png(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def plots(res: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in res["snr"].items():
        ax.plot(r["levels"], r["mean_sigma"], marker="o", label=name)
        ax.axhline(r["clean_mean_sigma"], ls=":", lw=0.8, color=ax.lines[-1].get_color())
    ax.set_xlabel("SNR (dB), white and babble noise")
    ax.set_ylabel("mean of the largest sigma")
    ax.set_title("Uncertainty vs SNR (dotted: clean speech)")
    ax.legend()
    fig.tight_layout()
    _save_png(fig, out / "sigma_vs_snr.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (name, r) in enumerate(res["selective"].items()):
        ax.plot(r["coverage"], r["mean_abs_error"], marker=".", label=f"{name} (area {r['area']:.4f})")
        if k == 0 and "random" in r:   # one band: each method has its own errors, and so its own band
            ax.fill_between(r["coverage"], r["random"]["band_5"], r["random"]["band_95"], alpha=0.15,
                            color=ax.lines[-1].get_color(), lw=0, label=f"{name}, random orders (5-95 %)")
    ax.set_xlabel("coverage (share of clips answered)")
    ax.set_ylabel("mean |error| vs annotator")
    ax.invert_xaxis()
    ax.set_title("Selective prediction: drop the most uncertain first")
    ax.legend()
    fig.tight_layout()
    _save_png(fig, out / "selective.png")
    plt.close(fig)
    return ["sigma_vs_snr.png", "selective.png"]


def markdown(res: dict, command: str, pngs: list[str], meta: dict) -> str:
    kinds = [k for k in next(iter(res["auroc"].values())) if k != "all"]
    lines = [
        "# Uncertainty: when the model should not answer",
        "",
        "Generated by `training/uq_report.py`; do not edit by hand. Command:",
        "",
        f"```bash\n{command}\n```",
        "",
        f"Model: {meta['model']}. Machine: {meta['machine']}. Data (none of it seen in training): {meta['data']}.",
        "",
        "## AUROC: speech vs each kind of non-speech",
        "",
        "Higher is better; the score is the method's uncertainty (for silero-vad and our speech",
        "output: 1 − speech probability).",
        "",
        "| method: score | " + " | ".join(kinds) + " | mean |",
        "|---|" + "---|" * (len(kinds) + 1),
    ]
    for name, per in res["auroc"].items():
        lines.append(f"| {name} | " + " | ".join(f"{per[k]:.3f}" for k in kinds) + f" | **{per['all']:.3f}** |")
    lines += ["", "## Uncertainty vs SNR (corrupted held-out speech)", "",
              "| method | Spearman(sigma, −SNR) over clips | mean sigma, clean | " +
              " | ".join(f"{lv:g} dB" for lv in next(iter(res["snr"].values()))["levels"]) + " |",
              "|---|---|---|" + "---|" * len(next(iter(res["snr"].values()))["levels"])]
    for name, r in res["snr"].items():
        lines.append(f"| {name} | {r['spearman_vs_minus_snr']:.3f} | {r['clean_mean_sigma']:.4f} | "
                     + " | ".join(f"{v:.4f}" for v in r["mean_sigma"]) + " |")
    for name, r in res["snr"].items():
        if "answered" in r:
            lines += ["", f"Share of {name} answers \"reliable\" per SNR: " +
                      ", ".join(f"{lv:g} dB {a:.0%}" for lv, a in zip(r["levels"], r["answered"])) + "."]
    lines += ["", f"![uncertainty vs SNR]({meta['png_dir']}/{pngs[0]})", "",
              "## Selective prediction", "",
              "Mean absolute error against the annotator over clean and corrupted held-out speech, as",
              "the most uncertain clips are dropped. Area: under that curve (lower is better); the",
              "oracle drops by the true error; rises: of the curve's 19 steps, how many raise the error.",
              "Random orders: the same clips dropped in random order (mean ± standard deviation over",
              "200 orders; the plot's band is their 5th to 95th percentile), what an uncertainty that",
              "knows nothing of the error does; the next column, how many of them have an area no",
              "larger than the method's (near 0: the method ranks the error better than chance).", "",
              "| method | area | oracle area | error falls monotonically (rises) | random orders: area; rises "
              "| random orders with no larger area | error at 100 % | at 50 % | at 20 % |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, r in res["selective"].items():
        e = dict(zip([round(c, 3) for c in r["coverage"]], r["mean_abs_error"]))
        rnd = r.get("random")
        chance = (f"{rnd['area_mean']:.4f} ± {rnd['area_sd']:.4f}; {rnd['rises_mean']:.1f} ± {rnd['rises_sd']:.1f} | "
                  f"{rnd['share_area_at_most_own']:.0%}") if rnd else "– | –"
        lines.append(f"| {name} | {r['area']:.4f} | {r['oracle_area']:.4f} | "
                     f"{'yes' if r['monotonic'] else 'no'} ({r['rises']}) | {chance} | "
                     f"{e.get(1.0, float('nan')):.4f} | {e.get(0.5, float('nan')):.4f} | {e.get(0.2, float('nan')):.4f} |")
    bins = {name: r["ccc_bins"] for name, r in res["selective"].items() if "ccc_bins" in r}
    if bins:
        lines += ["", "The paper's measure of the same (papers.md 1.5): the clips sorted by uncertainty and cut into",
                  "five bins of 20 %, most certain first; CCC against the annotator in each (mean of A/D/V).", "",
                  "| method | " + " | ".join(f"bin {j + 1}" for j in range(len(next(iter(bins.values())))))
                  + " |", "|---|" + "---|" * len(next(iter(bins.values())))]
        for name, b in bins.items():
            lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in b) + " |")
    bounds = {name: r["bounds"] for name, r in res["selective"].items() if "bounds" in r}
    if bounds:
        lines += ["", "What any uncertainty could reach on these clips, per method's mean: two partial oracles,",
                  "one that knows only each clip's corruption (ranks it by the mean error of its corruption",
                  "cell, clean being a cell) and one that knows only which clean clip it was made from (ranks",
                  "it by the mean error of that clip and its copies); and the share of the error's variance",
                  "between those groups.", "",
                  ("| method | corruption known: area | rises | variance | clip known: area | rises "
                   "| variance | corruption cells with less error than clean |"),
                  "|---|---|---|---|---|---|---|---|"]
        def oracle(o: dict, share: bool = True) -> str:
            return f"{o['area']:.4f} | {o['rises']}" + (f" | {o['variance_share']:.0%}" if share else "")

        for name, b in bounds.items():
            lines.append(f"| {name} | {oracle(b['corruption_known'])} | {oracle(b['clip_known'])} | "
                         f"{b['cells_below_clean']} of {b['cells']} |")
        if all("voice_known" in b for b in bounds.values()):
            lines += ["", "Three more oracles: one that knows only each clip's voice (ranks it by the mean error of",
                      "that voice's clips and their copies: the most a sigma that knew which voices are",
                      "unfamiliar could use), one that knows voice and corruption (the two means added), and the",
                      "method's own uncertainty given the voices' errors (whole voices ranked by their error,",
                      "clips within a voice by the method's uncertainty).", "",
                      ("| method | voice known: area | rises | variance | voice and corruption known: area | rises "
                       "| voices known, uncertainty within: area | rises |"),
                      "|---|---|---|---|---|---|---|---|"]
            for name, b in bounds.items():
                within = b.get("voice_known_sigma_within", {"area": float("nan"), "rises": "-"})
                lines.append(f"| {name} | {oracle(b['voice_known'])} | "
                             f"{oracle(b['voice_and_corruption_known'], False)} | {oracle(within, False)} |")
    voices = {name: r["by_voice"] for name, r in res["selective"].items() if "by_voice" in r}
    if voices:
        first_name, first = next(iter(voices.items()))
        lines += ["", f"Error and uncertainty per voice of the clean held-out clips, worst first for {first_name};",
                  f"bias: {first_name}'s mean signed error of A/D/V over the voice's clips.", "",
                  "| voice | clips | " + " | ".join(f"{n}: error | {n}: sigma" for n in voices)
                  + f" | {first_name}: bias A / D / V |",
                  "|---|---|" + "---|---|" * len(voices) + "---|"]
        rows = {n: {r["voice"]: r for r in v} for n, v in voices.items()}
        for r in first:
            lines.append(f"| {r['voice']} | {r['clips']} | " + " | ".join(
                f"{rows[n][r['voice']]['error']:.4f} | {rows[n][r['voice']]['sigma']:.4f}" for n in voices)
                + " | " + " / ".join(f"{b:+.3f}" for b in r["bias"]) + " |")
    if res.get("corruptions"):
        cor = res["corruptions"]
        names = list(cor)
        first = cor[names[0]]
        lines += ["", "Why the curve has the shape it has: mean error and mean sigma per corruption, for the",
                  (f"{first['clean']['clips']} clips that were corrupted (clean: the same clips unchanged). Error "
                   "and sigma have to rise together for dropping uncertain clips to lower the error; the last row"),
                  "is Spearman(error, sigma) over the corruption cells. Spread: the standard deviation of",
                  f"{names[0]}'s A/D/V over the cell's clips (mean of the three); less spread than clean is a",
                  "pull toward the middle, which lowers the absolute error of a student that is unsure anyway.", "",
                  "| corruption | level | " + " | ".join(f"{n}: error | {n}: sigma" for n in names)
                  + f" | {names[0]}: spread |",
                  "|---|---|" + "---|---|" * len(names) + "---|",
                  "| clean | | " + " | ".join(f"{cor[n]['clean']['error']:.4f} | {cor[n]['clean']['sigma']:.4f}"
                                            for n in names) + f" | {first['clean']['spread']:.4f} |"]
        for j, row in enumerate(first["cells"]):
            lines.append(f"| {row['kind']} | {row['level']:g} | " + " | ".join(
                f"{cor[n]['cells'][j]['error']:.4f} | {cor[n]['cells'][j]['sigma']:.4f}" for n in names)
                + f" | {row['spread']:.4f} |")
        lines.append("| Spearman over cells | | "
                     + " | ".join(f"{cor[n]['spearman_cells']:.3f} | " for n in names) + " |")
    lines += ["", f"![selective prediction]({meta['png_dir']}/{pngs[1]})", "",
              "## The engine's decision at the default thresholds", "",
              f"Thresholds of the model file: {meta['thresholds']}.", "",
              "| clips | reliable | no speech | too uncertain |", "|---|---|---|---|"]
    for name, per in res["decisions"].items():
        for kind, d in per.items():
            lines.append(f"| {name}: {kind} | " + " | ".join(f"{d.get(x, 0):.0%}" for x in
                                                              ("reliable", "no speech", "too uncertain")) + " |")
    for name, rows in res.get("operating_points", {}).items():
        levels = [g for g in rows[0]["error"] if g != "clean"]
        kinds = [g for g in rows[0]["reliable"] if g not in ("speech", "clean", *levels)]
        fmt = lambda e: "–" if e is None else f"{e:.4f}"  # noqa: E731
        lines += ["", f"## Answering noisy speech: the {name}'s decision at other thresholds", "",
                  "Share of clips called reliable under other thresholds (`wav2small.Thresholds`; the CLI's "
                  "`--max-sigma`, `--min-speech-prob`, `--min-modulation-db`), from the same outputs; the "
                  "first row is the model file's default; a min modulation of 0 turns that test off. Noisy speech: the held-out espeak-ng clips under white noise and babble "
                  "at that SNR. Error: mean absolute error against the annotator of the clips answered.", "",
                  "| max sigma | min speech prob | min modulation dB | held-out speech | noisy speech " + " / ".join(levels)
                  + " | error answered: clean / " + " / ".join(levels) + " | " + " | ".join(kinds) + " |",
                  "|---" * (6 + len(kinds)) + "|"]
        for r in rows:
            rel, err = r["reliable"], r["error"]
            mod = r.get("min_modulation_db")
            # four decimals: the model's own threshold (0.2504) beside a value of the grid (0.25) stays two rows
            lines.append(f"| {r['max_sigma']:.4f} | {r['min_speech_prob']:.2f} | "
                         + ("model's" if mod is None else f"{mod:g}") + f" | {rel['speech']:.0%} | "
                         + " / ".join(f"{rel[g]:.0%}" for g in levels) + " | "
                         + " / ".join(fmt(err[g]) for g in ("clean", *levels)) + " | "
                         + " | ".join(f"{rel[k]:.0%}" for k in kinds) + " |")
    lines += ["", "## Cost", "", "| method | ms per second of audio (this machine, wall) | model |", "|---|---|---|"]
    for name, t in res["timing"].items():
        lines.append(f"| {name} | {t['ms_per_audio_second']:.1f} | {meta['sizes'].get(name, '')} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.uq_report", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--w2s", default="wav2small/models/default.w2s", help="model with an uncertainty head")
    p.add_argument("--base", default="training/default", help="float student for MC dropout ('' to skip)")
    p.add_argument("--ensemble", default="", help="comma-separated run dirs of a deep ensemble ('' to skip)")
    p.add_argument("--out", default="docs/uncertainty-report", help="writes OUT.md, OUT.json and OUT/*.png")
    p.add_argument("--annotated", type=int, default=REPORT_SET["n_annotated"], help="held-out espeak-ng clips")
    p.add_argument("--real_per_group", type=int, default=REPORT_SET["real_per_group"], help="real speech clips per held-out speaker group")
    p.add_argument("--ood_per_kind", type=int, default=REPORT_SET["ood_per_kind"], help="eval non-speech clips per kind")
    p.add_argument("--seconds", type=float, default=REPORT_SET["seconds"], help="clips are cut to this length")
    p.add_argument("--corrupt_clips", type=int, default=REPORT_SET["corrupt_clips"], help="annotated clips run through every corruption")
    p.add_argument("--mc_steps", type=int, default=300, help="fine-tuning steps of the MC dropout model")
    p.add_argument("--mc_p", type=float, default=0.2, help="dropout probability of MC dropout")
    p.add_argument("--silero", type=int, default=1, help="1: compare with silero-vad")
    p.add_argument("--n_clips", type=int, default=REPORT_SET["n_clips"], help="prosody corpus size (as the students were trained)")
    p.add_argument("--max_sigmas", default="0.25,0.27,0.3",
                   help="max_sigma values of the operating-points table, besides the model's own")
    p.add_argument("--min_speech_probs", default="0.2",
                   help="min_speech_prob values of the operating-points table, besides the model's own")
    p.add_argument("--min_modulations", default="0",
                   help="min_modulation_db values of the operating-points table, besides the model's own (0: off)")
    p.add_argument("--seed", type=int, default=REPORT_SET["seed"], help="seed of the clips drawn, the corruptions and MC dropout")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args(argv)
    # every input checked before the evaluation set is built and MC dropout trained (minutes)
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.seconds <= 0:
        p.error(f"--seconds is the length clips are cut to, > 0, got {args.seconds:g}")
    # every measure needs clean annotated clips and corrupted copies of them (an empty set fails at the end)
    for name in ("annotated", "corrupt_clips", "ood_per_kind", "n_clips"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.real_per_group < 0 or args.mc_steps < 0:
        p.error(f"--real_per_group and --mc_steps must be >= 0, got {args.real_per_group}, {args.mc_steps}")
    if not 0 <= args.mc_p < 1:
        p.error(f"--mc_p is a dropout probability, 0 <= p < 1, got {args.mc_p:g}")
    if not Path(args.w2s).is_file():
        p.error(f"--w2s: no model file at {args.w2s}")
    if not Model(args.w2s).has_uncertainty:   # the report measures its sigma and speech outputs
        p.error(f"--w2s: {args.w2s} has no uncertainty head: release a training.uncertainty run "
                "(python -m training.release RUN --out_dir=DIR) and pass its default.w2s")
    runs = ([args.base] if args.base else []) + (args.ensemble.split(",") if args.ensemble else [])
    missing = [r for r in runs if not (Path(r) / "model.safetensors").is_file()]
    if missing:
        p.error(f"no model.safetensors in {', '.join(missing)} (--base / --ensemble)")
    try:
        sigmas = _floats(args.max_sigmas, "--max_sigmas")
        probs = _floats(args.min_speech_probs, "--min_speech_probs")
        mods = _floats(args.min_modulations, "--min_modulations")
    except ValueError as e:
        p.error(str(e))
    torch.set_num_threads(args.threads)
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:6.0f} s] {msg}", file=sys.stderr, flush=True)

    es = build_eval_set(args.annotated, args.real_per_group, args.ood_per_kind, args.seconds,
                        args.corrupt_clips, args.seed, log, args.n_clips)
    methods = {"engine": run_engine(args.w2s)}
    sizes = {"engine": f"{Path(args.w2s).stat().st_size:,} B (.w2s, int8)"}
    if args.base:
        mc = train_mc_dropout(args.base, args.mc_p, args.mc_steps, args.seed, log, args.n_clips)
        methods["mc dropout"] = run_mc_dropout(mc)
        sizes["mc dropout"] = f"{sum(q.numel() for q in mc.parameters()):,} float params × 20 passes"
    if args.ensemble:
        dirs = args.ensemble.split(",")
        methods["deep ensemble"] = run_ensemble(dirs)
        sizes["deep ensemble"] = f"{len(dirs)} students"
    silero = None
    if args.silero:
        from .vad_baseline import SileroVAD

        vad = SileroVAD()
        silero = vad.scores
        sizes["silero-vad"] = f"{vad.model_bytes:,} B (ONNX)"
    default = Model(args.w2s).thresholds
    grid = []
    if default is not None:
        grid = threshold_grid(default, sigmas, probs, mods)
    res = evaluate(es, methods, silero, log, grid)
    out = Path(args.out)
    pngs = plots(res, out)

    lscpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"], capture_output=True, text=True)
    cpu = lscpu.stdout.strip()
    meta = {
        # the engine's time depends most on which kernels it picked (docs/performance.md: AVX2 ~5x AVX-512 VNNI)
        "machine": f"{cpu or platform.machine()}, {torch.get_num_threads()} threads, engine kernels {_engine.best_isa()}",
        "data": (f"{len(es.annotated)} espeak-ng clips of held-out voices, {len(es.speech) - len(es.annotated)} real "
                 f"speech clips of held-out speaker groups, " + ", ".join(f"{len(v)} {k}" for k, v in es.nonspeech.items())
                 + f" (training.ood eval split), {len(es.corrupted)} corrupted copies, clips cut to {args.seconds:g} s"),
        "thresholds": str(Model(args.w2s).thresholds), "png_dir": out.name, "sizes": sizes,
        "model": model_stamp(args.w2s),
    }
    command = "python -m training.uq_report " + " ".join(argv if argv is not None else sys.argv[1:])
    write_atomic(out.with_suffix(".md"), markdown(res, command, pngs, meta))
    write_atomic(out.with_suffix(".json"), json.dumps({"meta": meta, **res}, indent=1) + "\n")
    log(f"wrote {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    import training.cli

    training.cli.run(main, "python -m training.uq_report")
