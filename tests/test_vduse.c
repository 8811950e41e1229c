/* SPDX-License-Identifier: MIT */
/*
 * VDUSE message handling without a kernel: a fake kernel (struct
 * vduse_kops) with an IOTLB of a few entries over a "guest" arena, real
 * rings built with the library's driver side, and requests fed to
 * vblk_vduse_handle_request() as byte buffers (vduse_fake.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vduse_fake.h"

/* ---- tests ---- */

static void bad_lengths_are_not_answered(void **state)
{
    struct fixture *fx = *state;
    uint8_t req[2 * VBLK_VDUSE_MSG_SIZE] = {0};
    uint8_t resp[VBLK_VDUSE_MSG_SIZE];
    size_t lens[] = {
        0, 1, 8, VBLK_VDUSE_MSG_SIZE - 1, VBLK_VDUSE_MSG_SIZE + 1, 2 * VBLK_VDUSE_MSG_SIZE};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
        assert_int_equal(vblk_vduse_handle_request(fx->v, req, lens[i], resp, sizeof(resp)),
                         -EBADMSG);
    assert_int_equal(vblk_vduse_handle_request(fx->v, req, VBLK_VDUSE_MSG_SIZE, resp, 100),
                     -EINVAL);
    struct vblk_transport_stats st;
    vblk_vduse_stats(fx->v, &st);
    assert_int_equal(st.bad_messages, 6);
    assert_int_equal(st.messages, 0);
}

static void unknown_types_fail(void **state)
{
    struct fixture *fx = *state;
    uint32_t types[] = {3, 4, 0x100, UINT32_MAX};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        struct vduse_abi_response r = send_req(fx, types[i], NULL);
        assert_int_equal(r.result, VDUSE_ABI_RESULT_FAILED);
    }
    struct vblk_transport_stats st;
    vblk_vduse_stats(fx->v, &st);
    assert_int_equal(st.bad_messages, 4);
    assert_int_equal(st.failed, 4);
}

static void status_transitions(void **state)
{
    struct fixture *fx = *state;
    driver_setup(fx, false);
    uint64_t good = fx->fk.features;

    /* A feature the device never offered is refused at FEATURES_OK, and the
     * kernel keeps the old status. */
    fx->fk.features = good | VBLK_BIT(50);
    assert_int_equal(
        set_status(fx, VBLK_STATUS_ACKNOWLEDGE | VBLK_STATUS_DRIVER | VBLK_STATUS_FEATURES_OK),
        VDUSE_ABI_RESULT_FAILED);
    assert_null(vblk_vduse_queue(fx->v, 0));
    /* VERSION_1 is mandatory. */
    fx->fk.features = good & ~VBLK_BIT(VBLK_F_VERSION_1);
    assert_int_equal(set_status(fx, VBLK_STATUS_FEATURES_OK), VDUSE_ABI_RESULT_FAILED);

    fx->fk.features = good;
    bring_up(fx, false);
    assert_true(vblk_vduse_attached(fx->v));
    assert_non_null(vblk_vduse_queue(fx->v, 0));
    assert_null(vblk_vduse_queue(fx->v, 1)); /* not made ready */
    assert_true(fx->fk.kickfd[0] >= 0);
    /* ACCESS_PLATFORM stays with the transport. */
    assert_int_equal(vblk_dev_driver_features(vblk_vduse_blk(fx->v)),
                     good & ~VBLK_BIT(VBLK_F_ACCESS_PLATFORM));

    uint8_t *buf = arena_alloc(fx, 4096);
    memset(buf, 0x5a, 4096);
    assert_int_equal(do_request(fx, VBLK_T_OUT, 8, buf, 4096), VBLK_S_OK);
    memset(buf, 0, 4096);
    assert_int_equal(do_request(fx, VBLK_T_IN, 8, buf, 4096), VBLK_S_OK);
    for (unsigned i = 0; i < 4096; i++)
        assert_int_equal(buf[i], 0x5a);
    uint8_t *id = arena_alloc(fx, VBLK_ID_BYTES);
    assert_int_equal(do_request(fx, VBLK_T_GET_ID, 0, id, VBLK_ID_BYTES), VBLK_S_OK);
    assert_memory_equal(id, "vduse-test", 10);
    assert_true(fx->fk.irqs[0] > 0);

    /* Reset: queues stop, the kick fd goes, every mapping is dropped and
     * the device forgets the features. */
    assert_int_equal(set_status(fx, 0), VDUSE_ABI_RESULT_OK);
    assert_null(vblk_vduse_queue(fx->v, 0));
    assert_int_equal(fx->fk.kickfd[0], -1);
    assert_int_equal(fx->fk.maps, fx->fk.unmaps);
    assert_int_equal(vblk_dev_driver_features(vblk_vduse_blk(fx->v)), 0);
    struct vblk_transport_stats st;
    vblk_vduse_stats(fx->v, &st);
    assert_int_equal(st.resets, 1);

    /* And it comes up again, from a fresh ring. */
    bring_up(fx, false);
    assert_int_equal(do_request(fx, VBLK_T_IN, 8, buf, 4096), VBLK_S_OK);
    assert_int_equal(buf[0], 0x5a);
}

static void driver_ok_with_unmapped_rings_fails(void **state)
{
    struct fixture *fx = *state;
    driver_setup(fx, false);
    fx->fk.info[0].desc_addr = 0x1000; /* no IOTLB entry there */
    assert_int_equal(set_status(fx, VBLK_STATUS_FEATURES_OK), VDUSE_ABI_RESULT_OK);
    assert_int_equal(set_status(fx, VBLK_STATUS_FEATURES_OK | VBLK_STATUS_DRIVER_OK),
                     VDUSE_ABI_RESULT_FAILED);
    assert_null(vblk_vduse_queue(fx->v, 0));
    struct vblk_transport_stats st;
    vblk_vduse_stats(fx->v, &st);
    assert_true(st.memory_faults > 0);
    /* A queue size beyond what VQ_SETUP allowed is refused too. */
    driver_setup(fx, false);
    fx->fk.info[0].num = 2 * QSIZE;
    assert_int_equal(set_status(fx, VBLK_STATUS_FEATURES_OK | VBLK_STATUS_DRIVER_OK),
                     VDUSE_ABI_RESULT_FAILED);
}

static struct vduse_abi_response get_vq_state(struct fixture *fx, uint32_t index)
{
    struct vduse_abi_request req;
    memset(&req, 0, sizeof(req));
    req.vq_state.index = index;
    return send_req(fx, VDUSE_MSG_GET_VQ_STATE, &req);
}

/* A firmware driver (SeaBIOS through vhost-vdpa) sets up queue 0 only, and
 * vhost-vdpa then enables every queue: the device serves queue 0 and leaves
 * queue 1 idle, as a virtio-blk device does with queues nobody set up. */
static void partly_configured_device_serves_its_queues(void **state)
{
    struct fixture *fx = *state;
    driver_setup(fx, false);
    fx->fk.info[1] = (struct vduse_abi_vq_info){.index = 1, .ready = 1};
    assert_int_equal(set_status(fx, VBLK_STATUS_FEATURES_OK), VDUSE_ABI_RESULT_OK);
    assert_int_equal(set_status(fx, VBLK_STATUS_FEATURES_OK | VBLK_STATUS_DRIVER_OK),
                     VDUSE_ABI_RESULT_OK);
    assert_non_null(vblk_vduse_queue(fx->v, 0));
    assert_null(vblk_vduse_queue(fx->v, 1));
    assert_int_equal(fx->fk.kickfd[1], -1);
    uint8_t *buf = arena_alloc(fx, 512);
    memset(buf, 0x3c, 512);
    assert_int_equal(do_request(fx, VBLK_T_OUT, 1, buf, 512), VBLK_S_OK);
    memset(buf, 0, 512);
    assert_int_equal(do_request(fx, VBLK_T_IN, 1, buf, 512), VBLK_S_OK);
    assert_int_equal(buf[511], 0x3c);
    struct vduse_abi_response r = get_vq_state(fx, 1);
    assert_int_equal(r.result, VDUSE_ABI_RESULT_OK);
    assert_int_equal(r.vq_state.split.avail_index, 0);

    /* The next driver resets the device and sets up what it uses. */
    assert_int_equal(set_status(fx, 0), VDUSE_ABI_RESULT_OK);
    bring_up(fx, false);
    assert_non_null(vblk_vduse_queue(fx->v, 0));
    assert_int_equal(do_request(fx, VBLK_T_IN, 1, buf, 512), VBLK_S_OK);
    assert_int_equal(buf[0], 0x3c);

    /* A ready queue with addresses but no size is still refused: that one
     * was set up, wrongly. */
    assert_int_equal(set_status(fx, 0), VDUSE_ABI_RESULT_OK);
    driver_setup(fx, false);
    fx->fk.info[1] = (struct vduse_abi_vq_info){.index = 1, .ready = 1, .desc_addr = IOVA_BASE};
    assert_int_equal(set_status(fx, VBLK_STATUS_FEATURES_OK | VBLK_STATUS_DRIVER_OK),
                     VDUSE_ABI_RESULT_FAILED);
    assert_null(vblk_vduse_queue(fx->v, 0));
}

static void vq_state_split(void **state)
{
    struct fixture *fx = *state;
    driver_setup(fx, false);
    struct vduse_abi_response r = get_vq_state(fx, 0);
    assert_int_equal(r.result, VDUSE_ABI_RESULT_OK);
    assert_int_equal(r.vq_state.index, 0);
    assert_int_equal(r.vq_state.split.avail_index, 0);

    bring_up(fx, false);
    uint8_t *buf = arena_alloc(fx, 512);
    for (int i = 0; i < 3; i++)
        assert_int_equal(do_request(fx, VBLK_T_IN, (uint64_t)i, buf, 512), VBLK_S_OK);
    r = get_vq_state(fx, 0);
    assert_int_equal(r.result, VDUSE_ABI_RESULT_OK);
    assert_int_equal(r.vq_state.split.avail_index, 3);
    assert_int_equal(get_vq_state(fx, 2).result, VDUSE_ABI_RESULT_FAILED);
    assert_int_equal(get_vq_state(fx, UINT32_MAX).result, VDUSE_ABI_RESULT_FAILED);
}

static void vq_state_packed(void **state)
{
    struct fixture *fx = *state;
    driver_setup(fx, true);
    struct vduse_abi_response r = get_vq_state(fx, 0);
    assert_int_equal(r.result, VDUSE_ABI_RESULT_OK);
    /* Not started: the initial packed position, both wrap counters 1. */
    assert_int_equal(r.vq_state.packed.last_avail_counter, 1);
    assert_int_equal(r.vq_state.packed.last_avail_idx, 0);
    assert_int_equal(r.vq_state.packed.last_used_counter, 1);
    assert_int_equal(r.vq_state.packed.last_used_idx, 0);

    bring_up(fx, true);
    uint8_t *buf = arena_alloc(fx, 512);
    /* Three descriptors per request (header, data, status): 6 requests go
     * once around the 16-entry ring and wrap. */
    for (int i = 0; i < 6; i++)
        assert_int_equal(do_request(fx, VBLK_T_IN, (uint64_t)i, buf, 512), VBLK_S_OK);
    r = get_vq_state(fx, 0);
    assert_int_equal(r.result, VDUSE_ABI_RESULT_OK);
    assert_int_equal(r.vq_state.packed.last_avail_idx, 18 - QSIZE);
    assert_int_equal(r.vq_state.packed.last_avail_counter, 0);
    assert_int_equal(r.vq_state.packed.last_used_idx, 18 - QSIZE);
    assert_int_equal(r.vq_state.packed.last_used_counter, 0);

    /* A packed position outside the ring is refused at DRIVER_OK. */
    assert_int_equal(set_status(fx, 0), VDUSE_ABI_RESULT_OK);
    driver_setup(fx, true);
    fx->fk.info[0].packed.last_avail_idx = QSIZE;
    assert_int_equal(set_status(fx, VBLK_STATUS_FEATURES_OK | VBLK_STATUS_DRIVER_OK),
                     VDUSE_ABI_RESULT_FAILED);
}

static void iotlb_update_bookkeeping(void **state)
{
    struct fixture *fx = *state;
    bring_up(fx, false);
    uint8_t *buf = arena_alloc(fx, 4096);
    memset(buf, 0x11, 4096);
    assert_int_equal(do_request(fx, VBLK_T_OUT, 0, buf, 4096), VBLK_S_OK);
    /* Rings and buffers were mapped lazily, one entry each. */
    assert_int_equal(fx->fk.maps, 2);
    assert_int_equal(vblk_mem_count(&fx->v->mem), 2);

    /* A range we never mapped: nothing to do. */
    assert_int_equal(update_iotlb(fx, 0, IOVA_BASE - 1), VDUSE_ABI_RESULT_OK);
    assert_int_equal(fx->fk.unmaps, 0);
    assert_int_equal(update_iotlb(fx, IOVA_BASE + ARENA_SIZE, UINT64_MAX), VDUSE_ABI_RESULT_OK);
    assert_int_equal(fx->fk.unmaps, 0);
    /* A backwards range is refused. */
    assert_int_equal(update_iotlb(fx, 2, 1), VDUSE_ABI_RESULT_FAILED);

    /* One byte of the buffer entry drops the whole entry; the queue keeps
     * running and maps it again on the next request. */
    assert_int_equal(update_iotlb(fx, IOVA_BASE + RING_AREA + 100, IOVA_BASE + RING_AREA + 100),
                     VDUSE_ABI_RESULT_OK);
    assert_int_equal(fx->fk.unmaps, 1);
    assert_int_equal(vblk_mem_count(&fx->v->mem), 1);
    assert_non_null(vblk_vduse_queue(fx->v, 0));
    memset(buf, 0, 4096);
    assert_int_equal(do_request(fx, VBLK_T_IN, 0, buf, 4096), VBLK_S_OK);
    assert_int_equal(buf[4095], 0x11);
    assert_int_equal(fx->fk.maps, 3);

    /* The ring entry: the queue is restarted where it stood. */
    struct vduse_abi_response before = get_vq_state(fx, 0);
    assert_int_equal(update_iotlb(fx, IOVA_BASE, IOVA_BASE), VDUSE_ABI_RESULT_OK);
    assert_int_equal(fx->fk.unmaps, 2);
    assert_non_null(vblk_vduse_queue(fx->v, 0));
    struct vduse_abi_response after = get_vq_state(fx, 0);
    assert_int_equal(before.vq_state.split.avail_index, after.vq_state.split.avail_index);
    assert_int_equal(do_request(fx, VBLK_T_IN, 0, buf, 4096), VBLK_S_OK);

    /* The kernel withdrew the buffer entry, where the status bytes live
     * too: the device cannot even report an error, so the queue stops;
     * nothing crashes, and a reset recovers. */
    fx->fk.ne = 1;
    assert_int_equal(update_iotlb(fx, IOVA_BASE + RING_AREA, IOVA_BASE + ARENA_SIZE - 1),
                     VDUSE_ABI_RESULT_OK);
    struct vblk_drv_blk_frame *fr = arena_alloc(fx, sizeof(*fr));
    struct vblk_iov data = {buf, 4096};
    assert_int_equal(vblk_drv_blk_add(&fx->drv, fr, VBLK_T_IN, 0, &data, 1, fr, false), 0);
    vblk_drv_vq_kick_prepare(&fx->drv);
    vduse_vq_run(fx->v, 0);
    assert_false(vblk_drv_vq_has_used(&fx->drv));
    struct vblk_transport_stats st;
    vblk_vduse_stats(fx->v, &st);
    assert_true(st.memory_faults > 0);
    assert_int_equal(st.broken_queues, 1);
    assert_int_equal(st.memory_updates, 6);
    assert_int_equal(st.memory_maps, fx->fk.maps);
    assert_int_equal(st.memory_unmaps, fx->fk.unmaps);

    /* Everything goes at reset. */
    assert_int_equal(set_status(fx, 0), VDUSE_ABI_RESULT_OK);
    assert_int_equal(vblk_mem_count(&fx->v->mem), 0);
    assert_int_equal(fx->fk.maps, fx->fk.unmaps);
}

static void unmapped_buffer_is_ioerr(void **state)
{
    struct fixture *fx = *state;
    bring_up(fx, false);
    /* A buffer outside the arena has an IOVA no entry covers. */
    uint8_t *outside = aligned_alloc(4096, 4096);
    assert_non_null(outside);
    assert_int_equal(do_request(fx, VBLK_T_IN, 0, outside, 4096), VBLK_S_IOERR);
    free(outside);
    uint8_t *buf = arena_alloc(fx, 512);
    assert_int_equal(do_request(fx, VBLK_T_IN, 0, buf, 512), VBLK_S_OK);
}

static void config_update(void **state)
{
    struct fixture *fx = *state;
    struct vblk_dev *dev = vblk_vduse_blk(fx->v);
    vblk_dev_set_capacity(dev, DISK_SIZE / 2);
    assert_int_equal(vblk_vduse_update_config(fx->v), 0);
    assert_int_equal(fx->fk.config_len, vblk_dev_config_size(dev));
    uint64_t cap;
    memcpy(&cap, fx->fk.config, sizeof(cap));
    assert_int_equal(cap, DISK_SIZE / 2 / 512);
    assert_int_equal(fx->fk.config_irqs, 0); /* no driver yet */
    bring_up(fx, false);
    assert_int_equal(vblk_vduse_update_config(fx->v), 0);
    assert_int_equal(fx->fk.config_irqs, 1);
}

static void config_wce_is_never_offered(void **state)
{
    struct fixture *fx = *state;
    uint64_t f = vblk_dev_features(vblk_vduse_blk(fx->v));
    assert_false(f & VBLK_BIT(VBLK_F_CONFIG_WCE));
    assert_true(f & VBLK_BIT(VBLK_F_FLUSH));
}

/* ---- the core's translation-miss hook, which the adapter is built on ---- */

static int miss_calls;
static uint8_t miss_backing[8192];

static int miss_add(void *opaque, struct vblk_mem *mem, uint64_t addr)
{
    (void)opaque;
    miss_calls++;
    if (addr >= 0x10000 && addr < 0x12000)
        return vblk_mem_add(mem, 0x10000, sizeof(miss_backing), miss_backing, NULL);
    return -EFAULT;
}

static void mem_miss_hook(void **state)
{
    (void)state;
    struct vblk_mem *mem = malloc(sizeof(*mem));
    assert_non_null(mem);
    vblk_mem_init(mem);
    miss_calls = 0;
    vblk_mem_set_miss(mem, miss_add, NULL);
    assert_ptr_equal(vblk_mem_ptr(mem, 0x10010, 16), miss_backing + 0x10);
    assert_int_equal(miss_calls, 1);
    assert_ptr_equal(vblk_mem_ptr(mem, 0x11000, 16), miss_backing + 0x1000);
    assert_int_equal(miss_calls, 1); /* mapped now: no more misses */
    /* Running off the end asks once more, for the first unmapped byte. */
    struct vblk_iov iov[4];
    assert_int_equal(vblk_mem_map(mem, 0x11ff0, 0x20, iov, 4), -EFAULT);
    assert_int_equal(miss_calls, 2);
    assert_null(vblk_mem_ptr(mem, 0x5000, 1));
    assert_int_equal(miss_calls, 3);
    vblk_mem_set_miss(mem, NULL, NULL);
    assert_null(vblk_mem_ptr(mem, 0x5000, 1));
    assert_int_equal(miss_calls, 3);
    free(mem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(bad_lengths_are_not_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_types_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(status_transitions, setup, teardown),
        cmocka_unit_test_setup_teardown(driver_ok_with_unmapped_rings_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(partly_configured_device_serves_its_queues, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(vq_state_split, setup, teardown),
        cmocka_unit_test_setup_teardown(vq_state_packed, setup, teardown),
        cmocka_unit_test_setup_teardown(iotlb_update_bookkeeping, setup, teardown),
        cmocka_unit_test_setup_teardown(unmapped_buffer_is_ioerr, setup, teardown),
        cmocka_unit_test_setup_teardown(config_update, setup, teardown),
        cmocka_unit_test_setup_teardown(config_wce_is_never_offered, setup, teardown),
        cmocka_unit_test(mem_miss_hook),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
