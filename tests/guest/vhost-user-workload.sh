# Guest side of vhost-user-test.sh: checks /dev/vda, served by vblk-vhost-user
# on the host. Settings arrive as environment variables from the kernel
# command line:
#   CASE            name of the case (for messages)
#   MODE            full | readonly | busy (writes while the host restarts
#                   the server or migrates the guest)
#   EXPECT_PACKED   0 or 1: VIRTIO_F_RING_PACKED negotiated
#   EXPECT_QUEUES   blk-mq hardware queues expected (and all of them used)
#   SERIAL          expected /sys/block/vda/serial
#   VERIFY_COUNT    blkcheck verify writes
#   PATTERN_SEED    seed of the pattern the host checks afterwards
#   DO_FS           1: mkfs + mount + files + umount + e2fsck
. /usr/share/vblk-guest/lib.sh
set -u

step "vhost-user-blk case $CASE ($MODE)"
wait_dev /dev/vda 30
run blkcheck info /dev/vda
run blkcheck features vda

step "negotiated features"
run blkcheck features vda 32 # VERSION_1
run blkcheck features vda 28 # INDIRECT_DESC
run blkcheck features vda 29 # EVENT_IDX
packed=$(cut -c35 /sys/block/vda/device/features)
echo "RING_PACKED (bit 34): $packed"
[ "$packed" = "$EXPECT_PACKED" ] || guest_fail "bit 34 of features is '$packed', expected $EXPECT_PACKED"
serial=$(cat /sys/block/vda/serial)
echo "serial: '$serial'"
[ "$serial" = "$SERIAL" ] || guest_fail "serial is '$serial', expected '$SERIAL'"
nq=$(ls -d /sys/block/vda/mq/* | wc -l)
echo "blk-mq hardware queues: $nq"
[ "$nq" -eq "$EXPECT_QUEUES" ] || guest_fail "expected $EXPECT_QUEUES blk-mq queues, found $nq"

if [ "$MODE" = readonly ]; then
    step "read-only disk"
    [ "$(cat /sys/block/vda/ro)" = 1 ] || guest_fail "/sys/block/vda/ro is not 1"
    run blkcheck features vda 5 # RO
    run blkcheck readonly /dev/vda
    run blkcheck pattern-check /dev/vda 0 8M "$PATTERN_SEED"
    step "done"
    exit 0
fi

# With CONFIG_WCE, switch to write-back so that fsync sends VIRTIO_BLK_T_FLUSH.
if blkcheck features vda 11 >/dev/null && [ "$(cat /sys/block/vda/cache_type)" != "write back" ]; then
    echo "write back" >/sys/block/vda/cache_type || guest_fail "cannot set cache_type to write back"
fi
echo "cache_type: $(cat /sys/block/vda/cache_type)"

if [ "$MODE" = busy ]; then
    step "writes while the host restarts the server or migrates the guest"
    run blkcheck verify /dev/vda --count "$VERIFY_COUNT" --threads 4 --max 256K
    run blkcheck pattern-write /dev/vda 56M 8M "$PATTERN_SEED"
    run blkcheck pattern-check /dev/vda 56M 8M "$PATTERN_SEED"
    if dmesg | grep -i -E 'I/O error|blk_update_request|critical'; then
        guest_fail "the kernel logged I/O errors"
    fi
    step "done"
    exit 0
fi

step "data verification: 512 B .. 1 MiB writes, read back"
threads=$((EXPECT_QUEUES * 2))
run blkcheck verify /dev/vda --count "$VERIFY_COUNT" --threads "$threads" --min 512 --max 1M
grep -E 'virtio[0-9]+-req' /proc/interrupts
# Every queue must have carried I/O: per-queue interrupt totals.
grep -E 'virtio[0-9]+-req' /proc/interrupts | awk -v n="$(nproc)" '
    { s = 0; for (i = 2; i <= n + 1; i++) s += $i; print $NF, s; if (s == 0) idle++ }
    END { exit idle ? 1 : 0 }' || guest_fail "a virtqueue got no interrupts: not every queue carried I/O"

step "flush / discard / write-zeroes"
run blkcheck flush /dev/vda
run blkcheck features vda 13 # DISCARD
run blkcheck discard /dev/vda 32M 8M
run blkcheck features vda 14 # WRITE_ZEROES
run blkcheck zeroout /dev/vda 40M 4M

step "pattern for the host to check (56M..64M)"
run blkcheck pattern-write /dev/vda 56M 8M "$PATTERN_SEED"
run blkcheck pattern-check /dev/vda 56M 8M "$PATTERN_SEED"

if [ "$DO_FS" = 1 ]; then
    step "ext4 on the first 48 MiB"
    run mkfs.ext4 -F -q -L vblkvu /dev/vda 48M
    mkdir -p /mnt
    run mount -t ext4 /dev/vda /mnt
    i=1
    while [ $i -le 10 ]; do
        run dd if=/dev/urandom of=/mnt/file$i bs=64k count=$i 2>/dev/null
        i=$((i + 1))
    done
    mkdir -p /mnt/a/b && echo hello >/mnt/a/b/c
    (cd /mnt && sha256sum file* a/b/c >/tmp/sums)
    run sync
    run umount /mnt
    run mount -t ext4 -o ro /dev/vda /mnt
    (cd /mnt && sha256sum -c /tmp/sums) || guest_fail "file contents changed across umount/mount"
    run umount /mnt
    run e2fsck -fn /dev/vda
fi
if dmesg | grep -i -E 'I/O error|blk_update_request'; then
    guest_fail "the kernel logged I/O errors"
fi
step "done"
