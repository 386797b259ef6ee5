"""Starts a world of processes the way torchrun does (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT on loopback), waits for all of them with a time limit, and kills the rest when one
fails or time runs out, so a rank stuck in a collective never hangs the suite."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

REPO = os.environ.get("SLA_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))


@dataclass
class Rank:
    rank: int
    returncode: int
    stdout: str
    stderr: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, world: int, port: int, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world),
                "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
                "PYTHONPATH": os.pathsep.join(p for p in (os.path.join(REPO, "python"), env.get("PYTHONPATH")) if p)})
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback only, whatever the host name resolves to
    env.update(extra or {})
    return env


def run_world(world: int, argv: list[str], timeout: float, per_rank_args=None, env: dict | None = None) -> list[Rank]:
    """Runs `python argv...` as ranks 0..world-1 (per_rank_args(rank) appends arguments)."""
    port = free_port()
    procs = []
    for rank in range(world):
        extra = list(per_rank_args(rank)) if per_rank_args else []
        procs.append(subprocess.Popen([sys.executable, *argv, *extra], env=rank_env(rank, world, port, env),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + timeout
    outputs: dict[int, tuple[str, str]] = {}
    try:
        for rank, proc in enumerate(procs):
            left = max(0.1, deadline - time.monotonic())
            try:
                outputs[rank] = proc.communicate(timeout=left)
            except subprocess.TimeoutExpired:
                break
            if proc.returncode != 0:
                # A failed rank: the others may wait for it in a collective; give them a moment to fail too.
                grace = time.monotonic() + 10
                for other_rank, other in enumerate(procs):
                    if other_rank not in outputs:
                        try:
                            outputs[other_rank] = other.communicate(timeout=max(0.1, grace - time.monotonic()))
                        except subprocess.TimeoutExpired:
                            pass
                break
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for rank, proc in enumerate(procs):
            if rank not in outputs:
                out, err = proc.communicate()
                outputs[rank] = (out, err + f"\n[launch.py: rank {rank} killed: time limit {timeout} s or another rank failed]")
    return [Rank(r, procs[r].returncode, *outputs[r]) for r in range(world)]


def describe(ranks: list[Rank]) -> str:
    return "\n".join(f"--- rank {r.rank} exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}" for r in ranks)
