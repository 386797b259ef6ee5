"""sla_toolkit: Sparse-Linear Attention (SLA) for PyTorch on this project's kernels.

Importing it loads the operator library (``torch.ops.sla.*``; see ``_library.py`` for where it is
looked for). What the package offers:

- ``SparseLinearAttention``: the public SLA module's API (thu-ml/SLA), plus ``variant=``;
- ``ops``: the registered operators with their fake implementations and autograd, usable under
  ``torch.compile``, AOTAutograd and CUDA graphs;
- ``save_sla_state`` / ``load_sla_state``: the ``sla_attention.pt`` file (``state.py``);
- ``distributed``: helpers for multi-process training (imported on first use).
"""
from __future__ import annotations

import importlib

import torch

from . import _library

__version__ = "0.1.0"


def _optional_submodule(name: str):
    """The submodule, or None when its file does not exist; any other import error propagates."""
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        return None


# Written by the CMake install of `pip install .`: the torch the operators were built against.
_build_info = _optional_submodule("_build_info")
if _build_info is not None and torch.__version__ != _build_info.TORCH_VERSION:
    raise ImportError(
        f"sla_toolkit: built against torch {_build_info.TORCH_VERSION}, but this Python has torch "
        f"{torch.__version__}; its C++ operators only load into the torch they were built with: "
        "reinstall sla_toolkit (`pip install --no-build-isolation .`) with this torch")

_library.load()


def _export_optional(module_name: str, names: tuple[str, ...]) -> list[str]:
    module = _optional_submodule(module_name)
    if module is None:
        return []
    for n in names:
        globals()[n] = getattr(module, n)
    return list(names)


from . import ops  # noqa: E402  (fake implementations and autograd of the loaded operators)
from .module import SparseLinearAttention  # noqa: E402
from .ops import block_map, kernels_why_not, sla_attention  # noqa: E402

__all__ = ["__version__", "SparseLinearAttention", "block_map", "kernels_why_not", "ops", "sla_attention"]
__all__ += _export_optional("state", ("save_sla_state", "load_sla_state"))


def __getattr__(name: str):
    # `sla_toolkit.distributed` on first use: it imports torch.distributed, which plain users skip.
    if name == "distributed":
        module = _optional_submodule("distributed")
        if module is not None:
            return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
