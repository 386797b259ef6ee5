"""The example DiT on several processes (examples/torchrun_dit.py, gloo): data parallelism on 2 ranks
with half the batch each follows the single-process run on the whole batch (loss and proj_l within
1e-5 relative), proj_l is bit-identical on every rank after every step, one checkpoint folder with
one sla_attention.pt is written, and a resume on 1 or 2 ranks continues the trajectory; Ulysses
(--sequence-parallel 2, started by the real torchrun; and 2 x 2 on 4 ranks) follows it too; a rank
started with other SLA settings stops every rank at the first step with a message naming both, and
ranks resuming different checkpoints are stopped."""
import json
import os
import subprocess
import sys

import pytest
import torch

from launch import describe, free_port, rank_env, run_world

BUILD = os.environ.get("SLA_BUILD_DIR", "build")
EXE = os.path.join(BUILD, "examples", "sla-dit-example")
LAUNCHER = os.path.join(os.environ.get("SLA_SOURCE_DIR", "."), "examples", "torchrun_dit.py")
SLA_CONFIG = "{'topk': 0.25, 'blkq': 32, 'blkk': 32}"
COMMON = ["--seed", "3", "--batch-size", "8"]
TOL = 1e-5


def rel(a, b):
    return abs(a - b) / abs(b)


def steps_of(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def single(output_dir, *args):
    out = subprocess.run([EXE, "--output-dir", str(output_dir), "--sla-config", SLA_CONFIG, *COMMON, *map(str, args)],
                         check=True,
                         capture_output=True, text=True, timeout=120)
    return steps_of(out.stdout)


def world(n, output_dir, *args, sla_config=lambda rank: SLA_CONFIG):
    return run_world(n, [LAUNCHER, "--output-dir", str(output_dir), *COMMON, "--print-all-ranks", *map(str, args)],
                     timeout=120, per_rank_args=lambda rank: ["--sla-config", sla_config(rank)])


def losses_by_rank(ranks):
    return [{line["step"]: line for line in steps_of(r.stdout)} for r in ranks]


def proj_l(folder):
    payload = torch.load(folder / "sla_attention.pt", weights_only=True)
    return payload["state"]["32:fp32"]["proj_l.weight"]


def assert_follows(reference, ranks, first_step):
    per_rank = losses_by_rank(ranks)
    for step in range(first_step, len(reference) + 1):
        lines = [p[step] for p in per_rank]
        assert len({line["sla_digest"] for line in lines}) == 1, (step, lines)  # bit-identical proj_l
        assert len({line["loss"] for line in lines}) == 1  # every rank reports the mean over ranks
        assert rel(lines[0]["loss"], reference[step - 1]["loss"]) < TOL, (step, lines[0], reference[step - 1])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("single")
    return folder, single(folder, "--steps", 10, "--checkpoint-every", 5)


@pytest.fixture(scope="module")
def data_parallel(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dp2")
    ranks = world(2, folder, "--steps", 10, "--checkpoint-every", 5)
    assert all(r.returncode == 0 for r in ranks), describe(ranks)
    return folder, ranks


def test_data_parallel_follows_single_process(reference, data_parallel):
    (ref_dir, ref_steps), (folder, ranks) = reference, data_parallel
    assert_follows(ref_steps, ranks, 1)
    a, b = proj_l(folder / "checkpoint-10"), proj_l(ref_dir / "checkpoint-10")
    assert b.abs().max() > 0
    assert ((a - b).abs().max() / b.abs().max()).item() < TOL
    # One folder per checkpoint, one file, written by rank 0 only.
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-10", "checkpoint-5"]
    assert sorted(p.name for p in (folder / "checkpoint-5").iterdir()) == sorted(
        p.name for p in (ref_dir / "checkpoint-5").iterdir())
    wrote = [line for r in ranks for line in r.stderr.splitlines() if "wrote" in line and "sla_attention.pt" in line]
    assert len(wrote) == 2 and all("checkpoint-" in w for w in wrote), wrote  # one per checkpoint
    assert all("wrote" not in r.stderr for r in ranks[1:])


@pytest.mark.parametrize("n", [1, 2])
def test_resume_on_other_world_sizes(reference, data_parallel, tmp_path, n):
    _, ref_steps = reference
    folder, _ = data_parallel
    checkpoint = folder / "checkpoint-5"
    if n == 1:
        resumed = single(tmp_path, "--steps", 10, "--resume-from", checkpoint)
        assert [line["step"] for line in resumed] == list(range(6, 11))
        for line in resumed:
            assert rel(line["loss"], ref_steps[line["step"] - 1]["loss"]) < TOL
    else:
        ranks = world(n, tmp_path, "--steps", 10, "--resume-from", checkpoint)
        assert all(r.returncode == 0 for r in ranks), describe(ranks)
        assert_follows(ref_steps, ranks, 6)


def test_sequence_parallel_under_torchrun(reference, tmp_path):
    _, ref_steps = reference
    env = rank_env(0, 2, free_port())
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
           LAUNCHER, "--output-dir", str(tmp_path), "--sla-config", SLA_CONFIG, *COMMON, "--steps", "4",
           "--sequence-parallel", "2"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150)
    assert out.returncode == 0, out.stderr[-4000:]
    lines = steps_of(out.stdout)  # rank 0's only
    assert [line["step"] for line in lines] == [1, 2, 3, 4]
    for line in lines:
        assert rel(line["loss"], ref_steps[line["step"] - 1]["loss"]) < TOL
    assert (tmp_path / "checkpoint-4" / "sla_attention.pt").is_file()


def test_data_and_sequence_parallel_on_four_ranks(reference, tmp_path):
    _, ref_steps = reference
    ranks = world(4, tmp_path, "--steps", 3, "--sequence-parallel", 2)  # 2 data-parallel groups of 2
    assert all(r.returncode == 0 for r in ranks), describe(ranks)
    assert_follows(ref_steps[:3], ranks, 1)


def test_rank_with_other_settings_fails_at_first_step(tmp_path):
    other = "{'topk': 0.5, 'blkq': 32, 'blkk': 32}"
    ranks = world(2, tmp_path, "--steps", 3, sla_config=lambda rank: other if rank == 1 else SLA_CONFIG)
    assert all(r.returncode != 0 for r in ranks), describe(ranks)
    for r in ranks:
        assert not steps_of(r.stdout)  # no step completed
        assert "SLA settings or modules differ between ranks: rank 0 has (topk=0.25 " in r.stderr, describe(ranks)
        assert "rank 1 has (topk=0.5 " in r.stderr
    assert not any(tmp_path.iterdir())


def test_ranks_resuming_different_checkpoints_are_stopped(data_parallel, tmp_path):
    folder, _ = data_parallel
    ranks = run_world(2, [LAUNCHER, "--output-dir", str(tmp_path), *COMMON, "--sla-config", SLA_CONFIG, "--steps", "12"],
                      timeout=120, per_rank_args=lambda rank: ["--resume-from", str(folder / f"checkpoint-{5 * (rank + 1)}")])
    assert all(r.returncode != 0 for r in ranks), describe(ranks)
    for r in ranks:
        assert "the checkpoints resumed from differ between ranks: rank 0 has " in r.stderr, describe(ranks)
        assert "checkpoint-5 at step 5, rank 1 has " in r.stderr and "checkpoint-10 at step 10" in r.stderr
