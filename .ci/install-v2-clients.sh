#!/usr/bin/env bash
# Installs the real v2 clients the v2 tests drive (tests/v2_clients.rs,
# tests/v2_interchange.rs): skopeo, podman, buildah and umoci from Debian,
# busybox-static (a static binary to build tiny test images from), and
# docker-registry (distribution 2.8.2, the reference registry the storage
# interchange test runs on the same folder). Idempotent; run as root on
# Debian bookworm. The docker engine is not installed: its test runs where
# the machine already has one.
set -euo pipefail

PACKAGES=(skopeo podman buildah umoci busybox-static docker-registry)
# What each package puts on PATH, to know whether it is there already.
declare -A COMMAND=(
  [skopeo]=skopeo [podman]=podman [buildah]=buildah [umoci]=umoci
  [busybox-static]=busybox [docker-registry]=docker-registry
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  command -v "${COMMAND[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "v2 clients: already installed (${PACKAGES[*]})"
else
  export DEBIAN_FRONTEND=noninteractive
  # Package lists older than a day may name versions the mirror dropped.
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -newermt '-1 day' 2>/dev/null | head -1)" ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -q
  fi
  # policy-rc.d / no systemd keeps docker-registry's service from starting;
  # it is disabled below in case this machine runs systemd.
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
fi

# The tests start distribution themselves, on their own port and folder.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
fi

for pkg in "${PACKAGES[@]}"; do
  command -v "${COMMAND[$pkg]}" >/dev/null || { echo "missing after install: ${COMMAND[$pkg]}" >&2; exit 1; }
done
skopeo --version
podman --version
docker-registry --version
