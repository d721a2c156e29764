#!/usr/bin/env bash
# The host steps of `vmnet up --no-start` (two networks x two ports: reserve, configure, bind) against seed 000's
# hand sequence in bash (`ip link set ... vf N ...`, unbind, driver_override, drivers_probe), in the emulated SR-IOV
# lab host (images/lab, real igb/igbvf/vfio-pci drivers under TCG): the ratio of their medians, measured in one run.
#
#   benchmarks/lab-host-steps.sh           9 rounds; writes benchmarks/results/lab-host-steps.md
#   benchmarks/lab-host-steps.sh --smoke   2 rounds, results in a temp dir: proves it still runs (CI)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
rounds=9 smoke=0
[ "${1:-}" = --smoke ] && { rounds=2; smoke=1; }
pub=$("$repo/scripts/publish.sh" "${VMNET_CACHE:-$repo/.cache}/publish" | tail -1)
tmp=$(mktemp -d /tmp/vmnet-bench-lab.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/out"
cp "$pub/vmnet" "$pub/vmnet-agent" "$tmp/bin/"
printf 'exec bash %q %q %q /lab-out\n' "$repo/benchmarks/lab/host-steps-inside.sh" "$tmp/bin" "$rounds" > "$tmp/run.sh"
LAB_OUT="$tmp/out" timeout -k 10 900 "$repo/images/lab/lab.sh" exec "$tmp/run.sh" </dev/null | sed -u 's/\r$//' > "$tmp/console.log" || true
grep -qx 'lab-init: exit 0' "$tmp/console.log" || { tail -30 "$tmp/console.log"; echo "lab-host-steps: the lab run failed" >&2; exit 1; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
v=$(tail -n +2 "$tmp/out/host-steps.tsv" | cut -f2 | median)
h=$(tail -n +2 "$tmp/out/host-steps.tsv" | cut -f3 | median)
ratio=$(awk -v v="$v" -v h="$h" 'BEGIN {printf "%.2f", v / h}')
report="# Host steps in the lab: vmnet up --no-start vs. the hand sequence

Two networks x two ports (4 VFs), $rounds rounds each, interleaved, in the emulated SR-IOV lab host ($(date -u +%Y-%m-%d), $(nproc) cores).

| what | median |
|---|---|
| \`vmnet up --no-start\` (the whole process: it stops after the host steps) | $v ms |
| the hand sequence in bash (\`ip link set\`, unbind, \`driver_override\`, \`drivers_probe\`) | $h ms |
| ratio | $ratio x |

Rounds (ms):

\`\`\`
$(cat "$tmp/out/host-steps.tsv")
\`\`\`"
echo "$report"
if [ "$smoke" = 0 ]; then echo "$report" > "$repo/benchmarks/results/lab-host-steps.md"; fi
