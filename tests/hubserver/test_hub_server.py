"""`sla-ckpt hub serve` against the real huggingface_hub client (the oracle) and raw HTTP.

The client reads HF_* settings at import time, so Xet is disabled and HF_HOME pointed at a temp
folder before the import; the endpoint and token are passed per call (the server port is only known
at run time). One test runs the client in a subprocess configured purely through HF_ENDPOINT.
"""
import hashlib
import http.client
import json
import os
import subprocess
import sys
import tempfile

os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="hubsrv-hfhome-"))
os.environ.pop("HF_TOKEN", None)

import pytest  # noqa: E402
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_download, snapshot_download  # noqa: E402
from huggingface_hub.errors import (  # noqa: E402
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from huggingface_hub.utils._http import close_session  # noqa: E402

from hubserver_fixture import TOKEN, HubServer  # noqa: E402

MiB = 1 << 20


@pytest.fixture
def server(tmp_path):
    servers = []

    def start(*args, root=None, token=TOKEN):
        s = HubServer(root or tmp_path / "root", *args, token=token)
        servers.append(s)
        return s

    yield start
    close_session()  # pooled keep-alive connections would hold the server's shutdown for a moment
    for s in servers:
        if s.proc.poll() is None:
            assert s.stop() == 0, s.log_path.read_text()


def api_for(srv):
    return HfApi(endpoint=srv.url, token=TOKEN)


def make_folder(path, big_size=11 * MiB):
    """README, regular files (one in a sub-folder), a binary .bin and an LFS-sized file."""
    files = {
        "README.md": b"---\nlicense: mit\n---\n# test model\n",
        "config.json": json.dumps({"hidden": 8}).encode(),
        "sub/deep/notes.txt": b"notes " * 100,
        "weights.bin": bytes(range(256)) * 64,
        "large.safetensors": os.urandom(big_size),
    }
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return files


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def git_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_upload_folder_then_download_identical_bytes(server, tmp_path):
    srv = server()
    api = api_for(srv)
    url = api.create_repo("alice/m1")
    assert str(url) == f"{srv.url}/alice/m1"
    assert str(api.create_repo("alice/m1", exist_ok=True)) == f"{srv.url}/alice/m1"
    with pytest.raises(HfHubHTTPError) as exists:
        api.create_repo("alice/m1")
    assert exists.value.response.status_code == 409

    files = make_folder(tmp_path / "up")
    info = api.upload_folder(folder_path=tmp_path / "up", repo_id="alice/m1")
    assert len(info.oid) == 40 and info.commit_url == f"{srv.url}/alice/m1/commit/{info.oid}"
    assert sorted(api.list_repo_files("alice/m1")) == sorted([".gitattributes", *files])

    # Upload modes the server chose, seen through the tree: LFS for the binary and the large file.
    tree = {e.path: e for e in api.list_repo_tree("alice/m1", recursive=True) if hasattr(e, "size")}
    assert tree["large.safetensors"].lfs.sha256 == sha256(files["large.safetensors"])
    assert tree["weights.bin"].lfs is not None
    assert tree["config.json"].lfs is None and tree["config.json"].blob_id == git_sha1(files["config.json"])

    cache = tmp_path / "cache"
    snap = snapshot_download("alice/m1", endpoint=srv.url, token=TOKEN, cache_dir=cache)
    for name, data in files.items():
        assert (tmp_path / "cache" / snap / name).read_bytes() == data, name
    # Cache blobs are named by the Hub's etags: sha256 for LFS files, git-sha1 for regular ones.
    blobs = {p.name for p in (cache / "models--alice--m1" / "blobs").iterdir()}
    assert sha256(files["large.safetensors"]) in blobs and git_sha1(files["config.json"]) in blobs

    local = tmp_path / "local"
    path = hf_hub_download("alice/m1", "sub/deep/notes.txt", endpoint=srv.url, token=TOKEN, local_dir=local)
    assert open(path, "rb").read() == files["sub/deep/notes.txt"]

    infos = {i.path: i for i in api.get_paths_info("alice/m1", ["large.safetensors", "sub/deep", "missing.txt"])}
    assert set(infos) == {"large.safetensors", "sub/deep"}
    assert infos["large.safetensors"].lfs.sha256 == sha256(files["large.safetensors"])

    # Uploading the same folder again is a no-op commit on the client side (preupload oids match).
    again = api.upload_folder(folder_path=tmp_path / "up", repo_id="alice/m1")
    assert again.oid == info.oid


def test_blob_url_reports_the_file_and_xet_uploads_are_refused(server, tmp_path):
    """The blob URL an LFS resolve redirects to answers the same identity (huggingface_hub 2 follows
    same-origin redirects and reads it there), bound to its commit by the signature. A client with
    hf_xet (its default, here without HF_HUB_DISABLE_XET) cannot upload LFS files: the refusal names
    the fix, in the answer and in the server's log."""
    srv = server()
    api = api_for(srv)
    api.create_repo("alice/blob")
    data = os.urandom(11 * MiB)
    commit = api.upload_file(path_or_fileobj=data, path_in_repo="w.safetensors", repo_id="alice/blob").oid
    blob = srv.content_url("alice/blob", "w.safetensors")
    assert blob.startswith("/_blob/")
    status, headers, _ = srv.request("HEAD", blob, auth=False)
    assert status == 200, headers
    assert headers["x-repo-commit"] == commit
    assert headers["x-linked-etag"] == headers["etag"] == f'"{sha256(data)}"'
    assert headers["x-linked-size"] == headers["content-length"] == str(len(data))
    other = blob.replace(f"commit={commit}", "commit=" + "0" * 40)
    assert other != blob and srv.request("HEAD", other, auth=False)[0] == 403

    status, headers, body = srv.request("GET", "/api/models/alice/blob/xet-write-token/main")
    assert status == 501 and "HF_HUB_DISABLE_XET=1" in json.loads(body)["error"]
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_XET"}
    env.update(HF_ENDPOINT=srv.url, HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "home"))
    script = ("from huggingface_hub import HfApi\n"
              "HfApi().upload_file(path_or_fileobj=b'\\0' * (11 << 20), path_in_repo='x.bin', repo_id='alice/blob')\n")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "xet-write-token" in out.stderr, out.stderr[-2000:]
    assert "set HF_HUB_DISABLE_XET=1" in srv.log_path.read_text()
    assert api.list_repo_files("alice/blob") == [".gitattributes", "w.safetensors"]


def test_pull_request_revision_by_commit_and_parent_check(server, tmp_path):
    srv = server()
    api = api_for(srv)
    api.create_repo("alice/pr", repo_type="dataset")
    first = api.upload_file(path_or_fileobj=b"v1", path_in_repo="data.txt", repo_id="alice/pr", repo_type="dataset")
    pr = api.upload_file(path_or_fileobj=b"v2 in a PR", path_in_repo="data.txt", repo_id="alice/pr",
                         repo_type="dataset", create_pr=True)
    assert pr.pr_revision == "refs/pr/1" and pr.pr_url == f"{srv.url}/datasets/alice/pr/discussions/1"
    kw = dict(repo_type="dataset", endpoint=srv.url, token=TOKEN, cache_dir=tmp_path / "c")
    assert open(hf_hub_download("alice/pr", "data.txt", revision="refs/pr/1", **kw), "rb").read() == b"v2 in a PR"
    assert open(hf_hub_download("alice/pr", "data.txt", **kw), "rb").read() == b"v1"
    assert open(hf_hub_download("alice/pr", "data.txt", revision=first.oid, **kw), "rb").read() == b"v1"
    assert api.repo_info("alice/pr", repo_type="dataset", revision="refs/pr/1").sha == pr.oid

    second = api.create_commit("alice/pr", repo_type="dataset", commit_message="more",
                               operations=[CommitOperationAdd("more.txt", b"more"), CommitOperationDelete("data.txt")],
                               parent_commit=first.oid)
    assert api.list_repo_files("alice/pr", repo_type="dataset") == [".gitattributes", "more.txt"]
    with pytest.raises(HfHubHTTPError) as stale:
        api.create_commit("alice/pr", repo_type="dataset", commit_message="stale",
                          operations=[CommitOperationAdd("x.txt", b"x")], parent_commit=first.oid)
    assert stale.value.response.status_code == 412
    with pytest.raises(EntryNotFoundError):
        api.create_commit("alice/pr", repo_type="dataset", commit_message="bad delete",
                          operations=[CommitOperationDelete("nope.txt")], parent_commit=second.oid)
    api.create_branch("alice/pr", repo_type="dataset", branch="dev/x", revision=first.oid)
    api.create_branch("alice/pr", repo_type="dataset", branch="dev/x", exist_ok=True)
    dev = api.upload_file(path_or_fileobj=b"dev", path_in_repo="dev.txt", repo_id="alice/pr", repo_type="dataset",
                          revision="dev/x")
    assert api.list_repo_files("alice/pr", repo_type="dataset", revision="dev/x") == [".gitattributes", "data.txt", "dev.txt"]
    assert api.repo_info("alice/pr", repo_type="dataset", revision=dev.oid).sha == dev.oid
    # refs/pr/1 travels percent-encoded as one segment in tree and revision URLs.
    status, _, body = srv.request("GET", "/api/datasets/alice/pr/tree/refs%2Fpr%2F1?recursive=true")
    assert status == 200 and {e["path"] for e in json.loads(body)} == {".gitattributes", "data.txt"}


def test_errors_are_mapped_by_the_client(server, tmp_path):
    srv = server()
    api = api_for(srv)
    api.create_repo("alice/e")
    api.upload_file(path_or_fileobj=b"x", path_in_repo="dir/x.txt", repo_id="alice/e")
    kw = dict(endpoint=srv.url, token=TOKEN, cache_dir=tmp_path / "c")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("alice/missing", "x.txt", **kw)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("alice/e", "dir/x.txt", revision="no-such-branch", **kw)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("alice/e", "dir/missing.txt", **kw)
    with pytest.raises(RepositoryNotFoundError):
        api.list_repo_files("alice/missing")
    with pytest.raises(RevisionNotFoundError):
        api.list_repo_files("alice/e", revision="f" * 40)
    # The EntryNotFound 404 names the commit, so the client records .no_exist for it.
    status, headers, _ = srv.request("HEAD", "/alice/e/resolve/main/dir/missing.txt")
    assert status == 404 and headers["x-error-code"] == "EntryNotFound" and len(headers["x-repo-commit"]) == 40
    status, headers, body = srv.request("GET", "/api/agent-harnesses")
    assert status == 404
    status, headers, body = srv.request("POST", "/api/validate-yaml", body=b"not json")
    assert status == 400 and "errors" in json.loads(body)
    # Non-recursive tree: direct children only, folders with an oid.
    status, _, body = srv.request("GET", "/api/models/alice/e/tree/main?recursive=false")
    assert {(e["type"], e["path"]) for e in json.loads(body)} == {("file", ".gitattributes"), ("directory", "dir")}


def test_token_guards_writes_and_private_repos(server, tmp_path):
    srv = server()
    api = api_for(srv)
    api.create_repo("alice/public")
    api.create_repo("alice/private", private=True)
    api.upload_file(path_or_fileobj=b"pub", path_in_repo="a.txt", repo_id="alice/public")
    api.upload_file(path_or_fileobj=b"secret", path_in_repo="a.txt", repo_id="alice/private")
    # Anonymous reads of a public repo work, as on the Hub.
    assert srv.request("GET", "/api/models/alice/public", auth=False)[0] == 200
    assert srv.request("GET", "/alice/public/resolve/main/a.txt", auth=False)[2] == b"pub"
    anonymous = HfApi(endpoint=srv.url, token=False)
    assert anonymous.list_repo_files("alice/public") == [".gitattributes", "a.txt"]
    # A private repo answers an anonymous caller like a missing one.
    for path in ("/api/models/alice/private", "/alice/private/resolve/main/a.txt", "/api/models/alice/nothing"):
        status, headers, _ = srv.request("GET", path, auth=False)
        assert status == 401 and headers["x-error-code"] == "RepoNotFound", path
    with pytest.raises(RepositoryNotFoundError):
        anonymous.list_repo_files("alice/private")
    # Writes need the token; a wrong token is refused everywhere.
    status, headers, _ = srv.request("POST", "/api/repos/create", body=b'{"name": "x"}', auth=False)
    assert status == 401 and headers["x-error-code"] == "Unauthorized"
    status, headers, _ = srv.request("POST", "/api/models/alice/public/commit/main", body=b"{}", auth=False)
    assert status == 401 and headers["x-error-code"] == "Unauthorized"
    status, headers, _ = srv.request("GET", "/api/models/alice/public", headers={"authorization": "Bearer wrong"},
                                     auth=False)
    assert status == 401 and headers["x-error-message"] == "Invalid credentials in Authorization header"
    assert api_for(srv).whoami()["name"] == "user"
    assert srv.request("GET", "/api/models/alice/private")[0] == 200


def test_restart_keeps_data_and_env_configured_client(server, tmp_path):
    srv = server()
    files = make_folder(tmp_path / "up", big_size=MiB)
    api_for(srv).create_repo("alice/keep")
    commit = api_for(srv).upload_folder(folder_path=tmp_path / "up", repo_id="alice/keep").oid
    close_session()
    assert srv.stop() == 0
    srv = server()  # same root
    script = (
        "import sys\n"
        "from huggingface_hub import HfApi, snapshot_download\n"
        "p = snapshot_download('alice/keep')\n"
        "print(HfApi().repo_info('alice/keep').sha)\n"
        "print(p)\n"
    )
    env = dict(os.environ, HF_ENDPOINT=srv.url, HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "home"))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    sha, snap = out.stdout.split()
    assert sha == commit
    for name, data in files.items():
        assert open(os.path.join(snap, name), "rb").read() == data
    leftovers = list((srv.root / "tmp").iterdir()) + list((srv.root / "uploads").iterdir())
    assert leftovers == []


def test_multipart_upload_small_parts(server, tmp_path):
    srv = server("--multipart-threshold", str(MiB), "--multipart-chunk", str(MiB // 2))
    api = api_for(srv)
    api.create_repo("alice/parts")
    data = os.urandom(3 * MiB + 12345)  # 7 parts, the last one short
    (tmp_path / "blob.bin").write_bytes(data)
    api.upload_file(path_or_fileobj=str(tmp_path / "blob.bin"), path_in_repo="blob.bin", repo_id="alice/parts")
    path = hf_hub_download("alice/parts", "blob.bin", endpoint=srv.url, token=TOKEN, cache_dir=tmp_path / "c")
    assert open(path, "rb").read() == data
    assert list((srv.root / "uploads").iterdir()) == []
    # A part PUT to a URL whose signature does not match is refused.
    batch = {"operation": "upload", "transfers": ["basic", "multipart"], "objects": [{"oid": "a" * 64, "size": 3 * MiB}]}
    status, _, body = srv.request("POST", "/alice/parts.git/info/lfs/objects/batch", body=json.dumps(batch),
                                  headers={"content-type": "application/vnd.git-lfs+json"})
    header = json.loads(body)["objects"][0]["actions"]["upload"]["header"]
    assert header["chunk_size"] == str(MiB // 2) and "6" in header
    part = header["1"].replace(srv.url, "").replace("sig=", "sig=0")
    assert srv.request("PUT", part, body=b"x" * (MiB // 2), auth=False)[0] == 403


def test_lfs_put_rejects_a_body_that_does_not_match_its_oid(server, tmp_path):
    srv = server()
    api_for(srv).create_repo("alice/lfs")
    good = os.urandom(1000)
    batch = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": sha256(good), "size": len(good)}]}
    status, headers, body = srv.request("POST", "/alice/lfs.git/info/lfs/objects/batch", body=json.dumps(batch))
    href = json.loads(body)["objects"][0]["actions"]["upload"]["href"].replace(srv.url, "")
    bad = bytearray(good)
    bad[10] ^= 1
    status, _, body = srv.request("PUT", href, body=bytes(bad), auth=False)
    assert status == 400 and b"sha256" in body
    assert srv.request("PUT", href, body=good[:-1], auth=False)[0] == 400
    assert srv.request("PUT", href, body=good, auth=False)[0] == 200
    # Stored now: the batch answers without actions.
    status, _, body = srv.request("POST", "/alice/lfs.git/info/lfs/objects/batch", body=json.dumps(batch))
    assert "actions" not in json.loads(body)["objects"][0]
    assert list((srv.root / "tmp").iterdir()) == []


FAULTS = [
    "drop:path=drop.bin,after=1M",
    "truncate:path=trunc.bin",
    "status:path=s500.bin,code=500",
    "status:path=s429.bin,code=429,retry_after=1",
    "corrupt:path=corrupt.bin",
    "ignore-range:path=norange.bin",
    "status:path=fail.bin,code=403,times=always",
    "drop:path=resume.bin,after=700K,times=2",
]
FAULT_FILES = ["drop.bin", "trunc.bin", "s500.bin", "s429.bin", "corrupt.bin", "norange.bin", "fail.bin", "resume.bin",
               "regular.txt"]


@pytest.fixture
def faulty(server, tmp_path):
    """A server with every fault armed, and a repo holding one 2 MiB LFS file per fault."""
    fault_args = [a for spec in FAULTS for a in ("--fault", spec)] + ["--fault", "drop:path=regular.txt,after=1000"]
    srv = server(*fault_args)
    api = api_for(srv)
    api.create_repo("alice/f")
    data = os.urandom(2 * MiB)
    up = tmp_path / "faults"
    up.mkdir()
    for name in FAULT_FILES:
        (up / name).write_bytes(b"text " * 1000 if name == "regular.txt" else data)
    api.upload_folder(folder_path=up, repo_id="alice/f")
    return srv, data


def raw_get(srv, path, headers=None):
    """GET that reports a body cut short instead of raising: (status, headers, body, complete)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("GET", path, headers={"authorization": "Bearer " + TOKEN, **(headers or {})})
    resp = conn.getresponse()
    hdrs = {k.lower(): v for k, v in resp.getheaders()}
    try:
        body, complete = resp.read(), True
    except http.client.IncompleteRead as e:
        body, complete = e.partial, False
    conn.close()
    return resp.status, hdrs, body, complete


def test_fault_modes_seen_by_a_raw_client(faulty):
    srv, data = faulty
    url = {name: srv.content_url("alice/f", name) for name in FAULT_FILES}

    status, headers, body, complete = raw_get(srv, url["drop.bin"])
    assert status == 200 and int(headers["content-length"]) == len(data)
    assert not complete and len(body) == MiB and body == data[:MiB]
    assert raw_get(srv, url["drop.bin"])[2] == data  # once only

    status, headers, body, complete = raw_get(srv, url["trunc.bin"])
    assert int(headers["content-length"]) == len(data) and not complete and len(body) == len(data) // 2

    status, headers, _, _ = raw_get(srv, url["s500.bin"])
    assert status == 500
    assert raw_get(srv, url["s500.bin"])[0] == 200

    status, headers, _, _ = raw_get(srv, url["s429.bin"])
    assert status == 429 and headers["retry-after"] == "1"
    assert raw_get(srv, url["s429.bin"])[2] == data

    status, headers, body, complete = raw_get(srv, url["corrupt.bin"])
    assert status == 200 and complete and len(body) == len(data) and sha256(body) != sha256(data)
    assert raw_get(srv, url["corrupt.bin"])[2] == data

    status, headers, body, _ = raw_get(srv, url["norange.bin"], {"Range": "bytes=100-"})
    assert status == 200 and "content-range" not in headers and body == data
    status, headers, body, _ = raw_get(srv, url["norange.bin"], {"Range": "bytes=100-"})
    assert status == 206 and headers["content-range"] == f"bytes 100-{len(data) - 1}/{len(data)}" and body == data[100:]

    for _ in range(3):
        assert raw_get(srv, url["fail.bin"])[0] == 403

    status, headers, body, complete = raw_get(srv, url["regular.txt"])
    assert "/resolve/" in url["regular.txt"] and not complete and len(body) == 1000
    # HEAD is never faulted.
    assert srv.request("HEAD", url["fail.bin"], auth=False)[0] == 200


def test_ranges(faulty):
    srv, data = faulty
    url = srv.content_url("alice/f", "drop.bin")
    raw_get(srv, url)  # use up the drop fault
    status, headers, body, _ = raw_get(srv, url, {"Range": "bytes=10-19"})
    assert status == 206 and body == data[10:20] and headers["content-range"] == f"bytes 10-19/{len(data)}"
    status, headers, body, _ = raw_get(srv, url, {"Range": "bytes=-5"})
    assert status == 206 and body == data[-5:]
    status, headers, _, _ = raw_get(srv, url, {"Range": f"bytes={len(data)}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{len(data)}"
    status, headers, _ = srv.request("HEAD", url, auth=False)
    assert status == 200 and int(headers["content-length"]) == len(data) and headers["etag"] == f'"{sha256(data)}"'
    # Resolve HEAD of an LFS file: the Hub's 302 with the LFS identity.
    status, headers, _ = srv.request("HEAD", "/alice/f/resolve/main/drop.bin")
    assert status == 302 and headers["location"].startswith(srv.url + "/")
    assert headers["x-linked-etag"] == f'"{sha256(data)}"' and headers["x-linked-size"] == str(len(data))
    assert "xet" not in " ".join(headers).lower()


def test_python_client_resumes_after_drops_and_429(faulty, tmp_path):
    srv, data = faulty
    kw = dict(endpoint=srv.url, token=TOKEN, cache_dir=tmp_path / "c")
    # resume.bin drops twice at 700 KiB: the client resumes with Range and ends with the right bytes.
    assert open(hf_hub_download("alice/f", "resume.bin", **kw), "rb").read() == data
    assert open(hf_hub_download("alice/f", "s429.bin", **kw), "rb").read() == data
    # Same bytes as the others, so a fresh cache: a cached blob would be linked without any GET.
    with pytest.raises(HfHubHTTPError) as failed:
        hf_hub_download("alice/f", "fail.bin", endpoint=srv.url, token=TOKEN, cache_dir=tmp_path / "fresh")
    assert failed.value.response.status_code == 403
    assert "fault status on fail.bin" in srv.log_path.read_text()


def test_keep_alive_survives_unread_and_broken_bodies(server):
    srv = server()
    api_for(srv).create_repo("alice/ka")
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    # Refused before the body is read: the body is drained and the connection stays usable.
    conn.request("POST", "/api/models/alice/ka/commit/main", body=b"x" * 200000)
    resp = conn.getresponse()
    assert resp.status == 401 and resp.getheader("X-Error-Code") == "Unauthorized"
    resp.read()
    conn.request("GET", "/api/whoami-v2", headers={"authorization": "Bearer " + TOKEN})
    resp = conn.getresponse()
    assert resp.status == 200 and json.loads(resp.read())["name"] == "user"
    # Refused in the middle of the body: the answer says so and the connection is closed.
    data = b"y" * 1000
    batch = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": sha256(data), "size": len(data)}]}
    _, _, body = srv.request("POST", "/alice/ka.git/info/lfs/objects/batch", body=json.dumps(batch))
    href = json.loads(body)["objects"][0]["actions"]["upload"]["href"].replace(srv.url, "")
    conn.request("PUT", href, body=data * 300)
    resp = conn.getresponse()
    assert resp.status == 400 and resp.getheader("Connection") == "close" and b"longer" in resp.read()
    conn.close()


def test_fault_file_and_bad_fault_specs(server, tmp_path):
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps([{"kind": "status", "path": "sub/*.txt", "code": 503, "retry_after": 2, "times": 2}]))
    srv = server("--fault-file", str(faults))
    api_for(srv).create_repo("alice/ff")
    api_for(srv).upload_file(path_or_fileobj=b"abc", path_in_repo="sub/a.txt", repo_id="alice/ff")
    for _ in range(2):
        status, headers, _, _ = raw_get(srv, "/alice/ff/resolve/main/sub/a.txt")
        assert status == 503 and headers["retry-after"] == "2"
    assert raw_get(srv, "/alice/ff/resolve/main/sub/a.txt")[2] == b"abc"

    from hubserver_fixture import SLA_CKPT
    for spec, message in [("bogus", "unknown kind 'bogus'"), ("drop:after=lots", "bad byte count 'lots'"),
                          ("status:code=200", "code must be 400..599"), ("drop:color=red", "unknown key 'color'")]:
        out = subprocess.run([SLA_CKPT, "hub", "serve", "--root", str(tmp_path / "r2"), "--fault", spec],
                             capture_output=True, text=True, timeout=10)
        assert out.returncode == 2 and message in out.stderr, (spec, out.stderr)
