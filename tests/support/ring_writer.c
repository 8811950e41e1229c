/* SPDX-License-Identifier: MIT */
/* The raw ring writer (ring_writer.h). */
#include "ring_writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void ring_common(struct atk_ring *r, uint16_t size, bool packed)
{
    if (size == 0 || size > ATK_RING_MAX) {
        fprintf(stderr, "ring_writer: queue size %u outside 1..%u\n", size, ATK_RING_MAX);
        abort();
    }
    memset(r, 0, sizeof(*r));
    r->size = size;
    r->packed = packed;
    r->wrap = r->uwrap = r->dev_wrap = 1;
}

void atk_ring_init(struct atk_ring *r, void *host, uint64_t gpa, uint16_t size, bool packed)
{
    ring_common(r, size, packed);
    r->host = host;
    r->gpa = gpa;
    r->desc = host;
    r->driver = r->host + ATK_DRIVER_OFF;
    r->device = r->host + ATK_DEVICE_OFF;
    r->addrs = (struct vblk_vq_addrs){gpa, gpa + ATK_DRIVER_OFF, gpa + ATK_DEVICE_OFF};
    memset(host, 0, ATK_RING_BYTES);
}

void atk_ring_init_areas(struct atk_ring *r, uint16_t size, bool packed, void *desc, void *driver,
                         void *device, const struct vblk_vq_addrs *addrs)
{
    ring_common(r, size, packed);
    r->desc = desc;
    r->driver = driver;
    r->device = device;
    if (addrs) {
        r->addrs = *addrs;
        r->gpa = addrs->desc;
    }
}

struct vblk_vq_addrs atk_ring_addrs(const struct atk_ring *r)
{
    return r->addrs;
}

void atk_split_set(struct atk_ring *r, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                   uint16_t next)
{
    atk_split_desc(r)[i] = (struct vblk_split_desc){addr, len, flags, next};
}

void atk_split_publish(struct atk_ring *r, uint16_t head)
{
    struct vblk_split_avail *a = atk_split_avail(r);
    a->ring[r->avail % r->size] = head;
    r->avail++;
    __atomic_store_n(&a->idx, r->avail, __ATOMIC_RELEASE);
}

void atk_split_avail_add(struct atk_ring *r, uint16_t n)
{
    struct vblk_split_avail *a = atk_split_avail(r);
    r->avail = (uint16_t)(__atomic_load_n(&a->idx, __ATOMIC_RELAXED) + n);
    __atomic_store_n(&a->idx, r->avail, __ATOMIC_RELEASE);
}

void atk_packed_set(struct atk_ring *r, uint16_t i, uint64_t addr, uint32_t len, uint16_t id,
                    uint16_t flags)
{
    struct vblk_packed_desc *d = &atk_packed_desc(r)[i];
    d->addr = addr;
    d->len = len;
    d->id = id;
    __atomic_store_n(&d->flags, flags, __ATOMIC_RELEASE);
}

void atk_packed_mark_avail(struct atk_ring *r, uint16_t pos, uint8_t wrap, unsigned n)
{
    struct vblk_packed_desc *d = atk_packed_desc(r);
    for (unsigned i = 0; i < n && i < r->size; i++) {
        uint16_t f = d[pos].flags & (uint16_t) ~(VBLK_DESC_F_AVAIL | VBLK_DESC_F_USED);
        __atomic_store_n(&d[pos].flags, (uint16_t)(f | vblk_packed_avail_bits(wrap)),
                         __ATOMIC_RELEASE);
        vblk_ring_next(r->size, &pos, &wrap);
    }
}

uint16_t atk_post(struct atk_ring *r, const struct atk_seg *s, unsigned n)
{
    if (!r->packed) {
        uint16_t head = r->next;
        for (unsigned i = 0; i < n; i++) {
            uint16_t d = r->next;
            r->next = (uint16_t)((r->next + 1) % r->size);
            uint16_t more = i + 1 < n ? VBLK_DESC_F_NEXT : 0;
            atk_split_set(r, d, s[i].addr, s[i].len, (uint16_t)(s[i].flags | more), r->next);
        }
        atk_split_publish(r, head);
        return head;
    }
    uint16_t id = r->id;
    r->id = (uint16_t)((r->id + 1) % r->size);
    r->nd[id] = (uint16_t)n;
    uint16_t head = r->next;
    uint16_t head_flags = 0;
    for (unsigned i = 0; i < n; i++) {
        uint16_t f = (uint16_t)(s[i].flags | vblk_packed_avail_bits(r->wrap) |
                                (i + 1 < n ? VBLK_DESC_F_NEXT : 0));
        struct vblk_packed_desc *d = &atk_packed_desc(r)[r->next];
        d->addr = s[i].addr;
        d->len = s[i].len;
        d->id = id;
        if (i == 0)
            head_flags = f;
        else
            __atomic_store_n(&d->flags, f, __ATOMIC_RELAXED);
        vblk_ring_next(r->size, &r->next, &r->wrap);
    }
    /* virtio 1.2 2.8.6: the head is made available last. */
    __atomic_store_n(&atk_packed_desc(r)[head].flags, head_flags, __ATOMIC_RELEASE);
    return id;
}

void atk_post_indirect(struct atk_ring *r, uint64_t table, uint32_t len, uint16_t extra)
{
    uint16_t flags = (uint16_t)(VBLK_DESC_F_INDIRECT | extra);
    if (!r->packed) {
        uint16_t d = r->next;
        r->next = (uint16_t)((r->next + 1) % r->size);
        atk_split_set(r, d, table, len, flags, r->next);
        atk_split_publish(r, d);
        return;
    }
    uint16_t id = r->id;
    r->id = (uint16_t)((r->id + 1) % r->size);
    r->nd[id] = 1;
    atk_packed_set(r, r->next, table, len, id, (uint16_t)(flags | vblk_packed_avail_bits(r->wrap)));
    vblk_ring_next(r->size, &r->next, &r->wrap);
}

void atk_table_write(bool packed, void *table, const struct atk_seg *s, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (packed) {
            struct vblk_packed_desc *t = table;
            t[i] = (struct vblk_packed_desc){s[i].addr, s[i].len, 0, s[i].flags};
        } else {
            struct vblk_split_desc *t = table;
            uint16_t more = i + 1 < n ? VBLK_DESC_F_NEXT : 0;
            t[i] = (struct vblk_split_desc){s[i].addr, s[i].len, (uint16_t)(s[i].flags | more),
                                            (uint16_t)(i + 1)};
        }
    }
}

int atk_used(struct atk_ring *r, uint16_t *id, uint32_t *len)
{
    if (!r->packed) {
        struct vblk_split_used *u = atk_split_used(r);
        if (__atomic_load_n(&u->idx, __ATOMIC_ACQUIRE) == r->used)
            return 0;
        struct vblk_split_used_elem *e = &u->ring[r->used % r->size];
        if (id)
            *id = (uint16_t)e->id;
        if (len)
            *len = e->len;
        r->used++;
        return 1;
    }
    struct vblk_packed_desc *d = &atk_packed_desc(r)[r->used];
    uint16_t f = __atomic_load_n(&d->flags, __ATOMIC_ACQUIRE);
    if (!vblk_packed_is_used(f, r->uwrap))
        return 0;
    uint16_t bid = d->id;
    if (id)
        *id = bid;
    if (len)
        *len = (f & VBLK_DESC_F_WRITE) ? d->len : 0;
    /* virtio 1.2 2.8.6: the entry stands for the whole chain. */
    uint16_t skip = bid < r->size && r->nd[bid] ? r->nd[bid] : 1;
    vblk_ring_advance(r->size, &r->used, &r->uwrap, skip);
    return 1;
}

void atk_used_push(struct atk_ring *r, uint32_t id, uint32_t len, uint16_t skip, bool write)
{
    if (!r->packed) {
        struct vblk_split_used *u = atk_split_used(r);
        u->ring[r->dev_used % r->size] = (struct vblk_split_used_elem){id, len};
        __atomic_store_n(&u->idx, ++r->dev_used, __ATOMIC_RELEASE);
        return;
    }
    struct vblk_packed_desc *x = &atk_packed_desc(r)[r->dev_used];
    uint16_t f = (uint16_t)(vblk_packed_used_bits(r->dev_wrap) | (write ? VBLK_DESC_F_WRITE : 0));
    x->id = (uint16_t)id;
    x->len = len;
    __atomic_store_n(&x->flags, f, __ATOMIC_RELEASE);
    vblk_ring_advance(r->size, &r->dev_used, &r->dev_wrap, skip);
}
