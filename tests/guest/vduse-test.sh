#!/usr/bin/env bash
# vduse-test.sh --program PATH [options] - boot a Linux 6.12 guest under
# QEMU TCG and run vblk-vduse inside it through VDUSE + virtio_vdpa (see
# vduse-workload.sh for what is checked).
#
# Options:
#   --program PATH  the vblk-vduse binary to test (required)
#   --cache DIR     prepare.sh cache (default ${VBLK_GUEST_CACHE:-/var/cache/vblk-guest})
#   --count N       blkcheck verify writes per disk (default 300)
#   --smp N         guest CPUs (default 2; the 2-queue part needs 2)
#   --timeout SECS  guest timeout (default 900)
#   --keep          keep the work directory (console log, initramfs)
#   --no-prepare    do not run prepare.sh (the cache must be ready)
# Exit status: 0 pass, 1 fail, 77 skipped (no QEMU / kernel cache and
# prepare.sh cannot make one).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${VBLK_GUEST_CACHE:-/var/cache/vblk-guest}
PROGRAM= COUNT=300 SMP=2 TIMEOUT=900 KEEP=0 PREPARE=1
. "$HERE/common.sh"
while (($#)); do
    common_opt "$@"
    ((NOPT)) && { shift "$NOPT"; continue; }
    case $1 in
    --smp) SMP=${2:?--smp needs a value}; shift 2 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
check_program_opts
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

guest_cache_ready
for m in vdpa vduse virtio_vdpa; do
    grep -q "^$m\.ko" "$CACHE/modules/order" || die "$CACHE has no $m module (is the kernel 6.12?)"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vblk-vduse-test.XXXXXX")
ok=0
cleanup() {
    drop_work
}
trap cleanup EXIT

say "building blkcheck"
gcc -std=c11 -static -O2 -pthread -Wall -Wextra -o "$WORK/blkcheck" "$HERE/blkcheck.c"
cp "$PROGRAM" "$WORK/vblk-vduse"
"$HERE/mkinitramfs.sh" "$CACHE" "$WORK/initrd.cpio.gz" "$HERE/vduse-workload.sh" \
    "$WORK/vblk-vduse" "$WORK/blkcheck" "$HERE/vduse-guest.sh=/usr/share/vblk-guest/vduse.sh"

SEED=$((RANDOM * 32768 + RANDOM))
say "booting: $SMP CPUs, verify count $COUNT, seed $SEED"
rc=0
"$HERE/run-guest.sh" --cache "$CACHE" --initrd "$WORK/initrd.cpio.gz" --smp "$SMP" --mem 1G \
    --timeout "$TIMEOUT" --log "$WORK/console.log" --quiet \
    --env "VERIFY_COUNT=$COUNT" --env "PATTERN_SEED=$SEED" --env "VBLK_GUEST_TIMEOUT=$TIMEOUT" || rc=$?
grep -a -E '^(=== |WORKLOAD FAIL|GUEST-RESULT|blkcheck .*(PASS|FAIL)|vblk-vduse|queue [01] served|ring:|serial|cache_type)' \
    "$WORK/console.log" | tr -d '\r' >&2 || true
if ((rc != 0)); then
    say "FAIL (run-guest.sh exit $rc); console log: $WORK/console.log"
    exit 1
fi
ok=1
say "PASS"
