#!/usr/bin/env bash
# The "try it without hardware" demo's steps, run inside the emulated SR-IOV lab host by images/lab/demo.sh (see
# images/lab/README.md): a peer for the guest, the PFs up, `vmnet host apply`, `vmnet up` of the test guest with a
# VF of each PF bonded inside it, pings from the peer, a failover (PF eth0 down), `vmnet rm`. Each step prints a
# header with the seconds since demo.sh started; each command is echoed (`$ ...`) before its output. Lines starting
# with `#` explain. Any failing command stops the demo with a message naming the step and a non-zero exit.
#
# Environment (demo.sh's wrapper sets it): VMNET_DEMO_BIN (a directory holding vmnet and vmnet-agent side by side),
# VMNET_DEMO_GUEST (the test guest's kernel and initrd, from images/guest/build.sh), VMNET_DEMO_T0 (the epoch
# second demo.sh started; default: now).
set -Eeuo pipefail

bin=${VMNET_DEMO_BIN:?VMNET_DEMO_BIN: the directory holding vmnet (run images/lab/demo.sh)}
guest=${VMNET_DEMO_GUEST:?VMNET_DEMO_GUEST: the test guest image directory (run images/lab/demo.sh)}
t0=${VMNET_DEMO_T0:-$(date +%s)}
export VMNET_STATE_DIR=/run/vmnet
work=/run/vmnet-demo
serial=$VMNET_STATE_DIR/vms/demo/serial.log
peer_ip=192.168.40.1 guest_ip=192.168.40.11
step=0 title="start" last="(none)"

elapsed() { local now; now=$(date +%s); echo $((now > t0 ? now - t0 : 0)); }
ms() { echo $(($(date +%s%N) / 1000000)); }
header() { step=$((step + 1)); title=$1; echo; echo "== [+$(elapsed) s] $step. $1"; }
note() { echo "# $*"; }
run() { last="$*"; echo "\$ $*"; "$@"; }
runq() { last=$1; echo "\$ $1"; eval "$1"; }   # one command line as written (quotes, pipes)
vmnet() { "$bin/vmnet" "$@"; }
fail() { echo "demo: FAILED in step $step ($title): $*"; exit 1; }
on_error() {
  local rc=$?
  echo "demo: FAILED in step $step ($title): \`$last\` exited $rc"
  if [ -f "$serial" ]; then echo "# the VM's serial log, last 30 lines:"; tail -n 30 "$serial" | tr -d '\r'; fi
  exit "$rc"
}
trap on_error ERR

# The netdev whose MAC is $1 (names depend on probe order: VFs get ethN names too).
nic_by_mac() {
  local d
  for d in /sys/class/net/*; do [ -f "$d/address" ] && [ "$(cat "$d/address")" = "$1" ] && { echo "${d##*/}"; return 0; }; done
  return 1
}
# The agent's reports in the VM's serial log after line $1 (the agent also writes each report to its console).
# The agent's reports in the serial log after line $1, once the one making $2 active is there: the serial console
# (115200 baud, emulated) can lag behind the report channel that `vmnet status` reads, so wait up to 10 s for it.
reports_since() {
  local i
  for i in $(seq 100); do
    tail -n +"$(($1 + 1))" "$serial" | tr -d '\r' | grep -a -q "\"event\":\"active-changed\".*\"active\":\"$2\"" && break
    sleep 0.1
  done
  tail -n +"$(($1 + 1))" "$serial" | tr -d '\r' | grep -a -o 'vmnet-agent: report .*' || true
}
# Polls `vmnet status demo` for up to $1 s until the bond's active member is $2; prints the status and, last, the
# milliseconds since $3 (an ms() time); fails when the time is up.
wait_active() {
  local timeout=$1 member=$2 since=$3 start out; start=$(ms)
  until out=$(vmnet status demo) && grep -q "^  lab: active $member;" <<<"$out"; do
    [ $(($(ms) - start)) -lt $((timeout * 1000)) ] || { echo "$out"; return 1; }
    sleep 0.3
  done
  echo "$out"
  echo $(($(ms) - since))
}
seconds() { echo "$(($1 / 1000)).$(printf %03d $(($1 % 1000)))"; }

echo "demo: VmNet in the emulated SR-IOV lab host ($(uname -r); two igb PFs behind intel-iommu, all under QEMU TCG)"
mkdir -p "$work"

header "peer: a network namespace bridging both switches, $peer_ip on VLAN 40"
note "each PF is cabled to its own emulated switch; the lab host has one more NIC (e1000e) on each switch."
note "bridged in the namespace 'peer' they are the link between the two top-of-rack switches."
p0=$(nic_by_mac 52:54:00:bb:00:01) || fail "no NIC with MAC 52:54:00:bb:00:01 (images/lab/lab.sh exec adds it)"
p1=$(nic_by_mac 52:54:00:bb:00:02) || fail "no NIC with MAC 52:54:00:bb:00:02 (images/lab/lab.sh exec adds it)"
note "found by MAC: switch 0's peer NIC is $p0, switch 1's is $p1"
run ip netns add peer
run ip link set "$p0" netns peer
run ip link set "$p1" netns peer
run ip -n peer link add br0 type bridge
run ip -n peer link set "$p0" master br0
run ip -n peer link set "$p1" master br0
run ip -n peer link add link br0 name br0.40 type vlan id 40
run ip -n peer addr add "$peer_ip/24" dev br0.40
for dev in lo "$p0" "$p1" br0 br0.40; do run ip -n peer link set "$dev" up; done

header "PFs up (on a real host that is the host's network configuration's job, not VmNet's)"
for pf in eth0 eth1; do
  driver=$(basename "$(readlink "/sys/class/net/$pf/device/driver")")
  [ "$driver" = igb ] || fail "$pf is driven by $driver, not igb"
  run ip link set "$pf" up
done
note "eth0 is 0000:01:00.0 and eth1 is 0000:02:00.0 (igb, Intel 82576, up to 7 VFs each)"

header "vmnet host apply: 2 VFs on each PF"
cat > "$work/host.yaml" <<'EOF'
pfs:
  - {port: 0000:01:00.0, vfs: 2}
  - {port: 0000:02:00.0, vfs: 2}
EOF
run cat "$work/host.yaml"
run vmnet host apply --config "$work/host.yaml"

header "vmnet doctor and vmnet host: the host is ready, 4 VFs free"
run vmnet doctor
run vmnet host | tee "$work/host-before.txt"

header "the VM spec: one network over a VF of each PF, VLAN 40, bonded active-backup in the guest"
run qemu-img create -q -f qcow2 "$work/empty.qcow2" 16M
note "the test guest boots its kernel and initramfs directly (images/guest: busybox + vmnet-agent); the disk stays empty; its kernel skips what it does not need under TCG inside TCG (IPv6, three of four UARTs, the keyboard, crypto self-tests)"
cat > "$work/demo.yaml" <<EOF
name: demo
cpus: 1
memory: 256MiB
backend: qemu
accel: tcg
disk: {image: $work/empty.qcow2}
boot: {kernel: $guest/kernel, initrd: $guest/initrd, cmdline: "console=ttyS0 panic=-1 loglevel=4 initcall_blacklist=crypto_kdf108_init,i8042_init cryptomgr.notests ipv6.disable=1 8250.nr_uarts=1"}
networks:
  - name: lab
    ports: [eth0, eth1]
    vlan: 40
    address: $guest_ip/24
    bond: {miimon: 100}   # link monitoring; ARP monitoring (arpInterval) flapped under TCG inside TCG
EOF
run cat "$work/demo.yaml"

header "vmnet up: VFs configured and bound to vfio-pci, the guest boots (TCG inside TCG: 3 to 8 minutes)"
# Piped: vmnet prints plain lines (the agent's events as they come) and no live line, which would fill a transcript
# with one line a second (the lab host's console is a terminal). The pipe runs `run` in a subshell: set last here.
last="vmnet up $work/demo.yaml --wait-timeout 900"
run vmnet up "$work/demo.yaml" --wait-timeout 900 | cat
note "the guest's boot in its serial log (vmnet-init: seconds since the guest's kernel started)"
runq "grep -a -o -e 'vmnet-init: .*' -e 'vmnet-agent: [0-9]* change.*' -e 'vmnet-agent: network-ready.*' -e 'vmnet-agent: a bond has no.*' $serial"

header "vmnet status: the VFs and the guest agent's report; the VF as its PF holds it"
run vmnet status demo
note "what VmNet set on the PF for its VF: MAC, VLAN 40, spoof checking on, trust off"
run ip -d link show eth0

header "the peer pings the guest over VLAN 40"
run ip netns exec peer busybox ping -c 3 -W 5 "$guest_ip"

header "failover: PF eth0 goes down while the peer pings the guest every 0.2 s"
# The pings run until 4 s after \`vmnet status\` shows lab1 active, however long the failover takes under TCG
# inside TCG; the 10 before the last 5 (2 s, up to 1 s before the pings stop: a round trip through TCG inside TCG
# reaches 0.8 s, so the last ones may still be in flight when ping is stopped) must all be answered: traffic flows
# through lab1.
echo "\$ ip netns exec peer busybox ping -i 0.2 $guest_ip > $work/ping.log &"
ip netns exec peer busybox ping -i 0.2 "$guest_ip" > "$work/ping.log" 2>&1 &
ping_pid=$!
sleep 3
from=$(wc -l < "$serial")
down=$(ms)
run ip link set eth0 down
note "polling \`vmnet status demo\` until the guest's bond has lab1 (the VF on eth1) active"
last="vmnet status demo, polled until lab1 is active"
out=$(wait_active 30 lab1 "$down") || { kill -INT "$ping_pid" 2>/dev/null; fail "the guest's bond did not make lab1 active within 30 s; last status:"$'\n'"$out"; }
echo "\$ vmnet status demo"
sed '$d' <<<"$out"
note "failover: \`vmnet status\` showed lab1 active $(seconds "$(tail -n 1 <<<"$out")") s after eth0 went down"
note "the agent's reports since then (it also writes each to the VM's serial log, with the guest's uptime in ms):"
reports_since "$from" lab1
sleep 4
kill -INT "$ping_pid"
wait "$ping_pid" || true
run tail -n 3 "$work/ping.log"
count=$(grep -o -E '^[0-9]+ packets transmitted' "$work/ping.log" | grep -o -E '^[0-9]+')
received=$(grep -c '^64 bytes from' "$work/ping.log" || true)
lost_seqs=$(for ((i = 0; i < count; i++)); do grep -q "seq=$i " "$work/ping.log" || echo -n "$i "; done)
note "failover: lost $((count - received)) of $count pings${lost_seqs:+ (seq ${lost_seqs% })}"
for ((i = count - 15; i < count - 5; i++)); do
  grep -q "seq=$i " "$work/ping.log" || fail "ping seq=$i (one of the 10 before the last 5) was not answered: traffic does not flow through lab1"
done
note "the 10 pings (2 s) before the last 5 were all answered: traffic flows through lab1"

header "PF eth0 back up: the bond takes its primary lab0 again"
from=$(wc -l < "$serial")
back=$(ms)
run ip link set eth0 up
last="vmnet status demo, polled until lab0 is active"
if out=$(wait_active 30 lab0 "$back"); then
  echo "\$ vmnet status demo"
  sed '$d' <<<"$out"
  note "lab0 active again $(seconds "$(tail -n 1 <<<"$out")") s after eth0 came back"
else
  echo "\$ vmnet status demo"
  echo "$out"
  note "lab0 not active again within 30 s (the bond keeps lab1; the demo goes on)"
fi
reports_since "$from" lab0

header "vmnet rm: the VM stops, every VF goes back as it was found"
run vmnet rm --force demo   # running: --force presses the power button, the guest powers off, then its VFs go back
run vmnet host | tee "$work/host-after.txt"
free=$(grep -c -E '^  [0-9]+ .* - +free$' "$work/host-after.txt" || true)
note "$free of 4 VFs free, all untagged"
[ "$free" = 4 ] || fail "expected all 4 VFs free and untagged after vmnet rm"
note "vmnet host after vmnet host apply and after vmnet rm, compared:"
if run diff "$work/host-before.txt" "$work/host-after.txt"; then
  note "identical"
else
  note "vmnet gave each VF back the MAC the PF held for it before (00:00:00:00:00:00: none set) and rebound igbvf,"
  note "which, finding no MAC set by the administrator, picked a random one and registered it with the PF:"
  runq "dmesg | grep -a -e 'not assigned by administrator' -e 'Assigning random MAC' -e 'igbvf .*Address:' | tail -n 6"
fi

echo
echo "demo: all steps passed in $(elapsed) s"
