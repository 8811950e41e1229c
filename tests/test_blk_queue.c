/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the device queue (lib/core/blk_queue.c and the parts of
 * blk_req.c that depend on device state): read-only and write-through
 * modes, counters and notifications, the request pool under a driver that
 * never collects completions, in-order completion, completion from another
 * thread, budgets, stop/destroy, resubmission and hooks. The driver side is
 * hand-written split rings (see blk_harness.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>

#include "blk_harness.h"

/* Posts a FLUSH whose header and status sit in an indirect table, so the
 * chain takes one ring descriptor. Returns the status byte's address. */
static uint8_t *post_flush_indirect(struct h *h)
{
    uint64_t st = galloc(h, 1, 0xff);
    uint64_t t = galloc(h, 32, 0);
    struct vblk_split_desc *tab = hp(h, t);
    tab[0] = (struct vblk_split_desc){mkhdr(h, VBLK_T_FLUSH, 0), 16, VBLK_DESC_F_NEXT, 1};
    tab[1] = (struct vblk_split_desc){st, 1, W, 0};
    struct seg s = {t, 32, VBLK_DESC_F_INDIRECT};
    post(h, &s, 1);
    return hp(h, st);
}

/* Posts a FLUSH as [header][status]; returns the status byte. */
static uint8_t *post_flush(struct h *h)
{
    uint64_t st = galloc(h, 1, 0xff);
    struct seg s[] = {{mkhdr(h, VBLK_T_FLUSH, 0), 16, 0}, {st, 1, W}};
    post(h, s, 2);
    return hp(h, st);
}

static void complete_held(struct h *h, unsigned i, uint8_t status)
{
    assert_true(i < h->tb.nheld);
    vblk_req_complete(h->tb.held[i], status);
    vblk_queue_flush(&h->q);
}

static void read_only_device_fails_writes_before_backend(void **state)
{
    struct h *h = *state;
    h->tb.ops.caps = ALL_CAPS | VBLK_BACKEND_CAP_READ_ONLY;
    up(h);
    uint64_t d = galloc(h, 512, 0x11), r = galloc(h, 16, 0);
    struct vblk_discard_wz_seg seg = {0, 1, 0};
    memcpy(hp(h, r), &seg, 16);
    assert_int_equal(rq(h, VBLK_T_OUT, 0, d, 512, 0, NULL), VBLK_S_IOERR);
    /* The range types are not even offered on a read-only device; they
     * fail as writes, like OUT, whatever was negotiated. */
    assert_int_equal(rq(h, VBLK_T_DISCARD, 0, r, 16, 0, NULL), VBLK_S_IOERR);
    assert_int_equal(rq(h, VBLK_T_WRITE_ZEROES, 0, r, 16, 0, NULL), VBLK_S_IOERR);
    assert_int_equal(rq(h, VBLK_T_SECURE_ERASE, 0, r, 16, 0, NULL), VBLK_S_IOERR);
    assert_int_equal(h->tb.nsubmit, 0);
    assert_int_not_equal(h->tb.disk[0], 0x11);
    assert_int_equal(rq(h, VBLK_T_IN, 0, d, 512, W, NULL), VBLK_S_OK);
    assert_memory_equal(hp(h, d), h->tb.disk, 512);
    assert_int_equal(rq(h, VBLK_T_FLUSH, 0, 0, 0, 0, NULL), VBLK_S_OK);
    assert_int_equal(h->tb.ntype[VBLK_T_IN], 1);
    assert_int_equal(h->tb.ntype[VBLK_T_FLUSH], 1);
    assert_int_equal(h->tb.nsubmit, 2);
}

static void read_only_parameter_fails_writes_too(void **state)
{
    struct h *h = *state;
    h->p.read_only = true;
    up(h);
    uint64_t d = galloc(h, 512, 0x11);
    assert_int_equal(rq(h, VBLK_T_OUT, 0, d, 512, 0, NULL), VBLK_S_IOERR);
    assert_int_equal(rq(h, VBLK_T_OUT, 0, 0, 0, 0, NULL), VBLK_S_IOERR);
    assert_int_equal(h->tb.nsubmit, 0);
}

static void write_through_mode_marks_writes_fua(void **state)
{
    struct h *h = *state;
    uint8_t zero = 0, one = 1;
    up(h);
    uint64_t d = galloc(h, 512, 0);
    assert_int_equal(rq(h, VBLK_T_OUT, 0, d, 512, 0, NULL), VBLK_S_OK);
    assert_int_equal(h->tb.last_flags, 0);
    assert_int_equal(vblk_dev_config_write(&h->dev, 32, &zero, 1), 0);
    assert_int_equal(rq(h, VBLK_T_OUT, 0, d, 512, 0, NULL), VBLK_S_OK);
    assert_int_equal(h->tb.last_flags, VBLK_REQ_F_FUA);
    assert_int_equal(rq(h, VBLK_T_IN, 0, d, 512, W, NULL), VBLK_S_OK);
    assert_int_equal(h->tb.last_flags, 0);
    assert_int_equal(vblk_dev_config_write(&h->dev, 32, &one, 1), 0);
    assert_int_equal(rq(h, VBLK_T_OUT, 0, d, 512, 0, NULL), VBLK_S_OK);
    assert_int_equal(h->tb.last_flags, 0);
}

static void flush_offered_but_not_negotiated_means_fua(void **state)
{
    struct h *h = *state;
    /* virtio 1.2 5.2.6.2: without FLUSH and CONFIG_WCE the device must
     * make writes stable before completing them. */
    bring_up(h, 0, F(RING_PACKED) | F(EVENT_IDX) | F(FLUSH) | F(CONFIG_WCE));
    uint64_t d = galloc(h, 512, 0);
    assert_int_equal(rq(h, VBLK_T_OUT, 0, d, 512, 0, NULL), VBLK_S_OK);
    assert_int_equal(h->tb.last_flags, VBLK_REQ_F_FUA);
    h = restart(state);
    bring_up(h, 0, F(RING_PACKED) | F(EVENT_IDX) | F(CONFIG_WCE));
    d = galloc(h, 512, 0);
    assert_int_equal(rq(h, VBLK_T_OUT, 0, d, 512, 0, NULL), VBLK_S_OK);
    assert_int_equal(h->tb.last_flags, 0);
}

static void counters_follow_outcomes(void **state)
{
    struct h *h = *state;
    up(h);
    uint64_t d = galloc(h, 512, 0);
    assert_int_equal(rq(h, VBLK_T_IN, 0, d, 512, W, NULL), VBLK_S_OK);
    assert_int_equal(rq(h, VBLK_T_OUT, 0, d, 512, 0, NULL), VBLK_S_OK);
    assert_int_equal(rq(h, VBLK_T_IN, SECTORS, d, 512, W, NULL), VBLK_S_IOERR);
    assert_int_equal(rq(h, 77, 0, d, 512, W, NULL), VBLK_S_UNSUPP);
    assert_int_equal(rq(h, VBLK_T_GET_ID, 0, d, 20, W, NULL), VBLK_S_OK);
    const struct vblk_queue_stats *s = vblk_queue_stats(&h->q);
    assert_int_equal(s->submitted, 2);
    assert_int_equal(s->completed, 5);
    assert_int_equal(s->ioerr, 1);
    assert_int_equal(s->unsupp, 1);
    assert_int_equal(s->pool_full, 0);
    const struct vblk_vq_stats *v = vblk_vq_stats(vblk_queue_vq(&h->q));
    assert_int_equal(v->chains, 5);
    assert_int_equal(v->notifies, 5);
    assert_int_equal(v->bad_chains, 0);
    assert_int_equal(h->notifies, 5);
    assert_int_equal(vblk_queue_inflight(&h->q), 0);
}

static void one_notification_per_batch(void **state)
{
    struct h *h = *state;
    up(h);
    for (int i = 0; i < 3; i++)
        post_flush(h);
    assert_int_equal(process(h), 3);
    assert_int_equal(h->used->idx, 3);
    assert_int_equal(h->notifies, 1);
    assert_int_equal(process(h), 0);
    assert_int_equal(h->notifies, 1);
    h->avail->flags = VBLK_AVAIL_F_NO_INTERRUPT;
    post_flush(h);
    assert_int_equal(process(h), 1);
    assert_int_equal(h->used->idx, 4);
    assert_int_equal(h->notifies, 1);
}

static void pool_bounds_inflight_when_driver_never_collects(void **state)
{
    struct h *h = *state;
    up(h);
    h->tb.hold = true;
    uint8_t *st[2 * QSIZE];
    for (unsigned i = 0; i < QSIZE; i++)
        st[i] = post_flush_indirect(h);
    assert_int_equal(process(h), QSIZE);
    assert_int_equal(vblk_queue_inflight(&h->q), QSIZE);
    /* Full, but nothing is waiting: no back-pressure to count. */
    assert_int_equal(process(h), 0);
    assert_int_equal(vblk_queue_stats(&h->q)->pool_full, 0);
    /* The driver keeps going, reusing descriptors it never got back. */
    for (unsigned i = QSIZE; i < 2 * QSIZE; i++)
        st[i] = post_flush_indirect(h);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(process(h), 0);
        assert_int_equal(vblk_queue_inflight(&h->q), QSIZE);
    }
    assert_int_equal(vblk_queue_stats(&h->q)->pool_full, 3);
    assert_int_equal(h->tb.nsubmit, QSIZE);
    assert_int_equal(h->used->idx, 0);
    /* Each completion frees exactly one slot for the waiting requests. */
    for (unsigned i = 0; i < 5; i++)
        complete_held(h, i, VBLK_S_OK);
    assert_int_equal(process(h), 5);
    assert_int_equal(vblk_queue_inflight(&h->q), QSIZE);
    for (unsigned i = 5; i < 2 * QSIZE; i++) {
        complete_held(h, i, VBLK_S_OK);
        assert_true(process(h) >= 0);
        assert_true(vblk_queue_inflight(&h->q) <= QSIZE);
    }
    assert_int_equal(h->tb.nsubmit, 2 * QSIZE);
    assert_int_equal(vblk_queue_inflight(&h->q), 0);
    assert_int_equal(h->used->idx, 2 * QSIZE);
    for (unsigned i = 0; i < 2 * QSIZE; i++)
        assert_int_equal(*st[i], VBLK_S_OK);
    assert_false(vblk_queue_broken(&h->q));
}

/* Posts three FLUSHes (heads 0, 2, 4), lets the backend finish them in
 * the order 2, 0, 1 and returns the heads in used-ring order. */
static void complete_out_of_order(struct h *h, uint16_t ids[3], unsigned used_after[3])
{
    h->tb.hold = true;
    for (int i = 0; i < 3; i++)
        post_flush(h);
    assert_int_equal(process(h), 3);
    const unsigned order[3] = {2, 0, 1};
    for (int i = 0; i < 3; i++) {
        complete_held(h, order[i], VBLK_S_OK);
        used_after[i] = h->used->idx;
    }
    for (int i = 0; i < 3; i++)
        take_used(h, &ids[i]);
    assert_int_equal(vblk_queue_inflight(&h->q), 0);
}

static void in_order_mode_uses_buffers_in_avail_order(void **state)
{
    struct h *h = *state;
    uint16_t ids[3];
    unsigned used_after[3];
    h->p.features_off = 0;
    up(h);
    assert_true(vblk_dev_driver_features(&h->dev) & F(IN_ORDER));
    complete_out_of_order(h, ids, used_after);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 2);
    assert_int_equal(ids[2], 4);
    /* The early finisher waits until everything before it is done. */
    assert_int_equal(used_after[0], 0);
    assert_int_equal(used_after[1], 1);
    assert_int_equal(used_after[2], 3);
}

static void without_in_order_buffers_are_used_as_completed(void **state)
{
    struct h *h = *state;
    uint16_t ids[3];
    unsigned used_after[3];
    up(h);
    complete_out_of_order(h, ids, used_after);
    assert_int_equal(ids[0], 4);
    assert_int_equal(ids[1], 0);
    assert_int_equal(ids[2], 2);
    assert_int_equal(used_after[0], 1);
}

static void *complete_from_thread(void *arg)
{
    struct h *h = arg;
    for (unsigned i = 0; i < h->tb.nheld; i++)
        vblk_req_complete_async(h->tb.held[i], i == 1 ? VBLK_S_IOERR : VBLK_S_OK);
    return NULL;
}

static void async_completions_appear_after_process(void **state)
{
    struct h *h = *state;
    pthread_t t;
    up(h);
    h->tb.hold = true;
    uint8_t *st[4];
    for (int i = 0; i < 4; i++)
        st[i] = post_flush(h);
    assert_int_equal(process(h), 4);
    assert_int_equal(pthread_create(&t, NULL, complete_from_thread, h), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    /* One wake for the whole batch; nothing visible until processed. */
    assert_int_equal(__atomic_load_n(&h->wakes, __ATOMIC_SEQ_CST), 1);
    assert_int_equal(h->used->idx, 0);
    assert_int_equal(vblk_queue_inflight(&h->q), 4);
    assert_int_equal(process(h), 0);
    assert_int_equal(h->used->idx, 4);
    assert_int_equal(h->notifies, 1);
    assert_int_equal(vblk_queue_inflight(&h->q), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(*st[i], i == 1 ? VBLK_S_IOERR : VBLK_S_OK);
    assert_int_equal(vblk_queue_stats(&h->q)->ioerr, 1);
    /* The next asynchronous completion wakes the queue again. */
    h->tb.nheld = 0;
    post_flush(h);
    assert_int_equal(process(h), 1);
    assert_int_equal(pthread_create(&t, NULL, complete_from_thread, h), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(__atomic_load_n(&h->wakes, __ATOMIC_SEQ_CST), 2);
    assert_int_equal(process(h), 0);
    assert_int_equal(h->used->idx, 5);
}

static void budget_limits_requests_per_call(void **state)
{
    struct h *h = *state;
    up(h);
    for (int i = 0; i < 5; i++)
        post_flush(h);
    assert_int_equal(vblk_queue_process(&h->q, 2), 2);
    assert_int_equal(h->used->idx, 2);
    assert_int_equal(vblk_queue_process(&h->q, 2), 2);
    assert_int_equal(vblk_queue_process(&h->q, 2), 1);
    assert_int_equal(h->used->idx, 5);
}

static void stop_halts_popping_and_destroy_waits_for_inflight(void **state)
{
    struct h *h = *state;
    up(h);
    h->tb.hold = true;
    post_flush(h);
    assert_int_equal(process(h), 1);
    post_flush(h);
    assert_int_equal(vblk_queue_stop(&h->q), 1);
    assert_int_equal(process(h), 0);
    assert_int_equal(h->tb.nsubmit, 1);
    assert_int_equal(vblk_queue_destroy(&h->q), -EBUSY);
    assert_int_equal(h->tb.nstop, 0);
    complete_held(h, 0, VBLK_S_OK);
    assert_int_equal(h->used->idx, 1);
    assert_int_equal(vblk_queue_destroy(&h->q), 0);
    assert_int_equal(h->tb.nstop, 1);
    assert_int_equal(vblk_queue_destroy(&h->q), 0);
    assert_int_equal(h->tb.nstop, 1);
}

static void run_processes_until_empty_and_rearms_kicks(void **state)
{
    struct h *h = *state;
    up(h);
    for (int i = 0; i < 3; i++)
        post_flush(h);
    assert_int_equal(vblk_queue_on_kick(&h->q), 3);
    assert_int_equal(h->used->idx, 3);
    assert_int_equal(h->used->flags, 0);
    vblk_queue_set_polling(&h->q, true);
    assert_int_equal(h->used->flags, VBLK_USED_F_NO_NOTIFY);
    post_flush(h);
    assert_int_equal(vblk_queue_on_kick(&h->q), 1);
    assert_int_equal(h->used->flags, VBLK_USED_F_NO_NOTIFY);
    vblk_queue_set_polling(&h->q, false);
    assert_int_equal(h->used->flags, 0);
}

static void resubmit_restarts_a_chain_by_head(void **state)
{
    struct h *h = *state;
    up(h);
    h->tb.hold = true;
    uint64_t d = galloc(h, 512, 0), st = galloc(h, 1, 0xff);
    struct seg s[] = {{mkhdr(h, VBLK_T_IN, 7), 16, 0}, {d, 512, W}, {st, 1, W}};
    post(h, s, 3);
    assert_int_equal(process(h), 1);
    /* As after a reconnect: the chain at head 0 is started again. */
    assert_int_equal(vblk_queue_resubmit(&h->q, 0, 0), 1);
    assert_int_equal(h->tb.nsubmit, 2);
    assert_int_equal(h->tb.held[1]->sector, 7);
    assert_int_equal(h->tb.held[1]->len, 512);
    assert_int_equal(h->tb.held[1]->type, VBLK_T_IN);
    assert_int_equal(vblk_queue_inflight(&h->q), 2);
    h->tb.hold = false;
    for (int i = 0; i < 2; i++)
        complete_held(h, (unsigned)i, VBLK_S_OK);
    assert_int_equal(h->used->idx, 2);
    assert_int_equal(vblk_queue_resubmit(&h->q, QSIZE, 0), -EIO);
    assert_true(vblk_queue_broken(&h->q));
    assert_int_equal(vblk_queue_inflight(&h->q), 0);
}

struct hook_log {
    unsigned started, done, published;
    uint16_t last_used;
};

static void hook_started(void *o, const struct vblk_req *r)
{
    (void)r;
    ((struct hook_log *)o)->started++;
}

static void hook_done(void *o, const struct vblk_req *r)
{
    (void)r;
    ((struct hook_log *)o)->done++;
}

static void hook_published(void *o, const struct vblk_vq_state *st)
{
    ((struct hook_log *)o)->published++;
    ((struct hook_log *)o)->last_used = st->used_idx;
}

static void hooks_see_start_done_and_publish(void **state)
{
    struct h *h = *state;
    struct hook_log log = {0};
    const struct vblk_queue_hooks hooks = {hook_started, hook_done, hook_published};
    h->hooks = &hooks;
    h->hooks_opaque = &log;
    up(h);
    for (int i = 0; i < 2; i++)
        post_flush(h);
    assert_int_equal(rq(h, 99, 0, 0, 0, 0, NULL), VBLK_S_UNSUPP);
    assert_int_equal(log.started, 3);
    assert_int_equal(log.done, 3);
    assert_int_equal(log.published, 1);
    assert_int_equal(log.last_used, 3);
}

static void queue_init_rejects_bad_setups(void **state)
{
    struct h *h = *state;
    struct vblk_queue q;
    dev_up(h);
    size_t len = vblk_queue_mem_size(&h->dev, QSIZE);
    void *pool = aligned_alloc(16, len + 16);
    assert_non_null(pool);
    struct vblk_queue_params qp = {.size = QSIZE, .addrs = {GPA, GPA + AVAIL_OFF, GPA + USED_OFF}};
    /* Features not negotiated yet. */
    assert_int_equal(vblk_queue_init(&q, &h->dev, &h->mem, &qp, pool, len), -EINVAL);
    assert_int_equal(vblk_dev_set_features(&h->dev, F(VERSION_1)), 0);
    qp.index = 1;
    assert_int_equal(vblk_queue_init(&q, &h->dev, &h->mem, &qp, pool, len), -EINVAL);
    qp.index = 0;
    qp.size = 512; /* above params.queue_size */
    assert_int_equal(vblk_queue_init(&q, &h->dev, &h->mem, &qp, pool, len), -EINVAL);
    qp.size = QSIZE;
    assert_int_equal(vblk_queue_init(&q, &h->dev, &h->mem, &qp, pool, len - 1), -ENOBUFS);
    assert_int_equal(vblk_queue_init(&q, &h->dev, &h->mem, &qp, (char *)pool + 8, len), -ENOBUFS);
    assert_int_equal(vblk_queue_init(&q, &h->dev, &h->mem, &qp, NULL, len), -ENOBUFS);
    qp.addrs.device = GPA + MEM_LEN - 8;
    assert_int_equal(vblk_queue_init(&q, &h->dev, &h->mem, &qp, pool, len), -EFAULT);
    qp.addrs.device = GPA + USED_OFF + 2;
    assert_int_equal(vblk_queue_init(&q, &h->dev, &h->mem, &qp, pool, len), -EINVAL);
    qp.size = 12; /* split rings are powers of two */
    qp.addrs.device = GPA + USED_OFF;
    assert_int_equal(vblk_queue_init(&q, &h->dev, &h->mem, &qp, pool, len), -EINVAL);
    assert_int_equal(h->tb.nstart, 0);
    qp.size = QSIZE;
    assert_int_equal(vblk_queue_init(&q, &h->dev, &h->mem, &qp, pool, len), 0);
    assert_int_equal(h->tb.nstart, 1);
    assert_int_equal(vblk_queue_destroy(&q), 0);
    free(pool);
}

/* Packed ring driver: a FLUSH in a two-entry indirect table, buffer @id. */
static void post_packed_flush(struct h *h, uint16_t id)
{
    uint64_t st = galloc(h, 1, 0xff), t = galloc(h, 32, 0);
    struct atk_seg tab[2] = {{mkhdr(h, VBLK_T_FLUSH, 0), 16, 0}, {st, 1, W}};
    atk_table_write(true, hp(h, t), tab, 2);
    h->ring.id = id;
    atk_post_indirect(&h->ring, t, 32, 0);
}

/* Packed ring driver: the next used buffer ID, or -1 if none. */
static int take_packed_used(struct h *h)
{
    uint16_t id;
    return atk_used(&h->ring, &id, NULL) ? id : -1;
}

static void in_order_survives_sequence_wrap_on_odd_packed_ring(void **state)
{
    struct h *h = *state;
    h->p.features_off = 0;
    h->qsize = 5;
    bring_up(h, 0, F(EVENT_IDX));
    assert_true(vblk_dev_driver_features(&h->dev) & F(RING_PACKED));
    assert_true(vblk_dev_driver_features(&h->dev) & F(IN_ORDER));
    for (unsigned round = 0; round < 2; round++) {
        if (round == 1) {
            /* White box: the position after 2^32 - 2 requests, so the
             * three below straddle the wrap of the 32-bit sequence. */
            h->q.seq_next = h->q.seq_done = UINT32_MAX - 1;
        }
        h->tb.hold = true;
        h->tb.nheld = 0;
        for (uint16_t i = 0; i < 3; i++)
            post_packed_flush(h, (uint16_t)(10 * round + i));
        assert_int_equal(process(h), 3);
        for (int i = 2; i >= 0; i--)
            complete_held(h, (unsigned)i, VBLK_S_OK);
        for (uint16_t i = 0; i < 3; i++)
            assert_int_equal(take_packed_used(h), 10 * round + i);
        assert_int_equal(take_packed_used(h), -1);
        assert_int_equal(vblk_queue_inflight(&h->q), 0);
    }
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(read_only_device_fails_writes_before_backend),
        T(read_only_parameter_fails_writes_too),
        T(write_through_mode_marks_writes_fua),
        T(flush_offered_but_not_negotiated_means_fua),
        T(counters_follow_outcomes),
        T(one_notification_per_batch),
        T(pool_bounds_inflight_when_driver_never_collects),
        T(in_order_mode_uses_buffers_in_avail_order),
        T(without_in_order_buffers_are_used_as_completed),
        T(in_order_survives_sequence_wrap_on_odd_packed_ring),
        T(async_completions_appear_after_process),
        T(budget_limits_requests_per_call),
        T(stop_halts_popping_and_destroy_waits_for_inflight),
        T(run_processes_until_empty_and_rearms_kicks),
        T(resubmit_restarts_a_chain_by_head),
        T(hooks_see_start_done_and_publish),
        T(queue_init_rejects_bad_setups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
