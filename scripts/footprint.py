"""Regenerate the footprint tables of docs/engine.md: code and data of the engine per target,
memory per clip and per stream, peak stack on the emulated Cortex-M boards, and the sample output
of the Cortex-M4 firmware.

    python scripts/footprint.py              # print the tables (builds every target, ~2 min)
    python scripts/footprint.py --write      # and regenerate them in docs/engine.md

Needs the cross toolchains and qemu (docs/engine.md: Debian packages). Every target is built
with `make -C csrc TARGET=...` into a temporary directory; sizes are `size -A` of the engine's
objects (libw2s.a: every csrc/*.c the library holds, stream.c included), summed per section
kind. The stream arena and a 1 s clip's batch arena are what each target reports at run time (the
stream's struct holds pointers, so 32-bit targets need a little less; the batch arena holds the
SIMD kernels' scratch of the build: x86-64 and aarch64 carry some, the DSP builds none), the stack
is measured by the firmware: it paints the stack before each call and finds the deepest word the
call overwrote.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CSRC = REPO / "csrc"
sys.path.insert(0, str(REPO))

from doc_tables import replace_section  # noqa: E402 (scripts/ is the script's own directory)
from wav2small import Model, _engine

MARK_BEGIN = "<!-- footprint: begin (python scripts/footprint.py --write) -->"
MARK_END = "<!-- footprint: end -->"
FW_BEGIN = "<!-- firmware-output: begin (python scripts/footprint.py --write) -->"
FW_END = "<!-- firmware-output: end -->"
CODE_BUDGET = 24 * 1024   # issue 5: the engine's .text on Cortex-M4 at -O2
# (make TARGET, extra make variables, label)
TARGETS = [
    ("host", {}, "x86-64 Linux (host gcc)"),
    ("aarch64", {}, "aarch64 Linux"),
    ("armhf", {}, "armhf Linux (Cortex-A, VFPv3)"),
    ("cortex-m4", {}, "Cortex-M4F"),
    ("cortex-m4", {"CFLAGS": "-Os"}, "Cortex-M4F"),
    ("cortex-m7", {}, "Cortex-M7 (FPv5-D16)"),
    ("cortex-m55", {}, "Cortex-M55 (MVE)"),
    ("cortex-m3", {}, "Cortex-M3 (soft float, no DSP)"),
]
KINDS = ("text", "rodata", "data", "bss")
CROSS = {"host": "", "aarch64": "aarch64-linux-gnu-", "armhf": "arm-linux-gnueabihf-"}


def make(target: str, out: Path, extra: dict, goal: str) -> str:
    args = ["make", "-j2", "-C", str(CSRC), f"TARGET={target}", f"OUT={out}", f"PYTHON={sys.executable}", goal]
    args += [f"{k}={v}" for k, v in extra.items()]
    r = subprocess.run(args, check=False, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        sys.exit(f"footprint: {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r.stdout + r.stderr


def sections(size_output: str) -> tuple[dict, dict]:
    """size -A output of several objects -> bytes per kind, for all and for stream.o alone."""
    total, stream = dict.fromkeys(KINDS, 0), dict.fromkeys(KINDS, 0)
    current = ""
    for line in size_output.splitlines():
        if line.endswith(":") and ".o" in line:
            current = line
        m = re.match(r"^\.(text|rodata|data|bss)\S*\s+(\d+)", line)
        if m:
            total[m.group(1)] += int(m.group(2))
            if "stream.o" in current:
                stream[m.group(1)] += int(m.group(2))
    return total, stream


def runtime_helpers(map_file: Path) -> int:
    """.text the firmware needs besides the engine: libgcc (64-bit division) and firmware/mem.c."""
    text = map_file.read_text()
    total = 0
    for m in re.finditer(r"^ \.text\S*\s*\n?\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+(\S+)", text, re.MULTILINE):
        if re.search(r"libgcc\.a\(|/fw/mem\.o$", m.group(2)):
            total += int(m.group(1), 16)
    return total


def measure() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (target, extra, label) in enumerate(TARGETS):
            out = Path(tmp) / f"{i}-{target}"
            row = {"label": label, "target": target, "flags": extra.get("CFLAGS", "-O2")}
            row["total"], row["stream"] = sections(make(target, out, extra, "size"))
            if target.startswith("cortex-m"):
                text = make(target, out, extra, "check")
                if "w2s_fw: PASS" not in text:
                    sys.exit(f"footprint: firmware for {label} did not pass:\n{text[-2000:]}")
                row["batch_arena"], row["stream_arena"] = map(int, re.search(
                    r"^arena batch (\d+) stream (\d+)", text, re.MULTILINE).groups())
                row["stack"] = dict(zip(("init", "predict", "push", "read"), map(int, re.search(
                    r"^stack init (\d+) predict (\d+) push (\d+) read (\d+)", text, re.MULTILINE).groups())))
                row["helpers"] = runtime_helpers(out / "w2s_fw.map")
                row["output"] = text[text.index("w2s_fw: wav2small engine"):].strip()
            else:
                text = make(target, out, extra, "check")
                row["stream_arena"] = int(re.search(r"stream 1 s: .* arena (\d+) bytes", text).group(1))
                row["batch_arena"] = int(re.search(r"synth 1 s: .* arena (\d+) bytes", text).group(1))
            rows.append(row)
    return rows


def tables(rows: list[dict]) -> str:
    model = Model()
    em = model._engine
    sizes = _engine.stream_sizes(em)
    lines = ["Engine code and data (`size -A` of the objects in libw2s.a, bytes):", "",
             "| target | flags | .text | .rodata | .data | .bss | of which stream.c .text | libgcc + memcpy etc. the firmware links |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r["total"]
        helpers = f"{r['helpers']:,}" if "helpers" in r else "(libc)"
        lines.append(f"| {r['label']} | {r['flags']} | {t['text']:,} | {t['rodata']:,} | {t['data']:,} | "
                     f"{t['bss']:,} | {r['stream']['text']:,} | {helpers} |")
    lines += ["", "Memory (bytes; the model stays where it is, in flash or in the file buffer):", "",
              "| what | bytes |", "|---|---|",
              f"| model (default.w2s, weights + tables + header + CRC) | {em.nbytes:,} |"]
    batch = {r["target"]: r["batch_arena"] for r in rows}
    assert batch["host"] == em.arena_size(16000), batch   # the binding is the host build
    assert batch["armhf"] == batch["cortex-m4"], batch   # DSP builds: no kernel scratch
    for sec in (1, 3, 10):
        lines.append(f"| batch arena, {sec} s clip (`w2s_arena_size`), x86-64 | {em.arena_size(16000 * sec):,} |")
    lines.append(f"| batch arena, 1 s clip, aarch64 | {batch['aarch64']:,} |")
    lines.append(f"| batch arena, 1 s clip, Cortex-M and armhf | {batch['cortex-m4']:,} |")
    lines.append(f"| of which: SIMD kernel scratch, x86-64 / aarch64 / Cortex-M and armhf | "
                 f"{batch['host'] - batch['cortex-m4']:,} / {batch['aarch64'] - batch['cortex-m4']:,} / 0 |")
    per_target = sorted({(r["stream_arena"], r["label"]) for r in rows})
    m32 = min(a for a, _ in per_target)
    m64 = max(a for a, _ in per_target)
    lines.append(f"| streaming arena, any length (`w2s_stream_arena_size`), 32-bit targets | {m32:,} |")
    lines.append(f"| streaming arena, 64-bit targets | {m64:,} |")
    lines.append(f"| of which: online softmax state (vox) | {sizes['vox']:,} |")
    lines.append(f"| of which: frame buffer, line buffers of 7 layers, running max-pool row | {sizes['lines']:,} |")
    lines.append(f"| of which: scratch, max(push {sizes['work_push']:,}, read {sizes['work_read']:,}) | "
                 f"{max(sizes['work_push'], sizes['work_read']):,} |")
    lines.append(f"| of which: stream state (64-bit host) | {sizes['state']:,} |")
    lines += ["", "Peak stack measured on the emulated boards (stack painting, bytes below the caller's SP):", "",
              "| target | w2s_model_init | w2s_predict_s16 | w2s_stream_push_s16 | w2s_stream_read |",
              "|---|---|---|---|---|"]
    for r in rows:
        if "stack" in r:
            s = r["stack"]
            lines.append(f"| {r['label']}, {r['flags']} | {s['init']} | {s['predict']} | {s['push']} | {s['read']} |")
    m4 = {r["flags"]: r["total"]["text"] for r in rows if r["target"] == "cortex-m4"}
    lines += ["", f"The engine's `.text` on Cortex-M4 is {m4['-O2']:,} B at `-O2` ({m4['-Os']:,} B at `-Os`): "
              f"{CODE_BUDGET - m4['-O2']:,} B below issue 5's {CODE_BUDGET:,} B. On bare metal the code run once per "
              "model at load (`format.c`) is built at `-Os` whatever `CFLAGS` say (`COLD` in csrc/Makefile)."]
    return "\n".join(lines)


def firmware_output(rows: list[dict]) -> str:
    """What `make -C csrc TARGET=cortex-m4 check` prints (the -O2 build)."""
    m4 = next(r for r in rows if r["target"] == "cortex-m4" and r["flags"] == "-O2")
    return "```\n" + m4["output"] + "\n```"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="regenerate the tables in docs/engine.md")
    args = ap.parse_args()
    rows = measure()
    text, fw = tables(rows), firmware_output(rows)
    print(text, fw, sep="\n\n")
    if args.write:
        replace_section(REPO / "docs" / "engine.md", MARK_BEGIN, MARK_END, text)
        replace_section(REPO / "docs" / "engine.md", FW_BEGIN, FW_END, fw)


if __name__ == "__main__":
    main()
