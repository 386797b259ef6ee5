#!/usr/bin/env bash
# Runs every test: installs what is needed, builds, runs the reader's corpus under ASan/UBSan in a
# second (LibTorch-free) build, then CTest over the main build (C++ Catch2 suites and the Python
# interop tests). GPU tests are reported as skipped where no CUDA device is present.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/tools/setup.sh"
build="${SLA_BUILD_DIR:-$root/build}"
SLA_BUILD_DIR="$build" bash "$root/tools/build.sh"
if [[ -f "$root/tests/corpus/sanitize.sh" ]]; then
  echo "test: corpus under ASan/UBSan" >&2
  bash "$root/tests/corpus/sanitize.sh" "${build}-sanitize"
fi
cd "$build"
ctest --output-on-failure -j "$(nproc)" "$@"
