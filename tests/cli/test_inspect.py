"""sla-ckpt inspect on the safetensors twin: the same report (text and --json) as for the .pt holding
the same payload. Both files are written by Python (torch.save as SimpleTuner does, safetensors'
own save_file for the twin); torch computes the statistics the report must show."""
import json

import pytest
import torch
from safetensors.torch import save_file

from conftest import DEFAULT_SETTINGS, run_ckpt, trained_entry, write_sla_pt

EXTENSION = {"variant": "complement", "writer": "sla-toolkit test", "regenerated": True}


def write_pair(folder, state, extension=EXTENSION):
    """The .pt and its twin (sla-format.md section 2) with one payload."""
    folder.mkdir(parents=True, exist_ok=True)
    write_sla_pt(folder / "sla_attention.pt", state=state, extension=extension)
    metadata = {"format": "sla_attention", "version": "1", "settings": json.dumps(DEFAULT_SETTINGS)}
    if extension is not None:
        metadata["sla_toolkit"] = json.dumps(extension)
    save_file({f"{key}/{name}": t for key, entry in state.items() for name, t in entry.items()},
              str(folder / "sla_attention.safetensors"), metadata=metadata)
    return folder / "sla_attention.pt", folder / "sla_attention.safetensors"


def inspect_json(path):
    r = run_ckpt("inspect", path, "--json")
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


def test_twin_json_matches_the_pt(tmp_path):
    state = {"64:bf16": trained_entry(64), "128:bf16": trained_entry(128, seed=3)}
    pt, twin = write_pair(tmp_path, state)
    rc_pt, a = inspect_json(pt)
    rc_twin, b = inspect_json(twin)
    assert rc_pt == rc_twin == 0
    assert a["format"] == "torch.save" and b["format"] == "safetensors"
    assert b["path"] == str(twin)
    for d in (a, b):
        del d["path"], d["format"]
        # safetensors' save_file orders tensors its own way; the twin's entries come in its file order
        d["entries"].sort(key=lambda e: e["key"])
    assert a == b
    # Independent oracle: what the report says the tensors hold, computed by torch.
    assert b["version"] == 1 and b["settings"] == DEFAULT_SETTINGS and b["problems"] == []
    assert b["variant"] == {"value": "complement", "recorded": True} and b["regenerated"] is True
    assert [e["key"] for e in b["entries"]] == sorted(state)
    for e in b["entries"]:
        assert e["head_dim"] == int(e["key"].split(":")[0]) and e["dtype"] == "bf16"
        for t in e["tensors"]:
            ref = state[e["key"]][t["name"]]
            assert t["dtype"] == "float32" and t["shape"] == list(ref.shape) and t["finite"] is True
            assert t["min"] == ref.min().item() and t["max"] == ref.max().item()
            assert t["abs_max"] == ref.abs().max().item()
            assert t["sum"] == pytest.approx(ref.double().sum().item(), abs=1e-4)


def test_twin_text_matches_the_pt(tmp_path):
    pt, twin = write_pair(tmp_path, {"64:fp16": trained_entry(64)}, extension=None)
    a, b = run_ckpt("inspect", pt), run_ckpt("inspect", twin)
    assert a.returncode == b.returncode == 0, b.stderr
    a_lines, b_lines = a.stdout.splitlines(), b.stdout.splitlines()
    assert a_lines[0].startswith(f"{pt}: torch.save archive")
    assert b_lines[0] == f"{twin}: safetensors twin"
    assert a_lines[1:] == b_lines[1:]
    assert "variant: unknown" in b.stdout or "variant: all" in b.stdout
    assert "problems: none" in b.stdout


def test_twin_problems_match_the_pt(tmp_path):
    entry = trained_entry(32)
    entry["proj_l.bias"][3] = float("nan")
    entry["proj_l.bias"][5] = float("inf")
    pt, twin = write_pair(tmp_path, {"32:bf16": entry})
    rc_pt, a = inspect_json(pt)
    rc_twin, b = inspect_json(twin)
    assert rc_pt == rc_twin == 1
    assert a["problems"] == b["problems"]
    assert [(p["code"], p["where"]) for p in b["problems"]] == [("E_VALUES", "state/32:bf16/proj_l.bias")]
    assert "2 of 32 values" in b["problems"][0]["message"]
    bias = next(t for t in b["entries"][0]["tensors"] if t["name"] == "proj_l.bias")
    assert bias["finite"] is False


def test_not_a_twin_is_unreadable(tmp_path):
    save_file({"w": torch.zeros(4)}, str(tmp_path / "plain.safetensors"))
    r = run_ckpt("inspect", tmp_path / "plain.safetensors")
    assert r.returncode == 2 and "sla_attention" in r.stderr
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 16)
    assert run_ckpt("inspect", tmp_path / "junk.safetensors").returncode == 2
