/* SPDX-License-Identifier: MIT */
/**
 * @file transport.h
 * @brief What every transport has in common: the log callback, how queue
 *        threads wait for work, and the shape of the counters.
 *
 * The transports (loopback.h, vhost_user.h, vduse.h) follow one pattern:
 *
 * | verb | meaning |
 * | --- | --- |
 * | `vblk_X_create(params, backend, opts, &out)` | create; @c opts may be NULL |
 * | `vblk_X_destroy(x)` | stop every queue (bounded drain) and free; NULL is allowed |
 * | `vblk_X_blk(x)` | the virtio-blk device model (struct vblk_dev) behind it |
 * | `vblk_X_stats(x, &st)` | device counters (struct vblk_transport_stats) |
 * | `vblk_X_queue_stats(x, q, &st)` | queue counters (struct vblk_transport_queue_stats) |
 * | `vblk_X_process(...)` | do the pending work now and return |
 * | `vblk_X_poll(x, timeout)` | one round of an event loop: wait, then process |
 * | `vblk_X_run(x)` | loop until `vblk_X_stop()` |
 *
 * Every transport logs through one callback type, vblk_log_fn, with the
 * VBLK_LOG_* levels, and fills the same two counter structures; a counter
 * that means nothing to a transport stays 0.
 */
#ifndef VIRTIOBLK_TRANSPORT_H
#define VIRTIOBLK_TRANSPORT_H

#include <stdint.h>

#include "blk.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @name Log levels (vblk_log_fn) */
/**@{*/
#define VBLK_LOG_ERR   0 /**< The connection or the device is failing. */
#define VBLK_LOG_WARN  1 /**< Something was refused or lost; service goes on. */
#define VBLK_LOG_INFO  2 /**< Connections, queue starts and stops, resets. */
#define VBLK_LOG_DEBUG 3 /**< Every message. Never per request. */
/**@}*/

/**
 * Receives one line of text (no newline) at @p level (VBLK_LOG_*). Called
 * on the thread where the event happened; keep it short and thread-safe.
 */
typedef void (*vblk_log_fn)(void *opaque, int level, const char *msg);

/** How a transport's queue threads wait for work. */
enum vblk_notify_mode {
    /** After activity, poll the rings with kicks suppressed for a while
     *  that adapts to the traffic, then re-enable kicks, check the rings
     *  once more and sleep. Polling backs off when three polls in a row
     *  find nothing and work comes right after the thread sleeps (a driver
     *  on the same CPU cannot submit while it polls), and is tried again
     *  50 ms later. The default. */
    VBLK_NOTIFY_ADAPTIVE = 0,
    /** Sleep until the driver kicks (or a completion arrives). */
    VBLK_NOTIFY_EVENT = 1,
    /** Busy-poll for ever: a CPU per worker thread, no kicks at all. */
    VBLK_NOTIFY_POLL = 2,
};

/** Counters of one queue, summed over every time it was started. */
struct vblk_transport_queue_stats {
    struct vblk_queue_stats req; /**< Request counters from the core. */
    uint64_t kicks;              /**< Driver notifications seen (a burst may count once). */
    uint64_t notifies;           /**< Used-buffer notifications sent (call fd, IRQ). */
    uint64_t starts;             /**< Times the ring was started. */
    uint64_t resubmitted;        /**< Requests resubmitted after a back-end restart. */
    uint64_t broken;             /**< Times the driver corrupted the ring. */
    /** Worker thread serving the queue (0-based), or -1 when the
     *  application drives it or it is not running. */
    int32_t thread;
};

/** Counters of one device. */
struct vblk_transport_stats {
    uint64_t connections;    /**< Front-ends that attached (vhost-user), or 1 once attached. */
    uint64_t messages;       /**< Control messages handled (vhost-user, VDUSE requests). */
    uint64_t bad_messages;   /**< Messages of the wrong size, type or framing. */
    uint64_t failed;         /**< Messages answered with a failure. */
    uint64_t resets;         /**< Device resets. */
    uint64_t broken_queues;  /**< Queues stopped because the driver corrupted them. */
    uint64_t memory_updates; /**< Memory-map changes (memory tables, IOTLB updates). */
    uint64_t memory_maps;    /**< Memory ranges mapped into the process. */
    uint64_t memory_unmaps;  /**< Memory ranges unmapped again. */
    uint64_t memory_faults;  /**< Addresses the driver used that nothing maps. */
    /** Page faults in shared mappings that were contained (a file truncated
     *  or a device deleted under I/O): the device stops until reset. */
    uint64_t mapping_faults;
};

#ifdef __cplusplus
}
#endif
#endif
