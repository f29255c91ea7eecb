"""ARM: the engine cross-built for aarch64 and armhf Linux (run under qemu-user) and for Cortex-M4,
M7 and M55 (a firmware image run on emulated MPS2/MPS3 boards with semihosting), every output
compared bit for bit with the host engine. Missing toolchains fail the tests: .ci/run installs
them (docs/engine.md lists the Debian packages).

These builds run the SIMD kernels (csrc/kernels.h), chosen at compile time: aarch64 the NEON set,
armhf (ARMv7-A) and the Cortex-M cores the DSP-extension set (SMLAD). The tests check that the
set is the one that runs (test_kernels prints it; the firmware image links it and contains SMLAD),
and test_kernels compares it with the portable kernels on the target itself, stage by stage."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, load_script, require_tool, to_int16

from wav2small import Model

CSRC = REPO / "csrc"
APT = "gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf gcc-arm-none-eabi libnewlib-dev qemu-user qemu-system-arm"
TOOLS = {
    "aarch64": ["aarch64-linux-gnu-gcc", "qemu-aarch64"],
    "armhf": ["arm-linux-gnueabihf-gcc", "qemu-arm"],
    "cortex-m": ["arm-none-eabi-gcc", "qemu-system-arm"],
}
LINE = re.compile(r"^clip (\S+): batch (-?\d+(?: -?\d+)*) stream (-?\d+(?: -?\d+)*) running (-?\d+(?: -?\d+)*)")
CHUNK = 160


def need(kind: str) -> None:
    missing = [t for t in TOOLS[kind] + ["make"] if not shutil.which(t)]
    if kind == "cortex-m" and not Path("/usr/lib/arm-none-eabi/include/string.h").is_file():
        missing.append("libnewlib-dev (C headers for arm-none-eabi)")
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: apt-get install {APT} (.ci/run does)")


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-j2", "-C", str(CSRC), *args], check=False, capture_output=True, text=True, timeout=900)


def host_outputs(model: Model, pcm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batch, two-pass stream and default running stream, all 10 ms chunks, on the host."""
    outs = []
    for kw in ({"stats": model.clip_stats(pcm)}, {}):
        s = model.stream(**kw)
        for i in range(0, len(pcm), CHUNK):
            s.push(pcm[i : i + CHUNK])
        outs.append(s.read_fixed())
    return model.predict_fixed(pcm), outs[0], outs[1]


def parse(stdout: str) -> dict[str, tuple[np.ndarray, ...]]:
    rows = {}
    for line in stdout.splitlines():
        m = LINE.match(line)
        if m:
            rows[m.group(1)] = tuple(np.array(g.split(), np.int64) for g in m.groups()[1:])
    return rows


@pytest.mark.parametrize("target", ["aarch64", "armhf"])
def test_linux_build_runs_bit_exact_under_qemu_user(target, tmp_path, speech_clips):
    need(target)
    model = Model()
    clips = {}
    for i in (0, 9, 17):
        pcm = to_int16(speech_clips[i])
        path = tmp_path / f"clip{i}.raw"
        pcm.astype("<i2").tofile(path)
        clips[str(path)] = pcm
    r = make(f"TARGET={target}", f"OUT={tmp_path / target}", "check", "CLIPS=" + " ".join(clips))
    print(r.stdout[-3000:])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "test_w2s: PASS (0 failures)" in r.stdout  # the C tests, streaming included, on the target
    # the SIMD set of the target runs, and equals the portable kernels on random layers and clips
    isa = {"aarch64": "neon", "armhf": "dsp"}[target]
    assert f"test_kernels: best kernel set {isa}" in r.stdout
    assert f"test_kernels: {isa} against portable: identical" in r.stdout and "test_kernels: PASS" in r.stdout
    rows = parse(r.stdout)
    assert set(rows) == set(clips)
    for path, pcm in clips.items():
        for got, want, what in zip(rows[path], host_outputs(model, pcm), ("batch", "stream", "running")):
            assert np.array_equal(got, want), f"{target} {what} on {path}: {got} vs host {want}"


@pytest.mark.parametrize("target, triple", [("aarch64", "aarch64-linux-gnu"), ("armhf", "arm-linux-gnueabihf")])
def test_linux_build_has_no_undefined_behaviour(target, triple, tmp_path):
    """The same C tests built by clang with UBSan in trap mode (no runtime library on the target:
    any undefined behaviour is an illegal instruction). It found the DSP conv kernel offsetting a
    NULL padding row before testing it (kernels_arm.c), which the host's sanitised builds never
    run, as they use the x86 kernels."""
    need(target)
    require_tool("clang")
    r = make(f"TARGET={target}", f"OUT={tmp_path / target}", f"CC=clang --target={triple}",
             "CFLAGS=-O1 -fsanitize=undefined -fsanitize-trap=undefined", "check")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "test_w2s: PASS (0 failures)" in r.stdout and "test_kernels: PASS" in r.stdout


def _gen_data():
    return load_script(CSRC / "firmware" / "gen_data.py")


@pytest.mark.parametrize("target", ["cortex-m3", "cortex-m4", "cortex-m7", "cortex-m55"])
def test_cortex_m_firmware_bit_exact_under_qemu_system(target, tmp_path):
    need("cortex-m")
    out = tmp_path / target
    r = make(f"TARGET={target}", f"OUT={out}", f"PYTHON={sys.executable}", "check")
    text = r.stdout + r.stderr  # semihosting output goes to qemu's stderr
    print(text[-3000:])
    assert r.returncode == 0 and "w2s_fw: PASS (3 of 3 clips" in text, text[-3000:]
    # the firmware compared itself with the host values compiled into it; compare the printed
    # numbers with the binding too, on the same clips as gen_data.py cut them
    gen = _gen_data()
    model = Model()
    rows = parse(text)
    files = gen.clip_files(3)
    assert sorted(rows) == sorted(f.name for f in files)
    for f in files:
        from wav2small.audio import load

        pcm = gen.middle(to_int16(load(f)), 16000)
        for got, want, what in zip(rows[f.name], host_outputs(model, pcm), ("batch", "stream", "running")):
            assert np.array_equal(got, want), f"{target} {what} on {f.name}: {got} vs host {want}"
    assert re.search(r"^stack init \d+ predict \d+ push \d+ read \d+$", text, re.MULTILINE)
    if target == "cortex-m4":   # docs/engine.md shows this run's output: it must not go stale again
        doc = (REPO / "docs" / "engine.md").read_text()
        shown = re.search(r"<!-- firmware-output: begin[^\n]*\n```\n(.*?)\n```\n<!-- firmware-output: end", doc, re.DOTALL)
        assert shown and shown.group(1) == text[text.index("w2s_fw: wav2small engine"):].strip(), \
            "docs/engine.md's firmware output differs from this run: python scripts/footprint.py --write"
    elf = out / "w2s_fw.elf"
    syms = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    dis = subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)], capture_output=True, text=True, check=True).stdout
    if target == "cortex-m3":
        # "no FPU needed": the soft-float image has no FPU instruction and calls no float helper
        # of libgcc (__aeabi_fadd, __aeabi_d2iz, ...); only the 64-bit integer division ones
        vfp = re.findall(r"^\s+[0-9a-f]+:\s+(?:[0-9a-f]{4} ?){1,2}\s+(v[a-z0-9.]+)", dis, re.MULTILINE)
        assert not vfp, f"FPU instructions in the soft-float image: {sorted(set(vfp))}"
        helpers = set(re.findall(r"\b(__aeabi_\w+)$", syms, re.MULTILINE))
        assert helpers and helpers <= {"__aeabi_ldivmod", "__aeabi_uldivmod", "__aeabi_idiv0", "__aeabi_ldiv0"}, helpers
        assert not re.search(r" T w2s_conv3x3_row_s8_dsp$", syms, re.MULTILINE), "DSP kernel on a core without DSP"
    else:
        # the image runs the DSP-extension conv kernel (compile-time choice): linked, with SMLAD in it
        assert re.search(r" T w2s_conv3x3_row_s8_dsp$", syms, re.MULTILINE), "DSP kernel not linked"
        assert "smlad" in dis


def test_cortex_m4_instruction_count(tmp_path):
    """Instructions per second of audio on Cortex-M4 (qemu -icount: exact guest instruction counts;
    docs/performance.md has the numbers): the DSP kernels run fewer than the portable ones."""
    need("cortex-m")
    r = make("TARGET=cortex-m4", f"OUT={tmp_path / 'm4'}", f"PYTHON={sys.executable}", "count")
    text = r.stdout + r.stderr
    print(text[-2000:])
    assert r.returncode == 0, text[-3000:]
    assert "counter ticks per 1000 instructions 25" in text  # the calibration loop: 25 MHz at 1 insn/ns
    n = {m.group(1): int(m.group(2)) for m in re.finditer(r"kernels (\w+): instructions per second of audio \S+ \S+ \S+ \S+ \S+ (\d+)", text)}
    assert set(n) == {"portable", "dsp"}, text[-2000:]
    assert 0 < n["dsp"] < n["portable"]


def test_cortex_m4_engine_text_within_target(tmp_path):
    """Issue 5's measured target: engine .text on Cortex-M4 <= 24 KB (the full table: scripts/footprint.py)."""
    need("cortex-m")
    out = tmp_path / "m4"
    r = make("TARGET=cortex-m4", f"OUT={out}", "size")
    assert r.returncode == 0, r.stderr
    text = sum(int(m.group(1)) for m in re.finditer(r"^\.text\S*\s+(\d+)", r.stdout, re.MULTILINE))
    assert 0 < text <= 24 * 1024, text
