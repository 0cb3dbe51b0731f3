#!/usr/bin/env bash
# `npm test` runs this first (pretest): the real servers the tests start themselves — Redis (the
# Redis engine), nginx with the Nchan module (side-by-side runs, the client against Nchan),
# Chromium (browser tests) and openssl (certificates for the TLS tests) — are installed from
# Debian's packages when missing, with a C compiler (gcc) for the benchmark suite's C floor. As
# root (or with passwordless sudo) it installs them; otherwise it names what is missing in one line
# and fails.
set -uo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# Sentinel topologies (test/helpers/redis-cluster.ts); Debian ships it as its own package
command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_nchan_module.so ] || need+=(libnginx-mod-nchan)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# certificates for the Redis-over-TLS tests (test/redis-tls.test.ts)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# the benchmark suite's C floor (benchmarks/suite/floor.c; test/floor-c.test.ts builds it)
command -v cc >/dev/null 2>&1 || need+=(gcc)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "parkline tests need: ${need[*]} (Debian packages). Install them with: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "parkline tests need: ${need[*]}, and this machine has no apt-get: install them with its package manager" >&2
  exit 1
fi

echo "installing test dependencies: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# the package lists may be stale or absent on a fresh machine: update once, only when needed
"${sudo[@]}" apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
  "${sudo[@]}" apt-get update >/dev/null 2>&1
  "${sudo[@]}" apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
} || { echo "parkline tests need: ${need[*]}; apt-get install failed (see: apt-get install -y ${need[*]})" >&2; exit 1; }
