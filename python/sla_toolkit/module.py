"""``SparseLinearAttention``: the public SLA module's API (thu-ml/SLA, ``sparse_linear_attention``)
on this project's operators.

Same constructor, attributes, parameters (``proj_l.weight`` (D, D), ``proj_l.bias`` (D), float32,
zero-initialised) and state-dict keys as the public module, plus ``variant``: ``all`` (the public
main branch: the linear branch over all keys) or ``complement`` (its first release: over the key
blocks the sparse branch left out). Differences, each deliberate:

- on CUDA, q, k, v are cast to ``self.dtype`` as in the public module; on other devices (where the
  public module does not run) they stay in their own dtype and run the reference, so float64
  checks are exact;
- inputs the fused kernels do not run (head dim, dtype, block sizes, sizes) run the reference on
  the same device, with a warning naming the reason once per reason: never a silent wrong answer;
- at least one key block is selected per query block (the public module allows zero);
- q, k, v of different shapes (cross-attention, grouped-query attention), which the public module
  does not run, run dense SDPA, with a warning once per reason;
- ``proj_l`` is read at call time (SimpleTuner reassigns the attribute) and applied in float32.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from . import ops

BLOCK_SIZES = (32, 64, 128)  # src/checkpoint/sla_settings.h kBlockSizes
_warned_reasons: set[str] = set()


def _warn_once(why: str, message: str) -> None:
    """Warns with message the first time the reason why comes up in this process."""
    if why not in _warned_reasons:
        _warned_reasons.add(why)
        warnings.warn(f"SparseLinearAttention: {message}", stacklevel=4)  # the caller of the module's forward


def _softmax_feature_map(x: torch.Tensor) -> torch.Tensor:
    return F.softmax(x, dim=-1)


def _elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    return F.elu(x) + 1


_FEATURE_MAP_FUNCTIONS = {"softmax": _softmax_feature_map, "elu": _elu_feature_map, "relu": F.relu}


class SparseLinearAttention(nn.Module):
    def __init__(self, head_dim: int, topk: float, feature_map: str = "softmax", BLKQ: int = 64, BLKK: int = 64,
                 use_bf16: bool = True, tie_feature_map_qk: bool = True, variant: str = "all"):
        """
        Args:
            head_dim: dimension D of each head.
            topk: fraction of key blocks each query block attends to exactly, in (0, 1].
            feature_map: φ of the linear branch: 'softmax', 'elu' or 'relu'.
            BLKQ, BLKK: query and key block sizes, 32, 64 or 128.
            use_bf16: on CUDA, compute in bfloat16 (default) or float16; the output keeps the input's dtype.
            tie_feature_map_qk: one φ for queries and keys (the maps here have no parameters, so the
                two are always the same function; kept for the public signature and the settings).
            variant: 'all' or 'complement' (see the module's docstring).
        """
        super().__init__()
        if feature_map not in _FEATURE_MAP_FUNCTIONS:
            raise NotImplementedError(f"Not supported feature map {feature_map}.")
        if variant not in ops.VARIANTS:
            raise ValueError(f"SparseLinearAttention: variant: expected 'all' or 'complement', got {variant!r}")
        if not 0 < topk <= 1:
            raise ValueError(f"SparseLinearAttention: topk: expected a fraction in (0, 1], got {topk!r}")
        for name, blk in (("BLKQ", BLKQ), ("BLKK", BLKK)):
            if blk not in BLOCK_SIZES:
                raise ValueError(f"SparseLinearAttention: {name}: expected 32, 64 or 128, got {blk!r}")
        self.dtype = torch.bfloat16 if use_bf16 else torch.float16
        self.topk = topk
        self.BLKQ = BLKQ
        self.BLKK = BLKK
        self.feature_map = feature_map
        self.tie_feature_map_qk = tie_feature_map_qk
        self.variant = variant
        self.feature_map_q = _FEATURE_MAP_FUNCTIONS[feature_map]
        self.feature_map_k = self.feature_map_q
        self.proj_l = nn.Linear(head_dim, head_dim, dtype=torch.float32)
        self.init_weights_()

    def init_weights_(self) -> None:
        with torch.no_grad():
            nn.init.zeros_(self.proj_l.weight)
            nn.init.zeros_(self.proj_l.bias)

    def extra_repr(self) -> str:
        return (f"head_dim={self.proj_l.in_features}, topk={self.topk}, feature_map={self.feature_map!r}, "
                f"BLKQ={self.BLKQ}, BLKK={self.BLKK}, dtype={self.dtype}, variant={self.variant!r}")

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, return_sparsity: bool = False):
        """
        Args:
            q, k, v: (B, H, L, D), one shape (self-attention), any strides; other shapes
                (cross-attention, grouped-query attention) run dense SDPA with a warning.
            return_sparsity: also return the fraction of key blocks each query block attends to
                (1.0 for dense SDPA).
        """
        if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
            raise ValueError("SparseLinearAttention: expected q, k, v of shape (B, H, L, D), got "
                             f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
        if q.shape[-1] != self.proj_l.in_features:
            raise ValueError(f"SparseLinearAttention: expected head_dim {self.proj_l.in_features}, got {q.shape[-1]}")
        if q.shape != k.shape or q.shape != v.shape:
            return self._dense(q, k, v, return_sparsity)
        dtype = q.dtype
        if q.device.type == "cuda":
            q, k, v = q.to(self.dtype), k.to(self.dtype), v.to(self.dtype)
            if not torch.compiler.is_compiling():
                self._warn_if_reference(q, k, v)
        weight, bias = self.proj_l.weight, self.proj_l.bias
        if weight.dtype in (torch.float16, torch.bfloat16):  # a module cast with .to(half): proj_l stays float32
            weight, bias = weight.float(), bias.float()
        o = ops.sla_attention(q, k, v, weight, bias, self.topk, blkq=self.BLKQ, blkk=self.BLKK,
                              feature_map=self.feature_map, variant=self.variant)
        o = o.to(dtype)
        if return_sparsity:
            num_key_blocks = -(-q.shape[2] // self.BLKK)
            return o, ops.blocks_per_row(self.topk, num_key_blocks) / num_key_blocks
        return o

    def _dense(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, return_sparsity: bool):
        """Attention that SLA does not define (cross-attention, grouped-query attention, a value head
        dim of its own): plain SDPA, as the C++ trainer hooks fall back, with a warning once per
        reason. Raising instead would hand the call to SimpleTuner's own fallback, which fails on
        torch 2.11 (3.1.6 passes `scale` and `enable_gqa` by position; README, SimpleTuner)."""
        if k.shape[:3] != v.shape[:3] or q.shape[0] != k.shape[0] or k.shape[-1] != q.shape[-1]:
            raise ValueError("SparseLinearAttention: q, k, v do not make attention: "
                             f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
        why = ("query length != key length" if q.shape[2] != k.shape[2] else
               "query heads != key/value heads" if q.shape[1] != k.shape[1] else
               "value head_dim != query head_dim")
        if not torch.compiler.is_compiling():
            _warn_once(why, f"SLA is self-attention of one shape ({why}); running dense SDPA")
        # aten's op, not torch.nn.functional's name, which a trainer may have replaced by a wrapper
        # that calls this module again (SimpleTuner does).
        o = torch.ops.aten.scaled_dot_product_attention.default(q, k, v, enable_gqa=q.shape[1] != k.shape[1])
        return (o, 1.0) if return_sparsity else o

    def _warn_if_reference(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        why = ops.kernels_why_not(q, k, v, self.topk, self.BLKQ, self.BLKK)
        if why:
            _warn_once(why, f"the fused kernels do not run these inputs ({why}); running the reference on the same "
                            "device (exact, slower, and it holds the (L, L) scores)")
