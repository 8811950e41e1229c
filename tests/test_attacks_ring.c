/* SPDX-License-Identifier: MIT */
/*
 * The attack catalogue, ring layer: what a hostile guest driver can do to
 * the virtqueue and the memory map (lib/core/vq*.c, ring_walk.h, mem.c):
 * corrupt ring structure, wrong packed wrap counters, buffers naming bad
 * memory, descriptors changed after the device read them, and ring
 * positions or memory regions a transport passes on. Each case is named
 * after what it models and asserts the outcome the library defines: a
 * broken queue (vblk_queue_process() returns -EIO, the transport reports
 * DEVICE_NEEDS_RESET) for a structurally corrupt ring, a status byte
 * (VBLK_S_IOERR) for a chain whose buffers cannot be mapped, an error
 * return for a bad value from a transport.
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

#define IN    VBLK_T_IN
#define OUT   VBLK_T_OUT
#define NEXT  VBLK_DESC_F_NEXT
#define INDIR VBLK_DESC_F_INDIRECT

/* ======================================================================
 * Ring structure: every one of these breaks the queue.
 * ==================================================================== */

static void desc_loop_through_next(void **state)
{
    (void)state;
    struct atk *a = atk_up(false);
    uint64_t h = atk_hdr(a, IN, 0), st = atk_status(a);
    /* 0 -> 1 -> 0 -> ... */
    atk_split_set(&a->ring, 0, h, 16, NEXT, 1);
    atk_split_set(&a->ring, 1, st, 1, ATK_W | NEXT, 0);
    atk_split_publish(&a->ring, 0);
    atk_expect_broken(a);
    atk_free(a);
}

static void chain_longer_than_queue(void **state)
{
    (void)state;
    /* Split: every descriptor of the table in one cycle, the longest walk
     * a driver can force. */
    struct atk *a = atk_up(false);
    uint64_t h = atk_hdr(a, OUT, 0);
    for (uint16_t i = 0; i < ATK_QSIZE; i++)
        atk_split_set(&a->ring, i, h, 16, NEXT, (uint16_t)((i + 1) % ATK_QSIZE));
    atk_split_publish(&a->ring, 5);
    atk_expect_broken(a);
    atk_free(a);

    /* Packed: every slot available with NEXT set; the list runs into its
     * own head a lap later. */
    a = atk_up(true);
    h = atk_hdr(a, OUT, 0);
    for (uint16_t i = ATK_QSIZE; i-- > 0;)
        atk_packed_set(&a->ring, i, h, 16, 0, (uint16_t)(NEXT | vblk_packed_avail_bits(1)));
    atk_expect_broken(a);
    atk_free(a);
}

static void desc_next_out_of_range(void **state)
{
    (void)state;
    uint16_t bad[] = {ATK_QSIZE, 0x8000, 0xffff};
    for (unsigned i = 0; i < 3; i++) {
        struct atk *a = atk_up(false);
        atk_split_set(&a->ring, 0, atk_hdr(a, IN, 0), 16, NEXT, bad[i]);
        atk_split_publish(&a->ring, 0);
        atk_expect_broken(a);
        atk_free(a);
    }
}

static void avail_head_out_of_range(void **state)
{
    (void)state;
    struct atk *a = atk_up(false);
    atk_split_publish(&a->ring, ATK_QSIZE);
    atk_expect_broken(a);
    atk_free(a);
}

static void avail_index_jumps_more_than_queue_size(void **state)
{
    (void)state;
    /* The driver claims ATK_QSIZE + 1 new heads: more than can exist. */
    struct atk *a = atk_up(false);
    __atomic_store_n(&atk_split_avail(&a->ring)->idx, (uint16_t)(ATK_QSIZE + 1), __ATOMIC_RELEASE);
    atk_expect_broken(a);
    atk_free(a);

    /* The same after some legitimate traffic, and a jump "backwards"
     * (which is a jump of almost 2^16 forwards). */
    a = atk_up(false);
    uint64_t st = atk_rq(a, OUT, 0, atk_galloc(a, 512, 1), 512, 0);
    atk_expect_status(a, st, VBLK_S_OK);
    __atomic_store_n(&atk_split_avail(&a->ring)->idx, (uint16_t)0, __ATOMIC_RELEASE);
    atk_expect_broken(a);
    atk_free(a);
}

static void indirect_inside_indirect(void **state)
{
    (void)state;
    /* Split: an entry of the table is itself INDIRECT (2.7.5.3.1). */
    struct atk *a = atk_up(false);
    uint64_t st;
    uint64_t inner = atk_good_table(a, &st);
    struct atk_seg s[2] = {{atk_hdr(a, IN, 0), 16, 0}, {inner, 48, INDIR}};
    atk_post_indirect(&a->ring, atk_table(a, s, 2), 32, 0);
    atk_expect_broken(a);
    atk_free(a);
}

static void packed_indirect_inside_indirect_is_a_plain_buffer(void **state)
{
    (void)state;
    /* Packed tables are plain arrays (2.8.19): only WRITE means anything in
     * an entry, so a nested INDIRECT flag is never followed. The entry is
     * just a data buffer and the request completes normally. */
    struct atk *a = atk_up(true);
    uint64_t st = atk_status(a), buf = atk_galloc(a, 512, 0);
    struct atk_seg s[3] = {
        {atk_hdr(a, IN, 0), 16, 0}, {buf, 512, ATK_W | INDIR | NEXT}, {st, 1, ATK_W}};
    atk_post_indirect(&a->ring, atk_table(a, s, 3), 48, 0);
    atk_expect_status(a, st, VBLK_S_OK);
    assert_memory_equal(atk_host(a, buf), a->bd.disk, 512);
    atk_free(a);
}

static void indirect_with_next_set(void **state)
{
    (void)state;
    for (int pk = 0; pk < 2; pk++) {
        struct atk *a = atk_up(pk);
        uint64_t st;
        atk_post_indirect(&a->ring, atk_good_table(a, &st), 48, NEXT);
        atk_expect_broken(a);
        atk_free(a);
    }
}

static void indirect_table_of_length_0(void **state)
{
    (void)state;
    for (int pk = 0; pk < 2; pk++) {
        struct atk *a = atk_up(pk);
        uint64_t st;
        atk_post_indirect(&a->ring, atk_good_table(a, &st), 0, 0);
        atk_expect_broken(a);
        atk_free(a);
    }
}

static void indirect_table_len_not_multiple_of_16(void **state)
{
    (void)state;
    uint32_t lens[] = {1, 15, 40, 47, 49};
    for (int pk = 0; pk < 2; pk++) {
        for (unsigned i = 0; i < 5; i++) {
            struct atk *a = atk_up(pk);
            uint64_t st;
            atk_post_indirect(&a->ring, atk_good_table(a, &st), lens[i], 0);
            atk_expect_broken(a);
            atk_free(a);
        }
    }
}

static void indirect_table_outside_guest_memory(void **state)
{
    (void)state;
    for (int pk = 0; pk < 2; pk++) {
        /* Straddling the end of the region, wholly outside, wrapping. */
        uint64_t where[] = {ATK_GPA + ATK_MEM_LEN - 16, ATK_GPA + ATK_MEM_LEN, 0x1000,
                            UINT64_MAX - 15};
        for (unsigned i = 0; i < 4; i++) {
            struct atk *a = atk_up(pk);
            atk_post_indirect(&a->ring, where[i], 48, 0);
            atk_expect_broken(a);
            atk_free(a);
        }
    }
}

static void indirect_loop_through_next(void **state)
{
    (void)state;
    struct atk *a = atk_up(false);
    uint64_t t = atk_galloc(a, 32, 0);
    struct vblk_split_desc *e = atk_host(a, t);
    e[0] = (struct vblk_split_desc){atk_hdr(a, IN, 0), 16, NEXT, 1};
    e[1] = (struct vblk_split_desc){atk_status(a), 1, ATK_W | NEXT, 0};
    atk_post_indirect(&a->ring, t, 32, 0);
    atk_expect_broken(a);
    atk_free(a);

    /* An entry's next pointing past the end of its table. */
    a = atk_up(false);
    t = atk_galloc(a, 32, 0);
    e = atk_host(a, t);
    e[0] = (struct vblk_split_desc){atk_hdr(a, IN, 0), 16, NEXT, 2};
    e[1] = (struct vblk_split_desc){atk_status(a), 1, ATK_W, 0};
    atk_post_indirect(&a->ring, t, 32, 0);
    atk_expect_broken(a);
    atk_free(a);
}

static void indirect_without_the_feature(void **state)
{
    (void)state;
    for (int pk = 0; pk < 2; pk++) {
        struct atk *a = atk_new(pk);
        a->drop |= VBLK_BIT(VBLK_F_INDIRECT_DESC);
        atk_start(a);
        uint64_t st;
        atk_post_indirect(&a->ring, atk_good_table(a, &st), 48, 0);
        atk_expect_broken(a);
        atk_free(a);
    }
}

static void packed_indirect_not_alone_in_its_chain(void **state)
{
    (void)state;
    struct atk *a = atk_up(true);
    uint64_t st;
    uint64_t t = atk_good_table(a, &st);
    uint16_t bits = vblk_packed_avail_bits(1);
    atk_packed_set(&a->ring, 1, t, 48, 0, (uint16_t)(INDIR | bits));
    atk_packed_set(&a->ring, 0, atk_hdr(a, IN, 0), 16, 0, (uint16_t)(NEXT | bits));
    atk_expect_broken(a);
    atk_free(a);
}

static void readable_after_writable(void **state)
{
    (void)state;
    for (int pk = 0; pk < 2; pk++) {
        struct atk *a = atk_up(pk);
        struct atk_seg s[3] = {{atk_hdr(a, OUT, 0), 16, 0},
                               {atk_status(a), 1, ATK_W},
                               {atk_galloc(a, 512, 0), 512, 0}};
        atk_post(&a->ring, s, 3);
        atk_expect_broken(a);
        atk_free(a);
    }
}

/* ======================================================================
 * Packed ring wrap counters and slot reuse.
 * ==================================================================== */

static void packed_descriptor_with_wrong_wrap_counter(void **state)
{
    (void)state;
    struct atk *a = atk_up(true);
    uint64_t h = atk_hdr(a, IN, 0), st = atk_status(a);
    /* The first lap expects AVAIL=1 USED=0. AVAIL=0 USED=1 is the next
     * lap's marking, AVAIL=USED=1 a used descriptor, 0/0 one from a lap
     * before: none of them is available, so the device waits. */
    uint16_t wrong[] = {VBLK_DESC_F_USED, VBLK_DESC_F_AVAIL | VBLK_DESC_F_USED, 0};
    for (unsigned i = 0; i < 3; i++) {
        atk_packed_set(&a->ring, 1, st, 1, 0, (uint16_t)(ATK_W | vblk_packed_avail_bits(1)));
        atk_packed_set(&a->ring, 0, h, 16, 0, (uint16_t)(NEXT | wrong[i]));
        assert_int_equal(atk_process(a), 0);
        assert_false(vblk_queue_broken(&a->q));
        assert_false(vblk_vq_has_avail(vblk_queue_vq(&a->q)));
        assert_int_equal(a->bd.nsubmit, 0);
    }
    /* Marked correctly, the same slots work. */
    atk_packed_set(&a->ring, 0, h, 16, 0, (uint16_t)(NEXT | vblk_packed_avail_bits(1)));
    a->ring.nd[0] = 2;
    atk_expect_status(a, st, VBLK_S_OK);
    atk_free(a);

    /* A list whose later descriptor carries the wrong lap's marking is
     * corrupt, not pending. */
    a = atk_up(true);
    h = atk_hdr(a, IN, 0);
    st = atk_status(a);
    atk_packed_set(&a->ring, 1, st, 1, 0, (uint16_t)(ATK_W | vblk_packed_avail_bits(0)));
    atk_packed_set(&a->ring, 0, h, 16, 0, (uint16_t)(NEXT | vblk_packed_avail_bits(1)));
    atk_expect_broken(a);
    atk_free(a);
}

static void packed_descriptor_reused_before_it_was_used(void **state)
{
    (void)state;
    struct atk *a = atk_up(true);
    a->bd.hold = true;
    uint64_t buf_a = atk_galloc(a, 512, 0), buf_b = atk_galloc(a, 512, 0x5a);
    uint64_t st_a = atk_rq(a, IN, 0, buf_a, 512, ATK_W);
    assert_int_equal(atk_process(a), 1);
    /* While the device still owns slots 0..2, the driver writes a new
     * request over them: an OUT of buffer B to sector 1. */
    a->ring.next = 0;
    a->ring.wrap = 1;
    uint64_t st_b = atk_rq(a, OUT, 1, buf_b, 512, 0);
    assert_int_equal(atk_process(a), 0);
    assert_int_equal(a->bd.nsubmit, 1);
    /* The device finishes what it popped, from its own copy of the chain:
     * A's data lands in A's buffer; B is never executed. */
    uint8_t sector1[512];
    memcpy(sector1, a->bd.disk + 512, 512);
    atk_disk_release(&a->bd, VBLK_S_OK);
    vblk_queue_flush(&a->q);
    uint16_t id = 99;
    a->ring.nd[0] = 3;
    assert_int_equal(atk_used(&a->ring, &id, NULL), 1);
    assert_int_equal(id, 0);
    assert_int_equal(atk_status_of(a, st_a), VBLK_S_OK);
    assert_int_equal(atk_status_of(a, st_b), 0xee);
    assert_memory_equal(atk_host(a, buf_a), a->bd.disk, 512);
    assert_memory_equal(a->bd.disk + 512, sector1, 512);
    assert_false(vblk_queue_broken(&a->q));
    atk_free(a);
}

/* ======================================================================
 * Buffers: well-formed chains naming bad memory fail with IOERR.
 * ==================================================================== */

/* An IN request of @len bytes at driver address @data must fail with
 * IOERR without reaching the backend. */
static void expect_bad_buffer(bool packed, uint64_t data, uint32_t len)
{
    struct atk *a = atk_up(packed);
    uint64_t st = atk_rq(a, IN, 0, data, len, ATK_W);
    atk_expect_status(a, st, VBLK_S_IOERR);
    assert_int_equal(a->bd.nsubmit, 0);
    assert_int_equal(vblk_vq_stats(vblk_queue_vq(&a->q))->bad_chains, 1);
    atk_free(a);
}

static void buffer_addr_plus_len_wraps_past_2_64(void **state)
{
    (void)state;
    for (int pk = 0; pk < 2; pk++) {
        expect_bad_buffer(pk, UINT64_MAX - 255, 512);
        expect_bad_buffer(pk, UINT64_MAX, 512);
        expect_bad_buffer(pk, UINT64_MAX - 511, UINT32_MAX & ~511u);
    }
}

static void buffer_straddling_end_of_memory_region(void **state)
{
    (void)state;
    for (int pk = 0; pk < 2; pk++) {
        expect_bad_buffer(pk, ATK_GPA + ATK_MEM_LEN - 256, 512);
        expect_bad_buffer(pk, ATK_GPA - 256, 512); /* straddling its start */
        expect_bad_buffer(pk, ATK_GPA + ATK_MEM_LEN, 512);
        expect_bad_buffer(pk, 0, 512);
    }
}

static void header_outside_guest_memory(void **state)
{
    (void)state;
    for (int pk = 0; pk < 2; pk++) {
        struct atk *a = atk_up(pk);
        uint64_t st = atk_status(a);
        struct atk_seg s[2] = {{ATK_GPA + ATK_MEM_LEN - 8, 16, 0}, {st, 1, ATK_W}};
        atk_post(&a->ring, s, 2);
        atk_expect_status(a, st, VBLK_S_IOERR);
        assert_int_equal(a->bd.nsubmit, 0);
        atk_free(a);
    }
}

static void zero_length_data_descriptor(void **state)
{
    (void)state;
    for (int pk = 0; pk < 2; pk++) {
        /* Zero bytes at an address outside guest memory: nothing to map,
         * nothing to do, success (no backend call). */
        struct atk *a = atk_up(pk);
        uint64_t st = atk_status(a);
        struct atk_seg s[3] = {
            {atk_hdr(a, IN, 0), 16, 0}, {0xdead0000ull, 0, ATK_W}, {st, 1, ATK_W}};
        atk_post(&a->ring, s, 3);
        uint32_t len = 0;
        assert_true(atk_process(a) >= 0);
        assert_int_equal(atk_used(&a->ring, NULL, &len), 1);
        assert_int_equal(atk_status_of(a, st), VBLK_S_OK);
        assert_int_equal(len, 1);
        assert_int_equal(a->bd.nsubmit, 0);
        atk_free(a);
    }
}

static void chain_with_more_buffers_than_iovec_slots(void **state)
{
    (void)state;
    /* 40 buffers in one indirect table: more than the request's iovec
     * array holds (seg_max + header + status + slack). Nothing is written
     * past the array; the status byte is among the buffers that found no
     * room, so there is no way to report an error and the queue breaks. */
    for (int pk = 0; pk < 2; pk++) {
        struct atk *a = atk_up(pk);
        uint64_t st = atk_status(a);
        struct atk_seg s[42] = {{atk_hdr(a, IN, 0), 16, 0}};
        for (unsigned i = 1; i <= 40; i++)
            s[i] = (struct atk_seg){atk_galloc(a, 512, 0), 512, ATK_W};
        s[41] = (struct atk_seg){st, 1, ATK_W};
        atk_post_indirect(&a->ring, atk_table(a, s, 42), 16 * 42, 0);
        atk_expect_broken(a);
        assert_int_equal(atk_status_of(a, st), 0xee);
        atk_free(a);
    }
}

/* ======================================================================
 * Time of check, time of use: the driver changes memory after the
 * device has read it.
 * ==================================================================== */

static void descriptor_rewritten_after_pop_is_not_refetched(void **state)
{
    (void)state;
    for (int pk = 0; pk < 2; pk++) {
        struct atk *a = atk_up(pk);
        a->bd.hold = true;
        uint64_t buf = atk_galloc(a, 512, 0);
        uint64_t st = atk_rq(a, IN, 0, buf, 512, ATK_W);
        assert_int_equal(atk_process(a), 1);
        /* Point the data descriptor somewhere else entirely. */
        if (pk) {
            struct vblk_packed_desc *d = &atk_packed_desc(&a->ring)[1];
            d->addr = 0xdead0000ull;
            d->len = 1u << 30;
        } else {
            atk_split_desc(&a->ring)[1].addr = 0xdead0000ull;
            atk_split_desc(&a->ring)[1].len = 1u << 30;
        }
        atk_disk_release(&a->bd, VBLK_S_OK);
        vblk_queue_flush(&a->q);
        uint32_t len = 0;
        assert_int_equal(atk_used(&a->ring, NULL, &len), 1);
        assert_int_equal(len, 513);
        assert_int_equal(atk_status_of(a, st), VBLK_S_OK);
        assert_memory_equal(atk_host(a, buf), a->bd.disk, 512);
        atk_free(a);
    }
}

static void read_buffer_overlapping_the_descriptor_table(void **state)
{
    (void)state;
    /* The driver asks the device to read disk data over its own ring. The
     * chain was copied before the backend ran, so the device completes it
     * as popped: the right id, the right length. */
    for (int pk = 0; pk < 2; pk++) {
        struct atk *a = atk_up(pk);
        uint64_t st = atk_rq(a, IN, 0, ATK_GPA, 512, ATK_W);
        uint16_t id = 99;
        uint32_t len = 0;
        assert_true(atk_process(a) >= 0);
        if (pk) {
            /* The used entry went into slot 0, over the data just read. */
            a->ring.nd[0] = 3;
        }
        assert_int_equal(atk_used(&a->ring, &id, &len), 1);
        assert_int_equal(id, 0);
        assert_int_equal(len, 513);
        assert_int_equal(atk_status_of(a, st), VBLK_S_OK);
        assert_memory_equal(a->ram.host + 16, a->bd.disk + 16, 512 - 16);
        atk_free(a);
    }
}

static void same_head_made_available_twice_while_in_flight(void **state)
{
    (void)state;
    struct atk *a = atk_up(false);
    a->bd.hold = true;
    uint64_t st = atk_rq(a, IN, 0, atk_galloc(a, 512, 0), 512, ATK_W);
    atk_split_publish(&a->ring, 0);
    assert_int_equal(atk_process(a), 2);
    assert_int_equal(vblk_queue_inflight(&a->q), 2);
    atk_disk_release(&a->bd, VBLK_S_OK);
    vblk_queue_flush(&a->q);
    /* Each pop is completed once; the ids are the driver's problem. */
    uint16_t id0 = 99, id1 = 99;
    assert_int_equal(atk_used(&a->ring, &id0, NULL), 1);
    assert_int_equal(atk_used(&a->ring, &id1, NULL), 1);
    assert_int_equal(atk_used(&a->ring, NULL, NULL), 0);
    assert_int_equal(id0, 0);
    assert_int_equal(id1, 0);
    assert_int_equal(atk_status_of(a, st), VBLK_S_OK);
    assert_int_equal(vblk_queue_inflight(&a->q), 0);
    atk_free(a);
}

/* ======================================================================
 * Values a transport passes on from an untrusted source (a vhost-user
 * front-end, a migration stream, an in-flight region).
 * ==================================================================== */

static void rings_outside_guest_memory(void **state)
{
    (void)state;
    for (int pk = 0; pk < 2; pk++) {
        struct atk *a = atk_up(pk);
        size_t len = vblk_queue_mem_size(&a->dev, ATK_QSIZE);
        void *pool = aligned_alloc(16, (len + 15) & ~(size_t)15);
        assert_non_null(pool);
        struct vblk_queue q2;
        uint64_t end = ATK_GPA + ATK_MEM_LEN;
        uint64_t drv = ATK_GPA + ATK_DRIVER_OFF, dev = ATK_GPA + ATK_DEVICE_OFF;
        struct vblk_vq_addrs bad[] = {
            {end, drv, dev},             /* past the end */
            {end - 64, drv, dev},        /* straddling it */
            {ATK_GPA, end, dev},         /* driver area past the end */
            {ATK_GPA, drv, end},         /* device area past the end */
            {0, drv, dev},               /* below the region */
            {UINT64_MAX - 15, drv, dev}, /* wrapping past 2^64 */
        };
        for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            struct vblk_queue_params qp = atk_qparams(a);
            qp.addrs = bad[i];
            assert_int_equal(vblk_queue_init(&q2, &a->dev, &a->mem, &qp, pool, len), -EFAULT);
        }
        /* Misaligned (virtio 1.2 2.7 / 2.8.10.1). */
        struct vblk_queue_params qp = atk_qparams(a);
        qp.addrs.desc += 8;
        assert_int_equal(vblk_queue_init(&q2, &a->dev, &a->mem, &qp, pool, len), -EINVAL);
        free(pool);
        atk_free(a);
    }
}

static void packed_ring_position_beyond_queue_size(void **state)
{
    (void)state;
    /* A ring position restored from a migration stream or a vhost-user
     * SET_VRING_BASE must lie in the ring. */
    struct atk *a = atk_up(true);
    size_t len = vblk_queue_mem_size(&a->dev, ATK_QSIZE);
    void *pool = aligned_alloc(16, (len + 15) & ~(size_t)15);
    assert_non_null(pool);
    struct vblk_queue q2;
    struct vblk_vq_state bad[] = {
        {ATK_QSIZE, 0, 1, 1}, {0, ATK_QSIZE, 1, 1}, {0x7fff, 0x7fff, 1, 1}};
    for (unsigned i = 0; i < 3; i++) {
        struct vblk_queue_params qp = atk_qparams(a);
        qp.state = &bad[i];
        assert_int_equal(vblk_queue_init(&q2, &a->dev, &a->mem, &qp, pool, len), -EINVAL);
    }
    free(pool);
    atk_free(a);
}

static void inflight_resubmit_of_bad_position(void **state)
{
    (void)state;
    /* Split: a head index beyond the ring, or a head whose chain loops. */
    struct atk *a = atk_up(false);
    assert_int_equal(vblk_queue_resubmit(&a->q, ATK_QSIZE, 0), -EIO);
    assert_true(vblk_queue_broken(&a->q));
    atk_free(a);
    a = atk_up(false);
    atk_split_set(&a->ring, 4, atk_hdr(a, IN, 0), 16, NEXT, 4);
    assert_int_equal(vblk_queue_resubmit(&a->q, 4, 0), -EIO);
    assert_true(vblk_queue_broken(&a->q));
    assert_int_equal(vblk_queue_inflight(&a->q), 0);
    atk_free(a);
    /* Packed: a position beyond the ring, a slot that is not available. */
    a = atk_up(true);
    assert_int_equal(vblk_queue_resubmit(&a->q, 0xffff, 1), -EIO);
    atk_free(a);
    a = atk_up(true);
    assert_int_equal(vblk_queue_resubmit(&a->q, 3, 1), -EIO);
    assert_int_equal(a->bd.nsubmit, 0);
    atk_free(a);
}

static void memory_regions_overlapping_or_empty(void **state)
{
    (void)state;
    struct vblk_mem *m = malloc(sizeof(*m));
    assert_non_null(m);
    static uint8_t host[8192];
    vblk_mem_init(m);
    assert_int_equal(vblk_mem_add(m, 0x10000, 4096, host, NULL), 0);
    /* Overlapping from below, from above, inside, around. */
    assert_int_equal(vblk_mem_add(m, 0xf000, 8192, host, NULL), -EEXIST);
    assert_int_equal(vblk_mem_add(m, 0x10fff, 4096, host, NULL), -EEXIST);
    assert_int_equal(vblk_mem_add(m, 0x10800, 16, host, NULL), -EEXIST);
    assert_int_equal(vblk_mem_add(m, 0x8000, 0x100000, host, NULL), -EEXIST);
    /* Empty, wrapping on either side, no host memory. */
    assert_int_equal(vblk_mem_add(m, 0x20000, 0, host, NULL), -EINVAL);
    assert_int_equal(vblk_mem_add(m, UINT64_MAX - 4095, 8192, host, NULL), -EINVAL);
    assert_int_equal(vblk_mem_add(m, 0x20000, 4096, (void *)(UINTPTR_MAX - 100), NULL), -EINVAL);
    assert_int_equal(vblk_mem_add(m, 0x20000, 4096, NULL, NULL), -EINVAL);
    assert_int_equal(vblk_mem_count(m), 1);
    /* Translation still finds exactly the one region. */
    assert_ptr_equal(vblk_mem_ptr(m, 0x10000, 4096), host);
    assert_null(vblk_mem_ptr(m, 0x10000, 4097));
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* ring structure: broken queue */
        cmocka_unit_test(desc_loop_through_next),
        cmocka_unit_test(chain_longer_than_queue),
        cmocka_unit_test(desc_next_out_of_range),
        cmocka_unit_test(avail_head_out_of_range),
        cmocka_unit_test(avail_index_jumps_more_than_queue_size),
        cmocka_unit_test(indirect_inside_indirect),
        cmocka_unit_test(packed_indirect_inside_indirect_is_a_plain_buffer),
        cmocka_unit_test(indirect_with_next_set),
        cmocka_unit_test(indirect_table_of_length_0),
        cmocka_unit_test(indirect_table_len_not_multiple_of_16),
        cmocka_unit_test(indirect_table_outside_guest_memory),
        cmocka_unit_test(indirect_loop_through_next),
        cmocka_unit_test(indirect_without_the_feature),
        cmocka_unit_test(packed_indirect_not_alone_in_its_chain),
        cmocka_unit_test(readable_after_writable),
        /* packed wrap counters */
        cmocka_unit_test(packed_descriptor_with_wrong_wrap_counter),
        cmocka_unit_test(packed_descriptor_reused_before_it_was_used),
        /* buffers: IOERR */
        cmocka_unit_test(buffer_addr_plus_len_wraps_past_2_64),
        cmocka_unit_test(buffer_straddling_end_of_memory_region),
        cmocka_unit_test(header_outside_guest_memory),
        cmocka_unit_test(zero_length_data_descriptor),
        cmocka_unit_test(chain_with_more_buffers_than_iovec_slots),
        /* time of check, time of use */
        cmocka_unit_test(descriptor_rewritten_after_pop_is_not_refetched),
        cmocka_unit_test(read_buffer_overlapping_the_descriptor_table),
        cmocka_unit_test(same_head_made_available_twice_while_in_flight),
        /* values passed on by transports */
        cmocka_unit_test(rings_outside_guest_memory),
        cmocka_unit_test(packed_ring_position_beyond_queue_size),
        cmocka_unit_test(inflight_resubmit_of_bad_position),
        cmocka_unit_test(memory_regions_overlapping_or_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
