#!/usr/bin/env bash
# vduse-zoned-test.sh --program PATH [options] - boot a Linux 6.12 guest
# under QEMU TCG and run vblk-vduse --zoned inside it through VDUSE and
# virtio_vdpa: the kernel's virtio_blk driver sees a host-managed zoned disk
# (see vduse-zoned-workload.sh for what is checked: blkzone, the write
# pointer rules, f2fs, a restart), then SECURE_ERASE, multi-range DISCARD
# and WRITE_ZEROES with and without UNMAP on a regular disk, checked in
# its image.
#
# Options:
#   --program PATH  the vblk-vduse binary to test (required)
#   --vhost-user PATH, --bench PATH
#                   vblk-vhost-user and vblk-bench for the passthrough part
#                   (default: next to --program, and bench/ below it)
#   --cache DIR     its own prepare.sh cache, with the f2fs, zonefs and
#                   null_blk modules (default ${VBLK_GUEST_ZONED_CACHE:-/var/cache/vblk-guest-zoned})
#   --timeout SECS  guest timeout (default 600)
#   --keep          keep the work directory (console log, initramfs)
#   --no-prepare    do not run prepare.sh (the cache must be ready)
# Exit status: 0 pass, 1 fail, 77 skipped (no QEMU / kernel cache and
# prepare.sh cannot make one).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${VBLK_GUEST_ZONED_CACHE:-/var/cache/vblk-guest-zoned}
PROGRAM= COUNT=1 TIMEOUT=600 KEEP=0 PREPARE=1 VHOST_USER= BENCH=
. "$HERE/common.sh"
while (($#)); do
    case $1 in
    --program) PROGRAM=${2:?--program needs a value}; shift 2 ;;
    --vhost-user) VHOST_USER=${2:?--vhost-user needs a value}; shift 2 ;;
    --bench) BENCH=${2:?--bench needs a value}; shift 2 ;;
    --cache) CACHE=${2:?--cache needs a value}; shift 2 ;;
    --timeout) TIMEOUT=${2:?--timeout needs a value}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --no-prepare) PREPARE=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
check_program_opts
VHOST_USER=${VHOST_USER:-$(dirname "$PROGRAM")/vblk-vhost-user}
BENCH=${BENCH:-$(dirname "$PROGRAM")/bench/vblk-bench}
[[ -x $VHOST_USER && -x $BENCH ]] || die "need vblk-vhost-user and vblk-bench (--vhost-user, --bench)"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export VBLK_GUEST_EXTRA_MODULES="f2fs zonefs null_blk"

guest_cache_ready
for m in vdpa vduse virtio_vdpa f2fs; do
    grep -q "^$m\.ko" "$CACHE/modules/order" || die "$CACHE has no $m module (is the kernel 6.12?)"
done
for t in blkzone blkdiscard fallocate mkfs.f2fs fsck.f2fs; do
    command -v "$t" >/dev/null || { say "SKIP: $t not installed (scripts/deps.sh test)"; exit 77; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vblk-vduse-zoned.XXXXXX")
ok=0
trap drop_work EXIT

cp "$PROGRAM" "$WORK/vblk-vduse"
extra=("$WORK/vblk-vduse" "$HERE/vduse-guest.sh=/usr/share/vblk-guest/vduse.sh")
# util-linux's blkdiscard and fallocate, not busybox's: same paths as on the host
for t in blkzone blkdiscard fallocate mkfs.f2fs fsck.f2fs; do
    p=$(command -v "$t")
    extra+=("$p=$p")
done
# passthrough: vblk-vhost-user and vblk-bench --zoned against null_blk in the guest
extra+=("$VHOST_USER" "$BENCH")
"$HERE/mkinitramfs.sh" "$CACHE" "$WORK/initrd.cpio" "$HERE/vduse-zoned-workload.sh" "${extra[@]}"

start=$(now)
rc=0
"$HERE/run-guest.sh" --cache "$CACHE" --initrd "$WORK/initrd.cpio" --smp 2 --mem 1536M \
    --timeout "$TIMEOUT" --log "$WORK/console.log" --quiet \
    --env "VBLK_GUEST_TIMEOUT=$TIMEOUT" || rc=$?
grep -a -E '^(=== |WORKLOAD FAIL|GUEST-RESULT|queue/zoned|nr_zones|zone at|512 KiB|image|multi-range|SECURE_ERASE|passthrough|zoned:)' \
    "$WORK/console.log" | tr -d '\r' >&2 || true
if ((rc != 0)); then
    say "FAIL (run-guest.sh exit $rc) after $(elapsed "$start") s; console log: $WORK/console.log"
    exit 1
fi
ok=1
say "PASS in $(elapsed "$start") s"
