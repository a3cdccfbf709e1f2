#!/usr/bin/env bash
# Sandbox start-up: (a) set-up + exec of a trivial payload next to bubblewrap and a plain
# fork+exec, in one run; (b) and (c) need `flowd engine` and the worker (see below).
set -euo pipefail
"$FLOWD_BUILD/bench/bench_sandbox" "${SANDBOX_BENCH_ROUNDS:-300}" "$FLOWD_BUILD/tests/sandbox/sb_zygote_helper"
