#!/usr/bin/env bash
# In the lab host: mounts its disk (/dev/vda, lab.sh's LAB_DISK; formatted ext4 when blank) at /persist and puts a
# host's persistent state there, as a real host's root file system holds it: /etc/vmnet, /etc/libvirt, /var/lib/vmnet,
# /var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt (bind mounts; the cache keeps libvirtd's probe of QEMU's
# capabilities, which takes about a minute under TCG, across a restart, as on a real host). /run stays a tmpfs, as
# on any host: lost at each restart.
#
#   images/lab/persist.sh      prints "persist: first boot" or "persist: mounted (state kept)"
set -euo pipefail
disk=/dev/vda
[ -b "$disk" ] || { echo "persist: no $disk (start the lab host with LAB_DISK=FILE)" >&2; exit 3; }
first=0
if ! blkid "$disk" >/dev/null 2>&1; then mkfs.ext4 -q -F "$disk"; first=1; fi
mkdir -p /persist
mountpoint -q /persist || mount -t ext4 "$disk" /persist
for d in /etc/vmnet /etc/libvirt /var/lib/vmnet /var/lib/libvirt /var/log/libvirt /var/cache/libvirt; do
  mkdir -p "/persist$d" "$d"
  mountpoint -q "$d" || mount --bind "/persist$d" "$d"
done
if [ "$first" = 1 ]; then echo "persist: first boot"; else echo "persist: mounted (state kept)"; fi
