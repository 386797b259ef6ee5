"""The sla:: operators as the compiler stack sees them (CPU: the reference path): opcheck on every
op (schema, fake against real, autograd registration, AOT dispatch with dynamic shapes), the
backward against finite differences and against autograd of the float64 definition."""
import math
import os

import pytest
import torch

import sla_oracle
import sla_toolkit
from sla_toolkit import ops


def make_inputs(B=1, H=2, L=75, D=16, dtype=torch.float64, seed=0, requires_grad=False):
    """q, k, v as diffusers hands them: (B, L, H, D) transposed to (B, H, L, D), not contiguous."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, L, H, D, generator=g, dtype=dtype).transpose(1, 2) for _ in range(3))
    w = torch.randn(D, D, generator=g) / math.sqrt(D)
    b = torch.randn(D, generator=g)
    tensors = [q, k, v, w, b]
    if requires_grad:
        tensors = [t.detach().requires_grad_() for t in tensors]
    return tensors


OPTIONS = [(0.5, 32, 32, "softmax", "all"), (0.3, 64, 32, "elu", "complement"), (1.0, 32, 64, "relu", "all")]


@pytest.mark.parametrize("topk,blkq,blkk,feature_map,variant", OPTIONS)
def test_opcheck_attention_fwd(topk, blkq, blkk, feature_map, variant):
    args = (*make_inputs(requires_grad=True), topk, blkq, blkk, feature_map, variant, 0.0)
    torch.library.opcheck(torch.ops.sla.attention_fwd.default, args)


@pytest.mark.parametrize("topk,blkq,blkk,feature_map,variant", OPTIONS)
def test_opcheck_attention_bwd(topk, blkq, blkk, feature_map, variant):
    q, k, v, w, b = make_inputs()
    options = (topk, blkq, blkk, feature_map, variant, 0.0)
    saved = torch.ops.sla.attention_fwd(q, k, v, w, b, *options)
    grad_o = torch.randn_like(saved[0])
    torch.library.opcheck(torch.ops.sla.attention_bwd.default, (grad_o, q, k, v, w, b, *saved, *options))


@pytest.mark.parametrize("L", [64, 75, 200])
def test_opcheck_block_map(L):
    q, k, _, _, _ = make_inputs(L=L, dtype=torch.float32)
    torch.library.opcheck(torch.ops.sla.block_map.default, (q, k, 0.4, 32, 64))


def test_kernels_support_op():
    # A query without tensors: one kernel for every key. opcheck's aot_dispatch test compares results
    # with torch.testing, which has no comparison for a str; the other three apply.
    torch.library.opcheck(torch.ops.sla.kernels_support.default, ([1, 2, 128, 64], torch.bfloat16, 0.2, 64, 64),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))
    why_96 = torch.ops.sla.kernels_support([1, 2, 128, 96], torch.bfloat16, 0.2, 64, 64)
    why_64 = torch.ops.sla.kernels_support([1, 2, 128, 64], torch.bfloat16, 0.2, 64, 64)
    if os.environ.get("SLA_WITH_CUDA_KERNELS") == "1":
        assert why_96 == "expected head_dim 64 or 128, got 96" and why_64 == ""
        assert "expected bfloat16 or float16" in torch.ops.sla.kernels_support([1, 2, 128, 64], torch.float32,
                                                                                0.2, 64, 64)
    elif os.environ.get("SLA_WITH_CUDA_KERNELS") == "0":
        assert why_96 == why_64 and "no CUDA kernels" in why_64
    assert ops.kernels_why_not(*make_inputs()[:3], 0.2, 64, 64) == "expected q, k, v on a CUDA device"


@pytest.mark.parametrize("variant", ["all", "complement"])
def test_forward_and_gradients_match_the_definition(variant):
    q, k, v, w, b = make_inputs(L=100, requires_grad=True)
    o = sla_toolkit.sla_attention(q, k, v, w, b, 0.4, blkq=32, blkk=32, feature_map="elu", variant=variant)
    leaves = [t.detach().requires_grad_() for t in (q, k, v, w, b)]
    expected = sla_oracle.attention(*leaves, 0.4, 32, 32, "elu", variant)
    assert o.dtype == torch.float64 and o.stride() == q.stride()
    torch.testing.assert_close(o, expected, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(o)
    got = torch.autograd.grad(o, (q, k, v, w, b), g)
    want = torch.autograd.grad(expected, leaves, g)
    for name, a, e, x in zip("q k v w b".split(), got, want, (q, k, v, w, b)):
        assert a.dtype == x.dtype and a.stride() == x.stride(), name
        torch.testing.assert_close(a, e.to(a.dtype), rtol=1e-5, atol=1e-6, msg=name)


def test_gradcheck_finite_differences():
    q, k, v, w, b = make_inputs(L=40, D=8, requires_grad=True)  # fast mode: random directions
    w64, b64 = (t.detach().double().requires_grad_() for t in (w, b))

    def f(q, k, v, w, b):
        return sla_toolkit.sla_attention(q, k, v, w, b, 0.5, blkq=32, blkk=32)

    assert torch.autograd.gradcheck(f, (q, k, v, w64, b64), eps=1e-6, atol=1e-6, fast_mode=True)


def test_saved_output_modified_in_place_is_refused():
    q, k, v, w, b = make_inputs(requires_grad=True)
    o = sla_toolkit.sla_attention(q, k, v, w, b, 0.5, blkq=32, blkk=32)
    o.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        o.sum().backward()


def test_block_map_matches_the_definition():
    q, k, _, _, _ = make_inputs(L=150)
    lut, mask = sla_toolkit.block_map(q, k, 0.4, blkq=32, blkk=64)
    expected = sla_oracle.block_mask(q, k, 0.4, 32, 64)
    assert torch.equal(mask, expected)
    assert lut.dtype == torch.int64 and lut.shape[-1] == ops.blocks_per_row(0.4, 3)
    assert torch.equal(lut, expected.nonzero()[:, -1].view(lut.shape))  # ascending per row


def test_bad_options_are_refused_by_fake_and_real():
    q, k, v, w, b = make_inputs()
    with pytest.raises(ValueError, match="variant: expected all or complement, got 'none'"):
        sla_toolkit.sla_attention(q, k, v, w, b, 0.5, variant="none")
    with pytest.raises(ValueError, match="feature_map: expected softmax, elu or relu, got 'tanh'"):
        torch.ops.sla.attention_fwd(q, k, v, w, b, 0.5, 64, 64, "tanh", "all", 0.0)


@pytest.mark.parametrize("D,variant", [(64, "all"), (64, "complement"), (96, "all")])
def test_fake_cuda_outputs_follow_the_path_the_library_states(D, variant):
    """Fake CUDA tensors (no device needed): the kernels' saved tensors where this build runs the
    kernels on them, else the reference's empty ones (the GPU test compares fake and real)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        q = torch.empty(2, 300, 3, D, dtype=torch.bfloat16, device="cuda").transpose(1, 2)
        w, b = torch.empty(D, D, device="cuda"), torch.empty(D, device="cuda")
        out = torch.ops.sla.attention_fwd(q, q, q, w, b, 0.2, 128, 64, "softmax", variant, 0.0)
    assert out[0].shape == q.shape and out[0].stride() == q.stride() and out[0].dtype == torch.bfloat16
    assert all(t.device.type == "cuda" for t in out)
    kernels = os.environ.get("SLA_WITH_CUDA_KERNELS") == "1" and D != 96
    f32, i32, bf16 = torch.float32, torch.int32, torch.bfloat16
    if kernels:  # B*H = 6, Nq = 3 (128-row blocks), Nk = 5, floor(0.2 * 5) = 1 block per row
        lin = [((6, D, D), bf16), ((6, D), f32), ((6, D, D), f32)] if variant == "all" else \
              [((0,), bf16), ((0,), f32), ((0,), f32)]
        expected = [((6, 300), f32), ((6, 3, 1), i32)] + lin
    else:
        expected = [((0,), f32), ((0,), i32), ((0,), bf16), ((0,), f32), ((0,), f32)]
    assert [(tuple(t.shape), t.dtype) for t in out[1:]] == expected
