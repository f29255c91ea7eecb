"""Build of wav2small: the C engine as a static C99 library, the pybind11 binding on top.

The C sources are compiled by build_clib with C flags only (Pybind11Extension would pass
-std=c++NN to them), then linked into the one C++ file, csrc/bindings.cpp.
"""
import os
import re
from glob import glob
from pathlib import Path

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

# the version is written once, in wav2small/__init__.py
__version__ = re.search(r'__version__ = "([^"]+)"', Path("wav2small/__init__.py").read_text()).group(1)

C_SOURCES = sorted(f for f in glob("csrc/*.c") if not f.endswith(("w2s_cli.c", "test_w2s.c")))
# -Werror only where asked (CI sets WAV2SMALL_WERROR=1): a user's newer compiler may warn where ours
# does not, and that must not stop an install; csrc/Makefile builds with -Werror always
# -g0: Python's own flags add -g, which made the extension 3.2 MB instead of 0.7 MB of debug info;
# -Wundef -Wshadow on the C sources only: pybind11's headers, included by bindings.cpp, shadow
C_FLAGS = ["-std=c99", "-O2", "-g0", "-Wall", "-Wextra", "-Wundef", "-Wshadow", "-fPIC"] + (["-Werror"] if os.environ.get("WAV2SMALL_WERROR") else [])
C_HEADERS = sorted(glob("csrc/*.h"))

setup(
    name="wav2small",
    version=__version__,
    description="Wav2Small speech emotion recognition (arousal, dominance, valence) with an int8 C engine",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    license_files=["LICENSE"],
    author="the wav2small developers",
    classifiers=[
        "Development Status :: 4 - Beta",
        "Intended Audience :: Developers",
        "Intended Audience :: Science/Research",
        "Programming Language :: C",
        "Programming Language :: Python :: 3",
        "Topic :: Multimedia :: Sound/Audio :: Analysis",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    python_requires=">=3.10",
    packages=find_packages(include=["wav2small", "wav2small.*", "training", "training.*"]),
    package_data={"wav2small": ["models/*.w2s", "models/*.md", "py.typed", "_engine.pyi"]},
    # obj_deps: a header edit recompiles every C source (a reinstall over build/ reused stale objects)
    libraries=[("w2s", {"sources": C_SOURCES, "cflags": C_FLAGS, "include_dirs": ["csrc"],
                        "obj_deps": {"": C_HEADERS}})],
    ext_modules=[
        Pybind11Extension(
            "wav2small._engine",
            ["csrc/bindings.cpp"],
            include_dirs=["csrc"],
            libraries=["w2s"],
            # relink when the engine changes, not only bindings.cpp (an in-place rebuild kept a stale engine)
            depends=C_SOURCES + C_HEADERS,
            define_macros=[("VERSION_INFO", __version__)],
            cxx_std=17,
        )
    ],
    cmdclass={"build_ext": build_ext},
    install_requires=["numpy>=1.22", "soundfile>=0.12", "soxr>=0.3"],
    extras_require={
        "train": ["torch==2.13.0", "safetensors>=0.4", "onnx>=1.15", "onnxruntime>=1.17", "transformers>=4.40",
                  "silero-vad>=6",  # ships its ONNX model (training/vad_baseline.py)
                  "matplotlib>=3.7"],  # plots of the uncertainty report (training/uq_report.py)
        "test": ["pytest>=7", "pytest-xdist>=3", "librosa>=0.10", "scipy>=1.10", "atheris>=2.3; sys_platform == 'linux'",
                 "pybind11>=2.10,<4", "mypy>=1.10"],
    },
    entry_points={
        "console_scripts": ["wav2small = wav2small.__main__:main"],
        "wav2small.commands": ["convert = training.convert:register"],
    },
    zip_safe=False,
)
