"""SLA through the Python API against cuDNN SDPA in the same process: sla_toolkit.sla_attention
eager and under torch.compile(fullgraph=True), forward (inference, no_grad; training, with
gradients on) and backward, at the Wan and Flux rows of the C++ benchmark (bench/sla_bench.cpp,
`sla-bench`), measured the way sla-bench measures: each figure is cuDNN's time over SLA's, median
of CUDA-event timings with the device idle before each call (or, with --host-ahead, each call queued
behind a GPU spin, so that only its GPU work is timed); the backward is timed alone on one retained
graph, gradients of q, k, v returned. Compare the ratios with sla-bench's rows of the same
run: the Python path should stay within 5 % of the C++ path.

Usage, on a GPU machine with the operator library built (or sla_toolkit installed):
  SLA_OPS_LIB=build/src/sla/ops/libsla_ops.so python3 bench/python_api_bench.py [--reps N] [--rounds N] [--rows I ...]
      [--host-ahead] [--no-steps] [--markdown FILE] [--commit ID]
"""
import argparse
import statistics
import sys
import time

import torch
import torch._functorch.config
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from sla_case import import_sla_toolkit, make_inputs

sla = import_sla_toolkit()

# (B, H, L, D), topk, blkq, blkk: Wan 2.1 (32760 tokens, 12 heads) and Flux (4608 tokens, 24 heads).
CLOCKS = {False: "the device idle before each call (host time to the first kernel included)",
          True: "each call queued behind a GPU spin (host ahead: GPU work alone)"}
ROWS = [((1, 12, 32760, 128), 0.05, 128, 64), ((1, 24, 4608, 128), 0.05, 128, 64),
        ((1, 24, 4608, 128), 0.2, 128, 64)]


_spin_cycles_per_ms = None


def spin_cycles_per_ms():
    """GPU spin cycles per ms: a 1M-cycle torch.cuda._sleep timed by median_ms (as bench/cuda_timing.h)."""
    global _spin_cycles_per_ms
    if _spin_cycles_per_ms is None:
        _spin_cycles_per_ms = 1_000_000 / max(median_ms(lambda: torch.cuda._sleep(1_000_000), 1, 1), 1e-3)
    return _spin_cycles_per_ms


def median_ms(fn, warmup, reps, host_ahead=False):
    """Median CUDA-event time of fn() in ms (as sla-bench's median_ms, bench/cuda_timing.h): the device
    idle before each call, or with host_ahead each call queued behind a GPU spin of twice the longest
    warm-up call's host time plus 1 ms, so that only the call's GPU work is timed."""
    host_ms = 0.0
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        host_ms = max(host_ms, 1e3 * (time.perf_counter() - t0))
        if host_ahead:
            torch.cuda.synchronize()
    spin = int(spin_cycles_per_ms() * (2 * host_ms + 1)) if host_ahead else 0
    times = []
    for _ in range(reps):
        if spin:
            torch.cuda._sleep(spin)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def timings(attn, new_inputs, warmup, reps, host_ahead):
    """(inference fwd, training fwd, bwd) ms, in sla-bench's sequence (time_attention): the
    allocator's cache emptied, fresh q, k, v, dO, one forward and backward, then the forward without
    gradients, the forward with gradients, and the backward alone on one retained graph, gradients
    of q, k, v returned. The sequence matters to the dense baseline: cuDNN's time moves by several
    per cent with where its buffers lie (bench/NOTES.md, session 11)."""
    torch.cuda.empty_cache()
    q, k, v, grad_o = new_inputs()
    torch.autograd.grad(attn(q, k, v), (q, k, v), grad_o)
    torch.cuda.synchronize()
    with torch.no_grad():
        fwd = median_ms(lambda: attn(q, k, v), warmup, reps, host_ahead)
    train_fwd = median_ms(lambda: attn(q, k, v), warmup, reps, host_ahead)
    o = attn(q, k, v)
    bwd = median_ms(lambda: torch.autograd.grad(o, (q, k, v), grad_o, retain_graph=True), warmup, reps, host_ahead)
    return fwd, train_fwd, bwd


def step_ms(attn, q, k, v, grad_o, warmup, reps, host_ahead, cuda_graphs=False):
    """One training step of the attention alone: forward with gradients, then the gradients of q, k, v."""
    def step():
        if cuda_graphs:  # a new iteration for cudagraph trees: the last step's outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        torch.autograd.grad(attn(q, k, v), (q, k, v), grad_o)
    return median_ms(step, warmup, reps, host_ahead)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, nargs="+", help="which rows to run, by index into ROWS (default: all)")
    parser.add_argument("--host-ahead", action="store_true",
                        help="time each call queued behind a GPU spin (GPU work alone, as sla-bench --host-ahead); "
                        "default: the device idle before each call")
    parser.add_argument("--steps", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the training step, eager, compiled and reduce-overhead (default: on)")
    parser.add_argument("--markdown", help="also write the markdown table to this file")
    parser.add_argument("--commit", default="unknown")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("python_api_bench: no CUDA device", file=sys.stderr)
        return 2

    # The gradient arrives in o's layout ((B, L, H, D) memory); AOTAutograd would copy it to a
    # contiguous tensor before every compiled backward unless it expects the output's strides.
    torch._functorch.config.guess_tangent_strides_as_outputs = True
    # The backward is timed on a retained graph, which a compiled backward with donated buffers refuses.
    torch._functorch.config.donated_buffer = False

    def dense(q, k, v):
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v)

    lines, step_lines = [], []
    for (B, H, L, D), topk, blkq, blkk in [ROWS[i] for i in args.rows] if args.rows else ROWS:
        q, k, v, grad_o, w, b = make_inputs(B, H, L, D, seed=L * 131 + H)
        why = sla.kernels_why_not(q, k, v, topk, blkq, blkk)
        if why:
            print(f"python_api_bench: the kernels do not run {(B, H, L, D)} ({why})", file=sys.stderr)
            return 1

        def eager(q, k, v):
            return sla.sla_attention(q, k, v, w, b, topk, blkq=blkq, blkk=blkk)

        torch._dynamo.reset()  # a new row: its own compiled code (the closure's constants change per row)
        compiled = torch.compile(eager, fullgraph=True, dynamic=False)
        with torch.no_grad():  # the compiled graph runs the same deterministic kernels
            assert torch.equal(compiled(q, k, v), eager(q, k, v)), "compiled output differs from eager"
        del q, k, v, grad_o  # each measurement makes its own, as sla-bench does

        def new_inputs():
            return make_inputs(B, H, L, D, seed=L * 131 + H)[:4]

        # Rounds interleave the three, so clock changes hit each alike; each figure is the median over rounds.
        rounds = [[timings(fn, new_inputs, args.warmup, args.reps, args.host_ahead) for fn in (dense, eager, compiled)]
                  for _ in range(args.rounds)]
        (d_fwd, d_train, d_bwd), (e_fwd, e_train, e_bwd), (c_fwd, c_train, c_bwd) = [
            [statistics.median(r[i][j] for r in rounds) for j in range(3)] for i in range(3)]

        def cell(ms, dense_ms):
            return f"{ms:.3f} ({dense_ms / ms:.2f}x)"

        if args.steps:  # the step (fwd + bwd) also through CUDA graphs (mode="reduce-overhead"): no host time per call
            graphed = torch.compile(eager, fullgraph=True, dynamic=False, mode="reduce-overhead")
            q, k, v, grad_o = new_inputs()
            steps = []
            for _ in range(args.rounds):
                steps.append([step_ms(fn, q, k, v, grad_o, args.warmup, args.reps, args.host_ahead,
                                      cuda_graphs=fn is graphed) for fn in (dense, eager, compiled, graphed)])
            d_step, e_step, c_step, g_step = [statistics.median(r[i] for r in steps) for i in range(4)]
            step_lines.append(f"| {B},{H},{L},{D} | {topk:.2f} | {blkq}/{blkk} | {d_step:.3f} | "
                              f"{cell(e_step, d_step)} | {cell(c_step, d_step)} | {cell(g_step, d_step)} |")
            print(step_lines[-1], flush=True)

        row = (f"| {B},{H},{L},{D} | {topk:.2f} | {blkq}/{blkk} | {d_fwd:.3f} / {d_train:.3f} / {d_bwd:.3f} | "
               f"{cell(e_fwd, d_fwd)} | {cell(e_train, d_train)} | {cell(e_bwd, d_bwd)} | "
               f"{cell(c_fwd, d_fwd)} | {cell(c_train, d_train)} | {cell(c_bwd, d_bwd)} |")
        print(row, flush=True)
        lines.append(row)

    header = (f"Card: {torch.cuda.get_device_name()}  \nCommit: {args.commit}  \ntorch {torch.__version__}; bf16, "
              "(B, L, H, D) memory viewed as (B, H, L, D); dense = cuDNN SDPA, eager; SLA = sla_toolkit.sla_attention "
              "(variant all, softmax, random nonzero proj_l), eager and torch.compile(fullgraph=True) (tangent strides "
              "guessed as the output's); inference fwd "
              "under no_grad, training fwd with gradients on, bwd alone on one retained graph (as sla-bench); median "
              f"over {args.rounds} interleaved rounds of the median of {args.reps} CUDA-event timings after "
              f"{args.warmup} warm-up calls, {CLOCKS[args.host_ahead]}; (x) = dense time / SLA time.\n\n"
              "| shape (B,H,L,D) | topk | blkq/blkk | dense fwd / train fwd / bwd ms | eager fwd | eager train fwd | "
              "eager bwd | compiled fwd | compiled train fwd | compiled bwd |\n|---|---|---|---|---|---|---|---|---|---|\n")
    step_header = ("\n\nTraining step of the attention alone (forward with gradients, then the gradients of q, k, v), "
                   "same timing; SLA eager, compiled, and compiled with mode=\"reduce-overhead\" (CUDA graphs):\n\n"
                   "| shape (B,H,L,D) | topk | blkq/blkk | dense step ms | eager step | compiled step | "
                   "compiled reduce-overhead step |\n|---|---|---|---|---|---|---|\n")
    step_table = step_header + "\n".join(step_lines) if step_lines else ""
    table = header + "\n".join(lines) + step_table + "\n"
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
