/* SPDX-License-Identifier: MIT */
/*
 * The attack catalogue, VDUSE layer: hostile kernel requests and a driver
 * that breaks its ring with requests in flight, against the VDUSE adapter
 * (lib/transport/vduse/) over a kernel stand-in (attack_harness.h). Each
 * case is named after what it models and asserts the outcome the library
 * defines: a failure result, an unanswered request, or a reset that waits
 * for the requests in flight before it releases the queue.
 *
 * Every case also checks what must NOT happen: no request reaches the
 * backend unless it is valid, no fd stays open, no request stays in
 * flight. Under ASan/LSan (VBLK_SANITIZE=ON) an out-of-bounds access or a
 * leak fails the case too: the RAM disk and the request pools are separate
 * heap blocks so that any overrun is visible.
 *
 * docs/security.md lists the catalogue as a table (case, outcome, test);
 * tests/attack_cases.sh checks that every case it names exists. The
 * harness is tests/support/attack_harness.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>

#include "attack_harness.h"
#include "transport/vduse/vduse_internal.h"

#define IN   VBLK_T_IN
#define NEXT VBLK_DESC_F_NEXT

/* ======================================================================
 * A driver that breaks its ring while requests are in flight: the
 * transport must wait for them before it releases the queue.
 * ==================================================================== */

static void vduse_vq_state_index_out_of_range_cve_2011_2512_class(void **state)
{
    (void)state;
    struct vd *x = vd_new();
    uint32_t bad[] = {2, 255, 0x10000, UINT32_MAX};
    for (unsigned i = 0; i < 4; i++) {
        struct vduse_abi_request req;
        memset(&req, 0, sizeof(req));
        req.type = VDUSE_MSG_GET_VQ_STATE;
        req.vq_state.index = bad[i];
        uint32_t result = 99;
        assert_int_equal(vd_send(x, &req, sizeof(req), &result), VBLK_VDUSE_MSG_SIZE);
        assert_int_equal(result, VDUSE_ABI_RESULT_FAILED);
    }
    vd_free(x);
}

static void vduse_request_of_wrong_length(void **state)
{
    (void)state;
    struct vd *x = vd_new();
    struct vduse_abi_request req;
    memset(&req, 0, sizeof(req));
    req.type = VDUSE_MSG_SET_STATUS;
    req.status = VBLK_STATUS_ACKNOWLEDGE;
    size_t lens[] = {0, 4, sizeof(req) - 1};
    for (unsigned i = 0; i < 3; i++) {
        uint32_t result = 99;
        assert_int_equal(vd_send(x, &req, lens[i], &result), -EBADMSG);
    }
    struct vblk_transport_stats st;
    vblk_vduse_stats(x->v, &st);
    assert_int_equal(st.bad_messages, 3);
    assert_false(vblk_vduse_attached(x->v));
    vd_free(x);
}

static void vduse_iotlb_update_with_start_after_last(void **state)
{
    (void)state;
    struct vd *x = vd_new();
    struct vduse_abi_request req;
    memset(&req, 0, sizeof(req));
    req.type = VDUSE_MSG_UPDATE_IOTLB;
    req.iova.start = VD_IOVA + 4096;
    req.iova.last = VD_IOVA;
    uint32_t result = 99;
    assert_int_equal(vd_send(x, &req, sizeof(req), &result), VBLK_VDUSE_MSG_SIZE);
    assert_int_equal(result, VDUSE_ABI_RESULT_FAILED);
    vd_free(x);
}

static void vduse_reset_waits_for_requests_of_broken_ring(void **state)
{
    (void)state;
    struct vd *x = vd_new();
    x->bd.hold = true;
    atk_ring_init(&x->ring, x->k.arena, VD_IOVA, ATK_QSIZE, false);
    x->k.ring = &x->ring;
    uint8_t ok = VBLK_STATUS_ACKNOWLEDGE | VBLK_STATUS_DRIVER | VBLK_STATUS_FEATURES_OK;
    assert_int_equal(vd_status(x, ok), VDUSE_ABI_RESULT_OK);
    assert_int_equal(vd_status(x, ok | VBLK_STATUS_DRIVER_OK), VDUSE_ABI_RESULT_OK);
    /* One good request, held by the backend. */
    uint8_t *a = x->k.arena;
    struct vblk_req_hdr h = {IN, 0, 0};
    memcpy(a + 0x4000, &h, 16);
    struct atk_seg s[3] = {
        {VD_IOVA + 0x4000, 16, 0}, {VD_IOVA + 0x5000, 512, ATK_W}, {VD_IOVA + 0x6000, 1, ATK_W}};
    atk_post(&x->ring, s, 3);
    vduse_vq_run(x->v, 0);
    assert_int_equal(x->bd.nheld, 1);
    /* Then a descriptor loop: the queue stops. */
    atk_split_set(&x->ring, 8, VD_IOVA + 0x4000, 16, NEXT, 9);
    atk_split_set(&x->ring, 9, VD_IOVA + 0x4000, 16, NEXT, 8);
    atk_split_publish(&x->ring, 8);
    vduse_vq_run(x->v, 0);
    struct vblk_transport_stats st;
    vblk_vduse_stats(x->v, &st);
    assert_int_equal(st.broken_queues, 1);
    /* The driver resets the device; the backend finishes 100 ms later. */
    struct atk_late l = {.req = x->bd.held[0], .delay_ms = 100};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, atk_late_completion, &l), 0);
    assert_int_equal(vd_status(x, 0), VDUSE_ABI_RESULT_OK);
    atomic_store(&l.released, 1);
    pthread_join(th, NULL);
    vd_free(x);
    assert_int_equal(atomic_load(&l.too_early), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* VDUSE */
        cmocka_unit_test(vduse_vq_state_index_out_of_range_cve_2011_2512_class),
        cmocka_unit_test(vduse_request_of_wrong_length),
        cmocka_unit_test(vduse_iotlb_update_with_start_after_last),
        /* transports releasing a broken queue */
        cmocka_unit_test(vduse_reset_waits_for_requests_of_broken_ring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
