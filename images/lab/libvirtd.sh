#!/usr/bin/env bash
# In the lab host: starts Debian's monolithic libvirtd and virtlogd (this machine's, over 9p), without systemd, and
# waits until qemu:///system answers (../../../shared/LAB.md, "libvirtd in the lab host"). qemu.conf as KubeVirt's
# virt-launcher has it: QEMU runs as root, no security driver, no namespaces, no cgroups (the lab host has no
# cgroup hierarchy for libvirt to use). libvirtd starts the domains marked autostart.
#
#   images/lab/libvirtd.sh     prints "libvirtd: ready after N s"
set -euo pipefail
# libvirtd resolves its default QEMU user before it reads qemu.conf, and fails without one ("Failed to parse user
# 'libvirt-qemu'"). Debian's libvirt-daemon-system creates it; this machine has libvirt-daemon alone, so the lab host
# (whose /etc is this machine's under a tmpfs overlay, lost at each restart) gets it here.
if ! getent passwd libvirt-qemu >/dev/null; then
  getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
  useradd --system --gid libvirt-qemu --home-dir /var/lib/libvirt --shell /usr/sbin/nologin libvirt-qemu
fi
mkdir -p /etc/libvirt/qemu /run/libvirt /var/lib/libvirt/qemu /var/cache/libvirt/qemu /var/log/libvirt/qemu
printf '%s\n' 'user = "+0"' 'group = "+0"' 'security_driver = "none"' 'namespaces = [ ]' \
  'cgroup_controllers = [ ]' 'remember_owner = 0' > /etc/libvirt/qemu.conf
pgrep -x virtlogd >/dev/null || virtlogd -d
pgrep -x libvirtd >/dev/null || libvirtd -d
# The first answer waits for libvirtd to probe QEMU's capabilities (it runs qemu-system-x86_64 under TCG): seconds
# on a quiet machine, minutes when other guests share the cores.
start=$(date +%s)
while [ $(( $(date +%s) - start )) -lt 300 ]; do
  if timeout 60 virsh -c qemu:///system version >/dev/null 2>&1; then echo "libvirtd: ready after $(( $(date +%s) - start )) s"; exit 0; fi
  sleep 1
done
echo "libvirtd: qemu:///system does not answer after 300 s; the end of /var/log/libvirt/libvirtd.log:" >&2
tail -20 /var/log/libvirt/libvirtd.log >&2 || true
exit 1
