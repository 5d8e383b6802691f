#!/bin/bash
# The air lab: real BlueZ on emulated Bluetooth controllers, inside a small
# qemu VM (software emulation: these machines have no Bluetooth and no KVM),
# driving the real `airhop` binary. Installs what it needs from Debian,
# builds the release binary, boots the VM, runs the scenarios, prints a
# summary, the timings and the HCI counts, and exits non-zero if any step
# failed or the lab could not start.
#
#   usage: scripts/airlab/run.sh [MODES]     MODES: le,ext,wifi,nm (default: all)
#          scripts/airlab/run.sh install     only the Debian packages (.ci/run,
#          before tests that run beside each other)
#     le   btvirt -L: two LE-only controllers (and a third for the
#          garbage advertiser and bluetoothctl), legacy advertising
#     ext  btvirt without -L: Bluetooth 5.2 controllers, extended advertising,
#          BlueZ's Privacy = device (what `airhop doctor` advises): the
#          capture must show no address linking two identifiers
#     wifi ext's controllers (privacy off), plus two mac80211_hwsim radios and no shared network: the
#          transfer goes over a hotspot (hostapd + wpa_supplicant backend)
#     nm   the same over the NetworkManager backend: a NetworkManager (with
#          its own D-Bus, udevd and wpa_supplicant) per device
#   env: AIRLAB_DIR (default /tmp/airhop-airlab), VM_TIMEOUT (s, default 2400: all four modes take
#   1150-1450 s of guest time under TCG, and a slower CI machine must not be cut off)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/scripts/airlab
MODES=${1:-le,ext,wifi,nm}
LAB=${AIRLAB_DIR:-/tmp/airhop-airlab}
T0=$(date +%s.%N)
fail() { echo "airlab: $*" >&2; exit 1; }

# Debian packages: qemu, a stock kernel with Bluetooth modules, the BlueZ
# userland (bluetoothd, btvirt, btmgmt, bluetoothctl, btmon), D-Bus; for Wi-Fi
# hostapd, wpa_supplicant, iw, NetworkManager, and wireless-regdb (the
# regulatory.db the kernel loads when the lab sets a domain).
pkgs=(qemu-system-x86 linux-image-amd64 bluez bluez-test-tools busybox-static dbus iproute2 kmod cpio
      hostapd wpasupplicant iw wireless-regdb network-manager dnsmasq-base nftables)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== airlab: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Another test may be installing at the same time: wait for its lock.
  apt=(apt-get -o DPkg::Lock::Timeout=600)
  "${apt[@]}" install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || { "${apt[@]}" update -q >/dev/null && "${apt[@]}" install -y -q --no-install-recommends "${missing[@]}" >/dev/null; } \
    || fail "could not install ${missing[*]}"
fi
[ "$MODES" = install ] && exit 0
KVER=$(ls /lib/modules | sort -V | tail -1)
[ -r "/boot/vmlinuz-$KVER" ] || fail "no kernel image /boot/vmlinuz-$KVER"

echo "== airlab: building airhop (release)"
(cd "$ROOT" && cargo build --release --locked --quiet) || fail "cargo build failed"
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/airhop

rm -rf "$LAB/out" "$LAB/bin"; mkdir -p "$LAB/bin" "$LAB/out"
cp "$BIN" "$HERE/guest.sh" "$HERE/snoopsum.py" "$LAB/bin/"
if [ ! -s "$LAB/initramfs.cpio.gz" ] || [ "$HERE/initramfs.sh" -nt "$LAB/initramfs.cpio.gz" ]; then
  "$HERE/initramfs.sh" "$LAB/initramfs.cpio.gz" || fail "initramfs build failed"
fi

echo "== airlab: booting the VM (TCG), modes $MODES"
timeout "${VM_TIMEOUT:-2400}" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 1536 -smp 2 \
  -machine q35 -nographic -no-reboot -nodefaults -serial mon:stdio \
  -kernel "/boot/vmlinuz-$KVER" -initrd "$LAB/initramfs.cpio.gz" \
  -append "console=ttyS0 quiet loglevel=3 panic=-1 airlab.init=$LAB/bin/guest.sh airlab.dir=$LAB airlab.mode=$MODES" \
  -fsdev local,id=root,path=/,readonly=on,security_model=none,multidevs=remap \
  -device virtio-9p-pci,fsdev=root,mount_tag=root \
  -fsdev "local,id=lab,path=$LAB,security_model=none,multidevs=remap" \
  -device virtio-9p-pci,fsdev=lab,mount_tag=lab \
  -device virtio-rng-pci -net none < /dev/null > "$LAB/out/console.log" 2>&1
RC=$?
WALL=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", b-a}')

S=$LAB/out/summary.txt
echo "== airlab: summary (qemu exit $RC, ${WALL} s wall in all)"
if [ ! -s "$S" ]; then
  echo "no summary: the lab did not start. The console's tail:"; tail -40 "$LAB/out/console.log"
  exit 1
fi
cat "$S"
GATT_OK=1
for f in "$LAB"/out/*/hci.btsnoop; do
  [ -s "$f" ] || continue
  SCEN=$(basename "$(dirname "$f")")
  echo "== HCI counts, $SCEN ($f)"
  # le and ext rendezvous over GATT: each must take two ATT request/response
  # exchanges from connect to the sealed reply (firmware-notes, section 2).
  # Every scenario: discovery over LE alone, never a BR/EDR inquiry.
  case $SCEN in
    le) python3 "$HERE/snoopsum.py" "$f" --le-only --exchanges 2 --rotation || GATT_OK=0 ;;
    # With BlueZ's privacy on, no address may link two identifiers either.
    ext) python3 "$HERE/snoopsum.py" "$f" --le-only --exchanges 2 --rotation --unlinkable || GATT_OK=0 ;;
    *) python3 "$HERE/snoopsum.py" "$f" --le-only || GATT_OK=0 ;;
  esac
done
if [ $GATT_OK = 0 ] || grep -q FAIL "$S" || ! grep -q '^DONE' "$S"; then
  echo "== airlab: FAILED (logs in $LAB/out)"
  exit 1
fi
echo "== airlab: all passed (logs in $LAB/out)"
