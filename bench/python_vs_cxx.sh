#!/usr/bin/env bash
# Issue 13's comparison on the GPU machine: sla-bench (C++) and bench/python_api_bench.py (eager,
# compiled) ROUNDS times each, interleaved, under both clocks, then per clock the medians per cell
# and the Python cells' distance from the C++ ones (bench/python_vs_cxx.py). Builds sla_ops and sla-bench (hub off) first.
# Usage: bash bench/python_vs_cxx.sh COMMIT [ROUNDS]   (logs and tables under $OUT)
set -uo pipefail
# shellcheck source=bench/device_build.sh
source "$(dirname "${BASH_SOURCE[0]}")/device_build.sh"
OUT=${OUT:-$PWD/device_out}
mkdir -p "$OUT"
commit=${1:-unknown}
rounds=${2:-3}
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$OUT/summary.txt"
configure_device_build "$OUT/build.log"
cmake --build build -j16 --target sla_ops sla-bench >>"$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
export SLA_OPS_LIB=$PWD/build/src/sla/ops/libsla_ops.so
# Two clocks (bench/cuda_timing.h): the device idle before each call (host time to the first kernel
# in the figure) and the host ahead (GPU work alone); the step table only with the first.
for i in $(seq "$rounds"); do
  for clock in idle ahead; do
    flags=(); [ "$clock" = ahead ] && flags=(--host-ahead)
    ./build/bench/sla-bench --commit "$commit" --quick "${flags[@]}" --markdown "$OUT/cxx_${clock}_$i.md" \
      >>"$OUT/runs.log" 2>&1 || echo "sla-bench $clock run $i failed" | tee -a "$OUT/summary.txt"
    [ "$clock" = ahead ] && flags+=(--no-steps)
    python3 bench/python_api_bench.py --commit "$commit" --rows 0 2 --rounds 1 "${flags[@]}" \
      --markdown "$OUT/python_${clock}_$i.md" >>"$OUT/runs.log" 2>&1 ||
      echo "python_api_bench $clock run $i failed" | tee -a "$OUT/summary.txt"
  done
done
for clock in idle ahead; do
  echo "clock: $clock" | tee -a "$OUT/summary.txt"
  python3 bench/python_vs_cxx.py --cxx "$OUT"/cxx_${clock}_*.md --python "$OUT"/python_${clock}_*.md |
    tee -a "$OUT/summary.txt"
done
