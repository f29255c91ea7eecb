#!/usr/bin/env bash
# Rebuilds docs/students.md and docs/students.json: four students (Wav2Small default and wide,
# MobileNet-V3-Small, MobileNet-V4-Conv-Small) distilled from each of the two stand-in teachers that
# exist offline (docs/distillation.md, "What can be measured here"):
#
#   prosody  the prosody annotator's rule table (training/prosody.py); measured on held-out espeak-ng voices
#   standin  a small wav2vec2 in audEERING's Dawn layout (python -m training.teachers) fitted to the
#            annotator's targets; measured on held-out speakers of real (Debian) speech and synthetic speech
#
# Neither is an emotion model. Budgets are small on purpose (a shared 2-core machine, about 40
# CPU-minutes in all). Every step is skipped when its output exists, so an interrupted run continues.
#
#   scripts/make_students_report.sh                  # OUT=runs/students, cache in $OUT/cache
#   OUT=/tmp/s JOBS=1 scripts/make_students_report.sh   # elsewhere, one lane at a time
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/students}
JOBS=${JOBS:-2}
export WAV2SMALL_CACHE=${WAV2SMALL_CACHE:-$OUT/cache}
export OMP_NUM_THREADS=1
PY=(nice -n 10 python)

run() { echo "+ $*" >&2; "${PY[@]}" "$@"; }

# 1. corpus: real speech of the installed Debian packages (120 clips per group at most), 800 espeak-ng
#    clips with the annotator's targets, 120 flite clips; split by speaker / voice
[ -f "$OUT/corpus/manifest.csv" ] || run -m training.corpus --out="$OUT/corpus" --espeak=800 --flite=120 --max_per_group=120
M=$OUT/corpus/manifest.csv

# 2. the stand-in wav2vec2 teacher (~100 K parameters), fitted to the annotator's targets of the training clips
[ -f "$OUT/teacher/config.json" ] || run -m training.teachers --out="$OUT/teacher" --corpus="$M" --steps=600

# 3. students; 1 s crops, batches of 16 (wide: 8, and its validation clips cut to 3 s: it costs 6.5x the
#    default per second of audio), one thread each
COMMON=(--corpus="$M" --threads=1 --crop_seconds=1 --eval_seconds=6 --log_interval=50)
train() {  # train OUT_DIR OPTIONS...: distil, or continue an interrupted run
  local dir=$1; shift
  if [ -f "$dir/train.json" ]; then return; fi
  if [ -f "$dir/ckpt.pt" ]; then run -m training.distill --out_dir="$dir" --resume=true; return; fi
  run -m training.distill --out_dir="$dir" "${COMMON[@]}" "$@"
}
qat() {  # 4. int8 of a Wav2Small student through the C engine; quantization-aware fine-tuning if it loses
         #    more than 0.005 CCC against float (a resumed phase of the same run)
  if ! grep -q '"qat": {' "$1/train.json"; then
    run -m training.distill --out_dir="$1" --resume=true --qat=auto --qat_iters=150 --qat_eval_interval=50
  fi
}
lane() {  # lane NAME TEACHER EXTRA...: the four students of one teacher (the costly wide one last)
  local name=$1 teacher=$2; shift 2
  local d=$OUT/$name
  train "$d/w2s" --teacher="$teacher" "$@" --max_iters=300 --warmup_iters=30 --eval_interval=150 --checkpoint_interval=50
  train "$d/mnv3" --teacher="$teacher" "$@" --student=mobilenet_v3_small --lr=1e-3 --max_iters=150 --warmup_iters=15 \
    --eval_interval=150 --checkpoint_interval=50
  train "$d/mnv4" --teacher="$teacher" "$@" --student=mobilenet_v4_conv_small --lr=1e-3 --max_iters=150 \
    --warmup_iters=15 --eval_interval=150 --checkpoint_interval=50
  qat "$d/w2s"
  train "$d/w2s-wide" --teacher="$teacher" "$@" --model=wide --batch_size=8 --max_iters=40 --warmup_iters=4 \
    --eval_interval=40 --checkpoint_interval=20 --eval_seconds=3
  qat "$d/w2s-wide"
}
if [ "$JOBS" -gt 1 ]; then
  lane prosody prosody & a=$!
  lane standin "dawn:$OUT/teacher" --augment=default --views=1 & b=$!
  wait $a; wait $b
else
  lane prosody prosody
  lane standin "dawn:$OUT/teacher" --augment=default --views=1
fi

# 5. the tables: each teacher's students on the test split, float and int8 (C engine), then one report
for name in prosody standin; do
  teacher=prosody; [ "$name" = standin ] && teacher="dawn:$OUT/teacher"
  run -m training.evaluate --corpus="$M" --teacher="$teacher" --eval_seconds=6 --out="$OUT/$name" \
    "$OUT/$name/w2s" "$OUT/$name/w2s-wide" "$OUT/$name/mnv3" "$OUT/$name/mnv4"
done
run -m training.evaluate --merge "$OUT/prosody.json" "$OUT/standin.json" --script=scripts/make_students_report.sh \
  --out=docs/students
