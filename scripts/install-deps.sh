#!/usr/bin/env bash
# Installs the Debian packages flowd needs to build and run (and, with --test or --bench, what
# the test suite and the benchmarks need). Only missing packages are installed, so a second run
# costs a dpkg query and nothing else.
set -euo pipefail

build=(build-essential pkg-config meson ninja-build
       libhiredis-dev libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libsqlite3-dev
       libpq-dev libssl-dev libseccomp-dev libjavascriptcoregtk-4.1-dev redis-server ca-certificates curl)
test=(libcmocka-dev postgresql nodejs npm python3 clang libclang-rt-14-dev)
bench=(wrk bubblewrap hyperfine)

want=("${build[@]}")
for arg in "$@"; do
  case "$arg" in
    --test) want+=("${test[@]}") ;;
    --bench) want+=("${test[@]}" "${bench[@]}") ;;
    *) echo "install-deps: unknown option '$arg'" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  # node and npm may come from outside Debian (a newer release is fine): only install if absent.
  case "$p" in
    nodejs) command -v node >/dev/null && continue ;;
    npm) command -v npm >/dev/null && continue ;;
    python3) command -v python3 >/dev/null && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root or install them" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
