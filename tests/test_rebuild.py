"""python -m training.rebuild: the default model's recipe, rerun from the shipped runs' train.json."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training import rebuild
from training.corpus import DebianSource, debian_entries, group_split
from training.uncertainty import real_speech_record
from wav2small import Model

REPO = Path(__file__).resolve().parent.parent
STUDENT = json.loads((REPO / "training" / "default" / "train.json").read_text())
HEAD = json.loads((REPO / "training" / "default_uq" / "train.json").read_text())

# a few steps of each: every piece of the real path, small (tests/test_distill.py, test_uncertainty.py)
TINY_STUDENT = ["--n_clips=40", "--crop_seconds=0.5", "--batch_size=4", "--max_iters=2", "--warmup_iters=1",
                "--eval_interval=2", "--log_interval=2", "--eval_batch=8", "--eval_seconds=1"]
# (--voice_weight= : the recipe draws the whispered voice more often, and 120 clips hold no whispered clip)
TINY_HEAD = ["--max_iters=2", "--n_clips=120", "--batch_speech=4", "--batch_real=2", "--batch_ood=2",
             "--ood_per_kind=2", "--real_per_group=1", "--babble_bank=2", "--voice_weight="]


def test_the_plan_is_the_shipped_runs_recipe():
    out = Path("runs/r")   # only planned: nothing is written there
    student, head, release = rebuild.plan(out, False, STUDENT, HEAD)
    # the student: the options it was given (not where it was written), at its thread count
    assert student.argv == ["-m", "training.distill", "--out_dir=runs/r/student", "--crop_seconds=2.0",
                            "--floor_db=-60.0", "--seed=2", "--threads=2"]
    assert head.argv[:4] == ["-m", "training.uncertainty", "--init=runs/r/student", "--out_dir=runs/r/head"]
    assert "--speech_min_snr=10.0" in head.argv and "--seed=17" in head.argv and head.argv[-1] == "--threads=2"
    assert release.argv == ["-m", "training.release", "runs/r/head", "--out_dir=runs/r/release"]
    assert not student.install and rebuild.model_path(out, False) == out / "release" / "default.w2s"
    # --install: the head learns from the committed student, as the shipped head did
    student, head, release = rebuild.plan(out, True, STUDENT, HEAD)
    assert head.argv[2] == "--init=training/default" and HEAD["config"]["init"] == "training/default"
    assert [d for _, d in student.install] == [Path("training/default/model.safetensors"),
                                              Path("training/default/train.json")]
    assert release.argv == ["-m", "training.release", "training/default_uq"]
    assert [d for _, d in head.install] == [Path("training/default_uq") / f for f in
                                           ("model.safetensors", "train.json", rebuild.BUILT_RECORD)]
    # options given after the recipe's win (argparse keeps the last)
    assert rebuild.plan(out, False, STUDENT, HEAD, ["--max_iters=3"])[0].argv[-1] == "--max_iters=3"


def speech_packages(root: Path, groups: dict[str, int]) -> tuple:
    """A Debian-like source under root: `groups` {name: files}, one second of distinct noise each."""
    for g, n in groups.items():
        rng = np.random.default_rng(list(g.encode()))   # the corpus keeps one copy of equal files
        (root / g).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            sf.write(root / g / f"{i}.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    return (DebianSource("test-speech", str(root), "*/*.wav", lambda parts: parts[0]),)


def test_the_real_speech_a_head_draws_is_recorded_with_its_groups(tmp_path):
    # group names the corpus hash puts in train, val and test
    names = {split: next(f"g{k}" for k in range(1000) if group_split(f"g{k}") == split)
             for split in ("train", "val", "test")}
    src = speech_packages(tmp_path, {names["train"]: 3, names["val"]: 2, names["test"]: 2})
    def record(sources):
        return real_speech_record(debian_entries(max_per_group=2, seed=0, sources=sources))

    rec = record(src)
    assert rec["train"] == {"files": 2, "groups": [names["train"]]}       # at most per_group files a group
    assert rec["val"] == {"files": 2, "groups": [names["val"]]}           # test groups are not drawn
    assert rec == record(src)
    # another package installed: another record, and the rebuild names the group it adds
    extra = next(f"h{k}" for k in range(1000) if group_split(f"h{k}") == "train")
    speech_packages(tmp_path, {extra: 1})
    more = record(src)
    assert more["fingerprint"] != rec["fingerprint"] and more["train"]["groups"] == sorted([names["train"], extra])
    check = rebuild.real_speech_check({"real_speech": rec}, more)
    assert not check["same"] and check["groups"]["train"] == {"missing": [], "extra": [extra]}
    assert f"train groups extra here: {extra}" in check["note"]
    assert check["note"] in rebuild.speech_note(check) and "will not be the shipped bytes" in rebuild.speech_note(check)
    assert rebuild.speech_note(rebuild.real_speech_check({"real_speech": rec}, rec)) == (
        "real speech: as the shipped head's (2 training files in 1 speaker group)")
    assert rebuild.real_speech_check({"real_speech": rec}, rec) == {
        "same": True, "here": rec, "shipped_fingerprint": rec["fingerprint"],
        "groups": {"train": {"missing": [], "extra": []}, "val": {"missing": [], "extra": []}}, "note": ""}
    # a train.json of before the record: the size of its speech pool is all there is to compare
    old = {"pools": {"real_speech": 2}}
    assert rebuild.real_speech_check(old, rec)["same"] and not rebuild.real_speech_check(old, more)["same"]
    assert "gives 3 training files in 2 groups; the shipped head's pool had 2" in rebuild.real_speech_check(old, more)["note"]


def test_the_steps_run_with_float_kernels_capped_at_avx2(tmp_path, monkeypatch):
    """Across machines the bytes depend on which kernels torch and numpy pick (training.rebuild's
    docstring): on a CPU with AVX2 and FMA, ATen, oneDNN, MKL and numpy in the steps' environment
    report AVX2, on an AMD CPU too (MKL through its Intel path)."""
    assert rebuild.pinned_kernels({"sse4_1", "sse4_2"}, []) == {}         # AVX2 code would not run there
    assert rebuild.pinned_kernels({"avx2", "fma"}, []) == rebuild.PINNED_X86
    assert rebuild.pinned_kernels({"avx2", "fma", "avx512f"}, ["X86_V4"])["NPY_DISABLE_CPU_FEATURES"] == "X86_V4"
    monkeypatch.setenv("LD_PRELOAD", "libuser.so")                      # a user's own preload is kept
    assert rebuild.pinned_kernels({"avx2", "fma"}, [], Path("/x/lib.so"))["LD_PRELOAD"] == "/x/lib.so libuser.so"
    assert "LD_PRELOAD" not in rebuild.pinned_kernels({"sse4_2"}, [], Path("/x/lib.so"))
    monkeypatch.delenv("LD_PRELOAD")
    pinned = rebuild.pinned_here(tmp_path)
    assert pinned, "this test needs an x86-64 CPU with AVX2 and FMA (elsewhere the rebuild pins nothing)"
    intel = rebuild.cpuinfo("vendor_id") == "GenuineIntel"
    assert ("LD_PRELOAD" in pinned) == (not intel)                      # needs a C compiler: .ci/run has gcc
    code = ("import json, numpy, torch; print('aten', torch.backends.cpu.get_cpu_capability()); "
            "x = torch.randn(8, 13, 26, 100, requires_grad=True); w = torch.randn(13, 13, 3, 3); "
            "torch.nn.functional.conv2d(x, w, padding=1).sum().backward(); a = torch.randn(64, 64); (a @ a).sum(); "
            "from numpy._core._multiarray_umath import __cpu_features__ as f; "
            "print('numpy', json.dumps(sorted(k for k, v in f.items() if v)))")
    env = {**os.environ, **pinned, "ONEDNN_VERBOSE": "1", "MKL_VERBOSE": "1"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120)
    assert "aten AVX2" in r.stdout                                             # ATen's vectorised operators
    assert re.search(r"^onednn_verbose,.*isa:Intel AVX2$", r.stdout, re.MULTILINE), r.stdout[:500]  # oneDNN
    assert "CNR:AVX2" in r.stdout and "CNR:OFF" not in r.stdout                # MKL's conditional reproducibility
    if not intel:   # without its Intel path MKL ignores the setting on other vendors' CPUs (CNR:AUTO)
        env.pop("LD_PRELOAD")
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                           timeout=120)
        assert "CNR:AUTO" in r.stdout and "CNR:AVX2" not in r.stdout
    numpy_on = set(json.loads(re.search(r"^numpy (.*)$", r.stdout, re.MULTILINE).group(1)))
    assert "AVX2" in numpy_on and not numpy_on & set(rebuild.numpy_beyond_avx2())   # numpy's dispatch


def test_the_note_says_what_the_cap_does_on_this_cpu():
    pinned = rebuild.PINNED_X86
    assert "not pinned" in rebuild.cap_note({}, "GenuineIntel")
    intel = rebuild.cap_note(pinned, "GenuineIntel")
    assert "MKL_CBWR=AVX2" in intel and "differ" not in intel
    # measured under qemu -cpu EPYC-Rome: MKL reports CNR:AUTO there and the kernel probe differs
    amd = rebuild.cap_note(pinned, "AuthenticAMD")
    assert "AuthenticAMD" in amd and "no C compiler" in amd and "will differ from an Intel CPU's" in amd
    amd = rebuild.cap_note({**pinned, "LD_PRELOAD": "/x/libmkl_intel_path.so"}, "AuthenticAMD")
    assert "AuthenticAMD" in amd and "Intel path" in amd and "differ" not in amd


def test_mkl_takes_its_intel_path_through_the_preloaded_library(tmp_path, monkeypatch):
    """The library is built from MKL_INTEL_PATH_C by the system's compiler; without one there is none
    (and the note above says what that costs)."""
    lib = rebuild.mkl_intel_path(tmp_path / "lib")
    assert lib is not None and lib.is_file()
    nm = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True, check=True).stdout
    assert re.search(r" T mkl_serv_intel_cpu_true$", nm, re.MULTILINE)
    # torch's MKL exports the function, so the preloaded definition is the one its calls reach
    import torch
    libtorch = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    nm = subprocess.run(["nm", "-D", "--defined-only", str(libtorch)], capture_output=True, text=True, check=True)
    assert re.search(r" T mkl_serv_intel_cpu_true$", nm.stdout, re.MULTILINE)
    monkeypatch.setenv("CC", "no-such-compiler")
    assert rebuild.mkl_intel_path(tmp_path / "none") is None


def test_probe_prints_this_machines_kernel_probe(capsys):
    assert rebuild.main(["--probe"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^kernel probe: [0-9a-f]{64}$", out, re.MULTILINE), out
    # and whether the installed speech is the shipped head's, and its kernels
    assert rebuild.speech_note(rebuild.speech_here(HEAD)) in out
    probe = re.search(r"^kernel probe: ([0-9a-f]{64})$", out, re.MULTILINE).group(1)
    assert rebuild.built_note(rebuild.read_built(rebuild.SHIPPED_HEAD), probe) in out


def test_the_build_record_says_whether_a_machine_can_rebuild_the_bytes():
    built = rebuild.built_record("ab" * 32, {"MKL_CBWR": "AVX2", "LD_PRELOAD": "/some/where/libmkl_intel_path.so"},
                                 {"fingerprint": "0123456789abcdef"})
    assert built["pinned_kernels"] == {"MKL_CBWR": "AVX2", "LD_PRELOAD": "libmkl_intel_path.so"}   # no local path
    assert built["real_speech_fingerprint"] == "0123456789abcdef" and built["machine"] == rebuild.machine()
    assert "with the same Debian speech the rebuild gives its bytes" in rebuild.built_note(built, "ab" * 32)
    assert f"this machine's is {'cd' * 8}: the result will be a model of about the same quality" in \
        rebuild.built_note(built, "cd" * 32)
    assert "records no kernel probe (this command did not train it): unless it was trained by the same recipe" in \
        rebuild.built_note(None, "cd" * 32)
    # the card: a head a rebuild trained names its kernels and its time; one without a record predates the cap
    section = rebuild.rebuild_section(STUDENT, HEAD, built)
    assert f"whose probe is `{'ab' * 8}`" in section and "with the float kernels capped as above" in section
    assert "predates" not in section and f"on {built['machine']['cpu']}, the machine that built this model" in section
    assert "any other machine\ntrains another draw of the recipe, whose uncertainty measures vary by seed" in section
    assert "This model predates\nthe cap" in rebuild.rebuild_section(STUDENT, HEAD)
    assert "uncapped (that CPU has no AVX2 and FMA)" in rebuild.rebuild_section(STUDENT, HEAD,
                                                                               {**built, "pinned_kernels": {}})


def test_the_capped_kernels_compute_alike_on_an_emulated_avx2_only_cpu(tmp_path):
    """The cap's claim, checked on a second kind of CPU: qemu-x86_64 -cpu Haswell-v4 (AVX2 and FMA,
    no AVX-512; its vector instructions emulated exactly) computes the kernel probe, a few training
    steps of a Wav2Small and the log-mel of a full batch, bit for bit as this CPU does under the cap
    (the log-mel's torch.log10 did not: training.model.DB_PER_NEPER). On a CPU with AVX-512 the
    probe without the cap differs, so the probe sees which kernels ran. On an AMD CPU the cap holds
    only with MKL's Intel path preloaded: an emulated EPYC-Rome with it computes the probe as the
    others do, and on a real AMD CPU the probe without it differs."""
    flags = rebuild.cpu_flags()
    pinned = rebuild.pinned_here(tmp_path)
    assert pinned, "this test needs an x86-64 CPU with AVX2 and FMA"
    here = rebuild.probe_here({**os.environ, **pinned})
    if "avx512f" in flags:
        assert rebuild.probe_here(dict(os.environ)) != here
    haswell = rebuild.pinned_kernels({"avx2", "fma"}, [])   # numpy there has nothing above AVX2 to switch off
    emulated = rebuild.probe_here({**os.environ, **haswell}, ["qemu-x86_64", "-cpu", "Haswell-v4"], timeout=900)
    assert emulated == here
    # an AMD CPU emulated (AVX2 and FMA, AMD's CPUID): with MKL's Intel path it computes the same
    epyc = rebuild.pinned_kernels({"avx2", "fma"}, [], rebuild.mkl_intel_path(tmp_path / "epyc"))
    assert rebuild.probe_here({**os.environ, **epyc}, ["qemu-x86_64", "-cpu", "EPYC-Rome"], timeout=900) == here
    if "LD_PRELOAD" in pinned:
        without = {k: v for k, v in pinned.items() if k != "LD_PRELOAD"}
        assert rebuild.probe_here({**os.environ, **without}) != here


def test_the_selection_record_says_how_many_seeds_of_the_recipe_qualified(tmp_path):
    rec = {"recipe": "R9", "rule": "the rule", "where": "docs/x.md",
           "seeds": {"3": ["music called speech"], "4": [], "5": ["mean CCC", "music called speech"]}}
    (tmp_path / rebuild.SELECTION_RECORD).write_text(json.dumps(rec))
    sel = rebuild.read_selection(tmp_path)
    assert sel["seeds"] == {3: ["music called speech"], 4: [], 5: ["mean CCC", "music called speech"]}
    note = rebuild.selection_note(sel)
    assert note == (" This head was chosen: of seeds 3, 4, 5 of its recipe (R9), 1 met every line of the shipping "
                    "rule (the rule); the others failed on mean CCC, music called speech (docs/x.md).")
    assert note in rebuild.rebuild_section(STUDENT, HEAD, None, sel).replace("\n", " ")
    assert rebuild.selection_note(None) == "" and rebuild.read_selection(tmp_path / "none") is None
    for bad in ({**rec, "seeds": {}}, {**rec, "seeds": {"x": []}}, {**rec, "rule": ""}, {"seeds": rec["seeds"]},
                [1, 2]):
        (tmp_path / rebuild.SELECTION_RECORD).write_text(json.dumps(bad))
        with pytest.raises(SystemExit, match="not a selection record"):
            rebuild.read_selection(tmp_path)
    (tmp_path / rebuild.SELECTION_RECORD).write_text("{")
    with pytest.raises(SystemExit, match="not a selection record"):
        rebuild.read_selection(tmp_path)
    # beside a head, the record must list that head's seed as one that met every line
    (tmp_path / rebuild.SELECTION_RECORD).write_text(json.dumps(rec))
    for seed, why in ((4, None), (3, "listed as failing music called speech"), (7, "not listed")):
        (tmp_path / "train.json").write_text(json.dumps({"config": {"seed": seed}}))
        if why is None:
            assert rebuild.read_selection(tmp_path)["recipe"] == "R9"
        else:
            with pytest.raises(SystemExit, match=f"not this head's: its seed, {seed}, is {why}"):
                rebuild.read_selection(tmp_path)


def test_the_model_card_shows_the_command_and_its_steps():
    card = (REPO / "wav2small" / "models" / "default.md").read_text()
    built = rebuild.read_built(REPO / "training" / "default_uq")
    selection = rebuild.read_selection(REPO / "training" / "default_uq")
    assert rebuild.rebuild_section(STUDENT, HEAD, built, selection) in card
    if selection is not None:   # a head chosen among its recipe's seeds: the card says how many qualified
        assert rebuild.selection_note(selection).strip() in " ".join(card.split())
    assert "python -m training.rebuild --install" in card
    if built is not None:   # a head the rebuild trained: the card names its kernels, and other machines' draws
        assert f"whose probe is `{built['kernel_probe'][:16]}`" in card and "another draw of the recipe" in card


def test_a_small_rebuild_continues_a_killed_step_and_compares_with_the_shipped_model(tmp_path, capsys):
    out = tmp_path / "rebuild"
    # the head stops after its first step, as a killed run would: the release then finds no model
    with pytest.raises(SystemExit, match="step release failed"):
        rebuild.rebuild(out, False, TINY_STUDENT + [f"--cache_dir={tmp_path / 'cache'}"],
                        TINY_HEAD + ["--stop_at=1"], n_clips=6)
    assert (out / "head" / "ckpt.pt").is_file() and not (out / "head" / "train.json").exists()
    # the same command again: the finished student is kept, the head continues from its checkpoint
    report = rebuild.rebuild(out, False, TINY_STUDENT, TINY_HEAD + ["--stop_at=1"], n_clips=6)
    ran = {s["name"]: s for s in report["steps"]}
    assert not ran["student"]["ran"] and ran["head"]["ran"] and ran["release"]["ran"]
    assert ran["head"]["command"].endswith("--resume=true")
    head = json.loads((out / "head" / "train.json").read_text())
    assert head["config"]["max_iters"] == 2 and head["history"][-1]["step"] == 1   # steps count from 0
    # a few steps do not make the shipped model: the comparison says how far it is
    c = report["compare"]
    assert not c["identical"] and 0 < c["bytes"]["differing"] <= c["bytes"]["rebuilt"]
    assert c["bytes"]["rebuilt"] == Model(out / "release" / "default.w2s").nbytes
    assert c["clips"] == 3 and len(c["max_abs_output_diff"]) == 7
    assert all(v > 0 for v in c["max_abs_output_diff"].values())
    assert json.loads((out / "rebuild.json").read_text()) == report
    assert report["pinned_kernels"] == rebuild.pinned_here(out)
    # what real speech the machine has, against the shipped head's; the head records its own
    cfg = HEAD["config"]
    assert report["real_speech"] == rebuild.real_speech_check(HEAD, real_speech_record(debian_entries(
        max_per_group=cfg["real_per_group"], seed=cfg["seed"])))
    assert head["real_speech"] == real_speech_record(debian_entries(max_per_group=1, seed=head["config"]["seed"]))
    assert report["kernel_probe"] == rebuild.probe_here({**os.environ, **report["pinned_kernels"]})
    assert report["shipped_kernel_probe"] == (rebuild.read_built(rebuild.SHIPPED_HEAD) or {}).get("kernel_probe")
    # the head that ran here records the kernels that trained it, and its card says so
    built = json.loads((out / "head" / rebuild.BUILT_RECORD).read_text())
    assert built == rebuild.built_record(report["kernel_probe"], report["pinned_kernels"], report["real_speech"]["here"])
    card = (out / "release" / "default.md").read_text()
    assert "python -m training.rebuild --install" in card and f"whose probe is `{report['kernel_probe'][:16]}`" in card
    text = rebuild.summary(report, out)
    assert "differs from the shipped one" in text and "speech_logit" in text
