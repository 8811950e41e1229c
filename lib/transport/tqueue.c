/* SPDX-License-Identifier: MIT */
/* A device queue as every transport runs it: see tqueue.h. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "transport/tqueue.h"

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
    int rc = vblk_queue_init(&t->q, dev, mem, qp, t->pool, len);
    if (rc < 0) {
        free(t->pool);
        t->pool = NULL;
        return rc;
    }
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
    t->be_fd = -1;
    t->live = false;
}

void tq_stats(const struct tqueue *t, struct vblk_transport_queue_stats *st)
{
    *st = t->stats;
    if (t->live)
        add_req_stats(&st->req, vblk_queue_stats(&t->q));
}
