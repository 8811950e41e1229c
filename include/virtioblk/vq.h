/* SPDX-License-Identifier: MIT */
/**
 * @file vq.h
 * @brief Device-side access to a virtqueue owned by an untrusted driver.
 *
 * One small state struct and a short list of verbs serve both ring formats:
 *
 *  - vblk_vq_init() maps the three ring areas through a vblk_mem;
 *  - vblk_vq_pop() takes the next available descriptor chain, validates it
 *    and turns it into readable and writable host iovecs;
 *  - vblk_vq_push() records a completed chain (any order, any batch size);
 *  - vblk_vq_publish() makes pushed completions visible to the driver and
 *    says whether the driver wants a used-buffer notification;
 *  - vblk_vq_disable_notify() / vblk_vq_enable_notify() control kicks;
 *  - vblk_vq_get_state() and vblk_vq_config.state save and restore the ring
 *    position for reconnect and migration.
 *
 * Every descriptor is copied out of shared memory once, checked, and only
 * the copy is used. A structurally malformed ring (descriptor loop, chain
 * longer than the queue, nested indirect table, index out of range, ...)
 * marks the queue broken: vblk_vq_pop() then returns -EIO forever and the
 * transport should signal DEVICE_NEEDS_RESET. A chain that is well formed
 * but names memory outside the map is returned with vblk_chain::fault set,
 * so the device can still fail it with a status byte.
 *
 * A vblk_vq is not thread-safe: one thread at a time drives it. The driver
 * runs concurrently on another CPU; the required barriers are inside.
 */
#ifndef VIRTIOBLK_VQ_H
#define VIRTIOBLK_VQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mem.h"
#include "spec.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Where the driver placed the three ring areas (driver addresses). */
struct vblk_vq_addrs {
    uint64_t desc;   /**< Descriptor table / descriptor ring. */
    uint64_t driver; /**< Split: available ring. Packed: driver event suppression. */
    uint64_t device; /**< Split: used ring. Packed: device event suppression. */
};

/**
 * Ring position, as saved for reconnect or migration. For a split ring the
 * indices are free-running 16-bit counters and the wrap fields are unused.
 * For a packed ring the indices are positions in [0, size) and the wrap
 * counters are 0 or 1 (both start at 1).
 */
struct vblk_vq_state {
    uint16_t last_avail_idx; /**< Next position the device reads. */
    uint16_t used_idx;       /**< Next position the device writes a used entry to. */
    uint8_t avail_wrap;      /**< Packed: driver ring wrap counter expected next. */
    uint8_t used_wrap;       /**< Packed: device ring wrap counter. */
};

/** Queue configuration for vblk_vq_init(). */
struct vblk_vq_config {
    uint16_t size;                     /**< Entries; split: power of two; 1..32768. */
    bool packed;                       /**< VIRTIO_F_RING_PACKED negotiated. */
    bool event_idx;                    /**< VIRTIO_F_EVENT_IDX negotiated. */
    bool indirect;                     /**< VIRTIO_F_INDIRECT_DESC negotiated. */
    struct vblk_vq_addrs addrs;        /**< Ring areas. */
    const struct vblk_vq_state *state; /**< Starting position, or NULL for a fresh ring. */
};

/** Per-queue counters of driver misbehaviour and activity. */
struct vblk_vq_stats {
    uint64_t chains;     /**< Chains popped. */
    uint64_t notifies;   /**< Used-buffer notifications requested. */
    uint64_t bad_chains; /**< Chains whose buffers were not mapped. */
    uint64_t broken;     /**< Times the queue was marked broken (0 or 1). */
};

/**
 * A popped descriptor chain. iov[0 .. nout) are device-readable,
 * iov[nout .. nout + nin) device-writable, in chain order.
 * The caller provides @ref iov with @ref cap entries.
 */
struct vblk_chain {
    uint16_t id;           /**< Split: head index. Packed: buffer ID. */
    uint16_t ndescs;       /**< Ring slots the chain occupies (packed skip count). */
    uint16_t nout;         /**< Readable iovecs. */
    uint16_t nin;          /**< Writable iovecs. */
    uint32_t out_len;      /**< Readable bytes (sum, saturating at UINT32_MAX). */
    uint32_t in_len;       /**< Writable bytes (sum, saturating at UINT32_MAX). */
    uint16_t ndata;        /**< Descriptors in the chain, indirect entries included. */
    uint8_t fault;         /**< Some buffer could not be mapped or did not fit. */
    uint8_t last_mapped;   /**< The last descriptor was writable and mapped. */
    uint32_t max_desc_len; /**< Largest single descriptor length. */
    uint16_t cap;          /**< Capacity of iov. */
    struct vblk_iov *iov;  /**< Caller-provided iovec storage. */
};

/** Device-side virtqueue. Treat the fields as private. */
struct vblk_vq {
    /** @cond PRIVATE */
    struct vblk_mem *mem;
    uint16_t size;
    uint8_t packed;
    uint8_t event_idx;
    uint8_t indirect;
    uint8_t is_broken;
    uint8_t notify_off;
    uint8_t avail_wrap;
    uint8_t used_wrap;
    uint8_t signalled_valid; /**< 0 until the first publish after init: notify then. */
    uint16_t last_avail;
    uint16_t used_idx;
    uint16_t published;   /**< Split: used idx last made visible. Packed: used slots in total. */
    uint16_t signalled;   /**< Used position when the driver was last notified. */
    uint16_t avail_cache; /**< Split: last avail->idx read. */
    struct vblk_vq_addrs addrs;
    union {
        struct {
            struct vblk_split_desc *desc;
            struct vblk_split_avail *avail;
            struct vblk_split_used *used;
        } split;
        struct {
            struct vblk_packed_desc *desc;
            struct vblk_packed_event *driver;
            struct vblk_packed_event *device;
        } pk;
    } r;
    struct vblk_vq_stats stats;
    /** @endcond */
};

/**
 * Sets up @p vq over rings in @p mem. Returns 0, -EINVAL for a bad size or
 * misaligned ring address (virtio 1.2 2.7 / 2.8.10.1), -EFAULT if a ring
 * area is not mapped contiguously.
 */
int vblk_vq_init(struct vblk_vq *vq, struct vblk_mem *mem, const struct vblk_vq_config *cfg);

/**
 * Pops the next available chain into @p c (whose iov and cap the caller
 * set). Returns 1 with a chain, 0 if none is available, -EIO if the queue
 * is (or just became) broken. A returned chain with @ref vblk_chain::fault
 * set must still be pushed back (typically with an error status).
 */
int vblk_vq_pop(struct vblk_vq *vq, struct vblk_chain *c);

/**
 * Records @p c as used with @p len bytes written. Not yet visible to the
 * driver for a split ring until vblk_vq_publish(). With a dirty log, logs
 * the used entry write.
 */
void vblk_vq_push(struct vblk_vq *vq, uint16_t id, uint16_t ndescs, uint32_t len);

/**
 * Makes pushed entries visible and returns true if the driver asked to be
 * notified about them (flags or event index form). The caller then sends
 * exactly one notification.
 *
 * The first publish after vblk_vq_init() ignores the event index and
 * notifies (unless the driver disabled notifications with the flags form):
 * after a restart the device cannot know whether the previous instance
 * notified the driver about the entries it had written.
 */
bool vblk_vq_publish(struct vblk_vq *vq);

/** Asks the driver not to kick (the device is polling or busy). */
void vblk_vq_disable_notify(struct vblk_vq *vq);

/**
 * Asks the driver to kick on the next buffer, then re-checks the ring.
 * Returns true if buffers are already available: the caller must process
 * them, since the driver may not kick for those.
 */
bool vblk_vq_enable_notify(struct vblk_vq *vq);

/** True if the driver has made a chain available that was not popped. */
bool vblk_vq_has_avail(struct vblk_vq *vq);

/** Current position (for GET_VRING_BASE / migration). */
void vblk_vq_get_state(const struct vblk_vq *vq, struct vblk_vq_state *st);

/** True once the queue has been marked broken. */
static inline bool vblk_vq_broken(const struct vblk_vq *vq)
{
    return vq->is_broken != 0;
}

/** Counters for this queue. */
static inline const struct vblk_vq_stats *vblk_vq_stats(const struct vblk_vq *vq)
{
    return &vq->stats;
}

#ifdef __cplusplus
}
#endif
#endif
