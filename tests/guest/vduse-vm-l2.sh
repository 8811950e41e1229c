# vduse-vm-l2.sh - runs inside the inner guest of vduse-vm-test.sh, whose
# /dev/vda is a vhost-vdpa device served by a VDUSE back-end in the outer
# guest.
#
# Environment (from the outer guest's kernel command line for this guest):
#   PHASE   write   verified I/O 4K..1M, flush, discard and write-zeroes
#                   read back as zeros, a pattern, ext4 mkfs + files + fsck
#           reboot  a second VM on the same device: the pattern and the
#                   files of the 'write' phase are there, fsck is clean;
#                   then a second pattern over the discarded range
#           fio     4 KiB random reads at queue depth 32 (fio, if present)
#           attack  vringattack (a hostile user-space driver) takes the PCI
#                   function and sends malformed rings, split and (PACKED=1)
#                   packed; then virtio_blk gets the device back and works
#           cpu     no disk: both vCPUs busy for a while (nested
#                   virtualisation alone)
#   SEED COUNT THREADS MAX  blkcheck verify's seed, writes, threads and
#           largest request (default 1M)
#   NQ      expected blk-mq queues;  PACKED  expected RING_PACKED (0/1)
#   SERIAL  expected serial (GET_ID); empty: do not check
# Layout of the 64 MiB disk: ext4 in [0, 48M), discard [48M, 52M),
# write-zeroes [52M, 56M), pattern [56M, 64M).
. /usr/share/vblk-guest/lib.sh
set -u
PHASE=${PHASE:-write}
SEED=${SEED:-1}
COUNT=${COUNT:-300}
THREADS=${THREADS:-2}
DISK=/dev/vda

# zeros OFFSET_MIB LEN_MIB: the range reads back as zeros, from the device
zeros() {
    n=$(dd if=$DISK bs=1M skip="$1" count="$2" iflag=direct 2>/dev/null | tr -d '\000' | wc -c)
    [ "$n" -eq 0 ] || guest_fail "$DISK [$1M, +$2M) does not read back as zeros ($n non-zero bytes)"
    echo "[$1M, +$2M) reads back as zeros"
}

if [ "$PHASE" = cpu ]; then
    echo "cpus: $(nproc)"
    for j in 1 2 3 4; do
        (dd if=/dev/urandom bs=64k count=160 2>/dev/null | sha256sum >/tmp/cpu$j) &
    done
    wait
    echo "L2 done: $PHASE"
    exit 0
fi
wait_dev $DISK 30
D=vda
echo "features: $(cut -c1-64 /sys/block/$D/device/features)"
nq=$(ls -d /sys/block/$D/mq/* | wc -l)
echo "blk-mq queues: $nq, cpus: $(nproc)"
[ "$nq" -eq "${NQ:-1}" ] || guest_fail "expected ${NQ:-1} blk-mq queues, found $nq"
if blkcheck features $D 34 >/dev/null; then packed=1; else packed=0; fi
echo "ring: $([ $packed = 1 ] && echo packed || echo split)"
[ "$packed" = "${PACKED:-0}" ] || guest_fail "RING_PACKED is $packed, expected ${PACKED:-0}"
if [ -n "${SERIAL:-}" ]; then
    serial=$(cat /sys/block/$D/serial)
    echo "serial (GET_ID): $serial"
    [ "$serial" = "$SERIAL" ] || guest_fail "serial is '$serial', expected '$SERIAL'"
fi
mkdir -p /mnt

case $PHASE in
write)
    run blkcheck verify $DISK --min 4K --max "${MAX:-1M}" --count "$COUNT" --threads "$THREADS" --seed "$SEED"
    run blkcheck flush $DISK
    run blkcheck discard $DISK 48M 4M
    zeros 48 4
    run blkcheck zeroout $DISK 52M 4M
    zeros 52 4
    run blkcheck pattern-write $DISK 56M 8M "$SEED"
    run blkcheck pattern-check $DISK 56M 8M "$SEED"
    run mkfs.ext4 -F -q -L vduse-vm $DISK 48M
    run mount -t ext4 $DISK /mnt
    i=1
    while [ $i -le 6 ]; do
        run dd if=/dev/urandom of=/mnt/file$i bs=64k count=$((i * 2)) 2>/dev/null
        i=$((i + 1))
    done
    mkdir -p /mnt/a/b && echo "seed $SEED" >/mnt/a/b/c
    (cd /mnt && sha256sum file* a/b/c >/mnt/SUMS)
    run umount /mnt
    run e2fsck -fn $DISK
    run blkcheck flush $DISK
    ;;
reboot)
    run blkcheck pattern-check $DISK 56M 8M "$SEED"
    zeros 52 4
    run e2fsck -fn $DISK
    run mount -t ext4 -o ro $DISK /mnt
    (cd /mnt && sha256sum -c SUMS >/dev/null) || guest_fail "the files differ in the second VM"
    grep -q "seed $SEED" /mnt/a/b/c || guest_fail "a/b/c has the wrong contents"
    echo "files intact: $(wc -l </mnt/SUMS) checked"
    run umount /mnt
    # the second VM writes too: a pattern over the discarded range
    run blkcheck pattern-write $DISK 48M 4M "$((SEED + 1))"
    run blkcheck flush $DISK
    ;;
attack)
    pci=$(basename "$(readlink -f /sys/block/$D/device/..)")
    echo 16 >/proc/sys/vm/nr_hugepages
    echo "$pci: $(cat /sys/bus/pci/devices/$pci/vendor):$(cat /sys/bus/pci/devices/$pci/device)"
    run vringattack split "$pci"
    [ "${PACKED:-0}" = 0 ] || run vringattack packed "$pci"
    echo "giving $pci back to virtio-pci"
    echo "$pci" >/sys/bus/pci/drivers/virtio-pci/bind || guest_fail "cannot bind $pci to virtio-pci"
    wait_dev $DISK 30
    run blkcheck verify $DISK --min 4K --max 256K --count 64 --threads 1 --seed "$SEED"
    run blkcheck flush $DISK
    ;;
fio)
    command -v fio >/dev/null || guest_fail "no fio in this initramfs"
    fio --name=randread --filename=$DISK --direct=1 --ioengine=libaio --rw=randread --bs=4k \
        --iodepth=32 --numjobs=1 --time_based --runtime="${FIO_RUNTIME:-10}" --ramp_time=2 \
        --group_reporting --output-format=terse --terse-version=3 >/tmp/fio.out ||
        guest_fail "fio failed"
    # terse v3: field 8 is read IOPS, 40 the mean total latency (usec)
    echo "FIO-RESULT: $(awk -F';' '{print "iops=" $8 " lat_mean_us=" $40}' /tmp/fio.out)"
    ;;
*) guest_fail "unknown PHASE '$PHASE'" ;;
esac
echo "L2 done: $PHASE"
