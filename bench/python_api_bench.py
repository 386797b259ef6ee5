"""SLA through the Python API against cuDNN SDPA in the same process: sla_toolkit.sla_attention
eager and under torch.compile(fullgraph=True), forward (inference, no_grad) and backward, at the Wan
and Flux rows of the C++ benchmark (bench/sla_bench.cpp, `sla-bench`). Each figure is cuDNN's time
over SLA's, median of CUDA-event timings; the backward is timed alone (the forward that builds its
graph runs untimed before each call), gradients of q, k, v as in sla-bench. Compare the ratios with
sla-bench's rows of the same run: the Python path should stay within 5 % of the C++ path.

Usage, on a GPU machine with the operator library built (or sla_toolkit installed):
  SLA_OPS_LIB=build/src/sla/ops/libsla_ops.so python3 bench/python_api_bench.py [--reps N]
      [--markdown FILE] [--commit ID]
"""
import argparse
import statistics
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from sla_case import import_sla_toolkit, make_inputs

sla = import_sla_toolkit()

# (B, H, L, D), topk, blkq, blkk: Wan 2.1 (32760 tokens, 12 heads) and Flux (4608 tokens, 24 heads).
ROWS = [((1, 12, 32760, 128), 0.05, 128, 64), ((1, 24, 4608, 128), 0.05, 128, 64),
        ((1, 24, 4608, 128), 0.2, 128, 64)]


def median_ms(fn, warmup, reps, setup=None):
    """Median CUDA-event time of fn() in ms; setup() runs untimed before each call."""
    times = []
    for i in range(warmup + reps):
        arg = setup() if setup else None
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(arg)
        end.record()
        end.synchronize()
        if i >= warmup:
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def fwd_bwd_ms(attn, q, k, v, grad_o, warmup, reps):
    with torch.no_grad():
        fwd = median_ms(lambda _: attn(q, k, v), warmup, reps)
    bwd = median_ms(lambda o: torch.autograd.grad(o, (q, k, v), grad_o), warmup, reps, setup=lambda: attn(q, k, v))
    return fwd, bwd


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--markdown", help="also write the markdown table to this file")
    parser.add_argument("--commit", default="unknown")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("python_api_bench: no CUDA device", file=sys.stderr)
        return 2

    def dense(q, k, v):
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v)

    lines = []
    for (B, H, L, D), topk, blkq, blkk in ROWS:
        q, k, v, grad_o, w, b = make_inputs(B, H, L, D, seed=L * 131 + H)
        why = sla.kernels_why_not(q, k, v, topk, blkq, blkk)
        if why:
            print(f"python_api_bench: the kernels do not run {(B, H, L, D)} ({why})", file=sys.stderr)
            return 1

        def eager(q, k, v):
            return sla.sla_attention(q, k, v, w, b, topk, blkq=blkq, blkk=blkk)

        compiled = torch.compile(eager, fullgraph=True, dynamic=False)
        with torch.no_grad():  # the compiled graph runs the same deterministic kernels
            assert torch.equal(compiled(q, k, v), eager(q, k, v)), "compiled output differs from eager"
        d_fwd, d_bwd = fwd_bwd_ms(dense, q, k, v, grad_o, args.warmup, args.reps)
        e_fwd, e_bwd = fwd_bwd_ms(eager, q, k, v, grad_o, args.warmup, args.reps)
        c_fwd, c_bwd = fwd_bwd_ms(compiled, q, k, v, grad_o, args.warmup, args.reps)
        row = (f"| {B},{H},{L},{D} | {topk:.2f} | {blkq}/{blkk} | {d_fwd:.3f} | {d_bwd:.3f} | "
               f"{e_fwd:.3f} ({d_fwd / e_fwd:.2f}x) | {e_bwd:.3f} ({d_bwd / e_bwd:.2f}x) | "
               f"{c_fwd:.3f} ({d_fwd / c_fwd:.2f}x) | {c_bwd:.3f} ({d_bwd / c_bwd:.2f}x) |")
        print(row, flush=True)
        lines.append(row)

    header = (f"Card: {torch.cuda.get_device_name()}  \nCommit: {args.commit}  \ntorch {torch.__version__}; bf16, "
              "(B, L, H, D) memory viewed as (B, H, L, D); dense = cuDNN SDPA, eager; SLA = sla_toolkit.sla_attention "
              "(variant all, softmax, random nonzero proj_l), eager and torch.compile(fullgraph=True); fwd under "
              f"no_grad, bwd alone; median of {args.reps} CUDA-event timings after {args.warmup} warm-up calls; "
              "(x) = dense time / SLA time.\n\n"
              "| shape (B,H,L,D) | topk | blkq/blkk | dense fwd ms | dense bwd ms | eager fwd ms | eager bwd ms | "
              "compiled fwd ms | compiled bwd ms |\n|---|---|---|---|---|---|---|---|---|\n")
    table = header + "\n".join(lines) + "\n"
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
