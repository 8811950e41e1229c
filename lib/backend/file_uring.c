/* SPDX-License-Identifier: MIT */
/*
 * The file backend's io_uring engine: one ring per queue, created in
 * queue_start on the queue thread and used only there.
 *
 * - submit() prepares SQEs; submit_done() submits the batch with a single
 *   io_uring_submit(); poll() reaps CQEs, resumes short transfers, retries
 *   -EAGAIN and completes requests with vblk_req_complete().
 * - Each SQE owns a slot (preallocated, one per ring entry) naming its
 *   request and, for DISCARD / WRITE_ZEROES, its range and fallocate mode.
 *   At most ring_depth SQEs are in flight, so the SQ never overflows and the
 *   CQ (twice as large) never does either.
 * - A request that finds no free slot waits, in arrival order, on a
 *   per-queue overflow list linked through req->priv, and is issued when
 *   completions free slots. A multi-range request may be issued partly and
 *   finish its ranges later. Nothing is allocated per request.
 * - Per-request state lives in req->scratch (see the S_* indices).
 * - queue_fd() is an eventfd registered with the ring: readable after
 *   CQEs were posted. Once someone asked for it, poll() drains it before
 *   reaping, so a CQE posted after the drain signals it again and no wakeup
 *   is lost. A busy-polling transport never asks and pays no read() for it.
 */
#ifndef _FILE_OFFSET_BITS
#define _FILE_OFFSET_BITS 64
#endif
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "backend/backend_internal.h"

#if VBLK_HAVE_URING
#include <liburing.h>

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

/* req->scratch indices. */
enum {
    S_POS = 0, /* IN/OUT: bytes done; ranges: next range to issue */
    S_IOV = 1, /* IN/OUT: struct iov_pos (idx | off << 32) */
    S_OUT = 2, /* SQEs in flight */
    S_ST = 3,  /* status: VBLK_S_OK or the first failure (low byte); the
                * resize guard's token (bit 8) */
};

#define S_ST_TOKEN_SHIFT 8

/* Idle polls after which the eventfd is drained anyway (see uq_poll). */
#define UQ_IDLE_DRAIN 64u

struct uslot {
    struct vblk_req *req;
    struct uslot *next; /* free list */
    uint32_t range;     /* range index (DISCARD / WRITE_ZEROES) */
    int mode;           /* fallocate mode tried */
};

struct uq {
    struct file_be *fb;
    struct io_uring ring;
    int efd;
    int fd;              /* fd or fixed-file index for SQEs */
    uint8_t sqe_flags;   /* IOSQE_FIXED_FILE when the file is registered */
    atomic_bool fd_used; /* queue_fd() was called: keep the eventfd drained */
    bool armed;          /* CQEs were reaped: their eventfd signal may be late */
    unsigned idle;       /* polls since the eventfd was last drained */
    unsigned inflight;   /* slots in use */
    int completed;       /* requests completed during this poll() */
    struct uslot *free;
    struct vblk_req *ovf_head, *ovf_tail;
    struct uslot slots[];
};

static bool is_range_type(uint32_t type)
{
    return type == VBLK_T_DISCARD || type == VBLK_T_WRITE_ZEROES;
}

static struct iov_pos get_pos(const struct vblk_req *req)
{
    struct iov_pos p = {(uint32_t)req->scratch[S_IOV], (uint32_t)(req->scratch[S_IOV] >> 32)};
    return p;
}

static void set_pos(struct vblk_req *req, struct iov_pos p)
{
    req->scratch[S_IOV] = (uint64_t)p.idx | ((uint64_t)p.off << 32);
}

/* Submits every prepared SQE. On -EAGAIN / -EBUSY they stay in the SQ and
 * the queue's own eventfd is signalled so that poll() tries again soon. */
static void uq_flush(struct uq *q)
{
    while (io_uring_sq_ready(&q->ring) > 0) {
        int r = io_uring_submit(&q->ring);
        if (r > 0 || r == -EINTR)
            continue;
        q->armed = true;
        (void)eventfd_write(q->efd, 1);
        break;
    }
}

static struct io_uring_sqe *uq_sqe(struct uq *q)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);
    if (sqe == NULL) {
        /* Cannot happen while slots <= SQ entries; be safe anyway. */
        uq_flush(q);
        sqe = io_uring_get_sqe(&q->ring);
    }
    return sqe;
}

static struct uslot *slot_get(struct uq *q, struct vblk_req *req)
{
    struct uslot *s = q->free;
    if (s == NULL)
        return NULL;
    q->free = s->next;
    q->inflight++;
    s->req = req;
    req->scratch[S_OUT]++;
    return s;
}

static void slot_put(struct uq *q, struct uslot *s)
{
    s->req->scratch[S_OUT]--;
    s->next = q->free;
    q->free = s;
    q->inflight--;
}

/* Prepares the SQE for the next step of slot @p s. False if no SQE. */
static bool uq_prep(struct uq *q, struct uslot *s)
{
    struct vblk_req *req = s->req;
    struct io_uring_sqe *sqe = uq_sqe(q);

    if (sqe == NULL)
        return false;
    switch (req->type) {
    case VBLK_T_IN:
    case VBLK_T_OUT: {
        const bool in = req->type == VBLK_T_IN;
        struct iov_pos pos = get_pos(req);
        const struct vblk_iov *v = &req->iov[pos.idx];
        uint64_t at = (req->sector << VBLK_SECTOR_SHIFT) + req->scratch[S_POS];
        if (pos.off != 0) {
            /* Resume inside one buffer without touching the iovec array. */
            void *p = (uint8_t *)v->base + pos.off;
            unsigned l = (unsigned)(v->len - pos.off);
            if (in)
                io_uring_prep_read(sqe, q->fd, p, l, at);
            else
                io_uring_prep_write(sqe, q->fd, p, l, at);
        } else {
            unsigned cnt = req->niov - pos.idx;
            if (cnt > IOV_MAX)
                cnt = IOV_MAX;
            if (in)
                io_uring_prep_readv(sqe, q->fd, (const struct iovec *)v, cnt, at);
            else
                io_uring_prep_writev(sqe, q->fd, (const struct iovec *)v, cnt, at);
        }
        /* Write-through cache mode: the write must be stable at completion. */
        if (!in && (req->flags & VBLK_REQ_F_FUA))
            sqe->rw_flags |= RWF_DSYNC;
        break;
    }
    case VBLK_T_FLUSH:
        io_uring_prep_fsync(sqe, q->fd, IORING_FSYNC_DATASYNC);
        break;
    default: {
        const struct vblk_discard_wz_seg *r = &req->ranges[s->range];
        io_uring_prep_fallocate(sqe, q->fd, s->mode, (off_t)be_range_off(r),
                                (off_t)be_range_len(r));
        break;
    }
    }
    sqe->flags |= q->sqe_flags;
    io_uring_sqe_set_data(sqe, s);
    return true;
}

static void uq_complete(struct uq *q, struct vblk_req *req)
{
    q->completed++;
    be_guard_exit(&q->fb->guard, req->queue, (unsigned)(req->scratch[S_ST] >> S_ST_TOKEN_SHIFT));
    vblk_req_complete(req, (uint8_t)req->scratch[S_ST]);
}

static void set_status(struct vblk_req *req, uint8_t st)
{
    if (st != VBLK_S_OK && (uint8_t)req->scratch[S_ST] == VBLK_S_OK)
        req->scratch[S_ST] = (req->scratch[S_ST] & ~(uint64_t)0xff) | st;
}

/* Whether every SQE of @p req has been issued and has finished. */
static bool req_finished(const struct vblk_req *req)
{
    if (req->scratch[S_OUT] != 0)
        return false;
    return !is_range_type(req->type) || req->scratch[S_POS] >= req->nranges;
}

/*
 * Issues what it can of @p req. Returns true when nothing is left to issue
 * (the request may even have completed: do not touch it then), false when
 * it must wait for free slots.
 */
static bool uq_issue(struct uq *q, struct vblk_req *req)
{
    struct uslot *s;

    if (is_range_type(req->type)) {
        while (req->scratch[S_POS] < req->nranges) {
            const struct vblk_discard_wz_seg *r = &req->ranges[req->scratch[S_POS]];
            if (r->num_sectors != 0) {
                s = slot_get(q, req);
                if (s == NULL)
                    return false;
                s->range = (uint32_t)req->scratch[S_POS];
                s->mode = file_range_mode(q->fb, req->type, r);
                if (!uq_prep(q, s)) {
                    slot_put(q, s);
                    set_status(req, VBLK_S_IOERR);
                }
            }
            req->scratch[S_POS]++;
        }
        if (req_finished(req))
            uq_complete(q, req); /* only empty ranges, or every SQE failed */
        return true;
    }
    s = slot_get(q, req);
    if (s == NULL)
        return false;
    if (!uq_prep(q, s)) {
        slot_put(q, s);
        set_status(req, VBLK_S_IOERR);
        uq_complete(q, req);
    }
    return true;
}

static void ovf_push(struct uq *q, struct vblk_req *req)
{
    req->priv = NULL;
    if (q->ovf_tail != NULL)
        q->ovf_tail->priv = req;
    else
        q->ovf_head = req;
    q->ovf_tail = req;
}

/* Issues waiting requests, oldest first, while slots are free. */
static void uq_drain_overflow(struct uq *q)
{
    while (q->ovf_head != NULL && q->free != NULL) {
        struct vblk_req *req = q->ovf_head;
        struct vblk_req *next = req->priv; /* req may complete inside uq_issue */
        if (!uq_issue(q, req))
            break;
        q->ovf_head = next;
        if (next == NULL)
            q->ovf_tail = NULL;
    }
}

static void uq_submit(void *be, void *qctx, struct vblk_req *req)
{
    struct uq *q = qctx;

    (void)be;
    req->scratch[S_POS] = 0;
    req->scratch[S_IOV] = 0;
    req->scratch[S_OUT] = 0;
    req->scratch[S_ST] = VBLK_S_OK;
    switch (req->type) {
    case VBLK_T_IN:
    case VBLK_T_OUT:
        if (req->len == 0) {
            vblk_req_complete(req, VBLK_S_OK);
            return;
        }
        break;
    case VBLK_T_FLUSH:
    case VBLK_T_DISCARD:
    case VBLK_T_WRITE_ZEROES:
        break;
    case VBLK_T_SECURE_ERASE:
        /* Rare, and it must overwrite: done in place, on this thread. */
        vblk_req_complete(req, (q->fb->ops.caps & VBLK_BACKEND_CAP_SECURE_ERASE)
                                   ? file_secure_erase(q->fb, req)
                                   : VBLK_S_UNSUPP);
        return;
    default:
        vblk_req_complete(req, VBLK_S_UNSUPP);
        return;
    }
    unsigned token = be_guard_enter(&q->fb->guard, req->queue);
    if (!be_guard_req_fits(&q->fb->guard, req)) {
        /* Checked by the device against a capacity a resize just shrank. */
        be_guard_exit(&q->fb->guard, req->queue, token);
        vblk_req_complete(req, VBLK_S_IOERR);
        return;
    }
    req->scratch[S_ST] = VBLK_S_OK | ((uint64_t)token << S_ST_TOKEN_SHIFT);
    if (q->ovf_head != NULL || !uq_issue(q, req))
        ovf_push(q, req);
}

static void uq_submit_done(void *be, void *qctx)
{
    (void)be;
    uq_flush(qctx);
}

/* Result of an IN / OUT step. Returns true if the slot was reused. */
static bool uq_rw_done(struct uq *q, struct uslot *s, int res)
{
    struct vblk_req *req = s->req;
    struct iov_pos pos = get_pos(req);

    if (res < 0) {
        set_status(req, VBLK_S_IOERR);
        return false;
    }
    if (res == 0) {
        if (req->type == VBLK_T_IN)
            be_iov_zero(req->iov, req->niov, pos); /* past EOF: zeros */
        else
            set_status(req, VBLK_S_IOERR);
        return false;
    }
    req->scratch[S_POS] += (uint64_t)res;
    if (req->scratch[S_POS] >= req->len)
        return false;
    /* Short transfer: resume where it stopped. */
    be_iov_advance(req->iov, req->niov, &pos, (uint64_t)res);
    set_pos(req, pos);
    if (pos.idx < req->niov && uq_prep(q, s))
        return true;
    set_status(req, VBLK_S_IOERR);
    return false;
}

static void uq_cqe(struct uq *q, struct uslot *s, int res)
{
    struct vblk_req *req = s->req;

    if ((res == -EAGAIN || res == -EINTR) && uq_prep(q, s))
        return; /* same step again */
    switch (req->type) {
    case VBLK_T_IN:
    case VBLK_T_OUT:
        if (uq_rw_done(q, s, res))
            return;
        break;
    case VBLK_T_FLUSH:
        if (res < 0)
            set_status(req, VBLK_S_IOERR);
        break;
    default:
        if (res == -EOPNOTSUPP || res == -ENOTSUP)
            set_status(req, file_range_fallback(q->fb, req->type, &req->ranges[s->range], s->mode));
        else if (res < 0)
            set_status(req, VBLK_S_IOERR);
        break;
    }
    slot_put(q, s);
    if (req_finished(req))
        uq_complete(q, req);
}

static int uq_poll(void *be, void *qctx)
{
    struct uq *q = qctx;
    struct io_uring_cqe *cqe;
    bool reaped = false;

    (void)be;
    /*
     * Drain the eventfd before reaping so a CQE posted afterwards signals it
     * anew. The kernel signals a little after publishing a CQE, so a signal
     * for CQEs already reaped may land late: keep draining once more after
     * reaping ("armed"), and every UQ_IDLE_DRAIN polls regardless, so a stale
     * signal cannot keep an event loop spinning.
     */
    if (atomic_load_explicit(&q->fd_used, memory_order_relaxed) &&
        (io_uring_cq_ready(&q->ring) > 0 || q->armed || ++q->idle >= UQ_IDLE_DRAIN)) {
        eventfd_t v;
        (void)eventfd_read(q->efd, &v);
        q->idle = 0;
        q->armed = false;
    }
    q->completed = 0;
    while (io_uring_peek_cqe(&q->ring, &cqe) == 0) {
        struct uslot *s = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&q->ring, cqe);
        reaped = true;
        uq_cqe(q, s, res);
    }
    if (reaped)
        q->armed = true;
    uq_drain_overflow(q);
    if (io_uring_sq_ready(&q->ring) > 0)
        uq_flush(q);
    return q->completed;
}

static int uq_queue_fd(void *be, void *qctx)
{
    struct uq *q = qctx;
    (void)be;
    atomic_store_explicit(&q->fd_used, true, memory_order_relaxed);
    return q->efd;
}

static void uq_free(struct uq *q)
{
    io_uring_queue_exit(&q->ring);
    if (q->efd >= 0)
        close(q->efd);
    free(q);
}

static int uq_start(void *be, uint16_t qidx, void **qctx)
{
    struct file_be *fb = be;
    unsigned depth = fb->ring_depth;
    struct uq *q;
    int r;

    (void)qidx;
    q = calloc(1, sizeof(*q) + (size_t)depth * sizeof(struct uslot));
    if (q == NULL)
        return -ENOMEM;
    q->fb = fb;
    q->efd = -1;
    atomic_init(&q->fd_used, false);
    r = io_uring_queue_init(depth, &q->ring, 0);
    if (r < 0) {
        free(q);
        return r;
    }
    q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->efd < 0) {
        r = -errno;
        uq_free(q);
        return r;
    }
    r = io_uring_register_eventfd(&q->ring, q->efd);
    if (r < 0) {
        uq_free(q);
        return r;
    }
    /* A registered file saves a file reference per SQE; optional. */
    if (io_uring_register_files(&q->ring, &fb->fd, 1) == 0) {
        q->fd = 0;
        q->sqe_flags = IOSQE_FIXED_FILE;
    } else {
        q->fd = fb->fd;
    }
    for (unsigned i = depth; i-- > 0;) {
        q->slots[i].next = q->free;
        q->free = &q->slots[i];
    }
    *qctx = q;
    return 0;
}

static void uq_stop(void *be, uint16_t qidx, void *qctx)
{
    (void)be;
    (void)qidx;
    if (qctx != NULL)
        uq_free(qctx);
}

int file_uring_probe(unsigned depth)
{
    struct io_uring ring;
    int r = io_uring_queue_init(depth, &ring, 0);
    if (r == 0)
        io_uring_queue_exit(&ring);
    return r;
}

void file_uring_setup(struct file_be *fb)
{
    fb->ops.queue_start = uq_start;
    fb->ops.queue_stop = uq_stop;
    fb->ops.submit = uq_submit;
    fb->ops.submit_done = uq_submit_done;
    fb->ops.poll = uq_poll;
    fb->ops.queue_fd = uq_queue_fd;
}

#else
typedef int vblk_file_uring_unused;
#endif
