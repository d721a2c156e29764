#!/usr/bin/env bash
# Installs everything VmNet's build, tests and benchmarks need on a fresh Debian 12 (bookworm) machine.
# Used by the README and by .ci/run. Idempotent: a second run installs nothing new.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

# bookworm-backports for QEMU >= 8 (igb, the emulated SR-IOV NIC). Derived from the machine's own Debian source,
# so no mirror host name is written here.
src=/etc/apt/sources.list.d/debian.sources
bp=/etc/apt/sources.list.d/vmnet-backports.sources
if [ -f "$src" ] && [ ! -f "$bp" ]; then
  uris=$(awk '/^URIs:/ {print $2; exit}' "$src")
  signed=$(awk '/^Signed-By:/ {print $2; exit}' "$src")
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' "$uris" "$signed" \
    | $SUDO tee "$bp" >/dev/null
fi

packages=(
  libvirt0 libvirt-clients libvirt-daemon libvirt-daemon-driver-qemu libxml2-utils  # libvirt: library, virsh, virt-xml-validate, libvirtd
  cloud-init                                           # cloud-init schema / devel net-convert
  xorriso genisoimage                                  # reading the NoCloud seed image back in tests
  hyperfine                                            # whole-command benchmarks
  busybox-static cpio xz-utils kmod iproute2 socat     # the test guest's initramfs and kernel, and the lab
  e2fsprogs fdisk jq                                   # images/agent-disk/bake.sh: debugfs, e2fsck, sfdisk --json
  mmdebstrap                                           # images/cloud-guest/build.sh: the cloud-init guest's root
  systemd                                              # systemd-analyze verify on the agent's unit
  strace                                               # what iproute2 sends over netlink (VfNetlinkTests), the lab benchmark
  lintian man-db binutils                              # scripts/package.sh (objdump) and its tests: lintian, man -l
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
need_qemu=1
if command -v qemu-system-x86_64 >/dev/null; then
  v=$(qemu-system-x86_64 --version | awk 'NR==1 {print $4}'); [ "${v%%.*}" -ge 8 ] && need_qemu=0
fi
command -v qemu-img >/dev/null || need_qemu=1
# The test guest's recipe (images/guest/build.sh) downloads Debian's kernel package: that needs package lists.
have_lists=1
apt-cache show linux-image-amd64 >/dev/null 2>&1 || have_lists=0
if [ ${#missing[@]} -gt 0 ] || [ "$need_qemu" = 1 ] || [ "$have_lists" = 0 ]; then
  $SUDO apt-get update -qq
  if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  if [ "$need_qemu" = 1 ]; then
    $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 qemu-utils
  fi
fi
