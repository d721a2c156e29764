#!/usr/bin/env bash
# Publishes VmNet as the product ships: vmnet and vmnet-agent, each one self-contained NativeAOT binary, side by side
# (vmnet finds the agent next to itself and puts it on every VM's seed).
#
#   scripts/publish.sh [DIR]     -> DIR/vmnet, DIR/vmnet-agent (default DIR: out/publish); prints DIR
#
# Skips a binary that is newer than every source it is built from (launcher/ + templates/, guest-agent/; both contract/).
# Needs the .NET SDK and a C toolchain (clang or gcc), both from scripts/install-deps.sh.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$repo/out/publish}" && cd "${1:-$repo/out/publish}" && pwd)

stale() { # stale BINARY DIR...: the binary is missing or a source under DIR is newer
  local bin=$1; shift
  [ -x "$bin" ] || return 0
  [ -n "$(find "$@" -type f \( -name '*.cs' -o -name '*.csproj' -o -name '*.sbn' -o -name '*.yaml' -o -name '*.props' \) \
    -newer "$bin" -not -path '*/obj/*' -not -path '*/bin/*' | head -1)" ]
}
publish() { # publish PROJECT NAME
  local tmp; tmp=$(mktemp -d)
  echo "scripts/publish.sh: publishing $2 (NativeAOT)" >&2
  # Outside any MSBuild that started us (dotnet test), so its node settings do not leak in.
  env -u MSBuildExtensionsPath -u MSBuildSDKsPath -u MSBUILD_EXE_PATH -u MSBuildLoadMicrosoftTargetsReadOnly \
    dotnet publish "$repo/$1" -c Release -r linux-x64 -p:PublishAot=true -o "$tmp" -nologo -v:q >&2
  mv -f "$tmp/$2" "$out/$2"; rm -rf "$tmp"
}
if stale "$out/vmnet" "$repo/launcher" "$repo/templates" "$repo/contract" "$repo/Directory.Packages.props"; then
  publish launcher/VmNet.Launcher.csproj vmnet
fi
if stale "$out/vmnet-agent" "$repo/guest-agent" "$repo/contract" "$repo/Directory.Packages.props"; then
  publish guest-agent/VmNet.GuestAgent.csproj vmnet-agent
fi
echo "$out"
