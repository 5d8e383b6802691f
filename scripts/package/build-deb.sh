#!/usr/bin/env bash
# Builds the Debian package: the binary, a man page per command, bash/zsh/
# fish completions, the systemd user unit for a headless receiver, and the
# docs. dpkg-deb does the packing (cargo-deb would add a crate build for
# what one script does).
#
#   scripts/package/build-deb.sh             release build, .deb in target/deb
#   BIN=target/debug/airhop scripts/...      package an existing binary (CI)
#   OUT=DIR                                  where the .deb goes
# Prints the .deb's path on standard output.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/target/deb}
if [[ -z ${BIN:-} ]]; then
  cargo build --release --locked --bin airhop >&2
  BIN=$ROOT/target/release/airhop
fi
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ARCH=$(dpkg --print-architecture)
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/airhop-deb.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
PKG=$STAGE/airhop_${VERSION}_${ARCH}

install -Dm755 "$BIN" "$PKG/usr/bin/airhop"
strip --strip-debug "$PKG/usr/bin/airhop" 2>/dev/null || true
"$PKG/usr/bin/airhop" dist-files "$STAGE/dist"
for page in "$STAGE"/dist/man1/*.1; do
  install -Dm644 "$page" "$PKG/usr/share/man/man1/$(basename "$page")"
  gzip -9n "$PKG/usr/share/man/man1/$(basename "$page")"
done
install -Dm644 "$STAGE/dist/completions/airhop.bash" "$PKG/usr/share/bash-completion/completions/airhop"
install -Dm644 "$STAGE/dist/completions/_airhop" "$PKG/usr/share/zsh/vendor-completions/_airhop"
install -Dm644 "$STAGE/dist/completions/airhop.fish" "$PKG/usr/share/fish/vendor_completions.d/airhop.fish"
install -Dm644 packaging/airhop-receive.service "$PKG/usr/lib/systemd/user/airhop-receive.service"
install -Dm644 README.md "$PKG/usr/share/doc/airhop/README.md"
install -Dm644 packaging/copyright "$PKG/usr/share/doc/airhop/copyright"

# libc, libm and libgcc_s are all it links (libdbus is built in).
SIZE=$(du -sk "$PKG" | cut -f1)
install -d "$PKG/DEBIAN"
cat > "$PKG/DEBIAN/control" <<CONTROL
Package: airhop
Version: $VERSION
Architecture: $ARCH
Maintainer: airhop developers <airhop@localhost>
Installed-Size: $SIZE
Depends: libc6 (>= 2.34), libgcc-s1
Recommends: bluez
Suggests: network-manager | hostapd, wpasupplicant, iproute2
Section: net
Priority: optional
Homepage: https://localhost/airhop
Description: share files and messages with nearby devices
 airhop finds nearby devices over Bluetooth LE (or UDP multicast on a
 shared network), agrees with them over a sealed exchange, and moves files
 over QUIC pinned to each device's key, on the shared Wi-Fi or on a
 hotspot one of them creates. Includes man pages, shell completions and a
 systemd user unit (airhop-receive.service) for a headless receiver that
 takes transfers from trusted devices only.
CONTROL
mkdir -p "$OUT"
dpkg-deb --root-owner-group -Zxz --build "$PKG" "$OUT/" >&2
echo "$OUT/airhop_${VERSION}_${ARCH}.deb"
