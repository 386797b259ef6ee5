#!/usr/bin/env bash
# One short call on the GPU machine for the kernels (issue 16): build only the kernel targets (hub
# off), then, each step only while BUDGET seconds (default 580) of the call are left:
#   sla-bench --variant both [SLA_BENCH_ARGS, e.g. --quick] -> $OUT/results.md, $OUT/bench.log
#   test_sla_kernels, sla-train-bench -> $OUT/train.md, the GPU operator tests,
#   profile_ops.py of the Flux and D 64 rows, ncu of their sparse passes, the --quick rows under
#   both clocks (device idle / host ahead), profile_ops.py of variant complement, ncu of the Flux
#   and Wan 0.2 rows; the profile and ncu logs come back as $OUT/logs.tgz, the whole output as
#   $OUT/run.log and test_sla_kernels' as $OUT/test.log.
# The table comes first: it is what a short call must not lose. Set BUDGET to the call's limit
# less a margin (the device's start counts against the session's time, not the call's).
# Usage: BUDGET=480 bash bench/device_kernels.sh COMMIT   (TARGETS=sla-bench builds the table's tool alone;
# a step runs only where this call built what it needs)
# A/B against another commit in the same call: AB_BASE=.baseline/base.tar (from `git archive -o
# .baseline/base.tar BASE`, in an ignored folder passed to the device with carry) builds that
# tree's sla-bench beside this one's, and after the tests runs AB_ROUNDS (2) rounds of `--quick`
# (AB_ARGS, e.g. "--quick --variant complement"), the base first, then this tree. Without AB_BASE,
# AB_ENVS="SLA_WS=0 SLA_WS=1" runs this tree's rounds under each environment in turn (commas
# within one entry separate several variables).
set -uo pipefail
# shellcheck source=bench/device_build.sh
source "$(dirname "${BASH_SOURCE[0]}")/device_build.sh"
OUT=${OUT:-$PWD/device_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1  # the whole log comes back, not only the call's tail
commit=${1:-unknown}
t0=$(date +%s)
elapsed() { echo "[t+$(($(date +%s) - t0))s] $*"; }
left() { echo $((${BUDGET:-580} - ($(date +%s) - t0))); }
# A step's timeout: what is left less 5 s, at least 1 (timeout 0 would mean no limit at all).
limit() { local l=$(($(left) - 5)); echo $((l > 1 ? l : 1)); }

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
jobs=16
if [ -n "${AB_BASE:-}" ]; then  # the base's sla-bench, built beside this tree's
  jobs=8
  rm -rf /tmp/ab_base && mkdir -p /tmp/ab_base && tar -xf "$AB_BASE" -C /tmp/ab_base
  (cd /tmp/ab_base && configure_device_build /tmp/ab_configure.log &&
    cmake --build build -j8 --target sla-bench >/tmp/ab_build.log 2>&1) &
  ab_pid=$!
fi
targets=${TARGETS:-test_sla_kernels sla-bench sla-train-bench sla_ops}
# built TARGET: whether this call built TARGET (no step runs what an earlier call left in build/).
built() { [[ " $targets " == *" $1 "* ]]; }
configure_device_build /tmp/configure.log || { tail -40 /tmp/configure.log; exit 1; }
# shellcheck disable=SC2086 # targets is a list
cmake --build build -j$jobs --target $targets >/tmp/build.log 2>&1 ||
  { grep -B2 -A12 -m5 "error" /tmp/build.log; exit 1; }
# the base's build, if any (a bare `wait` would also wait for the tee of run.log, which never ends)
[ -n "${ab_pid:-}" ] && wait "$ab_pid"
elapsed build

if built sla-bench; then
  # shellcheck disable=SC2086 # word splitting of the arguments is intended
  timeout "$(limit)" ./build/bench/sla-bench --variant both ${SLA_BENCH_ARGS:-} --commit "$commit" \
    --markdown "$OUT/results.md" >"$OUT/bench.log" 2>&1
  echo "sla-bench rc=$? ($(grep -c topk "$OUT/bench.log") rows)"; elapsed sla-bench
fi

if built test_sla_kernels; then
  timeout $(($(limit) < 200 ? $(limit) : 200)) ./build/tests/gpu/test_sla_kernels --durations no >/tmp/test.log 2>&1
  echo "test_sla_kernels rc=$?"; grep -E "FAILED|failed|passed|with expansion" /tmp/test.log | head -20; elapsed tests
  tail -c 200000 /tmp/test.log >"$OUT/test.log"
fi

# ab_bench [VAR=value ...] SLA_BENCH: one A/B run of SLA_BENCH (AB_ARGS) under those settings,
# its rows without the peak and dense columns.
ab_bench() {
  # shellcheck disable=SC2086 # word splitting of the arguments is intended
  env "$@" ${AB_ARGS:---quick} 2>&1 | grep topk | sed 's/ | peak[^|]*//; s/dense fwd.*| sla/| sla/'
}
if [ -n "${AB_BASE:-}" ] && built sla-bench && [ -x /tmp/ab_base/build/bench/sla-bench ]; then
  for round in $(seq "${AB_ROUNDS:-2}"); do
    for tree in /tmp/ab_base .; do
      [ "$(left)" -gt 30 ] || break 2
      echo "== A/B round $round: $([ "$tree" = . ] && echo "this tree" || echo base)"
      ab_bench timeout 60 "$tree/build/bench/sla-bench"
    done
  done
  elapsed "A/B"
elif [ -n "${AB_BASE:-}" ]; then
  echo "A/B: the base did not build"; tail -20 /tmp/ab_build.log
elif [ -n "${AB_ENVS:-}" ] && built sla-bench; then  # this tree's sla-bench under each environment in turn
  for round in $(seq "${AB_ROUNDS:-2}"); do
    for vars in $AB_ENVS; do
      [ "$(left)" -gt 30 ] || break 2
      echo "== A/B round $round: $vars"
      # shellcheck disable=SC2086 # the settings are words
      ab_bench ${vars//,/ } timeout 60 ./build/bench/sla-bench
    done
  done
  elapsed "A/B"
fi

if built sla-train-bench && [ "$(left)" -gt 120 ]; then
  timeout "$(limit)" ./build/bench/sla-train-bench --commit "$commit" --markdown "$OUT/train.md" >/tmp/train.log 2>&1
  echo "sla-train-bench rc=$?"; tail -4 /tmp/train.log; elapsed sla-train-bench
fi

export SLA_OPS_LIB=$PWD/build/src/sla/ops/libsla_ops.so  # the Python operators of the steps below
if built sla_ops && [ "$(left)" -gt 40 ]; then
  timeout "$(limit)" python3 -m pytest -q -p no:cacheprovider tests/gpu/test_sla_ops_gpu.py >/tmp/pytest.log 2>&1
  echo "GPU operator tests rc=$?"; tail -2 /tmp/pytest.log; elapsed pytest
fi

if built sla_ops && [ "$(left)" -gt 60 ]; then
  timeout 60 python3 bench/profile_ops.py --cases flux,d64 >"$OUT/profile.log" 2>&1
  echo "profile_ops rc=$?"; elapsed profile_ops
fi
# The sections' bodies too (the warp states' stall reasons), where this ncu can print them.
details=()
[[ "$(ncu --help 2>/dev/null)" == *--print-details* ]] && details=(--print-details all)
ncu_case() {  # one row of bench/sla_case.py: the second call's forward, dq and dk/dv passes
  timeout "$(limit)" ncu --clock-control none -k regex:"sla_(fwd|bwd_dq|bwd_dkdv)" --launch-skip 3 \
    --launch-count 3 --section SpeedOfLight --section Occupancy --section WarpStateStats \
    --section MemoryWorkloadAnalysis --section LaunchStats "${details[@]}" python3 bench/ncu_case.py "$1" \
    >"$OUT/ncu_$1.log" 2>&1
  echo "ncu $1 rc=$?"
  grep -E "  sla_|Duration|Throughput|Eligible|Achieved Occ|Registers Per|Grid Size|Issue Slots Busy|Waves" \
    "$OUT/ncu_$1.log" | head -50
  elapsed "ncu $1"
}
built sla_ops && [ "$(left)" -gt 60 ] && ncu_case d64
if built sla-bench && [ "$(left)" -gt 60 ]; then
  for clock in "" --host-ahead; do
    echo "== sla-bench --quick $clock"
    timeout 60 ./build/bench/sla-bench --quick $clock 2>&1 | grep topk | sed 's/dense fwd.*| sla/| sla/'
  done
  elapsed clocks
fi
if built sla_ops && [ "$(left)" -gt 50 ]; then
  timeout 50 python3 bench/profile_ops.py --variant complement --cases wan05,flux >"$OUT/profile_complement.log" 2>&1
  echo "profile_ops complement rc=$?"; elapsed "profile_ops complement"
fi
built sla_ops && [ "$(left)" -gt 50 ] && ncu_case flux
built sla_ops && [ "$(left)" -gt 70 ] && ncu_case wan20
# The device returns at most 8 files: the logs of profile_ops and ncu travel as one archive.
logs=$(cd "$OUT" && ls profile*.log ncu_*.log 2>/dev/null)
# shellcheck disable=SC2086 # the names are plain words
[ -n "$logs" ] && (cd "$OUT" && tar -czf logs.tgz $logs && rm -f $logs)
elapsed end
