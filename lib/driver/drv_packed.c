/* SPDX-License-Identifier: MIT */
/*
 * Driver side of a packed virtqueue (virtio 1.2 2.8).
 *
 * Buffers added between two kick_prepare() calls form a batch. Every
 * descriptor of the batch is written at add time except the flags of the
 * batch's first descriptor (pub_wrap_pos), kept in pending_flags. The
 * device polls descriptors in ring order (2.8.2), so it stops there until
 * kick_prepare() stores those flags: the whole batch appears at once.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drv_internal.h"

static struct vblk_packed_desc *desc_ring(const struct vblk_drv_vq *vq)
{
    return (struct vblk_packed_desc *)(void *)vq->ring;
}

static struct vblk_packed_event *driver_event(const struct vblk_drv_vq *vq)
{
    return (struct vblk_packed_event *)(void *)vq->driver_area;
}

static struct vblk_packed_event *device_event(const struct vblk_drv_vq *vq)
{
    return (struct vblk_packed_event *)(void *)vq->device_area;
}

void drv_packed_init(struct vblk_drv_vq *vq)
{
    /* virtio 1.2 2.8.1: both wrap counters start at 1. */
    vq->avail_wrap = 1;
    vq->used_wrap = 1;
    vq->pub_wrap_pos = vblk_off_wrap(0, 1);
    if (vq->cfg.event_idx) {
        /* Like the split used_event of 0: notify on the first used buffer. */
        struct vblk_packed_event *ev = driver_event(vq);

        drv_store16(&ev->off_wrap, vblk_off_wrap(0, 1));
        drv_store16(&ev->flags, VBLK_EVENT_F_DESC);
    }
}

void drv_packed_add(struct vblk_drv_vq *vq, const struct drv_buf *b, void *token)
{
    struct vblk_packed_desc *desc = desc_ring(vq);
    struct vblk_drv_slot *s;
    struct drv_iter it;
    uint16_t id = vq->free_head, pos = vq->avail_idx, head = pos, head_flags = 0, ndescs;
    uint8_t wrap = vq->avail_wrap, head_wrap = wrap;
    bool write;

    vq->free_head = vq->next_free[id];
    drv_iter_init(&it, b);
    if (b->indirect) {
        struct vblk_packed_desc *t = drv_indirect_table(vq, id);

        for (unsigned k = 0; k < b->nelem; k++) {
            const struct vblk_iov *v = drv_iter_next(&it, &write);

            t[k].addr = drv_addr(vq, v->base);
            t[k].len = (uint32_t)v->len;
            t[k].id = 0;
            /* virtio 1.2 2.8.19: WRITE is the only flag allowed in a table. */
            t[k].flags = write ? VBLK_DESC_F_WRITE : 0;
        }
        desc[pos].addr = drv_addr(vq, t);
        desc[pos].len = b->nelem * (uint32_t)sizeof(*t);
        desc[pos].id = id;
        head_flags = (uint16_t)(VBLK_DESC_F_INDIRECT | vblk_packed_avail_bits(wrap));
        vblk_ring_next(vq->cfg.size, &pos, &wrap);
        ndescs = 1;
    } else {
        for (unsigned k = 0; k < b->nelem; k++) {
            const struct vblk_iov *v = drv_iter_next(&it, &write);
            uint16_t f = (uint16_t)((write ? VBLK_DESC_F_WRITE : 0) |
                                    (k + 1 < b->nelem ? VBLK_DESC_F_NEXT : 0) |
                                    vblk_packed_avail_bits(wrap));

            desc[pos].addr = drv_addr(vq, v->base);
            desc[pos].len = (uint32_t)v->len;
            desc[pos].id = id;
            if (k == 0)
                head_flags = f;
            else
                drv_store16(&desc[pos].flags, f);
            vblk_ring_next(vq->cfg.size, &pos, &wrap);
        }
        ndescs = (uint16_t)b->nelem;
    }
    vq->avail_idx = pos;
    vq->avail_wrap = wrap;
    vq->num_free = (uint16_t)(vq->num_free - ndescs);

    s = &vq->slots[id];
    s->token = token;
    s->ndescs = ndescs;
    s->last = head;
    s->in_len = b->in_len;

    if (vblk_off_wrap(head, head_wrap) == vq->pub_wrap_pos) {
        vq->pending_flags = head_flags;
    } else {
        /*
         * virtio 1.2 2.8.17 / 2.8.21.1: the first descriptor of a chain is
         * made available last; release orders the rest of the chain before
         * it. The device cannot reach it before the batch head anyway.
         */
        __atomic_store_n(&desc[head].flags, head_flags, __ATOMIC_RELEASE);
    }
}

bool drv_packed_kick_prepare(struct vblk_drv_vq *vq)
{
    struct vblk_packed_event *ev = device_event(vq);
    uint16_t old = vq->pub_wrap_pos, cur = vblk_off_wrap(vq->avail_idx, vq->avail_wrap);
    uint16_t old_pos = vblk_off_wrap_pos(old), flags, off_wrap, event;
    uint8_t old_wrap = vblk_off_wrap_wrap(old);

    if (cur == old)
        return false;
    /*
     * virtio 1.2 2.8.21.1: the batch head is made available last; the
     * release store orders every descriptor written since the last kick
     * before it.
     */
    __atomic_store_n(&desc_ring(vq)[old_pos].flags, vq->pending_flags, __ATOMIC_RELEASE);
    vq->pub_wrap_pos = cur;
    /*
     * virtio 1.2 2.8.21.2.1: full barrier between exposing the flags and
     * reading the device event suppression structure.
     */
    drv_mb();
    /* Acquire: a device that wrote off_wrap before flags is seen whole. */
    flags = __atomic_load_n(&ev->flags, __ATOMIC_ACQUIRE) & 3u;
    if (flags == VBLK_EVENT_F_DISABLE)
        return false;
    /* ENABLE, the reserved value 3, or DESC without EVENT_IDX: kick. */
    if (flags != VBLK_EVENT_F_DESC || !vq->cfg.event_idx)
        return true;

    /*
     * virtio 1.2 2.8.10: kick if the descriptor at (off, wrap) was made
     * available by this batch. Positions of the previous lap are counted
     * as negative so that [old, new) is one linear range.
     */
    off_wrap = drv_load16(&ev->off_wrap);
    event = vblk_off_wrap_pos(off_wrap);
    if (vblk_off_wrap_wrap(off_wrap) != vq->avail_wrap)
        event = (uint16_t)(event - vq->cfg.size);
    if (old_wrap != vq->avail_wrap)
        old_pos = (uint16_t)(old_pos - vq->cfg.size);
    return vblk_need_event(event, vq->avail_idx, old_pos);
}

/* With EVENT_IDX, asks for a notification at the next used position. */
static void update_used_event(struct vblk_drv_vq *vq)
{
    if (!vq->cfg.event_idx || vq->cb_disabled)
        return;
    drv_store16(&driver_event(vq)->off_wrap, vblk_off_wrap(vq->last_used, vq->used_wrap));
    /*
     * virtio 1.2 2.8.10 / 2.8.22: the new offset must be visible before
     * we next read the ring, or the device may skip a notification for a
     * buffer we are about to miss.
     */
    drv_mb();
}

int drv_packed_get_used(struct vblk_drv_vq *vq, void **token, uint32_t *len)
{
    struct vblk_packed_desc *d = &desc_ring(vq)[vq->last_used];
    struct vblk_drv_slot *s;
    uint16_t flags, id;
    uint32_t l;

    /* virtio 1.2 2.8.22: the device writes id and len before flags. */
    flags = __atomic_load_n(&d->flags, __ATOMIC_ACQUIRE);
    if (!vblk_packed_is_used(flags, vq->used_wrap))
        return 0;
    id = drv_load16(&d->id);
    /* virtio 1.2 2.8.4: len is reserved unless WRITE is set. */
    l = (flags & VBLK_DESC_F_WRITE) ? drv_load32(&d->len) : 0;

    if (id >= vq->cfg.size || vq->slots[id].ndescs == 0) {
        /* Unknown size: skip just this entry, free nothing. */
        vblk_ring_next(vq->cfg.size, &vq->last_used, &vq->used_wrap);
        update_used_event(vq);
        return -EPROTO;
    }
    s = &vq->slots[id];
    /* virtio 1.2 2.8.6: skip the rest of the buffer's descriptors. */
    vblk_ring_advance(vq->cfg.size, &vq->last_used, &vq->used_wrap, s->ndescs);
    update_used_event(vq);

    vq->next_free[id] = vq->free_head;
    vq->free_head = id;
    vq->num_free = (uint16_t)(vq->num_free + s->ndescs);
    s->ndescs = 0;
    *token = s->token;
    s->token = NULL;
    if (l > s->in_len)
        return -EPROTO;
    *len = l;
    return 1;
}

bool drv_packed_enable_cb(struct vblk_drv_vq *vq, bool enable)
{
    struct vblk_packed_event *ev = driver_event(vq);

    if (!enable) {
        drv_store16(&ev->flags, VBLK_EVENT_F_DISABLE);
        return drv_packed_has_used(vq);
    }
    if (vq->cfg.event_idx) {
        drv_store16(&ev->off_wrap, vblk_off_wrap(vq->last_used, vq->used_wrap));
        /* Release: a device that sees DESC also sees the offset. */
        __atomic_store_n(&ev->flags, (uint16_t)VBLK_EVENT_F_DESC, __ATOMIC_RELEASE);
    } else {
        drv_store16(&ev->flags, VBLK_EVENT_F_ENABLE);
    }
    /* virtio 1.2 2.8.22: re-check the ring after re-enabling. */
    drv_mb();
    return drv_packed_has_used(vq);
}

bool drv_packed_has_used(const struct vblk_drv_vq *vq)
{
    uint16_t flags = __atomic_load_n(&desc_ring(vq)[vq->last_used].flags, __ATOMIC_ACQUIRE);

    return vblk_packed_is_used(flags, vq->used_wrap);
}
