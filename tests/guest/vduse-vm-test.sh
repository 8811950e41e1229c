#!/usr/bin/env bash
# vduse-vm-test.sh --program PATH [options] - VDUSE serving a virtual machine:
# an outer guest (QEMU TCG) runs vblk-vduse, binds the vDPA device to
# vhost_vdpa and starts inner guests under KVM (nested SVM; TCG if the outer
# guest has no /dev/kvm) with -device vhost-vdpa-device-pci. The inner guests boot with SeaBIOS; see
# vduse-vm-l1.sh and vduse-vm-l2.sh.
#
# Cases (--cases, comma-separated; default
# ours-split-1q,ours-packed-2q1,ours-packed-2q,ours-attack,qsd-1q):
#   ours-split-1q, ours-packed-1q  vblk-vduse, 1 queue, split or packed ring:
#       an inner VM writes (verified I/O 4K..1M, flush, discard and
#       write-zeroes read back as zeros, GET_ID serial, a pattern, ext4 mkfs
#       + files + fsck) and shuts down; a second VM on the same vDPA device
#       finds it all and writes a second pattern; `vdpa dev del`;
#       vblk-vduse exits cleanly; the image is checked in the outer guest
#   ours-packed-2q1  2 queues offered, 1 inner vCPU (KVM): the guest sets up
#       queue 0 only (after SeaBIOS did the same); the device serves it and
#       leaves queue 1 idle; verified I/O and the image check as above
#   ours-split-2q, ours-packed-2q  2 queues, 2 inner vCPUs: both queues carry
#       I/O; the image is checked in the outer guest. 2 inner vCPUs under
#       KVM on the emulated SVM can panic the outer kernel (docs/vduse.md):
#       a run that ends that way, and only that way, is run once more
#   ours-attack  a hostile inner guest (vringattack.c) sends malformed split
#       and packed rings through PCI; vblk-vduse survives, the kernel's
#       virtio_blk works afterwards, and vblk-vduse exits cleanly
#   qsd-1q, qsd-2q  the same against qemu-storage-daemon's vduse-blk export
#       (the reference: proves the harness)
#   nodev-smp2  an inner VM with 2 vCPUs and no vDPA device (diagnostic)
#   fio-ours, fio-qsd  fio 4 KiB randread QD 32 in the inner VM (needs --fio)
#
# Options:
#   --program PATH  the vblk-vduse binary to test (required)
#   --cache DIR     prepare.sh cache for this test (default
#                   ${VBLK_GUEST_VM_CACHE:-/var/cache/vblk-guest-vm}; it holds
#                   vhost_vdpa and kvm_amd besides the usual modules)
#   --cases LIST    cases to run (see above)
#   --repeat N      run the case list N times in the same outer guest
#   --keep-going    count failed runs instead of stopping at the first
#   --count N       blkcheck verify writes per inner VM (default 150)
#   --qboot         inner guests boot with qboot instead of SeaBIOS
#   --smp2-tcg      run inner guests with 2 vCPUs under TCG instead of KVM
#                   (no nested SVM, but too slow for CI: see docs/vduse.md)
#   --fio           put fio (with its libraries) into the inner guest
#   --fio-runtime S seconds of fio per run (default 10)
#   --timeout SECS  outer guest timeout (default 1500)
#   --keep          keep the work directory (console log, initramfs)
#   --no-prepare    do not run prepare.sh (the cache must be ready)
# Exit status: 0 pass, 1 fail, 77 skipped (no QEMU / kernel cache and
# prepare.sh cannot make one).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${VBLK_GUEST_VM_CACHE:-/var/cache/vblk-guest-vm}
PROGRAM= COUNT=150 TIMEOUT=1500 KEEP=0 PREPARE=1 REPEAT=1 KEEP_GOING=0 FIO=0 FIO_RUNTIME=10 BIOS=seabios SMP2=kvm
CASES=ours-split-1q,ours-packed-2q1,ours-packed-2q,ours-attack,qsd-1q
. "$HERE/common.sh"
while (($#)); do
    common_opt "$@"
    ((NOPT)) && { shift "$NOPT"; continue; }
    case $1 in
    --cases) CASES=${2:?--cases needs a value}; shift 2 ;;
    --repeat) REPEAT=${2:?--repeat needs a value}; shift 2 ;;
    --keep-going) KEEP_GOING=1; shift ;;
    --fio) FIO=1; shift ;;
    --qboot) BIOS=qboot; shift ;;
    --smp2-tcg) SMP2=tcg; shift ;;
    --fio-runtime) FIO_RUNTIME=${2:?--fio-runtime needs a value}; shift 2 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
check_program_opts
[[ $CASES =~ ^[a-z0-9,-]+$ ]] || die "--cases takes a comma-separated list of case names"
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "--repeat must be a positive number"
[[ $FIO_RUNTIME =~ ^[1-9][0-9]*$ ]] || die "--fio-runtime must be a positive number"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# The outer guest needs vhost_vdpa, and kvm_amd for KVM inside it.
export VBLK_GUEST_EXTRA_MODULES="vhost_vdpa kvm_amd"
guest_cache_ready
command -v qemu-storage-daemon >/dev/null || { say "SKIP: qemu-storage-daemon not installed"; exit 77; }
# QEMU 8.0 brought the generic vhost-vdpa device; Debian 12's own 7.2 lacks it
qemu-system-x86_64 -device help 2>/dev/null | grep -q '"vhost-vdpa-device-pci"' ||
    { say "SKIP: this QEMU has no vhost-vdpa-device-pci (QEMU 8.0 or later; scripts/deps.sh installs 10.0)"; exit 77; }
for m in vdpa vduse vhost_vdpa virtio_blk; do
    grep -q "^$m\.ko" "$CACHE/modules/order" || die "$CACHE has no $m module (is the kernel 6.12?)"
done
if ((FIO)); then
    command -v fio >/dev/null || die "--fio needs fio installed (apt-get install fio)"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vblk-vduse-vm.XXXXXX")
ok=0
trap drop_work EXIT

# modules CACHE DEST EXCLUDE...: a cache for mkinitramfs.sh with the modules
# of CACHE except those named (kernel module names, '_' for '-')
modules() {
    local src=$1 dst=$2 f name
    shift 2
    mkdir -p "$dst/modules"
    : >"$dst/modules/order"
    while read -r f; do
        name=${f%.ko}
        name=${name//-/_}
        [[ " $* " == *" $name "* ]] && continue
        ln -s "$src/modules/$f" "$dst/modules/$f"
        echo "$f" >>"$dst/modules/order"
    done <"$src/modules/order"
}
# the outer guest: everything but virtio_vdpa, which would take the device
modules "$CACHE" "$WORK/l1" virtio_vdpa
# the inner guest: virtio_blk and ext4
modules "$CACHE" "$WORK/l2" vdpa vhost_iotlb vduse virtio_vdpa vhost vhost_vdpa irqbypass ccp kvm \
    kvm_amd

say "building blkcheck and the initramfs images"
gcc -std=c11 -static -O2 -pthread -Wall -Wextra -o "$WORK/blkcheck" "$HERE/blkcheck.c"
gcc -std=c11 -static -O2 -Wall -Wextra -o "$WORK/vringattack" "$HERE/vringattack.c"
cp "$PROGRAM" "$WORK/vblk-vduse"
l2extra=("$WORK/blkcheck" "$WORK/vringattack")
((FIO)) && l2extra+=("$(command -v fio)")
"$HERE/mkinitramfs.sh" "$WORK/l2" "$WORK/l2.cpio.gz" "$HERE/vduse-vm-l2.sh" "${l2extra[@]}"
l1extra=("$WORK/vblk-vduse" "$WORK/blkcheck" "$HERE/vduse-guest.sh=/usr/share/vblk-guest/vduse.sh"
         "$(command -v qemu-system-x86_64)"
         "$(command -v qemu-storage-daemon)"
         "$CACHE/vmlinuz=/usr/share/vblk-vm/vmlinuz" "$WORK/l2.cpio.gz=/usr/share/vblk-vm/l2.cpio.gz")
# firmware the inner QEMU loads: SeaBIOS and the option ROMs for -kernel
# (Debian's QEMU searches /usr/share/qemu, then /usr/share/seabios)
for fw in bios-256k.bin qboot.rom linuxboot_dma.bin kvmvapic.bin; do
    found=
    for d in /usr/share/qemu /usr/share/seabios; do
        [[ -e $d/$fw ]] && { found=$d/$fw; break; }
    done
    [[ -n $found ]] || die "no $fw in /usr/share/qemu or /usr/share/seabios (is qemu-system-x86 installed?)"
    l1extra+=("$found=$found")
done
# uncompressed: gunzip of a large initramfs is slow under TCG
"$HERE/mkinitramfs.sh" "$WORK/l1" "$WORK/l1.cpio" "$HERE/vduse-vm-l1.sh" "${l1extra[@]}"

SEED=$((RANDOM * 32768 + RANDOM))
say "booting the outer guest: cases $CASES x$REPEAT, verify count $COUNT, seed $SEED"
run_outer() {
    "$HERE/run-guest.sh" --cache "$CACHE" --initrd "$WORK/l1.cpio" --smp 2 --mem 3G \
        --timeout "$TIMEOUT" --log "$WORK/console.log" --quiet \
        --env "VM_CASES=$CASES" --env "VM_REPEAT=$REPEAT" --env "VM_KEEP_GOING=$KEEP_GOING" \
        --env "VERIFY_COUNT=$COUNT" --env "PATTERN_SEED=$SEED" --env "FIO_RUNTIME=$FIO_RUNTIME" \
        --env "VM_BIOS=$BIOS" --env "VM_SMP2_ACCEL=$SMP2" --env "VBLK_GUEST_TIMEOUT=$TIMEOUT"
}
# The outer kernel itself panicked (not an inner guest: their console lines
# are prefixed with [L2]), with an inner guest of 2 vCPUs under KVM running:
# the emulated nested SVM, not the device (docs/vduse.md).
outer_panicked() {
    [[ $CASES == *2q* || $CASES == *smp2* ]] || return 1
    tr -d '\r' <"$WORK/console.log" | grep -a -v '\[L2\]' | grep -a -q 'Kernel panic - not syncing'
}
rc=0
run_outer || rc=$?
if ((rc != 0)) && outer_panicked; then
    tr -d '\r' <"$WORK/console.log" | grep -a -v '\[L2\]' | grep -a -B2 -A8 'Kernel panic' >&2 || true
    say "the outer kernel panicked under a 2-vCPU inner guest (emulated nested SVM; see docs/vduse.md): running once more"
    mv "$WORK/console.log" "$WORK/console-panic.log"
    rc=0
    run_outer || rc=$?
fi
tr -d '\r' <"$WORK/console.log" | grep -a -E \
    '^(=== |NOTICE|WORKLOAD FAIL|GUEST-RESULT|inner guest|VM-RUN|queue [01] served|QEMU .ring restore|vblk-vduse stopped|  \[L2\] vringattack|  \[L2\] (features|ring|serial|blk-mq|FIO-RESULT|WORKLOAD FAIL|blkcheck .*FAIL))' \
    >&2 || true
if ((rc != 0)); then
    say "FAIL (run-guest.sh exit $rc); console log: $WORK/console.log"
    exit 1
fi
ok=1
say "PASS"
