#!/usr/bin/env bash
# Re-captures tests/Fixtures/igb-lab/: the real sysfs files and symlinks of the lab host's igb PFs and
# VFs, as a tree of plain files and relative symlinks (contents copied, link targets verbatim; write-only attributes
# as empty files; binary or huge attributes such as config, resource*, rom left out).
#
#   images/lab/capture-sysfs.sh [OUT]     (default OUT: tests/Fixtures/igb-lab; about 30 s under TCG)
#
# State captured: netdevs named as udev would (enp1s0, enp2s0; VFs enp1s16, enp1s16f2, ...), both PFs up, 2 VFs per
# PF, VF 0 of each PF with MAC 02:00:00:00:40:0N, VLAN 40, spoofchk on, trust off; PF0's VF 1 (0000:01:10.2) bound
# to vfio-pci through driver_override + drivers_probe, so /dev/vfio/<group> exists.
set -euo pipefail
if grep -q "lab\.exec=" /proc/cmdline; then  # inside the lab host (lab.sh exec)
  out=/lab-out/tree
  udev_name() { local p=$1; local n="enp$((16#${p:5:2}))s$((16#${p:8:2}))"; [ "${p:11:1}" = 0 ] || n+="f${p:11:1}"; echo "$n"; }
  rename_all() { # netdevs of PCI devices -> the names udev's path policy gives them
    for l in /sys/class/net/*/device; do
      local if=${l%/device}; if=${if##*/}; local pci; pci=$(basename "$(readlink -f "$l")")
      local want; want=$(udev_name "$pci"); [ "$if" = "$want" ] || ip link set dev "$if" name "$want"
    done
  }
  rename_all
  ip link set enp1s0 up; ip link set enp2s0 up
  for pf in enp1s0 enp2s0; do echo 2 > /sys/class/net/$pf/device/sriov_numvfs; done
  rename_all
  ip link set dev enp1s0 vf 0 mac 02:00:00:00:40:01 vlan 40 spoofchk on trust off
  ip link set dev enp2s0 vf 0 mac 02:00:00:00:40:02 vlan 40 spoofchk on trust off
  vf=0000:01:10.2
  echo vfio-pci > /sys/bus/pci/devices/$vf/driver_override
  echo $vf > /sys/bus/pci/devices/$vf/driver/unbind
  echo $vf > /sys/bus/pci/drivers_probe
  sleep 1
  ip -d link show; ls -l /dev/vfio
  rm -rf "$out"; mkdir -p "$out"
  copy() { # copy PATH into the tree: a link as a link, a directory as a directory, a file by content
    local p=$1 d="$out$1"
    [ -e "$p" ] || [ -L "$p" ] || return 0
    mkdir -p "$(dirname "$d")"
    if [ -L "$p" ]; then ln -sfn "$(readlink "$p")" "$d"
    elif [ -d "$p" ]; then mkdir -p "$d"
    elif [ -e "$p" ]; then cat "$p" > "$d" 2>/dev/null || : > "$d"; fi
  }
  devices=$(for p in /sys/bus/pci/devices/*; do [ "$(cat "$p/vendor")" = 0x8086 ] && grep -qE '0x10c[9a]' "$p/device" && basename "$p"; done)
  for pci in $devices; do
    copy /sys/bus/pci/devices/$pci
    dev=$(readlink -f /sys/bus/pci/devices/$pci)
    for f in vendor device class subsystem_vendor subsystem_device numa_node driver_override enable uevent \
             sriov_totalvfs sriov_numvfs sriov_offset sriov_stride sriov_vf_device sriov_drivers_autoprobe \
             subsystem driver iommu_group physfn; do
      [ -e "$dev/$f" ] || [ -L "$dev/$f" ] && copy "$dev/$f"
    done
    for l in "$dev"/virtfn*; do [ -L "$l" ] && copy "$l"; done
    for n in "$dev"/net/*; do
      [ -d "$n" ] || continue
      for f in address operstate flags mtu type addr_len carrier ifindex device; do copy "$n/$f"; done
      copy "/sys/class/net/${n##*/}"
    done
    g=$(readlink -f "$dev/iommu_group")
    copy "$g/type"; for l in "$g"/devices/*; do copy "$l"; done
  done
  copy /sys/class/net/bonding_masters
  for drv in igb igbvf vfio-pci; do
    for e in /sys/bus/pci/drivers/$drv/*; do copy "$e"; done
    copy "/sys/module/${drv//-/_}/initstate"
  done
  copy /sys/module/vfio_pci/parameters/ids
  copy /sys/bus/pci/drivers_probe; copy /sys/bus/pci/drivers_autoprobe
  for i in /sys/class/iommu/*; do copy "$i"; copy "$(readlink -f "$i")/intel-iommu/version"; done
  mkdir -p "$out/proc" "$out/dev/vfio"
  tr ' ' '\n' </proc/cmdline | grep -v '^lab\.' | paste -sd' ' > "$out/proc/cmdline"
  for v in /dev/vfio/*; do : > "$out/dev/vfio/${v##*/}"; done
  uname -r > /lab-out/uname
  echo "captured $(find "$out" | wc -l) entries"
  exit 0
fi

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
dest=$(realpath -m "${1:-$repo/tests/Fixtures/igb-lab}")
tmp=$(mktemp -d "$repo/.cache/capture.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
LAB_OUT=$tmp "$here/lab.sh" exec "$here/capture-sysfs.sh" 2>&1 | grep -v 'is not connected to host network' >&2 || true
[ -d "$tmp/tree/sys" ] || { echo "images/lab: capture failed (no tree)" >&2; exit 1; }
rm -rf "$dest"; mkdir -p "$(dirname "$dest")"; cp -a "$tmp/tree" "$dest"
echo "images/lab: captured $(find "$dest" -type f | wc -l) files and $(find "$dest" -type l | wc -l) links from kernel $(cat "$tmp/uname") into $dest" >&2
