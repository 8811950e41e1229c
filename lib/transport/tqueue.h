/* SPDX-License-Identifier: MIT */
/*
 * A device queue as every transport runs it (vhost-user, VDUSE, loopback):
 * the core queue with its request pool, the eventfd that asynchronous
 * completions wake, the backend's fd, the ring position kept across a stop,
 * and the counters summed over every run. Not installed.
 *
 * Stopping a queue (tq_stop()) follows one policy, described in
 * docs/api.md ("Stopping a queue"): no new requests are taken; the requests
 * in flight stay with the backend until it completes them, and their
 * completions reach the driver; the wait is only as long as the backend
 * takes. Nothing a request points to (its slot, the pool, driver memory) is
 * released before the request is complete, so a backend that is slow cannot
 * cause a use after free; every built-in backend completes in bounded time
 * (local I/O, or a network request timeout). While waiting, @warn is called
 * every TQ_WARN_MS with the number still in flight.
 */
#ifndef VBLK_TRANSPORT_TQUEUE_H
#define VBLK_TRANSPORT_TQUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "virtioblk/blk.h"
#include "virtioblk/transport.h"

/* How often a stop that is still waiting says so. */
#define TQ_WARN_MS 5000

struct tqueue {
    struct vblk_queue q; /* the core queue: valid while @live */
    void *pool;          /* its request pool */
    int wake_fd;         /* eventfd the wake hook writes (async completions) */
    int be_fd;           /* the backend's queue fd while live, else -1 */
    bool live;
    bool have_saved;                         /* @saved holds the position at the last stop */
    struct vblk_vq_state saved;              /* ring position at the last stop */
    struct vblk_transport_queue_stats stats; /* summed over finished runs */
};

/* Called while a stop waits: @inflight requests after @waited_ms. */
typedef void (*tq_warn_fn)(void *opaque, uint32_t inflight, unsigned waited_ms);

/* Prepares a queue; with @wake, creates the wake eventfd (a transport whose
 * queues are only ever driven by the caller, like loopback, has none).
 * Returns 0 or a negative errno. */
int tq_init(struct tqueue *t, bool wake);

/* Closes the wake eventfd; the queue must not be live. */
void tq_fini(struct tqueue *t);

/* Starts the core queue over @mem with @qp (pool allocated here; the wake
 * hook set to the wake eventfd when @wake and there is one, none otherwise,
 * for a queue that is only ever polled). Counts a start. Returns 0 or a
 * negative errno. */
int tq_start(struct tqueue *t, struct vblk_dev *dev, struct vblk_mem *mem,
             struct vblk_queue_params *qp, bool wake);

/* Stops a live queue: no new requests, waits for those in flight (see
 * above), saves the ring position in @saved, adds the run's counters and
 * releases the core queue and its pool. Does nothing if not live. */
void tq_stop(struct tqueue *t, tq_warn_fn warn, void *opaque);

/* Takes the wake eventfd's count, so that it can wake the loop again. */
void tq_clear_wake(struct tqueue *t);

/* The counters: summed over finished runs plus the current one. */
void tq_stats(const struct tqueue *t, struct vblk_transport_queue_stats *st);

#endif
