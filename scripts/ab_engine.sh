#!/usr/bin/env bash
# A/B of the C engine between two git revisions, stage by stage, in one process (csrc/check/ab_stages.c):
#
#   scripts/ab_engine.sh OLD_REV [NEW_REV] [RUNS]      # NEW_REV default: the working tree
#
# Builds csrc of each revision as a shared object (-O2, as setup.py builds the extension), writes a 3 s
# clip of the benchmark's real speech (scripts/bench.py) as raw int16 and prints the median thread CPU
# time of every stage for both builds, the builds taking turns call by call. The default model of the
# working tree runs in both (the weight format must be one both revisions read). PYTHON (default
# python3) writes the clip from scripts/bench.py, so it needs wav2small installed.
# Both revisions must read the working tree's model: a revision of another format version (before
# 69d0d0f: version 2) is refused by the model check ("not an engine build, or it refuses the model").
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
  exit 0
fi
OLD=${1:?usage: scripts/ab_engine.sh OLD_REV [NEW_REV] [RUNS]}
NEW=${2:-}
RUNS=${3:-500}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
build() {  # build NAME REV (REV empty: the working tree)
  mkdir -p "$T/$1"
  if [ -n "$2" ]; then git archive "$2" csrc | tar -x -C "$T/$1"; else cp -r csrc "$T/$1/"; fi
  ${CC:-cc} -shared -fPIC -O2 -std=c99 -o "$T/$1.so" \
    $(ls "$T/$1"/csrc/*.c | grep -v -e test_w2s.c -e w2s_cli.c) -lm
}
build old "$OLD"
build new "$NEW"
${CC:-cc} -O2 -std=c99 -Wall -Wextra -Werror -pedantic -Wundef -Wshadow -Icsrc csrc/check/ab_stages.c csrc/check/host_file.c -o "$T/ab_stages" -ldl
"${PYTHON:-python3}" - "$T/clip.raw" <<'PY'
import sys
import numpy as np
sys.path.insert(0, "scripts")
from bench import concat_to, speech_pool
clip = concat_to(speech_pool(), 3, 0)
np.clip(np.round(clip * 32768), -32768, 32767).astype("<i2").tofile(sys.argv[1])
PY
echo "old: ${OLD}   new: ${NEW:-working tree}"
"$T/ab_stages" wav2small/models/default.w2s "$T/clip.raw" "$RUNS" "$T/old.so" "$T/new.so"
