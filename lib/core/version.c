/* SPDX-License-Identifier: MIT */
#include "virtioblk/version.h"

/* The build passes the project's version (CMakeLists.txt). */
#ifndef VBLK_VERSION_STRING
#error "VBLK_VERSION_STRING is not defined: build with CMake"
#endif

const char *vblk_version(void)
{
    return VBLK_VERSION_STRING;
}
