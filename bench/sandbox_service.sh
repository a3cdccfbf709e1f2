#!/usr/bin/env bash
# Issue 6's figures that need the worker, through the service (app + worker + engines per mode,
# against UNSANDBOXED in the same run): (b) a job's engine ready to run its first step, as the
# worker measures it, and (c) runs/s and runs/s per core for the same no-op flow; the 1,000
# sequential runs of each mode double as the leak check (fds, cgroups, mounts, processes).
# SANDBOX_SERVICE_RUNS and SANDBOX_SERVICE_BURST change the counts (1000 and 400).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/sandbox_service.py
