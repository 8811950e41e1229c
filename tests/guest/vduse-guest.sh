# vduse-guest.sh - helpers for the guest scripts that run a VDUSE back-end
# (vduse-workload.sh, vduse-zoned-workload.sh, vblkd-vduse-workload.sh,
# vduse-vm-l1.sh). vduse-test.sh and vduse-vm-test.sh
# put it into the initramfs as /usr/share/vblk-guest/vduse.sh; a script
# sources it after /usr/share/vblk-guest/lib.sh (busybox sh):
#   . /usr/share/vblk-guest/vduse.sh
# The back-end's output goes to /tmp/NAME.log; PID is its process.

# start_vduse NAME ARGS...: start vblk-vduse in the background, wait until it
# reports the device ready (and its node exists); sets PID
start_vduse() {
    _name=$1
    shift
    echo "+ vblk-vduse --name $_name $*"
    # Empty the log first: the background shell opens it only later, and
    # the last run's "attach with" next to a stale device node of the same
    # name (the reclaim steps) would end the wait before this one started.
    : >"/tmp/$_name.log"
    vblk-vduse --name "$_name" "$@" >"/tmp/$_name.log" 2>&1 &
    PID=$!
    _w=0
    while ! grep -q "attach with" "/tmp/$_name.log" || [ ! -c "/dev/vduse/$_name" ]; do
        kill -0 "$PID" 2>/dev/null || { cat "/tmp/$_name.log"; guest_fail "vblk-vduse $_name exited early"; }
        _w=$((_w + 1))
        [ $_w -le 100 ] || guest_fail "/dev/vduse/$_name did not appear"
        sleep 0.1
    done
}

# vduse_attach NAME: add the vDPA device NAME for virtio_vdpa and wait for
# its block device; sets DISK (/dev/vdX) and DISK_NAME (vdX)
vduse_attach() {
    run vdpa dev add name "$1" mgmtdev vduse
    _w=0
    DISK_NAME=
    while [ -z "$DISK_NAME" ]; do
        for _b in /sys/bus/vdpa/devices/"$1"/virtio*/block/*; do
            [ -e "$_b" ] && DISK_NAME=$(basename "$_b")
        done
        _w=$((_w + 1))
        [ $_w -le 100 ] || { dmesg | tail -20; guest_fail "no block device appeared for $1"; }
        [ -n "$DISK_NAME" ] || sleep 0.1
    done
    DISK=/dev/$DISK_NAME
    wait_dev "$DISK"
    echo "$1 is $DISK"
}

# vduse_wait_exit NAME TENTHS: wait up to TENTHS tenths of a second for the
# back-end of NAME (PID) to exit after its vDPA device was deleted; sets RC
# to its exit status
vduse_wait_exit() {
    _w=0
    while kill -0 "$PID" 2>/dev/null; do
        _w=$((_w + 1))
        [ $_w -le "$2" ] || { cat "/tmp/$1.log"; guest_fail "the back-end of $1 did not exit after 'vdpa dev del'"; }
        sleep 0.1
    done
    wait "$PID"
    RC=$?
}

# vduse_clean_exit NAME [ours]: the back-end of NAME exited with status 0 (RC)
# and its VDUSE device is gone; vblk-vduse (ours) also reported destroying it
vduse_clean_exit() {
    [ "$RC" -eq 0 ] || guest_fail "the back-end of $1 exited with status $RC"
    [ ! -e "/dev/vduse/$1" ] || guest_fail "/dev/vduse/$1 still exists after the back-end exited"
    if [ "${2:-}" = ours ]; then
        grep -q "device destroyed" "/tmp/$1.log" || guest_fail "vblk-vduse $1 did not report a clean exit"
    fi
}

# queues_served LOG NQ: vblk-vduse served requests on each of NQ queues (the
# most one run of a queue served, from its "queue N stopped" log lines)
queues_served() {
    _q=0
    while [ $_q -lt "$2" ]; do
        _n=$(sed -n "s/.*queue $_q stopped: \([0-9]*\) requests.*/\1/p" "$1" | sort -n | tail -n 1)
        echo "queue $_q served ${_n:-0} requests (most in one run)"
        [ "${_n:-0}" -gt 0 ] || guest_fail "queue $_q carried no requests"
        _q=$((_q + 1))
    done
}
