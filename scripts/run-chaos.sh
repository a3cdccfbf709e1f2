#!/usr/bin/env bash
# `make chaos`: the long form of the chaos suite (tests/integration/chaos): 50 interrupted runs
# per kill case instead of the 8 of `make test`, one case at a time so that the random kill
# moments fall on an otherwise quiet machine. FLOWD_CHAOS_RUNS and FLOWD_CHAOS_SEED pass through.
# Ends with the line "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test || exit 1
if [ ! -f build/build.ninja ]; then
  meson setup build >/dev/null || exit 1
fi
ninja -C build >/dev/null || { ninja -C build; exit 1; }
export FLOWD_CHAOS_RUNS=${FLOWD_CHAOS_RUNS:-50}
status=0
meson test -C build --suite chaos --print-errorlogs --no-rebuild --num-processes 1 \
  --timeout-multiplier 8 "$@" || status=1
python3 - build/meson-logs/testlog.json <<'PY' || status=1
import json, sys
passed = failed = 0
for line in open(sys.argv[1]):
    if json.loads(line).get("result") in ("OK", "EXPECTEDFAIL"):
        passed += 1
    else:
        failed += 1
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed or passed == 0 else 0)
PY
exit $status
