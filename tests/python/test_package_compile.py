"""torch.compile(fullgraph=True) of a small DiT block that uses SparseLinearAttention (CPU: the
reference path through the sla:: operators): zero graph breaks, and the same loss and gradients
as eager over two training steps."""
import copy

import pytest
import torch
import torch._dynamo
from torch import nn

from sla_toolkit import SparseLinearAttention


class DiTBlock(nn.Module):
    """adaLN-modulated self-attention and MLP, attention heads laid out as diffusers does."""

    def __init__(self, dim=64, heads=2, topk=0.5, blk=32, variant="all"):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.modulation = nn.Linear(dim, 6 * dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(approximate="tanh"), nn.Linear(2 * dim, dim))
        self.attn = SparseLinearAttention(dim // heads, topk, BLKQ=blk, BLKK=blk, variant=variant)
        with torch.no_grad():
            self.attn.proj_l.weight.normal_(0, 0.1)  # trained: the linear branch takes part
            self.attn.proj_l.bias.normal_(0, 0.1)

    def forward(self, x, c):
        B, L, C = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).unsqueeze(1).chunk(6, dim=-1)
        h = self.norm1(x) * (1 + scale1) + shift1
        q, k, v = self.qkv(h).view(B, L, 3, self.heads, C // self.heads).unbind(2)
        o = self.attn(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # (B, H, L, D) views
        x = x + gate1 * self.out(o.transpose(1, 2).reshape(B, L, C))
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


def train_two_steps(model, x, c, call=None):
    """Two SGD steps of model, run through call (the compiled wrapper) or the model itself."""
    call = model if call is None else call
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses, grads = [], []
    for _ in range(2):
        opt.zero_grad()
        loss = call(x, c).square().mean()
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        opt.step()
    return losses, grads


@pytest.mark.parametrize("variant", ["all", "complement"])
def test_compiled_block_trains_like_eager(variant):
    torch.manual_seed(0)
    eager = DiTBlock(variant=variant)
    compiled_model = copy.deepcopy(eager)
    x, c = torch.randn(2, 100, 64), torch.randn(2, 64)

    explanation = torch._dynamo.explain(eager)(x, c)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1, explanation.break_reasons

    torch._dynamo.reset()
    compiled = torch.compile(compiled_model, fullgraph=True)
    want_losses, want_grads = train_two_steps(eager, x, c)
    got_losses, got_grads = train_two_steps(compiled_model, x, c, call=compiled)
    for step in range(2):
        torch.testing.assert_close(got_losses[step], want_losses[step], rtol=1e-5, atol=1e-6)
        for name, g in want_grads[step].items():
            torch.testing.assert_close(got_grads[step][name], g, rtol=1e-4, atol=1e-5, msg=name)
    assert want_grads[0]["attn.proj_l.weight"].abs().sum() > 0  # the SLA parameters learn
