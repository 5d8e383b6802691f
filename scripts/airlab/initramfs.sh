#!/bin/bash
# Builds the air lab's initramfs: busybox plus the modules that mount the
# host's root over virtio-9p; /init then switch_roots into it and runs the
# program named by airlab.init= on the kernel command line. The lab folder
# (airlab.dir=) is mounted read-write at the same path inside the guest.
#   usage: initramfs.sh OUT.cpio.gz
set -euo pipefail
OUT=${1:?output file}
KVER=${KVER:-$(ls /lib/modules | sort -V | tail -1)}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W"/{bin,dev,proc,sys,newroot,mods}
cp /bin/busybox "$W/bin/busybox"
for a in sh mount mkdir echo cat switch_root sleep poweroff; do ln -s busybox "$W/bin/$a"; done
: > "$W/mods/order"
for m in virtio_pci 9pnet_virtio 9p virtio_rng; do
  modprobe -S "$KVER" --show-depends "$m" | awk '$1=="insmod"{print $2}'
done | awk '!s[$0]++' | while read -r f; do
  b=$(basename "$f"); cp "$f" "$W/mods/$b"; echo "$b" >> "$W/mods/order"
done
cat > "$W/init" <<'INIT'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /mods/order); do busybox insmod /mods/$m || echo "AIRLAB: insmod $m failed"; done
INIT=/bin/sh; DIR=/tmp/airlab
for arg in $(cat /proc/cmdline); do
  case "$arg" in airlab.init=*) INIT="${arg#airlab.init=}";; airlab.dir=*) DIR="${arg#airlab.dir=}";; esac
done
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro root /newroot; then
  echo "AIRLAB: 9p mount of the host root failed"; poweroff -f
fi
mount -t tmpfs -o mode=0755 tmpfs /newroot/run
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mount -t tmpfs -o mode=0755 tmpfs /newroot/var/lib/bluetooth 2>/dev/null || true
mount -t tmpfs -o mode=0755 tmpfs /newroot/var/tmp
mount -t tmpfs -o mode=0755 tmpfs /newroot/var/log
mount -t tmpfs -o mode=0755 tmpfs /newroot/root
mkdir -p "/newroot$DIR" 2>/dev/null
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 lab "/newroot$DIR" || echo "AIRLAB: lab mount failed"
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
echo "AIRLAB: initramfs done at $(cat /newroot/proc/uptime), exec $INIT"
exec switch_root /newroot "$INIT"
INIT
chmod +x "$W/init"
(cd "$W" && find . | cpio -o -H newc --quiet | gzip -1 > "$OUT")
