/* SPDX-License-Identifier: MIT */
/*
 * The attack catalogue: one case per thing a hostile guest driver or a
 * hostile vhost-user front-end can do, each named after what it models and
 * each asserting the outcome the library defines for it:
 *
 *  - a status byte (VBLK_S_IOERR / VBLK_S_UNSUPP) for a well-formed chain
 *    that asks for something invalid;
 *  - a broken queue (vblk_queue_process() returns -EIO, the transport
 *    reports DEVICE_NEEDS_RESET) for a structurally corrupt ring;
 *  - an error reply (REPLY_ACK non-zero) for a refused vhost-user message;
 *  - a disconnect (-EPROTO) for a vhost-user message that leaves the
 *    stream or the protocol state unrecoverable.
 *
 * Every case also checks what must NOT happen: no request reaches the
 * backend unless it is valid, no fd stays open, no request stays in
 * flight. Under ASan/LSan (VBLK_SANITIZE=ON) an out-of-bounds access or a
 * leak fails the case too: the RAM disk and the request pools are separate
 * heap blocks so that any overrun is visible.
 *
 * docs/security.md lists the catalogue as a table (case, outcome, test).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "attack_harness.h"
#include "virtioblk/advanced.h"
#include "transport/vduse/vduse_internal.h"

#define IN    VBLK_T_IN
#define OUT   VBLK_T_OUT
#define NEXT  VBLK_DESC_F_NEXT
#define INDIR VBLK_DESC_F_INDIRECT

/* An indirect table in guest memory: split entries linked in order
 * (NEXT between them), packed entries with only WRITE. Returns its
 * address; its length is 16 * n. */
static uint64_t table(struct atk *a, const struct atk_seg *s, unsigned n)
{
    uint64_t g = atk_galloc(a, 16u * n, 0);
    for (unsigned i = 0; i < n; i++) {
        if (a->ring.packed) {
            struct vblk_packed_desc *t = atk_host(a, g);
            t[i] = (struct vblk_packed_desc){s[i].addr, s[i].len, 0, s[i].flags};
        } else {
            struct vblk_split_desc *t = atk_host(a, g);
            uint16_t more = i + 1 < n ? NEXT : 0;
            t[i] = (struct vblk_split_desc){s[i].addr, s[i].len, (uint16_t)(s[i].flags | more),
                                            (uint16_t)(i + 1)};
        }
    }
    return g;
}

/* A well-formed IN request as an indirect table: header, 512 data bytes,
 * status. */
static uint64_t good_table(struct atk *a, uint64_t *st)
{
    *st = atk_status(a);
    struct atk_seg s[3] = {
        {atk_hdr(a, IN, 0), 16, 0}, {atk_galloc(a, 512, 0), 512, ATK_W}, {*st, 1, ATK_W}};
    return table(a, s, 3);
}

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
    uint64_t inner = good_table(a, &st);
    struct atk_seg s[2] = {{atk_hdr(a, IN, 0), 16, 0}, {inner, 48, INDIR}};
    atk_post_indirect(&a->ring, table(a, s, 2), 32, 0);
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
    atk_post_indirect(&a->ring, table(a, s, 3), 48, 0);
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
        atk_post_indirect(&a->ring, good_table(a, &st), 48, NEXT);
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
        atk_post_indirect(&a->ring, good_table(a, &st), 0, 0);
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
            atk_post_indirect(&a->ring, good_table(a, &st), lens[i], 0);
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
        atk_post_indirect(&a->ring, good_table(a, &st), 48, 0);
        atk_expect_broken(a);
        atk_free(a);
    }
}

static void packed_indirect_not_alone_in_its_chain(void **state)
{
    (void)state;
    struct atk *a = atk_up(true);
    uint64_t st;
    uint64_t t = good_table(a, &st);
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
        atk_post_indirect(&a->ring, table(a, s, 11), 16 * 11, 0);
        atk_expect_status(a, st, VBLK_S_IOERR);
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
        atk_post_indirect(&a->ring, table(a, s, 42), 16 * 42, 0);
        atk_expect_broken(a);
        assert_int_equal(atk_status_of(a, st), 0xee);
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

/* ======================================================================
 * vhost-user: a hostile front-end, through vblk_vu_dev_handle_msg().
 * ==================================================================== */

static void vu_vring_index_out_of_range_cve_2011_2512_class(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    atk_vu_mem_table(v);
    int fd = eventfd(0, EFD_CLOEXEC);
    int before = count_fds();
    uint32_t bad[] = {ATK_VU_NQ, 255, 256, 0x10000, UINT32_MAX};
    for (unsigned i = 0; i < 5; i++) {
        struct atk_vu_state s = {bad[i], ATK_VU_QSIZE};
        atk_vu_refused(v, ATK_VU_SET_VRING_NUM, &s, 8, NULL, 0);
        atk_vu_refused(v, ATK_VU_SET_VRING_BASE, &s, 8, NULL, 0);
        s.num = 1;
        atk_vu_refused(v, ATK_VU_SET_VRING_ENABLE, &s, 8, NULL, 0);
        struct atk_vu_addr a = {
            bad[i], 0, ATK_VU_UA, ATK_VU_UA + ATK_DEVICE_OFF, ATK_VU_UA + ATK_DRIVER_OFF, 0};
        atk_vu_refused(v, ATK_VU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
    }
    /* The fd messages carry the index in bits 0-7, "no fd" in bit 8. */
    uint64_t fidx[] = {ATK_VU_NQ, 255, 0x200, 1ull << 40};
    uint32_t fdreq[] = {ATK_VU_SET_VRING_KICK, ATK_VU_SET_VRING_CALL, ATK_VU_SET_VRING_ERR};
    for (unsigned i = 0; i < 4; i++)
        for (unsigned r = 0; r < 3; r++)
            atk_vu_refused(v, fdreq[r], &fidx[i], 8, &fd, 1);
    /* Every fd handed over with a refused message was closed. */
    assert_int_equal(count_fds(), before);
    /* Queue 0 can still be set up. */
    atk_vu_ring(v, false, 0);
    close(fd);
    atk_vu_free(v, false);
}

static void vu_get_vring_base_index_out_of_range(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    /* No ring state can be reported: the connection must end. */
    struct atk_vu_state s = {ATK_VU_NQ, 0};
    assert_int_equal(atk_vu_send(v, ATK_VU_GET_VRING_BASE, 0, &s, 8, NULL, 0), -EPROTO);
    s.index = UINT32_MAX;
    assert_int_equal(atk_vu_send(v, ATK_VU_GET_VRING_BASE, 0, &s, 8, NULL, 0), -EPROTO);
    atk_vu_free(v, false);
}

static void vu_get_vring_base_on_queue_never_started(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    /* Nothing configured at all: position 0. */
    struct atk_vu_state s = {1, 12345}, out;
    assert_int_equal(atk_vu_send(v, ATK_VU_GET_VRING_BASE, 0, &s, 8, NULL, 0), 0);
    assert_int_equal(v->rep.len, 12 + 8);
    memcpy(&out, v->rep.buf + 12, 8);
    assert_int_equal(out.index, 1);
    assert_int_equal(out.num, 0);
    /* A base set but never started (no memory, no kick): that base. */
    s = (struct atk_vu_state){0, 7};
    atk_vu_ok(v, ATK_VU_SET_VRING_BASE, &s, 8, NULL, 0);
    assert_int_equal(atk_vu_send(v, ATK_VU_GET_VRING_BASE, 0, &s, 8, NULL, 0), 0);
    memcpy(&out, v->rep.buf + 12, 8);
    assert_int_equal(out.num, 7);
    assert_false(vblk_vu_queue_active(v->d, 0));
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 0);
    assert_int_equal(vblk_vu_queue_process(v->d, 1), 0);
    atk_vu_free(v, false);
}

static void vu_fds_on_messages_that_take_none_cve_2022_0669_class(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    int fds[9];
    for (int i = 0; i < 9; i++) {
        fds[i] = eventfd(0, EFD_CLOEXEC);
        assert_true(fds[i] >= 0);
    }
    int before = count_fds();
    uint64_t feat = v->virtio_features, idx = 0, nofd = ATK_VU_NOFD;
    struct atk_vu_state num = {0, ATK_VU_QSIZE};
    atk_vu_refused(v, ATK_VU_SET_OWNER, NULL, 0, fds, 1);
    atk_vu_refused(v, ATK_VU_SET_FEATURES, &feat, 8, fds, 2);
    atk_vu_refused(v, ATK_VU_SET_VRING_NUM, &num, 8, fds, 3);
    atk_vu_refused(v, ATK_VU_SET_VRING_CALL, &nofd, 8, fds, 1);
    atk_vu_refused(v, ATK_VU_SET_VRING_CALL, &idx, 8, fds, 2);
    atk_vu_refused(v, 200, NULL, 0, fds, 8); /* unknown request */
    /* More fds than any message may carry: a framing error, so the
     * connection ends (the fds are closed all the same). */
    assert_int_equal(atk_vu_send(v, ATK_VU_SET_OWNER, 0, NULL, 0, fds, 9), -EPROTO);
    struct atk_vu_table t = {.nregions = 1};
    t.r[0] = (struct atk_vu_region){ATK_VU_GPA, ATK_VU_MEM, ATK_VU_UA, 0};
    int three[3] = {v->memfd, v->memfd, v->memfd};
    atk_vu_refused(v, ATK_VU_SET_MEM_TABLE, &t, 8 + 32, three, 3);
    struct atk_vu_single one = {0, {ATK_VU_GPA, 4096, ATK_VU_UA, 0}};
    atk_vu_refused(v, ATK_VU_REM_MEM_REG, &one, sizeof(one), fds, 1);
    /* A GET that comes with an fd cannot be answered: disconnect. */
    assert_int_equal(atk_vu_send(v, ATK_VU_GET_FEATURES, 0, NULL, 0, fds, 1), -EPROTO);
    /* None of the fds survived. */
    assert_int_equal(count_fds(), before);
    for (int i = 0; i < 9; i++)
        close(fds[i]);
    atk_vu_free(v, false);
}

static void vu_log_base_size_overflow_cve_2020_10722_class(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_ready(false);
    int lfd = memfd_create("atk-log", MFD_CLOEXEC);
    assert_true(lfd >= 0);
    assert_int_equal(ftruncate(lfd, 65536), 0);
    struct atk_vu_log bad[] = {
        {UINT64_MAX - 10, 64},    /* size + offset wraps */
        {4096, UINT64_MAX},       /* offset + size wraps */
        {UINT64_MAX, 0},          /* size beyond anything */
        {1ull << 63, 1ull << 63}, /* sums to exactly 2^64 */
        {65536, 4096},            /* beyond the end of the file */
        {0, 0},                   /* empty */
    };
    int before = count_fds();
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        atk_vu_refused(v, ATK_VU_SET_LOG_BASE, &bad[i], sizeof(bad[i]), &lfd, 1);
    assert_int_equal(count_fds(), before);
    /* The ring still runs. */
    size_t st = atk_vu_rq(v, 0x8000, IN, 0, 512);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
    assert_int_equal(v->mem[st], VBLK_S_OK);
    close(lfd);
    atk_vu_free(v, false);
}

static void vu_dirty_log_shorter_than_guest_memory(void **state)
{
    (void)state;
    /* A log that covers the ring's pages but ends before the data
     * buffer's: the device sets the bits it can and writes nothing past
     * the log. */
    struct atk_vu *v = atk_vu_ready(false);
    uint64_t first = ATK_VU_GPA >> 12;
    uint64_t size = (first + 8) / 8 + 1; /* bits up to ~ 8 pages past GPA */
    size_t file = 0x10000;
    int lfd = memfd_create("atk-log", MFD_CLOEXEC);
    assert_true(lfd >= 0);
    assert_true(size < file);
    assert_int_equal(ftruncate(lfd, (off_t)file), 0);
    uint8_t *log = mmap(NULL, file, PROT_READ | PROT_WRITE, MAP_SHARED, lfd, 0);
    assert_true(log != MAP_FAILED);
    struct atk_vu_log lg = {size, 0};
    atk_vu_ok(v, ATK_VU_SET_LOG_BASE, &lg, sizeof(lg), &lfd, 1);
    uint64_t feat = v->virtio_features | VBLK_BIT(VBLK_VU_F_LOG_ALL);
    atk_vu_ok(v, ATK_VU_SET_FEATURES, &feat, 8, NULL, 0);
    /* Data 128 KiB into guest memory: 32 pages past the log's end. */
    size_t st = atk_vu_rq(v, 0x20000, IN, 0, 4096);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
    assert_int_equal(v->mem[st], VBLK_S_OK);
    /* The used ring's page (GPA + 0x2000) is logged ... */
    uint64_t used_page = (ATK_VU_GPA + ATK_DEVICE_OFF) >> 12;
    assert_true(log[used_page / 8] & (1u << (used_page % 8)));
    /* ... and not one byte past the log was touched. */
    for (size_t i = size; i < file; i++)
        assert_int_equal(log[i], 0);
    munmap(log, file);
    close(lfd);
    atk_vu_free(v, false);
}

static void vu_memory_regions_overlapping(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    int two[2] = {v->memfd, v->memfd};
    struct atk_vu_table t = {.nregions = 2};
    /* Guest-physical ranges overlap. */
    t.r[0] = (struct atk_vu_region){ATK_VU_GPA, ATK_VU_MEM / 2, ATK_VU_UA, 0};
    t.r[1] = (struct atk_vu_region){ATK_VU_GPA + 4096, ATK_VU_MEM / 2, ATK_VU_UA + ATK_VU_MEM,
                                    ATK_VU_MEM / 2};
    atk_vu_refused(v, ATK_VU_SET_MEM_TABLE, &t, 8 + 64, two, 2);
    /* Front-end user addresses overlap. */
    t.r[1] = (struct atk_vu_region){ATK_VU_GPA + ATK_VU_MEM, ATK_VU_MEM / 2, ATK_VU_UA + 4096,
                                    ATK_VU_MEM / 2};
    atk_vu_refused(v, ATK_VU_SET_MEM_TABLE, &t, 8 + 64, two, 2);
    /* One region overlapping an existing one, through ADD_MEM_REG. */
    atk_vu_mem_table(v);
    struct atk_vu_single one = {
        0, {ATK_VU_GPA + ATK_VU_MEM - 4096, 8192, ATK_VU_UA + 2 * ATK_VU_MEM, 0}};
    atk_vu_refused(v, ATK_VU_ADD_MEM_REG, &one, sizeof(one), &v->memfd, 1);
    one.r = (struct atk_vu_region){ATK_VU_GPA + 2 * ATK_VU_MEM, 4096, ATK_VU_UA + 4096, 0};
    atk_vu_refused(v, ATK_VU_ADD_MEM_REG, &one, sizeof(one), &v->memfd, 1);
    /* The table that was accepted still works. */
    atk_vu_ring(v, false, 0);
    size_t st = atk_vu_rq(v, 0x8000, IN, 0, 512);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
    assert_int_equal(v->mem[st], VBLK_S_OK);
    atk_vu_free(v, false);
}

static void vu_memory_region_empty_or_not_backed(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    struct atk_vu_region bad[] = {
        {ATK_VU_GPA, 0, ATK_VU_UA, 0},                   /* size 0 */
        {UINT64_MAX - 4095, 8192, ATK_VU_UA, 0},         /* GPA wraps */
        {ATK_VU_GPA, 8192, UINT64_MAX - 4095, 0},        /* user address wraps */
        {ATK_VU_GPA, ATK_VU_MEM, ATK_VU_UA, 4096},       /* past the end of the fd */
        {ATK_VU_GPA, 4096, ATK_VU_UA, UINT64_MAX - 100}, /* offset wraps */
        {ATK_VU_GPA, 2 * ATK_VU_MEM, ATK_VU_UA, 0},      /* bigger than the fd */
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct atk_vu_table t = {.nregions = 1};
        t.r[0] = bad[i];
        atk_vu_refused(v, ATK_VU_SET_MEM_TABLE, &t, 8 + 32, &v->memfd, 1);
        struct atk_vu_single one = {0, bad[i]};
        atk_vu_refused(v, ATK_VU_ADD_MEM_REG, &one, sizeof(one), &v->memfd, 1);
    }
    /* A pipe is not memory. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct atk_vu_table t = {.nregions = 1};
    t.r[0] = (struct atk_vu_region){ATK_VU_GPA, 4096, ATK_VU_UA, 0};
    atk_vu_refused(v, ATK_VU_SET_MEM_TABLE, &t, 8 + 32, &p[0], 1);
    close(p[0]);
    close(p[1]);
    /* Nothing was mapped: a ring cannot be placed anywhere. */
    struct atk_vu_state num = {0, ATK_VU_QSIZE};
    atk_vu_ok(v, ATK_VU_SET_VRING_NUM, &num, 8, NULL, 0);
    struct atk_vu_addr a = {0, 0, ATK_VU_UA, ATK_VU_UA + ATK_DEVICE_OFF, ATK_VU_UA + ATK_DRIVER_OFF,
                            0};
    atk_vu_refused(v, ATK_VU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
    atk_vu_free(v, false);
}

static void vu_message_truncated_mid_header(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    struct atk_vu_hdr h = {ATK_VU_SET_FEATURES, ATK_VU_VERSION | ATK_VU_NEED_REPLY, 8};
    for (size_t len = 0; len < sizeof(h); len++)
        assert_int_equal(atk_vu_raw(v, &h, len, NULL, 0), -EPROTO);
    /* With an fd attached: the fd is closed all the same. */
    int before = count_fds();
    int fd = eventfd(0, EFD_CLOEXEC);
    assert_int_equal(atk_vu_raw(v, &h, 6, &fd, 1), -EPROTO);
    assert_int_equal(count_fds(), before);
    atk_vu_free(v, false);
}

static void vu_payload_size_larger_than_message(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    uint8_t buf[64] = {0};
    /* The header announces 40 bytes; 8 follow. Or 8, and 40 follow. */
    struct atk_vu_hdr h = {ATK_VU_SET_FEATURES, ATK_VU_VERSION | ATK_VU_NEED_REPLY, 40};
    memcpy(buf, &h, sizeof(h));
    assert_int_equal(atk_vu_raw(v, buf, 12 + 8, NULL, 0), 0);
    assert_int_equal(atk_vu_u64(v), 1);
    h.size = 8;
    memcpy(buf, &h, sizeof(h));
    assert_int_equal(atk_vu_raw(v, buf, 12 + 40, NULL, 0), 0);
    assert_int_equal(atk_vu_u64(v), 1);
    /* A payload larger than any request takes: the stream cannot be
     * resynchronised, so the connection ends. */
    uint32_t huge[] = {VBLK_VU_MAX_PAYLOAD + 1, 0x10000, UINT32_MAX};
    for (unsigned i = 0; i < 3; i++) {
        h.size = huge[i];
        memcpy(buf, &h, sizeof(h));
        assert_int_equal(atk_vu_raw(v, buf, 12 + 8, NULL, 0), -EPROTO);
    }
    /* Within the maximum but more than this request allows: refused. */
    uint8_t big[12 + VBLK_VU_MAX_PAYLOAD] = {0};
    h = (struct atk_vu_hdr){ATK_VU_SET_VRING_NUM, ATK_VU_VERSION | ATK_VU_NEED_REPLY,
                            VBLK_VU_MAX_PAYLOAD};
    memcpy(big, &h, sizeof(h));
    assert_int_equal(atk_vu_raw(v, big, sizeof(big), NULL, 0), 0);
    assert_int_equal(atk_vu_u64(v), 1);
    atk_vu_free(v, false);
}

static void vu_wrong_version_or_reply_flag(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    struct atk_vu_hdr h = {ATK_VU_GET_FEATURES, 2, 0};
    assert_int_equal(atk_vu_raw(v, &h, sizeof(h), NULL, 0), -EPROTO);
    h.flags = 0;
    assert_int_equal(atk_vu_raw(v, &h, sizeof(h), NULL, 0), -EPROTO);
    /* A reply sent to the back-end is not a request. */
    uint8_t buf[20] = {0};
    h = (struct atk_vu_hdr){ATK_VU_SET_OWNER, ATK_VU_VERSION | ATK_VU_REPLY | ATK_VU_NEED_REPLY, 8};
    memcpy(buf, &h, sizeof(h));
    assert_int_equal(atk_vu_raw(v, buf, sizeof(buf), NULL, 0), 0);
    assert_int_equal(atk_vu_u64(v), 1);
    atk_vu_free(v, false);
}

static void vu_rings_outside_guest_memory(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    atk_vu_mem_table(v);
    struct atk_vu_state num = {0, ATK_VU_QSIZE};
    atk_vu_ok(v, ATK_VU_SET_VRING_NUM, &num, 8, NULL, 0);
    uint64_t ok_d = ATK_VU_UA, ok_u = ATK_VU_UA + ATK_DEVICE_OFF, ok_a = ATK_VU_UA + ATK_DRIVER_OFF;
    uint64_t end = ATK_VU_UA + ATK_VU_MEM;
    struct atk_vu_addr bad[] = {
        {0, 0, end, ok_u, ok_a, 0},      /* past the end */
        {0, 0, end - 64, ok_u, ok_a, 0}, /* straddling it */
        {0, 0, ok_d, end - 8, ok_a, 0},
        {0, 0, ok_d, ok_u, end - 2, 0},
        {0, 0, ATK_VU_UA - 4096, ok_u, ok_a, 0}, /* below */
        {0, 0, UINT64_MAX - 15, ok_u, ok_a, 0},  /* wrapping */
        {0, 0, ATK_VU_GPA, ok_u, ok_a, 0},       /* a GPA is not a user address */
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        atk_vu_refused(v, ATK_VU_SET_VRING_ADDR, &bad[i], sizeof(bad[i]), NULL, 0);
    atk_vu_free(v, false);
}

static void vu_ring_size_invalid(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    /* 0, not a power of two (split), above the device's maximum (64),
     * above the protocol's, beyond 16 bits. */
    uint32_t sizes[] = {0, 3, 48, 128, 32769, 65536, UINT32_MAX};
    for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct atk_vu_state num = {0, sizes[i]};
        atk_vu_refused(v, ATK_VU_SET_VRING_NUM, &num, 8, NULL, 0);
    }
    /* A split ring's base is a 16-bit index. */
    struct atk_vu_state base = {0, 0x10000};
    atk_vu_refused(v, ATK_VU_SET_VRING_BASE, &base, 8, NULL, 0);
    atk_vu_free(v, false);
}

static void vu_packed_ring_base_beyond_ring_size(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, true);
    atk_vu_mem_table(v);
    atk_ring_init(&v->ring, v->mem, ATK_VU_GPA, ATK_VU_QSIZE, true);
    struct atk_vu_state num = {0, ATK_VU_QSIZE};
    atk_vu_ok(v, ATK_VU_SET_VRING_NUM, &num, 8, NULL, 0);
    /* Avail position 100 (wrap 1), used position 20 (wrap 1) in a ring of 16. */
    struct atk_vu_state b = {0, 100u | 1u << 15 | (20u | 1u << 15) << 16};
    atk_vu_ok(v, ATK_VU_SET_VRING_BASE, &b, 8, NULL, 0);
    struct atk_vu_addr a = {0, 0, ATK_VU_UA, ATK_VU_UA + ATK_DEVICE_OFF, ATK_VU_UA + ATK_DRIVER_OFF,
                            0};
    atk_vu_ok(v, ATK_VU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
    uint64_t idx = 0;
    /* The ring cannot start from there. */
    atk_vu_refused(v, ATK_VU_SET_VRING_KICK, &idx, 8, &v->kick, 1);
    assert_false(vblk_vu_queue_active(v->d, 0));
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 0);
    atk_vu_free(v, false);
}

static void vu_driver_breaks_the_ring(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_ready(false);
    size_t st = atk_vu_rq(v, 0x8000, IN, 0, 512);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
    assert_int_equal(v->mem[st], VBLK_S_OK);
    assert_int_equal(atk_vu_get(v, ATK_VU_GET_STATUS) & VBLK_STATUS_DEVICE_NEEDS_RESET, 0);
    /* A descriptor loop. */
    atk_split_set(&v->ring, 5, atk_vu_gpa(0x8000), 16, NEXT, 6);
    atk_split_set(&v->ring, 6, atk_vu_gpa(0x8000), 16, NEXT, 5);
    atk_split_publish(&v->ring, 5);
    assert_int_equal(eventfd_write(v->kick, 1), 0);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), -EIO);
    assert_true(atk_vu_get(v, ATK_VU_GET_STATUS) & VBLK_STATUS_DEVICE_NEEDS_RESET);
    eventfd_t n = 0;
    assert_int_equal(eventfd_read(v->err, &n), 0);
    assert_true(n >= 1);
    assert_false(vblk_vu_queue_active(v->d, 0));
    /* More traffic is ignored, not processed. */
    st = atk_vu_rq(v, 0x9000, IN, 0, 512);
    assert_true(vblk_vu_queue_process(v->d, 0) <= 0);
    assert_int_equal(v->mem[st], 0xee);
    atk_vu_free(v, false);
}

static void vu_memory_removed_under_running_ring(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_ready(false);
    size_t st = atk_vu_rq(v, 0x8000, IN, 0, 512);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
    assert_int_equal(v->mem[st], VBLK_S_OK);
    struct atk_vu_single one = {0, {ATK_VU_GPA, ATK_VU_MEM, ATK_VU_UA, 0}};
    atk_vu_ok(v, ATK_VU_REM_MEM_REG, &one, sizeof(one), NULL, 0);
    assert_true(atk_vu_get(v, ATK_VU_GET_STATUS) & VBLK_STATUS_DEVICE_NEEDS_RESET);
    /* The ring is no longer processed: the device has no mapping for it. */
    st = atk_vu_rq(v, 0x9000, IN, 0, 512);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 0);
    assert_int_equal(v->mem[st], 0xee);
    atk_vu_free(v, false);
}

static void vu_set_config_outside_config_space(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    struct vblk_config before = {0};
    const uint32_t size = VBLK_CONFIG_SIZE_NO_ZONED;
    assert_int_equal(vblk_dev_config_read(vblk_vu_dev_blk(v->d), 0, &before, size), 0);
    struct {
        uint32_t offset, size;
    } bad[] = {{250, 10}, {256, 0}, {0, 8}, {0, 72}, {200, 56}, {UINT32_MAX, 1}};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct atk_vu_config c = {bad[i].offset, bad[i].size, 0, {0}};
        memset(c.data, 0xff, sizeof(c.data));
        atk_vu_refused(v, ATK_VU_SET_CONFIG, &c, 12 + bad[i].size, NULL, 0);
    }
    struct vblk_config after = {0};
    assert_int_equal(vblk_dev_config_read(vblk_vu_dev_blk(v->d), 0, &after, size), 0);
    assert_memory_equal(&before, &after, sizeof(before));
    atk_vu_free(v, false);
}

/* The in-flight region (vhost-user specification, split rings): a 16-byte
 * header, then 16 bytes per descriptor head. */
#define INFL_DESC_NUM   10u
#define INFL_LAST_BATCH 12u
#define INFL_DESC(i)    (16u + 16u * (uint32_t)(i))

struct tamper_be {
    struct vblk_backend_ops ops;
    uint8_t *region; /* the front-end's view of queue 0's in-flight region */
};

/* Completes every request at once, then plays the front-end rewriting
 * the shared region at the worst moment: after the device linked the
 * request into its batch, before it publishes the batch. */
static void tamper_submit(void *be, void *qctx, struct vblk_req *r)
{
    struct tamper_be *t = be;
    (void)qctx;
    vblk_req_complete(r, VBLK_S_OK);
    uint16_t num = 0xffff, head = 0xfff0;
    memcpy(t->region + INFL_DESC_NUM, &num, 2);
    memcpy(t->region + INFL_LAST_BATCH, &head, 2);
}

static void vu_inflight_region_rewritten_by_front_end(void **state)
{
    (void)state;
    struct tamper_be t = {.ops = {.version = VBLK_BACKEND_OPS_V1,
                                  .caps = VBLK_BACKEND_CAP_FLUSH,
                                  .name = "tamper",
                                  .submit = tamper_submit}};
    struct vblk_backend be = {&t.ops, &t, ATK_DISK};
    struct atk_vu *v = atk_vu_new(&be);
    atk_vu_negotiate(v, false);
    atk_vu_mem_table(v);
    /* The front-end supplies a large region: the device maps all of it. */
    size_t size = 2u << 20;
    int ifd = memfd_create("atk-inflight", MFD_CLOEXEC);
    assert_true(ifd >= 0);
    assert_int_equal(ftruncate(ifd, (off_t)size), 0);
    uint8_t *region = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, ifd, 0);
    assert_true(region != MAP_FAILED);
    struct atk_vu_inflight in = {size, 0, 1, ATK_VU_QSIZE, 0};
    atk_vu_ok(v, ATK_VU_SET_INFLIGHT_FD, &in, 20, &ifd, 1);
    atk_vu_ring(v, false, 0);
    /* Queue 0's part is a few hundred bytes; the entry for head 0xfff0
     * would be a megabyte further on. */
    size_t far = INFL_DESC(0xfff0);
    assert_true(far < size);
    region[far] = 0xaa;
    t.region = region;
    size_t st = atk_vu_rq(v, 0x8000, VBLK_T_FLUSH, 0, 0);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
    assert_int_equal(v->mem[st], VBLK_S_OK);
    uint8_t canary = region[far];
    munmap(region, size);
    close(ifd);
    atk_vu_free(v, true);
    /* Whatever the front-end writes into the region, the device only
     * touches the entries of heads that exist in its ring. */
    assert_int_equal(canary, 0xaa);
}

/* ======================================================================
 * A driver that breaks its ring while requests are in flight: the
 * transport must wait for them before it releases the queue.
 * ==================================================================== */

struct late {
    struct vblk_req *req;
    atomic_int released; /* the transport has let go of the queue */
    atomic_int too_early;
    int delay_ms;
};

static void *late_completion(void *arg)
{
    struct late *l = arg;
    struct timespec ts = {0, (long)l->delay_ms * 1000000L};
    nanosleep(&ts, NULL);
    if (atomic_load(&l->released)) {
        /* The request's memory is gone: touching it would be a
         * use-after-free, so only record the fact. */
        atomic_store(&l->too_early, 1);
        return NULL;
    }
    vblk_req_complete_async(l->req, VBLK_S_OK);
    return NULL;
}

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

    struct late l = {.req = bd.held[0], .delay_ms = 100};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, late_completion, &l), 0);
    vblk_loopback_destroy(lb);
    atomic_store(&l.released, 1);
    pthread_join(th, NULL);
    free(bd.disk);
    assert_int_equal(atomic_load(&l.too_early), 0);
}

/* ---- VDUSE: a kernel stand-in that maps one IOVA range ---- */

#define VD_IOVA  0x80000000ull
#define VD_ARENA (256u << 10)

struct vd_kernel {
    uint64_t features;
    uint8_t *arena;
    struct atk_ring *ring;
    int kickfd;
};

static int vd_get_features(void *k, uint64_t *f)
{
    *f = ((struct vd_kernel *)k)->features;
    return 0;
}

static int vd_vq_info(void *k, struct vduse_abi_vq_info *info)
{
    struct vd_kernel *vk = k;
    uint32_t index = info->index;
    memset(info, 0, sizeof(*info));
    info->index = index;
    if (index != 0 || !vk->ring)
        return 0; /* not ready */
    struct vblk_vq_addrs a = atk_ring_addrs(vk->ring);
    info->num = vk->ring->size;
    info->desc_addr = a.desc;
    info->driver_addr = a.driver;
    info->device_addr = a.device;
    info->ready = 1;
    return 0;
}

static int vd_set_kickfd(void *k, uint32_t index, int fd)
{
    (void)index;
    ((struct vd_kernel *)k)->kickfd = fd;
    return 0;
}

static int vd_inject_irq(void *k, uint32_t index)
{
    (void)k;
    (void)index;
    return 0;
}

static int vd_map(void *k, uint64_t iova, struct vduse_mapping *m)
{
    struct vd_kernel *vk = k;
    if (iova < VD_IOVA || iova - VD_IOVA >= VD_ARENA)
        return -EFAULT;
    m->start = VD_IOVA;
    m->last = VD_IOVA + VD_ARENA - 1;
    m->perm = VDUSE_ABI_ACCESS_RW;
    m->host = vk->arena;
    m->base = vk->arena;
    return 0;
}

static void vd_unmap(void *k, const struct vblk_mem_region *r)
{
    (void)k;
    (void)r;
}

static int vd_set_config(void *k, uint32_t off, const void *buf, uint32_t len)
{
    (void)k;
    (void)off;
    (void)buf;
    (void)len;
    return 0;
}

static int vd_config_irq(void *k)
{
    (void)k;
    return 0;
}

static const struct vduse_kops vd_kops = {
    .get_features = vd_get_features,
    .vq_info = vd_vq_info,
    .set_kickfd = vd_set_kickfd,
    .inject_irq = vd_inject_irq,
    .map = vd_map,
    .unmap = vd_unmap,
    .set_config = vd_set_config,
    .config_irq = vd_config_irq,
};

struct vd {
    struct vd_kernel k;
    struct atk_disk bd;
    struct vblk_backend be;
    struct vblk_vduse *v;
    struct atk_ring ring;
    uint32_t next_id;
};

static struct vd *vd_new(void)
{
    struct vd *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    x->k.arena = aligned_alloc(4096, VD_ARENA);
    assert_non_null(x->k.arena);
    memset(x->k.arena, 0, VD_ARENA);
    x->k.kickfd = -1;
    atk_disk_init(&x->bd, &x->be);
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, ATK_DISK);
    p.num_queues = 2;
    p.queue_size = ATK_QSIZE;
    assert_int_equal(vduse_alloc(&p, &x->be, &vd_kops, &x->k, &x->v), 0);
    uint64_t f = vblk_dev_features(vblk_vduse_blk(x->v)) | VBLK_BIT(VBLK_F_ACCESS_PLATFORM);
    x->k.features = f & ~(VBLK_BIT(VBLK_F_RING_PACKED) | VBLK_BIT(VBLK_F_IN_ORDER));
    return x;
}

static void vd_free(struct vd *x)
{
    vduse_free(x->v);
    free(x->bd.disk);
    free(x->k.arena);
    free(x);
}

/* Sends one kernel request; returns the handler's return value and the
 * response's result in *result. */
static int vd_send(struct vd *x, const struct vduse_abi_request *body, size_t len, uint32_t *result)
{
    struct vduse_abi_request req = *body;
    req.request_id = ++x->next_id;
    struct vduse_abi_response resp;
    memset(&resp, 0xee, sizeof(resp));
    int n = vblk_vduse_handle_request(x->v, &req, len, &resp, sizeof(resp));
    if (n == VBLK_VDUSE_MSG_SIZE) {
        assert_int_equal(resp.request_id, x->next_id);
        *result = resp.result;
    }
    return n;
}

static uint32_t vd_status(struct vd *x, uint8_t status)
{
    struct vduse_abi_request req;
    memset(&req, 0, sizeof(req));
    req.type = VDUSE_MSG_SET_STATUS;
    req.status = status;
    uint32_t result = 99;
    assert_int_equal(vd_send(x, &req, sizeof(req), &result), VBLK_VDUSE_MSG_SIZE);
    return result;
}

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
    struct late l = {.req = x->bd.held[0], .delay_ms = 100};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, late_completion, &l), 0);
    assert_int_equal(vd_status(x, 0), VDUSE_ABI_RESULT_OK);
    atomic_store(&l.released, 1);
    pthread_join(th, NULL);
    vd_free(x);
    assert_int_equal(atomic_load(&l.too_early), 0);
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
        cmocka_unit_test(status_byte_in_read_only_descriptor),
        cmocka_unit_test(status_byte_in_zero_length_descriptor),
        cmocka_unit_test(status_byte_outside_guest_memory),
        /* packed wrap counters */
        cmocka_unit_test(packed_descriptor_with_wrong_wrap_counter),
        cmocka_unit_test(packed_descriptor_reused_before_it_was_used),
        /* buffers: IOERR */
        cmocka_unit_test(buffer_addr_plus_len_wraps_past_2_64),
        cmocka_unit_test(buffer_straddling_end_of_memory_region),
        cmocka_unit_test(header_outside_guest_memory),
        cmocka_unit_test(zero_length_data_descriptor),
        cmocka_unit_test(header_in_writable_descriptor),
        cmocka_unit_test(header_shorter_than_16_bytes),
        cmocka_unit_test(more_data_descriptors_than_seg_max),
        cmocka_unit_test(chain_with_more_buffers_than_iovec_slots),
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
        cmocka_unit_test(descriptor_rewritten_after_pop_is_not_refetched),
        cmocka_unit_test(header_rewritten_after_pop_is_not_reread),
        cmocka_unit_test(read_buffer_overlapping_the_descriptor_table),
        cmocka_unit_test(same_head_made_available_twice_while_in_flight),
        /* resource bounds */
        cmocka_unit_test(driver_never_collects_completions_cve_2016_5403_class),
        /* values passed on by transports */
        cmocka_unit_test(queue_index_out_of_range_cve_2011_2512_class),
        cmocka_unit_test(rings_outside_guest_memory),
        cmocka_unit_test(packed_ring_position_beyond_queue_size),
        cmocka_unit_test(inflight_resubmit_of_bad_position),
        cmocka_unit_test(memory_regions_overlapping_or_empty),
        cmocka_unit_test(config_space_writes_outside_writeback),
        /* vhost-user */
        cmocka_unit_test(vu_vring_index_out_of_range_cve_2011_2512_class),
        cmocka_unit_test(vu_get_vring_base_index_out_of_range),
        cmocka_unit_test(vu_get_vring_base_on_queue_never_started),
        cmocka_unit_test(vu_fds_on_messages_that_take_none_cve_2022_0669_class),
        cmocka_unit_test(vu_log_base_size_overflow_cve_2020_10722_class),
        cmocka_unit_test(vu_dirty_log_shorter_than_guest_memory),
        cmocka_unit_test(vu_memory_regions_overlapping),
        cmocka_unit_test(vu_memory_region_empty_or_not_backed),
        cmocka_unit_test(vu_message_truncated_mid_header),
        cmocka_unit_test(vu_payload_size_larger_than_message),
        cmocka_unit_test(vu_wrong_version_or_reply_flag),
        cmocka_unit_test(vu_rings_outside_guest_memory),
        cmocka_unit_test(vu_ring_size_invalid),
        cmocka_unit_test(vu_packed_ring_base_beyond_ring_size),
        cmocka_unit_test(vu_driver_breaks_the_ring),
        cmocka_unit_test(vu_memory_removed_under_running_ring),
        cmocka_unit_test(vu_set_config_outside_config_space),
        cmocka_unit_test(vu_inflight_region_rewritten_by_front_end),
        /* VDUSE */
        cmocka_unit_test(vduse_vq_state_index_out_of_range_cve_2011_2512_class),
        cmocka_unit_test(vduse_request_of_wrong_length),
        cmocka_unit_test(vduse_iotlb_update_with_start_after_last),
        /* transports releasing a broken queue */
        cmocka_unit_test(loopback_destroy_waits_for_requests_of_broken_ring),
        cmocka_unit_test(vduse_reset_waits_for_requests_of_broken_ring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
