"""SLA by its definition (shared/docs/sla-algorithm.md), written plainly in float64 PyTorch for the
tests: loops over blocks, no code shared with the C++ reference or the kernels."""
import math

import torch
import torch.nn.functional as F

PHI = {"softmax": lambda x: F.softmax(x, dim=-1), "elu": lambda x: F.elu(x) + 1, "relu": F.relu}


def block_mask(q, k, topk, blkq, blkk):
    """bool (B, H, Nq, Nk): the key blocks each query block attends to exactly."""
    L = q.shape[2]
    nq, nk = math.ceil(L / blkq), math.ceil(k.shape[2] / blkk)
    pooled_q = torch.stack([q[:, :, i * blkq:(i + 1) * blkq].mean(2) for i in range(nq)], 2)
    smooth_k = k - k.mean(2, keepdim=True)
    pooled_k = torch.stack([smooth_k[:, :, j * blkk:(j + 1) * blkk].mean(2) for j in range(nk)], 2)
    score = pooled_q @ pooled_k.transpose(-1, -2)
    n = max(1, min(nk, math.floor(topk * nk)))
    mask = torch.zeros(score.shape, dtype=torch.bool)
    return mask.scatter_(-1, score.topk(n, dim=-1).indices, True)


def attention(q, k, v, w, b, topk, blkq=64, blkk=64, feature_map="softmax", variant="all"):
    """o = softmax-attention over the selected blocks + proj_l(linear attention), float64."""
    q, k, v, w, b = (t.double() for t in (q, k, v, w, b))
    B, H, L, D = q.shape
    mask = block_mask(q.detach(), k.detach(), topk, blkq, blkk)
    keep = mask.repeat_interleave(blkq, 2)[:, :, :L].repeat_interleave(blkk, 3)[..., :L]
    scores = (q @ k.transpose(-1, -2)) * D ** -0.5
    o_s = scores.masked_fill(~keep, float("-inf")).softmax(-1) @ v
    phi = PHI[feature_map]
    pq, pk = phi(q), phi(k)
    if variant == "all":
        o_l = (pq @ (pk.transpose(-1, -2) @ v)) / ((pq * pk.sum(2, keepdim=True)).sum(-1, keepdim=True) + 1e-5)
    else:  # over the keys of the blocks the sparse branch left out; nothing left: 0
        rows = []
        for i in range(mask.shape[2]):
            left = (~keep[:, :, i * blkq, :]).unsqueeze(-1).double()      # (B, H, L, 1)
            state = (pk * left).transpose(-1, -2) @ v                      # (B, H, D, D)
            z = (pk * left).sum(2, keepdim=True)                           # (B, H, 1, D)
            qi = pq[:, :, i * blkq:(i + 1) * blkq]
            den = (qi * z).sum(-1, keepdim=True)
            rows.append(torch.where(den == 0, torch.zeros_like(qi @ state),
                                    (qi @ state) / torch.where(den == 0, torch.ones_like(den), den)))
        o_l = torch.cat(rows, 2)
    return o_s + o_l @ w.T + b
