/* SPDX-License-Identifier: MIT */
/**
 * @file advanced.h
 * @brief Entry points for restarting devices, raw message handling and
 *        fuzzing: not needed to serve a disk.
 *
 * These are stable and documented like the rest of the API, but most
 * applications never call them, so the umbrella header virtioblk.h does not
 * include this one. They are for:
 *  - transports that track requests in flight outside the ring and resubmit
 *    them after a back-end restart (vhost-user's in-flight I/O tracking):
 *    request hooks, re-reading a chain at a ring position or from a saved
 *    descriptor list, scanning a packed ring's used entries;
 *  - event loops and fuzzers that feed the vhost-user and VDUSE message
 *    handlers from byte buffers instead of sockets and device files.
 */
#ifndef VIRTIOBLK_ADVANCED_H
#define VIRTIOBLK_ADVANCED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blk.h"
#include "vq.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @name Restarting a queue: re-reading chains that were in flight */
/**@{*/

/**
 * Re-reads a chain the driver made available earlier and the device had
 * popped before a restart (vhost-user inflight tracking). Split: @p pos is
 * the head descriptor index. Packed: @p pos is the ring position of the
 * first descriptor and @p wrap the driver wrap counter it was made
 * available with. The ring position is not advanced. Returns 1, or -EIO
 * (queue broken) for a malformed chain or position.
 */
int vblk_vq_pop_at(struct vblk_vq *vq, uint16_t pos, uint8_t wrap, struct vblk_chain *c);

/**
 * Reports a buffer ID found in a used entry to vblk_vq_packed_scan_used().
 * Returns the number of descriptors (1..ring size) the buffer's list took
 * in the ring, so that the scan can step over them, or 0 to stop the scan
 * at this entry (an ID the caller does not know as in flight).
 */
typedef uint16_t (*vblk_vq_used_cb)(void *opaque, uint16_t id);

/**
 * Packed rings, before a queue starts on the ring (vhost-user in-flight
 * recovery after a back-end restart): follows the used entries a previous
 * device wrote from ring position (@p *pos, @p *wrap), in the packed
 * descriptor ring of @p size entries at @p desc_gpa in @p mem. For each
 * entry marked used in the lap @p *wrap (virtio 1.2 2.8.1), @p claim gets
 * its buffer ID and the position moves past the list it names. Stops at
 * the first entry not marked used, or when @p claim returns 0, after at
 * most @p size entries. Each entry's flags and ID are read once (the flags
 * with acquire). With @p *wrap set to 2 the first entry's own USED flag
 * gives the lap (for an entry whose lap the caller does not know); *wrap
 * is then 0 or 1 on return. Returns the number of entries claimed,
 * -EINVAL (a position beyond the ring, a size of 0) or -EFAULT (the ring
 * is not in @p mem or is misaligned).
 */
int vblk_vq_packed_scan_used(struct vblk_mem *mem, uint64_t desc_gpa, uint16_t size, uint16_t *pos,
                             uint8_t *wrap, vblk_vq_used_cb claim, void *opaque);

/**
 * Packed rings: re-reads a chain from a saved copy of its descriptor list.
 * A packed ring's slots are overwritten by used entries while other
 * requests are still in flight, so inflight tracking (vhost-user) keeps a
 * copy of each list (see vblk_vq_copy_descs()) and resubmits from it after
 * a restart. @p descs holds the @p n descriptors of one list in ring order.
 * The copy is validated exactly like a list read from the ring. Returns 1,
 * -EINVAL for a split ring, or -EIO (queue broken) for a malformed list.
 */
int vblk_vq_pop_saved(struct vblk_vq *vq, const struct vblk_packed_desc *descs, uint16_t n,
                      struct vblk_chain *c);

/**
 * Packed rings: copies the @p n descriptors starting at ring position
 * @p pos (wrapping at the end of the ring) into @p out, for inflight
 * tracking. Returns 0 or -EINVAL.
 */
int vblk_vq_copy_descs(const struct vblk_vq *vq, uint16_t pos, uint16_t n,
                       struct vblk_packed_desc *out);

/**@}*/

/** @name Restarting a queue: request hooks and resubmission */
/**@{*/

/**
 * Optional per-request hooks, for transports that track requests in flight
 * outside the ring (vhost-user inflight I/O tracking). Called on the queue
 * thread. In them, `req->chain.id` is the chain's head index (split) or
 * buffer ID (packed), and vblk_req_ring_pos() gives the ring position of
 * its first descriptor.
 */
struct vblk_queue_hooks {
    /** A chain was popped (or resubmitted) and is now in flight. */
    void (*started)(void *opaque, const struct vblk_req *req);
    /** Its used entry was written (not yet published). */
    void (*done)(void *opaque, const struct vblk_req *req);
    /** Used entries were published; @p st is the new ring position. */
    void (*published)(void *opaque, const struct vblk_vq_state *st);
};

/**
 * The ring position of the first descriptor of @p req: for a split ring its
 * head index (@p *wrap is 0), for a packed ring its slot and the driver
 * wrap counter it was made available with. For use in the hooks.
 */
static inline void vblk_req_ring_pos(const struct vblk_req *req, uint16_t *pos, uint8_t *wrap)
{
    *pos = req->head_pos;
    *wrap = req->head_wrap;
}

/**
 * Resubmits a chain that was in flight when a previous device instance
 * stopped (see vblk_vq_pop_at() for @p pos and @p wrap). Returns 1 if it
 * was started, -EBUSY if no request slot is free, -EIO if the chain is
 * malformed (queue broken).
 */
int vblk_queue_resubmit(struct vblk_queue *q, uint16_t pos, uint8_t wrap);

/**
 * Packed rings: resubmits a chain from a saved copy of its descriptor list
 * (see vblk_vq_pop_saved()). Returns 1 if it was started, -EBUSY if no
 * request slot is free, -EINVAL for a split ring, -EIO if the list is
 * malformed (queue broken).
 */
int vblk_queue_resubmit_saved(struct vblk_queue *q, const struct vblk_packed_desc *descs,
                              uint16_t n);

/**@}*/

#ifdef __cplusplus
}
#endif
#endif
