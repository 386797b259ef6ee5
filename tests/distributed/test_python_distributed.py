"""sla_toolkit.distributed over gloo on 2 ranks: the public module inside DDP and FSDP2 trains as
one process on the whole batch (float64, 1e-10); SequenceParallel (Ulysses) equals the module on
the whole sequence; modules outside any DDP (SimpleTuner's backend) joined to the group take rank
0's parameters and average their gradients; a rank with other SLA settings fails at its first
forward with a message naming both."""
import json
import os

from launch import describe, run_world

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = ["ddp", "fsdp2", "ulysses", "join", "mismatch"]  # mismatch last: it leaves the group joined


def test_scenarios():
    ranks = run_world(2, [os.path.join(HERE, "python_worker.py"), *SCENARIOS], timeout=150)
    assert all(r.returncode == 0 for r in ranks), describe(ranks)
    per_rank = [[json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")] for r in ranks]
    for results in per_rank:
        assert [res["scenario"] for res in results] == SCENARIOS, describe(ranks)
        assert all(res["ok"] for res in results), results
        for res in results:
            print(res)
    mismatch = [results[-1]["message"] for results in per_rank]
    assert mismatch[0] == mismatch[1]  # every rank fails with the same message, naming both settings
