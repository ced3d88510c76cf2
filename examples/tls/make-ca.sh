#!/usr/bin/env bash
# Makes a certificate authority of your own and a certificate for the
# registry signed by it, with openssl:
#
#     bash make-ca.sh HOST [DIR]       # DIR: the current folder
#
# HOST is the name (or IP address) clients use to reach the registry; the
# certificate also names localhost and 127.0.0.1. In DIR:
#
#     ca.crt      the CA's certificate: give it to the clients
#     ca.key      the CA's key: keep it away from the registry (it signs
#                 certificates every client would trust)
#     server.crt  the registry's certificate (tls_certificate)
#     server.key  its key (tls_key), readable by the registry's user only
#
# An existing ca.crt and ca.key in DIR are used again, so running it again
# for another host, or when the server certificate is about to expire,
# keeps the clients' trust. The server certificate is valid 825 days.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ] || [ -z "$1" ]; then
    echo "usage: $0 HOST [DIR]" >&2
    exit 2
fi
host=$1
dir=${2:-.}
mkdir -p "$dir"
cd "$dir"
umask 077

if [ ! -e ca.key ] || [ ! -e ca.crt ]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
    openssl req -x509 -new -key ca.key -sha256 -days 3650 \
        -subj "/CN=registry-v1 CA $(hostname 2>/dev/null || echo local)" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out ca.crt
fi

# A name that is an IPv4 or IPv6 address goes in as an IP SAN.
if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then
    san="IP:$host"
else
    san="DNS:$host"
fi
san="$san,DNS:localhost,IP:127.0.0.1"

ext=$(mktemp)
trap 'rm -f "$ext" server.csr' EXIT
cat >"$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san
EXT
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key.new
openssl req -new -key server.key.new -subj "/CN=$host" -out server.csr
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    -days 825 -sha256 -extfile "$ext" -out server.crt.new
# Whole files in place (a registry reading them on SIGHUP never sees half).
mv server.key.new server.key
mv server.crt.new server.crt
chmod 0644 ca.crt server.crt
echo "$dir: ca.crt (give it to clients), server.crt and server.key for $san" >&2
