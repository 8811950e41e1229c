/* SPDX-License-Identifier: MIT */
/* Shared body of the split_ring and packed_ring fuzz targets. */
#ifndef VBLK_FUZZ_RING_HARNESS_H
#define VBLK_FUZZ_RING_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int ring_fuzz_one(const uint8_t *data, size_t size, bool packed);

#endif
