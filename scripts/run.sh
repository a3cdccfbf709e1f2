#!/usr/bin/env bash
# `make run`: installs what is missing, builds, and starts `flowd serve` with its embedded
# defaults (the app and a worker in one process, a private redis-server and SQLite under
# AP_CONFIG_PATH=./var), then prints the API key and commands to try. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null

export AP_CONFIG_PATH=${AP_CONFIG_PATH:-./var}
port=${AP_PORT:-8080}
base="http://localhost:$port"

./build/flowd serve &
pid=$!
# Ctrl-C reaches this script; flowd, started in the background, is told with SIGTERM.
trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM

ready=0
for _ in $(seq 1 300); do
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" || true
    echo "flowd serve exited before it was ready (is port $port taken? set AP_PORT)" >&2
    exit 1
  fi
  if curl -fsS -o /dev/null "$base/v1/health" 2>/dev/null; then ready=1; break; fi
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  echo "flowd serve did not answer on $base/v1/health within 30 s" >&2
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" || true
  exit 1
fi

key=${AP_API_KEY:-$(cat "$AP_CONFIG_PATH/api-key")}
payload='{"name":"Ada","languages":["C","JavaScript"]}'
env_note=
# The CLI finds the app on AP_PORT (default 8080) and the key under AP_CONFIG_PATH (./var).
[ "$port" = 8080 ] || env_note="  export AP_PORT=$port"$'\n'
[ "$AP_CONFIG_PATH" = ./var ] || env_note+="  export AP_CONFIG_PATH=$AP_CONFIG_PATH"$'\n'
[ -z "${AP_API_KEY:-}" ] || env_note+="  export AP_API_KEY=$key"$'\n'
cat >&2 <<EOF

flowd is serving on $base (app + worker; Redis and SQLite under $AP_CONFIG_PATH)
API key: $key   (kept in $AP_CONFIG_PATH/api-key)

Try it from another terminal, in $(pwd):
$env_note
  # push the example flow with the CLI (it reads the key from $AP_CONFIG_PATH/api-key) ...
  FLOW=\$(./build/flowd flows push examples/hello.json | head -1 | cut -d' ' -f1)
  # ... or with curl
  FLOW=\$(curl -s $base/v1/flows -H 'Authorization: Bearer $key' -H 'Content-Type: application/json' --data-binary @examples/hello.json | grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)

  # call its webhook and wait for the flow's reply
  curl -si $base/v1/webhooks/\$FLOW/sync -H 'Content-Type: application/json' -d '$payload'

  # the runs and their steps
  ./build/flowd runs ls
  ./build/flowd runs show RUN_ID

Ctrl-C stops flowd.

EOF

status=0
while kill -0 "$pid" 2>/dev/null; do
  if wait "$pid"; then status=0; else status=$?; fi
done
exit "$status"
