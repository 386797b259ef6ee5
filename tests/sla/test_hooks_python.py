"""The hooks' sla_attention.pt against Python torch: what the hooks write loads with
torch.load(weights_only=True) and has exactly SimpleTuner's structure (plus our extension key);
what Python writes in SimpleTuner's structure is restored by the hooks."""
import json
import os
import subprocess
from collections import OrderedDict

import pytest
import torch

EXE = os.path.join(os.environ.get("SLA_BUILD_DIR", "build"), "tests", "sla", "hooks_roundtrip")
# The settings hooks_roundtrip runs with.
RUNTIME_SETTINGS = {"topk": 0.3, "feature_map": "softmax", "blkq": 32, "blkk": 64, "tie_feature_map_qk": False}


def expected_weights(d, s):
    w = torch.sin((torch.arange(d * d, dtype=torch.float64) + 1) * 0.1 * s).to(torch.float32).view(d, d)
    b = torch.cos((torch.arange(d, dtype=torch.float64) + 1) * 0.1 * s).to(torch.float32)
    return w, b


def read_back(folder, head_dim, dtype):
    out = subprocess.run([EXE, "read", str(folder), str(head_dim), dtype], check=True, capture_output=True, text=True)
    result = json.loads(out.stdout)
    d = head_dim
    result["weight"] = torch.tensor(result["weight"], dtype=torch.float32).view(d, d)
    result["bias"] = torch.tensor(result["bias"], dtype=torch.float32)
    result["log"] = out.stderr
    return result


def test_hooks_file_has_simpletuner_structure(tmp_path):
    subprocess.run([EXE, "write", str(tmp_path)], check=True)
    payload = torch.load(tmp_path / "sla_attention.pt", weights_only=True, map_location="cpu")
    assert type(payload) is dict
    assert set(payload) == {"settings", "state", "version", "sla_toolkit"}
    assert payload["version"] == 1 and type(payload["version"]) is int

    settings = payload["settings"]
    assert settings == RUNTIME_SETTINGS
    assert list(settings) == ["topk", "feature_map", "blkq", "blkk", "tie_feature_map_qk"]
    assert [type(settings[k]) for k in settings] == [float, str, int, int, bool]

    assert sorted(payload["state"]) == ["16:fp16", "32:bf16"]
    for key, (d, s) in {"32:bf16": (32, 1.0), "16:fp16": (16, 2.0)}.items():
        state = payload["state"][key]
        assert set(state) == {"proj_l.weight", "proj_l.bias"}
        w, b = expected_weights(d, s)
        for name, want in (("proj_l.weight", w), ("proj_l.bias", b)):
            got = state[name]
            assert got.dtype == torch.float32 and got.device.type == "cpu"
            assert got.shape == want.shape
            assert torch.equal(got, want)
        # SimpleTuner applies the state to its SLA module with load_state_dict(strict=False).
        module = torch.nn.Module()
        module.proj_l = torch.nn.Linear(d, d)
        missing, unexpected = module.load_state_dict(state, strict=False)
        assert not missing and not unexpected
        assert torch.equal(module.proj_l.weight.detach(), w)

    extension = payload["sla_toolkit"]
    assert extension["variant"] == "all"
    assert extension["writer"].startswith("sla-toolkit ")


def simpletuner_payload(settings, key, d, state_factory):
    torch.manual_seed(d)
    module = torch.nn.Module()
    module.proj_l = torch.nn.Linear(d, d)
    return {"settings": settings, "state": {key: state_factory(module)}, "version": 1}, module


@pytest.mark.parametrize(
    "state_factory",
    [
        lambda m: {k: v.detach().cpu() for k, v in m.state_dict().items()},
        lambda m: m.state_dict(),  # the OrderedDict itself, with its _metadata
    ],
    ids=["plain-dict", "state-dict"],
)
def test_python_file_is_restored_by_hooks(tmp_path, state_factory):
    payload, module = simpletuner_payload(dict(RUNTIME_SETTINGS), "16:bf16", 16, state_factory)
    torch.save(payload, tmp_path / "sla_attention.pt")
    result = read_back(tmp_path, 16, "bf16")
    assert torch.equal(result["weight"], module.proj_l.weight.detach())
    assert torch.equal(result["bias"], module.proj_l.bias.detach())
    assert result["differing_keys"] == []
    assert result["loaded_keys"] == ["16:bf16"]


def test_python_file_with_other_settings_and_dtype_keeps_the_projection(tmp_path):
    defaults = {"topk": 0.2, "feature_map": "softmax", "blkq": 64, "blkk": 64, "tie_feature_map_qk": True}
    payload, module = simpletuner_payload(defaults, "16:bf16", 16, lambda m: OrderedDict(m.state_dict()))
    torch.save(payload, tmp_path / "sla_attention.pt")
    result = read_back(tmp_path, 16, "fp16")  # an fp16 run: SimpleTuner would ignore the bf16 state
    assert torch.equal(result["weight"], module.proj_l.weight.detach())
    assert result["differing_keys"] == ["topk", "blkq", "tie_feature_map_qk"]
    assert "notice: no state for 16:fp16" in result["log"]
    assert "differ from the runtime ones in topk, blkq, tie_feature_map_qk" in result["log"]
