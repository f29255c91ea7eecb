"""The model format: the spec in docs/format.md, the writer and the C reader agree."""
from __future__ import annotations

import re
import struct
import zlib

import numpy as np
import pytest
from conftest import DEFAULT_W2S, REPO

from wav2small import Model, _engine
from wav2small.errors import ModelError, ModelFormatError

DTYPES = {"i8": "int8", "i16": "int16", "u16": "uint16", "i32": "int32", "u32": "uint32"}


def test_spec_table_lists_the_layout():
    """Every tensor of the engine's layout is in the spec's table, in order, with its dtype."""
    text = (REPO / "docs" / "format.md").read_text()
    documented = []
    for names, dtype in re.findall(r"^\| ((?:`[^`]+`(?:, )?)+) \| (i8|i16|u16|i32|u32) \|", text, re.M):
        documented += [(n, DTYPES[dtype]) for n in re.findall(r"`([^`]+)`", names)]
    # with every optional part (the uncertainty head's decide.params, the steadiness's decide.steady)
    config = {**Model().config, "flags": _engine.FLAG_UNCERTAINTY | _engine.FLAG_STEADY, "n_outputs": 7}
    entries, _ = _engine.layout(config)
    # the spec writes conv tensors once, as l{i}.*
    actual = []
    for name, dtype, _, _ in entries:
        key = (re.sub(r"^l\d+\.", "l{i}.", name), dtype)
        if key not in actual:
            actual.append(key)
    assert actual == documented


def test_header_fields_and_checksum():
    data = DEFAULT_W2S.read_bytes()
    magic, version, header_bytes, file_bytes, flags = struct.unpack_from("<IHHII", data)
    assert (magic, version, header_bytes, file_bytes) == (
        _engine.FORMAT_MAGIC, _engine.FORMAT_VERSION, _engine.HEADER_BYTES, len(data))
    # the shipped model carries its uncertainty head, whose decision reads the steadiness too
    assert flags == _engine.FLAG_UNCERTAINTY | _engine.FLAG_STEADY
    assert data[:4] == b"W2SM"
    assert struct.unpack_from("<I", data, len(data) - 4)[0] == zlib.crc32(data[:-4]) == _engine.crc32(data[:-4])
    config = dict(zip(("sample_rate", "n_fft", "hop", "n_mels", "channels", "n_layers", "pool_after",
                       "n_outputs", "out_frac_bits", "mel_weights"), struct.unpack_from("<10i", data, 16)))
    config["flags"] = flags
    assert config == Model().config
    assert _engine.layout(config)[1] + 4 == len(data)


def test_writer_round_trip_through_the_c_reader():
    """Tensors read back by the C parser, re-written, give the same bytes."""
    from training.export import model_bytes
    from training.quantize import QuantizedModel

    m = _engine.Model(DEFAULT_W2S.read_bytes())
    again = model_bytes(QuantizedModel(config=m.config, tensors=m.tensors(), calibration={}))
    assert again == DEFAULT_W2S.read_bytes()


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("field, offset, value", [
    ("flags", 12, 2), ("n_fft", 20, 1000), ("hop", 24, 0), ("channels", 32, 65), ("n_layers", 36, 0),
    ("pool_after", 40, 8), ("n_outputs", 44, 17), ("out_frac_bits", 48, 31), ("file_bytes", 8, 100),
    ("reserved", 56, 1), ("reserved", 60, 1 << 31),   # must stay zero for a later version's use
])
def test_header_values_out_of_range_are_format_errors(field, offset, value):
    data = bytearray(DEFAULT_W2S.read_bytes()[:-4])
    struct.pack_into("<I", data, offset, value)
    if field == "file_bytes":   # the CRC where that length puts it, so the length check itself is reached
        data = data[: value - 4]
    blob = _with_crc(bytes(data))
    with pytest.raises(ModelFormatError):
        _engine.Model(blob)


def test_tensor_values_out_of_range_are_format_errors():
    """A valid checksum does not make bad values acceptable: each broken bound is rejected."""
    m = _engine.Model(DEFAULT_W2S.read_bytes())
    entries = {name: (dtype, offset) for name, dtype, _, offset in _engine.layout(m.config)[0]}
    base = DEFAULT_W2S.read_bytes()[:-4]
    cases = [("l2.shift", "<i", 31), ("l2.mult", "<i", -5), ("l1.bias", "<i", (1 << 30) + 1),
             ("l3.params", "<i", 200), ("vox.exp_lut", "<I", (1 << 30) + 1), ("vox.lin_b", "<i", 1 << 29),
             ("head.params", "<i", 63), ("front.params", "<i", 0), ("window", "<i", (1 << 30) + 1)]
    for name, fmt, value in cases:
        data = bytearray(base)
        struct.pack_into(fmt, data, entries[name][1], value)
        with pytest.raises(ModelFormatError):
            _engine.Model(_with_crc(bytes(data)))


def test_random_corruption_never_crashes():
    """Flipped bytes and truncations anywhere give a ModelError (the CRC catches most; this runs the
    parser on every prefix length too)."""
    data = DEFAULT_W2S.read_bytes()
    rng = np.random.default_rng(0)
    for n in range(0, len(data), 97):
        with pytest.raises(ModelError):
            _engine.Model(data[:n])
    for _ in range(300):
        blob = bytearray(data)
        for i in rng.integers(0, len(data), rng.integers(1, 4)):
            blob[i] ^= int(rng.integers(1, 256))
        with pytest.raises(ModelError):
            _engine.Model(bytes(blob))
