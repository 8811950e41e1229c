/* SPDX-License-Identifier: MIT */
/*
 * Shared by the device-model tests (test_blk.c, test_blk_queue.c): a RAM
 * disk backend that counts what it is asked to do and can hold requests to
 * complete them later, and a driver that writes ring descriptors (with the
 * shared ring writer, ring_writer.h) and request buffers straight into
 * mapped heap memory (virtio 1.2 sections 2.7 and 5.2.6). Include after
 * cmocka.h.
 */
#ifndef VBLK_TEST_BLK_HARNESS_H
#define VBLK_TEST_BLK_HARNESS_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "virtioblk/advanced.h"
#include "virtioblk/blk.h"
#include "ram_harness.h"
#include "ring_writer.h"

#define GPA       0x80000000ULL
#define MEM_LEN   (1u << 20)
#define AVAIL_OFF 0x1000u
#define USED_OFF  0x2000u
#define DATA_OFF  0x4000u
#define SECTORS   128u
#define DISK      (SECTORS * 512u)
#define QSIZE     16u
#define SERIAL    "SERIAL-0123456789ABC" /* exactly 20 bytes */
#define W         VBLK_DESC_F_WRITE
#define ALL_CAPS                                                                                   \
    (VBLK_BACKEND_CAP_FLUSH | VBLK_BACKEND_CAP_DISCARD | VBLK_BACKEND_CAP_WRITE_ZEROES |           \
     VBLK_BACKEND_CAP_SECURE_ERASE)
#define F(b) VBLK_BIT(VBLK_F_##b)

/* ---- test backend: a RAM disk that counts and can hold requests ---- */

struct tb {
    struct vblk_backend_ops ops;
    uint8_t disk[DISK];
    unsigned nsubmit, nstart, nstop;
    unsigned ntype[16];
    uint32_t last_flags;
    uint32_t last_nranges;
    struct vblk_discard_wz_seg ranges[4];
    bool hold;
    unsigned nheld;
    struct vblk_req *held[64];
};

static inline void tb_submit(void *be, void *qctx, struct vblk_req *r)
{
    struct tb *t = be;
    (void)qctx;
    t->nsubmit++;
    t->ntype[r->type & 15]++;
    t->last_flags = r->flags;
    t->last_nranges = r->nranges;
    for (uint32_t i = 0; i < r->nranges && i < 4; i++)
        t->ranges[i] = r->ranges[i];
    /* The device promises validated ranges; the disk sits inside a larger
     * struct where ASan would not see an overrun, so check here too. */
    if (t->hold)
        t->held[t->nheld++] = r;
    else
        vblk_req_complete(r, ram_disk_io(t->disk, SECTORS, true, r));
}

static inline int tb_start(void *be, uint16_t qidx, void **qctx)
{
    (void)qidx;
    ((struct tb *)be)->nstart++;
    *qctx = be;
    return 0;
}

static inline void tb_stop(void *be, uint16_t qidx, void *qctx)
{
    (void)qidx;
    (void)qctx;
    ((struct tb *)be)->nstop++;
}

/* ---- harness: device, queue and a hand-written split ring ---- */

struct h {
    struct vblk_mem mem;
    struct guest_ram ram; /* [GPA, GPA + MEM_LEN) */
    struct tb tb;
    struct vblk_backend be;
    struct vblk_dev_params p;
    struct vblk_dev dev;
    struct vblk_queue q;
    void *pool;
    uint16_t qsize;       /* queue size for bring_up() (QSIZE by default) */
    struct atk_ring ring; /* the driver's side of queue 0 */
    struct vblk_split_desc *desc;
    struct vblk_split_avail *avail;
    struct vblk_split_used *used;
    unsigned notifies, wakes;
    const struct vblk_queue_hooks *hooks; /* passed to vblk_queue_init() */
    void *hooks_opaque;
};

static inline void on_notify(void *opaque)
{
    ((struct h *)opaque)->notifies++;
}

static inline void on_wake(void *opaque)
{
    __atomic_fetch_add(&((struct h *)opaque)->wakes, 1, __ATOMIC_SEQ_CST);
}

static inline int setup(void **state)
{
    struct h *h = calloc(1, sizeof(*h));
    if (!h || !(h->ram.host = calloc(1, MEM_LEN)))
        return -1;
    h->ram.gpa = GPA;
    h->ram.len = MEM_LEN;
    h->ram.bump = DATA_OFF;
    vblk_mem_init(&h->mem);
    if (vblk_mem_add(&h->mem, GPA, MEM_LEN, h->ram.host, NULL) < 0)
        return -1;
    h->desc = (struct vblk_split_desc *)h->ram.host;
    h->avail = (struct vblk_split_avail *)(h->ram.host + AVAIL_OFF);
    h->used = (struct vblk_split_used *)(h->ram.host + USED_OFF);
    h->qsize = QSIZE;
    atk_ring_init(&h->ring, h->ram.host, GPA, QSIZE, false);
    h->tb.ops = (struct vblk_backend_ops){
        .version = VBLK_BACKEND_OPS_V1,
        .caps = ALL_CAPS,
        .name = "test",
        .queue_start = tb_start,
        .queue_stop = tb_stop,
        .submit = tb_submit,
    };
    for (unsigned i = 0; i < DISK; i++)
        h->tb.disk[i] = (uint8_t)(i * 7 + i / 512);
    h->be = (struct vblk_backend){&h->tb.ops, &h->tb, DISK};
    vblk_dev_params_default(&h->p, DISK);
    memcpy(h->p.serial, SERIAL, VBLK_ID_BYTES);
    h->p.seg_max = 4;
    h->p.max_discard_sectors = 64;
    h->p.max_discard_seg = 2;
    h->p.max_write_zeroes_sectors = 64;
    h->p.max_write_zeroes_seg = 2;
    h->p.max_secure_erase_sectors = 32;
    h->p.max_secure_erase_seg = 1;
    *state = h;
    return 0;
}

static inline int teardown(void **state)
{
    struct h *h = *state;
    if (h->pool && !vblk_queue_broken(&h->q))
        assert_int_equal(vblk_queue_destroy(&h->q), 0);
    free(h->pool);
    free(h->ram.host);
    free(h);
    return 0;
}

/* Tears the fixture down and builds a fresh one, for a second
 * configuration inside one test. */
static inline struct h *restart(void **state)
{
    teardown(state);
    assert_int_equal(setup(state), 0);
    return *state;
}

static inline void dev_up(struct h *h)
{
    assert_int_equal(vblk_dev_init(&h->dev, &h->p, &h->be), 0);
}

/* Negotiates @features (offer minus @drop if @features is 0) and starts
 * queue 0 of h->qsize entries: a split ring at GPA / +AVAIL_OFF /
 * +USED_OFF, or with RING_PACKED the descriptor ring and the driver and
 * device event structures at the same addresses. */
static inline void bring_up(struct h *h, uint64_t features, uint64_t drop)
{
    dev_up(h);
    if (!features)
        features = vblk_dev_features(&h->dev) & ~drop;
    assert_int_equal(vblk_dev_set_features(&h->dev, features), 0);
    if (features & F(RING_PACKED))
        atk_ring_init_areas(&h->ring, h->qsize, true, h->ram.host, h->ram.host + AVAIL_OFF,
                            h->ram.host + USED_OFF, NULL);
    size_t len = vblk_queue_mem_size(&h->dev, h->qsize);
    h->pool = aligned_alloc(16, (len + 15) & ~(size_t)15);
    assert_non_null(h->pool);
    struct vblk_queue_params qp = {
        .size = h->qsize,
        .addrs = {GPA, GPA + AVAIL_OFF, GPA + USED_OFF},
        .notify = on_notify,
        .notify_opaque = h,
        .wake = on_wake,
        .wake_opaque = h,
        .hooks = h->hooks,
        .hooks_opaque = h->hooks_opaque,
    };
    assert_int_equal(vblk_queue_init(&h->q, &h->dev, &h->mem, &qp, h->pool, len), 0);
    assert_int_equal(h->tb.nstart, 1);
}

static inline void up(struct h *h)
{
    bring_up(h, 0, F(RING_PACKED) | F(EVENT_IDX));
}

static inline uint64_t galloc(struct h *h, size_t len, int fill)
{
    return guest_alloc(&h->ram, len, fill);
}

static inline void *hp(struct h *h, uint64_t ga)
{
    return guest_host(&h->ram, ga);
}

static inline uint64_t mkhdr(struct h *h, uint32_t type, uint64_t sector)
{
    return guest_hdr(&h->ram, type, sector);
}

struct seg {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
};

/* Driver: puts @n buffers on the ring as one chain. */
static inline void post(struct h *h, const struct seg *s, unsigned n)
{
    struct atk_seg a[64];
    assert_true(n <= 64);
    for (unsigned i = 0; i < n; i++)
        a[i] = (struct atk_seg){s[i].addr, s[i].len, s[i].flags};
    atk_post(&h->ring, a, n);
}

static inline int process(struct h *h)
{
    return vblk_queue_process(&h->q, 0);
}

/* Driver: takes the next used entry; returns its length. */
static inline uint32_t take_used(struct h *h, uint16_t *id)
{
    uint32_t len = 0;
    assert_int_equal(atk_used(&h->ring, id, &len), 1);
    return len;
}

/* Posts [header][data, if len][status], runs the device, and returns the
 * status byte; *ulen receives the used length. */
static inline int rq(struct h *h, uint32_t type, uint64_t sector, uint64_t data, uint32_t len,
                     uint16_t dflags, uint32_t *ulen)
{
    uint64_t st = galloc(h, 1, 0xff);
    struct seg s[3] = {{mkhdr(h, type, sector), 16, 0}};
    unsigned n = 1;
    if (len)
        s[n++] = (struct seg){data, len, dflags};
    s[n++] = (struct seg){st, 1, W};
    post(h, s, n);
    assert_true(process(h) >= 0);
    uint32_t l = take_used(h, NULL);
    if (ulen)
        *ulen = l;
    return *(uint8_t *)hp(h, st);
}

/* A request with a range payload of @len bytes (@n segments). */
static inline int rq_ranges(struct h *h, uint32_t type, const struct vblk_discard_wz_seg *r,
                            unsigned n, uint32_t len)
{
    uint64_t ga = galloc(h, 16 * n + 16, 0);
    memcpy(hp(h, ga), r, 16 * n);
    return rq(h, type, 0, ga, len ? len : 16 * n, 0, NULL);
}

#endif
