/* SPDX-License-Identifier: MIT */
/*
 * Input formats of the fuzz targets, shared by the harnesses and by the
 * seed generator (gen_corpus.c). Multi-byte values are little-endian.
 */
#ifndef VBLK_FUZZ_FORMAT_H
#define VBLK_FUZZ_FORMAT_H

#include <stdbool.h>
#include <stdint.h>

/* ------------------------------------------------------------------------ */
/* split_ring / packed_ring                                                  */
/*
 * Input: a 48-byte header, then the bytes the driver wrote into guest
 * memory, in this order: descriptor table (split) or ring (packed), the
 * driver area (split: available ring with used_event; packed: driver event
 * suppression), then the data pool. The device area (used ring / device
 * event suppression) starts zeroed: only the device writes it. Missing
 * input bytes read as zero.
 *
 * Guest memory is laid out contiguously from RING_GUEST_BASE; every area
 * is its own allocation, so ASan sees any access past the end of one.
 */
#define RING_GUEST_BASE 0x10000ull
#define RING_POOL_SIZE  8192u
#define RING_MAX_SIZE   256u

enum ring_hdr_off {
    RH_SIZE = 0,       /* u8: split: size = 1 << (v % 9); packed: size = v + 1 */
    RH_FEAT = 1,       /* u8: RF_* bits, backend in bits 6-7 */
    RH_POOL = 2,       /* u8: bits 0-1 extra pool splits, bit 2 leave piece 1 unmapped,
                        * bit 3 ring areas at host addresses 1 + (v >> 4) % 15 bytes
                        * off their driver alignment */
    RH_SEG_MAX = 3,    /* u8: seg_max = v ? v : 126 */
    RH_LAST_AVAIL = 4, /* u16: starting last_avail_idx (with RF_STATE) */
    RH_USED_IDX = 6,   /* u16: starting used_idx (with RF_STATE) */
    RH_WRAPS = 8,      /* u8: bit 0 avail_wrap, bit 1 used_wrap; bits 4-7: log bytes */
    RH_SIZE_MAX = 9,   /* u8: size_max = v * 64 (0: none); 0xff: queue_start fails */
    RH_SPLITS = 10,    /* 3 x u16: pool split offsets */
    RH_POS = 16,       /* 4 x u16: positions for pop_at / resubmit */
    RH_DECIDE = 24,    /* 8 x u8: backend decision tape */
    RH_OPS = 32,       /* 16 x u8: operations */
    RING_HDR_SIZE = 48,
};

#define RING_NOPS 16u

enum ring_feat {
    RF_INDIRECT = 1u << 0,
    RF_EVENT_IDX = 1u << 1,
    RF_IN_ORDER = 1u << 2,
    RF_STATE = 1u << 3, /* start from the state in the header */
    RF_LOG = 1u << 4,   /* dirty log installed from the start */
    RF_HOOKS = 1u << 5, /* install request hooks */
};

/* Backend, bits 6-7 of RH_FEAT. */
enum ring_backend {
    RB_NULL = 0,   /* vblk_backend_null_create() */
    RB_INLINE = 1, /* fuzz backend, decision tape forced to inline completions */
    RB_MIXED = 2,  /* fuzz backend, decision tape as given */
    RB_MIXED2 = 3, /* same */
};

/* Operations, low 4 bits of each RH_OPS byte; the high 4 bits are an argument. */
enum ring_op {
    OP_PROCESS = 0,      /* vblk_queue_process(budget = arg) */
    OP_RUN = 1,          /* vblk_queue_on_kick() */
    OP_COMPLETE = 2,     /* complete deferred request arg % n, then flush */
    OP_COMPLETE_ALL = 3, /* complete every deferred request, newest first */
    OP_DRIVER_ADD = 4,   /* driver makes arg + 1 more entries available */
    OP_POP_AT = 5,       /* vblk_vq_pop_at(pos[arg & 3], arg >> 2 & 1) */
    OP_RESUBMIT = 6,     /* vblk_queue_resubmit(pos[arg & 3], arg >> 2 & 1) */
    OP_POLLING = 7,      /* vblk_queue_set_polling(arg & 1) */
    OP_NOTIFY = 8,       /* enable / disable notifications, has_avail */
    OP_RECONNECT = 9,    /* drain, save state, destroy, init again from the state */
    OP_LOG = 10,         /* toggle the dirty log */
    OP_ASYNC = 11,       /* complete deferred requests through the async path */
    OP_STOP = 12,        /* vblk_queue_stop() */
    OP_FLUSH = 13,       /* vblk_queue_flush() */
    /* Packed rings: a saved copy of a descriptor list (inflight tracking):
     * arg bit 3 set: vblk_vq_copy_descs(pos[0], n); clear: n raw
     * descriptors from the start of the data pool (the copy lives in
     * memory the front-end can write). n = (arg & 7) + 1. */
    OP_POP_SAVED = 14,      /* vblk_vq_pop_saved() */
    OP_RESUBMIT_SAVED = 15, /* vblk_queue_resubmit_saved() */
};

struct ring_layout {
    uint64_t desc, driver, device, pool; /* driver addresses */
    uint32_t desc_len, driver_len, device_len;
};

static inline uint16_t ring_size_from(uint8_t v, bool packed)
{
    return packed ? (uint16_t)(v + 1u) : (uint16_t)(1u << (v % 9u));
}

static inline void ring_layout_of(bool packed, uint16_t size, struct ring_layout *l)
{
    l->desc = RING_GUEST_BASE;
    l->desc_len = 16u * size;
    l->driver = l->desc + l->desc_len;
    if (packed) {
        l->driver_len = 4;
        l->device = l->driver + 4;
        l->device_len = 4;
    } else {
        l->driver_len = 6u + 2u * size;
        l->device = (l->driver + l->driver_len + 3) & ~3ull;
        l->device_len = 6u + 8u * size;
    }
    l->pool = (l->device + l->device_len + 15) & ~15ull;
}

/* ------------------------------------------------------------------------ */
/* blk_request                                                               */
/*
 * Input: a 16-byte header, then request records until the input ends.
 *
 * Header:
 *   0  u8  bits 0-2: queue size 2^(v%5+2) (4..64); bit 3 packed; bit 4
 *          indirect; bit 5 event_idx; bit 6 in_order; bit 7 fuzz backend
 *          (else the memory backend)
 *   1  u8  device: bit 0 read-only; bit 1 no flush cap; bit 2 lifetime;
 *          bit 3 geometry; bit 4 write_zeroes_may_unmap; bit 5 clear
 *          CONFIG_WCE from the negotiated set; bit 6 write-through at
 *          start; bit 7 driver writes writeback in config space
 *   2  u8  seg_max = v % 8 + 1
 *   3  u8  size_max = v * 256 (0: none)
 *   4  u8  max segments for discard / write zeroes / secure erase (v%4+1 each, 2 bits)
 *   5  u8  capacity = (v + 1) * 8 sectors
 *   6  u8  regions each buffer is split into at most (v % 4 + 1)
 *   7  u8  features the driver drops (bit i drops the i-th negotiable bit)
 *   8..15  backend decision tape
 *
 * Request record:
 *   u8  type selector: < 0xf0: one of the 8 defined types (v % 8);
 *       else a raw u32 type follows
 *   u8  shape: bits 0-1 header split (one 16-byte buffer, two buffers,
 *       short header, header merged with the first data buffer); bit 2
 *       status merged into the last data buffer; bit 3 indirect; bit 4
 *       no status buffer at all; bit 5 status buffer readable; bits 6-7
 *       extra empty descriptors
 *   u8  sector selector: bits 0-2 (0 raw u64 follows, 1 zero, 2 last
 *       sector, 3 capacity, 4 capacity+1, 5 huge, 6-7 small u8 follows)
 *   u8  nbufs: data buffers = v % 5; bit 7 flips their direction
 *   per data buffer: u8 length selector (see blk_len_from) [+ u16]
 *   then the readable data bytes of the request are taken from the input
 *   in order (discard segments are read from there).
 */
#define BLK_HDR_SIZE  16u
#define BLK_MAX_REQS  48u
#define BLK_DRV_DELTA 0x100000000000ull
#define BLK_BE_SIZE   (1u << 20)

/* ------------------------------------------------------------------------ */
/* config                                                                    */
/*
 * Input: a struct vblk_dev_params image (fields read in declaration order),
 * u8 backend caps, u8 backend size selector, then operations until the input
 * ends (see fuzz_config.c).
 */

/* ------------------------------------------------------------------------ */
/* mem_map                                                                   */
/*
 * Input: operations on a vblk_mem, checked against a plain model (see
 * fuzz_mem_map.c).
 */

#endif
