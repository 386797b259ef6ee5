#!/usr/bin/env bash
# One call on the GPU machine for the Python side: build (hub off), install the Python packages the
# tests import but the machine lacks from wheels carried in .wheels/ (no network there), then the
# GPU, distributed and SimpleTuner tests and the Python API benchmark beside sla-bench's rows.
# Logs under $OUT (at most 8 files come back). Usage: bench/device_python.sh COMMIT [ctest -R regex];
# DIAG: a command run after the build (its output in diag.log); BUILD_TARGETS: what to build;
# SKIP_WHEEL, SKIP_SLA_BENCH, PY_BENCH_ARGS, TIMING_TESTS: for short calls; SLA_BENCH_ARGS: more
# arguments of sla-bench --quick (e.g. --variant both).
# .wheels/: pip download --no-deps --python-version 3.12 --only-binary=:all: <the pins of tools/setup.sh>
set -uo pipefail
# shellcheck source=bench/device_build.sh
source "$(dirname "${BASH_SOURCE[0]}")/device_build.sh"
OUT=${OUT:-$PWD/device_out}
mkdir -p "$OUT"
commit=${1:-unknown}
tests=${2:-'py_test_package|py_test_state|py_test_simpletuner|py_test_ulysses|py_test_python_distributed|py_test_dit_distributed|py_test_sla_ops_gpu|py_test_cxx_runtime'}
# Timing tests run alone, after the others (nothing else on the machine while they measure).
timing_tests=${TIMING_TESTS:-py_test_dist_gpu_timing}
summary="$OUT/summary.txt"
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$summary"
if [ -d .wheels ]; then
  # Only what the machine lacks, into a folder of its own on PYTHONPATH (the system's packages stay).
  missing=()
  for wheel in .wheels/*.whl; do
    name=$(basename "$wheel" | cut -d- -f1)
    python3 -m pip show -q "$name" >/dev/null 2>&1 || missing+=("$wheel")
  done
  echo "installing from .wheels: ${missing[*]##*/}" | tee -a "$summary"
  [ ${#missing[@]} -eq 0 ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --target /tmp/site "${missing[@]}" >>"$summary" 2>&1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
start=$(date +%s)
configure_device_build "$OUT/build.log"
# What the Python tests and the benchmark run (BUILD_TARGETS=all: everything).
targets=${BUILD_TARGETS:-sla_ops sla_dit_ops sla-dit-example sla-ckpt sla-ckpt-regenerate sla-bench}
# shellcheck disable=SC2086 # one word per target
cmake --build build -j16 --target $targets -- -k 0 >>"$OUT/build.log" 2>&1 ||
  { echo "build: some targets failed" | tee -a "$summary"; grep -m5 -A8 "error" "$OUT/build.log" | tee -a "$summary"; }
echo "build: $(( $(date +%s) - start )) s" | tee -a "$summary"
# The package as a wheel built here (the same build folder), installed where the tests import it.
# Into the interpreter's own environment, as tools/test.sh does (a throw-away machine), so that a
# process started without PYTHONPATH imports it too (test_package_install.py).
[ -n "${SKIP_WHEEL:-}" ] || python3 -m pip wheel -q --no-build-isolation --no-deps -Cbuild-dir=build -w /tmp/wheel . >"$OUT/wheel.log" 2>&1 &&
  python3 -m pip install -q --no-index --no-deps --force-reinstall /tmp/wheel/*.whl >>"$OUT/wheel.log" 2>&1
(cd /tmp && python3 -c "import sla_toolkit, torch; print('wheel:', sla_toolkit.__file__, torch.__version__)") 2>&1 |
  tail -3 | tee -a "$summary"
ls -la /tmp/wheel >>"$summary" 2>&1
[ -z "${DIAG:-}" ] || (eval "$DIAG") >"$OUT/diag.log" 2>&1
(cd build && ctest -R "$tests" --output-on-failure -j4 >"$OUT/ctest.log" 2>&1
  [ -z "$timing_tests" ] || PYTEST_ADDOPTS=-s ctest -R "$timing_tests" --output-on-failure -V >>"$OUT/ctest.log" 2>&1
  grep -E "tests passed|\*\*\*|Passed|Skipped|plain .* ms|process group of 1" "$OUT/ctest.log" | tee -a "$summary")
# shellcheck disable=SC2086 # SLA_BENCH_ARGS: word by word
[ -n "${SKIP_SLA_BENCH:-}" ] ||
  ./build/bench/sla-bench --commit "$commit" --markdown "$OUT/results.md" --quick ${SLA_BENCH_ARGS:-} >"$OUT/bench.log" 2>&1
# shellcheck disable=SC2086 # PY_BENCH_ARGS: more arguments, word by word
SLA_OPS_LIB=$PWD/build/src/sla/ops/libsla_ops.so python3 bench/python_api_bench.py --commit "$commit" \
  --markdown "$OUT/python_api.md" ${PY_BENCH_ARGS:-} >>"$OUT/bench.log" 2>&1
tail -12 "$OUT/bench.log" | tee -a "$summary"
