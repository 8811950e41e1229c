# vduse-vm-l1.sh - runs inside the outer guest of vduse-vm-test.sh.
#
# The outer guest runs a VDUSE back-end (vblk-vduse, or qemu-storage-daemon's
# vduse-blk export as the reference), binds the vDPA device to vhost_vdpa and
# starts inner guests under KVM (TCG if the outer guest has no /dev/kvm) with
# -device vhost-vdpa-device-pci. The inner guests run vduse-vm-l2.sh; their
# console is printed here with an "[L2]" prefix.
#
# Environment (from run-guest.sh --env):
#   VM_CASES       comma-separated cases (see vduse-vm-test.sh --help)
#   VM_REPEAT      run the case list this many times (default 1)
#   VM_KEEP_GOING  1: count failures instead of stopping at the first
#   PATTERN_SEED VERIFY_COUNT  seed and blkcheck verify writes
#   L2_TIMEOUT     seconds before an inner guest is declared hung (default 600)
#   L2_BOOT_LIMIT  seconds before an inner guest whose /init never ran is
#                  declared stuck in boot (default 240; it takes 10-35 s)
#   FIO_RUNTIME    seconds of fio per run (fio cases)
#   VM_BIOS        seabios (default) or qboot, for the inner guests
#   VM_SMP2_ACCEL  kvm (default) or tcg: how inner guests with 2 vCPUs run
. /usr/share/vblk-guest/lib.sh
. /usr/share/vblk-guest/vduse.sh
set -u
SEED=${PATTERN_SEED:-1}
COUNT=${VERIFY_COUNT:-300}
CASES=$(echo "${VM_CASES:-ours-split-1q}" | tr ',' ' ')
REPEAT=${VM_REPEAT:-1}
KEEP_GOING=${VM_KEEP_GOING:-0}
L2_TIMEOUT=${L2_TIMEOUT:-600}
L2_BOOT_LIMIT=${L2_BOOT_LIMIT:-240}
SHARE=/usr/share/vblk-vm
CR=$(printf '\r')
BIOS=
BIOS_NAME=SeaBIOS
if [ "${VM_BIOS:-seabios}" = qboot ]; then
    BIOS="-bios /usr/share/qemu/qboot.rom"
    BIOS_NAME=qboot
fi
IMG_SIZE=64M

step "outer guest: $(nproc) CPUs, $(awk '/MemTotal/{print $2" kB"}' /proc/meminfo)"
# virtio_vdpa would take the device before vhost_vdpa could
rmmod virtio_vdpa 2>/dev/null
[ -d /sys/bus/vdpa/drivers/vhost_vdpa ] || guest_fail "vhost_vdpa is not loaded"
[ ! -d /sys/bus/vdpa/drivers/virtio_vdpa ] || guest_fail "virtio_vdpa is still loaded"
wait_for -c /dev/vduse/control 5
TCG="-M q35,accel=tcg -cpu max"
if [ -c /dev/kvm ]; then
    ACCEL="-M q35,accel=kvm -cpu host"
    echo "inner guests run under KVM (nested SVM of the outer guest's CPU)"
else
    ACCEL=$TCG
    L2_TIMEOUT=$((L2_TIMEOUT * 5))
    L2_BOOT_LIMIT=$((L2_BOOT_LIMIT * 5))
    echo "no /dev/kvm in the outer guest: inner guests run under TCG (slow)"
fi
# Inner guests with 2 vCPUs run under KVM too unless VM_SMP2_ACCEL=tcg (no
# nested SVM, but very slow). KVM on the emulated SVM is not reliable with 2
# inner vCPUs (see docs/vduse.md), so the default cases use one.
ACCEL2=$ACCEL
L2_TIMEOUT2=$L2_TIMEOUT
if [ "${VM_SMP2_ACCEL:-kvm}" = tcg ]; then
    ACCEL2=$TCG
    L2_TIMEOUT2=$((L2_TIMEOUT * 5))
fi

# start_qsd NAME IMAGE QUEUES SERIAL: qemu-storage-daemon's vduse-blk export
start_qsd() {
    echo "+ qemu-storage-daemon ... --export type=vduse-blk,name=$1,num-queues=$3"
    qemu-storage-daemon \
        --blockdev "driver=file,node-name=d0,filename=$2,discard=unmap,cache.direct=off" \
        --export "type=vduse-blk,id=e0,node-name=d0,name=$1,writable=on,num-queues=$3,serial=$4" \
        >"/tmp/$1.log" 2>&1 &
    PID=$!
    _w=0
    while [ ! -c "/dev/vduse/$1" ]; do
        kill -0 "$PID" 2>/dev/null || { cat "/tmp/$1.log"; guest_fail "qemu-storage-daemon exited early"; }
        _w=$((_w + 1))
        [ $_w -le 300 ] || guest_fail "/dev/vduse/$1 did not appear"
        sleep 0.1
    done
}

# add_vdpa NAME: add the vDPA device, check it went to vhost_vdpa; sets VHOST
add_vdpa() {
    run vdpa dev add name "$1" mgmtdev vduse
    _w=0
    VHOST=
    while [ -z "$VHOST" ]; do
        for _d in /sys/bus/vdpa/devices/"$1"/vhost-vdpa-*; do
            [ -e "$_d" ] && VHOST=/dev/$(basename "$_d")
        done
        _w=$((_w + 1))
        [ $_w -le 100 ] || guest_fail "no vhost-vdpa device appeared for $1"
        [ -n "$VHOST" ] || sleep 0.1
    done
    wait_for -c "$VHOST" 10
    _drv=$(readlink /sys/bus/vdpa/devices/"$1"/driver)
    case $_drv in */vhost_vdpa) ;; *) guest_fail "$1 is bound to '$_drv', not vhost_vdpa" ;; esac
    vdpa dev show "$1"
    echo "$1 is $VHOST"
}

# del_vdpa NAME [ours]: delete the vDPA device; the back-end must exit with 0
# (vblk-vduse by itself, qemu-storage-daemon on SIGTERM)
del_vdpa() {
    run vdpa dev del "$1"
    [ "${2:-}" = ours ] || kill -TERM "$PID"
    vduse_wait_exit "$1" 150
    sed "s/^/  [$1] /" "/tmp/$1.log"
    vduse_clean_exit "$1" "${2:-}"
}

# dump_stacks PID...: kernel stacks of every thread, for hangs
dump_stacks() {
    for _p in "$@"; do
        for _t in /proc/"$_p"/task/*; do
            [ -e "$_t/stack" ] || continue
            echo "--- $(cat "$_t/comm" 2>/dev/null) ${_t#/proc/} ($(cut -d' ' -f3 "$_t/stat" 2>/dev/null))"
            cat "$_t/stack"
        done
    done
}

# vm RUN VHOST|- SMP MEM ENV...: one inner guest; VHOST - means no device.
# Sets VM_RESULT to PASS, "FAIL <reason>", RESET (QEMU exited without a
# result: the guest reset under -no-reboot), BOOT-HANG (its kernel never
# reached /init, whose first line is "GUEST: kernel ...") or HANG.
VM_RESTORE_MSGS=0
vm() {
    _run=$1 _vhost=$2 _smp=$3 _mem=$4
    shift 4
    _accel=$ACCEL _limit=$L2_TIMEOUT _boot=$L2_BOOT_LIMIT
    [ "$_smp" -eq 1 ] || { _accel=$ACCEL2 _limit=$L2_TIMEOUT2; }
    [ "$_accel" = "$ACCEL" ] || _boot=$((L2_BOOT_LIMIT * 5))
    _log=/tmp/l2-$_run.log
    : >"$_log"
    _dev=
    [ "$_vhost" = - ] || _dev="-device vhost-vdpa-device-pci,vhostdev=$_vhost"
    echo "+ inner guest $_run: $_accel -smp $_smp -m $_mem, $BIOS_NAME, $_dev, $*"
    _t0=$(cut -d' ' -f1 /proc/uptime)
    rm -f /tmp/l2.pid /tmp/l2.rc
    # The inner console goes to ours line by line with an "[L2]" prefix, so
    # its GUEST-RESULT line is never taken for the outer guest's.
    # shellcheck disable=SC2086 # _accel, BIOS and _dev are word lists
    (
        qemu-system-x86_64 $_accel -smp "$_smp" -m "$_mem" \
            -object "memory-backend-memfd,id=mem,size=$_mem,share=on" -numa node,memdev=mem \
            -nodefaults -vga none -nic none -display none -monitor none -no-reboot \
            -serial stdio -pidfile /tmp/l2.pid $BIOS -kernel $SHARE/vmlinuz -initrd $SHARE/l2.cpio.gz \
            -append "console=ttyS0 panic=-1 quiet $*" $_dev </dev/null 2>"/tmp/l2-$_run.qemu"
        echo $? >/tmp/l2.rc
    ) | while IFS= read -r _l; do
        _l=${_l%"$CR"}
        echo "$_l" >>"$_log"
        echo "  [L2] $_l"
    done &
    _ppid=$!
    _w=0
    VM_RESULT=
    while kill -0 $_ppid 2>/dev/null; do
        _w=$((_w + 1))
        if [ $_w -gt $((_boot * 5)) ] && ! grep -q '^GUEST: kernel' "$_log"; then
            _qpid=$(cat /tmp/l2.pid 2>/dev/null)
            echo "inner guest $_run: its kernel did not reach /init in ${_boot}s; kernel stacks:"
            dump_stacks $_qpid "$PID"
            [ -n "$_qpid" ] && kill -9 "$_qpid"
            VM_RESULT=BOOT-HANG
            break
        fi
        if [ $_w -gt $((_limit * 5)) ]; then
            _qpid=$(cat /tmp/l2.pid 2>/dev/null)
            echo "inner guest $_run: no result after ${_limit}s; kernel stacks:"
            dump_stacks $_qpid "$PID"
            [ -n "$_qpid" ] && kill -9 "$_qpid"
            VM_RESULT=HANG
            break
        fi
        sleep 0.2
    done
    wait $_ppid
    _qrc=$(cat /tmp/l2.rc 2>/dev/null)
    _t1=$(cut -d' ' -f1 /proc/uptime)
    sed "s/^/  [L2 qemu] /" "/tmp/l2-$_run.qemu"
    _n=$(grep -c "ring restore failed" "/tmp/l2-$_run.qemu")
    VM_RESTORE_MSGS=$((VM_RESTORE_MSGS + _n))
    if [ -z "$VM_RESULT" ]; then
        _res=$(grep '^GUEST-RESULT: ' "$_log" | tail -n 1)
        case $_res in
        "GUEST-RESULT: PASS") VM_RESULT=PASS ;;
        "GUEST-RESULT: FAIL"*) VM_RESULT="FAIL ${_res#GUEST-RESULT: FAIL }" ;;
        *) VM_RESULT=RESET ;;
        esac
    fi
    echo "inner guest $_run: $VM_RESULT after $(awk "BEGIN{print $_t1 - $_t0}")s (qemu exit $_qrc)"
    echo "VM-RUN: $_run $VM_RESULT $(awk "BEGIN{print $_t1 - $_t0}")"
}

# vm_again RUN ARGS...: vm, and an inner guest that reset silently (no
# result, no panic, oops or BUG on its console) or whose kernel never
# reached /init is run once more, with a notice. Under the emulated nested
# SVM inner guests do both with any back-end: 2-vCPU guests reset in an
# earlier trial, the 1-vCPU guest of the qemu-storage-daemon reference reset
# in a CI run, and a 1-vCPU inner kernel spun in early boot, before /init
# had loaded virtio_blk (docs/vduse.md). A failed check, a panic, a hang
# once /init has run, or a second failure never is run again.
vm_again() {
    vm "$@"
    if { [ "$VM_RESULT" = RESET ] || [ "$VM_RESULT" = BOOT-HANG ]; } &&
        ! grep -q -E 'Kernel panic|Oops|BUG:|WORKLOAD FAIL' "/tmp/l2-$1.log"; then
        echo "NOTICE: inner guest $1: $VM_RESULT; running it once more"
        _r1=$1
        shift
        vm "$_r1-again" "$@"
    fi
}

# vm_ok RUN ...: vm_again, and the inner guest must pass
vm_ok() {
    vm_again "$@"
    [ "$VM_RESULT" = PASS ] || guest_fail "inner guest $1: $VM_RESULT"
}

# check_image IMG SEED VMS: what the inner guests wrote, read from the
# back-end's file (the second pattern only after VMS 2)
check_image() {
    run blkcheck pattern-check "$1" 56M 8M "$2"
    [ "$3" -lt 2 ] || run blkcheck pattern-check "$1" 48M 4M "$(($2 + 1))"
    [ "$(dd if="$1" bs=1M skip=52 count=4 2>/dev/null | tr -d '\000' | wc -c)" -eq 0 ] ||
        guest_fail "the write-zeroes range of $1 is not zero"
    run e2fsck -fn "$1"
}

# one_case CASE SEED: runs one case; returns non-zero only in keep-going mode
one_case() {
    _c=$1 _s=$2
    step "case $_c (seed $_s)"
    case $_c in
    ours-split-1q | ours-packed-1q | qsd-1q)
        # verified I/O in one VM; the VM exits and a second VM on the same
        # vDPA device finds the data (not for the reference, to save time);
        # then the device goes and the back-end exits; the image is checked
        # from here
        _img=/tmp/$_c.img
        run truncate -s $IMG_SIZE "$_img"
        case $_c in
        ours-split-1q) start_vduse vm1 --image "$_img" --no-packed --serial vm-$_s; _packed=0 ;;
        ours-packed-1q) start_vduse vm1 --image "$_img" --packed --serial vm-$_s; _packed=1 ;;
        qsd-1q) start_qsd vm1 "$_img" 1 vm-$_s; _packed=0 ;;
        esac
        add_vdpa vm1
        vm_ok "$_c-a" "$VHOST" 1 256M PHASE=write SEED="$_s" COUNT="$COUNT" THREADS=2 NQ=1 \
            PACKED=$_packed SERIAL=vm-$_s
        case $_c in
        ours*)
            vm_ok "$_c-b" "$VHOST" 1 256M PHASE=reboot SEED="$_s" NQ=1 PACKED=$_packed SERIAL=vm-$_s
            del_vdpa vm1 ours
            check_image "$_img" "$_s" 2
            ;;
        *)
            del_vdpa vm1
            check_image "$_img" "$_s" 1
            ;;
        esac
        rm -f "$_img"
        ;;
    ours-split-2q | ours-packed-2q | qsd-2q)
        # 2 queues, 2 inner vCPUs, SeaBIOS (which sets up queue 0 only)
        _img=/tmp/$_c.img
        run truncate -s $IMG_SIZE "$_img"
        case $_c in
        ours-split-2q) start_vduse vm2 --image "$_img" --queues 2 --no-packed --serial vm-$_s; _packed=0 ;;
        ours-packed-2q) start_vduse vm2 --image "$_img" --queues 2 --packed --serial vm-$_s; _packed=1 ;;
        qsd-2q) start_qsd vm2 "$_img" 2 vm-$_s; _packed=0 ;;
        esac
        add_vdpa vm2
        # (requests up to 256 KiB: bounded time also under VM_SMP2_ACCEL=tcg)
        vm_again "$_c" "$VHOST" 2 256M PHASE=write SEED="$_s" COUNT="$COUNT" MAX=256K THREADS=4 \
            NQ=2 PACKED=$_packed SERIAL=vm-$_s
        _r=$VM_RESULT
        case $_c in ours*) del_vdpa vm2 ours ;; *) del_vdpa vm2 ;; esac
        if [ "$_r" != PASS ]; then
            [ "$KEEP_GOING" = 1 ] || guest_fail "inner guest $_c: $_r"
            return 1
        fi
        case $_c in ours*) queues_served /tmp/vm2.log 2 ;; esac
        run blkcheck pattern-check "$_img" 56M 8M "$_s"
        run e2fsck -fn "$_img"
        rm -f "$_img"
        ;;
    ours-packed-2q1)
        # 2 queues offered, 1 inner vCPU under KVM: the guest's driver sets
        # up queue 0 only (one per CPU), as SeaBIOS does before it, and the
        # device serves it while queue 1 stays idle
        _img=/tmp/$_c.img
        run truncate -s $IMG_SIZE "$_img"
        start_vduse vm3 --image "$_img" --queues 2 --packed --serial vm-$_s
        add_vdpa vm3
        vm_ok "$_c" "$VHOST" 1 256M PHASE=write SEED="$_s" COUNT="$COUNT" THREADS=2 NQ=1 \
            PACKED=1 SERIAL=vm-$_s
        del_vdpa vm3 ours
        queues_served /tmp/vm3.log 1
        grep -q "queue 1: enabled but never set up" /tmp/vm3.log ||
            guest_fail "queue 1 was not reported as left unused"
        run blkcheck pattern-check "$_img" 56M 8M "$_s"
        run e2fsck -fn "$_img"
        rm -f "$_img"
        ;;
    ours-attack)
        # a hostile inner guest: malformed rings through PCI; vblk-vduse
        # must survive and serve the kernel's driver afterwards
        _img=/tmp/$_c.img
        run truncate -s $IMG_SIZE "$_img"
        start_vduse atk --image "$_img" --packed
        add_vdpa atk
        vm_ok "$_c" "$VHOST" 1 256M PHASE=attack SEED="$_s" NQ=1 PACKED=1
        kill -0 "$PID" 2>/dev/null || guest_fail "vblk-vduse died during the attacks"
        echo "vblk-vduse stopped a queue over a corrupted ring $(grep -c 'corrupted the ring' /tmp/atk.log) times"
        del_vdpa atk ours
        rm -f "$_img"
        ;;
    nodev-smp2)
        # no vDPA device at all: only the nested virtualisation
        vm "$_c" - 2 256M PHASE=cpu
        if [ "$VM_RESULT" != PASS ]; then
            [ "$KEEP_GOING" = 1 ] || guest_fail "inner guest $_c: $VM_RESULT"
            return 1
        fi
        ;;
    fio-ours | fio-qsd)
        # 4 KiB random reads at QD 32 from the inner guest, on a RAM-backed file
        _img=/tmp/$_c.img
        run truncate -s 256M "$_img"
        case $_c in
        fio-ours) start_vduse fio --image "$_img" --no-packed ;;
        fio-qsd) start_qsd fio "$_img" 1 fio ;;
        esac
        add_vdpa fio
        vm_ok "$_c" "$VHOST" 1 768M PHASE=fio NQ=1 PACKED=0 FIO_RUNTIME="${FIO_RUNTIME:-10}"
        case $_c in fio-ours) del_vdpa fio ours ;; *) del_vdpa fio ;; esac
        rm -f "$_img"
        ;;
    *) guest_fail "unknown case '$_c'" ;;
    esac
    return 0
}

i=1
fails=0
while [ $i -le "$REPEAT" ]; do
    for c in $CASES; do
        one_case "$c" "$((SEED + i * 16))" || fails=$((fails + 1))
    done
    i=$((i + 1))
done
step "done"
echo "QEMU 'ring restore failed' messages: $VM_RESTORE_MSGS"
[ $fails -eq 0 ] || guest_fail "$fails case runs failed"
