#!/usr/bin/env bash
# Installs what the PostgreSQL search tests need: Debian's PostgreSQL server
# (with pg_trgm, part of the server package since 15) and `setpriv`, used to
# run it as the `postgres` user when the tests run as root. The tests start
# their own cluster in a temporary folder on a free loopback port
# (tests/search_support/postgres.rs); no system service is started.
# It also gives the legacy peer (the old Python registry, built by
# .ci/install-legacy-peer.sh, which runs before this script) the PostgreSQL
# driver its SQLAlchemy needs, so that a test can have the old registry and
# registry-v1 share one PostgreSQL index.
# Idempotent; run as root on Debian bookworm.
set -euo pipefail

PEER="${LEGACY_PEER_ROOT:-/tmp/peers/pyreg}"
if [ -x "$PEER/venv/bin/python" ] && ! "$PEER/venv/bin/python" -c 'import psycopg2' 2>/dev/null; then
  "$PEER/venv/bin/pip" install -q 'psycopg2-binary>=2.9,<3'
  echo "legacy peer: psycopg2 installed in $PEER/venv"
fi

if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 \
   && ls /usr/lib/postgresql/*/lib/pg_trgm.so >/dev/null 2>&1 \
   && command -v setpriv >/dev/null && id postgres >/dev/null 2>&1; then
  echo "postgresql: already installed ($(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' '))"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq postgresql postgresql-contrib util-linux >/dev/null
# The package's own cluster is not used: the tests make theirs.
if command -v pg_lsclusters >/dev/null; then
  pg_lsclusters -h 2>/dev/null | while read -r version name _; do
    pg_ctlcluster "$version" "$name" stop 2>/dev/null || true
  done
fi
echo "postgresql: installed ($(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' '))"
