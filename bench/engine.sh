#!/usr/bin/env bash
# Engine benchmark (a) of issue 2: µs per run of the 4-step native flow (webhook → data mapper
# with 5 templates → router → return_response) in one process, median of many runs; then the
# same flow through `flowd run` end to end (process start, JavaScriptCore load, config, parse,
# run, output), median of 30, for context, with the ratio between the two.
set -euo pipefail
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$FLOWD_BUILD/bench/bench_engine" "$tmp/flow.json" "$tmp/payload.json" 2>"$tmp/err" || {
  cat "$tmp/err" >&2; exit 1; }
in_process=$(sed -n 's/^median_us=//p' "$tmp/err")
python3 - "$FLOWD" "$tmp/flow.json" "$tmp/payload.json" "$in_process" <<'PY'
import subprocess, sys, time, statistics
flowd, flow, payload, in_us = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
times = []
for _ in range(30):
    t0 = time.perf_counter()
    p = subprocess.run([flowd, "run", flow, "--payload", payload, "--json"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    times.append(time.perf_counter() - t0)
    if p.returncode != 0 or b'"SUCCEEDED"' not in p.stdout:
        sys.exit("flowd run failed: " + p.stderr.decode())
med = statistics.median(times) * 1e6
print("%-44s median %6.0f µs   (30 processes)" % ("same flow, `flowd run` end to end", med))
print("end to end / in process: %.0f× (the difference is process start and library load)"
      % (med / in_us))
PY
