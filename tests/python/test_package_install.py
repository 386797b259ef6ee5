"""How sla_toolkit is found and loaded: the installed copy (pip install .) is complete, current and
built against this torch; the loader's search and its refusals name what is wrong."""
import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sla_toolkit

SOURCE = Path(os.environ.get("SLA_SOURCE_DIR", Path(__file__).resolve().parents[2])) / "python" / "sla_toolkit"
PACKAGE = Path(sla_toolkit.__file__).resolve().parent


def test_installed_package_is_complete_and_current():
    if PACKAGE == SOURCE.resolve():
        pytest.skip("no sla_toolkit installed in this Python (tools/test.sh installs it): testing python/")
    assert sla_toolkit._library.loaded_from() == str(PACKAGE / "lib" / "libsla_ops.so")
    assert sla_toolkit._build_info.TORCH_VERSION == torch.__version__
    assert sla_toolkit._build_info.VERSION == sla_toolkit.__version__
    installed = {p.name for p in PACKAGE.glob("*.py")} - {"_build_info.py"}
    assert installed == {p.name for p in SOURCE.glob("*.py")}
    for name in sorted(installed):
        assert filecmp.cmp(SOURCE / name, PACKAGE / name, shallow=False), (
            f"{name}: the installed copy differs from python/sla_toolkit: reinstall it "
            "(pip install --no-build-isolation ., or bash tools/test.sh)")


def test_installed_package_imports_outside_the_source_tree(tmp_path):
    if PACKAGE == SOURCE.resolve():
        pytest.skip("no sla_toolkit installed in this Python")
    env = {k: v for k, v in os.environ.items() if k not in ("SLA_OPS_LIB", "SLA_BUILD_DIR", "PYTHONPATH")}
    out = subprocess.run([sys.executable, "-c", "import sla_toolkit, torch; print(sla_toolkit._library.loaded_from()); "
                          "print(torch.ops.sla.attention_fwd)"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == [str(PACKAGE / "lib" / "libsla_ops.so"), "sla.attention_fwd"]


def run_source_copy(package_dir: Path, env_extra: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SLA_OPS_LIB", "SLA_BUILD_DIR", "PYTHONPATH")}
    env.update(env_extra)
    code = f"import sys; sys.path.insert(0, {str(package_dir.parent)!r}); import sla_toolkit"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_missing_library_names_every_place_looked(tmp_path):
    copy = tmp_path / "sla_toolkit"
    shutil.copytree(SOURCE, copy, ignore=shutil.ignore_patterns("__pycache__", "lib", "_build_info.py"))
    r = run_source_copy(copy, {"SLA_OPS_LIB": str(tmp_path / "nowhere.so")})
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last == ("sla_toolkit._library.OpsLibraryNotFound: sla_toolkit: libsla_ops.so not found (looked in: "
                    f"package {copy / 'lib' / 'libsla_ops.so'}; $SLA_OPS_LIB {tmp_path / 'nowhere.so'}); install the "
                    "package with `pip install .` from the repository, or set SLA_OPS_LIB to the built library")


def test_other_torch_than_the_build_is_refused(tmp_path):
    copy = tmp_path / "sla_toolkit"
    shutil.copytree(SOURCE, copy, ignore=shutil.ignore_patterns("__pycache__", "lib", "_build_info.py"))
    (copy / "_build_info.py").write_text('VERSION = "0.1.0"\nTORCH_VERSION = "1.0.0"\nWITH_CUDA_KERNELS = False\n'
                                         'CUDA_ARCHITECTURES = ""\n')
    r = run_source_copy(copy, {"SLA_OPS_LIB": os.environ.get("SLA_OPS_LIB", "")})
    assert r.returncode != 0
    assert (f"ImportError: sla_toolkit: built against torch 1.0.0, but this Python has torch {torch.__version__}"
            in r.stderr)
