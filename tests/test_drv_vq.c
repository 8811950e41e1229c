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
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ring_writer.h"
#include "virtioblk/driver.h"
#include "virtioblk/ring.h"

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
    uint16_t avail; /* split: free-running index; packed: position */
    uint8_t avail_wrap;
    struct atk_ring ring; /* writes the used entries (ring.dev_used, ring.dev_wrap) */
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
    d->avail_wrap = 1;
    atk_ring_init_areas(&d->ring, cfg->size, cfg->packed, d->desc, d->drv, d->dev, NULL);
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

static bool packed_pop(struct fdev *d, struct chain *c)
{
    struct vblk_packed_desc *r = (void *)d->desc;
    uint16_t pos = d->avail;
    uint8_t wrap = d->avail_wrap;

    if (!vblk_packed_is_avail(__atomic_load_n(&r[pos].flags, __ATOMIC_ACQUIRE), wrap))
        return false;
    memset(c, 0, offsetof(struct chain, s));
    for (;;) {
        struct vblk_packed_desc x = r[pos];

        /* virtio 1.2 2.8.6: every descriptor carries the avail bits and the id. */
        if (!vblk_packed_is_avail(x.flags, wrap) || (c->ndescs && x.id != c->id))
            d->errors++;
        c->id = x.id;
        c->ndescs++;
        vblk_ring_next(d->size, &pos, &wrap);
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
static void fdev_push_raw(struct fdev *d, uint32_t id, uint16_t skip, uint32_t len, bool wflag)
{
    atk_used_push(&d->ring, id, len, skip, wflag);
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
    assert_int_equal(vblk_drv_vq_init(&vq, &c, ring, vblk_drv_vq_ring_size(&c) - 1, st, sizeof(st)),
                     -EINVAL);
    assert_int_equal(vblk_drv_vq_init(&vq, &c, ring, sizeof(ring), st + 4, 1024), -EINVAL);
    assert_int_equal(
        vblk_drv_vq_init(&vq, &c, ring, sizeof(ring), st, vblk_drv_vq_state_size(&c) - 1), -EINVAL);
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
static void run_recycle_on(struct q *q, unsigned iters, uint32_t seed)
{
    static struct req reqs[NREQ];
    const struct vblk_drv_vq_config *cfg = &q->cfg;
    struct chain pend[NREQ];
    unsigned npend = 0, busy = 0;
    bool can_ind = cfg->indirect && cfg->indirect_max > 0;

    memset(reqs, 0, sizeof(reqs));
    for (unsigned it = 0; it < iters; it++) {
        for (unsigned k = rnd(&seed) % 4; k > 0; k--) {
            struct req *r = &reqs[rnd(&seed) % NREQ];
            unsigned nout = 1 + rnd(&seed) % 3, nin = rnd(&seed) % 4;
            bool ind = rnd(&seed) % 2 && can_ind && nout + nin > 1;
            unsigned need = ind ? 1 : nout + nin;
            uint16_t nfree = vblk_drv_vq_num_free(&q->vq);
            int rc;

            if (r->busy)
                continue;
            req_fill(r, nout, nin, (uint8_t)rnd(&seed));
            rc = req_add(q, r, ind);
            if (nout + nin > (ind ? cfg->indirect_max : cfg->size)) {
                assert_int_equal(rc, -EINVAL);
                continue;
            }
            if (need > nfree) {
                assert_int_equal(rc, -ENOSPC);
                assert_int_equal(vblk_drv_vq_num_free(&q->vq), nfree);
                continue;
            }
            assert_int_equal(rc, 0);
            assert_int_equal(vblk_drv_vq_num_free(&q->vq), nfree - need);
            r->busy = true;
            busy++;
        }
        if (rnd(&seed) % 3)
            vblk_drv_vq_kick_prepare(&q->vq);
        while (npend < NREQ && fdev_pop(&q->d, &pend[npend]))
            npend++;
        for (unsigned k = rnd(&seed) % (npend + 1); k > 0; k--) {
            unsigned j = rnd(&seed) % npend;

            fdev_push(&q->d, &pend[j], serve(&pend[j]));
            pend[j] = pend[--npend];
        }
        busy -= reap(q);
    }
    vblk_drv_vq_kick_prepare(&q->vq);
    while (npend > 0) {
        fdev_push(&q->d, &pend[npend - 1], serve(&pend[npend - 1]));
        npend--;
    }
    serve_all(q);
    busy -= reap(q);
    assert_int_equal(busy, 0);
    assert_int_equal(vblk_drv_vq_num_free(&q->vq), cfg->size);
}

static void test_recycle(void **state)
{
    struct q q;

    q_open(&q, *state);
    run_recycle_on(&q, 20000, 1);
    q_close(&q);
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

/* No list longer than 2^15 elements, even with room in the indirect table. */
static void test_indirect_max(void **state)
{
    struct vblk_drv_vq_config cfg = {
        .size = 1, .packed = true, .indirect = true, .indirect_max = 65535};
    static struct vblk_iov iov[32769];
    static uint8_t b;
    struct q q;
    (void)state;

    for (unsigned k = 0; k < 32769; k++)
        iov[k] = (struct vblk_iov){&b, 1};
    q_open(&q, &cfg);
    assert_int_equal(vblk_drv_vq_add(&q.vq, iov, 32769, NULL, 0, NULL, true), -EINVAL);
    assert_int_equal(vblk_drv_vq_add(&q.vq, iov, 16384, iov, 16385, NULL, true), -EINVAL);
    assert_int_equal(vblk_drv_vq_add(&q.vq, iov, 32768, NULL, 0, NULL, true), 0);
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), 0);
    q_close(&q);
}

/* Drains the device and the used ring; used buffers here carry no token. */
static void drain(struct q *q)
{
    serve_all(q);
    while (vblk_drv_vq_get_used(&q->vq, NULL, NULL) == 1)
        ;
}

static int add_singles(struct q *q, unsigned n)
{
    static uint8_t b[1];
    struct vblk_iov iov = {b, 1};

    for (unsigned k = 0; k < n; k++)
        if (vblk_drv_vq_add(&q->vq, &iov, 1, NULL, 0, NULL, false) != 0)
            return -1;
    return 0;
}

/* Split: publishes @p n buffers with avail_event = old idx + @p off. */
static bool split_kick_case(struct q *q, unsigned n, int off)
{
    struct vblk_split_avail *av = (void *)q->d.drv;
    uint16_t *avail_event = (uint16_t *)(void *)(q->d.dev + 4 + 8 * q->cfg.size);
    uint16_t old = av->idx;
    bool kick;

    *avail_event = (uint16_t)(old + off);
    assert_int_equal(add_singles(q, n), 0);
    assert_int_equal(av->idx, old); /* not published before the kick */
    kick = vblk_drv_vq_kick_prepare(&q->vq);
    assert_int_equal(av->idx, (uint16_t)(old + n));
    drain(q);
    return kick;
}

static void split_event_round(struct q *q)
{
    static const int offs[] = {-100, -2, -1, 0, 1, 2, 3, 4, 100};

    for (unsigned n = 1; n <= 4; n++)
        for (unsigned k = 0; k < sizeof(offs) / sizeof(offs[0]); k++)
            assert_int_equal(split_kick_case(q, n, offs[k]), offs[k] >= 0 && offs[k] < (int)n);
}

static void test_split_kick(void **state)
{
    struct vblk_drv_vq_config cfg = {.size = 8, .event_idx = true, .addr_delta = DELTA};
    struct vblk_split_used *u;
    struct q q;
    (void)state;

    q_open(&q, &cfg);
    u = (void *)q.d.dev;
    split_event_round(&q);
    /* With EVENT_IDX the NO_NOTIFY bit is ignored (virtio 1.2 2.7.10). */
    u->flags = VBLK_USED_F_NO_NOTIFY;
    assert_true(split_kick_case(&q, 1, 0));
    /* Same boundaries with batches that cross 65535 -> 0. */
    while (((struct vblk_split_avail *)(void *)q.d.drv)->idx != 65530) {
        assert_int_equal(add_singles(&q, 1), 0);
        vblk_drv_vq_kick_prepare(&q.vq);
        drain(&q);
    }
    for (unsigned r = 0; r < 3; r++)
        split_event_round(&q);
    q_close(&q);

    /* Flags form: NO_NOTIFY decides, avail_event is ignored. */
    cfg.event_idx = false;
    q_open(&q, &cfg);
    u = (void *)q.d.dev;
    u->flags = VBLK_USED_F_NO_NOTIFY;
    assert_false(split_kick_case(&q, 2, 0));
    u->flags = 0;
    assert_true(split_kick_case(&q, 2, -5));
    q_close(&q);
}

/* Packed: publishes @p n slots; the device event names (old + @p off). */
static bool packed_kick_case(struct q *q, unsigned n, int off, uint16_t evflags)
{
    struct vblk_packed_event *ev = (void *)q->d.dev;
    int pos = q->d.avail + off;
    unsigned wrap = q->d.avail_wrap;
    bool kick;

    for (; pos < 0; pos += q->cfg.size)
        wrap ^= 1;
    for (; pos >= q->cfg.size; pos -= q->cfg.size)
        wrap ^= 1;
    ev->off_wrap = vblk_off_wrap((uint16_t)pos, (uint8_t)wrap);
    ev->flags = evflags;
    assert_int_equal(add_singles(q, n), 0);
    kick = vblk_drv_vq_kick_prepare(&q->vq);
    drain(q);
    return kick;
}

static void test_packed_kick(void **state)
{
    struct vblk_drv_vq_config cfg = {.size = 5, .packed = true, .event_idx = true};
    struct q q;
    (void)state;

    q_open(&q, &cfg);
    for (unsigned r = 0; r < 7; r++) {
        for (int n = 1; n <= 5; n++) {
            const int offs[] = {-5, -1, 0, n / 2, n - 1, n, 5};

            for (unsigned k = 0; k < sizeof(offs) / sizeof(offs[0]); k++)
                assert_int_equal(packed_kick_case(&q, (unsigned)n, offs[k], VBLK_EVENT_F_DESC),
                                 offs[k] >= 0 && offs[k] < n);
        }
        assert_false(packed_kick_case(&q, 2, 0, VBLK_EVENT_F_DISABLE));
        assert_true(packed_kick_case(&q, 2, 7, VBLK_EVENT_F_ENABLE));
        assert_true(packed_kick_case(&q, 1, 0, 3)); /* reserved value: kick */
    }
    q_close(&q);

    /* Without EVENT_IDX a DESC value is not meaningful: kick. */
    cfg.event_idx = false;
    q_open(&q, &cfg);
    assert_true(packed_kick_case(&q, 1, 3, VBLK_EVENT_F_DESC));
    assert_false(packed_kick_case(&q, 1, 0, VBLK_EVENT_F_DISABLE));
    assert_true(packed_kick_case(&q, 1, 0, VBLK_EVENT_F_ENABLE));
    q_close(&q);
}

static void test_cb_split(void **state)
{
    struct vblk_drv_vq_config cfg = {.size = 8};
    struct vblk_split_avail *av;
    uint16_t *used_event;
    struct q q;
    (void)state;

    q_open(&q, &cfg);
    av = (void *)q.d.drv;
    assert_false(vblk_drv_vq_enable_cb(&q.vq, false));
    assert_int_equal(av->flags, VBLK_AVAIL_F_NO_INTERRUPT);
    assert_false(vblk_drv_vq_enable_cb(&q.vq, true));
    assert_int_equal(av->flags, 0);
    add_singles(&q, 1);
    vblk_drv_vq_kick_prepare(&q.vq);
    serve_all(&q);
    assert_true(vblk_drv_vq_enable_cb(&q.vq, false));
    assert_true(vblk_drv_vq_enable_cb(&q.vq, true));
    q_close(&q);

    cfg.event_idx = true;
    q_open(&q, &cfg);
    av = (void *)q.d.drv;
    used_event = &av->ring[cfg.size];
    assert_int_equal(*used_event, 0);
    add_singles(&q, 2);
    vblk_drv_vq_kick_prepare(&q.vq);
    serve_all(&q);
    assert_int_equal(vblk_drv_vq_get_used(&q.vq, NULL, NULL), 1);
    assert_int_equal(*used_event, 1); /* next entry */
    assert_true(vblk_drv_vq_enable_cb(&q.vq, false));
    assert_int_equal(*used_event, 0); /* behind: not reached for 2^16 entries */
    assert_int_equal(av->flags, 0);   /* virtio 1.2 2.7.7.1 */
    assert_int_equal(vblk_drv_vq_get_used(&q.vq, NULL, NULL), 1);
    assert_int_equal(*used_event, 0);
    assert_false(vblk_drv_vq_enable_cb(&q.vq, true));
    assert_int_equal(*used_event, 2);
    q_close(&q);
}

static void test_cb_packed(void **state)
{
    struct vblk_drv_vq_config cfg = {.size = 5, .packed = true};
    uint8_t b[4];
    struct vblk_iov iov[3] = {{b, 1}, {b + 1, 1}, {b + 2, 1}};
    struct vblk_packed_event *ev;
    struct q q;
    (void)state;

    q_open(&q, &cfg);
    ev = (void *)q.d.drv;
    assert_int_equal(ev->flags, VBLK_EVENT_F_ENABLE);
    assert_false(vblk_drv_vq_enable_cb(&q.vq, false));
    assert_int_equal(ev->flags, VBLK_EVENT_F_DISABLE);
    add_singles(&q, 1);
    vblk_drv_vq_kick_prepare(&q.vq);
    serve_all(&q);
    assert_true(vblk_drv_vq_enable_cb(&q.vq, true));
    assert_int_equal(ev->flags, VBLK_EVENT_F_ENABLE);
    q_close(&q);

    cfg.event_idx = true;
    q_open(&q, &cfg);
    ev = (void *)q.d.drv;
    assert_int_equal(ev->flags, VBLK_EVENT_F_DESC);
    assert_int_equal(ev->off_wrap, 0x8000);
    assert_int_equal(vblk_drv_vq_add(&q.vq, iov, 3, NULL, 0, NULL, false), 0);
    add_singles(&q, 1);
    vblk_drv_vq_kick_prepare(&q.vq);
    serve_all(&q);
    assert_int_equal(vblk_drv_vq_get_used(&q.vq, NULL, NULL), 1);
    assert_int_equal(ev->off_wrap, 0x8000 | 3); /* skipped the 3-slot chain */
    assert_true(vblk_drv_vq_enable_cb(&q.vq, false));
    assert_int_equal(ev->flags, VBLK_EVENT_F_DISABLE);
    assert_int_equal(vblk_drv_vq_get_used(&q.vq, NULL, NULL), 1);
    assert_int_equal(ev->off_wrap, 0x8000 | 3);
    assert_false(vblk_drv_vq_enable_cb(&q.vq, true));
    assert_int_equal(ev->flags, VBLK_EVENT_F_DESC);
    assert_int_equal(ev->off_wrap, 0x8000 | 4);
    /* A 2-slot chain over the wrap: next used position is 1, wrap 0. */
    assert_int_equal(vblk_drv_vq_add(&q.vq, iov, 2, NULL, 0, NULL, false), 0);
    vblk_drv_vq_kick_prepare(&q.vq);
    serve_all(&q);
    assert_int_equal(vblk_drv_vq_get_used(&q.vq, NULL, NULL), 1);
    assert_int_equal(ev->off_wrap, 1);
    q_close(&q);
}

/* -EINVAL / -ENOSPC leave no trace in the ring or the counters. */
static void test_limits(void **state)
{
    struct vblk_drv_vq_config *cfg = *state;
    static uint8_t b[16];
    struct vblk_iov iov[9], big[2];
    struct chain c;
    struct q q;

    for (unsigned k = 0; k < 9; k++)
        iov[k] = (struct vblk_iov){b + k, 1};
    q_open(&q, cfg);
    assert_int_equal(vblk_drv_vq_add(&q.vq, NULL, 0, NULL, 0, NULL, false), -EINVAL);
    assert_int_equal(vblk_drv_vq_add(&q.vq, NULL, 1, NULL, 0, NULL, false), -EINVAL);
    assert_int_equal(vblk_drv_vq_add(&q.vq, iov, 5, iov + 5, 4, NULL, false), -EINVAL);
#if SIZE_MAX > UINT32_MAX
    big[0] = (struct vblk_iov){b, (size_t)UINT32_MAX + 1};
    assert_int_equal(vblk_drv_vq_add(&q.vq, big, 1, NULL, 0, NULL, false), -EINVAL);
#endif
    big[0] = big[1] = (struct vblk_iov){b, UINT32_MAX};
    assert_int_equal(vblk_drv_vq_add(&q.vq, big, 1, big + 1, 1, NULL, false), -EINVAL);
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), cfg->size);

    assert_int_equal(add_singles(&q, cfg->size), 0);
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), 0);
    assert_int_equal(vblk_drv_vq_add(&q.vq, iov, 1, NULL, 0, NULL, false), -ENOSPC);
    vblk_drv_vq_kick_prepare(&q.vq);
    assert_true(fdev_pop(&q.d, &c));
    fdev_push(&q.d, &c, 0);
    assert_int_equal(vblk_drv_vq_get_used(&q.vq, NULL, NULL), 1);
    assert_int_equal(vblk_drv_vq_add(&q.vq, iov, 1, iov + 1, 1, NULL, false), -ENOSPC);
    assert_int_equal(vblk_drv_vq_add(&q.vq, iov, 1, NULL, 0, NULL, false), 0);
    vblk_drv_vq_kick_prepare(&q.vq);
    for (unsigned k = 1; k < cfg->size; k++) {
        assert_true(fdev_pop(&q.d, &c));
        assert_int_equal(c.n, 1);
    }
    assert_true(fdev_pop(&q.d, &c)); /* the one added after -ENOSPC */
    assert_false(fdev_pop(&q.d, &c));
    q_close(&q);
}

static int push_and_get(struct q *q, uint32_t id, uint16_t skip, uint32_t len, bool wflag,
                        void **tok, uint32_t *outlen)
{
    fdev_push_raw(&q->d, id, skip, len, wflag);
    return vblk_drv_vq_get_used(&q->vq, tok, outlen);
}

static void test_eproto_split(void **state)
{
    struct vblk_drv_vq_config cfg = {.size = 8, .addr_delta = DELTA};
    static struct req a, b;
    struct chain ca, cb;
    uint16_t inner;
    uint32_t len;
    void *tok;
    struct q q;
    (void)state;

    q_open(&q, &cfg);
    req_fill(&a, 1, 1, 1);
    req_fill(&b, 2, 1, 2);
    assert_int_equal(req_add(&q, &a, false), 0);
    assert_int_equal(req_add(&q, &b, false), 0);
    vblk_drv_vq_kick_prepare(&q.vq);
    assert_true(fdev_pop(&q.d, &ca) && fdev_pop(&q.d, &cb));
    inner = ((struct vblk_split_desc *)(void *)q.d.desc)[cb.id].next;

    /* Out of range, far out of range, inside a chain, never added. */
    const uint32_t bad[] = {8, 1000000, inner, 7};
    for (unsigned k = 0; k < 4; k++) {
        tok = &tok;
        len = 99;
        assert_int_equal(push_and_get(&q, bad[k], 0, 0, false, &tok, &len), -EPROTO);
        assert_null(tok);
        assert_int_equal(len, 0);
        assert_int_equal(vblk_drv_vq_num_free(&q.vq), 3);
    }
    /* Too long: the buffer is released and named. */
    assert_int_equal(push_and_get(&q, ca.id, 0, a.in_len + 1, true, &tok, &len), -EPROTO);
    assert_ptr_equal(tok, &a);
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), 5);
    /* Used twice. */
    assert_int_equal(push_and_get(&q, ca.id, 0, 0, true, &tok, &len), -EPROTO);
    assert_null(tok);
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), 5);
    b.busy = true;
    fdev_push(&q.d, &cb, serve(&cb));
    assert_int_equal(reap(&q), 1);
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), 8);

    /* The free list is intact: fill the ring with chains again and again. */
    for (unsigned it = 0; it < 500; it++) {
        static struct req r[8];
        unsigned n = 0;

        for (; n < 8; n++) {
            req_fill(&r[n], 1 + n % 2, n % 3, (uint8_t)(it + n));
            if (req_add(&q, &r[n], false) != 0)
                break;
            r[n].busy = true;
        }
        assert_true(vblk_drv_vq_num_free(&q.vq) < 4);
        vblk_drv_vq_kick_prepare(&q.vq);
        serve_all(&q);
        assert_int_equal(reap(&q), n);
        assert_int_equal(vblk_drv_vq_num_free(&q.vq), 8);
    }
    q_close(&q);
}

/* With EVENT_IDX the driver asks for the position right after what it consumed. */
static bool event_tracks_device(const struct q *q)
{
    const struct vblk_packed_event *ev = (const void *)q->d.drv;

    return ev->flags == VBLK_EVENT_F_DESC &&
           ev->off_wrap == vblk_off_wrap(q->d.ring.dev_used, q->d.ring.dev_wrap);
}

static void test_eproto_packed(void **state)
{
    struct vblk_drv_vq_config cfg = {
        .size = 5, .packed = true, .event_idx = true, .addr_delta = DELTA};
    static struct req a, b, c;
    struct chain ca, cb, cc;
    uint32_t len;
    void *tok;
    struct q q;
    (void)state;

    q_open(&q, &cfg);
    req_fill(&a, 1, 1, 1);
    req_fill(&b, 1, 0, 2);
    assert_int_equal(req_add(&q, &a, false), 0);
    assert_int_equal(req_add(&q, &b, false), 0);
    vblk_drv_vq_kick_prepare(&q.vq);
    assert_true(fdev_pop(&q.d, &ca) && fdev_pop(&q.d, &cb));
    /* A readable-only buffer cannot have bytes written into it. */
    assert_int_equal(push_and_get(&q, cb.id, 1, 1, true, &tok, &len), -EPROTO);
    assert_ptr_equal(tok, &b);
    assert_int_equal(len, 0);
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), 3);
    /* virtio 1.2 2.8.4: without WRITE the length is ignored. */
    assert_int_equal(push_and_get(&q, ca.id, 2, 1000, false, &tok, &len), 1);
    assert_ptr_equal(tok, &a);
    assert_int_equal(len, 0);
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), 5);
    run_recycle_on(&q, 300, 7);
    /* One byte too many. */
    assert_int_equal(req_add(&q, &a, false), 0);
    vblk_drv_vq_kick_prepare(&q.vq);
    assert_true(fdev_pop(&q.d, &ca));
    assert_int_equal(push_and_get(&q, ca.id, 2, a.in_len + 1, true, &tok, &len), -EPROTO);
    assert_ptr_equal(tok, &a);
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), 5);

    /* Bad ids: out of range, not in flight, used twice. Nothing is freed. */
    req_fill(&c, 1, 1, 3);
    assert_int_equal(req_add(&q, &c, false), 0);
    vblk_drv_vq_kick_prepare(&q.vq);
    assert_true(fdev_pop(&q.d, &cc));
    assert_int_equal(push_and_get(&q, 5, 1, 0, false, &tok, &len), -EPROTO);
    assert_null(tok);
    assert_true(event_tracks_device(&q));
    assert_int_equal(push_and_get(&q, 0xffff, 1, 0, false, &tok, &len), -EPROTO);
    assert_int_equal(push_and_get(&q, (uint16_t)((cc.id + 1) % 5), 1, 0, false, &tok, &len),
                     -EPROTO);
    assert_null(tok);
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), 3);
    assert_int_equal(push_and_get(&q, cc.id, 2, 0, false, &tok, &len), 1);
    assert_ptr_equal(tok, &c);
    /* Size unknown once freed: both sides skip one slot. */
    assert_int_equal(push_and_get(&q, cc.id, 1, 0, false, &tok, &len), -EPROTO);
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), 5);
    assert_true(event_tracks_device(&q));
    q_close(&q);
}

static void test_blk(void **state)
{
    static const struct {
        uint32_t type;
        unsigned ndata;
        bool wr;
    } cases[] = {
        {VBLK_T_IN, 2, true},
        {VBLK_T_OUT, 2, false},
        {VBLK_T_FLUSH, 0, false},
        {VBLK_T_GET_ID, 1, true},
        {VBLK_T_GET_LIFETIME, 1, true},
        {VBLK_T_DISCARD, 1, false},
        {VBLK_T_WRITE_ZEROES, 1, false},
        {VBLK_T_SECURE_ERASE, 1, false},
    };
    struct vblk_drv_vq_config *cfg = *state;
    static _Alignas(16) struct vblk_drv_blk_frame frame;
    static uint8_t data[2][512];
    struct vblk_iov iov[2] = {{data[0], 512}, {data[1], 512}};
    struct chain c;
    struct q q;

    q_open(&q, cfg);
    assert_int_equal(vblk_drv_blk_add(&q.vq, NULL, VBLK_T_IN, 0, iov, 1, NULL, false), -EINVAL);
    for (unsigned ind = 0; ind < 2; ind++) {
        for (unsigned k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
            uint64_t sector = 0x1122334455667788ull + k;
            unsigned n = 2 + cases[k].ndata;
            uint8_t hdr[16] = {0};
            uint32_t want = cases[k].wr ? 512 * cases[k].ndata + 1 : 1;

            for (unsigned i = 0; i < 4; i++)
                hdr[i] = (uint8_t)(cases[k].type >> (8 * i));
            for (unsigned i = 0; i < 8; i++)
                hdr[8 + i] = (uint8_t)(sector >> (8 * i));
            memset(&frame, 0x5a, sizeof(frame));
            /* FLUSH ignores the data it is given. */
            assert_int_equal(vblk_drv_blk_add(&q.vq, &frame, cases[k].type, sector, iov,
                                              cases[k].type == VBLK_T_FLUSH ? 2 : cases[k].ndata,
                                              &frame, ind),
                             0);
            assert_int_equal(frame.status, 0xff);
            assert_memory_equal(&frame.hdr, hdr, 16);
            vblk_drv_vq_kick_prepare(&q.vq);
            assert_true(fdev_pop(&q.d, &c));
            assert_int_equal(c.n, n);
            assert_int_equal(c.indirect, ind && cfg->indirect);
            assert_ptr_equal(c.s[0].p, &frame.hdr);
            assert_int_equal(c.s[0].len, 16);
            assert_false(c.s[0].write);
            for (unsigned i = 0; i < cases[k].ndata; i++) {
                assert_ptr_equal(c.s[1 + i].p, data[i]);
                assert_int_equal(c.s[1 + i].write, cases[k].wr);
            }
            assert_ptr_equal(c.s[n - 1].p, &frame.status);
            assert_int_equal(c.s[n - 1].len, 1);
            assert_true(c.s[n - 1].write);
            c.s[n - 1].p[0] = VBLK_S_OK;
            fdev_push(&q.d, &c, want);
            assert_int_equal(reap_one_len(&q, &frame), want);
            assert_int_equal(frame.status, VBLK_S_OK);
        }
    }
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), cfg->size);
    q_close(&q);
}

/* ---- the device on another thread ------------------------------------- */

struct dev_thread {
    struct fdev *d;
    int stop;
};

static void *dev_main(void *arg)
{
    struct dev_thread *t = arg;
    struct chain c;

    while (!__atomic_load_n(&t->stop, __ATOMIC_ACQUIRE)) {
        if (fdev_pop(t->d, &c))
            fdev_push(t->d, &c, serve(&c));
        else
            sched_yield(); /* the CI machine may have fewer cores than threads */
    }
    return NULL;
}

static double now(void)
{
    struct timespec ts;

    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_threaded(void **state)
{
    /* Static: if an assertion fails, the device thread must not see a dead stack. */
    static struct req reqs[NREQ];
    static struct dev_thread t;
    static struct q q;
    const unsigned total = 20000;
    unsigned submitted = 0, done = 0;
    uint32_t seed = 11;
    double deadline = now() + 30;
    pthread_t th;

    memset(reqs, 0, sizeof(reqs));
    q_open(&q, *state);
    t = (struct dev_thread){.d = &q.d};
    assert_int_equal(pthread_create(&th, NULL, dev_main, &t), 0);
    while (done < total) {
        unsigned got;

        while (submitted < total) {
            struct req *r = &reqs[submitted % NREQ];
            int rc;

            if (r->busy)
                break;
            req_fill(r, 1 + rnd(&seed) % 2, rnd(&seed) % 2, (uint8_t)submitted);
            rc = req_add(&q, r, submitted % 3 == 0);
            if (rc == -ENOSPC)
                break;
            assert_int_equal(rc, 0);
            r->busy = true;
            submitted++;
        }
        vblk_drv_vq_kick_prepare(&q.vq);
        got = reap(&q);
        done += got;
        if (!got) {
            assert_true(now() < deadline);
            sched_yield();
        }
    }
    __atomic_store_n(&t.stop, 1, __ATOMIC_RELEASE);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(vblk_drv_vq_num_free(&q.vq), q.cfg.size);
    q_close(&q);
}

#define PARAM(f, c) cmocka_unit_test_prestate(f, &(c))

int main(void)
{
    static struct vblk_drv_vq_config c_split_ev = {
        .size = 16, .event_idx = true, .indirect = true, .indirect_max = 4};
    static struct vblk_drv_vq_config c_packed_ev = {
        .size = 7, .packed = true, .event_idx = true, .indirect = true, .indirect_max = 4};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_layout),
        PARAM(test_roundtrip, c_split),
        PARAM(test_roundtrip, c_packed),
        PARAM(test_roundtrip, c_packed5),
        PARAM(test_recycle, c_split),
        PARAM(test_recycle, c_split_ind),
        PARAM(test_recycle, c_split_ev),
        PARAM(test_recycle, c_packed),
        PARAM(test_recycle, c_packed3_ind),
        PARAM(test_recycle, c_packed5),
        PARAM(test_recycle, c_packed5_ind),
        PARAM(test_recycle, c_packed_ev),
        cmocka_unit_test(test_split_wrap),
        PARAM(test_packed_wrap, c_packed3_ind),
        PARAM(test_packed_wrap, c_packed5),
        PARAM(test_packed_wrap, c_packed),
        PARAM(test_indirect, c_split_ind),
        PARAM(test_indirect, c_packed3_ind),
        PARAM(test_indirect, c_packed5_ind),
        cmocka_unit_test(test_indirect_max),
        cmocka_unit_test(test_split_kick),
        cmocka_unit_test(test_packed_kick),
        cmocka_unit_test(test_cb_split),
        cmocka_unit_test(test_cb_packed),
        PARAM(test_limits, c_split),
        PARAM(test_limits, c_packed),
        PARAM(test_limits, c_packed5),
        cmocka_unit_test(test_eproto_split),
        cmocka_unit_test(test_eproto_packed),
        PARAM(test_blk, c_split_ind),
        PARAM(test_blk, c_packed5_ind),
        PARAM(test_blk, c_packed),
        PARAM(test_threaded, c_split_ev),
        PARAM(test_threaded, c_packed_ev),
        PARAM(test_threaded, c_packed3_ind),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
