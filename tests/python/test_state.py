"""sla_toolkit.save_sla_state / load_sla_state (issue 13, item 5): SimpleTuner's payload through the
project's durable writer and hardened reader, judged by Python itself: what we write,
torch.load(weights_only=True) reads as the same payload; what torch.save writes (SimpleTuner's way
of saving), we read as torch.load does; the safetensors twin agrees with safetensors' own reader;
damaged and hostile files are refused with one line, and a refused write leaves the target as it was."""
import io
import json
import os
import pickle
import zipfile

import pytest
import torch
from safetensors.torch import load_file as st_load_file

import sla_toolkit
from sla_toolkit import load_sla_state, save_sla_state
from sla_toolkit.state import SlaStateError

SETTINGS = {"topk": 0.2, "feature_map": "softmax", "blkq": 64, "blkk": 64, "tie_feature_map_qk": True}


def entry(d, seed):
    g = torch.Generator().manual_seed(seed)
    return {"proj_l.weight": torch.randn(d, d, generator=g), "proj_l.bias": torch.randn(d, generator=g)}


def assert_same_payload(ours, oracle):
    assert set(ours) == set(oracle)  # in SimpleTuner's order (settings, state, version, ours), whatever the file's
    assert ours["settings"] == oracle["settings"]
    for name, value in ours["settings"].items():
        assert type(value) is type(oracle["settings"][name]), name
    assert ours["version"] == oracle["version"]
    assert list(ours["state"]) == list(oracle["state"])
    for key, tensors in oracle["state"].items():
        assert list(ours["state"][key]) == list(tensors)
        for name, t in tensors.items():
            got = ours["state"][key][name]
            assert got.dtype == t.dtype == torch.float32 and got.device.type == "cpu"
            assert got.shape == t.shape and torch.equal(got, t), (key, name)
    assert ours.get("sla_toolkit") == oracle.get("sla_toolkit")


def test_round_trip_is_what_torch_load_reads(tmp_path):
    state = {"128:bf16": entry(128, 1), "64:fp16": entry(64, 2), "32:fp32": entry(32, 3)}
    settings = {"topk": 0.125, "feature_map": "elu", "blkq": 128, "blkk": 64, "tie_feature_map_qk": False}
    path = tmp_path / "sla_attention.pt"
    save_sla_state(path, state, settings, variant="complement", extension={"note": "x", "step": 7})
    oracle = torch.load(path, weights_only=True, map_location="cpu")
    assert set(oracle) == {"settings", "state", "version", "sla_toolkit"}
    assert oracle["settings"] == settings and oracle["version"] == 1
    assert oracle["sla_toolkit"] == {"note": "x", "step": 7, "variant": "complement",
                                     "writer": f"sla-toolkit {sla_toolkit.__version__}"}
    for key, tensors in state.items():
        for name, t in tensors.items():
            assert torch.equal(oracle["state"][key][name], t)
    assert_same_payload(load_sla_state(path), oracle)
    assert sorted(os.listdir(tmp_path)) == ["sla_attention.pt"]  # no temp file left behind


def test_inputs_are_stored_as_cpu_float32(tmp_path):
    class Sla(torch.nn.Module):  # a module whose state_dict is an SLA module's: proj_l.weight, proj_l.bias
        def __init__(self, d):
            super().__init__()
            self.proj_l = torch.nn.Linear(d, d)

    module = Sla(16)
    w = torch.randn(24, 24, dtype=torch.bfloat16)
    state = {"16:bf16": module,                                            # a module
             "24:fp16": {"proj_l.weight": w.t(),                          # bf16, not contiguous
                         "proj_l.bias": torch.randn(24, requires_grad=True)}}  # needs grad
    path = tmp_path / "sla_attention.pt"
    save_sla_state(path, state)
    oracle = torch.load(path, weights_only=True)
    assert torch.equal(oracle["state"]["16:bf16"]["proj_l.weight"], module.proj_l.weight.detach())
    assert torch.equal(oracle["state"]["24:fp16"]["proj_l.weight"], w.t().float())
    assert oracle["settings"] == SETTINGS  # SimpleTuner's defaults
    assert "variant" not in oracle["sla_toolkit"]  # not stated, so not recorded


def test_a_whole_simpletuner_payload_is_accepted(tmp_path):
    # What SimpleTuner's AttentionBackendController._serialize_state() returns, plus our key.
    payload = {"settings": dict(SETTINGS, topk=0.3), "state": {"64:bf16": entry(64, 5)}, "version": 1,
               "sla_toolkit": {"variant": "all"}}
    path = tmp_path / "sla_attention.pt"
    save_sla_state(path, payload)
    oracle = torch.load(path, weights_only=True)
    assert oracle["settings"]["topk"] == 0.3 and oracle["sla_toolkit"]["variant"] == "all"
    assert_same_payload(load_sla_state(path), oracle)


@pytest.mark.parametrize("protocol", [2, 3])  # torch.load itself refuses 4 and 5 (FRAME)
def test_files_torch_save_writes_load_as_torch_load_reads_them(tmp_path, protocol):
    payloads = [
        {"settings": dict(SETTINGS), "state": {"128:bf16": entry(128, 7)}, "version": 1},
        {"settings": dict(SETTINGS, feature_map="relu", blkq=128), "state": {"64:fp16": entry(64, 8), "64:bf16": entry(64, 9)},
         "version": 1, "sla_toolkit": {"variant": "all", "writer": "sla-toolkit 0.1.0", "regenerated": True}},
        {"settings": dict(SETTINGS), "state": {}, "version": 1},
    ]
    for i, payload in enumerate(payloads):
        path = tmp_path / f"p{i}" / "sla_attention.pt"
        path.parent.mkdir()
        torch.save(payload, path, pickle_protocol=protocol)
        assert_same_payload(load_sla_state(path), torch.load(path, weights_only=True))


def test_shared_storage_views_load_as_torch_load_reads_them(tmp_path):
    # torch.save keeps views of one storage as one record; the reader must honour offsets and strides.
    base = torch.randn(64 * 64 + 64)
    payload = {"settings": dict(SETTINGS), "version": 1,
               "state": {"64:bf16": {"proj_l.weight": base[:4096].view(64, 64), "proj_l.bias": base[4096:]}}}
    path = tmp_path / "sla_attention.pt"
    torch.save(payload, path)
    assert_same_payload(load_sla_state(path), torch.load(path, weights_only=True))


def test_safetensors_twin_agrees_with_safetensors_reader(tmp_path):
    state = {"64:bf16": entry(64, 11), "32:fp16": entry(32, 12)}
    twin = tmp_path / "sla_attention.safetensors"
    save_sla_state(twin, state, variant="all")
    tensors = st_load_file(str(twin))
    assert set(tensors) == {f"{k}/{n}" for k in state for n in ("proj_l.weight", "proj_l.bias")}
    for key, t in state.items():
        for name, value in t.items():
            assert torch.equal(tensors[f"{key}/{name}"], value)
    with open(twin, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    assert json.loads(header["__metadata__"]["settings"]) == SETTINGS
    back = load_sla_state(twin)
    assert back["sla_toolkit"]["variant"] == "all" and back["settings"] == SETTINGS
    for key, t in state.items():
        assert torch.equal(back["state"][key]["proj_l.weight"], t["proj_l.weight"])


def one_line_error(path):
    with pytest.raises(SlaStateError) as info:
        load_sla_state(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith("E_"), message
    return message


def test_damaged_files_are_refused_with_one_line(tmp_path):
    path = tmp_path / "sla_attention.pt"
    torch.save({"settings": dict(SETTINGS), "state": {"64:bf16": entry(64, 1)}, "version": 1}, path)
    good = path.read_bytes()
    # One flipped bit inside the weight's record: torch.load would not notice (it skips CRC32).
    with zipfile.ZipFile(io.BytesIO(good)) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/data/0"))
    offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + 100
    flipped = bytearray(good)
    flipped[offset] ^= 0x01
    path.write_bytes(bytes(flipped))
    assert "E_CRC" in one_line_error(path)
    path.write_bytes(good[: len(good) // 2])
    one_line_error(path)
    path.write_bytes(b"")
    one_line_error(path)
    path.write_bytes(good)
    assert load_sla_state(path)["version"] == 1


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_hostile_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "sla_attention.pt"
    torch.save({"settings": dict(SETTINGS), "state": {"64:bf16": entry(64, 1)}, "version": 1, "x": Exploit(marker)}, path)
    message = one_line_error(path)
    assert "system" in message or "GLOBAL" in message.upper(), message
    assert not marker.exists()
    # Python's own unpickler would have run it: the exploit is real.
    pickle.loads(pickle.dumps(Exploit(marker)))
    assert marker.exists()


def test_not_an_sla_payload_is_refused(tmp_path):
    path = tmp_path / "sla_attention.pt"
    torch.save([1, 2, 3], path)
    one_line_error(path)
    torch.save({"settings": dict(SETTINGS), "state": {"64:bf16": {"proj_l.weight": torch.zeros(3, 3),
                                                                    "proj_l.bias": torch.zeros(64)}}, "version": 1}, path)
    assert "proj_l.weight" in one_line_error(path)


@pytest.mark.parametrize("case", ["block size", "shape", "key", "setting", "extension"])
def test_a_refused_write_leaves_the_target_untouched(tmp_path, case):
    path = tmp_path / "sla_attention.pt"
    save_sla_state(path, {"64:bf16": entry(64, 1)})
    before = path.read_bytes()
    state, settings, extension = {"64:bf16": entry(64, 2)}, None, None
    if case == "block size":
        settings = dict(SETTINGS, blkq=48)
    elif case == "shape":
        state = {"64:bf16": {"proj_l.weight": torch.zeros(64, 32), "proj_l.bias": torch.zeros(64)}}
    elif case == "key":
        state = {"bf16": entry(64, 2)}
    elif case == "setting":
        settings = {"topk": 0.2, "sparsity": 0.5}
    else:
        extension = {"nested": {"not": "flat"}}
    with pytest.raises(SlaStateError) as info:
        save_sla_state(path, state, settings, extension=extension)
    assert "\n" not in str(info.value) and str(info.value).startswith("E_"), str(info.value)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["sla_attention.pt"]
