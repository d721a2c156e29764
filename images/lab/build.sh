#!/usr/bin/env bash
# Builds the initramfs of VmNet's emulated SR-IOV lab host (see images/lab/README.md): Debian's kernel (shared with
# images/guest), busybox, the modules below, and images/lab/init, which mounts the machine's own / read-only over 9p
# with a tmpfs overlay and chroots into it (bash, iproute2, kmod, QEMU and the repo all come from there).
#
#   images/lab/build.sh     -> prints the directory holding vmlinuz and initrd.gz
#
# Cached under ${VMNET_CACHE:-<repo>/.cache}/images/lab-<kver>-<hash>/ (hash: this recipe and init).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${VMNET_CACHE:-$repo/.cache}/images
mkdir -p "$cache"
need() { command -v "$1" >/dev/null || { echo "images/lab: $1 missing: run scripts/install-deps.sh" >&2; exit 3; }; }
need depmod; need cpio; need gzip
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "images/lab: busybox-static missing: run scripts/install-deps.sh" >&2; exit 3; }

# 9p root + overlay, the test shell's virtio-serial port, the SR-IOV NIC and its VF driver, VFIO, the bond's modules,
# then the peer's NICs (console and exec modes) and its bridge. e1000e after igb: the PFs stay eth0 and eth1.
modules=(virtio_pci virtio_console 9pnet_virtio 9p overlay igb igbvf vfio vfio_iommu_type1 vfio-pci bonding 8021q
  e1000e bridge)

# The kernel: the same unpacked package images/guest/build.sh uses (it downloads it when missing).
kdir="$cache/kernel"
if [ ! -f "$kdir/package" ] || [ ! -f "$kdir/$(cat "$kdir/package")/.done" ]; then
  VMNET_AGENT_BIN=${VMNET_AGENT_BIN:-/bin/true} "$repo/images/guest/build.sh" >/dev/null || exit $?
fi
kroot="$kdir/$(cat "$kdir/package")"
kver=$(ls "$kroot/lib/modules")

hash=$(cat "$here/build.sh" "$here/init" | sha256sum | cut -c1-16)
out="$cache/lab-$kver-$hash"
if [ -f "$out/initrd.gz" ] && [ -f "$out/vmlinuz" ]; then echo "$out"; exit 0; fi

echo "images/lab: building initramfs for $kver" >&2
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,etc,proc,sys,dev,run,tmp,newroot,lower,rw,lib/modules/$kver}
cp "$busybox" "$stage/bin/busybox"
for applet in $("$busybox" --list); do [ "$applet" = busybox ] || ln -s busybox "$stage/bin/$applet"; done
for applet in modprobe insmod depmod; do ln -sf ../bin/busybox "$stage/sbin/$applet"; done

declare -A seen=()
add_module() {
  local name=$1 line path dep pat
  pat=$(echo "$name" | sed 's/[-_]/[-_]/g')   # module names treat - and _ alike; file names do not
  line=$(grep -E "(^|/)${pat}\.ko(\.[a-z]+)?:" "$kroot/lib/modules/$kver/modules.dep" || true)
  if [ -z "$line" ]; then
    grep -qE "/${pat}\.ko" "$kroot/lib/modules/$kver/modules.builtin" && return 0
    echo "images/lab: module $name not found in $kroot" >&2; exit 3
  fi
  path=${line%%:*}
  [ -n "${seen[$path]:-}" ] && return 0
  seen[$path]=1
  mkdir -p "$stage/lib/modules/$kver/$(dirname "$path")"
  cp "$kroot/lib/modules/$kver/$path" "$stage/lib/modules/$kver/$path"
  for dep in ${line#*:}; do dep=$(basename "$dep"); add_module "${dep%%.ko*}"; done
}
for m in "${modules[@]}"; do add_module "$m"; done
cp "$kroot/lib/modules/$kver"/modules.{builtin,order} "$stage/lib/modules/$kver/"
"$busybox" depmod -b "$stage" "$kver"
printf '%s\n' "${modules[@]}" | sed 's/^bonding$/bonding max_bonds=0/' > "$stage/etc/lab-modules"
cp "$here/init" "$stage/init"; chmod 755 "$stage/init"

mkdir -p "$out.tmp"
(cd "$stage" && find . -exec touch -h -d @0 {} + && find . -print0 | LC_ALL=C sort -z \
  | cpio --null -o -H newc --reproducible -R 0:0 --quiet | gzip -9 -n) > "$out.tmp/initrd.gz"
cp "$kroot/boot/vmlinuz-$kver" "$out.tmp/vmlinuz"
rm -rf "$out"; mv "$out.tmp" "$out"
echo "images/lab: built $out ($(du -h "$out/initrd.gz" | cut -f1) initramfs)" >&2
echo "$out"
