# Guest side of vblkd-test.sh: /dev/vda is a vblkd export the host resizes
# while the guest runs; /dev/vdb is a second export the host hot-plugs.
# Each "VBLKD-STEP name" line asks the host to act; the guest then waits for
# the result in sysfs. Settings from the kernel command line:
#   PATTERN_SEED  seed of the pattern the host checks in the image afterwards
#   VERIFY_COUNT  blkcheck verify writes per check
#   HOTPLUG       1: the hot-plug steps run
#   CASE          restart: only write to vda and vdb at once while the host
#                 kills vblkd and starts it again
. /usr/share/vblk-guest/lib.sh
set -u

size() { cat "/sys/block/$1/size"; }
# wait_size DEV SECTORS: until the kernel shows the new capacity (60 s).
wait_size() {
    _i=0
    while [ "$(size "$1")" != "$2" ]; do
        _i=$((_i + 1))
        [ "$_i" -le 600 ] || guest_fail "/sys/block/$1/size stayed $(size "$1"), expected $2"
        sleep 0.1
    done
    echo "$1: capacity $2 sectors"
}
ask() { echo "VBLKD-STEP $1"; }

if [ "${CASE:-}" = restart ]; then
    step "writes to two exports while the host restarts vblkd"
    wait_dev /dev/vda 30
    wait_dev /dev/vdb 30
    blkcheck verify /dev/vda --count "$VERIFY_COUNT" --threads 2 --max 256K >/tmp/vda.out 2>&1 &
    a=$!
    blkcheck verify /dev/vdb --count "$VERIFY_COUNT" --threads 2 --max 256K >/tmp/vdb.out 2>&1 &
    b=$!
    ask writing
    wait "$a" || { cat /tmp/vda.out; guest_fail "writes to vda failed"; }
    wait "$b" || { cat /tmp/vdb.out; guest_fail "writes to vdb failed"; }
    cat /tmp/vda.out /tmp/vdb.out
    if dmesg | grep -i -E 'I/O error|blk_update_request|critical'; then
        guest_fail "the kernel logged I/O errors"
    fi
    step "done"
    exit 0
fi

step "vblkd export on vda"
wait_dev /dev/vda 30
[ "$(size vda)" = 131072 ] || guest_fail "vda has $(size vda) sectors, expected 131072 (64 MiB)"
run blkcheck verify /dev/vda --count "$VERIFY_COUNT"
run mkfs.ext4 -q -F /dev/vda
mkdir -p /mnt/a
run mount -t ext4 /dev/vda /mnt/a
run dd if=/dev/urandom of=/mnt/a/before bs=1M count=8 status=none
sync
sum_before=$(md5sum /mnt/a/before | cut -d' ' -f1)

step "grow to 128 MiB while mounted"
ask grow
wait_size vda 262144
run resize2fs /dev/vda
blocks=$(df -k /mnt/a | awk 'NR == 2 {print $2}')
echo "ext4 size after resize2fs: $blocks KiB"
[ "$blocks" -gt 110000 ] || guest_fail "the filesystem did not grow (${blocks} KiB)"
run dd if=/dev/urandom of=/mnt/a/after bs=1M count=60 status=none
sync
[ "$(md5sum /mnt/a/before | cut -d' ' -f1)" = "$sum_before" ] || guest_fail "file changed by the resize"
run umount /mnt/a
run e2fsck -fn /dev/vda
run blkcheck pattern-write /dev/vda 120M 8M "$PATTERN_SEED"

step "shrink to 64 MiB"
ask shrink
wait_size vda 131072
# Nothing past the end can be read any more.
n=$(dd if=/dev/vda of=/dev/null bs=512 skip=131072 count=8 2>&1 | sed -n 's/^\([0-9]*\)+.* records in$/\1/p' | head -n 1)
echo "sectors read past the end: ${n:-?}"
[ "${n:-1}" = 0 ] || guest_fail "reads past the new end returned data"
run blkcheck verify /dev/vda --count "$VERIFY_COUNT" --max 64K
run blkcheck pattern-write /dev/vda 56M 8M "$PATTERN_SEED"

if [ "${HOTPLUG:-0}" = 1 ]; then
    step "hot-plugged export on vdb"
    ask hotplug
    wait_dev /dev/vdb 120
    [ "$(size vdb)" = 65536 ] || guest_fail "vdb has $(size vdb) sectors, expected 65536"
    run blkcheck verify /dev/vdb --count "$VERIFY_COUNT"
    ask grow-vdb
    wait_size vdb 98304
    run blkcheck verify /dev/vdb --count "$VERIFY_COUNT"
    ask unplug
    _i=0
    while [ -e /sys/block/vdb ]; do
        _i=$((_i + 1))
        [ "$_i" -le 1200 ] || guest_fail "vdb is still there after device_del"
        sleep 0.1
    done
    echo "vdb is gone"
    # The host deletes the export, then says so by growing vda by 1 MiB.
    ask finish
    wait_size vda 133120
fi
step "done"
