/* SPDX-License-Identifier: MIT */
/* Shared by the split and packed ring implementations. Not installed. */
#ifndef VBLK_VQ_INTERNAL_H
#define VBLK_VQ_INTERNAL_H

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "virtioblk/vq.h"

/* Loads and stores of ring fields shared with the driver. Relaxed atomics
 * keep the compiler from tearing, merging or re-reading them; ordering is
 * added explicitly where a spec rule needs it. */
#define RING_LOAD(p)     __atomic_load_n((p), __ATOMIC_RELAXED)
#define RING_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

/* Copies one descriptor out of shared memory exactly once: each field is
 * loaded a single time into the copy, and the compiler may not replace a
 * later use of the copy by a fresh load from driver memory (which would
 * reopen a time-of-check/time-of-use hole). */
static inline void desc_copy(void *dst, const void *src)
{
    const uint8_t *s = src;
    uint8_t *d = dst;
    if ((uintptr_t)src & 7) {
        /* Indirect tables need not be aligned: copy bytes, then fence so
         * the copy is never re-read from driver memory. */
        memcpy(dst, src, 16);
        atomic_signal_fence(memory_order_seq_cst);
        return;
    }
    uint64_t addr = RING_LOAD((const uint64_t *)s);
    uint32_t len = RING_LOAD((const uint32_t *)(s + 8));
    uint32_t tail = RING_LOAD((const uint32_t *)(s + 12));
    memcpy(d, &addr, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &tail, 4);
}

/* virtio 1.2 2.7.10.1: true if @event lies in the window (old, new]. */
static inline int need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
    return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

static inline int vq_break(struct vblk_vq *vq)
{
    if (!vq->is_broken) {
        vq->is_broken = 1;
        vq->stats.broken++;
    }
    return -EIO;
}

/* Adds one driver buffer to the chain being built. Faults are recorded, not
 * fatal: the chain is still well formed and must be completed. */
static inline void chain_add(struct vblk_vq *vq, struct vblk_chain *c, uint64_t addr,
                             uint32_t len, int writable)
{
    unsigned used = (unsigned)c->nout + c->nin;
    const struct vblk_mem *mem = vq->mem;
    const struct vblk_mem_region *r = &mem->regions[mem->last];
    uint64_t off = addr - r->addr;
    int n;
    /* Fast path: the whole buffer lies in the region that matched last. */
    if (mem->last < mem->nregions && off < r->size && len <= r->size - off && len &&
        used < c->cap) {
        c->iov[used].base = r->host + off;
        c->iov[used].len = len;
        n = 1;
    } else {
        n = vblk_mem_map(vq->mem, addr, len, &c->iov[used], (unsigned)c->cap - used);
    }
    c->ndata++;
    if (len > c->max_desc_len)
        c->max_desc_len = len;
    if (n < 0) {
        c->fault = 1;
        c->last_mapped = 0;
        return;
    }
    if (writable) {
        c->nin = (uint16_t)(c->nin + n);
        c->in_len = (c->in_len + len < c->in_len) ? UINT32_MAX : c->in_len + len;
        c->last_mapped = len != 0;
    } else {
        c->nout = (uint16_t)(c->nout + n);
        c->out_len = (c->out_len + len < c->out_len) ? UINT32_MAX : c->out_len + len;
        c->last_mapped = 0;
    }
}

static inline void chain_reset(struct vblk_chain *c)
{
    c->nout = 0;
    c->nin = 0;
    c->out_len = 0;
    c->in_len = 0;
    c->ndata = 0;
    c->fault = 0;
    c->last_mapped = 0;
    c->max_desc_len = 0;
    c->ndescs = 0;
}

int vq_split_init(struct vblk_vq *vq);
int vq_split_pop(struct vblk_vq *vq, struct vblk_chain *c);
int vq_split_walk(struct vblk_vq *vq, uint16_t head, struct vblk_chain *c);
void vq_split_push(struct vblk_vq *vq, uint16_t id, uint32_t len);
bool vq_split_publish(struct vblk_vq *vq);
void vq_split_set_notify(struct vblk_vq *vq, bool enable);
bool vq_split_has_avail(struct vblk_vq *vq);

int vq_packed_init(struct vblk_vq *vq);
int vq_packed_pop(struct vblk_vq *vq, struct vblk_chain *c);
int vq_packed_walk(struct vblk_vq *vq, uint16_t pos, uint8_t wrap, struct vblk_chain *c,
                   uint16_t *end_pos, uint8_t *end_wrap);
void vq_packed_push(struct vblk_vq *vq, uint16_t id, uint16_t ndescs, uint32_t len);
bool vq_packed_publish(struct vblk_vq *vq);
void vq_packed_set_notify(struct vblk_vq *vq, bool enable);
bool vq_packed_has_avail(struct vblk_vq *vq);

#endif
