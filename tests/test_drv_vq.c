/* SPDX-License-Identifier: MIT */
/*
 * Driver-side virtqueue against a fake device written here, which reads
 * and writes the ring memory directly by the virtio 1.2 layout. The fake
 * device never asserts (it may run on another thread): it counts protocol
 * violations in fdev::errors, which the tests check.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "virtioblk/driver.h"

#define DELTA    0x100000000ull /* driver address = host pointer + DELTA */
#define MAX_SEGS 64
#define NREQ     64

/* ---- fake device ------------------------------------------------------ */

struct seg {
    uint8_t *p;
    uint32_t len;
    bool write;
};

struct chain {
    uint16_t id, ndescs;
    unsigned n;
    bool indirect;
    uint32_t in_len;
    struct seg s[MAX_SEGS];
};

struct fdev {
    bool packed;
    uint16_t size;
    uint64_t delta;
    uint8_t *desc, *drv, *dev;
    uint16_t avail, used; /* split: free-running indices; packed: positions */
    uint8_t avail_wrap, used_wrap;
    unsigned errors;
};

static void *host(const struct fdev *d, uint64_t a)
{
    return (void *)(uintptr_t)(a - d->delta);
}

static void fdev_init(struct fdev *d, const struct vblk_drv_vq *vq,
                      const struct vblk_drv_vq_config *cfg)
{
    struct vblk_vq_addrs a;

    vblk_drv_vq_addrs(vq, &a);
    memset(d, 0, sizeof(*d));
    d->packed = cfg->packed;
    d->size = cfg->size;
    d->delta = cfg->addr_delta;
    d->desc = host(d, a.desc);
    d->drv = host(d, a.driver);
    d->dev = host(d, a.device);
    d->avail_wrap = d->used_wrap = 1;
}

static void chain_seg(struct fdev *d, struct chain *c, uint64_t addr, uint32_t len, bool write)
{
    /* virtio 1.2 2.7.4.2: readable elements first. */
    if (c->n == MAX_SEGS || (!write && c->n > 0 && c->s[c->n - 1].write)) {
        d->errors++;
        return;
    }
    c->s[c->n++] = (struct seg){host(d, addr), len, write};
    if (write)
        c->in_len += len;
}

static bool split_pop(struct fdev *d, struct chain *c)
{
    struct vblk_split_avail *av = (void *)d->drv;
    struct vblk_split_desc *dt = (void *)d->desc;
    uint16_t i;

    if (__atomic_load_n(&av->idx, __ATOMIC_ACQUIRE) == d->avail)
        return false;
    i = av->ring[d->avail++ & (d->size - 1)];
    memset(c, 0, offsetof(struct chain, s));
    c->id = i;
    for (;;) {
        struct vblk_split_desc x;

        if (i >= d->size || c->ndescs++ >= d->size) {
            d->errors++;
            return true;
        }
        x = dt[i];
        if (x.flags & VBLK_DESC_F_INDIRECT) {
            struct vblk_split_desc *t = host(d, x.addr);
            unsigned n = x.len / 16;

            if ((x.flags & VBLK_DESC_F_NEXT) || x.len % 16 || n == 0 || c->n) {
                d->errors++;
                return true;
            }
            c->indirect = true;
            for (unsigned j = 0, k = 0;; k++) {
                if (j >= n || k >= n || (t[j].flags & VBLK_DESC_F_INDIRECT)) {
                    d->errors++;
                    return true;
                }
                chain_seg(d, c, t[j].addr, t[j].len, t[j].flags & VBLK_DESC_F_WRITE);
                if (!(t[j].flags & VBLK_DESC_F_NEXT))
                    return true;
                j = t[j].next;
            }
        }
        chain_seg(d, c, x.addr, x.len, x.flags & VBLK_DESC_F_WRITE);
        if (!(x.flags & VBLK_DESC_F_NEXT))
            return true;
        i = x.next;
    }
}

static bool pk_avail(uint16_t f, uint8_t wrap)
{
    return !!(f & VBLK_DESC_F_AVAIL) == wrap && !!(f & VBLK_DESC_F_USED) != wrap;
}

static bool packed_pop(struct fdev *d, struct chain *c)
{
    struct vblk_packed_desc *r = (void *)d->desc;
    uint16_t pos = d->avail;
    uint8_t wrap = d->avail_wrap;

    if (!pk_avail(__atomic_load_n(&r[pos].flags, __ATOMIC_ACQUIRE), wrap))
        return false;
    memset(c, 0, offsetof(struct chain, s));
    for (;;) {
        struct vblk_packed_desc x = r[pos];

        /* virtio 1.2 2.8.6: every descriptor carries the avail bits and the id. */
        if (!pk_avail(x.flags, wrap) || (c->ndescs && x.id != c->id))
            d->errors++;
        c->id = x.id;
        c->ndescs++;
        if (++pos == d->size) {
            pos = 0;
            wrap ^= 1;
        }
        if (x.flags & VBLK_DESC_F_INDIRECT) {
            struct vblk_packed_desc *t = host(d, x.addr);

            if ((x.flags & VBLK_DESC_F_NEXT) || c->ndescs != 1 || x.len % 16 || !x.len) {
                d->errors++;
                break;
            }
            c->indirect = true;
            for (unsigned j = 0; j < x.len / 16; j++) {
                if (t[j].flags & ~VBLK_DESC_F_WRITE) /* 2.8.19 */
                    d->errors++;
                chain_seg(d, c, t[j].addr, t[j].len, t[j].flags & VBLK_DESC_F_WRITE);
            }
            break;
        }
        chain_seg(d, c, x.addr, x.len, x.flags & VBLK_DESC_F_WRITE);
        if (!(x.flags & VBLK_DESC_F_NEXT))
            break;
        if (c->ndescs == d->size) {
            d->errors++;
            break;
        }
    }
    d->avail = pos;
    d->avail_wrap = wrap;
    return true;
}

static bool fdev_pop(struct fdev *d, struct chain *c)
{
    return d->packed ? packed_pop(d, c) : split_pop(d, c);
}

/* Writes one used entry; @p skip is the packed ring slot count to skip. */
static void fdev_push_raw(struct fdev *d, uint16_t id, uint16_t skip, uint32_t len, bool wflag)
{
    if (!d->packed) {
        struct vblk_split_used *u = (void *)d->dev;

        u->ring[d->used & (d->size - 1)] = (struct vblk_split_used_elem){id, len};
        __atomic_store_n(&u->idx, ++d->used, __ATOMIC_RELEASE);
        return;
    }
    struct vblk_packed_desc *x = &((struct vblk_packed_desc *)d->desc)[d->used];
    uint16_t f = (uint16_t)((d->used_wrap ? VBLK_DESC_F_AVAIL | VBLK_DESC_F_USED : 0) |
                            (wflag ? VBLK_DESC_F_WRITE : 0));

    x->id = id;
    x->len = len;
    __atomic_store_n(&x->flags, f, __ATOMIC_RELEASE);
    d->used = (uint16_t)(d->used + skip);
    if (d->used >= d->size) {
        d->used = (uint16_t)(d->used - d->size);
        d->used_wrap ^= 1;
    }
}

static void fdev_push(struct fdev *d, const struct chain *c, uint32_t len)
{
    fdev_push_raw(d, c->id, c->ndescs, len, len > 0);
}

/* Copies the first readable byte into every writable byte; returns bytes written. */
static uint32_t serve(const struct chain *c)
{
    uint8_t mark = (c->n && !c->s[0].write && c->s[0].len) ? c->s[0].p[0] : 0;

    for (unsigned i = 0; i < c->n; i++)
        if (c->s[i].write)
            memset(c->s[i].p, mark, c->s[i].len);
    return c->in_len;
}

/* ---- queue setup -------------------------------------------------------- */

struct q {
    struct vblk_drv_vq vq;
    struct vblk_drv_vq_config cfg;
    void *ring, *state;
    struct fdev d;
};

static void q_open(struct q *q, const struct vblk_drv_vq_config *cfg)
{
    size_t rl = vblk_drv_vq_ring_size(cfg), sl = vblk_drv_vq_state_size(cfg);
    size_t rl_alloc = (rl + 4095) & ~(size_t)4095;

    assert_true(rl > 0 && sl > 0 && sl % 8 == 0);
    q->cfg = *cfg;
    q->ring = aligned_alloc(4096, rl_alloc);
    q->state = aligned_alloc(8, sl);
    assert_non_null(q->ring);
    assert_non_null(q->state);
    memset(q->ring, 0xa5, rl_alloc); /* init must zero it */
    assert_int_equal(vblk_drv_vq_init(&q->vq, cfg, q->ring, rl, q->state, sl), 0);
    assert_int_equal(vblk_drv_vq_num_free(&q->vq), cfg->size);
    fdev_init(&q->d, &q->vq, cfg);
}

static void q_close(struct q *q)
{
    assert_int_equal(q->d.errors, 0);
    free(q->ring);
    free(q->state);
}

static uint32_t rnd(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 16;
}

/* A request with its own buffers; out[0][0] carries a mark the device echoes. */
struct req {
    uint8_t out[4][16], in[4][16];
    struct vblk_iov o[4], i[4];
    unsigned nout, nin;
    uint32_t in_len;
    uint8_t mark;
    bool busy;
};

static void req_fill(struct req *r, unsigned nout, unsigned nin, uint8_t mark)
{
    r->nout = nout;
    r->nin = nin;
    r->mark = mark;
    r->in_len = 0;
    for (unsigned k = 0; k < nout; k++)
        r->o[k] = (struct vblk_iov){r->out[k], 1 + (k * 5) % 16};
    for (unsigned k = 0; k < nin; k++) {
        r->i[k] = (struct vblk_iov){r->in[k], 16 - k * 3};
        r->in_len += 16 - k * 3;
    }
    memset(r->in, 0, sizeof(r->in));
    r->out[0][0] = mark;
}

static int req_add(struct q *q, struct req *r, bool ind)
{
    return vblk_drv_vq_add(&q->vq, r->o, r->nout, r->i, r->nin, r, ind);
}

/* Reaps every used buffer and checks it against its request. */
static unsigned reap(struct q *q)
{
    unsigned n = 0;
    void *tok;
    uint32_t len;
    int rc;

    while ((rc = vblk_drv_vq_get_used(&q->vq, &tok, &len)) == 1) {
        struct req *r = tok;

        assert_true(r->busy);
        assert_int_equal(len, r->in_len);
        for (unsigned k = 0; k < r->nin; k++)
            for (unsigned b = 0; b < r->i[k].len; b++)
                assert_int_equal(r->in[k][b], r->mark);
        r->busy = false;
        n++;
    }
    assert_int_equal(rc, 0);
    return n;
}

/* Device consumes and completes everything published, in order. */
static void serve_all(struct q *q)
{
    struct chain c;

    while (fdev_pop(&q->d, &c))
        fdev_push(&q->d, &c, serve(&c));
}

/* Takes exactly one used buffer, which must be @p token; returns its length. */
static uint32_t reap_one_len(struct q *q, void *token)
{
    void *tok = NULL;
    uint32_t len = 0;

    assert_int_equal(vblk_drv_vq_get_used(&q->vq, &tok, &len), 1);
    assert_ptr_equal(tok, token);
    return len;
}

static struct vblk_drv_vq_config c_split = {.size = 8, .addr_delta = DELTA};
static struct vblk_drv_vq_config c_split_ind = {
    .size = 8, .indirect = true, .indirect_max = 8, .addr_delta = DELTA};
static struct vblk_drv_vq_config c_packed = {.size = 8, .packed = true, .addr_delta = DELTA};
static struct vblk_drv_vq_config c_packed3_ind = {
    .size = 3, .packed = true, .indirect = true, .indirect_max = 8, .addr_delta = DELTA};
static struct vblk_drv_vq_config c_packed5 = {.size = 5, .packed = true};
static struct vblk_drv_vq_config c_packed5_ind = {
    .size = 5, .packed = true, .indirect = true, .indirect_max = 8, .addr_delta = DELTA};

/* ---- tests ------------------------------------------------------------- */

static void test_config(void **state)
{
    struct vblk_drv_vq_config c = {.size = 256};
    struct vblk_drv_vq vq;
    static _Alignas(4096) uint8_t ring[32768];
    static _Alignas(8) uint8_t st[8192];
    (void)state;

    /* Split: desc 4096 + avail 518 -> used at 8192, 6 + 2048 bytes. */
    assert_int_equal(vblk_drv_vq_ring_size(&c), 8192 + 6 + 2048);
    c.indirect_max = 4;
    assert_int_equal(vblk_drv_vq_ring_size(&c), 10256 + 256 * 4 * 16);
    c = (struct vblk_drv_vq_config){.size = 5, .packed = true};
    assert_int_equal(vblk_drv_vq_ring_size(&c), 88);
    c.indirect_max = 2;
    assert_int_equal(vblk_drv_vq_ring_size(&c), 96 + 5 * 2 * 16);
    assert_int_equal(vblk_drv_vq_state_size(&c) % 8, 0);

    /* Bad sizes: 0, > 2^15, split not a power of two. */
    c.size = 0;
    assert_int_equal(vblk_drv_vq_ring_size(&c), 0);
    assert_int_equal(vblk_drv_vq_init(&vq, &c, ring, sizeof(ring), st, sizeof(st)), -EINVAL);
    c.size = 32769;
    assert_int_equal(vblk_drv_vq_init(&vq, &c, ring, sizeof(ring), st, sizeof(st)), -EINVAL);
    c = (struct vblk_drv_vq_config){.size = 6};
    assert_int_equal(vblk_drv_vq_init(&vq, &c, ring, sizeof(ring), st, sizeof(st)), -EINVAL);
    c.size = 8;
    assert_int_equal(vblk_drv_vq_init(&vq, &c, ring + 16, 16384, st, sizeof(st)), -EINVAL);
    assert_int_equal(vblk_drv_vq_init(&vq, &c, ring, vblk_drv_vq_ring_size(&c) - 1, st,
                                      sizeof(st)),
                     -EINVAL);
    assert_int_equal(vblk_drv_vq_init(&vq, &c, ring, sizeof(ring), st + 4, 1024), -EINVAL);
    assert_int_equal(vblk_drv_vq_init(&vq, &c, ring, sizeof(ring), st,
                                      vblk_drv_vq_state_size(&c) - 1),
                     -EINVAL);
    assert_int_equal(vblk_drv_vq_init(&vq, &c, ring, sizeof(ring), st, sizeof(st)), 0);
    c = (struct vblk_drv_vq_config){.size = 32768};
    assert_int_equal(vblk_drv_vq_ring_size(&c), 524288 + 69632 + 6 + 8 * 32768);
}

static void test_layout(void **state)
{
    struct vblk_drv_vq_config c = {.size = 16, .addr_delta = DELTA};
    struct vblk_vq_addrs a;
    struct q q;
    (void)state;

    q_open(&q, &c);
    vblk_drv_vq_addrs(&q.vq, &a);
    assert_true(a.desc == (uintptr_t)q.ring + DELTA);
    assert_true(a.driver == a.desc + 256);
    assert_true(a.device == a.desc + 4096);
    q_close(&q);
    c.packed = true;
    q_open(&q, &c);
    vblk_drv_vq_addrs(&q.vq, &a);
    assert_true(a.driver == a.desc + 256 && a.device == a.driver + 4);
    q_close(&q);
}

/* Add, nothing visible before kick, device sees exact buffers, round trip. */
static void test_roundtrip(void **state)
{
    struct vblk_drv_vq_config *cfg = *state;
    uint8_t a[10] = {7}, b[20], in[30];
    struct vblk_iov out[2] = {{a, sizeof(a)}, {b, sizeof(b)}}, iv = {in, sizeof(in)};
    struct chain c;
    void *tok;
    uint32_t len;
    struct q q;
    int tag;

    q_open(&q, cfg);
    assert_false(vblk_drv_vq_has_used(&q.vq));
    assert_int_equal(vblk_drv_vq_get_used(&q.vq, &tok, &len), 0);
    assert_false(vblk_drv_vq_kick_prepare(&q.vq)); /* nothing added */
    assert_int_equal(vblk_drv_vq_add(&q.vq, out, 2, &iv, 1, &tag, false), 0);
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), cfg->size - 3);
    assert_false(fdev_pop(&q.d, &c));
    assert_true(vblk_drv_vq_kick_prepare(&q.vq));
    assert_false(vblk_drv_vq_kick_prepare(&q.vq)); /* nothing new */
    assert_true(fdev_pop(&q.d, &c));
    assert_false(fdev_pop(&q.d, &c));
    assert_int_equal(c.n, 3);
    assert_int_equal(c.ndescs, 3);
    assert_ptr_equal(c.s[0].p, a);
    assert_int_equal(c.s[0].len, 10);
    assert_false(c.s[0].write);
    assert_ptr_equal(c.s[1].p, b);
    assert_false(c.s[1].write);
    assert_ptr_equal(c.s[2].p, in);
    assert_true(c.s[2].write);
    assert_false(vblk_drv_vq_has_used(&q.vq));
    fdev_push(&q.d, &c, serve(&c));
    assert_true(vblk_drv_vq_has_used(&q.vq));
    assert_int_equal(vblk_drv_vq_get_used(&q.vq, &tok, &len), 1);
    assert_ptr_equal(tok, &tag);
    assert_int_equal(len, 30);
    assert_int_equal(in[29], 7);
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), cfg->size);
    assert_int_equal(vblk_drv_vq_get_used(&q.vq, &tok, &len), 0);
    q_close(&q);
}

/*
 * Random chains, random indirect use, random kicks, out-of-order completion,
 * over many iterations: the free lists must always come back whole, and
 * -ENOSPC must happen exactly when the ring has no room.
 */
static void run_recycle(const struct vblk_drv_vq_config *cfg, unsigned iters, uint32_t seed)
{
    static struct req reqs[NREQ];
    struct chain pend[NREQ];
    unsigned npend = 0, busy = 0;
    bool can_ind = cfg->indirect && cfg->indirect_max > 0;
    struct q q;

    memset(reqs, 0, sizeof(reqs));
    q_open(&q, cfg);
    for (unsigned it = 0; it < iters; it++) {
        for (unsigned k = rnd(&seed) % 4; k > 0; k--) {
            struct req *r = &reqs[rnd(&seed) % NREQ];
            unsigned nout = 1 + rnd(&seed) % 3, nin = rnd(&seed) % 4;
            bool ind = rnd(&seed) % 2;
            unsigned need = (ind && can_ind && nout + nin > 1) ? 1 : nout + nin;
            uint16_t nfree = vblk_drv_vq_num_free(&q.vq);
            int rc;

            if (r->busy || nout + nin > cfg->size)
                continue;
            req_fill(r, nout, nin, (uint8_t)rnd(&seed));
            rc = req_add(&q, r, ind);
            if (need > nfree) {
                assert_int_equal(rc, -ENOSPC);
                assert_int_equal(vblk_drv_vq_num_free(&q.vq), nfree);
                continue;
            }
            assert_int_equal(rc, 0);
            assert_int_equal(vblk_drv_vq_num_free(&q.vq), nfree - need);
            r->busy = true;
            busy++;
        }
        if (rnd(&seed) % 3)
            vblk_drv_vq_kick_prepare(&q.vq);
        while (npend < NREQ && fdev_pop(&q.d, &pend[npend]))
            npend++;
        for (unsigned k = rnd(&seed) % (npend + 1); k > 0; k--) {
            unsigned j = rnd(&seed) % npend;

            fdev_push(&q.d, &pend[j], serve(&pend[j]));
            pend[j] = pend[--npend];
        }
        busy -= reap(&q);
    }
    vblk_drv_vq_kick_prepare(&q.vq);
    while (npend > 0) {
        fdev_push(&q.d, &pend[npend - 1], serve(&pend[npend - 1]));
        npend--;
    }
    serve_all(&q);
    busy -= reap(&q);
    assert_int_equal(busy, 0);
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), cfg->size);
    q_close(&q);
}

static void test_recycle(void **state)
{
    run_recycle(*state, 20000, 1);
}

/* Split: 16-bit avail and used indices wrap past 65535 several times. */
static void test_split_wrap(void **state)
{
    struct vblk_drv_vq_config cfg = {.size = 4, .addr_delta = DELTA};
    static struct req reqs[4];
    unsigned wraps = 0;
    uint32_t seed = 3;
    struct q q;
    (void)state;

    q_open(&q, &cfg);
    for (unsigned it = 0; it < 60000; it++) {
        uint16_t before = q.d.avail;
        unsigned n = 1 + rnd(&seed) % 4;

        for (unsigned k = 0; k < n; k++) {
            req_fill(&reqs[k], 1, n <= 2 ? 1 : 0, (uint8_t)(it + k));
            assert_int_equal(req_add(&q, &reqs[k], false), 0);
            reqs[k].busy = true;
        }
        vblk_drv_vq_kick_prepare(&q.vq);
        serve_all(&q);
        assert_int_equal(reap(&q), n);
        wraps += q.d.avail < before;
    }
    assert_true(wraps >= 2);
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), 4);
    q_close(&q);
}

/* Packed: every chain length at every ring offset, so chains straddle the wrap. */
static void test_packed_wrap(void **state)
{
    struct vblk_drv_vq_config *cfg = *state;
    uint8_t buf[8][4];
    struct vblk_iov iov[8];
    unsigned flips = 0;
    struct chain c;
    struct q q;
    void *tok;
    uint32_t len;

    q_open(&q, cfg);
    for (unsigned k = 0; k < 8; k++)
        iov[k] = (struct vblk_iov){buf[k], k + 1};
    for (unsigned round = 0; round < 3 * cfg->size; round++) {
        for (unsigned n = 1; n <= cfg->size; n++) {
            uint8_t wrap = q.d.avail_wrap;
            unsigned nin = n / 2;

            assert_int_equal(vblk_drv_vq_add(&q.vq, iov, n - nin, iov + (n - nin), nin, &c, false),
                             0);
            assert_int_equal(vblk_drv_vq_num_free(&q.vq), cfg->size - n);
            vblk_drv_vq_kick_prepare(&q.vq);
            assert_true(fdev_pop(&q.d, &c));
            assert_int_equal(c.n, n);
            for (unsigned k = 0; k < n; k++) {
                assert_ptr_equal(c.s[k].p, buf[k]);
                assert_int_equal(c.s[k].len, k + 1);
                assert_int_equal(c.s[k].write, k >= n - nin);
            }
            fdev_push(&q.d, &c, c.in_len);
            assert_int_equal(vblk_drv_vq_get_used(&q.vq, &tok, &len), 1);
            assert_int_equal(len, c.in_len);
            assert_int_equal(vblk_drv_vq_num_free(&q.vq), cfg->size);
            flips += q.d.avail_wrap != wrap;
        }
    }
    assert_true(flips >= 3 * cfg->size);
    q_close(&q);
}

/* One ring slot per indirect buffer; table contents; fallbacks and limits. */
static void test_indirect(void **state)
{
    struct vblk_drv_vq_config *cfg = *state, noind = *cfg;
    uint8_t buf[9][8];
    struct vblk_iov iov[9];
    struct chain c;
    struct q q;
    int tag;

    for (unsigned k = 0; k < 9; k++)
        iov[k] = (struct vblk_iov){buf[k], 8};
    q_open(&q, cfg);
    assert_int_equal(vblk_drv_vq_add(&q.vq, iov, 2, iov + 2, 3, &tag, true), 0);
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), cfg->size - 1);
    vblk_drv_vq_kick_prepare(&q.vq);
    assert_true(fdev_pop(&q.d, &c));
    assert_true(c.indirect);
    assert_int_equal(c.ndescs, 1);
    assert_int_equal(c.n, 5);
    for (unsigned k = 0; k < 5; k++) {
        assert_ptr_equal(c.s[k].p, buf[k]);
        assert_int_equal(c.s[k].write, k >= 2);
    }
    fdev_push(&q.d, &c, 24);
    assert_int_equal(reap_one_len(&q, &tag), 24);

    /* One element: direct even when asked. Too long for a table: -EINVAL. */
    assert_int_equal(vblk_drv_vq_add(&q.vq, iov, 1, NULL, 0, &tag, true), 0);
    vblk_drv_vq_kick_prepare(&q.vq);
    assert_true(fdev_pop(&q.d, &c));
    assert_false(c.indirect);
    fdev_push(&q.d, &c, 0);
    assert_int_equal(reap_one_len(&q, &tag), 0);
    assert_int_equal(vblk_drv_vq_add(&q.vq, iov, 5, iov + 5, 4, &tag, true), -EINVAL);

    /* A full ring of indirect buffers, each with more elements than the ring. */
    for (unsigned k = 0; k < cfg->size; k++)
        assert_int_equal(vblk_drv_vq_add(&q.vq, iov, 4, iov + 4, 4, &buf[k], true), 0);
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), 0);
    assert_int_equal(vblk_drv_vq_add(&q.vq, iov, 2, NULL, 0, &tag, true), -ENOSPC);
    vblk_drv_vq_kick_prepare(&q.vq);
    for (unsigned k = 0; k < cfg->size; k++) {
        assert_true(fdev_pop(&q.d, &c));
        assert_int_equal(c.n, 8);
        assert_ptr_equal(c.s[7].p, buf[7]);
        fdev_push(&q.d, &c, 32);
    }
    for (unsigned k = 0; k < cfg->size; k++)
        assert_int_equal(reap_one_len(&q, &buf[k]), 32);
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), cfg->size);
    q_close(&q);

    /* Tables configured but VIRTIO_F_INDIRECT_DESC not negotiated: direct. */
    noind.indirect = false;
    q_open(&q, &noind);
    assert_int_equal(vblk_drv_vq_add(&q.vq, iov, 2, iov + 2, 1, &tag, true), 0);
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), cfg->size - 3);
    vblk_drv_vq_kick_prepare(&q.vq);
    assert_true(fdev_pop(&q.d, &c));
    assert_false(c.indirect);
    assert_int_equal(c.n, 3);
    q_close(&q);
}
