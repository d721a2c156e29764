#!/usr/bin/env bash
# Builds VmNet's test guest from Debian packages only: Debian's kernel and an initramfs holding busybox, the kernel
# modules a bond over VFs needs, and vmnet-agent (NativeAOT) as the network bootstrapper.
#
#   images/guest/build.sh            -> prints the directory holding vmlinuz and initrd.gz
#
# Idempotent and cached under ${VMNET_CACHE:-<repo>/.cache}/images/:
#   kernel/<package>/          the unpacked linux-image package (depmod run once)
#   agent/vmnet-agent          the agent, republished when a file under guest-agent/ is newer
#   guest-<kver>-<hash>/       vmlinuz + initrd.gz; <hash> covers this recipe, init and the agent binary
# Overrides: VMNET_KERNEL_PACKAGE (default: the package linux-image-amd64 depends on), VMNET_AGENT_BIN (a prebuilt agent).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${VMNET_CACHE:-$repo/.cache}/images
mkdir -p "$cache"
log() { echo "images/guest: $*" >&2; }
need() { command -v "$1" >/dev/null || { echo "images/guest: $1 missing: run scripts/install-deps.sh" >&2; exit 3; }; }
need apt-get; need dpkg-deb; need depmod; need cpio; need gzip
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "images/guest: busybox-static missing: run scripts/install-deps.sh" >&2; exit 3; }

# Modules the bond needs; dependencies are followed through modules.dep.
modules=(virtio_pci virtio_net virtio_console qemu_fw_cfg e1000e igbvf bonding 8021q ahci sr_mod)

# 1. The kernel: the package linux-image-amd64 depends on, unpacked once.
kdir="$cache/kernel"
mkdir -p "$kdir"
pkg=${VMNET_KERNEL_PACKAGE:-}
if [ -z "$pkg" ]; then
  if [ -f "$kdir/package" ]; then pkg=$(cat "$kdir/package"); else
    tmp=$(mktemp -d); (cd "$tmp" && apt-get download -q linux-image-amd64 >/dev/null 2>&1) \
      || { echo "images/guest: apt-get download linux-image-amd64 failed: check apt sources" >&2; exit 3; }
    pkg=$(dpkg-deb -f "$tmp"/linux-image-amd64_*.deb Depends | sed 's/ .*//; s/,.*//')
    rm -rf "$tmp"; echo "$pkg" > "$kdir/package"
  fi
fi
kroot="$kdir/$pkg"
if [ ! -f "$kroot/.done" ]; then
  log "downloading $pkg"
  rm -rf "$kroot"; mkdir -p "$kroot"
  tmp=$(mktemp -d); (cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>&1) \
    || { echo "images/guest: apt-get download $pkg failed" >&2; exit 3; }
  dpkg-deb -x "$tmp"/*.deb "$kroot"; rm -rf "$tmp"
  kver=$(ls "$kroot/lib/modules"); depmod -b "$kroot" "$kver"
  touch "$kroot/.done"
fi
kver=$(ls "$kroot/lib/modules")

# 2. The agent (NativeAOT, needs only glibc).
agent=${VMNET_AGENT_BIN:-$cache/agent/vmnet-agent}
if [ -z "${VMNET_AGENT_BIN:-}" ]; then
  if [ ! -x "$agent" ] || [ -n "$(find "$repo/guest-agent" -type f \( -name '*.cs' -o -name '*.csproj' \) -newer "$agent" -not -path '*/obj/*' -not -path '*/bin/*' | head -1)" ]; then
    need dotnet
    log "publishing vmnet-agent (NativeAOT)"
    # Run outside any MSBuild that started us (dotnet test), so its node settings do not leak in.
    env -u MSBuildExtensionsPath -u MSBuildSDKsPath -u MSBUILD_EXE_PATH -u MSBuildLoadMicrosoftTargetsReadOnly \
      dotnet publish "$repo/guest-agent/VmNet.GuestAgent.csproj" -c Release -r linux-x64 -p:PublishAot=true \
      -o "$cache/agent.tmp" -nologo -v:q >&2
    mkdir -p "$cache/agent"; mv -f "$cache/agent.tmp/vmnet-agent" "$agent"; rm -rf "$cache/agent.tmp"
  fi
fi

# 3. Cache key: kernel version + recipe + agent binary.
hash=$(cat "$here/build.sh" "$here/init" "$agent" | sha256sum | cut -c1-16)
out="$cache/guest-$kver-$hash"
if [ -f "$out/initrd.gz" ] && [ -f "$out/vmlinuz" ]; then echo "$out"; exit 0; fi

log "building initramfs for $kver"
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,etc,proc,sys,dev,run,tmp,root,lib/modules/$kver}
cp "$busybox" "$stage/bin/busybox"
for applet in $("$busybox" --list); do [ "$applet" = busybox ] || ln -s busybox "$stage/bin/$applet"; done
for applet in modprobe insmod depmod; do ln -sf ../bin/busybox "$stage/sbin/$applet"; done

# Modules and their dependencies (modules.dep lists paths relative to lib/modules/<kver>).
declare -A seen=()
add_module() {
  local name=$1 line path dep
  line=$(grep -E "(^|/)${name}\.ko(\.[a-z]+)?:" "$kroot/lib/modules/$kver/modules.dep" || true)
  if [ -z "$line" ]; then
    grep -qE "/${name}\.ko" "$kroot/lib/modules/$kver/modules.builtin" && return 0
    echo "images/guest: module $name not found in $pkg" >&2; exit 3
  fi
  path=${line%%:*}
  [ -n "${seen[$path]:-}" ] && return 0
  seen[$path]=1
  mkdir -p "$stage/lib/modules/$kver/$(dirname "$path")"
  cp "$kroot/lib/modules/$kver/$path" "$stage/lib/modules/$kver/$path"
  for dep in ${line#*:}; do dep=$(basename "$dep"); add_module "${dep%%.ko*}"; done
}
for m in "${modules[@]}"; do add_module "${m//-/_}"; done
cp "$kroot/lib/modules/$kver"/modules.{builtin,order} "$stage/lib/modules/$kver/"
"$busybox" depmod -b "$stage" "$kver"
# Load order for /init; no bond0 of the module's own (the agent names every bond).
printf '%s\n' "${modules[@]}" | sed 's/^bonding$/bonding max_bonds=0/' > "$stage/etc/vmnet-modules"

# The agent and the shared libraries it needs, at the same paths.
cp "$agent" "$stage/sbin/vmnet-agent"
for lib in $(ldd "$agent" | grep -oE '/[^ ]+' | sort -u); do
  mkdir -p "$stage$(dirname "$lib")"; cp -L "$lib" "$stage$lib"
done
cp "$here/init" "$stage/init"; chmod 755 "$stage/init"
echo "vmnet-guest" > "$stage/etc/hostname"
: > "$stage/etc/resolv.conf"

mkdir -p "$out.tmp"
(cd "$stage" && find . -exec touch -h -d @0 {} + && find . -print0 | LC_ALL=C sort -z \
  | cpio --null -o -H newc --reproducible -R 0:0 --quiet | gzip -9 -n) > "$out.tmp/initrd.gz"
cp "$kroot/boot/vmlinuz-$kver" "$out.tmp/vmlinuz"
rm -rf "$out"; mv "$out.tmp" "$out"
log "built $out ($(du -h "$out/initrd.gz" | cut -f1) initramfs)"
echo "$out"
