#!/usr/bin/env bash
# Installs the build into a fresh prefix, then builds and runs a program
# against it the way a user would: cc prog.c $(pkg-config --cflags --libs),
# for the whole library (libvirtioblk) and for the core alone (virtioblk-core).
set -euo pipefail
build=$1 src=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in include/virtioblk/virtioblk.h include/virtioblk/version.h lib/pkgconfig/libvirtioblk.pc \
         lib/libvirtioblk.a lib/libvirtioblk-core.a lib/pkgconfig/virtioblk-core.pc \
         lib/cmake/virtioblk/virtioblkConfig.cmake; do
  [ -e "$prefix/$f" ] || { echo "missing $prefix/$f"; exit 1; }
done
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
cc -std=c11 -Wall -Wextra -Werror "$src/tests/install/prog.c" -o "$prefix/prog" \
   $(pkg-config --cflags --libs libvirtioblk)
"$prefix/prog"
# Firmware-style users take the freestanding core alone.
cc -std=c11 -Wall -Wextra -Werror "$src/examples/firmware-poll.c" -o "$prefix/firmware-poll" \
   $(pkg-config --cflags --libs virtioblk-core)
"$prefix/firmware-poll"
# Only vblk_ symbols are exported, and the SONAME is the ABI version (docs/api.md).
so=$(readlink -f "$prefix/lib/libvirtioblk.so")
objdump -p "$so" | grep -q 'SONAME *libvirtioblk.so.1$' || { echo "no SONAME libvirtioblk.so.1"; exit 1; }
bad=$(nm -D --defined-only "$so" | awk '$2 ~ /[TDBR]/ {print $3}' | grep -v '^vblk_' | grep -v '^VBLK_' || true)
[ -z "$bad" ] || { echo "unexpected exported symbols: $bad"; exit 1; }
echo "install test passed"
