"""sla-ckpt verify on folders built here the way SimpleTuner and the Hub lay them out. Every check,
both exit codes (and 2 for unusable input), the JSON shape. SLA files are written by Python
torch.save, so the reader is checked against PyTorch's own writer."""
import json
import math
import os
import shutil

import pytest
import torch
from safetensors.torch import save_file

from conftest import (SLA_CARD_LINE, messages, run_ckpt, simpletuner_checkpoint, statuses, trained_entry,
                      verify_json, write_sla_pt, write_transformer, write_weights)


def test_json_shape_and_a_sound_simpletuner_checkpoint(tmp_path):
    ck = simpletuner_checkpoint(tmp_path / "output", 500, extension={"variant": "all", "writer": "test"})
    code, report = verify_json(ck)
    assert code == 0, report
    assert set(report) == {"path", "kind", "sla_expected", "checks", "ok"}
    assert report["kind"] == "checkpoint" and report["sla_expected"] is True and report["ok"] is True
    for check in report["checks"]:
        assert set(check) == {"id", "status", "message", "where"}
        assert check["status"] in ("ok", "warn", "fail")
    ids = [c["id"] for c in report["checks"]]
    for expected in ("evidence", "file", "read", "schema", "coverage", "settings", "variant", "values", "provenance"):
        assert expected in ids
    assert all(c["status"] == "ok" for c in report["checks"]), report
    assert "64:bf16" in messages(report, "coverage")
    assert str(ck / "sla_attention.pt") in [c["where"] for c in report["checks"]]


def test_human_output_is_one_line_per_check(tmp_path):
    ck = simpletuner_checkpoint(tmp_path, 10)
    r = run_ckpt("verify", ck)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    _, report = verify_json(ck)
    assert len(lines) == len(report["checks"]) + 2  # heading, checks, verdict
    assert lines[-1] == "verify: ok"
    assert any(line.startswith("warn") and "variant" in line for line in lines)


def test_variant_unknown_is_a_warning_until_stated(tmp_path):
    ck = simpletuner_checkpoint(tmp_path, 10)  # plain SimpleTuner payload, no extension key
    code, report = verify_json(ck)
    assert code == 0 and statuses(report, "variant") == ["warn"]
    assert "variant unknown" in messages(report, "variant") and "--variant" in messages(report, "variant")
    assert "assumed" not in messages(report, "variant")
    code, report = verify_json(ck, "--strict")
    assert code == 1 and report["ok"] is False
    # Once the user states what the file cannot record, a correct SimpleTuner file passes --strict.
    for variant in ("all", "complement"):
        code, report = verify_json(ck, "--strict", "--variant", variant)
        assert code == 0 and report["ok"] is True, report
        assert statuses(report, "variant") == ["ok"] and f"'{variant}' as stated" in messages(report, "variant")
    assert run_ckpt("verify", ck, "--variant", "both").returncode == 2


def test_stated_variant_must_match_a_recorded_one(tmp_path):
    write_sla_pt(tmp_path / "sla_attention.pt", extension={"variant": "complement"})
    code, report = verify_json(tmp_path / "sla_attention.pt", "--variant", "complement")
    assert statuses(report, "variant") == ["ok"] and "'complement' recorded" in messages(report, "variant")
    code, report = verify_json(tmp_path / "sla_attention.pt", "--variant", "all")
    assert code == 1 and statuses(report, "variant") == ["fail"]
    assert "'complement' recorded, but --variant all was stated" in messages(report, "variant")


def test_lora_output_without_the_file_names_the_newest_checkpoint_file(tmp_path):
    out = tmp_path / "output"
    simpletuner_checkpoint(out, 100)
    simpletuner_checkpoint(out, 1000)
    simpletuner_checkpoint(out, 200)
    save_file({"lora_A": torch.zeros(4, 4, dtype=torch.bfloat16)}, str(out / "pytorch_lora_weights.safetensors"))
    code, report = verify_json(out)
    assert code == 1 and report["ok"] is False
    assert report["kind"] == "lora-output" and report["sla_expected"] is True
    assert statuses(report, "file") == ["fail"]
    fix = messages(report, "file")
    assert str(out / "checkpoint-1000" / "sla_attention.pt") in fix and "regenerate" in fix
    r = run_ckpt("verify", out)
    assert r.returncode == 1 and "fail" in r.stdout and "checkpoint-1000" in r.stdout

    # After the fix, coverage is judged with the newest checkpoint's transformer config.
    shutil.copy(out / "checkpoint-1000" / "sla_attention.pt", out / "sla_attention.pt")
    code, report = verify_json(out)
    assert code == 0 and statuses(report, "coverage") == ["ok"]
    assert "checkpoint-1000" in messages(report, "coverage")


def test_model_card_line_is_evidence(tmp_path):
    (tmp_path / "README.md").write_text(f"# my model\n\n{SLA_CARD_LINE}\n")
    code, report = verify_json(tmp_path)
    assert code == 1 and statuses(report, "file") == ["fail"]
    assert "model card" in messages(report, "evidence")
    assert "sla-ckpt regenerate" in messages(report, "file")


def test_card_saying_disabled_is_not_evidence(tmp_path):
    (tmp_path / "README.md").write_text("SLA: Disabled\n")
    code, report = verify_json(tmp_path)
    assert code == 0 and report["sla_expected"] is False


def test_training_configs_are_evidence_json_yaml_toml(tmp_path):
    texts = {"config.json": json.dumps({"--attention_mechanism": "sla", "--sla_config": "{'topk': 0.2}"}),
             "train.yaml": "model: flux\nattention_mechanism: sla\n",
             "train.toml": 'attention_mechanism = "sla"\n'}
    for name, text in texts.items():
        d = tmp_path / name.replace(".", "_") / "output"
        d.mkdir(parents=True)
        (d.parent / name).write_text(text)  # the training config sits beside the output folder
        code, report = verify_json(d)
        assert code == 1 and report["sla_expected"] is True, (name, report)
        assert "attention_mechanism = sla" in messages(report, "evidence")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"attention_mechanism": "sdpa", "note": "sla_attention"}))
    code, report = verify_json(other)
    assert code == 0 and report["sla_expected"] is False


def test_no_evidence_is_ok_unless_expect_sla(tmp_path):
    code, report = verify_json(tmp_path)
    assert code == 0 and report["sla_expected"] is False and report["ok"] is True
    code, report = verify_json(tmp_path, "--expect-sla")
    assert code == 1 and "--expect-sla" in messages(report, "evidence")


def test_full_pipeline_folder_coverage_across_dtypes_and_missing_head_dim(tmp_path):
    out = tmp_path / "pipeline"
    write_transformer(out, head_dim=64, dtype=torch.float16)
    (out / "model_index.json").write_text("{}")
    write_sla_pt(out / "sla_attention.pt", state={"64:bf16": trained_entry(64)})
    code, report = verify_json(out)
    assert report["kind"] == "pipeline-output"
    assert code == 0 and statuses(report, "coverage") == ["warn"]
    assert "looks up exactly '64:fp16'" in messages(report, "coverage") and "zero proj_l" in messages(report, "coverage")

    write_sla_pt(out / "sla_attention.pt", state={"64:fp16": trained_entry(64), "64:bf16": trained_entry(64)})
    code, report = verify_json(out)
    assert statuses(report, "coverage") == ["ok"] and "64:fp16" in messages(report, "coverage")

    cfg = tmp_path / "big.json"
    cfg.write_text(json.dumps({"hidden_size": 3072, "num_attention_heads": 24}))  # head_dim 128
    code, report = verify_json(out, "--model-config", cfg)
    assert code == 1 and statuses(report, "coverage") == ["fail"]
    assert "head_dim 128" in messages(report, "coverage")


def test_fp32_only_entries_are_what_simpletuner_ignores(tmp_path):
    # Trained on CPU / in float32: only "<D>:fp32". SimpleTuner runs SLA only for bf16/fp16 queries and
    # looks up "<D>:bf16" / "<D>:fp16", so it runs with a zero proj_l; verify must say so.
    expected_text = ("SimpleTuner runs SLA only for bf16/fp16 queries and looks up '<D>:bf16' / '<D>:fp16'; "
                     "it finds none here and runs with a zero proj_l")
    # Only the file itself as evidence: a warning (exit 0).
    lone = tmp_path / "lone"
    write_sla_pt(lone / "sla_attention.pt", state={"64:fp32": trained_entry(64), "128:fp32": trained_entry(128)})
    code, report = verify_json(lone)
    assert code == 0 and statuses(report, "coverage") == ["warn"], report
    assert expected_text in messages(report, "coverage") and "64:fp32" in messages(report, "coverage")
    # SLA expected (the model card says so, or --expect-sla): a failure, whatever the weights' dtype.
    for dtype in (torch.bfloat16, torch.float32):
        ck = simpletuner_checkpoint(tmp_path / str(dtype), 10, state={"64:fp32": trained_entry(64)})
        write_transformer(ck, head_dim=64, dtype=dtype)
        code, report = verify_json(ck)
        assert code == 0 and statuses(report, "coverage") == ["warn"], report
        (ck / "README.md").write_text(SLA_CARD_LINE + "\n")
        code, report = verify_json(ck)
        assert code == 1 and statuses(report, "coverage") == ["fail"], report
        assert expected_text in messages(report, "coverage")
    code, report = verify_json(lone, "--expect-sla")
    assert code == 1 and statuses(report, "coverage") == ["fail"]
    # One usable entry next to the fp32 one is enough; fp32 weights: the run's dtype decides.
    ck = simpletuner_checkpoint(tmp_path / "mixed", 10, state={"64:fp32": trained_entry(64), "64:bf16": trained_entry(64)})
    write_transformer(ck, head_dim=64, dtype=torch.float32)
    code, report = verify_json(ck)
    assert code == 0 and statuses(report, "coverage") == ["ok"], report
    assert "SimpleTuner applies 64:bf16" in messages(report, "coverage")
    # A head dim whose only entry is fp32, next to a usable one for another dim: that dim fails.
    write_sla_pt(ck / "sla_attention.pt", state={"32:fp32": trained_entry(32), "64:bf16": trained_entry(64)})
    cfg = tmp_path / "small.json"
    cfg.write_text(json.dumps({"hidden_size": 64, "num_attention_heads": 2}))  # head_dim 32
    code, report = verify_json(ck, "--model-config", cfg)
    assert code == 1 and statuses(report, "coverage") == ["fail"]
    assert "no 32:bf16 or 32:fp16 entry" in messages(report, "coverage") and "only 32:fp32" in messages(report, "coverage")


def test_weights_dtype_is_the_majority_float_dtype(tmp_path):
    out = tmp_path / "m"
    write_transformer(out, head_dim=64, dtype=torch.bfloat16)
    write_weights(out / "transformer" / "extra.safetensors", torch.float32, numel=16)
    write_sla_pt(out / "sla_attention.pt", state={"64:bf16": trained_entry(64)})
    code, report = verify_json(out)
    assert code == 0 and statuses(report, "coverage") == ["ok"]


def test_snapshot_with_twin_equal_and_different(tmp_path):
    snap = tmp_path / "hub" / "models--me--sla-lora" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "README.md").write_text(SLA_CARD_LINE + "\n")
    write_sla_pt(snap / "sla_attention.pt")
    r = run_ckpt("convert", snap / "sla_attention.pt", snap / "sla_attention.safetensors")
    assert r.returncode == 0, r.stderr
    code, report = verify_json(snap)
    assert report["kind"] == "snapshot"
    assert code == 0 and statuses(report, "twin") == ["ok"]

    write_sla_pt(snap / "sla_attention.pt", state={"64:bf16": trained_entry(64, seed=7)})
    code, report = verify_json(snap)
    assert code == 1 and statuses(report, "twin") == ["fail"]
    assert "64:bf16 tensors differ" in messages(report, "twin")
    code, report = verify_json(snap / "sla_attention.safetensors")
    assert code == 1 and statuses(report, "twin") == ["fail"]


def test_only_the_twin_present_is_a_warning_with_the_convert_fix(tmp_path):
    src = tmp_path / "src"
    write_sla_pt(src / "sla_attention.pt")
    dst = tmp_path / "dst"
    dst.mkdir()
    assert run_ckpt("convert", src / "sla_attention.pt", dst / "sla_attention.safetensors").returncode == 0
    code, report = verify_json(dst)
    assert code == 0 and statuses(report, "file") == ["warn"]
    assert "sla-ckpt convert" in messages(report, "file")
    assert report["kind"] == "folder"


def test_reference_fallback_block_sizes_warn(tmp_path):
    settings = {"topk": 0.25, "feature_map": "softmax", "blkq": 32, "blkk": 32, "tie_feature_map_qk": True}
    write_sla_pt(tmp_path / "sla_attention.pt", settings=settings)
    code, report = verify_json(tmp_path / "sla_attention.pt")
    assert report["kind"] == "sla-file"
    assert code == 0 and statuses(report, "settings") == ["warn"]
    assert "dense attention" in messages(report, "settings")
    settings.update(blkq=128, blkk=64)
    write_sla_pt(tmp_path / "sla_attention.pt", settings=settings)
    code, report = verify_json(tmp_path / "sla_attention.pt")
    assert statuses(report, "settings") == ["ok"]


def test_unsupported_settings_fail(tmp_path):
    settings = {"topk": 0.2, "feature_map": "hedgehog", "blkq": 48, "blkk": 64, "tie_feature_map_qk": True}
    write_sla_pt(tmp_path / "sla_attention.pt", settings=settings)
    code, report = verify_json(tmp_path / "sla_attention.pt")
    assert code == 1
    assert "fail" in statuses(report, "settings") + statuses(report, "schema")


def test_values_non_finite_fail_and_all_zero_warn(tmp_path):
    bad = trained_entry(64)
    bad["proj_l.weight"][3, 5] = math.nan
    bad["proj_l.bias"][0] = math.inf
    write_sla_pt(tmp_path / "sla_attention.pt", state={"64:bf16": bad})
    code, report = verify_json(tmp_path / "sla_attention.pt")
    assert code == 1 and "fail" in statuses(report, "values")
    assert "2 non-finite values in 64:bf16" in messages(report, "values")

    zero = {"proj_l.weight": torch.zeros(64, 64), "proj_l.bias": torch.zeros(64)}
    write_sla_pt(tmp_path / "sla_attention.pt", state={"64:bf16": zero})
    code, report = verify_json(tmp_path / "sla_attention.pt")
    assert code == 0 and statuses(report, "values") == ["warn"]
    assert "untrained: freshly initialised" in messages(report, "values")


def test_half_precision_projection_values_are_judged(tmp_path):
    # proj_l stored in bf16 / fp16 (not SimpleTuner's float32): its values are still read, so a
    # trained projection is not called untrained, and an all-zero one still is.
    for dtype in (torch.bfloat16, torch.float16):
        trained = {k: v.to(dtype) for k, v in trained_entry(64).items()}
        write_sla_pt(tmp_path / "sla_attention.pt", state={"64:bf16": trained})
        code, report = verify_json(tmp_path / "sla_attention.pt")
        assert statuses(report, "values") == ["ok"], (dtype, messages(report, "values"))
        assert "untrained" not in messages(report, "values")

        zero = {"proj_l.weight": torch.zeros(64, 64, dtype=dtype), "proj_l.bias": torch.zeros(64, dtype=dtype)}
        write_sla_pt(tmp_path / "sla_attention.pt", state={"64:bf16": zero})
        code, report = verify_json(tmp_path / "sla_attention.pt")
        assert statuses(report, "values") == ["warn"], (dtype, messages(report, "values"))
        assert "untrained: freshly initialised" in messages(report, "values")

        bad = dict(trained)
        bad["proj_l.bias"] = bad["proj_l.bias"].clone()
        bad["proj_l.bias"][1] = math.nan
        write_sla_pt(tmp_path / "sla_attention.pt", state={"64:bf16": bad})
        code, report = verify_json(tmp_path / "sla_attention.pt")
        assert code == 1 and "1 non-finite values in 64:bf16" in messages(report, "values")


def test_regenerated_file_warns(tmp_path):
    write_sla_pt(tmp_path / "sla_attention.pt",
                 extension={"regenerated": True, "regenerated_from": "random normal", "variant": "all"})
    code, report = verify_json(tmp_path / "sla_attention.pt")
    assert code == 0 and statuses(report, "provenance") == ["warn"]
    assert "regenerated from random normal, not trained with the model" in messages(report, "provenance")
    assert statuses(report, "variant") == ["ok"]


def test_truncated_file_fails_the_read_check(tmp_path):
    ck = simpletuner_checkpoint(tmp_path, 3)
    data = (ck / "sla_attention.pt").read_bytes()
    (ck / "sla_attention.pt").write_bytes(data[: len(data) // 2])
    code, report = verify_json(ck)
    assert code == 1 and statuses(report, "read") == ["fail"]
    assert "E_" in messages(report, "read")


BROKEN_ENTRIES = [
    ("dangling-link", lambda p: p.symlink_to(p.parent / "blobs" / "missing"), "symbolic link to a missing file"),
    ("fifo", lambda p: os.mkfifo(p), "FIFO"),
    ("folder", lambda p: p.mkdir(), "folder"),
    ("link-to-device", lambda p: p.symlink_to("/dev/zero"), "character device"),
]


@pytest.mark.parametrize("name,make,words", BROKEN_ENTRIES, ids=[c[0] for c in BROKEN_ENTRIES])
def test_broken_sla_entry_in_a_folder_fails_not_missing(tmp_path, name, make, words):
    # A snapshot whose blob is missing (a dangling link), a FIFO, a folder or a device named
    # sla_attention.pt: a broken file, never "no SLA evidence" and never waiting on the FIFO.
    make(tmp_path / "sla_attention.pt")
    code, report = verify_json(tmp_path)
    assert code == 1 and report["sla_expected"] is True, report
    assert statuses(report, "file") == ["fail"] and words in messages(report, "file"), report
    # Beside a sound twin, the broken .pt is still what fails (SimpleTuner reads the .pt).
    ck = simpletuner_checkpoint(tmp_path / "with_twin", 5)
    run_ckpt("convert", ck / "sla_attention.pt", ck / "sla_attention.safetensors")
    (ck / "sla_attention.pt").unlink()
    make(ck / "sla_attention.pt")
    code, report = verify_json(ck)
    assert code == 1 and statuses(report, "file") == ["fail"], report


def test_simpletuner_state_dict_payload(tmp_path):
    # SimpleTuner stores module.state_dict(): an OrderedDict carrying _metadata.
    module = torch.nn.Module()
    module.proj_l = torch.nn.Linear(64, 64)
    state = {"64:bf16": module.state_dict()}
    assert hasattr(state["64:bf16"], "_metadata")
    write_sla_pt(tmp_path / "sla_attention.pt", state=state)
    code, report = verify_json(tmp_path / "sla_attention.pt")
    assert statuses(report, "read") == ["ok"], report


def test_unusable_input_exits_2(tmp_path):
    r = run_ckpt("verify", tmp_path / "missing")
    assert r.returncode == 2 and "no such file or folder" in r.stderr and r.stdout == ""
    (tmp_path / "notes.txt").write_text("x")
    assert run_ckpt("verify", tmp_path / "notes.txt").returncode == 2
    assert run_ckpt("verify").returncode == 2
    assert run_ckpt("verify", tmp_path, "--bogus").returncode == 2
    assert run_ckpt("verify", tmp_path, "--model-config", tmp_path / "nope.json").returncode == 2
    (tmp_path / "bad.json").write_text("{}")
    r = run_ckpt("verify", tmp_path, "--model-config", tmp_path / "bad.json")
    assert r.returncode == 2 and "E_CONFIG" in r.stderr


def test_help_has_an_example():
    r = run_ckpt("verify", "--help")
    assert r.returncode == 0 and "Example:" in r.stdout


def _rewrite_payload(ck, mutate):
    """Loads the checkpoint's file with torch, changes it the way another writer would, saves it back."""
    payload = torch.load(ck / "sla_attention.pt", weights_only=True)
    mutate(payload)
    torch.save(payload, ck / "sla_attention.pt")


def _simpletuner_test_settings(p):
    # SimpleTuner's own test payload: four settings keys, no tie_feature_map_qk.
    p["settings"] = {"topk": 0.2, "feature_map": "softmax", "blkq": 64, "blkk": 64}


FORWARD_COMPAT = [
    ("version_2", lambda p: p.__setitem__("version", 2), "version", ["payload version 2 is not 1", "read as version 1"]),
    ("no_version", lambda p: p.pop("version"), "version", ["no version", "read as version 1"]),
    ("extra_setting", lambda p: p["settings"].__setitem__("sparsity_schedule", "linear"), "settings/sparsity_schedule",
     ["unknown setting sparsity_schedule ignored", "runtime settings win"]),
    ("extra_tensor", lambda p: p["state"]["64:bf16"].__setitem__("proj_l.scale", torch.ones(64)),
     "state/64:bf16/proj_l.scale", ["unknown entry item proj_l.scale ignored", "strict=False"]),
    ("four_settings", _simpletuner_test_settings, "settings/tie_feature_map_qk",
     ["no tie_feature_map_qk", "the default True applies", "changes nothing for the parameter-free feature maps"]),
]


@pytest.mark.parametrize("name,mutate,where,words", FORWARD_COMPAT, ids=[c[0] for c in FORWARD_COMPAT])
def test_forward_compatible_payloads_are_warnings(tmp_path, name, mutate, where, words):
    ck = simpletuner_checkpoint(tmp_path / "output", 100, extension={"variant": "all", "writer": "test"})
    _rewrite_payload(ck, mutate)
    code, report = verify_json(ck)
    assert code == 0 and report["ok"] is True, report
    schema = [c for c in report["checks"] if c["id"] == "schema"]
    warns = [c for c in schema if c["status"] == "warn"]
    assert len(warns) == 1, schema
    assert warns[0]["where"].endswith(f"sla_attention.pt: {where}") and warns[0]["message"].startswith("W_COMPAT: ")
    for w in words:
        assert w in warns[0]["message"], (w, warns[0]["message"])
    assert "fail" not in statuses(report, "schema") and "ok" in statuses(report, "schema")
    # --strict: a warning is not a pass.
    code, report = verify_json(ck, "--strict")
    assert code == 1 and report["ok"] is False
    # inspect: valid (exit 0), no problems, the same warning in its own list.
    r = run_ckpt("inspect", ck / "sla_attention.pt", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    seen = json.loads(r.stdout)
    assert seen["problems"] == []
    assert [(w["code"], w["where"]) for w in seen["warnings"]] == [("W_COMPAT", where)]
    assert all(w in seen["warnings"][0]["message"] for w in words)
    if name == "four_settings":
        assert seen["settings"]["tie_feature_map_qk"] is True  # the default the message names
    if name == "extra_tensor":  # still summarised, never judged
        assert [t["name"] for t in seen["entries"][0]["tensors"]] == ["proj_l.weight", "proj_l.bias", "proj_l.scale"]
    assert seen["version"] == {"version_2": 2, "no_version": None}.get(name, 1)
    text = run_ckpt("inspect", ck / "sla_attention.pt")
    assert text.returncode == 0 and f"warning: W_COMPAT: " in text.stdout and "problems: none" in text.stdout


def test_forward_compat_does_not_hide_real_problems(tmp_path):
    """A version 2 file whose weight has the wrong shape still fails: only the version is a warning."""
    ck = simpletuner_checkpoint(tmp_path / "output", 100, extension={"variant": "all"})
    _rewrite_payload(ck, lambda p: (p.__setitem__("version", 2),
                                    p["state"]["64:bf16"].__setitem__("proj_l.bias", torch.zeros(63))))
    code, report = verify_json(ck)
    assert code == 1
    schema = {c["status"]: c for c in report["checks"] if c["id"] == "schema"}
    assert set(schema) == {"warn", "fail"} and "proj_l.bias" in schema["fail"]["where"]
    r = run_ckpt("inspect", ck / "sla_attention.pt", "--json")
    seen = json.loads(r.stdout)
    assert r.returncode == 1 and [p["where"] for p in seen["problems"]] == ["state/64:bf16/proj_l.bias"]
    assert [w["where"] for w in seen["warnings"]] == ["version"]
