# shellcheck shell=bash
# Sourced by the bench/device_*.sh scripts and bench/python_vs_cxx.sh: how they configure a build
# on the GPU machine. configure_device_build LOG [DIR [CMAKE_ARGS...]]: DIR (default build/),
# Release, the hub parts off (the machine has neither cpp-httplib nor curl headers), the machine's
# python3 (whose LibTorch CMake finds), sm_90, then CMAKE_ARGS; cmake's output replaces LOG.
# Returns cmake's status.
configure_device_build() {
  local log=$1 dir=${2:-build}
  shift $(($# < 2 ? $# : 2))
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLA_WITH_HUB=OFF -DSLA_PYTHON="$(command -v python3)" \
    -DCMAKE_CUDA_ARCHITECTURES=90 "$@" >"$log" 2>&1
}
