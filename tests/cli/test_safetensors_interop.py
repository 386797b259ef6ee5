"""Our safetensors reader and writer against the Python safetensors package (the oracle):
files Python writes (every dtype, metadata, empty tensors) read back bit-exact through our
reader and writer, and what we write loads in safetensors.torch.load_file."""
import json
import os
import struct
import subprocess

import pytest
import torch
from safetensors.torch import load_file, save_file
from safetensors import safe_open

ROUNDTRIP = os.environ.get("SLA_ST_ROUNDTRIP", "")
pytestmark = pytest.mark.skipif(not ROUNDTRIP, reason="SLA_ST_ROUNDTRIP not set (run through ctest)")


def run(*args):
    return subprocess.run([ROUNDTRIP, *map(str, args)], capture_output=True, text=True)


def python_tensors():
    g = torch.Generator().manual_seed(0)
    return {
        "f64": torch.randn(3, 5, dtype=torch.float64, generator=g),
        "f32": torch.randn(7, dtype=torch.float32, generator=g),
        "f16": torch.randn(2, 3, 4, generator=g).half(),
        "bf16": torch.randn(33, generator=g).bfloat16(),
        "f8": torch.randn(9, generator=g).to(torch.float8_e4m3fn),
        "f8b": torch.randn(4, generator=g).to(torch.float8_e5m2),
        "i64": torch.arange(-5, 5, dtype=torch.int64),
        "i32": torch.arange(6, dtype=torch.int32).reshape(2, 3),
        "i16": torch.arange(3, dtype=torch.int16),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 4),
        "scalar": torch.tensor(3.5),
    }


def test_python_file_round_trips_bit_exact(tmp_path):
    src, dst = tmp_path / "py.safetensors", tmp_path / "ours.safetensors"
    tensors = python_tensors()
    save_file(tensors, src, metadata={"format": "pt", "note": "ünïcode"})
    r = run(src, dst)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["metadata"] == {"format": "pt", "note": "ünïcode"}
    assert {t["name"] for t in seen["tensors"]} == set(tensors)
    back = load_file(dst)
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape
        assert torch.equal(back[name].reshape(-1).view(torch.uint8), t.reshape(-1).view(torch.uint8)), name
    with safe_open(dst, "pt") as f:
        assert f.metadata() == {"format": "pt", "note": "ünïcode"}
    # The header alone, without reading the data.
    h = run(src, "-", "--header-only")
    assert h.returncode == 0, h.stderr
    assert {t["name"]: t["dtype"] for t in json.loads(h.stdout)["tensors"]}["bf16"] == "BF16"


def write_raw(path, header: dict, data: bytes, pad=b""):
    text = json.dumps(header).encode() + pad
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


@pytest.mark.parametrize("header,data,message", [
    ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, "data buffer holds 4"),
    ({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 12, "data buffer holds 12"),
    ({"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "(hole)"),
    ({"x": {"dtype": "X9", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "unsupported dtype"),
    ({"__metadata__": {"k": 3}}, b"", "is not a string"),
])
def test_files_python_refuses_we_refuse(tmp_path, header, data, message):
    p = tmp_path / "bad.safetensors"
    write_raw(p, header, data)
    with pytest.raises(Exception):
        load_file(p)  # the oracle agrees the file is bad
    r = run(p, tmp_path / "out.safetensors")
    assert r.returncode == 1
    assert "E_SAFETENSORS" in r.stderr and message in r.stderr
    assert not (tmp_path / "out.safetensors").exists()


def test_padded_header_python_accepts_we_accept(tmp_path):
    p = tmp_path / "pad.safetensors"
    write_raw(p, {"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, struct.pack("<f", 2.5), pad=b"   ")
    assert load_file(p)["x"].item() == 2.5
    r = run(p, tmp_path / "o.safetensors")
    assert r.returncode == 0, r.stderr
    assert load_file(tmp_path / "o.safetensors")["x"].item() == 2.5
