"""sla-ckpt regenerate: plan, --dry-run, refusal without --force, and (when the LibTorch executable
is built) the one-step rebuild of sla_attention.pt whose result passes verify and loads in Python
torch.load(weights_only=True); with --calibration the error after the step is lower than before,
and the written projection lowers the MSE against dense attention when recomputed in Python; for a
checkpoint of the example DiT, `sla-dit-example --regenerate` takes one real SLA-only training step
after which the example resumes."""
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import CKPT, run_ckpt, simpletuner_checkpoint, statuses, verify_json, write_sla_pt, write_transformer

REGEN = os.environ.get("SLA_CKPT_REGENERATE", "")
needs_torch_exe = pytest.mark.skipif(not REGEN, reason="sla-ckpt-regenerate not built (SLA_WITH_TORCH=OFF)")
DIT_EXAMPLE = os.environ.get("SLA_DIT_EXAMPLE", "")
needs_dit_example = pytest.mark.skipif(not (REGEN and DIT_EXAMPLE), reason="sla-dit-example not built")


def foreign_model(tmp_path, head_dim=32):
    out = tmp_path / "foreign"
    write_transformer(out, head_dim=head_dim, heads=2, dtype=torch.float16)
    return out


def plan(folder, *flags):
    r = run_ckpt("regenerate", folder, "--dry-run", "--json", *flags)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_plan_from_model_config_and_weights(tmp_path):
    out = foreign_model(tmp_path)
    p = plan(out)
    assert [e["key"] for e in p["entries"]] == ["32:fp16"]
    assert p["settings"]["blkq"] == 64 and p["settings_source"] == "defaults"
    assert p["inputs"] == "random normal"
    assert not (out / "sla_attention.pt").exists()  # dry run writes nothing
    assert sorted(x.name for x in out.iterdir()) == ["transformer"]


def test_plan_flags_and_training_config(tmp_path):
    out = foreign_model(tmp_path)
    p = plan(out, "--head-dim", "64", "--head-dim", "128", "--dtype", "bf16", "--sla-config",
             "{'topk': 0.1, 'blkq': 128, 'tie_feature_map_qk': False}")
    assert [e["key"] for e in p["entries"]] == ["64:bf16", "128:bf16"]
    assert p["settings"]["topk"] == 0.1 and p["settings"]["tie_feature_map_qk"] is False
    (tmp_path / "config.json").write_text(json.dumps({"--attention_mechanism": "sla",
                                                      "--sla_config": "{'topk': 0.3, 'blkk': 32}"}))
    p = plan(out)
    assert p["settings"]["topk"] == 0.3 and p["settings"]["blkk"] == 32
    assert p["settings_source"] == str(tmp_path / "config.json")


def test_plan_names_a_dangling_link_it_replaces(tmp_path):
    out = foreign_model(tmp_path)
    assert "replaces" not in plan(out)
    (out / "sla_attention.pt").symlink_to(out / "blobs" / "missing")
    assert plan(out)["replaces"] == "an unreadable or invalid sla_attention.pt"


def test_plan_json_of_a_folder_whose_name_is_not_utf8(tmp_path):
    # Linux names are bytes: the JSON shows U+FFFD for what is not UTF-8, it does not fail.
    out = foreign_model(tmp_path)
    odd = os.path.join(os.fsencode(tmp_path), b"run\xff")
    os.rename(os.fsencode(out), odd)
    assert plan(os.fsdecode(odd))["checkpoint_dir"].endswith("run\ufffd")


def test_plan_errors_exit_2(tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    r = run_ckpt("regenerate", bare, "--dry-run")
    assert r.returncode == 2 and "--head-dim" in r.stderr
    out = foreign_model(tmp_path)
    assert run_ckpt("regenerate", out, "--dry-run", "--sla-config", "{'topk': 2}").returncode == 2
    assert run_ckpt("regenerate", out, "--dry-run", "--sla-config", "{'bogus': 1}").returncode == 2
    assert run_ckpt("regenerate", out, "--dtype", "fp8").returncode == 2
    assert run_ckpt("regenerate", tmp_path / "missing").returncode == 2


def test_refuses_to_replace_a_valid_file_without_force(tmp_path):
    ck = simpletuner_checkpoint(tmp_path, 7)
    before = (ck / "sla_attention.pt").read_bytes()
    r = run_ckpt("regenerate", ck)
    assert r.returncode == 2 and "--force" in r.stderr
    assert (ck / "sla_attention.pt").read_bytes() == before


def calibration_file(path, head_dim=32):
    g = torch.Generator().manual_seed(3)
    qkv = {n: torch.randn(1, 2, 200, head_dim, generator=g).to(torch.bfloat16) for n in "qkv"}
    save_file(qkv, str(path))
    return qkv


@needs_torch_exe
def test_regenerate_foreign_model_passes_verify_and_loads_in_python(tmp_path):
    out = foreign_model(tmp_path)
    weights_before = (out / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes()
    r = run_ckpt("regenerate", out, "--json", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    [entry] = result["entries"]
    assert entry["key"] == "32:fp16" and entry["error_after"] < entry["error_before"]
    assert "before" in r.stderr and "after" in r.stderr
    assert sorted(x.name for x in out.iterdir()) == ["sla_attention.pt", "transformer"]
    assert (out / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes() == weights_before

    payload = torch.load(out / "sla_attention.pt", weights_only=True)
    assert set(payload["state"]) == {"32:fp16"}
    assert payload["state"]["32:fp16"]["proj_l.weight"].shape == (32, 32)
    assert payload["sla_toolkit"]["regenerated"] is True
    assert payload["sla_toolkit"]["regenerated_from"] == "random normal"

    code, report = verify_json(out, "--expect-sla")
    assert code == 0, report
    assert statuses(report, "provenance") == ["warn"] and statuses(report, "coverage") == ["ok"]
    assert statuses(report, "values") == ["ok"]

    r = run_ckpt("regenerate", out)
    assert r.returncode == 2  # now valid: needs --force
    r = run_ckpt("regenerate", out, "--force", "--device", "cpu")
    assert r.returncode == 0, r.stderr


@needs_torch_exe
def test_calibration_lowers_the_error_checked_in_python(tmp_path):
    out = foreign_model(tmp_path)
    qkv = calibration_file(tmp_path / "calib.safetensors")
    r = run_ckpt("regenerate", out, "--calibration", tmp_path / "calib.safetensors", "--json", "--device", "cpu",
                 "--sla-config", '{"topk": 0.5, "blkq": 64, "blkk": 64}')
    assert r.returncode == 0, r.stderr
    [entry] = json.loads(r.stdout)["entries"]
    assert entry["error_after"] < entry["error_before"]
    payload = torch.load(out / "sla_attention.pt", weights_only=True)
    assert payload["sla_toolkit"]["regenerated_from"] == "calibration " + str(tmp_path / "calib.safetensors")

    # Independent check of the effect: with o = o_s + W o_l + b, the zero projection gives
    # o_s; the written one must bring o closer to dense attention. o_s and o_l are recomputed here in
    # float64 from the definition (block map by mean-pooled scores, smooth-k, softmax over selected blocks,
    # softmax-feature-map linear attention over all keys).
    q, k, v = (qkv[n].double() for n in "qkv")
    dense = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    o_s, o_l = sla_branches(q, k, v, topk=0.5, blk=64)
    w = payload["state"]["32:fp16"]["proj_l.weight"].double()
    b = payload["state"]["32:fp16"]["proj_l.bias"].double()
    before = ((o_s - dense) ** 2).mean()
    after = ((o_s + o_l @ w.T + b - dense) ** 2).mean()
    assert after < before
    assert abs(before.item() - entry["error_before"]) < 0.05 * before.item()


def refused_in_one_line(r, code):
    assert r.returncode == 2 and code in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "frame #" not in r.stderr


def test_empty_calibration_is_refused_by_the_plan(tmp_path):
    out = foreign_model(tmp_path)
    save_file({n: torch.zeros(1, 2, 0, 32) for n in "qkv"}, str(tmp_path / "empty.safetensors"))
    r = run_ckpt("regenerate", out, "--dry-run", "--calibration", tmp_path / "empty.safetensors")
    refused_in_one_line(r, "E_CONFIG")
    assert "empty (shape [1, 2, 0, 32])" in r.stderr and "empty.safetensors" in r.stderr


@needs_torch_exe
def test_calibration_with_nan_is_refused_before_the_step(tmp_path):
    out = foreign_model(tmp_path)
    qkv = {n: torch.randn(1, 2, 128, 32) for n in "qkv"}
    qkv["k"][0, 1, 5, 7] = float("inf")
    save_file(qkv, str(tmp_path / "inf.safetensors"))
    r = run_ckpt("regenerate", out, "--device", "cpu", "--calibration", tmp_path / "inf.safetensors")
    refused_in_one_line(r, "E_CONFIG")
    assert "tensor k holds NaN or infinite values" in r.stderr
    assert not (out / "sla_attention.pt").exists()


def mem_available():
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


@needs_torch_exe
def test_calibration_too_long_for_the_reference_is_refused_before_it_runs(tmp_path):
    # (1, 1, 524288, 8): the reference's float32 (L, L) scores alone are 1 TiB, about 3 TiB at its peak;
    # the refusal names the shape and both sizes instead of the process dying to the OOM killer.
    out = foreign_model(tmp_path, head_dim=8)
    save_file({n: torch.randn(1, 1, 524288, 8, dtype=torch.float16) for n in "qkv"}, str(tmp_path / "long.safetensors"))
    r = run_ckpt("regenerate", out, "--device", "cpu", "--calibration", tmp_path / "long.safetensors")
    refused_in_one_line(r, "E_CONFIG")
    assert "[1, 1, 524288, 8] needs about 3072.0 GiB" in r.stderr and "GiB available" in r.stderr
    assert "long.safetensors" in r.stderr
    assert not (out / "sla_attention.pt").exists()


@needs_torch_exe
@pytest.mark.skipif(mem_available() < 8 << 30, reason="needs 8 GiB available, so the size check lets the step start")
def test_failed_allocation_is_one_line_naming_the_entry(tmp_path):
    # Under a 4 GiB address-space limit the reference's scores of (1, 2, 16384, 8) (2 GiB a copy) cannot
    # be allocated although the machine has the memory: LibTorch's error, in one line, without its backtrace.
    import resource

    def limit_address_space():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    out = foreign_model(tmp_path, head_dim=8)
    save_file({n: torch.randn(1, 2, 16384, 8) for n in "qkv"}, str(tmp_path / "mid.safetensors"))
    r = subprocess.run([CKPT, "regenerate", str(out), "--device", "cpu", "--calibration", str(tmp_path / "mid.safetensors")],
                       capture_output=True, text=True, timeout=300, preexec_fn=limit_address_space)
    refused_in_one_line(r, "E_REGENERATE")
    assert "the one-step run failed" in r.stderr and "allocate" in r.stderr and r.stderr.rstrip().endswith("in 8:fp16")
    assert not (out / "sla_attention.pt").exists()


def run_dit_example(*args):
    r = subprocess.run([DIT_EXAMPLE, "--device", "cpu", "--threads", "1", "--batch-size", "2", *map(str, args)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


@needs_dit_example
def test_example_dit_checkpoint_gets_one_real_sla_only_training_step(tmp_path):
    run = tmp_path / "run"
    settings = "{'topk': 0.5, 'blkq': 32, 'blkk': 32}"
    run_dit_example("--output-dir", run, "--steps", 3, "--sla-config", settings)
    ck = run / "checkpoint-3"
    trained = torch.load(ck / "sla_attention.pt", weights_only=True)
    (ck / "sla_attention.pt").unlink()
    before = {p.relative_to(ck): p.read_bytes() for p in ck.rglob("*") if p.is_file()}

    # sla-ckpt distils any model from dense attention, and names the example's own step.
    p = plan(ck)
    assert p["mode"] == "dense-distillation" and "sla-dit-example --regenerate" in p["note"]
    assert p["settings"]["blkq"] == 32 and p["settings"]["topk"] == 0.5

    # The example takes one step of its own objective, with the settings sla-ckpt's plan found.
    r = subprocess.run([DIT_EXAMPLE, "--regenerate", str(ck), "--device", "cpu"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["mode"] == "example-dit"
    assert report["loss_after"] <= report["loss_before"]
    assert "before" in r.stderr and "after" in r.stderr

    # Only sla_attention.pt was added; every other file is byte-identical.
    after = {p.relative_to(ck): p.read_bytes() for p in ck.rglob("*") if p.is_file()}
    assert set(after) == set(before) | {Path("sla_attention.pt")}
    assert all(after[name] == data for name, data in before.items())

    code, verify_report = verify_json(ck, "--expect-sla")
    assert code == 0, verify_report

    payload = torch.load(ck / "sla_attention.pt", weights_only=True)
    assert {"settings", "state", "version"} <= set(payload)
    assert payload["settings"]["blkq"] == 32 and payload["settings"]["topk"] == 0.5
    assert set(payload["state"]) == set(trained["state"])  # the keys training itself writes
    for entry in payload["state"].values():
        assert set(entry) == {"proj_l.weight", "proj_l.bias"}
        assert entry["proj_l.weight"].shape == (32, 32) and entry["proj_l.weight"].dtype == torch.float32
        assert entry["proj_l.weight"].abs().sum() > 0 or entry["proj_l.bias"].abs().sum() > 0
    assert payload["sla_toolkit"]["regenerated"] is True
    assert payload["sla_toolkit"]["regenerated_from"] == f"example-dit checkpoint {ck}"

    # A valid file is replaced only with --force.
    r = subprocess.run([DIT_EXAMPLE, "--regenerate", str(ck)], capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and "--force" in r.stderr

    # The checkpoint resumes (weights, optimizer with the SLA group, SLA state) and trains on.
    losses = run_dit_example("--output-dir", run, "--steps", 4, "--resume-from", ck, "--sla-config", settings)
    assert [x["step"] for x in losses] == [4]
    assert losses[0]["loss"] == losses[0]["loss"]  # not NaN


def sla_branches(q, k, v, topk, blk):
    """The SLA sparse and linear branches (variant all, softmax feature map), from the definition."""
    B, H, L, D = q.shape
    nb = -(-L // blk)
    pad = nb * blk - L

    def pooled(x):
        xp = torch.nn.functional.pad(x, (0, 0, 0, pad))
        counts = torch.full((nb,), blk, dtype=x.dtype)
        counts[-1] = blk - pad
        return xp.reshape(B, H, nb, blk, D).sum(3) / counts[:, None]

    scores = pooled(q) @ pooled(k - k.mean(2, keepdim=True)).transpose(-1, -2)  # smooth-k
    n = max(1, min(nb, int(topk * nb)))
    sel = torch.zeros(B, H, nb, nb, dtype=torch.bool)
    sel.scatter_(-1, scores.topk(n, dim=-1).indices, True)
    token_block = torch.arange(L) // blk
    mask = sel[:, :, token_block][:, :, :, token_block]
    s = (q @ k.transpose(-1, -2)) / D ** 0.5
    o_s = torch.softmax(s.masked_fill(~mask, float("-inf")), -1) @ v
    fq, fk = torch.softmax(q, -1), torch.softmax(k, -1)
    o_l = (fq @ (fk.transpose(-1, -2) @ v)) / (1e-5 + (fq * fk.sum(-2, keepdim=True)).sum(-1, keepdim=True))
    return o_s, o_l


def test_help_has_an_example():
    r = run_ckpt("regenerate", "--help")
    assert r.returncode == 0 and "Example:" in r.stdout


def example_dit_like_checkpoint(tmp_path):
    """What regenerate recognises as the example DiT's checkpoint: SlaDiT config, float32 weights, training state."""
    ck = tmp_path / "run" / "checkpoint-3"
    write_transformer(ck, head_dim=32, heads=2, dtype=torch.float32)
    config = ck / "transformer" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "_class_name": "SlaDiT"}))
    (ck / "training_state.json").write_text(json.dumps({"global_step": 3}))
    return ck


def test_example_dit_checkpoint_honours_head_dim_and_dtype(tmp_path):
    # --head-dim/--dtype name the entries; without them the model config and weights decide.
    ck = example_dit_like_checkpoint(tmp_path)
    assert [e["key"] for e in plan(ck)["entries"]] == ["32:bf16"]
    p = plan(ck, "--dtype", "bf16", "--head-dim", "32")
    assert p["mode"] == "dense-distillation"
    assert [e["key"] for e in p["entries"]] == ["32:bf16"]
    assert [e["key"] for e in plan(ck, "--dtype", "fp16")["entries"]] == ["32:fp16"]
    assert [e["key"] for e in plan(ck, "--head-dim", "64")["entries"]] == ["64:bf16"]
    if not REGEN:
        return
    r = run_ckpt("regenerate", ck, "--dtype", "bf16", "--head-dim", "32", "--json", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert set(torch.load(ck / "sla_attention.pt", weights_only=True)["state"]) == {"32:bf16"}


def test_lora_output_plan_takes_shape_and_settings_from_its_newest_checkpoint(tmp_path):
    out = tmp_path / "output"
    settings = {"topk": 0.25, "feature_map": "elu", "blkq": 128, "blkk": 64, "tie_feature_map_qk": True}
    simpletuner_checkpoint(out, 50)
    simpletuner_checkpoint(out, 300, settings=settings)
    save_file({"lora_A": torch.zeros(2, 2)}, str(out / "pytorch_lora_weights.safetensors"))
    p = plan(out)
    assert [e["key"] for e in p["entries"]] == ["64:bf16"]
    assert "checkpoint-300" in p["entries_source"]
    assert p["settings_source"] == str(out / "checkpoint-300" / "sla_attention.pt")
    assert {k: p["settings"][k] for k in settings} == settings
