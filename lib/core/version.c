/* SPDX-License-Identifier: MIT */
#include "virtioblk/version.h"

const char *vblk_version(void)
{
    return "0.1.0";
}
