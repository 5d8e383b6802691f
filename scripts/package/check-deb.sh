#!/usr/bin/env bash
# Installs a .deb into a clean Debian (debootstrap, minbase + man-db and
# systemd) and checks what a user meets: `dpkg -i` with its dependencies,
# `airhop --version`, `man airhop-send`, the completions, and the user unit
# passing `systemd-analyze verify`. Needs root and Debian's mirror (what
# apt uses). The root is made fresh each run under $WORK, outside the
# repository.
#
#   scripts/package/check-deb.sh target/deb/airhop_0.1.0_amd64.deb
set -euo pipefail
DEB=$(realpath "$1")
WORK=${WORK:-/var/tmp/airhop-debcheck}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
say() { printf '== %s\n' "$*" >&2; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

command -v debootstrap >/dev/null || {
  say "installing debootstrap"
  # Another test may be installing at the same time: wait for its lock.
  apt=(apt-get -o DPkg::Lock::Timeout=600)
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -q debootstrap >/dev/null \
    || { "${apt[@]}" update -q >/dev/null && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -q debootstrap >/dev/null; }
}
ROOTFS=$WORK/root
cleanup() {
  umount "$ROOTFS/proc" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cleanup
mkdir -p "$WORK"
say "debootstrap $SUITE (minbase, man-db, systemd) into $ROOTFS"
debootstrap --variant=minbase --include=man-db,systemd "$SUITE" "$ROOTFS" "$MIRROR" > "$WORK.log" 2>&1 \
  || { tail -20 "$WORK.log" >&2; fail "debootstrap"; }
rm -f "$WORK.log"
mount -t proc proc "$ROOTFS/proc"
cp "$DEB" "$ROOTFS/tmp/airhop.deb"
in_root() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

say "dpkg -i"
in_root dpkg -i /tmp/airhop.deb || fail "dpkg -i"
in_root dpkg -s airhop | grep -q '^Status: install ok installed' || fail "not installed"

say "airhop --version"
v=$(in_root airhop --version) || fail "airhop --version"
[[ $v == "airhop "* ]] || fail "--version printed: $v"
echo "   $v" >&2

say "man airhop-send"
page=$(in_root env MANWIDTH=80 man -P cat airhop-send 2>/dev/null) || fail "man airhop-send"
grep -q -- '--to' <<<"$page" || fail "the man page does not document --to"
in_root man -w airhop airhop-receive airhop-trust-add >/dev/null || fail "a man page is missing"

say "completions"
in_root test -s /usr/share/bash-completion/completions/airhop || fail "bash completion"
in_root test -s /usr/share/zsh/vendor-completions/_airhop || fail "zsh completion"
in_root test -s /usr/share/fish/vendor_completions.d/airhop.fish || fail "fish completion"

say "systemd-analyze verify (user unit)"
in_root mkdir -p -m 700 /tmp/xdg
out=$(in_root env XDG_RUNTIME_DIR=/tmp/xdg systemd-analyze --user verify \
  /usr/lib/systemd/user/airhop-receive.service 2>&1) || { echo "$out" >&2; fail "systemd-analyze verify"; }
[[ -z $out ]] || { echo "$out" >&2; fail "systemd-analyze verify complained"; }

say "the demo runs from the package"
in_root airhop demo --memory --size 2MB >/dev/null || fail "airhop demo"

say "dpkg -r leaves nothing behind"
in_root dpkg -r airhop >/dev/null || fail "dpkg -r"
in_root test ! -e /usr/bin/airhop || fail "/usr/bin/airhop left behind"
in_root test ! -e /usr/lib/systemd/user/airhop-receive.service || fail "unit left behind"
echo "OK   package: installs, runs, documents, verifies, removes" >&2
