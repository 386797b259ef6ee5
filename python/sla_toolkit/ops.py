"""The ``sla::`` operators for torch.compile, AOTAutograd and CUDA graphs.

The operators are registered in C++ (``src/sla/ops/sla_ops.cpp``, which states their contract),
with the autograd formula of ``sla::attention_fwd`` (an Autograd-key kernel whose backward is
``sla::attention_bwd`` on the forward's saved outputs). This module adds what the compiler stack
needs from Python: a fake implementation of each operator (``torch.library.register_fake``), the
outputs' shapes, dtypes, strides and devices computed from the inputs' metadata without touching
data. Fakes live here rather than as C++ Meta kernels because one fact is not in the metadata a
Meta kernel sees, the device: on CUDA the forward takes the kernels' path where they support the
inputs, and that path returns saved tensors (lse, block map, linear state) the reference path has
no use for. The fake asks the library the same question the real operator does
(``sla::kernels_support``).

``sla_attention`` is the differentiable function to call; ``block_map`` the block selection.
"""
from __future__ import annotations

import functools
import math

import torch
from torch.utils._python_dispatch import _disable_current_modes

FEATURE_MAPS = ("softmax", "elu", "relu")
VARIANTS = ("all", "complement")


def blocks_per_row(topk: float, num_key_blocks):
    """Key blocks selected per query block: max(1, min(Nk, floor(topk * Nk))) (reference::blocks_per_row)."""
    return max(1, min(num_key_blocks, math.floor(topk * num_key_blocks)))


def _ceil_div(a, b):
    return (a + b - 1) // b


@functools.lru_cache(maxsize=256)
def _kernels_why_not(shape: tuple[int, ...], dtype: torch.dtype, topk: float, blkq: int, blkk: int) -> str:
    # A call with no tensor arguments: outside any dispatch mode (fake tensors, tracing), it just runs.
    with _disable_current_modes():
        return torch.ops.sla.kernels_support(list(shape), dtype, topk, blkq, blkk)


def kernels_why_not(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, topk: float, blkq: int, blkk: int) -> str:
    """Why the fused kernels do not run these inputs ("" when they do): the real operators' path test.

    The device, rank, shape and dtype agreement are checked here as in ``cuda_kernels_support``
    (src/sla/cuda/sla_api.cpp); the head dim, dtype, block sizes and sizes by the library itself.
    """
    if not all(t.device.type == "cuda" for t in (q, k, v)):
        return "expected q, k, v on a CUDA device"
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        return f"expected 4-d (B, H, L, D) tensors, got {tuple(q.shape)}"
    if not (q.shape == k.shape == v.shape):
        return f"expected q, k, v of one shape (Lq = Lk), got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
    if not (q.dtype == k.dtype == v.dtype):
        return "expected q, k, v of one dtype"
    if not (q.device == k.device == v.device):
        return "expected q, k, v on one device"
    # Symbolic sizes become concrete here: the path is a property of the shape (a recompile guard).
    shape = tuple(int(s) for s in q.shape)
    return _kernels_why_not(shape, q.dtype, float(topk), int(blkq), int(blkk))


def _check_options(feature_map: str, variant: str) -> None:
    if feature_map not in FEATURE_MAPS:
        raise ValueError(f"sla ops: feature_map: expected softmax, elu or relu, got {feature_map!r}")
    if variant not in VARIANTS:
        raise ValueError(f"sla ops: variant: expected all or complement, got {variant!r}")


@torch.library.register_fake("sla::block_map")
def _block_map_fake(q, k, topk, blkq, blkk):
    B, H, Lq, _ = q.shape
    nq, nk = _ceil_div(Lq, blkq), _ceil_div(k.shape[2], blkk)
    lut = q.new_empty((B, H, nq, blocks_per_row(topk, nk)), dtype=torch.int64)
    mask = q.new_empty((B, H, nq, nk), dtype=torch.bool)
    return lut, mask


@torch.library.register_fake("sla::attention_fwd")
def _attention_fwd_fake(q, k, v, proj_w, proj_b, topk, blkq, blkk, feature_map, variant, scale):
    _check_options(feature_map, variant)
    o = torch.empty_like(q)
    if kernels_why_not(q, k, v, topk, blkq, blkk) != "":
        # The reference path: the backward recomputes, nothing is saved.
        empty = lambda dtype: q.new_empty((0,), dtype=dtype)  # noqa: E731
        return o, empty(torch.float32), empty(torch.int32), empty(q.dtype), empty(torch.float32), empty(torch.float32)
    B, H, L, D = q.shape
    nq, nk = _ceil_div(L, blkq), _ceil_div(L, blkk)
    lse = q.new_empty((B * H, L), dtype=torch.float32)
    lut = q.new_empty((B * H, nq, blocks_per_row(topk, nk)), dtype=torch.int32)
    if variant == "all":
        lin_state = q.new_empty((B * H, D, D))
        lin_z = q.new_empty((B * H, D), dtype=torch.float32)
        lin_s = q.new_empty((B * H, D, D), dtype=torch.float32)
    else:
        lin_state = q.new_empty((0,))
        lin_z = q.new_empty((0,), dtype=torch.float32)
        lin_s = q.new_empty((0,), dtype=torch.float32)
    return o, lse, lut, lin_state, lin_z, lin_s


@torch.library.register_fake("sla::attention_bwd")
def _attention_bwd_fake(grad_o, q, k, v, proj_w, proj_b, o, lse, lut, lin_state, lin_z, lin_s, topk, blkq, blkk,
                        feature_map, variant, scale):
    _check_options(feature_map, variant)
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), torch.empty_like(proj_w),
            torch.empty_like(proj_b))


def sla_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, proj_w: torch.Tensor, proj_b: torch.Tensor,
                  topk: float, *, blkq: int = 64, blkk: int = 64, feature_map: str = "softmax",
                  variant: str = "all", scale: float | None = None) -> torch.Tensor:
    """SLA: o = sparse(q, k, v) + proj_l(linear(q, k, v)), in q's dtype; differentiable in q, k, v,
    proj_w (D, D) and proj_b (D). q, k, v: (B, H, L, D), any strides. scale: None means D^-1/2.

    The fused kernels run CUDA bf16/fp16 inputs they support; everything else runs the reference
    (any device and float dtype, float64 included). ``kernels_why_not`` says which.
    """
    _check_options(feature_map, variant)
    return torch.ops.sla.attention_fwd(q, k, v, proj_w, proj_b, float(topk), int(blkq), int(blkk), feature_map,
                                       variant, 0.0 if scale is None else float(scale))[0]


def block_map(q: torch.Tensor, k: torch.Tensor, topk: float, blkq: int = 64, blkk: int = 64):
    """The block selection: (lut int64 (B, H, Nq, n) ascending, mask bool (B, H, Nq, Nk))."""
    return torch.ops.sla.block_map(q, k, float(topk), int(blkq), int(blkk))
