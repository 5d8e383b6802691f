#!/usr/bin/env bash
# Installs localsendd (a LocalSend v2.2 daemon from PyPI, written by
# others: the independent implementation airhop's LocalSend support is
# tested against) into a venv outside the repository, once, and prints the
# venv's bin folder. Needs python3 (3.11+) with venv and pip, and openssl
# (localsendd makes its HTTPS certificate with it).
set -euo pipefail
VENV=${LOCALSENDD_VENV:-/var/tmp/airhop-localsendd}
VERSION=${LOCALSENDD_VERSION:-0.1.1}
if [ ! -x "$VENV/bin/localsendd" ] || ! "$VENV/bin/pip" show localsendd 2>/dev/null | grep -qx "Version: $VERSION"; then
  command -v openssl >/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssl >&2 \
      || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssl >&2; }
  }
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q "localsendd==$VERSION" >&2
fi
echo "$VENV/bin"
