#!/usr/bin/env bash
# What durability costs: µs of checkpoint barrier per side-effecting step, the same flow of
# cheap code steps run through flowd app + flowd worker on SQLite, durable (the engine waits for
# each step to be committed by the app) against not durable (FLOWD_BENCH_NO_CHECKPOINT=1: no
# wait, every record stored with the result), in the same run. bench/durability.py explains the
# method. Prints whether the 300 µs target is met; exits non-zero only when a run fails.
set -euo pipefail
exec python3 "$(dirname "$0")/durability.py"
