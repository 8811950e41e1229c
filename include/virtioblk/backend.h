/* SPDX-License-Identifier: MIT */
/**
 * @file backend.h
 * @brief The storage backend interface: a versioned table of functions.
 *
 * The device decodes and validates each request, then hands it to the
 * backend's submit(). The backend performs the I/O on the request's iovecs
 * (which point straight into driver memory: no copies) and finishes it
 * with vblk_req_complete() or vblk_req_complete_async().
 *
 * ## Threading contract
 * - A queue is driven by one thread at a time (the *queue thread*): the
 *   thread that calls vblk_queue_process(). queue_start, queue_stop, submit,
 *   submit_done and poll for a queue are called on its queue thread only.
 *   Different queues may run on different threads at once, so a backend
 *   keeps per-queue state in the @c qctx it returns from queue_start.
 * - vblk_req_complete() must be called on the queue thread: inline from
 *   submit(), from poll(), or from the application's loop on that thread
 *   followed by vblk_queue_flush().
 * - vblk_req_complete_async() may be called from any thread, at any time
 *   after submit() was entered. It queues the request on a lock-free list
 *   and wakes the queue thread through the queue's wake hook; the queue
 *   thread finishes it during its next vblk_queue_process().
 * - A request is owned by the backend from submit() until it is completed;
 *   after completion the backend must not touch it or its iovecs.
 *
 * The built-in backends (null, memory, file) are in backends.h.
 *
 * ## Versioning
 * @ref vblk_backend_ops::version tells which methods exist. New methods are
 * only ever appended, with a new version number; the library never calls a
 * method beyond the version the backend declares.
 */
#ifndef VIRTIOBLK_BACKEND_H
#define VIRTIOBLK_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mem.h"

#ifdef __cplusplus
extern "C" {
#endif

struct vblk_req;

/** The first version of struct vblk_backend_ops. */
#define VBLK_BACKEND_OPS_V1 1u
/** Adds zone_info and zone_report: zoned block devices (zone.h). */
#define VBLK_BACKEND_OPS_V2 2u
/** Adds vblk_backend_ops::resize (online resize). */
#define VBLK_BACKEND_OPS_V3 3u

/** @name Backend capabilities (vblk_backend_ops::caps) */
/**@{*/
#define VBLK_BACKEND_CAP_FLUSH        (1u << 0) /**< FLUSH does something useful. */
#define VBLK_BACKEND_CAP_DISCARD      (1u << 1) /**< DISCARD supported. */
#define VBLK_BACKEND_CAP_WRITE_ZEROES (1u << 2) /**< WRITE_ZEROES supported. */
#define VBLK_BACKEND_CAP_SECURE_ERASE (1u << 3) /**< SECURE_ERASE supported. */
#define VBLK_BACKEND_CAP_READ_ONLY    (1u << 4) /**< Backend can only be read. */
/**
 * submit() does nothing with a VBLK_T_IN or VBLK_T_OUT request but complete
 * it at once with VBLK_S_OK, leaving its buffers alone (the null backend).
 * The device may then complete such requests itself without calling
 * submit(); every other request type still goes to submit().
 */
#define VBLK_BACKEND_CAP_NOP_RW (1u << 5)
/**@}*/

/**
 * Zoned geometry and limits of a zoned backend, in host byte order; the
 * device copies them into the zoned fields of its config space
 * (virtio 1.2 5.2.4).
 */
struct vblk_zone_info {
    uint8_t model;               /**< VBLK_Z_HM or VBLK_Z_HA. */
    uint32_t zone_sectors;       /**< Sectors per zone (the last zone may be smaller). */
    uint32_t max_open_zones;     /**< 0: no limit. */
    uint32_t max_active_zones;   /**< 0: no limit. */
    uint32_t max_append_sectors; /**< Largest ZONE_APPEND; 0: ZONE_APPEND unsupported. */
    uint32_t write_granularity;  /**< Bytes, a multiple of 512. */
};

/** One zone as a backend reports it, in host byte order. */
struct vblk_zone {
    uint64_t start; /**< First sector. */
    uint64_t len;   /**< Sectors in the zone. */
    uint64_t cap;   /**< Writable sectors (<= len). */
    uint64_t wp;    /**< Write pointer (a sector); meaningful in the writable states. */
    uint8_t type;   /**< VBLK_ZT_*. */
    uint8_t state;  /**< VBLK_ZS_*. */
};

/** Methods of a storage backend. Optional methods may be NULL. */
struct vblk_backend_ops {
    /** VBLK_BACKEND_OPS_V1 (or later). */
    uint32_t version;
    /** VBLK_BACKEND_CAP_* flags. */
    uint32_t caps;
    /** Short name for messages ("null", "memory", "file"). */
    const char *name;
    /**
     * Optional. Called on the queue thread when queue @p qidx starts; may
     * store per-queue state in @p *qctx. Returns 0 or a negative errno.
     */
    int (*queue_start)(void *be, uint16_t qidx, void **qctx);
    /**
     * Optional. Called on the queue thread when the queue stops, after all
     * of its requests have completed.
     */
    void (*queue_stop)(void *be, uint16_t qidx, void *qctx);
    /**
     * Required. Starts @p req (type, sector, iovecs and ranges are already
     * validated against the capacity). Must eventually complete it exactly
     * once, inline or later.
     */
    void (*submit)(void *be, void *qctx, struct vblk_req *req);
    /**
     * Optional. End of a batch of submit() calls: a backend that queues
     * work (e.g. io_uring SQEs) submits it here.
     */
    void (*submit_done)(void *be, void *qctx);
    /**
     * Optional. Reaps finished I/O on the queue thread and completes the
     * requests with vblk_req_complete(). Returns the number completed or a
     * negative errno. Called at the start of every vblk_queue_process().
     */
    int (*poll)(void *be, void *qctx);
    /**
     * Optional. A file descriptor that becomes readable when poll() has
     * work, or -1. Event-driven transports add it to their loop.
     */
    int (*queue_fd)(void *be, void *qctx);
    /** Optional. Releases the backend. */
    void (*destroy)(void *be);

    /* ---- VBLK_BACKEND_OPS_V2 ---- */

    /**
     * Optional (V2). Whether the backend is zoned: returns 1 and fills
     * @p info for a zoned backend, 0 for a regular one, or a negative errno.
     * Called once, from vblk_dev_init(). A zoned backend's submit() also
     * receives VBLK_T_ZONE_APPEND (finish it with vblk_req_set_append_sector()
     * and vblk_req_complete()), VBLK_T_ZONE_OPEN, _CLOSE, _FINISH, _RESET
     * (req->sector is a zone start) and _RESET_ALL, and applies the zone
     * rules to VBLK_T_IN and VBLK_T_OUT itself: the device checks only what
     * the config space says (bounds, zone starts, append size and alignment).
     * The emulated-zone helper in zone.h implements those rules.
     */
    int (*zone_info)(void *be, struct vblk_zone_info *info);
    /**
     * Required when zone_info() returns 1 (V2). Fills up to @p n zones,
     * starting with the zone that contains @p sector, in order. Returns the
     * number filled (0 past the last zone) or a negative errno. Called on a
     * queue thread, synchronously, for VBLK_T_ZONE_REPORT: it must not
     * block for long.
     */
    int (*zone_report)(void *be, uint64_t sector, struct vblk_zone *zones, uint32_t n);

    /* ---- VBLK_BACKEND_OPS_V3 ---- */

    /**
     * Optional (V3). Changes the capacity to @p size bytes (a multiple of
     * 512, checked by the caller) while queues may be running on other
     * threads. After it returns, no request touches data at or past the new
     * end: a shrink waits (bounded) for the requests in flight that began
     * before it, and later requests past the end fail with VBLK_S_IOERR. A
     * grown area reads as zeros unless the storage already held data there
     * (a file that was longer before). Returns 0, -ENOTSUP (this instance
     * cannot change its size, e.g. a block device or a zoned backend),
     * -ENOSPC (no room to grow), -ETIMEDOUT (requests in flight did not
     * finish; the new size is in force for new requests but the storage
     * was not shrunk) or another negative errno.
     */
    int (*resize)(void *be, uint64_t size);
};

/** A backend instance: its methods, its state and its size. */
struct vblk_backend {
    const struct vblk_backend_ops *ops; /**< Methods. */
    void *ctx;                          /**< Backend state passed to every method. */
    uint64_t size;                      /**< Capacity in bytes (a multiple of 512). */
};

/**
 * Resizes @p be to @p size bytes with its resize method (see
 * vblk_backend_ops::resize) and updates @c be->size. Call it from one
 * thread at a time; the queues may keep running. Afterwards tell the
 * device (vblk_vu_dev_set_capacity(), vblk_dev_set_capacity() and
 * vblk_vduse_update_config()). Returns 0, -EINVAL (not a multiple of 512),
 * -ENOTSUP (the backend cannot resize) or the method's error.
 */
int vblk_backend_resize(struct vblk_backend *be, uint64_t size);

/** Destroys @p be (calls its destroy method) and clears it. */
void vblk_backend_destroy(struct vblk_backend *be);

#ifdef __cplusplus
}
#endif
#endif
