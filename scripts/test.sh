#!/usr/bin/env bash
# Runs every test: installs what the tests need (Debian packages), builds, and runs the whole suite, including the
# slow ones on real kernels under QEMU (TCG). Ends with one summary line: "tests: N passed, N failed, N skipped".
#   scripts/test.sh --fast    the fast tier only: every test but those that boot a kernel (Tier=Boot), about 2 minutes
# Other arguments go to the test runner, e.g. scripts/test.sh --filter-class VmNet.Tests.Cli.CliTests
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
for a in "$@"; do
  if [ "$a" = "--fast" ]; then args+=(--filter-not-trait "Tier=Boot"); else args+=("$a"); fi
done
set -- ${args[@]+"${args[@]}"}

scripts/install-deps.sh
dotnet build VmNet.sln -c Debug --nologo -v quiet

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
dotnet test --solution VmNet.sln --no-build -c Debug -- "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

n() { grep -E "^\s+$1: [0-9]+" "$log" | tail -1 | grep -oE '[0-9]+' || echo 0; }
total=$(n total); failed=$(n failed); passed=$(n succeeded); skipped=$(n skipped)
# The failures again, last, so that a log cut to its tail still names them.
if grep -q '^failed ' "$log"; then
  echo "failures:"
  awk '/^failed /{show=1; n=0; print; next} show && /^[^ \t]/{show=0} show && n<40 {print; n++}' "$log"
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
if [ "$status" -ne 0 ]; then exit "$status"; fi
if [ "$total" -eq 0 ]; then echo "no test ran" >&2; exit 1; fi
