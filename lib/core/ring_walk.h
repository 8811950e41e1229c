/* SPDX-License-Identifier: MIT */
/* Shared by the split and packed ring implementations. Not installed. */
#ifndef VBLK_RING_WALK_H
#define VBLK_RING_WALK_H

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "virtioblk/ring.h"
#include "virtioblk/advanced.h"
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
static inline __attribute__((always_inline)) void desc_copy(void *dst, const void *src)
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
#if __GCC_ATOMIC_LLONG_LOCK_FREE == 2
    uint64_t addr = RING_LOAD((const uint64_t *)s);
    memcpy(d, &addr, 8);
#else
    /* No 64-bit single-copy load on this CPU (ARMv7-M, for one), and no
     * libatomic in firmware: read the address once as two halves. A torn
     * address is only another value the driver could have written; it is
     * still read once and checked like any other. */
    uint32_t addr_lo = RING_LOAD((const uint32_t *)s);
    uint32_t addr_hi = RING_LOAD((const uint32_t *)(s + 4));
    memcpy(d, &addr_lo, 4);
    memcpy(d + 4, &addr_hi, 4);
#endif
    uint32_t len = RING_LOAD((const uint32_t *)(s + 8));
    uint32_t tail = RING_LOAD((const uint32_t *)(s + 12));
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &tail, 4);
}

static inline int vq_break(struct vblk_vq *vq)
{
    if (!vq->is_broken) {
        vq->is_broken = 1;
        vq->stats.broken++;
    }
    return -EIO;
}

/* A chain under construction. It lives in the walker's stack frame, so the
 * compiler keeps the counters in registers; the caller's vblk_chain is
 * written once at the end. The last-matched region is cached here so the
 * common case (every buffer in one region) costs a subtraction and two
 * compares per descriptor. */
struct walk {
    struct vblk_iov *iov;
    uint32_t cap;
    uint32_t n;     /* iovecs used */
    uint32_t nout;  /* iovecs before the first writable one */
    uint32_t ndata; /* descriptors seen */
    uint32_t max_len;
    uint64_t out_len;
    uint64_t in_len;
    uint8_t seen_write;
    uint8_t fault;
    uint8_t last_mapped;
    uint64_t rbase, rsize;
    uint8_t *rhost;
};

static inline void walk_cache(struct walk *w, const struct vblk_mem *mem)
{
    if (mem->last < mem->nregions) {
        const struct vblk_mem_region *r = &mem->regions[mem->last];
        w->rbase = r->addr;
        w->rsize = r->size;
        w->rhost = r->host;
    } else {
        w->rbase = 0;
        w->rsize = 0;
        w->rhost = NULL;
    }
}

static inline void walk_begin(struct walk *w, const struct vblk_mem *mem,
                              const struct vblk_chain *c)
{
    w->iov = c->iov;
    w->cap = c->cap;
    w->n = 0;
    w->nout = 0;
    w->ndata = 0;
    w->max_len = 0;
    w->out_len = 0;
    w->in_len = 0;
    w->seen_write = 0;
    w->fault = 0;
    w->last_mapped = 0;
    walk_cache(w, mem);
}

/* Adds one driver buffer. Returns -1 if a readable buffer follows a
 * writable one (virtio 1.2 2.7.4.2), which the caller treats as a broken
 * ring. Unmapped memory is recorded as a fault, not fatal: the chain is
 * still well formed and must be completed. */
static inline int walk_add(struct vblk_vq *vq, struct walk *w, uint64_t addr, uint32_t len,
                           int writable)
{
    if (writable) {
        if (!w->seen_write) {
            w->seen_write = 1;
            w->nout = w->n;
        }
        w->in_len += len;
    } else {
        if (w->seen_write)
            return -1;
        w->out_len += len;
    }
    w->ndata++;
    if (len > w->max_len)
        w->max_len = len;
    uint64_t off = addr - w->rbase;
    if (off < w->rsize && len && len <= w->rsize - off && w->n < w->cap) {
        w->iov[w->n].base = w->rhost + off;
        w->iov[w->n].len = len;
        w->n++;
        w->last_mapped = (uint8_t)writable;
        return 0;
    }
    int n = vblk_mem_map(vq->mem, addr, len, &w->iov[w->n], w->cap - w->n);
    if (n < 0) {
        w->fault = 1;
        w->last_mapped = 0;
        return 0;
    }
    w->n += (uint32_t)n;
    w->last_mapped = (uint8_t)(writable && len);
    walk_cache(w, vq->mem);
    return 0;
}

static inline uint32_t sat32(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static inline void walk_end(const struct walk *w, struct vblk_chain *c)
{
    uint32_t nout = w->seen_write ? w->nout : w->n;
    c->nout = (uint16_t)nout;
    c->nin = (uint16_t)(w->n - nout);
    c->out_len = sat32(w->out_len);
    c->in_len = sat32(w->in_len);
    c->ndata = w->ndata > UINT16_MAX ? UINT16_MAX : (uint16_t)w->ndata;
    c->max_desc_len = w->max_len;
    c->fault = w->fault;
    c->last_mapped = w->last_mapped;
}

/* Writes one used entry (virtio 1.2 2.7.8); published by vq_split_publish(). */
static inline void split_push(struct vblk_vq *vq, uint16_t id, uint32_t len)
{
    uint16_t slot = vq->used_idx & (vq->size - 1);
    struct vblk_split_used_elem *e = &vq->r.split.used->ring[slot];
    RING_STORE(&e->id, (uint32_t)id);
    RING_STORE(&e->len, len);
    if (vq->mem->log)
        vblk_mem_log_write(vq->mem, vq->addrs.device + 4 + 8u * slot, 8);
    vq->used_idx++;
}

/* Writes one used descriptor (virtio 1.2 2.8.1); the driver sees it at once. */
static inline void packed_push(struct vblk_vq *vq, uint16_t id, uint16_t ndescs, uint32_t len)
{
    struct vblk_packed_desc *d = &vq->r.pk.desc[vq->used_idx];
    uint16_t flags = vblk_packed_used_bits(vq->used_wrap);
    /* 2.8.3: WRITE in a used descriptor says data was written. */
    if (len)
        flags |= VBLK_DESC_F_WRITE;
    RING_STORE(&d->id, id);
    RING_STORE(&d->len, len);
    /* 2.8.1: id and len must be visible before the flags that
     * hand the descriptor back to the driver. */
    __atomic_store_n(&d->flags, flags, __ATOMIC_RELEASE);
    if (vq->mem->log)
        vblk_mem_log_write(vq->mem, vq->addrs.desc + 16u * vq->used_idx, 16);
    if (ndescs == 0 || ndescs > vq->size)
        ndescs = 1;
    vblk_ring_advance(vq->size, &vq->used_idx, &vq->used_wrap, ndescs);
    vq->published = (uint16_t)(vq->published + ndescs);
}

/* vblk_vq_push() for callers inside the core. */
static inline void vq_push(struct vblk_vq *vq, uint16_t id, uint16_t ndescs, uint32_t len)
{
    if (vq->is_broken)
        return;
    if (vq->packed)
        packed_push(vq, id, ndescs, len);
    else
        split_push(vq, id, len);
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
int vq_packed_walk_saved(struct vblk_vq *vq, const struct vblk_packed_desc *descs, uint16_t n,
                         struct vblk_chain *c);
int vq_packed_copy_descs(const struct vblk_vq *vq, uint16_t pos, uint16_t n,
                         struct vblk_packed_desc *out);
int vq_packed_walk(struct vblk_vq *vq, uint16_t pos, uint8_t wrap, struct vblk_chain *c,
                   uint16_t *end_pos, uint8_t *end_wrap);
void vq_packed_push(struct vblk_vq *vq, uint16_t id, uint16_t ndescs, uint32_t len);
bool vq_packed_publish(struct vblk_vq *vq);
void vq_packed_set_notify(struct vblk_vq *vq, bool enable);
bool vq_packed_has_avail(struct vblk_vq *vq);

#endif
