#!/usr/bin/env bash
# Builds the libFuzzer target with clang (-fsanitize=fuzzer,address,undefined) in BUILD_DIR and fuzzes
# the reader for SECONDS, seeded with the generated corpus. New inputs go to BUILD_DIR/fuzz/corpus,
# crashes to BUILD_DIR/fuzz/artifacts, the log to BUILD_DIR/fuzz/fuzz-0.log (minimise one with: sla_fuzz_reader -minimize_crash=1 FILE).
# Usage: tests/corpus/fuzz.sh BUILD_DIR SECONDS
set -euo pipefail
if [[ $# -ne 2 ]]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$1"
seconds="$2"

CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLA_FUZZ=ON \
  -DSLA_WITH_TORCH=OFF -DSLA_WITH_HUB=OFF -DSLA_WITH_CUDA=OFF -DSLA_BUILD_BENCH=OFF >&2
cmake --build "$build" --target sla_fuzz_reader -j 2 >&2

python="$(sed -n 's/^SLA_PYTHON:FILEPATH=//p' "$build/CMakeCache.txt")"
generated="$build/tests/corpus/generated"
[[ -f "$generated/corpus.json" ]] || "$python" "$here/make_corpus.py" "$generated"

# seeds: the generated files small enough to matter under -max_len (the giants test caps, not parsing)
seeds="$build/fuzz/seeds"
mkdir -p "$seeds" "$build/fuzz/corpus" "$build/fuzz/artifacts"
find "$generated" -maxdepth 1 -name '*.pt' -size -1024k -exec cp -t "$seeds" {} +
[[ -d "$here/regressions" ]] && cp -t "$seeds" "$here"/regressions/*

# -jobs=1: one fuzzing process whose log is $build/fuzz/fuzz-0.log
cd "$build/fuzz"
status=0
"$build/tests/corpus/sla_fuzz_reader" -max_len=65536 -jobs=1 -workers=1 -max_total_time="$seconds" \
  -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -dict="$here/fuzz_reader.dict" -artifact_prefix="$build/fuzz/artifacts/" \
  "$build/fuzz/corpus" "$seeds" || status=$?
tail -n 30 fuzz-0.log >&2
exit "$status"
