/* SPDX-License-Identifier: MIT */
/* A device queue as every transport runs it: see tqueue.h. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "transport/tqueue.h"
#include "virtioblk/advanced.h"

int tq_init(struct tqueue *t, bool wake)
{
    *t = (struct tqueue){.wake_fd = -1, .be_fd = -1};
    if (!wake)
        return 0;
    t->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return t->wake_fd < 0 ? -errno : 0;
}

void tq_fini(struct tqueue *t)
{
    if (t->wake_fd >= 0)
        close(t->wake_fd);
    t->wake_fd = -1;
}

/* Runs on whichever thread completes a request: only touch the eventfd. */
static void on_wake(void *opaque)
{
    struct tqueue *t = opaque;
    (void)eventfd_write(t->wake_fd, 1);
}

/* ---- request metrics: hooks around the transport's own ---- */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void count(uint64_t *c, uint64_t n)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static void meter_started(void *opaque, const struct vblk_req *r)
{
    struct tqueue *t = opaque;
    size_t i = (size_t)(r - t->q.reqs);
    if (i < t->nslots)
        t->start_ns[i] = mono_ns();
    if (t->inner_hooks && t->inner_hooks->started)
        t->inner_hooks->started(t->inner_opaque, r);
}

static void meter_done(void *opaque, const struct vblk_req *r)
{
    struct tqueue *t = opaque;
    if (t->inner_hooks && t->inner_hooks->done)
        t->inner_hooks->done(t->inner_opaque, r);
    size_t i = (size_t)(r - t->q.reqs);
    if (i >= t->nslots)
        return;
    uint64_t ns = mono_ns() - t->start_ns[i], us = ns / 1000, bytes = 0;
    unsigned kind;
    switch (r->type) {
    case VBLK_T_IN:
    case VBLK_T_OUT:
        kind = r->type == VBLK_T_IN ? VBLK_METRIC_READ : VBLK_METRIC_WRITE;
        bytes = r->len;
        break;
    case VBLK_T_FLUSH:
        kind = VBLK_METRIC_FLUSH;
        break;
    case VBLK_T_DISCARD:
    case VBLK_T_WRITE_ZEROES:
        kind = r->type == VBLK_T_DISCARD ? VBLK_METRIC_DISCARD : VBLK_METRIC_WRITE_ZEROES;
        for (uint32_t k = 0; k < r->nranges; k++)
            bytes += (uint64_t)r->ranges[k].num_sectors << VBLK_SECTOR_SHIFT;
        break;
    default:
        kind = VBLK_METRIC_OTHER;
        break;
    }
    unsigned b = us ? 64u - (unsigned)__builtin_clzll(us) : 0u;
    if (b >= VBLK_LATENCY_BUCKETS)
        b = VBLK_LATENCY_BUCKETS - 1;
    count(&t->metrics.requests[kind], 1);
    count(&t->metrics.bytes[kind], bytes);
    count(&t->metrics.latency[b], 1);
    count(&t->metrics.latency_sum_ns, ns);
}

static void meter_published(void *opaque, const struct vblk_vq_state *st)
{
    struct tqueue *t = opaque;
    if (t->inner_hooks && t->inner_hooks->published)
        t->inner_hooks->published(t->inner_opaque, st);
}

static const struct vblk_queue_hooks meter_hooks = {
    .started = meter_started,
    .done = meter_done,
    .published = meter_published,
};

void tq_metrics(const struct tqueue *t, struct vblk_transport_queue_metrics *m)
{
    const uint64_t *src = (const uint64_t *)&t->metrics;
    uint64_t *dst = (uint64_t *)m;
    for (size_t i = 0; i < sizeof(*m) / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

int tq_start(struct tqueue *t, struct vblk_dev *dev, struct vblk_mem *mem,
             struct vblk_queue_params *qp, bool wake)
{
    if (t->live)
        return -EBUSY;
    size_t len = (vblk_queue_mem_size(dev, qp->size) + 15) & ~(size_t)15;
    t->pool = aligned_alloc(16, len);
    if (!t->pool)
        return -ENOMEM;
    wake = wake && t->wake_fd >= 0;
    qp->wake = wake ? on_wake : NULL;
    qp->wake_opaque = wake ? t : NULL;
    t->nslots = 0;
    if (t->metrics_on) {
        /* One start time per request slot (at most one per ring entry). */
        t->start_ns = calloc(qp->size ? qp->size : 1, sizeof(*t->start_ns));
        if (t->start_ns) {
            t->inner_hooks = qp->hooks;
            t->inner_opaque = qp->hooks_opaque;
            qp->hooks = &meter_hooks;
            qp->hooks_opaque = t;
        }
    }
    int rc = vblk_queue_init(&t->q, dev, mem, qp, t->pool, len);
    if (rc < 0) {
        free(t->pool);
        t->pool = NULL;
        free(t->start_ns);
        t->start_ns = NULL;
        return rc;
    }
    if (t->start_ns)
        t->nslots = t->q.nreqs < qp->size ? t->q.nreqs : qp->size;
    t->live = true;
    t->have_saved = false;
    t->be_fd = vblk_queue_backend_fd(&t->q);
    t->stats.starts++;
    return 0;
}

void tq_clear_wake(struct tqueue *t)
{
    eventfd_t v;
    if (t->wake_fd >= 0)
        (void)eventfd_read(t->wake_fd, &v);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void add_req_stats(struct vblk_queue_stats *sum, const struct vblk_queue_stats *s)
{
    sum->submitted += s->submitted;
    sum->completed += s->completed;
    sum->ioerr += s->ioerr;
    sum->unsupp += s->unsupp;
    sum->pool_full += s->pool_full;
    sum->multi_range += s->multi_range;
}

void tq_stop(struct tqueue *t, tq_warn_fn warn, void *opaque)
{
    if (!t->live)
        return;
    vblk_queue_stop(&t->q);
    uint64_t start = now_ms(), next_warn = start + TQ_WARN_MS;
    while (vblk_queue_inflight(&t->q)) {
        (void)vblk_queue_process(&t->q, 0);
        if (!vblk_queue_inflight(&t->q))
            break;
        /* Without a wake eventfd, completions from other threads are
         * only seen by looking again: look often. */
        struct pollfd p[2] = {{.fd = t->wake_fd, .events = POLLIN},
                              {.fd = t->be_fd, .events = POLLIN}};
        (void)poll(p, 2, t->wake_fd >= 0 ? 10 : 1);
        tq_clear_wake(t);
        uint64_t now = now_ms();
        if (now >= next_warn) {
            next_warn = now + TQ_WARN_MS;
            if (warn)
                warn(opaque, vblk_queue_inflight(&t->q), (unsigned)(now - start));
        }
    }
    vblk_queue_get_state(&t->q, &t->saved);
    t->have_saved = true;
    add_req_stats(&t->stats.req, vblk_queue_stats(&t->q));
    (void)vblk_queue_destroy(&t->q);
    free(t->pool);
    t->pool = NULL;
    free(t->start_ns);
    t->start_ns = NULL;
    t->nslots = 0;
    t->be_fd = -1;
    t->live = false;
}

void tq_stats(const struct tqueue *t, struct vblk_transport_queue_stats *st)
{
    *st = t->stats;
    if (t->live)
        add_req_stats(&st->req, vblk_queue_stats(&t->q));
}
