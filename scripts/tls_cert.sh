#!/usr/bin/env bash
# A self-signed TLS certificate for a class server on a LAN (browsers allow the camera only on
# https or localhost). Valid for this machine's host name, localhost and every local IP address.
# Idempotent: an existing certificate that still has 30 days left is kept.
#   usage: scripts/tls_cert.sh [DIR]   (default artifacts/tls) -> DIR/cert.pem, DIR/key.pem
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-artifacts/tls}"
mkdir -p "$dir"
if [ -f "$dir/cert.pem" ] && openssl x509 -checkend 2592000 -noout -in "$dir/cert.pem" >/dev/null 2>&1; then
  exit 0
fi
san="DNS:localhost,DNS:$(hostname),IP:127.0.0.1"
for ip in $(hostname -I 2>/dev/null || true); do
  case "$ip" in *:*) ;; *) san="$san,IP:$ip" ;; esac
done
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=Fashion-MNIST Workbench ($(hostname))" \
  -addext "subjectAltName=$san" -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
chmod 600 "$dir/key.pem"
echo "[setup] made a self-signed certificate in $dir for $san" >&2
