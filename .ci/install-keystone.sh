#!/usr/bin/env bash
# Installs what the Swift storage tests' Keystone needs: Debian's Keystone
# (identity API v3) and python3-keystonemiddleware, whose authtoken filter
# lets the tests' Swift proxy accept Keystone tokens beside tempauth's. The
# tests start their own Keystone on a free loopback port, with its config,
# sqlite database and keys in the Swift server's folder
# (tests/storage_support/swift_test_server.py --keystone), and never use
# /etc/keystone or the package's database; the package's own service is not
# started. Needs .ci/install-swift.sh's packages too. Idempotent; run as
# root on Debian bookworm.
set -euo pipefail

PACKAGES=(keystone python3-keystonemiddleware)
# Not the whole server: its imports take seconds (saml2 for one).
CHECK='import keystone.server, keystonemiddleware.auth_token'

installed() {
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || return 1
  done
  /usr/bin/python3 -c "$CHECK" 2>/dev/null
}

if installed; then
  echo "keystone: already installed ($(dpkg-query -W -f='${Version}' keystone))"
  exit 0
fi
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/apt.sh"
apt_install "${PACKAGES[@]}"
installed || { echo "keystone: packages installed but not usable by /usr/bin/python3" >&2; exit 1; }
echo "keystone: $(dpkg-query -W -f='${Version}' keystone) installed"
