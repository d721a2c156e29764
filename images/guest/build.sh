#!/usr/bin/env bash
# Builds VmNet's test guest from Debian packages only: Debian's kernel and an initramfs holding busybox, the kernel
# modules a bond over VFs needs, and vmnet-agent (NativeAOT) as the network bootstrapper.
#
#   images/guest/build.sh            -> prints the directory holding kernel and initrd
#
# Idempotent and cached under ${VMNET_CACHE:-<repo>/.cache}/images/:
#   kernel/<package>/          the unpacked linux-image package (depmod run once)
#   agent/vmnet-agent          the agent, republished when a file under guest-agent/ or contract/ is newer
#   guest-<kver>-<hash>/       kernel (uncompressed, PVH) + initrd (cpio); <hash> covers this recipe, init and the agent binary
# Overrides: VMNET_KERNEL_PACKAGE (default: the package linux-image-amd64 depends on), VMNET_AGENT_BIN (a prebuilt agent).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${VMNET_CACHE:-$repo/.cache}/images
tag=images/guest
mkdir -p "$cache"
. "$repo/images/lib.sh"
img_need cpio

# Modules the bond needs; dependencies are followed through modules.dep.
# button and evdev: the ACPI power button, which busybox acpid turns into a power-off (vmnet rm, virsh shutdown).
modules=(virtio_pci virtio_net virtio_console qemu_fw_cfg e1000e igbvf bonding 8021q ahci sr_mod button evdev)

# 1. The kernel: the package linux-image-amd64 depends on, unpacked once (sets kroot, kver).
img_kernel

# 2. The agent (NativeAOT, needs only glibc).
agent=${VMNET_AGENT_BIN:-$cache/agent/vmnet-agent}
if [ -z "${VMNET_AGENT_BIN:-}" ]; then
  if [ ! -x "$agent" ] || [ -n "$(find "$repo/guest-agent" "$repo/contract" -type f \( -name '*.cs' -o -name '*.csproj' \) -newer "$agent" -not -path '*/obj/*' -not -path '*/bin/*' | head -1)" ]; then
    img_need dotnet
    img_log "publishing vmnet-agent (NativeAOT)"
    # Run outside any MSBuild that started us (dotnet test), so its node settings do not leak in.
    env -u MSBuildExtensionsPath -u MSBuildSDKsPath -u MSBUILD_EXE_PATH -u MSBuildLoadMicrosoftTargetsReadOnly \
      dotnet publish "$repo/guest-agent/VmNet.GuestAgent.csproj" -c Release -r linux-x64 -p:PublishAot=true \
      -o "$cache/agent.tmp" -nologo -v:q >&2
    mkdir -p "$cache/agent"; mv -f "$cache/agent.tmp/vmnet-agent" "$agent"; rm -rf "$cache/agent.tmp"
  fi
fi

# 3. Cache key: kernel version + recipe + agent binary.
hash=$(cat "$repo/images/lib.sh" "$here/build.sh" "$here/init" "$agent" | sha256sum | cut -c1-16)
out="$cache/guest-$kver-$hash"
if [ -f "$out/initrd" ] && [ -f "$out/kernel" ]; then echo "$out"; exit 0; fi

img_log "building initramfs for $kver"
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,etc,proc,sys,dev,run,tmp,root}
img_busybox "$stage"
img_modules "$stage" "${modules[@]}"
# Load order for /init; no bond0 of the module's own (the agent names every bond).
printf '%s\n' "${modules[@]}" | sed 's/^bonding$/bonding max_bonds=0/' > "$stage/etc/vmnet-modules"

# The agent and the shared libraries it needs, at the same paths.
cp "$agent" "$stage/sbin/vmnet-agent"
for lib in $(ldd "$agent" | grep -oE '/[^ ]+' | sort -u); do
  mkdir -p "$stage$(dirname "$lib")"; cp -L "$lib" "$stage$lib"
done
cp "$here/init" "$stage/init"; chmod 755 "$stage/init"
# busybox acpid maps the power button's input event to "PWRF" and runs /etc/acpi/PWRF/00000080.
mkdir -p "$stage/etc/acpi/PWRF"
printf '#!/bin/sh\necho "vmnet-init: power button, powering off"\nsync\npoweroff -f\n' > "$stage/etc/acpi/PWRF/00000080"
chmod 755 "$stage/etc/acpi/PWRF/00000080"
echo "vmnet-guest" > "$stage/etc/hostname"
: > "$stage/etc/resolv.conf"

mkdir -p "$out.tmp"
img_initrd "$stage" "$out.tmp/initrd"
img_kernel_image "$out.tmp/kernel"
rm -rf "$out"; mv "$out.tmp" "$out"
img_log "built $out ($(du -h "$out/initrd" | cut -f1) initramfs)"
echo "$out"
