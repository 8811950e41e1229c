/* SPDX-License-Identifier: MIT */
/* The attack harness: the RAM disk, the core device under attack (attack_harness.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attack_harness.h"

uint8_t atk_disk_io(struct atk_disk *b, struct vblk_req *r)
{
    return ram_disk_io(b->disk, ATK_SECTORS, false, r);
}

static void atk_disk_submit(void *be, void *qctx, struct vblk_req *r)
{
    struct atk_disk *b = be;
    (void)qctx;
    b->nsubmit++;
    b->last = *r;
    if (b->hold) {
        assert_true(b->nheld < ATK_HELD);
        b->held[b->nheld++] = r;
        return;
    }
    vblk_req_complete(r, atk_disk_io(b, r));
}

static int atk_disk_start(void *be, uint16_t qidx, void **qctx)
{
    (void)qidx;
    *qctx = be;
    return 0;
}

void atk_disk_init(struct atk_disk *b, struct vblk_backend *out)
{
    memset(b, 0, sizeof(*b));
    b->ops = (struct vblk_backend_ops){
        .version = VBLK_BACKEND_OPS_V1,
        .caps = VBLK_BACKEND_CAP_FLUSH | VBLK_BACKEND_CAP_DISCARD | VBLK_BACKEND_CAP_WRITE_ZEROES |
                VBLK_BACKEND_CAP_SECURE_ERASE,
        .name = "attack-disk",
        .queue_start = atk_disk_start,
        .submit = atk_disk_submit,
    };
    b->disk = malloc(ATK_DISK);
    assert_non_null(b->disk);
    for (unsigned i = 0; i < ATK_DISK; i++)
        b->disk[i] = (uint8_t)(i * 13 + i / 512);
    *out = (struct vblk_backend){&b->ops, b, ATK_DISK};
}

void atk_disk_release(struct atk_disk *b, uint8_t status)
{
    for (unsigned i = 0; i < b->nheld; i++)
        vblk_req_complete(b->held[i], status == VBLK_S_OK ? atk_disk_io(b, b->held[i]) : status);
    b->nheld = 0;
}

static void atk_on_notify(void *opaque)
{
    ((struct atk *)opaque)->notifies++;
}

struct atk *atk_new(bool packed)
{
    struct atk *a = calloc(1, sizeof(*a));
    assert_non_null(a);
    a->ram.host = aligned_alloc(4096, ATK_MEM_LEN);
    assert_non_null(a->ram.host);
    memset(a->ram.host, 0, ATK_MEM_LEN);
    a->ram.gpa = ATK_GPA;
    a->ram.len = ATK_MEM_LEN;
    a->ram.bump = ATK_DATA;
    vblk_mem_init(&a->mem);
    assert_int_equal(vblk_mem_add(&a->mem, ATK_GPA, ATK_MEM_LEN, a->ram.host, NULL), 0);
    atk_ring_init(&a->ring, a->ram.host, ATK_GPA, ATK_QSIZE, packed);
    atk_disk_init(&a->bd, &a->be);
    vblk_dev_params_default(&a->p, ATK_DISK);
    a->p.seg_max = 8;
    a->p.max_discard_sectors = 64;
    a->p.max_discard_seg = 2;
    a->p.max_write_zeroes_sectors = 64;
    a->p.max_write_zeroes_seg = 2;
    memcpy(a->p.serial, "ATTACK-SERIAL-000001", VBLK_ID_BYTES);
    a->drop = VBLK_BIT(VBLK_F_IN_ORDER);
    if (!packed)
        a->drop |= VBLK_BIT(VBLK_F_RING_PACKED);
    return a;
}

struct vblk_queue_params atk_qparams(struct atk *a)
{
    return (struct vblk_queue_params){
        .index = 0,
        .size = a->ring.size,
        .addrs = atk_ring_addrs(&a->ring),
        .notify = atk_on_notify,
        .notify_opaque = a,
    };
}

void atk_start(struct atk *a)
{
    assert_int_equal(vblk_dev_init(&a->dev, &a->p, &a->be), 0);
    assert_int_equal(vblk_dev_set_features(&a->dev, vblk_dev_features(&a->dev) & ~a->drop), 0);
    size_t len = vblk_queue_mem_size(&a->dev, a->ring.size);
    a->pool = aligned_alloc(16, (len + 15) & ~(size_t)15);
    assert_non_null(a->pool);
    struct vblk_queue_params qp = atk_qparams(a);
    assert_int_equal(vblk_queue_init(&a->q, &a->dev, &a->mem, &qp, a->pool, len), 0);
    a->started = true;
}

struct atk *atk_up(bool packed)
{
    struct atk *a = atk_new(packed);
    atk_start(a);
    return a;
}

void atk_free(struct atk *a)
{
    if (a->started) {
        atk_disk_release(&a->bd, VBLK_S_IOERR);
        (void)vblk_queue_process(&a->q, 0);
        vblk_queue_stop(&a->q);
        assert_int_equal(vblk_queue_inflight(&a->q), 0);
        assert_int_equal(vblk_queue_destroy(&a->q), 0);
    }
    free(a->pool);
    free(a->bd.disk);
    free(a->ram.host);
    free(a);
}

uint64_t atk_galloc(struct atk *a, size_t len, int fill)
{
    return guest_alloc(&a->ram, len, fill);
}

void *atk_host(struct atk *a, uint64_t gpa)
{
    return guest_host(&a->ram, gpa);
}

uint64_t atk_hdr(struct atk *a, uint32_t type, uint64_t sector)
{
    return guest_hdr(&a->ram, type, sector);
}

uint64_t atk_status(struct atk *a)
{
    return atk_galloc(a, 1, 0xee);
}

uint8_t atk_status_of(struct atk *a, uint64_t st)
{
    return *(uint8_t *)atk_host(a, st);
}

uint64_t atk_rq(struct atk *a, uint32_t type, uint64_t sector, uint64_t data, uint32_t len,
                uint16_t dflags)
{
    uint64_t st = atk_status(a);
    struct atk_seg s[3] = {{atk_hdr(a, type, sector), 16, 0}};
    unsigned n = 1;
    if (len)
        s[n++] = (struct atk_seg){data, len, dflags};
    s[n++] = (struct atk_seg){st, 1, ATK_W};
    atk_post(&a->ring, s, n);
    return st;
}

int atk_process(struct atk *a)
{
    return vblk_queue_process(&a->q, 0);
}

void atk_expect_status(struct atk *a, uint64_t st, uint8_t want)
{
    assert_true(atk_process(a) >= 0);
    assert_false(vblk_queue_broken(&a->q));
    uint32_t len = 0;
    assert_int_equal(atk_used(&a->ring, NULL, &len), 1);
    assert_int_equal(atk_status_of(a, st), want);
    if (want != VBLK_S_OK)
        assert_int_equal(len, 1);
}

void atk_expect_broken(struct atk *a)
{
    unsigned before = a->bd.nsubmit;
    assert_int_equal(atk_process(a), -EIO);
    assert_true(vblk_queue_broken(&a->q));
    assert_int_equal(vblk_vq_stats(vblk_queue_vq(&a->q))->broken, 1);
    assert_int_equal(atk_used(&a->ring, NULL, NULL), 0);
    assert_int_equal(a->bd.nsubmit, before);
    assert_int_equal(atk_process(a), -EIO);
}

uint64_t atk_table(struct atk *a, const struct atk_seg *s, unsigned n)
{
    uint64_t g = atk_galloc(a, 16u * n, 0);
    atk_table_write(a->ring.packed, atk_host(a, g), s, n);
    return g;
}

uint64_t atk_good_table(struct atk *a, uint64_t *st)
{
    *st = atk_status(a);
    struct atk_seg s[3] = {
        {atk_hdr(a, VBLK_T_IN, 0), 16, 0}, {atk_galloc(a, 512, 0), 512, ATK_W}, {*st, 1, ATK_W}};
    return atk_table(a, s, 3);
}

void *atk_late_completion(void *arg)
{
    struct atk_late *l = arg;
    struct timespec ts = {0, (long)l->delay_ms * 1000000L};
    nanosleep(&ts, NULL);
    if (atomic_load(&l->released)) {
        /* The request's memory is gone: touching it would be a
         * use-after-free, so only record the fact. */
        atomic_store(&l->too_early, 1);
        return NULL;
    }
    vblk_req_complete_async(l->req, VBLK_S_OK);
    return NULL;
}
