#!/usr/bin/env bash
# Builds a Debian guest that configures its network with cloud-init, from Debian packages only: a bookworm root made
# by mmdebstrap (systemd, udev, cloud-init, ifupdown with ifenslave) with the kernel modules a bond needs, on an ext4
# disk image made by mkfs.ext4 -d (no mount, no loop device), and a small initramfs that mounts it and starts systemd.
# It proves VmNet's cloud-init path: the seed vmnet writes (user-data, network-config, the agent) on a real cloud-init.
#
#   images/cloud-guest/build.sh     -> prints the directory holding kernel, initrd and root.img (raw ext4)
#
# For tests only: the image has a root shell on the virtio-serial port org.vmnet.test.0 and no password.
# Needs root (mmdebstrap's root mode, and mkfs.ext4 -d keeps file owners): run as another user, it re-runs itself
# with `sudo -n` when that works, and hands what it made back to that user.
# Cached under ${VMNET_CACHE:-<repo>/.cache}/images/cloud-guest-<kver>-<hash>/ (hash: this recipe, init, lib.sh).
# Exit code 3: a tool or package is missing (run scripts/install-deps.sh) or the mirror cannot be reached.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    exec sudo -n VMNET_CACHE="${VMNET_CACHE:-$repo/.cache}" PATH="$PATH" bash "$0" "$@"
  fi
  echo "images/cloud-guest: needs root (mmdebstrap's root mode; mkfs.ext4 -d keeps file owners), or sudo without a password" >&2
  exit 3
fi
cache=${VMNET_CACHE:-$repo/.cache}/images
tag=images/cloud-guest
mkdir -p "$cache"
. "$repo/images/lib.sh"
img_need cpio; img_need mmdebstrap; img_need mkfs.ext4
# Run through sudo: what this makes in the cache goes back to the user who asked.
give_back() { [ -n "${SUDO_UID:-}" ] && chown -R "$SUDO_UID:$SUDO_GID" "$@" 2>/dev/null || true; }

# The guest's packages. cloud-init renders eni (its first renderer) when ifupdown is there; ifenslave makes ifupdown
# build bonds. No recommends (mmdebstrap's default).
packages=systemd-sysv,udev,kmod,cloud-init,ifupdown,ifenslave,iproute2,netbase,procps,iputils-ping
# In the root: what the bond and the seed need (udev and cloud-init load them). In the initramfs: the root disk.
root_modules=(virtio_pci virtio_net virtio_console virtio_blk qemu_fw_cfg e1000e igbvf bonding 8021q ahci sr_mod isofs)
initrd_modules=(virtio_pci virtio_blk ext4 crc32c_generic)

img_kernel
give_back "$cache/kernel"
hash=$(cat "$repo/images/lib.sh" "$here/build.sh" "$here/init" | sha256sum | cut -c1-16)
out="$cache/cloud-guest-$kver-$hash"
if [ -f "$out/root.img" ] && [ -f "$out/initrd" ] && [ -f "$out/kernel" ]; then echo "$out"; exit 0; fi

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
root="$work/root"
img_log "mmdebstrap bookworm ($packages)"
# The machine's own apt sources (the mirror it is configured for), or Debian's default when it has none.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000} mmdebstrap --quiet --variant=minbase --include="$packages" \
  --customize-hook='chroot "$1" apt-get clean' bookworm "$root" >&2 \
  || { echo "$tag: mmdebstrap failed: check apt sources" >&2; exit 3; }

img_log "configuring the root"
img_modules "$root" "${root_modules[@]}"
echo "vmnet-cloud-guest" > "$root/etc/hostname"
printf 'LABEL=vmnet-root / ext4 rw,errors=remount-ro 0 1\n' > "$root/etc/fstab"
: > "$root/etc/machine-id"   # systemd makes one at first boot
# NoCloud only: cloud-init does not probe other clouds (each probe costs seconds under TCG). The image has neither
# locales nor an SSH server, so cloud-init leaves the locale alone and makes no host keys.
cat > "$root/etc/cloud/cloud.cfg.d/90-vmnet-test.cfg" <<'CFG'
datasource_list: [NoCloud, None]
locale: false
ssh_genkeytypes: []
CFG
# The test shell: a root shell on the virtio-serial port org.vmnet.test.0, as images/guest has.
cat > "$root/etc/systemd/system/vmnet-test-shell.service" <<'UNIT'
[Unit]
Description=Root shell on virtio-serial org.vmnet.test.0 (VmNet test image only)
After=systemd-udevd.service

[Service]
# udev may make the port's link after this unit starts: wait up to 60 s for it (a condition would skip the unit).
ExecStartPre=/bin/sh -c 'for i in $(seq 600); do [ -e /dev/virtio-ports/org.vmnet.test.0 ] && exit 0; sleep 0.1; done; exit 1'
ExecStart=/bin/sh -c 'exec /bin/bash 0<>/dev/virtio-ports/org.vmnet.test.0 1>&0 2>&0'
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/vmnet-test-shell.service "$root/etc/systemd/system/multi-user.target.wants/vmnet-test-shell.service"
# Timers that would only cost CPU in a short-lived test guest.
for t in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
  rm -f "$root/etc/systemd/system/timers.target.wants/$t"
done

mkdir -p "$out.tmp"
size=$(( $(du -sm "$root" | cut -f1) * 13 / 10 + 64 ))
img_log "mkfs.ext4 -d: ${size} MiB root.img"
mkfs.ext4 -q -F -L vmnet-root -d "$root" -E root_owner=0:0 "$out.tmp/root.img" "${size}M" >&2

img_log "building the initramfs"
stage="$work/initrd"
mkdir -p "$stage"/{bin,sbin,etc,proc,sys,dev,newroot}
img_busybox "$stage"
img_modules "$stage" "${initrd_modules[@]}"
printf '%s\n' "${initrd_modules[@]}" > "$stage/etc/modules"
cp "$here/init" "$stage/init"; chmod 755 "$stage/init"
img_initrd "$stage" "$out.tmp/initrd"
img_kernel_image "$out.tmp/kernel"
give_back "$kroot/kernel-image"
rm -rf "$out"; mv "$out.tmp" "$out"
give_back "$out"
img_log "built $out"
echo "$out"
