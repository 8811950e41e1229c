/* SPDX-License-Identifier: MIT */
/* Driver side of a split virtqueue (virtio 1.2 2.7). */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drv_internal.h"

static struct vblk_split_desc *desc_table(const struct vblk_drv_vq *vq)
{
    return (struct vblk_split_desc *)(void *)vq->ring;
}

static struct vblk_split_avail *avail_ring(const struct vblk_drv_vq *vq)
{
    return (struct vblk_split_avail *)(void *)vq->driver_area;
}

static struct vblk_split_used *used_ring(const struct vblk_drv_vq *vq)
{
    return (struct vblk_split_used *)(void *)vq->device_area;
}

static uint16_t *used_event(const struct vblk_drv_vq *vq)
{
    return &avail_ring(vq)->ring[vq->cfg.size];
}

static uint16_t *avail_event(const struct vblk_drv_vq *vq)
{
    return (uint16_t *)(void *)&used_ring(vq)->ring[vq->cfg.size];
}

/*
 * The free list lives in next_free (private), not in the descriptors' next
 * fields: the device can write the descriptor table, so the chain links
 * there are only ever written, never read back.
 */
void drv_split_add(struct vblk_drv_vq *vq, const struct drv_buf *b, void *token)
{
    struct vblk_split_desc *desc = desc_table(vq);
    struct vblk_drv_slot *s;
    struct drv_iter it;
    uint16_t head = vq->free_head, cur = head, last = head, ndescs;
    bool write;

    drv_iter_init(&it, b);
    if (b->indirect) {
        struct vblk_split_desc *t = drv_indirect_table(vq, head);

        for (unsigned k = 0; k < b->nelem; k++) {
            const struct vblk_iov *v = drv_iter_next(&it, &write);
            bool more = k + 1 < b->nelem;

            t[k].addr = drv_addr(vq, v->base);
            t[k].len = (uint32_t)v->len;
            t[k].flags =
                (uint16_t)((write ? VBLK_DESC_F_WRITE : 0) | (more ? VBLK_DESC_F_NEXT : 0));
            t[k].next = more ? (uint16_t)(k + 1) : 0;
        }
        desc[head].addr = drv_addr(vq, t);
        desc[head].len = b->nelem * (uint32_t)sizeof(*t);
        /* virtio 1.2 2.7.5.3.1: INDIRECT never together with NEXT. */
        desc[head].flags = VBLK_DESC_F_INDIRECT;
        desc[head].next = 0;
        cur = vq->next_free[head];
        ndescs = 1;
    } else {
        for (unsigned k = 0; k < b->nelem; k++) {
            const struct vblk_iov *v = drv_iter_next(&it, &write);
            bool more = k + 1 < b->nelem;
            uint16_t nxt = vq->next_free[cur];

            desc[cur].addr = drv_addr(vq, v->base);
            desc[cur].len = (uint32_t)v->len;
            desc[cur].flags =
                (uint16_t)((write ? VBLK_DESC_F_WRITE : 0) | (more ? VBLK_DESC_F_NEXT : 0));
            desc[cur].next = more ? nxt : 0;
            last = cur;
            cur = nxt;
        }
        ndescs = (uint16_t)b->nelem;
    }
    vq->free_head = cur;
    vq->num_free = (uint16_t)(vq->num_free - ndescs);

    s = &vq->slots[head];
    s->token = token;
    s->ndescs = ndescs;
    s->last = last;
    s->in_len = b->in_len;

    /* Not visible until kick_prepare() moves avail->idx past it. */
    avail_ring(vq)->ring[vq->avail_idx & (vq->cfg.size - 1)] = head;
    vq->avail_idx++;
}

bool drv_split_kick_prepare(struct vblk_drv_vq *vq)
{
    uint16_t old_idx = vq->published, new_idx = vq->avail_idx;

    if (old_idx == new_idx)
        return false;
    /*
     * virtio 1.2 2.7.13.3.1: descriptors and ring entries must be visible
     * before idx; the release store orders all of them.
     */
    __atomic_store_n(&avail_ring(vq)->idx, new_idx, __ATOMIC_RELEASE);
    vq->published = new_idx;
    /*
     * virtio 1.2 2.7.13.4.1: full barrier between publishing idx and
     * reading used->flags / avail_event, or a device that goes to sleep
     * right now would be missed.
     */
    drv_mb();
    if (vq->cfg.event_idx)
        return vblk_need_event(drv_load16(avail_event(vq)), new_idx, old_idx);
    return (drv_load16(&used_ring(vq)->flags) & VBLK_USED_F_NO_NOTIFY) == 0;
}

int drv_split_get_used(struct vblk_drv_vq *vq, void **token, uint32_t *len)
{
    struct vblk_split_used *used = used_ring(vq);
    struct vblk_split_used_elem *e;
    struct vblk_drv_slot *s;
    uint32_t id, l;

    /* virtio 1.2 2.7.8.2: the device writes the entry before used->idx. */
    if (__atomic_load_n(&used->idx, __ATOMIC_ACQUIRE) == vq->last_used)
        return 0;
    e = &used->ring[vq->last_used & (vq->cfg.size - 1)];
    id = drv_load32(&e->id);
    l = drv_load32(&e->len);
    vq->last_used++;
    if (vq->cfg.event_idx && !vq->cb_disabled) {
        drv_store16(used_event(vq), vq->last_used);
        /*
         * virtio 1.2 2.7.7 / 2.7.14: used_event must be visible before we
         * next read used->idx, or the device may skip the notification for
         * an entry we are about to miss.
         */
        drv_mb();
    }

    /* Only the head of a chain in flight has ndescs != 0. */
    if (id >= vq->cfg.size || vq->slots[id].ndescs == 0)
        return -EPROTO;
    s = &vq->slots[id];
    vq->next_free[s->last] = vq->free_head;
    vq->free_head = (uint16_t)id;
    vq->num_free = (uint16_t)(vq->num_free + s->ndescs);
    s->ndescs = 0;
    *token = s->token;
    s->token = NULL;
    if (l > s->in_len)
        return -EPROTO;
    *len = l;
    return 1;
}

bool drv_split_enable_cb(struct vblk_drv_vq *vq, bool enable)
{
    if (vq->cfg.event_idx) {
        /*
         * virtio 1.2 2.7.7.1: flags stay 0 with EVENT_IDX. A used_event just
         * behind last_used is only reached again after 2^16 entries.
         */
        drv_store16(used_event(vq), enable ? vq->last_used : (uint16_t)(vq->last_used - 1));
    } else {
        drv_store16(&avail_ring(vq)->flags, (uint16_t)(enable ? 0 : VBLK_AVAIL_F_NO_INTERRUPT));
    }
    if (enable) {
        /* virtio 1.2 2.7.14: re-check the ring after re-enabling. */
        drv_mb();
    }
    return drv_split_has_used(vq);
}

bool drv_split_has_used(const struct vblk_drv_vq *vq)
{
    return __atomic_load_n(&used_ring(vq)->idx, __ATOMIC_ACQUIRE) != vq->last_used;
}
