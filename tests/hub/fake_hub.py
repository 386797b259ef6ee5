"""A scripted, hostile Hub for the client tests: an HTTP/1.1 server on a loopback address, run in a
thread of the test process. It serves one small repo the way the Hub does (revision, recursive tree,
resolve HEAD/GET, an LFS file behind an absolute redirect to a /cdn/ path, Range requests) and lets a
test replace any answer with a lie: ETags, X-Repo-Commit, the revision sha, tree entries, redirects,
bodies cut or held mid-way. Every request is recorded with its Host, Authorization and Range."""
import hashlib
import http.server
import json
import os
import re
import threading
import urllib.parse
from dataclasses import dataclass

REPO = "alice/m"
COMMIT = "c0ffee0123456789abcdef0123456789abcdef01"


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


@dataclass
class Seen:
    host: str
    method: str
    path: str
    authorization: str
    range: str


class FakeHub:
    def __init__(self, host="127.0.0.1", files=None):
        self.files = files if files is not None else {
            "config.json": b'{"attention_head_dim": 128}\n',
            "weights.bin": os.urandom(256 * 1024),
        }
        self.lfs = {"weights.bin"}
        self.sha = COMMIT       # what the revision call answers
        self.tree = None        # None: the honest tree; else this list is sent as is
        self.tree_headers = {}  # extra headers of the tree answer (a Link, say)
        self.head = {}          # file -> {header: value, or None to leave it out} over the honest resolve headers
        self.routes = {}        # (method, url path) -> fn(handler) answering instead of the honest Hub
        self.cdn = None         # base URL the LFS redirects point to (default: this server)
        self.cut = {}           # file -> cut the content after this many bytes (connection closed)
        self.stall = {}         # file -> hold the content after this many bytes until `release` is set
        self.range_status = None  # a status answered to every Range request instead of the content
        self.release = threading.Event()
        self.requests = []
        self._lock = threading.Lock()

        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                hub._answer(self)

            def do_HEAD(self):
                hub._answer(self)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self._server.handle_error = lambda request, address: None  # a client that hangs up is no news here
        self.host = host
        self.port = self._server.server_address[1]
        self.endpoint = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self):
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    # ---- what an honest Hub says -----------------------------------------------------------------

    def etag(self, name):
        data = self.files[name]
        return sha256(data) if name in self.lfs else git_blob_sha1(data)

    def honest_tree(self):
        entries = []
        for name, data in sorted(self.files.items()):
            entry = {"type": "file", "path": name, "size": len(data), "oid": git_blob_sha1(data)}
            if name in self.lfs:
                entry["oid"] = git_blob_sha1(b"version https://git-lfs.github.com/spec/v1\noid sha256:" + sha256(data).encode())
                entry["lfs"] = {"oid": sha256(data), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        return entries

    def seen(self, path_part="", host=None):
        with self._lock:
            return [r for r in self.requests if path_part in r.path and (host is None or r.host.startswith(host))]

    # ---- answering -------------------------------------------------------------------------------

    def _answer(self, h):
        url = urllib.parse.urlsplit(h.path)
        path = urllib.parse.unquote(url.path)
        with self._lock:
            self.requests.append(Seen(h.headers.get("Host", ""), h.command, h.path, h.headers.get("Authorization"),
                                      h.headers.get("Range")))
        route = self.routes.get((h.command, url.path)) or self.routes.get((None, url.path))
        if route:
            return route(h)
        api = f"/api/models/{REPO}/"
        if path.startswith(api + "revision/"):
            return self._json(h, {"id": REPO, "sha": self.sha})
        if path.startswith(api + "tree/"):
            return self._json(h, self.honest_tree() if self.tree is None else self.tree, self.tree_headers)
        m = re.fullmatch(f"/{REPO}/resolve/([^/]+)/(.+)", path)
        if m and m.group(2) in self.files:
            return self._resolve(h, m.group(2))
        m = re.fullmatch("/cdn/([0-9a-f]+)", path)
        names = [n for n in self.files if m and m.group(1) in (sha256(self.files[n]), git_blob_sha1(self.files[n]))]
        if names:
            return self._content(h, names[0])
        self.reply(h, 404, {"X-Error-Code": "EntryNotFound"})

    @staticmethod
    def reply(h, status, headers=None, body=b""):
        h.send_response(status)
        for k, v in (headers or {}).items():
            if v is not None:
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _json(self, h, doc, headers=None):
        self.reply(h, 200, {"Content-Type": "application/json", **(headers or {})}, json.dumps(doc).encode())

    def _resolve(self, h, name):
        data = self.files[name]
        headers = {"X-Repo-Commit": COMMIT}
        if name in self.lfs:
            cdn = self.cdn or self.endpoint
            headers.update({"Location": f"{cdn}/cdn/{sha256(data)}", "X-Linked-Etag": f'"{sha256(data)}"',
                            "X-Linked-Size": str(len(data)), "ETag": '"' + git_blob_sha1(b"pointer") + '"'})
            headers.update(self.head.get(name, {}))
            return self.reply(h, 302, headers)
        headers.update({"ETag": f'"{git_blob_sha1(data)}"'})
        headers.update(self.head.get(name, {}))
        if h.command == "HEAD":
            h.send_response(200)
            for k, v in headers.items():
                if v is not None:
                    h.send_header(k, v)
            h.send_header("Content-Length", str(len(data)))
            return h.end_headers()
        self._content(h, name)

    def _content(self, h, name):
        data = self.files[name]
        start, status, extra = 0, 200, {}
        if h.headers.get("Range"):
            if self.range_status:
                return self.reply(h, self.range_status)
            start = int(re.fullmatch(r"bytes=(\d+)-", h.headers["Range"]).group(1))
            status, extra = 206, {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        body = data[start:]
        h.send_response(status)
        for k, v in extra.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command == "HEAD":
            return
        if name in self.cut and start == 0:
            h.wfile.write(body[:self.cut[name]])
            h.wfile.flush()
            h.close_connection = True
            return
        if name in self.stall and start == 0:
            h.wfile.write(body[:self.stall[name]])
            h.wfile.flush()
            self.release.wait(60)
            h.close_connection = True
            return
        h.wfile.write(body)
