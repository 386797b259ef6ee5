#!/usr/bin/env bash
# One short call on the GPU machine: the warp-specialised forward's clock64 trace (SLA_FWD_TRACE,
# src/sla/kernels/fwd_trace.cuh). Builds the Python operators in build-trace/ (bf16, D 128 only;
# build/ keeps its default configuration), runs bench/ncu_case.py on the named rows of
# bench/sla_case.py (default flux,wan05,wan20) with the trace on, and prints bench/fwd_trace.py's
# split of a tile. The raw trace comes back as $OUT/fwd_trace.bin.
# Usage: bash bench/device_trace.sh [CASES]
set -euo pipefail
# shellcheck source=bench/device_build.sh
source "$(dirname "${BASH_SOURCE[0]}")/device_build.sh"
OUT=${OUT:-$PWD/device_out}
mkdir -p "$OUT"
cases=${1:-flux,wan05,wan20}
t0=$(date +%s)
configure_device_build /tmp/trace_configure.log build-trace -DSLA_FWD_TRACE=ON -DSLA_KERNEL_HDIMS=128 \
  -DSLA_KERNEL_DTYPES=bf16 -DSLA_BUILD_TESTS=OFF -DSLA_BUILD_BENCH=OFF || { tail -40 /tmp/trace_configure.log; exit 1; }
cmake --build build-trace -j16 --target sla_ops >/tmp/trace_build.log 2>&1 ||
  { grep -B2 -A12 -m5 "error" /tmp/trace_build.log; exit 1; }
echo "[t+$(($(date +%s) - t0))s] trace build"
rm -f "$OUT/fwd_trace.bin"
for c in ${cases//,/ }; do
  SLA_OPS_LIB=$PWD/build-trace/src/sla/ops/libsla_ops.so SLA_FWD_TRACE_OUT="$OUT/fwd_trace.bin" \
    python3 bench/ncu_case.py "$c"
done
python3 bench/fwd_trace.py "$OUT/fwd_trace.bin" | tee "$OUT/fwd_trace.md"
echo "[t+$(($(date +%s) - t0))s] trace end"
