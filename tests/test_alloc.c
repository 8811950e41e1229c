/* SPDX-License-Identifier: MIT */
/*
 * The datapath never allocates: after the queues are started, thousands of
 * requests go through the loopback transport and the null and memory
 * backends without a single malloc/calloc/realloc call. The allocator
 * entry points are wrapped at link time (-Wl,--wrap) so calls from inside
 * the library are counted too.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "virtioblk/virtioblk.h"

static unsigned long allocs;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_aligned_alloc(size_t a, size_t n);
int __wrap_posix_memalign(void **p, size_t a, size_t n);

void *__wrap_malloc(size_t n)
{
    allocs++;
    return __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t m)
{
    allocs++;
    return __real_calloc(n, m);
}
void *__wrap_realloc(void *p, size_t n)
{
    allocs++;
    return __real_realloc(p, n);
}
void *__wrap_aligned_alloc(size_t a, size_t n)
{
    allocs++;
    return __real_aligned_alloc(a, n);
}
int __wrap_posix_memalign(void **p, size_t a, size_t n)
{
    allocs++;
    return __real_posix_memalign(p, a, n);
}

static void datapath(bool packed, bool memory)
{
    struct vblk_backend be;
    if (memory)
        assert_int_equal(vblk_backend_memory_create(4 << 20, &be), 0);
    else
        assert_int_equal(vblk_backend_null_create(4 << 20, &be), 0);
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, 4 << 20);
    struct vblk_loopback_opts o = {.packed = packed, .queue_size = 256};
    struct vblk_loopback *lb;
    assert_int_equal(vblk_loopback_create(&p, &be, &o, &lb), 0);
    uint8_t *buf = vblk_loopback_alloc(lb, 64 * 1024);
    struct vblk_drv_blk_frame *frames = vblk_loopback_alloc(lb, 64 * sizeof(*frames));
    struct vblk_drv_vq *vq = vblk_loopback_driver(lb, 0);

    unsigned long before = allocs;
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < 64; i++) {
            struct vblk_iov d = {buf + (size_t)i * 1024, 1024};
            uint32_t type = i % 2 ? VBLK_T_OUT : VBLK_T_IN;
            assert_int_equal(vblk_drv_blk_add(vq, &frames[i], type, (uint64_t)i * 2, &d, 1,
                                              &frames[i], i % 3 == 0),
                             0);
        }
        assert_true(vblk_loopback_kick(lb, 0) >= 0);
        void *tok;
        uint32_t len;
        int n = 0;
        while (vblk_drv_vq_get_used(vq, &tok, &len) == 1) {
            assert_int_equal(((struct vblk_drv_blk_frame *)tok)->status, VBLK_S_OK);
            n++;
        }
        assert_int_equal(n, 64);
    }
    assert_int_equal(allocs - before, 0);
    vblk_loopback_destroy(lb);
    vblk_backend_destroy(&be);
}

static void null_split_no_alloc(void **s)
{
    (void)s;
    datapath(false, false);
}
static void null_packed_no_alloc(void **s)
{
    (void)s;
    datapath(true, false);
}
static void memory_split_no_alloc(void **s)
{
    (void)s;
    datapath(false, true);
}
static void memory_packed_no_alloc(void **s)
{
    (void)s;
    datapath(true, true);
}

static void allocations_are_counted(void **s)
{
    (void)s;
    /* Setting a loopback up allocates (rings, pools): proves that calls
     * made inside the library reach the counter. */
    struct vblk_backend be;
    assert_int_equal(vblk_backend_null_create(1 << 20, &be), 0);
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, 1 << 20);
    struct vblk_loopback *lb;
    unsigned long before = allocs;
    assert_int_equal(vblk_loopback_create(&p, &be, NULL, &lb), 0);
    assert_true(allocs - before >= 3);
    vblk_loopback_destroy(lb);
    vblk_backend_destroy(&be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(allocations_are_counted), cmocka_unit_test(null_split_no_alloc),
        cmocka_unit_test(null_packed_no_alloc),    cmocka_unit_test(memory_split_no_alloc),
        cmocka_unit_test(memory_packed_no_alloc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
