/* SPDX-License-Identifier: MIT */
/* Shared between the queue and request decoding. Not installed. */
#ifndef VBLK_BLK_INTERNAL_H
#define VBLK_BLK_INTERNAL_H

#include "virtioblk/advanced.h"
#include "virtioblk/blk.h"

/* req_decode() verdicts besides a VBLK_S_* status (0..255) to complete
 * the request with at once. */
enum {
    REQ_SUBMIT = 0x100, /* valid: hand it to the backend */
    REQ_DROP = 0x101,   /* no status byte: nothing can be reported */
};

/* Decodes and validates a popped request and fills @r for the backend.
 * Touches no queue state: the queue acts on the verdict. */
int req_decode(const struct vblk_queue *q, struct vblk_req *r);

/* Request types whose data buffers the device writes. */
static inline bool req_writes_data(uint32_t type)
{
    return type == VBLK_T_IN || type == VBLK_T_GET_ID || type == VBLK_T_GET_LIFETIME ||
           type == VBLK_T_ZONE_REPORT;
}

/* Decodes the zoned request types (zoned requests accepted, dev->zoned_on). */
int req_decode_zoned(const struct vblk_queue *q, struct vblk_req *r, struct vblk_iov *rd,
                     uint16_t nrd, uint32_t rd_len, struct vblk_iov *win, uint16_t nwin,
                     uint32_t wr_len);

#endif
