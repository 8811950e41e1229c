/* SPDX-License-Identifier: MIT */
/**
 * @file driver.h
 * @brief The driver side of a virtqueue (split and packed), and virtio-blk
 *        request framing for drivers.
 *
 * This is what a guest kernel does, written as a library: it owns the ring
 * memory, adds buffers, kicks, and collects used buffers. The loopback
 * transport, the tests, the fuzzers, the benchmark and the vhost-user
 * client all use it. Like the core it is freestanding: the caller provides
 * all memory.
 *
 * Driver addresses: the device sees buffers by driver address. This side
 * computes them as `host pointer + addr_delta`, so one contiguous shared
 * region (memfd, arena) with a fixed offset covers every transport; for
 * the loopback transport the delta is 0 (the address is the pointer).
 *
 * Everything the device writes back (used ids, lengths) is checked: a bad
 * used entry is reported as -EPROTO, never trusted.
 */
#ifndef VIRTIOBLK_DRIVER_H
#define VIRTIOBLK_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mem.h"
#include "spec.h"
#include "vq.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Configuration of a driver-side queue. */
struct vblk_drv_vq_config {
    uint16_t size;         /**< Entries; split: power of two; 1..32768. */
    bool packed;           /**< Packed ring layout. */
    bool event_idx;        /**< VIRTIO_F_EVENT_IDX negotiated. */
    bool indirect;         /**< VIRTIO_F_INDIRECT_DESC negotiated. */
    uint16_t indirect_max; /**< Entries of each indirect table (0: no tables). */
    uint64_t addr_delta;   /**< Driver address = host pointer + addr_delta. */
};

/** Driver-side virtqueue. Treat the fields as private. */
struct vblk_drv_vq {
    /** @cond PRIVATE */
    struct vblk_drv_vq_config cfg;
    uint8_t *ring;           /* descriptor table / ring */
    uint8_t *driver_area;    /* avail ring / driver event */
    uint8_t *device_area;    /* used ring / device event */
    uint8_t *indirect_tables;/* size * indirect_max * 16 bytes, or NULL */
    uint16_t num_free;
    uint16_t free_head;      /* split: free descriptor list; packed: free id list */
    uint16_t avail_idx;      /* split: shadow avail idx; packed: next avail position */
    uint16_t last_used;      /* split: last seen used idx; packed: next used position */
    uint8_t avail_wrap;      /* packed */
    uint8_t used_wrap;       /* packed */
    uint8_t cb_disabled;
    uint16_t published;      /* avail idx last published */
    uint16_t pub_wrap_pos;   /* packed: position + wrap at last kick decision */
    uint16_t pending_flags;  /* packed: flags the first unpublished descriptor gets */
    struct vblk_drv_slot *slots; /* per id: token, descriptor count, chain end */
    uint16_t *next_free;     /* free list links: split descriptors, packed ids */
    /** @endcond */
};

/** Per-buffer bookkeeping (private). */
struct vblk_drv_slot {
    /** @cond PRIVATE */
    void *token;
    uint16_t ndescs;
    uint16_t last;
    uint32_t in_len;
    /** @endcond */
};

/**
 * Bytes of ring memory (shared with the device) for @p cfg, including the
 * indirect tables. The ring memory must be 4096-byte aligned.
 */
size_t vblk_drv_vq_ring_size(const struct vblk_drv_vq_config *cfg);

/** Bytes of private bookkeeping memory for @p cfg (8-byte aligned). */
size_t vblk_drv_vq_state_size(const struct vblk_drv_vq_config *cfg);

/**
 * Initializes @p vq over @p ring (zeroed here) and @p state. Returns 0 or
 * -EINVAL (bad size, misaligned or too small memory).
 */
int vblk_drv_vq_init(struct vblk_drv_vq *vq, const struct vblk_drv_vq_config *cfg, void *ring,
                     size_t ring_len, void *state, size_t state_len);

/** Driver addresses of the three ring areas, for the device side. */
void vblk_drv_vq_addrs(const struct vblk_drv_vq *vq, struct vblk_vq_addrs *addrs);

/** Free descriptors (split) or free ring slots (packed). */
uint16_t vblk_drv_vq_num_free(const struct vblk_drv_vq *vq);

/**
 * Adds one buffer: @p nout readable then @p nin writable host buffers.
 * With @p use_indirect (and indirect tables configured) the buffer takes
 * one ring slot. @p token comes back from vblk_drv_vq_get_used(). Returns 0,
 * -ENOSPC if the ring is full, -EINVAL for an empty or too long list.
 * Not visible to the device until vblk_drv_vq_kick_prepare().
 */
int vblk_drv_vq_add(struct vblk_drv_vq *vq, const struct vblk_iov *out, unsigned nout,
                    const struct vblk_iov *in, unsigned nin, void *token, bool use_indirect);

/**
 * Publishes added buffers and returns true if the device wants a kick
 * (flags or event index form).
 */
bool vblk_drv_vq_kick_prepare(struct vblk_drv_vq *vq);

/**
 * Takes one used buffer. Returns 1 and fills @p token and @p len, 0 if none,
 * or -EPROTO if the device wrote an id that is not in flight or a length
 * larger than the buffer's writable bytes (the entry is then consumed).
 * On -EPROTO @p len is 0 and @p token is NULL for a bad id; for a bad length
 * the buffer is released and @p token names it.
 */
int vblk_drv_vq_get_used(struct vblk_drv_vq *vq, void **token, uint32_t *len);

/**
 * Asks the device for used-buffer notifications (false: suppress them).
 * With event idx, enabling asks for the next used entry. Returns true if
 * used entries are already pending.
 */
bool vblk_drv_vq_enable_cb(struct vblk_drv_vq *vq, bool enable);

/** True if a used buffer is waiting. */
bool vblk_drv_vq_has_used(const struct vblk_drv_vq *vq);

/**
 * A virtio-blk request frame in driver-visible memory: header and status
 * byte. Allocate one per in-flight request from shared memory.
 */
struct vblk_drv_blk_frame {
    struct vblk_req_hdr hdr; /**< Request header (little-endian). */
    uint8_t status;          /**< Status byte the device writes. */
    uint8_t pad[15];         /**< Keeps frames 16-byte aligned. */
};

/**
 * Adds a virtio-blk request: header from @p frame, then @p data (readable
 * for OUT/DISCARD/WRITE_ZEROES/SECURE_ERASE, writable for IN/GET_ID/
 * GET_LIFETIME/ZONE_REPORT, ignored for FLUSH and the zone operations
 * ZONE_OPEN/_CLOSE/_FINISH/_RESET/_RESET_ALL), then the status byte. Fills
 * in the header. ZONE_APPEND has its own frame: vblk_drv_blk_add_append().
 * Returns what vblk_drv_vq_add() returns.
 */
int vblk_drv_blk_add(struct vblk_drv_vq *vq, struct vblk_drv_blk_frame *frame, uint32_t type,
                     uint64_t sector, const struct vblk_iov *data, unsigned ndata, void *token,
                     bool use_indirect);

/**
 * A ZONE_APPEND frame in driver-visible memory: header, then the extended
 * in-header (append_sector, status) of virtio 1.2 5.2.6.
 */
struct vblk_drv_blk_za_frame {
    struct vblk_req_hdr hdr; /**< Request header (little-endian). */
    uint64_t append_sector;  /**< Written by the device: where the data went. */
    uint8_t status;          /**< Status byte the device writes. */
    uint8_t pad[7];          /**< Keeps frames 16-byte aligned. */
};

/**
 * Adds a ZONE_APPEND of @p data (readable) to the zone starting at
 * @p zone_sector; on completion @p frame holds the status and, on
 * VBLK_S_OK, the append_sector. Returns what vblk_drv_vq_add() returns.
 */
int vblk_drv_blk_add_append(struct vblk_drv_vq *vq, struct vblk_drv_blk_za_frame *frame,
                            uint64_t zone_sector, const struct vblk_iov *data, unsigned ndata,
                            void *token, bool use_indirect);

#ifdef __cplusplus
}
#endif
#endif
