#!/usr/bin/env bash
# Builds the Debian package of VmNet and prints its path:
#
#   scripts/package.sh [DIR]     -> DIR/vmnet_<version>_amd64.deb (default DIR: out/package)
#
# From the NativeAOT binaries of scripts/publish.sh (cached under ${VMNET_CACHE:-<repo>/.cache}/publish):
#   /usr/bin/vmnet                                    the tool
#   /usr/lib/vmnet/vmnet-agent                        the guest agent vmnet puts on each VM's seed
#   /lib/systemd/system/vmnet-host.service            `vmnet host boot-unit --generic` (the administrator enables it)
#   /etc/vmnet/host.yaml                              an example host config (a conffile; no PF until edited)
#   /usr/share/bash-completion/completions/vmnet      `vmnet completion bash`
#   /usr/share/man/man1/vmnet.1.gz                    `vmnet man`, from the same command tree as --help
#   /usr/share/vmnet/vm.reference.yaml                every spec field with its default (templates/)
#   /usr/share/vmnet/vm.schema.json                   the spec's JSON Schema, made from the validation (templates/)
#   /usr/share/vmnet/vmnet-output.schema.json         the JSON Schema of every --json output (schemas/)
#   /usr/share/doc/vmnet/{copyright,changelog.gz,examples/vm.yaml}   (a native package: changelog.gz)
# The package's files, control fields and lintian's verdict (no error, no warning) are tested
# (tests/VmNet.Tests/Cli/PackageTests.cs).
# Reproducible for one commit: file times are the commit's (SOURCE_DATE_EPOCH), owners root, gzip -n.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
here=$repo/scripts/package
out=$(mkdir -p "${1:-$repo/out/package}" && cd "${1:-$repo/out/package}" && pwd)
for tool in dpkg-deb gzip objdump objcopy; do
  command -v $tool >/dev/null || { echo "scripts/package.sh: $tool missing: run scripts/install-deps.sh" >&2; exit 3; }
done

published=$("$repo/scripts/publish.sh" "${VMNET_CACHE:-$repo/.cache}/publish" | tail -1)
version=$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' "$repo/Directory.Build.props" | head -1)
commit=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}
day=$(date -u -d "@$epoch" +%F)

stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
root=$stage/root
install -D -m 755 "$published/vmnet" "$root/usr/bin/vmnet"
install -D -m 755 "$published/vmnet-agent" "$root/usr/lib/vmnet/vmnet-agent"
vmnet=$root/usr/bin/vmnet
mkdir -p "$root/lib/systemd/system" "$root/usr/share/bash-completion/completions" "$root/usr/share/man/man1" \
  "$root/usr/share/vmnet" "$root/usr/share/doc/vmnet/examples" "$root/etc/vmnet"
"$vmnet" host boot-unit --generic --config /etc/vmnet/host.yaml --vmnet /usr/bin/vmnet --state-dir /var/lib/vmnet -o - \
  > "$root/lib/systemd/system/vmnet-host.service"
"$vmnet" completion bash > "$root/usr/share/bash-completion/completions/vmnet"
"$vmnet" man --date "$day" | gzip -9n > "$root/usr/share/man/man1/vmnet.1.gz"
install -m 644 "$here/host.yaml" "$root/etc/vmnet/host.yaml"
install -m 644 "$repo/templates/vm.reference.yaml" "$root/usr/share/vmnet/vm.reference.yaml"
install -m 644 "$repo/templates/vm.schema.json" "$root/usr/share/vmnet/vm.schema.json"
install -m 644 "$repo/schemas/vmnet-output.schema.json" "$root/usr/share/vmnet/vmnet-output.schema.json"
install -m 644 "$repo/examples/vm.yaml" "$root/usr/share/doc/vmnet/examples/vm.yaml"
install -m 644 "$here/copyright" "$root/usr/share/doc/vmnet/copyright"
sed -e "s/@VERSION@/$version/" -e "s/@COMMIT@/$commit/" -e "s/@DATE@/$(date -u -R -d "@$epoch")/" "$here/changelog" \
  | gzip -9n > "$root/usr/share/doc/vmnet/changelog.gz"
# The linkers' .comment sections (lintian: binary-has-unneeded-section).
objcopy --remove-section=.comment "$root/usr/bin/vmnet"
objcopy --remove-section=.comment "$root/usr/lib/vmnet/vmnet-agent"
chmod 644 "$root/lib/systemd/system/vmnet-host.service" "$root/usr/share/bash-completion/completions/vmnet" "$root/usr/share/man/man1/vmnet.1.gz"

# The newest glibc symbol version either binary needs: the floor of libc6.
glibc=$(objdump -T "$root/usr/bin/vmnet" "$root/usr/lib/vmnet/vmnet-agent" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
size=$(du -sk --apparent-size "$root" | cut -f1)
mkdir -p "$root/DEBIAN"
sed -e "s/@VERSION@/$version/" -e "s/@SIZE@/$size/" -e "s/@GLIBC@/$glibc/" "$here/control" > "$root/DEBIAN/control"
echo /etc/vmnet/host.yaml > "$root/DEBIAN/conffiles"
(cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print | sed 's:^\./::' | LC_ALL=C sort | xargs md5sum) > "$root/DEBIAN/md5sums"
chmod 644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"
find "$root" -exec touch -h -d "@$epoch" {} +

deb=$out/vmnet_${version}_amd64.deb
SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
