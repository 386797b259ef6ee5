#!/usr/bin/env bash
# One call on the GPU machine: configure, build the kernel targets, run the GPU tests and the
# benchmarks (sla-bench, then sla-train-bench), logs under $OUT (or ./device_out).
# Usage: bench/device_run.sh [commit] [sla-bench args...]; TRAIN_BENCH_ARGS holds sla-train-bench's
# arguments (TRAIN_BENCH_ARGS=skip: no training-step benchmark).
set -uo pipefail
# shellcheck source=bench/device_build.sh
source "$(dirname "${BASH_SOURCE[0]}")/device_build.sh"
OUT=${OUT:-$PWD/device_out}
mkdir -p "$OUT"
commit=${1:-unknown}
shift || true
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
configure_device_build "$OUT/configure.log" || { tail -40 "$OUT/configure.log"; exit 1; }
start=$(date +%s)
# Keep going past targets that fail (the tree may hold other work in progress); the kernels' tests
# and the benchmarks must build.
cmake --build build -j16 -- -k 0 >"$OUT/build.log" 2>&1 ||
  { echo "build: some targets failed"; grep -B2 -A12 -m5 "error" "$OUT/build.log"; tail -5 "$OUT/build.log"; }
echo "build: $(( $(date +%s) - start )) s"
for t in tests/gpu/test_sla_kernels bench/sla-bench bench/sla-train-bench; do
  [ -x "build/$t" ] || { echo "missing build/$t"; exit 1; }
done
grep -i "spill\|lmem" "$OUT/build.log" | grep -v " 0 bytes" | head -5
# test_sla_kernels runs once, below, with its own log.
(cd build && ctest -j8 -E '^test_sla_kernels$' --output-on-failure >"$OUT/ctest.log" 2>&1; echo "ctest rc=$?"
  grep -E "tests passed|Failed|SEGFAULT|Skipped|Not Run" "$OUT/ctest.log" | head -20)
start=$(date +%s)
./build/tests/gpu/test_sla_kernels --durations no >"$OUT/test.log" 2>&1
echo "test_sla_kernels rc=$? ($(( $(date +%s) - start )) s)"
grep -E "FAILED|failed|passed|with expansion" "$OUT/test.log" | head -20
grep -E "^(float|bfloat)" "$OUT/test.log" | awk '{r=$(NF-2)/($NF+1e-30); if (r>m[$0 ~ /BFloat/]) m[$0 ~ /BFloat/]=r} END {}' >/dev/null
(cd build && SLA_OPS_LIB=$PWD/src/sla/ops/libsla_ops.so python3 -m pytest -q -p no:cacheprovider \
  ../tests/gpu/test_sla_ops_gpu.py >"$OUT/pytest.log" 2>&1; echo "pytest ops rc=$?"; tail -5 "$OUT/pytest.log")
./build/bench/sla-bench --commit "$commit" --markdown "$OUT/results.md" "$@" 2>&1 | tee "$OUT/bench.log"
# The same rows through the Python API (sla_toolkit, eager and compiled): ratios to compare with sla-bench's.
SLA_OPS_LIB=$PWD/build/src/sla/ops/libsla_ops.so python3 bench/python_api_bench.py --commit "$commit" \
  --markdown "$OUT/python_api.md" 2>&1 | tee "$OUT/python_api.log"
if [ "${TRAIN_BENCH_ARGS:-}" != skip ]; then
  # shellcheck disable=SC2086 # word splitting of the arguments is intended
  ./build/bench/sla-train-bench --commit "$commit" --markdown "$OUT/train.md" ${TRAIN_BENCH_ARGS:-} 2>&1 |
    tee "$OUT/train.log"
fi
