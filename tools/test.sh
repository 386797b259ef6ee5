#!/usr/bin/env bash
# Runs every test: installs what is needed, builds, then CTest (C++ Catch2 suites and the Python
# interop tests). GPU tests are reported as skipped where no CUDA device is present.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/tools/setup.sh"
build="${SLA_BUILD_DIR:-$root/build}"
SLA_BUILD_DIR="$build" bash "$root/tools/build.sh"
cd "$build"
ctest --output-on-failure -j "$(nproc)" "$@"
