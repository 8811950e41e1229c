/* SPDX-License-Identifier: MIT */
/* Shared between the queue and request decoding. Not installed. */
#ifndef VBLK_BLK_INTERNAL_H
#define VBLK_BLK_INTERNAL_H

#include "virtioblk/blk.h"

/* Decodes and validates a popped request. Returns true if it must be
 * submitted to the backend; false if it was completed (or dropped) here. */
bool req_start(struct vblk_queue *q, struct vblk_req *r);

/* Request types whose data buffers the device writes. */
static inline bool req_writes_data(uint32_t type)
{
    return type == VBLK_T_IN || type == VBLK_T_GET_ID || type == VBLK_T_GET_LIFETIME;
}

#endif
