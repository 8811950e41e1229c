/* SPDX-License-Identifier: MIT */
/* Packed virtqueue, device side (virtio 1.2 section 2.8). */
#include "ring_walk.h"

int vq_packed_init(struct vblk_vq *vq)
{
    const struct vblk_vq_addrs *a = &vq->addrs;
    /* virtio 1.2 2.8.10.1: ring 16-aligned, event structures 4-aligned. */
    if ((a->desc & 15) || (a->driver & 3) || (a->device & 3))
        return -EINVAL;
    if (vq->last_avail >= vq->size || vq->used_idx >= vq->size)
        return -EINVAL;
    vq->r.pk.desc = vblk_mem_ptr(vq->mem, a->desc, 16u * vq->size);
    vq->r.pk.driver = vblk_mem_ptr(vq->mem, a->driver, 4);
    vq->r.pk.device = vblk_mem_ptr(vq->mem, a->device, 4);
    if (!vq->r.pk.desc || !vq->r.pk.driver || !vq->r.pk.device)
        return -EFAULT;
    /* Aligned driver addresses can still map to misaligned host addresses
     * (see vq_split_init()); the flags and event words are atomics. */
    if (((uintptr_t)vq->r.pk.desc & 15) || ((uintptr_t)vq->r.pk.driver & 3) ||
        ((uintptr_t)vq->r.pk.device & 3))
        return -EINVAL;
    vq->published = 0;
    vq->signalled = 0;
    return 0;
}

bool vq_packed_has_avail(struct vblk_vq *vq)
{
    return vblk_packed_is_avail(RING_LOAD(&vq->r.pk.desc[vq->last_avail].flags), vq->avail_wrap);
}

/* 2.8.7: an indirect table is a plain array; only WRITE is meaningful in
 * its entries, everything else is reserved and ignored. */
static inline __attribute__((always_inline)) int walk_indirect(struct vblk_vq *vq, struct walk *w,
                                                               const struct vblk_packed_desc *d)
{
    if (!vq->indirect || (d->flags & VBLK_DESC_F_NEXT) || d->len == 0 || (d->len & 15))
        return vq_break(vq);
    uint32_t n = d->len / 16;
    if (n > VBLK_QUEUE_SIZE_MAX)
        return vq_break(vq);
    const struct vblk_packed_desc *table = vblk_mem_ptr(vq->mem, d->addr, d->len);
    if (!table)
        return vq_break(vq);
    for (uint32_t i = 0; i < n; i++) {
        struct vblk_packed_desc e;
        desc_copy(&e, &table[i]);
        if (walk_add(vq, w, e.addr, e.len, (e.flags & VBLK_DESC_F_WRITE) != 0) < 0)
            return vq_break(vq);
    }
    return 0;
}

int vq_packed_pop(struct vblk_vq *vq, struct vblk_chain *c)
{
    /* 2.8.6: the driver publishes the head's flags last; acquire, so
     * everything in the chain is read after observing them. */
    uint16_t flags = __atomic_load_n(&vq->r.pk.desc[vq->last_avail].flags, __ATOMIC_ACQUIRE);
    if (!vblk_packed_is_avail(flags, vq->avail_wrap))
        return 0;
    return vq_packed_walk(vq, vq->last_avail, vq->avail_wrap, c, &vq->last_avail, &vq->avail_wrap);
}

/* Walks one descriptor list, either in the ring at @pos (checking that each
 * descriptor is available with the wrap counter of its lap) or, with
 * @saved, from a copy of the list the transport kept (inflight tracking). */
static inline __attribute__((always_inline)) int
walk_list(struct vblk_vq *vq, const struct vblk_packed_desc *saved, uint16_t nsaved, uint16_t pos,
          uint8_t wrap, struct vblk_chain *c, uint16_t *end_pos, uint8_t *end_wrap)
{
    const struct vblk_packed_desc *ring = vq->r.pk.desc;
    if (pos >= vq->size)
        return vq_break(vq);
    wrap = wrap ? 1 : 0;
    struct walk w;
    walk_begin(&w, vq->mem, c);
    uint32_t count = 0;
    uint16_t id;
    for (;;) {
        struct vblk_packed_desc d;
        if (saved) {
            if (count >= nsaved)
                return vq_break(vq);
            desc_copy(&d, &saved[count]);
        } else {
            desc_copy(&d, &ring[pos]);
            /* Every descriptor of the list must be available with the wrap
             * counter of its own lap (2.8.6). */
            if (!vblk_packed_is_avail(d.flags, wrap))
                return vq_break(vq);
        }
        /* A list fits in the ring. */
        if (++count > vq->size)
            return vq_break(vq);
        vblk_ring_next(vq->size, &pos, &wrap);
        if (d.flags & VBLK_DESC_F_INDIRECT) {
            /* An indirect descriptor stands alone in its list. */
            if (count != 1 || walk_indirect(vq, &w, &d) < 0)
                return vq_break(vq);
            id = d.id;
            break;
        }
        if (walk_add(vq, &w, d.addr, d.len, (d.flags & VBLK_DESC_F_WRITE) != 0) < 0)
            return vq_break(vq);
        if (!(d.flags & VBLK_DESC_F_NEXT)) {
            /* 2.8.6: the buffer ID is in the last descriptor. */
            id = d.id;
            break;
        }
    }
    if (saved && count != nsaved)
        return vq_break(vq);
    walk_end(&w, c);
    c->id = id;
    c->ndescs = (uint16_t)count;
    *end_pos = pos;
    *end_wrap = wrap;
    return 1;
}

int vq_packed_walk(struct vblk_vq *vq, uint16_t pos, uint8_t wrap, struct vblk_chain *c,
                   uint16_t *end_pos, uint8_t *end_wrap)
{
    return walk_list(vq, NULL, 0, pos, wrap, c, end_pos, end_wrap);
}

int vq_packed_walk_saved(struct vblk_vq *vq, const struct vblk_packed_desc *descs, uint16_t n,
                         struct vblk_chain *c)
{
    uint16_t end_pos;
    uint8_t end_wrap;
    return walk_list(vq, descs, n, 0, 1, c, &end_pos, &end_wrap);
}

int vq_packed_copy_descs(const struct vblk_vq *vq, uint16_t pos, uint16_t n,
                         struct vblk_packed_desc *out)
{
    if (pos >= vq->size || n == 0 || n > vq->size)
        return -EINVAL;
    for (uint16_t i = 0; i < n; i++) {
        desc_copy(&out[i], &vq->r.pk.desc[pos]);
        if (++pos == vq->size)
            pos = 0;
    }
    return 0;
}

void vq_packed_push(struct vblk_vq *vq, uint16_t id, uint16_t ndescs, uint32_t len)
{
    packed_push(vq, id, ndescs, len);
}

bool vq_packed_publish(struct vblk_vq *vq)
{
    uint16_t old = vq->signalled, new_idx = vq->published;
    if (old == new_idx)
        return false;
    vq->signalled = new_idx;
    /* After a (re)start the driver may be waiting for an event at a
     * position already passed, whose notification was lost with the
     * previous device instance: the first publish notifies unless the
     * driver disabled notifications. */
    bool first = !vq->signalled_valid;
    vq->signalled_valid = 1;
    /* 2.8.10: read the driver's suppression structure only after the used
     * flags are visible (store -> load). */
    atomic_thread_fence(memory_order_seq_cst);
    uint32_t ev = __atomic_load_n((const uint32_t *)vq->r.pk.driver, __ATOMIC_RELAXED);
    uint16_t off_wrap = (uint16_t)ev, flags = (uint16_t)((ev >> 16) & 3);
    if (flags == VBLK_EVENT_F_DISABLE)
        return false;
    if (flags != VBLK_EVENT_F_DESC || !vq->event_idx)
        return true;
    if (first)
        return true;
    /* Convert (offset, wrap) into the same free-running count as
     * published: positions in an earlier lap sit one ring size back. */
    uint16_t event = (uint16_t)(new_idx - vq->used_idx + vblk_off_wrap_pos(off_wrap));
    if (vblk_off_wrap_wrap(off_wrap) != vq->used_wrap)
        event = (uint16_t)(event - vq->size);
    return vblk_need_event(event, new_idx, old);
}

void vq_packed_set_notify(struct vblk_vq *vq, bool enable)
{
    uint32_t ev;
    if (!enable)
        ev = (uint32_t)VBLK_EVENT_F_DISABLE << 16;
    else if (vq->event_idx)
        ev = ((uint32_t)VBLK_EVENT_F_DESC << 16) | vblk_off_wrap(vq->last_avail, vq->avail_wrap);
    else
        ev = (uint32_t)VBLK_EVENT_F_ENABLE << 16;
    __atomic_store_n((uint32_t *)vq->r.pk.device, ev, __ATOMIC_RELAXED);
    if (vq->mem->log)
        vblk_mem_log_write(vq->mem, vq->addrs.device, 4);
    if (enable) {
        /* Make the request visible before re-reading the ring. */
        atomic_thread_fence(memory_order_seq_cst);
    }
}

int vblk_vq_packed_scan_used(struct vblk_mem *mem, uint64_t desc_gpa, uint16_t size, uint16_t *pos,
                             uint8_t *wrap, vblk_vq_used_cb claim, void *opaque)
{
    if (size == 0 || *pos >= size || *wrap > 2)
        return -EINVAL;
    /* virtio 1.2 2.8.5: 16-byte descriptors, 16-byte aligned. */
    const struct vblk_packed_desc *ring = vblk_mem_ptr(mem, desc_gpa, 16ull * size);
    if (!ring || ((uintptr_t)ring & 15))
        return -EFAULT;
    int n = 0;
    for (uint16_t i = 0; i < size; i++) {
        const struct vblk_packed_desc *d = &ring[*pos];
        uint16_t flags = __atomic_load_n(&d->flags, __ATOMIC_ACQUIRE);
        uint16_t id = RING_LOAD(&d->id);
        if (*wrap == 2)
            *wrap = (flags & VBLK_DESC_F_USED) ? 1 : 0;
        if (!vblk_packed_is_used(flags, *wrap))
            break;
        uint16_t len = claim(opaque, id);
        if (len == 0 || len > size)
            break;
        vblk_ring_advance(size, pos, wrap, len);
        n++;
    }
    if (*wrap == 2)
        *wrap = 0;
    return n;
}
