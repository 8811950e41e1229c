/* SPDX-License-Identifier: MIT */
/*
 * The fast path for the request almost every driver sends: a direct chain
 * of exactly three descriptors (a 16-byte header, one data buffer, a 1-byte
 * status), VBLK_T_IN or VBLK_T_OUT, every buffer inside one memory region.
 * The chain walk and the request decoding are fused into one pass over stack
 * copies of the descriptors, and a burst of such requests is taken in one
 * loop, with the used entries written as they complete and published once
 * per burst by vblk_queue_flush().
 *
 * It accepts only requests the general path (vq_*_walk() and req_decode())
 * would hand to the backend, with the same checks on copies read once.
 * Anything else, including everything the general path would fail or treat
 * as a broken ring, ends the burst before the ring position moves; the
 * general path then takes that request from the same position, reading the
 * ring afresh, and gives it its verdict.
 */
#include "blk_internal.h"
#include "ring_walk.h"

/* Flags whose value the fast path decides on; AVAIL and USED are the packed
 * ring's availability bits, checked separately. */
#define FLAGS_SEEN (VBLK_DESC_F_NEXT | VBLK_DESC_F_WRITE | VBLK_DESC_F_INDIRECT)

/* What stays fixed for one burst. */
struct fast {
    struct vblk_queue *q;
    struct vblk_mem *mem;
    uint64_t rbase, rsize; /* the region the last translation hit */
    uint8_t *rhost;
    uint32_t max_data;  /* the size_max limit on one descriptor, if it applies */
    uint32_t out_flags; /* VBLK_REQ_F_FUA for writes on a write-through cache */
};

/* A descriptor's fields, each read from the ring once (see desc_copy()). */
struct fdesc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t other; /* split: next; packed: id */
};

/* Reads a ring descriptor (split or packed: both are 16 bytes, addr and len
 * first) into @d. Rings are 16-byte aligned (vq_*_init() checked it), so
 * this is desc_copy() without its unaligned case. */
static inline __attribute__((always_inline)) void fdesc_load(struct fdesc *d, const void *src,
                                                             bool packed)
{
    const uint8_t *s = src;
#if __GCC_ATOMIC_LLONG_LOCK_FREE == 2
    d->addr = RING_LOAD((const uint64_t *)(const void *)s);
#else
    /* As in desc_copy(): two halves, each read once. */
    uint32_t lo = RING_LOAD((const uint32_t *)(const void *)s);
    uint32_t hi = RING_LOAD((const uint32_t *)(const void *)(s + 4));
    uint32_t halves[2] = {lo, hi};
    memcpy(&d->addr, halves, 8);
#endif
    d->len = RING_LOAD((const uint32_t *)(const void *)(s + 8));
    uint32_t tail = RING_LOAD((const uint32_t *)(const void *)(s + 12));
    uint8_t b[4];
    memcpy(b, &tail, 4);
    uint16_t lo16, hi16;
    memcpy(&lo16, b, 2);
    memcpy(&hi16, b + 2, 2);
    /* Split: flags, then next. Packed: id, then flags. */
    d->flags = packed ? hi16 : lo16;
    d->other = packed ? lo16 : hi16;
}

/* One request, decoded. */
struct fast_req {
    struct vblk_req_hdr hdr;
    uint8_t *hdr_host, *data, *status;
    uint32_t len;
    bool data_write;
};

static inline void fast_region(struct fast *f)
{
    const struct vblk_mem *mem = f->mem;
    if (mem->last < mem->nregions) {
        const struct vblk_mem_region *r = &mem->regions[mem->last];
        f->rbase = r->addr;
        f->rsize = r->size;
        f->rhost = r->host;
    } else {
        f->rbase = 0;
        f->rsize = 0;
        f->rhost = NULL;
    }
}

/* A buffer outside the cached region: any other single region will do
 * (the cache is refreshed at the next burst). A buffer that crosses regions,
 * or is not mapped, is left to the general path, which splits it or fails
 * the request. */
static __attribute__((noinline)) uint8_t *fast_xlate_other(struct vblk_mem *mem, uint64_t addr,
                                                           uint32_t len)
{
    return vblk_mem_ptr(mem, addr, len);
}

/* Sets @p to the host address of [addr, addr + len), len > 0, in one
 * region. False: not mapped that way. */
static inline __attribute__((always_inline)) bool fast_xlate(const struct fast *f, uint64_t addr,
                                                             uint32_t len, uint8_t **p)
{
    uint64_t off = addr - f->rbase;
    if (__builtin_expect(off < f->rsize && len <= f->rsize - off, 1)) {
        *p = f->rhost + off;
        return true;
    }
    *p = fast_xlate_other(f->mem, addr, len);
    return *p != NULL;
}

/* The checks of walk_add() (translation), req_decode() and rw_ok() for an
 * IN or OUT request, given the three descriptors' flags already matched the
 * header/data/status shape. False: not for the fast path. */
static inline __attribute__((always_inline)) bool fast_decode(const struct fast *f,
                                                              struct fast_req *fr,
                                                              uint64_t hdr_addr, uint64_t data_addr,
                                                              uint64_t status_addr)
{
    const struct vblk_dev *dev = f->q->dev;
    /* virtio 1.2 5.2.6: whole sectors; 5.2.4: size_max per descriptor. A
     * zero-length buffer maps to no iovec at all in the general path. */
    if (fr->len == 0 || (fr->len & (VBLK_SECTOR_SIZE - 1)) || fr->len > f->max_data)
        return false;
    if (!fast_xlate(f, hdr_addr, sizeof(fr->hdr), &fr->hdr_host) ||
        !fast_xlate(f, data_addr, fr->len, &fr->data) ||
        !fast_xlate(f, status_addr, 1, &fr->status))
        return false;
    /* The header is read from driver memory once; only the copy is used. */
    memcpy(&fr->hdr, fr->hdr_host, sizeof(fr->hdr));
    atomic_signal_fence(memory_order_seq_cst);
    if (fr->hdr.type == VBLK_T_IN) {
        if (!fr->data_write)
            return false;
    } else if (fr->hdr.type == VBLK_T_OUT) {
        /* virtio 1.2 5.2.6.2: writes to a read-only device fail. */
        if (fr->data_write || __atomic_load_n(&dev->p.read_only, __ATOMIC_RELAXED))
            return false;
    } else {
        return false;
    }
    uint64_t cap = vblk_dev_capacity_sectors(dev);
    uint64_t nsect = fr->len >> VBLK_SECTOR_SHIFT;
    if (fr->hdr.sector > cap || nsect > cap - fr->hdr.sector)
        return false;
    return true;
}

/* Hands a decoded request to the backend in the slot at the head of the
 * free list (the caller checked there is one), filled exactly as the
 * general path fills it. */
static inline __attribute__((always_inline)) void fast_submit(const struct fast *f,
                                                              const struct fast_req *fr,
                                                              uint16_t id, uint16_t ndescs,
                                                              uint16_t pos, uint8_t wrap)
{
    struct vblk_queue *q = f->q;
    struct vblk_req *r = q->free;
    struct vblk_chain *c = &r->chain;
    struct vblk_iov *iov = c->iov;
    iov[0].base = fr->hdr_host;
    iov[0].len = sizeof(fr->hdr);
    iov[1].base = fr->data;
    iov[1].len = fr->len;
    iov[2].base = fr->status;
    iov[2].len = 1;
    c->id = id;
    c->ndescs = ndescs;
    c->ndata = 3;
    c->fault = 0;
    c->last_mapped = 1;
    c->max_desc_len = fr->len > sizeof(fr->hdr) ? fr->len : (uint32_t)sizeof(fr->hdr);
    if (fr->data_write) {
        c->nout = 1;
        c->nin = 2;
        c->out_len = sizeof(fr->hdr);
        c->in_len = fr->len + 1;
        r->used_len = fr->len + 1;
        r->flags = 0;
    } else {
        c->nout = 2;
        c->nin = 1;
        c->out_len = (uint32_t)sizeof(fr->hdr) + fr->len;
        c->in_len = 1;
        r->used_len = 1;
        r->flags = f->out_flags;
    }
    r->type = fr->hdr.type;
    r->sector = fr->hdr.sector;
    r->len = fr->len;
    r->iov = &iov[1];
    r->niov = 1;
    r->nranges = 0;
    r->done = 0;
    r->status = fr->status;
    r->head_pos = pos;
    r->head_wrap = wrap;
    q->free = r->next;
    q->inflight++;
    q->dev->be.ops->submit(q->dev->be.ctx, q->qctx, r);
}

/* The bytes a completed IN or OUT request wrote: its data, then the status. */
static inline uint32_t fast_used_len(const struct fast_req *fr)
{
    return fr->data_write ? fr->len + 1 : 1;
}

/* @nop: the backend completes IN / OUT with VBLK_S_OK and nothing else, so
 * the request completes here without a slot or a call through the vtable. */
static inline __attribute__((always_inline)) unsigned split_burst(const struct fast *f,
                                                                  unsigned budget, const bool nop)
{
    struct vblk_queue *q = f->q;
    struct vblk_vq *vq = &q->vq;
    const uint16_t size = vq->size, mask = (uint16_t)(size - 1);
    const struct vblk_split_desc *table = vq->r.split.desc;
    const uint16_t *avail_ring = vq->r.split.avail->ring;
    struct vblk_split_used_elem *used_ring = vq->r.split.used->ring;
    uint16_t last = vq->last_avail, avail = vq->avail_cache, used = vq->used_idx;
    unsigned n = 0;
    while (n < budget && (nop || !q->stopping)) {
        if (last == avail) {
            /* Acquire: heads and descriptors are read after the idx that
             * covers them (virtio 1.2 2.7.13.3.1). More than a ring's worth
             * is for the general path, which breaks the ring (2.7.6). */
            uint16_t idx = __atomic_load_n(&vq->r.split.avail->idx, __ATOMIC_ACQUIRE);
            if (idx == last || (uint16_t)(idx - last) > size)
                break;
            avail = idx;
            vq->avail_cache = idx;
        }
        if (!nop && !q->free)
            break;
        uint16_t head = RING_LOAD(&avail_ring[last & mask]);
        if (head >= size)
            break;
        /* Three direct descriptors: header (readable, NEXT), data (NEXT),
         * status (writable, last). vq->size >= 3, so the chain is no longer
         * than the ring, as the general walk requires. */
        struct fdesc d0, d1, d2;
        fdesc_load(&d0, &table[head], false);
        if ((d0.flags & FLAGS_SEEN) != VBLK_DESC_F_NEXT || d0.len != sizeof(struct vblk_req_hdr) ||
            d0.other >= size)
            break;
        fdesc_load(&d1, &table[d0.other], false);
        if ((d1.flags & (VBLK_DESC_F_NEXT | VBLK_DESC_F_INDIRECT)) != VBLK_DESC_F_NEXT ||
            d1.other >= size)
            break;
        fdesc_load(&d2, &table[d1.other], false);
        if ((d2.flags & FLAGS_SEEN) != VBLK_DESC_F_WRITE || d2.len != 1)
            break;
        struct fast_req fr;
        fr.len = d1.len;
        fr.data_write = (d1.flags & VBLK_DESC_F_WRITE) != 0;
        if (!fast_decode(f, &fr, d0.addr, d1.addr, d2.addr))
            break;
        uint16_t pos = last++;
        n++;
        if (nop) {
            *fr.status = VBLK_S_OK;
            struct vblk_split_used_elem *e = &used_ring[used & mask];
            RING_STORE(&e->id, (uint32_t)head);
            RING_STORE(&e->len, fast_used_len(&fr));
            used++;
        } else {
            vq->last_avail = last;
            fast_submit(f, &fr, head, 1, pos, 0);
        }
    }
    vq->last_avail = last;
    if (nop)
        vq->used_idx = used;
    return n;
}

static inline __attribute__((always_inline)) unsigned packed_burst(const struct fast *f,
                                                                   unsigned budget, const bool nop)
{
    struct vblk_queue *q = f->q;
    struct vblk_vq *vq = &q->vq;
    const uint16_t size = vq->size;
    struct vblk_packed_desc *ring = vq->r.pk.desc;
    uint16_t pos = vq->last_avail, upos = vq->used_idx;
    uint8_t wrap = vq->avail_wrap, uwrap = vq->used_wrap;
    unsigned n = 0;
    while (n < budget && (nop || !q->stopping)) {
        /* 2.8.6: the head's flags are published last; acquire, so the
         * list is read after them. */
        uint16_t hflags = __atomic_load_n(&ring[pos].flags, __ATOMIC_ACQUIRE);
        if (!vblk_packed_is_avail(hflags, wrap))
            break;
        if (!nop && !q->free)
            break;
        uint16_t p1 = pos, p2, p3;
        uint8_t w1 = wrap, w2, w3;
        vblk_ring_next(size, &p1, &w1);
        p2 = p1;
        w2 = w1;
        vblk_ring_next(size, &p2, &w2);
        p3 = p2;
        w3 = w2;
        vblk_ring_next(size, &p3, &w3);
        /* Each descriptor available in its own lap (2.8.6); no INDIRECT. */
        struct fdesc d0, d1, d2;
        fdesc_load(&d0, &ring[pos], true);
        if (!vblk_packed_is_avail(d0.flags, wrap) || (d0.flags & FLAGS_SEEN) != VBLK_DESC_F_NEXT ||
            d0.len != sizeof(struct vblk_req_hdr))
            break;
        fdesc_load(&d1, &ring[p1], true);
        if (!vblk_packed_is_avail(d1.flags, w1) ||
            (d1.flags & (VBLK_DESC_F_NEXT | VBLK_DESC_F_INDIRECT)) != VBLK_DESC_F_NEXT)
            break;
        fdesc_load(&d2, &ring[p2], true);
        if (!vblk_packed_is_avail(d2.flags, w2) || (d2.flags & FLAGS_SEEN) != VBLK_DESC_F_WRITE ||
            d2.len != 1)
            break;
        struct fast_req fr;
        fr.len = d1.len;
        fr.data_write = (d1.flags & VBLK_DESC_F_WRITE) != 0;
        if (!fast_decode(f, &fr, d0.addr, d1.addr, d2.addr))
            break;
        uint16_t head = pos;
        uint8_t head_wrap = wrap;
        pos = p3;
        wrap = w3;
        n++;
        if (nop) {
            *fr.status = VBLK_S_OK;
            /* 2.8.1 / 2.8.3: id and len before the flags that hand the
             * slot back, WRITE set since the status byte was written. */
            struct vblk_packed_desc *u = &ring[upos];
            RING_STORE(&u->id, d2.other);
            RING_STORE(&u->len, fast_used_len(&fr));
            __atomic_store_n(&u->flags,
                             (uint16_t)(vblk_packed_used_bits(uwrap) | VBLK_DESC_F_WRITE),
                             __ATOMIC_RELEASE);
            vblk_ring_advance(size, &upos, &uwrap, 3);
        } else {
            vq->last_avail = pos;
            vq->avail_wrap = wrap;
            fast_submit(f, &fr, d2.other, 3, head, head_wrap);
        }
    }
    vq->last_avail = pos;
    vq->avail_wrap = wrap;
    if (nop) {
        vq->used_idx = upos;
        vq->used_wrap = uwrap;
        vq->published = (uint16_t)(vq->published + 3u * n);
    }
    return n;
}

unsigned blk_fast_burst(struct vblk_queue *q, unsigned budget)
{
    struct vblk_vq *vq = &q->vq;
    const struct vblk_dev *dev = q->dev;
    /* In-order queues, request hooks and dirty logging need the general
     * completion; rings of fewer than 3 entries cannot hold the chain. */
    if (q->in_order || q->hooks || vq->mem->log || vq->is_broken || vq->size < 3 ||
        dev->p.seg_max < 1)
        return 0;
    struct fast f;
    f.q = q;
    f.mem = vq->mem;
    f.max_data = UINT32_MAX;
    /* virtio 1.2 5.2.4: size_max binds every descriptor of a multi-descriptor
     * chain, the 16-byte header included. */
    if ((dev->driver_features & VBLK_BIT(VBLK_F_SIZE_MAX)) && dev->p.size_max) {
        if (dev->p.size_max < sizeof(struct vblk_req_hdr))
            return 0;
        f.max_data = dev->p.size_max;
    }
    f.out_flags = req_write_through(dev) ? VBLK_REQ_F_FUA : 0;
    fast_region(&f);
    bool nop = (dev->be.ops->caps & VBLK_BACKEND_CAP_NOP_RW) != 0;
    unsigned n;
    if (vq->packed)
        n = nop ? packed_burst(&f, budget, true) : packed_burst(&f, budget, false);
    else
        n = nop ? split_burst(&f, budget, true) : split_burst(&f, budget, false);
    vq->stats.chains += n;
    q->stats.submitted += n;
    if (nop && n) {
        q->stats.completed += n;
        q->need_publish = 1;
    }
    return n;
}
