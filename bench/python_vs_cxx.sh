#!/usr/bin/env bash
# Issue 13's comparison on the GPU machine: sla-bench (C++) and bench/python_api_bench.py (eager,
# compiled) ROUNDS times each, interleaved, then the medians per cell and the Python cells' distance
# from the C++ ones (bench/python_vs_cxx.py). Builds sla_ops and sla-bench (hub off) first.
# Usage: bash bench/python_vs_cxx.sh COMMIT [ROUNDS]   (logs and tables under $OUT)
set -uo pipefail
OUT=${OUT:-$PWD/device_out}
mkdir -p "$OUT"
commit=${1:-unknown}
rounds=${2:-3}
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$OUT/summary.txt"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLA_WITH_HUB=OFF -DSLA_PYTHON="$(command -v python3)" \
  -DCMAKE_CUDA_ARCHITECTURES=90 >"$OUT/build.log" 2>&1
cmake --build build -j16 --target sla_ops sla-bench >>"$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
export SLA_OPS_LIB=$PWD/build/src/sla/ops/libsla_ops.so
for i in $(seq "$rounds"); do
  ./build/bench/sla-bench --commit "$commit" --quick --markdown "$OUT/cxx_$i.md" >>"$OUT/runs.log" 2>&1 ||
    echo "sla-bench run $i failed" | tee -a "$OUT/summary.txt"
  python3 bench/python_api_bench.py --commit "$commit" --rows 0 2 --rounds 1 --markdown "$OUT/python_$i.md" \
    >>"$OUT/runs.log" 2>&1 || echo "python_api_bench run $i failed" | tee -a "$OUT/summary.txt"
done
python3 bench/python_vs_cxx.py --cxx "$OUT"/cxx_*.md --python "$OUT"/python_*.md | tee -a "$OUT/summary.txt"
