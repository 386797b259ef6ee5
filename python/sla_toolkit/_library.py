"""Finds and loads the operator library, libsla_ops.so, which registers the ``sla::`` ops.

Where it is looked for, first found wins:
  1. inside the installed package (``sla_toolkit/lib/libsla_ops.so``, put there by ``pip install .``);
  2. ``$SLA_OPS_LIB``, a path to the library itself;
  3. a build folder of a source checkout: ``$SLA_BUILD_DIR``, else ``<repo>/build``
     (``<build>/src/sla/ops/libsla_ops.so``), when this package is imported from ``<repo>/python``.

A process loads the ops once: if ``sla::`` is already registered (a test that called
``torch.ops.load_library`` first), nothing is loaded again, since a second copy of the library
would register the namespace twice.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

LIBRARY_NAME = "libsla_ops.so"
_PACKAGE_DIR = Path(__file__).resolve().parent
_loaded_from: str | None = None


class OpsLibraryNotFound(ImportError):
    """No libsla_ops.so where sla_toolkit looks for it."""


def candidates() -> list[tuple[str, Path]]:
    """(where, path) pairs in search order; paths may not exist."""
    found = [("package", _PACKAGE_DIR / "lib" / LIBRARY_NAME)]
    if os.environ.get("SLA_OPS_LIB"):
        found.append(("$SLA_OPS_LIB", Path(os.environ["SLA_OPS_LIB"])))
    repo = _PACKAGE_DIR.parent.parent
    if (repo / "CMakeLists.txt").is_file() and (repo / "src" / "sla" / "ops").is_dir():
        build = Path(os.environ["SLA_BUILD_DIR"]) if os.environ.get("SLA_BUILD_DIR") else repo / "build"
        found.append(("build folder", build / "src" / "sla" / "ops" / LIBRARY_NAME))
    return found


def _registered() -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw("sla::block_map", "")
        return True
    except RuntimeError:
        return False


def load() -> str:
    """Loads the library once per process; returns where it came from."""
    global _loaded_from
    if _loaded_from is not None:
        return _loaded_from
    if _registered():
        _loaded_from = "already registered in this process"
        return _loaded_from
    tried = []
    for where, path in candidates():
        if path.is_file():
            torch.ops.load_library(str(path))
            _loaded_from = str(path)
            return _loaded_from
        tried.append(f"{where} {path}")
    raise OpsLibraryNotFound(
        f"sla_toolkit: {LIBRARY_NAME} not found (looked in: {'; '.join(tried)}); "
        "install the package with `pip install .` from the repository, or set SLA_OPS_LIB to the built library")


def loaded_from() -> str | None:
    return _loaded_from
