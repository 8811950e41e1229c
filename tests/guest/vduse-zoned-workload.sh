# vduse-zoned-workload.sh - runs inside the test guest (see vduse-zoned-test.sh).
#
# vblk-vduse --zoned over a file image, through VDUSE and virtio_vdpa to
# the kernel's virtio_blk driver:
#   model    /sys/block/vdX/queue/zoned is host-managed, nr_zones and
#            chunk_sectors match the options
#   report   blkzone report lists every zone, the conventional ones first
#   ops      blkzone open/close/finish/reset move a zone through its states
#   rules    a write off the write pointer fails with an I/O error; data
#            written at write pointers reads back; past the write pointer
#            reads zeros
#   f2fs     mkfs.f2fs -m, files written, unmounted, remounted, fsck.f2fs;
#            then vblk-vduse restarts on the same image: the zones (and the
#            files) are still there
# and the request types of a regular disk that only unit tests reach
# otherwise, on an image that lives on ext4 (itself on a vblk-vduse disk),
# so that punched holes and zeroed ranges can be told apart:
#   types    blkdiscard --secure (SECURE_ERASE: Linux 6.12 puts its ranges
#            where the device cannot read them through VDUSE, so it must
#            fail without erasing anything), a blkdiscard that starts off
#            the discard granularity (two bios the block layer merges into
#            one multi-range DISCARD, counted by the device),
#            fallocate --punch-hole (WRITE_ZEROES with UNMAP: the image's
#            blocks are freed) and --zero-range (WRITE_ZEROES without UNMAP:
#            they stay allocated); after vblk-vduse exits, the image equals
#            the original with exactly those ranges zeroed. SECURE_ERASE
#            done right and GET_LIFETIME (Linux 6.12's virtio_blk never
#            sends it): vblk-bench, tests/integration/requests-bench.sh.
# and passthrough of a host zoned device: null_blk zoned=1 in this guest as
# vblk-vduse's --image (blkzone, f2fs), and through vblk-vhost-user to
# vblk-bench --zoned (appends racing on two queues).
. /usr/share/vblk-guest/lib.sh
. /usr/share/vblk-guest/vduse.sh # vduse_attach, start_vduse, vduse_wait_exit
set -u
ZS_MB=4
# util-linux's, by path: busybox's sh prefers its own applets of those names
# (vduse-zoned-test.sh copies them to their Debian paths)
BLKDISCARD=/usr/sbin/blkdiscard
FALLOCATE=/usr/bin/fallocate

attach() {
    vduse_attach "$1"
    D=$DISK_NAME
}
detach() {
    run vdpa dev del "$1"
    vduse_wait_exit "$1" 100
    [ "$RC" -eq 0 ] || guest_fail "vblk-vduse $1 exited with status $RC"
}
# zcond DISK SECTOR: the condition blkzone prints for the zone at SECTOR ("em", "oi", ...)
zcond() {
    blkzone report -o "$2" -c 1 "$1" | sed -n 's/.*zcond: *[0-9]*(\([a-z]*\)).*/\1/p'
}
expect_cond() {
    _c=$(zcond "$DISK" "$1")
    [ "$_c" = "$2" ] || { blkzone report -o "$1" -c 1 "$DISK"; guest_fail "zone at $1 after $3: '$_c', expected '$2'"; }
    echo "zone at $1 after $3: $_c"
}

step "model: 512 MiB image, ${ZS_MB} MiB zones, 8 conventional"
run truncate -s 512M /tmp/z.img
ZONED="zone-size=${ZS_MB}M,conv=8,max-open=12,max-active=16,max-append=256K"
start_vduse z --image /tmp/z.img --zoned "$ZONED"
attach z
model=$(cat /sys/block/$D/queue/zoned)
[ "$model" = host-managed ] || guest_fail "queue/zoned is '$model'"
echo "queue/zoned: $model"
nz=$(cat /sys/block/$D/queue/nr_zones)
[ "$nz" -eq 128 ] || guest_fail "nr_zones is $nz, expected 128"
cs=$(cat /sys/block/$D/queue/chunk_sectors)
[ "$cs" -eq $((ZS_MB * 2048)) ] || guest_fail "chunk_sectors is $cs"
echo "nr_zones $nz, zone sectors $cs, max_open $(cat /sys/block/$D/queue/max_open_zones), max_active $(cat /sys/block/$D/queue/max_active_zones)"

step "report"
blkzone report "$DISK" >/tmp/report || guest_fail "blkzone report failed"
n=$(wc -l </tmp/report)
[ "$n" -eq 128 ] || guest_fail "blkzone report lists $n zones"
nconv=$(grep -c CONVENTIONAL /tmp/report)
[ "$nconv" -eq 8 ] || guest_fail "$nconv conventional zones"
nseq=$(grep -c 'SEQ_WRITE_REQUIRED' /tmp/report)
[ "$nseq" -eq 120 ] || guest_fail "$nseq sequential zones"
head -n 10 /tmp/report

step "ops: open, close, write, finish, reset"
Z=$((8 * ZS_MB * 2048))           # first sequential zone
Z2=$((Z + ZS_MB * 2048))
run blkzone open -o "$Z" -c 1 "$DISK"
expect_cond "$Z" oe "open"
run blkzone close -o "$Z" -c 1 "$DISK"
expect_cond "$Z" em "close of an unwritten zone"
run dd if=/dev/urandom of=/tmp/blk bs=64k count=4 2>/dev/null
run dd if=/tmp/blk of="$DISK" bs=64k count=4 seek=$((Z / 128)) oflag=direct 2>/dev/null
expect_cond "$Z" oi "a write"
run blkzone close -o "$Z" -c 1 "$DISK"
expect_cond "$Z" cl "close"
run blkzone finish -o "$Z" -c 1 "$DISK"
expect_cond "$Z" fu "finish"
run blkzone reset -o "$Z" -c 1 "$DISK"
expect_cond "$Z" em "reset"

step "rules: write pointer, read-back, read past the write pointer"
run dd if=/tmp/blk of="$DISK" bs=64k count=4 seek=$((Z2 / 128)) oflag=direct 2>/dev/null
# 256 KiB in: a write 64 KiB further on is not at the write pointer
if dd if=/tmp/blk of="$DISK" bs=64k count=1 seek=$((Z2 / 128 + 5)) oflag=direct 2>/tmp/dd.err; then
    guest_fail "a write off the write pointer succeeded"
fi
cat /tmp/dd.err
grep -qi -e "Input/output error" -e "I/O error" /tmp/dd.err || guest_fail "the unaligned write did not fail with an I/O error"
wp=$(blkzone report -o "$Z2" -c 1 "$DISK" | sed -n 's/.*wptr 0x\([0-9a-f]*\).*/\1/p')
w=$((0x$wp))
[ $w -lt $Z2 ] || w=$((w - Z2)) # blkzone prints it relative to the zone start
[ $w -eq 512 ] || guest_fail "write pointer 0x$wp after 256 KiB, expected 512 sectors in"
run dd if=/tmp/blk of="$DISK" bs=64k count=4 seek=$((Z2 / 128 + 4)) oflag=direct 2>/dev/null
dd if="$DISK" of=/tmp/back bs=64k count=8 skip=$((Z2 / 128)) iflag=direct 2>/dev/null
cat /tmp/blk /tmp/blk | cmp - /tmp/back || guest_fail "data written at the write pointer reads back wrong"
[ "$(dd if="$DISK" bs=64k count=4 skip=$((Z2 / 128 + 8)) iflag=direct 2>/dev/null | tr -d '\000' | wc -c)" -eq 0 ] ||
    guest_fail "past the write pointer is not zeros"
echo "512 KiB at the write pointer read back; past it: zeros"
run blkzone reset "$DISK"
expect_cond "$Z2" em "reset of every zone"

step "f2fs: mkfs.f2fs -m, files, remount"
run mkfs.f2fs -q -f -m "$DISK"
mkdir -p /mnt
run mount -t f2fs "$DISK" /mnt
i=1
while [ $i -le 6 ]; do
    run dd if=/dev/urandom of=/mnt/file$i bs=256k count=$((i * 4)) 2>/dev/null
    i=$((i + 1))
done
(cd /mnt && sha256sum file* >/tmp/sums)
run umount /mnt
run fsck.f2fs "$DISK"
run mount -t f2fs "$DISK" /mnt
(cd /mnt && sha256sum -c /tmp/sums >/dev/null) || guest_fail "files changed across umount/mount"
run umount /mnt
blkzone report "$DISK" | grep -v CONVENTIONAL | grep -v '(em)' | head -5
blkzone report "$DISK" >/tmp/report.before
detach z

step "restart: the same image and zone metadata"
start_vduse z --image /tmp/z.img --zoned "$ZONED"
attach z
blkzone report "$DISK" >/tmp/report.after
# open zones come back closed: compare write pointers only
sed 's/zcond.*//' /tmp/report.before >/tmp/a
sed 's/zcond.*//' /tmp/report.after >/tmp/b
cmp /tmp/a /tmp/b || { diff /tmp/a /tmp/b | head; guest_fail "write pointers changed across a restart"; }
run mount -t f2fs "$DISK" /mnt
(cd /mnt && sha256sum -c /tmp/sums >/dev/null) || guest_fail "files differ after the restart"
run umount /mnt
run fsck.f2fs "$DISK"
detach z

step "types: an image on ext4 on a vblk-vduse disk"
run truncate -s 128M /tmp/st.img
start_vduse st --image /tmp/st.img
attach st
ST=$DISK
run mkfs.ext4 -F -q "$ST"
mkdir -p /img
run mount -t ext4 "$ST" /img
run dd if=/dev/urandom of=/img/t.img bs=1M count=40 2>/dev/null
run cp /img/t.img /tmp/orig.img
PIDST=$PID
start_vduse t --image /img/t.img --discard-segments 8 --discard-max 16M --secure-erase
attach t
[ "$(cat /sys/block/$D/queue/max_discard_segments)" -eq 8 ] || guest_fail "max_discard_segments"
[ "$(cat /sys/block/$D/queue/discard_max_hw_bytes)" -eq 16777216 ] || guest_fail "discard_max_hw_bytes"
blocks() { stat -c %b /img/t.img; }
b0=$(blocks)
# A start 2 KiB past the 4 KiB discard granularity: the block layer cuts
# the first bio at the granularity and merges both into one DISCARD of two
# ranges (max_discard_segments 8), which the device counts.
run "$BLKDISCARD" -o $((8 * 1048576 + 2048)) -l 6M "$DISK"
# Linux 6.12's virtio_blk sends SECURE_ERASE ranges in a device-writable
# buffer (type 14 lacks the VIRTIO_BLK_T_OUT bit that picks the direction);
# through VDUSE's bounce buffer the device cannot see them and must refuse
# the request without erasing anything. A fixed driver gets the range
# erased. Either way the image is checked below.
if "$BLKDISCARD" --secure -o 16M -l 2M "$DISK" 2>/tmp/se.err; then
    SE_RANGE=16:2
    echo "SECURE_ERASE: done by the driver"
else
    cat /tmp/se.err
    grep -qi -e "Input/output error" -e "I/O error" /tmp/se.err || guest_fail "SECURE_ERASE failed oddly"
    SE_RANGE=
    echo "SECURE_ERASE: refused (ranges in a device-writable buffer); the image must be untouched"
fi
b1=$(blocks)
run "$FALLOCATE" --punch-hole -o 24M -l 4M "$DISK"
b2=$(blocks)
run "$FALLOCATE" --zero-range -o 32M -l 4M "$DISK"
b3=$(blocks)
echo "image blocks: $b0 at start, $b1 after DISCARD + SECURE_ERASE, $b2 after WRITE_ZEROES+UNMAP, $b3 after WRITE_ZEROES"
# the 6 MiB discard is punched; the 4 MiB UNMAP write-zeroes frees its
# blocks; the one without UNMAP keeps them (ZERO_RANGE). ext4 may spend a
# block or two of 1 KiB on splitting the extent tree: 64 sectors of slack.
[ $((b0 - b1)) -ge $((6 * 2048 - 64)) ] || guest_fail "DISCARD freed $((b0 - b1)) blocks"
[ $((b1 - b2)) -ge $((4 * 2048 - 64)) ] || guest_fail "WRITE_ZEROES with UNMAP freed $((b1 - b2)) blocks"
[ $((b2 - b3)) -lt 64 ] || guest_fail "WRITE_ZEROES without UNMAP freed $((b2 - b3)) blocks"
detach t
grep "queue 0 stopped" /tmp/t.log
mr=$(sed -n 's/.*queue 0 stopped: .*, \([0-9]*\) multi-range.*/\1/p' /tmp/t.log)
[ "${mr:-0}" -gt 0 ] || guest_fail "no multi-range DISCARD reached the device"
echo "multi-range requests: $mr"
step "types: the image after vblk-vduse exited"
# ranges in KiB: the discard, SECURE_ERASE if it was done, the two write-zeroes
for r in 8194:6144 ${SE_RANGE:+16384:2048} 24576:4096 32768:4096; do
    run dd if=/dev/zero of=/tmp/orig.img bs=1K seek=${r%:*} count=${r#*:} conv=notrunc 2>/dev/null
done
cmp /tmp/orig.img /img/t.img || guest_fail "the image is not the original with exactly the requested ranges zeroed"
echo "image = original with [8M+2K,14M+2K) ${SE_RANGE:+[16M,18M) }[24M,28M) [32M,36M) zeroed, nothing else changed"
run umount /img
PID=$PIDST
detach st

step "passthrough: null_blk zoned=1 as the image"
rmmod null_blk 2>/dev/null
run insmod /modules/null_blk.ko nr_devices=1 zoned=1 zone_size=4 zone_nr_conv=8 gb=1 memory_backed=1 zone_max_open=12 zone_max_active=16
wait_dev /dev/nullb0
[ "$(cat /sys/block/nullb0/queue/zoned)" = host-managed ] || guest_fail "null_blk is not zoned"
start_vduse p --image /dev/nullb0
attach p
[ "$(cat /sys/block/$D/queue/zoned)" = host-managed ] || guest_fail "passthrough disk is not zoned"
[ "$(cat /sys/block/$D/queue/nr_zones)" -eq 256 ] || guest_fail "passthrough nr_zones"
[ "$(cat /sys/block/$D/queue/max_open_zones)" -eq 12 ] || guest_fail "passthrough max_open_zones"
blkzone report "$DISK" | sed 's/zcond.*//' >/tmp/pr.vd
blkzone report /dev/nullb0 | sed 's/zcond.*//' >/tmp/pr.nb
cmp /tmp/pr.vd /tmp/pr.nb || guest_fail "the guest's report differs from null_blk's"
echo "passthrough: blkzone report of $DISK = that of /dev/nullb0 (256 zones, 8 conventional)"
P=$((8 * 8192))
run blkzone open -o "$P" -c 1 "$DISK"
[ "$(zcond /dev/nullb0 $P)" = oe ] || guest_fail "ZONE_OPEN did not reach null_blk"
run dd if=/tmp/blk of="$DISK" bs=64k count=4 seek=$((P / 128)) oflag=direct 2>/dev/null
if dd if=/tmp/blk of="$DISK" bs=64k count=1 seek=$((P / 128 + 6)) oflag=direct 2>/dev/null; then
    guest_fail "passthrough: a write off the write pointer succeeded"
fi
dd if=/dev/nullb0 of=/tmp/back bs=64k count=4 skip=$((P / 128)) iflag=direct 2>/dev/null
cmp /tmp/blk /tmp/back || guest_fail "null_blk does not hold the data written through the guest"
run blkzone finish -o "$P" -c 1 "$DISK"
[ "$(zcond /dev/nullb0 $P)" = fu ] || guest_fail "ZONE_FINISH did not reach null_blk"
run blkzone reset "$DISK"
[ "$(zcond /dev/nullb0 $P)" = em ] || guest_fail "ZONE_RESET_ALL did not reach null_blk"
echo "passthrough: open, write, unaligned write, finish, reset seen on /dev/nullb0"
run mkfs.f2fs -q -f -m "$DISK"
run mount -t f2fs "$DISK" /mnt
run dd if=/dev/urandom of=/mnt/p1 bs=256k count=16 2>/dev/null
(cd /mnt && sha256sum p1 >/tmp/psums)
run umount /mnt
run mount -t f2fs "$DISK" /mnt
(cd /mnt && sha256sum -c /tmp/psums >/dev/null) || guest_fail "passthrough f2fs file changed"
run umount /mnt
detach p
step "passthrough: vblk-bench --zoned (appends racing on 2 queues) via vhost-user"
run blkzone reset /dev/nullb0
vblk-vhost-user --socket /tmp/vu.sock --image /dev/nullb0 --queues 2 --quiet >/tmp/vu.log 2>&1 &
VPID=$!
wait_for -S /tmp/vu.sock 10
vblk-bench --socket /tmp/vu.sock --zoned --queues 2 --iodepth 8 --timeout 60 ||
    { cat /tmp/vu.log; guest_fail "vblk-bench --zoned against null_blk failed"; }
kill "$VPID"
wait "$VPID"
step "done"
