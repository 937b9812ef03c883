#!/usr/bin/env bash
# Development update keys for `just image` / `just bundle`: a CA whose certificate the image trusts, made once
# into build/keys. NOT for devices in the field: production keys come from a separate, offline CA and the
# signing key never leaves the build service (README, "Updating devices in the field").
set -euo pipefail
dir="${1:-build/keys}"
mkdir -p "$dir"
if [ ! -f "$dir/ca.cert.pem" ]; then
    openssl req -x509 -newkey rsa:3072 -nodes -keyout "$dir/ca.key.pem" -out "$dir/ca.cert.pem" -days 3650 \
        -subj "/O=edgecount development/CN=edgecount DEVELOPMENT update CA (not for production)" 2>/dev/null
    chmod 0600 "$dir/ca.key.pem"
    echo "made development update keys in $dir (not for production)" >&2
fi
