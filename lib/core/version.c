/* SPDX-License-Identifier: MIT */
#include "virtioblk/virtioblk.h"

const char *vblk_version(void)
{
    return "0.1.0";
}
