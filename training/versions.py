"""The versions of the packages whose code decides training and teacher outputs, for reports.

A stand-in teacher is initialised by transformers' own weight initialisation and saved with its
version in config.json, and float results depend on torch's kernels: two machines that disagree
on a report's numbers should compare these first (with the corpus fingerprint, training.corpus).
"""
from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = ("torch", "transformers", "numpy", "onnxruntime", "safetensors")


def versions() -> dict[str, str]:
    """{package: installed version or "absent"} for PACKAGES, plus python and the CPU architecture."""
    out = {"python": platform.python_version(), "machine": platform.machine()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out
