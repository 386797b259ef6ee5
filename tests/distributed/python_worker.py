"""One rank of the Python-side tests (sla_toolkit.distributed). The arguments name the scenarios, run
in order in one world; the rank prints one JSON line per scenario and exits 0 when all pass."""
import json
import os
import sys

import torch
import torch.distributed as dist
from torch import nn

import sla_toolkit
from sla_toolkit import distributed as sla_dist

torch.set_num_threads(1)
B, L, H, D = 4, 70, 2, 16  # 70 rows: partial last blocks
TOL = 1e-10


class Block(nn.Module):
    """Self-attention through the public SLA module: (B, L, H*D) -> (B, L, H*D)."""

    def __init__(self, topk=0.5):
        super().__init__()
        self.qkv = nn.Linear(H * D, 3 * H * D, dtype=torch.float64)
        self.attn = sla_toolkit.SparseLinearAttention(D, topk, BLKQ=32, BLKK=32)
        self.attn.proj_l.to(torch.float64)
        self.out = nn.Linear(H * D, H * D, dtype=torch.float64)

    def forward(self, x):
        q, k, v = self.qkv(x).view(x.shape[0], L, 3, H, D).permute(2, 0, 3, 1, 4)
        o = self.attn(q, k, v)
        return self.out(o.transpose(1, 2).reshape(x.shape[0], L, H * D))


def data(step):
    gen = torch.Generator().manual_seed(100 + step)
    return torch.randn(B, L, H * D, generator=gen, dtype=torch.float64), torch.randn(B, L, H * D, generator=gen,
                                                                                       dtype=torch.float64)


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def same_on_all_ranks(t):
    gathered = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, t.contiguous())
    return all(torch.equal(g, gathered[0]) for g in gathered)


def train(model, steps, shard):
    """SGD steps on the whole batch (shard=False) or on this rank's half; returns losses and proj_l per step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses, projs = [], []
    for step in range(steps):
        x, y = data(step)
        if shard:
            x, y = (t.tensor_split(dist.get_world_size())[dist.get_rank()] for t in (x, y))
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach())
        inner = model.module if hasattr(model, "module") else model
        projs.append(inner.attn.proj_l.weight.detach().clone())
    return losses, projs


def scenario_ddp():
    torch.manual_seed(0)
    reference = Block()
    torch.manual_seed(0)
    ddp = nn.parallel.DistributedDataParallel(Block())
    ref_losses, ref_projs = train(reference, 3, shard=False)
    losses, projs = train(ddp, 3, shard=True)
    mean_losses = []
    for l in losses:
        dist.all_reduce(l)
        mean_losses.append(l / dist.get_world_size())
    errors = {"loss": max(rel(a, b) for a, b in zip(mean_losses, ref_losses)),
              "proj_l": max(rel(a, b) for a, b in zip(projs, ref_projs))}
    identical = all(same_on_all_ranks(p) for p in projs)
    trained = ref_projs[-1].abs().max().item() > 0
    return {"errors": errors, "identical": identical, "trained": trained,
            "ok": identical and trained and max(errors.values()) < TOL}


def scenario_fsdp2():
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    torch.manual_seed(0)
    reference = Block()
    torch.manual_seed(0)
    model = Block()
    fully_shard(model, mesh=init_device_mesh("cpu", (dist.get_world_size(),)))
    ref_losses, _ = train(reference, 3, shard=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for step in range(3):
        x, y = (t.tensor_split(dist.get_world_size())[dist.get_rank()] for t in data(step))
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        dist.all_reduce(loss := loss.detach())
        losses.append(loss / dist.get_world_size())
    proj = model.attn.proj_l.weight.full_tensor()
    errors = {"loss": max(rel(a, b) for a, b in zip(losses, ref_losses)),
              "proj_l": rel(proj, reference.attn.proj_l.weight.detach())}
    return {"errors": errors, "ok": max(errors.values()) < TOL}


def scenario_join():
    """SimpleTuner-style modules outside DDP: per-rank initial proj_l, joined to the world."""
    torch.manual_seed(0)
    reference = sla_toolkit.SparseLinearAttention(D, 0.5, BLKQ=32, BLKK=32)
    torch.manual_seed(0)
    module = sla_toolkit.SparseLinearAttention(D, 0.5, BLKQ=32, BLKK=32)
    with torch.no_grad():  # rank 0 "loaded" a state; the others start elsewhere
        for m in (reference, module):
            m.proj_l.weight.copy_(torch.randn(D, D, generator=torch.Generator().manual_seed(7)))
        if dist.get_rank() != 0:
            module.proj_l.weight.add_(1.0)
    gen = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(B, H, L, D, generator=gen) for _ in range(3))
    mine = slice(*(lambda n, r: (sum(t.shape[0] for t in torch.arange(B).tensor_split(n)[:r]),
                                 sum(t.shape[0] for t in torch.arange(B).tensor_split(n)[:r + 1])))(
        dist.get_world_size(), dist.get_rank()))
    # the mean over ranks of each rank's mean loss = the whole batch's mean (equal halves)
    reference(q, k, v).square().mean().backward()  # before join: a plain single-process module
    sla_dist.join()
    module(q[mine], k[mine], v[mine]).square().mean().backward()
    errors = {name: rel(getattr(module.proj_l, name).grad, getattr(reference.proj_l, name).grad)
              for name in ("weight", "bias")}
    errors["value"] = rel(module.proj_l.weight.detach(), reference.proj_l.weight.detach())
    errors["grad_norm"] = 0.0 if reference.proj_l.weight.grad.abs().max() > 0 else 1.0  # a gradient to compare
    identical = same_on_all_ranks(module.proj_l.weight.grad) and same_on_all_ranks(module.proj_l.weight.detach())
    sla_dist.leave()
    return {"errors": errors, "identical": identical, "ok": identical and max(errors.values()) < 1e-5}


def scenario_mismatch():
    sla_dist.join()
    topk = 0.5 if dist.get_rank() == 0 else 0.25
    module = sla_toolkit.SparseLinearAttention(D, topk, BLKQ=32, BLKK=32)
    x = torch.randn(1, H, L, D)
    try:
        module(x, x, x)
        return {"ok": False, "message": "no error"}
    except RuntimeError as e:
        message = str(e).splitlines()[0]
    return {"message": message,
            "ok": "rank 0 has (topk=0.5 " in message and "rank 1 has (topk=0.25 " in message}


def scenario_ulysses():
    world, rank = dist.get_world_size(), dist.get_rank()
    torch.manual_seed(3)
    module = sla_toolkit.SparseLinearAttention(D, 0.5, BLKQ=32, BLKK=32)
    with torch.no_grad():
        module.proj_l.weight.copy_(torch.randn(D, D))
    module.proj_l.to(torch.float64)
    heads = 2 * world
    q, k, v = (torch.randn(1, heads, L, D, dtype=torch.float64) for _ in range(3))
    full = [t.clone().requires_grad_() for t in (q, k, v)]
    o_full = module(*full)
    o_full.square().sum().backward()
    ref_proj_grad = module.proj_l.weight.grad.clone()
    module.zero_grad()
    mine = [sla_dist.shard_sequence(t, 2).clone().requires_grad_() for t in (q, k, v)]
    o = sla_dist.SequenceParallel(module)(*mine)
    o.square().sum().backward()
    rows = sla_dist.shard_sequence(torch.arange(L), 0)
    errors = {"o": rel(o, o_full[:, :, rows])}
    for name, got, ref in zip("qkv", mine, full):
        errors["d" + name] = rel(got.grad, ref.grad[:, :, rows])
    sla_dist.average_gradients(module.parameters())
    errors["dproj_l"] = rel(module.proj_l.weight.grad * world, ref_proj_grad)
    return {"errors": errors, "ok": max(errors.values()) < TOL}


def main():
    dist.init_process_group("gloo")
    ok = True
    for name in sys.argv[1:]:  # one world for every scenario: processes start once
        result = globals()["scenario_" + name]()
        print(json.dumps({"scenario": name, **result}), flush=True)
        ok = ok and result["ok"]
    dist.destroy_process_group()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
