#!/usr/bin/env bash
# The service under load: wrk drives the sync webhook of a webhook -> code -> return_response
# flow for 30 s at 32 connections against `flowd serve` (app + worker in one process, embedded
# Redis, SQLite, AP_EXECUTION_MODE=UNSANDBOXED), and prints requests/s, p50 and p99 next to
# Activepieces' published figure for the same flow (95 req/s, p50 15 ms, p99 63 ms, one app and
# two workers), with the ratios. Also the resident memory under that load: the flowd process
# (app and worker), the sum over its engine processes, and the embedded redis-server.
#
# SERVICE_BENCH_SECONDS, SERVICE_BENCH_CONNECTIONS, SERVICE_BENCH_THREADS and
# AP_WORKER_CONCURRENCY change the load; the defaults are the ones compared.
set -euo pipefail
cd "$(dirname "$0")/.."
FLOWD=${FLOWD:-$PWD/build-release/flowd}
seconds=${SERVICE_BENCH_SECONDS:-30}
conns=${SERVICE_BENCH_CONNECTIONS:-32}
threads=${SERVICE_BENCH_THREADS:-2}
concurrency=${AP_WORKER_CONCURRENCY:-5}
[ "$threads" -le "$conns" ] || threads=$conns

# The peer: Activepieces' published single-machine figure for this flow.
PEER_RPS=95
PEER_P50_MS=15
PEER_P99_MS=63

command -v wrk >/dev/null || { echo "service bench: wrk is missing (apt-get install wrk)" >&2; exit 1; }
[ -x "$FLOWD" ] || { echo "service bench: no flowd binary at $FLOWD" >&2; exit 1; }

dir=$(mktemp -d /tmp/flowd-bench-service-XXXXXX)
pid=
sampler=
cleanup() {
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
key=bench-key
env -u AP_REDIS_URL -u AP_DB_TYPE AP_CONFIG_PATH="$dir/var" AP_PORT="$port" AP_API_KEY="$key" \
  AP_JWT_SECRET=bench-secret-0123456789 AP_EXECUTION_MODE=UNSANDBOXED AP_LOG_LEVEL=warn \
  AP_WORKER_CONCURRENCY="$concurrency" "$FLOWD" serve >"$dir/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -fs -o /dev/null "http://127.0.0.1:$port/v1/health" && break
  kill -0 "$pid" 2>/dev/null || { cat "$dir/serve.log" >&2; exit 1; }
  sleep 0.1
done

flow='{"displayName":"bench","trigger":{"name":"trigger","type":"PIECE_TRIGGER","displayName":"Catch Webhook",
 "settings":{"pieceName":"@activepieces/piece-webhook","pieceVersion":"0.1.0","triggerName":"catch_webhook","input":{"authType":"none"}},
 "nextAction":{"name":"step_1","type":"CODE","displayName":"Code","settings":{"input":{"n":"{{trigger.body.n}}"},
  "sourceCode":{"code":"export const code = async (inputs) => ({ doubled: inputs.n * 2 });","packageJson":"{}"}},
 "nextAction":{"name":"step_2","type":"PIECE","displayName":"Return Response","settings":{"pieceName":"@activepieces/piece-webhook",
  "pieceVersion":"0.1.0","actionName":"return_response","input":{"responseType":"json","respond":"stop",
  "fields":{"status":200,"headers":{},"body":{"doubled":"{{step_1.doubled}}"}}}}}}}}'
id=$(curl -fsS "http://127.0.0.1:$port/v1/flows" -H "Authorization: Bearer $key" \
  -H 'Content-Type: application/json' -d "$flow" | grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)
url="http://127.0.0.1:$port/v1/webhooks/$id/sync"
reply=$(curl -fsS "$url" -H 'Content-Type: application/json' -d '{"n":21}')
[ "$reply" = '{"doubled":42}' ] || { echo "service bench: the flow answered '$reply'" >&2; exit 1; }

cat >"$dir/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"n":21}'
wrk.headers["Content-Type"] = "application/json"
EOF

# The processes measured: flowd, its engines and its redis-server, told apart by their
# command lines. `procs.py cpu` prints their CPU time (user + system, clock ticks, the engines
# and redis summed): on a shared machine, CPU per request says more about the cost than the
# rate does. `procs.py rss FILE` samples resident memory every 0.5 s until killed, writing the
# peak of each group to FILE; one long-lived process, so that sampling takes next to no CPU from
# the service it measures.
cat >"$dir/procs.py" <<'PY'
import glob, sys, time
pid = sys.argv[1]
def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""
def groups():
    kids = b" ".join(read(f) for f in glob.glob("/proc/%s/task/*/children" % pid)).split()
    engines, redis = [], []
    for k in (k.decode() for k in kids):
        argv = read("/proc/%s/cmdline" % k).split(b"\0")
        if len(argv) > 1 and argv[1] == b"engine":
            engines.append(k)
        elif argv[0].startswith(b"redis-server"):
            redis.append(k)
    return engines, redis
def ticks(p):
    f = read("/proc/%s/stat" % p).rsplit(b")", 1)[-1].split()
    return int(f[11]) + int(f[12]) if len(f) > 12 else 0
def rss_kb(p):
    for line in read("/proc/%s/status" % p).splitlines():
        if line.startswith(b"VmRSS:"):
            return int(line.split()[1])
    return 0
if sys.argv[2] == "cpu":
    engines, redis = groups()
    print(ticks(pid), sum(map(ticks, engines)), sum(map(ticks, redis)))
    sys.exit(0)
peak = [0, 0, 0, 0]  # flowd, engines (sum), engines (count), redis-server
while True:
    engines, redis = groups()
    now = [rss_kb(pid), sum(map(rss_kb, engines)), len(engines), max(map(rss_kb, redis), default=0)]
    peak = [max(a, b) for a, b in zip(peak, now)]
    with open(sys.argv[3], "w") as f:
        f.write("%d %d %d %d\n" % tuple(peak))
    time.sleep(0.5)
PY
cpu_snapshot() { python3 "$dir/procs.py" "$pid" cpu; }
sample() { exec python3 "$dir/procs.py" "$pid" rss "$dir/rss"; }

# Warm up (engines started, JIT warm, SQLite pages cached), then measure.
wrk -t"$threads" -c"$conns" -d5s -s "$dir/post.lua" "$url" >/dev/null
sample &
sampler=$!
cpu_before=$(cpu_snapshot)
wrk -t"$threads" -c"$conns" -d"${seconds}s" --latency -s "$dir/post.lua" "$url" >"$dir/wrk.txt"
cpu_after=$(cpu_snapshot)
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
sampler=

# wrk prints latencies as 812.00us, 1.23ms or 1.05s.
to_ms() {
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0;
    else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}
rps=$(awk '/^Requests\/sec:/ {print $2}' "$dir/wrk.txt")
p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$dir/wrk.txt")")
p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$dir/wrk.txt")")
total=$(awk '/requests in/ {print $1}' "$dir/wrk.txt")
bad=$(awk '/Non-2xx or 3xx responses:/ {print $5}' "$dir/wrk.txt")
errors=$(grep -E '^ +Socket errors:' "$dir/wrk.txt" || true)
read -r rss_flowd rss_engines n_engines rss_redis <"$dir/rss"

hz=$(getconf CLK_TCK)
cpu_line=$(awk -v a="$cpu_before" -v b="$cpu_after" -v n="$total" -v hz="$hz" -v cores="$(nproc)" 'BEGIN {
  split(a, x, " "); split(b, y, " "); f = (y[1] - x[1]) * 1000 / hz / n; e = (y[2] - x[2]) * 1000 / hz / n
  r = (y[3] - x[3]) * 1000 / hz / n; t = f + e + r
  printf "flowd %.2f ms, engines %.2f ms, redis-server %.2f ms: %.2f ms in all, so %d cores give at most %d req/s", f, e, r, t, cores, (t > 0 ? cores * 1000 / t : 0) }')
load=$(cut -d' ' -f1 /proc/loadavg)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fx", a / b }'; }
printf 'service: sync webhook -> code -> return_response, flowd serve (UNSANDBOXED, SQLite, embedded Redis,\n'
printf '         AP_WORKER_CONCURRENCY=%s), wrk -t%s -c%s -d%ss, %s requests\n' "$concurrency" "$threads" "$conns" "$seconds" "$total"
printf '  %-12s %12s %12s %12s\n' "" "req/s" "p50 ms" "p99 ms"
printf '  %-12s %12s %12s %12s\n' "flowd" "$rps" "$p50" "$p99"
printf '  %-12s %12s %12s %12s\n' "Activepieces" "$PEER_RPS" "$PEER_P50_MS" "$PEER_P99_MS"
printf '  %-12s %12s %12s %12s   (throughput: flowd/peer; latency: peer/flowd)\n' "ratio" \
  "$(ratio "$rps" "$PEER_RPS")" "$(ratio "$PEER_P50_MS" "$p50")" "$(ratio "$PEER_P99_MS" "$p99")"
printf '  targets: >= 950 req/s %s, p99 <= 20 ms %s\n' \
  "$(awk -v r="$rps" 'BEGIN { print (r >= 950 ? "met" : "MISSED") }')" \
  "$(awk -v p="$p99" 'BEGIN { print (p <= 20 ? "met" : "MISSED") }')"
printf '  CPU per request: %s\n' "$cpu_line"
printf '  (load average %s on %d cores when it ended: other work on the machine lowers the rate)\n' "$load" "$(nproc)"
printf '  resident memory under load (peak): flowd process (app + worker) %d MiB; %d engines %d MiB in all;\n' \
  $((rss_flowd / 1024)) "$n_engines" $((rss_engines / 1024))
printf '    embedded redis-server %d MiB (the peer'"'"'s worker holds 200-300 MB)\n' $((rss_redis / 1024))
if [ -n "${bad:-}" ] || [ -n "$errors" ]; then
  echo "  WARNING: not every reply was the flow's 200: ${bad:-0} non-2xx; ${errors:-no socket errors}" >&2
  exit 1
fi
