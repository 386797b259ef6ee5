"""Ulysses sequence parallelism (sla::ulysses_attention over gloo): on 2 and 4 ranks, forward and
every gradient equal single-process SLA on the whole sequence (float64 reference, 1e-10),
including lengths the world does not divide; a head count it does not divide is refused."""
import json
import os

import pytest

from launch import describe, run_world

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("world", [2, 4])
def test_ulysses_matches_single_process(world):
    ranks = run_world(world, [os.path.join(HERE, "ulysses_worker.py")], timeout=150)
    assert all(r.returncode == 0 for r in ranks), describe(ranks)
    for r in ranks:
        results = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        assert len(results) == 5, describe(ranks)
        for result in results:
            assert result["ok"], (r.rank, result)
        errors = [max(res["errors"].values()) for res in results if "errors" in res]
        print(f"world {world} rank {r.rank}: largest relative error {max(errors):.2e}")
