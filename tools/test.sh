#!/usr/bin/env bash
# Runs every test: installs what is needed, builds, installs the Python package into .venv (from the
# same build folder), runs the reader's corpus under ASan/UBSan in a second (LibTorch-free) build,
# then CTest over the main build (C++ Catch2 suites and the Python interop tests). GPU tests are
# reported as skipped where no CUDA device is present.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/tools/setup.sh"
build="${SLA_BUILD_DIR:-$root/build}"
SLA_BUILD_DIR="$build" bash "$root/tools/build.sh"
# The Python package sla_toolkit into .venv, built by scikit-build-core in this same build folder
# (the kernels compile once); tests/python checks the installed copy.
echo "test: pip install . into .venv (build folder $build)" >&2
"$root/.venv/bin/python" -m pip install -q --no-build-isolation --no-deps -Cbuild-dir="$build" "$root" >&2
if [[ -f "$root/tests/corpus/sanitize.sh" ]]; then
  echo "test: corpus under ASan/UBSan" >&2
  bash "$root/tests/corpus/sanitize.sh" "${build}-sanitize"
fi
cd "$build"
ctest --output-on-failure -j "$(nproc)" "$@"
