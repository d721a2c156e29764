#!/usr/bin/env bash
# In the lab host (benchmarks/lab-host-steps.sh runs it): the host steps of `vmnet up --no-start` for two networks x
# two ports (reserve, configure: MAC, VLAN, spoof checking, trust; bind: unbind, driver_override,
# drivers_probe onto vfio-pci) against the same steps typed as seed 000's hand sequence in bash, ROUNDS rounds each,
# interleaved. vmnet's time is the whole `vmnet up --no-start` process, which stops after the host steps (its start,
# the spec, the plan, the ledger and its fsyncs included); each round is undone (`vmnet rm`, the hand sequence's undo)
# untimed. Writes OUT/host-steps.tsv.
set -euo pipefail
bin=${1:?usage: host-steps-inside.sh BIN ROUNDS OUT}; rounds=${2:?}; out=${3:?}
export PATH=$bin:$PATH VMNET_STATE_DIR=/run/vmnet
work=/run/bench; mkdir -p "$work"
ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }
pf0=$(ls /sys/bus/pci/devices/0000:01:00.0/net); pf1=$(ls /sys/bus/pci/devices/0000:02:00.0/net)
ip link set "$pf0" up; ip link set "$pf1" up
printf 'pfs:\n  - {port: "0000:01:00.0", vfs: 2}\n  - {port: "0000:02:00.0", vfs: 2}\n' > "$work/host.yaml"
vmnet host apply --config "$work/host.yaml" >/dev/null
qemu-img create -q -f qcow2 "$work/empty.qcow2" 16M
cat > "$work/bench.yaml" <<EOT
name: bench
backend: qemu
accel: tcg
disk: {image: $work/empty.qcow2}
networks:
  - {name: a, ports: ["0000:01:00.0", "0000:02:00.0"], vlan: 40, address: 192.168.40.11/24}
  - {name: b, ports: ["0000:01:00.0", "0000:02:00.0"], vlan: 41, address: 192.168.41.11/24}
EOT

# Seed 000's hand sequence for the same four VFs (VF 0 of each PF on VLAN 40, VF 1 on VLAN 41).
hand_up() {
  local pf vf pci
  for pf in "$pf0" "$pf1"; do for vf in 0 1; do
    pci=$(basename "$(readlink "/sys/class/net/$pf/device/virtfn$vf")")
    ip link set "$pf" vf "$vf" mac "02:00:00:00:4$vf:0${pf: -1}" vlan "4$vf" spoofchk on trust off
    echo "$pci" > "/sys/bus/pci/devices/$pci/driver/unbind"
    echo vfio-pci > "/sys/bus/pci/devices/$pci/driver_override"
    echo "$pci" > /sys/bus/pci/drivers_probe
  done; done
}
hand_down() {
  local pf vf pci
  for pf in "$pf0" "$pf1"; do for vf in 0 1; do
    pci=$(basename "$(readlink "/sys/class/net/$pf/device/virtfn$vf")")
    echo "$pci" > /sys/bus/pci/drivers/vfio-pci/unbind
    echo > "/sys/bus/pci/devices/$pci/driver_override"
    ip link set "$pf" vf "$vf" mac 00:00:00:00:00:00 vlan 0
    echo "$pci" > /sys/bus/pci/drivers_probe
  done; done
}

echo -e "round\tvmnet_ms\thand_ms" > "$out/host-steps.tsv"
for r in $(seq "$rounds"); do
  t0=$(ms); vmnet up --no-start "$work/bench.yaml" >/dev/null; t1=$(ms)
  vmnet rm bench >/dev/null 2>&1
  t2=$(ms); hand_up; t3=$(ms)
  hand_down
  echo -e "$r\t$((t1 - t0))\t$((t3 - t2))" | tee -a "$out/host-steps.tsv"
done
# Every VF is free again (vmnet host lists 4 free VFs).
[ "$(vmnet host | grep -c 'igbvf .*free')" = 4 ] || { vmnet host; echo "host-steps: not every VF was given back" >&2; exit 1; }
