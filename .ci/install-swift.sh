#!/usr/bin/env bash
# Installs what the Swift storage tests need: Debian's OpenStack Swift
# (account, container, object and proxy servers), memcached for the
# proxy's tempauth tokens, and python3-swiftclient for checks by hand. The
# tests start their own one-node Swift on free loopback ports, with its
# configuration, rings and data in a temporary folder
# (tests/storage_support/swift_test_server.py), and never read /etc/swift;
# the packages' own services are not started. Idempotent; run as root on
# Debian bookworm.
set -euo pipefail

PACKAGES=(swift swift-proxy swift-account swift-container swift-object memcached python3-swiftclient)
CHECK='import swift.common.wsgi, swift.proxy.server, swift.account.server, swift.container.server, swift.obj.server, swiftclient'

installed() {
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || return 1
  done
  /usr/bin/python3 -c "$CHECK" 2>/dev/null && command -v memcached >/dev/null
}

if installed; then
  echo "swift: already installed ($(dpkg-query -W -f='${Version}' swift))"
  exit 0
fi
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/apt.sh"
apt_install "${PACKAGES[@]}"
installed || { echo "swift: packages installed but not usable by /usr/bin/python3" >&2; exit 1; }
echo "swift: $(dpkg-query -W -f='${Version}' swift) installed"
