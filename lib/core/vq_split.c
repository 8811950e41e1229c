/* SPDX-License-Identifier: MIT */
/* Split virtqueue, device side (virtio 1.2 section 2.7). */
#include "ring_walk.h"

#define USED_EVENT(vq)  (&(vq)->r.split.avail->ring[(vq)->size])
#define AVAIL_EVENT(vq) ((uint16_t *)&(vq)->r.split.used->ring[(vq)->size])

int vq_split_init(struct vblk_vq *vq)
{
    const struct vblk_vq_addrs *a = &vq->addrs;
    /* virtio 1.2 2.7: descriptor table 16-aligned, avail 2, used 4. */
    if ((a->desc & 15) || (a->driver & 1) || (a->device & 3))
        return -EINVAL;
    vq->r.split.desc = vblk_mem_ptr(vq->mem, a->desc, VBLK_SPLIT_DESC_SIZE(vq->size));
    vq->r.split.avail = vblk_mem_ptr(vq->mem, a->driver, VBLK_SPLIT_AVAIL_SIZE(vq->size));
    vq->r.split.used = vblk_mem_ptr(vq->mem, a->device, VBLK_SPLIT_USED_SIZE(vq->size));
    if (!vq->r.split.desc || !vq->r.split.avail || !vq->r.split.used)
        return -EFAULT;
    /* The map keeps driver-address alignment only if each region's host
     * address agrees with its driver address modulo 16, which a hostile
     * front-end need not honour (vhost-user mmap_offset vs. guest address).
     * Ring fields are accessed with atomics that need natural alignment. */
    if (((uintptr_t)vq->r.split.desc & 15) || ((uintptr_t)vq->r.split.avail & 1) ||
        ((uintptr_t)vq->r.split.used & 3))
        return -EINVAL;
    vq->published = vq->used_idx;
    vq->signalled = vq->used_idx;
    vq->avail_cache = vq->last_avail;
    return 0;
}

/* Refreshes the cached avail index. Returns the number of new heads, or -EIO
 * if the driver claims more than a full ring of them. */
static int refresh_avail(struct vblk_vq *vq)
{
    /* Acquire: the ring entries and descriptors the driver wrote before
     * this idx (virtio 1.2 2.7.13.3.1) are read after it. */
    uint16_t idx = __atomic_load_n(&vq->r.split.avail->idx, __ATOMIC_ACQUIRE);
    uint16_t pending = (uint16_t)(idx - vq->last_avail);
    /* virtio 1.2 2.7.6: at most size heads can be outstanding. */
    if (pending > vq->size)
        return vq_break(vq);
    vq->avail_cache = idx;
    return pending;
}

bool vq_split_has_avail(struct vblk_vq *vq)
{
    if (vq->avail_cache != vq->last_avail)
        return true;
    return refresh_avail(vq) > 0;
}

/* Walks an indirect table (virtio 1.2 2.7.5.3). */
static inline __attribute__((always_inline)) int walk_indirect(struct vblk_vq *vq, struct walk *w,
                                                               const struct vblk_split_desc *d)
{
    /* 2.7.5.3.1: INDIRECT needs the feature, excludes NEXT, and the table
     * holds whole descriptors. */
    if (!vq->indirect || (d->flags & VBLK_DESC_F_NEXT) || d->len == 0 || (d->len & 15))
        return vq_break(vq);
    uint32_t n = d->len / 16;
    if (n > VBLK_QUEUE_SIZE_MAX)
        return vq_break(vq);
    const struct vblk_split_desc *table = vblk_mem_ptr(vq->mem, d->addr, d->len);
    if (!table)
        return vq_break(vq);

    uint32_t i = 0, count = 0;
    for (;;) {
        struct vblk_split_desc e;
        desc_copy(&e, &table[i]);
        /* 2.7.5.3.1: no nested tables. The count bounds loops. */
        if ((e.flags & VBLK_DESC_F_INDIRECT) || ++count > n)
            return vq_break(vq);
        if (walk_add(vq, w, e.addr, e.len, (e.flags & VBLK_DESC_F_WRITE) != 0) < 0)
            return vq_break(vq);
        if (!(e.flags & VBLK_DESC_F_NEXT))
            return 0;
        if (e.next >= n)
            return vq_break(vq);
        i = e.next;
    }
}

int vq_split_pop(struct vblk_vq *vq, struct vblk_chain *c)
{
    if (vq->avail_cache == vq->last_avail) {
        int n = refresh_avail(vq);
        if (n <= 0)
            return n;
    }
    /* virtio 1.2 2.7.13.3.1 (driver side: ring entry before idx): the
     * entry is read after the acquire load of the idx that covers it. */
    uint16_t head = RING_LOAD(&vq->r.split.avail->ring[vq->last_avail & (vq->size - 1)]);
    vq->last_avail++;
    return vq_split_walk(vq, head, c);
}

int vq_split_walk(struct vblk_vq *vq, uint16_t head, struct vblk_chain *c)
{
    if (head >= vq->size)
        return vq_break(vq);
    struct walk w;
    walk_begin(&w, vq->mem, c);
    const struct vblk_split_desc *table = vq->r.split.desc;
    uint32_t i = head, count = 0;
    for (;;) {
        struct vblk_split_desc d;
        desc_copy(&d, &table[i]);
        /* A chain can't be longer than the ring: this also stops loops. */
        if (++count > vq->size)
            return vq_break(vq);
        if (d.flags & VBLK_DESC_F_INDIRECT) {
            if (walk_indirect(vq, &w, &d) < 0)
                return -EIO;
            break;
        }
        if (walk_add(vq, &w, d.addr, d.len, (d.flags & VBLK_DESC_F_WRITE) != 0) < 0)
            return vq_break(vq);
        if (!(d.flags & VBLK_DESC_F_NEXT))
            break;
        if (d.next >= vq->size)
            return vq_break(vq);
        i = d.next;
    }
    walk_end(&w, c);
    c->id = head;
    c->ndescs = 1;
    return 1;
}

void vq_split_push(struct vblk_vq *vq, uint16_t id, uint32_t len)
{
    split_push(vq, id, len);
}

bool vq_split_publish(struct vblk_vq *vq)
{
    uint16_t old = vq->published, new_idx = vq->used_idx;
    if (old == new_idx)
        return false;
    /* virtio 1.2 2.7.8.2 / 2.7.14: used elements are visible before idx. */
    __atomic_store_n(&vq->r.split.used->idx, new_idx, __ATOMIC_RELEASE);
    if (vq->mem->log)
        vblk_mem_log_write(vq->mem, vq->addrs.device + 2, 2);
    vq->published = new_idx;
    /* virtio 1.2 2.7.7: the suppression fields must be read after the idx
     * store is visible (store -> load ordering), or a driver that just
     * re-enabled interrupts could be missed. */
    atomic_thread_fence(memory_order_seq_cst);
    /* The first publish after a (re)start cannot know whether whoever wrote
     * the earlier used entries notified the driver (a back-end that crashed
     * between the two did not), so it ignores used_event once. */
    bool first = !vq->signalled_valid;
    vq->signalled_valid = 1;
    if (vq->event_idx) {
        uint16_t event = RING_LOAD(USED_EVENT(vq));
        vq->signalled = new_idx;
        return first || vblk_need_event(event, new_idx, old);
    }
    return !(RING_LOAD(&vq->r.split.avail->flags) & VBLK_AVAIL_F_NO_INTERRUPT);
}

void vq_split_set_notify(struct vblk_vq *vq, bool enable)
{
    if (vq->event_idx) {
        /* 2.7.10: ask for a kick once the driver moves past last_avail.
         * Disabling simply stops moving the event forward. */
        if (enable)
            RING_STORE(AVAIL_EVENT(vq), vq->last_avail);
    } else {
        RING_STORE(&vq->r.split.used->flags, (uint16_t)(enable ? 0 : VBLK_USED_F_NO_NOTIFY));
    }
    if (vq->mem->log) {
        uint64_t off = vq->event_idx ? 4 + 8u * vq->size : 0;
        vblk_mem_log_write(vq->mem, vq->addrs.device + off, 2);
    }
    if (enable) {
        /* The flag/event store must be visible before the caller re-reads
         * avail->idx (store -> load), or a kick could be lost. */
        atomic_thread_fence(memory_order_seq_cst);
    }
}
