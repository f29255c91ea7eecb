"""Select uncertainty-training variants on validation data only (never the report's evaluation clips).

    python -m training.uq_select runs/uqA runs/uqB --engine=1 --out=runs/select.json

For each run directory (model.safetensors + train.json of training.uncertainty) it measures, on

  * speech: the annotator's validation voices (the first 200 validation clips, cut to 4 s) and real
    speech of training.corpus's "val" speaker groups (40 files per group, leading and trailing digital
    silence trimmed, 4 s);
  * non-speech: 200 clips per kind of training.ood's *train* split (items 150..349 of seed 0's
    extended listing; a seed-0 pool takes the first `ood_per_kind` = 150), never the "eval" split
    the report uses. A run of another seed draws its pool from its own listing, which holds some of
    the same whole files, and its own cuts of the long ones (music on hold, MIDI tunes, long effects)
    across the validation's: those clips (same name and samples, or some of the same stretch of a
    file) are left out of that run's measures and counted (trained_clips). They come from the
    training generators, so they favour variants
    trained on the extended split over the shipped head; they rank the extended variants;
  * noise: the first 40 validation clips x white and babble noise (training voices) at -10..30 dB,
    and (only for the share answered at 20 dB, which on those 80 clips moves by 0.0125 a clip)
    every validation clip of seed 0's draw, cut to 4 s, x white and babble at 20 dB,
  * corruptions: the same 40 clips x every corruption of training.ood's grid (as the report does),
  * babble probes, kept apart from the non-speech above: 40 clips each of 6 talkers at once, the
    fewest the evaluation's babble has, (a) of training voices, (b) of the annotator's validation
    voices, which no training run heard (espeak-ng: the evaluation's babble is of recorded voices
    no run heard, and validation has no recorded voices to spare that the report does not use),

the AUROC of the largest sigma (and of 1 - speech probability) for speech against each non-speech
kind and their mean, the share of each kind (and of each babble probe) called speech (speech logit
>= the model's threshold: 0, probability 0.5, unless trained with --speech_coverage, the level's
modulation >= the release's threshold, 5 dB, or --min_modulation_db, and, through the engine, the
spectrum's steadiness <= the release's threshold, 0.5, or --max_steady; the names of those clips too,
and their counts by family: training.ood.family, e.g. effects' fx-blips 9/11)
and of the speech (espeak-ng and real apart, real speech also per speaker group) heard as speech,
Spearman(largest sigma, -SNR), the share of the speech answered at the model's default thresholds
(decision "reliable": clean, espeak-ng and real apart, and the noisy clips per SNR; a sigma that
rises with noise past its threshold rejects speech at 20-30 dB SNR that the mean predicts as well as
clean speech, which the other measures miss), selective prediction on the 200 annotated clips clean
plus the corrupted ones (area, whether the error falls monotonically, how often it rises, Spearman
of error and sigma over the corruption cells; training.uq_report's measures), how far +-1 LSB of
random noise moves A/D/V on the speech padded with 1 s of digital silence at each end (mean absolute
change, espeak-ng and real speech apart; scripts/uq_lowbits.py says why), and CCC against the
annotator on every validation clip of seed 0's draw, whole (the same clips for every run; the
validation CCC of its train.json is on the clips its --seed drew). With --engine=1 the run is also
released into REL/<run's name> (training.release --out_dir, int8 calibration as for the package; REL
is --rel, runs/rel by default) and the same numbers are measured through the int8 engine, with the
release's engine-vs-float fidelity. The clips are made once and cached (--cache). --verdict=1 prints
each run's verdict under the rule a new head must meet to replace the shipped one (RULE,
docs/uncertainty.md), line by line, after measuring or from the --out files of earlier selections:

    python -m training.uq_select runs/sel31_s5.json runs/sel31_s6.json --verdict=1

--table=1 prints the same runs' measures as docs/uncertainty.md's tables of them (Markdown), and the
clips of the generators that decide the music and effects lines called speech (DECIDING_FAMILIES).
"""
from __future__ import annotations

import argparse
import json
import math
import pickle
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from .cli import HelpFormatter
from .files import missing_from_run, read_json, write_atomic
from .metrics import ccc_numpy
from .ood import SNRS
from .release import modulation_threshold
from .uncertainty import N_VALUES
from .uq_report import auroc, selective_measures, spearman

SECONDS = 4.0
# 2: + targets and the corrupted set (selective prediction); 3: real speech trimmed; 4: val clips;
# 5: + babble_probe; 6: + the babble bank (every validation clip at 20 dB SNR is made from it);
# 7: + each real speech clip's speaker group and each non-speech clip's name; 8: + per_kind, 200;
# 9: + each annotated clip's voice (selective prediction's voice oracles)
CACHE_VERSION = 9
# non-speech clips per kind: 40 until version 8. With other seeds' cuts of the same files left out
# too (trained_clips), 40 left some lines on 26-30 clips, where one clip moves them by 3-4 points, and
# items 150..189 happened to hold the generators' effects the shipped head calls speech least often
# (docs/uncertainty.md, twenty-seventh round); past the files, later items are generator draws
PER_KIND = 200


def default_cache(per_kind: int = PER_KIND) -> Path:
    """A version's (and size's) own file: tools of two versions at once do not build the clips over each other."""
    size = "" if per_kind == PER_KIND else f"_k{per_kind}"
    return Path(f"runs/uq_select_clips_v{CACHE_VERSION}{size}.pkl")


DEFAULT_CACHE = default_cache()
PROBE_VOICES = 6   # talkers in the babble probes: the fewest the evaluation's babble has


def build(log, n_val: int = 200, real_per_group: int = 40, skip: int = 150, per_kind: int = PER_KIND,
          noisy: int = 40, seed: int = 0, n_clips: int = 3000, per_probe: int = 40) -> dict:
    from .distill import TrainConfig, load_prosody_corpus
    from .ood import corruption_grid, items, make_babble
    from .uncertainty import corrupt_with_bank, real_speech

    n = int(SECONDS * 16000)
    val = load_prosody_corpus(TrainConfig(n_clips=n_clips, seed=seed), 16000, log)["val"]
    annotated = [c[:n].astype(np.float32) / 32768.0 for c in val.clips[:n_val]]
    grouped = real_speech(("val",), real_per_group, seed, trim=True)
    real = [a[:n] for _, a in grouped]
    listing = items("train", seed=seed, max_per_kind=skip + per_kind, extended=True)
    ns: dict[str, list[np.ndarray]] = {}
    ns_names: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    for it in listing:
        seen[it.kind] = seen.get(it.kind, 0) + 1
        if seen[it.kind] > skip:
            ns.setdefault(it.kind, []).append(np.asarray(it.rendered()[0], np.float32)[:n])
            ns_names.setdefault(it.kind, []).append(it.name)
    rng = np.random.default_rng([seed, 0x5E1])
    bank = [make_babble("train", n, rng)[0] for _ in range(8)]
    noisy_clips, snr = [], []
    for x in annotated[:noisy]:
        for level in SNRS:
            noisy_clips += [corrupt_with_bank(x, kind, level, rng, bank, "train") for kind in ("white", "babble")]
            snr += [level, level]
    # every corruption of training.ood's grid on the same clips (its own generator: the sets above
    # stay what they were), for selective prediction against the annotator
    rng = np.random.default_rng([seed, 0x5E2])
    corrupted = [(i, kind, level, corrupt_with_bank(x, kind, level, rng, bank, "train"))
                 for i, x in enumerate(annotated[:noisy]) for kind, level in corruption_grid()]
    log(f"validation set: {len(annotated)} annotated + {len(real)} real speech, "
        + ", ".join(f"{k} {len(v)}" for k, v in ns.items()) + f", {len(noisy_clips)} noisy, "
        f"{len(corrupted)} corrupted")
    return {"version": CACHE_VERSION, "per_kind": per_kind, "speech": annotated + real,
            "real_groups": [g for g, _ in grouped],
            "nonspeech": ns, "nonspeech_names": ns_names, "noisy": noisy_clips,
            "snr": np.array(snr, float), "targets": val.targets[:n_val].astype(np.float64), "corrupted": corrupted,
            "voices": list(val.voices[:n_val]),
            "val_clips": [c.astype(np.float32) / 32768.0 for c in val.clips], "val_targets": val.targets,
            "babble_probe": babble_probe(val, seed, per_probe), "bank": bank}


def noisy_at_20db(data: dict) -> list[np.ndarray]:
    """Every validation clip (cut to SECONDS) under white noise, then under babble of the cached bank,
    at 20 dB SNR, from a generator of its own (the same clips for every run; made when measured, as
    they would double the cache)."""
    from .uncertainty import corrupt_with_bank

    n = int(SECONDS * 16000)
    rng = np.random.default_rng([0, 0x5E4])
    clips = [c[:n] for c in data["val_clips"]]
    return [corrupt_with_bank(x, kind, 20.0, rng, data["bank"], "train") for kind in ("white", "babble") for x in clips]


def babble_probe(val, seed: int, per_set: int = 40) -> dict[str, list[np.ndarray]]:
    """The babble probes (module doc): PROBE_VOICES talkers at once, of training voices and of the
    annotator's validation voices (one clip per voice, tiled from a random offset), 4 s, -20 dBFS."""
    from .ood import make_babble, mix_talkers
    from .uncertainty import talker_streams

    n = int(SECONDS * 16000)
    rng = np.random.default_rng([seed, 0x5E3])
    train = [make_babble("train", n, rng, PROBE_VOICES)[0] for _ in range(per_set)]
    espeak = [mix_talkers(talker_streams(val.clips, val.voices, PROBE_VOICES, n, rng), n, rng)
              for _ in range(per_set)]
    return {name: [(0.1 * x).astype(np.float32) for x in clips]
            for name, clips in ((f"train voices x{PROBE_VOICES}", train),
                                (f"espeak-ng validation voices x{PROBE_VOICES}", espeak))}


def load_clips(cache: Path, log, **build_kw) -> dict:
    """The validation clips of build(**build_kw), from `cache` when it holds this version's of the same
    size, else built and written there."""
    try:
        data = pickle.loads(cache.read_bytes()) if cache.exists() else {}
    except (pickle.UnpicklingError, EOFError, ValueError) as e:   # a cut-off file of an older run
        log(f"{cache} is unreadable ({e}): building the clips again")
        data = {}
    per_kind = build_kw.get("per_kind", PER_KIND)
    if data.get("version") != CACHE_VERSION or data.get("per_kind") != per_kind:
        if data.get("version") != CACHE_VERSION and data:
            log(f"{cache} is from an older version of this script: building the clips again")
        elif data:
            log(f"{cache} holds {data.get('per_kind')} non-speech clips per kind, not {per_kind}: "
                "building them again")
        data = build(log, **build_kw)
        write_atomic(cache, pickle.dumps(data))
    return data


def trained_clips(data: dict, config: dict) -> dict[str, np.ndarray]:
    """Per non-speech kind, which validation clips (build()'s, seed 0's listing after its first `skip`
    items) a training.uncertainty run with `config` (its train.json's) trained on: a clip of its own
    non-speech pool with the same name and the same samples, or one that plays some of the same
    stretch of the same file (training.ood.same_stretch). The pool is the first ood_per_kind items of
    the listing of the run's seed (or its --ood_seed). With 150 per kind a seed-0 run has none of
    them (one listing cuts each file into consecutive segments); a run of another seed has the
    whole-file items whose audio does not depend on the seed (measured: 7-12 of the 40 effects clips,
    Oxygen sounds, and a few silence clips; a generator's item of the same name is another draw
    there, and stays) and its own cuts of the long files (music on hold, MIDI tunes, long effects)
    across the validation's cuts; with more than 150 per kind a seed-0 run holds the validation
    items themselves."""
    from .ood import items, same_stretch
    from .uncertainty import UQConfig, part_seed, pool_sizes, voice_range

    cfg = {**asdict(UQConfig()), **config}
    names = data.get("nonspeech_names", {})
    listed = {it.name: it for it in items("train", seed=0, max_per_kind=None, kinds=tuple(names), extended=True)}
    sizes = pool_sizes(cfg["ood_per_kind"], cfg["kind_pool"])
    seed = part_seed(cfg["seed"], cfg["ood_seed"])
    pool_items = [it for kind in names for it in items(
        "train", seed=seed, max_per_kind=sizes[kind], kinds=(kind,), extended=cfg["extended_nonspeech"],
        babble_voices=voice_range(cfg["babble_voices"]), babble_speed=cfg["babble_speed"])]
    pool = {it.name: it for it in pool_items}
    out = {}
    for kind, clips in data["nonspeech"].items():
        mask = np.zeros(len(clips), bool)
        for i, name in enumerate(names.get(kind, ())):
            if name in pool:
                audio = np.asarray(pool[name].rendered()[0], np.float32)[:len(clips[i])]
                mask[i] = np.array_equal(audio, clips[i])
            val = listed.get(name)
            if not mask[i] and val is not None and val.span is not None:
                heard = replace(val, span=(val.span[0], min(val.span[1], val.span[0] + len(clips[i]) / 16000)))
                mask[i] = any(same_stretch(heard, it) for it in pool_items)
        out[kind] = mask
    return out


def measure(run, data: dict, min_speech_logit: float = 0.0, max_log_sigma: float = math.inf,
            min_modulation: float = 0.0, max_steady: float = 1.0,
            trained: dict[str, np.ndarray] | None = None) -> dict:
    """run(clips) -> (N, 9) raw outputs (log sigma, speech logit, the modulation in dB, the
    steadiness 0..1); a clip is called speech when its logit is >= min_speech_logit (the model's own
    threshold: train.json's --speech_coverage), its modulation >= min_modulation and its steadiness
    <= max_steady, and answered (the decision "reliable")
    when its largest log sigma is <= max_log_sigma as well. `trained` (trained_clips'): the non-speech
    clips the run trained on, left out of every non-speech measure."""
    def speech(o: np.ndarray) -> np.ndarray:
        return ((o[:, 2 * N_VALUES] >= min_speech_logit) & (o[:, 2 * N_VALUES + 1] >= min_modulation)
                & (o[:, 2 * N_VALUES + 2] <= max_steady))

    sp = run(data["speech"])
    u_sp = sp[:, N_VALUES:2 * N_VALUES].max(axis=1)
    res: dict = {"auroc_sigma": {}, "auroc_speech_prob": {}}
    for kind, clips in data["nonspeech"].items():
        keep = np.ones(len(clips), bool) if trained is None else ~trained[kind]
        res.setdefault("trained_nonspeech_left_out", {})[kind] = int((~keep).sum())
        clips = [c for c, k in zip(clips, keep) if k]
        if not clips:   # every clip of the kind trained on: nothing to measure it by
            continue
        ns = run(clips)
        res["auroc_sigma"][kind] = auroc(ns[:, N_VALUES:2 * N_VALUES].max(axis=1), u_sp)
        res["auroc_speech_prob"][kind] = auroc(-ns[:, 2 * N_VALUES], -sp[:, 2 * N_VALUES])
        called = speech(ns)
        res.setdefault("called_speech", {})[kind] = float(called.mean())
        if "nonspeech_names" in data:   # which clips: the same few recur across heads and seeds
            names = [n for n, k in zip(data["nonspeech_names"][kind], keep) if k]
            res.setdefault("called_speech_clips", {})[kind] = [names[i] for i in np.flatnonzero(called)]
            res.setdefault("called_speech_by_family", {})[kind] = by_family(names, called)
    for key in ("auroc_sigma", "auroc_speech_prob"):
        res[key]["all"] = float(np.mean(list(res[key].values())))
    n_ann = len(data["targets"])   # speech = annotated clips (one target each), then real speech
    heard = speech(sp)
    res["heard_as_speech"] = {"espeak": float(heard[:n_ann].mean()), "real": float(heard[n_ann:].mean())}
    if "real_groups" in data:   # per speaker group: one group's short letters decide the real line
        groups = np.array(data["real_groups"])
        res["heard_by_group"] = {g: float(heard[n_ann:][groups == g].mean()) for g in sorted(set(groups.tolist()))}
    res["babble_probe"] = {}
    for name, clips in data["babble_probe"].items():
        b = run(clips)
        res["babble_probe"][name] = {"auroc_sigma": auroc(b[:, N_VALUES:2 * N_VALUES].max(axis=1), u_sp),
                                     "auroc_speech_prob": auroc(-b[:, 2 * N_VALUES], -sp[:, 2 * N_VALUES]),
                                     "called_speech": float(speech(b).mean())}
    noisy = run(data["noisy"])
    u_noisy = noisy[:, N_VALUES:2 * N_VALUES].max(axis=1)
    res["spearman_sigma_minus_snr"] = spearman(u_noisy, -data["snr"])
    # how much speech the default decision answers, clean and per SNR: a sigma that rises with noise
    # can reject speech at 20-30 dB that the mean predicts as well as clean speech
    ok = heard & (u_sp <= max_log_sigma)
    ok_noisy = speech(noisy) & (u_noisy <= max_log_sigma)
    levels = sorted(set(data["snr"].tolist()))
    res["answered"] = {"espeak": float(ok[:n_ann].mean()), "real": float(ok[n_ann:].mean()), "snr_levels": levels,
                       "noisy": [float(ok_noisy[data["snr"] == lv].mean()) for lv in levels]}
    many = run(noisy_at_20db(data))
    ok_many = speech(many) & (many[:, N_VALUES:2 * N_VALUES].max(axis=1) <= max_log_sigma)
    half = len(many) // 2
    res["answered"]["all_val_20db"] = {"both": float(ok_many.mean()), "white": float(ok_many[:half].mean()),
                                       "babble": float(ok_many[half:].mean()), "clips": len(many)}
    # CCC against the annotator on all validation clips of seed 0, whole (train.json's val CCC is on
    # the run's own draw of clips: another --seed synthesises other clips of the same voices)
    val = run(data["val_clips"])
    res["ccc"] = dict(zip(("arousal", "dominance", "valence"),
                          ccc_numpy(val[:, :N_VALUES], data["val_targets"]).tolist()))
    # sensitivity to the lowest bits: the real speech with 1 s of digital silence before and after
    # (as a padded file has), and the same with +-1 LSB of random noise (int16 steps) added
    rng = np.random.default_rng([0, 0x15B])
    pad = np.zeros(16000, np.float32)
    padded = [np.concatenate([pad, np.round(c * 32768.0) / 32768.0, pad]) for c in data["speech"]]
    dithered = [(np.round(c * 32768.0) + rng.integers(-1, 2, len(c))) / 32768.0 for c in padded]
    moved = np.abs(run(dithered)[:, :N_VALUES] - run(padded)[:, :N_VALUES]).mean(axis=1)
    res["lsb_sensitivity"] = {"espeak": float(moved[:n_ann].mean()), "real": float(moved[n_ann:].mean())}
    # selective prediction on the annotated clips, clean and corrupted (as the report measures it)
    out = np.concatenate([sp[:n_ann], run([a for *_, a in data["corrupted"]])])
    curve, cells = selective_measures(out[:, :N_VALUES], out[:, N_VALUES:2 * N_VALUES].max(axis=1), data["targets"],
                                      n_ann, [(i, kind, level) for i, kind, level, _ in data["corrupted"]],
                                      data["voices"])
    # the table per corruption (error, sigma and output spread per cell, against the same clips clean)
    res["selective"] = {**curve, "by_corruption": cells, "spearman_cells": cells["spearman_cells"]}
    return res


def engine_runner(w2s: Path):
    """(run, (min_speech_logit, max_log_sigma, min_modulation, max_steady)): the engine's raw outputs
    and its default thresholds, both in the units of its output (value / 2^out_frac_bits; the
    modulation in dB, / 2^Q_DB; the steadiness 0..1, / STEADY_ONE, 0 from a file without it), so
    that comparing them is exact."""
    from wav2small import Model, _engine

    m = Model(w2s)
    one = float(1 << m.config["out_frac_bits"])
    scale = np.full(2 * N_VALUES + 3, one)
    scale[2 * N_VALUES + 1], scale[2 * N_VALUES + 2] = float(1 << _engine.Q_DB), float(_engine.STEADY_ONE)
    max_log_sigma, min_logit, min_mod, max_steady = m._engine.thresholds

    def run(clips: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(clips), len(scale)))
        for i, c in enumerate(clips):
            q = m.predict_fixed(c)
            out[i, :len(q)] = q
        return out / scale
    return run, (min_logit / one, max_log_sigma / one, min_mod / scale[-2], max_steady / scale[-1])


@torch.no_grad()
def float_outputs(model, clips: list[np.ndarray]) -> np.ndarray:
    """The float model's outputs of whole clips with the modulation after them, as the engine's, and a
    steadiness of 0 (the float model has no such measure: its decision is the engine's without it)."""
    from .model import modulation_db

    model.eval()
    res = []
    for c in clips:
        x = torch.from_numpy(np.asarray(c, np.float32))[None]
        mod = modulation_db(model.vgg7.logmel(x), model.cfg.mod_block)
        res.append(np.concatenate([model(x)[0].numpy(), mod.numpy(), [0.0]]))
    return np.array(res, np.float64)


def variant_of(run: str) -> str:
    """A run's variant: its directory name without a trailing _s<seed> (K30S_s2 -> K30S)."""
    name = Path(run).name
    head, _, tail = name.rpartition("_s")
    return head if head and tail.isdigit() else name


def answered_at(r: dict, snr: float) -> float:
    """The share of the noisy speech at `snr` dB that a measure() result answered; nan where its JSON
    predates the measure."""
    a = r.get("answered", {})
    return a["noisy"][a["snr_levels"].index(snr)] if snr in a.get("snr_levels", ()) else np.nan


# The rule a new head must meet to replace the shipped one (docs/uncertainty.md, since R31): each line
# (what, how it is read from a result of measure() with the release's fidelity, the bar, ">=" or "<=").
# Mean CCC's bar is the shipped head's own on the same clips, rounded down: R44 seed 17's (0.785 / 0.769 /
# 0.742, mean 0.76521) since it shipped (thirty-third round); the rules of R40-R44 judged by R37 seed 15's
# (0.7623), those of R33-R39 by R31 seed 5's (0.7532), those of R27-R32 by the head before it (0.7277),
# and their verdicts in docs/uncertainty.md stand as written. A result that predates a measure fails it.
SHIPPED_MEAN_CCC = 0.7652
RULE: tuple[tuple[str, Callable[[dict], float], float, str], ...] = (
    ("AUROC σ", lambda r: r["int8"]["auroc_sigma"]["all"], 0.99, ">="),
    ("AUROC speech prob.", lambda r: r["int8"]["auroc_speech_prob"]["all"], 0.99, ">="),
    ("Spearman(σ, −SNR)", lambda r: r["int8"]["spearman_sigma_minus_snr"], 0.80, ">="),
    ("espeak-ng speech heard", lambda r: r["int8"]["heard_as_speech"]["espeak"], 0.95, ">="),
    ("real speech heard", lambda r: r["int8"]["heard_as_speech"]["real"], 0.95, ">="),
    ("unheard-voice babble called speech",
     lambda r: r["int8"]["babble_probe"][f"espeak-ng validation voices x{PROBE_VOICES}"]["called_speech"], 0.40, "<="),
    ("music called speech", lambda r: r["int8"]["called_speech"]["music"], 0.10, "<="),
    ("effects called speech", lambda r: r["int8"]["called_speech"]["effects"], 0.10, "<="),
    ("int8 fidelity (worst output)", lambda r: min(r["fidelity_ccc"].values()), 0.998, ">="),
    ("mean CCC", lambda r: float(np.mean(list(r["int8"]["ccc"].values()))), SHIPPED_MEAN_CCC, ">="),
    ("answered at 20 dB SNR, every validation clip", lambda r: r["int8"]["answered"]["all_val_20db"]["both"],
     0.90, ">="),
)


def verdict(r: dict) -> list[tuple[str, float, bool]]:
    """(line, value, met) for each line of RULE on one run's result (--engine=1: the int8 engine's
    measures and the release's fidelity); nan and not met where the result lacks the measure."""
    out = []
    for name, get, bar, way in RULE:
        try:
            v = float(get(r))
        except (KeyError, TypeError, ValueError):
            v = math.nan
        out.append((name, v, v >= bar if way == ">=" else v <= bar))   # nan: False either way
    return out


def verdict_text(results: dict) -> str:
    """Each run's verdict under RULE, one block per run."""
    lines = []
    for run, r in results.items():
        checks = verdict(r)
        failed = [name for name, _, ok in checks if not ok]
        lines.append(f"{run}: " + ("qualifies" if not failed else "fails: " + ", ".join(failed)))
        lines += [f"    {'ok  ' if ok else 'FAIL'} {name} {v:.4f}" for name, v, ok in checks]
    return "\n".join(lines)


def by_family(names: list[str], called: np.ndarray) -> dict[str, list[int]]:
    """{family: [clips called speech, clips]} of one kind's measured clips (training.ood.family), in
    the order the families first appear."""
    from .ood import family

    out: dict[str, list[int]] = {}
    for name, c in zip(names, called):
        counts = out.setdefault(family(name), [0, 0])
        counts[0] += int(c)
        counts[1] += 1
    return out


def detail_line(r: dict) -> str:
    """Where one measure() result's speech output errs: the real speech groups not all heard, and the
    non-speech clips called speech, by name."""
    short = ", ".join(f"{g} {v:.3f}" for g, v in r["heard_by_group"].items() if v < 1.0)
    called = "; ".join(f"{kind}: " + ", ".join(names) for kind, names in r["called_speech_clips"].items() if names)
    left = ", ".join(f"{kind} {n}" for kind, n in r.get("trained_nonspeech_left_out", {}).items() if n)
    families = "; ".join(f"{kind}: " + ", ".join(f"{f} {c}/{n}" for f, (c, n) in fams.items() if c)
                         for kind, fams in r.get("called_speech_by_family", {}).items()
                         if any(c for c, _ in fams.values()))
    return ((f"real speech heard: {short}, every file of the other groups" if short
             else "real speech heard: every file of every group") + f" | non-speech called speech: {called or 'none'}"
            + (f" | by family: {families}" if families else "")
            + (f" | left out, in the run's training pool: {left}" if left else ""))


# the generators that decide the music and effects lines (docs/uncertainty.md, twenty-eighth round)
DECIDING_FAMILIES = (("effects", "fx-blips"), ("effects", "fx-sequence"), ("effects", "varied-ui"),
                     ("music", "melody"))


def rule_table(results: dict) -> str:
    """The rule's measures of each run as docs/uncertainty.md tabulates them (Markdown; int8 engine),
    then the clips of DECIDING_FAMILIES called speech, from measure() results (--out files)."""
    head = ("| head | CCC A / D / V (int8) | AUROC σ (music, tone, effects) / speech prob | Spearman(σ, −SNR) | "
            "speech heard: espeak-ng / real | babble called speech: training / unheard voices | "
            "music / effects called speech | 20 dB, every validation clip | fidelity (worst) | fails |")
    rows = [head, "|---" * head.count(" | ") + "|---|"]
    fams = ["| head | " + " | ".join(name for _, name in DECIDING_FAMILIES) + " |",
            "|---|" + "---|" * len(DECIDING_FAMILIES)]
    for run, r in results.items():
        i = r["int8"]
        c, a, heard, probe = i["ccc"], i["auroc_sigma"], i["heard_as_speech"], i["babble_probe"]
        fails = [name.removesuffix(" called speech") for name, _, ok in verdict(r) if not ok]
        rows.append(
            f"| {run} | {c['arousal']:.3f} / {c['dominance']:.3f} / {c['valence']:.3f} "
            f"({float(np.mean(list(c.values()))):.4f}) | {a['all']:.3f} ({a['music']:.3f}, {a['tone']:.3f}, "
            f"{a['effects']:.3f}) / {i['auroc_speech_prob']['all']:.3f} | {i['spearman_sigma_minus_snr']:.3f} | "
            f"{heard['espeak']:.3f} / {heard['real']:.3f} | "
            f"{probe[f'train voices x{PROBE_VOICES}']['called_speech']:.3f} / "
            f"{probe[f'espeak-ng validation voices x{PROBE_VOICES}']['called_speech']:.3f} | "
            f"{i['called_speech']['music']:.3f} / {i['called_speech']['effects']:.3f} | "
            f"{i['answered']['all_val_20db']['both']:.3f} | {min(r['fidelity_ccc'].values()):.4f} | "
            f"{', '.join(fails) or 'none'} |")
        counts = i.get("called_speech_by_family", {})   # absent from results before the twenty-eighth round
        fams.append(f"| {run} | " + " | ".join(
            "/".join(map(str, counts[kind][name])) if name in counts.get(kind, {}) else "–"
            for kind, name in DECIDING_FAMILIES) + " |")
    return "\n".join(rows) + "\n\n" + "\n".join(fams)


def summarize(results: dict, kind: str = "int8") -> str:
    """Mean and standard deviation over the seeds of each variant (runs named VARIANT_s<seed>), as
    Markdown; nan where a run's JSON predates a measure."""
    groups: dict[str, list[dict]] = {}
    for run, r in results.items():
        if kind in r:
            groups.setdefault(variant_of(run), []).append(r[kind])
    columns = {
        "CCC A": lambda r: r["ccc"]["arousal"], "CCC D": lambda r: r["ccc"]["dominance"],
        "CCC V": lambda r: r["ccc"]["valence"], "AUROC σ": lambda r: r["auroc_sigma"]["all"],
        "AUROC speech prob.": lambda r: r["auroc_speech_prob"]["all"],
        "AUROC σ babble": lambda r: r["auroc_sigma"]["babble"],
        "Spearman(σ, −SNR)": lambda r: r["spearman_sigma_minus_snr"],
        "selective area": lambda r: r["selective"]["area"], "rises": lambda r: r["selective"]["rises"],
        "±1 LSB, padded real speech": lambda r: r["lsb_sensitivity"]["real"],
        "real speech heard": lambda r: r.get("heard_as_speech", {}).get("real", np.nan),
        "speech answered at 20 dB SNR": lambda r: answered_at(r, 20.0),
        "the same, every validation clip": lambda r: r.get("answered", {}).get("all_val_20db", {}).get("both", np.nan),
        **{f"babble: {name} called speech": (lambda r, name=name: r.get("babble_probe", {}).get(name, {})
                                              .get("called_speech", np.nan))
           for name in (f"train voices x{PROBE_VOICES}", f"espeak-ng validation voices x{PROBE_VOICES}")},
    }
    lines = ["| variant | seeds | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for name, rs in groups.items():
        cells = []
        for get in columns.values():
            v = np.array([get(r) for r in rs], np.float64)
            cells.append(f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v[0]:.3f}")
        lines.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.uq_select", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="training.uncertainty output dirs (with --summarize: "
                   "JSON files written by --out)")
    p.add_argument("--verdict", type=int, default=0, help="1: print each run's verdict under the rule a new "
                   "head must meet (RULE; needs --engine=1), after measuring, or from --out files given as RUNS "
                   "without measuring")
    p.add_argument("--table", type=int, default=0, help="1: print the rule's measures of each run and its "
                   "clips of the deciding families called speech as docs/uncertainty.md's tables (Markdown; "
                   "needs --engine=1), after measuring, or from --out files given as RUNS without measuring")
    p.add_argument("--summarize", type=int, default=0, help="1: print the mean and sd over seeds of every "
                   "variant (runs named VARIANT_s<seed>) from earlier --out files, int8 engine, and exit")
    p.add_argument("--engine", type=int, default=0, help="1: also release each run (see --rel) and measure the int8 engine")
    p.add_argument("--rel", type=Path, default=Path("runs/rel"), help="where --engine=1 writes the releases")
    p.add_argument("--per_kind", type=int, default=PER_KIND, help="validation non-speech clips per kind "
                   "(items 150.. of seed 0's listing; 40 before the clip cache's version 8)")
    p.add_argument("--cache", type=Path, default=None,
                   help="the validation clips, built on first use (minutes) and read from here after "
                        "(default: runs/uq_select_clips_v<version>[_k<per_kind>].pkl)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    p.add_argument("--float", type=int, default=1, help="0: measure the int8 engine only (with --engine=1)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--min_modulation_db", type=float, default=None,
                   help="measure the decision with this modulation threshold (dB; 0: off) instead of the "
                        "one each run's release writes")
    p.add_argument("--max_steady", type=float, default=None,
                   help="measure the int8 decision with this steadiness threshold (0..1; 1: off) instead of "
                        "the one each run's release writes (the float model has no steadiness measure)")
    args = p.parse_args(argv)
    if args.max_steady is not None and not 0.0 <= args.max_steady <= 1.0:
        p.error(f"--max_steady must be within 0..1, got {args.max_steady:g}")
    if args.min_modulation_db is not None and not 0.0 <= args.min_modulation_db <= 40.0:
        p.error(f"--min_modulation_db must be within 0..40 dB, got {args.min_modulation_db:g}")
    if args.summarize or ((args.verdict or args.table) and all(f.suffix == ".json" for f in args.runs)):
        merged: dict = {}
        for f in args.runs:
            try:
                merged.update(json.loads(f.read_text()))
            except (OSError, ValueError) as e:
                p.error(f"{f} is not a JSON file written by --out: {e}")
        if args.summarize:
            print(summarize(merged))
            return 0
        try:
            print("\n\n".join(([verdict_text(merged)] if args.verdict else []) +
                              ([rule_table(merged)] if args.table else [])))
        except KeyError as e:
            p.error(f"the --out results lack the int8 engine's measure {e} (measured with --engine=1 "
                    "and this version's measures?)")
        return 0
    if (args.verdict or args.table) and not args.engine:
        p.error("--verdict and --table report the int8 engine's measures: give --engine=1")
    # the runs and options checked before the clips are built (minutes without a --cache)
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.per_kind < 1:
        p.error(f"--per_kind must be >= 1, got {args.per_kind}")
    for run in args.runs:
        missing = missing_from_run(run)
        if missing:
            p.error(f"{run} is not a training.uncertainty run: no {' or '.join(missing)}")
        try:
            train = read_json(run / "train.json")
        except ValueError as e:
            p.error(str(e))
        if "thresholds" not in train:
            p.error(f"{run} is not a training.uncertainty run: its train.json has no decision thresholds "
                    "(a training.distill run? give it to python -m training.uncertainty --init=RUN first)")
    torch.set_num_threads(args.threads)
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:6.0f} s] {msg}", flush=True)

    data = load_clips(args.cache or default_cache(args.per_kind), log, per_kind=args.per_kind)
    from .model import load_safetensors

    results = {}
    for run in args.runs:
        train = json.loads((run / "train.json").read_text())
        model = load_safetensors(run / "model.safetensors")
        r = {"val_ccc": train["ccc"]["val"]}
        # the modulation threshold the release writes (a run from before it existed: the default)
        mod = modulation_threshold(train) if args.min_modulation_db is None else args.min_modulation_db
        r["min_modulation_db"] = mod
        trained = trained_clips(data, train.get("config", {}))
        if args.float or not args.engine:
            r["float"] = measure(lambda c, m=model: float_outputs(m, c), data, model.cfg.min_speech_logit,
                                 model.cfg.max_log_sigma, mod, trained=trained)
        if args.engine:
            from .release import release

            fid = release(run, args.rel / run.name)
            engine, (min_logit, max_log_sigma, file_mod, file_steady) = engine_runner(args.rel / run.name / "default.w2s")
            steady = file_steady if args.max_steady is None else args.max_steady
            r["max_steady"] = steady
            r["int8"] = measure(engine, data, min_logit, max_log_sigma,
                                file_mod if args.min_modulation_db is None else mod, steady, trained)
            r["fidelity_ccc"] = fid["ccc"]
        results[str(run)] = r
        log(f"{run}: {json.dumps(r)}")
        if args.out:  # after every run: a long selection keeps what it measured
            write_atomic(args.out, json.dumps(results, indent=1))
    for run, r in results.items():
        c = r["val_ccc"]
        line = f"{run}: val CCC (train.json) {c['arousal']:.3f}/{c['dominance']:.3f}/{c['valence']:.3f}"
        for kind in ("float", "int8"):
            if kind in r:
                a = r[kind]["auroc_sigma"]
                line += (f" | {kind}: CCC " + "/".join(f"{v:.3f}" for v in r[kind]["ccc"].values()) +
                         f" AUROC sigma {a['all']:.3f} (" + ", ".join(f"{k} {v:.3f}" for k, v in a.items()
                                                                          if k != "all")
                         + f") speech-prob {r[kind]['auroc_speech_prob']['all']:.3f}"
                         f" Spearman {r[kind]['spearman_sigma_minus_snr']:.3f}"
                         f" answered at 20 dB SNR {answered_at(r[kind], 20.0):.2f}"
                         f" (every validation clip {r[kind]['answered']['all_val_20db']['both']:.3f})"
                         f" selective area {r[kind]['selective']['area']:.4f}"
                         f" ({r[kind]['selective']['rises']} rises)"
                         f" LSB sensitivity {r[kind]['lsb_sensitivity']['espeak']:.4f}/"
                         f"{r[kind]['lsb_sensitivity']['real']:.4f}")
        if "fidelity_ccc" in r:
            line += " | fidelity min " + f"{min(r['fidelity_ccc'].values()):.4f} " + json.dumps(
                {k: round(v, 4) for k, v in r["fidelity_ccc"].items()})
        print(line)
        for kind in ("float", "int8"):
            if kind in r and "heard_by_group" in r[kind]:
                print(f"    {kind}: " + detail_line(r[kind]))
    if args.verdict:
        print(verdict_text(results))
    if args.table:
        print(rule_table(results))
    return 0


if __name__ == "__main__":
    import training.cli

    training.cli.run(main, "python -m training.uq_select")
