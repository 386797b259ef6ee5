"""Shared helpers of the sla-ckpt CLI tests: the tool, and SLA files written the way SimpleTuner
writes them (Python torch.save of the plain payload dict), the independent oracle for our reader."""
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

CKPT = os.environ.get("SLA_CKPT", "")
DEFAULT_SETTINGS = {"topk": 0.2, "feature_map": "softmax", "blkq": 64, "blkk": 64, "tie_feature_map_qk": True}
SLA_CARD_LINE = "SLA: Enabled (you MUST use SLA for inference; sla_attention.pt contains attention weights)"


def pytest_collection_modifyitems(items):
    if not CKPT:
        for item in items:
            item.add_marker(pytest.mark.skip(reason="SLA_CKPT not set (run through ctest)"))


def run_ckpt(*args, env=None):
    return subprocess.run([CKPT, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def trained_entry(head_dim, seed=0):
    g = torch.Generator().manual_seed(seed + head_dim)
    return {"proj_l.weight": torch.randn(head_dim, head_dim, generator=g) * 0.02,
            "proj_l.bias": torch.randn(head_dim, generator=g) * 0.01}


def write_sla_pt(path, state=None, settings=None, extension=None):
    """sla_attention.pt as SimpleTuner's attention controller saves it (plus our key when given)."""
    payload = {"settings": dict(settings or DEFAULT_SETTINGS),
               "state": state if state is not None else {"64:bf16": trained_entry(64)},
               "version": 1}
    if extension is not None:
        payload["sla_toolkit"] = extension
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return payload


def write_weights(path, dtype, numel=4096):
    """A model weights file: most elements in `dtype`, a few float32 norms (the majority decides)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file({"blocks.0.attn.to_q.weight": torch.zeros(numel, dtype=dtype),
               "blocks.0.norm.weight": torch.ones(16, dtype=torch.float32)}, str(path))


def write_transformer(folder, head_dim=64, heads=4, dtype=torch.bfloat16):
    t = Path(folder) / "transformer"
    t.mkdir(parents=True, exist_ok=True)
    (t / "config.json").write_text(json.dumps({"_class_name": "DiT", "attention_head_dim": head_dim,
                                               "num_attention_heads": heads, "num_layers": 2}))
    write_weights(t / "diffusion_pytorch_model.safetensors", dtype)


def simpletuner_checkpoint(folder, step, with_sla=True, **sla_kwargs):
    """checkpoint-<step>/ with the accelerator state, a diffusers transformer and sla_attention.pt."""
    ck = Path(folder) / f"checkpoint-{step}"
    ck.mkdir(parents=True, exist_ok=True)
    for name in ("optimizer.bin", "scheduler.bin", "random_states_0.pkl"):
        (ck / name).write_bytes(b"\0" * 16)
    (ck / "training_state.json").write_text(json.dumps({"global_step": step}))
    write_transformer(ck)
    if with_sla:
        write_sla_pt(ck / "sla_attention.pt", **sla_kwargs)
    return ck


def verify_json(path, *flags):
    r = run_ckpt("verify", path, "--json", *flags)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


def statuses(report, check_id):
    return [c["status"] for c in report["checks"] if c["id"] == check_id]


def messages(report, check_id):
    return " | ".join(c["message"] for c in report["checks"] if c["id"] == check_id)
