#!/usr/bin/env bash
# Builds the old Python docker-registry 0.9.1 (the legacy peer) that
# tests/v1_bridge.rs runs to write a v1 storage folder of its own, which
# registry-v1 then serves over v2 with no step in between. Uses
# ../shared/tools/legacy-peer-setup.sh (PyPI and Debian packages: python3.11
# with venv, swig, libssl-dev, gcc). Idempotent: skipped when the peer is
# built already. LEGACY_PEER_ROOT names where (default /tmp/peers/pyreg).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="${LEGACY_PEER_ROOT:-/tmp/peers/pyreg}"
if [ -x "$ROOT/start.sh" ] && "$ROOT/venv/bin/python" -c 'import docker_registry' 2>/dev/null \
    || PYTHONPATH="$ROOT/src" "$ROOT/venv/bin/python" -c 'import docker_registry' 2>/dev/null; then
  echo "legacy peer: already built in $ROOT"
  exit 0
fi
SETUP=../shared/tools/legacy-peer-setup.sh
if [ ! -f "$SETUP" ]; then
  echo "legacy peer: $SETUP not found (the shared tools sit beside the repository)" >&2
  exit 1
fi
PYREG_ROOT="$ROOT" bash "$SETUP"
