#!/usr/bin/env bash
# Installs localsendd (a LocalSend v2.2 daemon from PyPI, written by
# others: the independent implementation airhop's LocalSend support is
# tested against) into a venv outside the repository, once, and prints the
# venv's bin folder. Needs python3 (3.11+) with venv and pip, and openssl
# (localsendd makes its HTTPS certificate with it).
set -euo pipefail
VENV=${LOCALSENDD_VENV:-/var/tmp/airhop-localsendd}
VERSION=${LOCALSENDD_VERSION:-0.1.1}
# Tests in separate processes (scripts/test.sh) may all get here at once:
# one installs, the others wait and then find it installed.
exec 9>"$VENV.lock"
flock 9
# (The installed version is read whole before it is compared: `pip show |
# grep -q` let grep exit first, and pip's broken pipe failed the pipeline,
# so a busy machine reinstalled under a running daemon.)
have=$("$VENV/bin/python3" -c 'import importlib.metadata as m; print(m.version("localsendd"))' 2>/dev/null || true)
if [ ! -x "$VENV/bin/localsendd" ] || [ "$have" != "$VERSION" ]; then
  command -v openssl >/dev/null || {
    apt=(apt-get -o DPkg::Lock::Timeout=600)   # another test may hold the lock
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -q openssl >&2 \
      || { "${apt[@]}" update -q >&2 && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -q openssl >&2; }
  }
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q "localsendd==$VERSION" >&2
fi
echo "$VENV/bin"
