"""The huggingface_hub calls beyond upload/download against `sla-ckpt hub serve` (issue 17, part 3).

The client is the oracle: refs, commits, tags, branch/tag/repo deletion, settings, listings and
super-squash go through HfApi (and `hf repos tag create`), and what they report is checked against
what the test made (commit ids from create_commit, file bytes it uploaded).
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_UPDATE_CHECK"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="hubsrv-hfhome-"))
os.environ.pop("HF_TOKEN", None)

import pytest  # noqa: E402
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download  # noqa: E402
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError  # noqa: E402
from huggingface_hub.utils import paginate  # noqa: E402
from huggingface_hub.utils._http import close_session  # noqa: E402

from hubserver_fixture import TOKEN, HubServer  # noqa: E402


@pytest.fixture
def srv(tmp_path):
    s = HubServer(tmp_path / "root")
    yield s
    close_session()
    if s.proc.poll() is None:
        assert s.stop() == 0, s.log_path.read_text()


def api_for(s, token=TOKEN):
    return HfApi(endpoint=s.url, token=token)


def commit_file(api, repo, path, data, revision=None, message=None):
    info = api.create_commit(repo, [CommitOperationAdd(path, data)], commit_message=message or f"add {path}",
                             revision=revision)
    return info.oid


def read(api, s, repo, path, revision, tmp_path):
    return Path(hf_hub_download(repo, path, revision=revision, endpoint=s.url, token=TOKEN,
                                cache_dir=tmp_path / "cache")).read_bytes()


def test_short_sha_revisions(srv, tmp_path):
    api = api_for(srv)
    repo = api.create_repo("u/short").repo_id
    first = commit_file(api, repo, "a.txt", b"one")
    second = commit_file(api, repo, "a.txt", b"two")
    assert first != second
    for n in (7, 12, 39):
        assert api.repo_info(repo, revision=first[:n]).sha == first
        assert read(api, srv, repo, "a.txt", first[:n], tmp_path) == b"one"
    assert api.repo_info(repo, revision=second[:7].upper().lower()).sha == second
    names = [e.path for e in api.list_repo_tree(repo, revision=first[:8])]
    assert "a.txt" in names
    # A prefix of no commit, and non-hex text, are unknown revisions.
    unknown = next(p for p in ("0000000", "fffffff", "1234567") if not first.startswith(p) and not second.startswith(p))
    with pytest.raises(RevisionNotFoundError):
        api.repo_info(repo, revision=unknown)
    with pytest.raises(RevisionNotFoundError):
        api.repo_info(repo, revision="zzzzzzz")


def test_refs_tags_and_branches(srv, tmp_path):
    api = api_for(srv)
    repo = api.create_repo("u/refs").repo_id
    v1 = commit_file(api, repo, "w.bin", b"v1")
    api.create_branch(repo, branch="dev")
    api.create_tag(repo, tag="v1.0", tag_message="first")
    with pytest.raises(HfHubHTTPError) as e:
        api.create_tag(repo, tag="v1.0")
    assert e.value.response.status_code == 409
    api.create_tag(repo, tag="v1.0", exist_ok=True)
    v2 = commit_file(api, repo, "w.bin", b"v2")
    api.create_tag(repo, tag="old", revision=v1[:7])
    pr = api.create_commit(repo, [CommitOperationAdd("p.txt", b"pr")], commit_message="pr", create_pr=True)

    refs = api.list_repo_refs(repo, include_pull_requests=True)
    branches = {r.name: r.target_commit for r in refs.branches}
    tags = {r.name: r.target_commit for r in refs.tags}
    assert branches == {"main": v2, "dev": v1}
    assert tags == {"v1.0": v1, "old": v1}
    assert {r.ref for r in refs.tags} == {"refs/tags/v1.0", "refs/tags/old"}
    assert [r.ref for r in refs.pull_requests] == [pr.pr_revision]
    assert refs.pull_requests[0].target_commit == pr.oid
    assert refs.converts == []
    assert api.list_repo_refs(repo).pull_requests is None

    # A tag stays where it was put; downloads through it see that commit's bytes.
    assert read(api, srv, repo, "w.bin", "v1.0", tmp_path) == b"v1"
    assert read(api, srv, repo, "w.bin", "main", tmp_path) == b"v2"
    assert api.repo_info(repo, revision="refs/tags/v1.0").sha == v1
    with pytest.raises(HfHubHTTPError):  # a tag is not a branch to commit to
        commit_file(api, repo, "x.txt", b"x", revision="v1.0")

    api.delete_tag(repo, tag="v1.0")
    with pytest.raises(RevisionNotFoundError):
        api.repo_info(repo, revision="v1.0")
    with pytest.raises(HfHubHTTPError) as e:
        api.delete_tag(repo, tag="v1.0")
    assert e.value.response.status_code == 404
    assert {r.name for r in api.list_repo_refs(repo).tags} == {"old"}

    api.delete_branch(repo, branch="dev")
    with pytest.raises(RevisionNotFoundError):
        api.repo_info(repo, revision="dev")
    with pytest.raises(HfHubHTTPError) as e:
        api.delete_branch(repo, branch="dev")
    assert e.value.response.status_code == 404
    with pytest.raises(HfHubHTTPError) as e:
        api.delete_branch(repo, branch="main")
    assert e.value.response.status_code == 403
    assert [r.name for r in api.list_repo_refs(repo).branches] == ["main"]
    # The commit a deleted ref named is still there by id.
    assert api.repo_info(repo, revision=v1).sha == v1

    # Without the token, nothing is changed.
    anon = api_for(srv, token=False)
    with pytest.raises(HfHubHTTPError):
        anon.create_tag(repo, tag="anon")
    with pytest.raises(HfHubHTTPError):
        anon.delete_tag(repo, tag="old")
    assert {r.name for r in api.list_repo_refs(repo).tags} == {"old"}


def test_hf_cli_tag_create(srv):
    api = api_for(srv)
    repo = api.create_repo("u/cli").repo_id
    v1 = commit_file(api, repo, "a.txt", b"1")
    commit_file(api, repo, "a.txt", b"2")
    env = dict(os.environ, HF_ENDPOINT=srv.url, HF_TOKEN=TOKEN)
    hf = str(Path(sys.executable).with_name("hf"))
    r = subprocess.run([hf, "repos", "tag", "create", repo, "release", "--revision", v1[:10], "-m", "cli tag"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert {t.name: t.target_commit for t in api.list_repo_refs(repo).tags} == {"release": v1}


def test_list_repo_commits(srv):
    api = api_for(srv)
    repo = api.create_repo("u/history").repo_id
    initial = api.repo_info(repo).sha
    made = [commit_file(api, repo, f"f{i}.txt", b"x" * i, message=f"step {i}") for i in range(5)]
    commits = api.list_repo_commits(repo)
    assert [c.commit_id for c in commits] == list(reversed(made)) + [initial]
    assert [c.title for c in commits[:5]] == [f"step {i}" for i in reversed(range(5))]
    assert all(c.authors for c in commits)
    assert commits[0].created_at >= commits[-1].created_at
    formatted = api.list_repo_commits(repo, formatted=True)
    assert formatted[0].formatted_title == "step 4"
    # From an older revision (short SHA), only its ancestors.
    assert [c.commit_id for c in api.list_repo_commits(repo, revision=made[1][:7])] == [made[1], made[0], initial]
    # Paged as the Hub pages: the client's paginate() follows the Link header to the end.
    url = f"{srv.url}/api/models/{repo}/commits/main"
    paged = [c["id"] for c in paginate(url, params={"limit": 2}, headers={"authorization": "Bearer " + TOKEN})]
    assert paged == list(reversed(made)) + [initial]
    with pytest.raises(RevisionNotFoundError):
        api.list_repo_commits(repo, revision="nope")


def test_delete_repo_and_settings(srv):
    api = api_for(srv)
    anon = api_for(srv, token=False)
    repo = api.create_repo("u/gone").repo_id
    commit_file(api, repo, "a.txt", b"a")
    assert anon.repo_info(repo).private is False
    api.update_repo_settings(repo, private=True)
    assert api.repo_info(repo).private is True
    with pytest.raises(RepositoryNotFoundError):
        anon.repo_info(repo)
    api.update_repo_settings(repo, visibility="public")
    assert anon.repo_info(repo).private is False
    with pytest.raises(HfHubHTTPError):
        anon.update_repo_settings(repo, private=True)
    assert api.repo_info(repo).private is False

    ds = api.create_repo("u/gone", repo_type="dataset").repo_id
    api.delete_repo(repo)
    assert not api.repo_exists(repo)
    assert api.repo_exists(ds, repo_type="dataset")  # same name, other type: untouched
    with pytest.raises(RepositoryNotFoundError):
        api.delete_repo(repo)
    api.delete_repo(repo, missing_ok=True)
    # The name can be used again, from scratch.
    api.create_repo(repo)
    assert [c.title for c in api.list_repo_commits(repo)] == ["initial commit"]
    api.delete_repo(ds, repo_type="dataset")
    assert not api.repo_exists(ds, repo_type="dataset")


def test_list_models(srv):
    api = api_for(srv)
    anon = api_for(srv, token=False)
    for name in ("alice/m1", "alice/m2", "bob/m3"):
        api.create_repo(name)
    api.create_repo("alice/secret", private=True)
    api.create_repo("alice/data", repo_type="dataset")
    assert sorted(m.id for m in api.list_models()) == ["alice/m1", "alice/m2", "alice/secret", "bob/m3"]
    assert sorted(m.id for m in anon.list_models()) == ["alice/m1", "alice/m2", "bob/m3"]
    assert sorted(m.id for m in api.list_models(author="bob")) == ["bob/m3"]
    assert sorted(m.id for m in api.list_models(search="m2")) == ["alice/m2"]
    assert len(list(api.list_models(limit=2))) == 2
    assert [d.id for d in api.list_datasets()] == ["alice/data"]
    head = api.repo_info("alice/m1").sha
    assert {m.id: m.sha for m in api.list_models(author="alice")}["alice/m1"] == head
    paged = [m["id"] for m in paginate(f"{srv.url}/api/models", params={"limit": 1}, headers={})]
    assert sorted(paged) == ["alice/m1", "alice/m2", "bob/m3"]


def test_super_squash_history(srv, tmp_path):
    api = api_for(srv)
    repo = api.create_repo("u/squash").repo_id
    for i in range(3):
        commit_file(api, repo, f"f{i}.txt", bytes([65 + i]) * 10)
    api.create_branch(repo, branch="keep")
    keep_head = api.repo_info(repo, revision="keep").sha
    before = sorted(e.path for e in api.list_repo_tree(repo, recursive=True))
    api.super_squash_history(repo, commit_message="squashed")
    commits = api.list_repo_commits(repo)
    assert [c.title for c in commits] == ["squashed"]
    assert sorted(e.path for e in api.list_repo_tree(repo, recursive=True)) == before
    assert read(api, srv, repo, "f2.txt", "main", tmp_path) == b"C" * 10
    assert api.repo_info(repo, revision="keep").sha == keep_head  # other branches keep their history
    assert len(api.list_repo_commits(repo, revision="keep")) == 4
    with pytest.raises(HfHubHTTPError) as e:
        api.super_squash_history(repo, branch="nope")
    assert e.value.response.status_code == 404
