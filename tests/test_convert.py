"""Published-layout weights -> `wav2small convert` -> .w2s and C header -> the engine."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch
from conftest import DISTILLED_FLOAT, REPO, to_int16
from safetensors.torch import save_file

from training.quantize import engine_fidelity
from training.model import load_safetensors
from wav2small import Model


@pytest.fixture(scope="module")
def converted(tmp_path_factory, speech_files):
    """The default float weights re-saved with the published key names (front end included,
    as the audEERING file may carry it, with the published log-mel floor 1e-10: the default
    student's is raised, training.distill --floor_db), converted through the CLI with real-speech
    calibration."""
    d = tmp_path_factory.mktemp("convert")
    state = {k: v.contiguous() for k, v in load_safetensors(DISTILLED_FLOAT).state_dict().items()
             if not k.endswith("num_batches_tracked")}
    state["vgg7.logmel_extractor.amin"] = torch.tensor([1e-10])
    weights = d / "model.safetensors"
    save_file(state, str(weights))
    calib = [str(f) for f in speech_files[:12:2]]
    r = subprocess.run([sys.executable, "-m", "wav2small", "convert", str(weights), "-o", str(d / "m.w2s"),
                        "--header", str(d / "my_model.h"), "--calib", *calib], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout
    return d


def test_converted_model_reproduces_float(converted, speech_clips):
    fid = engine_fidelity(load_safetensors(converted / "model.safetensors"), Model(converted / "m.w2s"), speech_clips)
    print(f"\nconverted engine vs float: {fid}")
    assert min(fid["ccc"].values()) >= 0.999


def test_c_header_compiles_into_a_program(converted, speech_clips):
    """Firmware path: the generated header is compiled in and gives the binding's result."""
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed"
    pcm = to_int16(speech_clips[0][:16000])
    (converted / "clip.h").write_text(
        "static const int16_t clip[] = {" + ",".join(map(str, pcm.tolist())) + "};\n")
    (converted / "main.c").write_text("""
#include <stdio.h>
#include "w2s.h"
#include "my_model.h"
#include "clip.h"
static uint64_t arena[1 << 17];
int main(void) {
    w2s_model m;
    w2s_output out;
    size_t n = sizeof clip / sizeof clip[0];
    w2s_status st = w2s_model_init(&m, my_model_data, MY_MODEL_DATA_BYTES);
    if (st != W2S_OK) { puts(w2s_status_str(st)); return 1; }
    if (w2s_arena_size(&m, n) > sizeof arena) { puts("arena"); return 1; }
    st = w2s_predict_s16(&m, clip, n, arena, sizeof arena, &out);
    if (st != W2S_OK) { puts(w2s_status_str(st)); return 1; }
    printf("%ld %ld %ld\\n", (long)out.value[0], (long)out.value[1], (long)out.value[2]);
    return 0;
}
""")
    csrc = REPO / "csrc"
    sources = sorted(str(p) for p in csrc.glob("*.c") if p.name not in ("w2s_cli.c", "test_w2s.c"))
    exe = converted / "fw"
    subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", f"-I{csrc}", f"-I{converted}",
                    str(converted / "main.c"), *sources, "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    expected = Model(converted / "m.w2s").predict_fixed(pcm)
    assert [int(v) for v in out] == expected.tolist()


def test_convert_rejects_foreign_weights(tmp_path):
    save_file({"encoder.weight": torch.zeros(3, 3)}, str(tmp_path / "x.safetensors"))
    r = subprocess.run([sys.executable, "-m", "training.convert", str(tmp_path / "x.safetensors"),
                        "-o", str(tmp_path / "x.w2s"), "--calib", "/nonexistent"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "not a Wav2Small state dict" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.w2s").exists()


def test_convert_refuses_bad_paths_and_options_in_one_line(converted):
    """The input weights are never overwritten (-o was the input: the float weights were lost), and
    a file that is not safetensors, a directory, a non-audio calibration file and a headroom of 0 each
    get one line, not a traceback."""
    weights = converted / "model.safetensors"
    before = weights.read_bytes()
    text = converted / "notes.txt"
    text.write_text("not audio, not weights")
    cases = {
        "is the input weights file": [str(weights), "-o", str(weights)],
        "is the input weights file ": [str(weights), "-o", str(converted / "x.w2s"),
                                       "--header", str(weights)],
        "is a directory": [str(converted), "-o", str(converted / "x.w2s")],
        "header": [str(text), "-o", str(converted / "x.w2s")],   # safetensors' own words for a bad header
        "cannot read": [str(weights), "-o", str(converted / "x.w2s"), "--calib", str(text)],
        "headroom must be > 0": [str(weights), "-o", str(converted / "x.w2s"), "--headroom=0"],
    }
    for match, args in cases.items():
        r = subprocess.run([sys.executable, "-m", "wav2small", "convert", *args], capture_output=True,
                           text=True)
        assert r.returncode == 2 and match.strip() in r.stderr, (match, r.stderr)
        assert "Traceback" not in r.stderr
    assert weights.read_bytes() == before and not (converted / "x.w2s").exists()
