"""Quantize a trained float model into the package's default model and write its model card.

    python -m training.release training/default_uq    # reads model.safetensors + train.json there

The source is either a distilled student (training.distill) or one with an uncertainty head
(training.uncertainty, whose train.json names the distilled student it started from).

Writes wav2small/models/default.w2s and wav2small/models/default.md. Calibration uses every
other clip of a spread of real Debian speech; fidelity (int8 engine vs float model) is measured on
the clips calibration did not see, so the card's numbers come from this run, not from memory.
The command runs under training.rebuild's kernel cap (it starts itself again under it when run by
hand): the calibration's float forward pass rounds as the kernels do (uncapped, the twenty-ninth
round's head was released to a file 182 bytes apart from the capped one, outputs within 1 LSB), so
capped, the same weights give the same file on x86-64 CPUs with AVX2 and FMA.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import torch

from wav2small import Model, _engine
from wav2small.audio import load

from .cli import HelpFormatter
from .export import write_model
from .files import missing_from_run, read_json, write_atomic
from .model import OUTPUT_NAMES, Wav2SmallConfig, load_safetensors
from .quantize import engine_fidelity, quantize
from .speech import CORE_SPEECH_SOURCES, debian_speech_files, packages_of

PACKAGE_MODELS = Path(__file__).resolve().parent.parent / "wav2small" / "models"


def in_checkout(models: Path = PACKAGE_MODELS) -> bool:
    """True if `models` is the source tree's wav2small/models (setup.py beside the package): the
    release flow replaces the shipped model there; in an installed package it must not."""
    return (models.parent.parent / "setup.py").is_file()


def real_speech(n: int, seconds: float = 6.0) -> tuple[list[str], list[np.ndarray]]:
    """n clips: every (len / n)-th file of the core Debian speech packages' sorted list (the same set on
    every machine). That puts them all in asterisk's prompts (one speaker, telephone band; the
    card says so); kept for the shipped model's calibration to be rebuilt as it was made. The
    engine's fidelity on the other packages' full-band speech is tested (tests/test_engine.py, on
    training.speech.spread_speech, which a new release should calibrate on)."""
    files = debian_speech_files(roots=CORE_SPEECH_SOURCES)
    if len(files) < n:
        raise SystemExit(f"need {n} real speech files, found {len(files)}: apt-get install "
                         "pocketsphinx-testdata alsa-utils asterisk-core-sounds-en-wav")
    picked = files[:: len(files) // n][:n]
    return [str(f) for f in picked], [load(f)[: int(seconds * 16000)] for f in picked]


def recipe_notes(cfg: dict) -> str:
    """What the run's non-default training.uncertainty options did, in a sentence each ('' for none)."""
    notes = []
    if cfg.get("extended_nonspeech"):
        notes.append("The training non-speech included training.ood's extended generators (band-limited and "
                     "dual tones, beep trains, chirps and sirens, synthetic effects, varied UI sounds).")
    if cfg.get("keep_adv", 0) > 0:
        notes.append(f"A distillation term (weight {cfg['keep_adv']:g}) held A/D/V on the clean annotated clips "
                     "to the distilled student's, so that learning the non-speech moves the values less.")
    if cfg.get("snap_to_grid"):
        notes.append("After training every weight the exporter quantizes was set to the value of its int8/int16 "
                     "code, so the float model (model.safetensors) has the engine's weights.")
    if cfg.get("familiarity_weight", 0) > 0:
        notes.append(f"Sigma also learned how unfamiliar a clip looks: its squared-error target gained "
                     f"({cfg['familiarity_weight']:g} x the square root of the clip's distance from the training speech "
                     "in the distilled student's features, relative to the mean there)^2 (training.familiarity).")
    if cfg.get("familiarity_rows", "all") == "clean" and cfg.get("familiarity_weight", 0) > 0:
        notes.append("That term was added on clean clips only; corrupted clips kept their measured error alone.")
    if cfg.get("nonspeech_weight", 1.0) != 1.0:
        notes.append(f"Each non-speech clip weighed {cfg['nonspeech_weight']:g} times a speech clip in the "
                     "speech/non-speech loss, which moves the speech output's boundary away from noise and babble.")
    if cfg.get("speech_min_snr", -100.0) > -100.0:
        notes.append(f"Speech under added noise below {cfg['speech_min_snr']:g} dB SNR had no speech/non-speech "
                     "target (sigma still learned its error): such speech sounds like the noise itself.")
    if cfg.get("babble_voices", "6-12") != "6-12" or cfg.get("babble_speed", 1.0) != 1.0:
        speed = (f", each voice played up to {cfg['babble_speed']:g} times faster or slower"
                 if cfg.get("babble_speed", 1.0) != 1.0 else "")
        notes.append(f"The non-speech babble had {cfg.get('babble_voices', '6-12')} training voices at once{speed}.")
    if cfg.get("espeak_babble", 0) > 0:
        notes.append(f"{cfg['espeak_babble']} more non-speech clips were babble of the annotator's espeak-ng "
                     "training voices, several at once.")
    if cfg.get("head", "gaussian") == "evidential":
        notes.append(f"Sigma was trained by deep evidential regression (normal-inverse-gamma likelihood, evidence "
                     f"regulariser {cfg.get('evidential_reg', 0.01):g}); the file's sigma is its epistemic "
                     "standard deviation, and the evidence rows that only training uses are not in it.")
    if cfg.get("noise_floor", 0) > 0:
        notes.append(f"A share {cfg['noise_floor']:g} of the training rows was heard with a 0.5-4 LSB noise floor "
                     "added, so that digital silence and the lowest bits move A/D/V less.")
    if cfg.get("mean_on_clean") is False:
        notes.append("The clean annotated clips had no CCC term of their own (the distillation term alone held "
                     "their A/D/V); the corrupted ones learned the clean clips' targets.")
    if cfg.get("sigma_rank_weight", 0) > 0:
        notes.append(f"A pairwise term (weight {cfg['sigma_rank_weight']:g}, margin "
                     f"{cfg.get('sigma_rank_margin', 0):g}) made each annotated clip's largest log sigma exceed "
                     "that of every cleaner clip of its batch, so that sigma rises with noise.")
    if cfg.get("voice_weight"):
        from .uncertainty import parse_voice_weight

        weights = parse_voice_weight(cfg["voice_weight"])
        drawn = ", ".join(f"the {voice} voice's {w:g} times" for voice, w in weights.items())
        notes.append(f"Some training voices' clips were drawn more often than the others: {drawn} as often.")
    if cfg.get("kind_pool"):
        from .uncertainty import pool_sizes

        per_kind = cfg.get("ood_per_kind", 150)
        wider = ", ".join(f"{n} {kind}" for kind, n in pool_sizes(per_kind, cfg["kind_pool"]).items() if n != per_kind)
        notes.append(f"The non-speech pool held {wider} clips (the other kinds {per_kind} each).")
    if cfg.get("kind_shares"):
        weighted = f", times {cfg['kind_weight'].replace(',', ', ')}" if cfg.get("kind_weight") else ""
        notes.append(f"Its rows were drawn kind by kind, each kind as often as a pool of "
                     f"{cfg.get('ood_per_kind', 150)} per kind draws it{weighted}.")
    for key, what in (("data_seed", "the speech pools and the thresholds' clips"), ("ood_seed", "the non-speech pool")):
        if cfg.get(key, -1) >= 0:
            notes.append(f"Seed {cfg[key]} chose {what} (--{key}), seed {cfg.get('seed', 0)} the rest.")
    if cfg.get("ema_decay", 0) > 0:
        notes.append(f"The released weights are an exponential moving average of the training steps' (decay "
                     f"{cfg['ema_decay']:g}, BatchNorm's running statistics averaged alike), not the last step's.")
    if not notes:
        return ""
    text = " ".join(notes) + " docs/uncertainty.md has the measurements."
    # wrapped as the rest of the card: greedy, at spaces only ("0.5-4 LSB" stays whole)
    return textwrap.fill(text, 100, break_on_hyphens=False, break_long_words=False) + "\n"


def threshold_origin(cfg: dict) -> str:
    """Where the card's two trained thresholds come from (training.uncertainty's coverage options)."""
    sigma = f"the {cfg['coverage']:.0%} quantile of the largest sigma over clean validation speech"
    if cfg.get("coverage_snr", 0) > 0:
        sigma += f" and over that speech under white noise and under babble at {cfg['coverage_snr']:g} dB SNR"
    speech = (f"the speech probability's hears {cfg['speech_coverage']:.0%} of the clean validation speech"
              if cfg.get("speech_coverage") else "the speech probability's is the classifier's own boundary")
    return textwrap.fill(f"The sigma threshold is {sigma} (each set apart, the largest threshold kept); {speech}.", 100,
                         break_on_hyphens=False, break_long_words=False)


def steadiness_text(m: Wav2SmallConfig) -> str:
    """The decision's steadiness clause of the card (empty for a model file without the measure)."""
    if not m.steady_block:
        return ""
    return (f", or more than {m.max_steady:g} of its pairs of consecutive loud "
            f"{m.steady_block * m.hop / m.sample_rate * 1000:g} ms blocks (loudest band at least "
            f"{m.steady_level_db:g} dB) keep the shape of their spectrum (cosine at least {m.steady_min_cos:g}: "
            "held tones, beeps, notes of a melody; docs/uncertainty.md, thirty-first round)")


def uncertainty_section(uq: dict, model_cfg: Wav2SmallConfig) -> str:
    th = uq["thresholds"]
    cfg = uq["config"]
    steady = ", max_steady" if model_cfg.steady_block else ""
    steady_cli = " / `--max-steady`" if model_cfg.steady_block else ""
    return f"""
## Uncertainty head

Four more outputs of the same linear layer, computed by the engine in the same int8 pass: a
standard deviation (sigma) for each of arousal, dominance and valence, and a speech probability.
They were trained ({cfg['max_iters']} steps from the distilled student) on the annotator's clips,
half of them corrupted (noise down to −10 dB SNR, clipping, telephone band, dropouts, coarse
quantisation), on real speech from Debian packages, and on non-speech (music, noise, babble,
tones, silence, sound effects) whose target is maximal uncertainty (training/uncertainty.py).
The evaluation on other files and generators is docs/uncertainty.md.
{recipe_notes(cfg)}
Every prediction carries a decision: **no speech** when the speech probability is below
{th['min_speech_prob']:.2f} or the level's modulation (how much the loudest mel band rises and falls
over 16 ms blocks, a standard deviation in dB, computed by the engine in the same pass) is below
{modulation_threshold(uq):g} dB{steadiness_text(model_cfg)}; **too uncertain** when any sigma is above {th['max_sigma']:.4f}; else **reliable**.
{threshold_origin(cfg)}
Pass `thresholds=wav2small.Thresholds(max_sigma, min_speech_prob, min_modulation_db{steady})` to `predict`,
or `--max-sigma` / `--min-speech-prob` / `--min-modulation-db`{steady_cli} to the CLI, to change them.

Training the head took {uq.get('wall_seconds', 0) / 60:.0f} min with {cfg.get('threads', 2)} CPU thread(s) (step 2 above). The int8
calibration also saw two non-speech clips of each kind (training split).
"""


def uq_flags(uq: dict) -> str:
    """The training.uncertainty options of a run that differ from the defaults (so the card's
    rebuild command is the run's), leaving out where it was written and a thresholds-only rerun."""
    from .uncertainty import UQConfig

    default = UQConfig()
    cfg = uq.get("config", {})
    skip = {"init", "out_dir", "thresholds_only", "resume", "checkpoint_interval", "stop_at"}
    return "".join(f" --{k}={cfg[k]}" for k in UQConfig.__dataclass_fields__
                   if k not in skip and k in cfg and cfg[k] != getattr(default, k))


def student_rebuild(train: dict, src: Path) -> str:
    """The card's rebuild commands for a model without an uncertainty head: the student's run."""
    overrides = train.get("overrides", {})
    distill_args = " ".join(f"--{k}={v}" for k, v in overrides.items())
    out = overrides.get("out_dir", "runs/default")
    wall = f"{train['wall_seconds_this_invocation'] / 60:.0f} min" if "wall_seconds_this_invocation" in train else "minutes"
    return (f"```bash\npython -m training.distill {distill_args}   # {wall} on 2 cores, deterministic\n"
            f"cp {out}/model.safetensors {out}/train.json training/default/\n"
            f"python -m training.release {src}                  # this card and default.w2s\n```\n")


def card(train: dict, fid: dict, nbytes: int, params: int, rebuild: str, extra: str = "",
         shipped_ccc: dict | None = None, calib_from: str = "", held_out_from: str = "") -> str:
    ccc = train.get("ccc", {})
    t = ccc.get("test", {})
    v = ccc.get("val", {})
    cfg = train.get("config", {})
    names = list(fid["ccc"])
    # the floor against the clip's unit variance (training.distill --floor_db; the model's amin)
    floor_db = 10 * math.log10(train.get("model_args", {}).get("amin", 1e-10))

    def row(d: dict, fmt: str = ".3f", keys=OUTPUT_NAMES) -> str:
        return " | ".join(f"{d.get(k, float('nan')):{fmt}}" for k in keys)

    def moved(split: str) -> str:
        before, after = ccc.get(split, {}), (shipped_ccc or {}).get(split, {})
        if not all(k in before and k in after for k in OUTPUT_NAMES):
            return "?"
        return f"{sum(after[k] - before[k] for k in OUTPUT_NAMES) / len(OUTPUT_NAMES):+.3f}"

    shipped_rows = "" if not shipped_ccc else (
        f"| validation, after uncertainty training (shipped) | {row(shipped_ccc.get('val', {}))} |\n"
        f"| test, after uncertainty training (shipped) | {row(shipped_ccc.get('test', {}))} |\n\n"
        "The first two rows are the distilled student; the uncertainty training fine-tunes all of it on\n"
        "clean and corrupted clips (docs/uncertainty.md), which moved the mean CCC by "
        f"{moved('val')} on validation\nand {moved('test')} on test.\n")

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
| architecture | Wav2Small, {params:,} trainable parameters (13 channels, 26 mels, log-mel floor {floor_db:.0f} dB) |
| file | default.w2s, {nbytes:,} bytes, format version {_engine.FORMAT_VERSION} |
| outputs | arousal, dominance, valence (nominally 0..1, not clipped){", each one's sigma, a speech probability" if len(names) > 3 else ""} |
| training data | {train.get('clips', {}).get('train', '?')} synthesised clips ({cfg.get('n_clips', '?')} in the corpus, seed {cfg.get('seed', '?')}), split by voice |
| training | {cfg.get('max_iters', '?')} steps, batch {cfg.get('batch_size', '?')}, crops of {cfg.get('crop_seconds', '?')} s, loss 1 − CCC |

## CCC against the annotator (float model, held-out voices)

| split | arousal | dominance | valence |
|---|---|---|---|
| validation | {row(v)} |
| test | {row(t)} |
{shipped_rows}
## int8 engine vs float model

Over {fid['clips']} real speech clips from Debian packages that calibration did not see ({held_out_from})
(raw outputs: log-sigmas are natural logs, the speech output a logit):

| | {" | ".join(names)} |
|---|{"---|" * len(names)}
| CCC (engine vs float) | {row(fid['ccc'], '.5f', names)} |
| max abs difference | {row(fid['max_abs_diff'], '.4f', names)} |
| float output std | {row(fid['float_std'], '.4f', names)} |

Quantization: calibrated on real speech from Debian packages ({calib_from}); docs/numerics.md
describes the integer arithmetic.

## Rebuild from nothing

{rebuild}{extra}
The numbers above come from that release run ({datetime.date.today().isoformat()}).
"""


def modulation_threshold(uq: dict) -> float:
    """The decision's modulation threshold (dB) of an uncertainty run's train.json; a run from
    before the threshold existed (format version 2) gets training.uncertainty's default."""
    from .uncertainty import UQConfig

    return float(uq["thresholds"].get("min_modulation_db", UQConfig.min_modulation_db))


def release(src: Path, out_dir: Path = PACKAGE_MODELS, n_clips: int = 48) -> dict:
    if not (src / "train.json").is_file():   # the card's numbers and its rebuild command come from it
        raise SystemExit(f"{src} has no train.json: release a finished training.distill or "
                         "training.uncertainty run")
    model = load_safetensors(src / "model.safetensors")
    train = read_json(src / "train.json")
    names, clips = real_speech(n_clips)
    calib, held_out = clips[0::2], clips[1::2]
    rebuild, extra = student_rebuild(train, src), ""
    if model.cfg.uncertainty:
        from .ood import nonspeech
        from .rebuild import read_built, read_selection, rebuild_section

        # non-speech too, so the activation ranges cover what the speech output must reject
        # (measured: engine-vs-float CCC within 0.0001 of speech-only calibration either way)
        # the train split the head was trained with (train.json; heads from before the option: the original)
        extended = bool(train.get("config", {}).get("extended_nonspeech", False))
        calib = calib + [c.audio for c in nonspeech("train", max_per_kind=2, extended=extended)]
        # the modulation threshold of the run; runs from before it was one get the current default
        model.cfg.min_modulation_db = modulation_threshold(train)
        uq, init = train, Path(train["config"]["init"])  # the card also shows the distilled student
        train = read_json(init / "train.json")
        rebuild, extra = rebuild_section(train, uq, read_built(src), read_selection(src)), uncertainty_section(uq, model.cfg)
    data = write_model(quantize(model, calib), out_dir / "default.w2s")
    fid = engine_fidelity(model, Model(out_dir / "default.w2s"), held_out)
    shipped = uq["ccc"] if model.cfg.uncertainty else None
    write_atomic(out_dir / "default.md", card(train, fid, len(data), model.trainable_parameters(), rebuild, extra,
                                              shipped, packages_of(names[0::2]), packages_of(names[1::2])).encode())
    return fid


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.release", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("src", type=Path, help="directory with model.safetensors (and train.json)")
    p.add_argument("--out_dir", type=Path, default=PACKAGE_MODELS,
                   help="where default.w2s and its card default.md go; the default replaces the package's "
                        "shipped model")
    args = p.parse_args(argv)
    if args.out_dir == PACKAGE_MODELS and not in_checkout():
        p.error(f"--out_dir is needed outside a source checkout: the default, {PACKAGE_MODELS}, is the "
                "installed package's own model")
    # checked before the calibration (about 20 s) starts
    if not args.src.is_dir():
        p.error(f"{args.src} is not a directory: release a finished training.distill or training.uncertainty run")
    if args.out_dir.exists() and not args.out_dir.is_dir():
        p.error(f"--out_dir {args.out_dir} is a file: choose a directory")
    missing = missing_from_run(args.src)
    if missing:
        p.error(f"{args.src} has no {' or '.join(missing)}: release a finished training.distill or "
                "training.uncertainty run")
    from .rebuild import cap_note, cpuinfo, pinned_here, unpinned_here

    if unpinned_here():
        with tempfile.TemporaryDirectory() as tmp:
            pinned = pinned_here(Path(tmp))
            print(cap_note(pinned, cpuinfo("vendor_id")), flush=True)
            return subprocess.call([sys.executable, "-m", "training.release",
                                    *(sys.argv[1:] if argv is None else argv)], env={**os.environ, **pinned})
    torch.set_num_threads(2)
    print("calibrating on real speech and measuring the engine "
          "against the float model (about 20 s)", flush=True)
    fid = release(args.src, args.out_dir)
    print(json.dumps(fid, indent=2))
    print(f"wrote {args.out_dir / 'default.w2s'} and {args.out_dir / 'default.md'}")
    return 0


if __name__ == "__main__":
    import training.cli

    training.cli.run(main, "python -m training.release")
