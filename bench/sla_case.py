"""Inputs of one benchmark case for the Python bench scripts: q, k, v and dO as (B, L, H, D) bf16
memory viewed as (B, H, L, D) (the layout of the C++ benchmark), q, k, v requiring gradients, and
a random nonzero proj_l (weight, bias) in float32; the sla_toolkit package they time; the benchmark's
rows by name."""
import importlib.util
import sys
from pathlib import Path

import torch


def import_sla_toolkit():
    """sla_toolkit as installed (pip install .), else this checkout's python/ folder with the operator
    library of $SLA_OPS_LIB or build/ (python/sla_toolkit/_library.py)."""
    if importlib.util.find_spec("sla_toolkit") is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    import sla_toolkit
    return sla_toolkit


# The issue-16 rows by name: ((B, H, L, D), topk, blkq, blkk).
CASES = {"flux": ((1, 24, 4608, 128), 0.2, 128, 64), "wan05": ((1, 12, 32760, 128), 0.05, 128, 64),
         "wan20": ((1, 12, 32760, 128), 0.2, 64, 64), "d64": ((1, 16, 16384, 64), 0.05, 64, 64)}


def make_inputs(B, H, L, D, device="cuda", seed=0):
    torch.manual_seed(seed)
    q, k, v, grad_o = (torch.randn(B, L, H, D, device=device, dtype=torch.bfloat16).transpose(1, 2)
                       for _ in range(4))
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    weight = torch.randn(D, D, device=device) / D**0.5
    bias = torch.randn(D, device=device) * 0.1
    return q, k, v, grad_o, weight, bias
