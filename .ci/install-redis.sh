#!/usr/bin/env bash
# Installs what the Redis cache tests need: Debian's Redis server. The tests
# start their own server on a free loopback port with its data in a
# temporary folder (tests/cache_support.rs); the package's own service is
# stopped and left off. Idempotent; run as root on Debian bookworm.
set -euo pipefail
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  echo "redis: already installed ($(redis-server --version | cut -d' ' -f3))"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d: no service started by the package (no init system here, and
# the tests want no server of the machine's).
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq redis-server redis-tools >/dev/null
echo "redis: $(redis-server --version | cut -d' ' -f3) installed"
