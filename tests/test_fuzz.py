"""Short, bounded runs of every fuzz harness (docs/reliability.md has the long runs).

The three libFuzzer harnesses (csrc/fuzz/, ASan + UBSan, every check) and the atheris harness of
the Python API (scripts/fuzz_api.py) run at once for FUZZ_RUNS inputs each, with a fixed seed,
from the committed seed corpora, through scripts/fuzz.sh, the same script as the long runs: a
count, not a time, so a loaded machine runs the same inputs, only slower (a few seconds here). Missing clang or atheris is
a failure, not a skip: CI must install them (.ci/run).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO, require_tool

FUZZ_RUNS = 3000
HARNESSES = ("model_init", "predict", "model_values", "api")
CORPUS = REPO / "csrc" / "fuzz" / "corpus"


def test_seed_corpora_are_small_and_present():
    for name in ("model_init", "predict", "model_values"):
        seeds = list((CORPUS / name).iterdir())
        assert len(seeds) >= 3, f"{name}: only {len(seeds)} seeds"
    total = sum(f.stat().st_size for f in CORPUS.rglob("*") if f.is_file())
    assert total < 200_000, f"seed corpora hold {total} bytes; keep them small"


def test_model_seeds_are_models_the_engine_accepts():
    """A seed the engine rejects only exercises the validation: every model seed must load, as the
    harness builds it (csrc/fuzz/fuzz_model_values.c: 10 config words, the uncertainty flag in the
    top bit of n_outputs, then the tensors; the seeds' values are in range, so nothing is folded)."""
    import struct
    import zlib

    from wav2small import _engine

    keys = ("sample_rate", "n_fft", "hop", "n_mels", "channels", "n_layers", "pool_after", "n_outputs",
            "out_frac_bits", "mel_weights")
    for seed in sorted((CORPUS / "model_values").iterdir()):
        if seed.name.startswith("regression-"):
            continue
        data = seed.read_bytes()
        words = struct.unpack_from("<10I", data)
        config = dict(zip(keys, words), n_outputs=words[7] & 0x7FFFFFFF, flags=words[7] >> 31)
        end = _engine.layout(config)[1]
        head = struct.pack("<IHHII10i", _engine.FORMAT_MAGIC, _engine.FORMAT_VERSION, _engine.HEADER_BYTES,
                           end + 4, config["flags"], *(config[k] for k in keys))
        body = (head + bytes(_engine.HEADER_BYTES - len(head)) + data[40 : 40 + end - _engine.HEADER_BYTES])
        assert len(body) == end, seed.name
        _engine.Model(body + struct.pack("<I", zlib.crc32(body)))  # raises if the engine rejects it
    for seed in ("default.w2s", "tiny.w2s"):
        _engine.Model((CORPUS / "model_init" / seed).read_bytes())


def test_fuzz_harnesses_run_clean(tmp_path):
    require_tool("clang", "clang libclang-rt-14-dev")   # the libFuzzer harnesses
    try:
        import atheris  # noqa: F401
    except ImportError:
        pytest.fail("atheris is needed for the Python API harness: pip install atheris")
    r = subprocess.run(
        ["bash", str(REPO / "scripts" / "fuzz.sh"), "-r", str(FUZZ_RUNS), "-s", "1", "-j", str(len(HARNESSES)),
         "-w", str(tmp_path), *HARNESSES],
        check=False, capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable}, timeout=600,
    )
    print(r.stdout)
    results = {m[0]: (int(m[1]), int(m[2])) for m in re.findall(r"^fuzz (\w+): (\d+) runs in \d+ s, exit (\d+)",
                                                                r.stdout, re.MULTILINE)}
    crashes = sorted(p.name for p in tmp_path.glob("*-crash-*")) + sorted(p.name for p in tmp_path.glob("*-timeout-*"))
    detail = r.stdout + r.stderr[-4000:] + (f"\nfinding inputs: {crashes}" if crashes else "")
    assert r.returncode == 0, detail
    assert set(results) == set(HARNESSES), detail
    for name, (runs, rc) in results.items():
        assert rc == 0, f"{name} exited {rc}\n{detail}"
        assert runs == FUZZ_RUNS, f"{name} ran {runs} inputs, not {FUZZ_RUNS}\n{detail}"
