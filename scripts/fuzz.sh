#!/usr/bin/env bash
# Build the fuzz harnesses and run them from the seed corpora, each bounded in time or runs.
#
#   scripts/fuzz.sh                              every harness for 20 s, one after the other
#   scripts/fuzz.sh -t 10 -j 4                   every harness for 10 s, all at once
#   scripts/fuzz.sh -r 1000000 -f predict        10^6 executions of one harness, FAST build
#   scripts/fuzz.sh -r 300 -s 1 -j 4             300 executions of each, seeded: the same inputs
#                                                every run (tests/test_fuzz.py)
#
# Harnesses (docs/reliability.md): model_init, predict, model_values (C, libFuzzer, ASan + UBSan,
# csrc/fuzz/) and api (the Python API under atheris, scripts/fuzz_api.py).
#   -t SECONDS   stop each harness after this long (default 20 when -r is not given)
#   -r RUNS      stop each harness after this many executions
#   -f           FAST build: without -fsanitize=pointer-overflow (see csrc/fuzz/Makefile)
#   -j JOBS      run this many harnesses at once (default 1)
#   -s SEED      libFuzzer's random seed (default: a new one each run)
#   -l BYTES     input size cap instead of each harness's default (MAX_LEN below)
#   -w DIR       work directory: new corpus entries, logs, crash inputs (default csrc/fuzz/corpus-run)
# The seeds in csrc/fuzz/corpus/<name>/ are only read; what the fuzzer adds goes to DIR/<name>/.
# Prints one line per harness: "fuzz NAME: N runs in S s, exit RC"; a crash leaves its input in
# DIR/NAME-crash-* (rerun it: csrc/fuzz/out/fuzz_NAME FILE) and makes the script exit 1.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
SECONDS_LIMIT=""; RUNS=""; LEN=""; SEED=""; FAST=0; JOBS=1; WORK="$ROOT/csrc/fuzz/corpus-run"
while getopts "t:r:l:s:fj:w:" opt; do
    case "$opt" in
        t) SECONDS_LIMIT="$OPTARG" ;;
        r) RUNS="$OPTARG" ;;
        l) LEN="$OPTARG" ;;
        f) FAST=1 ;;
        j) JOBS="$OPTARG" ;;
        s) SEED="$OPTARG" ;;
        w) WORK="$OPTARG" ;;
        *) sed -n '2,24p' "$0"; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
NAMES=("$@")
[ ${#NAMES[@]} -eq 0 ] && NAMES=(model_init predict model_values api)
[ -z "$SECONDS_LIMIT$RUNS" ] && SECONDS_LIMIT=20

command -v clang > /dev/null || { echo "fuzz.sh: clang is needed (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
OUT="$ROOT/csrc/fuzz/out"; [ "$FAST" = 1 ] && OUT="$OUT/fast"
make -s -j"$(nproc)" -C "$ROOT/csrc/fuzz" OUT="$OUT" FAST="$FAST" fuzzers

# per harness: input size cap (a model file, 3 STFT frames of PCM: T = 1, 2, 3 cover every edge
# of the frame loops, a model plus PCM, an API call)
declare -A MAX_LEN=([model_init]=20000 [predict]=260 [model_values]=65536 [api]=4096)

run_one() {
    local name="$1" dir="$WORK/$1" log="$WORK/$1.log" cmd
    mkdir -p "$dir"
    if [ "$name" = api ]; then
        cmd=("$PY" "$ROOT/scripts/fuzz_api.py")
    else
        cmd=("$OUT/fuzz_$name")
    fi
    cmd+=("$dir")
    [ -d "$ROOT/csrc/fuzz/corpus/$name" ] && cmd+=("$ROOT/csrc/fuzz/corpus/$name")
    # -reload=0: libFuzzer rereads its corpus directory every second by default, which runs one
    # input again at a moment set by the clock; with it off, a seeded run is the same run on any CPU
    # (on a slow machine the count read 3001 for -runs=3000: tests/test_fuzz.py)
    cmd+=(-max_len="${LEN:-${MAX_LEN[$name]}}" -timeout=30 -reload=0
          -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$WORK/$name-")
    [ -n "$SECONDS_LIMIT" ] && cmd+=(-max_total_time="$SECONDS_LIMIT")
    [ -n "$RUNS" ] && cmd+=(-runs="$RUNS")
    [ -n "$SEED" ] && cmd+=(-seed="$SEED")
    local start=$SECONDS rc=0
    echo "+ ${cmd[*]}" > "$log"
    "${cmd[@]}" >> "$log" 2>&1 || rc=$?
    local runs
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz $name: ${runs:-?} runs in $((SECONDS - start)) s, exit $rc (log $log)"
    if [ "$rc" != 0 ]; then grep -m 20 -E "ERROR|runtime error|fuzz check|Traceback|Error|crash-" "$log" >&2 || true; fi
    return "$rc"
}

mkdir -p "$WORK"
status=0
pids=()
for name in "${NAMES[@]}"; do
    run_one "$name" & pids+=($!)
    if [ ${#pids[@]} -ge "$JOBS" ]; then wait "${pids[0]}" || status=1; pids=("${pids[@]:1}"); fi
done
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
