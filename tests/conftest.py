"""Shared fixtures: real speech from Debian packages, the default model and its float source."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
DISTILLED_FLOAT = REPO / "training" / "default" / "model.safetensors"     # training.distill: A/D/V only
DEFAULT_FLOAT = REPO / "training" / "default_uq" / "model.safetensors"    # + uncertainty head: shipped
DEFAULT_W2S = REPO / "wav2small" / "models" / "default.w2s"               # its int8 release: the package's model
FRONT_CENTER = Path("/usr/share/sounds/alsa/Front_Center.wav")           # alsa-utils: one short real speech file
N_CLIPS = 24          # the fidelity tests want at least 20 real speech clips
MAX_SECONDS = 6.0     # long clips are cut to keep the float model fast on CI

# No test may reach a model hub: an accidental hub name then fails at once instead of downloading
# (subprocesses inherit it)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


def load_script(path: Path):
    """A Python file outside the packages (scripts/, csrc/firmware/) as a module, for its functions."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def require_tool(name: str, package: str | None = None) -> None:
    """A missing program fails the test that needs it, never skips it: .ci/run installs them all."""
    if shutil.which(name) is None:
        pytest.fail(f"{name} is needed: apt-get install {package or name} (.ci/run does)")


@pytest.fixture
def espeak_ng() -> None:
    require_tool("espeak-ng")


@pytest.fixture
def flite() -> None:
    require_tool("flite")


@pytest.fixture(scope="session")
def speech_files() -> list[Path]:
    """Real speech files taken in turn from each core Debian package (training.speech.spread_speech):
    full-band speech of several speakers (pocketsphinx, alsa-utils) and telephone prompts (asterisk)."""
    from training.speech import spread_speech

    files = spread_speech(N_CLIPS)
    if len(files) < N_CLIPS:
        pytest.fail(f"only {len(files)} real speech files found; .ci/run installs pocketsphinx-testdata, "
                    "alsa-utils and asterisk-core-sounds-en-wav")
    return files


@pytest.fixture(scope="session")
def speech_clips(speech_files) -> list[np.ndarray]:
    from wav2small.audio import load

    return [load(f)[: int(MAX_SECONDS * 16000)] for f in speech_files]


@pytest.fixture(scope="session")
def default_float():
    """The float model the shipped default model was quantized from (with the uncertainty head)."""
    from training.model import load_safetensors

    return load_safetensors(DEFAULT_FLOAT)


@pytest.fixture(scope="session")
def distilled_float():
    """The distilled student the default model's uncertainty head was trained on (3 outputs)."""
    from training.model import load_safetensors

    return load_safetensors(DISTILLED_FLOAT)


@pytest.fixture(scope="session")
def default_model():
    import wav2small

    return wav2small.Model()


def to_int16(pcm: np.ndarray) -> np.ndarray:
    from wav2small.model import to_int16 as convert

    return convert(pcm)


class CountingTeacher:
    """A real teacher (the default .w2s through the engine) that counts the clips it is asked about
    and can be told to fail after a number of calls (a killed annotation run)."""

    def __init__(self, fail_after: int | None = None):
        from training.teachers import Wav2SmallTeacher

        self.inner = Wav2SmallTeacher(DEFAULT_W2S)
        self.id, self.clip_level = self.inner.id, False
        self.clips, self.calls, self.fail_after = 0, 0, fail_after

    def __call__(self, waves, ids=None):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        self.clips += len(waves)
        return self.inner(waves, ids)


def record_calls(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[tuple[tuple, dict]]:
    """Replace module.name by a wrapper that records each call's (args, kwargs) and calls the real
    function; monkeypatch puts it back after the test."""
    calls: list[tuple[tuple, dict]] = []
    real = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, spy)
    return calls



def pytest_terminal_summary(terminalreporter) -> None:
    """Say which kernel sets this CPU let the bit-exact tests compare (test_simd, test_stream): the
    others were not tested on this machine (the ARM sets run under qemu in test_arm)."""
    from wav2small import _engine

    terminalreporter.write_line(f"wav2small kernel sets tested on this CPU: {', '.join(_engine.available_isas())}")
