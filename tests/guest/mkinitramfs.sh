#!/usr/bin/env bash
# mkinitramfs.sh CACHE_DIR OUT.cpio.gz WORKLOAD_SCRIPT [EXTRA_FILE...]
#
# Builds a test initramfs:
#   - static busybox with every applet linked (merged-/usr layout, like Debian)
#   - mke2fs/mkfs.ext4, e2fsck/fsck.ext4 and the iproute2 `vdpa` tool, with
#     the shared libraries ldd lists for them (same paths)
#   - the modules of CACHE_DIR/modules (from prepare.sh), loaded by /init in
#     the order of CACHE_DIR/modules/order
#   - WORKLOAD_SCRIPT as /workload.sh, run with /bin/sh by /init
#   - each EXTRA_FILE in /bin (plus its ldd libraries when it is dynamic);
#     an EXTRA_FILE written SRC=/ABS/DST goes to /ABS/DST instead
#   - /usr/share/vblk-guest/lib.sh: helpers a workload may source
#     (guest_fail, step, run, wait_for, wait_dev)
# OUT is gzip-compressed when its name ends in .gz, else a plain cpio archive
# (cheaper to unpack for a large initramfs under TCG).
# /init prints "GUEST-RESULT: PASS" when the workload exits 0, otherwise
# "GUEST-RESULT: FAIL <reason>", and powers the guest off.  The reason is the
# first line of /tmp/guest-fail-reason if the workload wrote one (guest_fail
# does), else the exit status.
#
# Kernel command line words of the form NAME=VALUE (no dots) reach /init and
# the workload as environment variables (see run-guest.sh --env).  Special:
#   VBLK_GUEST_TIMEOUT=SECS  kill the workload after SECS seconds
#   VBLK_GUEST_SHELL=1       start a shell on the console instead of powering
#                            off when the workload fails (interactive debug)
set -euo pipefail

die() { echo "mkinitramfs.sh: error: $*" >&2; exit 1; }

[[ $# -ge 3 ]] || die "usage: mkinitramfs.sh CACHE_DIR OUT.cpio.gz WORKLOAD_SCRIPT [EXTRA_FILE...]"
CACHE=$1 OUT=$2 WORKLOAD=$3
shift 3
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

[[ -s $CACHE/modules/order ]] || die "$CACHE/modules/order missing: run prepare.sh $CACHE first"
[[ -f $WORKLOAD ]] || die "workload script $WORKLOAD not found"
for f in "$@"; do [[ -f ${f%%=/*} ]] || die "extra file ${f%%=/*} not found"; done
for c in cpio gzip; do command -v "$c" >/dev/null || die "$c not installed (run prepare.sh)"; done

BUSYBOX=
for bb in /bin/busybox /usr/bin/busybox; do
    if [[ -x $bb ]] && ! ldd "$bb" >/dev/null 2>&1; then BUSYBOX=$bb; break; fi
done
[[ -n $BUSYBOX ]] || die "no static busybox found (install busybox-static)"

root=$(mktemp -d "${TMPDIR:-/tmp}/vblk-initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT

# merged-/usr layout: /bin, /sbin, /lib, /lib64 point into /usr, so a file
# copied to its host path lands in one place whatever spelling ldd used
mkdir -p "$root"/usr/{bin,sbin,lib,lib64} "$root"/{dev,proc,sys,tmp,run,mnt,root,etc,var,modules}
ln -s usr/bin "$root/bin"
ln -s usr/sbin "$root/sbin"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
ln -s ../tmp "$root/var/tmp"
ln -s ../run "$root/var/run"

cp "$BUSYBOX" "$root/usr/bin/busybox"
while read -r applet; do
    [[ -n $applet ]] || continue
    dst=$root/$applet
    [[ -e $dst || -L $dst ]] && continue
    mkdir -p "$(dirname "$dst")"
    ln -s /usr/bin/busybox "$dst"
done < <("$BUSYBOX" --list-full)

# copy_with_libs SRC DST: copy a binary and, when dynamic, every library ldd
# lists, to the same absolute paths inside the initramfs
copy_libs() {
    local lib
    # "libx.so => /path (addr)" and "/lib64/ld-linux-x86-64.so.2 (addr)"
    while read -r lib; do
        [[ -n $lib && -e $lib ]] || continue
        [[ -e $root$lib ]] && continue
        mkdir -p "$(dirname "$root$lib")"
        cp -L "$lib" "$root$lib"
    done < <(ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
}
copy_with_libs() {
    local src=$1 dst=$2
    rm -f "$dst"
    mkdir -p "$(dirname "$dst")"
    cp -L "$src" "$dst"
    chmod 0755 "$dst"
    copy_libs "$src"
}

for tool in mke2fs mkfs.ext4 e2fsck fsck.ext4 tune2fs dumpe2fs vdpa; do
    path=$(command -v "$tool" 2>/dev/null) || die "$tool not found on the host (run prepare.sh)"
    copy_with_libs "$path" "$root$path"
done
[[ -f /etc/mke2fs.conf ]] && cp /etc/mke2fs.conf "$root/etc/"
ln -s /proc/mounts "$root/etc/mtab"
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"

for f in "$@"; do
    if [[ $f == *=/* ]]; then
        copy_with_libs "${f%%=/*}" "$root/${f#*=/}"
    else
        copy_with_libs "$f" "$root/usr/bin/$(basename "$f")"
    fi
done

# shared lock: prepare.sh may be replacing the cache right now
if { exec 9>>"$CACHE/.lock"; } 2>/dev/null; then
    flock -s -w 900 9 || die "timed out waiting for the lock on $CACHE/.lock"
fi
[[ -s $CACHE/modules/order ]] || die "$CACHE/modules/order missing: run prepare.sh $CACHE first"
cp "$CACHE/modules/order" "$root/modules/"
shopt -s nullglob
kos=("$CACHE"/modules/*.ko)
shopt -u nullglob
((${#kos[@]} == 0)) || cp "${kos[@]}" "$root/modules/"
cp "$WORKLOAD" "$root/workload.sh"
chmod 0755 "$root/workload.sh"

# helpers a workload may source: . /usr/share/vblk-guest/lib.sh
mkdir -p "$root/usr/share/vblk-guest"
cat >"$root/usr/share/vblk-guest/lib.sh" <<'EOF'
# shell helpers for guest workloads (generated by mkinitramfs.sh)

# guest_fail REASON: record REASON for the GUEST-RESULT line and exit 1
guest_fail() {
    echo "WORKLOAD FAIL: $*"
    echo "$*" >/tmp/guest-fail-reason
    exit 1
}
# step TEXT: print a section header with the guest uptime
step() { echo "=== [$(cut -d' ' -f1 /proc/uptime)s] $*"; }
# run CMD ARGS...: echo and run a command; a failure ends the workload
run() {
    echo "+ $*"
    "$@" || guest_fail "'$*' exited with status $?"
}
# wait_for TEST PATH [SECONDS]: wait until `test TEST PATH` holds (default 10)
wait_for() {
    _w=0
    while ! test "$1" "$2"; do
        _w=$((_w + 1))
        [ "$_w" -le $((${3:-10} * 10)) ] || guest_fail "timed out waiting for $2"
        sleep 0.1
    done
}
# wait_dev DEV [SECONDS]: wait for a block device node
wait_dev() { wait_for -b "$1" "${2:-10}"; }
EOF

cat >"$root/init" <<'EOF'
#!/bin/sh
# initramfs /init for the libvirtioblk guest tests (generated by mkinitramfs.sh)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
echo 4 >/proc/sys/kernel/printk 2>/dev/null

result() {
    sync
    echo "GUEST-RESULT: $*"
    # give the UART a moment to drain before the power goes off
    sleep 1
    if [ "${VBLK_GUEST_SHELL:-0}" = 1 ] && [ "$1" != PASS ]; then
        echo "GUEST: VBLK_GUEST_SHELL=1: starting a shell, exit it to power off"
        setsid cttyhack sh
    fi
    poweroff -f
}

up=$(cut -d' ' -f1 /proc/uptime)
echo "GUEST: kernel $(uname -r), $(nproc) cpus, $(awk '/MemTotal/{print $2" kB"}' /proc/meminfo), up ${up}s"

while read -r m; do
    [ -n "$m" ] || continue
    if out=$(insmod "/modules/$m" 2>&1); then
        echo "GUEST: insmod $m: ok"
    else
        echo "GUEST: insmod $m: failed (built in, already loaded or unsupported CPU?): $out"
    fi
done </modules/order

echo "GUEST: running /workload.sh"
start=$(cut -d' ' -f1 /proc/uptime)
if [ -n "${VBLK_GUEST_TIMEOUT:-}" ]; then
    timeout "$VBLK_GUEST_TIMEOUT" /bin/sh /workload.sh
else
    /bin/sh /workload.sh
fi
rc=$?
end=$(cut -d' ' -f1 /proc/uptime)
echo "GUEST: workload exited with status $rc after $(awk "BEGIN{print $end - $start}")s (uptime ${end}s)"
if [ "$rc" -eq 0 ]; then
    result PASS
elif [ -n "${VBLK_GUEST_TIMEOUT:-}" ] && { [ "$rc" -eq 143 ] || [ "$rc" -eq 124 ]; }; then
    result "FAIL workload timed out after ${VBLK_GUEST_TIMEOUT}s (VBLK_GUEST_TIMEOUT)"
elif [ -s /tmp/guest-fail-reason ]; then
    result "FAIL $(head -n1 /tmp/guest-fail-reason)"
else
    result "FAIL workload exited with status $rc"
fi
EOF
chmod 0755 "$root/init"

# The kernel needs /dev/console to give /init its stdio; /init also reopens
# it after mounting devtmpfs, so failing here (not root) is harmless.
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true

mkdir -p "$(dirname "$OUT")"
compress=(gzip -6 -n)
[[ $OUT == *.gz ]] || compress=(cat)
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | "${compress[@]}" >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "mkinitramfs.sh: wrote $OUT ($(du -h "$OUT" | cut -f1))" >&2
