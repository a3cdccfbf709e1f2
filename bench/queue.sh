#!/usr/bin/env bash
# Queue benchmark: 50,000 no-op jobs through our worker (tests/queue/bqtool, the same
# bq_worker the service uses) and through the npm bullmq Worker, on one fresh redis-server, at
# concurrency 1, 5 and 50. Prints jobs/s for each, the ratio, and how busy Redis was (its CPU
# time over wall time) during each run; then add throughput, one add at a time, both sides.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
build=${FLOWD_BUILD:-$src/build-release}
bqtool=$build/tests/queue/bqtool
jobs=${QUEUE_BENCH_JOBS:-50000}
export FLOWD_SRC=$src

[ -x "$bqtool" ] || { echo "queue bench: '$bqtool' is not built" >&2; exit 1; }
[ -d "$src/tests/node/node_modules/bullmq" ] ||
  { echo "queue bench: run 'npm ci' in tests/node first" >&2; exit 1; }

dir=$(mktemp -d)
sock=$dir/redis.sock
redis-server --port 0 --unixsocket "$sock" --dir "$dir" --save '' --appendonly no \
  --loglevel warning --logfile "$dir/redis.log" --daemonize no &
redis_pid=$!
trap 'kill $redis_pid 2>/dev/null; wait $redis_pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do redis-cli -s "$sock" ping >/dev/null 2>&1 && break; sleep 0.05; done

tck=$(getconf CLK_TCK)
redis_ticks() { awk '{print $14 + $15}' "/proc/$redis_pid/stat"; }
now_ns() { date +%s%N; }
json_field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }

# runs "$@" and sets secs (from its JSON line) and busy (Redis CPU % over the same wall time)
measure() {
  local t0 c0 out t1 c1
  c0=$(redis_ticks); t0=$(now_ns)
  out=$("$@")
  t1=$(now_ns); c1=$(redis_ticks)
  secs=$(echo "$out" | json_field seconds)
  busy=$(python3 -c "print(round(100.0 * ($c1 - $c0) / $tck / (($t1 - $t0) / 1e9)))")
}

fill() { redis-cli -s "$sock" flushall >/dev/null; node "$here/queue_node.cjs" fill "$sock" bench "$jobs"; }
rate() { python3 -c "print(int($jobs / $1))"; }

printf '%-12s %12s %12s %8s %14s %14s\n' concurrency 'flowd jobs/s' 'node jobs/s' ratio \
  'redis % flowd' 'redis % node'
for c in 1 5 50; do
  fill
  measure "$bqtool" work "unix://$sock" bench --concurrency "$c" --exit-after "$jobs"
  ours=$(rate "$secs"); ours_busy=$busy
  fill
  measure node "$here/queue_node.cjs" work "$sock" bench "$jobs" "$c"
  theirs=$(rate "$secs"); theirs_busy=$busy
  printf '%-12s %12s %12s %8s %14s %14s\n' "$c" "$ours" "$theirs" \
    "$(python3 -c "print('%.2fx' % ($ours / $theirs))")" "$ours_busy" "$theirs_busy"
done

adds=${QUEUE_BENCH_ADDS:-20000}
redis-cli -s "$sock" flushall >/dev/null
measure "$bqtool" add "unix://$sock" bench noop '{}' --count "$adds" --quiet
ours=$(python3 -c "print(int($adds / $secs))"); ours_busy=$busy
redis-cli -s "$sock" flushall >/dev/null
measure node "$here/queue_node.cjs" add "$sock" bench "$adds"
theirs=$(python3 -c "print(int($adds / $secs))"); theirs_busy=$busy
printf '%-12s %12s %12s %8s %14s %14s\n' "add x$adds" "$ours" "$theirs" \
  "$(python3 -c "print('%.2fx' % ($ours / $theirs))")" "$ours_busy" "$theirs_busy"
