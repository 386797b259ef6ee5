"""Why the Python backward can trail sla-bench's at the Wan row (0.05, 128/64): the backward through
autograd.grad against sla::attention_bwd called alone on the same saved tensors, CUDA-event and host
times, then a CPU + CUDA profile of one autograd.grad. Run on a GPU machine:
SLA_OPS_LIB=build/src/sla/ops/libsla_ops.so python3 bench/python_bwd_gap.py"""
import statistics
import sys
import time

import torch

sys.path.insert(0, "bench")
from sla_case import import_sla_toolkit, make_inputs
from python_api_bench import median_ms
sla = import_sla_toolkit()
q, k, v, g, w, b = make_inputs(1, 12, 32760, 128, seed=1)
args = (0.05, 128, 64, "softmax", "all", 0.0)
o = sla.sla_attention(q, k, v, w, b, 0.05, blkq=128, blkk=64)
outs = torch.ops.sla.attention_fwd(q.detach(), k.detach(), v.detach(), w, b, *args)
bwd = lambda: torch.ops.sla.attention_bwd(g, q.detach(), k.detach(), v.detach(), w, b, *outs, *args)
grad = lambda: torch.autograd.grad(o, (q, k, v), g, retain_graph=True)
for name, fn in (("autograd.grad", grad), ("attention_bwd op", bwd), ("autograd.grad", grad), ("attention_bwd op", bwd)):
    t = median_ms(fn, 5, 20)
    torch.cuda.synchronize()
    host = []
    for _ in range(10):
        start = time.perf_counter()
        fn()
        host.append((time.perf_counter() - start) * 1e3)
        torch.cuda.synchronize()
    print(f"{name:18s} {t:.3f} ms gpu-timed, host {statistics.median(host):.3f} ms")
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as p:
    grad()
    torch.cuda.synchronize()
print(p.key_averages().table(sort_by="cpu_time_total", row_limit=25, max_name_column_width=60))
