"""sla_toolkit.SparseLinearAttention against the public module's API and the float64 definition."""
import math
import warnings

import pytest
import torch

import sla_oracle
from sla_toolkit import SparseLinearAttention, block_map
from sla_toolkit.ops import blocks_per_row


def qkv(B=2, H=3, L=130, D=32, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, L, H, D, generator=g, dtype=dtype).transpose(1, 2) for _ in range(3)]


def test_constructor_parameters_and_state_dict_are_the_public_ones():
    m = SparseLinearAttention(head_dim=64, topk=0.2)
    assert (m.topk, m.BLKQ, m.BLKK, m.dtype, m.variant) == (0.2, 64, 64, torch.bfloat16, "all")
    assert SparseLinearAttention(64, 0.2, use_bf16=False).dtype == torch.float16
    sd = m.state_dict()
    assert list(sd) == ["proj_l.weight", "proj_l.bias"]
    assert sd["proj_l.weight"].shape == (64, 64) and sd["proj_l.bias"].shape == (64,)
    assert all(t.dtype == torch.float32 and not t.any() for t in sd.values())
    assert [n for n, _ in m.named_parameters()] == ["proj_l.weight", "proj_l.bias"]
    assert dict(m.named_buffers()) == {}


def test_constructor_refuses_what_it_cannot_run():
    with pytest.raises(NotImplementedError, match="Not supported feature map hedgehog"):
        SparseLinearAttention(64, 0.2, feature_map="hedgehog")
    with pytest.raises(ValueError, match="variant: expected 'all' or 'complement', got 'both'"):
        SparseLinearAttention(64, 0.2, variant="both")
    with pytest.raises(ValueError, match="BLKQ: expected 32, 64 or 128, got 48"):
        SparseLinearAttention(64, 0.2, BLKQ=48)
    with pytest.raises(ValueError, match=r"topk: expected a fraction in \(0, 1\], got 0"):
        SparseLinearAttention(64, 0)


def test_forward_refuses_inputs_it_cannot_run():
    m = SparseLinearAttention(32, 0.5)
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"do not make attention: \(2, 3, 130, 32\), \(2, 3, 129, 32\)"):
        m(q, k[:, :, 1:], v)
    with pytest.raises(ValueError, match="expected head_dim 32, got 16"):
        m(*(t[..., :16] for t in (q, k, v)))
    with pytest.raises(ValueError, match=r"shape \(B, H, L, D\), got \(3, 130, 32\)"):
        m(q[0], k[0], v[0])


def test_shapes_sla_does_not_define_run_dense_sdpa_with_one_warning():
    # Cross-attention (Wan's text tokens), grouped-query attention and a value head dim of its own
    # reach the module through SimpleTuner's wrapper: dense SDPA (the oracle), never an exception,
    # and never the trainer's replaced torch.nn.functional name (which would call the module again).
    m = SparseLinearAttention(32, 0.5)
    q, k, v = qkv()
    g = torch.Generator().manual_seed(5)
    cases = {
        "query length != key length": (q, k[:, :, :77], v[:, :, :77]),
        "query heads != key/value heads": (q, k[:, :1], v[:, :1]),
        "value head_dim != query head_dim": (q, k, torch.randn(2, 3, 130, 16, dtype=q.dtype, generator=g)),
    }
    sdpa = torch.nn.functional.scaled_dot_product_attention
    try:
        torch.nn.functional.scaled_dot_product_attention = lambda *a, **kw: pytest.fail("the replaced name was called")
        for why, (a, b, c) in cases.items():
            with pytest.warns(UserWarning, match=f"{why}.*dense SDPA"):
                o, sparsity = m(a, b, c, return_sparsity=True)
            expected = sdpa(a, b, c, enable_gqa=a.shape[1] != b.shape[1])
            assert sparsity == 1.0 and torch.equal(o, expected), why
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # once per reason
                m(a, b, c)
    finally:
        torch.nn.functional.scaled_dot_product_attention = sdpa


@pytest.mark.parametrize("feature_map,variant,blkq,blkk", [("softmax", "all", 64, 64), ("relu", "complement", 32, 64),
                                                           ("elu", "all", 128, 32)])
def test_forward_and_backward_match_the_definition(feature_map, variant, blkq, blkk):
    torch.manual_seed(0)
    m = SparseLinearAttention(32, 0.3, feature_map=feature_map, BLKQ=blkq, BLKK=blkk, variant=variant)
    with torch.no_grad():  # a trained projection, so that the linear branch shows
        m.proj_l.weight.normal_(0, 0.2)
        m.proj_l.bias.normal_(0, 0.2)
    q, k, v = (t.requires_grad_() for t in qkv())
    o = m(q, k, v)
    assert o.dtype == torch.float64 and o.shape == q.shape
    leaves = [t.detach().requires_grad_() for t in (q, k, v, m.proj_l.weight, m.proj_l.bias)]
    want = sla_oracle.attention(*leaves, 0.3, blkq, blkk, feature_map, variant)
    torch.testing.assert_close(o, want, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(o)
    o.backward(g)
    want.backward(g)
    for got, ref in zip((q.grad, k.grad, v.grad), leaves[:3]):
        torch.testing.assert_close(got, ref.grad, rtol=1e-10, atol=1e-10)
    # proj_l is float32: its gradient is the float64 one rounded
    torch.testing.assert_close(m.proj_l.weight.grad, leaves[3].grad.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(m.proj_l.bias.grad, leaves[4].grad.float(), rtol=1e-5, atol=1e-5)


def test_untrained_module_is_sparse_attention_alone():
    m = SparseLinearAttention(32, 0.5, BLKQ=32, BLKK=32)
    q, k, v = qkv(L=96)
    zero = torch.zeros(32, 32, dtype=torch.float64), torch.zeros(32, dtype=torch.float64)
    torch.testing.assert_close(m(q, k, v), sla_oracle.attention(q, k, v, *zero, 0.5, 32, 32), rtol=0, atol=1e-12)


@pytest.mark.parametrize("L,topk,blkk", [(200, 0.5, 64), (200, 0.1, 64), (4608, 0.05, 64), (300, 1.0, 32)])
def test_return_sparsity_is_the_selected_fraction(L, topk, blkk):
    m = SparseLinearAttention(16, topk, BLKQ=64, BLKK=blkk)
    q, k, v = qkv(B=1, H=1, L=L, D=16, dtype=torch.float32)
    o, sparsity = m(q, k, v, return_sparsity=True)
    nk = math.ceil(L / blkk)
    lut, _ = block_map(q, k, topk, 64, blkk)
    assert isinstance(sparsity, float) and sparsity == lut.shape[-1] / nk == blocks_per_row(topk, nk) / nk


def test_simpletuner_lifecycle():
    """What SimpleTuner's backend does with the module: to(device), proj_l reassigned in float32,
    load_state_dict(strict=False), parameters in the optimizer, train() each call."""
    m = SparseLinearAttention(head_dim=32, topk=0.25, feature_map="softmax", BLKQ=64, BLKK=64, use_bf16=True,
                              tie_feature_map_qk=True)
    m.to("cpu")
    m.proj_l = m.proj_l.to(device="cpu", dtype=torch.float32)
    state = {"proj_l.weight": torch.full((32, 32), 0.01), "proj_l.bias": torch.full((32,), 0.02)}
    missing, unexpected = m.load_state_dict(state, strict=False)
    assert not missing and not unexpected
    opt = torch.optim.SGD([{"params": list(m.parameters())}], lr=0.1)
    m.train(True)
    q, k, v = qkv(B=1, H=2, L=128, D=32, dtype=torch.float32)
    before = m.proj_l.weight.detach().clone()
    m(q, k, v).square().mean().backward()
    opt.step()
    assert not torch.equal(before, m.proj_l.weight)  # the reassigned proj_l is the one trained
    assert m.proj_l.weight.dtype == torch.float32


def test_half_module_keeps_a_float32_projection_in_the_computation():
    # .to(bfloat16) casts proj_l as in the public module; the computation still applies it in float32
    m = SparseLinearAttention(32, 0.5, BLKQ=32, BLKK=32)
    with torch.no_grad():
        m.proj_l.weight.normal_(0, 0.2)
    q, k, v = qkv(B=1, H=1, L=64, dtype=torch.float32)
    ref = m(q, k, v)
    m.to(torch.bfloat16)
    w = m.proj_l.weight.float()
    exact = sla_oracle.attention(q, k, v, w, m.proj_l.bias.float(), 0.5, 32, 32)
    torch.testing.assert_close(m(q, k, v), exact.float(), rtol=1e-4, atol=1e-4)
    assert ref.dtype == torch.float32
