/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the driver-address memory map (lib/core/mem.c): region
 * bookkeeping, translation into host pointers and iovecs, the last-hit
 * cache, and the dirty-page log.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "virtioblk/mem.h"

#define PAGE 4096u

/* Host backing for the regions; each test maps slices of it. */
static uint8_t host[16 * PAGE];

static int setup(void **state)
{
    struct vblk_mem *mem = malloc(sizeof(*mem));
    if (!mem)
        return -1;
    vblk_mem_init(mem);
    *state = mem;
    return 0;
}

static int teardown(void **state)
{
    free(*state);
    return 0;
}

static void add_zero_size_is_rejected(void **state)
{
    struct vblk_mem *mem = *state;
    assert_int_equal(vblk_mem_add(mem, 0x1000, 0, host, NULL), -EINVAL);
    assert_int_equal(vblk_mem_count(mem), 0);
}

static void add_null_host_is_rejected(void **state)
{
    struct vblk_mem *mem = *state;
    assert_int_equal(vblk_mem_add(mem, 0x1000, PAGE, NULL, NULL), -EINVAL);
    assert_int_equal(vblk_mem_count(mem), 0);
}

static void add_range_wrapping_past_2_64_is_rejected(void **state)
{
    struct vblk_mem *mem = *state;
    assert_int_equal(vblk_mem_add(mem, UINT64_MAX - PAGE + 2, PAGE, host, NULL), -EINVAL);
    assert_int_equal(vblk_mem_add(mem, 1, UINT64_MAX, host, NULL), -EINVAL);
    /* Ending exactly at 2^64 - 1 is fine. */
    assert_int_equal(vblk_mem_add(mem, UINT64_MAX - PAGE + 1, PAGE, host, NULL), 0);
    assert_ptr_equal(vblk_mem_ptr(mem, UINT64_MAX, 1), host + PAGE - 1);
}

static void add_host_range_wrapping_is_rejected(void **state)
{
    struct vblk_mem *mem = *state;
    void *h = (void *)(UINTPTR_MAX - 15);
    assert_int_equal(vblk_mem_add(mem, 0x1000, 32, h, NULL), -EINVAL);
    assert_int_equal(vblk_mem_count(mem), 0);
}

static void add_overlapping_regions_is_rejected(void **state)
{
    struct vblk_mem *mem = *state;
    assert_int_equal(vblk_mem_add(mem, 0x10000, 0x2000, host, NULL), 0);
    /* Ends inside the existing region. */
    assert_int_equal(vblk_mem_add(mem, 0xF000, 0x1001, host, NULL), -EEXIST);
    /* Starts inside it. */
    assert_int_equal(vblk_mem_add(mem, 0x11FFF, 0x1000, host, NULL), -EEXIST);
    /* Strictly inside. */
    assert_int_equal(vblk_mem_add(mem, 0x10800, 0x100, host, NULL), -EEXIST);
    /* Equal. */
    assert_int_equal(vblk_mem_add(mem, 0x10000, 0x2000, host, NULL), -EEXIST);
    /* Same start, different size. */
    assert_int_equal(vblk_mem_add(mem, 0x10000, 0x10, host, NULL), -EEXIST);
    /* Covering it entirely. */
    assert_int_equal(vblk_mem_add(mem, 0x8000, 0x10000, host, NULL), -EEXIST);
    assert_int_equal(vblk_mem_count(mem), 1);
}

static void add_adjacent_regions_is_accepted_and_sorted(void **state)
{
    struct vblk_mem *mem = *state;
    assert_int_equal(vblk_mem_add(mem, 0x20000, PAGE, host + 2 * PAGE, NULL), 0);
    assert_int_equal(vblk_mem_add(mem, 0x1F000, PAGE, host, NULL), 0);
    assert_int_equal(vblk_mem_add(mem, 0x21000, PAGE, host + 5 * PAGE, (void *)0x55), 0);
    assert_int_equal(vblk_mem_count(mem), 3);
    assert_int_equal(vblk_mem_region_at(mem, 0)->addr, 0x1F000);
    assert_int_equal(vblk_mem_region_at(mem, 1)->addr, 0x20000);
    const struct vblk_mem_region *r = vblk_mem_region_at(mem, 2);
    assert_int_equal(r->addr, 0x21000);
    assert_int_equal(r->size, PAGE);
    assert_ptr_equal(r->host, host + 5 * PAGE);
    assert_ptr_equal(r->opaque, (void *)0x55);
    assert_null(vblk_mem_region_at(mem, 3));
}

static void add_to_full_map_gives_enospc(void **state)
{
    struct vblk_mem *mem = *state;
    for (uint32_t i = 0; i < VBLK_MEM_MAX_REGIONS; i++)
        assert_int_equal(vblk_mem_add(mem, (uint64_t)i * 0x100, 0x10, host, NULL), 0);
    assert_int_equal(vblk_mem_count(mem), VBLK_MEM_MAX_REGIONS);
    assert_int_equal(vblk_mem_add(mem, 0x1000000, 0x10, host, NULL), -ENOSPC);
    /* Every region still translates (binary search over a full map). */
    for (uint32_t i = 0; i < VBLK_MEM_MAX_REGIONS; i += 37)
        assert_ptr_equal(vblk_mem_ptr(mem, (uint64_t)i * 0x100 + 3, 1), host + 3);
    assert_null(vblk_mem_ptr(mem, 0x10, 1));
    /* Removing one makes room again. */
    assert_int_equal(vblk_mem_remove(mem, 0x200, 0x10, NULL), 0);
    assert_int_equal(vblk_mem_add(mem, 0x1000000, 0x10, host, NULL), 0);
}

static void remove_needs_exact_start_and_size(void **state)
{
    struct vblk_mem *mem = *state;
    struct vblk_mem_region out;
    assert_int_equal(vblk_mem_add(mem, 0x1000, PAGE, host, (void *)0x77), 0);
    assert_int_equal(vblk_mem_add(mem, 0x3000, PAGE, host + PAGE, NULL), 0);
    assert_int_equal(vblk_mem_remove(mem, 0x1000, PAGE - 1, NULL), -ENOENT);
    assert_int_equal(vblk_mem_remove(mem, 0x1001, PAGE, NULL), -ENOENT);
    assert_int_equal(vblk_mem_remove(mem, 0x5000, PAGE, NULL), -ENOENT);
    assert_int_equal(vblk_mem_remove(mem, 0x1000, PAGE, &out), 0);
    assert_int_equal(out.addr, 0x1000);
    assert_int_equal(out.size, PAGE);
    assert_ptr_equal(out.host, host);
    assert_ptr_equal(out.opaque, (void *)0x77);
    assert_int_equal(vblk_mem_count(mem), 1);
    assert_int_equal(vblk_mem_region_at(mem, 0)->addr, 0x3000);
    assert_int_equal(vblk_mem_remove(mem, 0x1000, PAGE, NULL), -ENOENT);
    assert_null(vblk_mem_ptr(mem, 0x1000, 1));
}

static void ptr_inside_region_translates(void **state)
{
    struct vblk_mem *mem = *state;
    assert_int_equal(vblk_mem_add(mem, 0x40000, 2 * PAGE, host + PAGE, NULL), 0);
    assert_ptr_equal(vblk_mem_ptr(mem, 0x40000, 2 * PAGE), host + PAGE);
    assert_ptr_equal(vblk_mem_ptr(mem, 0x40010, 16), host + PAGE + 16);
    assert_ptr_equal(vblk_mem_ptr(mem, 0x41FFF, 1), host + 3 * PAGE - 1);
    /* Length 0 inside a region still names a mapped address. */
    assert_ptr_equal(vblk_mem_ptr(mem, 0x40000, 0), host + PAGE);
}

static void ptr_outside_or_crossing_end_is_null(void **state)
{
    struct vblk_mem *mem = *state;
    assert_int_equal(vblk_mem_add(mem, 0x40000, PAGE, host, NULL), 0);
    assert_int_equal(vblk_mem_add(mem, 0x41000, PAGE, host + 8 * PAGE, NULL), 0);
    assert_null(vblk_mem_ptr(mem, 0x3FFFF, 1));
    assert_null(vblk_mem_ptr(mem, 0x3FFFF, 2));
    assert_null(vblk_mem_ptr(mem, 0x42000, 1));
    /* Crossing into an adjacent region is not contiguous on the host. */
    assert_null(vblk_mem_ptr(mem, 0x40FFF, 2));
    assert_null(vblk_mem_ptr(mem, 0x40000, PAGE + 1));
}

static void ptr_range_wrapping_is_null(void **state)
{
    struct vblk_mem *mem = *state;
    assert_int_equal(vblk_mem_add(mem, UINT64_MAX - PAGE + 1, PAGE, host, NULL), 0);
    assert_int_equal(vblk_mem_add(mem, 0, PAGE, host + PAGE, NULL), 0);
    assert_null(vblk_mem_ptr(mem, UINT64_MAX, 2));
    assert_null(vblk_mem_ptr(mem, UINT64_MAX - 15, UINT64_MAX));
    assert_null(vblk_mem_ptr(mem, 0x10, UINT64_MAX));
}

static void map_splits_across_adjacent_regions(void **state)
{
    struct vblk_mem *mem = *state;
    struct vblk_iov iov[4];
    /* Adjacent in driver space, far apart on the host. */
    assert_int_equal(vblk_mem_add(mem, 0x10000, PAGE, host + 8 * PAGE, NULL), 0);
    assert_int_equal(vblk_mem_add(mem, 0x11000, PAGE, host, NULL), 0);
    assert_int_equal(vblk_mem_map(mem, 0x10F00, 0x200, iov, 4), 2);
    assert_ptr_equal(iov[0].base, host + 8 * PAGE + 0xF00);
    assert_int_equal(iov[0].len, 0x100);
    assert_ptr_equal(iov[1].base, host);
    assert_int_equal(iov[1].len, 0x100);
    /* Within one region: a single iovec. */
    assert_int_equal(vblk_mem_map(mem, 0x11010, 0x20, iov, 4), 1);
    assert_ptr_equal(iov[0].base, host + 0x10);
    assert_int_equal(iov[0].len, 0x20);
}

static void map_hole_gives_efault(void **state)
{
    struct vblk_mem *mem = *state;
    struct vblk_iov iov[4];
    assert_int_equal(vblk_mem_add(mem, 0x10000, PAGE, host, NULL), 0);
    assert_int_equal(vblk_mem_add(mem, 0x12000, PAGE, host + PAGE, NULL), 0);
    assert_int_equal(vblk_mem_map(mem, 0x10F00, 0x200, iov, 4), -EFAULT);
    assert_int_equal(vblk_mem_map(mem, 0x11000, 1, iov, 4), -EFAULT);
    assert_int_equal(vblk_mem_map(mem, 0x10000, 3 * PAGE, iov, 4), -EFAULT);
    assert_int_equal(vblk_mem_map(mem, 0xFFFF, 2, iov, 4), -EFAULT);
}

static void map_needing_more_iovecs_gives_enobufs(void **state)
{
    struct vblk_mem *mem = *state;
    struct vblk_iov iov[3];
    for (int i = 0; i < 4; i++)
        assert_int_equal(vblk_mem_add(mem, 0x10000 + (uint64_t)i * PAGE, PAGE,
                                      host + (uint64_t)(3 - i) * PAGE, NULL),
                         0);
    assert_int_equal(vblk_mem_map(mem, 0x10000, 3 * PAGE, iov, 3), 3);
    assert_int_equal(vblk_mem_map(mem, 0x10000, 3 * PAGE + 1, iov, 3), -ENOBUFS);
    assert_int_equal(vblk_mem_map(mem, 0x10000, 1, iov, 0), -ENOBUFS);
}

static void map_zero_length_yields_no_iovecs(void **state)
{
    struct vblk_mem *mem = *state;
    struct vblk_iov iov[1] = {{(void *)0x1, 7}};
    /* Even for an unmapped address: there is nothing to translate. */
    assert_int_equal(vblk_mem_map(mem, 0x123456, 0, iov, 1), 0);
    assert_int_equal(vblk_mem_map(mem, 0x123456, 0, NULL, 0), 0);
    assert_ptr_equal(iov[0].base, (void *)0x1);
}

static void map_range_overflowing_2_64_gives_efault(void **state)
{
    struct vblk_mem *mem = *state;
    struct vblk_iov iov[4];
    assert_int_equal(vblk_mem_add(mem, UINT64_MAX - PAGE + 1, PAGE, host, NULL), 0);
    assert_int_equal(vblk_mem_add(mem, 0, PAGE, host + PAGE, NULL), 0);
    /* Mapped on both sides of the wrap, but a buffer cannot wrap. */
    assert_int_equal(vblk_mem_map(mem, UINT64_MAX - 0xF, 0x20, iov, 4), -EFAULT);
    assert_int_equal(vblk_mem_map(mem, 0x10, UINT64_MAX, iov, 4), -EFAULT);
    /* Up to the last byte is fine. */
    assert_int_equal(vblk_mem_map(mem, UINT64_MAX - 0xF, 0x10, iov, 4), 1);
    assert_ptr_equal(iov[0].base, host + PAGE - 0x10);
}

static void cache_follows_regions_after_add(void **state)
{
    struct vblk_mem *mem = *state;
    assert_int_equal(vblk_mem_add(mem, 0x30000, PAGE, host + 3 * PAGE, NULL), 0);
    assert_ptr_equal(vblk_mem_ptr(mem, 0x30004, 4), host + 3 * PAGE + 4);
    /* Inserting before the cached region shifts it to another index. */
    assert_int_equal(vblk_mem_add(mem, 0x10000, PAGE, host + PAGE, NULL), 0);
    assert_int_equal(vblk_mem_add(mem, 0x20000, PAGE, host + 2 * PAGE, NULL), 0);
    assert_ptr_equal(vblk_mem_ptr(mem, 0x30004, 4), host + 3 * PAGE + 4);
    assert_ptr_equal(vblk_mem_ptr(mem, 0x10004, 4), host + PAGE + 4);
    assert_ptr_equal(vblk_mem_ptr(mem, 0x20004, 4), host + 2 * PAGE + 4);
    assert_null(vblk_mem_ptr(mem, 0x28000, 4));
    assert_ptr_equal(vblk_mem_ptr(mem, 0x20004, 4), host + 2 * PAGE + 4);
}

static void cache_forgets_removed_region(void **state)
{
    struct vblk_mem *mem = *state;
    struct vblk_iov iov[2];
    assert_int_equal(vblk_mem_add(mem, 0x10000, PAGE, host, NULL), 0);
    assert_int_equal(vblk_mem_add(mem, 0x20000, PAGE, host + PAGE, NULL), 0);
    assert_int_equal(vblk_mem_add(mem, 0x30000, PAGE, host + 2 * PAGE, NULL), 0);
    /* Hit the last region, then remove it: the cache must not keep it. */
    assert_ptr_equal(vblk_mem_ptr(mem, 0x30000, 1), host + 2 * PAGE);
    assert_int_equal(vblk_mem_remove(mem, 0x30000, PAGE, NULL), 0);
    assert_null(vblk_mem_ptr(mem, 0x30000, 1));
    assert_int_equal(vblk_mem_map(mem, 0x30000, 1, iov, 2), -EFAULT);
    /* Hit the middle one, remove the first: indices shift under the cache. */
    assert_ptr_equal(vblk_mem_ptr(mem, 0x20000, 1), host + PAGE);
    assert_int_equal(vblk_mem_remove(mem, 0x10000, PAGE, NULL), 0);
    assert_null(vblk_mem_ptr(mem, 0x10000, 1));
    assert_ptr_equal(vblk_mem_ptr(mem, 0x20000, 1), host + PAGE);
    /* Re-adding at the same address with a new host pointer is honoured. */
    assert_int_equal(vblk_mem_add(mem, 0x30000, PAGE, host + 7 * PAGE, NULL), 0);
    assert_ptr_equal(vblk_mem_ptr(mem, 0x30010, 1), host + 7 * PAGE + 0x10);
    assert_int_equal(vblk_mem_remove(mem, 0x20000, PAGE, NULL), 0);
    assert_int_equal(vblk_mem_remove(mem, 0x30000, PAGE, NULL), 0);
    assert_int_equal(vblk_mem_count(mem), 0);
    assert_null(vblk_mem_ptr(mem, 0x30010, 1));
    assert_null(vblk_mem_ptr(mem, 0x20000, 1));
}

static void log_write_sets_page_bits(void **state)
{
    struct vblk_mem *mem = *state;
    uint8_t log[4] = {0};
    assert_false(vblk_mem_logging(mem));
    vblk_mem_set_log(mem, log, sizeof(log));
    assert_true(vblk_mem_logging(mem));
    vblk_mem_log_write(mem, 3 * PAGE + 100, 1); /* page 3 */
    assert_int_equal(log[0], 0x08);
    vblk_mem_log_write(mem, 7 * PAGE - 1, 2); /* pages 6 and 7 */
    assert_int_equal(log[0], 0xC8);
    vblk_mem_log_write(mem, 8 * PAGE - 1, PAGE + 2); /* pages 7, 8, 9 */
    assert_int_equal(log[0], 0xC8);
    assert_int_equal(log[1], 0x03);
    vblk_mem_log_write(mem, 20 * PAGE, PAGE); /* exactly page 20 */
    assert_int_equal(log[2], 0x10);
    vblk_mem_log_write(mem, 30 * PAGE, 0); /* nothing */
    assert_int_equal(log[3], 0);
}

static void log_write_clamps_at_log_end(void **state)
{
    struct vblk_mem *mem = *state;
    /* Heap-allocated so ASan catches a write past the 2-byte log. */
    uint8_t *log = calloc(1, 2);
    assert_non_null(log);
    vblk_mem_set_log(mem, log, 2);
    vblk_mem_log_write(mem, 14 * PAGE, 10 * PAGE); /* pages 14..23, 16 bits exist */
    assert_int_equal(log[0], 0);
    assert_int_equal(log[1], 0xC0);
    vblk_mem_log_write(mem, 16 * PAGE, PAGE);      /* entirely past the end */
    vblk_mem_log_write(mem, UINT64_MAX - 10, 100); /* wraps: ignored */
    assert_int_equal(log[1], 0xC0);
    vblk_mem_log_write(mem, 0, UINT64_MAX); /* everything: all 16 bits */
    assert_int_equal(log[0], 0xFF);
    assert_int_equal(log[1], 0xFF);
    free(log);
}

static void log_disabled_writes_nothing(void **state)
{
    struct vblk_mem *mem = *state;
    uint8_t log[2] = {0};
    vblk_mem_set_log(mem, log, sizeof(log));
    vblk_mem_set_log(mem, NULL, 123);
    assert_false(vblk_mem_logging(mem));
    vblk_mem_log_write(mem, 0, PAGE);
    assert_int_equal(vblk_mem_add(mem, 0, PAGE, host, NULL), 0);
    vblk_mem_log_host(mem, host, PAGE);
    assert_int_equal(log[0], 0);
}

static void log_host_translates_to_driver_pages(void **state)
{
    struct vblk_mem *mem = *state;
    uint8_t log[8] = {0};
    /* Driver pages 16..17 are host pages 4..5; driver page 32 is host 0. */
    assert_int_equal(vblk_mem_add(mem, 16 * PAGE, 2 * PAGE, host + 4 * PAGE, NULL), 0);
    assert_int_equal(vblk_mem_add(mem, 32 * PAGE, PAGE, host, NULL), 0);
    vblk_mem_set_log(mem, log, sizeof(log));
    vblk_mem_log_host(mem, host + 5 * PAGE + 10, 1);
    assert_int_equal(log[2], 0x02); /* page 17 */
    vblk_mem_log_host(mem, host + 100, 10);
    assert_int_equal(log[4], 0x01); /* page 32 */
    /* A length running past the region is clamped to it. */
    vblk_mem_log_host(mem, host + 5 * PAGE, 8 * PAGE);
    assert_int_equal(log[2], 0x02);
    assert_int_equal(log[3], 0x00);
    vblk_mem_log_host(mem, host + 4 * PAGE, 2 * PAGE);
    assert_int_equal(log[2], 0x03);
    /* Host memory outside every region is ignored. */
    vblk_mem_log_host(mem, host + 10 * PAGE, PAGE);
    vblk_mem_log_host(mem, host + 3 * PAGE, 1);
    for (int i = 0; i < 8; i++)
        assert_int_equal(log[i], i == 2 ? 0x03 : i == 4 ? 0x01 : 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(add_zero_size_is_rejected),
        T(add_null_host_is_rejected),
        T(add_range_wrapping_past_2_64_is_rejected),
        T(add_host_range_wrapping_is_rejected),
        T(add_overlapping_regions_is_rejected),
        T(add_adjacent_regions_is_accepted_and_sorted),
        T(add_to_full_map_gives_enospc),
        T(remove_needs_exact_start_and_size),
        T(ptr_inside_region_translates),
        T(ptr_outside_or_crossing_end_is_null),
        T(ptr_range_wrapping_is_null),
        T(map_splits_across_adjacent_regions),
        T(map_hole_gives_efault),
        T(map_needing_more_iovecs_gives_enobufs),
        T(map_zero_length_yields_no_iovecs),
        T(map_range_overflowing_2_64_gives_efault),
        T(cache_follows_regions_after_add),
        T(cache_forgets_removed_region),
        T(log_write_sets_page_bits),
        T(log_write_clamps_at_log_end),
        T(log_disabled_writes_nothing),
        T(log_host_translates_to_driver_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
