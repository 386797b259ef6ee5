#!/usr/bin/env python3
"""sla-dit-example on several processes: data parallelism, and Ulysses with --sequence-parallel P.

    torchrun --nproc-per-node 2 examples/torchrun_dit.py --output-dir run --steps 40 [--sequence-parallel 2]
    torchrun --nproc-per-node 2 examples/torchrun_dit.py --output-dir run --steps 80 --resume-from latest

Every option is sla-dit-example's (``--help``). Each rank joins the process group torchrun describes
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): gloo on CPUs, NCCL with ``--device cuda``
(rank r on cuda:LOCAL_RANK). With ``--sequence-parallel P`` the world is cut into groups of P
consecutive ranks that share each image's tokens (P must divide the world size and the model's
head count); the world / P groups split each batch. Then the example's C++ trainer, the same code as
the sla-dit-example executable, runs in this process (operator ``sla_example::run`` of
``libsla_dit_ops.so``) on these groups. Why Python creates the groups: the torch wheel ships no gloo
headers, so C++ alone cannot build a gloo group; C++ resolves the groups Python made by name.

Rank 0 prints the losses (the mean over ranks) and writes one checkpoint folder; every rank resumes
from it, on any number of ranks. The library is found at ``$SLA_DIT_OPS_LIB``, else
``$SLA_BUILD_DIR/examples/libsla_dit_ops.so``, else ``build/examples/`` of this checkout.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist


def ops_library() -> Path:
    if os.environ.get("SLA_DIT_OPS_LIB"):
        return Path(os.environ["SLA_DIT_OPS_LIB"])
    build = Path(os.environ.get("SLA_BUILD_DIR", Path(__file__).resolve().parent.parent / "build"))
    return build / "examples" / "libsla_dit_ops.so"


def option(argv: list[str], name: str, default: str) -> str:
    """The value of --name V or --name=V in argv (the last one), else default."""
    value = default
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def main() -> int:
    argv = sys.argv[1:]
    if "--help" in argv or "-h" in argv:
        torch.ops.load_library(str(ops_library()))
        return torch.ops.sla_example.run(argv, "", "")  # prints the help; needs no group
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            print(f"torchrun_dit.py: ${name} is not set: start it with torchrun, e.g. "
                  "torchrun --nproc-per-node 2 examples/torchrun_dit.py --output-dir run", file=sys.stderr)
            return 2
    library = ops_library()
    if not library.is_file():
        print(f"torchrun_dit.py: {library} not found: build the target sla_dit_ops, or set SLA_DIT_OPS_LIB",
              file=sys.stderr)
        return 2
    torch.ops.load_library(str(library))

    device = option(argv, "--device", "cpu")
    if device.startswith("cuda"):
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        if device == "cuda":  # one GPU per rank: --device cuda becomes cuda:LOCAL_RANK
            argv = [f"cuda:{local_rank}" if arg == "cuda" and i > 0 and argv[i - 1] == "--device" else
                    f"--device=cuda:{local_rank}" if arg == "--device=cuda" else arg for i, arg in enumerate(argv)]
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank))
    else:
        dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()

    sequence_parallel = int(option(argv, "--sequence-parallel", "1"))
    sequence_group = ""
    if sequence_parallel > 1:
        if world % sequence_parallel != 0:
            print(f"torchrun_dit.py: --sequence-parallel {sequence_parallel} does not divide the {world} ranks",
                  file=sys.stderr)
            return 2
        # Every rank creates every group (new_group is collective), keeping its own.
        for first in range(0, world, sequence_parallel):
            group = dist.new_group(list(range(first, first + sequence_parallel)))
            if first <= rank < first + sequence_parallel:
                sequence_group = group.group_name
    try:
        code = torch.ops.sla_example.run(argv, dist.group.WORLD.group_name, sequence_group)
    except RuntimeError as e:  # the trainer's error, one line (torch appends the C++ frames)
        print(f"sla-dit-example: error: {str(e).splitlines()[0]}", file=sys.stderr, flush=True)
        code = 1
    if code == 0:
        dist.destroy_process_group()
    return code


if __name__ == "__main__":
    sys.exit(main())
