"""CPU emulation of the complement backward's bf16 GEMMs at test_sla_ops_gpu.py's shape: the error of
d proj_w against a float64 evaluation of the same formulas, with every GEMM operand rounded to bf16
(26ae7bb) and with the right operands of the block sums, phi(q) S_i and d proj_w kept exact (42de43f),
beside that test's bound 1e-3 (max + 1). Rounding to bf16 and multiplying in float32 stands in for a
bf16 tensor-core GEMM with float32 accumulation. Run: python bench/complement_dw_emulation.py"""
import torch

B, H, L, D, BLKQ, BLKK, TOPK = 1, 2, 333, 64, 64, 32, 0.3
NQ, NK = (L + BLKQ - 1) // BLKQ, (L + BLKK - 1) // BLKK


def blocks(x, blk):
    n = (L + blk - 1) // blk
    return torch.nn.functional.pad(x, (0, 0, 0, n * blk - L)).reshape(B * H, n, blk, D)


def bf16(x):
    return x.to(torch.bfloat16).float()


def d_proj_w(q, k, v, grad_o, mask, dtype, round_operand, exact_right):
    """Σ dOᵀ o_l, o_l = φ(q) S_i / φ(q)·z_i over the key blocks not selected (softmax φ)."""
    Q, G = (blocks(t.to(dtype).reshape(B * H, L, D), BLKQ) for t in (q, grad_o))
    K, V = (blocks(t.to(dtype).reshape(B * H, L, D), BLKK) for t in (k, v))
    phi_q, phi_k = torch.softmax(Q, -1), torch.softmax(K, -1)
    phi_k.reshape(B * H, -1, D)[:, L:] = 0
    right = (lambda x: x) if exact_right else round_operand
    unselected = (~mask).to(dtype)
    block_s = (round_operand(phi_k).transpose(2, 3) @ round_operand(V)).reshape(B * H, NK, D * D)
    s_i = (unselected @ right(block_s)).reshape(B * H, NQ, D, D)
    z_i = (unselected @ phi_k.sum(2)).unsqueeze(2)
    o_l = (round_operand(phi_q) @ right(s_i)) / (phi_q * z_i).sum(-1, keepdim=True)
    return G.reshape(-1, D).t() @ right(o_l.reshape(-1, D))


def main():
    torch.manual_seed(0)
    for trial in range(5):
        q, k, v, grad_o = (torch.randn(B, H, L, D).to(torch.bfloat16) for _ in range(4))
        picked = torch.rand(B * H, NQ, NK).argsort(-1)[..., : max(1, int(TOPK * NK))]
        mask = torch.zeros(B * H, NQ, NK, dtype=torch.bool).scatter_(2, picked, True)
        exact = d_proj_w(q, k, v, grad_o, mask, torch.float64, lambda x: x, True)
        bound = 1e-3 * (exact.abs().max() + 1)
        for name, exact_right in (("every operand bf16 (26ae7bb)", False), ("right operands exact (42de43f)", True)):
            ours = d_proj_w(q, k, v, grad_o, mask, torch.float32, bf16, exact_right).double()
            print(f"trial {trial}: {name:31s} error {(ours - exact).abs().max():.4f}, bound {bound:.4f}")


if __name__ == "__main__":
    main()
