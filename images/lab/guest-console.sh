#!/usr/bin/env bash
# Runs one command in a VM's serial-console shell (the test guest of images/guest runs sh there) through the
# console socket vmnet's QEMU backend serves, and exits with the command's status.
#
#   images/lab/guest-console.sh VM 'COMMAND' [TIMEOUT_S]     (state dir: $VMNET_STATE_DIR, default /var/lib/vmnet)
#
# Output: the command's output (kernel messages printed meanwhile on the console included).
set -uo pipefail
vm=${1:?usage: guest-console.sh VM COMMAND [TIMEOUT_S]}; cmd=${2:?usage: guest-console.sh VM COMMAND [TIMEOUT_S]}
timeout=${3:-30}
sock=${VMNET_STATE_DIR:-/var/lib/vmnet}/vms/$vm/console.sock
[ -S "$sock" ] || { echo "guest-console.sh: no console socket $sock (is $vm running on the qemu backend?)" >&2; exit 125; }
command -v socat >/dev/null || { echo "guest-console.sh: socat missing: run scripts/install-deps.sh" >&2; exit 125; }
marker="__vmnet_${RANDOM}_$$"
coproc CONSOLE { exec socat - "UNIX-CONNECT:$sock"; }
trap 'kill "$CONSOLE_PID" 2>/dev/null' EXIT
# The terminal echoes what is typed (and wraps it): the output is what comes between the start marker as the shell
# prints it ("${marker}_42", from an arithmetic expansion: never in the echoed text) and the end marker with the status.
printf '%s\n' "stty -echo 2>/dev/null; echo ${marker}_\$((7*6)); $cmd; echo ${marker}_end_\$?" >&"${CONSOLE[1]}"
end=$((SECONDS + timeout)); started=0
while [ "$SECONDS" -lt "$end" ] && IFS= read -r -t "$((end - SECONDS + 1))" line <&"${CONSOLE[0]}"; do
  line=${line%$'\r'}
  if [ "$started" = 0 ]; then [[ "$line" == *"${marker}_42"* ]] && started=1; continue; fi
  if [[ "$line" =~ ${marker}_end_([0-9]+) ]]; then exit "${BASH_REMATCH[1]}"; fi
  printf '%s\n' "$line"
done
echo "guest-console.sh: \`$cmd\` did not finish within $timeout s in $vm" >&2
exit 124
