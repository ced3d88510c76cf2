#!/usr/bin/env bash
# Builds the registry-v1 image on a machine that cannot pull base images:
# the binary from this machine's toolchain, its run-time files from this
# machine (docker/rootfs.sh), and the top-level Dockerfile's last stage
# (the image) on that prepared tree instead of its build stage.
#
#     bash docker/build.sh [TAG [DOCKER-BUILD-OPTION...]]    TAG: registry-v1:latest
#
# REGISTRY_V1_BINARY=PATH uses that binary instead of building one with
# `cargo build --release` (it must be linked against this machine's libraries).
# The size of the image is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=${1:-registry-v1:latest}
shift || true

binary=${REGISTRY_V1_BINARY:-}
if [ -z "$binary" ]; then
    "${CARGO:-cargo}" build --release --locked --bin registry-v1
    binary=${CARGO_TARGET_DIR:-target}/release/registry-v1
fi

if [ "$(grep -c '^FROM scratch$' Dockerfile)" -ne 1 ]; then
    echo "$0: the Dockerfile must have one stage \`FROM scratch\` (the image)" >&2
    exit 1
fi

context=$(mktemp -d "${TMPDIR:-/tmp}/registry-v1-image.XXXXXX")
# The rootfs stage's images are left untagged by the build, whether it
# succeeds or not: the label finds them to remove them.
stage="registry-v1.build-stage=$(basename "$context")"
trap 'rm -rf "$context"; docker image prune --force --filter "label=$stage" >/dev/null' EXIT
bash docker/rootfs.sh "$binary" config_sample.yml "$context/rootfs"
{
    echo "# docker/build.sh: the prepared tree, in place of the build stage"
    echo "FROM scratch AS rootfs"
    echo "LABEL $stage"
    echo "COPY rootfs/ /rootfs/"
    echo
    sed -n '/^FROM scratch$/,$p' Dockerfile
} >"$context/Dockerfile"

docker build --tag "$tag" "$@" "$context"
size=$(docker image inspect --format '{{.Size}}' "$tag")
echo "$tag: $size bytes ($((size / 1000000)) MB)"
