"""Why the Python backward can trail sla-bench's at the Wan row (0.05, 128/64): autograd.grad
eager and under torch.compile(fullgraph=True) against sla::attention_bwd called alone on the same
saved tensors, CUDA-event and host times, then a CPU + CUDA profile of one eager and one compiled
autograd.grad (the kernels each runs, and the host calls between them). Run on a GPU machine:
SLA_OPS_LIB=build/src/sla/ops/libsla_ops.so python3 bench/python_bwd_gap.py"""
import statistics
import sys
import time

import torch
import torch._functorch.config

sys.path.insert(0, "bench")
from sla_case import import_sla_toolkit, make_inputs
from python_api_bench import median_ms
sla = import_sla_toolkit()
torch._functorch.config.guess_tangent_strides_as_outputs = True  # as python_api_bench
q, k, v, g, w, b = make_inputs(1, 12, 32760, 128, seed=1)
args = (0.05, 128, 64, "softmax", "all", 0.0)
eager = lambda q, k, v: sla.sla_attention(q, k, v, w, b, 0.05, blkq=128, blkk=64)  # noqa: E731
compiled = torch.compile(eager, fullgraph=True, dynamic=False)
o_eager, o_compiled = eager(q, k, v), compiled(q, k, v)
outs = torch.ops.sla.attention_fwd(q.detach(), k.detach(), v.detach(), w, b, *args)
cases = {
    "eager autograd.grad": lambda: torch.autograd.grad(o_eager, (q, k, v), g, retain_graph=True),
    "compiled autograd.grad": lambda: torch.autograd.grad(o_compiled, (q, k, v), g, retain_graph=True),
    "attention_bwd op": lambda: torch.ops.sla.attention_bwd(g, q.detach(), k.detach(), v.detach(), w, b, *outs,
                                                            *args),
}
for _ in range(2):
    for name, fn in cases.items():
        t = median_ms(fn, 5, 20)
        torch.cuda.synchronize()
        host = []
        for _ in range(10):
            start = time.perf_counter()
            fn()
            host.append((time.perf_counter() - start) * 1e3)
            torch.cuda.synchronize()
        print(f"{name:24s} {t:.3f} ms gpu-timed, host {statistics.median(host):.3f} ms", flush=True)
for name in ("eager autograd.grad", "compiled autograd.grad"):
    fn = cases[name]
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                            torch.profiler.ProfilerActivity.CUDA]) as p:
        fn()
        torch.cuda.synchronize()
    print(f"\n== {name}")
    print(p.key_averages().table(sort_by="cpu_time_total", row_limit=30, max_name_column_width=70))
