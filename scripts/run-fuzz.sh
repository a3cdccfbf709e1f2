#!/usr/bin/env bash
# `make fuzz`: builds the libFuzzer drivers with clang and runs each for FUZZ_SECONDS (default 60),
# growing its corpus under tests/fuzz/corpus/<name>/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
[ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz -Dfuzz=true \
  -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
ninja -C build-fuzz >/dev/null
for exe in build-fuzz/tests/fuzz/fuzz_*; do
  name=$(basename "$exe"); name=${name#fuzz_}
  case "$name" in replay_*) continue ;; esac
  echo "== fuzzing $name for ${FUZZ_SECONDS:-60}s"
  mkdir -p "tests/fuzz/corpus/$name"
  # detect_stack_use_after_return=0: JavaScriptCore scans the real stack for live values
  ASAN_OPTIONS=detect_leaks=0:detect_stack_use_after_return=0 "$exe" -max_total_time="${FUZZ_SECONDS:-60}" "tests/fuzz/corpus/$name"
done
