# 64-bit ARM Linux with Debian's gcc-aarch64-linux-gnu. Target libraries come
# from Debian multiarch (dpkg --add-architecture arm64; apt-get install
# libcmocka-dev:arm64), found through their pkg-config files. When
# qemu-aarch64 (qemu-user-static or qemu-user) is installed, ctest runs the
# test programs under it:
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64-linux-gnu.cmake
#   cmake --build build-aarch64 && ctest --test-dir build-aarch64 -L example
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# Only the target's .pc files: the build machine's liburing is not ours.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")

find_program(VBLK_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(VBLK_QEMU_AARCH64 AND EXISTS /lib/ld-linux-aarch64.so.1)
  # Multiarch libc6:arm64 is installed: programs run as they are. (With -L
  # pointing at the cross C library instead, qemu-user 7.2 hangs threaded
  # programs.)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${VBLK_QEMU_AARCH64}")
elseif(VBLK_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${VBLK_QEMU_AARCH64};-L;/usr/aarch64-linux-gnu")
endif()
