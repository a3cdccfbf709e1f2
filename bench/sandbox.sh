#!/usr/bin/env bash
# Sandbox costs, each against its peer in the same run: (a) set-up + exec of a trivial payload
# next to bubblewrap (`bwrap --unshare-all`, scripts/install-deps.sh --bench) and a plain
# fork+exec; (b) the time until a sandboxed `flowd engine` has run its first step (JavaScriptCore
# included) against UNSANDBOXED, exec'd, forked from the zygote, and pre-started; (c) the engine
# side of runs/s per core with a fresh engine per run.
set -euo pipefail
"$FLOWD_BUILD/bench/bench_sandbox" "${SANDBOX_BENCH_ROUNDS:-300}" "$FLOWD_BUILD/tests/sandbox/sb_zygote_helper"
"$FLOWD_BUILD/bench/bench_engine_start" "$FLOWD" "${SANDBOX_ENGINE_ROUNDS:-50}"
