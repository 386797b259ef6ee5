"""SLA in multi-process training (torch.distributed): data parallelism and Ulysses sequence parallelism.

The collectives are the C++ library's (``src/sla/distributed.h``), reached through operators that
take a group's name: C++ resolves the very ``ProcessGroup`` Python created, so NCCL, gloo or any
other backend works, and the C++ trainer hooks and Python agree on every rule.

**Inside DDP or FSDP2.** ``SparseLinearAttention`` keeps ``proj_l`` as an ordinary ``nn.Parameter``
of the model: ``DistributedDataParallel`` broadcasts it at wrap time and averages its gradient,
``fully_shard`` shards it like any other weight. Nothing to do.

**Modules outside the wrapped model** (SimpleTuner's attention backend builds one SLA module per
(head dim, dtype, device) on the first forward and hands its parameters to the optimizer itself, so
no DDP sees them, and each rank would train its own ``proj_l``): call :func:`join` once after
``init_process_group``. From then on, on its first forward, every ``SparseLinearAttention`` of this
process (the drop-in's included)

- checks that every rank built the same module (settings, head dim, dtype; a mismatch raises on
  every rank, naming both ranks' values),
- takes rank 0's parameters (so a state loaded by rank 0 only, or a per-rank initialisation, ends
  up identical everywhere), and
- averages its gradients over the group right after they are accumulated (a hook on each
  parameter; every rank runs the same backward, so the all-reduces line up).

Only the main process writes ``sla_attention.pt`` (SimpleTuner already does so); every rank loads it.

**Ulysses.** :class:`SequenceParallel` wraps a module whose inputs are sequence shards:
``SequenceParallel(SparseLinearAttention(...), group)(q, k, v)`` with q, k, v of shape
(B, H, L_r, D), rank r holding rows as ``torch.tensor_split`` splits L over the group, returns the
rank's shard of SLA over the whole sequence (heads must be divisible by the group size). Its
gradients flow to q, k, v and to ``proj_l``; average ``proj_l``'s gradient over the group like every
shared parameter (DDP over the same ranks does it, or :func:`average_gradients`).
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn

from .module import SparseLinearAttention

__all__ = ["group_name", "broadcast_parameters", "average_gradients", "check_same", "join", "leave",
           "shard_sequence", "ulysses_attention", "SequenceParallel"]


def group_name(group: dist.ProcessGroup | None = None) -> str:
    """The name under which torch registered the group (default: the world), as the C++ side resolves it."""
    return (group if group is not None else dist.group.WORLD).group_name


def broadcast_parameters(params: Iterable[torch.Tensor], group: dist.ProcessGroup | None = None) -> None:
    """Every rank's tensors become rank 0's (rank 0 of the group), in place."""
    with torch.no_grad():
        torch.ops.sla.broadcast_from_rank0_([p.detach() for p in params], group_name(group))


def average_gradients(params: Iterable[torch.Tensor], group: dist.ProcessGroup | None = None) -> None:
    """Each parameter's gradient becomes its mean over the group (missing gradients count as zero)."""
    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    torch.ops.sla.all_reduce_mean_(grads, group_name(group))


def check_same(what: str, description: str, group: dist.ProcessGroup | None = None) -> None:
    """Raises RuntimeError on every rank when the ranks' descriptions differ, naming rank 0's and the first other."""
    torch.ops.sla.check_same_on_all_ranks(group_name(group), what, description)


def describe(module: SparseLinearAttention) -> str:
    """What ranks must agree on for one module: its settings, head dim and parameter dtype."""
    weight = module.proj_l.weight
    return (f"(topk={module.topk} feature_map={module.feature_map} blkq={module.BLKQ} blkk={module.BLKK} "
            f"tie_feature_map_qk={module.tie_feature_map_qk} variant={module.variant}; head_dim "
            f"{weight.shape[-1]}, dtype {str(module.dtype).removeprefix('torch.')}, proj_l on {weight.device.type})")


# ---- join: SLA modules outside any DDP ---------------------------------------------------------
_joined_group: dist.ProcessGroup | None = None
_hook_handle = None
_MARK = "_sla_joined_group"


def _grad_hook(group_name_: str):
    def hook(param: torch.Tensor) -> None:
        torch.ops.sla.all_reduce_mean_([param.grad], group_name_)
    return hook


def _on_first_forward(module: nn.Module, args) -> None:
    if not isinstance(module, SparseLinearAttention) or getattr(module, _MARK, None) is not None:
        return
    name = group_name(_joined_group)
    check_same("SLA settings or modules", describe(module), _joined_group)
    broadcast_parameters(module.parameters(), _joined_group)
    for p in module.parameters():
        if p.requires_grad:
            p.register_post_accumulate_grad_hook(_grad_hook(name))
    setattr(module, _MARK, name)


def join(group: dist.ProcessGroup | None = None) -> None:
    """Every SparseLinearAttention of this process joins `group` (default: the world) on its first
    forward: same module on every rank (checked), rank 0's parameters, gradients averaged. Call it on
    every rank after ``init_process_group`` and before the first forward. Modules that already ran
    join on their next forward. Not for modules inside DDP/FSDP, which do this themselves."""
    global _joined_group, _hook_handle
    if group is None and not dist.is_initialized():
        raise RuntimeError("sla_toolkit.distributed.join: torch.distributed is not initialised "
                           "(call torch.distributed.init_process_group first)")
    _joined_group = group if group is not None else dist.group.WORLD
    if _hook_handle is None:
        _hook_handle = nn.modules.module.register_module_forward_pre_hook(_on_first_forward)


def leave() -> None:
    """Undoes :func:`join` for modules that have not run yet (joined modules keep their gradient hooks)."""
    global _joined_group, _hook_handle
    if _hook_handle is not None:
        _hook_handle.remove()
    _hook_handle, _joined_group = None, None


# ---- Ulysses ------------------------------------------------------------------------------------
def shard_sequence(x: torch.Tensor, dim: int, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """This rank's shard of x along `dim` (torch.tensor_split's rule, as the Ulysses exchange expects); a view."""
    g = group if group is not None else dist.group.WORLD
    return x.tensor_split(dist.get_world_size(g), dim=dim)[dist.get_rank(g)]


def ulysses_attention(module: SparseLinearAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      group: dist.ProcessGroup | None = None, length: int | None = None) -> torch.Tensor:
    """The module's SLA over the whole sequence, from and to this rank's sequence shard (B, H, L_r, D).

    `length`: the whole sequence's length; None gathers the shards' lengths first (one small collective).
    """
    dtype = q.dtype
    if q.device.type == "cuda":  # as the module: the kernels run in its dtype
        q, k, v = q.to(module.dtype), k.to(module.dtype), v.to(module.dtype)
    weight, bias = module.proj_l.weight, module.proj_l.bias
    if weight.dtype in (torch.float16, torch.bfloat16):
        weight, bias = weight.float(), bias.float()
    o = torch.ops.sla.ulysses_attention(q, k, v, weight, bias, float(module.topk), int(module.BLKQ), int(module.BLKK),
                                        module.feature_map, module.variant, 0.0, group_name(group),
                                        -1 if length is None else int(length))
    return o.to(dtype)


class SequenceParallel(nn.Module):
    """Wraps an SLA module for Ulysses: forward(q, k, v) takes and returns sequence shards.
    The wrapped module (and its proj_l) stays reachable as ``.module``, in state dicts as ``module.proj_l.*``."""

    def __init__(self, module: SparseLinearAttention, group: dist.ProcessGroup | None = None):
        super().__init__()
        self.module = module
        self.group = group

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return ulysses_attention(self.module, q, k, v, self.group)
