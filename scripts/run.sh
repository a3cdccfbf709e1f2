#!/usr/bin/env bash
# `make run`: installs what is missing, builds, and runs the example flow with `flowd run`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
echo "flowd: running examples/hello.json with a sample webhook payload" >&2
exec ./build/flowd run examples/hello.json --payload examples/hello-payload.json
