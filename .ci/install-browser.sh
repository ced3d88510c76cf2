#!/usr/bin/env bash
# Installs what the web page tests (tests/web_ui.rs) drive: Debian's
# chromium and its chromedriver, headless, through WebDriver. Idempotent;
# run as root on Debian bookworm.
set -euo pipefail

PACKAGES=(chromium chromium-driver)
declare -A COMMAND=([chromium]=chromium [chromium-driver]=chromedriver)

missing=()
for pkg in "${PACKAGES[@]}"; do
  command -v "${COMMAND[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "browser: already installed (${PACKAGES[*]})"
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
chromium --version
chromedriver --version
