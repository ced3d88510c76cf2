#!/usr/bin/env bash
# Installs what the multi-host test needs (tests/multi_host.rs): iproute2,
# whose `ip netns` and veth pairs make the test's own hosts. The test makes
# and removes them itself; it needs root. Idempotent; Debian bookworm.
set -euo pipefail
if command -v ip >/dev/null && ip netns list >/dev/null 2>&1; then
  echo "iproute2: already installed"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq iproute2 >/dev/null
echo "iproute2: installed"
