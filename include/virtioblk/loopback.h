/* SPDX-License-Identifier: MIT */
/**
 * @file loopback.h
 * @brief In-process transport: a driver and a device in one process.
 *
 * The loopback transport owns a memory arena that stands in for guest
 * memory. Driver addresses are plain pointer values into it (the memory map
 * has one identity region), so the device side goes through exactly the
 * same ring parsing, validation and translation as with a real guest.
 * A kick runs the device on the calling thread; a used-buffer notification
 * is counted. Tests, fuzzers, the benchmark and the examples use it.
 */
#ifndef VIRTIOBLK_LOOPBACK_H
#define VIRTIOBLK_LOOPBACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blk.h"
#include "driver.h"
#include "transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Options for vblk_loopback_create(). Zero means "default". */
struct vblk_loopback_opts {
    uint16_t num_queues;   /**< Queues (default: the device's num_queues). */
    uint16_t queue_size;   /**< Entries per queue (default 256). */
    bool packed;           /**< Negotiate VIRTIO_F_RING_PACKED. */
    bool no_event_idx;     /**< Do not negotiate VIRTIO_F_EVENT_IDX. */
    bool no_indirect;      /**< Do not negotiate VIRTIO_F_INDIRECT_DESC. */
    bool in_order;         /**< Negotiate VIRTIO_F_IN_ORDER (if offered). */
    size_t arena_size;     /**< Bytes of driver-visible memory (default 16 MiB). */
};

/** An in-process driver + device pair. */
struct vblk_loopback;

/**
 * Creates a device with parameters @p p over backend @p be and a driver for
 * it, negotiates features and starts every queue. @p opts may be NULL.
 * Returns 0 or a negative errno.
 */
int vblk_loopback_create(const struct vblk_dev_params *p, const struct vblk_backend *be,
                         const struct vblk_loopback_opts *opts, struct vblk_loopback **out);

/**
 * Stops the queues (waiting for asynchronous completions) and frees
 * everything. The backend is not destroyed.
 */
void vblk_loopback_destroy(struct vblk_loopback *lb);

/**
 * Allocates @p len bytes of driver-visible memory (64-byte aligned, or
 * 4096-byte aligned for 4096 bytes and more). Returns NULL when the arena is
 * exhausted. Memory is released with the loopback.
 */
void *vblk_loopback_alloc(struct vblk_loopback *lb, size_t len);

/** The driver side of queue @p qidx. */
struct vblk_drv_vq *vblk_loopback_driver(struct vblk_loopback *lb, uint16_t qidx);

/** The device side of queue @p qidx. */
struct vblk_queue *vblk_loopback_queue(struct vblk_loopback *lb, uint16_t qidx);

/** The virtio-blk device model. */
struct vblk_dev *vblk_loopback_blk(struct vblk_loopback *lb);

/** The memory map (one region: the arena). */
struct vblk_mem *vblk_loopback_mem(struct vblk_loopback *lb);

/**
 * Publishes what the driver added on queue @p qidx and, if the device asked
 * for a kick, runs the device. Returns requests submitted, or -EIO if the
 * device found the queue broken.
 */
int vblk_loopback_kick(struct vblk_loopback *lb, uint16_t qidx);

/**
 * Runs the device side of queue @p qidx whether or not it asked for a kick
 * (finishes asynchronous completions, polls the backend). Returns requests
 * submitted or -EIO.
 */
int vblk_loopback_process(struct vblk_loopback *lb, uint16_t qidx);

/**
 * Copies the counters of queue @p qidx to @p st: @c kicks counts the kicks
 * the device actually asked for, @c notifies the used-buffer notifications
 * it sent. Returns 0 or -EINVAL.
 */
int vblk_loopback_queue_stats(struct vblk_loopback *lb, uint16_t qidx,
                              struct vblk_transport_queue_stats *st);

/** Copies the device's counters to @p st (broken queues; the rest stay 0). */
void vblk_loopback_stats(struct vblk_loopback *lb, struct vblk_transport_stats *st);

/**
 * Synchronous helper: one request of @p type at @p sector with the data
 * buffer @p buf of @p len bytes (arena memory; may be NULL for FLUSH) on
 * queue @p qidx. Returns the status byte (VBLK_S_*), or a negative errno
 * (-ENOSPC ring full, -EIO broken queue, -ETIMEDOUT no completion).
 */
int vblk_loopback_rw(struct vblk_loopback *lb, uint16_t qidx, uint32_t type, uint64_t sector,
                     void *buf, size_t len);

/**
 * Synchronous helper: a ZONE_APPEND of @p len bytes from @p buf (arena
 * memory) to the zone starting at @p zone_sector on queue @p qidx. On
 * VBLK_S_OK, @p *append_sector (may be NULL) is where the data went.
 * Returns the status byte or a negative errno, like vblk_loopback_rw().
 */
int vblk_loopback_zone_append(struct vblk_loopback *lb, uint16_t qidx, uint64_t zone_sector,
                              void *buf, size_t len, uint64_t *append_sector);

#ifdef __cplusplus
}
#endif
#endif
