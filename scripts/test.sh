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

# The full run: the libvirt lab (LabLibvirtTests: one lab host, four boots of a nested guest, about 20 min) runs in a
# test process of its own beside all the others, which take about as long one after the other: on 2 cores the two
# TCG workloads overlap (each uses about one core) instead of adding up.
side=VmNet.Tests.Boots.Lab.LabLibvirtTests
log=$(mktemp); sidelog=$(mktemp)
trap 'rm -f "$log" "$sidelog"' EXIT
if [ "$#" -eq 0 ]; then
  # Built once, first: both test processes would otherwise publish and build into the same caches at the same time.
  cache=${VMNET_CACHE:-.cache}
  scripts/publish.sh "$cache/publish" >/dev/null && images/guest/build.sh >/dev/null && images/lab/build.sh >/dev/null
fi
set +e
sidepid=
if [ "$#" -eq 0 ]; then
  dotnet test --solution VmNet.sln --no-build -c Debug -- --filter-class "$side" > "$sidelog" 2>&1 &
  sidepid=$!
  set -- --filter-not-class "$side"
fi
dotnet test --solution VmNet.sln --no-build -c Debug -- "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ -n "$sidepid" ]; then
  wait "$sidepid"; sidestatus=$?
  echo "== $side (ran beside the others)"
  cat "$sidelog"
  [ "$status" -ne 0 ] || status=$sidestatus
fi
set -e

# Sums a count over both test processes' summaries.
n() { local t=0 c; for f in "$log" "$sidelog"; do c=$(grep -E "^\s+$1: [0-9]+" "$f" | tail -1 | grep -oE '[0-9]+' || echo 0); t=$((t + c)); done; echo "$t"; }
total=$(n total); failed=$(n failed); passed=$(n succeeded); skipped=$(n skipped)
# The failures again, last, so that a log cut to its tail still names them.
if grep -q '^failed ' "$log" "$sidelog"; then
  echo "failures:"
  cat "$log" "$sidelog" | awk '/^failed /{show=1; n=0; print; next} show && /^[^ \t]/{show=0} show && n<40 {print; n++}'
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
if [ "$status" -ne 0 ]; then exit "$status"; fi
if [ "$total" -eq 0 ]; then echo "no test ran" >&2; exit 1; fi
