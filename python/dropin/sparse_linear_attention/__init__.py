"""Drop-in for the public SLA package (thu-ml/SLA, ``sparse_linear_attention``), served by sla_toolkit.

Trainers that do ``from sparse_linear_attention import SparseLinearAttention`` (SimpleTuner's
``--attention_mechanism=sla``, FastVideo, TurboDiffusion) get ``sla_toolkit.SparseLinearAttention``:
the public module's constructor, ``forward(q, k, v, return_sparsity=False)``, parameter names and
state-dict keys, running this project's fused kernels on CUDA and its reference elsewhere. The
variant is the public main branch's (``all``). Installed only on request (python/dropin).
"""
from sla_toolkit import SparseLinearAttention

PROVIDER = "sla_toolkit"  # lets a caller tell this module from the public one

__all__ = ["SparseLinearAttention"]
