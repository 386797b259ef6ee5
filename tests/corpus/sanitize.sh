#!/usr/bin/env bash
# Runs the corrupt-file corpus under AddressSanitizer + UndefinedBehaviorSanitizer: configures a
# LibTorch-free, Hub-free build in BUILD_DIR, builds only sla-ckpt and the fuzz replay, then runs the
# corpus CTests (generate, inspect over every file, replay). Any sanitizer report fails the run.
# Usage: tests/corpus/sanitize.sh BUILD_DIR
set -euo pipefail
if [[ $# -ne 1 ]]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$1"

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSLA_WITH_TORCH=OFF -DSLA_WITH_HUB=OFF -DSLA_WITH_CUDA=OFF -DSLA_BUILD_BENCH=OFF \
  -DSLA_SANITIZE=address,undefined >&2
cmake --build "$build" --target sla-ckpt sla_fuzz_reader_replay sla_fuzz_pickle_replay sla_fuzz_safetensors_replay -j "$(nproc)" >&2

# halt on the first report, with a stack; exit codes no test accepts; an allocation beyond 2 GiB
# (no cap of the reader allows one) is a report, not a slow success.
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:exitcode=86:detect_leaks=1:max_allocation_size_mb=2048:allocator_may_return_null=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=87"
export SLA_CORPUS_RLIMIT_AS_MB=0  # ASan reserves terabytes of address space
ctest --test-dir "$build" --output-on-failure -R '^(corpus_generate|py_test_corpus|sla_fuzz_reader_replay|sla_fuzz_pickle_replay|sla_fuzz_safetensors_replay)$'
