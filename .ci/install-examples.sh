#!/usr/bin/env bash
# Installs what the deployment recipes' test (tests/examples.rs) needs
# beyond the other suites' tools: `systemd-analyze` (Debian's systemd
# package; `systemd-analyze verify` reads a unit file without a running
# systemd, so it works in a container), docker-compose (only its `config`
# is run: it checks examples/compose/compose.yaml without a docker engine
# or any image), openssl and curl. skopeo comes from install-v2-clients.sh,
# PostgreSQL, Redis and the S3 server from their own scripts.
# Idempotent; run as root on Debian bookworm.
set -euo pipefail

compose_found() {
  docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1
}

missing=()
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
compose_found || missing+=(docker-compose)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -eq 0 ]; then
  echo "examples: already installed (systemd-analyze, compose, openssl, curl)"
  exit 0
fi
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/apt.sh"
apt_install "${missing[@]}"
command -v systemd-analyze >/dev/null || { echo "missing after install: systemd-analyze" >&2; exit 1; }
compose_found || { echo "missing after install: docker-compose" >&2; exit 1; }
echo "examples: installed ${missing[*]}"
