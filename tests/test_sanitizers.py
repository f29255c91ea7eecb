"""The engine under sanitisers (docs/reliability.md, scripts/sanitize.sh):
  - the C tests (csrc/test_w2s.c) and the SIMD kernels against the portable ones (csrc/check/test_kernels.c)
    built with ASan + UBSan (no recovery: any finding aborts);
  - one model shared by 8 threads (csrc/fuzz/test_threads.c) built with TSan;
  - the model-format and bad-input Python tests against an ASan + UBSan build of wav2small._engine.
"""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO, require_tool

SANITIZE = REPO / "scripts" / "sanitize.sh"
FINDINGS = ("runtime error", "AddressSanitizer", "ThreadSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SANITIZE), *args], check=False, capture_output=True, text=True, env=env,
                          timeout=900)


def _symbols(binary) -> str:
    return subprocess.run(["nm", str(binary)], capture_output=True, text=True, check=True).stdout


def test_c_tests_under_asan_ubsan_and_threads_under_tsan(tmp_path):
    require_tool("clang", "clang libclang-rt-14-dev")   # the sanitiser builds
    r = _run("-w", str(tmp_path), "c")
    out = r.stdout + r.stderr
    print(out)
    assert r.returncode == 0, out
    assert "test_w2s: PASS (0 failures)" in out and "test_threads: PASS (0 failures)" in out, out
    assert "test_kernels: PASS" in out, out
    assert not [f for f in FINDINGS if f in out], out
    # the binaries really are instrumented: a build that lost its flags would pass silently
    w2s, threads = _symbols(tmp_path / "c" / "test_w2s"), _symbols(tmp_path / "c" / "test_threads")
    kernels = _symbols(tmp_path / "c" / "test_kernels")
    assert "__asan_init" in w2s and "__ubsan_handle_" in w2s
    assert "__asan_init" in kernels and "__ubsan_handle_" in kernels
    assert "__tsan_init" in threads


def test_python_tests_against_sanitised_engine(tmp_path):
    require_tool("gcc")   # the sanitised extension
    require_tool("g++")
    # the round trip through the writer imports torch, which is slow under the preloaded runtime
    r = _run("-w", str(tmp_path), "python", "tests/test_format.py", "tests/test_bad_input.py",
             "-k", "not writer_round_trip")
    out = r.stdout + r.stderr
    print(r.stdout[-3000:])
    assert r.returncode == 0, out[-8000:]
    assert "sanitised engine: " + str(tmp_path) in out, out[-3000:]
    assert " passed" in r.stdout and " failed" not in r.stdout, r.stdout[-3000:]
    assert not [f for f in FINDINGS if f in out], out[-8000:]
