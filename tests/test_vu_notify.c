/* SPDX-License-Identifier: MIT */
/*
 * vhost-user notification strategy: the windows where a kick or a request
 * could be lost as a queue thread switches between polling and sleeping,
 * and interrupt coalescing. Driven in-process (vblk_vu_dev_handle_msg)
 * over a hand-written ring, on both ring formats, without EVENT_IDX so
 * that every used buffer asks for a notification.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
#include <time.h>

#include "attack_harness.h"

static struct atk_vu *setup(bool packed, const struct vblk_vu_opts *opts)
{
    struct atk_vu *v = atk_vu_new(NULL);
    if (opts) {
        vblk_vu_dev_destroy(v->d);
        struct vblk_dev_params p;
        vblk_dev_params_default(&p, ATK_DISK);
        p.num_queues = ATK_VU_NQ;
        p.queue_size = 64;
        assert_int_equal(vblk_vu_dev_create(&p, &v->be, opts, &v->d), 0);
    }
    atk_vu_ok(v, ATK_VU_SET_OWNER, NULL, 0, NULL, 0);
    uint64_t feat = atk_vu_get(v, ATK_VU_GET_FEATURES);
    uint64_t proto = atk_vu_get(v, ATK_VU_GET_PROTOCOL_FEATURES);
    atk_vu_ok(v, ATK_VU_SET_PROTOCOL_FEATURES, &proto, 8, NULL, 0);
    feat &= ~(VBLK_BIT(VBLK_F_IN_ORDER) | VBLK_BIT(VBLK_F_EVENT_IDX) | VBLK_BIT(VBLK_VU_F_LOG_ALL));
    if (!packed)
        feat &= ~VBLK_BIT(VBLK_F_RING_PACKED);
    atk_vu_ok(v, ATK_VU_SET_FEATURES, &feat, 8, NULL, 0);
    v->virtio_features = feat;
    atk_vu_mem_table(v);
    atk_vu_ring(v, packed, packed ? (1u << 15 | 1u << 31) : 0);
    return v;
}

/* Kicks suppressed, as the driver reads it (virtio 1.2 2.7.10, 2.8.10). */
static bool kicks_suppressed(struct atk_vu *v)
{
    if (v->ring.packed) {
        const struct vblk_packed_event *e = (const void *)(v->mem + ATK_DEVICE_OFF);
        return e->flags == VBLK_EVENT_F_DISABLE;
    }
    return atk_split_used(&v->ring)->flags & VBLK_USED_F_NO_NOTIFY;
}

/* Calls signalled since the last look. */
static uint64_t calls(struct atk_vu *v)
{
    eventfd_t n = 0;
    return eventfd_read(v->call, &n) == 0 ? n : 0;
}

static bool queue_fd_ready(struct atk_vu *v)
{
    struct pollfd p = {vblk_vu_queue_fd(v->d, 0), POLLIN, 0};
    return poll(&p, 1, 0) == 1;
}

/* A request published while the queue thread polls, with no kick (kicks
 * are suppressed): switching polling off re-enables kicks and then looks
 * at the ring, so the request is served before the thread sleeps. */
static void request_published_as_polling_stops(void **state)
{
    (void)state;
    for (int packed = 0; packed < 2; packed++) {
        struct atk_vu *v = setup(packed, NULL);
        assert_int_equal(vblk_vu_queue_set_polling(v->d, 0, true), 0);
        assert_true(kicks_suppressed(v));
        size_t st = atk_vu_rq(v, 0x8000, VBLK_T_IN, 0, 512);
        assert_int_equal(vblk_vu_queue_set_polling(v->d, 0, false), 1);
        assert_false(kicks_suppressed(v));
        assert_int_equal(v->mem[st], VBLK_S_OK);
        assert_int_equal(calls(v), 1);
        atk_vu_free(v, false);
    }
}

/* The driver kicks anyway while the thread polls (it read the flags
 * before they changed): the poll serves the request; when polling stops
 * the stale kick is consumed, so the thread's sleep is not cut short for
 * nothing, and the next kick wakes it. */
static void kick_arriving_as_polling_stops(void **state)
{
    (void)state;
    for (int packed = 0; packed < 2; packed++) {
        struct atk_vu *v = setup(packed, NULL);
        assert_int_equal(vblk_vu_queue_set_polling(v->d, 0, true), 0);
        size_t st = atk_vu_rq(v, 0x8000, VBLK_T_IN, 0, 512);
        assert_int_equal(eventfd_write(v->kick, 1), 0);
        assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
        assert_int_equal(v->mem[st], VBLK_S_OK);
        assert_true(queue_fd_ready(v));
        assert_int_equal(vblk_vu_queue_set_polling(v->d, 0, false), 0);
        assert_false(queue_fd_ready(v));
        st = atk_vu_rq(v, 0x9000, VBLK_T_IN, 0, 512);
        assert_int_equal(eventfd_write(v->kick, 1), 0);
        assert_true(queue_fd_ready(v));
        assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
        assert_int_equal(v->mem[st], VBLK_S_OK);
        assert_false(queue_fd_ready(v));
        assert_int_equal(calls(v), 2);
        atk_vu_free(v, false);
    }
}

/* A request published between the device's last look and its re-enabling
 * of kicks, in event mode: vblk_vu_queue_process() re-checks after
 * enabling (vblk_queue_on_kick()), so one kick serves both. */
static void request_published_as_kicks_are_enabled(void **state)
{
    (void)state;
    for (int packed = 0; packed < 2; packed++) {
        struct atk_vu *v = setup(packed, NULL);
        size_t st1 = atk_vu_rq(v, 0x8000, VBLK_T_IN, 0, 512);
        size_t st2 = atk_vu_rq(v, 0x9000, VBLK_T_IN, 1, 512);
        assert_int_equal(eventfd_write(v->kick, 1), 0);
        assert_int_equal(vblk_vu_queue_process(v->d, 0), 2);
        assert_int_equal(v->mem[st1], VBLK_S_OK);
        assert_int_equal(v->mem[st2], VBLK_S_OK);
        assert_false(kicks_suppressed(v));
        assert_true(calls(v) >= 1);
        atk_vu_free(v, false);
    }
}

/* Coalescing while polling: one notification per coalesce_count
 * completions; the rest are sent when polling stops. In event mode every
 * completion is signalled. */
static void coalescing_by_count_and_when_polling_stops(void **state)
{
    (void)state;
    for (int packed = 0; packed < 2; packed++) {
        struct vblk_vu_opts o = {.coalesce_count = 4, .coalesce_us = 10000000};
        struct atk_vu *v = setup(packed, &o);
        assert_int_equal(vblk_vu_queue_set_polling(v->d, 0, true), 0);
        for (int i = 0; i < 3; i++) {
            size_t st = atk_vu_rq(v, 0x8000 + 0x1000 * (size_t)i, VBLK_T_IN, 0, 512);
            assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
            assert_int_equal(v->mem[st], VBLK_S_OK);
            assert_int_equal(calls(v), 0);
        }
        (void)atk_vu_rq(v, 0xb000, VBLK_T_IN, 0, 512);
        assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
        assert_int_equal(calls(v), 1);
        (void)atk_vu_rq(v, 0xc000, VBLK_T_IN, 0, 512);
        assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
        assert_int_equal(calls(v), 0);
        /* The thread stops polling: nothing stays held. */
        assert_int_equal(vblk_vu_queue_set_polling(v->d, 0, false), 0);
        assert_int_equal(calls(v), 1);
        /* Event mode: no coalescing. */
        for (int i = 0; i < 2; i++) {
            (void)atk_vu_rq(v, 0xd000 + 0x1000 * (size_t)i, VBLK_T_IN, 0, 512);
            assert_int_equal(eventfd_write(v->kick, 1), 0);
            assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
            assert_int_equal(calls(v), 1);
        }
        atk_vu_free(v, false);
    }
}

/* The time bound: a held notification goes out on the first look after
 * coalesce_us, even with no new work. */
static void coalescing_time_bound(void **state)
{
    (void)state;
    for (int packed = 0; packed < 2; packed++) {
        struct vblk_vu_opts o = {.coalesce_count = 1000, .coalesce_us = 2000};
        struct atk_vu *v = setup(packed, &o);
        assert_int_equal(vblk_vu_queue_set_polling(v->d, 0, true), 0);
        (void)atk_vu_rq(v, 0x8000, VBLK_T_IN, 0, 512);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
        uint64_t first = calls(v);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        /* Held, unless this machine took longer than the bound. */
        if ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) < 2000000L)
            assert_int_equal(first, 0);
        struct timespec d = {0, 3000000};
        nanosleep(&d, NULL);
        assert_int_equal(vblk_vu_queue_process(v->d, 0), 0);
        assert_int_equal(first + calls(v), 1);
        atk_vu_free(v, false);
    }
}

/* Busy-poll mode keeps kicks suppressed whatever the caller asks. */
static void poll_mode_stays_polling(void **state)
{
    (void)state;
    struct vblk_vu_opts o = {.notify = VBLK_NOTIFY_POLL};
    struct atk_vu *v = setup(false, &o);
    assert_true(kicks_suppressed(v));
    assert_int_equal(vblk_vu_queue_set_polling(v->d, 0, false), 0);
    assert_true(kicks_suppressed(v));
    size_t st = atk_vu_rq(v, 0x8000, VBLK_T_IN, 0, 512);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
    assert_int_equal(v->mem[st], VBLK_S_OK);
    assert_int_equal(vblk_vu_queue_set_polling(v->d, 9, true), -EINVAL);
    atk_vu_free(v, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_published_as_polling_stops),
        cmocka_unit_test(kick_arriving_as_polling_stops),
        cmocka_unit_test(request_published_as_kicks_are_enabled),
        cmocka_unit_test(coalescing_by_count_and_when_polling_stops),
        cmocka_unit_test(coalescing_time_bound),
        cmocka_unit_test(poll_mode_stays_polling),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
