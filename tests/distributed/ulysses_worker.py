"""One rank of the Ulysses test: SLA on the whole sequence in one process (float64 reference,
torch.ops.sla.forward) is the oracle; sla::ulysses_attention on this rank's shard must give this
rank's rows of its output and of every gradient. Prints one JSON line per case."""
import json
import os
import sys

import torch
import torch.distributed as dist

import sla_toolkit  # noqa: E402  (loads the operators: $SLA_OPS_LIB)
torch.set_num_threads(1)

TOL = 1e-10


def rel_err(got, want):
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-300)).item()


def case(group, B, H, L, D, topk, blkq, blkk, variant, pass_length):
    rank, world = group.rank(), group.size()
    gen = torch.Generator().manual_seed(1000 * L + H)  # the same inputs on every rank
    q, k, v, g = (torch.randn(B, H, L, D, generator=gen, dtype=torch.float64) for _ in range(4))
    w = torch.randn(D, D, generator=gen, dtype=torch.float64) / D**0.5
    b = torch.randn(D, generator=gen, dtype=torch.float64)
    settings = (topk, blkq, blkk, "softmax", variant, 0.0)

    # The oracle: one process, the whole sequence.
    full = [t.clone().requires_grad_() for t in (q, k, v, w, b)]
    o_full = sla_toolkit.ops.sla_attention(*full, topk, blkq=blkq, blkk=blkk, variant=variant)
    (o_full * g).sum().backward()

    # This rank: its shard of q, k, v (torch.tensor_split's rule), the same projection.
    mine = [t.tensor_split(world, dim=2)[rank].clone().requires_grad_() for t in (q, k, v)]
    proj = [w.clone().requires_grad_(), b.clone().requires_grad_()]
    length = L if pass_length else -1
    o = torch.ops.sla.ulysses_attention(*mine, *proj, *settings, group.group_name, length)
    start = sum(t.shape[2] for t in q.tensor_split(world, dim=2)[:rank])
    rows = slice(start, start + mine[0].shape[2])
    errors = {"o": rel_err(o, o_full[:, :, rows])}
    (o * g[:, :, rows]).sum().backward()
    for name, got, ref in zip("qkv", mine, full[:3]):
        errors["d" + name] = rel_err(got.grad, ref.grad[:, :, rows])
    # proj_l: each rank's gradient covers its heads; averaged over the ranks (what the trainer does
    # for every shared parameter) it is the full gradient / P.
    grads = [p.grad for p in proj]
    torch.ops.sla.all_reduce_mean_(grads, group.group_name)
    for name, got, ref in zip(("dproj_w", "dproj_b"), grads, full[3:]):
        errors[name] = rel_err(got * world, ref.grad)
    gathered = [torch.empty_like(grads[0]) for _ in range(world)]
    dist.all_gather(gathered, grads[0], group=group)
    identical = all(torch.equal(x, gathered[0]) for x in gathered)
    return {"case": [B, H, L, D, variant, pass_length], "errors": errors, "identical": identical,
            "ok": identical and all(e <= TOL for e in errors.values())}


def main():
    dist.init_process_group("gloo")
    group = dist.group.WORLD
    world = group.size()
    results = []
    # L divisible by P, and L that P does not divide (uneven shards: 77 = 39 + 38, or 20+19+19+19).
    for B, H, L, D, topk, blkq, blkk, variant, pass_length in [
        (1, 4, 128, 16, 0.5, 32, 32, "all", True),
        (2, 4, 77, 16, 0.4, 32, 32, "all", False),
        (1, 8, 77, 8, 0.3, 32, 64, "complement", True),
    ]:
        results.append(case(group, B, H, L, D, topk, blkq, blkk, variant, pass_length))
    # A head count the group size does not divide is refused, on every rank, before any exchange.
    x = torch.randn(1, world + 1, 8 // world * world, 8, dtype=torch.float64)
    try:
        torch.ops.sla.ulysses_attention(x, x, x, torch.zeros(8, 8, dtype=torch.float64),
                                        torch.zeros(8, dtype=torch.float64), 0.5, 32, 32, "softmax", "all", 0.0,
                                        group.group_name, -1)
        refused = "no error"
    except RuntimeError as e:
        refused = str(e).splitlines()[0]
    results.append({"case": "heads", "message": refused,
                    "ok": f"{world + 1} heads cannot be split over a sequence-parallel group of {world} ranks" in refused})
    # A shard that does not match the stated length is refused with both numbers.
    try:
        torch.ops.sla.ulysses_attention(x[:, :world], x[:, :world], x[:, :world], torch.zeros(8, 8, dtype=torch.float64),
                                        torch.zeros(8, dtype=torch.float64), 0.5, 32, 32, "softmax", "all", 0.0,
                                        group.group_name, 1000)
        refused = "no error"
    except RuntimeError as e:
        refused = str(e).splitlines()[0]
    results.append({"case": "length", "message": refused, "ok": "its shard of a sequence of 1000 rows" in refused})
    for r in results:
        print(json.dumps(r), flush=True)
    dist.destroy_process_group()
    sys.exit(0 if all(r["ok"] for r in results) else 1)


if __name__ == "__main__":
    main()
