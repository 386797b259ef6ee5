"""Helpers of the Hub interop tests: `sla-ckpt hub serve` on loopback, the real huggingface_hub
client run in a subprocess (it reads HF_ENDPOINT once at import), SimpleTuner-shaped SLA files."""
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

CKPT = os.environ.get("SLA_CKPT", "")
SLA_CARD_LINE = "SLA: Enabled (you MUST use SLA for inference; sla_attention.pt contains attention weights)"
SETTINGS = {"topk": 0.2, "feature_map": "softmax", "blkq": 64, "blkk": 64, "tie_feature_map_qk": True}


def pytest_collection_modifyitems(items):
    if not CKPT:
        for item in items:
            item.add_marker(pytest.mark.skip(reason="SLA_CKPT not set (run through ctest)"))


class HubServer:
    def __init__(self, root, faults=(), extra=()):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port_file = self.root.parent / (self.root.name + ".port")
        self.log_path = self.root.parent / (self.root.name + ".log")
        args = [CKPT, "hub", "serve", "--root", str(self.root), "--port", "0", "--port-file", str(self.port_file),
                "--token", "hf_test", "--user", "alice", "--log-requests", *extra]
        for f in faults:
            args += ["--fault", f]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log)
        for _ in range(200):
            if self.port_file.exists() and self.port_file.read_text().strip():
                break
            if self.proc.poll() is not None:
                raise RuntimeError("hub serve exited: " + self.log_path.read_text())
            time.sleep(0.05)
        self.port = int(self.port_file.read_text().strip())
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def log_lines(self):
        self.log.flush()
        return self.log_path.read_text().splitlines()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


def hub_env(server, hf_home, **extra):
    env = dict(os.environ)
    for k in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN_PATH", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        env.pop(k, None)
    env.update({"HF_ENDPOINT": server.endpoint, "HF_TOKEN": "hf_test", "HF_HOME": str(hf_home),
                "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_ckpt(*args, env, timeout=600):
    return subprocess.run([CKPT, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)


def run_python(code, env, timeout=600):
    """Runs `code` with huggingface_hub in a fresh interpreter; its last stdout line is JSON."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_sla_pt(path, head_dim=128, seed=0):
    """sla_attention.pt exactly as SimpleTuner's attention controller saves it."""
    import torch
    g = torch.Generator().manual_seed(seed)
    payload = {"settings": dict(SETTINGS),
               "state": {f"{head_dim}:bf16": {"proj_l.weight": torch.randn(head_dim, head_dim, generator=g) * 0.02,
                                              "proj_l.bias": torch.randn(head_dim, generator=g) * 0.01}},
               "version": 1}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)


def write_big(path, size):
    """size bytes of incompressible data, written in 4 MiB blocks."""
    block = os.urandom(4 << 20)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def tree_bytes(folder, skip=(".cache", ".gitattributes")):
    """{relative path: sha256} of every file under folder (links followed; the server-made .gitattributes left out)."""
    out = {}
    folder = Path(folder)
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if any(rel == s or rel.startswith(s + "/") for s in skip) or not p.is_file():
            continue
        out[rel] = sha256_of(p)
    return out
