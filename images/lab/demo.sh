#!/usr/bin/env bash
# Try VmNet without SR-IOV hardware: boots the emulated SR-IOV lab host (lab.sh exec) and runs demo-inside.sh in it,
# which prints every step and command: a peer, the PFs up, `vmnet host apply`, `vmnet up` of the test guest with a
# VF of each PF bonded inside it, pings, a failover, `vmnet rm` (see images/lab/README.md).
#
#   images/lab/demo.sh      exit 0 only when the lab host reported `lab-init: exit 0` (every step passed)
#
# Before booting: scripts/publish.sh (vmnet and vmnet-agent, NativeAOT, cached under ${VMNET_CACHE:-<repo>/.cache}/
# publish) and images/guest/build.sh (the test guest, cached). VMNET_DEMO_TIMEOUT (seconds, default 1200) bounds
# the lab host's run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
t0=$(date +%s)
limit=${VMNET_DEMO_TIMEOUT:-1200}
say() { echo "demo: [+$(($(date +%s) - t0)) s] $*"; }

say "publishing vmnet and vmnet-agent (scripts/publish.sh; NativeAOT, cached)"
pub=$("$repo/scripts/publish.sh" "${VMNET_CACHE:-$repo/.cache}/publish")
say "building the test guest (images/guest/build.sh, cached)"
guest=$("$repo/images/guest/build.sh")
"$here/lab.sh" build >/dev/null

# The lab host sees this machine's / (and /tmp) read-only: it runs a wrapper from here, with its own copy of the
# binaries, so a rebuild while the demo runs changes nothing under it.
tmp=$(mktemp -d /tmp/vmnet-demo.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cp "$pub/vmnet" "$pub/vmnet-agent" "$tmp/"
{
  echo "export VMNET_DEMO_BIN=$(printf %q "$tmp") VMNET_DEMO_GUEST=$(printf %q "$guest") VMNET_DEMO_T0=$t0"
  echo "exec bash $(printf %q "$here/demo-inside.sh")"
} > "$tmp/run.sh"

say "booting the lab host (QEMU TCG, about 10 s), then the steps run inside it (up to $limit s)"
rc=0
timeout -k 10 "$limit" "$here/lab.sh" exec "$tmp/run.sh" </dev/null | sed -u 's/\r$//' | tee "$tmp/console.log" || rc=$?
if grep -qx 'lab-init: exit 0' "$tmp/console.log"; then
  say "passed; the lab host powered off"
  exit 0
fi
case $rc in 124 | 137) say "timed out after $limit s" ;; esac
say "FAILED (the lab host did not report \`lab-init: exit 0\`; exit status $rc)"
exit 1
