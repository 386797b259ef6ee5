#!/usr/bin/env bash
# One call on the GPU machine for the Python side: build (hub off), install the Python packages the
# tests import but the machine lacks from wheels carried in .wheels/ (no network there), then the
# GPU, distributed and SimpleTuner tests and the Python API benchmark beside sla-bench's rows.
# Logs under $OUT (at most 8 files come back). Usage: bench/device_python.sh COMMIT [ctest -R regex]
# .wheels/: pip download --no-deps --python-version 3.12 --only-binary=:all: <the pins of tools/setup.sh>
set -uo pipefail
OUT=${OUT:-$PWD/device_out}
mkdir -p "$OUT"
commit=${1:-unknown}
tests=${2:-'py_test_package|py_test_state|py_test_simpletuner|py_test_ulysses|py_test_python_distributed|py_test_dit_distributed|py_test_dist_gpu_timing|py_test_sla_ops_gpu'}
summary="$OUT/summary.txt"
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$summary"
if [ -d .wheels ]; then
  missing=()
  for wheel in .wheels/*.whl; do
    name=$(basename "$wheel" | cut -d- -f1)
    python3 -m pip show -q "$name" >/dev/null 2>&1 || missing+=("$wheel")
  done
  echo "installing from .wheels: ${missing[*]##*/}" | tee -a "$summary"
  [ ${#missing[@]} -eq 0 ] || python3 -m pip install -q --no-deps --no-index --break-system-packages "${missing[@]}" \
    >>"$summary" 2>&1
fi
start=$(date +%s)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLA_WITH_HUB=OFF -DSLA_PYTHON="$(command -v python3)" \
  -DCMAKE_CUDA_ARCHITECTURES=90 >"$OUT/build.log" 2>&1
cmake --build build -j16 -- -k 0 >>"$OUT/build.log" 2>&1 || echo "build: some targets failed" | tee -a "$summary"
echo "build: $(( $(date +%s) - start )) s" | tee -a "$summary"
(cd build && ctest -R "$tests" --output-on-failure -j4 >"$OUT/ctest.log" 2>&1
  grep -E "tests passed|\*\*\*|Passed|Skipped" "$OUT/ctest.log" | tee -a "$summary")
./build/bench/sla-bench --commit "$commit" --markdown "$OUT/results.md" --quick >"$OUT/bench.log" 2>&1
SLA_OPS_LIB=$PWD/build/src/sla/ops/libsla_ops.so python3 bench/python_api_bench.py --commit "$commit" \
  --markdown "$OUT/python_api.md" >>"$OUT/bench.log" 2>&1
tail -12 "$OUT/bench.log" | tee -a "$summary"
