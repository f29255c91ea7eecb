"""Write the seed corpora of the libFuzzer harnesses (csrc/fuzz/corpus/), deterministically on one machine.

    python scripts/make_fuzz_seeds.py          # needs the training extras (torch)

Seeds are small valid inputs the fuzzers mutate: real model files of several shapes (the shipped
model and random-init models quantized by the real exporter, at the edges of the engine's limits:
64 channels, 16 layers, 16 outputs, n_fft 8 and 256, 128 mels) and short PCM clips (silence,
one LSB, int16 extremes, DC, a chirp). A valid seed lets the fuzzer start past the validation
and spend its mutations on values the engine accepts. Files named regression-* are inputs that
once crashed a harness (docs/reliability.md); they are kept, so every fuzz run replays them.

The random-init models are calibrated by a float forward pass (training.quantize), whose last bits
depend on the CPU's kernels: on another CPU, or here with the AVX2-pinned environment of
training.rebuild, their seeds come out with other bytes (a few weights and the CRC). Any of those
is as good a seed; the shipped model's seeds and the PCM seeds are the same bytes everywhere.
"""
from __future__ import annotations

import argparse
import struct
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "csrc" / "fuzz" / "corpus"
DEFAULT_W2S = REPO / "wav2small" / "models" / "default.w2s"

# model shapes at the engine's limits (w2s.h), small files (the widest, 64 channels, is 45 KB with its PCM)
SHAPES = {
    "tiny": {"n_fft": 8, "hop": 3, "n_mels": 2, "channels": 1, "n_layers": 1, "pool_after": 1},
    "wide64": {"n_fft": 256, "hop": 200, "n_mels": 2, "channels": 64, "n_layers": 1, "pool_after": 1},
    "deep16": {"n_fft": 32, "hop": 16, "n_mels": 9, "channels": 4, "n_layers": 16, "pool_after": 16,
               "n_outputs": 16},
    "mels128": {"n_fft": 64, "hop": 64, "n_mels": 128, "channels": 2, "n_layers": 2, "pool_after": 1},
}


def chirp(n: int, seed: int) -> np.ndarray:
    """A rising tone over noise, int16, as a stand-in for speech in calibration and seeds."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = 0.4 * np.sin(2 * np.pi * (200 + 2000 * t) * t) + 0.05 * rng.standard_normal(n)
    return np.clip(np.rint(x * 32767), -32768, 32767).astype(np.int16)


def pcm_seeds() -> dict[str, np.ndarray]:
    return {
        "silence_64": np.zeros(64, np.int16),
        "one_lsb_200": np.tile(np.array([0, 1], np.int16), 100),
        "extremes_300": np.tile(np.array([32767, -32768], np.int16), 150),
        "dc_max_128": np.full(128, 32767, np.int16),
        "short_63": chirp(63, 1),
        "chirp_1000": chirp(1000, 2),
    }


def random_model(shape: dict, seed: int) -> bytes:
    import torch

    from training.export import model_bytes
    from training.model import Wav2Small, Wav2SmallConfig
    from training.quantize import quantize

    torch.manual_seed(seed)
    model = Wav2Small(Wav2SmallConfig(**shape)).eval()
    with torch.no_grad():  # activations fade through 16 random layers; zero biases keep them in range
        model.vgg7.lin.bias.zero_()
        model.vgg7.sof.bias.zero_()
    clips = [chirp(4000, s).astype(np.float32) / 32768 for s in (10, 11)]
    return model_bytes(quantize(model, clips))


def values_seed(model: bytes, pcm: np.ndarray) -> bytes:
    """Harness (c)'s input: the config fields, the tensors (no header, no CRC), then the PCM."""
    flags = struct.unpack_from("<I", model, 12)[0]
    config = list(struct.unpack_from("<10I", model, 16))
    config[7] |= (flags & 1) << 31  # the harness reads the uncertainty flag from n_outputs' top bit
    return struct.pack("<10I", *config) + model[64:-4] + pcm.astype("<i2").tobytes()


def seeds() -> dict[str, dict[str, bytes]]:
    """Every seed file's bytes, by corpus directory."""
    pcm = pcm_seeds()
    out: dict[str, dict[str, bytes]] = {
        "predict": {name: x.astype("<i2").tobytes() for name, x in pcm.items()}, "model_values": {}}
    models = {"default": DEFAULT_W2S.read_bytes()}
    for i, (name, shape) in enumerate(SHAPES.items()):
        models[name] = random_model(shape, seed=i)
    for name, data in models.items():
        n_fft = struct.unpack_from("<i", data, 20)[0]
        out["model_values"][name] = values_seed(data, chirp(4 * n_fft, 3))
    out["model_values"]["default_extremes"] = values_seed(models["default"], pcm["extremes_300"])
    # the parser gets whole files, and the header alone (truncated after it)
    out["model_init"] = {"default.w2s": models["default"], "tiny.w2s": models["tiny"],
                         "header_only": models["default"][:64]}
    return out


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    new = seeds()   # all made before any file is touched: a failure leaves the corpus as it was
    for name, files in new.items():
        d = CORPUS / name
        d.mkdir(parents=True, exist_ok=True)
        for f in d.iterdir():   # regression-* inputs (crashes the fuzzers found, now fixed) stay
            if not f.name.startswith("regression-"):
                f.unlink()
        for fname, data in files.items():
            (d / fname).write_bytes(data)
        kept = sorted(d.iterdir())
        print(f"{d.relative_to(REPO)}: {len(kept)} seeds, {sum(f.stat().st_size for f in kept)} bytes")


if __name__ == "__main__":
    main()
