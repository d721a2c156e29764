#!/usr/bin/env bash
# VmNet's emulated SR-IOV lab: one entry point (see images/lab/README.md).
#
#   images/lab/lab.sh build          builds (or finds) the lab image; prints its directory
#   images/lab/lab.sh run DIR        boots the lab host for a test: QEMU connects to unix sockets the caller listens
#                                    on in DIR: qmp.sock (QMP), report.sock (virtio-serial org.vmnet.agent.0),
#                                    shell.sock (a bash in the host, virtio-serial org.vmnet.test.0), peer0.sock and
#                                    peer1.sock (-netdev stream: the far side of PF0's and PF1's switch). serial.log in DIR.
#   images/lab/lab.sh console        boots it with an interactive bash on this terminal
#   images/lab/lab.sh exec SCRIPT    boots it, runs SCRIPT (bash, from this machine's / over 9p) on this terminal,
#                                    powers off (used by capture-sysfs.sh and demo.sh)
#                                    console and exec: one e1000e NIC on each PF's switch as well (MACs
#                                    52:54:00:bb:00:01 and :02), for a peer inside the lab host
#
# The lab host: q35 (kernel-irqchip=split) + intel-iommu (intremap, caching-mode) under TCG, -m 2560 (under 4 GiB:
# above it QEMU 10.0 maps the VF BARs as 32-bit and the VFs read zeros), two igb PFs (Intel 82576, 7 VFs each) on
# pcie-root-ports -> 0000:01:00.0 and 0000:02:00.0, each cabled (QMP name pf0 / pf1) to its own hub; this machine's
# / read-only over 9p under a tmpfs overlay. LAB_OUT=DIR adds DIR as a writable 9p share at /lab-out. LAB_DISK=FILE
# adds FILE (raw) as the host's disk /dev/vda: what survives a restart of the lab host (images/lab/persist.sh mounts it).
# LAB_NUMA=1: two NUMA nodes (CPUs 0-1 and 2-3, 1280 MiB each, -smp 4) and the PFs' root ports behind a pxb-pcie host
# bridge on node 1 (numa_node=1, bus 0x80) -> 0000:81:00.0 and 0000:82:00.0, VFs 0000:81:10.x and 0000:82:10.x.
# Nothing leaves the machine: no user networking, only hubs and unix sockets.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mode=${1:-}
img=$("$here/build.sh")
[ "$mode" = build ] && { echo "$img"; exit 0; }
command -v qemu-system-x86_64 >/dev/null || { echo "images/lab: qemu-system-x86_64 missing: run scripts/install-deps.sh" >&2; exit 3; }

args=(-accel tcg -machine q35,kernel-irqchip=split -cpu max -nodefaults -display none -no-reboot
  -device intel-iommu,intremap=on,caching-mode=on
  -kernel "$img/kernel" -initrd "$img/initrd"
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap)
if [ -n "${LAB_NUMA:-}" ]; then
  args+=(-smp 4 -m 2560
    -object memory-backend-ram,id=mem0,size=1280M -numa node,nodeid=0,cpus=0-1,memdev=mem0
    -object memory-backend-ram,id=mem1,size=1280M -numa node,nodeid=1,cpus=2-3,memdev=mem1)
  # Every device without a bus= lands on the last PCIe bus created: the pxb comes after them all (below).
  late=(-device pxb-pcie,id=pxb1,bus_nr=128,numa_node=1,bus=pcie.0
    -device pcie-root-port,id=rp1,chassis=1,slot=1,bus=pxb1 -device pcie-root-port,id=rp2,chassis=2,slot=2,bus=pxb1)
else
  args+=(-smp 2 -m 2560 -device pcie-root-port,id=rp1,chassis=1,slot=1 -device pcie-root-port,id=rp2,chassis=2,slot=2)
  late=()
fi
args+=(-device virtio-serial-pci,id=vser)
# no_timer_check: under TCG on a loaded machine the IO-APIC timer check can fail and panic the kernel at boot
# ("timer doesn't work through Interrupt-remapped IO-APIC"), seen here with a load average of 13 on 2 cores.
cmdline="console=ttyS0 panic=-1 intel_iommu=on iommu=pt loglevel=4 no_timer_check"
[ -n "${LAB_OUT:-}" ] && args+=(-virtfs "local,path=$LAB_OUT,mount_tag=labout,security_model=none")
[ -n "${LAB_DISK:-}" ] && args+=(-drive "file=$LAB_DISK,if=virtio,format=raw")

case "$mode" in
  run)
    dir=${2:?usage: lab.sh run DIR}
    args+=(-append "$cmdline" -serial "file:$dir/serial.log"
      -chardev "socket,id=qmp,path=$dir/qmp.sock" -mon chardev=qmp,mode=control
      -chardev "socket,id=report,path=$dir/report.sock" -device virtserialport,chardev=report,name=org.vmnet.agent.0
      -chardev "socket,id=shell,path=$dir/shell.sock" -device virtserialport,chardev=shell,name=org.vmnet.test.0)
    for i in 0 1; do
      args+=(-netdev "stream,id=sw${i}up,server=off,addr.type=unix,addr.path=$dir/peer$i.sock"
        -netdev "hubport,id=sw${i}p0,hubid=$i,netdev=sw${i}up")
    done ;;
  console)
    args+=(-append "$cmdline lab.console" -serial mon:stdio)
    echo "images/lab: booting the lab host (about 10 s under TCG); Ctrl-A X quits QEMU" >&2 ;;
  exec)
    script=$(realpath "${2:?usage: lab.sh exec SCRIPT}")
    args+=(-append "$cmdline lab.exec=$script" -serial stdio) ;;
  *) sed -n '2,19p' "$0" >&2; exit 2 ;;
esac
args+=("${late[@]}")
for i in 0 1; do
  args+=(-netdev "hubport,id=pfn$i,hubid=$i" -device "igb,bus=rp$((i + 1)),netdev=pfn$i,id=pf$i,mac=52:54:00:aa:00:0$((i + 1))")
done
# console and exec: a peer NIC on each switch (e1000e, QMP names peer0 / peer1), for a peer inside the lab host
# (demo.sh bridges both in a network namespace: the link between the two top-of-rack switches). After the PFs, so
# the PFs keep their PCI addresses; the lab's module list loads e1000e after igb, so the PFs stay eth0 and eth1.
if [ "$mode" != run ]; then
  for i in 0 1; do
    args+=(-netdev "hubport,id=peern$i,hubid=$i" -device "e1000e,netdev=peern$i,id=peer$i,mac=52:54:00:bb:00:0$((i + 1)),bus=pcie.0")
  done
fi
exec qemu-system-x86_64 "${args[@]}"
