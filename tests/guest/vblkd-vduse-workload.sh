# Guest side of vblkd-test.sh --only vduse: vblkd runs inside the guest and
# serves a VDUSE export (virtio_vdpa gives the guest a /dev/vdX), resized
# with vblk-ctl while the disk is in use. Settings from the kernel command
# line: VERIFY_COUNT, PATTERN_SEED.
. /usr/share/vblk-guest/lib.sh
. /usr/share/vblk-guest/vduse.sh # vduse_attach
set -u
export VBLKD_RPC=/tmp/vblkd.sock

size() { cat "/sys/block/$1/size"; }
wait_size() {
    _i=0
    while [ "$(size "$1")" != "$2" ]; do
        _i=$((_i + 1))
        [ "$_i" -le 300 ] || guest_fail "/sys/block/$1/size stayed $(size "$1"), expected $2"
        sleep 0.1
    done
    echo "$1: capacity $2 sectors"
}

step "vblkd with a VDUSE export"
vblkd --rpc "$VBLKD_RPC" --threads 2 -v >/tmp/vblkd.log 2>&1 &
VBLKD=$!
_i=0
while ! grep -q "vblkd: ready" /tmp/vblkd.log; do
    kill -0 "$VBLKD" 2>/dev/null || { cat /tmp/vblkd.log; guest_fail "vblkd exited at start"; }
    _i=$((_i + 1))
    [ "$_i" -le 100 ] || guest_fail "vblkd did not start"
    sleep 0.1
done
run vblk-ctl add vduse v0 --memory 64M --queues 2
run vblk-ctl add vhost-user u0 --socket /tmp/u0.sock --null 1M
run vblk-ctl list
vduse_attach v0
DISK=$DISK_NAME
# VDUSE exports offer split rings unless "packed" is set (docs/vduse.md)
blkcheck features "$DISK" 34 >/dev/null && guest_fail "v0 negotiated a packed ring"
[ "$(size "$DISK")" = 131072 ] || guest_fail "$DISK has $(size "$DISK") sectors, expected 131072"
run blkcheck verify "/dev/$DISK" --count "$VERIFY_COUNT"
run blkcheck pattern-write "/dev/$DISK" 0 8M "$PATTERN_SEED"

step "grow to 128 MiB"
run vblk-ctl resize v0 128M
wait_size "$DISK" 262144
run blkcheck pattern-write "/dev/$DISK" 120M 8M "$PATTERN_SEED"
run blkcheck pattern-check "/dev/$DISK" 120M 8M "$PATTERN_SEED"

step "shrink to 32 MiB"
run vblk-ctl resize v0 32M
wait_size "$DISK" 65536
run blkcheck pattern-check "/dev/$DISK" 0 8M "$PATTERN_SEED"
run blkcheck verify "/dev/$DISK" --count "$VERIFY_COUNT" --max 64K
run vblk-ctl stats v0

step "delete"
vblk-ctl del v0 >/tmp/del.out 2>&1 && guest_fail "vblk-ctl del succeeded while the vDPA device exists"
cat /tmp/del.out
grep -q "vdpa dev del" /tmp/del.out || guest_fail "no hint to run 'vdpa dev del'"
run vdpa dev del v0
_i=0
while ! vblk-ctl del v0; do
    _i=$((_i + 1))
    [ "$_i" -le 50 ] || guest_fail "export v0 still attached after 'vdpa dev del'"
    sleep 0.2
done
run vblk-ctl list
run vblk-ctl shutdown
wait "$VBLKD" || guest_fail "vblkd exited with an error"
[ ! -e /dev/vduse/v0 ] || guest_fail "/dev/vduse/v0 is still there"
step "done"
