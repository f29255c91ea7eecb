"""Rebuild the shipped default model from nothing, with one command.

    python -m training.rebuild                  # into runs/rebuild; the checkout is left alone
    python -m training.rebuild --install        # and put the result where the package ships it

The recipe is not written here: the shipped runs recorded it in their train.json
(training/default: the distilled student; training/default_uq: its uncertainty head), and this
command reruns those options exactly, with the same thread counts (the weights depend on them):

    1. python -m training.distill     the student, into OUT/student
    2. python -m training.uncertainty the head, from that student, into OUT/head
    3. python -m training.release     the int8 model file and its card

--install copies the student to training/default before the head is trained from it (so the
head's train.json names the committed student, as the shipped one does), the head to
training/default_uq, and releases into wav2small/models; without it everything stays in OUT.
A head this command trains gets a built.json beside its train.json (BUILT_RECORD: the kernel probe,
caps and machine that trained it), shipped with it: the model card names the probe, and a later
rebuild says before it starts whether its machine's probe is the one that built the shipped bytes.

A step whose train.json exists is skipped; a step killed half-way continues from its checkpoint
(--resume=true): run the same command again. Last, the new model file is compared with the one
the package shipped when the command started: the same bytes, or how many bytes differ and how
far the outputs move on held-out real speech. Times, commands and the comparison are written to
OUT/rebuild.json.

Determinism: the training is deterministic on one machine with the same thread counts. Across
machines, the libraries take the widest instruction set the CPU has, and each rounds in its own way:
torch in ATen's vectorised operators, oneDNN's convolutions and MKL's matrix products (any one alone
changes a 100-step student), numpy in its AVX-512 sin/exp (the head's synthetic non-speech) and
OpenBLAS. Training amplifies that into a different model of about the same quality
(docs/uncertainty.md, "Rebuilding the same bytes"). So the steps run with all of them capped at AVX2
(pinned_kernels), so that x86-64 CPUs with AVX2 and FMA run the same code; on other CPUs they run
unpinned and the command says the result cannot be the shipped bytes. Checked on this CPU and, for a
small training step and a full batch's log-mel, on an AVX2-only Intel CPU emulated by qemu (the
log-mel is computed with torch.log, not with torch.log10, which MKL's vector math computes
differently by CPU: training.model.DB_PER_NEPER). On AMD CPUs MKL ignores its AVX2 setting unless it is made to
take its Intel path, so there the steps preload a one-function library built with the system's C
compiler (MKL_INTEL_PATH_C): with it a real AMD EPYC computes the probe as an Intel CPU does;
without a compiler the command says the bytes will differ. `--probe` prints in seconds a hash of the
float kernels a training step runs (kernel_probe); machines whose hashes differ cannot rebuild the
same bytes (agreeing, they also need the same Debian speech packages: the command, and --probe,
compare them with the shipped head's record and say which speaker groups differ), and rebuild.json
records both.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cli import HelpFormatter
from .files import FINISHED_RUN, write_atomic
from .model import OUTPUT_NAMES
from .release import PACKAGE_MODELS, in_checkout, real_speech, uq_flags

REPO = Path(__file__).resolve().parent.parent
SHIPPED_STUDENT = REPO / "training" / "default"
SHIPPED_HEAD = REPO / "training" / "default_uq"
DEFAULT_OUT = Path("runs/rebuild")
# beside a head's train.json, written by the rebuild that trained it and shipped with it: which float
# kernels built these bytes, so that a later rebuild says at once whether it can give them
BUILT_RECORD = "built.json"
# beside a shipped head, written by hand when it is chosen: its recipe's seeds and the lines each failed,
# so that the card says how likely another draw of the recipe is to meet the rule (read_selection)
SELECTION_RECORD = "selection.json"
# how a distill run was started, not what it trains (rebuild sets out_dir itself)
NOT_RECIPE = {"out_dir", "resume", "stop_at", "threads"}
# MKL chooses its code by CPU vendor: on a CPU not of Intel's it ignores MKL_CBWR (its verbose log says
# CNR:AUTO) and picks kernels of its own. Preloaded, this function answers MKL's question "is this an
# Intel CPU?" (torch's libtorch_cpu exports it, so the preloaded one wins) and MKL takes the path it
# takes on Intel, where MKL_CBWR=AVX2 holds: on a real AMD EPYC the kernel probe then equals an Intel
# CPU's (docs/uncertainty.md, "Other CPUs"). It runs only AVX2 and FMA code there, which such CPUs have.
MKL_INTEL_PATH_C = "int mkl_serv_intel_cpu_true(void) { return 1; }\n"
# the float kernels of every step, capped at AVX2 (the module docstring says why); read when the
# libraries load, so they are set in the steps' environment, never in this process
PINNED_X86 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2",
              "OPENBLAS_CORETYPE": "Haswell"}


@dataclass
class Step:
    name: str
    argv: list[str]                      # after `python`
    run_dir: Path | None = None          # a training run: skipped when finished, resumed when killed
    install: list[tuple[Path, Path]] = field(default_factory=list)  # copies after the step (--install)

    def finished(self) -> bool:
        return self.run_dir is not None and (self.run_dir / "train.json").is_file()

    def killed(self) -> bool:
        return self.run_dir is not None and not self.finished() and (self.run_dir / "ckpt.pt").is_file()


def student_options(student: dict) -> list[str]:
    """training.distill's options of the shipped student: the ones it was given, and its threads."""
    given = student.get("overrides", {})
    opts = [f"--{k}={v}" for k, v in given.items() if k not in NOT_RECIPE]
    return opts + [f"--threads={student.get('config', {}).get('threads', 2)}"]


def head_options(head: dict) -> list[str]:
    """training.uncertainty's options of the shipped head (those that differ from the defaults) and
    its threads."""
    opts = [o for o in uq_flags(head).split() if not o.startswith("--threads=")]
    return opts + [f"--threads={head.get('config', {}).get('threads', 2)}"]


def plan(out: Path, install: bool, student: dict, head: dict, student_extra: list[str] = (),
         head_extra: list[str] = ()) -> list[Step]:
    """The steps, in order; `student`, `head`: the shipped runs' train.json. The model card prints
    them too (release.rebuild_section), so what it says and what runs are one list."""
    s_dir, h_dir = out / "student", out / "head"
    init = Path("training/default") if install else s_dir
    steps = [Step("student", ["-m", "training.distill", f"--out_dir={s_dir}", *student_options(student),
                              *student_extra], s_dir,
                  [(s_dir / f, Path("training/default") / f) for f in FINISHED_RUN] if install else []),
             Step("head", ["-m", "training.uncertainty", f"--init={init}", f"--out_dir={h_dir}",
                           *head_options(head), *head_extra], h_dir,
                  [(h_dir / f, Path("training/default_uq") / f) for f in (*FINISHED_RUN, BUILT_RECORD)]
                  if install else [])]
    release = (["-m", "training.release", "training/default_uq"] if install else
               ["-m", "training.release", str(h_dir), f"--out_dir={out / 'release'}"])
    return steps + [Step("release", release)]


def built_record(probe: str, pinned: dict[str, str], speech: dict) -> dict:
    """BUILT_RECORD of a head trained here: the kernel probe and caps it was trained under, the
    machine, and the fingerprint of the real speech it drew (`speech`: real_speech_record). The
    preloaded library is named, not its path (the file is committed with the shipped head)."""
    return {"kernel_probe": probe, "pinned_kernels": {k: Path(v).name if k == "LD_PRELOAD" else v
                                                      for k, v in pinned.items()},
            "machine": machine(), "real_speech_fingerprint": speech["fingerprint"]}


def read_built(head_dir: Path) -> dict | None:
    """The head's BUILT_RECORD (None: trained by hand, or before rebuild wrote it)."""
    try:
        return json.loads((head_dir / BUILT_RECORD).read_text())
    except (OSError, ValueError):
        return None


def read_selection(head_dir: Path) -> dict | None:
    """The head's SELECTION_RECORD (None: none was written). A record the card cannot read is an error
    here, not a card that leaves out how its head was chosen."""
    path = head_dir / SELECTION_RECORD
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
        seeds = {int(k): [str(x) for x in v] for k, v in rec["seeds"].items()}
        if not seeds or not all(isinstance(rec[k], str) and rec[k] for k in ("recipe", "rule", "where")):
            raise ValueError("empty")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise SystemExit(f"{path}: not a selection record ({type(e).__name__}: {e}); it holds \"recipe\", "
                         "\"rule\", \"where\" (non-empty text) and \"seeds\" ({seed: [lines it failed]})") from None
    try:   # the record is this head's: its seed is one that met every line
        seed = json.loads((head_dir / "train.json").read_text())["config"]["seed"]
    except (OSError, ValueError, KeyError):
        seed = None
    if seed is not None and seeds.get(seed, ["not listed"]):
        raise SystemExit(f"{path} is not this head's: its seed, {seed}, is "
                         f"{'not listed' if seed not in seeds else 'listed as failing ' + ', '.join(seeds[seed])}")
    return {**rec, "seeds": seeds}


def selection_note(sel: dict | None) -> str:
    """The card's sentence on how the shipped head was chosen among its recipe's seeds."""
    if sel is None:
        return ""
    passed = [s for s, fails in sorted(sel["seeds"].items()) if not fails]
    failed = sorted({f for fails in sel["seeds"].values() for f in fails})
    listed = ", ".join(str(s) for s in sorted(sel["seeds"]))
    return (f" This head was chosen: of seeds {listed} of its recipe ({sel['recipe']}), "
            f"{len(passed)} met every line of the shipping rule ({sel['rule']}); the others failed on "
            f"{', '.join(failed) or 'nothing'} ({sel['where']}).")


def built_note(built: dict | None, probe: str) -> str:
    """Whether this machine's kernel probe is the one the shipped head was built with."""
    if built is None:
        return ("the shipped head records no kernel probe (this command did not train it): unless it was "
                "trained by the same recipe under the same cap on kernels of this machine's probe, the result "
                "will be a model of about the same quality, not its bytes")
    if built["kernel_probe"] == probe:
        return (f"the shipped head was built with this machine's kernel probe ({probe[:16]}) on "
                f"{built['machine']['cpu']}: with the same Debian speech the rebuild gives its bytes")
    return (f"the shipped head was built with kernel probe {built['kernel_probe'][:16]} on {built['machine']['cpu']}, "
            f"this machine's is {probe[:16]}: the result will be a model of about the same quality, not its bytes")


def rebuild_section(student: dict, head: dict, built: dict | None = None, selection: dict | None = None) -> str:
    """The model card's "Rebuild from nothing" for a model with an uncertainty head: the one command
    and the steps it runs, with the shipped runs' times (`student`, `head`: their train.json;
    `built`: the head's BUILT_RECORD, if a rebuild trained it; `selection`: its SELECTION_RECORD)."""
    minutes = {"student": student.get("wall_seconds_this_invocation"), "head": head.get("wall_seconds")}
    lines = []
    for k, step in enumerate(plan(DEFAULT_OUT, True, student, head), 1):
        t = minutes.get(step.name)
        note = f"the shipped run took {t / 60:.0f} min" if t else "this card and default.w2s"
        lines.append(f"{shown(step.argv)}   # {k}. {note}")
        if step.install:
            lines.append(f"cp {' '.join(str(a) for a, _ in step.install)} {step.install[0][1].parent}/")
    if built is None:
        took = '17 min on a 2-core machine (docs/uncertainty.md, "Rebuilding the same bytes")'
        provenance = """This model predates
the cap: it was trained uncapped on another CPU, so a rebuild gives a different model of about the
same quality, not these bytes (docs/uncertainty.md, "Rebuilding the same bytes", has measured cases)."""
    else:
        total = sum(t for t in minutes.values() if t) / 60
        took = f"{total:.0f} min of training on {built['machine']['cpu']}, the machine that built this model"
        caps = ("with the float kernels capped as above" if built["pinned_kernels"] else
                "uncapped (that CPU has no AVX2 and FMA)")
        provenance = f"""This model was built by
this command {caps}, on kernels whose probe is `{built['kernel_probe'][:16]}`: a machine whose
`--probe` prints that hash, with the same Debian speech, rebuilds these bytes; any other machine
trains another draw of the recipe, whose uncertainty measures vary by seed (docs/uncertainty.md
gives each recipe's seeds against the shipping rule)."""
    provenance += selection_note(selection)
    return f"""```bash
python -m training.rebuild --install   # {took}
```

runs these steps, with the options the shipped runs recorded in training/default/train.json and
training/default_uq/train.json; a step that was killed continues where it stopped when the command
is run again. On an x86-64 CPU with AVX2 and FMA it caps the float kernels of torch, MKL and numpy
at AVX2 (on a CPU not of Intel's MKL is made to take its Intel path, where it honours the cap), so
that such CPUs compute the same thing: a few training steps and the log-mel of a full batch compute
alike on a real AMD EPYC and on an Intel Haswell and an AMD EPYC-Rome emulated by qemu, and the
twenty-fifth round's model (docs/uncertainty.md), built on an AMD EPYC, was rebuilt byte for byte
on an Intel Xeon with AVX-512 (2026-12-06; capped rebuilds before that day took the log-mel from
MKL, which differs by CPU). `python -m training.rebuild --probe` prints in seconds a hash of those
kernels: machines whose hashes differ cannot rebuild the same bytes. The head also
learns from the Debian speech packages installed (those .ci/run installs, and no others, for these
bytes): the command says which speaker groups differ from the shipped head's. {provenance} The command
compares the new model file with this one and says how far apart they are.

```bash
{chr(10).join(lines)}
```
"""


def cpuinfo(field: str) -> str | None:
    """The first CPU's `field` in Linux's /proc/cpuinfo ("model name", "flags"); None elsewhere."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((x.split(":", 1)[1].strip() for x in lines if x.startswith(field)), None)


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them; empty elsewhere."""
    return set((cpuinfo("flags") or "").split())


def numpy_beyond_avx2() -> list[str]:
    """numpy's dispatched kernel sets above AVX2 that this CPU has (numpy 2: X86_V4, AVX512_ICL, ...;
    numpy 1: AVX512F, AVX512_SKX, ...): what NPY_DISABLE_CPU_FEATURES must name (numpy refuses names
    it does not dispatch)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:   # numpy 1
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return [f for f in __cpu_dispatch__ if (f == "X86_V4" or f.startswith("AVX512")) and __cpu_features__.get(f)]


def pinned_kernels(flags: set[str], numpy_features: list[str],
                   mkl_preload: Path | None = None) -> dict[str, str]:
    """The environment that pins the float kernels on a CPU with these flags, numpy's features above
    AVX2 switched off and, on a CPU not of Intel's, MKL's Intel path preloaded (`mkl_preload`, from
    mkl_intel_path). Empty: no pinning; torch would run AVX2 code on a CPU without it and stop with
    an illegal instruction."""
    if not {"avx2", "fma"} <= flags:
        return {}
    preload = " ".join(p for p in (str(mkl_preload or ""), os.environ.get("LD_PRELOAD", "")) if p)
    numpy_off = {"NPY_DISABLE_CPU_FEATURES": " ".join(numpy_features)} if numpy_features else {}
    return {**PINNED_X86, **numpy_off, **({"LD_PRELOAD": preload} if mkl_preload else {})}


def mkl_intel_path(directory: Path) -> Path | None:
    """MKL_INTEL_PATH_C built by the system's C compiler ($CC, else cc) into `directory`; None when
    there is no compiler or it fails (the steps then run without it, and cap_note says what that
    costs)."""
    cc = shutil.which(os.environ.get("CC") or "cc")
    if cc is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    src, lib = directory / "mkl_intel_path.c", directory / "libmkl_intel_path.so"
    src.write_text(MKL_INTEL_PATH_C)
    r = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(src)], capture_output=True,
                       text=True)
    return lib if r.returncode == 0 else None


def kernel_probe(steps: int = 2, threads: int = 2, seconds: float = 0.25) -> str:
    """sha256 of a Wav2Small (seed 0) after a few AdamW steps on audio numpy synthesises: numpy's sin
    and exp, the log-mel front end, the convolutions and BatchNorm forward and backward and the
    matrix products of a training step, in one hash; and of the log-mel of a student's full batch
    (16 crops of 2 s: MKL's vector math, which torch.log10 used, differed by CPU only at such sizes).
    Two machines whose hashes differ compute training differently. Under a second natively; the
    tests run it under qemu as other CPUs."""
    import torch

    from .metrics import ccc_torch
    from .model import Wav2Small

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    t = np.arange(int(seconds * 16000)) / 16000
    rng = np.random.default_rng(0)
    pcm = np.stack([np.sin(2 * np.pi * f * t * (1 + t)) * np.exp(-d * t) + 0.05 * rng.standard_normal(t.size)
                    for f, d in zip((110, 190, 230, 310), (0.5, 1, 2, 3))]).astype(np.float32)
    target = torch.from_numpy(rng.uniform(0, 1, (len(pcm), 3)).astype(np.float32))
    model = Wav2Small()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = 1 - ccc_torch(model(torch.from_numpy(pcm)), target).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    h = hashlib.sha256()
    for v in model.state_dict().values():
        h.update(v.detach().contiguous().numpy().tobytes())
    batch = np.resize(pcm, (16, 32000)) + 0.01 * rng.standard_normal((16, 32000)).astype(np.float32)
    with torch.no_grad():
        h.update(model.vgg7.logmel(torch.from_numpy(batch)).numpy().tobytes())
    return h.hexdigest()


def pinned_here(directory: Path) -> dict[str, str]:
    """pinned_kernels for this machine's CPU and numpy; on a CPU not of Intel's with AVX2 and FMA, MKL's
    Intel path is built into `directory` and preloaded."""
    flags = cpu_flags()
    intel = cpuinfo("vendor_id") == "GenuineIntel"
    preload = mkl_intel_path(directory) if {"avx2", "fma"} <= flags and not intel else None
    return pinned_kernels(flags, numpy_beyond_avx2(), preload)


def unpinned_here() -> bool:
    """Whether this process could run under the kernel cap and does not (a step started by hand, not by
    this command): its environment lacks some of pinned_kernels' settings for this CPU."""
    bare = pinned_kernels(cpu_flags(), numpy_beyond_avx2())
    return any(os.environ.get(k) != v for k, v in bare.items())


def cap_note(pinned: dict[str, str], vendor: str | None) -> str:
    """What the kernel cap does on this CPU, for the user."""
    if not pinned:
        return ("this CPU has no AVX2 and FMA (or is not x86-64): torch's float kernels are not pinned, so the "
                "result will be a model of about the same quality, not the shipped bytes")
    note = ("float kernels pinned to AVX2 (" + " ".join(f"{k}={v}" for k, v in pinned.items()) +
            "), so that x86-64 CPUs with AVX2 and FMA compute the same thing")
    if vendor != "GenuineIntel":
        cpu = vendor or "not an Intel CPU"
        if "LD_PRELOAD" in pinned:
            note += (f"; this CPU is {cpu}, so MKL is made to take its Intel path, where it honours "
                     "MKL_CBWR=AVX2 (the preloaded library's mkl_serv_intel_cpu_true returns 1)")
        else:
            note += (f"; but this CPU is {cpu}, and MKL honours MKL_CBWR=AVX2 on Intel CPUs only; with no "
                     "C compiler (cc, or $CC) to build the library that makes it take its Intel path, its "
                     "matrix products, and so the bytes, will differ from an Intel CPU's")
    return note


def probe_here(env: dict[str, str], runner: list[str] = (), timeout: float = 300) -> str:
    """kernel_probe() in a fresh interpreter with `env` (the caps act when the libraries load), run
    by `runner` if given (e.g. qemu-x86_64 -cpu MODEL: another CPU)."""
    code = "from training.rebuild import kernel_probe; print(kernel_probe())"
    r = subprocess.run([*runner, sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode:
        raise SystemExit(f"the kernel probe failed (exit status {r.returncode}):\n{r.stderr[-2000:]}")
    return r.stdout.split()[-1]


def model_path(out: Path, install: bool) -> Path:
    return PACKAGE_MODELS / "default.w2s" if install else out / "release" / "default.w2s"


def output_names(n: int) -> list[str]:
    names = list(OUTPUT_NAMES)
    return names if n == len(names) else names + [f"log_sigma_{k}" for k in names] + ["speech_logit"]


def compare(shipped: bytes, rebuilt: Path, n_clips: int = 48) -> dict:
    """How the rebuilt model file differs from the shipped one: bytes, and outputs (in their units:
    A/D/V, natural-log sigmas, the speech logit) on the real speech calibration did not see."""
    from wav2small import Model

    new = rebuilt.read_bytes()
    res: dict = {"shipped_sha256": hashlib.sha256(shipped).hexdigest(),
                 "rebuilt_sha256": hashlib.sha256(new).hexdigest(), "identical": new == shipped}
    if res["identical"]:
        return res
    res["bytes"] = {"shipped": len(shipped), "rebuilt": len(new),
                    "differing": sum(a != b for a, b in zip(shipped, new)) + abs(len(new) - len(shipped))}
    a, b = Model.from_bytes(shipped), Model(rebuilt)
    if a.config != b.config:
        res["config"] = {"shipped": a.config, "rebuilt": b.config}
        return res
    held_out = real_speech(n_clips)[1][1::2]   # release calibrates on the others
    diff = np.max([np.abs(a.predict_fixed(x) - b.predict_fixed(x)) for x in held_out], axis=0) / 65536
    res["max_abs_output_diff"] = dict(zip(output_names(len(diff)), map(float, diff)))
    res["clips"] = len(held_out)
    return res


def real_speech_check(head: dict, here: dict) -> dict:
    """Whether the Debian real speech installed here (`here`: uncertainty.real_speech_record with the
    shipped head's options) is what the shipped head (`head`: its train.json) trained on. A train.json
    written before the record existed has only the size of the speech pool to compare."""
    shipped = head.get("real_speech")
    if shipped:
        same = shipped["fingerprint"] == here["fingerprint"]
        diff = {split: {"missing": sorted(set(shipped[split]["groups"]) - set(here[split]["groups"])),
                        "extra": sorted(set(here[split]["groups"]) - set(shipped[split]["groups"]))}
                for split in ("train", "val")}
        said = "; ".join(f"{split} groups {kind} here: {', '.join(groups)}"
                         for split, d in diff.items() for kind, groups in d.items() if groups)
        note = said or "the same groups, but other files in them"
        return {"same": same, "here": here, "shipped_fingerprint": shipped["fingerprint"], "groups": diff,
                "note": "" if same else f"the real speech installed here is not the shipped head's ({note})"}
    pool = head.get("pools", {}).get("real_speech")
    same = pool == here["train"]["files"]
    return {"same": same, "here": here, "shipped_pool_files": pool,
            "note": "" if same else f"the real speech installed here gives {here['train']['files']} training files "
                                    f"in {len(here['train']['groups'])} groups; the shipped head's pool had {pool}"}


def speech_here(head: dict) -> dict:
    """real_speech_check of this machine's installed speech against `head` (a train.json)."""
    from .corpus import debian_entries
    from .uncertainty import UQConfig, real_speech_record

    cfg = head.get("config", {})
    return real_speech_check(head, real_speech_record(debian_entries(
        max_per_group=cfg.get("real_per_group", UQConfig.real_per_group), seed=cfg.get("seed", UQConfig.seed))))


def speech_note(speech: dict) -> str:
    """What a real_speech_check means for the user."""
    if speech["same"]:
        files, groups = speech["here"]["train"]["files"], len(speech["here"]["train"]["groups"])
        return (f"real speech: as the shipped head's ({files} training file{'s' * (files != 1)} in {groups} "
                f"speaker group{'s' * (groups != 1)})")
    return (f"{speech['note']}: the head learns from it, so the result will not be the shipped bytes (install the "
            "Debian speech packages .ci/run installs, and no others: docs/uncertainty.md, \"The installed speech\")")


def rel(path: Path | str) -> str:
    """A path as the user would type it: relative to the working directory when under it."""
    p = Path(path)
    return str(p.relative_to(Path.cwd())) if p.is_absolute() and p.is_relative_to(Path.cwd()) else str(p)


def shown(argv: list[str]) -> str:
    """A command as the user would type it."""
    def arg(a: str) -> str:
        key, eq, val = a.partition("=")
        return f"{key}={rel(val)}" if eq and val.startswith("/") else rel(a) if a.startswith("/") else a
    return "python " + " ".join(shlex.quote(arg(a)) for a in argv)


def rebuild(out: Path, install: bool, student_extra: list[str] = (), head_extra: list[str] = (),
            n_clips: int = 48, log=print) -> dict:
    student = json.loads((SHIPPED_STUDENT / "train.json").read_text())
    head = json.loads((SHIPPED_HEAD / "train.json").read_text())
    shipped = (PACKAGE_MODELS / "default.w2s").read_bytes()   # before --install replaces it
    out.mkdir(parents=True, exist_ok=True)
    steps = plan(out, install, student, head, student_extra, head_extra)
    pinned = pinned_here(out)
    env = {**os.environ, **pinned}
    log(cap_note(pinned, cpuinfo("vendor_id")))
    probe = probe_here(env)
    log(f"kernel probe {probe[:16]} (a machine with another probe rebuilds other bytes)")
    shipped_built = read_built(SHIPPED_HEAD)
    log(built_note(shipped_built, probe))
    speech = speech_here(head)
    if not speech["same"]:
        log(speech_note(speech))
    report: dict = {"install": install, "machine": machine(), "pinned_kernels": pinned, "kernel_probe": probe,
                    "shipped_kernel_probe": shipped_built["kernel_probe"] if shipped_built else None,
                    "real_speech": speech, "steps": []}
    t0 = time.monotonic()
    for k, step in enumerate(steps, 1):
        argv = step.argv
        if step.finished():
            log(f"[{k}/{len(steps)}] {step.name}: finished run in {step.run_dir}, skipped")
            seconds, ran = 0.0, False
        else:
            if step.killed():   # a killed run continues with the options it started with
                argv = argv[:2] + [f"--out_dir={step.run_dir}", "--resume=true"]
            log(f"[{k}/{len(steps)}] {step.name}: {shown(argv)}")
            t = time.monotonic()
            rc = subprocess.run([sys.executable, *argv], cwd=REPO, env=env).returncode
            if rc:
                raise SystemExit(f"python -m training.rebuild: step {step.name} failed (exit status {rc}); "
                                 "the same command continues from where it stopped")
            seconds, ran = time.monotonic() - t, True
            log(f"[{k}/{len(steps)}] {step.name}: {seconds / 60:.1f} min")
            if step.name == "head":   # these kernels trained it: the card and later rebuilds say so
                write_atomic(step.run_dir / BUILT_RECORD,
                             (json.dumps(built_record(probe, pinned, speech["here"]), indent=2) + "\n").encode())
        for src, dst in step.install:
            if src.name == BUILT_RECORD and not src.is_file():   # a head finished elsewhere: no record of ours
                (REPO / dst).unlink(missing_ok=True)
                continue
            shutil.copyfile(src, REPO / dst)
            log(f"    copied {rel(src)} -> {dst}")
        report["steps"].append({"name": step.name, "command": shown(argv), "ran": ran, "seconds": round(seconds, 1)})
    report["seconds"] = round(time.monotonic() - t0, 1)
    report["compare"] = compare(shipped, model_path(out, install), n_clips)
    write_atomic(out / "rebuild.json", (json.dumps(report, indent=2) + "\n").encode())
    return report


def machine() -> dict:
    import torch

    cpu = cpuinfo("model name") or platform.processor()
    return {"cpu": cpu, "vendor": cpuinfo("vendor_id"), "python": platform.python_version(),
            "torch": torch.__version__}


def summary(report: dict, out: Path) -> str:
    c = report["compare"]
    lines = [f"rebuilt in {report['seconds'] / 60:.1f} min (steps run this time); report: {out / 'rebuild.json'}"]
    if c["identical"]:
        lines.append(f"the model file is identical to the shipped one (sha256 {c['rebuilt_sha256'][:16]})")
    else:
        lines.append(f"the model file differs from the shipped one in {c['bytes']['differing']:,} of "
                     f"{c['bytes']['shipped']:,} bytes")
        if "max_abs_output_diff" in c:
            worst = ", ".join(f"{k} {v:.2g}" for k, v in c["max_abs_output_diff"].items())
            lines.append(f"largest output difference over {c['clips']} held-out real clips: {worst}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.rebuild", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--out_dir", type=Path, default=DEFAULT_OUT, help="where the runs, the release and rebuild.json go")
    p.add_argument("--install", action="store_true",
                   help="copy the runs to training/default and training/default_uq and release into wav2small/models")
    p.add_argument("--student_args", default="", help="more training.distill options, after the recipe's "
                   "(a quick trial: the result is then not the shipped recipe's)")
    p.add_argument("--head_args", default="", help="more training.uncertainty options, likewise")
    p.add_argument("--probe", action="store_true", help="only print the kernel probe of this machine, with the "
                   "rebuild's kernel settings, and whether its Debian real speech is the shipped head's (seconds), "
                   "and exit: a machine with another probe or other speech rebuilds other bytes")
    args = p.parse_args(argv)
    if args.probe:
        with tempfile.TemporaryDirectory() as tmp:
            pinned = pinned_here(Path(tmp))
            print(cap_note(pinned, cpuinfo("vendor_id")))
            probe = probe_here({**os.environ, **pinned})
            print(f"kernel probe: {probe}")
        if (SHIPPED_HEAD / "train.json").is_file():   # a source checkout: the shipped head's record is here
            print(built_note(read_built(SHIPPED_HEAD), probe))
            print(speech_note(speech_here(json.loads((SHIPPED_HEAD / "train.json").read_text()))))
        return 0
    if not in_checkout() or not (SHIPPED_HEAD / "train.json").is_file():
        p.error("run it in a source checkout: the recipe is training/default*/train.json and --install "
                "writes into the checkout")
    report = rebuild(args.out_dir.resolve(), args.install, shlex.split(args.student_args),
                     shlex.split(args.head_args))
    print(summary(report, args.out_dir))
    return 0


if __name__ == "__main__":
    import training.cli

    training.cli.run(main, "python -m training.rebuild")
