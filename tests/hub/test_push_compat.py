"""push and pull of files that SimpleTuner reads but this toolkit only warns about (issue 17, part 2):
a forward-compatible payload (SimpleTuner's four-key test payload, a newer version, an unknown
setting) and a file without our extension key (variant unknown) are warnings, never a refusal:
push uploads the bytes unchanged and pull verifies them with exit 0, while a real problem still
refuses. The real huggingface_hub client is the oracle of what the server holds."""
import torch

from conftest import HubServer, hub_env, run_ckpt, run_python, sha256_of

import pytest


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = HubServer(tmp_path_factory.mktemp("hub") / "root")
    yield s
    s.stop()


def lora_output(folder, payload):
    folder.mkdir()
    (folder / "pytorch_lora_weights.safetensors").write_bytes(b"\0" * 64)
    torch.save(payload, folder / "sla_attention.pt")
    return folder


def payload(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"settings": {"topk": 0.2, "feature_map": "softmax", "blkq": 64, "blkk": 64},  # no tie_feature_map_qk
            "state": {"64:bf16": {"proj_l.weight": torch.randn(64, 64, generator=g) * 0.02,
                                  "proj_l.bias": torch.randn(64, generator=g) * 0.01}},
            "version": 2}


def test_warnings_do_not_stop_push_or_pull(server, tmp_path):
    p = payload()
    p["settings"]["sparsity_schedule"] = "linear"
    out = lora_output(tmp_path / "out", p)
    verify = run_ckpt("verify", out, env=None)
    assert verify.returncode == 0 and verify.stdout.count("W_COMPAT") == 3 and "variant unknown" in verify.stdout
    env = hub_env(server, tmp_path / "hf")
    r = run_ckpt("push", out, "alice/compat", env=env)
    assert r.returncode == 0, r.stderr
    assert "refusing" not in r.stderr
    remote = run_python("import json; from huggingface_hub import hf_hub_download; "
                        "print(json.dumps(hf_hub_download('alice/compat', 'sla_attention.pt')))", env)
    assert sha256_of(remote) == sha256_of(out / "sla_attention.pt")  # uploaded unchanged
    pulled = tmp_path / "pulled"
    r = run_ckpt("pull", "alice/compat", "--local-dir", pulled, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sha256_of(pulled / "sla_attention.pt") == sha256_of(out / "sla_attention.pt")


def test_a_real_problem_beside_the_warnings_still_refuses(server, tmp_path):
    p = payload(1)
    p["state"]["64:bf16"]["proj_l.weight"][0, 0] = float("nan")
    out = lora_output(tmp_path / "out", p)
    r = run_ckpt("push", out, "alice/compat-bad", env=hub_env(server, tmp_path / "hf"))
    assert r.returncode == 1 and "refusing to push" in r.stderr and "non-finite" in r.stderr, r.stderr
