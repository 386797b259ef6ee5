"""Per-kernel GPU time of one SLA forward and backward (torch.profiler over sla_toolkit.sla_attention),
to see where the time goes around the sparse kernels. Usage: SLA_OPS_LIB=.../libsla_ops.so
python3 bench/profile_ops.py [--variant all|complement] [--cases flux,wan05,...]"""
import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from sla_case import CASES, import_sla_toolkit, make_inputs

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--variant", choices=("all", "complement"), default="all", help="the linear branch's variant")
parser.add_argument("--cases", default="flux,wan05", help=f"comma-separated, of {', '.join(CASES)}")
args = parser.parse_args()
variant = args.variant
sla = import_sla_toolkit()

for (B, H, L, D), topk, bq, bk in (CASES[c] for c in args.cases.split(",")):
    q, k, v, g, w, b = make_inputs(B, H, L, D)
    for _ in range(3):
        sla.sla_attention(q, k, v, w, b, topk, blkq=bq, blkk=bk, variant=variant).backward(g)
    torch.cuda.synchronize()
    for phase in ("forward", "backward"):
        with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                if phase == "forward":
                    with torch.no_grad():
                        sla.sla_attention(q, k, v, w, b, topk, blkq=bq, blkk=bk, variant=variant)
                else:
                    o = sla.sla_attention(q, k, v, w, b, topk, blkq=bq, blkk=bk, variant=variant)
                    torch.cuda.synchronize()
                    o.backward(g)
            torch.cuda.synchronize()
        print(f"=== {(B, H, L, D)} topk {topk} {bq}/{bk} {variant} {phase} (5 calls{'' if phase == 'forward' else ', forward included'})")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=60))
