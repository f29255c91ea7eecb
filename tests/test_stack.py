"""Stack use of the C engine: every function within 8 KB on every kernel set, and the engine running
on small thread stacks (musl's default is 128 KB; glibc gives new threads RLIMIT_STACK).

The SIMD kernels once kept buffers sized for the format's limits on the stack (129 KB for the
AVX2 int8 conv row): predict() on an AVX2 machine crashed in any thread with a 128 KB stack. Their
buffers are now carved from the caller's arena (w2s_kernel_scratch_bytes, csrc/kernels.h)."""
from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, require_tool, to_int16

from wav2small import Model, _engine

CSRC = REPO / "csrc"
ENGINE = sorted(p for p in CSRC.glob("*.c") if p.name not in ("w2s_cli.c", "test_w2s.c"))
LIMIT = 8192                 # bytes of stack any engine function may need
SMALL_STACK = 64 * 1024      # the Python threads of the runtime checks
LIMIT_STACK = 128 * 1024     # RLIMIT_STACK of the std::threads check (musl's default thread stack; Python
                             # itself needs more than 64 KB on its main thread)
# every kernel set of csrc/kernels.h is in one of these builds: (compiler, its Debian package, flags)
BUILDS = {
    "x86-64 (portable, SSE4.1, AVX2, AVX-512)": ("gcc", "gcc", []),
    "x86-64 -DW2S_NO_SIMD (portable only)": ("gcc", "gcc", ["-DW2S_NO_SIMD"]),
    "aarch64 (NEON)": ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu", []),
    "Cortex-M4 (DSP)": ("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-dev",
                        ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]),
}


def stack_usage(cc: str, flags: list[str], out: Path) -> list[tuple[str, int, str]]:
    """(function, bytes, qualifier) of every function of the engine, from gcc -fstack-usage."""
    out.mkdir(parents=True, exist_ok=True)
    for src in ENGINE:
        cmd = [cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wundef", "-Wshadow", "-fstack-usage", *flags]
        r = subprocess.run([*cmd, "-c", str(src), "-o", str(out / f"{src.stem}.o")], capture_output=True,
                           text=True)
        assert r.returncode == 0, f"{cc} {src.name}: {r.stderr[-2000:]}"
    rows = []
    for su in sorted(out.glob("*.su")):
        for line in su.read_text().splitlines():
            where, size, qualifier = line.split("\t")
            rows.append((where, int(size), qualifier))
    assert len(rows) > 50, rows   # every source compiled and reported
    return rows


@pytest.mark.parametrize("build", BUILDS)
def test_every_engine_function_needs_at_most_8_kb_of_stack(build, tmp_path):
    cc, package, flags = BUILDS[build]
    require_tool(cc, package)   # the cross compilers too: .ci/run installs them (docs/engine.md)
    rows = stack_usage(cc, flags, tmp_path / "su")
    bad = [r for r in rows if r[1] > LIMIT or r[2] not in ("static", "dynamic,bounded")]
    worst = sorted(rows, key=lambda r: -r[1])[:5]
    print(f"\n{build}: largest frames {worst}")
    assert not bad, f"{build}: functions over {LIMIT} B of stack, or unbounded: {bad}"


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_a_debug_build_keeps_its_frames_within_a_small_thread_stack(cc, tmp_path):
    """At -O0 (CFLAGS=-O0, a debugger's build) frames grow, but none may reach a 64 KB thread stack:
    the x86 helpers forced inline made clang's conv kernel one 554 KB frame (docs/engine.md)."""
    require_tool(cc, cc)
    rows = stack_usage(cc, ["-O0"], tmp_path / "su")
    worst = max(rows, key=lambda r: r[1])
    print(f"\n{cc} -O0: largest frame {worst}")
    assert worst[1] < 48 * 1024, worst


# ---- runtime: the engine in threads with small stacks ----------------------------------------------

CHILD = r"""
import json, sys, threading
import numpy as np
from wav2small import Model

mode, isa, clip_dir, stack = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
clips = [np.load(f"{clip_dir}/clip{i}.npy") for i in range(3)]
m = Model()
m._engine.set_isa(isa)
out = {}

def run():
    s = m.stream()
    s.push(clips[0][:8000])
    first = s.read_fixed().tolist()
    s.push(clips[0][8000:])
    out.update(predict=m.predict_fixed(clips[0]).tolist(), stream=[first, s.read_fixed().tolist()])

if mode == "threads":   # predict_many's std::threads, sized by RLIMIT_STACK
    out["many"] = [p.as_array().tolist() for p in m.predict(clips, threads=2)]
else:                   # a Python thread on a small stack
    threading.stack_size(stack)
    t = threading.Thread(target=run)
    t.start()
    t.join()
print(json.dumps(out))
"""


def _small_stack_limit():
    resource.setrlimit(resource.RLIMIT_STACK, (LIMIT_STACK, resource.getrlimit(resource.RLIMIT_STACK)[1]))


def _child(mode: str, isa: str, clip_dir: Path, stack: int, **kw) -> dict:
    """Run CHILD in its own process, so that a stack overflow fails the test instead of pytest."""
    r = subprocess.run([sys.executable, "-c", CHILD, mode, isa, str(clip_dir), str(stack)],
                       capture_output=True, text=True, timeout=600, **kw)
    assert r.returncode == 0, f"{isa}, {mode} on {stack // 1024} KB stacks: exit status {r.returncode} " \
                              f"(-11: segmentation fault, a stack overflow)\n{r.stderr[-2000:]}"
    return json.loads(r.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def clips(speech_clips, tmp_path_factory):
    """Three real speech clips of 1, 3.5 and 6 s as int16, saved for the child processes."""
    d = tmp_path_factory.mktemp("clips")
    pcm = [to_int16(c) for c in speech_clips[:3]]
    pcm = [pcm[0][:16000], pcm[1][:56000], pcm[2]]
    for i, p in enumerate(pcm):
        np.save(d / f"clip{i}.npy", p)
    return d, pcm


@pytest.mark.parametrize("isa", _engine.available_isas())
def test_predict_and_stream_on_64_kb_thread_stacks(isa, clips):
    """Model.predict and a stream's push/read in a Python thread of 64 KB under each kernel set this
    CPU runs: no crash, and the outputs of the unconstrained run."""
    d, pcm = clips
    got = _child("python", isa, d, SMALL_STACK)
    m = Model()
    m._engine.set_isa(isa)
    s = m.stream()
    s.push(pcm[0][:8000])
    first = s.read_fixed()
    s.push(pcm[0][8000:])
    assert got["predict"] == m.predict_fixed(pcm[0]).tolist()
    assert got["stream"] == [first.tolist(), s.read_fixed().tolist()]


@pytest.mark.parametrize("isa", _engine.available_isas())
def test_predict_many_threads_with_a_128_kb_stack_limit(isa, clips):
    """predict(clips, threads=2) in a process whose RLIMIT_STACK is 128 KB (`ulimit -s 128`): glibc
    gives the binding's std::threads that much stack, musl's default. (64 KB, as the Python threads
    above, cannot be tested this way: the interpreter's main thread needs more to start.)"""
    d, pcm = clips
    got = _child("threads", isa, d, LIMIT_STACK, preexec_fn=_small_stack_limit)
    m = Model()
    m._engine.set_isa(isa)
    assert got["many"] == [m.predict(p).as_array().tolist() for p in pcm]
