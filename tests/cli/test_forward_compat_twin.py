"""Forward compatibility beyond the .pt (issue 17, part 2): the safetensors twin's reader reads past
what a newer writer adds exactly as the .pt's reader does (the same W_COMPAT warnings, in verify,
inspect and convert), and `convert` of a file that carries such warnings writes what this toolkit
reads (version 1, known settings and tensors), saying what it did not carry; a real problem still
stops it. Twins are written with the safetensors package, .pt files with torch.save."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import DEFAULT_SETTINGS, run_ckpt, trained_entry

EXTENSION = {"variant": "all", "writer": "test"}


def base_payload():
    return {"settings": dict(DEFAULT_SETTINGS), "state": {"64:bf16": trained_entry(64)}, "version": 1,
            "sla_toolkit": dict(EXTENSION)}


def four_settings(p):
    p["settings"].pop("tie_feature_map_qk")  # SimpleTuner's own test payload


CASES = {
    "version_2": (lambda p: p.__setitem__("version", 2), "version"),
    "no_version": (lambda p: p.pop("version"), "version"),
    "extra_setting": (lambda p: p["settings"].__setitem__("sparsity_schedule", "linear"), "settings/sparsity_schedule"),
    "extra_tensor": (lambda p: p["state"]["64:bf16"].__setitem__("proj_l.scale", torch.ones(64)), "state/64:bf16/proj_l.scale"),
    "four_settings": (four_settings, "settings/tie_feature_map_qk"),
}


def write_pt(folder, payload):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(payload, folder / "sla_attention.pt")
    return folder / "sla_attention.pt"


def write_twin(folder, payload):
    """The twin layout written by hand: tensors '<key>/<name>', settings and version as JSON metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": "sla_attention", "settings": json.dumps(payload["settings"]),
            "sla_toolkit": json.dumps(payload["sla_toolkit"])}
    if "version" in payload:
        meta["version"] = json.dumps(payload["version"])
    tensors = {f"{key}/{name}": t for key, entry in payload["state"].items() for name, t in entry.items()}
    save_file(tensors, str(folder / "sla_attention.safetensors"), metadata=meta)
    return folder / "sla_attention.safetensors"


def schema_warnings(path):
    r = run_ckpt("verify", path, "--json")
    report = json.loads(r.stdout)
    return r.returncode, [(c["where"].split(": ", 1)[1], c["message"]) for c in report["checks"]
                          if c["id"] == "schema" and c["status"] == "warn"]


@pytest.mark.parametrize("name", CASES)
def test_twin_reads_past_what_the_pt_reads_past(tmp_path, name):
    mutate, where = CASES[name]
    payload = base_payload()
    mutate(payload)
    pt, twin = write_pt(tmp_path / "pt", payload), write_twin(tmp_path / "twin", payload)
    code_pt, warn_pt = schema_warnings(pt)
    code_twin, warn_twin = schema_warnings(twin)
    assert code_pt == code_twin == 0
    assert warn_twin == warn_pt and [w for w, _ in warn_twin] == [where]
    assert warn_twin[0][1].startswith("W_COMPAT: ")
    assert run_ckpt("verify", twin, "--strict").returncode == 1  # a warning is not a strict pass

    seen_pt = json.loads(run_ckpt("inspect", pt, "--json").stdout)
    r = run_ckpt("inspect", twin, "--json")
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["problems"] == [] and seen["warnings"] == seen_pt["warnings"]
    assert seen["version"] == seen_pt["version"] and seen["settings"] == seen_pt["settings"]


def test_an_unknown_metadata_key_fails_like_an_unknown_top_level_key(tmp_path):
    twin = write_twin(tmp_path / "twin", base_payload())
    tensors = load_file(str(twin))
    with open(twin, "rb") as f:
        meta = json.loads(f.read(int.from_bytes(f.read(8), "little")))["__metadata__"]
    save_file(tensors, str(twin), metadata=dict(meta, future="1"))
    r = run_ckpt("inspect", twin)
    assert r.returncode == 2 and "unknown __metadata__ key 'future'" in r.stderr
    pt = write_pt(tmp_path / "pt", dict(base_payload(), future=1))
    assert run_ckpt("inspect", pt).returncode == 1  # the .pt: "unexpected top-level key", a problem


@pytest.mark.parametrize("direction", ["pt_to_twin", "twin_to_pt"])
@pytest.mark.parametrize("name", CASES)
def test_convert_carries_what_it_reads_and_names_what_it_drops(tmp_path, name, direction):
    mutate, where = CASES[name]
    payload = base_payload()
    mutate(payload)
    if direction == "pt_to_twin":
        src, out = write_pt(tmp_path / "in", payload), tmp_path / "out" / "sla_attention.safetensors"
    else:
        src, out = write_twin(tmp_path / "in", payload), tmp_path / "out" / "sla_attention.pt"
    out.parent.mkdir()
    r = run_ckpt("convert", src, out, "--json")
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stderr.splitlines() if "W_COMPAT" in line]
    assert len(warned) == 1 and where in warned[0] and "written to OUT as read" in warned[0], r.stderr
    summary = json.loads(r.stdout)
    assert summary["version"] == 1 and [w["where"] for w in summary["warnings"]] == [where]

    # OUT is a clean version-1 file: no warnings, the known tensors bit-exact, the default tie applied.
    code, warnings = schema_warnings(out)
    assert code == 0 and warnings == []
    back = (torch.load(out, weights_only=True)["state"]["64:bf16"] if out.suffix == ".pt" else
            {k.split("/", 1)[1]: v for k, v in load_file(str(out)).items()})
    assert set(back) == {"proj_l.weight", "proj_l.bias"}
    for n in back:
        assert torch.equal(back[n], payload["state"]["64:bf16"][n])
    if out.suffix == ".pt":
        written = torch.load(out, weights_only=True)
        assert written["version"] == 1 and written["sla_toolkit"] == EXTENSION
        assert written["settings"] == DEFAULT_SETTINGS  # unknown settings dropped, tie_feature_map_qk's default


def test_convert_still_refuses_a_real_problem_beside_a_warning(tmp_path):
    payload = base_payload()
    payload["version"] = 2
    payload["state"]["64:bf16"]["proj_l.bias"] = torch.zeros(63)
    src = write_pt(tmp_path / "in", payload)
    out = tmp_path / "sla_attention.safetensors"
    r = run_ckpt("convert", src, out)
    assert r.returncode == 1 and "refusing to convert" in r.stderr and "proj_l.bias" in r.stderr
    # one line: the real problem, and how many more (the version warning) verify lists
    assert len(r.stderr.strip().splitlines()) == 1 and "(1 more problem: sla-ckpt verify" in r.stderr, r.stderr
    assert not out.exists()
