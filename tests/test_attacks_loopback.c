/* SPDX-License-Identifier: MIT */
/*
 * The attack catalogue, loopback transport: a driver that breaks its ring
 * while requests are in flight; vblk_loopback_destroy() must wait for them
 * before it releases the queue.
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

#define IN   VBLK_T_IN
#define NEXT VBLK_DESC_F_NEXT

/* ======================================================================
 * A driver that breaks its ring while requests are in flight: the
 * transport must wait for them before it releases the queue.
 * ==================================================================== */

static void loopback_destroy_waits_for_requests_of_broken_ring(void **state)
{
    (void)state;
    struct atk_disk bd;
    struct vblk_backend be;
    atk_disk_init(&bd, &be);
    bd.hold = true;
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, ATK_DISK);
    struct vblk_loopback_opts o = {
        .queue_size = ATK_QSIZE, .no_indirect = true, .no_event_idx = true};
    struct vblk_loopback *lb;
    assert_int_equal(vblk_loopback_create(&p, &be, &o, &lb), 0);
    struct vblk_drv_vq *drv = vblk_loopback_driver(lb, 0);
    struct vblk_drv_blk_frame *fr = vblk_loopback_alloc(lb, sizeof(*fr));
    struct vblk_iov data = {vblk_loopback_alloc(lb, 512), 512};
    assert_int_equal(vblk_drv_blk_add(drv, fr, IN, 0, &data, 1, fr, false), 0);
    assert_int_equal(vblk_loopback_kick(lb, 0), 1);
    assert_int_equal(bd.nheld, 1);
    /* Now a descriptor loop, written straight into the driver's ring. */
    struct vblk_vq_addrs ad;
    vblk_drv_vq_addrs(drv, &ad);
    struct vblk_split_desc *desc = (void *)(uintptr_t)ad.desc;
    struct vblk_split_avail *avail = (void *)(uintptr_t)ad.driver;
    desc[8] = (struct vblk_split_desc){(uintptr_t)&fr->hdr, 16, NEXT, 9};
    desc[9] = (struct vblk_split_desc){(uintptr_t)&fr->hdr, 16, NEXT, 8};
    uint16_t idx = avail->idx;
    avail->ring[idx % ATK_QSIZE] = 8;
    __atomic_store_n(&avail->idx, (uint16_t)(idx + 1), __ATOMIC_RELEASE);
    assert_int_equal(vblk_loopback_process(lb, 0), -EIO);

    struct atk_late l = {.req = bd.held[0], .delay_ms = 100};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, atk_late_completion, &l), 0);
    vblk_loopback_destroy(lb);
    atomic_store(&l.released, 1);
    pthread_join(th, NULL);
    free(bd.disk);
    assert_int_equal(atomic_load(&l.too_early), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* transports releasing a broken queue */
        cmocka_unit_test(loopback_destroy_waits_for_requests_of_broken_ring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
