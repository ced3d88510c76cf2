#!/usr/bin/env bash
# Installs the SMTP server the mail-on-error tests (tests/email_exceptions.rs)
# start on a free loopback port: aiosmtpd (PyPI), whose Mailbox handler
# writes each message it accepts into a maildir the test reads. Idempotent;
# run as root on Debian bookworm (or any machine with python3).
#
# If `python3` can already import aiosmtpd, nothing is done. Otherwise it
# goes into its own virtualenv at $VENV, where the tests look for it;
# SMTP_TEST_PYTHON may name another Python.
set -euo pipefail

VENV=/opt/registry-v1-smtp-test
PACKAGE='aiosmtpd>=1.4,<1.5'
CHECK='import aiosmtpd.handlers, aiosmtpd.smtp'

if [ -n "${SMTP_TEST_PYTHON:-}" ] && "$SMTP_TEST_PYTHON" -c "$CHECK" 2>/dev/null; then
  echo "aiosmtpd: already usable by $SMTP_TEST_PYTHON"; exit 0
fi
if [ -x "$VENV/bin/python3" ] && "$VENV/bin/python3" -c "$CHECK" 2>/dev/null; then
  echo "aiosmtpd: already installed in $VENV"; exit 0
fi
if command -v python3 >/dev/null && python3 -c "$CHECK" 2>/dev/null; then
  echo "aiosmtpd: already usable by $(command -v python3)"; exit 0
fi

if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
fi
python3 -m venv "$VENV"
"$VENV/bin/python3" -m pip install --quiet "$PACKAGE"
"$VENV/bin/python3" -c "$CHECK"
echo "aiosmtpd: installed in $VENV"
