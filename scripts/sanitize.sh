#!/usr/bin/env bash
# Sanitiser runs of the engine (docs/reliability.md); tests/test_sanitizers.py runs `c` and `python`,
# `tsan-python` is run by hand (minutes).
#
#   scripts/sanitize.sh c                        C tests (csrc/test_w2s.c) under ASan + UBSan and the
#                                                8-thread test (csrc/fuzz/test_threads.c) under TSan
#   scripts/sanitize.sh python [PYTEST ARGS]     Python tests against an ASan + UBSan build of
#                                                wav2small._engine (default: tests/test_format.py)
#   scripts/sanitize.sh tsan-python [PYTEST ARGS] the same against a TSan build (thread tests)
#
# The Python runs build the extension with gcc into a work directory (-w DIR, default a new temp
# dir), next to a copy of the wav2small package, put that first on PYTHONPATH and preload the
# sanitiser runtime (the interpreter itself is not instrumented, so the runtime must be loaded
# before it starts). Leak checking is off: CPython keeps objects alive until exit on purpose.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
WORK=""
while getopts "w:" opt; do
    case "$opt" in
        w) WORK="$OPTARG" ;;
        *) sed -n '2,15p' "$0"; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
MODE="${1:-}"; [ $# -gt 0 ] && shift
[ -n "$WORK" ] || WORK="$(mktemp -d -t w2s-sanitize-XXXXXX)"
mkdir -p "$WORK"

case "$MODE" in
c)
    make -s -j"$(nproc)" -C "$ROOT/csrc/fuzz" OUT="$WORK/c" check
    exit 0
    ;;
python) SAN="-fsanitize=address,undefined -fno-sanitize-recover=all"; RUNTIME=libasan.so ;;
tsan-python) SAN="-fsanitize=thread"; RUNTIME=libtsan.so ;;
*) sed -n '2,15p' "$0"; exit 2 ;;
esac

# ---- build wav2small._engine with the sanitiser, as setup.py does (C99 engine + C++17 binding)
BUILD="$WORK/$MODE"
PKG="$BUILD/pkg/wav2small"
rm -rf "$BUILD" && mkdir -p "$BUILD/obj" "$PKG"
CFLAGS="-O1 -g -fno-omit-frame-pointer -fPIC $SAN"
VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$ROOT/wav2small/__init__.py")
paths=$("$PY" -c "import sysconfig, pybind11
print(sysconfig.get_paths()['include'], pybind11.get_include(), sysconfig.get_config_var('EXT_SUFFIX'))") ||
    { echo "sanitize.sh: building the extension needs pybind11 in $PY's environment (pip install pybind11)" >&2; exit 2; }
read -r PYINC PBINC EXT <<< "$paths"
objs=()
for src in "$ROOT"/csrc/*.c; do
    case "$src" in */w2s_cli.c|*/test_w2s.c) continue ;; esac
    obj="$BUILD/obj/$(basename "${src%.c}").o"
    gcc -std=c99 -Wall -Wextra -Werror -Wundef -Wshadow $CFLAGS -c "$src" -o "$obj"
    objs+=("$obj")
done
g++ -std=c++17 $CFLAGS -DVERSION_INFO="$VERSION" -I"$ROOT/csrc" -I"$PYINC" -I"$PBINC" \
    -shared "$ROOT/csrc/bindings.cpp" "${objs[@]}" -o "$PKG/_engine$EXT"
# the package's Python files and model next to the sanitised extension
(cd "$ROOT/wav2small" && find . -name '*.py' -o -path './models/*' | grep -v __pycache__ |
    while read -r f; do mkdir -p "$PKG/$(dirname "$f")" && cp "$f" "$PKG/$f"; done)

export PYTHONPATH="$BUILD/pkg${PYTHONPATH:+:$PYTHONPATH}"
# libstdc++ too: the runtime hooks C++ throws at start-up, and python itself does not load it
export LD_PRELOAD="$(gcc -print-file-name=$RUNTIME):$(g++ -print-file-name=libstdc++.so.6)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
# run from the build directory: from the repository, the source tree's wav2small (cwd is first on
# sys.path) would shadow the copy; test paths are taken relative to the repository
cd "$BUILD"
# prove the run is the sanitised one: the extension imported from $BUILD, the runtime loaded
"$PY" -c "import ctypes, sys, wav2small
engine = wav2small._engine.__file__
assert engine.startswith('$BUILD'), f'imported {engine}, not the sanitised build'
ctypes.CDLL(None)['__asan_init' if '$MODE' == 'python' else '__tsan_init']
print('sanitised engine:', engine)"
[ $# -gt 0 ] || set -- tests/test_format.py
args=()
for a in "$@"; do
    case "$a" in tests/*) args+=("$ROOT/$a") ;; *) args+=("$a") ;; esac
done
exec "$PY" -m pytest -q -p no:cacheprovider --rootdir "$ROOT" "${args[@]}"
