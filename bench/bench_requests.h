/* SPDX-License-Identifier: MIT */
/* vblk-bench --zoned and --get-lifetime (bench_requests.c). */
#ifndef VBLK_BENCH_REQUESTS_H
#define VBLK_BENCH_REQUESTS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtioblk/virtioblk.h"

/* Checks the zoned back-end behind @c and races appends from @queues
 * queues with @iodepth in flight each. Returns the exit status. */
int bench_zoned(struct vblk_vu_client *c, uint16_t queues, uint32_t iodepth, double timeout);

/* Sends GET_LIFETIME on queue 0 and prints the answer. Returns the exit
 * status: 0, or 1 when it fails or the back-end does not offer it. */
int bench_lifetime(struct vblk_vu_client *c, double timeout);

/* Writes 8 blocks, SECURE_ERASEs some of them (two ranges when the device
 * takes two) and reads everything back. Returns the exit status. */
int bench_secure_erase(struct vblk_vu_client *c, double timeout);

#endif
