/* SPDX-License-Identifier: MIT */
/* A device queue: request pool, completion paths and batching. */
#include <errno.h>
#include <string.h>

#include "blk_internal.h"
#include "ring_walk.h"

#define ALIGN16(x) (((x) + 15u) & ~(size_t)15u)

static uint16_t iov_cap(const struct vblk_dev *dev)
{
    /* Header and status descriptors, seg_max data descriptors, and slack
     * for buffers that straddle two memory regions. */
    uint32_t cap = dev->p.seg_max + 2 + 16;
    return cap > UINT16_MAX ? UINT16_MAX : (uint16_t)cap;
}

/* The in-order table is indexed by free-running 32-bit sequence numbers,
 * so its size must divide 2^32: a power of two covering the queue size
 * (packed queues need not be powers of two). This is its index mask. */
static uint32_t order_mask(uint16_t size)
{
    uint32_t m = size ? size - 1u : 0;
    m |= m >> 1;
    m |= m >> 2;
    m |= m >> 4;
    m |= m >> 8;
    return m;
}

size_t vblk_queue_mem_size(const struct vblk_dev *dev, uint16_t size)
{
    size_t n = size;
    return ALIGN16(n * sizeof(struct vblk_req)) +
           ALIGN16(n * iov_cap(dev) * sizeof(struct vblk_iov)) +
           ALIGN16(n * dev->max_ranges * sizeof(struct vblk_discard_wz_seg)) +
           ALIGN16(((size_t)order_mask(size) + 1) * sizeof(struct vblk_req *));
}

int vblk_queue_init(struct vblk_queue *q, struct vblk_dev *dev, struct vblk_mem *mem,
                    const struct vblk_queue_params *qp, void *buf, size_t buflen)
{
    memset(q, 0, sizeof(*q));
    if (!dev->features_ok || qp->index >= dev->p.num_queues || qp->size > dev->p.queue_size)
        return -EINVAL;
    if (!buf || ((uintptr_t)buf & 15) || buflen < vblk_queue_mem_size(dev, qp->size))
        return -ENOBUFS;
    uint64_t f = dev->driver_features;
    struct vblk_vq_config vc = {
        .size = qp->size,
        .packed = (f & VBLK_BIT(VBLK_F_RING_PACKED)) != 0,
        .event_idx = (f & VBLK_BIT(VBLK_F_EVENT_IDX)) != 0,
        .indirect = (f & VBLK_BIT(VBLK_F_INDIRECT_DESC)) != 0,
        .addrs = qp->addrs,
        .state = qp->state,
    };
    int rc = vblk_vq_init(&q->vq, mem, &vc);
    if (rc < 0)
        return rc;

    q->dev = dev;
    q->index = qp->index;
    q->nreqs = qp->size;
    q->iov_cap = iov_cap(dev);
    q->in_order = (f & VBLK_BIT(VBLK_F_IN_ORDER)) != 0;
    q->notify = qp->notify;
    q->notify_opaque = qp->notify_opaque;
    q->wake = qp->wake;
    q->wake_opaque = qp->wake_opaque;
    q->hooks = qp->hooks;
    q->hooks_opaque = qp->hooks_opaque;

    uint8_t *p = buf;
    size_t n = qp->size;
    q->reqs = (struct vblk_req *)p;
    p += ALIGN16(n * sizeof(struct vblk_req));
    struct vblk_iov *iov = (struct vblk_iov *)p;
    p += ALIGN16(n * q->iov_cap * sizeof(struct vblk_iov));
    struct vblk_discard_wz_seg *ranges = (struct vblk_discard_wz_seg *)p;
    p += ALIGN16(n * dev->max_ranges * sizeof(struct vblk_discard_wz_seg));
    q->order = (struct vblk_req **)p;

    q->free = NULL;
    for (size_t i = n; i-- > 0;) {
        struct vblk_req *r = &q->reqs[i];
        memset(r, 0, sizeof(*r));
        r->q = q;
        r->queue = q->index;
        r->chain.iov = &iov[i * q->iov_cap];
        r->chain.cap = q->iov_cap;
        r->ranges = &ranges[i * dev->max_ranges];
        r->next = q->free;
        q->free = r;
    }
    for (size_t i = 0; i <= order_mask(qp->size); i++)
        q->order[i] = NULL;

    const struct vblk_backend_ops *ops = dev->be.ops;
    if (ops->queue_start) {
        rc = ops->queue_start(dev->be.ctx, q->index, &q->qctx);
        if (rc < 0)
            return rc;
    }
    q->started_backend = 1;
    return 0;
}

/* The only places a request slot returns to the pool. */
static void release(struct vblk_queue *q, struct vblk_req *r)
{
    r->next = q->free;
    q->free = r;
    q->inflight--;
    q->stats.completed++;
}

/* A chain that can report nothing: the ring is broken, and its slot goes
 * back without a used entry (and out of the in-order window it was last
 * put into). */
static void drop(struct vblk_queue *q, struct vblk_req *r)
{
    if (q->in_order)
        q->order[--q->seq_next & order_mask(q->nreqs)] = NULL;
    r->next = q->free;
    q->free = r;
    q->inflight--;
    vq_break(&q->vq);
}

static void push_used(struct vblk_queue *q, struct vblk_req *r)
{
    vq_push(&q->vq, r->chain.id, r->chain.ndescs, r->used_len);
    if (q->hooks && q->hooks->done)
        q->hooks->done(q->hooks_opaque, r);
    q->need_publish = 1;
    release(q, r);
}

void vblk_req_complete(struct vblk_req *r, uint8_t status)
{
    struct vblk_queue *q = r->q;
    struct vblk_mem *mem = q->vq.mem;
    if (status != VBLK_S_OK) {
        r->used_len = 1;
        if (status == VBLK_S_IOERR)
            q->stats.ioerr++;
        else if (status == VBLK_S_UNSUPP)
            q->stats.unsupp++;
    }
    *r->status = status;
    if (mem->log) {
        /* Log after the data and status are written, so a migration pass
         * that clears the bit cannot miss them. */
        if (req_writes_data(r->type))
            for (uint16_t i = 0; i < r->niov; i++)
                vblk_mem_log_host(mem, r->iov[i].base, r->iov[i].len);
        vblk_mem_log_host(mem, r->status, 1);
    }
    if (!q->in_order) {
        push_used(q, r);
        return;
    }
    /* virtio 1.2 2.7.9 / 2.8.8: with IN_ORDER, buffers are used in the
     * order they were made available; hold early finishers back. */
    r->done = 1;
    for (;;) {
        struct vblk_req **slot = &q->order[q->seq_done & order_mask(q->nreqs)];
        struct vblk_req *next = *slot;
        if (!next || !next->done)
            break;
        *slot = NULL;
        next->done = 0;
        q->seq_done++;
        push_used(q, next);
    }
}

void vblk_req_complete_async(struct vblk_req *r, uint8_t status)
{
    struct vblk_queue *q = r->q;
    r->state = status;
    /* Once the request is on the list, the queue thread may finish it and
     * the queue may be destroyed; vblk_queue_destroy() waits for this count
     * to drop, so that @q stays valid until the wake below is done. The
     * release of the push below publishes the increment. */
    __atomic_fetch_add(&q->async_busy, 1u, __ATOMIC_RELAXED);
    struct vblk_req *head = __atomic_load_n((struct vblk_req **)&q->async_head, __ATOMIC_RELAXED);
    do {
        r->next = head;
        /* Release: the backend's writes to the buffers happen before the
         * queue thread sees the request on the list. */
    } while (!__atomic_compare_exchange_n((struct vblk_req **)&q->async_head, &head, r, true,
                                          __ATOMIC_RELEASE, __ATOMIC_RELAXED));
    if (!__atomic_exchange_n(&q->wake_pending, 1u, __ATOMIC_ACQ_REL) && q->wake)
        q->wake(q->wake_opaque);
    __atomic_fetch_sub(&q->async_busy, 1u, __ATOMIC_RELEASE);
}

static void drain_async(struct vblk_queue *q)
{
    /* Nothing to do only if the list is empty and no wake is pending: a flag
     * left set by a completion whose request an earlier drain already took
     * must still be cleared, or later completions would never wake us. */
    if (!__atomic_load_n(&q->wake_pending, __ATOMIC_RELAXED) &&
        !__atomic_load_n((struct vblk_req **)&q->async_head, __ATOMIC_RELAXED))
        return;
    /* Clear the flag before taking the list: a completion racing with us
     * then wakes the queue again instead of being stranded. */
    __atomic_store_n(&q->wake_pending, 0u, __ATOMIC_SEQ_CST);
    struct vblk_req *list =
        __atomic_exchange_n((struct vblk_req **)&q->async_head, NULL, __ATOMIC_ACQ_REL);
    struct vblk_req *rev = NULL;
    while (list) {
        struct vblk_req *next = list->next;
        list->next = rev;
        rev = list;
        list = next;
    }
    while (rev) {
        struct vblk_req *next = rev->next;
        vblk_req_complete(rev, rev->state);
        rev = next;
    }
}

void vblk_queue_flush(struct vblk_queue *q)
{
    if (!q->need_publish)
        return;
    q->need_publish = 0;
    bool notify = vblk_vq_publish(&q->vq);
    if (q->hooks && q->hooks->published) {
        struct vblk_vq_state st;
        vblk_vq_get_state(&q->vq, &st);
        q->hooks->published(q->hooks_opaque, &st);
    }
    if (notify && q->notify)
        q->notify(q->notify_opaque);
}

/* Takes a slot for a popped chain and starts it. */
static bool start(struct vblk_queue *q, struct vblk_req *r)
{
    q->free = r->next;
    q->inflight++;
    if (q->in_order)
        q->order[q->seq_next++ & order_mask(q->nreqs)] = r;
    if (q->hooks && q->hooks->started)
        q->hooks->started(q->hooks_opaque, r);
    int verdict = req_decode(q, r);
    if (verdict == REQ_SUBMIT) {
        q->stats.submitted++;
        q->stats.multi_range += r->nranges > 1;
        q->dev->be.ops->submit(q->dev->be.ctx, q->qctx, r);
        return true;
    }
    if (verdict == REQ_DROP)
        drop(q, r);
    else
        vblk_req_complete(r, (uint8_t)verdict);
    return false;
}

/* Starts a request re-read after a restart and submits it at once. */
static int resubmit(struct vblk_queue *q, struct vblk_req *r, int rc)
{
    if (rc == -EINVAL)
        return rc;
    if (rc <= 0)
        return -EIO;
    if (start(q, r)) {
        const struct vblk_backend_ops *ops = q->dev->be.ops;
        if (ops->submit_done)
            ops->submit_done(q->dev->be.ctx, q->qctx);
    }
    return 1;
}

int vblk_queue_resubmit(struct vblk_queue *q, uint16_t pos, uint8_t wrap)
{
    struct vblk_req *r = q->free;
    if (!r)
        return -EBUSY;
    r->head_pos = pos;
    r->head_wrap = wrap;
    return resubmit(q, r, vblk_vq_pop_at(&q->vq, pos, wrap, &r->chain));
}

int vblk_queue_resubmit_saved(struct vblk_queue *q, const struct vblk_packed_desc *descs,
                              uint16_t n)
{
    struct vblk_req *r = q->free;
    if (!r)
        return -EBUSY;
    r->head_pos = 0;
    r->head_wrap = 1;
    return resubmit(q, r, vblk_vq_pop_saved(&q->vq, descs, n, &r->chain));
}

int vblk_queue_process(struct vblk_queue *q, unsigned budget)
{
    const struct vblk_backend_ops *ops = q->dev->be.ops;
    void *be = q->dev->be.ctx;
    /* Even a broken queue reaps completions, so that the requests still in
     * flight can be released before the queue is destroyed. */
    drain_async(q);
    if (ops->poll)
        ops->poll(be, q->qctx);
    if (vblk_vq_broken(&q->vq))
        return -EIO;

    unsigned submitted = 0;
    /* General-path requests to take before trying the fast path again, and
     * how often in a row it found nothing: a driver that sends only other
     * shapes (indirect tables, say) pays for a failed attempt once in up to
     * 64 requests, not for every one. */
    unsigned slow_left = 0, misses = 0;
    while (!q->stopping && (budget == 0 || submitted < budget)) {
        if (slow_left == 0) {
            /* The common requests in one fused pass; the general path
             * below takes whatever stopped it (or finds the ring empty). */
            unsigned n = blk_fast_burst(q, budget ? budget - submitted : ~0u);
            submitted += n;
            misses = n ? 0 : misses < 6 ? misses + 1 : 6;
            slow_left = n ? 1 : 1u << misses;
            if (q->stopping || (budget && submitted >= budget))
                break;
        }
        slow_left--;
        struct vblk_req *r = q->free;
        if (!r) {
            /* Count only real back-pressure: a chain is waiting. */
            if (vblk_vq_has_avail(&q->vq))
                q->stats.pool_full++;
            break;
        }
        r->head_pos = q->vq.last_avail;
        r->head_wrap = q->vq.avail_wrap;
        if (vblk_vq_pop(&q->vq, &r->chain) <= 0)
            break;
        if (start(q, r))
            submitted++;
    }
    if (submitted && ops->submit_done)
        ops->submit_done(be, q->qctx);
    vblk_queue_flush(q);
    return vblk_vq_broken(&q->vq) ? -EIO : (int)submitted;
}

int vblk_queue_on_kick(struct vblk_queue *q)
{
    int total = 0;
    for (;;) {
        vblk_vq_disable_notify(&q->vq);
        int rc = vblk_queue_process(q, 0);
        if (rc < 0)
            return rc;
        total += rc;
        /* With every slot in flight, a completion will run us again. */
        if (!q->free || q->stopping || q->polling)
            return total;
        if (!vblk_vq_enable_notify(&q->vq))
            return vblk_vq_broken(&q->vq) ? -EIO : total;
    }
}

void vblk_queue_set_polling(struct vblk_queue *q, bool polling)
{
    q->polling = polling;
    if (polling)
        vblk_vq_disable_notify(&q->vq);
    else
        vblk_vq_enable_notify(&q->vq);
}

uint32_t vblk_queue_stop(struct vblk_queue *q)
{
    q->stopping = 1;
    return q->inflight;
}

int vblk_queue_destroy(struct vblk_queue *q)
{
    if (q->inflight)
        return -EBUSY;
    /* A thread that completed the last request may still be inside
     * vblk_req_complete_async(), waking us: a few instructions and the wake
     * hook. */
    while (__atomic_load_n(&q->async_busy, __ATOMIC_ACQUIRE))
        ;
    const struct vblk_backend_ops *ops = q->dev ? q->dev->be.ops : NULL;
    if (q->started_backend && ops && ops->queue_stop)
        ops->queue_stop(q->dev->be.ctx, q->index, q->qctx);
    q->started_backend = 0;
    return 0;
}

int vblk_queue_backend_fd(const struct vblk_queue *q)
{
    const struct vblk_backend_ops *ops = q->dev ? q->dev->be.ops : NULL;
    if (!q->started_backend || !ops || !ops->queue_fd)
        return -1;
    return ops->queue_fd(q->dev->be.ctx, q->qctx);
}

void vblk_queue_get_state(const struct vblk_queue *q, struct vblk_vq_state *st)
{
    vblk_vq_get_state(&q->vq, st);
}
