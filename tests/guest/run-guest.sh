#!/usr/bin/env bash
# run-guest.sh --initrd FILE [options] [-- EXTRA_QEMU_ARGS...]
#
# Boots the cached test kernel with an initramfs from mkinitramfs.sh under
# QEMU TCG, shows and logs the serial console, and exits 0 only when the guest
# printed "GUEST-RESULT: PASS" as its final result line.
#
# Options:
#   --cache DIR       prepare.sh cache (default ${VBLK_GUEST_CACHE:-/var/cache/vblk-guest})
#   --initrd FILE     initramfs (required)
#   --smp N           guest CPUs (default 1)
#   --mem SIZE        guest RAM, shared memfd so vhost-user backends can map it (default 512M)
#   --timeout SECS    kill QEMU after SECS seconds (default 300)
#   --log FILE        console log (default: a new file under ${TMPDIR:-/tmp})
#   --env NAME=VALUE  put NAME=VALUE on the kernel command line; /init and the
#                     workload get it as an environment variable (repeatable)
#   --append STR      more kernel command line
#   --quiet           do not copy the console to stdout (only to the log)
# Everything after "--" goes to qemu-system-x86_64 unchanged (e.g. -chardev
# socket,id=vu0,path=SOCK -device vhost-user-blk-pci,chardev=vu0).
#
# Exit status: 0 guest PASS, 1 guest FAIL, 2 no result (crash, hang, QEMU
# error), 3 timeout, 64 usage error.
set -euo pipefail

die() { echo "run-guest.sh: error: $*" >&2; exit 64; }

CACHE=${VBLK_GUEST_CACHE:-/var/cache/vblk-guest}
INITRD='' SMP=1 MEM=512M TIMEOUT=300 LOG='' APPEND='' QUIET=0
QEMU=${QEMU:-qemu-system-x86_64}
EXTRA=()
while (($#)); do
    case $1 in
    --cache) CACHE=${2:?--cache needs a value}; shift 2 ;;
    --initrd) INITRD=${2:?--initrd needs a value}; shift 2 ;;
    --smp) SMP=${2:?--smp needs a value}; shift 2 ;;
    --mem) MEM=${2:?--mem needs a value}; shift 2 ;;
    --timeout) TIMEOUT=${2:?--timeout needs a value}; shift 2 ;;
    --log) LOG=${2:?--log needs a value}; shift 2 ;;
    --env)
        [[ ${2:-} =~ ^[A-Za-z_][A-Za-z0-9_]*=[^[:space:]]*$ ]] ||
            die "--env needs NAME=VALUE without spaces, got '${2:-}'"
        APPEND+=" $2"; shift 2 ;;
    --append) APPEND+=" ${2:?--append needs a value}"; shift 2 ;;
    --quiet) QUIET=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done

[[ -n $INITRD ]] || die "--initrd FILE is required"
[[ -f $INITRD ]] || die "initrd $INITRD not found"
KERNEL=$CACHE/vmlinuz
[[ -f $KERNEL ]] || die "$KERNEL not found: run prepare.sh $CACHE first"
[[ $SMP =~ ^[1-9][0-9]*$ ]] || die "--smp must be a positive number"
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive number of seconds"
command -v "$QEMU" >/dev/null || die "$QEMU not found (run prepare.sh)"
if [[ -z $LOG ]]; then
    LOG=$(mktemp "${TMPDIR:-/tmp}/vblk-guest.XXXXXX.log")
fi
mkdir -p "$(dirname "$LOG")"
: >"$LOG"

# shellcheck disable=SC2054 # commas belong to QEMU option values
cmd=(
    "$QEMU"
    -M q35,accel=tcg -cpu max -smp "$SMP" -m "$MEM"
    -object "memory-backend-memfd,id=mem,size=$MEM,share=on" -numa node,memdev=mem
    -nographic -no-reboot -nic none
    -kernel "$KERNEL" -initrd "$INITRD"
    -append "console=ttyS0 panic=-1 quiet$APPEND"
    "${EXTRA[@]}"
)
echo "run-guest.sh: ${cmd[*]}" >>"$LOG"
echo "run-guest.sh: booting (smp $SMP, mem $MEM, timeout ${TIMEOUT}s), console log: $LOG" >&2

# QEMU's TCG occasionally crashes an SMP guest kernel while it patches its
# own text during boot (an int3 oops in the idle path), or never runs its
# second vCPU (RCU stall reports until the timeout). A boot that died or
# stalled before /init printed anything never reached the device under test
# (its driver is a module /init loads), so such a boot is retried, at most
# twice. Anything later, including any failure once /init ran, is never
# retried.
for attempt in 1 2 3; do
    t0=$(date +%s.%N)
    set +e
    if ((QUIET)); then
        timeout --kill-after=10 "$TIMEOUT" "${cmd[@]}" </dev/null >>"$LOG" 2>&1
        rc=$?
    else
        timeout --kill-after=10 "$TIMEOUT" "${cmd[@]}" </dev/null 2>&1 | tee -a "$LOG"
        rc=${PIPESTATUS[0]}
    fi
    set -e
    t1=$(date +%s.%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b - a}')
    # The same for a boot whose second vCPU never ran under TCG: the kernel
    # reports RCU stalls on it and never reaches /init, until the timeout.
    stalled=0
    if [[ ($rc -eq 124 || $rc -eq 137) ]] && ! grep -aq 'GUEST: ' "$LOG" &&
        grep -aq 'rcu_preempt detected stalls' "$LOG"; then
        stalled=1
    fi
    if [[ $attempt -lt 3 ]] && ! grep -aq 'GUEST: ' "$LOG" &&
        { grep -aq 'Kernel panic' "$LOG" || ((stalled)); }; then
        echo "run-guest.sh: the guest kernel $( ((stalled)) && echo "stalled (RCU, a vCPU never ran)" || echo panicked) before /init started (attempt $attempt," \
            "log kept as $LOG.boot$attempt); booting again" >&2
        mv "$LOG" "$LOG.boot$attempt"
        echo "run-guest.sh: ${cmd[*]}" >"$LOG"
        continue
    fi
    break
done

result=$(tr -d '\r' <"$LOG" | grep -a '^GUEST-RESULT: ' | tail -n 1 || true)
if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "run-guest.sh: TIMEOUT: guest did not finish within ${TIMEOUT}s (log: $LOG)" >&2
    exit 3
fi
case $result in
"GUEST-RESULT: PASS")
    echo "run-guest.sh: PASS in ${secs}s (qemu exit $rc, log: $LOG)" >&2
    exit 0 ;;
"GUEST-RESULT: FAIL"*)
    echo "run-guest.sh: FAIL in ${secs}s: ${result#GUEST-RESULT: FAIL } (log: $LOG)" >&2
    exit 1 ;;
*)
    echo "run-guest.sh: NO RESULT after ${secs}s: qemu exited with $rc without a GUEST-RESULT line" \
        "(kernel panic, QEMU error?); last lines of $LOG:" >&2
    tail -n 15 "$LOG" >&2
    exit 2 ;;
esac
