"""What torch.compile adds per call around the SLA operators, on the host, and that it is paid
once per compiled graph rather than per attention: n chained SLA calls (each with its own k, v),
eager against torch.compile(fullgraph=True), host time per call of the training forward and of
the backward (gradients of q and every k, v), for n = 1 and 4. Tiny float32 CPU inputs (the
reference path), so that host time dominates; the difference compiled - eager is the entry cost.

Usage: SLA_OPS_LIB=build/src/sla/ops/libsla_ops.so python3 bench/compile_entry.py
"""
import time

import torch
import torch._functorch.config

from sla_case import import_sla_toolkit

sla = import_sla_toolkit()
B, H, L, D = 1, 1, 64, 16


def host_us(fn, calls=400, repeats=5):
    """Best over `repeats` of the mean time of `calls` calls, in microseconds."""
    for _ in range(20):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def main():
    torch._functorch.config.donated_buffer = False  # the backward is timed on a retained graph
    torch._functorch.config.guess_tangent_strides_as_outputs = True  # as bench/python_api_bench.py
    torch.manual_seed(0)
    rows = lambda: torch.randn(B, L, H, D).transpose(1, 2).requires_grad_()  # noqa: E731
    q, grad_o = rows(), torch.randn(B, L, H, D).transpose(1, 2)  # o's layout
    ks, vs = [rows() for _ in range(4)], [rows() for _ in range(4)]
    w, b = torch.randn(D, D) / D**0.5, torch.randn(D) * 0.1

    for n in (1, 4):
        def chain(x):
            for i in range(n):
                x = sla.sla_attention(x, ks[i], vs[i], w, b, 0.5, blkq=16, blkk=16)
            return x

        compiled = torch.compile(chain, fullgraph=True, dynamic=False)
        leaves = [q] + ks[:n] + vs[:n]
        fwd = [host_us(lambda: fn(q)) for fn in (chain, compiled)]
        outs = [fn(q) for fn in (chain, compiled)]
        bwd = [host_us(lambda: torch.autograd.grad(o, leaves, grad_o, retain_graph=True)) for o in outs]
        print(f"{n} SLA call(s) per graph: training fwd eager {fwd[0]:.0f} us, compiled {fwd[1]:.0f} us "
              f"(+{fwd[1] - fwd[0]:.0f}); bwd eager {bwd[0]:.0f} us, compiled {bwd[1]:.0f} us (+{bwd[1] - bwd[0]:.0f})")


if __name__ == "__main__":
    main()
