#!/usr/bin/env bash
# JavaScript latency: (b) a CODE step in a fresh JavaScriptCore context against (c) the same
# step in a fresh node process and in a fresh Node vm context, plus template inputs on the
# native path and on JavaScriptCore. Runs: JS_BENCH_RUNS (default 2000) in-process runs,
# JS_BENCH_NODE_RUNS (default 20) node processes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec "$FLOWD_BUILD/bench/bench_js" "$here" "${JS_BENCH_RUNS:-2000}" "${JS_BENCH_NODE_RUNS:-20}"
