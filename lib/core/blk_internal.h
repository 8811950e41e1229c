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

/* virtio 1.2 5.2.6.1: writes must be stable at completion when the cache
 * is write-through, or when FLUSH was offered but neither FLUSH nor
 * CONFIG_WCE was negotiated. */
static inline bool req_write_through(const struct vblk_dev *dev)
{
    uint64_t f = dev->driver_features;
    if (f & VBLK_BIT(VBLK_F_CONFIG_WCE))
        return !dev->config.writeback;
    return (dev->host_features & VBLK_BIT(VBLK_F_FLUSH)) && !(f & VBLK_BIT(VBLK_F_FLUSH));
}

/* Takes up to @budget requests of the common shape (a direct header, data,
 * status chain; IN or OUT) from the ring and starts them, stopping before
 * the first request that needs the general path. Returns how many it took;
 * the caller flushes. */
unsigned blk_fast_burst(struct vblk_queue *q, unsigned budget);

/* Decodes the zoned request types (zoned requests accepted, dev->zoned_on). */
int req_decode_zoned(const struct vblk_queue *q, struct vblk_req *r, struct vblk_iov *rd,
                     uint16_t nrd, uint32_t rd_len, struct vblk_iov *win, uint16_t nwin,
                     uint32_t wr_len);

#endif
