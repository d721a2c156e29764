#!/usr/bin/env bash
# Bakes vmnet-agent into a disk image, for guests without cloud-init (nothing else would install the agent there).
#
#   images/agent-disk/bake.sh [--partition N] IMAGE OUT [AGENT]
#
# IMAGE: a disk image qemu-img reads (qcow2, raw) whose root file system is ext4, on a partition (GPT or MBR; the
# largest Linux partition unless --partition N says which) or on the whole disk. IMAGE is only read.
# OUT: the new qcow2; must not exist. AGENT: the agent binary (default: the one scripts/publish.sh builds).
# Written into the root file system with debugfs, without root, mounting, loop devices or qemu-nbd:
#   /usr/local/sbin/vmnet-agent                                    AGENT, 0755 root:root
#   /etc/systemd/system/vmnet-agent.service                        vmnet-agent.service beside this script, 0644
#   /etc/systemd/system/multi-user.target.wants/vmnet-agent.service -> /etc/systemd/system/vmnet-agent.service
#   /etc/modules-load.d/vmnet.conf                                 qemu_fw_cfg (the agent's config through fw_cfg)
# Exit codes: 2 IMAGE, OUT or AGENT cannot be used (the message says why), 3 a tool is missing, 1 anything else.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
PATH=$PATH:/usr/sbin:/sbin
log() { echo "images/agent-disk: $*" >&2; }
refuse() { echo "images/agent-disk: $*" >&2; exit 2; }
need() { command -v "$1" >/dev/null || { echo "images/agent-disk: $1 missing: run scripts/install-deps.sh" >&2; exit 3; }; }
usage="usage: images/agent-disk/bake.sh [--partition N] IMAGE OUT [AGENT]"

partition=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --partition) [ $# -ge 2 ] || refuse "--partition needs a number; $usage"; partition=$2; shift 2 ;;
    --partition=*) partition=${1#--partition=}; shift ;;
    -h|--help) echo "$usage"; exit 0 ;;
    --) shift; args+=("$@"); break ;;
    -*) refuse "unknown option $1; $usage" ;;
    *) args+=("$1"); shift ;;
  esac
done
[ ${#args[@]} -ge 2 ] && [ ${#args[@]} -le 3 ] || refuse "$usage"
image=${args[0]} out=${args[1]} agent=${args[2]:-}
[[ -z "$partition" || "$partition" =~ ^[1-9][0-9]*$ ]] || refuse "--partition $partition: not a partition number"

[ -e "$image" ] || refuse "$image: no such image"
[ -f "$image" ] || refuse "$image: not a regular file"
[ -e "$out" ] || [ -L "$out" ] && refuse "$out exists: will not overwrite it"
[ -d "$(dirname "$out")" ] || refuse "$(dirname "$out") (the directory of OUT) does not exist"
[ -z "$agent" ] || [ -f "$agent" ] || refuse "$agent: no such agent binary"
image=$(realpath "$image") out=$(realpath "$out") agent=${agent:+$(realpath "$agent")}
outdir=$(dirname "$out")

need qemu-img; need sfdisk; need jq; need blkid; need debugfs; need dumpe2fs; need e2fsck; need cmp

if [ -z "$agent" ]; then
  need dotnet
  agent="$("$repo/scripts/publish.sh")/vmnet-agent"
fi
unit="$here/vmnet-agent.service"

# The temporary raw copy lives beside OUT (it is as large as the disk, sparse), so OUT is one rename away.
work=$(mktemp -d "$outdir/.bake.XXXXXX")
trap 'rm -rf "$work"' EXIT
info=$(qemu-img info --output=json "$image" 2>&1) || refuse "$image: not a disk image qemu-img can read: $info"
format=$(jq -r .format <<<"$info")
log "converting $image ($format) to raw"
qemu-img convert -f "$format" -O raw "$image" "$work/disk.raw"

# 1. The root file system: a partition (the largest Linux one, or --partition N) or the whole disk.
# GPT: Linux filesystem data and the Linux root types (x86-64, x86, arm64, arm) of the discoverable partitions spec
# (Debian's cloud images use "Linux root (x86-64)"); MBR: 83.
linux_types='["0FC63DAF-8483-4772-8E79-3D69D8477DE4","4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709","44479540-F297-41B2-9AF7-D131D5F0458A","B921B045-1DF0-41C3-AF44-4C6F280D3FAE","69DAD710-2CE4-4E3C-B16C-21A1D49ABED3","83"]'
offset=0 where="the whole disk"
if table=$(sfdisk --json "$work/disk.raw" 2>/dev/null) && [ -n "$table" ]; then
  # Each partition's number is its node name less the device name (and a "p" when the device name ends in a digit).
  parts='.partitiontable as $t | [$t.partitions[] | {n: (.node | ltrimstr($t.device) | ltrimstr("p")), start, size, type: (.type | ascii_upcase)}]'
  label=$(jq -r .partitiontable.label <<<"$table")
  sector=$(jq -r '.partitiontable.sectorsize // 512' <<<"$table")
  chosen=$(jq -r --arg n "$partition" --argjson linux "$linux_types" "$parts"'
    | if $n != "" then map(select(.n == $n)) else map(select(.type as $ty | any($linux[]; . == $ty))) | sort_by(-.size) end
    | first // empty | "\(.n) \(.start)"' <<<"$table")
  if [ -z "$chosen" ] && [ -n "$partition" ]; then
    refuse "$image has no partition $partition (its $label table has: $(jq -r "$parts"' | map(.n) | join(" ")' <<<"$table"))"
  fi
  [ -n "$chosen" ] || refuse "$image has a $label partition table but no Linux partition: choose one with --partition N"
  read -r number start <<<"$chosen"
  offset=$((start * sector)) where="partition $number"
elif [ -n "$partition" ]; then
  refuse "$image has no partition table, so no partition $partition"
fi
fstype=$(blkid -p -O "$offset" -o value -s TYPE "$work/disk.raw" 2>/dev/null || true)
[ "$fstype" = ext4 ] || refuse "$image has no ext4 root: $where holds ${fstype:-no file system blkid knows} (only ext4 can be baked)"
fs="disk.raw?offset=$offset"
cd "$work"

# 2. Only a clean file system is written to (debugfs does not replay a journal).
features=$(dumpe2fs -h "$fs" 2>/dev/null | sed -n 's/^Filesystem features: *//p')
[[ " $features " != *" needs_recovery "* ]] || refuse "$image: the ext4 on $where needs journal recovery (not shut down cleanly): boot it once, or run e2fsck on a copy"
check=$(e2fsck -fn "$fs" 2>&1) || refuse "$image: e2fsck -fn finds errors on $where before baking:
$check"
etc=$(debugfs -R 'stat /etc' "$fs" 2>&1)
grep -q 'Type: directory' <<<"$etc" || refuse "$image: $where has no /etc directory: not a root file system ($(tail -1 <<<"$etc"))"

# 3. The files. debugfs reports errors without failing, so everything is read back afterwards.
kind() { debugfs -R "stat $1" "$fs" 2>/dev/null | sed -n 's/.*Type: \([a-z]*\).*/\1/p' | head -1; }
cp "$agent" agent; cp "$unit" unit; printf '%s\n' "# VmNet: the agent reads its config from QEMU fw_cfg (opt/vmnet/agent.json)" qemu_fw_cfg > modules
wants=/etc/systemd/system/multi-user.target.wants
{
  for d in /etc/systemd /etc/systemd/system $wants /etc/modules-load.d /usr /usr/local /usr/local/sbin; do
    case "$(kind "$d")" in
      directory) ;;
      "") echo "mkdir $d" ;;
      *) refuse "$image: $d on $where is a $(kind "$d"), not a directory" ;;
    esac
  done
  place() { # place SOURCE DIR NAME MODE: a regular file, root:root
    case "$(kind "$2/$3")" in regular|symlink) echo "rm $2/$3" ;; "") ;; *) refuse "$image: $2/$3 on $where is a $(kind "$2/$3")" ;; esac
    echo "cd $2"; echo "write $1 $3"; echo "sif $3 mode 0100$4"; echo "sif $3 uid 0"; echo "sif $3 gid 0"
  }
  place agent /usr/local/sbin vmnet-agent 755
  place unit /etc/systemd/system vmnet-agent.service 644
  place modules /etc/modules-load.d vmnet.conf 644
  case "$(kind $wants/vmnet-agent.service)" in regular|symlink) echo "rm $wants/vmnet-agent.service" ;; esac
  echo "symlink $wants/vmnet-agent.service /etc/systemd/system/vmnet-agent.service"
} > script
log "writing the agent into $where (ext4 at byte $offset)"
written=$(debugfs -w -f script "$fs" 2>&1) || { echo "$written" >&2; exit 1; }

# 4. Read back: the same bytes, modes and owners, the link; then a clean e2fsck.
fail() { echo "images/agent-disk: baking failed: $*" >&2; echo "debugfs said:" >&2; echo "$written" >&2; exit 1; }
readback() { # readback PATH COPY MODE
  debugfs -R "dump $1 $2" "$fs" 2>/dev/null; [ -f "$2" ] && cmp -s "$2" "$3" || fail "$1 does not hold $3"
  debugfs -R "stat $1" "$fs" 2>/dev/null | grep -qE "Type: regular +Mode: +0$4 " || fail "$1 is not a regular file with mode $4"
  debugfs -R "stat $1" "$fs" 2>/dev/null | grep -qE "^User: +0 +Group: +0 " || fail "$1 is not owned by root:root"
}
readback /usr/local/sbin/vmnet-agent back.agent agent 755
readback /etc/systemd/system/vmnet-agent.service back.unit unit 644
readback /etc/modules-load.d/vmnet.conf back.modules modules 644
debugfs -R "stat $wants/vmnet-agent.service" "$fs" 2>/dev/null | grep -q 'link dest: "/etc/systemd/system/vmnet-agent.service"' \
  || fail "$wants/vmnet-agent.service is not a link to /etc/systemd/system/vmnet-agent.service"
check=$(e2fsck -fn "$fs" 2>&1) || fail "e2fsck -fn finds errors after baking:
$check"

log "converting to qcow2: $out"
qemu-img convert -f raw -O qcow2 disk.raw out.qcow2
mv out.qcow2 "$out"
echo "$out"
