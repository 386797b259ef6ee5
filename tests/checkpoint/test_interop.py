"""Interop of our torch.save reader/writer with Python torch (the oracle).

Python torch.save -> our reader (pt-dump, sla-ckpt inspect) and our writer (pt-write) -> Python
torch.load(weights_only=True), with SimpleTuner-shaped payloads, strided views, shared storages,
bf16/fp16 data, pickle protocols 2 and 4, files saved to a path and to a buffer.
"""
import collections
import io
import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

BUILD = Path(os.environ.get("SLA_BUILD_DIR", Path(__file__).resolve().parents[2] / "build"))
PT_DUMP = os.environ.get("SLA_PT_DUMP", str(BUILD / "tests/checkpoint/pt-dump"))
PT_WRITE = os.environ.get("SLA_PT_WRITE", str(BUILD / "tests/checkpoint/pt-write"))
SLA_CKPT = os.environ.get("SLA_CKPT", str(BUILD / "tools/sla_ckpt/sla-ckpt"))

SETTINGS = {"topk": 0.2, "feature_map": "softmax", "blkq": 64, "blkk": 64, "tie_feature_map_qk": True}


def simpletuner_payload(dims=((128, "bf16"), (64, "fp16"), (64, "bf16")), seed=0):
    """What SimpleTuner's _serialize_state builds: plain dicts of detached CPU float32 tensors."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for d, token in dims:
        module = torch.nn.Module()  # stands in for SparseLinearAttention: its only parameters are proj_l's
        module.proj_l = torch.nn.Linear(d, d)
        with torch.no_grad():
            module.proj_l.weight.copy_(torch.randn(d, d, generator=gen))
            module.proj_l.bias.copy_(torch.randn(d, generator=gen))
        state[f"{d}:{token}"] = {name: t.detach().cpu() for name, t in module.state_dict().items()}
    return {"settings": dict(SETTINGS), "state": state, "version": 1}


def generic_payload():
    """Everything the reader must reproduce: views, sharing, dtypes, python values."""
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7
    return {
        "base": base,
        "transposed": base.t(),                        # strided view, same storage
        "window": base[1:3, ::2],                      # offset + strides
        "row": base[2],                                # offset view
        "bf16": (torch.randn(3, 5, generator=torch.Generator().manual_seed(1)) * 10).bfloat16(),
        "fp16": torch.tensor([1.5, -2.25, 65504.0, 6e-8], dtype=torch.float16),
        "int64": torch.tensor([-(2**40), 0, 2**62]),
        "bool": torch.tensor([True, False, True]),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8),
        "float64": torch.tensor([math.pi, -0.0]),
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 3),
        "nonfinite": torch.tensor([float("nan"), float("inf"), -float("inf")]),
        "python": [1, -1, 2**40, -(2**40), 0.2, None, True, False, "caf\u00e9", ("t", 1), []],
        "state_dict": torch.nn.Linear(2, 3).state_dict(),   # OrderedDict + _metadata BUILD
        "nested": {"a": {"b": {"c": [1, {"d": 2.5}]}}},
    }


# ---- the tagged JSON that pt-dump prints, computed from Python objects ----------------------------

def _number(x):
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def tagged(obj, storages):
    """storages: untyped storage data_ptr -> canonical index, in first-seen order."""
    if obj is None:
        return {"t": "none"}
    if isinstance(obj, bool):
        return {"t": "bool", "v": obj}
    if isinstance(obj, int):
        return {"t": "int", "v": obj}
    if isinstance(obj, float):
        return {"t": "float", "v": _number(obj)}
    if isinstance(obj, str):
        return {"t": "str", "v": obj}
    if isinstance(obj, (list, tuple)):
        return {"t": "list" if isinstance(obj, list) else "tuple", "v": [tagged(x, storages) for x in obj]}
    if isinstance(obj, dict):
        return {"t": "dict", "ordered": isinstance(obj, collections.OrderedDict),
                "v": [[tagged(k, storages), tagged(v, storages)] for k, v in obj.items()]}
    if isinstance(obj, torch.Tensor):
        s = obj.untyped_storage()
        key = storages.setdefault(s.data_ptr(), str(len(storages)))
        values = obj.double().flatten().tolist() if obj.dtype != torch.bool else [float(x) for x in obj.flatten().tolist()]
        return {"t": "tensor", "dtype": str(obj.dtype).replace("torch.", ""), "shape": list(obj.shape),
                "strides": list(obj.stride()), "offset": obj.storage_offset(), "storage": key,
                "storage_numel": s.nbytes() // obj.element_size(), "requires_grad": obj.requires_grad,
                "values": [_number(v) for v in values]}
    raise TypeError(type(obj))


def canonical_storages(node, names):
    """Renames pt-dump's storage keys to first-seen order (what tagged() produces)."""
    if isinstance(node, dict):
        if node.get("t") == "tensor":
            node["storage"] = names.setdefault(node["storage"], str(len(names)))
        for v in node.values():
            canonical_storages(v, names)
    elif isinstance(node, list):
        for v in node:
            canonical_storages(v, names)
    return node


def pt_dump(path):
    out = subprocess.run([PT_DUMP, str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def expected_tree(obj):
    """The tree as torch.load gives it back (so strings and storages are what the file holds)."""
    return tagged(obj, {})


# ---- Python torch.save -> our reader -------------------------------------------------------------

@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("target", ["path", "buffer"])
@pytest.mark.parametrize("payload", ["simpletuner", "generic"])
def test_reader_matches_torch(tmp_path, protocol, target, payload):
    obj = simpletuner_payload(dims=((16, "bf16"), (8, "fp16"), (8, "bf16"))) if payload == "simpletuner" else generic_payload()
    path = tmp_path / "sla_attention.pt"
    if target == "path":
        torch.save(obj, path, pickle_protocol=protocol)
    else:
        buffer = io.BytesIO()
        torch.save(obj, buffer, pickle_protocol=protocol)
        path.write_bytes(buffer.getvalue())
    ours = pt_dump(path)
    assert ours["prefix"] == ("sla_attention" if target == "path" else "archive")
    assert ours["version"] == 3 and ours["byteorder"] == "little"
    # torch's own weights_only unpickler refuses FRAME (protocol >= 4); these files are ours.
    loaded = torch.load(path, weights_only=protocol <= 3)
    assert canonical_storages(ours["root"], {}) == expected_tree(loaded)
    # and torch.load gave back what was saved
    assert expected_tree(loaded) == expected_tree(obj)


def test_reader_keeps_storage_sharing(tmp_path):
    base = torch.arange(10.0)
    torch.save({"a": base[:5], "b": base[5:], "c": base.clone()}, tmp_path / "s.pt")
    root = pt_dump(tmp_path / "s.pt")["root"]["v"]
    a, b, c = (entry[1] for entry in root)
    assert a["storage"] == b["storage"] != c["storage"]
    assert (a["offset"], b["offset"], a["storage_numel"]) == (0, 5, 10)


def test_reader_accepts_files_without_the_newer_records(tmp_path):
    """Older torch versions wrote neither .format_version, .storage_alignment, byteorder nor the id."""
    path = tmp_path / "sla_attention.pt"
    torch.save(simpletuner_payload(dims=((4, "bf16"),)), path)
    old = tmp_path / "old.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            if info.filename.split("/", 1)[1] in (".format_version", ".storage_alignment", "byteorder", ".data/serialization_id"):
                continue
            dst.writestr(info.filename, src.read(info.filename))
    # Python's zipfile does not align records: our reader warns, torch reads it too.
    assert canonical_storages(pt_dump(old)["root"], {}) == expected_tree(torch.load(old, weights_only=True))
    out = subprocess.run([SLA_CKPT, "inspect", str(old)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "not 64-byte aligned" in out.stderr
    assert out.stderr.count("not 64-byte aligned") == 1 and "more records)" in out.stderr, out.stderr  # one line


# ---- sla-ckpt inspect ------------------------------------------------------------------------------

def inspect(path, *extra):
    return subprocess.run([SLA_CKPT, "inspect", str(path), *extra], capture_output=True, text=True)


def test_inspect_json_matches_torch(tmp_path):
    obj = simpletuner_payload()
    path = tmp_path / "sla_attention.pt"
    torch.save(obj, path)
    out = inspect(path, "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert list(report) == ["path", "format", "version", "settings", "variant", "entries", "problems", "warnings",
                            "regenerated"]
    assert report["version"] == 1
    assert report["settings"] == SETTINGS
    assert report["variant"] == {"value": "all", "recorded": False}
    assert report["problems"] == [] and report["warnings"] == []
    assert [e["key"] for e in report["entries"]] == list(obj["state"])
    for entry in report["entries"]:
        head_dim, token = entry["key"].split(":")
        assert (entry["head_dim"], entry["dtype"]) == (int(head_dim), token)
        tensors = obj["state"][entry["key"]]
        assert [t["name"] for t in entry["tensors"]] == list(tensors)
        for t in entry["tensors"]:
            ref = tensors[t["name"]]
            assert t["dtype"] == "float32" and t["shape"] == list(ref.shape) and t["finite"] is True
            assert t["min"] == ref.min().item() and t["max"] == ref.max().item()
            assert t["abs_max"] == ref.abs().max().item()
            assert t["sum"] == pytest.approx(ref.double().sum().item(), abs=1e-6 * ref.double().abs().sum().item())


def test_inspect_text_and_recorded_extension(tmp_path):
    obj = simpletuner_payload(dims=((8, "bf16"),))
    obj["sla_toolkit"] = {"variant": "complement", "writer": "sla-toolkit 0.1.0", "regenerated": True}
    path = tmp_path / "sla_attention.pt"
    torch.save(obj, path)
    out = inspect(path)
    assert out.returncode == 0, out.stderr
    assert "variant: complement (recorded)" in out.stdout
    assert "regenerated, not trained with the model" in out.stdout
    assert "proj_l.weight  float32   [8, 8]" in out.stdout
    report = json.loads(inspect(path, "--json").stdout)
    assert report["variant"] == {"value": "complement", "recorded": True}
    plain = tmp_path / "plain.pt"
    torch.save(simpletuner_payload(dims=((8, "bf16"),)), plain)
    assert "variant: all (assumed" in inspect(plain).stdout


def saved_mutated_payload(tmp_path, mutate):
    """SimpleTuner's payload (one 8:bf16 entry, blocks 64/64) changed by `mutate`, saved by torch.save."""
    obj = simpletuner_payload(dims=((8, "bf16"),))
    obj["settings"]["blkq"] = 64
    mutate(obj)
    path = tmp_path / "sla_attention.pt"
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("mutate, problems", [
    (lambda p: p["settings"].update(topk=1.5), [("E_SCHEMA", "settings/topk")]),
    (lambda p: p["settings"].update(blkq=32, feature_map="gelu"), [("E_SCHEMA", "settings/feature_map")]),
    (lambda p: p["state"]["8:bf16"].update({"proj_l.weight": p["state"]["8:bf16"]["proj_l.weight"].bfloat16()}),
     [("E_SCHEMA", "state/8:bf16/proj_l.weight")]),
    (lambda p: p["state"]["8:bf16"]["proj_l.bias"].__setitem__(3, float("nan")), [("E_VALUES", "state/8:bf16/proj_l.bias")]),
    (lambda p: p["state"]["8:bf16"].update({"proj_l.bias": torch.zeros(8, requires_grad=True)}), [("E_VALUES", "state/8:bf16/proj_l.bias")]),
    (lambda p: p["state"].update({"oops": p["state"]["8:bf16"]}), [("E_SCHEMA", "state/oops")]),
    (lambda p: p["state"].update({"4:bf16": p["state"]["8:bf16"]}), [("E_SCHEMA", "state/4:bf16/proj_l.weight"), ("E_SCHEMA", "state/4:bf16/proj_l.bias")]),
    (lambda p: p["state"]["8:bf16"].pop("proj_l.bias"), [("E_SCHEMA", "state/8:bf16/proj_l.bias")]),
    (lambda p: p.pop("settings"), [("E_SCHEMA", "settings")]),
])
def test_inspect_reports_schema_problems(tmp_path, mutate, problems):
    path = saved_mutated_payload(tmp_path, mutate)
    out = inspect(path, "--json")
    assert out.returncode == 1, out.stderr
    found = [(p["code"], p["where"]) for p in json.loads(out.stdout)["problems"]]
    for problem in problems:
        assert problem in found
    human = inspect(path)
    assert human.returncode == 1
    assert f"{problems[0][0]}: " in human.stdout


def test_inspect_non_sla_payloads(tmp_path):
    torch.save(torch.nn.Linear(3, 3).state_dict(), tmp_path / "sd.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    for name in ("sd.pt", "list.pt"):
        out = inspect(tmp_path / name, "--json")
        assert out.returncode == 1
        assert {p["code"] for p in json.loads(out.stdout)["problems"]} == {"E_SCHEMA"}


@pytest.mark.parametrize("make, code", [
    (lambda p: p.write_bytes(b"not a checkpoint at all, just some text"), "E_NOT_ZIP"),
    (lambda p: p.write_bytes(b""), "E_NOT_ZIP"),
    (lambda p: torch.save({"x": torch.ones(2)}, p, _use_new_zipfile_serialization=False), "E_LEGACY_FORMAT"),
    (lambda p: torch.save({"w": torch.nn.Parameter(torch.ones(2))}, p), "E_GLOBAL"),
    (lambda p: torch.save({"w": torch.ones(4).to_sparse()}, p), "E_GLOBAL"),
    (lambda p: torch.save({"w": torch.ones(2).to(torch.float8_e4m3fn)}, p), "E_GLOBAL"),
    (lambda p: (torch.save({"w": torch.ones(2)}, p), p.write_bytes(p.read_bytes()[:-30])), "E_TRUNCATED"),
])
def test_inspect_unreadable_files(tmp_path, make, code):
    path = tmp_path / "sla_attention.pt"
    make(path)
    before = path.read_bytes()
    out = inspect(path, "--json")
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sla-ckpt inspect: {code}: "), out.stderr
    assert path.read_bytes() == before  # never modified


def test_inspect_bad_arguments(tmp_path):
    assert inspect(tmp_path / "missing.pt").returncode == 2
    assert subprocess.run([SLA_CKPT, "inspect"], capture_output=True).returncode == 2
    assert subprocess.run([SLA_CKPT, "inspect", "--no-such-flag", "x"], capture_output=True).returncode == 2


# ---- our writer -> Python torch.load ---------------------------------------------------------------

def sla_spec(payload, extension=None):
    spec = {"settings": payload["settings"], "version": payload["version"],
            "entries": [{"key": k, "weight": v["proj_l.weight"].flatten().tolist(), "bias": v["proj_l.bias"].flatten().tolist()}
                        for k, v in payload["state"].items()]}
    if extension is not None:
        spec["extension"] = extension
    return spec


def pt_write(mode, spec, out, tmp_path):
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    result = subprocess.run([PT_WRITE, mode, str(spec_path), str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_writer_output_loads_with_weights_only(tmp_path):
    payload = simpletuner_payload()
    extension = {"variant": "all", "writer": "sla-toolkit 0.1.0", "regenerated": False, "steps": 7, "lr": 1e-4}
    out = tmp_path / "sla_attention.pt"
    pt_write("sla", sla_spec(payload, extension), out, tmp_path)
    loaded = torch.load(out, weights_only=True)
    assert type(loaded) is dict and list(loaded) == ["settings", "state", "version", "sla_toolkit"]
    assert loaded["settings"] == SETTINGS
    assert [type(loaded["settings"][k]) for k in SETTINGS] == [float, str, int, int, bool]
    assert type(loaded["version"]) is int and loaded["version"] == 1
    assert loaded["sla_toolkit"] == extension
    assert list(loaded["state"]) == list(payload["state"])
    for key, tensors in payload["state"].items():
        got = loaded["state"][key]
        assert type(got) is dict and list(got) == ["proj_l.weight", "proj_l.bias"]
        for name, ref in tensors.items():
            t = got[name]
            assert t.dtype == torch.float32 and t.is_contiguous() and not t.requires_grad
            assert torch.equal(t, ref)
    # without an extension the file holds SimpleTuner's three keys only
    plain = tmp_path / "plain" / "sla_attention.pt"
    plain.parent.mkdir()
    pt_write("sla", sla_spec(payload), plain, tmp_path)
    assert list(torch.load(plain, weights_only=True)) == ["settings", "state", "version"]


def test_writer_output_passes_torch_serialization_debug(tmp_path):
    out = tmp_path / "sla_attention.pt"
    pt_write("sla", sla_spec(simpletuner_payload()), out, tmp_path)
    script = (
        "import sys, torch\n"
        "from torch.utils.serialization import config\n"
        "config.load.calculate_storage_offsets = True\n"
        "a = torch.load(sys.argv[1], weights_only=True)\n"
        "b = torch.load(sys.argv[1], weights_only=True, mmap=True)\n"
        "assert all(torch.equal(a['state'][k][n], b['state'][k][n]) for k in a['state'] for n in a['state'][k])\n"
    )
    env = dict(os.environ, TORCH_SERIALIZATION_DEBUG="1")
    result = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


def test_writer_is_byte_identical_to_torch_save(tmp_path):
    """torch.save of what torch.load gives back: same bytes, except the serialization id (a c10 hash)."""
    ours = tmp_path / "ours" / "sla_attention.pt"
    theirs = tmp_path / "theirs" / "sla_attention.pt"
    ours.parent.mkdir()
    theirs.parent.mkdir()
    pt_write("sla", sla_spec(simpletuner_payload(), {"variant": "all"}), ours, tmp_path)
    torch.save(torch.load(ours, weights_only=True), theirs)
    a, b = bytearray(ours.read_bytes()), theirs.read_bytes()
    assert len(a) == len(b)
    with zipfile.ZipFile(ours) as za, zipfile.ZipFile(theirs) as zb:
        name = "sla_attention/.data/serialization_id"
        id_a, id_b = za.read(name), zb.read(name)
        crc_a, crc_b = za.getinfo(name).CRC, zb.getinfo(name).CRC
        assert [i.filename for i in za.infolist()] == [i.filename for i in zb.infolist()]
    a = a.replace(id_a, id_b).replace(crc_a.to_bytes(4, "little"), crc_b.to_bytes(4, "little"))
    assert bytes(a) == b


def _tree_spec(obj, prefix):
    """pt-write's tree spec for a Python object: storages by identity, tensors as views of them."""
    storages = {}

    def storage_key(t):
        s = t.untyped_storage()
        key = str(len(storages)) if s.data_ptr() not in {v[0] for v in storages.values()} else None
        for k, (ptr, _) in storages.items():
            if ptr == s.data_ptr():
                return k
        whole = torch.empty(0, dtype=t.dtype).set_(s, 0, (s.nbytes() // t.element_size(),), (1,))
        if t.element_size() == 2:
            content = {"dtype": str(t.dtype)[6:], "bits": (whole.view(torch.int16).int() & 0xFFFF).tolist()}
        else:
            content = {"dtype": str(t.dtype)[6:], "values": [_number(v) for v in whole.double().tolist()]}
        storages[key] = (s.data_ptr(), content)
        return key

    def node(x):
        if isinstance(x, torch.Tensor):
            return {"t": "tensor", "storage": storage_key(x), "shape": list(x.shape), "strides": list(x.stride()),
                    "offset": x.storage_offset(), "requires_grad": x.requires_grad}
        if isinstance(x, dict):
            return {"t": "dict", "ordered": isinstance(x, collections.OrderedDict), "v": [[node(k), node(v)] for k, v in x.items()]}
        if isinstance(x, (list, tuple)):
            return {"t": "list" if isinstance(x, list) else "tuple", "v": [node(v) for v in x]}
        return tagged(x, {})

    root = node(obj)
    return {"prefix": prefix, "storages": {k: v[1] for k, v in storages.items()}, "root": root}


def test_generic_writer_round_trips_through_torch(tmp_path):
    obj = generic_payload()
    obj.pop("state_dict")  # its _metadata is dropped by design; compared separately below
    obj["int64"] = torch.tensor([-(2**40), 0, 2**50])  # pt-write passes storage values through doubles
    out = tmp_path / "generic.pt"
    pt_write("tree", _tree_spec(obj, "generic"), out, tmp_path)
    loaded = torch.load(out, weights_only=True)
    assert expected_tree(loaded) == expected_tree(obj)
    assert loaded["transposed"].untyped_storage().data_ptr() == loaded["base"].untyped_storage().data_ptr()
    assert loaded["window"].untyped_storage().data_ptr() == loaded["base"].untyped_storage().data_ptr()
    # our writer -> our reader
    assert canonical_storages(pt_dump(out)["root"], {}) == expected_tree(obj)

    sd = collections.OrderedDict(w=torch.ones(2))
    pt_write("tree", _tree_spec({"sd": sd}, "archive"), tmp_path / "sd.pt", tmp_path)
    assert type(torch.load(tmp_path / "sd.pt", weights_only=True)["sd"]) is collections.OrderedDict


def test_writer_output_reads_back_in_our_reader(tmp_path):
    payload = simpletuner_payload(dims=((4, "bf16"), (2, "fp16")))
    out = tmp_path / "sla_attention.pt"
    pt_write("sla", sla_spec(payload), out, tmp_path)
    assert canonical_storages(pt_dump(out)["root"], {}) == expected_tree(payload)
    assert inspect(out).returncode == 0


def test_writer_refuses_invalid_payload_and_keeps_target(tmp_path):
    out = tmp_path / "sla_attention.pt"
    out.write_bytes(b"previous")
    spec = sla_spec(simpletuner_payload(dims=((4, "bf16"),)))
    spec["settings"]["topk"] = 2.0
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    result = subprocess.run([PT_WRITE, "sla", str(tmp_path / "spec.json"), str(out)], capture_output=True, text=True)
    assert result.returncode == 2 and "E_SCHEMA" in result.stderr
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sla_attention.pt", "spec.json"]


# Forward compatibility (issue 17): what SimpleTuner reads without complaint is a warning, not a problem.
@pytest.mark.parametrize("mutate, where", [
    (lambda p: p["settings"].update(extra=1), "settings/extra"),
    (lambda p: p.update(version=2), "version"),
])
def test_inspect_reports_forward_compat_warnings(tmp_path, mutate, where):
    path = saved_mutated_payload(tmp_path, mutate)
    out = inspect(path, "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["problems"] == [] and [(w["code"], w["where"]) for w in report["warnings"]] == [("W_COMPAT", where)]
    human = inspect(path)
    assert human.returncode == 0 and "warning: W_COMPAT: " in human.stdout
