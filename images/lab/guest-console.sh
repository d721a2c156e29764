#!/usr/bin/env bash
# Runs one command in a VM's serial-console shell (the test guest of images/guest runs sh there) through the
# console socket vmnet's QEMU backend serves, and exits with the command's status.
#
#   images/lab/guest-console.sh VM 'COMMAND' [TIMEOUT_S]     (state dir: $VMNET_STATE_DIR, default /var/lib/vmnet)
#
# Output: the command's output (the echoed command line, prompts and kernel messages filtered out as far as possible).
set -uo pipefail
vm=${1:?usage: guest-console.sh VM COMMAND [TIMEOUT_S]}; cmd=${2:?usage: guest-console.sh VM COMMAND [TIMEOUT_S]}
timeout=${3:-30}
sock=${VMNET_STATE_DIR:-/var/lib/vmnet}/vms/$vm/console.sock
[ -S "$sock" ] || { echo "guest-console.sh: no console socket $sock (is $vm running on the qemu backend?)" >&2; exit 125; }
command -v socat >/dev/null || { echo "guest-console.sh: socat missing: run scripts/install-deps.sh" >&2; exit 125; }
marker="__vmnet_done_${RANDOM}_$$__"
coproc CONSOLE { exec socat - "UNIX-CONNECT:$sock"; }
trap 'kill "$CONSOLE_PID" 2>/dev/null' EXIT
# The echoed line shows "$marker$?"; only the command's own echo prints the marker followed by digits.
printf '%s\n' "$cmd; echo $marker\$?" >&"${CONSOLE[1]}"
end=$((SECONDS + timeout))
while [ "$SECONDS" -lt "$end" ] && IFS= read -r -t "$((end - SECONDS + 1))" line <&"${CONSOLE[0]}"; do
  line=${line%$'\r'}
  if [[ "$line" =~ ${marker}([0-9]+) ]]; then exit "${BASH_REMATCH[1]}"; fi
  [[ "$line" == *"echo $marker"* ]] && continue
  printf '%s\n' "$line"
done
echo "guest-console.sh: \`$cmd\` did not finish within $timeout s in $vm" >&2
exit 124
