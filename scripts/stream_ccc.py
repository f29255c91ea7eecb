"""What streaming prenorm costs: CCC of streamed outputs against batch, over real speech clips.

    python scripts/stream_ccc.py                     # print the table
    python scripts/stream_ccc.py --write             # and regenerate it in docs/engine.md

Batch normalises each clip by its own mean and variance. A stream either gets those statistics
up front (two passes over a finished clip: bit-identical, checked here on every clip), estimates
them as the audio comes (W2S_PRENORM_RUNNING: several windows, with and without a prior level
to start from), or uses one fixed level (a device whose microphone gain is known). Every clip is
streamed in 10 ms chunks and read once at its end; CCC is per output dimension over all clips,
against the batch outputs of the same engine on the same clip. Two conditions: the clips as
recorded, and each clip at a random gain of -24..0 dB (batch does not care: prenorm removes it;
a fixed level does).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training.speech import CORE_SPEECH_SOURCES, debian_speech_files
from training.teachers import model_stamp
from doc_tables import replace_section  # noqa: E402 (scripts/ is the script's own directory)
from wav2small import Model, _engine
from wav2small.audio import load
from wav2small.model import OUTPUT_NAMES, to_int16

MARK_BEGIN = "<!-- stream-ccc: begin (python scripts/stream_ccc.py --write) -->"
MARK_END = "<!-- stream-ccc: end -->"
CHUNK = 160  # 10 ms at 16 kHz


def ccc(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Lin's concordance correlation per column (population moments)."""
    mp, mt = pred.mean(0), target.mean(0)
    cov = ((pred - mp) * (target - mt)).mean(0)
    return 2 * cov / (pred.var(0) + target.var(0) + (mp - mt) ** 2)


def stream(model: Model, pcm: np.ndarray, **kw) -> np.ndarray:
    s = model.stream(**kw)
    for i in range(0, len(pcm), CHUNK):
        s.push(pcm[i : i + CHUNK])
    return s.read_fixed()


def pick_clips(n_clips: int) -> list[Path]:
    """Every clip that is not from asterisk (other speakers and recordings), then asterisk ones
    spread over its prompts up to n_clips."""
    files = debian_speech_files(roots=CORE_SPEECH_SOURCES)
    other = [f for f in files if "/asterisk/" not in f.as_posix()]
    ast = [f for f in files if "/asterisk/" in f.as_posix()]
    need = max(0, n_clips - len(other))
    return other[:n_clips] + (ast[:: max(1, len(ast) // need)][:need] if need else [])


N_ADV = len(OUTPUT_NAMES)


SHIPPED = REPO / "wav2small" / "models" / "default.w2s"


def measure(n_clips: int) -> tuple[list[list[str]], dict]:
    model = Model(SHIPPED)
    files = pick_clips(n_clips)
    recorded = [to_int16(load(f)) for f in files]
    rng = np.random.default_rng(0)
    gains = rng.uniform(-24.0, 0.0, len(recorded))
    quieter = [np.rint(c * 10 ** (g / 20)).astype(np.int16) for c, g in zip(recorded, gains)]
    scale = float(1 << model.config["out_frac_bits"])
    speech_level = _engine.STREAM_DEFAULT_PRIOR
    info = {"clips": len(files), "seconds": sum(len(c) for c in recorded) / 16000,
            "sources": sorted({f.parts[3] for f in files}), "model": model_stamp(SHIPPED)}

    # a level calibrated on the other clips as recorded (leave one out), as a device's known gain
    # would be; the same levels serve the quieter clips, whose gain the calibration did not see
    lv = np.array([model.clip_stats(c)[1] for c in recorded])
    calib = [(0, int(np.median(np.delete(lv, i)))) for i in range(len(recorded))]
    conditions = []
    for clips in (recorded, quieter):
        # A/D/V only: a model with an uncertainty head has more outputs after them
        batch = np.array([model.predict_fixed(c)[:N_ADV] for c in clips], np.float64) / scale
        conditions.append((clips, batch, [model.clip_stats(c) for c in clips], calib))

    def run(name: str, kw_of) -> list[str]:
        cells, bit_exact = [name], True
        for clips, batch, stats, calib in conditions:
            out = np.array([stream(model, c, **kw_of(i, stats, calib))[:N_ADV] for i, c in enumerate(clips)],
                           np.float64) / scale
            cells += [" / ".join(f"{v:.3f}" for v in ccc(out, batch)), f"{np.abs(out - batch).mean():.4f}"]
            bit_exact &= bool(np.array_equal(out, batch))
        return cells, bit_exact

    rows = []
    cells, info["two_pass_bit_exact"] = run("two passes: the clip's statistics up front", lambda i, st, cal: {"stats": st[i]})
    rows.append(cells)
    for k in (13, 16, 20):
        rows.append(run(f"running over 2^{k} samples ({2 ** k / 16000:.1f} s), no prior" + (" (default)" if k == 16 else ""),
                        lambda i, st, cal, k=k: {"log2_window": k, "prior_samples": 0})[0])
    for p in (2 ** 11, 2 ** 12, 2 ** 13):
        rows.append(run(f"running over 2^16, prior -26 dBFS for {p / 16000:.2f} s",
                        lambda i, st, cal, p=p: {"log2_window": 16, "prior": speech_level, "prior_samples": p})[0])
    rows.append(run("running over 2^16, calibrated prior for 0.51 s",
                    lambda i, st, cal: {"log2_window": 16, "prior": cal[i], "prior_samples": 2 ** 13})[0])
    rows.append(run("fixed: calibrated level", lambda i, st, cal: {"stats": cal[i]})[0])
    rows.append(run("fixed: -26 dBFS", lambda i, st, cal: {"stats": speech_level})[0])
    info["level_spread_db"] = float((lv.max() - lv.min()) / 65536 * 10 * np.log10(2))
    return rows, info


def table(rows: list[list[str]], info: dict) -> str:
    head = ["prenorm in the stream", "as recorded: CCC A / D / V", "mean \\|diff\\|",
            "gain -24..0 dB: CCC A / D / V", "mean \\|diff\\|"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines.append("")
    lines.append(f"{info['clips']} real speech clips ({info['seconds']:.0f} s; {', '.join(info['sources'])}: the "
                 f"packages .ci/run installs; their levels as recorded span {info['level_spread_db']:.0f} dB), "
                 f"streamed in 10 ms chunks and read at the end; CCC and mean |diff| (output units, nominally "
                 f"0..1) against batch on the same clip. Two passes bit-identical with batch on every clip: "
                 f"{'yes' if info['two_pass_bit_exact'] else 'NO'}. Model: {info['model']}.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=40, help="number of clips (>= 20)")
    ap.add_argument("--write", action="store_true", help="regenerate the table in docs/engine.md")
    args = ap.parse_args()
    if args.clips < 20:   # the table's CCC and shares mean little over fewer clips
        ap.error(f"--clips must be >= 20, got {args.clips}")
    rows, info = measure(args.clips)
    text = table(rows, info)
    print(text)
    if args.write:
        replace_section(REPO / "docs" / "engine.md", MARK_BEGIN, MARK_END, text)


if __name__ == "__main__":
    main()
