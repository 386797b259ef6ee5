"""`sla-ckpt hub serve` against a scripted hostile client (issue 11, part 2).

Each case sends what an attacker would (huge declared sizes, too many objects or parts, JSON
nested millions deep, lines that never end, an LFS object of another repo, a second server on a
used port or root) and checks three things: the server answers with a 4xx that says what was
wrong (or, for a bind, refuses to start), it still answers a normal request afterwards, and its
peak resident size (VmHWM, read from /proc) stays under 1 GiB. Bodies are generated chunk by
chunk and the client stops sending once the server has answered, so the test itself stays small.
"""
import base64
import hashlib
import itertools
import json
import os
import select
import socket
import subprocess
import time

import pytest

from hubserver_fixture import SLA_CKPT, TOKEN, HubServer

MiB = 1 << 20
RSS_LIMIT_MIB = 1024
PEAKS = {}  # case -> server VmHWM in MiB after it, printed at the end (pytest -s)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    # A 1-byte multipart chunk asks for a part per byte: only the part cap keeps answers small.
    srv = HubServer(tmp_path_factory.mktemp("hostile") / "root", "--multipart-chunk", "1", "--max-file-size",
                    str(1 << 40))
    for repo, private in (("alice/a", False), ("alice/b", False), ("alice/p", True)):
        status, _, body = srv.request("POST", "/api/repos/create",
                                      body=json.dumps({"name": repo.split("/")[1], "organization": "alice",
                                                       "private": private}))
        assert status == 200, body
    PEAKS["idle"] = srv.memory_mib()[0]
    yield srv
    assert srv.stop() == 0, srv.log_path.read_text()
    print("\nserver VmHWM (MiB) after each hostile case:", json.dumps(PEAKS, indent=1))


def assert_still_serving(srv, case):
    """A normal request still works and the server's peak RSS stayed under the limit."""
    status, _, body = srv.request("GET", "/api/models/alice/a")
    assert status == 200 and json.loads(body)["id"] == "alice/a"
    peak, now = srv.memory_mib()
    PEAKS[case] = round(peak, 1)
    assert peak < RSS_LIMIT_MIB and now < RSS_LIMIT_MIB, (case, peak, now)


def read_response(sock):
    """(status, headers, body) of one answer; tolerates a reset once the answer is in."""
    data = b""
    length = None
    try:
        while True:
            if length is None and b"\r\n\r\n" in data:
                head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
                headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in head[1:])}
                length = len(head) and int(headers.get("content-length", 0))
                start = data.index(b"\r\n\r\n") + 4
            if length is not None and len(data) - start >= length:
                break
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    assert b"\r\n\r\n" in data, f"no answer, got {data[:200]!r}"
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def exchange(srv, method, path, body=(), length=None, chunked=False, auth=True, headers=None):
    """Sends one request whose body comes chunk by chunk from `body`, stopping as soon as the server
    answers or hangs up. Returns (status, headers, body, body bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    fields = {"Host": f"127.0.0.1:{srv.port}", **(headers or {})}
    if auth:
        fields["Authorization"] = "Bearer " + TOKEN
    if chunked:
        fields["Transfer-Encoding"] = "chunked"
    elif length is not None:
        fields["Content-Length"] = str(length)
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    sent = 0
    try:
        sock.sendall(head.encode())
        for piece in body:
            if select.select([sock], [], [], 0)[0]:
                break  # answered (or closed) already
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            sent += len(piece)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        status, answer_headers, answer = read_response(sock)
    finally:
        sock.close()
    return status, answer_headers, answer, sent


def error_of(body):
    return json.loads(body)["error"]


def batch(objects):
    return json.dumps({"operation": "upload", "transfers": ["basic", "multipart"], "objects": objects,
                       "hash_algo": "sha256"}).encode()


def repeated(piece, total):
    """total bytes of `piece` repeated, in 1 MiB chunks, never all in memory."""
    block = piece * (MiB // len(piece))
    full, rest = divmod(total, len(block))
    return itertools.chain(itertools.repeat(block, full), [block[:rest]] if rest else [])


BATCH = "/alice/a.git/info/lfs/objects/batch"
COMMIT = "/api/models/alice/a/commit/main"


def test_batch_with_huge_declared_sizes(hub):
    for size in (2**63 - 1, 2**62, (1 << 40) + 1):
        status, _, body = hub.request("POST", BATCH, body=batch([{"oid": "a" * 64, "size": size}]))
        assert status == 413 and f"object of {size} bytes is larger than" in error_of(body), body[:300]
        assert "--max-file-size" in error_of(body)
    assert_still_serving(hub, "batch size 2^63-1")


def test_batch_parts_are_capped(hub):
    # 1 TiB in 1-byte parts would be 2^40 URLs; the part cap makes it 10000 larger parts.
    status, _, body = hub.request("POST", BATCH, body=batch([{"oid": "b" * 64, "size": 1 << 40}]))
    assert status == 200
    header = json.loads(body)["objects"][0]["actions"]["upload"]["header"]
    parts = [k for k in header if k.isdigit()]
    assert len(parts) == 10000 and int(header["chunk_size"]) * 10000 >= 1 << 40
    # Many such objects would make a huge answer: refused as a whole.
    objects = [{"oid": f"{i:064x}", "size": 1 << 40} for i in range(200)]
    status, _, body = hub.request("POST", BATCH, body=batch(objects))
    assert status == 413 and "send fewer objects per batch" in error_of(body)
    assert_still_serving(hub, "batch answer size")


def test_batch_with_too_many_objects(hub):
    objects = [{"oid": f"{i:064x}", "size": 1} for i in range(5000)]
    status, _, body = hub.request("POST", BATCH, body=batch(objects))
    assert status == 413 and "5000 objects, more than the 1000" in error_of(body)
    assert_still_serving(hub, "batch 5000 objects")


def test_batch_with_deep_or_oversized_json(hub):
    status, _, body, _ = exchange(hub, "POST", BATCH, repeated(b"[", 4 * MiB), length=4 * MiB)
    assert status == 400 and "nested deeper than 32 levels" in error_of(body)
    # Declared beyond the JSON limit: refused before a byte of the body is read.
    status, _, body, sent = exchange(hub, "POST", BATCH, repeated(b"[", 40 * MiB), length=40 * MiB)
    assert status == 413 and "larger than" in error_of(body) and sent < 40 * MiB
    # Chunked, so nothing is declared: cut at the limit while streaming.
    status, _, body, sent = exchange(hub, "POST", BATCH, repeated(b"[", 40 * MiB), chunked=True)
    assert status == 413 and "request body larger than 8388608 bytes" in error_of(body) and sent < 40 * MiB
    # Millions of tiny values within the size limit.
    status, _, body, _ = exchange(hub, "POST", BATCH, [b"[" + b"0," * (3 * MiB) + b"0]"], length=6 * MiB + 3)
    assert status == 413 and "more than 200000 JSON values" in error_of(body)
    assert_still_serving(hub, "batch deep JSON")


def test_declared_lengths_and_methods_screened_before_reading(hub):
    for length, expected in ((str(2**63 - 1), 413), ("99999999999999999999999", 400), ("12abc", 400)):
        status, headers, body, _ = exchange(hub, "POST", COMMIT, [b"x" * 1000], headers={"Content-Length": length},
                                            length=None)
        assert status == expected and headers["connection"] == "close", (length, body)
    # httplib would read a PRI body whole into memory: refused first.
    status, _, body, sent = exchange(hub, "PRI", "/", repeated(b"x", 64 * MiB), length=1 << 30)
    assert status == 405 and sent < 64 * MiB
    assert_still_serving(hub, "declared length 2^63-1")


def test_commit_line_nested_tens_of_megabytes_deep(hub):
    # Under the line cap: the line is parsed, and refused at depth 32 before any tree is built.
    line = itertools.chain(repeated(b"[", 12 * MiB), [b"\n"])
    status, _, body, _ = exchange(hub, "POST", COMMIT, line, length=12 * MiB + 1)
    assert status == 400 and "commit line 1: JSON nested deeper than 32 levels" in error_of(body)
    # Tens of MB on one line (the 190 MB case): refused at the 16 MiB line cap.
    status, _, body, sent = exchange(hub, "POST", COMMIT, repeated(b"[", 190 * MiB), length=190 * MiB)
    assert status == 413 and "commit line 1 is longer than 16777216 bytes" in error_of(body)
    assert sent < 190 * MiB
    assert_still_serving(hub, "commit deep line")


def test_commit_endless_line(hub):
    send_cap = 256 * MiB
    header = b'{"key": "header", "value": {"summary": "'
    status, _, body, sent = exchange(hub, "POST", COMMIT, itertools.chain([header], repeated(b"a", send_cap)),
                                     chunked=True)
    assert status == 413 and "is longer than 16777216 bytes" in error_of(body)
    assert sent < send_cap  # the server stopped reading, the client never reached its own cap
    assert_still_serving(hub, "commit endless line")


def test_commit_metadata_is_capped(hub):
    # Short lines, but together more paths than a commit may keep in memory.
    path = "d/" + "p" * 4000
    lines = itertools.chain(
        [b'{"key": "header", "value": {"summary": "many"}}\n'],
        (b'{"key": "deletedFile", "value": {"path": "%s%d"}}\n' % (path.encode(), i) for i in range(20000)))
    status, _, body, _ = exchange(hub, "POST", COMMIT, lines, chunked=True)
    assert status == 413 and "bytes of paths and messages" in error_of(body)
    assert_still_serving(hub, "commit metadata")


def upload_lfs(srv, repo, data):
    oid = sha256(data)
    status, _, body = srv.request("POST", f"/{repo}.git/info/lfs/objects/batch",
                                  body=batch([{"oid": oid, "size": len(data)}]))
    assert status == 200, body
    actions = json.loads(body)["objects"][0].get("actions")
    if actions:
        href = actions["upload"]["href"].replace(srv.url, "")
        assert srv.request("PUT", href, body=data, auth=False)[0] == 200
    return oid, actions is not None


def ndjson(*items):
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


def commit_lfs(srv, repo, oid, size, path="w.bin"):
    body = ndjson({"key": "header", "value": {"summary": "add"}},
                  {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": oid, "size": size}})
    return srv.request("POST", f"/api/models/{repo}/commit/main", body=body)


def test_lfs_objects_are_scoped_per_repo(hub):
    data = os.urandom(5000)
    oid, uploaded = upload_lfs(hub, "alice/a", data)
    assert uploaded and commit_lfs(hub, "alice/a", oid, len(data))[0] == 200
    # Whoever knows the sha256 cannot commit it into another repo...
    status, _, body = commit_lfs(hub, "alice/b", oid, len(data))
    assert status == 400 and f"LFS object {oid} for w.bin was not uploaded to alice/b" in error_of(body)
    status, _, body = hub.request("POST", "/alice/b.git/info/lfs/objects/verify",
                                  body=json.dumps({"oid": oid, "size": len(data)}))
    assert status == 404
    # ...and the batch of that repo asks for the bytes, although the server has them.
    oid_b, uploaded = upload_lfs(hub, "alice/b", data)
    assert oid_b == oid and uploaded
    assert commit_lfs(hub, "alice/b", oid, len(data))[0] == 200
    assert hub.request("GET", "/alice/b/resolve/main/w.bin", auth=True)[0] == 302
    # An upload URL signed for one repo does not work for another.
    status, _, body = hub.request("POST", "/alice/b.git/info/lfs/objects/batch",
                                  body=batch([{"oid": sha256(b"other"), "size": 5}]))
    href = json.loads(body)["objects"][0]["actions"]["upload"]["href"].replace(hub.url, "")
    assert hub.request("PUT", href.replace("/alice/b/", "/alice/a/"), body=b"other", auth=False)[0] == 403
    assert_still_serving(hub, "foreign oid")


def listing(root):
    """Every file and folder under root, with file sizes (the lock and its contents aside)."""
    out = set()
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            out.add(os.path.relpath(os.path.join(folder, name), root) + "/")
        for name in files:
            path = os.path.join(folder, name)
            out.add((os.path.relpath(path, root), os.path.getsize(path)))
    return out


def test_refused_commit_leaves_nothing_behind(hub):
    before = listing(hub.root)
    content = os.urandom(3000)
    inline = {"key": "file", "value": {"path": "new.txt", "encoding": "base64",
                                       "content": base64.b64encode(content).decode()}}
    # Refused when applied (the deleted file does not exist), after the inline file was staged.
    body = ndjson({"key": "header", "value": {"summary": "bad"}}, inline,
                  {"key": "deletedFile", "value": {"path": "missing.txt"}})
    status, headers, answer = hub.request("POST", COMMIT, body=body)
    assert status == 404 and headers["x-error-code"] == "EntryNotFound"
    # Refused while parsing, on a later line.
    body = ndjson({"key": "header", "value": {"summary": "bad"}}, inline) + b"[" * 100 + b"\n"
    status, _, answer = hub.request("POST", COMMIT, body=body)
    assert status == 400 and "commit line 3" in error_of(answer)
    # Refused by the parent check.
    body = ndjson({"key": "header", "value": {"summary": "bad", "parentCommit": "0" * 40}}, inline)
    assert hub.request("POST", COMMIT, body=body)[0] == 412
    assert listing(hub.root) == before
    assert not (hub.root / "objects" / sha256(content)[:2] / sha256(content)).exists()
    assert_still_serving(hub, "refused commits")


def test_leftovers_are_removed_at_start_and_by_age(tmp_path):
    root = tmp_path / "root"
    (root / "uploads" / ("c" * 64 + "-100-10-0123")).mkdir(parents=True)
    (root / "uploads" / ("c" * 64 + "-100-10-0123") / "data").write_bytes(b"x" * 50)
    (root / "tmp").mkdir()
    (root / "tmp" / ".tmp-0011223344556677").write_bytes(b"y" * 50)
    srv = HubServer(root, "--multipart-threshold", "10", "--multipart-chunk", "10", "--stale-upload-age", "2")
    try:
        assert list((root / "uploads").iterdir()) == [] and list((root / "tmp").iterdir()) == []
        srv.request("POST", "/api/repos/create", body=b'{"name": "s", "organization": "alice"}')
        data = os.urandom(25)
        status, _, body = srv.request("POST", "/alice/s.git/info/lfs/objects/batch",
                                      body=batch([{"oid": sha256(data), "size": 25}]))
        part = json.loads(body)["objects"][0]["actions"]["upload"]["header"]["1"].replace(srv.url, "")
        assert srv.request("PUT", part, body=data[:10], auth=False)[0] == 200
        (root / "tmp" / ".tmp-8899aabbccddeeff").write_bytes(b"z")  # as a killed upload leaves it
        assert len(list((root / "uploads").iterdir())) == 1
        deadline = time.monotonic() + 15
        while list((root / "uploads").iterdir()) or list((root / "tmp").iterdir()):
            assert time.monotonic() < deadline, "stale upload was not removed"
            time.sleep(0.2)
        assert srv.request("GET", "/api/models/alice/s")[0] == 200
    finally:
        assert srv.stop() == 0


def test_second_server_on_a_used_port_or_root_fails(hub, tmp_path):
    out = subprocess.run([SLA_CKPT, "hub", "serve", "--root", str(tmp_path / "other"), "--port", str(hub.port)],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 2, out.stderr
    assert f"cannot listen on 127.0.0.1:{hub.port}: Address already in use" in out.stderr
    assert "listening" not in out.stderr
    out = subprocess.run([SLA_CKPT, "hub", "serve", "--root", str(hub.root), "--port", "0"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 2 and "is in use by another hub serve process" in out.stderr, out.stderr
    assert_still_serving(hub, "second bind")


def test_token_from_file_env_or_deprecated_flag(tmp_path):
    env = dict(os.environ, SLA_HUB_TOKEN="from-env")
    srv = HubServer(tmp_path / "env", token=None, env=env)
    try:
        assert b"from-env" not in open(f"/proc/{srv.proc.pid}/cmdline", "rb").read()
        assert srv.request("POST", "/api/repos/create", body=b'{"name": "e"}', auth=False)[0] == 401
        assert srv.request("POST", "/api/repos/create", body=b'{"name": "e"}',
                           headers={"authorization": "Bearer from-env"}, auth=False)[0] == 200
    finally:
        srv.stop()
    srv = HubServer(tmp_path / "file")  # the fixture passes --token-file
    try:
        assert TOKEN.encode() not in open(f"/proc/{srv.proc.pid}/cmdline", "rb").read()
        assert srv.request("GET", "/api/whoami-v2")[0] == 200
        assert srv.request("GET", "/api/whoami-v2", auth=False)[0] == 401
    finally:
        srv.stop()
    srv = HubServer(tmp_path / "flag", "--token", "on-the-command-line", token=None)
    try:
        assert srv.request("GET", "/api/whoami-v2", headers={"authorization": "Bearer on-the-command-line"},
                           auth=False)[0] == 200
    finally:
        srv.stop()
    assert "--token shows the token to every user" in srv.log_path.read_text()


def test_without_a_token_private_repos_stay_private(tmp_path):
    srv = HubServer(tmp_path / "open", token=None, env={k: v for k, v in os.environ.items() if k != "SLA_HUB_TOKEN"})
    try:
        assert srv.request("POST", "/api/repos/create", body=b'{"name": "p", "organization": "o", "private": true}',
                           auth=False)[0] == 200
        status, headers, _ = srv.request("GET", "/api/models/o/p", auth=False)
        assert status == 401 and headers["x-error-code"] == "RepoNotFound"
        assert srv.request("GET", "/o/p/resolve/main/.gitattributes", auth=False)[0] == 401
        assert srv.request("GET", "/api/models/o/p", headers={"authorization": "Bearer anything"}, auth=False)[0] == 200
    finally:
        srv.stop()


def test_client_hanging_up_mid_upload_leaves_no_temp_file(hub):
    data = os.urandom(200000)
    status, _, body = hub.request("POST", BATCH, body=batch([{"oid": sha256(data), "size": len(data)}]))
    href = json.loads(body)["objects"][0]["actions"]["upload"]["href"].replace(hub.url, "")
    sock = socket.create_connection(("127.0.0.1", hub.port), timeout=10)
    sock.sendall(f"PUT {href} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data[:50000])
    deadline = time.monotonic() + 10
    while not list((hub.root / "tmp").iterdir()):  # the upload's temp file exists while it runs
        assert time.monotonic() < deadline
        time.sleep(0.02)
    sock.close()
    while list((hub.root / "tmp").iterdir()):
        assert time.monotonic() < deadline, list((hub.root / "tmp").iterdir())
        time.sleep(0.05)
    assert not (hub.root / "objects" / sha256(data)[:2] / sha256(data)).exists()
    assert_still_serving(hub, "client hangs up mid-upload")


def test_repos_from_before_lfs_scoping_keep_their_objects(tmp_path):
    root = tmp_path / "root"
    srv = HubServer(root)
    srv.request("POST", "/api/repos/create", body=b'{"name": "old", "organization": "alice"}')
    data = os.urandom(3000)
    oid, _ = upload_lfs(srv, "alice/old", data)
    assert commit_lfs(srv, "alice/old", oid, len(data))[0] == 200
    assert srv.stop() == 0
    # What a root written before per-repo objects looks like: no markers, no "lfs_scoped".
    repo = root / "repos" / "models" / "alice" / "old"
    for marker in (repo / "lfs").iterdir():
        marker.unlink()
    meta = json.loads((repo / "repo.json").read_text())
    del meta["lfs_scoped"]
    (repo / "repo.json").write_text(json.dumps(meta))
    srv = HubServer(root)
    try:
        # The object its commits name counts as uploaded to it again: no new upload asked for.
        assert upload_lfs(srv, "alice/old", data) == (oid, False)
        assert commit_lfs(srv, "alice/old", oid, len(data), path="again.bin")[0] == 200
        assert json.loads((repo / "repo.json").read_text())["lfs_scoped"] is True
    finally:
        assert srv.stop() == 0
