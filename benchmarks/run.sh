#!/usr/bin/env bash
# Benchmarks of `vmnet up --dry-run` on a generated host (2 ConnectX-5 PFs x 127 VFs) with 0 and 200 leases.
#
#   benchmarks/run.sh           the full run: BenchmarkDotNet (in-process parts) and hyperfine (whole commands, JIT and
#                               NativeAOT); writes benchmarks/results/*.md. Takes some 10-15 minutes.
#   benchmarks/run.sh --smoke   every benchmark and command once or twice, results in a temp dir: proves they still run (CI).
#
# Needs the .NET SDK, hyperfine and, for NativeAOT, a C toolchain (gcc/clang).
set -euo pipefail

smoke=0
for arg in "$@"; do
    case "$arg" in
        --smoke) smoke=1 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $arg (use --smoke or nothing)" >&2; exit 2 ;;
    esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
work=$(mktemp -d "${TMPDIR:-/tmp}/vmnet-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
if [ "$smoke" = 1 ]; then results="$work/results"; else results="$repo/benchmarks/results"; fi
mkdir -p "$results"

step() { printf '\n== %s\n' "$*"; }

step "build (Release)"
dotnet build launcher -c Release --nologo -v quiet
dotnet build benchmarks/VmNet.Benchmarks -c Release --nologo -v quiet
jit="$repo/launcher/bin/Release/net10.0/vmnet"

step "NativeAOT publish -> out/aot"
# From scratch, so the trim/AOT analysis runs and prints its warnings every time (an incremental publish skips it).
rm -rf "$repo/launcher/obj/Release/net10.0/linux-x64" "$repo/out/aot"
dotnet publish launcher -c Release -r linux-x64 -p:PublishAot=true -o "$repo/out/aot" --nologo 2>&1 | tee "$work/aot-publish.log"
aot="$repo/out/aot/vmnet"
# A warning line looks like `file(line,col): warning IL2026: ...`; MSBuild may print it twice, so count distinct ones.
aot_warnings=$(grep -E ': warning [A-Z]+[0-9]+' "$work/aot-publish.log" | sort -u || true)
aot_warning_count=$(printf '%s' "$aot_warnings" | grep -c . || true)
echo "NativeAOT publish: $aot_warning_count distinct trim/AOT warning(s)"

step "generated host and state"
"$jit" sim create "$work/host" --shape connectx5 --pfs 2 --vfs 127 --total-vfs 127 --mtu 9000
mkdir -p "$work/state-0"
dotnet run --project benchmarks/VmNet.Benchmarks -c Release --no-build -- state "$work/state-200" 200
cp examples/vm.yaml "$work/vm.yaml"

step "the NativeAOT binary prints what the JIT build prints"
same=yes
for case in "examples/hosts/connectx5 $work/state-example" "$work/host $work/state-0" "$work/host $work/state-200"; do
    set -- $case
    rm -rf "$work/jit-out" "$work/aot-out"
    "$jit" up "$work/vm.yaml" --dry-run --host-root "$1" --state-dir "$2" --out "$work/jit-out" | sed "s|$work/jit-out|OUT|g" > "$work/jit.out"
    "$aot" up "$work/vm.yaml" --dry-run --host-root "$1" --state-dir "$2" --out "$work/aot-out" | sed "s|$work/aot-out|OUT|g" > "$work/aot.out"
    diff -r "$work/jit-out" "$work/aot-out" || same=no
    "$jit" up "$work/vm.yaml" --dry-run --json --host-root "$1" --state-dir "$2" >> "$work/jit.out"
    "$aot" up "$work/vm.yaml" --dry-run --json --host-root "$1" --state-dir "$2" >> "$work/aot.out"
    if diff -u "$work/jit.out" "$work/aot.out"; then echo "same output and artifacts: --host-root $1 --state-dir $2"; else same=no; fi
done
[ "$same" = yes ] || { echo "run.sh: the NativeAOT build's output differs from the JIT build's" >&2; exit 1; }
[ "$("$jit" --version)" = "$("$aot" --version)" ] || { echo "run.sh: --version differs between JIT and NativeAOT" >&2; exit 1; }

step "BenchmarkDotNet (in-process parts)"
bdn_args=()
[ "$smoke" = 1 ] && bdn_args+=(--smoke)
dotnet run --project benchmarks/VmNet.Benchmarks -c Release --no-build -- "${bdn_args[@]}" --artifacts "$work/bdn"
for f in "$work"/bdn/results/*-report-github.md; do
    name=$(basename "$f" -report-github.md)
    cp "$f" "$results/bdn-${name##*.}.md"
done

step "hyperfine (whole commands)"
if [ "$smoke" = 1 ]; then hf_args=(--warmup 1 --runs 2); else hf_args=(--warmup 5 --runs 40); fi
up() { echo "$1 up $work/vm.yaml --dry-run --host-root $work/host --state-dir $work/state-$2"; }
hyperfine -N "${hf_args[@]}" --style basic \
    --export-markdown "$results/hyperfine.md" --export-json "$work/hyperfine.json" \
    -n "jit: vmnet --version" "$jit --version" \
    -n "jit: validate" "$jit validate $work/vm.yaml" \
    -n "jit: up --dry-run, 0 leases" "$(up "$jit" 0)" \
    -n "jit: up --dry-run, 200 leases" "$(up "$jit" 200)" \
    -n "aot: vmnet --version" "$aot --version" \
    -n "aot: validate" "$aot validate $work/vm.yaml" \
    -n "aot: up --dry-run, 0 leases" "$(up "$aot" 0)" \
    -n "aot: up --dry-run, 200 leases" "$(up "$aot" 200)"

# The goal (issue 11): the NativeAOT dry run on the 2 x 127 host with 200 leases costs at most 1.5 x validate of the
# same spec, as a ratio of the medians measured side by side in this run.
ratio=$(python3 - "$work/hyperfine.json" <<'PY'
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
print(f'{r["aot: up --dry-run, 200 leases"] / r["aot: validate"]:.2f}')
PY
)
echo "aot: up --dry-run (200 leases) / validate, ratio of medians: $ratio (goal: at most 1.5)"
ratio_ok=$(python3 -c "print(1 if $ratio <= 1.5 else 0)")

step "summary"
{
    echo "# vmnet benchmarks"
    echo
    echo "Generated host: 2 ConnectX-5 PFs x 127 VFs (\`vmnet sim create --pfs 2 --vfs 127 --total-vfs 127 --mtu 9000\`);"
    echo "leases held by other VMs on the lowest VFs of both PFs; spec: examples/vm.yaml (2 networks x 2 ports)."
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs; $(dotnet --version | sed 's/^/.NET SDK /'); $(hyperfine --version)."
    [ "$smoke" = 1 ] && echo && echo "**Smoke run: one iteration each, the figures mean nothing.**"
    echo
    echo "## Whole commands (hyperfine, JIT apphost vs NativeAOT)"
    echo
    cat "$results/hyperfine.md"
    echo
    echo "NativeAOT \`up --dry-run\` (200 leases) / \`validate\`, ratio of medians in this run: **$ratio** (goal: at most 1.5)."
    echo
    echo "NativeAOT binary: $(du -h "$aot" | cut -f1) (out/aot/vmnet); publish warnings: $aot_warning_count."
    [ -n "$aot_warnings" ] && printf '\n```\n%s\n```\n' "$aot_warnings"
    for f in "$results"/bdn-*.md; do
        echo
        echo "## $(basename "$f" .md | sed 's/^bdn-//') (BenchmarkDotNet)"
        echo
        cat "$f"
    done
} > "$results/summary.md"
cat "$results/summary.md"
echo
echo "results: $results"
if [ "$smoke" = 0 ] && [ "$ratio_ok" != 1 ]; then
    echo "run.sh: the NativeAOT dry run costs $ratio x validate, over the goal of 1.5" >&2
    exit 1
fi
