"""One warm-up and one measured SLA forward + backward per named case, nothing else: a program for
ncu's kernel filter. Usage: SLA_OPS_LIB=.../libsla_ops.so ncu --clock-control none
-k regex:sla_fwd --launch-skip 1 --launch-count 1 python3 bench/ncu_case.py wan20 [--variant ...]"""
import argparse

import torch

from sla_case import CASES, import_sla_toolkit, make_inputs

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("cases", help=f"comma-separated, of {', '.join(CASES)}")
parser.add_argument("--variant", choices=("all", "complement"), default="all", help="the linear branch's variant")
args = parser.parse_args()
sla = import_sla_toolkit()

for (B, H, L, D), topk, bq, bk in (CASES[c] for c in args.cases.split(",")):
    q, k, v, g, w, b = make_inputs(B, H, L, D)
    for _ in range(2):
        sla.sla_attention(q, k, v, w, b, topk, blkq=bq, blkk=bk, variant=args.variant).backward(g)
    torch.cuda.synchronize()
