#!/usr/bin/env bash
# The added latency of AP_NETWORK_MODE=STRICT for one HTTP request to a local server: the median
# of 1,000 requests under STRICT against 1,000 under UNRESTRICTED, in the same run.
set -euo pipefail
exec "$FLOWD_BUILD/bench/bench_net" "${NET_BENCH_REQUESTS:-1000}"
