"""Uncertainty head: teach a trained student to say how sure it is, in the same int8 pass (issue 4).

    python -m training.uncertainty --init=training/default --out_dir=runs/uq
    python -m training.uncertainty --out_dir=runs/uq --resume=true   # continue a killed run
    python -m training.release runs/uq          # default.w2s with the head, and its card

The head is a mean-variance head plus a speech detector, i.e. four more rows of the student's last
linear layer (so the C engine runs it unchanged, bit-exact, in the same pass):

    outputs 0..2  arousal, dominance, valence (mu)
    outputs 3..5  log sigma of each (natural log; sigma in the units of the values)
    output  6     speech logit (log-odds that the clip is speech)

Training starts from a distilled student (--init) and fine-tunes all of it on batches that mix

  * the prosody annotator's espeak-ng clips (targets known), half of them corrupted by a random
    corruption of training.ood (noise -10..30 dB SNR, clipping, telephone, dropouts, quantisation;
    babble from training voices only): targets stay the clean clip's, so the student's error grows
    with the corruption and the Gaussian NLL teaches sigma to grow with it;
  * real speech from Debian packages (speaker groups of training.corpus's "train" split): speech,
    but without A/D/V targets, so it trains the speech detector only;
  * non-speech of training.ood's "train" split (music, noise, babble, tones, silence, effects; the
    evaluation uses other files and generators): log sigma is pulled to `ood_log_sigma` (maximal
    uncertainty, as the paper's OOD-trained "KL-out" variant targets a flat prior) and the speech
    logit to 0. Non-speech is capped at a quarter of the speech in each batch, as in the paper.
Measured options, all off by default (docs/uncertainty.md has the numbers; until the fifth round
none kept A/D/V CCC and int8 fidelity where they were; the shipped head, R44 seed 17, uses
--extended_nonspeech=true --keep_adv=60 --snap_to_grid=true --familiarity_weight=0.06 --nonspeech_weight=3
--sigma_rank_weight=1 --sigma_rank_margin=0.1 --max_iters=1200 --coverage_snr=20 --speech_min_snr=10
--voice_weight=whisper:4 --mean_on_clean=false --speech_coverage=0.96 --ema_decay=0.995
--kind_pool=effects:450 --kind_shares=true --kind_weight=effects:2.25,noise:0.375,silence:0.375
--seed=17 --threads=2 on a student
distilled with --crop_seconds=2.0 --floor_db=-60 --seed=2 --threads=2; training/default_uq/train.json
records it, and python -m training.rebuild replays it): --extended_nonspeech adds
training.ood's extended train generators (band-limited square/saw/triangle tones, random dual tones, beep trains, chirps and
sirens, synthetic effects, pitch-shifted/reversed/chained UI sounds); --ensemble_weight
adds (weight * the std of distilled students' A/D/V)^2 to the squared error sigma learns (a second
opinion in the same pass); --voice_shift_prob resamples some annotated rows (pitch and formants: an
unseen voice) so that sigma learns the error of unfamiliar voices, without the mean learning from them;
--honest names leave-voices-out students (training.distill --exclude_voices, one fold of the training
voices each): the squared error each training clip has under the student that never heard its voice,
minus the --init student's (which did), is added to the squared error sigma learns. The head's own
error on training voices is small and about the same for every voice; on unseen voices it is not,
and only such honest errors could tell sigma which voices look unfamiliar (measured: the gaps are
real, but sigma did not learn to rank voices from them; docs/uncertainty.md, third round);
--ood_bn=speech|eval keeps the non-speech rows out of BatchNorm's statistics (speech rows' statistics
for every row, or a second pass in eval mode) and --ood_trunk=false lets the non-speech rows train the
head rows only (fourth round: none kept dominance with the extended non-speech; 'eval' breaks
training, since the mode itself tells the two passes apart; without the trunk the head rows do not
separate non-speech).
--keep_adv=W adds W * the mean squared difference between the A/D/V outputs and those of a frozen copy
of the --init student (eval mode) on the clean annotated rows of each batch: a distillation term that
holds the values where the distilled student had them while the trunk learns non-speech; --l1_on_grid
puts the first conv layer (BatchNorm folded, as the exporter folds it) on its int8 codes and freezes it,
so that the engine runs exactly the float model's first layer, whose int8 weights are otherwise where
most of the uncertainty outputs' int8 error comes from (fifth round). --noise_floor=P adds a noise
floor of 0.5-4 LSB to a share P of the rows the student hears (the keep term's frozen copy hears
them without it), so that digital silence and the lowest bits stop moving A/D/V (sixth round).
--ccc_by_corruption takes the CCC term on the clean and on the corrupted annotated rows apart, so
that the corrupted rows' outputs keep the targets' spread instead of hedging towards the middle
(ninth round: it keeps the spread, but the error's order over corruptions does not change).
--speech_min_snr=S takes speech under added noise below S dB SNR out of the speech/non-speech loss
(speech 10 dB under babble sounds like babble; labelled speech, it taught the classifier that babble
is speech: twelfth round, shipped with S = 5); --babble_voices and --babble_speed change the talkers
of the non-speech babble clips (twelfth round: no effect on 6-talker babble). --espeak_babble=N adds N
non-speech clips of babble of the annotator's espeak-ng training voices (thirteenth round: it fixes
babble of unheard espeak-ng voices, not the evaluation's babble of recorded ones; not shipped).
--head=evidential trains sigma by deep evidential regression instead of the Gaussian NLL (two more
rows per dimension during training only, log nu and log(alpha - 1); the row the engine runs is the
epistemic log sigma, so the file is unchanged): the single-pass alternative the issue names,
measured against the Gaussian head in the fourteenth round. --sigma_rank_weight adds a pairwise
hinge that makes each annotated row's largest log sigma exceed, by --sigma_rank_margin, that of every
cleaner row of its batch (clean, or under white noise or babble at a higher SNR); with
--sigma_rank_trunk=false it reaches the log sigma rows only. --speech_coverage sets the speech
threshold, like sigma's, from the share of clean validation speech it hears; --real_shift_prob
voice-shifts some real speech rows (sixteenth round). --trim_real takes the digital silence off the
ends of the real speech pool's files (eighteenth round: it hears less of the validation speech).
--coverage_snr=S sets sigma's threshold to answer noisy validation speech at S dB SNR as well as
clean (nineteenth round). --voice_weight=whisper:W draws the whispered training voice's clips W times
as often in the annotated rows (twentieth round). --mean_on_clean=false takes the CCC term of A/D/V
off the clean annotated rows, which then keep the --init student's values through --keep_adv alone,
while the corrupted rows still learn the clean targets (twenty-fourth round).

Loss = (1 - CCC of mu on the annotated clips, as in distillation) + Gaussian NLL of sigma given the (detached) error
+ squared distance of OOD log sigma to its target + binary cross-entropy of the speech logit
(+ keep_adv * squared distance of mu to the --init student's on the clean annotated rows, when > 0)
(+ sigma_rank_weight * the rank hinge, when > 0).

The decision thresholds written into the model: speech when the speech probability is >= 0.5
(logit >= 0: the classifier's own boundary; --speech_coverage sets another); "too uncertain" when any sigma exceeds the
`coverage` quantile (default 0.95) of the largest sigma over clean validation speech, taken for the
annotator's validation voices and for real speech of the validation speaker groups apart, the
larger of the two: 95 % of either kind of clean speech is answered, noisier speech less (with
--coverage_snr, 95 % of that speech under white noise and under babble at that SNR too); "no speech"
also when the level's modulation is below --min_modulation_db (5 dB). docs/uncertainty.md has the
measurements and why this method was chosen over MC dropout and deep ensembles.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .distill import load_checkpoint, parse_bool, save_checkpoint
from .files import held_run, read_json
from .metrics import ccc_torch
from .model import Wav2Small, Wav2SmallConfig, load_safetensors
from .ood import SNR_KINDS

N_VALUES = 3


@dataclass
class UQConfig:
    """The options of python -m training.uncertainty; HELP (below) has each one's description."""
    init: str = "training/default"
    out_dir: str = "runs/uq"
    seed: int = 0
    n_clips: int = 3000
    crop_seconds: float = 2.0
    batch_speech: int = 16
    batch_real: int = 4
    batch_ood: int = 5               # non-speech per step (<= 1/4 of the speech, as in the paper)
    corrupt_prob: float = 0.5
    # measured alternatives (docs/uncertainty.md): the defaults gave the best uncertainty
    mean_on_corrupted: bool = True
    mean_on_clean: bool = True       # false: the CCC term on corrupted rows only, clean rows held by --keep_adv
    freeze_bn: bool = False
    trunk_lr_scale: float = 1.0
    ood_trunk: bool = True           # non-speech rows train the trunk too (false: only the head rows)
    ood_bn: str = "batch"            # BatchNorm statistics of a batch: "batch" (all rows), "speech" (speech rows only), "eval"
    max_iters: int = 400
    lr: float = 1e-3
    min_lr: float = 1e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.0           # > 0: the saved model is an exponential moving average of the steps' weights
    ood_log_sigma: float = math.log(0.3)
    init_log_sigma: float = math.log(0.1)
    ood_per_kind: int = 150          # training.ood clips per kind
    kind_pool: str = ""              # "KIND:N,...": N clips of these kinds instead of ood_per_kind
    kind_shares: bool = False        # non-speech rows drawn kind by kind, each as often as ood_per_kind alone draws it
    kind_weight: str = ""            # "KIND:W,...": with kind_shares, these kinds' shares times W (then normalised)
    ood_seed: int = -1               # seed of training.ood's listing the non-speech pool is taken from (-1: --seed)
    data_seed: int = -1              # seed of the speech pools, babble bank, familiarity and threshold clips (-1: --seed)
    extended_nonspeech: bool = False  # training.ood's added train generators (tone variants, synthetic effects, varied UI sounds)
    ensemble: str = "training/default,training/ens1,training/ens2"  # students whose disagreement sigma also learns ('' = none)
    ensemble_weight: float = 0.0     # sigma^2 target = error^2 + (weight * std of the ensemble's means)^2
    voice_shift_prob: float = 0.0    # share of annotated rows pitch/formant-shifted (an unseen voice); sigma learns from them, mu not
    voice_shift_max: float = 1.3     # largest resampling factor of a voice shift (and 1/it the smallest)
    real_shift_prob: float = 0.0     # share of the real speech rows voice-shifted likewise (new voices for the speech output)
    honest: str = ""                 # leave-voices-out students (training.distill --exclude_voices); '' = off
    honest_weight: float = 1.0       # sigma^2 target += weight * the voice gap those students measure
    keep_adv: float = 0.0            # weight of the squared distance of A/D/V to the frozen --init student's on clean annotated rows
    l1_on_grid: bool = False         # first conv layer snapped to its int8 codes (BatchNorm folded) and frozen
    snap_to_grid: bool = False       # after training, every weight the exporter quantizes set to its engine value
    noise_floor: float = 0.0         # share of the rows the student hears with a 0.5-4 LSB noise floor added
    ccc_by_corruption: bool = False
    familiarity_weight: float = 0.0  # sigma^2 target += (weight * sqrt(d / mean d))^2, d the --init student's feature distance
    familiarity_rank: int = 32       # principal directions of that distance (training.familiarity)
    familiarity_rows: str = "all"    # annotated rows the distance is added on: "all" or "clean"
    nonspeech_weight: float = 1.0    # weight of the non-speech rows in the speech/non-speech loss
    speech_min_snr: float = -100.0   # speech rows under added noise below this SNR (dB): no speech target
    sigma_rank_weight: float = 0.0   # weight of a term that ranks sigma by SNR across a batch's annotated rows
    sigma_rank_margin: float = 0.05  # log sigma by which a noisier row must exceed a cleaner one
    sigma_rank_trunk: bool = True    # the rank term trains the trunk too (false: only the log sigma rows)
    real_per_group: int = 40
    trim_real: bool = False          # the real speech pool without its files' leading/trailing digital silence
    babble_bank: int = 24
    babble_voices: str = "6-12"      # talkers in each non-speech babble clip (inclusive range)
    babble_speed: float = 1.0        # > 1: each of those talkers sped up or slowed down by up to this
    espeak_babble: int = 0           # non-speech clips of babble of the annotated (espeak-ng) training voices
    voice_weight: str = ""           # "VOICE:W,...": annotated clips of these training voices drawn W times as often
    derived_voices: float = 0.0      # share of the annotated training clips spoken by derived voices (as distill's)
    head: str = "gaussian"           # sigma's loss: "gaussian" (NLL) or "evidential" (NIG, deep evidential regression)
    evidential_reg: float = 0.01     # --head=evidential: weight of the evidence regulariser
    coverage: float = 0.95           # clean validation speech answered at the default threshold
    speech_coverage: float = 0.0     # clean validation speech heard as speech at the default speech threshold; 0: logit 0
    coverage_snr: float = 0.0        # > 0: the sigma threshold answers `coverage` of noisy validation speech at this SNR too
    min_modulation_db: float = 5.0   # the decision's modulation threshold written into the model (dB); 0 = off
    thresholds_only: bool = False    # load out_dir's trained model and only set its thresholds again
    resume: bool = False             # continue the run in out_dir from its ckpt.pt
    checkpoint_interval: int = 50    # write out_dir/ckpt.pt every N steps (and at the end)
    stop_at: int = 0                 # stop (with a checkpoint) after this step; 0 = run to max_iters
    threads: int = 2                 # the shipped model was trained with 2 (float results depend on it)

    @property
    def speech_seed(self) -> int:
        """The seed of the speech pools and what is fitted on them (--data_seed, else --seed)."""
        return part_seed(self.seed, self.data_seed)

    @property
    def pool_seed(self) -> int:
        """The seed of the non-speech pool's listing (--ood_seed, else --seed)."""
        return part_seed(self.seed, self.ood_seed)

    @classmethod
    def parse(cls, argv: list[str] | None = None) -> UQConfig:
        p = argparse.ArgumentParser(prog="python -m training.uncertainty", description=__doc__,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        for f in fields(cls):
            kind = parse_bool if isinstance(f.default, bool) else type(f.default)   # a typo is an error
            text = HELP.get(f.name, "")
            # SUPPRESS: only the options given appear, so that --resume can take the rest from the run
            p.add_argument(f"--{f.name}", type=kind, default=argparse.SUPPRESS,
                           help=f"{text} (default: {f.default})".strip())
        given = vars(p.parse_args(argv))
        if given.get("resume"):
            saved = read_checkpoint(Path(given.get("out_dir", cls.out_dir)))["config"]
            known = {f.name for f in fields(cls)} - {"stop_at"}   # a stop is not part of the run
            given = {**{k: v for k, v in saved.items() if k in known}, **given}
        return cls(**given)


RESUME_MAY_CHANGE = ("resume", "threads", "checkpoint_interval", "stop_at")  # the rest is the run

HELP = {   # every option's --help line (tests/test_uncertainty.py checks that none is missing)
    "init": "directory of the distilled student (training.distill run: model.safetensors) that gets the head",
    "out_dir": "where ckpt.pt, model.safetensors and train.json go",
    "seed": "seeds the prosody corpus draw (as training.distill --seed: same clips), the pools, the batches, "
            "their corruptions and the new head rows' training",
    "n_clips": "prosody corpus size (as training.distill --n_clips: same clips)",
    "crop_seconds": "length of every training crop (speech and non-speech), in seconds",
    "batch_speech": "annotated espeak-ng clips per step (they train A/D/V, sigma and the speech output)",
    "batch_real": "real speech clips per step (they train the speech output only: no A/D/V targets)",
    "corrupt_prob": "share of the annotated clips of a batch that are corrupted (training.ood's corruptions; "
                    "their targets stay the clean clip's)",
    "mean_on_corrupted": "the CCC term of A/D/V also on the corrupted clips; false: on the clean ones only",
    "mean_on_clean": "the CCC term of A/D/V also on the clean clips; false: on the corrupted ones only, and the "
                     "clean ones keep the --init student's A/D/V through the --keep_adv term alone (the student "
                     "already learnt them and was chosen at its best validation step; more of the same term "
                     "fits the training voices). Needs --keep_adv > 0 and --mean_on_corrupted=true",
    "freeze_bn": "keep the student's BatchNorm statistics (BatchNorm in eval mode during training)",
    "trunk_lr_scale": "learning rate of the trunk relative to the head's; 0 freezes the trunk (and the A/D/V rows)",
    "max_iters": "training steps",
    "lr": "learning rate of the head at step 0 (AdamW; cosine decay to --min_lr at --max_iters)",
    "min_lr": "learning rate at the end of the cosine decay",
    "weight_decay": "AdamW weight decay",
    "grad_clip": "the gradient norm is clipped to this at every step",
    "ood_log_sigma": "the log sigma non-speech rows are pulled to: maximal uncertainty (log 0.3: a uniform guess "
                     "over the value range has sigma 0.29)",
    "init_log_sigma": "log sigma of the new head rows at the start (a constant: their weights start at 0)",
    "ccc_by_corruption": "the CCC term on the clean and on the corrupted rows apart, so that each keeps its spread",
    "real_per_group": "real speech files per speaker group in the speech pool",
    "babble_bank": "babble noises (6-12 training voices each) made up front, for the babble corruption of the "
                   "annotated clips",
    "extended_nonspeech": "train on training.ood's extended train split: band-limited square/saw/triangle "
                          "tones, random dual tones, beep trains, chirps and sirens, synthetic effects (bells, "
                          "clicks, whooshes, zaps, impacts, engines, 8-bit blips, sequences of them) and the "
                          "train UI sounds pitch-shifted, reversed and chained; false: the original train split",
    "ensemble": "comma-separated dirs of distilled students run on every annotated row (clean and "
                "corrupted); the std of their A/D/V is a second-opinion error signal for sigma, so that "
                "sigma also ranks clean speech the students disagree on; '' turns it off",
    "ensemble_weight": "sigma's Gaussian NLL sees error^2 + (weight * ensemble std)^2 per dimension; 0 = error only",
    "voice_shift_prob": "share of the annotated rows resampled by a random factor in [1/voice_shift_max, "
                        "voice_shift_max] (pitch and formants move together: a voice the student has not "
                        "heard) with the clean clip's target; sigma learns their error, the CCC term of mu "
                        "leaves them out",
    "voice_shift_max": "largest factor of a voice shift (1.3: about 4.5 semitones)",
    "real_shift_prob": "share of the real speech rows (speech output only) resampled by a random factor in "
                       "[1/voice_shift_max, voice_shift_max]: the real pool holds the voices of a few "
                       "packages, and the speech output hears some unseen groups poorly (klettres' Tswana "
                       "letters, sixteenth round); 0 = off (batches exactly as without it)",
    "honest": "comma-separated dirs of leave-voices-out students (python -m training.distill "
              "--exclude_voices=...; together they must leave out every training voice once): each "
              "training clip's squared error under the student that never heard its voice, minus that "
              "of the --init student that did (per dimension, >= 0), is the voice gap: what not knowing "
              "the voice adds to the error. Sigma's NLL sees error^2 + honest_weight * gap, on clean "
              "and corrupted rows, so that sigma can learn which voices and clips look unfamiliar; the "
              "mean is trained as without it; '' turns it off",
    "honest_weight": "weight of the voice gap in sigma's squared-error target (with --honest)",
    "keep_adv": "weight of a distillation term that holds A/D/V to the --init student's: a frozen copy "
                "(eval mode) runs the clean annotated rows of every batch and the loss gains weight * the "
                "mean squared difference of the A/D/V outputs (the 'keep' term), so that fine-tuning for "
                "uncertainty moves the values less; 0 = off (the loss is exactly the one without it)",
    "l1_on_grid": "snap the first conv layer's weights (with its BatchNorm folded in, as the exporter "
                  "folds it) to the int8 codes the exporter will give them, and freeze that layer and its "
                  "BatchNorm (running statistics included) for the whole training: the engine then runs "
                  "exactly the float model's first layer, whose int8 weights are otherwise what most of the "
                  "uncertainty outputs' int8 error comes from",
    "snap_to_grid": "after training (and with --thresholds_only, on out_dir's model), set every weight the "
                    "exporter quantizes to the value its code stands for (conv layers with BatchNorm folded, "
                    "vox pooling, head: training.qat.Grid's offsets), before the thresholds and CCC are "
                    "measured: the saved float model then has the engine's weights, and engine and float "
                    "model differ only by the int8 activations and the fixed-point arithmetic",
    "noise_floor": "share of every batch's rows (speech and non-speech) that the student hears with "
                   "Gaussian noise of 0.5-4 int16 LSB RMS (log-uniform) added: real microphones never "
                   "deliver digital silence, and a student that only heard it exactly zero moves its "
                   "A/D/V with the lowest bits there (sixth round). The --keep_adv anchor and the "
                   "targets stay those of the rows without it; 0 = off (batches exactly as without it)",
    "familiarity_weight": "sigma's NLL sees error^2 + (weight * sqrt(d / d_fit))^2 on every annotated row "
                          "(clean and corrupted), d the squared whitened distance of the --init student's "
                          "head inputs from those of training clips and real speech of the training groups "
                          "(training.familiarity.Distance, fitted once before training; d_fit its mean "
                          "there, so weight is the std it adds to a typical training clip, in A/D/V "
                          "units): sigma is taught how unfamiliar a clip looks, not only the error of "
                          "voices it has heard; 0 = off",
    "familiarity_rank": "principal directions of the --familiarity_weight distance",
    "familiarity_rows": "the annotated rows whose sigma target gains the --familiarity_weight distance: "
                        "'all' (clean and corrupted) or 'clean' (clean rows only; corrupted rows keep "
                        "their measured error alone)",
    "nonspeech_weight": "weight of each non-speech row in the speech/non-speech cross-entropy (speech rows "
                        "weigh 1; a batch holds fewer non-speech rows, and a weight above 1 moves the "
                        "classifier's boundary away from noise); 1 = the plain mean",
    "speech_min_snr": "annotated rows corrupted by additive noise (white or babble) below this SNR in dB "
                      "get no target in the speech/non-speech cross-entropy (weight 0; sigma still learns "
                      "their error): speech 10 dB under babble sounds like babble, and labelling it speech "
                      "teaches the classifier that babble is speech; -100 = every row labelled",
    "sigma_rank_weight": "weight of a pairwise ranking term on the largest log sigma of the annotated rows: "
                         "for every two rows of a batch where one is clean, or under additive noise "
                         "(white or babble) at a higher SNR, than the other, the noisier row's log sigma "
                         "must exceed the cleaner row's by --sigma_rank_margin (hinge, mean over such "
                         "pairs; rows under other corruptions or voice-shifted take no part). The NLL "
                         "alone lets sigma follow noise only as far as the error grows with it, which for "
                         "a noise-robust mean is little and differs between seeds (sixteenth round, "
                         "docs/uncertainty.md); 0 = off (the loss is exactly the one without it)",
    "sigma_rank_margin": "with --sigma_rank_weight: the log sigma by which the noisier row of a pair must "
                         "exceed the cleaner one",
    "sigma_rank_trunk": "false: the rank term sees log sigma computed from detached head inputs, so it "
                        "trains only the log sigma rows and never the features A/D/V are read from",
    "trim_real": "take the leading and trailing digital silence off the real speech pool's files, as the "
                 "evaluations do (the thresholds' validation speech stays as packaged; files with less "
                 "than 0.25 s left are left out): some packages' files are mostly zeros (klettres' Low "
                 "German letters: 73 %%), and a crop of them labelled speech is mostly silence (eighteenth "
                 "round, docs/uncertainty.md: the validation speech was heard less, not more); false = the "
                 "files as they are",
    "babble_voices": "how many training voices talk at once in the non-speech babble clips, LO-HI "
                     "(drawn per clip; the evaluation's babble has 6-9 voices it never heard); the "
                     "babble that corrupts speech keeps 6-12",
    "babble_speed": "each talker of the non-speech babble clips is played faster or slower by its own "
                    "factor, log-uniform in [1/babble_speed, babble_speed] (pitch and formants move "
                    "together: voices the training split does not have); 1 = as recorded",
    "espeak_babble": "add this many non-speech clips to the pool: babble of the annotator's espeak-ng "
                     "training clips, --babble_voices different voices at once (4 s each, -35 to -12 dBFS): "
                     "the recorded babble has a few dozen voices of a few packages, and babble of voices "
                     "no run heard is called speech more often (thirteenth round: it fixes that for "
                     "espeak-ng voices, not for the evaluation's recorded ones; not shipped); 0 = none",
    "voice_weight": "VOICE:W[,VOICE:W...]: the annotated rows draw each clip of these training voices "
                    "W times as often as the others (W > 0); the whispered voice is about 2 %% of the "
                    "training clips, and whispered speech under white noise is what the capped heads "
                    "call non-speech (twentieth round, docs/uncertainty.md: the heads that hear it call "
                    "babble speech too); '' = every clip alike",
    "derived_voices": "share of the annotated training rows' clips of voiced variants spoken instead by a "
                      "new voice drawn from theirs (training.distill --derived_voices, training/variants.py), "
                      "so that the trunk's fine-tuning hears the voices its student heard; validation and "
                      "the familiarity fit keep the plain voices; 0 = the plain corpus",
    "ood_bn": "what BatchNorm normalises a training batch with: 'batch' (the statistics of all its rows, "
              "non-speech included), 'speech' (the statistics of its speech rows only, applied to every row; "
              "the running statistics move with them only), 'eval' (speech rows in train mode, then the "
              "non-speech rows in a second pass with BatchNorm in eval mode, i.e. by the running statistics)",
    "ood_trunk": "false: the non-speech rows' pooled features are detached, so non-speech trains only "
                 "the head rows (log sigma, speech logit), never the trunk",
    "ood_per_kind": "training.ood clips per non-speech kind in the pool",
    "kind_pool": "KIND:N[,KIND:N...]: N training.ood clips of these kinds in the pool instead of --ood_per_kind "
                 "(the non-speech rows draw uniformly over the pool's clips, so a larger kind is also drawn "
                 "more often, unless --kind_shares), e.g. effects:450",
    "kind_shares": "draw the non-speech rows kind by kind, each kind as often as a pool of --ood_per_kind clips "
                   "per kind would draw it (then a clip of that kind uniformly), so that --kind_pool widens what a "
                   "kind holds without taking draws from the others; false: uniformly over the pool's clips",
    "kind_weight": "KIND:W[,KIND:W...]: with --kind_shares, these kinds' shares of the non-speech draws times W "
                   "before the shares are normalised, e.g. effects:2.25,noise:0.58 draws effects more often "
                   "and noise less, the other kinds as before",
    "ood_seed": "seed of training.ood's listing the non-speech pool is taken from (which items, where long files "
                "are cut, which generator draws); -1: --seed. Lets one seed's non-speech pool be trained with "
                "another seed's speech and batches (the head's new rows start at fixed values)",
    "data_seed": "seed of the speech a run trains on and what is fitted on it: the prosody corpus (synthesised "
                 "per seed), the real speech files of each group, the corruptions' babble bank and espeak-ng "
                 "babble, the familiarity fit's clips and the validation clips the thresholds are set on; "
                 "-1: --seed. With --ood_seed as well, --seed is left with the batches alone",
    "batch_ood": "non-speech clips per step (<= 1/4 of the speech, as in the paper)",
    "head": "what sigma is trained with: 'gaussian' (the Gaussian NLL of the error: sigma is the error's "
            "scale) or 'evidential' (deep evidential regression, Amini et al. 2020: the NIG NLL and "
            "evidence regulariser, with two more rows per dimension, log nu and log(alpha - 1), that only "
            "training has; the shipped row is the NIG's epistemic log sigma, 0.5 log(beta / (nu (alpha - "
            "1))), so the engine runs it unchanged; non-speech is pulled to ood_log_sigma and to no "
            "evidence). Fourteenth round, docs/uncertainty.md",
    "evidential_reg": "--head=evidential: weight of the regulariser |error| * (2 nu + alpha) (evidence "
                      "where the error is large costs; on non-speech the error counts as 1)",
    "ema_decay": "0..1: > 0 saves an exponential moving average of the weights over the steps (Polyak "
                 "averaging; BatchNorm's running statistics averaged alike) instead of the last step's, "
                 "the average of step t weighing min(decay, (1 + t) / (10 + t)); 0 = the last step's weights. "
                 "Twenty-sixth round, docs/uncertainty.md",
    "coverage": "share of clean validation speech answered at the default sigma threshold",
    "speech_coverage": "share of clean validation speech (each set: the annotator's voices, real speech of the "
                       "validation groups) taken for speech at the default speech threshold, which is then "
                       "the largest speech logit that hears that share of every set: stricter than the "
                       "classifier's own boundary when the classifier is sure of speech, laxer when it is "
                       "not, so that seeds that put the boundary elsewhere answer alike; 0 = the boundary "
                       "itself (logit 0, probability 0.5)",
    "coverage_snr": "SNR in dB (5..40): the sigma threshold also answers `coverage` of the annotator's validation "
                    "clips under white noise and under babble of training voices at this SNR, each kind apart "
                    "(nineteenth round: heads whose sigma rises with the first dB of noise reject speech at "
                    "20 dB that they predict about as well as clean); 0 = clean speech only",
    "min_modulation_db": "dB (0..40): the model file's default modulation threshold: a clip whose level (the loudest "
                         "mel band, over 16 ms blocks) rises and falls less than this, as a standard deviation "
                         "over time, is \"no speech\" (babble of many talkers, noise, hum; twenty-first round); "
                         "0 = off",
    "thresholds_only": "load out_dir's trained model and only set its thresholds again",
    "threads": "torch CPU threads (results are deterministic for a given thread count)",
    "resume": "continue the run in out_dir from its ckpt.pt: the other options come from the run, and only "
              f"{', '.join('--' + k for k in RESUME_MAY_CHANGE[1:])} may differ; the "
              "result is the uninterrupted run's, bit for bit, at the same thread count. Without it, an "
              "out_dir that holds a run (ckpt.pt, train.json or model.safetensors) is never overwritten",
    "checkpoint_interval": "write out_dir/ckpt.pt (model, optimiser, random state, history) every N steps "
                           "and at the end: a killed run loses at most N steps",
    "stop_at": "stop after this step with a checkpoint (continue with --resume=true); 0 = run to max_iters",
}

CHECKPOINT = "ckpt.pt"


def read_checkpoint(out_dir: Path) -> dict[str, Any]:
    path = out_dir / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    return load_checkpoint(path, "training.uncertainty", "init")


def open_run(cfg: UQConfig) -> dict[str, Any] | None:
    """The checkpoint to continue from (--resume), after checking that it is this run's; None for a
    new run, whose out_dir must not hold one already."""
    out_dir = Path(cfg.out_dir)
    if not cfg.resume:
        held = held_run(out_dir)
        if held:   # a finished (or half-finished) run is never overwritten silently
            raise SystemExit(held)
        return None
    ckpt = read_checkpoint(out_dir)
    now = asdict(cfg)
    changed = [f"--{k}={now[k]} (the run has {v!r})" for k, v in ckpt["config"].items()
               if k in now and k not in RESUME_MAY_CHANGE and now[k] != v]
    if changed:
        raise ValueError("--resume continues the run as it was started; start a new --out_dir to change "
                         + ", ".join(changed))
    return ckpt


def with_uncertainty_head(base: Wav2Small, init_log_sigma: float) -> Wav2Small:
    """A copy of a 3-output student with four more head rows: log sigmas (flat at init_log_sigma)
    and a speech logit (0). The trunk and the A/D/V rows are the base model's."""
    cfg = Wav2SmallConfig(**{**asdict(base.cfg), "n_outputs": 2 * N_VALUES + 1, "uncertainty": True})
    model = Wav2Small(cfg)
    state = {k: v for k, v in base.state_dict().items() if not k.startswith("adv.")}
    model.load_state_dict(state, strict=False)
    with torch.no_grad():
        model.adv.weight.zero_()
        model.adv.bias.zero_()
        model.adv.weight[:N_VALUES] = base.adv.weight
        model.adv.bias[:N_VALUES] = base.adv.bias
        model.adv.bias[N_VALUES:2 * N_VALUES] = init_log_sigma
    return model


def snap_first_layer(model: Wav2Small) -> None:
    """Put the first conv layer's weights on the exporter's int8 grid (training.quantize.
    conv_weight_codes: BatchNorm folded, one scale per output channel), so that quantizing them again
    gives the same codes and the float layer is the engine's; then freeze the layer and its BatchNorm
    (train() must be followed by `model.vgg7.l1.norm.eval()`: see train)."""
    from .quantize import batchnorm_scale, conv_weight_codes

    block = model.vgg7.l1
    codes, scale, _, _ = conv_weight_codes(block)
    inv = batchnorm_scale(block.norm)
    if not (inv != 0).all():
        raise ValueError("a zero BatchNorm scale in the first layer: its weights cannot be snapped")
    folded = codes.astype(np.float64) * scale[:, None, None, None]           # (C_out, 3, 3, C_in)
    with torch.no_grad():
        block.conv.weight.copy_(torch.from_numpy((folded / inv[:, None, None, None]).transpose(0, 3, 1, 2)))
    for q in block.parameters():
        q.requires_grad_(False)


def snap_to_grid(model: Wav2Small) -> None:
    """Every weight training.quantize quantizes, set to the value of its code (training.qat.Grid's
    offsets: conv layers int8 per output channel with BatchNorm folded, vox values int16 and scores
    int8, head int16 / int8 rows). Quantizing the result gives the same codes again; the weights
    do not depend on calibration, so the activation ranges passed to Grid are placeholders."""
    from .qat import Grid

    placeholder = {**{f"l{i}": 1.0 for i in range(1, model.cfg.n_layers + 1)}, "pooled": 1.0, "gram": 1.0}
    grid = Grid(model.eval(), placeholder)
    v = model.vgg7
    with torch.no_grad():
        for i in range(1, model.cfg.n_layers + 1):
            getattr(v, f"l{i}").conv.weight += grid.delta[f"l{i}"]
        v.lin.weight += grid.delta["lin"]
        v.sof.weight += grid.delta["sof"]
        model.adv.weight += grid.delta["adv"]


def split_outputs(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, 7) -> mu (B, 3), log sigma (B, 3), speech logit (B,)."""
    return out[:, :N_VALUES], out[:, N_VALUES:2 * N_VALUES], out[:, 2 * N_VALUES]


def loss_terms(out: torch.Tensor, target: torch.Tensor, n_annotated: int, is_speech: torch.Tensor,
               ood_log_sigma: float, clean: torch.Tensor | None = None,
               spread: torch.Tensor | None = None, anchor: torch.Tensor | None = None,
               anchor_rows: torch.Tensor | None = None, keep_weight: float = 0.0,
               ccc_groups: torch.Tensor | None = None, nonspeech_weight: float = 1.0,
               speech_labelled: torch.Tensor | None = None, evidence: torch.Tensor | None = None,
               evidential_reg: float = 0.0, rank_snr: torch.Tensor | None = None,
               rank_weight: float = 0.0, rank_margin: float = 0.0,
               rank_log_sigma: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Rows [0, n_annotated) have targets; is_speech (B,) marks speech rows (annotated or not);
    `clean` (n_annotated,) marks the annotated rows the mean learns from (default: all);
    `spread` (n_annotated, 3), if given, is added to the squared error sigma learns (a second
    opinion: e.g. weight * the std of an ensemble's predictions, squared);
    `anchor` (n_annotated, 3), if given with keep_weight > 0, are a frozen student's A/D/V for the
    annotated rows: the "keep" term is keep_weight * the mean squared difference of mu to them over
    the rows `anchor_rows` marks (default: all); `ccc_groups` (n_annotated,) integer ids, if given,
    make the CCC term the mean of 1 - CCC within each group of >= 2 mean rows (each group's outputs
    must then keep the targets' spread on their own); `nonspeech_weight` weighs the non-speech rows'
    cross-entropy (the speech term is then sum(w * loss) / B); `speech_labelled` (B,) bool, if given,
    leaves the unmarked rows out of that cross-entropy (weight 0, still / B); `evidence` (B, 6), if
    given, are the evidential head's log nu and log(alpha - 1) per dimension: the "nll" term is then
    evidential_nll's, plus evidential_reg * |error| * (2 nu + alpha), and non-speech rows gain
    evidential_reg * (2 nu + alpha) (an error of 1, the whole range); `rank_snr` (n_annotated,), if
    given with rank_weight > 0, is each annotated row's SNR in dB (inf: clean; nan: not ranked), and
    the "rank" term is rank_weight * the mean over pairs of rows with different SNR of
    relu(rank_margin - (u_noisier - u_cleaner)), u the row's largest log sigma (of `rank_log_sigma`
    (n_annotated, 3) if given, e.g. computed from detached features). Without them the terms are
    exactly as before."""
    mu, log_sigma, logit = split_outputs(out)
    mu_a, ls_a = mu[:n_annotated], log_sigma[:n_annotated]
    err2 = (target - mu_a.detach()) ** 2  # sigma learns the error; mu learns from the CCC term only
    if spread is not None:
        err2 = err2 + spread
    keep = clean if clean is not None and int(clean.sum()) >= 2 else torch.ones(n_annotated, dtype=torch.bool)
    if ccc_groups is None:
        ccc_term = 1.0 - ccc_torch(mu_a[keep], target[keep]).mean()
    else:
        parts = [keep & (ccc_groups == g) for g in torch.unique(ccc_groups)]
        parts = [rows for rows in parts if int(rows.sum()) >= 2] or [keep]
        ccc_term = torch.stack([1.0 - ccc_torch(mu_a[rows], target[rows]).mean() for rows in parts]).mean()
    weight = None if nonspeech_weight == 1.0 else torch.where(is_speech, 1.0, nonspeech_weight)
    if speech_labelled is not None:
        weight = speech_labelled.float() if weight is None else weight * speech_labelled
    if evidence is None:
        nll = (ls_a + 0.5 * err2 * torch.exp(-2.0 * ls_a)).mean()
    else:
        log_nu, log_am1 = evidence[:n_annotated, :N_VALUES], evidence[:n_annotated, N_VALUES:]
        nll = (evidential_nll(err2, ls_a, log_nu, log_am1)
               + evidential_reg * torch.sqrt(err2 + 1e-12) * evidence_total(log_nu, log_am1)).mean()
    terms = {
        "ccc": ccc_term,
        "nll": nll,
        "speech": F.binary_cross_entropy_with_logits(logit, is_speech.float(), weight=weight),
    }
    ood = ~is_speech
    terms["ood"] = ((log_sigma[ood] - ood_log_sigma) ** 2).mean() if ood.any() else out.new_zeros(())
    if evidence is not None and ood.any():
        terms["ood"] = terms["ood"] + evidential_reg * evidence_total(
            evidence[ood, :N_VALUES], evidence[ood, N_VALUES:]).mean()
    if rank_snr is not None and rank_weight > 0:
        ranked = ls_a if rank_log_sigma is None else rank_log_sigma
        terms["rank"] = rank_weight * sigma_rank_loss(ranked.max(dim=1).values, rank_snr, rank_margin)
    if anchor is not None and keep_weight > 0:
        rows = anchor_rows if anchor_rows is not None else torch.ones(n_annotated, dtype=torch.bool)
        terms["keep"] = (keep_weight * ((mu_a[rows] - anchor[rows]) ** 2).mean() if rows.any()
                         else out.new_zeros(()))
    return terms


def rank_snr(clean_rows: torch.Tensor, snr: torch.Tensor) -> torch.Tensor:
    """What the rank term orders the annotated rows of a batch by (batch(..., with_clean=True,
    with_snr=True)'s last two): inf for clean rows, the SNR for rows under additive noise, nan for the
    rest (other corruptions, voice shifts: their severity is not on the SNR scale)."""
    return torch.where(clean_rows, math.inf, torch.where(torch.isinf(snr), math.nan, snr))


def sigma_rank_loss(u: torch.Tensor, snr: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean hinge over the ordered pairs (i, j) with snr[i] < snr[j] (nan rows left out, inf is the
    cleanest): relu(margin - (u[i] - u[j])). Zero when no such pair exists."""
    ok = ~torch.isnan(snr)
    u, snr = u[ok], snr[ok]
    noisier = snr[:, None] < snr[None, :]
    if not bool(noisier.any()):
        return u.new_zeros(())
    return F.relu(margin - (u[:, None] - u[None, :]))[noisier].mean()


# log nu and log(alpha - 1) are clamped to +-this in the evidential loss (exp must not overflow)
LOG_EVIDENCE_MAX = 8.0


def _clamp_evidence(log_nu: torch.Tensor, log_am1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return log_nu.clamp(-LOG_EVIDENCE_MAX, LOG_EVIDENCE_MAX), log_am1.clamp(-LOG_EVIDENCE_MAX, LOG_EVIDENCE_MAX)


def evidential_nll(err2: torch.Tensor, log_sigma: torch.Tensor, log_nu: torch.Tensor,
                   log_am1: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of squared errors err2 under a normal-inverse-gamma prior (deep
    evidential regression, Amini et al. 2020, eq. 8), parameterised so that the row the engine runs
    is the epistemic log sigma: nu = e^log_nu, alpha = 1 + e^log_am1, and beta = sigma^2 nu (alpha - 1),
    since Var[mu] = beta / (nu (alpha - 1)) = sigma^2. The log-evidence is clamped to +-LOG_EVIDENCE_MAX."""
    log_nu, log_am1 = _clamp_evidence(log_nu, log_am1)
    nu, alpha = torch.exp(log_nu), 1.0 + torch.exp(log_am1)
    log_omega = math.log(2.0) + 2.0 * log_sigma + log_nu + log_am1 + torch.log1p(nu)   # 2 beta (1 + nu)
    return (0.5 * (math.log(math.pi) - log_nu) - alpha * log_omega
            + (alpha + 0.5) * torch.logaddexp(torch.log(err2 * nu + 1e-30), log_omega)
            + torch.lgamma(alpha) - torch.lgamma(alpha + 0.5))


def evidence_total(log_nu: torch.Tensor, log_am1: torch.Tensor) -> torch.Tensor:
    """2 nu + alpha: the evidence deep evidential regression's regulariser charges for."""
    log_nu, log_am1 = _clamp_evidence(log_nu, log_am1)
    return 2.0 * torch.exp(log_nu) + 1.0 + torch.exp(log_am1)


# ------------------------------------------------------------------------------------------------
# data


@dataclass
class Pools:
    """Everything a step draws from: float32 clips at 16 kHz."""
    annotated: list[np.ndarray]     # espeak-ng train split
    targets: np.ndarray             # (N, 3)
    real: list[np.ndarray]          # Debian real speech, train groups
    ood: list[np.ndarray]           # training.ood non-speech, train split
    babble: list[np.ndarray]        # babble noise of training voices (made once: it reads many files)
    voices: list[str] | None = None  # voice of each annotated clip
    pick_p: np.ndarray | None = None  # probability of each annotated clip per draw (--voice_weight), else uniform
    gap: np.ndarray | None = None    # (N, 3) voice gap of each annotated clip (--honest), else None
    ood_p: np.ndarray | None = None  # probability of each non-speech clip per draw (--kind_shares), else uniform


def trim_digital_silence(x: np.ndarray, min_seconds: float = 0.25, lsb: int = 2) -> np.ndarray | None:
    """x without its leading and trailing digital silence (samples within `lsb` int16 steps of zero);
    None when less than `min_seconds` is left. Some packaged recordings carry seconds of it (klettres'
    Danish words: 2-4 s of zeros around 0.5-3 s of speech), so that a clip cut from their start can
    hold no speech at all."""
    loud = np.flatnonzero(np.abs(x) * 32768.0 > lsb)
    if len(loud) == 0 or loud[-1] + 1 - loud[0] < min_seconds * 16000:
        return None
    return x[loud[0]:loud[-1] + 1]


def real_speech(splits: tuple[str, ...], per_group: int, seed: int,
                trim: bool = False) -> list[tuple[str, np.ndarray]]:
    """Real speech of training.corpus's speaker groups in `splits` (train: train; eval: val+test).
    trim: without leading and trailing digital silence, files with almost nothing else left out
    (the evaluations, and the training pool with --trim_real; the thresholds take the files as they are)."""
    from .corpus import debian_entries

    return load_real_speech(debian_entries(max_per_group=per_group, seed=seed), splits, trim)


def load_real_speech(entries: Sequence, splits: tuple[str, ...],
                     trim: bool = False) -> list[tuple[str, np.ndarray]]:
    """(group, float32 audio at 16 kHz) of the corpus entries in `splits` (real_speech)."""
    from wav2small.audio import load

    out = []
    for e in entries:
        if e.split in splits:
            try:
                audio = load(e.path, 16000).astype(np.float32)
            except Exception as err:  # noqa: BLE001 - one unreadable file must not stop a run
                print(f"warning: skipped {e.path}: {err}", file=sys.stderr)
                continue
            audio = trim_digital_silence(audio) if trim else audio
            if audio is not None:
                out.append((e.group, audio))
    return out


def real_speech_record(entries: Sequence) -> dict:
    """Which Debian real speech a run draws (`entries`: training.corpus.debian_entries with its
    real_per_group and seed): files and speaker groups of the "train" split (the speech pool, the
    familiarity reference) and of "val" (the thresholds), and training.corpus.fingerprint of both.
    The installed packages decide it, so it goes into train.json, and training.rebuild compares the
    machine's with the shipped head's."""
    from .corpus import fingerprint

    drawn = [e for e in entries if e.split in ("train", "val")]
    record: dict = {split: {"files": sum(e.split == split for e in drawn),
                            "groups": sorted({e.group for e in drawn if e.split == split})}
                    for split in ("train", "val")}
    record["fingerprint"] = fingerprint(drawn)
    return record


def voice_range(spec: str) -> tuple[int, int]:
    """--babble_voices "LO-HI" (or "N") as (LO, HI); SystemExit with the reason when it is not one."""
    lo, dash, hi = spec.partition("-")
    try:
        r = (int(lo), int(hi if dash else lo))
    except ValueError:
        r = (0, 0)
    if not 1 <= r[0] <= r[1]:
        raise SystemExit(f"--babble_voices must be LO-HI with 1 <= LO <= HI (e.g. 4-12), got {spec!r}")
    return r


def talker_streams(clips: Sequence[np.ndarray], voices: Sequence[str], count: int, n: int,
                   rng: np.random.Generator) -> Iterator[np.ndarray]:
    """`count` talkers of different voices (voices[i] is clip i's; one clip each, tiled from a random
    offset to n samples, unit RMS), drawn lazily for training.ood.mix_talkers."""
    from .distill import fit_length

    by_voice: dict[str, list[int]] = {}
    for i, v in enumerate(voices):
        by_voice.setdefault(v, []).append(i)
    names = sorted(by_voice)
    for v in rng.choice(len(names), min(count, len(names)), replace=False):
        pick = by_voice[names[v]]
        x = np.asarray(clips[pick[int(rng.integers(len(pick)))]], np.float64)
        x = fit_length(x, n, int(rng.integers(0, max(1, len(x) - n + 1))), "repeat")
        yield x / (float(np.sqrt(np.mean(x ** 2))) or 1.0)


def clip_babble(clips: Sequence[np.ndarray], voices: Sequence[str], count: int, talkers: tuple[int, int],
                rng: np.random.Generator, seconds: float = 4.0) -> list[np.ndarray]:
    """`count` babble clips of annotated clips (--espeak_babble): talkers[0]..talkers[1] voices at
    once, float32 at the level of training.ood's recorded babble (at_babble_level)."""
    from .ood import at_babble_level, mix_talkers

    n = int(seconds * 16000)
    out = []
    for _ in range(count):
        k = int(rng.integers(talkers[0], talkers[1] + 1))
        mix = mix_talkers(talker_streams(clips, voices, k, n, rng), n, rng)
        out.append(at_babble_level(mix, rng).astype(np.float32))
    return out


def load_pools(cfg: UQConfig, log) -> Pools:
    from .distill import TrainConfig, load_prosody_corpus
    from .ood import make_babble, nonspeech

    t0 = time.time()
    seed = cfg.speech_seed
    splits = load_prosody_corpus(TrainConfig(n_clips=cfg.n_clips, seed=seed, derived_voices=cfg.derived_voices),
                                 16000, log)
    to_f = lambda clips: [c.astype(np.float32) / 32768.0 for c in clips]
    real = [a for _, a in real_speech(("train",), cfg.real_per_group, seed, trim=cfg.trim_real)]
    # kind by kind: the same clips, in the same order, as one call with a common cap
    by_kind = {kind: [c.audio for c in nonspeech("train", seed=cfg.pool_seed, max_per_kind=n, kinds=(kind,),
                                                 extended=cfg.extended_nonspeech,
                                                 babble_voices=voice_range(cfg.babble_voices),
                                                 babble_speed=cfg.babble_speed)]
               for kind, n in pool_sizes(cfg.ood_per_kind, cfg.kind_pool).items()}
    rng = np.random.default_rng([seed, 0xBA])
    babble = [make_babble("train", int(cfg.crop_seconds * 16000), rng)[0].astype(np.float32)
              for _ in range(cfg.babble_bank)]
    if cfg.espeak_babble:
        by_kind["espeak_babble"] = clip_babble(splits["train"].clips, list(splits["train"].voices),
                                               cfg.espeak_babble, voice_range(cfg.babble_voices),
                                               np.random.default_rng([seed, 0xEB]))
    ood = [x for clips in by_kind.values() for x in clips]
    log(f"pools: {len(splits['train'])} annotated, {len(real)} real speech, {len(ood)} non-speech "
        f"({time.time() - t0:.0f} s)")
    if not real or not ood:
        raise SystemExit("no real speech or no non-speech found: see .ci/run for the Debian packages")
    pools = Pools(to_f(splits["train"].clips), splits["train"].targets, real, ood, babble, list(splits["train"].voices))
    if cfg.kind_shares:
        counts = {kind: len(clips) for kind, clips in by_kind.items()}
        kind_weight = parse_kind_weight(cfg.kind_weight)
        pools.ood_p = share_probabilities(counts, cfg.ood_per_kind, kind_weight)
        shares = kind_draws(counts, cfg.ood_per_kind, kind_weight)
        log("--kind_shares: " + ", ".join(f"{kind} {n} clips, {share:.1%} of the draws"
                                         for (kind, n), share in zip(counts.items(), shares)))
    weights = parse_voice_weight(cfg.voice_weight)
    pools.pick_p = pick_probabilities(pools.voices, weights)
    if pools.pick_p is not None:
        boosted = np.isin(pools.voices, list(weights))
        log(f"--voice_weight: {int(boosted.sum())} clips of {cfg.voice_weight}, "
            f"{float(pools.pick_p[boosted].sum()):.1%} of the draws")
    if cfg.honest:
        pools.gap = voice_gap(pools, cfg.honest, cfg.init)
        log(f"voice gap from {cfg.honest}: mean {pools.gap.mean(axis=0).round(5).tolist()}, "
            f"share > 0 {float((pools.gap > 0).mean()):.2f}")
    return pools


def honest_students(spec: str) -> list[tuple[Wav2Small, set[str]]]:
    """Leave-voices-out students of a comma-separated list of run dirs, each with the voices its
    training left out (its train.json's exclude_voices)."""
    out = []
    for m, d in zip(load_ensemble(spec), [d.strip() for d in spec.split(",") if d.strip()]):
        path = Path(d) if Path(d).exists() else Path(__file__).resolve().parent.parent / d
        left = read_json(path / "train.json")["config"].get("exclude_voices", "")
        if not left:
            raise SystemExit(f"{d} left out no voices (training.distill --exclude_voices): no honest errors")
        out.append((m, set(left.split(","))))
    return out


@torch.no_grad()
def voice_gap(pools: Pools, spec: str, init: str) -> np.ndarray:
    """(N, 3): for each annotated training clip (whole, clean), max(0, squared error of the student
    that never heard its voice - squared error of `init`, which did). The init student's own error
    on seen voices is what the head's error already shows sigma; the gap is the part that only
    unseen voices have (e.g. a per-voice offset)."""
    students = honest_students(spec)
    ref = load_ensemble(init)[0]
    gap = np.zeros((len(pools.annotated), N_VALUES))
    covered = np.zeros(len(pools.annotated), bool)
    for k, (clip, voice) in enumerate(zip(pools.annotated, pools.voices or [])):
        fold = [m for m, left in students if voice in left]
        if not fold:
            continue
        x = torch.from_numpy(np.asarray(clip, np.float32))[None]
        y = pools.targets[k]
        e_ref = (ref(x)[0, :N_VALUES].double().numpy() - y) ** 2
        e_fold = np.mean([(m(x)[0, :N_VALUES].double().numpy() - y) ** 2 for m in fold], axis=0)
        gap[k], covered[k] = np.maximum(0.0, e_fold - e_ref), True
    if not covered.any():
        raise SystemExit(f"the students of {spec} left out none of the training voices")
    return gap


def crop(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n samples from a random offset; shorter clips are tiled (as training.distill's pad=repeat)."""
    from .distill import fit_length

    return fit_length(x, n, int(rng.integers(0, max(1, len(x) - n + 1))), "repeat")


def corrupt_with_bank(x: np.ndarray, kind: str, level: float, rng: np.random.Generator,
                      babble: list[np.ndarray], split: str) -> np.ndarray:
    """training.ood.corrupt, except that babble is drawn from a bank made up front (making one
    reads many files), mixed at the same SNR and scaled down as a whole if it would clip."""
    from .ood import add_noise, corrupt

    if kind != "babble":
        return corrupt(x, 16000, kind, level, rng, babble_split=split)
    y = add_noise(x, babble[int(rng.integers(len(babble)))][: len(x)], level)
    return (y / max(1.0, float(np.abs(y).max()))).astype(np.float32)


def voice_shift(x: np.ndarray, factor: float) -> np.ndarray:
    """x played `factor` times faster (pitch and formants up by `factor`), tiled/cut to len(x)."""
    from wav2small.audio import resample

    from .distill import fit_length

    y = resample(np.ascontiguousarray(x, np.float32), round(16000 * factor), 16000)
    return fit_length(y.astype(np.float32), len(x), 0, "repeat")


def random_voice_shift(x: np.ndarray, rng: np.random.Generator, largest: float) -> np.ndarray:
    """voice_shift by a factor drawn log-uniformly from [1/largest, largest]."""
    return voice_shift(x, float(np.exp(rng.uniform(-1, 1) * np.log(largest))))


def random_corruption(x: np.ndarray, rng: np.random.Generator,
                      babble: list[np.ndarray]) -> tuple[np.ndarray, str, float]:
    """One corruption of training.ood's grid, babble from training voices: (audio, kind, level)."""
    from .ood import corruption_grid

    grid = corruption_grid()
    kind, level = grid[int(rng.integers(len(grid)))]
    return corrupt_with_bank(x, kind, level, rng, babble, "train"), kind, level


def annotated_picks(pools: Pools, cfg: UQConfig, it: int) -> tuple[np.random.Generator, np.ndarray]:
    """Step `it`'s generator and the annotated clips its batch draws (its first draw), so that a
    caller can tell which clips a batch holds without changing what the batch is."""
    rng = np.random.default_rng([cfg.seed, 0x5A, it])
    if pools.pick_p is None:   # the recorded runs' draw, unchanged
        return rng, rng.integers(len(pools.annotated), size=cfg.batch_speech)
    return rng, rng.choice(len(pools.annotated), size=cfg.batch_speech, p=pools.pick_p)


def spec_pairs(spec: str) -> list[tuple[str, str]]:
    """An option of the form "NAME:VALUE,..." as [(name, value text)], split at each part's last colon
    (a part without one gives an empty name, which the callers refuse)."""
    return [(name, value) for name, _, value in
            (part.rpartition(":") for part in filter(None, (p.strip() for p in spec.split(","))))]


def positive_weights(spec: str, option: str, item: str, example: str) -> dict[str, float]:
    """An option "NAME:W,..." as {name: W}; SystemExit with the reason when a part is not NAME:W, W > 0."""
    out: dict[str, float] = {}
    for name, w in spec_pairs(spec):
        try:
            weight = float(w)
        except ValueError:
            weight = math.nan
        if not name or not weight > 0 or math.isinf(weight):
            raise SystemExit(f"--{option} must be {item}:W[,{item}:W...] with W > 0 (e.g. {example}), got {spec!r}")
        out[name] = weight
    return out


def parse_voice_weight(spec: str) -> dict[str, float]:
    """--voice_weight "VOICE:W,..." as {voice: W}; SystemExit with the reason when it is not one."""
    return positive_weights(spec, "voice_weight", "VOICE", "whisper:4")


def parse_kind_weight(spec: str) -> dict[str, float]:
    """--kind_weight "KIND:W,..." as {kind: W}; SystemExit naming a kind training.ood does not have."""
    from .ood import KINDS

    out = positive_weights(spec, "kind_weight", "KIND", "effects:2.25")
    unknown = sorted(set(out) - set(KINDS))
    if unknown:
        raise SystemExit(f"--kind_weight names kinds training.ood does not have: {', '.join(unknown)} "
                         f"(it has {', '.join(KINDS)})")
    return out


def part_seed(seed: int, override: int) -> int:
    """The seed of one part of a run (--ood_seed: the non-speech pool; --data_seed: the speech and
    what is fitted on it): the override, or --seed when it is -1."""
    return seed if override < 0 else override


def pool_sizes(ood_per_kind: int, kind_pool: str) -> dict[str, int]:
    """Training non-speech clips per training.ood kind (KINDS' order): --ood_per_kind, or --kind_pool's
    number for the kinds it names; SystemExit with the reason when --kind_pool is malformed."""
    from .ood import KINDS

    sizes = dict.fromkeys(KINDS, ood_per_kind)
    for kind, n in spec_pairs(kind_pool):
        if kind not in sizes or not n.strip().isdigit() or int(n) < 1:
            raise SystemExit(f"--kind_pool must be KIND:N[,KIND:N...] with KIND one of {', '.join(KINDS)} and "
                             f"N >= 1 (e.g. effects:450), got {kind_pool!r}")
        sizes[kind] = int(n)
    return sizes


def kind_draws(counts: dict[str, int], ood_per_kind: int, weights: dict[str, float] | None = None) -> list[float]:
    """Each kind's share of the non-speech draws under --kind_shares: its clips as a pool of
    `ood_per_kind` per training.ood kind holds them (the first min(count, ood_per_kind) of the same
    listing), times its --kind_weight, over all; --espeak_babble's clips, which --ood_per_kind does
    not cap, count whole."""
    from .ood import KINDS

    weights = weights or {}
    base = [(min(n, ood_per_kind) if kind in KINDS else n) * weights.get(kind, 1.0) for kind, n in counts.items()]
    return [b / sum(base) for b in base]


def share_probabilities(counts: dict[str, int], ood_per_kind: int,
                        weights: dict[str, float] | None = None) -> np.ndarray:
    """Per-clip draw probabilities of the non-speech pool (clips in `counts`' order, kind by kind)
    that give each kind its kind_draws share, spread evenly over that kind's clips."""
    shares = kind_draws(counts, ood_per_kind, weights)
    p = np.concatenate([np.full(n, share / n) for n, share in zip(counts.values(), shares) if n])
    return p / p.sum()


def pick_probabilities(voices: Sequence[str], weights: dict[str, float]) -> np.ndarray | None:
    """Per-clip draw probabilities for --voice_weight (None when it is off); SystemExit naming the
    voices the training split does not have."""
    if not weights:
        return None
    unknown = sorted(set(weights) - set(voices))
    if unknown:
        raise SystemExit(f"--voice_weight names voices the training split does not have: {', '.join(unknown)} "
                         f"(it has {', '.join(sorted(set(voices)))})")
    w = np.array([weights.get(v, 1.0) for v in voices], np.float64)
    return w / w.sum()


def batch(pools: Pools, cfg: UQConfig, it: int, with_clean: bool = False,
          with_snr: bool = False) -> tuple[torch.Tensor, ...]:
    """Step `it`'s batch, a pure function of (seed, it): annotated rows first, then real, then OOD.
    Returns audio, targets of the annotated rows, which rows are speech, which annotated rows the
    mean learns from (clean ones unless not mean_on_clean; corrupted ones with mean_on_corrupted; never
    voice-shifted),
    with `with_clean` also which annotated rows are clean and not voice-shifted, and with `with_snr`
    then the SNR in dB of each annotated row under additive noise (white or babble; inf for the
    others), all of the same batch."""
    rng, picks = annotated_picks(pools, cfg, it)
    n = int(cfg.crop_seconds * 16000)
    rows, targets, clean, mean_rows, snr = [], [], [], [], []
    for i in picks:
        x = crop(pools.annotated[i], n, rng)
        shifted = cfg.voice_shift_prob > 0 and rng.random() < cfg.voice_shift_prob  # no draw when off
        if shifted:
            x = random_voice_shift(x, rng, cfg.voice_shift_max)
        clean.append(not rng.random() < cfg.corrupt_prob)
        mean_rows.append((cfg.mean_on_clean if clean[-1] else cfg.mean_on_corrupted) and not shifted)
        kind, level = "clean", math.inf
        if not clean[-1]:
            x, kind, level = random_corruption(x, rng, pools.babble)
        rows.append(x)
        snr.append(level if kind in SNR_KINDS else math.inf)
        clean[-1] = clean[-1] and not shifted  # as the init student heard them (with_clean)
        targets.append(pools.targets[i])
    real = [crop(pools.real[i], n, rng) for i in rng.integers(len(pools.real), size=cfg.batch_real)]
    if cfg.real_shift_prob > 0:   # no draw when off
        real = [random_voice_shift(x, rng, cfg.voice_shift_max) if rng.random() < cfg.real_shift_prob else x
                for x in real]
    rows += real
    ood_picks = (rng.integers(len(pools.ood), size=cfg.batch_ood) if pools.ood_p is None
                 else rng.choice(len(pools.ood), size=cfg.batch_ood, p=pools.ood_p))
    rows += [crop(pools.ood[i], n, rng) for i in ood_picks]
    is_speech = torch.zeros(len(rows), dtype=torch.bool)
    is_speech[: cfg.batch_speech + cfg.batch_real] = True
    out = (torch.from_numpy(np.stack(rows).astype(np.float32)), torch.from_numpy(np.stack(targets)).float(),
           is_speech, torch.tensor(mean_rows))
    if with_clean:
        out = (*out, torch.tensor(clean))
    return (*out, torch.tensor(snr, dtype=torch.float64)) if with_snr else out


# ------------------------------------------------------------------------------------------------
# training


@torch.no_grad()
def outputs(model: torch.nn.Module, clips: list[np.ndarray]) -> np.ndarray:
    """Float model outputs of whole clips (one at a time when lengths differ)."""
    model.eval()
    res = [model(torch.from_numpy(np.asarray(c, np.float32))[None])[0].numpy() for c in clips]
    return np.array(res, np.float64)


def default_thresholds(val_outs: list[np.ndarray], coverage: float,
                       speech_coverage: float = 0.0) -> tuple[float, float]:
    """(max_log_sigma, min_speech_logit): the largest log sigma that answers `coverage` of each set
    of clean validation speech (so of every one of them), and the speech logit that hears
    `speech_coverage` of each set (the classifier's own boundary, 0, when speech_coverage is 0)."""
    sets = [v for v in val_outs if len(v)]
    q = [np.quantile(v[:, N_VALUES:2 * N_VALUES].max(axis=1), coverage) for v in sets]
    if speech_coverage <= 0:
        return float(max(q)), 0.0
    # the k-th smallest logit (from 0) hears n - k clips: the largest k with n - k >= coverage * n
    heard = [np.sort(v[:, 2 * N_VALUES])[min(len(v) - 1, int(math.floor(len(v) * (1.0 - speech_coverage) + 1e-9)))]
             for v in sets]
    return float(max(q)), float(min(heard))


def held_out_speech(cfg: UQConfig, log) -> tuple[dict, list[np.ndarray], dict]:
    """The annotator's validation and test voices ({split: (clips, targets)}), real speech of
    training.corpus's "val" speaker groups (the report evaluates on the "test" groups), and the
    real_speech_record of the run's draw (one listing of the installed speech for both)."""
    from .corpus import debian_entries
    from .distill import TrainConfig, load_prosody_corpus

    seed = cfg.speech_seed
    splits = load_prosody_corpus(TrainConfig(n_clips=cfg.n_clips, seed=seed), 16000, log)
    annotated = {k: ([c.astype(np.float32) / 32768.0 for c in splits[k].clips], splits[k].targets)
                 for k in ("val", "test")}
    entries = debian_entries(max_per_group=cfg.real_per_group, seed=seed)
    return annotated, [a for _, a in load_real_speech(entries, ("val",))], real_speech_record(entries)


def noisy_copies(clips: list[np.ndarray], snr: float, seed: int) -> list[list[np.ndarray]]:
    """--coverage_snr's sets: every clip under white noise, and every clip under babble of training
    voices, at `snr` dB (deterministic given seed)."""
    from .ood import make_babble

    rng = np.random.default_rng([seed, 0xC0F])
    n = max(len(c) for c in clips)
    bank = [make_babble("train", n, rng)[0] for _ in range(8)]
    return [[corrupt_with_bank(c, kind, snr, rng, bank, "train") for c in clips] for kind in ("white", "babble")]


def finish(model: Wav2Small, cfg: UQConfig, history: list, extra: dict, log) -> dict[str, Any]:
    """Set the decision thresholds from clean validation speech, measure, save model + train.json."""
    annotated, real, real_record = held_out_speech(cfg, log)
    out = {k: outputs(model, clips) for k, (clips, _) in annotated.items()}
    val_real = outputs(model, real)
    max_log_sigma, min_logit = default_thresholds([out["val"], val_real], cfg.coverage, cfg.speech_coverage)
    source = f"{len(annotated['val'][0])} espeak-ng validation clips + {len(real)} real speech clips of the " \
             "validation speaker groups"
    if cfg.coverage_snr:   # sigma only: the speech threshold stays one of clean speech
        copies = noisy_copies(annotated["val"][0], cfg.coverage_snr, cfg.speech_seed)
        noisy = [outputs(model, clips) for clips in copies]
        max_log_sigma = max(max_log_sigma, default_thresholds(noisy, cfg.coverage)[0])
        source += f"; sigma also: those espeak-ng clips under white noise and babble at {cfg.coverage_snr:g} dB SNR"
    model.cfg.max_log_sigma, model.cfg.min_speech_logit = max_log_sigma, min_logit
    model.cfg.min_modulation_db = cfg.min_modulation_db
    ccc = {k: dict(zip(("arousal", "dominance", "valence"),
                       ccc_torch(torch.from_numpy(out[k][:, :N_VALUES]), torch.from_numpy(t).double()).tolist()))
           for k, (_, t) in annotated.items()}
    report = {
        "config": asdict(cfg),
        "model_args": model.cfg.to_dict(),
        "trainable_parameters": model.trainable_parameters(),
        **extra,
        "thresholds": {"max_log_sigma": max_log_sigma, "max_sigma": math.exp(max_log_sigma),
                       "min_speech_logit": min_logit, "min_speech_prob": 1.0 / (1.0 + math.exp(-min_logit)),
                       "min_modulation_db": cfg.min_modulation_db, "from": source},
        "real_speech": real_record,
        "ccc": ccc,
        "history": history,
    }
    save(model, Path(cfg.out_dir), report)
    log(f"val CCC {report['ccc']['val']}; max sigma {math.exp(max_log_sigma):.4f}; wrote {cfg.out_dir}")
    return report


def load_ensemble(spec: str) -> list[Wav2Small]:
    """The students named by a comma-separated list of run dirs, in eval mode, frozen."""
    members = []
    for d in [d.strip() for d in spec.split(",") if d.strip()]:
        path = Path(d)
        if not path.is_absolute() and not path.exists():  # the defaults name dirs of this repository
            path = Path(__file__).resolve().parent.parent / d
        m = load_safetensors(path / "model.safetensors").eval()
        for q in m.parameters():
            q.requires_grad_(False)
        members.append(m)
    return members


@torch.no_grad()
def ensemble_spread(members: list[Wav2Small], x: torch.Tensor, weight: float) -> torch.Tensor | None:
    """(weight * std over members of their A/D/V)^2, (B, 3); None without at least two members."""
    if len(members) < 2 or weight <= 0:
        return None
    ys = torch.stack([m(x)[:, :N_VALUES] for m in members])  # (M, B, 3)
    return (weight * ys.std(dim=0, unbiased=False)) ** 2


@dataclass
class Familiar:
    """The frozen --init student and the distance of its head inputs from the training speech."""
    student: Wav2Small
    distance: Any       # training.familiarity.Distance
    centre: float       # log of the mean distance over the fit clips


def fit_familiar(cfg: UQConfig, student: Wav2Small, log) -> Familiar:
    """The distance of `student`'s (the frozen --init student's) head inputs from the training speech."""
    from .familiarity import FIT_ANNOTATED, FIT_SECONDS, Distance, fit_clips, head_inputs

    clips = fit_clips(FIT_ANNOTATED, cfg.real_per_group, FIT_SECONDS, cfg.n_clips, cfg.speech_seed, log)
    feats = head_inputs(student, clips)
    distance = Distance.fit(feats, cfg.familiarity_rank)
    centre = float(np.log(np.exp(distance.log_d(feats)).mean()))
    log(f"familiarity: distance fitted on {len(feats)} clips, rank {cfg.familiarity_rank}")
    return Familiar(student, distance, centre)


def familiarity_spread(familiar: Familiar, x: torch.Tensor, weight: float,
                       rows: torch.Tensor | None = None) -> torch.Tensor:
    """(weight * sqrt(d / mean d))^2 per row of x (B, L), repeated over the 3 dimensions: (B, 3);
    zero on the rows that `rows` (B,) leaves unmarked, if given."""
    with torch.no_grad():
        v = familiar.student.vgg7
        feats = v.features(v.logmel(x)).double().numpy()
    ratio = torch.from_numpy(np.exp(familiar.distance.log_d(feats) - familiar.centre)).float()
    if rows is not None:
        ratio = torch.where(rows, ratio, 0.0)
    return (weight ** 2 * ratio)[:, None].expand(-1, N_VALUES)


def _bn_from_first_rows(bn: torch.nn.BatchNorm2d, x: torch.Tensor, n: int) -> torch.Tensor:
    """BatchNorm2d in train mode, but with the statistics (and running-statistics update) of rows [0, n)."""
    head = x[:n]
    mean = head.mean(dim=(0, 2, 3))
    var = head.var(dim=(0, 2, 3), unbiased=False)
    with torch.no_grad():
        count = head.numel() // head.shape[1]
        bn.num_batches_tracked += 1
        bn.running_mean.mul_(1 - bn.momentum).add_(bn.momentum * mean.detach())
        bn.running_var.mul_(1 - bn.momentum).add_(bn.momentum * var.detach() * count / max(count - 1, 1))
    scale = bn.weight / torch.sqrt(var + bn.eps)
    return x * scale[None, :, None, None] + (bn.bias - mean * scale)[None, :, None, None]


OOD_BN_MODES = ("batch", "speech", "eval")   # what forward_batch normalises a batch with


def forward_batch(model: Wav2Small, x: torch.Tensor, n_speech: int, ood_bn: str,
                  ood_trunk: bool = True) -> torch.Tensor:
    """The training forward pass of a batch whose first n_speech rows are speech (model in train
    mode). ood_bn: "batch" the plain pass; "speech" BatchNorm normalises every row with the speech
    rows' statistics and updates its running statistics with them only; "eval" runs the speech rows,
    then the non-speech rows with BatchNorm in eval mode (left so; train() restores it).
    ood_trunk=False detaches the non-speech rows' features: their loss trains the head only."""
    feats = lambda inp: model.vgg7.features(model.vgg7.logmel(inp))
    if n_speech >= len(x) or (ood_bn == "batch" and ood_trunk):
        return model(x)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if ood_bn == "batch":
        f = feats(x)
    elif ood_bn == "speech":
        for m in bns:  # an instance attribute shadows the class's forward until deleted
            m.forward = lambda inp, m=m: _bn_from_first_rows(m, inp, n_speech)
        try:
            f = feats(x)
        finally:
            for m in bns:
                del m.forward
    elif ood_bn == "eval":
        f_speech = feats(x[:n_speech])
        for m in bns:
            m.eval()
        f = torch.cat([f_speech, feats(x[n_speech:])])
    else:
        raise ValueError(f"ood_bn must be one of {', '.join(OOD_BN_MODES)}, got {ood_bn!r}")
    if not ood_trunk:
        f = torch.cat([f[:n_speech], f[n_speech:].detach()])
    return model.adv(f)


def with_noise_floor(x: torch.Tensor, share: float, seed: int, it: int) -> torch.Tensor:
    """x (B, L) with training.augment.noise_floor's noise on a `share` of its rows (x itself when 0)."""
    from .augment import noise_floor

    return x if share <= 0 else x + torch.from_numpy(noise_floor(len(x), x.shape[1], share, seed, it))


class WeightAverage:
    """An exponential moving average of a model's state (weights and BatchNorm's running statistics;
    integer buffers are copied): after step t, avg = d * avg + (1 - d) * current with
    d = min(decay, (1 + t) / (10 + t)), so the first steps' weights, still near the init, fade fast."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.avg = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, it: int) -> None:
        d = min(self.decay, (1 + it) / (10 + it))
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.avg[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.avg[k].copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.avg.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.avg = {k: v.clone() for k, v in state.items()}


def lr_at(it: int, cfg: UQConfig) -> float:
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, it / cfg.max_iters)))


def save(model: Wav2Small, out_dir: Path, report: dict[str, Any]) -> None:
    from .distill import save_json, save_model

    out_dir.mkdir(parents=True, exist_ok=True)
    save_model(out_dir / "model.safetensors", model.state_dict(), config=model.cfg.to_dict())
    save_json(out_dir / "train.json", report)


def train(cfg: UQConfig) -> dict[str, Any]:
    if cfg.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {cfg.threads}")
    if not 0 < cfg.coverage < 1:   # it only used to fail at the end of the run
        raise SystemExit(f"--coverage is the share of clean speech answered, within 0..1, got {cfg.coverage}")
    if not 0 <= cfg.min_modulation_db <= 40:
        raise SystemExit(f"--min_modulation_db is in dB within 0..40 (0 = off), got {cfg.min_modulation_db}")
    if cfg.coverage_snr and not 5 <= cfg.coverage_snr <= 40:
        raise SystemExit(f"--coverage_snr is an SNR in dB within 5..40 (0 = off), got {cfg.coverage_snr}")
    if not 0 <= cfg.speech_coverage < 1:
        raise SystemExit(f"--speech_coverage is the share of clean speech heard, within 0..1 (0: the "
                         f"classifier's boundary), got {cfg.speech_coverage}")
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    t_start = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t_start:6.0f} s] {msg}", flush=True)

    if cfg.thresholds_only:  # an existing run: only choose its thresholds again
        model = load_safetensors(Path(cfg.out_dir) / "model.safetensors")
        old = json.loads((Path(cfg.out_dir) / "train.json").read_text())
        keep = {k: old[k] for k in ("pools", "wall_seconds") if k in old}
        if cfg.snap_to_grid:
            snap_to_grid(model)
        return finish(model, cfg, old.get("history", []), keep, log)
    parse_voice_weight(cfg.voice_weight)   # malformed: refused before the pools are built
    pool_sizes(cfg.ood_per_kind, cfg.kind_pool)
    parse_kind_weight(cfg.kind_weight)
    if cfg.kind_weight and not cfg.kind_shares:
        raise SystemExit(f"--kind_weight={cfg.kind_weight} weighs the shares of --kind_shares's draws: "
                         "add --kind_shares=true")
    if not cfg.mean_on_clean and (cfg.keep_adv <= 0 or not cfg.mean_on_corrupted):
        raise SystemExit("--mean_on_clean=false leaves the clean rows' A/D/V to the keep term and the CCC term "
                         f"to the corrupted rows: it needs --keep_adv > 0 and --mean_on_corrupted=true, got "
                         f"--keep_adv={cfg.keep_adv:g} --mean_on_corrupted={str(cfg.mean_on_corrupted).lower()}")
    if cfg.familiarity_rows not in ("all", "clean"):
        raise SystemExit(f"--familiarity_rows must be 'all' or 'clean', got {cfg.familiarity_rows!r}")
    # checked before the pools are built and the run starts
    if cfg.ood_bn not in OOD_BN_MODES:
        raise SystemExit(f"--ood_bn must be one of {', '.join(OOD_BN_MODES)}, got {cfg.ood_bn!r}")
    if cfg.max_iters < 1 or cfg.lr <= 0:
        raise SystemExit(f"need --max_iters >= 1 and --lr > 0, got {cfg.max_iters}, {cfg.lr}")
    if cfg.n_clips < 1:
        raise SystemExit(f"--n_clips is the prosody corpus size, >= 1, got {cfg.n_clips}")
    if not 0 <= cfg.derived_voices <= 1:
        raise SystemExit(f"--derived_voices is a share of the annotated training clips, 0..1, got {cfg.derived_voices}")
    if cfg.crop_seconds <= 0.1:   # as training.distill: the student needs a few frames
        raise SystemExit(f"--crop_seconds must be > 0.1, got {cfg.crop_seconds}")
    if cfg.batch_speech < 2:
        raise SystemExit(f"--batch_speech must be >= 2 (the CCC term of a batch needs two clips), got {cfg.batch_speech}")
    for name in ("batch_real", "batch_ood"):
        if getattr(cfg, name) < 0:
            raise SystemExit(f"--{name} is a number of clips per step, >= 0, got {getattr(cfg, name)}")
    for name in ("ood_per_kind", "real_per_group", "babble_bank", "familiarity_rank"):
        if getattr(cfg, name) < 1:   # the pools (and the corruptions' babble) must not be empty
            raise SystemExit(f"--{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("corrupt_prob", "voice_shift_prob", "real_shift_prob", "noise_floor"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise SystemExit(f"--{name} is a share of rows, within 0..1, got {getattr(cfg, name)}")
    if cfg.voice_shift_max < 1:
        raise SystemExit(f"--voice_shift_max is a factor >= 1, got {cfg.voice_shift_max}")
    if cfg.checkpoint_interval < 1 or cfg.stop_at < 0:
        raise SystemExit(f"need --checkpoint_interval >= 1 and --stop_at >= 0, got {cfg.checkpoint_interval}, "
                         f"{cfg.stop_at}")
    voice_range(cfg.babble_voices)
    if cfg.babble_speed < 1.0:
        raise SystemExit(f"--babble_speed is a factor >= 1 (1 = voices as recorded), got {cfg.babble_speed}")
    if cfg.espeak_babble < 0:
        raise SystemExit(f"--espeak_babble is a number of clips >= 0, got {cfg.espeak_babble}")
    if cfg.head not in ("gaussian", "evidential"):
        raise SystemExit(f"--head must be 'gaussian' or 'evidential', got {cfg.head!r}")
    if not 0 <= cfg.ema_decay < 1:
        raise SystemExit(f"--ema_decay is a decay within 0..1 (0 = off), got {cfg.ema_decay}")
    ckpt = open_run(cfg)
    base = load_safetensors(Path(cfg.init) / "model.safetensors")
    if base.cfg.uncertainty:
        raise SystemExit(f"{cfg.init} already has an uncertainty head")
    model = with_uncertainty_head(base, cfg.init_log_sigma)
    if cfg.l1_on_grid:
        if cfg.ood_bn != "batch":
            raise SystemExit("--l1_on_grid keeps the first layer's BatchNorm in eval mode: use it with --ood_bn=batch")
        snap_first_layer(model)
    members = load_ensemble(cfg.ensemble) if cfg.ensemble_weight > 0 else []
    frozen = load_ensemble(cfg.init)[0] if cfg.keep_adv > 0 else None  # --keep_adv: the values to hold
    pools = load_pools(cfg, log)
    familiar = (fit_familiar(cfg, frozen if frozen is not None else load_ensemble(cfg.init)[0], log)
                if cfg.familiarity_weight > 0 else None)  # one frozen copy serves --keep_adv and this
    # the trunk (and with it A/D/V) may learn slower than the new head rows, or not at all
    trunk = [p for n, p in model.named_parameters() if not n.startswith("adv.") and p.requires_grad]
    groups = [{"params": list(model.adv.parameters()), "scale": 1.0}]
    evidence_rows, head_inputs, hook = None, {}, None
    if cfg.head == "evidential":  # log nu, log(alpha - 1) per dimension: training-only rows beside adv
        evidence_rows = torch.nn.Linear(model.cfg.head_inputs, 2 * N_VALUES)
        torch.nn.init.zeros_(evidence_rows.weight)
        torch.nn.init.zeros_(evidence_rows.bias)  # nu = 1, alpha = 2
        groups[0]["params"] += list(evidence_rows.parameters())
    head_only_rank = cfg.sigma_rank_weight > 0 and not cfg.sigma_rank_trunk  # needs the head's inputs
    if cfg.head == "evidential" or head_only_rank:
        hook = model.adv.register_forward_hook(lambda mod, inp, out: head_inputs.__setitem__("x", inp[0]))
    if cfg.trunk_lr_scale > 0:
        groups.append({"params": trunk, "scale": cfg.trunk_lr_scale})
    else:  # frozen trunk: the A/D/V rows stay the distilled student's too
        for p in trunk:
            p.requires_grad_(False)
        keep_values = torch.ones(2 * N_VALUES + 1, 1)
        keep_values[:N_VALUES] = 0
        model.adv.weight.register_hook(lambda g: g * keep_values)
        model.adv.bias.register_hook(lambda g: g * keep_values[:, 0])
        groups[0]["weight_decay"] = 0.0  # decoupled decay would still shrink the frozen A/D/V rows
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    history, first, seconds_before = [], 0, 0.0
    ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    if ckpt is not None:   # everything above is a pure function of the options; the rest is here
        model.load_state_dict(ckpt["model"])
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"])
        if evidence_rows is not None:
            evidence_rows.load_state_dict(ckpt["evidence_rows"])
        torch.set_rng_state(ckpt["torch_rng"])
        history, first, seconds_before = ckpt["history"], ckpt["iter_num"], ckpt["seconds"]
        log(f"resumed {cfg.out_dir} at step {first}/{cfg.max_iters}")
    last = min(cfg.max_iters, cfg.stop_at) if cfg.stop_at > 0 else cfg.max_iters
    for it in range(first, last):
        model.train()
        if cfg.freeze_bn:  # batches mix in noise and music: their statistics must not move BN's
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
        if cfg.l1_on_grid:  # its running statistics are part of the snapped, folded weights
            model.vgg7.l1.norm.eval()
        for g in opt.param_groups:
            g["lr"] = lr_at(it, cfg) * g["scale"]
        x, y, is_speech, mean_rows, clean_rows, snr = batch(pools, cfg, it, with_clean=True, with_snr=True)
        labelled = None  # every row in the speech term, as before the option
        if cfg.speech_min_snr > -100.0:
            labelled = torch.ones(len(is_speech), dtype=torch.bool)
            labelled[: cfg.batch_speech] = snr >= cfg.speech_min_snr
        spread = ensemble_spread(members, x[: cfg.batch_speech], cfg.ensemble_weight)
        if pools.gap is not None and cfg.honest_weight > 0:  # what an unseen voice adds, per clip
            gap = cfg.honest_weight * torch.from_numpy(pools.gap[annotated_picks(pools, cfg, it)[1]]).float()
            spread = gap if spread is None else spread + gap
        if familiar is not None:  # how unfamiliar each annotated row looks to the --init student
            extra = familiarity_spread(familiar, x[: cfg.batch_speech], cfg.familiarity_weight,
                                       clean_rows if cfg.familiarity_rows == "clean" else None)
            spread = extra if spread is None else spread + extra
        heard = with_noise_floor(x, cfg.noise_floor, cfg.seed, it)
        out = forward_batch(model, heard, cfg.batch_speech + cfg.batch_real, cfg.ood_bn, cfg.ood_trunk)
        anchor = None
        if frozen is not None and clean_rows.any():  # the init student's A/D/V on the clean rows
            with torch.no_grad():
                anchor = torch.zeros(cfg.batch_speech, N_VALUES)
                anchor[clean_rows] = frozen(x[: cfg.batch_speech][clean_rows])[:, :N_VALUES]
        terms = loss_terms(out, y, cfg.batch_speech, is_speech, cfg.ood_log_sigma,
                           None if bool(mean_rows.all()) else mean_rows, spread,
                           anchor, clean_rows, cfg.keep_adv,
                           # voice-shifted rows are not mean rows, so "not clean" is "corrupted" here
                           ccc_groups=(~clean_rows).long() if cfg.ccc_by_corruption else None,
                           nonspeech_weight=cfg.nonspeech_weight, speech_labelled=labelled,
                           evidence=None if evidence_rows is None else evidence_rows(head_inputs["x"]),
                           evidential_reg=cfg.evidential_reg,
                           rank_snr=rank_snr(clean_rows, snr),
                           rank_weight=cfg.sigma_rank_weight, rank_margin=cfg.sigma_rank_margin,
                           rank_log_sigma=None if not head_only_rank else F.linear(
                               head_inputs["x"][: cfg.batch_speech].detach(), model.adv.weight[N_VALUES:2 * N_VALUES],
                               model.adv.bias[N_VALUES:2 * N_VALUES]))
        loss = sum(terms.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if ema is not None:
            ema.update(model, it)
        if it % 50 == 0 or it == cfg.max_iters - 1:
            log(f"step {it}/{cfg.max_iters}  loss {loss.item():.3f}  " +
                "  ".join(f"{k} {v.item():.3f}" for k, v in terms.items()))
            history.append({"step": it, **{k: v.item() for k, v in terms.items()}})
        if (it + 1) % cfg.checkpoint_interval == 0 or it + 1 == last:
            save_checkpoint(Path(cfg.out_dir) / CHECKPOINT, {
                "config": asdict(cfg), "iter_num": it + 1, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state(), "history": history,
                "evidence_rows": None if evidence_rows is None else evidence_rows.state_dict(),
                "ema": None if ema is None else ema.state_dict(),
                "seconds": seconds_before + time.time() - t_start})
    if last < cfg.max_iters:
        log(f"stopped after step {last}/{cfg.max_iters}: continue with --out_dir={cfg.out_dir} --resume=true")
        return {"stopped_at": last}
    if hook is not None:  # the engine runs mu, log sigma and the speech logit only
        hook.remove()
    if ema is not None:
        model.load_state_dict(ema.state_dict())
    if cfg.snap_to_grid:
        snap_to_grid(model)
    pools_size = {"annotated": len(pools.annotated), "real_speech": len(pools.real), "non_speech": len(pools.ood)}
    return finish(model, cfg, history, {"pools": pools_size, "wall_seconds": seconds_before + time.time() - t_start},
                  log)


def main(argv: list[str] | None = None) -> None:
    train(UQConfig.parse(argv))


if __name__ == "__main__":
    import training.cli

    training.cli.run(main, "python -m training.uncertainty")
