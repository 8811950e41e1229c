#!/usr/bin/env bash
# Installs the Debian packages libvirtioblk needs to build and test, if any
# are missing. Usage: scripts/deps.sh [build|test|all]
set -euo pipefail
what=${1:-all}
pkgs=(build-essential cmake pkg-config libcmocka-dev liburing-dev)
if [ "$what" != build ]; then
  pkgs+=(clang doxygen gcovr lcov valgrind qemu-system-x86 qemu-utils busybox-static cpio xz-utils
         e2fsprogs iproute2 util-linux)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
