/* SPDX-License-Identifier: MIT */
/*
 * The RBD backend's datapath: one image handle shared by every queue,
 * requests started with rbd_aio_* on the queue thread, completions handed
 * back to that queue thread.
 *
 * Completion path. librbd runs a request's callback on one of its own
 * threads. The callback records librbd's result in the request, pushes the
 * request onto its queue's lock-free list (linked through req->priv) and,
 * when the list was empty, signals the queue's eventfd (queue_fd). poll(),
 * on the queue thread, takes the whole list and finishes each request with
 * vblk_req_complete(), or starts its next step (the flush after a
 * write-through write, the next range of a DISCARD / WRITE_ZEROES). So the
 * request, its buffers and the queue state are only ever touched by the
 * queue thread, except for the push.
 *
 * Lifetime. A queue stops only after all its requests have completed, but
 * a callback may still be between its push and its last access to the
 * queue (the eventfd write) when the queue thread has already finished
 * the request. Each callback holds q->in_cb from before the push to after
 * that last access, and queue_stop waits until it drops to zero.
 *
 * Resize. Each step (a read, a write, the flush after it, one range) is
 * checked against the backend's current size and counted in its resize
 * guard from that check until librbd calls back, so a shrink can wait for
 * every step that may touch the part it cuts off.
 *
 * Per-request state lives in req->scratch (S_* below): the queue, librbd's
 * result, the step, the bounce buffer.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#if VBLK_HAVE_RBD
#include "backend/backend_internal.h"
#include "backend/rbd_internal.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

/* req->scratch indices. */
enum {
    S_Q = 0,      /* struct rbd_q * (stored with release: the callback reads it) */
    S_RES = 1,    /* librbd's result of the last step (int64_t); while the
                     step runs, its resize guard token */
    S_STEP = 2,   /* OUT: 1 once the flush after a write-through write runs;
                     DISCARD / WRITE_ZEROES: index of the range in flight */
    S_BOUNCE = 3, /* bounce buffer (void *) or 0 */
};

/* Idle polls after which the eventfd is drained anyway (see rq_poll). */
#define RQ_IDLE_DRAIN 64u

struct rbd_q {
    struct rbd_be *be;
    int efd;
    _Atomic(struct vblk_req *) done; /* requests whose step finished, newest first */
    atomic_uint in_cb;               /* callbacks between their push and their return */
    atomic_bool fd_used;             /* queue_fd() was called: keep the eventfd drained */
    bool armed;                      /* requests were taken: their signal may come late */
    unsigned idle;                   /* polls since the eventfd was last drained */
    int completed;                   /* requests completed during this poll() */
};

#define CNT(be, f) atomic_fetch_add_explicit(&(be)->n.f, 1, memory_order_relaxed)

/* ---- completion: librbd's thread ---- */

static void rq_callback(rbd_completion_t c, void *arg)
{
    struct vblk_req *req = arg;
    struct rbd_q *q =
        (struct rbd_q *)(uintptr_t)__atomic_load_n(&req->scratch[S_Q], __ATOMIC_ACQUIRE);
    int64_t r = rbd_aio_get_return_value(c);
    struct vblk_req *head;

    rbd_aio_release(c);
    /* This step is done with the image: a shrink waiting for it may go on. */
    be_guard_exit(&q->be->guard, req->queue, (unsigned)req->scratch[S_RES]);
    atomic_fetch_add(&q->in_cb, 1u);
    req->scratch[S_RES] = (uint64_t)r;
    head = atomic_load_explicit(&q->done, memory_order_relaxed);
    do {
        req->priv = head;
    } while (!atomic_compare_exchange_weak_explicit(&q->done, &head, req, memory_order_release,
                                                    memory_order_relaxed));
    /* Only the push that made the list non-empty signals: the queue thread
     * takes everything pushed before it reads the list. */
    if (head == NULL)
        (void)eventfd_write(q->efd, 1);
    atomic_fetch_sub_explicit(&q->in_cb, 1u, memory_order_release);
}

/* ---- steps: the queue thread ---- */

static void rq_finish(struct rbd_q *q, struct vblk_req *req, uint8_t st, int64_t r)
{
    void *bounce = (void *)(uintptr_t)req->scratch[S_BOUNCE];

    if (bounce != NULL) {
        free(bounce);
        req->scratch[S_BOUNCE] = 0;
    }
    if (st != VBLK_S_OK) {
        CNT(q->be, errors);
        if (r == -ETIMEDOUT)
            CNT(q->be, timeouts);
    }
    q->completed++;
    vblk_req_complete(req, st);
}

/* Copies between a bounce buffer and the request's buffers. */
static void bounce_copy(struct vblk_req *req, uint8_t *bounce, bool to_bounce)
{
    uint32_t left = req->len;

    for (uint32_t i = 0; i < req->niov && left > 0; i++) {
        size_t n = req->iov[i].len < left ? req->iov[i].len : left;
        if (to_bounce)
            memcpy(bounce, req->iov[i].base, n);
        else
            memcpy(req->iov[i].base, bounce, n);
        bounce += n;
        left -= (uint32_t)n;
    }
}

/*
 * Starts the current step of @p req with a new completion. Returns 0 or the
 * negative errno of the librbd call (the callback will then never run).
 */
static int rq_start(struct rbd_q *q, struct vblk_req *req)
{
    rbd_image_t img = q->be->image;
    const uint64_t off = req->sector << VBLK_SECTOR_SHIFT;
    void *bounce = (void *)(uintptr_t)req->scratch[S_BOUNCE];
    rbd_completion_t c;
    uint64_t roff = off, rlen = req->len;
    int r;

    if (req->type == VBLK_T_DISCARD || req->type == VBLK_T_WRITE_ZEROES) {
        roff = be_range_off(&req->ranges[req->scratch[S_STEP]]);
        rlen = be_range_len(&req->ranges[req->scratch[S_STEP]]);
    } else if (req->type == VBLK_T_FLUSH || (req->type == VBLK_T_OUT && req->scratch[S_STEP])) {
        roff = rlen = 0;
    }
    /* The device checked the request against a capacity that a shrink may
     * have cut since: nothing goes to librbd past the current end. The
     * step stays in the guard until it completes, so a shrink waits for
     * the steps checked against the old size before it cuts the image. */
    unsigned token = be_guard_enter(&q->be->guard, req->queue);
    if (!be_guard_fits(&q->be->guard, roff, rlen)) {
        be_guard_exit(&q->be->guard, req->queue, token);
        return -ERANGE;
    }
    r = rbd_aio_create_completion(req, rq_callback, &c);
    if (r < 0) {
        be_guard_exit(&q->be->guard, req->queue, token);
        return r;
    }
    /* The callback leaves the guard (S_RES is free until it writes it). */
    req->scratch[S_RES] = token;
    switch (req->type) {
    case VBLK_T_IN:
        if (bounce != NULL)
            r = rbd_aio_read(img, off, req->len, bounce, c);
        else
            r = rbd_aio_readv(img, (const struct iovec *)req->iov, req->niov, off, c);
        break;
    case VBLK_T_OUT:
        if (req->scratch[S_STEP] != 0)
            r = rbd_aio_flush(img, c);
        else if (bounce != NULL)
            r = rbd_aio_write(img, off, req->len, bounce, c);
        else
            r = rbd_aio_writev(img, (const struct iovec *)req->iov, req->niov, off, c);
        break;
    case VBLK_T_FLUSH:
        r = rbd_aio_flush(img, c);
        break;
    case VBLK_T_DISCARD:
    case VBLK_T_WRITE_ZEROES: {
        const struct vblk_discard_wz_seg *s = &req->ranges[req->scratch[S_STEP]];
        if (req->type == VBLK_T_DISCARD)
            r = rbd_aio_discard(img, be_range_off(s), be_range_len(s), c);
        else
            r = rbd_aio_write_zeroes(img, be_range_off(s), be_range_len(s), c, 0, 0);
        break;
    }
    default:
        r = -EOPNOTSUPP;
        break;
    }
    if (r < 0) {
        be_guard_exit(&q->be->guard, req->queue, token);
        rbd_aio_release(c);
    }
    return r;
}

/* Starts the step, or finishes the request if it cannot be started. */
static void rq_start_or_fail(struct rbd_q *q, struct vblk_req *req)
{
    int r = rq_start(q, req);
    if (r < 0)
        rq_finish(q, req, rbd_result_status(r, req->type, req->len), r);
}

/* Skips empty ranges from the current one on; false if none is left. */
static bool next_range(struct vblk_req *req)
{
    while (req->scratch[S_STEP] < req->nranges &&
           req->ranges[req->scratch[S_STEP]].num_sectors == 0)
        req->scratch[S_STEP]++;
    return req->scratch[S_STEP] < req->nranges;
}

/* A step of @p req finished with librbd result @p r. */
static void rq_step_done(struct rbd_q *q, struct vblk_req *req, int64_t r)
{
    uint8_t st = rbd_result_status(r, req->type, req->len);

    if (st != VBLK_S_OK) {
        rq_finish(q, req, st, r);
        return;
    }
    switch (req->type) {
    case VBLK_T_IN: {
        void *bounce = (void *)(uintptr_t)req->scratch[S_BOUNCE];
        if (bounce != NULL) {
            /* A short read (the image shrank) reads zeros past its end. */
            if ((uint64_t)r < req->len)
                memset((uint8_t *)bounce + r, 0, req->len - (uint64_t)r);
            bounce_copy(req, bounce, false);
        } else if ((uint64_t)r < req->len) {
            struct iov_pos pos = {0, 0};
            be_iov_advance(req->iov, req->niov, &pos, (uint64_t)r);
            be_iov_zero(req->iov, req->niov, pos);
        }
        break;
    }
    case VBLK_T_OUT:
        /* Write-through cache mode: stable before completion. */
        if (req->scratch[S_STEP] == 0 && (req->flags & VBLK_REQ_F_FUA) && q->be->flush_after_fua) {
            req->scratch[S_STEP] = 1;
            CNT(q->be, fua_flushes);
            rq_start_or_fail(q, req);
            return;
        }
        break;
    case VBLK_T_DISCARD:
    case VBLK_T_WRITE_ZEROES:
        req->scratch[S_STEP]++;
        if (next_range(req)) {
            rq_start_or_fail(q, req);
            return;
        }
        break;
    default:
        break;
    }
    rq_finish(q, req, VBLK_S_OK, 0);
}

static void rq_submit(void *be_, void *qctx, struct vblk_req *req)
{
    struct rbd_be *be = be_;
    struct rbd_q *q = qctx;

    req->scratch[S_RES] = 0;
    req->scratch[S_STEP] = 0;
    req->scratch[S_BOUNCE] = 0;
    __atomic_store_n(&req->scratch[S_Q], (uint64_t)(uintptr_t)q, __ATOMIC_RELEASE);
    switch (req->type) {
    case VBLK_T_IN:
    case VBLK_T_OUT:
        if (req->type == VBLK_T_IN)
            CNT(be, reads);
        else
            CNT(be, writes);
        if (req->len == 0) {
            rq_finish(q, req, VBLK_S_OK, 0);
            return;
        }
        /* librbd takes the buffers as they are; only a chain longer than
         * one call accepts goes through a copy. */
        if (req->niov > IOV_MAX) {
            void *bounce = malloc(req->len);
            if (bounce == NULL) {
                rq_finish(q, req, VBLK_S_IOERR, -ENOMEM);
                return;
            }
            if (req->type == VBLK_T_OUT)
                bounce_copy(req, bounce, true);
            req->scratch[S_BOUNCE] = (uint64_t)(uintptr_t)bounce;
            CNT(be, bounced);
            atomic_fetch_add_explicit(&be->n.bounce_bytes, req->len, memory_order_relaxed);
        }
        break;
    case VBLK_T_FLUSH:
        CNT(be, flushes);
        break;
    case VBLK_T_DISCARD:
    case VBLK_T_WRITE_ZEROES:
        if (req->type == VBLK_T_DISCARD)
            CNT(be, discards);
        else
            CNT(be, write_zeroes);
        if (!next_range(req)) {
            rq_finish(q, req, VBLK_S_OK, 0);
            return;
        }
        break;
    default:
        rq_finish(q, req, VBLK_S_UNSUPP, 0);
        return;
    }
    rq_start_or_fail(q, req);
}

static int rq_poll(void *be, void *qctx)
{
    struct rbd_q *q = qctx;
    struct vblk_req *list, *rev = NULL;

    (void)be;
    /*
     * Drain the eventfd before taking the list, so a push after the take
     * signals it anew. A callback signals a little after its push, so a
     * signal for requests already taken may land late: drain once more after
     * taking some ("armed"), and every RQ_IDLE_DRAIN polls regardless, so a
     * stale signal cannot keep a level-triggered loop spinning.
     */
    if (atomic_load_explicit(&q->fd_used, memory_order_relaxed) &&
        (atomic_load_explicit(&q->done, memory_order_relaxed) != NULL || q->armed ||
         ++q->idle >= RQ_IDLE_DRAIN)) {
        eventfd_t v;
        (void)eventfd_read(q->efd, &v);
        q->idle = 0;
        q->armed = false;
    }
    q->completed = 0;
    if (atomic_load_explicit(&q->done, memory_order_relaxed) == NULL)
        return 0;
    list = atomic_exchange_explicit(&q->done, NULL, memory_order_acquire);
    q->armed = true;
    while (list != NULL) { /* oldest first */
        struct vblk_req *next = list->priv;
        list->priv = rev;
        rev = list;
        list = next;
    }
    while (rev != NULL) {
        struct vblk_req *next = rev->priv;
        rq_step_done(q, rev, (int64_t)rev->scratch[S_RES]);
        rev = next;
    }
    return q->completed;
}

static int rq_queue_fd(void *be, void *qctx)
{
    struct rbd_q *q = qctx;
    (void)be;
    atomic_store_explicit(&q->fd_used, true, memory_order_relaxed);
    return q->efd;
}

static int rq_start_queue(void *be, uint16_t qidx, void **qctx)
{
    struct rbd_q *q;

    (void)qidx;
    q = calloc(1, sizeof(*q));
    if (q == NULL)
        return -ENOMEM;
    q->be = be;
    atomic_init(&q->done, NULL);
    atomic_init(&q->in_cb, 0u);
    atomic_init(&q->fd_used, false);
    q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->efd < 0) {
        int r = -errno;
        free(q);
        return r;
    }
    *qctx = q;
    return 0;
}

static void rq_stop_queue(void *be, uint16_t qidx, void *qctx)
{
    struct rbd_q *q = qctx;

    (void)be;
    (void)qidx;
    if (q == NULL)
        return;
    /* Every request has completed; wait for callbacks still on their way
     * out (between their push and their return): microseconds. */
    while (atomic_load_explicit(&q->in_cb, memory_order_acquire) != 0)
        sched_yield();
    close(q->efd);
    free(q);
}

void rbd_io_setup(struct rbd_be *be)
{
    be->ops.queue_start = rq_start_queue;
    be->ops.queue_stop = rq_stop_queue;
    be->ops.submit = rq_submit;
    be->ops.poll = rq_poll;
    be->ops.queue_fd = rq_queue_fd;
}

#else
typedef int vblk_rbd_io_unused;
#endif
