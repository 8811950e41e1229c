#!/usr/bin/env bash
# What a packager or a parent project does with the source tree, each in a
# scratch directory:
#   find-package      install BUILD, then build a project that calls
#                     find_package(virtioblk) against the prefix;
#   add-subdirectory  build a project that add_subdirectory()s the tree;
#   minimal           configure, build and install the tree with no optional
#                     package to be found (no cmocka, no liburing, no
#                     Doxygen, no librbd (VBLK_RBD=OFF: it is found
#                     without pkg-config), then not even pkg-config).
# Usage: check.sh MODE SRC BUILD CC [GENERATOR]
set -euo pipefail
mode=$1 src=$2 build=$3 cc=$4 gen=${5:-Unix Makefiles}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
here=$src/tests/consumers

run_all() {
  for p in prog_shared prog_static firmware_core; do
    "$1/$p" || { echo "$mode: $p failed"; exit 1; }
  done
}

case $mode in
find-package)
  cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
  cmake -S "$here/find_package" -B "$tmp/b" -G "$gen" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_PREFIX_PATH="$tmp/prefix" -DVBLK_TEST_SRC="$src" >"$tmp/log" 2>&1 ||
    { cat "$tmp/log"; exit 1; }
  cmake --build "$tmp/b" --parallel 2 >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
  run_all "$tmp/b"
  ;;
add-subdirectory)
  cmake -S "$here/add_subdirectory" -B "$tmp/b" -G "$gen" -DCMAKE_C_COMPILER="$cc" \
    -DVBLK_TEST_SRC="$src" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
  cmake --build "$tmp/b" --parallel 2 >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
  run_all "$tmp/b"
  ;;
minimal)
  # pkg-config finds nothing: cmocka and liburing are absent.
  mkdir "$tmp/no-pc"
  PKG_CONFIG_LIBDIR=$tmp/no-pc PKG_CONFIG_PATH= \
    cmake -S "$src" -B "$tmp/b" -G "$gen" -DCMAKE_C_COMPILER="$cc" -DVBLK_WERROR=ON \
    -DCMAKE_DISABLE_FIND_PACKAGE_Doxygen=ON -DVBLK_RBD=OFF >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
  for msg in "cmocka not found" "unit tests" "preadv/pwritev only" "RBD backend: not built"; do
    grep -q "$msg" "$tmp/log" || { cat "$tmp/log"; echo "minimal: no \"$msg\" message"; exit 1; }
  done
  cmake --build "$tmp/b" --parallel 2 >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
  cmake --install "$tmp/b" --prefix "$tmp/prefix" >/dev/null
  for f in lib/libvirtioblk.a lib/libvirtioblk-core.a lib/pkgconfig/libvirtioblk.pc \
           lib/pkgconfig/virtioblk-core.pc lib/cmake/virtioblk/virtioblkConfig.cmake \
           include/virtioblk/virtioblk.h bin/vblk-vhost-user bin/vblk-vduse bin/vblk-bench; do
    [ -e "$tmp/prefix/$f" ] || { echo "minimal: $f not installed"; exit 1; }
  done
  if grep -q liburing "$tmp/prefix/lib/pkgconfig/libvirtioblk.pc"; then
    echo "minimal: libvirtioblk.pc requires liburing, which was not found"; exit 1
  fi
  if grep -q -- -lrbd "$tmp/prefix/lib/pkgconfig/libvirtioblk.pc" ||
     [ -e "$tmp/prefix/include/virtioblk/rbd.h" ]; then
    echo "minimal: the RBD backend's header or libraries were installed without it"; exit 1
  fi
  "$tmp/prefix/bin/vblk-vhost-user" --socket "$tmp/s" --rbd rbd/x 2>"$tmp/log" && exit 1
  grep -q "no Ceph RBD support" "$tmp/log" || { cat "$tmp/log"; echo "minimal: no message for --rbd"; exit 1; }
  # Tests that need no cmocka are still there, and pass.
  ctest --test-dir "$tmp/b" -L example --output-on-failure >"$tmp/log" 2>&1 ||
    { cat "$tmp/log"; exit 1; }
  # Without pkg-config at all, configuring still works.
  cmake -S "$src" -B "$tmp/b2" -G "$gen" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON -DCMAKE_DISABLE_FIND_PACKAGE_Doxygen=ON \
    >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
  grep -q "cmocka not found" "$tmp/log" || { cat "$tmp/log"; echo "minimal: no cmocka message"; exit 1; }
  ;;
*)
  echo "unknown mode $mode"; exit 2
  ;;
esac
echo "$mode consumer test passed"
