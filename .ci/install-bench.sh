#!/usr/bin/env bash
# Tools the benchmark suite (bench/) drives: nginx (the static-file baseline),
# wrk (the load generator), openssl (the hashing baseline), docker-registry
# (distribution 2.8.2, the registry the v2 sections measure us against) and
# skopeo (their whole-image client), from Debian; and moto's S3-compatible
# server (the S3 figures), through install-storage.sh.
# Idempotent; run as root on Debian bookworm.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The Debian package enables a system nginx on port 80; the suite starts its
# own on a free loopback port and needs none.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
  systemctl stop nginx || true
fi
# Likewise docker-registry's service (port 5000): the suite starts its own
# distribution on a free port, with storage in its scratch folder.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
fi

bash ./install-storage.sh
