"""sla-ckpt convert: .pt <-> .safetensors bit-exact both ways, checked with Python torch.load
(weights_only=True) and safetensors.torch.load_file as oracles; IN never modified; OUT replaced
only with --force."""
import hashlib
import json
import resource
import subprocess

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from conftest import CKPT, DEFAULT_SETTINGS, run_ckpt, trained_entry, write_sla_pt


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bits(t):
    return t.contiguous().view(torch.int32)


def assert_same_payload(a, b):
    assert a["settings"] == b["settings"] and a["version"] == b["version"]
    assert a.get("sla_toolkit") == b.get("sla_toolkit")
    assert list(a["state"]) == list(b["state"])
    for key in a["state"]:
        for name in ("proj_l.weight", "proj_l.bias"):
            assert torch.equal(bits(a["state"][key][name]), bits(b["state"][key][name])), (key, name)


def test_pt_to_twin_to_pt_is_bit_exact(tmp_path):
    state = {"128:bf16": trained_entry(128), "64:fp16": trained_entry(64)}
    state["64:fp16"]["proj_l.weight"][0, 0] = -0.0
    state["64:fp16"]["proj_l.weight"][0, 1] = 1e-45  # a denormal survives
    ext = {"variant": "complement", "writer": "test 1.0", "steps": 12}
    settings = dict(DEFAULT_SETTINGS, topk=0.15, tie_feature_map_qk=False)
    original = write_sla_pt(tmp_path / "sla_attention.pt", state=state, settings=settings, extension=ext)
    before = digest(tmp_path / "sla_attention.pt")

    r = run_ckpt("convert", tmp_path / "sla_attention.pt", tmp_path / "sla_attention.safetensors", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["entries"] == ["128:bf16", "64:fp16"] and summary["format"] == "safetensors"
    assert digest(tmp_path / "sla_attention.pt") == before  # IN untouched

    twin = load_file(tmp_path / "sla_attention.safetensors")
    assert set(twin) == {"128:bf16/proj_l.weight", "128:bf16/proj_l.bias", "64:fp16/proj_l.weight", "64:fp16/proj_l.bias"}
    for key in state:
        for name in ("proj_l.weight", "proj_l.bias"):
            assert torch.equal(bits(twin[f"{key}/{name}"]), bits(state[key][name]))
    with safe_open(tmp_path / "sla_attention.safetensors", "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "sla_attention" and meta["version"] == "1"
    assert json.loads(meta["settings"]) == settings and json.loads(meta["sla_toolkit"]) == ext

    back_dir = tmp_path / "back"
    back_dir.mkdir()
    r = run_ckpt("convert", tmp_path / "sla_attention.safetensors", back_dir / "sla_attention.pt")
    assert r.returncode == 0, r.stderr
    assert_same_payload(original, torch.load(back_dir / "sla_attention.pt", weights_only=True))


def test_python_written_twin_converts_to_pt(tmp_path):
    entry = trained_entry(32)
    save_file({f"32:bf16/{k}": v for k, v in entry.items()}, str(tmp_path / "t.safetensors"),
              metadata={"format": "sla_attention", "version": "1", "settings": json.dumps(DEFAULT_SETTINGS)})
    r = run_ckpt("convert", tmp_path / "t.safetensors", tmp_path / "sla_attention.pt")
    assert r.returncode == 0, r.stderr
    loaded = torch.load(tmp_path / "sla_attention.pt", weights_only=True)
    assert loaded["settings"] == DEFAULT_SETTINGS and loaded["version"] == 1 and "sla_toolkit" not in loaded
    for k, v in entry.items():
        assert torch.equal(bits(loaded["state"]["32:bf16"][k]), bits(v))


def test_refuses_to_overwrite_without_force(tmp_path):
    write_sla_pt(tmp_path / "sla_attention.pt")
    out = tmp_path / "sla_attention.safetensors"
    out.write_bytes(b"keep me")
    r = run_ckpt("convert", tmp_path / "sla_attention.pt", out)
    assert r.returncode == 2 and "--force" in r.stderr
    assert out.read_bytes() == b"keep me"
    r = run_ckpt("convert", tmp_path / "sla_attention.pt", out, "--force")
    assert r.returncode == 0, r.stderr
    assert "64:bf16/proj_l.weight" in load_file(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sla_attention.pt", "sla_attention.safetensors"]


def test_bad_inputs_and_arguments(tmp_path):
    write_sla_pt(tmp_path / "sla_attention.pt")
    assert run_ckpt("convert", tmp_path / "sla_attention.pt", tmp_path / "x.pt").returncode == 2
    assert run_ckpt("convert", tmp_path / "missing.pt", tmp_path / "x.safetensors").returncode == 2
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not a zip")
    r = run_ckpt("convert", tmp_path / "junk.pt", tmp_path / "j.safetensors")
    assert r.returncode == 2 and "E_" in r.stderr
    assert not (tmp_path / "j.safetensors").exists()
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    r = run_ckpt("convert", tmp_path / "plain.safetensors", tmp_path / "p.pt")
    assert r.returncode == 2 and "format" in r.stderr
    assert not (tmp_path / "p.pt").exists()


def test_help_has_an_example():
    r = run_ckpt("convert", "--help")
    assert r.returncode == 0 and "Example:" in r.stdout


def test_write_past_the_file_size_limit_fails_cleanly(tmp_path):
    # Under `ulimit -f` the kernel sends SIGXFSZ, whose default action would kill the tool with
    # its temp file left in OUT's folder: the write must fail with E_WRITE and leave nothing.
    state = {"128:bf16": trained_entry(128)}
    write_sla_pt(tmp_path / "sla_attention.pt", state=state)
    out = tmp_path / "out"
    out.mkdir()

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    r = subprocess.run([CKPT, "convert", tmp_path / "sla_attention.pt", out / "sla_attention.safetensors"],
                       capture_output=True, text=True, timeout=300, preexec_fn=limit_file_size)  # SIGXFSZ default
    assert r.returncode == 2 and "E_WRITE" in r.stderr and "File too large" in r.stderr, (r.returncode, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1
    assert list(out.iterdir()) == []
