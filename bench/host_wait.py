"""How long the GPU waits for the host in an SLA call: the call's CUDA-event time as the
benchmark measures it, against the same call queued behind a 3 ms GPU sleep (the host is then
ahead, so only GPU work is left). cuDNN SDPA alongside, same inputs. Usage:
SLA_OPS_LIB=.../libsla_ops.so python3 bench/host_wait.py"""
import statistics
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from sla_case import import_sla_toolkit, make_inputs

sla = import_sla_toolkit()

CASES = [((1, 24, 4608, 128), 0.2, 128, 64), ((1, 24, 4608, 128), 0.2, 64, 64), ((1, 12, 32760, 128), 0.05, 128, 64)]


def timed(fn, behind_sleep):
    """Median over 20 calls (after 5) of (GPU ms, host ms to issue the call)."""
    gpu, host = [], []
    for _ in range(25):
        torch.cuda.synchronize()
        if behind_sleep:
            torch.cuda._sleep(int(3e6))
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter()
        start.record()
        fn()
        end.record()
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        gpu.append(start.elapsed_time(end))
        host.append((t1 - t0) * 1e3)
    return statistics.median(gpu[5:]), statistics.median(host[5:])


for (B, H, L, D), topk, bq, bk in CASES:
    q, k, v, g, w, b = make_inputs(B, H, L, D)
    o = sla.sla_attention(q, k, v, w, b, topk, blkq=bq, blkk=bk)
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        o_dense = torch.nn.functional.scaled_dot_product_attention(q, k, v)

    def sla_forward():
        with torch.no_grad():
            sla.sla_attention(q, k, v, w, b, topk, blkq=bq, blkk=bk)

    def dense_forward():
        with torch.no_grad(), sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            torch.nn.functional.scaled_dot_product_attention(q, k, v)

    calls = (("sla fwd", sla_forward), ("sla bwd", lambda: torch.autograd.grad(o, (q, k, v), g, retain_graph=True)),
             ("dense fwd", dense_forward),
             ("dense bwd", lambda: torch.autograd.grad(o_dense, (q, k, v), g, retain_graph=True)))
    for name, fn in calls:
        gpu, host = timed(fn, False)
        gpu_only, _ = timed(fn, True)
        print(f"{(B, H, L, D)} topk {topk} {bq}/{bk} {name:9s}: {gpu:.3f} ms (host issues it in {host:.3f} ms), "
              f"behind a GPU sleep {gpu_only:.3f} ms")
