/* SPDX-License-Identifier: MIT */
/* A worker thread that serves a changing set of items (vhost-user queues,
 * VDUSE devices, ...) with one event loop, sleeping on their fds or polling
 * them adaptively (enum vblk_notify_mode). Used by the vhost-user server and
 * by programs that share workers between many devices. Not installed. */
#ifndef VBLK_TRANSPORT_WORKER_H
#define VBLK_TRANSPORT_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "virtioblk/transport.h"

#pragma GCC visibility push(hidden)

/* Something the worker serves. The caller owns the memory; it must stay
 * valid until worker_del() returned. */
struct worker_item {
    /* Readable when the item has work (level-triggered, never changes). */
    int fd;
    /* Does the item's pending work: called when @fd is readable, and in a
     * loop while polling. Returns the requests found (< 0 counts as 0). */
    int (*process)(void *arg);
    /* Optional (NULL: the item is never polled, only woken by @fd). True
     * while polling the item is worthwhile. */
    bool (*active)(void *arg);
    /* Optional, with @active. Suppresses (on) or re-enables (off) the
     * item's notifications; switching off checks once more and returns the
     * requests that check found. */
    int (*set_polling)(void *arg, bool on);
    void *arg;
};

struct worker;

struct worker_opts {
    enum vblk_notify_mode notify;
    uint32_t poll_max_us; /* adaptive: longest poll after the last request; 0: 128 */
};

/* Creates a stopped worker. Returns 0, -ENOMEM or another negative errno. */
int worker_create(const struct worker_opts *o, struct worker **out);
/* Starts its thread (every signal blocked but the synchronous faults).
 * Returns 0 or a negative errno. */
int worker_start(struct worker *w);
/* Adds @it (from any thread). Returns 0 or a negative errno. */
int worker_add(struct worker *w, struct worker_item *it);
/* Removes @it; when it returns, the worker no longer touches it. */
void worker_del(struct worker *w, struct worker_item *it);
/* Runs @fn(@arg) on the worker's thread (or here, when it is not running)
 * and waits for it to return. While it waits, the wait hook runs every
 * @period_ms on the waiting thread (see worker_set_wait_hook()). */
void worker_call(struct worker *w, void (*fn)(void *), void *arg);
/* Sets what a thread waiting in worker_call() does every @period_ms: the
 * worker may be held by a front-end's fd that only the caller's watchdog
 * can release (vblk_vu_dev_watchdog()), and the caller must not wait for
 * ever on a thread that waits for it. */
void worker_set_wait_hook(struct worker *w, void (*hook)(void *), void *arg, unsigned period_ms);
/* Asks the thread to stop and waits up to @timeout_ms for it. Returns 0 (it
 * stopped, or never ran) or -ETIMEDOUT (call again, or worker_abandon()). */
int worker_stop(struct worker *w, unsigned timeout_ms);
/* Detaches a thread that does not stop: its memory is never freed. */
void worker_abandon(struct worker *w);
/* Frees a stopped worker. NULL is allowed. */
void worker_destroy(struct worker *w);
/* Number of items. */
unsigned worker_items(const struct worker *w);

#pragma GCC visibility pop

#endif
