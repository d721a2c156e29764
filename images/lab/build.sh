#!/usr/bin/env bash
# Builds the initramfs of VmNet's emulated SR-IOV lab host (see images/lab/README.md): Debian's kernel (shared with
# images/guest), busybox, the modules below, and images/lab/init, which mounts the machine's own / read-only over 9p
# with a tmpfs overlay and chroots into it (bash, iproute2, kmod, QEMU and the repo all come from there).
#
#   images/lab/build.sh     -> prints the directory holding kernel and initrd
#
# Cached under ${VMNET_CACHE:-<repo>/.cache}/images/lab-<kver>-<hash>/ (hash: this recipe and init).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${VMNET_CACHE:-$repo/.cache}/images
mkdir -p "$cache"
tag=images/lab
. "$repo/images/lib.sh"
img_need cpio

# 9p root + overlay, the test shell's virtio-serial port, the SR-IOV NIC and its VF driver, VFIO, the bond's modules,
# then the peer's NICs (console and exec modes) and its bridge, then the persistent disk (LAB_DISK: virtio-blk, ext4 and the crc32c it needs).
# e1000e after igb: the PFs stay eth0 and eth1.
modules=(virtio_pci virtio_console 9pnet_virtio 9p overlay igb igbvf vfio vfio_iommu_type1 vfio-pci bonding 8021q
  e1000e bridge virtio_blk crc32c_generic ext4)

# The kernel: the same unpacked package images/guest uses (sets kroot, kver).
img_kernel

hash=$(cat "$repo/images/lib.sh" "$here/build.sh" "$here/init" | sha256sum | cut -c1-16)
out="$cache/lab-$kver-$hash"
if [ -f "$out/initrd" ] && [ -f "$out/kernel" ]; then echo "$out"; exit 0; fi

img_log "building initramfs for $kver"
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,etc,proc,sys,dev,run,tmp,newroot,lower,rw}
img_busybox "$stage"
img_modules "$stage" "${modules[@]}"
printf '%s\n' "${modules[@]}" | sed 's/^bonding$/bonding max_bonds=0/' > "$stage/etc/lab-modules"
cp "$here/init" "$stage/init"; chmod 755 "$stage/init"

mkdir -p "$out.tmp"
img_initrd "$stage" "$out.tmp/initrd"
img_kernel_image "$out.tmp/kernel"
rm -rf "$out"; mv "$out.tmp" "$out"
img_log "built $out ($(du -h "$out/initrd" | cut -f1) initramfs)"
echo "$out"
