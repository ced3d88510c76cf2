#!/usr/bin/env bash
# Assembles the root filesystem of the registry-v1 image in OUT/tree: the
# binary and exactly what it needs at run time, taken from the machine (or
# build stage) this runs on. Nothing else: no shell, no package manager.
#
#     bash docker/rootfs.sh BINARY CONFIG OUT
#
# OUT/tree:
#   /usr/local/bin/registry-v1                 BINARY, stripped
#   /lib*/..., /usr/lib*/...                   the shared libraries `ldd BINARY` lists
#   /etc/ssl/certs/ca-certificates.crt         the CA bundle (SSL_CERT_FILE)
#   /etc/passwd, /etc/group                    root, and `registry` (65532), who runs it
#   /etc/nsswitch.conf                         users and hosts from files, then DNS
#   /docker-registry/config/config_sample.yml  CONFIG: the default configuration,
#                                              where the old image kept its own
#   /tmp                                       1777: the default search index's folder
# OUT/storage: an empty folder, the default storage (/tmp/registry, the
#   volume). It stays out of the tree because a Dockerfile's COPY keeps no
#   ownership and gives `--chown` only to folders it creates: the
#   Dockerfile copies it to /tmp/registry as `registry`'s.
#
# The libraries come from the machine that built BINARY, so they are the
# ones it was linked against.
set -euo pipefail

if [ $# -ne 3 ]; then
    echo "usage: $0 BINARY CONFIG OUT" >&2
    exit 2
fi
binary=$1 config=$2 out=$3
# The user the image runs as (distroless' `nonroot` number).
uid=65532

[ -x "$binary" ] || { echo "$0: $binary is not an executable" >&2; exit 1; }
[ -f "$config" ] || { echo "$0: $config is not a file" >&2; exit 1; }
if [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then
    echo "$0: $out is not empty" >&2
    exit 1
fi
tree=$out/tree
install -d -m 0755 "$tree" "$out/storage"

install -D -m 0755 "$binary" "$tree/usr/local/bin/registry-v1"
# Line tables help a backtrace on a developer's machine; in the image they
# are most of the binary's size.
if command -v strip >/dev/null; then
    strip --strip-debug "$tree/usr/local/bin/registry-v1"
else
    echo "$0: no strip on PATH: the binary keeps its debug sections" >&2
fi

# `ldd` prints `name => /path (0x...)` for each library and `/path (0x...)`
# for the loader; a static binary has neither.
libs=$(ldd "$binary" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' || true)
if ldd "$binary" 2>&1 | grep -q 'not found'; then
    echo "$0: $binary needs libraries this machine lacks:" >&2
    ldd "$binary" | grep 'not found' >&2
    exit 1
fi
for lib in $libs; do
    install -D -m 0755 "$(readlink -f "$lib")" "$tree$lib"
done

install -D -m 0644 "$(readlink -f /etc/ssl/certs/ca-certificates.crt)" \
    "$tree/etc/ssl/certs/ca-certificates.crt"

install -d -m 0755 "$tree/etc"
cat >"$tree/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/sbin/nologin
registry:x:$uid:$uid:registry-v1:/tmp/registry:/sbin/nologin
PASSWD
cat >"$tree/etc/group" <<GROUP
root:x:0:
registry:x:$uid:
GROUP
cat >"$tree/etc/nsswitch.conf" <<'NSS'
passwd: files
group: files
hosts: files dns
NSS

install -D -m 0644 "$config" "$tree/docker-registry/config/config_sample.yml"

install -d -m 1777 "$tree/tmp"
