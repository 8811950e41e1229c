/* SPDX-License-Identifier: MIT */
/* In-process transport: driver and device share an arena in this process. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "transport/tqueue.h"
#include "virtioblk/loopback.h"

struct lb_queue {
    struct vblk_drv_vq drv;
    struct tqueue tq; /* the device side; driven by the caller, no wake fd */
    void *drv_state;
    struct vblk_drv_blk_frame *frames;
    uint64_t notifications;
    uint64_t kicks;
};

struct vblk_loopback {
    struct vblk_mem mem;
    struct vblk_dev dev;
    uint8_t *arena;
    size_t arena_size;
    size_t arena_used;
    uint16_t nq;
    uint16_t qsize;
    struct lb_queue *q;
};

static void on_notify(void *opaque)
{
    ((struct lb_queue *)opaque)->notifications++;
}

void *vblk_loopback_alloc(struct vblk_loopback *lb, size_t len)
{
    size_t align = len >= 4096 ? 4096 : 64;
    size_t off = (lb->arena_used + align - 1) & ~(align - 1);
    if (off > lb->arena_size || len > lb->arena_size - off)
        return NULL;
    lb->arena_used = off + len;
    return lb->arena + off;
}

static int start_queue(struct vblk_loopback *lb, uint16_t i, const struct vblk_loopback_opts *o)
{
    struct lb_queue *lq = &lb->q[i];
    (void)tq_init(&lq->tq, false); /* no wake fd: cannot fail */
    uint64_t f = lb->dev.driver_features;
    struct vblk_drv_vq_config dc = {
        .size = lb->qsize,
        .packed = (f & VBLK_BIT(VBLK_F_RING_PACKED)) != 0,
        .event_idx = (f & VBLK_BIT(VBLK_F_EVENT_IDX)) != 0,
        .indirect = (f & VBLK_BIT(VBLK_F_INDIRECT_DESC)) != 0,
        .indirect_max =
            (f & VBLK_BIT(VBLK_F_INDIRECT_DESC)) ? (uint16_t)(lb->dev.p.seg_max + 2) : 0,
        .addr_delta = 0,
    };
    (void)o;
    size_t ring_len = vblk_drv_vq_ring_size(&dc);
    void *ring = vblk_loopback_alloc(lb, ring_len < 4096 ? 4096 : ring_len);
    lq->frames = vblk_loopback_alloc(lb, sizeof(*lq->frames) * lb->qsize);
    if (!ring || !lq->frames)
        return -ENOMEM;
    size_t st_len = vblk_drv_vq_state_size(&dc);
    lq->drv_state = aligned_alloc(16, (st_len + 15) & ~(size_t)15);
    if (!lq->drv_state)
        return -ENOMEM;
    int rc = vblk_drv_vq_init(&lq->drv, &dc, ring, ring_len, lq->drv_state, st_len);
    if (rc < 0)
        return rc;

    struct vblk_queue_params qp = {
        .index = i,
        .size = lb->qsize,
        .notify = on_notify,
        .notify_opaque = lq,
    };
    vblk_drv_vq_addrs(&lq->drv, &qp.addrs);
    return tq_start(&lq->tq, &lb->dev, &lb->mem, &qp, false);
}

int vblk_loopback_create(const struct vblk_dev_params *p, const struct vblk_backend *be,
                         const struct vblk_loopback_opts *opts, struct vblk_loopback **out)
{
    struct vblk_loopback_opts o = {0};
    if (opts)
        o = *opts;
    struct vblk_loopback *lb = calloc(1, sizeof(*lb));
    if (!lb)
        return -ENOMEM;
    int rc = vblk_dev_init(&lb->dev, p, be);
    if (rc < 0)
        goto fail;
    lb->nq = o.num_queues ? o.num_queues : lb->dev.p.num_queues;
    lb->qsize = o.queue_size ? o.queue_size : 256;
    if (lb->nq > lb->dev.p.num_queues || lb->qsize > lb->dev.p.queue_size) {
        rc = -EINVAL;
        goto fail;
    }
    uint64_t want = vblk_dev_features(&lb->dev);
    if (!o.packed)
        want &= ~VBLK_BIT(VBLK_F_RING_PACKED);
    if (o.no_event_idx)
        want &= ~VBLK_BIT(VBLK_F_EVENT_IDX);
    if (o.no_indirect)
        want &= ~VBLK_BIT(VBLK_F_INDIRECT_DESC);
    if (!o.in_order)
        want &= ~VBLK_BIT(VBLK_F_IN_ORDER);
    if (o.packed && !(want & VBLK_BIT(VBLK_F_RING_PACKED))) {
        rc = -ENOTSUP;
        goto fail;
    }
    rc = vblk_dev_set_features(&lb->dev, want);
    if (rc < 0)
        goto fail;

    lb->arena_size = o.arena_size ? o.arena_size : (16u << 20);
    lb->arena = aligned_alloc(4096, (lb->arena_size + 4095) & ~(size_t)4095);
    if (!lb->arena) {
        rc = -ENOMEM;
        goto fail;
    }
    memset(lb->arena, 0, lb->arena_size);
    vblk_mem_init(&lb->mem);
    /* Identity map: a driver address is the pointer value. */
    rc = vblk_mem_add(&lb->mem, (uintptr_t)lb->arena, lb->arena_size, lb->arena, NULL);
    if (rc < 0)
        goto fail;
    lb->q = calloc(lb->nq, sizeof(*lb->q));
    if (!lb->q) {
        rc = -ENOMEM;
        goto fail;
    }
    for (uint16_t i = 0; i < lb->nq; i++) {
        rc = start_queue(lb, i, &o);
        if (rc < 0) {
            lb->nq = (uint16_t)(i + 1);
            goto fail;
        }
    }
    *out = lb;
    return 0;
fail:
    vblk_loopback_destroy(lb);
    return rc;
}

void vblk_loopback_destroy(struct vblk_loopback *lb)
{
    if (!lb)
        return;
    for (uint16_t i = 0; lb->q && i < lb->nq; i++) {
        struct lb_queue *lq = &lb->q[i];
        /* Waits for backends that complete on other threads, even on a
         * broken ring: their requests point into memory freed below. */
        tq_stop(&lq->tq, NULL, NULL);
        tq_fini(&lq->tq);
        free(lq->drv_state);
    }
    free(lb->q);
    free(lb->arena);
    free(lb);
}

struct vblk_drv_vq *vblk_loopback_driver(struct vblk_loopback *lb, uint16_t qidx)
{
    return qidx < lb->nq ? &lb->q[qidx].drv : NULL;
}

struct vblk_queue *vblk_loopback_queue(struct vblk_loopback *lb, uint16_t qidx)
{
    return qidx < lb->nq ? &lb->q[qidx].tq.q : NULL;
}

struct vblk_dev *vblk_loopback_blk(struct vblk_loopback *lb)
{
    return &lb->dev;
}

struct vblk_mem *vblk_loopback_mem(struct vblk_loopback *lb)
{
    return &lb->mem;
}

int vblk_loopback_kick(struct vblk_loopback *lb, uint16_t qidx)
{
    struct lb_queue *lq = &lb->q[qidx];
    if (!vblk_drv_vq_kick_prepare(&lq->drv))
        return 0;
    lq->kicks++;
    return vblk_queue_on_kick(&lq->tq.q);
}

int vblk_loopback_process(struct vblk_loopback *lb, uint16_t qidx)
{
    return vblk_queue_on_kick(&lb->q[qidx].tq.q);
}

int vblk_loopback_queue_stats(struct vblk_loopback *lb, uint16_t qidx,
                              struct vblk_transport_queue_stats *st)
{
    if (!lb || qidx >= lb->nq || !st)
        return -EINVAL;
    const struct lb_queue *lq = &lb->q[qidx];
    tq_stats(&lq->tq, st);
    st->kicks = lq->kicks;
    st->notifies = lq->notifications;
    st->broken = lq->tq.live && vblk_queue_broken(&lq->tq.q) ? 1 : 0;
    st->thread = -1;
    return 0;
}

void vblk_loopback_stats(struct vblk_loopback *lb, struct vblk_transport_stats *st)
{
    *st = (struct vblk_transport_stats){0};
    for (uint16_t i = 0; i < lb->nq; i++)
        if (lb->q[i].tq.live && vblk_queue_broken(&lb->q[i].tq.q))
            st->broken_queues++;
}

/* Waits for the one request in flight on @lq; its status is at @status. */
static int lb_wait(struct vblk_loopback *lb, uint16_t qidx, struct lb_queue *lq,
                   const uint8_t *status, int rc)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned spins = 0; rc >= 0; spins++) {
        void *tok;
        uint32_t ulen;
        int got = vblk_drv_vq_get_used(&lq->drv, &tok, &ulen);
        if (got < 0)
            return got;
        if (got > 0)
            return *status;
        /* Asynchronous backends finish on their own time; give up after
         * 30 s rather than spinning forever on a lost request. */
        if ((spins & 1023) == 1023) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            if (t.tv_sec - t0.tv_sec > 30)
                return -ETIMEDOUT;
        }
        rc = vblk_loopback_process(lb, qidx);
    }
    return rc;
}

int vblk_loopback_rw(struct vblk_loopback *lb, uint16_t qidx, uint32_t type, uint64_t sector,
                     void *buf, size_t len)
{
    if (qidx >= lb->nq)
        return -EINVAL;
    struct lb_queue *lq = &lb->q[qidx];
    struct vblk_drv_blk_frame *fr = &lq->frames[0];
    struct vblk_iov data = {buf, len};
    int rc = vblk_drv_blk_add(&lq->drv, fr, type, sector, &data, buf ? 1 : 0, fr, false);
    if (rc < 0)
        return rc;
    return lb_wait(lb, qidx, lq, &fr->status, vblk_loopback_kick(lb, qidx));
}

int vblk_loopback_zone_append(struct vblk_loopback *lb, uint16_t qidx, uint64_t zone_sector,
                              void *buf, size_t len, uint64_t *append_sector)
{
    if (qidx >= lb->nq)
        return -EINVAL;
    struct lb_queue *lq = &lb->q[qidx];
    /* The first frames are 32 bytes each, as big as an append frame. */
    struct vblk_drv_blk_za_frame *fr = (struct vblk_drv_blk_za_frame *)&lq->frames[0];
    struct vblk_iov data = {buf, len};
    int rc = vblk_drv_blk_add_append(&lq->drv, fr, zone_sector, &data, buf ? 1 : 0, fr, false);
    if (rc < 0)
        return rc;
    rc = lb_wait(lb, qidx, lq, &fr->status, vblk_loopback_kick(lb, qidx));
    if (rc == VBLK_S_OK && append_sector)
        *append_sector = fr->append_sector;
    return rc;
}
