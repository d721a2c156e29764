# Shared steps of the image recipes (images/guest, images/lab, images/cloud-guest); sourced, not run.
# The caller sets: $cache (the images cache directory) and $tag (the prefix of messages, e.g. "images/guest").

img_log() { echo "$tag: $*" >&2; }
img_need() { command -v "$1" >/dev/null || { echo "$tag: $1 missing: run scripts/install-deps.sh" >&2; exit 3; }; }

# img_kernel: Debian's kernel, the package linux-image-amd64 depends on (or $VMNET_KERNEL_PACKAGE), downloaded and
# unpacked once under $cache/kernel/<package>/ with depmod run. Sets kroot and kver.
img_kernel() {
  img_need apt-get; img_need dpkg-deb; img_need depmod
  local kdir="$cache/kernel" pkg=${VMNET_KERNEL_PACKAGE:-} tmp
  mkdir -p "$kdir"
  if [ -z "$pkg" ]; then
    if [ -f "$kdir/package" ]; then pkg=$(cat "$kdir/package"); else
      tmp=$(mktemp -d); (cd "$tmp" && apt-get download -q linux-image-amd64 >/dev/null 2>&1) \
        || { echo "$tag: apt-get download linux-image-amd64 failed: check apt sources" >&2; exit 3; }
      pkg=$(dpkg-deb -f "$tmp"/linux-image-amd64_*.deb Depends | sed 's/ .*//; s/,.*//')
      rm -rf "$tmp"; echo "$pkg" > "$kdir/package"
    fi
  fi
  kroot="$kdir/$pkg"
  if [ ! -f "$kroot/.done" ]; then
    img_log "downloading $pkg"
    rm -rf "$kroot"; mkdir -p "$kroot"
    tmp=$(mktemp -d); (cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>&1) \
      || { echo "$tag: apt-get download $pkg failed" >&2; exit 3; }
    dpkg-deb -x "$tmp"/*.deb "$kroot"; rm -rf "$tmp"
    depmod -b "$kroot" "$(ls "$kroot/lib/modules")"
    touch "$kroot/.done"
  fi
  kver=$(ls "$kroot/lib/modules")
}

# img_busybox STAGE: busybox-static with every applet linked, and modprobe/insmod/depmod in sbin.
img_busybox() {
  local stage=$1 applet
  [ -x /bin/busybox ] || { echo "$tag: busybox-static missing: run scripts/install-deps.sh" >&2; exit 3; }
  mkdir -p "$stage/bin" "$stage/sbin"
  cp /bin/busybox "$stage/bin/busybox"
  for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -s busybox "$stage/bin/$applet"; done
  for applet in modprobe insmod depmod; do ln -sf ../bin/busybox "$stage/sbin/$applet"; done
}

# img_modules STAGE MODULE...: copies the modules and everything they depend on (modules.dep) from $kroot into
# STAGE/lib/modules/$kver and runs depmod there. Built-in modules are skipped; a missing one is an error (exit 3).
img_modules() {
  local stage=$1; shift
  local -A seen=()
  _img_module() {
    local name=$1 line path dep pat
    pat=$(echo "$name" | sed 's/[-_]/[-_]/g')   # module names treat - and _ alike; file names do not
    line=$(grep -E "(^|/)${pat}\.ko(\.[a-z]+)?:" "$kroot/lib/modules/$kver/modules.dep" || true)
    if [ -z "$line" ]; then
      grep -qE "/${pat}\.ko" "$kroot/lib/modules/$kver/modules.builtin" && return 0
      echo "$tag: module $name not found in $kroot" >&2; exit 3
    fi
    path=${line%%:*}
    [ -n "${seen[$path]:-}" ] && return 0
    seen[$path]=1
    mkdir -p "$stage/lib/modules/$kver/$(dirname "$path")"
    cp "$kroot/lib/modules/$kver/$path" "$stage/lib/modules/$kver/$path"
    for dep in ${line#*:}; do dep=$(basename "$dep"); _img_module "${dep%%.ko*}"; done
  }
  local m
  for m in "$@"; do _img_module "$m"; done
  cp "$kroot/lib/modules/$kver"/modules.{builtin,builtin.modinfo,order} "$stage/lib/modules/$kver/"
  depmod -b "$stage" "$kver"
}

# img_initrd STAGE OUT: packs STAGE as a reproducible newc cpio (times zeroed, names sorted, owner root). Not
# compressed: under TCG, and more so in the lab's nested guests (TCG inside TCG), the kernel's gunzip of a few MB
# cost seconds to minutes; reading the bigger file costs QEMU next to nothing.
img_initrd() {
  (cd "$1" && find . -exec touch -h -d @0 {} + && find . -print0 | LC_ALL=C sort -z \
    | cpio --null -o -H newc --reproducible -R 0:0 --quiet) > "$2"
}

# img_kernel_image OUT: the kernel QEMU boots directly (-kernel). Debian's vmlinuz is an xz-compressed bzImage; its
# uncompressed ELF (vmlinux) carries a PVH entry note (CONFIG_PVH), which QEMU boots without the BIOS-loaded
# decompressor: QEMU start to the test guest's /init took 3.5 to 4.6 s instead of 8.6 to 9.3 s here under TCG. A
# kernel without that note is used as it is. Extracted once per kernel, into $kroot/kernel-image; each image links it.
img_kernel_image() {
  local out=$1 image="$kroot/kernel-image"
  [ -f "$image" ] || _img_extract_kernel "$image"
  ln -f "$image" "$out" 2>/dev/null || cp "$image" "$out"
}

_img_extract_kernel() {
  local image=$1 vmlinuz="$kroot/boot/vmlinuz-$kver" offset
  img_need xz
  offset=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | head -1 | cut -d: -f1)
  if [ -n "$offset" ]; then
    # The decompressor stops at the xz stream's end and complains about what follows it (the bzImage's tail).
    tail -c +$((offset + 1)) "$vmlinuz" | xz -dc -q > "$image.elf" 2>/dev/null || true
    # An ELF with the note XEN_ELFNOTE_PHYS32_ENTRY (type 0x12, owner "Xen").
    if [ "$(head -c 4 "$image.elf" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ] \
      && LC_ALL=C grep -qaP '\x04\x00\x00\x00[\x04\x08]\x00\x00\x00\x12\x00\x00\x00Xen\x00' "$image.elf"; then
      mv "$image.elf" "$image"; return 0
    fi
    rm -f "$image.elf"
  fi
  img_log "no PVH entry found in $vmlinuz: booting the compressed kernel"
  cp "$vmlinuz" "$image"
}
