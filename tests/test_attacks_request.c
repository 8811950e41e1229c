/* SPDX-License-Identifier: MIT */
/*
 * The attack catalogue, request layer: what a hostile guest driver can put
 * in a well-formed chain for the device model (lib/core/blk_req.c,
 * blk_queue.c, blk_dev.c): status byte and header placement, request
 * contents (sectors, lengths, segments, types), a header changed after the
 * device read it, work in flight, and queue indices and config space
 * values a transport passes on. Each case is named after what it models
 * and asserts the outcome the library defines: a status byte
 * (VBLK_S_IOERR / VBLK_S_UNSUPP) for an invalid request, a broken queue
 * for a chain whose status byte cannot be written, an error return for a
 * bad value from a transport.
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

#include "attack_harness.h"
#include "virtioblk/advanced.h"

#define IN  VBLK_T_IN
#define OUT VBLK_T_OUT

/* ======================================================================
 * Ring structure: every one of these breaks the queue.
 * ==================================================================== */

static void status_byte_in_read_only_descriptor(void **state)
{
    (void)state;
    for (int pk = 0; pk < 2; pk++) {
        struct atk *a = atk_up(pk);
        uint64_t st = atk_status(a);
        struct atk_seg s[3] = {
            {atk_hdr(a, OUT, 0), 16, 0}, {atk_galloc(a, 512, 0), 512, 0}, {st, 1, 0}};
        atk_post(&a->ring, s, 3);
        atk_expect_broken(a);
        /* Nothing was written to the driver's read-only buffer. */
        assert_int_equal(atk_status_of(a, st), 0xee);
        atk_free(a);
    }
}

static void status_byte_in_zero_length_descriptor(void **state)
{
    (void)state;
    for (int pk = 0; pk < 2; pk++) {
        struct atk *a = atk_up(pk);
        uint64_t st = atk_status(a);
        struct atk_seg s[2] = {{atk_hdr(a, IN, 0), 16, 0}, {st, 0, ATK_W}};
        atk_post(&a->ring, s, 2);
        atk_expect_broken(a);
        assert_int_equal(atk_status_of(a, st), 0xee);
        atk_free(a);
    }
}

static void status_byte_outside_guest_memory(void **state)
{
    (void)state;
    /* No status byte can be written: the chain cannot be completed. */
    for (int pk = 0; pk < 2; pk++) {
        struct atk *a = atk_up(pk);
        struct atk_seg s[2] = {{atk_hdr(a, IN, 0), 16, 0}, {ATK_GPA + ATK_MEM_LEN, 1, ATK_W}};
        atk_post(&a->ring, s, 2);
        atk_expect_broken(a);
        atk_free(a);
    }
}

/* ======================================================================
 * Buffers: well-formed chains naming bad memory fail with IOERR.
 * ==================================================================== */

static void header_in_writable_descriptor(void **state)
{
    (void)state;
    for (int pk = 0; pk < 2; pk++) {
        struct atk *a = atk_up(pk);
        uint64_t h = atk_hdr(a, IN, 0), buf = atk_galloc(a, 512, 0x5a), st = atk_status(a);
        struct atk_seg s[3] = {{h, 16, ATK_W}, {buf, 512, ATK_W}, {st, 1, ATK_W}};
        atk_post(&a->ring, s, 3);
        atk_expect_status(a, st, VBLK_S_IOERR);
        assert_int_equal(a->bd.nsubmit, 0);
        /* Neither the "header" nor the data buffer was written. */
        uint8_t want[512];
        memset(want, 0x5a, sizeof(want));
        assert_memory_equal(atk_host(a, buf), want, 512);
        assert_int_equal(((struct vblk_req_hdr *)atk_host(a, h))->type, IN);
        atk_free(a);
    }
}

static void header_shorter_than_16_bytes(void **state)
{
    (void)state;
    for (int pk = 0; pk < 2; pk++) {
        struct atk *a = atk_up(pk);
        uint64_t st = atk_status(a);
        struct atk_seg s[2] = {{atk_hdr(a, IN, 0), 15, 0}, {st, 1, ATK_W}};
        atk_post(&a->ring, s, 2);
        atk_expect_status(a, st, VBLK_S_IOERR);
        atk_free(a);
    }
}

static void more_data_descriptors_than_seg_max(void **state)
{
    (void)state;
    /* seg_max is 8: nine 512-byte data descriptors. */
    for (int pk = 0; pk < 2; pk++) {
        struct atk *a = atk_up(pk);
        uint64_t st = atk_status(a);
        struct atk_seg s[11] = {{atk_hdr(a, IN, 0), 16, 0}};
        for (unsigned i = 1; i <= 9; i++)
            s[i] = (struct atk_seg){atk_galloc(a, 512, 0), 512, ATK_W};
        s[10] = (struct atk_seg){st, 1, ATK_W};
        atk_post_indirect(&a->ring, atk_table(a, s, 11), 16 * 11, 0);
        atk_expect_status(a, st, VBLK_S_IOERR);
        assert_int_equal(a->bd.nsubmit, 0);
        atk_free(a);
    }
}

/* ======================================================================
 * Request contents: status byte outcomes.
 * ==================================================================== */

static void expect_rw_status(uint32_t type, uint64_t sector, uint32_t len, uint8_t want)
{
    struct atk *a = atk_up(false);
    uint64_t buf = atk_galloc(a, len ? len : 1, 0x33);
    uint64_t st = atk_rq(a, type, sector, buf, len, type == IN ? ATK_W : 0);
    atk_expect_status(a, st, want);
    if (want != VBLK_S_OK)
        assert_int_equal(a->bd.nsubmit, 0);
    atk_free(a);
}

static void sector_range_past_capacity(void **state)
{
    (void)state;
    expect_rw_status(IN, ATK_SECTORS - 1, 1024, VBLK_S_IOERR);
    expect_rw_status(OUT, ATK_SECTORS - 1, 1024, VBLK_S_IOERR);
    expect_rw_status(IN, ATK_SECTORS, 512, VBLK_S_IOERR);
    expect_rw_status(OUT, ATK_SECTORS + 1, 512, VBLK_S_IOERR);
    /* The last sector itself is fine. */
    expect_rw_status(IN, ATK_SECTORS - 1, 512, VBLK_S_OK);
}

static void sector_times_512_overflows_64_bits(void **state)
{
    (void)state;
    /* sector << 9 wraps to a small offset: 2^55 * 512 == 0 (mod 2^64). */
    uint64_t bad[] = {1ull << 55, (1ull << 55) + 1, UINT64_MAX, UINT64_MAX >> 9,
                      (UINT64_MAX >> 9) + 1};
    for (unsigned i = 0; i < 5; i++) {
        expect_rw_status(IN, bad[i], 512, VBLK_S_IOERR);
        expect_rw_status(OUT, bad[i], 512, VBLK_S_IOERR);
    }
}

static void data_length_not_multiple_of_512(void **state)
{
    (void)state;
    expect_rw_status(IN, 0, 100, VBLK_S_IOERR);
    expect_rw_status(OUT, 0, 513, VBLK_S_IOERR);
}

static void write_to_read_only_device(void **state)
{
    (void)state;
    struct atk *a = atk_new(false);
    a->p.read_only = true;
    atk_start(a);
    uint8_t before[512];
    memcpy(before, a->bd.disk, 512);
    uint64_t st = atk_rq(a, OUT, 0, atk_galloc(a, 512, 0x44), 512, 0);
    atk_expect_status(a, st, VBLK_S_IOERR);
    struct vblk_discard_wz_seg seg = {0, 8, 0};
    uint64_t g = atk_galloc(a, 16, 0);
    memcpy(atk_host(a, g), &seg, 16);
    st = atk_rq(a, VBLK_T_DISCARD, 0, g, 16, 0);
    atk_expect_status(a, st, VBLK_S_IOERR);
    assert_int_equal(a->bd.nsubmit, 0);
    assert_memory_equal(a->bd.disk, before, 512);
    atk_free(a);
}

/* A range request carrying @n segments (@len bytes of payload). */
static uint8_t ranges(uint32_t type, const struct vblk_discard_wz_seg *s, unsigned n, uint32_t len)
{
    struct atk *a = atk_up(false);
    uint64_t g = atk_galloc(a, 16u * n + 16, 0);
    memcpy(atk_host(a, g), s, 16u * n);
    uint64_t st = atk_rq(a, type, 0, g, len, 0);
    assert_true(atk_process(a) >= 0);
    assert_int_equal(atk_used(&a->ring, NULL, NULL), 1);
    uint8_t r = atk_status_of(a, st);
    if (r != VBLK_S_OK)
        assert_int_equal(a->bd.nsubmit, 0);
    atk_free(a);
    return r;
}

static void discard_with_more_segments_than_advertised(void **state)
{
    (void)state;
    /* max_discard_seg and max_write_zeroes_seg are 2. */
    struct vblk_discard_wz_seg s[3] = {{0, 8, 0}, {16, 8, 0}, {32, 8, 0}};
    assert_int_equal(ranges(VBLK_T_DISCARD, s, 2, 32), VBLK_S_OK);
    assert_int_equal(ranges(VBLK_T_DISCARD, s, 3, 48), VBLK_S_IOERR);
    assert_int_equal(ranges(VBLK_T_WRITE_ZEROES, s, 3, 48), VBLK_S_IOERR);
}

static void discard_segment_range_overflowing(void **state)
{
    (void)state;
    struct vblk_discard_wz_seg bad[] = {
        {UINT64_MAX - 1, 8, 0},           /* sector + num wraps */
        {UINT64_MAX, 1, 0},               /* sector past capacity */
        {ATK_SECTORS - 1, 2, 0},          /* last sector + 1 */
        {1ull << 55, 1, 0},               /* sector * 512 wraps */
        {0, 65, 0},                       /* more than max_discard_sectors */
        {ATK_SECTORS - 8, UINT32_MAX, 0}, /* num_sectors * 512 beyond 32 bits */
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ranges(VBLK_T_DISCARD, &bad[i], 1, 16), VBLK_S_IOERR);
        assert_int_equal(ranges(VBLK_T_WRITE_ZEROES, &bad[i], 1, 16), VBLK_S_IOERR);
    }
    /* One good segment does not excuse a bad one. */
    struct vblk_discard_wz_seg mix[2] = {{0, 8, 0}, {UINT64_MAX - 1, 8, 0}};
    assert_int_equal(ranges(VBLK_T_DISCARD, mix, 2, 32), VBLK_S_IOERR);
}

static void discard_payload_not_whole_segments(void **state)
{
    (void)state;
    struct vblk_discard_wz_seg s[2] = {{0, 8, 0}, {16, 8, 0}};
    assert_int_equal(ranges(VBLK_T_DISCARD, s, 2, 20), VBLK_S_IOERR);
    assert_int_equal(ranges(VBLK_T_DISCARD, s, 2, 8), VBLK_S_IOERR);
    assert_int_equal(ranges(VBLK_T_DISCARD, s, 1, 0), VBLK_S_IOERR);
}

static void range_flags_unknown_or_misused(void **state)
{
    (void)state;
    struct vblk_discard_wz_seg unknown = {0, 8, 2}, unmap = {0, 8, VBLK_WZ_F_UNMAP};
    assert_int_equal(ranges(VBLK_T_WRITE_ZEROES, &unknown, 1, 16), VBLK_S_UNSUPP);
    assert_int_equal(ranges(VBLK_T_DISCARD, &unmap, 1, 16), VBLK_S_UNSUPP);
    assert_int_equal(ranges(VBLK_T_WRITE_ZEROES, &unmap, 1, 16), VBLK_S_OK);
}

static void unknown_request_type(void **state)
{
    (void)state;
    uint32_t types[] = {2, 3, 0x80000000u, UINT32_MAX};
    for (unsigned i = 0; i < 4; i++)
        expect_rw_status(types[i], 0, 512, VBLK_S_UNSUPP);
}

static void get_id_into_a_one_byte_buffer(void **state)
{
    (void)state;
    struct atk *a = atk_up(false);
    uint64_t buf = atk_galloc(a, 16, 0x77);
    uint64_t st = atk_rq(a, VBLK_T_GET_ID, 0, buf, 1, ATK_W);
    uint32_t len = 0;
    assert_true(atk_process(a) >= 0);
    assert_int_equal(atk_used(&a->ring, NULL, &len), 1);
    assert_int_equal(atk_status_of(a, st), VBLK_S_OK);
    assert_int_equal(len, 2);
    uint8_t *p = atk_host(a, buf);
    assert_int_equal(p[0], 'A');
    assert_int_equal(p[1], 0x77); /* nothing past the buffer */
    atk_free(a);
}

/* ======================================================================
 * Time of check, time of use: the driver changes memory after the
 * device has read it.
 * ==================================================================== */

static void header_rewritten_after_pop_is_not_reread(void **state)
{
    (void)state;
    struct atk *a = atk_up(false);
    a->bd.hold = true;
    uint64_t buf = atk_galloc(a, 512, 0x66);
    uint64_t st = atk_rq(a, OUT, 3, buf, 512, 0);
    assert_int_equal(atk_process(a), 1);
    struct vblk_req_hdr *h = atk_host(a, atk_split_desc(&a->ring)[0].addr);
    h->type = IN;
    h->sector = UINT64_MAX;
    assert_int_equal(a->bd.last.type, OUT);
    assert_int_equal(a->bd.last.sector, 3);
    atk_disk_release(&a->bd, VBLK_S_OK);
    vblk_queue_flush(&a->q);
    assert_int_equal(atk_used(&a->ring, NULL, NULL), 1);
    assert_int_equal(atk_status_of(a, st), VBLK_S_OK);
    assert_memory_equal(a->bd.disk + 3 * 512, atk_host(a, buf), 512);
    atk_free(a);
}

/* ======================================================================
 * Resource bounds.
 * ==================================================================== */

static void driver_never_collects_completions_cve_2016_5403_class(void **state)
{
    (void)state;
    /* The backend holds everything: the driver keeps re-publishing the
     * same chains and never reads the used ring. Work in flight never
     * exceeds the queue size, and nothing grows. */
    struct atk *a = atk_up(false);
    a->bd.hold = true;
    uint16_t heads[5];
    for (unsigned i = 0; i < 5; i++) {
        atk_rq(a, OUT, i, atk_galloc(a, 512, (int)i), 512, 0);
        heads[i] = (uint16_t)(3 * i);
    }
    /* atk_rq published heads 0, 3, 6, 9, 12: 5 of the 16 avail entries. */
    for (unsigned k = 5; k < ATK_QSIZE; k++)
        atk_split_publish(&a->ring, heads[k % 5]);
    unsigned rounds = 12;
    for (unsigned round = 0; round < rounds; round++) {
        assert_int_equal(atk_process(a), (int)ATK_QSIZE);
        assert_int_equal(vblk_queue_inflight(&a->q), ATK_QSIZE);
        /* A full ring more: the device has no free slot for any of it. */
        for (unsigned k = 0; k < ATK_QSIZE; k++)
            atk_split_publish(&a->ring, heads[k % 5]);
        assert_int_equal(atk_process(a), 0);
        assert_int_equal(vblk_queue_inflight(&a->q), ATK_QSIZE);
        assert_true(a->bd.nheld <= ATK_QSIZE);
        atk_disk_release(&a->bd, VBLK_S_OK);
        vblk_queue_flush(&a->q);
        assert_int_equal(vblk_queue_inflight(&a->q), 0);
    }
    assert_int_equal(atk_process(a), (int)ATK_QSIZE);
    const struct vblk_queue_stats *qs = vblk_queue_stats(&a->q);
    assert_true(qs->pool_full >= rounds);
    assert_int_equal(qs->submitted, (rounds + 1) * ATK_QSIZE);
    assert_false(vblk_queue_broken(&a->q));
    /* The used ring simply wrapped; the device kept no other record. */
    assert_int_equal(atk_split_used(&a->ring)->idx, (uint16_t)(rounds * ATK_QSIZE));
    atk_free(a);
}

/* ======================================================================
 * Values a transport passes on from an untrusted source (a vhost-user
 * front-end, a migration stream, an in-flight region).
 * ==================================================================== */

static void queue_index_out_of_range_cve_2011_2512_class(void **state)
{
    (void)state;
    struct atk *a = atk_new(false);
    a->p.num_queues = 2;
    atk_start(a);
    size_t len = vblk_queue_mem_size(&a->dev, ATK_QSIZE);
    void *pool = aligned_alloc(16, (len + 15) & ~(size_t)15);
    assert_non_null(pool);
    struct vblk_queue q2;
    uint16_t bad[] = {2, 3, VBLK_MAX_QUEUES, 0x8000, 0xffff};
    for (unsigned i = 0; i < 5; i++) {
        struct vblk_queue_params qp = atk_qparams(a);
        qp.index = bad[i];
        assert_int_equal(vblk_queue_init(&q2, &a->dev, &a->mem, &qp, pool, len), -EINVAL);
    }
    /* Sizes: larger than the device accepts, 0, not a power of two. */
    uint16_t sizes[] = {512, 0, 3};
    for (unsigned i = 0; i < 3; i++) {
        struct vblk_queue_params qp = atk_qparams(a);
        qp.index = 1;
        qp.size = sizes[i];
        assert_int_equal(vblk_queue_init(&q2, &a->dev, &a->mem, &qp, pool, len), -EINVAL);
    }
    free(pool);
    /* Queue 0 is untouched. */
    uint64_t st = atk_rq(a, IN, 0, atk_galloc(a, 512, 0), 512, ATK_W);
    atk_expect_status(a, st, VBLK_S_OK);
    atk_free(a);
}

static void config_space_writes_outside_writeback(void **state)
{
    (void)state;
    struct atk *a = atk_up(false);
    struct vblk_dev *d = &a->dev;
    uint64_t cap;
    assert_int_equal(vblk_dev_config_read(d, 0, &cap, 8), 0);
    uint64_t big = UINT64_MAX;
    assert_int_equal(vblk_dev_config_write(d, 0, &big, 8), -EPERM);
    uint8_t buf[16] = {0};
    uint32_t size = vblk_dev_config_size(d);
    assert_int_equal(vblk_dev_config_write(d, size - 4, buf, 8), -EINVAL);
    assert_int_equal(vblk_dev_config_write(d, UINT32_MAX, buf, 1), -EINVAL);
    assert_int_equal(vblk_dev_config_write(d, 1, buf, UINT32_MAX), -EINVAL);
    assert_int_equal(vblk_dev_config_read(d, size, buf, 1), -EINVAL);
    assert_int_equal(vblk_dev_config_read(d, 8, buf, UINT32_MAX - 4), -EINVAL);
    uint64_t now;
    assert_int_equal(vblk_dev_config_read(d, 0, &now, 8), 0);
    assert_int_equal(now, cap);
    /* Features outside the offer, or without VERSION_1. */
    uint64_t offer = vblk_dev_features(d);
    assert_int_equal(vblk_dev_set_features(d, offer | VBLK_BIT(60)), -EINVAL);
    assert_int_equal(vblk_dev_set_features(d, offer & ~VBLK_BIT(VBLK_F_VERSION_1)), -EINVAL);
    atk_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* ring structure: broken queue */
        cmocka_unit_test(status_byte_in_read_only_descriptor),
        cmocka_unit_test(status_byte_in_zero_length_descriptor),
        cmocka_unit_test(status_byte_outside_guest_memory),
        /* buffers: IOERR */
        cmocka_unit_test(header_in_writable_descriptor),
        cmocka_unit_test(header_shorter_than_16_bytes),
        cmocka_unit_test(more_data_descriptors_than_seg_max),
        /* request contents */
        cmocka_unit_test(sector_range_past_capacity),
        cmocka_unit_test(sector_times_512_overflows_64_bits),
        cmocka_unit_test(data_length_not_multiple_of_512),
        cmocka_unit_test(write_to_read_only_device),
        cmocka_unit_test(discard_with_more_segments_than_advertised),
        cmocka_unit_test(discard_segment_range_overflowing),
        cmocka_unit_test(discard_payload_not_whole_segments),
        cmocka_unit_test(range_flags_unknown_or_misused),
        cmocka_unit_test(unknown_request_type),
        cmocka_unit_test(get_id_into_a_one_byte_buffer),
        /* time of check, time of use */
        cmocka_unit_test(header_rewritten_after_pop_is_not_reread),
        /* resource bounds */
        cmocka_unit_test(driver_never_collects_completions_cve_2016_5403_class),
        /* values passed on by transports */
        cmocka_unit_test(queue_index_out_of_range_cve_2011_2512_class),
        cmocka_unit_test(config_space_writes_outside_writeback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
