#!/usr/bin/env bash
# Re-captures tests/Fixtures/igb-lab-netlink/: what the real igb driver answers to RTM_GETLINK for a PF with VFs
# (strace's dump of `ip link show dev eth0`: the kernel's RTM_NEWLINK with IFLA_VFINFO_LIST), beside iproute2's JSON
# for the same state (`ip -j link show dev eth0`). VmNet reads VFs back with that message (launcher/Kernel/VfNetlink.cs);
# VfNetlinkTests parse the capture and hold it against the JSON.
#
#   images/lab/capture-netlink.sh [OUT]   (default OUT: tests/Fixtures/igb-lab-netlink; about 30 s under TCG)
#
# State captured: 3 VFs on PF0 (eth0, up): VF 0 MAC 02:00:00:00:40:01, VLAN 40 qos 3, spoofchk on, trust off; VF 1
# MAC 02:00:00:00:41:01, untagged, spoofchk off, trust on; VF 2 as the kernel created it. (QEMU's igb refuses
# max_tx_rate with EINVAL, so the rates stay 0.)
set -euo pipefail
if grep -q "lab\.exec=" /proc/cmdline; then  # inside the lab host (lab.sh exec)
  pf=$(ls /sys/bus/pci/devices/0000:01:00.0/net)
  ip link set dev "$pf" up
  echo 3 > "/sys/class/net/$pf/device/sriov_numvfs"
  ip link set dev "$pf" vf 0 mac 02:00:00:00:40:01 vlan 40 qos 3 spoofchk on trust off
  ip link set dev "$pf" vf 1 mac 02:00:00:00:41:01 spoofchk off trust on
  sleep 1
  strace -qq -o /lab-out/getlink.strace -e trace=recvmsg -e read=3 ip link show dev "$pf" >/dev/null
  ip -j link show dev "$pf" > /lab-out/ip.json
  ip -d link show dev "$pf"
  uname -r > /lab-out/uname
  exit 0
fi

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
dest=$(realpath -m "${1:-$repo/tests/Fixtures/igb-lab-netlink}")
mkdir -p "$repo/.cache"
tmp=$(mktemp -d "$repo/.cache/capture.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
LAB_OUT=$tmp "$here/lab.sh" exec "$here/capture-netlink.sh" 2>&1 | grep -v 'is not connected to host network' >&2 || true
[ -s "$tmp/getlink.strace" ] && [ -s "$tmp/ip.json" ] || { echo "images/lab: capture failed" >&2; exit 1; }
mkdir -p "$dest"
cp "$tmp/getlink.strace" "$tmp/ip.json" "$tmp/uname" "$dest/"
echo "images/lab: captured RTM_GETLINK's answer from kernel $(cat "$tmp/uname") into $dest" >&2
