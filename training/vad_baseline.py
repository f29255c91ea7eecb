"""silero-vad as the baseline for "is this speech?" (issue 4): a per-clip speech score.

The model is the ONNX file the `silero-vad` PyPI package ships (silero_vad/data/silero_vad.onnx,
about 2.3 MB); it is run through onnxruntime directly, never loaded from a hub, and the package is
not imported (its __init__ imports torch; only the file is needed). Install with
`pip install silero-vad` (torch is its only hard dependency, already pinned by the train extra).

    from training.vad_baseline import SileroVAD
    vad = SileroVAD()
    vad.frame_probs(pcm)           # speech probability per 32 ms frame (512 samples at 16 kHz)
    vad.score(pcm)                 # one number per clip, see below
    vad.scores(list_of_clips)      # np.ndarray
    vad.model_bytes, vad.timing(clips)

    python -m training.vad_baseline          # model file, size, speed on real speech

The per-clip score is the **90th percentile of the frame probabilities** ("p90", the default).
Why not the mean: real utterances have pauses and leading/trailing silence (asterisk prompts are a
third silence), so the mean penalises exactly the clips we want to accept. Why not the max: one
frame out of hundreds crossing the threshold is what music, babble and clicks produce, so the max
saturates near 1 on many non-speech clips. A high percentile asks for speech in at least 10 % of
the clip (about 3 frames per second), which a 1 s utterance in an 8 s clip still meets. `reduce`
also accepts "mean" and "max" to compare. Measured (60 real speech clips of CORE_SPEECH_SOURCES vs
`nonspeech("eval", max_per_kind=40)`, 240 clips): AUROC p90 0.996, max 0.991, mean 0.933. All 370
CORE speech clips (cut to 8 s) vs all 2,132 eval non-speech clips (9,599 s), p90: AUROC 0.993;
1.000 for music, noise, tones and silence, 0.9998 for effects, 0.952 for babble (the hard case: it
*is* speech, only overlapped). Speed: 7.3 ms per second of audio on one core of the build host.

Frames are fed exactly as the package's OnnxWrapper does: 512-sample chunks at 16 kHz, each with
the previous chunk's last 64 samples prepended, the recurrent state carried over, the last chunk
zero-padded. Clips at other rates are resampled to 16 kHz with soxr first.
"""
from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wav2small.audio import resample

from .cli import HelpFormatter, ToolError

SAMPLE_RATE = 16000
CHUNK = 512          # samples per frame at 16 kHz (32 ms)
CONTEXT = 64         # samples of the previous chunk the model sees
REDUCTIONS = ("p90", "mean", "max")
MODEL_FILE = "silero_vad.onnx"


def model_path(name: str = MODEL_FILE) -> Path:
    """The ONNX file inside the installed silero-vad package (found without importing it)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ToolError("silero-vad is not installed: pip install silero-vad "
                           "(or pip install '.[train]'); its wheel ships the ONNX model")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    if not path.is_file():
        raise ToolError(f"the installed silero-vad package has no {name} at {path}")
    return path


class SileroVAD:
    """silero-vad (ONNX, 16 kHz) with one intra-op thread, as the package itself runs it."""

    def __init__(self, path: str | Path | None = None, threads: int = 1):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ToolError("onnxruntime is not installed: pip install onnxruntime") from None
        self.path = Path(path) if path is not None else model_path()
        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)

    @property
    def model_bytes(self) -> int:
        return self.path.stat().st_size

    def frame_probs_batch(self, clips: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Speech probability per 512-sample frame for several 16 kHz clips, run as one batch."""
        xs = [np.asarray(c, np.float32) for c in clips]
        if not xs:
            return []
        frames = [max(1, -(-len(x) // CHUNK)) for x in xs]
        n = max(frames)
        batch = np.zeros((len(xs), n * CHUNK), np.float32)
        for i, x in enumerate(xs):
            batch[i, : len(x)] = x
        state = np.zeros((2, len(xs), 128), np.float32)
        context = np.zeros((len(xs), CONTEXT), np.float32)
        out = np.empty((len(xs), n), np.float32)
        for k in range(n):
            chunk = batch[:, k * CHUNK:(k + 1) * CHUNK]
            x = np.concatenate([context, chunk], axis=1)
            prob, state = self.session.run(None, {"input": x, "state": state, "sr": self._sr})
            out[:, k] = prob[:, 0]
            context = x[:, -CONTEXT:]
        return [out[i, : frames[i]] for i in range(len(xs))]

    def frame_probs(self, pcm: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
        x = np.asarray(pcm, np.float32)
        if rate != SAMPLE_RATE:
            x = resample(x, rate, SAMPLE_RATE)
        return self.frame_probs_batch([x])[0]

    def score(self, pcm: np.ndarray, rate: int = SAMPLE_RATE, reduce: str = "p90") -> float:
        return reduce_probs(self.frame_probs(pcm, rate), reduce)

    def scores(self, clips: Sequence[np.ndarray], rate: int = SAMPLE_RATE, reduce: str = "p90",
               batch: int = 32) -> np.ndarray:
        """Per-clip speech scores. Clips are batched by similar length (padding frames are dropped;
        the state of a clip never sees another clip's samples)."""
        xs = [np.asarray(c, np.float32) if rate == SAMPLE_RATE else resample(np.asarray(c, np.float32), rate,
                                                                              SAMPLE_RATE) for c in clips]
        order = np.argsort([len(x) for x in xs], kind="stable")
        out = np.empty(len(xs), np.float64)
        for s in range(0, len(xs), batch):
            idx = order[s:s + batch]
            for i, p in zip(idx, self.frame_probs_batch([xs[i] for i in idx])):
                out[i] = reduce_probs(p, reduce)
        return out

    def timing(self, clips: Sequence[np.ndarray], repeat: int = 1) -> dict:
        """Wall time of scoring `clips` one at a time (as a device would, batch 1), best of `repeat`."""
        seconds = sum(len(c) for c in clips) / SAMPLE_RATE
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            for c in clips:
                self.frame_probs_batch([c])
            best = min(best, time.perf_counter() - t)
        return {"audio_seconds": seconds, "wall_seconds": best, "real_time_factor": best / max(seconds, 1e-9),
                "ms_per_audio_second": 1000 * best / max(seconds, 1e-9), "model_bytes": self.model_bytes,
                "threads": 1}


def reduce_probs(probs: np.ndarray, reduce: str = "p90") -> float:
    if reduce == "p90":
        return float(np.percentile(probs, 90))
    if reduce == "mean":
        return float(np.mean(probs))
    if reduce == "max":
        return float(np.max(probs))
    raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.vad_baseline", description=__doc__.split("\n")[0],
                                 formatter_class=HelpFormatter)
    ap.add_argument("--clips", type=int, default=24, help="real speech clips to time (CORE_SPEECH_SOURCES)")
    args = ap.parse_args(argv)
    if args.clips < 1:
        ap.error(f"--clips must be >= 1, got {args.clips}")
    from wav2small.audio import load

    from .speech import spread_speech

    vad = SileroVAD()
    files = spread_speech(args.clips)
    clips = [load(f)[: 8 * SAMPLE_RATE] for f in files]
    t = vad.timing(clips, repeat=2)
    print(f"model        {vad.path}")
    print(f"size         {vad.model_bytes:,} bytes ({vad.model_bytes / 2**20:.2f} MiB)")
    print(f"speed        {t['ms_per_audio_second']:.2f} ms per second of audio, 1 thread "
          f"({t['audio_seconds']:.1f} s of audio in {t['wall_seconds']:.2f} s)")
    s = vad.scores(clips)
    print(f"p90 score    real speech: mean {s.mean():.3f}, min {s.min():.3f} over {len(clips)} clips")


if __name__ == "__main__":
    import training.cli

    training.cli.run(main, "python -m training.vad_baseline")
