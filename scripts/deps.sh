#!/usr/bin/env bash
# Installs the Debian packages libvirtioblk needs to build and test, if any
# are missing. Usage: scripts/deps.sh [build|test|all|backports]
# ("backports" only adds bookworm-backports to the sources, see below).
#
# The tests use QEMU 10.0 from Debian bookworm-backports. For "test" and
# "all", the script adds bookworm-backports to the Suites: line of the
# machine's /etc/apt/sources.list.d/debian.sources when it is not there yet
# (the archive address stays the machine's own), and installs qemu-system-x86
# and qemu-utils with -t bookworm-backports unless QEMU 10 is installed.
set -euo pipefail
what=${1:-all}
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo

# Adds bookworm-backports to the Suites: line of the stanza that names plain
# "bookworm" in the machine's own sources, unless it is there already.
add_backports() {
  local sources=/etc/apt/sources.list.d/debian.sources
  if [ -f "$sources" ]; then
    if ! grep -Eq '^Suites:.*[[:space:]]bookworm-backports([[:space:]]|$)' "$sources"; then
      echo "adding bookworm-backports to the Suites: line of $sources"
      $sudo sed -i -E '/^Suites:/{/[[:space:]]bookworm([[:space:]]|$)/s/[[:space:]]*$/ bookworm-backports/}' "$sources"
    fi
  else
    echo "scripts/deps.sh: warning: no $sources; expecting bookworm-backports to be configured" >&2
  fi
}
if [ "$what" = backports ]; then
  add_backports
  exit 0
fi
pkgs=(build-essential cmake pkg-config libcmocka-dev liburing-dev libjson-c-dev libmicrohttpd-dev)
if [ "$what" != build ]; then
  pkgs+=(clang doxygen gcovr lcov valgrind busybox-static cpio xz-utils
         e2fsprogs iproute2 util-linux f2fs-tools python3)
fi
export DEBIAN_FRONTEND=noninteractive
updated=0
update() { [ $updated -eq 1 ] || $sudo apt-get update -qq; updated=1; }

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  update
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ "$what" != build ] || exit 0

# The Ceph RBD backend (librbd-dev and librados-dev are optional for a build:
# the backend is built when they are there) and the single-node cluster its
# tests start (tests/ceph/ceph-up.sh). Without recommends: the daemons would
# pull in about 100 more packages.
# The NBD backend likewise (libnbd-dev optional for a build), with the
# nbdkit its tests start (tests/nbd/) and nbdinfo (libnbd-bin).
ceph=(librbd-dev librados-dev ceph-mon ceph-osd ceph-common uuid-runtime
      libnbd-dev libnbd-bin nbdkit)
missing=()
for p in "${ceph[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  update
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# QEMU 10.0 from bookworm-backports.
qemu_ok() {
  local p v
  for p in qemu-system-x86 qemu-utils; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || return 1
    v=$(dpkg-query -W -f='${Version}' "$p")
    dpkg --compare-versions "$v" ge 1:10.0 || return 1
  done
}
qemu_ok && exit 0
add_backports
echo "installing QEMU 10 from bookworm-backports: qemu-system-x86 qemu-utils"
updated=0
update
$sudo apt-get install -y -qq -t bookworm-backports qemu-system-x86 qemu-utils >/dev/null
qemu_ok || { echo "scripts/deps.sh: error: QEMU 10 is not installed after apt-get" >&2; exit 1; }
