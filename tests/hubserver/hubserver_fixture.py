"""Starts `sla-ckpt hub serve` on a free loopback port for a test and stops it afterwards."""
import os
import signal
import subprocess
import time
import http.client
import urllib.parse
from pathlib import Path

SLA_CKPT = os.environ.get("SLA_CKPT") or str(Path(__file__).resolve().parents[2] / "build/tools/sla_ckpt/sla-ckpt")
TOKEN = "hubsrv-test-token"


class HubServer:
    def __init__(self, root, *extra_args, token=TOKEN, env=None):
        self.root = Path(root)
        self.token = token
        port_file = self.root.parent / (self.root.name + ".port")
        if port_file.exists():
            port_file.unlink()
        args = [SLA_CKPT, "hub", "serve", "--root", str(self.root), "--port", "0", "--port-file", str(port_file)]
        if token:
            token_file = self.root.parent / (self.root.name + ".token")
            token_file.write_text(token + "\n")
            args += ["--token-file", str(token_file)]
        args += list(extra_args)
        self.log_path = self.root.parent / (self.root.name + ".log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log, env=env)
        deadline = time.monotonic() + 10
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("hub serve did not start: " + self.log_path.read_text())
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        self.url = f"http://127.0.0.1:{self.port}"

    def memory_mib(self):
        """(VmHWM, VmRSS) of the server process in MiB: its peak and current resident size."""
        fields = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    fields[key] = int(value.split()[0]) / 1024
        return fields["VmHWM"], fields["VmRSS"]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=10)
        self.log.close()
        return rc

    def request(self, method, path, headers=None, body=None, auth=True):
        """One raw HTTP request (no redirects followed); returns (status, headers dict, body bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        h = dict(headers or {})
        if auth and self.token:
            h["authorization"] = "Bearer " + self.token
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read() if method != "HEAD" else b""
        result = (resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        conn.close()
        return result

    def content_url(self, repo_id, path, revision="main"):
        """The path that serves a file's bytes: resolve, or the blob URL an LFS resolve redirects to."""
        status, headers, _ = self.request("HEAD", f"/{repo_id}/resolve/{revision}/{path}")
        if status == 302:
            location = urllib.parse.urlsplit(headers["location"])
            return location.path + "?" + location.query
        assert status == 200, (status, headers)
        return f"/{repo_id}/resolve/{revision}/{path}"
