# Bare-metal 32-bit ARM with Debian's gcc-arm-none-eabi and newlib
# (libnewlib-arm-none-eabi). Only the freestanding core makes sense here:
#   cmake -S . -B build-arm -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-arm-none-eabi.cmake \
#         -DVBLK_CORE_ONLY=ON [-DVBLK_ARM_FLAGS="-mcpu=cortex-a7 -marm"]
# Executables link with newlib's startup code and its nosys stubs, which is
# enough to prove they link; a board brings its own startup and linker script.
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_C_COMPILER arm-none-eabi-gcc)

set(VBLK_ARM_FLAGS "-mcpu=cortex-m4 -mthumb" CACHE STRING "CPU flags for the bare-metal ARM build")
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES VBLK_ARM_FLAGS)
set(CMAKE_C_FLAGS_INIT "${VBLK_ARM_FLAGS}")
set(CMAKE_EXE_LINKER_FLAGS_INIT "--specs=nosys.specs")
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
