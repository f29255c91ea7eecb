"""Export Wav2Small to ONNX (float) and quantize it to int8 with ONNX Runtime.

    python -m training.onnx_export model.safetensors -o out_dir --calib a.wav b.wav ...

writes out_dir/model.onnx (float32) and, when calibration clips are given, out_dir/model.int8.onnx
(static QDQ, per-channel int8 weights, int8 activations, MinMax calibration; see
../shared/reference/int8-mcu.md §1.4). Both graphs take "pcm" (batch, samples) float32 at 16 kHz
and return "adv" (batch, 3) = arousal, dominance, valence.

The exporter is torch's TorchScript-based one (dynamo=False): it needs no extra package, keeps
the requested opset, and folds BatchNorm into the convs. The torch.export-based exporter
(torch's default since 2.9) needs onnxscript and, in torch 2.13, emits opset 18 even when asked
for 17. Note that int8 of the whole graph is far from the float model (int8-mcu.md, "Measured"):
these files are for checking ONNX Runtime's numerics, not for shipping.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from training.files import atomic_path
from training.model import Wav2Small, load_safetensors

# ----------------------------------------------------------------------------------------------
# float export

def export_onnx(model: Wav2Small, path: str | Path, opset: int = 17) -> Path:
    """Write the whole float model (prenorm, STFT, log-mel, conv stack, pooling, head) as ONNX.

    Input "pcm" (batch, samples) float32, output "adv" (batch, 3); batch and length are dynamic.
    The model is exported in eval mode (running BatchNorm statistics) and its mode is restored.
    """
    import onnx

    path = Path(path)
    # any values will do for tracing; two rows and one second so no dimension is a traced 1
    example = torch.randn(2, model.cfg.sample_rate, generator=torch.Generator().manual_seed(0))
    was_training = model.training
    model.eval()
    try:
        # written next to the target and renamed once checked: never half a model at `path`
        with atomic_path(path) as tmp, warnings.catch_warnings():
            # known and harmless: the legacy exporter announces its own deprecation, and
            # LogMel reads the frozen amin buffer as a Python float, which the trace keeps as a constant
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            warnings.filterwarnings("ignore", message=re.escape("You are using the legacy TorchScript"))
            warnings.filterwarnings("ignore", message="Converting a tensor to a Python float",
                                    category=torch.jit.TracerWarning)
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                input_names=["pcm"],
                output_names=["adv"],
                dynamic_axes={"pcm": {0: "batch", 1: "samples"}, "adv": {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
            onnx.checker.check_model(str(tmp))
    finally:
        model.train(was_training)
    return path


# ----------------------------------------------------------------------------------------------
# int8 static quantization

def _clip_reader(clips: Sequence[np.ndarray]):
    """A CalibrationDataReader feeding each clip as its own batch of one (clips differ in length)."""
    from onnxruntime.quantization import CalibrationDataReader

    class ClipReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = [{"pcm": np.ascontiguousarray(c, dtype=np.float32)[None, :]} for c in clips]
            self._it = iter(self._feeds)

        def get_next(self) -> dict | None:
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = iter(self._feeds)

    return ClipReader()


def quantize_onnx_int8(fp32_path: str | Path, int8_path: str | Path,
                       calibration_clips: Iterable[np.ndarray]) -> Path:
    """Static int8 quantization with ONNX Runtime: QDQ, per-channel QInt8 weights, QInt8
    activations, MinMax ranges from the given float32 16 kHz clips (1-D arrays, full scale 1.0)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    clips = [np.asarray(c, dtype=np.float32).reshape(-1) for c in calibration_clips]
    if not clips:
        raise ValueError("static quantization needs at least one calibration clip")
    int8_path = Path(int8_path)
    with tempfile.TemporaryDirectory() as tmp:
        # ORT's documented first step (shape inference + graph optimization) so every tensor has a
        # known type and rank for the quantizer; if it fails on some graph, the raw export still
        # quantizes, only possibly with fewer tensors covered
        model_in = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32_path), str(model_in))
        except Exception as e:  # noqa: BLE001 - any failure here is recoverable
            warnings.warn(f"quant_pre_process failed ({type(e).__name__}: {e}); quantizing the raw export")
            model_in = Path(fp32_path)
        with atomic_path(int8_path) as out_tmp:  # never half a model at int8_path
            quantize_static(
                str(model_in),
                str(out_tmp),
                _clip_reader(clips),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
    return int8_path


# ----------------------------------------------------------------------------------------------
# CLI

def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.onnx_export", description=__doc__.splitlines()[0])
    ap.add_argument("weights", type=Path, help="model.safetensors with the published key names")
    ap.add_argument("-o", "--out", type=Path, required=True, help="output directory")
    ap.add_argument("--calib", type=Path, nargs="+", default=[],
                    help="speech files for int8 calibration; without them only model.onnx is written")
    ap.add_argument("--opset", type=int, default=17,
                    help="ONNX opset of the export: 17 (the default) or higher; lower ones fail inside torch's exporter")
    args = ap.parse_args(argv)
    if args.opset < 17:   # what the tests and scripts/bench.py export; lower ones failed deep in torch
        ap.error(f"--opset must be >= 17, got {args.opset}")

    from wav2small.audio import load

    model = load_safetensors(args.weights)
    clips = [load(f, model.cfg.sample_rate) for f in args.calib]   # a bad file fails before anything is written
    args.out.mkdir(parents=True, exist_ok=True)
    # an int8 model of earlier weights must not stay beside the new float one
    (args.out / "model.int8.onnx").unlink(missing_ok=True)
    fp32 = export_onnx(model, args.out / "model.onnx", opset=args.opset)
    print(f"wrote {fp32}")
    if not args.calib:
        print("no --calib files: skipped model.int8.onnx (static quantization needs real audio)",
              file=sys.stderr)
        return 0
    int8 = quantize_onnx_int8(fp32, args.out / "model.int8.onnx", clips)
    print(f"wrote {int8} (calibrated on {len(clips)} clips)")
    return 0


if __name__ == "__main__":
    import training.cli

    training.cli.run(main, "python -m training.onnx_export")
