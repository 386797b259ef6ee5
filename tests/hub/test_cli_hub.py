"""The Hub commands as a user meets them (issue 17, part 4), against `sla-ckpt hub serve` on loopback
with the real huggingface_hub client as the oracle of what the server holds."""
import json
import os
from pathlib import Path

import pytest

from conftest import HubServer, hub_env, run_ckpt, run_python, sha256_of, write_sla_pt


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = HubServer(tmp_path_factory.mktemp("hub") / "root")
    yield s
    s.stop()


def remote_files(server, tmp_path, repo, revision="main"):
    env = hub_env(server, tmp_path / "hf_oracle")
    return set(run_python("import json; from huggingface_hub import HfApi; "
                          f"print(json.dumps(HfApi().list_repo_files({repo!r}, revision={revision!r})))", env))


def simpletuner_output(out):
    """A SimpleTuner output folder: the LoRA at the top, training checkpoints with optimizer state below."""
    out.mkdir()
    (out / "pytorch_lora_weights.safetensors").write_bytes(b"\0" * 64)
    for step, seed in ((100, 1), (200, 2)):
        write_sla_pt(out / f"checkpoint-{step}" / "sla_attention.pt", seed=seed)
        (out / f"checkpoint-{step}" / "optimizer.bin").write_bytes(b"\1" * 4096)
    return out


# ---- exit codes: tested in test_hub_interop.py::test_errors_are_typed -----------------------------

# ---- push of a training output: checkpoints only when asked --------------------------------------

def test_push_leaves_checkpoints_out_unless_asked(server, tmp_path):
    out = simpletuner_output(tmp_path / "output")
    env = hub_env(server, tmp_path / "hf")
    r = run_ckpt("push", out, "alice/st", env=env)
    assert r.returncode == 0, r.stderr
    assert "--include-checkpoints" in r.stderr and "checkpoint-100/" in r.stderr and "checkpoint-200/" in r.stderr, r.stderr
    files = remote_files(server, tmp_path, "alice/st")
    assert {"pytorch_lora_weights.safetensors", "sla_attention.pt", "README.md"} <= files
    assert not [f for f in files if f.startswith("checkpoint-")], files
    r = run_ckpt("push", out, "alice/st-all", "--include-checkpoints", env=env)
    assert r.returncode == 0, r.stderr
    files = remote_files(server, tmp_path, "alice/st-all")
    assert {"checkpoint-100/optimizer.bin", "checkpoint-200/optimizer.bin", "checkpoint-200/sla_attention.pt"} <= files


def test_push_refuses_a_broken_sla_file_and_names_entries_left_out(server, tmp_path):
    out = simpletuner_output(tmp_path / "output")
    env = hub_env(server, tmp_path / "hf")
    # The folder's own file a dangling link (a copy whose blob is missing): refused, not replaced
    # unnoticed by the newest checkpoint's file.
    (out / "sla_attention.pt").symlink_to(out / "blobs" / "missing")
    r = run_ckpt("push", out, "alice/broken", env=env)
    assert r.returncode != 0 and "symbolic link to a missing file" in r.stderr, r.stderr
    # Other entries that are not regular files go unuploaded with a note naming them.
    (out / "sla_attention.pt").unlink()
    (out / "weights.safetensors").symlink_to(out / "blobs" / "gone")
    r = run_ckpt("push", out, "alice/noted", env=env)
    assert r.returncode == 0, r.stderr
    assert "left out 1 entry that is not a regular file (weights.safetensors)" in r.stderr, r.stderr
    assert "weights.safetensors" not in remote_files(server, tmp_path, "alice/noted")
    # A file name that is not UTF-8 (the Hub's paths are): refused before the repo is created.
    (out / "weights.safetensors").unlink()
    with open(os.path.join(os.fsencode(out), b"bad\xff.txt"), "wb") as f:
        f.write(b"x")
    r = run_ckpt("push", out, "alice/not-utf8", "--json", env=env)
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout)
    assert r.stderr.strip().splitlines()[-1] == "sla-ckpt push: file name is not UTF-8, which the Hub's paths must be: bad\\xff.txt", r.stderr
    assert run_python("import json; from huggingface_hub import HfApi; print(json.dumps("
                      "[HfApi().repo_exists(r) for r in ('alice/broken', 'alice/not-utf8', 'alice/noted')]))",
                      hub_env(server, tmp_path / "hf_oracle")) == [False, False, True]


# ---- push --revision on a new branch; --create-pr with no changes -------------------------------

def test_push_to_a_new_branch_creates_it(server, tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    env = hub_env(server, tmp_path / "hf")
    assert run_ckpt("push", d, "alice/br", env=env).returncode == 0
    (d / "extra.txt").write_text("on the branch\n")
    r = run_ckpt("push", d, "alice/br", "--revision", "feature-x", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["branch_created"] is True
    assert "created branch feature-x" in r.stderr, r.stderr
    assert "extra.txt" in remote_files(server, tmp_path, "alice/br", "feature-x")
    assert "extra.txt" not in remote_files(server, tmp_path, "alice/br", "main")
    # a second push to the now existing branch creates nothing
    (d / "extra.txt").write_text("changed\n")
    r = run_ckpt("push", d, "alice/br", "--revision", "feature-x", "--json", env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["branch_created"] is False, r.stderr


def test_create_pr_with_no_changes_says_no_pr_was_opened(server, tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    env = hub_env(server, tmp_path / "hf")
    assert run_ckpt("push", d, "alice/nopr", env=env).returncode == 0
    r = run_ckpt("push", d, "alice/nopr", "--create-pr", env=env)
    assert r.returncode == 0, r.stderr
    assert "no pull request was opened" in r.stdout, r.stdout
    r = run_ckpt("push", d, "alice/nopr", "--create-pr", "--json", env=env)
    summary = json.loads(r.stdout)
    assert summary["no_op"] is True and summary["pull_request_opened"] is False
    prs = run_python("import json; from huggingface_hub import HfApi; "
                     "print(json.dumps(len(HfApi().list_repo_refs('alice/nopr', include_pull_requests=True).pull_requests)))",
                     hub_env(server, tmp_path / "hf_oracle"))
    assert prs == 0


# ---- pull judges only its own files; an --include that matches nothing ---------------------------

def test_pull_verifies_only_the_files_it_pulled(server, tmp_path):
    from conftest import SLA_CARD_LINE
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "README.md").write_text("# model\n\n" + SLA_CARD_LINE + "\n")
    env = hub_env(server, tmp_path / "hf")
    # Uploaded by the Python client: an SLA card and no sla_attention.pt, so the whole repo fails verify.
    run_python("from huggingface_hub import HfApi; api = HfApi(); api.create_repo('alice/pv', exist_ok=True); "
               f"api.upload_folder(folder_path={str(d)!r}, repo_id='alice/pv'); print(1)", env)
    # Another client puts the card into the shared snapshot folder ...
    run_python("import json; from huggingface_hub import hf_hub_download; "
               "print(json.dumps(hf_hub_download('alice/pv', 'README.md')))", env)
    # ... our pull of config.json alone is judged on config.json alone.
    r = run_ckpt("pull", "alice/pv", "--include", "config.json", "--json", env=env)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert [f["path"] for f in summary["files"]] == ["config.json"]
    assert Path(summary["path"], "README.md").exists()  # the other client's file is still there
    assert summary["verify"]["ok"] is True and summary["verify"]["path"] == summary["path"]
    # The whole repo does fail (the oracle that the card above is judged when pulled).
    r = run_ckpt("pull", "alice/pv", env=env)
    assert r.returncode == 1 and "sla_attention.pt" in r.stderr, r.stderr
    assert "sla-ckpt-pull-" not in r.stderr, r.stderr  # the report names the real folder


def test_pull_include_that_matches_nothing_says_so(server, tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    env = hub_env(server, tmp_path / "hf")
    assert run_ckpt("push", d, "alice/nomatch", env=env).returncode == 0
    r = run_ckpt("pull", "alice/nomatch", "--include", "nomatch*", env=env)
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("sla-ckpt pull: ") and "no file" in lines[0] and "nomatch*" in lines[0], r.stderr
    assert r.stdout == ""


# ---- the model card: text kept, one SLA section, tags merged -------------------------------------

def test_model_card_keeps_text_replaces_section_and_merges_tags(server, tmp_path):
    from conftest import SLA_CARD_LINE
    env = hub_env(server, tmp_path / "hf")
    card = tmp_path / "card"
    card.mkdir()
    # The repo's card, as SimpleTuner writes one: front matter with tags, text, its bare SLA line.
    (card / "README.md").write_text("---\nlicense: apache-2.0\ntags:\n- lora\n- flux\n---\n# My LoRA\n\nTrained with care.\n\n"
                                    + SLA_CARD_LINE + "\n\n## Usage\n\nLoad it.\n")
    run_python("from huggingface_hub import HfApi; api = HfApi(); api.create_repo('alice/card2', exist_ok=True); "
               f"api.upload_folder(folder_path={str(card)!r}, repo_id='alice/card2'); print(1)", env)
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"attention_head_dim": 128, "num_attention_heads": 8}))
    write_sla_pt(d / "sla_attention.pt", seed=1)
    read_card = ("import json; from huggingface_hub import ModelCard; c = ModelCard.load('alice/card2'); "
                 "print(json.dumps({'text': c.text, 'tags': c.data.tags, 'license': c.data.license}))")
    for seed in (1, 2):  # the second push finds our section in the card and replaces it
        write_sla_pt(d / "sla_attention.pt", seed=seed)
        r = run_ckpt("push", d, "alice/card2", env=env)
        assert r.returncode == 0, r.stderr
        got = run_python(read_card, hub_env(server, tmp_path / f"hf_py{seed}"))
        assert got["text"].count(SLA_CARD_LINE) == 1, got["text"]
        assert got["text"].count("<!-- sla-toolkit:sla-section:begin -->") == 1, got["text"]
        assert "# My LoRA\n\nTrained with care.\n" in got["text"] and "## Usage\n\nLoad it.\n" in got["text"], got["text"]
        assert got["tags"] == ["lora", "flux", "sla", "sparse-linear-attention"] and got["license"] == "apache-2.0", got
    assert not (d / "README.md").exists()  # the local folder is never modified


def test_model_card_tags_merge_into_a_flow_list(server, tmp_path):
    from conftest import SLA_CARD_LINE
    env = hub_env(server, tmp_path / "hf")
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"attention_head_dim": 128, "num_attention_heads": 8}))
    write_sla_pt(d / "sla_attention.pt")
    (d / "README.md").write_text("---\ntags: [sla, 'x']\n---\nHello.\n")
    assert run_ckpt("push", d, "alice/card3", env=env).returncode == 0
    got = run_python("import json; from huggingface_hub import ModelCard; c = ModelCard.load('alice/card3'); "
                     "print(json.dumps({'text': c.text, 'tags': c.data.tags}))", hub_env(server, tmp_path / "hf_py"))
    assert got["tags"] == ["sla", "x", "sparse-linear-attention"], got
    assert got["text"].startswith("Hello.\n") and got["text"].count(SLA_CARD_LINE) == 1, got["text"]


# ---- progress without a terminal ------------------------------------------------------------------

def test_progress_lines_without_a_terminal_end_at_100(server, tmp_path):
    from conftest import write_big
    d = tmp_path / "m"
    d.mkdir()
    write_big(d / "weights.bin", 24 * 1000 * 1000 + 3)  # LFS: hashed, then uploaded
    env = hub_env(server, tmp_path / "hf", SLA_CKPT_PROGRESS_INTERVAL_S="0.001")
    r = run_ckpt("push", d, "alice/progress", env=env)
    assert r.returncode == 0, r.stderr

    def bar_lines(stderr, label):
        return [l for l in stderr.splitlines() if l.startswith(label + ": ") and "%" in l]

    hashed, pushed = bar_lines(r.stderr, "hash alice/progress"), bar_lines(r.stderr, "push alice/progress")
    assert hashed and pushed, r.stderr
    assert hashed[-1].split()[2] == "100.0%" and pushed[-1].split()[2] == "100.0%", r.stderr
    assert all("\r" not in l for l in r.stderr.splitlines())  # plain lines in a log
    r = run_ckpt("pull", "alice/progress", "--local-dir", tmp_path / "local", env=env)
    assert r.returncode == 0, r.stderr
    pulled = bar_lines(r.stderr, "pull alice/progress")
    assert pulled and pulled[-1].split()[2] == "100.0%", r.stderr
    # The default interval (5 s) keeps a short transfer quiet.
    quiet = hub_env(server, tmp_path / "hf2")
    r = run_ckpt("pull", "alice/progress", "--local-dir", tmp_path / "local2", env=quiet)
    assert r.returncode == 0 and not bar_lines(r.stderr, "pull alice/progress"), r.stderr
    assert sha256_of(tmp_path / "local2" / "weights.bin") == sha256_of(d / "weights.bin")
