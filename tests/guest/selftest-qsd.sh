#!/usr/bin/env bash
# selftest-qsd.sh [options] - prove the guest test infrastructure against the
# reference backend, qemu-storage-daemon (QSD).
#
#   vhost-user: QSD on the host exports a 64 MiB raw file as vhost-user-blk
#     with 2 queues, and a 16 MiB file read-only; a 2-CPU guest runs blkcheck
#     verify/flush/discard/zeroout/pattern-write and an ext4 mkfs/mount/write/
#     umount/e2fsck cycle on the first, and checks the second is read-only and
#     holds the pattern the host wrote; then the host checks the pattern and
#     the file system in the image file, and QSD's trace for WRITE_ZEROES.
#   vduse: inside the guest, load the VDUSE modules, check /dev/vduse/control,
#     run QSD's vduse-blk export of a tmpfs file, attach it with
#     `vdpa dev add`, and run blkcheck on the resulting /dev/vda.
#
# Options:
#   --cache DIR     prepare.sh cache (default ${VBLK_GUEST_CACHE:-/var/cache/vblk-guest})
#   --only NAME     run only one part: vhost-user or vduse
#   --count N       blkcheck verify writes per run (default 1000)
#   --timeout SECS  per-guest timeout (default 600)
#   --keep          keep the work directory (logs, image, initramfs)
#   --no-prepare    do not run prepare.sh (cache must be ready)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${VBLK_GUEST_CACHE:-/var/cache/vblk-guest}
ONLY='' COUNT=1000 TIMEOUT=600 KEEP=0 PREPARE=1
. "$HERE/common.sh"
while (($#)); do
    case $1 in
    --cache) CACHE=${2:?}; shift 2 ;;
    --only) ONLY=${2:?}; shift 2 ;;
    --count) COUNT=${2:?}; shift 2 ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --no-prepare) PREPARE=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
case $ONLY in ""|vhost-user|vduse) ;; *) die "--only takes vhost-user or vduse" ;; esac
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vblk-selftest.XXXXXX")
QSD_PID=
ok=0
cleanup() {
    if [[ -n $QSD_PID ]] && kill -0 "$QSD_PID" 2>/dev/null; then
        kill "$QSD_PID" 2>/dev/null || true
        wait "$QSD_PID" 2>/dev/null || true
    fi
    drop_work
}
trap cleanup EXIT
trap 'exit 130' INT TERM

T_ALL=$(now)
declare -a SUMMARY=()

# ------------------------------------------------------------------ setup
if ((PREPARE)); then
    t=$(now)
    "$HERE/prepare.sh" "$CACHE"
    SUMMARY+=("prepare: $(elapsed "$t")s")
fi
[[ -s $CACHE/vmlinuz ]] || die "$CACHE/vmlinuz missing (run prepare.sh)"

say "building blkcheck"
gcc -std=c11 -static -O2 -pthread -Wall -Wextra -o "$WORK/blkcheck" "$HERE/blkcheck.c"
SEED=$((RANDOM * 32768 + RANDOM))
say "pattern seed $SEED, verify count $COUNT, work directory $WORK"

# ------------------------------------------------------ part 1: vhost-user
run_vhost_user() {
    local img=$WORK/vu-disk.img sock=$WORK/vu.sock
    local roimg=$WORK/vu-ro.img rosock=$WORK/vu-ro.sock
    truncate -s 64M "$img"
    truncate -s 16M "$roimg"
    "$WORK/blkcheck" pattern-write "$roimg" 0 16M "$((SEED + 1))" >/dev/null

    cat >"$WORK/vu-workload.sh" <<'EOF'
. /usr/share/vblk-guest/lib.sh
set -u
step "vhost-user-blk disks"
wait_dev /dev/vda
wait_dev /dev/vdb
# the writable 64 MiB disk is normally vda, the read-only one vdb: go by
# the ro flag rather than by probe order
RO=vdb RW=vda
[ "$(cat /sys/block/vdb/ro)" = 1 ] || { RO=vda RW=vdb; }
[ "$RW" = vda ] || guest_fail "expected the writable disk to be vda, it is $RW"

step "read-only disk /dev/$RO"
run blkcheck features $RO 5                  # RO
run blkcheck readonly /dev/$RO
run blkcheck pattern-check /dev/$RO 0 16M "$((PATTERN_SEED + 1))"

step "writable disk /dev/vda"
run blkcheck info /dev/vda
run blkcheck features vda
run blkcheck features vda 32                 # VERSION_1
run blkcheck features vda 12                 # MQ
if blkcheck features vda 11 && [ "$(cat /sys/block/vda/cache_type)" != "write back" ]; then
    # CONFIG_WCE: switch to write-back so that fsync sends VIRTIO_BLK_T_FLUSH
    # (a write-through queue completes flushes without asking the device)
    echo "write back" >/sys/block/vda/cache_type || guest_fail "cannot set cache_type to write back"
fi
echo "cache_type: $(cat /sys/block/vda/cache_type)"
nq=$(ls -d /sys/block/vda/mq/* | wc -l)
echo "blk-mq hardware queues: $nq"
[ "$nq" -eq 2 ] || guest_fail "expected 2 blk-mq queues on vda, found $nq"

step "blkcheck verify"
# per-virtqueue interrupt totals of vda (sum of the per-CPU columns)
vdev=$(basename "$(readlink -f /sys/block/vda/device)")
irqs() {
    grep -E " $vdev-req\.[0-9]+\$" /proc/interrupts |
        awk -v n="$(nproc)" '{ s = 0; for (i = 2; i <= n + 1; i++) s += $i; print $NF, s }'
}
irqs >/tmp/irq.before
run blkcheck verify /dev/vda --count "$VERIFY_COUNT" --threads 4
irqs >/tmp/irq.after
echo "interrupts per virtqueue of $vdev during verify:"
paste /tmp/irq.before /tmp/irq.after | awk '
    { d = $4 - $2; print "  " $1, d; if (d <= 0) idle++ } END { exit (NR < 2 || idle) ? 1 : 0 }' ||
    guest_fail "verify did not get completions on both virtqueues of vda"

step "flush / discard / zeroout"
run blkcheck flush /dev/vda
if blkcheck features vda 13; then
    run blkcheck discard /dev/vda 32M 8M
else
    echo "DISCARD not offered: skipping discard"
fi
run blkcheck zeroout /dev/vda 40M 4M

step "pattern for the host to check (56M..64M, outside the file system)"
run blkcheck pattern-write /dev/vda 56M 8M "$PATTERN_SEED"
run blkcheck pattern-check /dev/vda 56M 8M "$PATTERN_SEED"

step "ext4 on the first 48 MiB"
run mkfs.ext4 -F -q -L vblktest /dev/vda 48M
mkdir -p /mnt
run mount -t ext4 /dev/vda /mnt
i=1
while [ $i -le 12 ]; do
    run dd if=/dev/urandom of=/mnt/file$i bs=64k count=$i 2>/dev/null
    i=$((i + 1))
done
mkdir -p /mnt/a/b/c && echo hello >/mnt/a/b/c/d
(cd /mnt && sha256sum file* a/b/c/d >/tmp/sums)
run sync
run umount /mnt
run mount -t ext4 -o ro /dev/vda /mnt
(cd /mnt && sha256sum -c /tmp/sums) || guest_fail "file contents changed across umount/mount"
run umount /mnt
run e2fsck -fn /dev/vda
df_used=$(dumpe2fs -h /dev/vda 2>/dev/null | awk -F: '/^Free blocks/{print $2}')
echo "ext4 free blocks after the test: $df_used"
step "done"
EOF

    say "vhost-user: building initramfs"
    "$HERE/mkinitramfs.sh" "$CACHE" "$WORK/vu.cpio.gz" "$WORK/vu-workload.sh" "$WORK/blkcheck"

    say "vhost-user: starting qemu-storage-daemon on $sock"
    # the trace shows which requests reached the backend: pwritev with
    # flag 0x2 (BDRV_REQ_ZERO_WRITE) is a VIRTIO_BLK_T_WRITE_ZEROES
    qemu-storage-daemon \
        --trace bdrv_co_pwritev_part --trace bdrv_co_preadv_part \
        --blockdev "driver=file,node-name=disk0,filename=$img,discard=unmap" \
        --export "type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path=$sock,writable=on,num-queues=2" \
        --blockdev "driver=file,node-name=ro0,filename=$roimg,read-only=on" \
        --export "type=vhost-user-blk,id=exp1,node-name=ro0,addr.type=unix,addr.path=$rosock,writable=off" \
        >"$WORK/qsd.log" 2>&1 &
    QSD_PID=$!
    local i
    for ((i = 0; i < 300; i++)); do
        [[ -S $sock && -S $rosock ]] && break
        kill -0 "$QSD_PID" 2>/dev/null || { cat "$WORK/qsd.log" >&2; die "qemu-storage-daemon exited"; }
        sleep 0.1
    done
    [[ -S $sock && -S $rosock ]] || die "qemu-storage-daemon did not create $sock and $rosock"

    local t rc=0
    t=$(now)
    "$HERE/run-guest.sh" --cache "$CACHE" --initrd "$WORK/vu.cpio.gz" --smp 2 --mem 512M \
        --timeout "$TIMEOUT" --log "$WORK/vu-guest.log" \
        --env "PATTERN_SEED=$SEED" --env "VERIFY_COUNT=$COUNT" \
        -- -chardev "socket,id=vu0,path=$sock" -device vhost-user-blk-pci,chardev=vu0,num-queues=2 \
        -chardev "socket,id=vu1,path=$rosock" -device vhost-user-blk-pci,chardev=vu1,num-queues=1 || rc=$?
    SUMMARY+=("vhost-user guest: $(elapsed "$t")s")
    kill "$QSD_PID" 2>/dev/null || true
    wait "$QSD_PID" 2>/dev/null || true
    QSD_PID=
    ((rc == 0)) || die "vhost-user guest run failed (exit $rc), log: $WORK/vu-guest.log"

    say "vhost-user: checking the image on the host"
    "$WORK/blkcheck" pattern-check "$img" 56M 8M "$SEED" || die "host pattern check failed"
    e2fsck -fn "$img" >"$WORK/host-e2fsck.log" 2>&1 ||
        { cat "$WORK/host-e2fsck.log" >&2; die "host e2fsck of $img found problems"; }
    say "vhost-user: host e2fsck -fn clean"
    local nr nw nz
    nr=$(grep -c '^bdrv_co_preadv_part' "$WORK/qsd.log" || true)
    nw=$(grep -c '^bdrv_co_pwritev_part' "$WORK/qsd.log" || true)
    nz=$(grep -cE '^bdrv_co_pwritev_part .* flags 0x([0-9a-f]*[2367abef])$' "$WORK/qsd.log" || true)
    if ((nr + nw == 0)); then
        say "vhost-user: warning: no QSD trace output (trace backend missing?); WRITE_ZEROES not confirmed"
    else
        say "vhost-user: backend saw $nr reads, $nw writes, $nz of them zero-writes (WRITE_ZEROES)"
        ((nz > 0)) || die "BLKZEROOUT never reached the backend as WRITE_ZEROES"
    fi
    SUMMARY+=("vhost-user: PASS")
}

# ----------------------------------------------------------- part 2: VDUSE
run_vduse() {
    cat >"$WORK/vduse-workload.sh" <<'EOF'
. /usr/share/vblk-guest/lib.sh
set -u
step "VDUSE"
wait_for -c /dev/vduse/control 5
echo "/dev/vduse/control present"
run vdpa mgmtdev show
if ! command -v qemu-storage-daemon >/dev/null; then
    echo "no qemu-storage-daemon in the initramfs: only the control node was checked"
    exit 0
fi
truncate -s 64M /tmp/vduse.img
qemu-storage-daemon \
    --blockdev driver=file,node-name=d0,filename=/tmp/vduse.img,discard=unmap \
    --export type=vduse-blk,id=e0,node-name=d0,name=vduse0,writable=on,num-queues=2 \
    >/tmp/qsd.log 2>&1 &
qsd=$!
wait_for -c /dev/vduse/vduse0 30
run vdpa dev add name vduse0 mgmtdev vduse
wait_dev /dev/vda 30
run vdpa dev show
run blkcheck info /dev/vda
run blkcheck features vda
nq=$(ls -d /sys/block/vda/mq/* | wc -l)
echo "blk-mq hardware queues: $nq"

step "blkcheck on the VDUSE disk"
run blkcheck verify /dev/vda --count "$VERIFY_COUNT" --threads 4
run blkcheck flush /dev/vda
if blkcheck features vda 13; then
    run blkcheck discard /dev/vda 32M 8M
fi
run blkcheck zeroout /dev/vda 40M 4M
run blkcheck pattern-write /dev/vda 56M 8M "$PATTERN_SEED"
run blkcheck pattern-check /dev/vda 56M 8M "$PATTERN_SEED"
run mkfs.ext4 -F -q /dev/vda 48M
run e2fsck -fn /dev/vda

step "detach and check the backing file"
run vdpa dev del vduse0
kill "$qsd"
wait "$qsd" || true
cat /tmp/qsd.log
run blkcheck pattern-check /tmp/vduse.img 56M 8M "$PATTERN_SEED"
step "done"
EOF

    local extra=("$WORK/blkcheck") note="with qemu-storage-daemon in the guest"
    if [[ ${VBLK_SELFTEST_NO_GUEST_QSD:-0} == 1 ]]; then
        note="control node only"
    else
        extra+=("$(command -v qemu-storage-daemon)")
    fi
    say "vduse: building initramfs ($note)"
    "$HERE/mkinitramfs.sh" "$CACHE" "$WORK/vduse.cpio.gz" "$WORK/vduse-workload.sh" "${extra[@]}"
    local t rc=0
    t=$(now)
    "$HERE/run-guest.sh" --cache "$CACHE" --initrd "$WORK/vduse.cpio.gz" --smp 2 --mem 1G \
        --timeout "$TIMEOUT" --log "$WORK/vduse-guest.log" \
        --env "PATTERN_SEED=$SEED" --env "VERIFY_COUNT=$COUNT" || rc=$?
    SUMMARY+=("vduse guest: $(elapsed "$t")s")
    ((rc == 0)) || die "VDUSE guest run failed (exit $rc), log: $WORK/vduse-guest.log"
    SUMMARY+=("vduse: PASS ($note)")
}

if [[ -z $ONLY || $ONLY == vhost-user ]]; then run_vhost_user; fi
if [[ -z $ONLY || $ONLY == vduse ]]; then run_vduse; fi

ok=1
SUMMARY+=("total: $(elapsed "$T_ALL")s")
say "PASS"
for s in "${SUMMARY[@]}"; do say "  $s"; done
