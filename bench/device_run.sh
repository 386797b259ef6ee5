#!/usr/bin/env bash
# One call on the GPU machine: configure, build the kernel targets, run the GPU tests and the
# benchmark, logs under $OUT (or ./device_out). Usage: bench/device_run.sh [commit] [bench args...]
set -uo pipefail
OUT=${OUT:-$PWD/device_out}
mkdir -p "$OUT"
commit=${1:-unknown}
shift || true
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLA_WITH_HUB=OFF -DSLA_PYTHON="$(command -v python3)" \
  -DCMAKE_CUDA_ARCHITECTURES=90 >"$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; exit 1; }
start=$(date +%s)
cmake --build build -j16 >"$OUT/build.log" 2>&1 ||
  { grep -B2 -A12 -m5 "error" "$OUT/build.log"; tail -20 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - start )) s"
grep -i "spill\|lmem" "$OUT/build.log" | grep -v " 0 bytes" | head -5
(cd build && ctest -j8 --output-on-failure >"$OUT/ctest.log" 2>&1; echo "ctest rc=$?"; grep -E "tests passed|Failed|SEGFAULT|Skipped|Not Run" "$OUT/ctest.log" | head -20)
start=$(date +%s)
./build/tests/gpu/test_sla_kernels --durations no >"$OUT/test.log" 2>&1
echo "test_sla_kernels rc=$? ($(( $(date +%s) - start )) s)"
grep -E "FAILED|failed|passed|with expansion" "$OUT/test.log" | head -20
grep -E "^(float|bfloat)" "$OUT/test.log" | awk '{r=$(NF-2)/($NF+1e-30); if (r>m[$0 ~ /BFloat/]) m[$0 ~ /BFloat/]=r} END {}' >/dev/null
(cd build && SLA_OPS_LIB=$PWD/src/sla/ops/libsla_ops.so python3 -m pytest -q -p no:cacheprovider \
  ../tests/gpu/test_sla_ops_gpu.py >"$OUT/pytest.log" 2>&1; echo "pytest ops rc=$?"; tail -5 "$OUT/pytest.log")
./build/bench/sla-bench --commit "$commit" --markdown "$OUT/results.md" "$@" 2>&1 | tee "$OUT/bench.log"
