"""The C engine on its own: built with make (-Wall -Wextra -Werror), its C tests, its CLI."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import DEFAULT_W2S, REPO, require_tool, to_int16

from wav2small import Model


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    require_tool("make")
    out = tmp_path_factory.mktemp("cbuild")
    r = subprocess.run(["make", "-C", str(REPO / "csrc"), f"OUT={out}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def test_c_unit_tests_pass(build):
    r = subprocess.run([str(build / "test_w2s"), str(DEFAULT_W2S)], capture_output=True, text=True)
    print(r.stdout)
    assert r.returncode == 0 and r.stdout.strip().endswith("test_w2s: PASS (0 failures)")


def test_c_cli_matches_binding(build, tmp_path, speech_clips):
    paths = []
    for i, pcm in enumerate(speech_clips[:3]):
        p = tmp_path / f"clip{i}.wav"
        sf.write(p, to_int16(pcm), 16000, subtype="PCM_16")
        paths.append(p)
    raw = tmp_path / "clip.raw"
    to_int16(speech_clips[0]).astype("<i2").tofile(raw)
    r = subprocess.run([str(build / "w2s_cli"), str(DEFAULT_W2S), *map(str, paths)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.strip().splitlines()[1:]]
    model = Model()
    # the values, the modulation in dB and the steadiness 0..1 (as many as the file has)
    scale = [65536.0] * model.config["n_outputs"] + [256.0, 32768.0][:len(model.predict_fixed(np.zeros(800))) -
                                                                    model.config["n_outputs"]]
    n = len(scale)
    for (name, *vals), pcm in zip(rows, speech_clips[:3]):
        expected = model.predict_fixed(to_int16(pcm)) / np.array(scale)
        assert np.allclose([float(v) for v in vals[:n]], expected, atol=1e-6), name
        assert vals[n:] == ([model.predict(pcm).decision] if model.has_uncertainty else []), name
    r_raw = subprocess.run([str(build / "w2s_cli"), "-r", str(DEFAULT_W2S), str(raw)], capture_output=True, text=True)
    assert r_raw.stdout.splitlines()[1].split("\t")[1:] == rows[0][1:]
    # a WAV written to a pipe leaves its data size open (0xFFFFFFFF or 0): the samples run to the end
    wav = bytearray(paths[0].read_bytes())
    at = wav.index(b"data") + 4
    for size in (b"\xff\xff\xff\xff", b"\0\0\0\0"):
        streamed = tmp_path / "streamed.wav"
        streamed.write_bytes(bytes(wav[:at] + size + wav[at + 4:]))
        r = subprocess.run([str(build / "w2s_cli"), str(DEFAULT_W2S), str(streamed)], capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.splitlines()[1].split("\t")[1:] == rows[0][1:], r.stderr


def test_c_cli_rejects_bad_files(build, tmp_path):
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.zeros((1600, 2), np.int16), 16000, subtype="PCM_16")
    r = subprocess.run([str(build / "w2s_cli"), str(DEFAULT_W2S), str(stereo)], capture_output=True, text=True)
    assert r.returncode == 1 and "mono 16-bit" in r.stderr
    fast = tmp_path / "48k.wav"
    sf.write(fast, np.zeros(4800, np.int16), 48000, subtype="PCM_16")
    r = subprocess.run([str(build / "w2s_cli"), str(DEFAULT_W2S), str(fast)], capture_output=True, text=True)
    assert r.returncode == 1 and "sample rate 48000 Hz, the model's is 16000 Hz" in r.stderr
    bad_model = tmp_path / "bad.w2s"
    bad_model.write_bytes(DEFAULT_W2S.read_bytes()[:100])
    r = subprocess.run([str(build / "w2s_cli"), str(bad_model), str(stereo)], capture_output=True, text=True)
    assert r.returncode == 2 and "truncated" in r.stderr


def test_ab_engine_script_times_two_builds_stage_by_stage():
    """scripts/ab_engine.sh (the A/B behind docs/performance.md's stage table): two builds, every
    stage of the forward pass timed for each, in one process."""
    r = subprocess.run(["bash", str(REPO / "scripts" / "ab_engine.sh"), "HEAD", "", "3"], capture_output=True,
                       text=True, cwd=REPO, env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode == 0, r.stdout + r.stderr
    rows = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines()[2:] if line.strip()}
    assert list(rows) == ["prenorm", "log-mel", "modulation", "steady", "conv1", "conv2", "conv3", "max-pool", "conv4",
                          "conv5", "conv6", "conv7", "vox", "gram", "head", "total"], r.stdout
    assert all(len(v) == 2 and all(float(x) >= 0 for x in v) for v in rows.values()), r.stdout
    assert all(float(x) > 0 for x in rows["total"]), r.stdout


def test_lowered_limits_run_the_default_model_and_refuse_wider_ones(tmp_path, speech_clips):
    """w2s.h: W2S_MAX_CHANNELS and W2S_MAX_MELS lowered at build time (the NEON and x86 kernels' stack
    buffers shrink with them): the C tests pass, the default model gives the same outputs, and a model
    beyond the limits is refused as malformed."""
    from training.export import model_bytes
    from training.model import CONFIGS, Wav2Small
    from training.quantize import quantize

    out, csrc = tmp_path / "small", str(REPO / "csrc")
    flags = "CFLAGS=-O2 -DW2S_MAX_CHANNELS=16 -DW2S_MAX_MELS=32"
    for goal in ("all", "check"):
        r = subprocess.run(["make", "-C", csrc, f"OUT={out}", flags, goal], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    wav = tmp_path / "clip.wav"
    sf.write(wav, to_int16(speech_clips[0]), 16000, subtype="PCM_16")
    small = subprocess.run([str(out / "w2s_cli"), str(DEFAULT_W2S), str(wav)], capture_output=True, text=True)
    assert small.returncode == 0, small.stderr
    q = Model().predict_fixed(to_int16(speech_clips[0]))   # 7 outputs and the modulation (dB Q8)
    assert small.stdout.splitlines()[1].split("\t")[1:9] == [f"{v / 65536:.6f}" for v in q[:7]] + [f"{q[7] / 256:.6f}"]
    wide = tmp_path / "wide.w2s"   # 34 channels, beyond 16
    wide.write_bytes(model_bytes(quantize(Wav2Small(CONFIGS["wide"]).eval(), speech_clips[:2])))
    r = subprocess.run([str(out / "w2s_cli"), str(wide), str(wav)], capture_output=True, text=True)
    assert r.returncode == 2 and "malformed model" in r.stderr


def test_c_cli_reads_a_wave_format_extensible_pcm_file(build, tmp_path):
    """w2s_cli refused mono 16-bit PCM written as WAVE_FORMAT_EXTENSIBLE (libsndfile's WAVEX, many
    recorders) with "only mono 16-bit PCM WAV is read", which it is; other formats stay refused."""
    cards = "/usr/share/pocketsphinx/test/data/cards/001.wav"   # 16 kHz mono 16-bit speech
    pcm, rate = sf.read(cards, dtype="int16")
    wavex, floatx = tmp_path / "wavex.wav", tmp_path / "floatx.wav"
    sf.write(wavex, pcm, rate, format="WAVEX", subtype="PCM_16")
    sf.write(floatx, pcm / 32768.0, rate, format="WAVEX", subtype="FLOAT")
    assert sf.info(wavex).format == "WAVEX" and wavex.read_bytes()[20:22] == b"\xfe\xff"
    r = subprocess.run([str(build / "w2s_cli"), str(DEFAULT_W2S), cards, str(wavex)], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    rows = r.stdout.splitlines()
    assert len(rows) == 3 and rows[1].split("\t")[1:] == rows[2].split("\t")[1:]
    r = subprocess.run([str(build / "w2s_cli"), str(DEFAULT_W2S), str(floatx)], capture_output=True, text=True)
    assert r.returncode == 1 and "only mono 16-bit PCM WAV is read" in r.stderr


def test_c_cli_reports_an_arena_it_cannot_allocate(build, tmp_path):
    """A clip whose arena malloc refuses (365 KB a second of audio) was skipped without a word:
    no row, no message, exit status 0. It must fail like any other file the CLI cannot run."""
    import resource

    clip = tmp_path / "minute.raw"
    np.random.default_rng(0).integers(-3000, 3000, 16000 * 60, dtype=np.int16).astype("<i2").tofile(clip)
    limit = 16 << 20   # the program, the model and the minute's samples fit; its 22 MB arena does not

    def small_address_space():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    r = subprocess.run([str(build / "w2s_cli"), "-r", str(DEFAULT_W2S), str(clip)], capture_output=True,
                       text=True, preexec_fn=small_address_space)
    assert r.returncode == 1 and "out of memory" in r.stderr, (r.returncode, r.stderr)
    assert len(r.stdout.splitlines()) == 1   # the header only


def make_compiled(where, out, obj, *flags):
    """`make -C where OUT=out [flags] obj`: the command that compiled head.c, or None."""
    r = subprocess.run(["make", "-C", str(where), f"OUT={out}", *flags, str(obj)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return next((line.split() for line in r.stdout.splitlines() if "head.c -o" in line), None)


def test_make_rebuilds_when_the_flags_change(tmp_path):
    """`make -C csrc CFLAGS=-Os` (or -DW2S_NO_SIMD, -mno-unaligned-access: docs/engine.md) after an
    -O2 build in the same OUT said "up to date" and kept the -O2 objects: `size`, the library and the
    firmware silently were the old build. The same flags again must still compile nothing."""
    require_tool("make")
    out = tmp_path / "flags"

    def compiled(*flags):
        return make_compiled(REPO / "csrc", out, out / "head.o", *flags)

    assert "-O2" in compiled()
    assert compiled() is None
    assert "-Os" in (compiled("CFLAGS=-Os") or [])
    assert compiled("CFLAGS=-Os") is None


def test_the_sanitiser_makefile_rebuilds_when_the_flags_change(tmp_path):
    """csrc/fuzz/Makefile had the same fault: `CC=gcc` (its header offers it) or another OPT after a
    build in the same OUT kept the clang -O2 objects, so the sanitiser tests ran the old build."""
    require_tool("make")
    require_tool("clang", "clang libclang-rt-14-dev")
    out = tmp_path / "san"

    def compiled(*flags):
        return make_compiled(REPO / "csrc" / "fuzz", out, out / "obj" / "san" / "head.o", *flags)

    assert compiled()[0] == "clang"
    assert compiled() is None
    assert "-O1" in (compiled("OPT=-O1 -g") or [])
    assert compiled("OPT=-O1 -g") is None
    assert (compiled("CC=gcc") or [""])[0] == "gcc"
    assert compiled("CC=gcc") is None
