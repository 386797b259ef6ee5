#!/usr/bin/env bash
# Builds a libFuzzer target with clang (-fsanitize=fuzzer,address,undefined) in BUILD_DIR and fuzzes
# it for SECONDS, seeded with the generated corpus:
#   reader  whole .pt files into load_sla_buffer (fuzz_reader.cpp), seeds: the corpus files
#   pickle  data.pkl inside a valid container (fuzz_pickle.cpp), seeds: the corpus's pickles
#   safetensors  a whole .safetensors file (fuzz_safetensors.cpp), seeds: the corpus's safetensors/
# New inputs go to BUILD_DIR/fuzz-TARGET/corpus, crashes to BUILD_DIR/fuzz-TARGET/artifacts, the log to
# BUILD_DIR/fuzz-TARGET/fuzz-0.log. Minimise a crash with: sla_fuzz_TARGET -minimize_crash=1 -runs=100000 FILE
# Usage: tests/corpus/fuzz.sh BUILD_DIR SECONDS [reader|pickle|safetensors [LIBFUZZER_FLAG...]]
#   e.g. fuzz.sh build-fuzz 600 pickle -fork=1 -ignore_crashes=1   (keeps going past crashes)
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 BUILD_DIR SECONDS [reader|pickle|safetensors [LIBFUZZER_FLAG...]]" >&2
  exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$(mkdir -p "$1" && cd "$1" && pwd)"
seconds="$2"
target="${3:-reader}"

CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLA_FUZZ=ON \
  -DSLA_WITH_TORCH=OFF -DSLA_WITH_HUB=OFF -DSLA_WITH_CUDA=OFF -DSLA_BUILD_BENCH=OFF >&2
cmake --build "$build" --target "sla_fuzz_$target" -j 2 >&2

python="$(sed -n 's/^SLA_PYTHON:FILEPATH=//p' "$build/CMakeCache.txt")"
generated="$build/tests/corpus/generated"
[[ -f "$generated/corpus.json" ]] || "$python" "$here/make_corpus.py" "$generated"

work="$build/fuzz-$target"
seeds="$work/seeds"
mkdir -p "$seeds" "$work/corpus" "$work/artifacts"
if [[ "$target" == reader ]]; then
  # the giants (caps tests) only cost time under -max_len
  find "$generated" -maxdepth 1 -name '*.pt' -size -1024k -exec cp -t "$seeds" {} +
  if [[ -d "$here/regressions" ]]; then cp -t "$seeds" "$here"/regressions/*; fi
elif [[ "$target" == safetensors ]]; then
  cp -t "$seeds" "$generated"/safetensors/*
else
  cp -t "$seeds" "$generated"/pickles/*
fi

dict="$here/fuzz_reader.dict"
if [[ "$target" == safetensors ]]; then dict="$here/fuzz_safetensors.dict"; fi

# -jobs=1: one fuzzing process, its log in $work/fuzz-0.log
cd "$work"
status=0
"$build/tests/corpus/sla_fuzz_$target" -max_len=65536 -jobs=1 -workers=1 -max_total_time="$seconds" \
  -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -dict="$dict" -artifact_prefix="$work/artifacts/" "${@:4}" "$work/corpus" "$seeds" || status=$?
if [[ -f fuzz-0.log ]]; then tail -n 30 fuzz-0.log >&2; fi
exit "$status"
