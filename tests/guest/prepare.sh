#!/usr/bin/env bash
# prepare.sh [CACHE_DIR] - get everything needed to boot a test guest.
#
# Idempotent.  Installs missing Debian packages (only when a tool is missing),
# picks the newest linux-image-6.12.*-amd64-unsigned from the apt archive and
# leaves in CACHE_DIR:
#   vmlinuz            the guest kernel
#   config             its kernel config (for reference)
#   kernel.pkg         package name and version this cache was built from
#   modules/*.ko       decompressed modules: virtio_blk, vdpa, vhost_iotlb,
#                      vduse, virtio_vdpa, ext4 and everything they depend on
#   modules/order      module file names in load order (insmod order)
#   modules/builtin    wanted modules that are built into the kernel
#
# Environment:
#   VBLK_GUEST_CACHE          default CACHE_DIR (/var/cache/vblk-guest)
#   VBLK_GUEST_KERNEL_PKG     use this kernel package instead of the newest
#   VBLK_GUEST_EXTRA_MODULES  more module names to include (space separated)
set -euo pipefail

die() { echo "prepare.sh: error: $*" >&2; exit 1; }
log() { echo "prepare.sh: $*" >&2; }

CACHE=${1:-${VBLK_GUEST_CACHE:-/var/cache/vblk-guest}}
WANT_MODULES="virtio_blk vdpa vhost_iotlb vduse virtio_vdpa ext4 ${VBLK_GUEST_EXTRA_MODULES:-}"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive

# ---------------------------------------------------------------- packages
# "command package" pairs: install the package only if the command is missing.
TOOLS=(
    "qemu-system-x86_64 qemu-system-x86"
    "qemu-storage-daemon qemu-system-x86"
    "cpio cpio"
    "xz xz-utils"
    "gzip gzip"
    "mke2fs e2fsprogs"
    "e2fsck e2fsprogs"
    "vdpa iproute2"
    "modinfo kmod"
    "depmod kmod"
    "modprobe kmod"
    "gcc gcc"
    "timeout coreutils"
)

static_busybox() {
    local bb
    for bb in /bin/busybox /usr/bin/busybox; do
        # a static binary makes ldd fail with "not a dynamic executable"
        if [[ -x $bb ]] && ! ldd "$bb" >/dev/null 2>&1; then
            return 0
        fi
    done
    return 1
}

apt_install() {
    [[ $(id -u) -eq 0 ]] || die "need to install $* but not running as root"
    log "installing: $*"
    local opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=600)
    if ! apt-get install "${opts[@]}" "$@"; then
        log "apt-get install failed, running apt-get update and retrying"
        apt-get -q -o DPkg::Lock::Timeout=600 update
        apt-get install "${opts[@]}" "$@"
    fi
}

missing=()
for pair in "${TOOLS[@]}"; do
    read -r cmd pkg <<<"$pair"
    if ! command -v "$cmd" >/dev/null 2>&1; then
        [[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
    fi
done
static_busybox || missing+=(busybox-static)
# gcc -static needs libc.a
[[ -e /usr/lib/x86_64-linux-gnu/libc.a ]] || missing+=(libc6-dev)
if ((${#missing[@]})); then
    apt_install "${missing[@]}"
fi
static_busybox || die "no static busybox at /bin/busybox after installing busybox-static"

# ------------------------------------------------------------- kernel pick
PKG_RE='^linux-image-6\.12\.[0-9]+\+deb[0-9]+-amd64-unsigned$'
newest_kernel_pkg() {
    apt-cache search --names-only "$PKG_RE" 2>/dev/null | awk '{print $1}' | sort -V | tail -n 1
}

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
# one prepare.sh per cache at a time (CI jobs may share it); mkinitramfs.sh
# takes the same lock shared while it copies from the cache
exec 9>>"$CACHE/.lock"
if ! flock -w 900 9; then
    die "timed out waiting for the lock on $CACHE/.lock"
fi

pkg=${VBLK_GUEST_KERNEL_PKG:-}
if [[ -z $pkg ]]; then
    pkg=$(newest_kernel_pkg)
    if [[ -z $pkg ]]; then
        log "apt-cache knows no 6.12 kernel image; running apt-get update"
        if [[ $(id -u) -eq 0 ]]; then
            apt-get -q -o DPkg::Lock::Timeout=600 update >&2 || log "apt-get update failed"
        fi
        pkg=$(newest_kernel_pkg)
    fi
fi
if [[ -z $pkg ]]; then
    if [[ -s $CACHE/kernel.pkg && -s $CACHE/vmlinuz && -s $CACHE/modules/order ]]; then
        log "warning: cannot look up kernel packages; using the cached $(head -n1 "$CACHE/kernel.pkg")"
        exit 0
    fi
    die "no package matching $PKG_RE in the apt archive"
fi
ver=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | awk '/^Version:/{print $2; exit}')
[[ -n $ver ]] || die "apt-cache show $pkg gave no version"

stamp="$pkg $ver
modules: $(tr ' ' '\n' <<<"$WANT_MODULES" | sed '/^$/d' | sort -u | tr '\n' ' ')"
if [[ -s $CACHE/vmlinuz && -s $CACHE/modules/order && -f $CACHE/kernel.pkg ]] &&
    [[ $(cat "$CACHE/kernel.pkg") == "$stamp" ]]; then
    log "cache $CACHE is up to date ($pkg $ver)"
    exit 0
fi

# ------------------------------------------------------ download + extract
log "preparing $CACHE from $pkg $ver"
tmp=$(mktemp -d "$CACHE/.prepare.XXXXXX")
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

(cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >&2) ||
    die "apt-get download $pkg=$ver failed"
deb=$(find "$tmp" -maxdepth 1 -name '*.deb' | head -n1)
[[ -n $deb ]] || die "apt-get download produced no .deb"
dpkg -x "$deb" "$tmp/root"
rm -f "$deb"

kver=$(find "$tmp/root/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -n1)
[[ -n $kver && -d $tmp/root/lib/modules/$kver ]] || die "no lib/modules/<version> in $pkg"
vmlinuz=$tmp/root/boot/vmlinuz-$kver
[[ -f $vmlinuz ]] || die "no boot/vmlinuz-$kver in $pkg"
moddir=$tmp/root/lib/modules/$kver

# The package has no modules.dep/alias (depmod runs at install time): make
# them, then let modprobe resolve hard and soft dependencies in load order.
log "running depmod for $kver"
depmod -b "$tmp/root" "$kver"

out=$tmp/modules
mkdir -p "$out"
: >"$out/order"
: >"$out/builtin"

# module name as the kernel sees it ("crc32c-intel.ko.xz" -> crc32c_intel)
modname() { local b; b=$(basename "$1"); b=${b%%.ko*}; echo "${b//-/_}"; }

declare -A have=()   # module name -> .ko file name in $out
add_ko() {           # add_ko /path/to/mod.ko[.xz]
    local src=$1 name file
    name=$(modname "$src")
    [[ -z ${have[$name]:-} ]] || return 0
    file=$(basename "$src"); file=${file%.xz}; file=${file%.zst}; file=${file%.gz}
    case $src in
    *.ko.xz) xz -dc "$src" >"$out/$file" ;;
    *.ko.zst) zstd -qdc "$src" >"$out/$file" ;;
    *.ko.gz) gzip -dc "$src" >"$out/$file" ;;
    *.ko) cp "$src" "$out/$file" ;;
    *) die "unexpected module file $src" ;;
    esac
    have[$name]=$file
    echo "$file" >>"$out/order"
}

for m in $WANT_MODULES; do
    if grep -qE "/${m//_/[-_]}\.ko(\..*)?$" "$moddir/modules.builtin" 2>/dev/null; then
        log "$m is built into $kver"
        echo "$m" >>"$out/builtin"
        continue
    fi
    deps=$(modprobe -d "$tmp/root" -S "$kver" --show-depends "$m" 2>&1) ||
        die "modprobe --show-depends $m failed: $deps"
    while read -r kind path _; do
        case $kind in
        insmod) add_ko "$path" ;;
        builtin) echo "$path" >>"$out/builtin" ;;
        esac
    done <<<"$deps"
done

# Cross-check with modinfo: every hard dependency of every module must be
# either built in or loaded earlier in the order (recursively true then).
declare -A seen=()
while read -r f; do
    for d in $(modinfo -F depends "$out/$f" | tr ',' ' '); do
        d=${d//-/_}
        [[ -n ${seen[$d]:-} ]] || grep -qx "$d" "$out/builtin" ||
            grep -qE "/${d//_/[-_]}\.ko" "$moddir/modules.builtin" ||
            die "module order broken: $f needs $d which is not loaded before it"
    done
    seen[$(modname "$f")]=1
done <"$out/order"
sort -u -o "$out/builtin" "$out/builtin"

log "modules (load order): $(tr '\n' ' ' <"$out/order")"
[[ -s $out/builtin ]] && log "built in: $(tr '\n' ' ' <"$out/builtin")"

# ----------------------------------------------------------- install cache
cp "$vmlinuz" "$tmp/vmlinuz"
cp "$tmp/root/boot/config-$kver" "$tmp/config" 2>/dev/null || true
rm -rf "$CACHE/modules" "$CACHE/vmlinuz" "$CACHE/config"
mv "$out" "$CACHE/modules"
mv "$tmp/vmlinuz" "$CACHE/vmlinuz"
[[ -f $tmp/config ]] && mv "$tmp/config" "$CACHE/config"
echo "$kver" >"$CACHE/kernel.release"
printf '%s\n' "$stamp" >"$CACHE/kernel.pkg"
log "done: $CACHE/vmlinuz ($kver), $(wc -l <"$CACHE/modules/order") modules"
