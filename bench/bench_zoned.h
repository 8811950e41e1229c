/* SPDX-License-Identifier: MIT */
/* vblk-bench --zoned (bench_zoned.c). */
#ifndef VBLK_BENCH_ZONED_H
#define VBLK_BENCH_ZONED_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtioblk/virtioblk.h"

/* Checks the zoned back-end behind @c and races appends from @queues
 * queues with @iodepth in flight each. Returns the exit status. */
int bench_zoned(struct vblk_vu_client *c, uint16_t queues, uint32_t iodepth, double timeout);

#endif
