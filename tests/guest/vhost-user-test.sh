#!/usr/bin/env bash
# vhost-user-test.sh --program PATH [options] - boot Linux 6.12 guests under
# QEMU TCG against vblk-vhost-user and check the disk from inside the guest
# (vhost-user-workload.sh) and the image from the host afterwards.
#
# Cases (--only NAME runs one; the default runs all):
#   split-1q    split ring, 1 queue, image file: verify 512 B..1 MiB, flush,
#               discard, write-zeroes, ext4 mkfs/mount/files/e2fsck; SIGINT stop
#   packed-1q   packed ring (packed=on), 1 queue, RAM disk
#   split-2q    split ring, 2 queues, 2 vCPUs, psync engine: both queues used
#   packed-2q   packed ring, 2 queues, 2 vCPUs, ext4: both queues used
#   readonly    --read-only: the guest sees a read-only disk, writes fail
#   poll        --poll (busy-polling worker), split ring, RAM disk
#   reconnect   SIGKILL the server while the guest writes, restart it on the
#               same socket (reconnect-ms=1000): no I/O error, data intact. Writes
#               are slowed down (slowio.c, psync engine) and the server is
#               killed again (up to 5 times) until a restart finds requests
#               in flight and resubmits them
#   reconnect-packed
#               the same on a packed ring (packed=on) with 2 queues
#   migrate     live-migrate the guest while it writes, from a QEMU served by
#               one server to a QEMU served by another (dirty log): data intact
#   rbd         (only with --only rbd; needs a build with the RBD backend and
#               the Ceph daemons) a Ceph RBD image of a single-node cluster
#               started under the work directory (tests/ceph/ceph-up.sh), 2
#               queues: verify, flush, discard, write-zeroes, ext4; afterwards
#               "rbd export" of the image holds the guest's pattern and a
#               clean ext4
# Every case checks the serial (GET_ID), INDIRECT_DESC and EVENT_IDX, the
# server's clean exit (socket removed) and, for images, the data on the host.
#
# Options:
#   --program PATH  the vblk-vhost-user binary (required)
#   --only NAME     run one case
#   --cache DIR     prepare.sh cache (default ${VBLK_GUEST_CACHE:-/var/cache/vblk-guest})
#   --count N       blkcheck verify writes per case (default 300)
#   --timeout SECS  per-guest timeout (default 300)
#   --keep          keep the work directory (logs, images)
#   --no-prepare    do not run prepare.sh (the cache must be ready)
# Exit status: 0 pass, 1 fail, 77 skipped (no QEMU or guest kernel).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${VBLK_GUEST_CACHE:-/var/cache/vblk-guest}
PROGRAM= ONLY= COUNT=300 TIMEOUT=300 KEEP=0 PREPARE=1
ALL_CASES="split-1q packed-1q split-2q packed-2q readonly poll reconnect reconnect-packed migrate"
OPTIONAL_CASES="rbd"
. "$HERE/common.sh"
while (($#)); do
    common_opt "$@"
    ((NOPT)) && { shift "$NOPT"; continue; }
    case $1 in
    --only) ONLY=${2:?--only needs a value}; shift 2 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
check_program_opts
CASES=${ONLY:-$ALL_CASES}
for c in $CASES; do
    [[ " $ALL_CASES $OPTIONAL_CASES " == *" $c "* ]] || die "unknown case '$c' ($ALL_CASES $OPTIONAL_CASES)"
done
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

guest_cache_ready

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vblk-vu-test.XXXXXX")
SERVER_PID=
EXTRA_PIDS=()
CEPH_DIR=
ok=0
cleanup() {
    local p
    for p in $SERVER_PID "${EXTRA_PIDS[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            kill -KILL "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    [[ -z $CEPH_DIR ]] || "$HERE/../ceph/ceph-down.sh" "$CEPH_DIR"
    drop_work
}
trap cleanup EXIT
trap 'exit 130' INT TERM


say "building blkcheck and the initramfs"
gcc -std=c11 -static -O2 -pthread -Wall -Wextra -o "$WORK/blkcheck" "$HERE/blkcheck.c"
gcc -std=c11 -shared -fPIC -O2 -Wall -Wextra -o "$WORK/slowio.so" "$HERE/slowio.c" -ldl
"$HERE/mkinitramfs.sh" "$CACHE" "$WORK/initrd.cpio.gz" "$HERE/vhost-user-workload.sh" \
    "$WORK/blkcheck" 2>/dev/null

# start_server LOG ARGS...: starts vblk-vhost-user and waits for its socket.
start_server() {
    local log=$1
    shift
    ${SERVER_PRELOAD:+env LD_PRELOAD=$SERVER_PRELOAD} "$PROGRAM" --socket "$SOCK" "$@" >>"$log" 2>&1 &
    SERVER_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        [[ -S $SOCK ]] && grep -q "attach QEMU" "$log" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log" >&2; die "vblk-vhost-user exited at start"; }
        sleep 0.05
    done
    die "vblk-vhost-user did not create $SOCK"
}

# stop_server SIGNAL LOG: stops it with SIGNAL and checks a clean exit.
stop_server() {
    local sig=$1 log=$2 rc=0
    kill "-$sig" "$SERVER_PID"
    wait "$SERVER_PID" || rc=$?
    SERVER_PID=
    ((rc == 0)) || { cat "$log" >&2; die "vblk-vhost-user exited with $rc after SIG$sig"; }
    [[ ! -e $SOCK ]] || die "vblk-vhost-user left $SOCK behind"
    grep -q "queue 0:" "$log" || die "no per-queue counters in $log"
}

# queue_requests LOG N: requests the server counted on queue N.
queue_requests() {
    sed -n "s/^vblk-vhost-user: queue $2: \([0-9]*\) requests.*/\1/p" "$1" | tail -n 1
}

# boot CASE QUEUES SMP PACKED QEMU_CHARDEV_EXTRA ENV...: boots a guest.
# The chardev option that makes QEMU reconnect after a second: QEMU 9.2
# deprecated reconnect= (seconds) for reconnect-ms=; 7.2 knows only the former.
reconnect_opt() {
    local v
    v=$(qemu-system-x86_64 --version | sed -n 's/^QEMU emulator version \([0-9]*\.[0-9]*\).*/\1/p')
    if [[ -n $v && $v != 9.2 ]] && printf '%s\n9.2\n' "$v" | sort -V -C; then
        echo reconnect=1
    else
        echo reconnect-ms=1000
    fi
}

# BOOT_LOG (console log name) and BOOT_QEMU (more QEMU arguments) may be set.
BOOT_LOG= BOOT_QEMU=()
boot() {
    local case=$1 nq=$2 smp=$3 packed=$4 chr=$5 log=${BOOT_LOG:-$1}
    shift 5
    local dev="vhost-user-blk-pci,chardev=vu0,num-queues=$nq"
    [[ $packed == 1 ]] && dev+=",packed=on"
    local envs=() e
    for e in "$@"; do envs+=(--env "$e"); done
    "$HERE/run-guest.sh" --cache "$CACHE" --initrd "$WORK/initrd.cpio.gz" --smp "$smp" --mem 512M \
        --timeout "$TIMEOUT" --log "$WORK/$log.console.log" --quiet \
        --env "CASE=$case" --env "EXPECT_QUEUES=$nq" --env "EXPECT_PACKED=$packed" \
        --env "SERIAL=vu-$case" --env "VERIFY_COUNT=$COUNT" --env "PATTERN_SEED=$SEED" \
        --env "VBLK_GUEST_TIMEOUT=$TIMEOUT" "${envs[@]}" \
        -- -chardev "socket,id=vu0,path=$SOCK$chr" -device "$dev" "${BOOT_QEMU[@]}"
}

# wait_verify LOG PID: waits until the guest's blkcheck verify has started.
wait_verify() {
    local i
    for ((i = 0; i < TIMEOUT * 10; i++)); do
        grep -aq "blkcheck verify: device" "$1" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# One migration attempt: source QEMU on server A, destination QEMU on
# server B, both serving the same image. Returns 0 on success, 2 when the
# attempt proved nothing (the destination guest crashed without any data
# error, or the workload ended before the migration); a failure ends the test.
migrate_once() {
    local case=$1 log=$2 img=$3 logb=$WORK/$1.server-b.log
    local sock_a=$WORK/$1.sock sock_b=$WORK/$1-b.sock src dst rc=0 i
    # A guest that oopses after migration may hang rather than power off:
    # bound each attempt (boot reads TIMEOUT).
    local TIMEOUT=$((TIMEOUT < 120 ? TIMEOUT : 120))
    : >"$log"
    : >"$logb"
    rm -f "$WORK/mon.in" "$WORK/mon.out" "$WORK/monitor.log" "$WORK/mig.sock" \
        "$WORK/$case.console.log" "$WORK/$case-dst.console.log"
    truncate -s 0 "$img"
    truncate -s 64M "$img"
    SOCK=$sock_a
    start_server "$log" --image "$img" --serial "vu-$case" -v
    local server_a=$SERVER_PID
    SOCK=$sock_b
    start_server "$logb" --image "$img" --serial "vu-$case" -v
    local server_b=$SERVER_PID
    EXTRA_PIDS+=("$server_a" "$server_b")
    # HMP through a pipe chardev: QEMU reads PATH.in and writes PATH.out.
    mkfifo "$WORK/mon.in" "$WORK/mon.out"
    SOCK=$sock_b BOOT_LOG=$case-dst BOOT_QEMU=(-incoming "unix:$WORK/mig.sock")
    boot "$case" 1 1 0 "" MODE=busy DO_FS=0 VERIFY_COUNT=$((COUNT * 10)) &
    dst=$!
    SOCK=$sock_a BOOT_LOG=$case BOOT_QEMU=(-chardev "pipe,id=mon0,path=$WORK/mon"
        -mon chardev=mon0,mode=readline)
    # The source QEMU ends without a result line once the guest has left.
    boot "$case" 1 1 0 "" MODE=busy DO_FS=0 VERIFY_COUNT=$((COUNT * 10)) 2>"$WORK/$case.src.out" &
    src=$!
    BOOT_LOG= BOOT_QEMU=()
    EXTRA_PIDS+=("$src" "$dst")
    cat "$WORK/mon.out" >"$WORK/monitor.log" &
    EXTRA_PIDS+=($!)
    wait_verify "$WORK/$case.console.log" "$src" || die "case $case: the guest never started writing"
    sleep 1
    say "  migrating while the guest writes"
    printf 'migrate_set_parameter max-bandwidth 1G\nmigrate_set_parameter downtime-limit 1000\n' \
        >"$WORK/mon.in"
    printf 'migrate -d unix:%s\n' "$WORK/mig.sock" >"$WORK/mon.in"
    local status=
    for ((i = 0; i < 600; i++)); do
        printf 'info migrate\n' >"$WORK/mon.in"
        sleep 0.2
        status=$(tr -d '\r' <"$WORK/monitor.log" | sed -n 's/^Migration status: \([a-z-]*\).*/\1/p' | tail -n 1)
        [[ $status == completed || $status == failed || $status == cancelled ]] && break
    done
    [[ $status == completed ]] || die "case $case: migration ended as '${status:-unknown}'"
    tr -d '\r' <"$WORK/monitor.log" |
        awk -F: '/^(total time|downtime|transferred ram|dirty sync count):/ { v[$1] = $0 }
                 END { for (k in v) print "    " v[k] }' >&2 || true
    printf 'quit\n' >"$WORK/mon.in"
    wait "$src" || true
    wait "$dst" || rc=$?
    grep -a "dirty log:" "$log" | sed 's/^/    source server: /' >&2 ||
        die "case $case: the source server never got a dirty log"
    show_console "$case-dst"
    SERVER_PID=$server_a SOCK=$sock_a
    if grep -aq "GUEST-RESULT" "$WORK/$case.console.log"; then
        # The workload ended on the source before the migration did.
        stop_server TERM "$log"
        SERVER_PID=$server_b SOCK=$sock_b
        stop_server TERM "$logb"
        say "  the guest finished before the migration did"
        return 2
    fi
    stop_server TERM "$log"
    SERVER_PID=$server_b SOCK=$sock_b
    stop_server TERM "$logb"
    if ((rc != 0)); then
        local con=$WORK/$case-dst.console.log
        # A kernel crash with no data error: TCG migration itself does this
        # now and then (QEMU's built-in virtio-blk too), so it is retried.
        if ! grep -aq 'blkcheck [a-z-]*: FAIL' "$con" &&
            grep -aq -E 'Kernel panic|BUG[: ]|Oops|general protection fault|exited with irqs disabled' "$con"; then
            say "  the destination guest crashed after migration (no data error): $(grep -a -m1 -o -E 'Kernel panic.*|BUG.*|Oops.*|general protection.*' "$con" | tr -d '\r')"
            cp "$con" "$con.crash"
            return 2
        fi
        cat "$log" "$logb" >&2
        die "case $case: guest failed after migration (exit $rc), console $con"
    fi
    grep -E '^vblk-vhost-user: queue [0-9]+:' "$log" "$logb" | sed 's/^/    /' >&2
    host_check_image "$img" 0
    return 0
}

run_migrate() {
    local attempt rc
    for attempt in 1 2 3; do
        rc=0
        migrate_once "$@" || rc=$?
        ((rc == 0)) && { rm -f "$3"; return 0; }
        say "  attempt $attempt was inconclusive; retrying"
    done
    die "case $1: no conclusive migration in 3 attempts"
}

show_console() {
    grep -a -E '^(=== |WORKLOAD FAIL|GUEST-RESULT|blkcheck [a-z-]+: (PASS|FAIL)|RING_PACKED|serial:|blk-mq)' \
        "$WORK/$1.console.log" | tr -d '\r' | sed 's/^/    /' >&2 || true
}

host_check_image() {
    local img=$1 fs=$2
    "$WORK/blkcheck" pattern-check "$img" 56M 8M "$SEED" >/dev/null ||
        die "the image does not hold the pattern the guest wrote"
    if [[ $fs == 1 ]]; then
        e2fsck -fn "$img" >"$WORK/e2fsck.log" 2>&1 ||
            { cat "$WORK/e2fsck.log" >&2; die "host e2fsck of the image found problems"; }
    fi
}

run_case() {
    local case=$1 log=$WORK/$1.server.log img=$WORK/$1.img rc=0
    SOCK=$WORK/$case.sock
    : >"$log"
    case $case in
    split-1q)
        truncate -s 64M "$img"
        start_server "$log" --image "$img" --serial "vu-$case" -v
        boot "$case" 1 1 0 "" MODE=full DO_FS=1 || rc=$?
        ;;
    packed-1q)
        start_server "$log" --memory 64M --serial "vu-$case"
        boot "$case" 1 1 1 "" MODE=full DO_FS=0 || rc=$?
        ;;
    split-2q)
        truncate -s 64M "$img"
        start_server "$log" --image "$img" --queues 2 --backend psync --serial "vu-$case"
        boot "$case" 2 2 0 "" MODE=full DO_FS=0 || rc=$?
        ;;
    packed-2q)
        truncate -s 64M "$img"
        start_server "$log" --image "$img" --queues 2 --serial "vu-$case"
        boot "$case" 2 2 1 "" MODE=full DO_FS=1 || rc=$?
        ;;
    readonly)
        truncate -s 16M "$img"
        "$WORK/blkcheck" pattern-write "$img" 0 8M "$SEED" >/dev/null
        cp "$img" "$img.orig"
        start_server "$log" --image "$img" --read-only --serial "vu-$case"
        boot "$case" 1 1 0 "" MODE=readonly DO_FS=0 || rc=$?
        ;;
    poll)
        start_server "$log" --memory 64M --poll --serial "vu-$case"
        boot "$case" 1 1 0 "" MODE=full DO_FS=0 || rc=$?
        ;;
    migrate)
        run_migrate "$case" "$log" "$img"
        return 0
        ;;
    rbd)
        CEPH_DIR=$WORK/ceph
        IMAGE_SIZE=64M "$HERE/../ceph/ceph-up.sh" "$CEPH_DIR" >/dev/null || die "ceph-up.sh failed"
        export CEPH_CONF=$CEPH_DIR/ceph.conf
        start_server "$log" --rbd rbd/img0 --queues 2 --serial "vu-$case" -v
        boot "$case" 2 2 0 "" MODE=full DO_FS=1 || rc=$?
        ;;
    reconnect|reconnect-packed)
        local packed=0 nq=1
        [[ $case == reconnect-packed ]] && packed=1 nq=2
        truncate -s 64M "$img"
        # Every write sleeps 5 ms on the queue thread, so a kill nearly
        # always catches one in flight.
        local args=(--image "$img" --serial "vu-$case" --backend psync --queues "$nq" -v) kills=0 resub=0 mark i
        SERVER_PRELOAD=$WORK/slowio.so
        start_server "$log" "${args[@]}"
        boot "$case" "$nq" 2 "$packed" ",$(reconnect_opt)" MODE=busy DO_FS=0 VERIFY_COUNT=$((COUNT * 8)) &
        local guest=$!
        wait_verify "$WORK/$case.console.log" "$guest" || true
        while ((kills < 5 && resub == 0)); do
            sleep 1
            kill -0 "$guest" 2>/dev/null || break
            say "  SIGKILL the server while the guest writes; restarting it on $SOCK"
            kill -KILL "$SERVER_PID"
            wait "$SERVER_PID" 2>/dev/null || true
            kills=$((kills + 1))
            mark=$(wc -l <"$log")
            sleep 0.3
            start_server "$log" "${args[@]}"
            # QEMU reconnects within a second or two; the ring restarts then.
            for ((i = 0; i < 100; i++)); do
                tail -n "+$((mark + 1))" "$log" | grep -q "queue 0: started" && break
                sleep 0.1
            done
            resub=$(tail -n "+$((mark + 1))" "$log" | grep -c "resubmitted [1-9]" || true)
        done
        SERVER_PRELOAD=
        wait "$guest" || rc=$?
        # Every restart's log is complete now (another queue may have logged
        # its resubmission after the loop looked).
        resub=$(grep -c "resubmitted [1-9]" "$log" || true)
        grep -a -E "resubmitted .* in-flight|in-flight region" "$log" | sed 's/^/    /' >&2 || true
        ((kills > 0)) || die "case $case: the guest finished before the server could be killed"
        ((rc != 0 || resub > 0)) ||
            die "case $case: none of $kills restarts found a request in flight to resubmit"
        ;;
    esac
    show_console "$case"
    if ((rc != 0)); then
        cat "$log" >&2
        die "case $case: guest run failed (run-guest.sh exit $rc), console log $WORK/$case.console.log"
    fi
    stop_server "$([[ $case == split-1q ]] && echo INT || echo TERM)" "$log"
    grep -E '^vblk-vhost-user: queue [0-9]+:' "$log" | sed 's/^/    /' >&2
    case $case in
    split-2q|packed-2q|rbd)
        local q0 q1
        q0=$(queue_requests "$log" 0) q1=$(queue_requests "$log" 1)
        ((q0 > 0 && q1 > 0)) || die "case $case: both queues must carry I/O (saw $q0 and $q1 requests)"
        ;;
    readonly)
        cmp -s "$img" "$img.orig" || die "case readonly: the read-only image changed"
        ;;
    esac
    if [[ $case == rbd ]]; then
        # What the cluster holds, read back by the rbd tool.
        rbd export --no-progress rbd/img0 "$img" >/dev/null || die "case rbd: rbd export failed"
        grep -E '^vblk-vhost-user: rbd:' "$log" | sed 's/^/    /' >&2
    fi
    case $case in
    split-1q|packed-2q|rbd) host_check_image "$img" 1 ;;
    split-2q|reconnect|reconnect-packed) host_check_image "$img" 0 ;;
    esac
    rm -f "$img" "$img.orig"
}

SEED=$((RANDOM * 32768 + RANDOM))
say "seed $SEED, verify count $COUNT, work directory $WORK"
T_ALL=$(now)
for c in $CASES; do
    t=$(now)
    say "case $c"
    run_case "$c"
    say "case $c: PASS ($(elapsed "$t") s)"
done
ok=1
say "PASS: $CASES ($(elapsed "$T_ALL") s)"
