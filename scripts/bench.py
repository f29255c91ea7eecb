"""Speed of the wav2small C engine against ONNX Runtime and PyTorch on the same weights.

    python scripts/bench.py                      # prints the Markdown tables (docs/performance.md)
    python scripts/bench.py --runs 40 --out bench.md

What runs, all on one thread unless said otherwise, on real speech (the Debian speech files the
tests use, concatenated to 1, 3 and 10 s):

- ORT fp32: the float model exported by training/onnx_export.py (prenorm, STFT, log-mel, convs,
  pooling, head: the whole graph), onnxruntime with intra_op_num_threads=1, inter_op=1;
- ORT int8: the same graph quantized by onnxruntime.quantization (static QDQ, per-channel int8
  weights, int8 activations, MinMax calibration on other speech clips), same session options;
- PyTorch eager: training.model.Wav2Small with torch.set_num_threads(1), no_grad;
- engine: wav2small's C engine on the int16 clip (`_engine.predict`: what Model.predict runs after
  converting the input), with the kernels it picks for this CPU, and with the portable C kernels
  for comparison; and the public `Model().predict(float clip)`, the int16 conversion included.

Each runtime is timed `--runs` times (median reported) after `--warmup` runs, interleaved round by
round so every runtime sees the same machine load. Ratios are to ORT int8 (> 1: faster than
ORT int8). Then the batch throughput of Model.predict on a list of clips against ORT int8 with 1
and 2 threads, and the peak memory of each runtime, each in a fresh subprocess.
Needs the training extras (torch, onnx, onnxruntime): pip install -e ".[train]".
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SECONDS = (1, 3, 10)


# ---- data -----------------------------------------------------------------------------------------

def speech_pool() -> list[np.ndarray]:
    """Float clips (full scale 1.0, 16 kHz) of the real speech the tests use, in file order."""
    from training.speech import CORE_SPEECH_SOURCES, debian_speech_files
    from wav2small.audio import load

    files = debian_speech_files(roots=CORE_SPEECH_SOURCES)
    if len(files) < 8:
        sys.exit("bench.py: too few real speech files; install pocketsphinx-testdata, alsa-utils and "
                 "asterisk-core-sounds-en-wav (see .ci/run)")
    return [np.asarray(load(f), dtype=np.float32) for f in files]


def concat_to(pool: list[np.ndarray], seconds: float, start: int) -> np.ndarray:
    """Clips from pool[start:] (wrapping) concatenated and cut to `seconds` at 16 kHz."""
    n, parts, i = int(seconds * 16000), [], start
    while sum(len(p) for p in parts) < n:
        parts.append(pool[i % len(pool)])
        i += 1
    return np.concatenate(parts)[:n]


# ---- cost model -------------------------------------------------------------------------------------

def macs_per_second(cfg: dict) -> dict[str, float]:
    """Multiply-accumulates of the engine per second of audio, by stage (the float graph does the
    same work: ORT/PyTorch compute the STFT as a strided conv of the same size)."""
    T = cfg["sample_rate"] / cfg["hop"]  # frames per second (edge frames ignored)
    N, F, C = cfg["n_fft"], cfg["n_mels"], cfg["channels"]
    bins, F2, T2 = N // 2 + 1, (F + 1) // 2, T / 2
    conv = T * F * C * 9                                      # layer 1: one input channel
    for layer in range(2, cfg["n_layers"] + 1):
        conv += (T if layer <= cfg["pool_after"] else T2) * (F if layer <= cfg["pool_after"] else F2) * C * C * 9
    return {"stft": T * bins * N * 2, "mel": T * bins * F, "conv": conv, "vox": T2 * F2 * C * C * 2}


# ---- runtimes ---------------------------------------------------------------------------------------

def float_weights() -> Path:
    """The float model the shipped default model was quantized from (with the uncertainty head
    when the default model has one), so every runtime runs the same network."""
    import wav2small
    from wav2small import _engine

    uq = wav2small.Model().config.get("flags", 0) & getattr(_engine, "FLAG_UNCERTAINTY", 0)
    return REPO / "training" / ("default_uq" if uq else "default") / "model.safetensors"


def build_onnx(out: Path, calib: list[np.ndarray]) -> tuple[Path, Path]:
    import torch

    from training.model import load_safetensors
    from training.onnx_export import export_onnx, quantize_onnx_int8

    torch.manual_seed(0)
    model = load_safetensors(float_weights())
    fp32 = export_onnx(model, out / "model.onnx")
    int8 = quantize_onnx_int8(fp32, out / "model.int8.onnx", calib)
    return fp32, int8


def ort_runner(path: Path, threads: int = 1, batched: bool = False):
    """ORT session on `path`; its runner takes one clip, or with `batched` a list of equal-length
    clips stacked into one (batch, samples) call."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # idle intra-op workers spin by default: between its calls they would take CPU from the runtime
    # timed next (the runtimes take turns)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def run(clip: np.ndarray):
        return sess.run(None, {"pcm": clip[None, :]})[0]

    def run_batch(clips: list[np.ndarray]):
        return sess.run(None, {"pcm": np.stack(clips)})[0]

    return run_batch if batched else run


def torch_runner(weights: Path | None = None):
    import torch

    from training.model import load_safetensors

    torch.set_num_threads(1)
    model = load_safetensors(weights or float_weights()).eval()

    def run(clip: np.ndarray):
        with torch.inference_mode():
            return model(torch.from_numpy(clip[None, :])).numpy()

    return run


def engine_runner(isa: str | None):
    import wav2small

    m = wav2small.Model()
    if isa is not None:
        m._engine.set_isa(isa)

    def run(clip: np.ndarray):
        return m._engine.predict(clip)

    return run


def model_runner():
    """The public API on the float clip: Model.predict converts to int16, then runs the engine."""
    import wav2small

    return wav2small.Model().predict


# ---- timing -----------------------------------------------------------------------------------------

def time_interleaved(runners: dict, inputs: dict, runs: int, warmup: int) -> tuple[dict, dict]:
    """Median wall-clock and median CPU seconds (this thread's) per call of each runner, the
    runners taking turns every round. Every runner computes on the calling thread (one intra-op
    thread), so its CPU time is its cost without the waits of a shared machine."""
    wall: dict[str, list[float]] = {k: [] for k in runners}
    cpu: dict[str, list[float]] = {k: [] for k in runners}
    for r in range(warmup + runs):
        for name, fn in runners.items():
            x = inputs[name]
            t0, c0 = time.perf_counter(), time.thread_time()
            fn(x)
            dt, dc = time.perf_counter() - t0, time.thread_time() - c0
            if r >= warmup:
                wall[name].append(dt)
                cpu[name].append(dc)
    return ({k: statistics.median(v) for k, v in wall.items()}, {k: statistics.median(v) for k, v in cpu.items()})


# Run in a fresh interpreter: argv = this directory, clip.npy, a runner factory of this module, its
# path arguments. Once numpy is imported and the clip read, the peak RSS (VmHWM) is reset to the
# current RSS (writing 5 to /proc/self/clear_refs): the earlier peak of the imports would otherwise
# hide a runtime that adds less than it (ru_maxrss is no use: it keeps the peak of the forked parent
# across exec). "before" is that RSS, "peak" the VmHWM after building the
# runtime (imports, model) and one call on the clip, "earlier" the peak before the reset; in KiB.
MEMORY_CODE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import bench
def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key + ":"))
clip = np.load(sys.argv[2])
earlier = status("VmHWM")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS")
run = getattr(bench, sys.argv[3])(*map(bench.Path, sys.argv[4:]))
run(clip)
print(json.dumps({"before": before, "peak": status("VmHWM"), "earlier": earlier}))
"""


def peak_rss(clip_npy: Path, factory: str, *paths: Path) -> dict[str, float]:
    """Peak RSS in MiB of one prediction of the clip in a fresh subprocess: "added" (the runtime's
    imports, model and one call) and "peak" (the whole process)."""
    out = subprocess.run([sys.executable, "-c", MEMORY_CODE, str(Path(__file__).resolve().parent), str(clip_npy),
                          factory, *map(str, paths)], capture_output=True, text=True, check=True).stdout
    kib = json.loads(out.strip().splitlines()[-1])
    return {"added": (kib["peak"] - kib["before"]) / 1024, "peak": max(kib["peak"], kib["earlier"]) / 1024}


def command_line(ap: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The command with every option as parsed (defaults included), so none goes unreported."""
    parts = ["python scripts/bench.py"]
    for a in ap._actions:
        value = getattr(args, a.dest, None)
        if not a.option_strings or a.dest == "help" or value is None or value is False:
            continue
        opt = max(a.option_strings, key=len)
        parts.append(opt if value is True else f"{opt} {shlex.quote(str(value))}")
    return " ".join(parts)


def revision() -> str:
    """Short git revision, with "+changes" when tracked files differ from it."""
    def git(*cmd: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", *cmd], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    try:
        return git("rev-parse", "--short", "HEAD") + ("+changes" if git("status", "--porcelain",
                                                                          "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                name = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return f"{name}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}"


def versions() -> str:
    import onnxruntime
    import torch

    import wav2small
    from wav2small import _engine

    return (f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}, numpy {np.__version__}, "
            f"wav2small {wav2small.__version__} (engine kernels: {_engine.best_isa()})")


# ---- main -------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30, help="timed runs per runtime and length (>= 20)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    ap.add_argument("--batch", type=int, default=64, help="clips in the batch-throughput test")
    ap.add_argument("--batch-seconds", type=float, default=3.0, help="length of each batch clip")
    ap.add_argument("--out", type=Path, help="also write the Markdown here")
    args = ap.parse_args(argv)
    if args.runs < 20:
        ap.error("--runs must be at least 20")

    with tempfile.TemporaryDirectory() as tmp:  # the ONNX models and clips the subprocesses load
        text = report(ap, args, Path(tmp))
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


def report(ap: argparse.ArgumentParser, args: argparse.Namespace, tmp: Path) -> str:
    import wav2small
    from training.teachers import model_stamp
    from wav2small import _engine
    from wav2small.model import DEFAULT_MODEL, to_int16

    pool = speech_pool()
    calib = [c[:48000] for c in pool[-8:]]  # calibration clips: the last files, not the timed ones
    cfg = wav2small.Model().config
    macs = macs_per_second(cfg)
    total_macs = sum(macs.values())
    weights = float_weights()

    isa = _engine.best_isa()
    runners = {"ORT fp32": None, "ORT int8": None, "PyTorch eager": torch_runner(weights),
               f"engine ({isa})": engine_runner(None)}
    if isa == "avx512vnni":  # what a CPU without AVX-512 VNNI runs
        runners["engine (avx2)"] = engine_runner("avx2")
    runners["engine (portable C)"] = engine_runner("portable")
    runners["engine: Model().predict(float)"] = model_runner()
    fp32, int8 = build_onnx(tmp, calib)
    runners["ORT fp32"] = ort_runner(fp32)
    runners["ORT int8"] = ort_runner(int8)

    stamp = model_stamp(Path(wav2small.__file__).parent / "models" / DEFAULT_MODEL)
    lines = [f"Machine: {machine()}.  ", f"Software: Python {platform.python_version()}, {versions()}.  ",
             f"Code: git {revision()}. Model: {stamp} (ORT and PyTorch: its float weights "
             f"{weights.relative_to(REPO)}).  ",
             f"Command: `{command_line(ap, args)}`; median of {args.runs} runs after {args.warmup} warm-up runs, "
             "one thread each, runtimes interleaved.",
             "",
             f"Model cost per second of audio: {total_macs / 1e6:.1f} M multiply-accumulates "
             f"(conv {macs['conv'] / 1e6:.1f} M, STFT {macs['stft'] / 1e6:.1f} M, mel {macs['mel'] / 1e6:.2f} M, "
             f"vox pooling {macs['vox'] / 1e6:.2f} M).",
             "",
             "The engine rows other than `Model().predict(float)` run `_engine.predict` on the int16 clip "
             "converted before the timer; `Model().predict(float)` gets the float clip, as ORT and PyTorch do.",
             "",
             "| runtime | " + " | ".join(f"{s} s: ms/call" for s in SECONDS) + " | ms per s of audio (3 s) "
             "| GMAC/s (3 s) | " + " | ".join(f"× ORT int8 ({s} s)" for s in SECONDS) + " |",
             "|---|" + "---:|" * (2 * len(SECONDS) + 2)]
    results: dict[int, dict[str, float]] = {}
    cpu: dict[int, dict[str, float]] = {}
    clips_by_len: dict[int, np.ndarray] = {}
    for i, s in enumerate(SECONDS):
        clip = clips_by_len[s] = concat_to(pool, s, start=3 * i)
        inputs = {k: (to_int16(clip) if k.startswith("engine (") else clip) for k in runners}
        results[s], cpu[s] = time_interleaved(runners, inputs, args.runs, args.warmup)
        print(f"  {s} s: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in results[s].items()), file=sys.stderr)
    for name in runners:
        ms = [results[s][name] * 1e3 for s in SECONDS]
        ratio = [results[s]["ORT int8"] / results[s][name] for s in SECONDS]
        per_s = results[3][name] * 1e3 / 3
        gmacs = total_macs * 3 / results[3][name] / 1e9
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in ms) + f" | {per_s:.2f} | {gmacs:.1f} | "
                     + " | ".join(f"{r:.2f}" for r in ratio) + " |")
    eng = f"engine ({isa})"
    lines += ["", "CPU time of the calling thread (`time.thread_time`, median), the same runs: what each call "
              "costs without the waits of a shared machine.", "",
              "| runtime | " + " | ".join(f"{s} s: CPU ms/call" for s in SECONDS) + " | CPU ms per s of audio (3 s) | "
              + " | ".join(f"× ORT int8 ({s} s)" for s in SECONDS) + " |",
              "|---|" + "---:|" * (2 * len(SECONDS) + 1)]
    for name in runners:
        lines.append(f"| {name} | " + " | ".join(f"{cpu[s][name] * 1e3:.2f}" for s in SECONDS)
                     + f" | {cpu[3][name] * 1e3 / 3:.2f} | "
                     + " | ".join(f"{cpu[s]['ORT int8'] / cpu[s][name]:.2f}" for s in SECONDS) + " |")
    lines += ["",
              f"Targets: 3 s, engine vs ORT int8: **{results[3]['ORT int8'] / results[3][eng]:.2f}×** faster "
              f"(goal ≥ 5×); 1 s, engine vs ORT fp32: **{results[1]['ORT fp32'] / results[1][eng]:.2f}×** "
              "(goal ≥ 1×).", ""]

    # Batch throughput: Model.predict on a list of float clips (conversion included) against ORT int8
    # with intra_op_num_threads=n. The ratio's baseline is ORT's own batching, one run() on the clips
    # stacked as (batch, samples) (the exported graph has a batch axis): the same job in one call, as
    # Model.predict(list) does it, and ORT's fastest way here. It needs equal lengths, which
    # Model.predict does not, so ORT one clip per run() (what unequal clips would need) is shown too.
    m = wav2small.Model()
    clips = [concat_to(pool, args.batch_seconds, start=k) for k in range(args.batch)]
    audio = args.batch * args.batch_seconds
    batch_runs = max(5, args.runs // 4)
    threads = (1, 2)
    batch_runners: dict = {}
    for n in threads:
        ort_batched, ort_single = ort_runner(int8, n, batched=True), ort_runner(int8, n)
        batch_runners[("engine", n)] = lambda c, n=n: m.predict(c, threads=n)
        batch_runners[("ORT int8 batched", n)] = ort_batched
        batch_runners[("ORT int8 one by one", n)] = lambda c, run=ort_single: [run(x) for x in c]
    # wall-clock only: these calls run on several threads, so the calling thread's CPU time means nothing
    batch, _ = time_interleaved(batch_runners, dict.fromkeys(batch_runners, clips), batch_runs, args.warmup)
    lines += [f"Batch: {args.batch} clips of {args.batch_seconds:g} s ({os.cpu_count()} logical CPUs), "
              f"median of {batch_runs} runs after {args.warmup} warm-up runs, runtimes and thread counts "
              "interleaved: `Model.predict(clips, threads=n)` on the float clips; ORT int8 with "
              "intra_op_num_threads=n, batched (one `run` on the clips stacked as (batch, samples)) and one "
              "by one (one `run` per clip). Ratio: ORT int8 batched's time over each row's at the same "
              "thread count (> 1: faster than ORT int8 batched).", "",
              "| runtime | threads | s per batch | clips/s | s of audio per s | speed-up vs 1 thread | × ORT int8 |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for name in ("engine", "ORT int8 batched", "ORT int8 one by one"):
        for n in threads:
            t = batch[(name, n)]
            lines.append(f"| {name} | {n} | {t:.3f} | {args.batch / t:.0f} | {audio / t:.0f} | "
                         f"{batch[(name, 1)] / t:.2f} | {batch[('ORT int8 batched', n)] / t:.2f} |")

    # Peak memory, each runtime in a fresh interpreter
    mem_runtimes = {"ORT fp32": ("ort_runner", fp32), "ORT int8": ("ort_runner", int8),
                    "PyTorch eager": ("torch_runner", weights), "engine: Model().predict(float)": ("model_runner",)}
    mem: dict[int, dict[str, dict[str, float]]] = {}
    for s in (3, 10):
        np.save(tmp / f"clip{s}.npy", clips_by_len[s])
        mem[s] = {name: peak_rss(tmp / f"clip{s}.npy", *spec) for name, spec in mem_runtimes.items()}
    lines += ["", "Memory: peak RSS (`VmHWM`) of one prediction in a fresh Python process per runtime and "
              "length. Added: the peak while building the runtime (imports, model) and making one call, minus "
              "the RSS just before (Python, numpy, the clip read; the peak reset there). Ratio: ORT int8's added MiB over each runtime's "
              "(> 1: less memory than ORT int8).", "",
              "| runtime | 3 s: added MiB | 10 s: added MiB | 3 s: process peak MiB | 10 s: process peak MiB "
              "| × ORT int8 (3 s) | × ORT int8 (10 s) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in mem_runtimes:
        lines.append(f"| {name} | {mem[3][name]['added']:.1f} | {mem[10][name]['added']:.1f} | "
                     f"{mem[3][name]['peak']:.1f} | {mem[10][name]['peak']:.1f} | "
                     + " | ".join(f"{mem[s]['ORT int8']['added'] / mem[s][name]['added']:.2f}" for s in (3, 10))
                     + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
