# vduse-workload.sh - runs inside the test guest (see vduse-test.sh).
#
# Drives vblk-vduse through the kernel's VDUSE and virtio_vdpa:
#   errors   missing /dev/vduse/control, permission denied
#   rw1      1 queue, file image, packed rings, serial: verify 4K..1M, flush, discard,
#            write-zeroes, pattern, ext4 mkfs/mount/files/fsck, detach,
#            then the image file is checked after vblk-vduse has exited
#   mq2      2 queues, RAM disk, split rings (the default): both queues carry I/O
#   stacked  ext4 on a RAM disk holds a second device's image; heavy writeback
#            through both gives no I/O error (split rings, the default)
#   ro       read-only image: writes refused, contents intact
#   clash    a second device with a taken name is refused
#   sigterm  SIGTERM before attach: clean exit, device gone
#   reclaim  --reclaim replaces the device of a killed process (also one killed
#            while attached, after 'vdpa dev del'), never a live one
# Environment (from run-guest.sh --env): VERIFY_COUNT, PATTERN_SEED.
. /usr/share/vblk-guest/lib.sh
. /usr/share/vblk-guest/vduse.sh
set -u
COUNT=${VERIFY_COUNT:-300}
SEED=${PATTERN_SEED:-12345}

# attach NAME: add the vDPA device; sets DISK to its /dev/vdX
attach() {
    vduse_attach "$1"
}

# detach NAME: delete the vDPA device, expect vblk-vduse to exit with 0
detach() {
    run vdpa dev del "$1"
    vduse_wait_exit "$1" 100
    cat "/tmp/$1.log"
    vduse_clean_exit "$1" ours
}

# feature DEV BIT 0|1: check a negotiated feature bit
feature() {
    if blkcheck features "$1" "$2" >/dev/null; then _set=1; else _set=0; fi
    [ "$_set" = "$3" ] || guest_fail "$1: feature bit $2 is $_set, expected $3"
}

# ------------------------------------------------------------------ errors
step "errors: module missing, permission denied"
wait_for -c /dev/vduse/control 5
run rmmod vduse
vblk-vduse --name nomod --memory 1M >/tmp/nomod.log 2>&1 && guest_fail "vblk-vduse ran without the vduse module"
cat /tmp/nomod.log
grep -q "modprobe vduse" /tmp/nomod.log || guest_fail "missing-module error does not name the module"
run insmod /modules/vduse.ko
wait_for -c /dev/vduse/control 5
grep -q '^nobody:' /etc/passwd || echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >>/etc/passwd
chmod 0600 /dev/vduse/control
su -s /bin/sh nobody -c "vblk-vduse --name noperm --memory 1M" >/tmp/noperm.log 2>&1 &&
    guest_fail "vblk-vduse ran as nobody"
cat /tmp/noperm.log
grep -q "permission denied" /tmp/noperm.log || guest_fail "permission error is not explained"

# --------------------------------------------------------------------- rw1
step "rw1: 1 queue, file image"
run truncate -s 64M /tmp/rw1.img
start_vduse rw1 --image /tmp/rw1.img --packed --serial vduse-serial-rw1
attach rw1
D=$(basename "$DISK")
run blkcheck info "$DISK"
run blkcheck features "$D"
feature "$D" 32 1          # VERSION_1
feature "$D" 33 1          # ACCESS_PLATFORM
feature "$D" 11 0          # CONFIG_WCE: VDUSE refuses it
feature "$D" 9 1           # FLUSH
feature "$D" 34 1          # RING_PACKED (--packed): virtio_vdpa takes packed rings when offered
nq=$(ls -d /sys/block/$D/mq/* | wc -l)
[ "$nq" -eq 1 ] || guest_fail "expected 1 blk-mq queue on $D, found $nq"
serial=$(cat /sys/block/$D/serial)
[ "$serial" = vduse-serial-rw1 ] || guest_fail "serial is '$serial', expected vduse-serial-rw1"
echo "serial (GET_ID): $serial"
echo "cache_type: $(cat /sys/block/$D/cache_type)"
run blkcheck verify "$DISK" --min 4K --max 1M --count "$COUNT" --threads 2 --seed "$SEED"
run blkcheck flush "$DISK"
run blkcheck discard "$DISK" 48M 4M
run blkcheck zeroout "$DISK" 52M 4M
run blkcheck pattern-write "$DISK" 56M 8M "$SEED"
run blkcheck pattern-check "$DISK" 56M 8M "$SEED"
run mkfs.ext4 -F -q -L vduse "$DISK" 48M
mkdir -p /mnt
run mount -t ext4 "$DISK" /mnt
i=1
while [ $i -le 8 ]; do
    run dd if=/dev/urandom of=/mnt/file$i bs=64k count=$((i * 2)) 2>/dev/null
    i=$((i + 1))
done
mkdir -p /mnt/a/b && echo hello >/mnt/a/b/c
(cd /mnt && sha256sum file* a/b/c >/tmp/sums)
run umount /mnt
run mount -t ext4 -o ro "$DISK" /mnt
(cd /mnt && sha256sum -c /tmp/sums >/dev/null) || guest_fail "files changed across umount/mount"
run umount /mnt
run e2fsck -fn "$DISK"
detach rw1
step "rw1: the image after vblk-vduse exited"
run blkcheck pattern-check /tmp/rw1.img 56M 8M "$SEED"
run e2fsck -fn /tmp/rw1.img
# the write-zeroes range reads back as zeros from the file as well
[ "$(dd if=/tmp/rw1.img bs=1M skip=52 count=4 2>/dev/null | tr -d '\000' | wc -c)" -eq 0 ] ||
    guest_fail "the write-zeroes range of the image is not zero"
step "rw1: the same image through a new vblk-vduse"
start_vduse rw1 --image /tmp/rw1.img
attach rw1
run mount -t ext4 -o ro "$DISK" /mnt
(cd /mnt && sha256sum -c /tmp/sums >/dev/null) || guest_fail "files in the image differ"
run umount /mnt
run blkcheck pattern-check "$DISK" 56M 8M "$SEED"
detach rw1

# --------------------------------------------------------------------- mq2
step "mq2: 2 queues, RAM disk, split rings (the default)"
start_vduse mq2 --memory 64M --queues 2 --serial vduse-mq2
attach mq2
D=$(basename "$DISK")
feature "$D" 12 1          # MQ
feature "$D" 34 0          # RING_PACKED not offered
nq=$(ls -d /sys/block/$D/mq/* | wc -l)
[ "$nq" -eq 2 ] || guest_fail "expected 2 blk-mq queues on $D, found $nq"
[ "$(cat /sys/block/$D/serial)" = vduse-mq2 ] || guest_fail "mq2 serial wrong"
run blkcheck verify "$DISK" --min 4K --max 1M --count "$COUNT" --threads 4 --seed "$((SEED + 1))"
run blkcheck flush "$DISK"
run blkcheck discard "$DISK" 8M 8M
run blkcheck zeroout "$DISK" 16M 4M
run mkfs.ext4 -F -q "$DISK"
run mount -t ext4 "$DISK" /mnt
run dd if=/dev/urandom of=/mnt/big bs=1M count=8 2>/dev/null
(cd /mnt && sha256sum big >/tmp/sums2)
run umount /mnt
run mount -t ext4 -o ro "$DISK" /mnt
(cd /mnt && sha256sum -c /tmp/sums2 >/dev/null) || guest_fail "mq2 file changed"
run umount /mnt
run e2fsck -fn "$DISK"
detach mq2
queues_served /tmp/mq2.log 2

# ----------------------------------------------------------------- stacked
# ext4 on a vblk-vduse RAM disk holds the image of a second vblk-vduse, and
# large writes go through both at once: page-cache writeback of up to
# 1.25 MiB per request fills VDUSE's bounce buffer (64 MiB by default). With
# the default split rings the driver waits for room; nothing may fail.
step "stacked: a disk whose image lives on another VDUSE disk, heavy writeback"
ioerr_before=$(dmesg | grep -c "I/O error")
start_vduse low --memory 200M
LPID=$PID
attach low
LOW=$DISK
run mkfs.ext4 -q -F "$LOW"
mkdir -p /mnt/low /mnt/up
run mount -t ext4 "$LOW" /mnt/low
run truncate -s 128M /mnt/low/up.img
start_vduse up --image /mnt/low/up.img
UPID=$PID
attach up
UP=$DISK
run blkcheck verify "$UP" --count "$COUNT" --seed $((SEED + 7))
run mkfs.ext4 -q -F "$UP"
run mount -t ext4 "$UP" /mnt/up
run dd if=/dev/urandom of=/mnt/up/f bs=1M count=40 conv=fsync status=none
run umount /mnt/up
run e2fsck -fn "$UP"
PID=$UPID
detach up
run dd if=/dev/urandom of=/mnt/low/big bs=1M count=48 conv=fsync status=none
run umount /mnt/low
run e2fsck -fn "$LOW"
PID=$LPID
detach low
ioerr=$(($(dmesg | grep -c "I/O error") - ioerr_before))
[ "$ioerr" -eq 0 ] || { dmesg | grep "I/O error" | tail -n 5; guest_fail "$ioerr I/O errors under stacked writeback"; }

# ---------------------------------------------------------------------- ro
step "ro: read-only image"
run truncate -s 16M /tmp/ro.img
run blkcheck pattern-write /tmp/ro.img 0 16M "$((SEED + 2))"
start_vduse ro --image /tmp/ro.img --read-only
attach ro
D=$(basename "$DISK")
feature "$D" 5 1           # RO
feature "$D" 13 0          # no DISCARD on a read-only disk
run blkcheck readonly "$DISK"
run blkcheck pattern-check "$DISK" 0 16M "$((SEED + 2))"

# ------------------------------------------------------------------- clash
step "clash: a second device named ro"
vblk-vduse --name ro --memory 1M >/tmp/clash.log 2>&1 && guest_fail "a second device named ro was created"
cat /tmp/clash.log
grep -q "already exists and is in use" /tmp/clash.log || guest_fail "name clash is not explained"
run blkcheck pattern-check "$DISK" 0 16M "$((SEED + 2))"
step "ro: SIGTERM while attached keeps serving until the detach"
run kill -TERM "$PID"
sleep 1
kill -0 "$PID" 2>/dev/null || guest_fail "vblk-vduse quit on SIGTERM with the disk still attached"
run blkcheck pattern-check "$DISK" 0 16M "$((SEED + 2))"
detach ro
grep -q "waiting for 'vdpa dev del ro'" /tmp/ro.log || guest_fail "no notice about the pending detach"
run blkcheck pattern-check /tmp/ro.img 0 16M "$((SEED + 2))"

# ----------------------------------------------------------------- sigterm
step "sigterm: stop before attach"
start_vduse idle --memory 1M
run kill -TERM "$PID"
wait "$PID"
rc=$?
cat /tmp/idle.log
[ $rc -eq 0 ] || guest_fail "vblk-vduse exited with $rc on SIGTERM"
[ ! -e /dev/vduse/idle ] || guest_fail "/dev/vduse/idle left behind"
# the name is free again
start_vduse idle --memory 1M
run kill -INT "$PID"
wait "$PID" || guest_fail "vblk-vduse exited with $? on SIGINT"

# ----------------------------------------------------------------- reclaim
step "reclaim: the device of a killed vblk-vduse"
start_vduse stale --memory 1M
run kill -KILL "$PID"
wait "$PID"
[ -c /dev/vduse/stale ] || guest_fail "the killed process's device is gone already?"
vblk-vduse --name stale --memory 1M >/tmp/stale2.log 2>&1 && guest_fail "created over a stale device without --reclaim"
cat /tmp/stale2.log
grep -q "nothing serves it.*--reclaim" /tmp/stale2.log || guest_fail "no hint about --reclaim"
start_vduse stale --memory 1M --reclaim
# --reclaim never takes a device that is in use
vblk-vduse --name stale --memory 1M --reclaim >/tmp/stale3.log 2>&1 && guest_fail "--reclaim took a device in use"
cat /tmp/stale3.log
grep -q "in use" /tmp/stale3.log || guest_fail "reclaim refusal is not explained"
run kill -TERM "$PID"
wait "$PID" || guest_fail "vblk-vduse exited with $? on SIGTERM"
cat /tmp/stale.log
grep -q "destroyed the stale VDUSE device" /tmp/stale.log || guest_fail "stale device not reported"

step "reclaim: killed while attached"
start_vduse dead --memory 4M
attach dead
# the kernel waits this long for an answer from the dead process
echo 2 >/sys/class/vduse/dead/msg_timeout || guest_fail "cannot set msg_timeout"
run kill -KILL "$PID"
wait "$PID"
vblk-vduse --name dead --memory 1M --reclaim >/tmp/dead2.log 2>&1 && guest_fail "--reclaim took a device still on the vDPA bus"
cat /tmp/dead2.log
grep -q "vdpa dev del dead" /tmp/dead2.log || guest_fail "no hint about deleting the vDPA device"
run vdpa dev del dead
start_vduse dead --memory 1M --reclaim
run kill -TERM "$PID"
wait "$PID" || guest_fail "vblk-vduse exited with $? on SIGTERM"
grep -q "destroyed the stale VDUSE device" /tmp/dead.log || guest_fail "stale device not reported"

step "done"
