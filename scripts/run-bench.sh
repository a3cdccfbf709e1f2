#!/usr/bin/env bash
# `make bench`: builds a release tree and runs every benchmark under bench/, each printing its
# figures side by side with the peer it is measured against.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --bench || exit 1
if [ -f tests/node/package-lock.json ] && [ ! -d tests/node/node_modules ]; then
  (cd tests/node && npm ci --no-audit --no-fund --loglevel=error) || exit 1
fi
[ -f build-release/build.ninja ] || meson setup build-release --buildtype=release >/dev/null
ninja -C build-release >/dev/null || exit 1
status=0
for b in bench/*.sh; do
  [ -e "$b" ] || continue
  echo "== $(basename "$b" .sh)"
  FLOWD_BUILD="$PWD/build-release" FLOWD="$PWD/build-release/flowd" bash "$b" || status=1
done
exit $status
