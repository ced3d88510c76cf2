#!/usr/bin/env bash
# Installs what the S3/GCS storage tests and benchmark need: moto's
# S3-compatible server (PyPI `moto[server]`), which the tests start
# themselves on a free loopback port. Idempotent; run as root on Debian
# bookworm (or any machine with python3).
#
# If `python3` can already import moto's server, nothing is done.
# Otherwise moto goes into its own virtualenv at $VENV, where the tests
# look for it (tests/storage_support/s3_server.rs); S3_TEST_PYTHON may
# name another Python.
set -euo pipefail

VENV=/opt/registry-v1-s3-test
MOTO='moto[server]>=5.2,<5.3'
CHECK='import moto.moto_server.werkzeug_app, flask, werkzeug'

if [ -n "${S3_TEST_PYTHON:-}" ] && "$S3_TEST_PYTHON" -c "$CHECK" 2>/dev/null; then
  echo "moto server: already usable by $S3_TEST_PYTHON"; exit 0
fi
if [ -x "$VENV/bin/python3" ] && "$VENV/bin/python3" -c "$CHECK" 2>/dev/null; then
  echo "moto server: already installed in $VENV"; exit 0
fi
if command -v python3 >/dev/null && python3 -c "$CHECK" 2>/dev/null; then
  echo "moto server: already usable by $(command -v python3)"; exit 0
fi

if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
fi
python3 -m venv "$VENV"
"$VENV/bin/python3" -m pip install --quiet --upgrade pip
"$VENV/bin/python3" -m pip install --quiet "$MOTO"
"$VENV/bin/python3" -c "$CHECK"
echo "moto server: installed in $VENV"
