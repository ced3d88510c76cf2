#!/usr/bin/env bash
# Builds the old Python docker-registry 0.9.1 (the legacy peer) that
# tests/v1_bridge.rs runs to write a v1 storage folder of its own, which
# registry-v1 then serves over v2 with no step in between, and adds its
# Swift driver (PyPI docker-registry-driver-swift 0.2.1, the one the old
# registry's `swift` flavor loaded) for tests/storage_swift.rs. Uses
# ../shared/tools/legacy-peer-setup.sh (PyPI and Debian packages: python3.11
# with venv, swig, libssl-dev, gcc). Idempotent: each part skipped when
# built already. LEGACY_PEER_ROOT names where (default /tmp/peers/pyreg).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="${LEGACY_PEER_ROOT:-/tmp/peers/pyreg}"
if [ -x "$ROOT/start.sh" ] && "$ROOT/venv/bin/python" -c 'import docker_registry' 2>/dev/null \
    || PYTHONPATH="$ROOT/src" "$ROOT/venv/bin/python" -c 'import docker_registry' 2>/dev/null; then
  echo "legacy peer: already built in $ROOT"
else
  SETUP=../shared/tools/legacy-peer-setup.sh
  if [ ! -f "$SETUP" ]; then
    echo "legacy peer: $SETUP not found (the shared tools sit beside the repository)" >&2
    exit 1
  fi
  PYREG_ROOT="$ROOT" bash "$SETUP"
fi

# The Swift driver. Its package declares `docker_registry` a namespace
# package, which would hide the peer's own tree (run from $ROOT/src): its
# one module goes into the peer's drivers folder instead, and its client
# (python-swiftclient of its time, with six) into the peer's venv. One
# change: `get_size` answers the header's text where the registry uses a
# number (Python 2 compared text with numbers; Python 3 refuses).
DRIVER="$ROOT/src/docker_registry/drivers/swift.py"
if [ -f "$DRIVER" ] && "$ROOT/venv/bin/python" -c 'import swiftclient' 2>/dev/null; then
  echo "legacy peer: Swift driver already in $DRIVER"
  exit 0
fi
PIP=("$ROOT/venv/bin/pip" install --disable-pip-version-check -q)
"${PIP[@]}" --no-deps python-swiftclient==2.2.0 six==1.16.0
DL="$(mktemp -d)"
trap 'rm -rf "$DL"' EXIT
"$ROOT/venv/bin/pip" download --disable-pip-version-check -q --no-deps --no-binary :all: \
  -d "$DL" docker-registry-driver-swift==0.2.1
tar -xzf "$DL"/docker-registry-driver-swift-0.2.1.tar.gz -C "$DL"
SOURCE="$DL/docker-registry-driver-swift-0.2.1/docker_registry/drivers/swift.py"
OLD="return headers['content-length']"
[ "$(grep -cF "$OLD" "$SOURCE")" = 1 ] || {
  echo "legacy peer: the Swift driver's get_size is not the one expected" >&2
  exit 1
}
"$ROOT/venv/bin/python" - "$SOURCE" "$DRIVER.part" <<'PY'
import sys
text = open(sys.argv[1]).read()
old = "return headers['content-length']"
open(sys.argv[2], "w").write(text.replace(old, "return int(headers['content-length'])"))
PY
mv "$DRIVER.part" "$DRIVER"
PYTHONPATH="$ROOT/src" "$ROOT/venv/bin/python" -c 'import docker_registry.drivers.swift'
echo "legacy peer: Swift driver in $DRIVER"
