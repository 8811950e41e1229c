/* SPDX-License-Identifier: MIT */
/*
 * Loopback property tests: thousands of randomised requests through real
 * rings (split and packed, direct and indirect chains, scattered buffers),
 * completed out of order by a deferring backend, with every read checked
 * against a model of the disk.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "virtioblk/virtioblk.h"

#define DISK_SECTORS 2048u
#define DISK_BYTES   (DISK_SECTORS * 512u)
#define QD           48
#define MAX_PENDING  256

/* A RAM disk that holds requests back and finishes them in random order. */
struct defer_be {
    uint8_t disk[DISK_BYTES];
    struct vblk_req *pending[MAX_PENDING];
    unsigned npending;
    uint64_t rng;
    unsigned submitted;
};

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void defer_submit(void *ctx, void *qctx, struct vblk_req *req)
{
    (void)qctx;
    struct defer_be *be = ctx;
    assert_true(be->npending < MAX_PENDING);
    be->pending[be->npending++] = req;
    be->submitted++;
}

static void do_io(struct defer_be *be, struct vblk_req *req)
{
    uint64_t off = req->sector * 512;
    if (req->type == VBLK_T_IN || req->type == VBLK_T_OUT) {
        assert_true(off + req->len <= DISK_BYTES);
        for (uint16_t i = 0; i < req->niov; i++) {
            if (req->type == VBLK_T_IN)
                memcpy(req->iov[i].base, be->disk + off, req->iov[i].len);
            else
                memcpy(be->disk + off, req->iov[i].base, req->iov[i].len);
            off += req->iov[i].len;
        }
    } else if (req->type == VBLK_T_WRITE_ZEROES || req->type == VBLK_T_DISCARD) {
        for (uint32_t i = 0; i < req->nranges; i++)
            memset(be->disk + req->ranges[i].sector * 512, 0,
                   (size_t)req->ranges[i].num_sectors * 512);
    }
}

/* Completes a random subset of the pending requests, in random order. */
static void defer_complete_some(struct defer_be *be, struct vblk_queue *q, bool all)
{
    while (be->npending) {
        if (!all && rnd(&be->rng) % 3 == 0)
            break;
        unsigned i = (unsigned)(rnd(&be->rng) % be->npending);
        struct vblk_req *req = be->pending[i];
        be->pending[i] = be->pending[--be->npending];
        do_io(be, req);
        vblk_req_complete(req, VBLK_S_OK);
    }
    vblk_queue_flush(q);
}

static const struct vblk_backend_ops defer_ops = {
    .version = VBLK_BACKEND_OPS_V1,
    .caps = VBLK_BACKEND_CAP_FLUSH | VBLK_BACKEND_CAP_WRITE_ZEROES | VBLK_BACKEND_CAP_DISCARD,
    .name = "defer",
    .submit = defer_submit,
};

struct slot {
    bool busy;
    uint32_t type;
    uint64_t sector;
    uint32_t nsect;
    uint8_t *buf;
    struct vblk_drv_blk_frame *frame;
    struct vblk_discard_wz_seg *seg;
};

struct run_cfg {
    bool packed;
    bool in_order;
    bool no_event_idx;
    uint16_t queue_size;
    unsigned requests;
    uint64_t seed;
};

static bool overlaps(const struct slot *slots, uint64_t sector, uint32_t nsect)
{
    for (int i = 0; i < QD; i++) {
        const struct slot *s = &slots[i];
        if (s->busy && s->type != VBLK_T_FLUSH && sector < s->sector + s->nsect &&
            s->sector < sector + nsect)
            return true;
    }
    return false;
}

static void run(const struct run_cfg *rc)
{
    struct defer_be *be = calloc(1, sizeof(*be));
    uint8_t *model = calloc(1, DISK_BYTES);
    assert_non_null(be);
    assert_non_null(model);
    be->rng = rc->seed;
    uint64_t rng = rc->seed * 7919 + 1;

    struct vblk_backend backend = {.ops = &defer_ops, .ctx = be, .size = DISK_BYTES};
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, DISK_BYTES);
    p.seg_max = 16;
    p.features_off = 0; /* offer IN_ORDER too */
    struct vblk_loopback_opts o = {
        .packed = rc->packed,
        .in_order = rc->in_order,
        .no_event_idx = rc->no_event_idx,
        .queue_size = rc->queue_size,
        .arena_size = 8u << 20,
    };
    struct vblk_loopback *lb;
    assert_int_equal(vblk_loopback_create(&p, &backend, &o, &lb), 0);
    struct vblk_drv_vq *vq = vblk_loopback_driver(lb, 0);
    struct vblk_queue *q = vblk_loopback_queue(lb, 0);

    struct slot slots[QD];
    memset(slots, 0, sizeof(slots));
    for (int i = 0; i < QD; i++) {
        slots[i].buf = vblk_loopback_alloc(lb, 32 * 512);
        slots[i].frame = vblk_loopback_alloc(lb, sizeof(struct vblk_drv_blk_frame));
        slots[i].seg = vblk_loopback_alloc(lb, sizeof(struct vblk_discard_wz_seg));
        assert_non_null(slots[i].buf);
    }

    unsigned issued = 0, completed = 0, inflight = 0;
    while (completed < rc->requests) {
        /* Issue a few requests. */
        unsigned burst = 1 + (unsigned)(rnd(&rng) % 8);
        for (unsigned b = 0; b < burst && issued < rc->requests; b++) {
            int free_slot = -1;
            for (int i = 0; i < QD; i++)
                if (!slots[i].busy) {
                    free_slot = i;
                    break;
                }
            if (free_slot < 0)
                break;
            struct slot *s = &slots[free_slot];
            uint32_t kind = (uint32_t)(rnd(&rng) % 16);
            uint32_t type = kind < 7     ? VBLK_T_IN
                            : kind < 14  ? VBLK_T_OUT
                            : kind == 14 ? VBLK_T_FLUSH
                                         : VBLK_T_WRITE_ZEROES;
            uint32_t nsect = 1 + (uint32_t)(rnd(&rng) % 32);
            uint64_t sector = rnd(&rng) % (DISK_SECTORS - nsect + 1);
            if (type != VBLK_T_FLUSH && overlaps(slots, sector, nsect))
                continue;
            s->type = type;
            s->sector = type == VBLK_T_FLUSH ? 0 : sector;
            s->nsect = type == VBLK_T_FLUSH ? 0 : nsect;

            struct vblk_iov data[16];
            unsigned ndata = 0;
            if (type == VBLK_T_IN || type == VBLK_T_OUT) {
                size_t len = (size_t)nsect * 512, off = 0;
                if (type == VBLK_T_OUT) {
                    for (size_t i = 0; i < len; i++)
                        s->buf[i] = (uint8_t)rnd(&rng);
                } else {
                    memset(s->buf, 0xee, len);
                }
                /* Scatter the buffer into 1..8 pieces of arbitrary size. */
                unsigned pieces = 1 + (unsigned)(rnd(&rng) % 8);
                while (off < len) {
                    size_t chunk = len - off;
                    if (ndata + 1 < pieces && chunk > 1)
                        chunk = 1 + rnd(&rng) % (chunk - 1);
                    data[ndata].base = s->buf + off;
                    data[ndata].len = chunk;
                    ndata++;
                    off += chunk;
                }
            } else if (type == VBLK_T_WRITE_ZEROES) {
                s->seg->sector = sector;
                s->seg->num_sectors = nsect;
                s->seg->flags = (uint32_t)(rnd(&rng) % 2);
                data[0].base = s->seg;
                data[0].len = sizeof(*s->seg);
                ndata = 1;
            }
            bool indirect = rnd(&rng) % 2;
            int rc_add = vblk_drv_blk_add(vq, s->frame, type, s->sector, data, ndata, s, indirect);
            if (rc_add == -ENOSPC)
                break;
            assert_int_equal(rc_add, 0);
            /* The model changes only once the request is really queued. */
            if (type == VBLK_T_OUT)
                memcpy(model + sector * 512, s->buf, (size_t)nsect * 512);
            else if (type == VBLK_T_WRITE_ZEROES)
                memset(model + sector * 512, 0, (size_t)nsect * 512);
            s->busy = true;
            issued++;
            inflight++;
        }
        assert_true(vblk_loopback_kick(lb, 0) >= 0);
        /* The device may also be run without a kick (spurious wakeups). */
        if (rnd(&rng) % 4 == 0)
            assert_true(vblk_loopback_process(lb, 0) >= 0);
        defer_complete_some(be, q, inflight >= QD || issued == rc->requests);
        assert_true(vblk_loopback_process(lb, 0) >= 0);

        void *tok;
        uint32_t len;
        int got;
        while ((got = vblk_drv_vq_get_used(vq, &tok, &len)) == 1) {
            struct slot *s = tok;
            assert_true(s->busy);
            assert_int_equal(s->frame->status, VBLK_S_OK);
            if (s->type == VBLK_T_IN) {
                assert_int_equal(len, s->nsect * 512 + 1);
                assert_memory_equal(s->buf, model + s->sector * 512, (size_t)s->nsect * 512);
            }
            s->busy = false;
            completed++;
            inflight--;
        }
        assert_int_equal(got, 0);
    }
    assert_int_equal(vblk_queue_inflight(q), 0);
    assert_int_equal(be->npending, 0);
    assert_false(vblk_queue_broken(q));
    assert_memory_equal(be->disk, model, DISK_BYTES);
    vblk_loopback_destroy(lb);
    free(model);
    free(be);
}

static void split_random_out_of_order(void **state)
{
    (void)state;
    struct run_cfg c = {.packed = false, .queue_size = 64, .requests = 6000, .seed = 11};
    run(&c);
}

static void packed_random_out_of_order(void **state)
{
    (void)state;
    struct run_cfg c = {.packed = true, .queue_size = 64, .requests = 6000, .seed = 23};
    run(&c);
}

static void packed_odd_size_ring(void **state)
{
    (void)state;
    struct run_cfg c = {.packed = true, .queue_size = 37, .requests = 4000, .seed = 5};
    run(&c);
}

static void split_without_event_idx(void **state)
{
    (void)state;
    struct run_cfg c = {.no_event_idx = true, .queue_size = 32, .requests = 3000, .seed = 77};
    run(&c);
}

static void packed_without_event_idx(void **state)
{
    (void)state;
    struct run_cfg c = {
        .packed = true, .no_event_idx = true, .queue_size = 32, .requests = 3000, .seed = 78};
    run(&c);
}

static void split_in_order(void **state)
{
    (void)state;
    struct run_cfg c = {.in_order = true, .queue_size = 64, .requests = 3000, .seed = 99};
    run(&c);
}

static void packed_in_order(void **state)
{
    (void)state;
    struct run_cfg c = {
        .packed = true, .in_order = true, .queue_size = 64, .requests = 3000, .seed = 101};
    run(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(split_random_out_of_order), cmocka_unit_test(packed_random_out_of_order),
        cmocka_unit_test(packed_odd_size_ring),      cmocka_unit_test(split_without_event_idx),
        cmocka_unit_test(packed_without_event_idx),  cmocka_unit_test(split_in_order),
        cmocka_unit_test(packed_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
