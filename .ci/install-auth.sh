#!/usr/bin/env bash
# Installs what the login tests (tests/htpasswd.rs, tests/token_auth.rs)
# drive besides the v2 clients: htpasswd (apache2-utils), to write the
# bcrypt entries operators write, and openssl, to make the token service's
# key pairs and certificates. Idempotent; run as root on Debian bookworm.
set -euo pipefail

PACKAGES=(apache2-utils openssl)
declare -A COMMAND=([apache2-utils]=htpasswd [openssl]=openssl)

missing=()
for pkg in "${PACKAGES[@]}"; do
  command -v "${COMMAND[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "login test tools: already installed (${PACKAGES[*]})"
else
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -newermt '-1 day' 2>/dev/null | head -1)" ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -q
  fi
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
fi

for pkg in "${PACKAGES[@]}"; do
  command -v "${COMMAND[$pkg]}" >/dev/null || { echo "missing after install: ${COMMAND[$pkg]}" >&2; exit 1; }
done
openssl version
