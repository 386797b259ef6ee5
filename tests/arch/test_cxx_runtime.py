"""Our shared libraries that load into a Python process beside LibTorch (the operator library
libsla_ops.so, the example's libsla_dit_ops.so) use the process's one C++ runtime: they need the
shared libstdc++.so.6 and define none of libstdc++'s own code. A copy of libstdc++ linked into one
of them (a toolchain that links it statically, as the GPU machine's did) has its own locale state:
its first `ostream << double` crashed every torchrun rank there (cmake/SlaTorch.cmake links the
shared runtime by name). The check itself is shown to catch such a library, built here with
-static-libstdc++."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

# libstdc++'s own definitions, which only a copy of the runtime puts into a library of ours:
# std::locale::classic(), std::ostream::_M_insert<double>(double).
RUNTIME_SYMBOLS = ["_ZNSt6locale7classicEv", "_ZNSo9_M_insertIdEERSoT_"]


def tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed")
    return path


def runtime_problems(lib: Path) -> list[str]:
    """Why lib does not share the process's C++ runtime ([] when it does)."""
    problems = []
    dynamic = subprocess.run([tool("readelf"), "-d", str(lib)], capture_output=True, text=True, check=True).stdout
    if "[libstdc++.so.6]" not in dynamic:
        problems.append("does not need the shared libstdc++.so.6")
    defined = subprocess.run([tool("nm"), "--defined-only", str(lib)], capture_output=True, text=True,
                             check=True).stdout.split()
    copied = [s for s in RUNTIME_SYMBOLS if s in defined]
    if copied:
        problems.append(f"holds its own copy of libstdc++ (defines {', '.join(copied)})")
    return problems


def test_libraries_beside_libtorch_share_the_process_cxx_runtime():
    build = Path(os.environ.get("SLA_BUILD_DIR", ""))
    libs = [build / "src" / "sla" / "ops" / "libsla_ops.so", build / "examples" / "libsla_dit_ops.so"]
    built = [lib for lib in libs if lib.is_file()]
    if not built:
        pytest.skip("a build without LibTorch (SLA_BUILD_DIR): no library that loads beside it")
    problems = {lib.name: runtime_problems(lib) for lib in built}
    assert not any(problems.values()), problems


def test_the_check_catches_a_library_with_its_own_runtime(tmp_path):
    source = tmp_path / "copy.cpp"
    source.write_text('#include <sstream>\n#include <string>\n'
                      'std::string show(double x) { std::ostringstream out; out << x; return out.str(); }\n')
    lib = tmp_path / "libcopy.so"
    built = subprocess.run([tool("c++"), "-shared", "-fPIC", "-static-libstdc++", str(source), "-o", str(lib)],
                           capture_output=True, text=True)
    if built.returncode != 0:
        pytest.skip(f"this compiler cannot link libstdc++ statically: {built.stderr[-300:]}")
    assert runtime_problems(lib), "a library with its own libstdc++ passed the check"
