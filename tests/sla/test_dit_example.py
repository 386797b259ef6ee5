"""The example DiT: trains with SLA on CPU in well under a minute with a falling loss, writes
complete checkpoint folders, and a run interrupted at step N and resumed from its checkpoint
reproduces the uninterrupted run's losses exactly."""
import json
import os
import subprocess
import time

import torch
from safetensors.torch import load_file

EXE = os.path.join(os.environ.get("SLA_BUILD_DIR", "build"), "examples", "sla-dit-example")
SLA_CONFIG = "{'topk': 0.25, 'blkq': 32, 'blkk': 32}"


def train(output_dir, *args):
    cmd = [EXE, "--output-dir", str(output_dir), "--sla-config", SLA_CONFIG, "--seed", "3", *map(str, args)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    return lines, out.stderr


def test_help_names_every_option():
    out = subprocess.run([EXE, "--help"], check=True, capture_output=True, text=True).stdout
    for option in ("--steps", "--checkpoint-every", "--output-dir", "--sla-config", "--attention-mechanism", "--state-dtype",
                   "--seed", "--resume-from", "--device", "Example"):
        assert option in out


def test_loss_falls_within_a_minute(tmp_path):
    start = time.monotonic()
    lines, _ = train(tmp_path, "--steps", 40, "--checkpoint-every", 20)
    elapsed = time.monotonic() - start
    losses = [line["loss"] for line in lines]
    assert [line["step"] for line in lines] == list(range(1, 41))
    print(f"example: 40 steps in {elapsed:.1f} s, loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    assert elapsed < 60
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-20", "checkpoint-40"]


def test_checkpoint_folder_contents(tmp_path):
    train(tmp_path, "--steps", 4, "--checkpoint-every", 4)
    ckpt = tmp_path / "checkpoint-4"
    state = json.loads((ckpt / "training_state.json").read_text())
    assert state["step"] == 4 and state["seed"] == 3 and len(state["losses"]) == 4
    config = json.loads((ckpt / "transformer" / "config.json").read_text())
    assert config["attention_head_dim"] == 32 and config["num_attention_heads"] == 2
    weights = load_file(ckpt / "transformer" / "diffusion_pytorch_model.safetensors")
    assert weights and all(t.dtype == torch.float32 for t in weights.values())
    assert weights["blocks.0.qkv.weight"].shape == (192, 64)
    assert not any(name.startswith("attention_backend") for name in weights)
    assert (ckpt / "optimizer.pt").stat().st_size > 0

    payload = torch.load(ckpt / "sla_attention.pt", weights_only=True)
    assert payload["settings"] == {"topk": 0.25, "feature_map": "softmax", "blkq": 32, "blkk": 32,
                                   "tie_feature_map_qk": True}
    # The run's own float32 entry, and the bf16 one SimpleTuner looks up (--state-dtype auto, the default).
    assert list(payload["state"]) == ["32:fp32", "32:bf16"]
    # proj_l starts at zero and has learned something in four steps.
    assert payload["state"]["32:fp32"]["proj_l.weight"].abs().sum() > 0
    for name in ("proj_l.weight", "proj_l.bias"):
        assert torch.equal(payload["state"]["32:bf16"][name], payload["state"]["32:fp32"][name])
    assert payload["sla_toolkit"]["state_dtype_copies"] == "32:bf16"


def simpletuner_lookup(payload, head_dim, dtype):
    """SimpleTuner's lookup: SLA only for bf16/fp16 queries, state key exactly "<D>:bf16" / "<D>:fp16"."""
    token = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype)
    return payload["state"].get(f"{head_dim}:{token}") if token else None


def test_state_dtype_makes_a_file_simpletuner_applies(tmp_path):
    train(tmp_path / "auto", "--steps", 2)
    payload = torch.load(tmp_path / "auto" / "checkpoint-2" / "sla_attention.pt", weights_only=True)
    assert simpletuner_lookup(payload, 32, torch.bfloat16) is not None
    train(tmp_path / "fp16", "--steps", 2, "--state-dtype", "fp16")
    payload = torch.load(tmp_path / "fp16" / "checkpoint-2" / "sla_attention.pt", weights_only=True)
    assert list(payload["state"]) == ["32:fp32", "32:fp16"]
    train(tmp_path / "none", "--steps", 2, "--state-dtype", "none")
    payload = torch.load(tmp_path / "none" / "checkpoint-2" / "sla_attention.pt", weights_only=True)
    assert list(payload["state"]) == ["32:fp32"]
    assert all(simpletuner_lookup(payload, 32, d) is None for d in (torch.bfloat16, torch.float16, torch.float32))


def test_demo_defaults_are_blocks_every_consumer_runs(tmp_path):
    # The demo's main job: blocks the public implementation accepts (blkq in {64, 128}, blkk == 64), 32 an option.
    demo = open(os.path.join(os.environ.get("SLA_SOURCE_DIR", "."), "tools", "demo.sh")).read()
    assert 'blkq="${SLA_DEMO_BLOCK:-64}"' in demo and 'blkk="${SLA_DEMO_BLOCK:-64}"' in demo
    assert "'blkq': $blkq, 'blkk': $blkk" in demo and "'blkq': 32" not in demo
    out = subprocess.run([EXE, "--output-dir", str(tmp_path), "--steps", "2", "--seed", "3",
                          "--sla-config", "{'topk': 0.25, 'blkq': 64, 'blkk': 64}"], check=True,
                         capture_output=True, text=True)
    assert "SimpleTuner" not in out.stderr
    ckpt_tool = os.environ.get("SLA_CKPT")
    if ckpt_tool:
        r = subprocess.run([ckpt_tool, "verify", str(tmp_path / "checkpoint-2"), "--json"], capture_output=True, text=True)
        report = json.loads(r.stdout)
        status = {c["id"]: c["status"] for c in report["checks"]}
        assert status["settings"] == "ok" and status["coverage"] == "ok", report
    # 32 stays an option our kernels run.
    train(tmp_path / "b32", "--steps", 1)


def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path):
    full, _ = train(tmp_path / "full", "--steps", 6, "--checkpoint-every", 3)
    first, _ = train(tmp_path / "split", "--steps", 3, "--checkpoint-every", 3)
    resumed, log = train(tmp_path / "split", "--steps", 6, "--checkpoint-every", 3,
                         "--resume-from", tmp_path / "split" / "checkpoint-3")
    assert "resumed from" in log
    assert first == full[:3]
    assert resumed == full[3:]  # bit-identical losses
    a = torch.load(tmp_path / "full" / "checkpoint-6" / "sla_attention.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoint-6" / "sla_attention.pt", weights_only=True)
    for key in a["state"]:
        for name in a["state"][key]:
            assert torch.equal(a["state"][key][name], b["state"][key][name])


def test_sdpa_run_writes_no_sla_file(tmp_path):
    train(tmp_path, "--steps", 2, "--attention-mechanism", "sdpa")
    ckpt = tmp_path / "checkpoint-2"
    assert (ckpt / "training_state.json").exists()
    assert not (ckpt / "sla_attention.pt").exists()


def test_bad_sla_config_is_one_line_error(tmp_path):
    out = subprocess.run([EXE, "--output-dir", str(tmp_path), "--steps", "1", "--sla-config", "{'blkq': 16}"],
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "blkq must be one of 32, 64, 128, got 16" in out.stderr
    assert not any(tmp_path.iterdir())


def test_failed_allocation_is_one_line_error(tmp_path):
    # A batch that cannot be allocated under a 4 GiB address-space limit: LibTorch's error in one line,
    # without its C++ backtrace.
    import resource

    def limit_address_space():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    out = subprocess.run([EXE, "--output-dir", str(tmp_path), "--steps", "1", "--device", "cpu", "--batch-size", "1000000"],
                         capture_output=True, text=True, timeout=120, preexec_fn=limit_address_space)
    assert out.returncode == 1
    assert out.stderr.startswith("sla-dit-example: error: ") and "allocate" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "frame #" not in out.stderr
