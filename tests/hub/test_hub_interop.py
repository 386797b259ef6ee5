"""sla-ckpt push/pull against `sla-ckpt hub serve` on loopback, with the real huggingface_hub
(Xet disabled) as the oracle: byte-identical round trips both ways, a shared cache, fault
injection, the SLA guarantees."""
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import (SLA_CARD_LINE, HubServer, hub_env, run_ckpt, run_python, sha256_of, tree_bytes, write_big,
                      write_sla_pt)

BIG = 100 * 1000 * 1000 + 17  # at least 100 MB, not a multiple of any part size


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = HubServer(tmp_path_factory.mktemp("hub") / "root")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A SimpleTuner-like checkpoint folder: a >= 100 MB weights file, small regular files, sla_attention.pt."""
    d = tmp_path_factory.mktemp("ckpt") / "checkpoint-500"
    d.mkdir()
    write_big(d / "model.safetensors.bin", BIG)
    (d / "training_state.json").write_text(json.dumps({"global_step": 500, "epoch": 1}))
    (d / "config.json").write_text(json.dumps({"attention_head_dim": 128, "num_attention_heads": 8}))
    (d / "sub").mkdir()
    (d / "sub" / "notes with space.txt").write_text("hello\n")
    (d / "empty.txt").write_text("")
    write_sla_pt(d / "sla_attention.pt")
    (d / "README.md").write_text("---\nlicense: apache-2.0\n---\n# my model\n")
    return d


def python_snapshot(env, repo, **kw):
    args = ", ".join(f"{k}={v!r}" for k, v in kw.items())
    return run_python(f"import json; from huggingface_hub import snapshot_download; "
                      f"print(json.dumps(snapshot_download({repo!r}{', ' + args if args else ''})))", env)


def test_push_then_python_snapshot_download_is_identical(server, checkpoint, tmp_path):
    env = hub_env(server, tmp_path / "hf_ours")
    before = tree_bytes(checkpoint)
    r = run_ckpt("push", checkpoint, "alice/ckpt", "--json", env=env)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert len(summary["commit"]) == 40
    modes = {f["path"]: f["mode"] for f in summary["files"]}
    assert modes["model.safetensors.bin"] == "lfs" and modes["config.json"] == "regular"
    assert tree_bytes(checkpoint) == before  # the local folder is never modified

    snap = python_snapshot(hub_env(server, tmp_path / "hf_python"), "alice/ckpt")
    got = tree_bytes(snap)
    for rel, digest in before.items():
        if rel != "README.md":
            assert got[rel] == digest, rel
    card = Path(snap, "README.md").read_text()
    # the card keeps its text; our tags are merged into its front matter (issue 17, part 4)
    assert card.startswith("---\nlicense: apache-2.0\ntags:\n- sla\n- sparse-linear-attention\n---\n# my model\n")
    assert SLA_CARD_LINE in card and "| blkq | 64 |" in card and "| variant | all" in card
    assert "128:bf16" in card

    # Pushing again changes nothing and the card keeps a single SLA section.
    r = run_ckpt("push", checkpoint, "alice/ckpt", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["no_op"] is True


def test_python_upload_folder_then_our_pull_is_identical(server, checkpoint, tmp_path):
    py_env = hub_env(server, tmp_path / "hf_python")
    run_python("import json; from huggingface_hub import HfApi; api = HfApi(); "
               "api.create_repo('alice/from-python', exist_ok=True); "
               f"c = api.upload_folder(folder_path={str(checkpoint)!r}, repo_id='alice/from-python'); "
               "print(json.dumps(c.oid))", py_env)
    env = hub_env(server, tmp_path / "hf_ours")
    local = tmp_path / "local"
    r = run_ckpt("pull", "alice/from-python", "--local-dir", local, "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert tree_bytes(local) == tree_bytes(checkpoint)
    r = run_ckpt("pull", "alice/from-python", env=env)
    assert r.returncode == 0, r.stderr
    snap = Path(r.stdout.strip())
    assert tree_bytes(snap) == tree_bytes(checkpoint)
    # local-dir metadata as Python writes it: "<commit>\n<etag>\n<float>\n"
    meta = (local / ".cache/huggingface/download/model.safetensors.bin.metadata").read_text().split("\n")
    assert len(meta[0]) == 40 and meta[1] == sha256_of(checkpoint / "model.safetensors.bin") and float(meta[2]) > 0


def test_our_cache_is_used_by_python_offline(server, checkpoint, tmp_path):
    env = hub_env(server, tmp_path / "hf")
    r = run_ckpt("pull", "alice/from-python", "--json", env=env)
    assert r.returncode == 0, r.stderr
    files = [f["path"] for f in json.loads(r.stdout)["files"]]
    offline = hub_env(server, tmp_path / "hf", HF_HUB_OFFLINE=1)
    got = run_python("import json; from huggingface_hub import hf_hub_download, snapshot_download; "
                     f"files = {files!r}; "
                     "print(json.dumps({'files': {f: hf_hub_download('alice/from-python', f) for f in files}, "
                     "'snap': snapshot_download('alice/from-python')}))", offline)
    for f in files:
        if f != ".gitattributes":  # made by the server
            assert sha256_of(got["files"][f]) == sha256_of(checkpoint / f)
    assert tree_bytes(got["snap"]) == tree_bytes(checkpoint)


def test_python_downloads_are_reused_without_fetching(server, checkpoint, tmp_path):
    hf_home = tmp_path / "hf"
    python_snapshot(hub_env(server, hf_home), "alice/from-python")
    mark = len(server.log_lines())
    r = run_ckpt("pull", "alice/from-python", "--json", env=hub_env(server, hf_home))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["downloaded_files"] == 0 and summary["reused_files"] == len(summary["files"])
    new = server.log_lines()[mark:]
    assert not [l for l in new if "/resolve/" in l], new
    # Python reused what we pulled too: a local-dir pull copies from the cache, no GET of content.
    mark = len(server.log_lines())
    r = run_ckpt("pull", "alice/from-python", "--local-dir", tmp_path / "ld", env=hub_env(server, hf_home))
    assert r.returncode == 0, r.stderr
    assert not [l for l in server.log_lines()[mark:] if "/resolve/" in l]
    assert tree_bytes(tmp_path / "ld") == tree_bytes(checkpoint)


# ---- fault injection --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_repo(tmp_path_factory):
    """A 6 MB file and a regular file, uploaded once per fault server by Python."""
    d = tmp_path_factory.mktemp("small")
    write_big(d / "weights.bin", 6 * 1000 * 1000 + 3)
    (d / "config.json").write_text(json.dumps({"hidden_size": 64}))
    return d


def fault_server(tmp_path, small_repo, faults):
    s = HubServer(tmp_path / "root", faults=faults)
    run_python("import json; from huggingface_hub import HfApi; api = HfApi(); api.create_repo('alice/f', exist_ok=True); "
               f"api.upload_folder(folder_path={str(small_repo)!r}, repo_id='alice/f'); print(1)",
               hub_env(s, tmp_path / "hf_up"))
    return s


def git_blob_sha1(path):
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def assert_nothing_corrupt(hf_home, local, small_repo):
    """Every file that landed is right: a cache blob hashes to its own name (sha256 or git sha1), a
    local-dir file equals the uploaded one; no temp files remain."""
    for p in Path(hf_home).rglob("*"):
        assert not p.name.endswith(".incomplete"), p
        if p.is_file() and p.parent.name == "blobs":
            assert p.name in (sha256_of(p), git_blob_sha1(p)), p
    if Path(local).exists():
        for p in Path(local).rglob("*"):
            assert not p.name.endswith(".incomplete"), p
            if p.is_file() and ".cache" not in p.parts and p.name != ".gitattributes":
                assert sha256_of(p) == sha256_of(small_repo / p.relative_to(local)), p


RETRIED = {
    "drop": ["drop:path=weights.bin,after=1M"],
    "429": ["status:path=weights.bin,code=429,retry_after=1"],
    "truncate": ["truncate:path=weights.bin,after=2M"],
    "ignore-range": ["drop:path=weights.bin,after=3M", "ignore-range:path=weights.bin"],
}


@pytest.mark.parametrize("kind", sorted(RETRIED))
@pytest.mark.parametrize("mode", ["cache", "local-dir"])
def test_fault_is_retried_and_the_file_is_intact(tmp_path, small_repo, kind, mode):
    s = fault_server(tmp_path, small_repo, RETRIED[kind])
    try:
        local = tmp_path / "local"
        extra = ["--local-dir", local] if mode == "local-dir" else []
        r = run_ckpt("pull", "alice/f", *extra, "--json", env=hub_env(s, tmp_path / "hf"))
        assert r.returncode == 0, r.stderr
        path = Path(json.loads(r.stdout)["path"])
        assert sha256_of(path / "weights.bin") == sha256_of(small_repo / "weights.bin")
        assert_nothing_corrupt(tmp_path / "hf", local, small_repo)
        gets = [l for l in s.log_lines() if l.startswith("hub serve: GET") and "weights.bin" in l]
        assert len(gets) >= 2, gets  # the fault happened and a second GET fixed it
    finally:
        s.stop()


FAILED = {
    "500": (["status:path=weights.bin,code=500,times=always"], "HTTP 500"),
    "wrong sha256": (["corrupt:path=weights.bin,times=always"], "E_HUB_INTEGRITY"),
}


@pytest.mark.parametrize("kind", sorted(FAILED))
@pytest.mark.parametrize("mode", ["cache", "local-dir"])
def test_fault_fails_clearly_and_nothing_corrupt_lands(tmp_path, small_repo, kind, mode):
    faults, message = FAILED[kind]
    s = fault_server(tmp_path, small_repo, faults)
    try:
        local = tmp_path / "local"
        extra = ["--local-dir", local] if mode == "local-dir" else []
        r = run_ckpt("pull", "alice/f", *extra, env=hub_env(s, tmp_path / "hf"))
        assert r.returncode == 1
        assert message in r.stderr and "weights.bin" in r.stderr, r.stderr
        assert_nothing_corrupt(tmp_path / "hf", local, small_repo)
        assert not (local / "weights.bin").exists()
    finally:
        s.stop()


# ---- the SLA guarantees -----------------------------------------------------------------------------

def test_push_refuses_an_sla_folder_without_the_file(server, tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    (d / "README.md").write_text("# lora\n\n" + SLA_CARD_LINE + "\n")
    (d / "config.json").write_text("{}")
    r = run_ckpt("push", d, "alice/refused", env=hub_env(server, tmp_path / "hf"))
    assert r.returncode == 1
    assert "sla_attention.pt" in r.stderr and "--sla-from" in r.stderr, r.stderr
    assert not [l for l in server.log_lines() if "alice/refused" in l]  # nothing was sent


def test_lora_output_gets_the_newest_checkpoints_file(server, tmp_path):
    from safetensors.torch import save_file
    import torch
    out = tmp_path / "output"
    out.mkdir()
    save_file({"lora.down.weight": torch.zeros(4, 64, dtype=torch.bfloat16)}, str(out / "pytorch_lora_weights.safetensors"))
    for step, seed in ((100, 1), (1000, 2), (200, 3)):
        write_sla_pt(out / f"checkpoint-{step}" / "sla_attention.pt", seed=seed)
    env = hub_env(server, tmp_path / "hf")
    r = run_ckpt("push", out, "alice/lora", "--exclude", "checkpoint-*", env=env)
    assert r.returncode == 0, r.stderr
    assert "checkpoint-1000" in r.stderr, r.stderr
    snap = python_snapshot(hub_env(server, tmp_path / "hf_py"), "alice/lora")
    assert sorted(tree_bytes(snap)) == ["README.md", "pytorch_lora_weights.safetensors", "sla_attention.pt"]
    assert sha256_of(Path(snap, "sla_attention.pt")) == sha256_of(out / "checkpoint-1000" / "sla_attention.pt")
    assert SLA_CARD_LINE in Path(snap, "README.md").read_text()
    assert not (out / "README.md").exists() and not (out / "sla_attention.pt").exists()
    # and our pull of it verifies
    r = run_ckpt("pull", "alice/lora", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["verify"]["ok"] is True


def test_pushed_card_section_is_replaced_not_duplicated(server, checkpoint, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(checkpoint, d, ignore=shutil.ignore_patterns("model.safetensors.bin"))
    env = hub_env(server, tmp_path / "hf")
    assert run_ckpt("push", d, "alice/card", env=env).returncode == 0
    snap = python_snapshot(hub_env(server, tmp_path / "hf_py"), "alice/card")
    card = Path(snap, "README.md").read_text()
    (d / "README.md").write_text(card)  # the card now already carries the section
    write_sla_pt(d / "sla_attention.pt", seed=9)
    r = run_ckpt("push", d, "alice/card", env=env)
    assert r.returncode == 0, r.stderr
    card = Path(python_snapshot(hub_env(server, tmp_path / "hf_py2"), "alice/card"), "README.md").read_text()
    assert card.count(SLA_CARD_LINE) == 1 and card.count("sla-toolkit:sla-section:begin") == 1


def test_pull_of_an_sla_model_without_the_file_fails(server, tmp_path):
    d = tmp_path / "nofile"
    d.mkdir()
    (d / "README.md").write_text("# model\n\n" + SLA_CARD_LINE + "\n")
    run_python("import json; from huggingface_hub import HfApi; api = HfApi(); api.create_repo('alice/nofile', exist_ok=True); "
               f"api.upload_folder(folder_path={str(d)!r}, repo_id='alice/nofile'); print(1)",
               hub_env(server, tmp_path / "hf_up"))
    r = run_ckpt("pull", "alice/nofile", env=hub_env(server, tmp_path / "hf"))
    assert r.returncode == 1
    assert "sla_attention.pt is missing" in r.stderr, r.stderr


def test_dry_run_lists_modes_and_writes_nothing(server, checkpoint, tmp_path):
    r = run_ckpt("push", checkpoint, "alice/dry", "--dry-run", "--json", env=hub_env(server, tmp_path / "hf"))
    assert r.returncode == 0, r.stderr
    files = {f["path"]: f["mode"] for f in json.loads(r.stdout)["files"]}
    assert set(files.values()) <= {"regular", "lfs", "unknown"} and "sla_attention.pt" in files
    assert not [l for l in server.log_lines() if "alice/dry" in l and ("/commit/" in l or "/repos/create" in l)]


def test_pr_push_and_pull_by_pr_ref(server, checkpoint, tmp_path):
    d = tmp_path / "pr"
    shutil.copytree(checkpoint, d, ignore=shutil.ignore_patterns("model.safetensors.bin"))
    (d / "extra.txt").write_text("in the PR\n")
    env = hub_env(server, tmp_path / "hf")
    r = run_ckpt("push", d, "alice/ckpt", "--create-pr", "--json", env=env)
    assert r.returncode == 0, r.stderr
    rev = json.loads(r.stdout)["revision"]
    assert rev.startswith("refs/pr/")
    r = run_ckpt("pull", "alice/ckpt", "--revision", rev, "--include", "*.txt", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert Path(json.loads(r.stdout)["path"], "extra.txt").read_text() == "in the PR\n"
    assert (tmp_path / "hf" / "hub" / "models--alice--ckpt" / "refs" / "refs" / "pr").is_dir()


def test_errors_are_typed(server, tmp_path):
    # A repo or revision that does not exist, a refused token and an endpoint nobody answers are
    # "the input cannot be used": exit 2 (README's exit-code table), one line naming which.
    env = hub_env(server, tmp_path / "hf")
    r = run_ckpt("pull", "alice/does-not-exist", env=env)
    assert r.returncode == 2 and "RepoNotFound" in r.stderr, r.stderr
    r = run_ckpt("pull", "alice/ckpt", "--revision", "nope", env=env)
    assert r.returncode == 2 and "RevisionNotFound" in r.stderr, r.stderr
    bad = hub_env(server, tmp_path / "hf", HF_TOKEN="wrong")
    r = run_ckpt("pull", "alice/ckpt", env=bad)
    assert r.returncode == 2 and "HTTP 401" in r.stderr and "E_HUB_AUTH" in r.stderr, r.stderr
    d = tmp_path / "up"
    d.mkdir()
    (d / "config.json").write_text("{}")
    r = run_ckpt("push", d, "alice/denied", env=bad)
    assert r.returncode == 2 and "E_HUB_AUTH" in r.stderr, r.stderr
    # A port nothing listens on: bind one, note it, close it.
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gone = dict(env, HF_ENDPOINT=f"http://127.0.0.1:{port}")
    r = run_ckpt("pull", "alice/ckpt", env=gone, timeout=120)
    assert r.returncode == 2 and "E_HUB_UNREACHABLE" in r.stderr, r.stderr
