#!/usr/bin/env bash
# `make test`: installs what the tests need, builds, runs every suite (unit, fuzz corpus replay,
# integration) in the normal build, then unit and fuzz replay again under ASan+UBSan, and ends
# with the line "N passed, M failed". Exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
top=$PWD

scripts/install-deps.sh --test || exit 1
if [ -f tests/node/package-lock.json ]; then
  if [ ! -d tests/node/node_modules ] ||
     [ tests/node/package-lock.json -nt tests/node/node_modules/.package-lock.json ]; then
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error) || exit 1
  fi
fi

setup() { # dir [meson options...]
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" >/dev/null || return 1
  fi
  ninja -C "$dir" >/dev/null || { ninja -C "$dir"; return 1; }
}

status=0
setup build || exit 1
meson test -C build --print-errorlogs --no-rebuild --num-processes 2 "$@" || status=1

if [ "${FLOWD_SKIP_ASAN:-}" != 1 ]; then
  # -Werror stays on in the normal build; GCC's flow warnings report false positives on
  # sanitizer-instrumented code (a "null" %s argument that cannot be null), so here they warn.
  if setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dwerror=false; then
    # JavaScriptCore finds the JS values that C code holds by scanning the thread's real stack
    # conservatively; ASan's fake stacks (detect_stack_use_after_return) would hide them and
    # let the GC free live objects. JSC's own signal-based traps are off in src/engine/js.c
    # (polling traps), so ASan's SIGSEGV handler does not get in its way.
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      meson test -C build-asan --print-errorlogs --no-rebuild --num-processes 2 \
      --suite unit --suite fuzz || status=1
  else
    echo "ASan build failed" >&2
    status=1
  fi
fi

python3 - "$top/build/meson-logs/testlog.json" "$top/build-asan/meson-logs/testlog.json" <<'PY' || status=1
import json, os, sys
passed = failed = skipped = 0
for path in sys.argv[1:]:
    if not os.path.exists(path):
        continue
    for line in open(path):
        r = json.loads(line).get("result")
        if r in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif r == "SKIP":
            skipped += 1
        else:
            failed += 1
print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
sys.exit(1 if failed or passed == 0 else 0)
PY
exit $status
