/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the fused fast path (lib/core/blk_fast.c) on both ring
 * formats: a direct header/data/status chain is taken by it, and every
 * other shape falls back to the general walk with the general path's
 * verdict (indirect tables, two or four descriptors, a header split across
 * descriptors, a status that is not writable, data in the wrong direction,
 * buffers that do not translate, loops, size_max), bursts that mix both,
 * the used ring order and index, and notification suppression when one
 * publish covers a whole burst.
 *
 * Which path took a request is seen through a backend with
 * VBLK_BACKEND_CAP_NOP_RW: the fast path completes its IN and OUT requests
 * without calling submit(), the general path always calls it. A RAM disk
 * backend checks that both paths hand the backend the same request.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "blk_harness.h"

/* What a NOP_RW backend promises: IN and OUT complete at once with OK,
 * buffers untouched. Counts the calls: each is a general-path request. */
static void nop_submit(void *be, void *qctx, struct vblk_req *r)
{
    struct tb *t = be;
    (void)qctx;
    t->nsubmit++;
    t->ntype[r->type & 15]++;
    vblk_req_complete(r, VBLK_S_OK);
}

/* Starts queue 0 on a split or packed ring of h->qsize entries, with the
 * NOP_RW backend when @nop, else the RAM disk. EVENT_IDX is negotiated
 * when @event_idx. */
static void start(struct h *h, bool packed, bool nop, bool event_idx)
{
    if (nop) {
        h->tb.ops.caps |= VBLK_BACKEND_CAP_NOP_RW;
        h->tb.ops.submit = nop_submit;
    }
    uint64_t drop = event_idx ? 0 : F(EVENT_IDX);
    if (!packed)
        drop |= F(RING_PACKED);
    bring_up(h, 0, drop);
    assert_int_equal(!!(vblk_dev_driver_features(&h->dev) & F(RING_PACKED)), packed);
    assert_false(vblk_dev_driver_features(&h->dev) & F(IN_ORDER));
}

/* A request of the common shape: [header][data][status]. Returns the
 * status byte's driver address; *id gets the used-entry id to expect. */
static uint64_t post_rw(struct h *h, uint32_t type, uint64_t sector, uint32_t len, uint16_t *id)
{
    uint64_t st = galloc(h, 1, 0xff);
    uint64_t data = galloc(h, len, 0x5a);
    struct seg s[3] = {
        {mkhdr(h, type, sector), 16, 0}, {data, len, type == VBLK_T_IN ? W : 0}, {st, 1, W}};
    struct atk_seg a[3];
    for (unsigned i = 0; i < 3; i++)
        a[i] = (struct atk_seg){s[i].addr, s[i].len, s[i].flags};
    uint16_t got = atk_post(&h->ring, a, 3);
    if (id)
        *id = got;
    return st;
}

static uint8_t status_at(struct h *h, uint64_t st)
{
    return *(uint8_t *)hp(h, st);
}

static void direct_chains_take_the_fast_path(void **state)
{
    struct h *h = *state;
    for (int packed = 0; packed < 2; packed++) {
        if (packed)
            h = restart(state);
        start(h, packed, true, false);
        uint16_t id_in, id_out, id;
        uint64_t st_in = post_rw(h, VBLK_T_IN, 8, 4096, &id_in);
        uint64_t st_out = post_rw(h, VBLK_T_OUT, SECTORS - 1, 512, &id_out);
        assert_int_equal(process(h), 2);
        assert_int_equal(h->tb.nsubmit, 0);
        assert_int_equal(status_at(h, st_in), VBLK_S_OK);
        assert_int_equal(status_at(h, st_out), VBLK_S_OK);
        assert_int_equal(take_used(h, &id), 4097);
        assert_int_equal(id, id_in);
        assert_int_equal(take_used(h, &id), 1);
        assert_int_equal(id, id_out);
        const struct vblk_queue_stats *qs = vblk_queue_stats(&h->q);
        assert_int_equal(qs->submitted, 2);
        assert_int_equal(qs->completed, 2);
        assert_int_equal(vblk_vq_stats(&h->q.vq)->chains, 2);
        assert_int_equal(vblk_queue_inflight(&h->q), 0);
        assert_int_equal(h->notifies, 1);
    }
}

/* Runs one request that must go to the general path and returns its
 * status; *ulen gets the used length. */
static int fallback(struct h *h, const struct seg *s, unsigned n, uint64_t st, uint32_t *ulen)
{
    post(h, s, n);
    assert_true(process(h) >= 0);
    uint32_t l = take_used(h, NULL);
    if (ulen)
        *ulen = l;
    return status_at(h, st);
}

static void other_shapes_fall_back(void **state)
{
    struct h *h = *state;
    for (int packed = 0; packed < 2; packed++) {
        if (packed)
            h = restart(state);
        start(h, packed, true, false);
        uint32_t ulen;
        unsigned n = 0;

        /* Indirect: header, data and status in a table. */
        uint64_t st = galloc(h, 1, 0xff), t = galloc(h, 48, 0), d = galloc(h, 512, 0);
        struct atk_seg tab[3] = {{mkhdr(h, VBLK_T_IN, 0), 16, 0}, {d, 512, W}, {st, 1, W}};
        atk_table_write(packed, hp(h, t), tab, 3);
        atk_post_indirect(&h->ring, t, 48, 0);
        assert_int_equal(process(h), 1);
        assert_int_equal(take_used(h, NULL), 513);
        assert_int_equal(status_at(h, st), VBLK_S_OK);
        assert_int_equal(h->tb.nsubmit, ++n);

        /* Two descriptors: header and data in one. */
        st = galloc(h, 1, 0xff);
        d = mkhdr(h, VBLK_T_OUT, 0);
        galloc(h, 512, 0); /* the data right after the 16-byte header */
        struct seg two[2] = {{d, 16 + 512, 0}, {st, 1, W}};
        assert_int_equal(fallback(h, two, 2, st, &ulen), VBLK_S_OK);
        assert_int_equal(ulen, 1);
        assert_int_equal(h->tb.nsubmit, ++n);

        /* Four descriptors: two data buffers. */
        st = galloc(h, 1, 0xff);
        struct seg four[4] = {{mkhdr(h, VBLK_T_IN, 0), 16, 0},
                              {galloc(h, 512, 0), 512, W},
                              {galloc(h, 512, 0), 512, W},
                              {st, 1, W}};
        assert_int_equal(fallback(h, four, 4, st, &ulen), VBLK_S_OK);
        assert_int_equal(ulen, 1025);
        assert_int_equal(h->tb.nsubmit, ++n);

        /* A header descriptor with more than the header in it. */
        st = galloc(h, 1, 0xff);
        struct seg long_hdr[3] = {
            {mkhdr(h, VBLK_T_IN, 0), 32, 0}, {galloc(h, 512, 0), 512, W}, {st, 1, W}};
        assert_int_equal(fallback(h, long_hdr, 3, st, &ulen), VBLK_S_OK);
        assert_int_equal(ulen, 513);
        assert_int_equal(h->tb.nsubmit, ++n);

        /* The header split over two descriptors. */
        st = galloc(h, 1, 0xff);
        d = mkhdr(h, VBLK_T_IN, 0);
        struct seg split_hdr[4] = {
            {d, 8, 0}, {d + 8, 8, 0}, {galloc(h, 512, 0), 512, W}, {st, 1, W}};
        assert_int_equal(fallback(h, split_hdr, 4, st, &ulen), VBLK_S_OK);
        assert_int_equal(ulen, 513);
        assert_int_equal(h->tb.nsubmit, ++n);

        /* Status and data in one writable descriptor. */
        st = galloc(h, 513, 0xff) + 512;
        struct seg joined[2] = {{mkhdr(h, VBLK_T_IN, 0), 16, 0}, {st - 512, 513, W}};
        assert_int_equal(fallback(h, joined, 2, st, &ulen), VBLK_S_OK);
        assert_int_equal(ulen, 513);
        assert_int_equal(h->tb.nsubmit, ++n);

        /* Data in the wrong direction: an IN whose data the device may
         * not write reads nothing, an OUT whose data is writable writes
         * nothing; neither reaches the backend. */
        st = galloc(h, 1, 0xff);
        struct seg in_ro[3] = {
            {mkhdr(h, VBLK_T_IN, 0), 16, 0}, {galloc(h, 512, 0), 512, 0}, {st, 1, W}};
        assert_int_equal(fallback(h, in_ro, 3, st, &ulen), VBLK_S_OK);
        assert_int_equal(ulen, 1);
        st = galloc(h, 1, 0xff);
        struct seg out_w[3] = {
            {mkhdr(h, VBLK_T_OUT, 0), 16, 0}, {galloc(h, 512, 0), 512, W}, {st, 1, W}};
        assert_int_equal(fallback(h, out_w, 3, st, &ulen), VBLK_S_OK);
        assert_int_equal(ulen, 1);
        assert_int_equal(h->tb.nsubmit, n);
        assert_int_equal(vblk_queue_stats(&h->q)->submitted, n);

        /* A two-byte status descriptor: the status is its last byte, and
         * the byte before it is data (a read of 513 bytes: an error). */
        st = galloc(h, 2, 0xff);
        struct seg st2_out[3] = {
            {mkhdr(h, VBLK_T_OUT, 0), 16, 0}, {galloc(h, 512, 0), 512, 0}, {st, 2, W}};
        assert_int_equal(fallback(h, st2_out, 3, st + 1, &ulen), VBLK_S_OK);
        assert_int_equal(status_at(h, st), 0xff);
        assert_int_equal(ulen, 1);
        assert_int_equal(h->tb.nsubmit, ++n);
        st = galloc(h, 2, 0xff);
        struct seg st2_in[3] = {
            {mkhdr(h, VBLK_T_IN, 0), 16, 0}, {galloc(h, 512, 0), 512, W}, {st, 2, W}};
        assert_int_equal(fallback(h, st2_in, 3, st + 1, &ulen), VBLK_S_IOERR);
        assert_int_equal(status_at(h, st), 0xff);
        assert_int_equal(ulen, 1);
        assert_int_equal(h->tb.nsubmit, n);

        /* Other types: FLUSH with a data buffer, an unknown type. */
        st = galloc(h, 1, 0xff);
        struct seg fl[3] = {
            {mkhdr(h, VBLK_T_FLUSH, 0), 16, 0}, {galloc(h, 512, 0), 512, 0}, {st, 1, W}};
        assert_int_equal(fallback(h, fl, 3, st, NULL), VBLK_S_OK);
        assert_int_equal(h->tb.nsubmit, ++n);
        st = galloc(h, 1, 0xff);
        struct seg unk[3] = {{mkhdr(h, 0x77, 0), 16, 0}, {galloc(h, 512, 0), 512, W}, {st, 1, W}};
        assert_int_equal(fallback(h, unk, 3, st, NULL), VBLK_S_UNSUPP);

        /* Lengths and ranges the general path fails: a partial sector,
         * a sector past the end, a short header. */
        st = galloc(h, 1, 0xff);
        struct seg part[3] = {
            {mkhdr(h, VBLK_T_IN, 0), 16, 0}, {galloc(h, 512, 0), 100, W}, {st, 1, W}};
        assert_int_equal(fallback(h, part, 3, st, &ulen), VBLK_S_IOERR);
        assert_int_equal(ulen, 1);
        st = galloc(h, 1, 0xff);
        struct seg past[3] = {
            {mkhdr(h, VBLK_T_IN, SECTORS), 16, 0}, {galloc(h, 512, 0), 512, W}, {st, 1, W}};
        assert_int_equal(fallback(h, past, 3, st, NULL), VBLK_S_IOERR);
        st = galloc(h, 1, 0xff);
        struct seg hdr_short[3] = {
            {mkhdr(h, VBLK_T_IN, 0), 8, 0}, {galloc(h, 512, 0), 512, W}, {st, 1, W}};
        assert_int_equal(fallback(h, hdr_short, 3, st, NULL), VBLK_S_IOERR);
        assert_int_equal(h->tb.nsubmit, n);
        assert_int_equal(vblk_queue_stats(&h->q)->submitted, n);

        /* Translation failures: data unmapped, data running off the end
         * of guest memory, status unmapped (nothing to report: broken). */
        st = galloc(h, 1, 0xff);
        struct seg unmapped[3] = {
            {mkhdr(h, VBLK_T_IN, 0), 16, 0}, {GPA + MEM_LEN + 4096, 512, W}, {st, 1, W}};
        assert_int_equal(fallback(h, unmapped, 3, st, &ulen), VBLK_S_IOERR);
        assert_int_equal(ulen, 1);
        st = galloc(h, 1, 0xff);
        struct seg off_end[3] = {
            {mkhdr(h, VBLK_T_OUT, 0), 16, 0}, {GPA + MEM_LEN - 256, 512, 0}, {st, 1, W}};
        assert_int_equal(fallback(h, off_end, 3, st, NULL), VBLK_S_IOERR);
        assert_int_equal(h->tb.nsubmit, n);
        assert_int_equal(vblk_vq_stats(&h->q.vq)->bad_chains, 2);
        assert_false(vblk_queue_broken(&h->q));
        assert_int_equal(vblk_queue_inflight(&h->q), 0);
    }
}

/* Chains the general path refuses outright break the ring on the fast
 * path's watch too. */
static void malformed_chains_break_the_ring(void **state)
{
    struct h *h = *state;
    for (unsigned c = 0; c < 6; c++) {
        bool packed = c >= 4;
        if (c)
            h = restart(state);
        start(h, packed, true, false);
        uint64_t hdr = mkhdr(h, VBLK_T_IN, 0), d = galloc(h, 512, 0), st = galloc(h, 1, 0xff);
        switch (c) {
        case 0: { /* status not writable after writable data */
            struct seg s[3] = {{hdr, 16, 0}, {d, 512, W}, {st, 1, 0}};
            post(h, s, 3);
            break;
        }
        case 1: /* a loop: header -> data -> header */
            atk_split_set(&h->ring, 0, hdr, 16, VBLK_DESC_F_NEXT, 1);
            atk_split_set(&h->ring, 1, d, 512, VBLK_DESC_F_NEXT | W, 0);
            atk_split_publish(&h->ring, 0);
            break;
        case 2: /* the data's next index past the ring, where a plausible
                 * status descriptor lies */
            atk_split_set(&h->ring, 0, hdr, 16, VBLK_DESC_F_NEXT, 1);
            atk_split_set(&h->ring, 1, d, 512, VBLK_DESC_F_NEXT | W, QSIZE);
            h->desc[QSIZE] = (struct vblk_split_desc){st, 1, W, 0};
            atk_split_publish(&h->ring, 0);
            break;
        case 3: /* the header's next index past the ring, likewise */
            atk_split_set(&h->ring, 0, hdr, 16, VBLK_DESC_F_NEXT, QSIZE);
            h->desc[QSIZE] = (struct vblk_split_desc){d, 512, VBLK_DESC_F_NEXT | W, 2};
            atk_split_set(&h->ring, 2, st, 1, W, 0);
            atk_split_publish(&h->ring, 0);
            break;
        case 4: { /* packed: nothing writable (no status byte) */
            struct seg s[3] = {{hdr, 16, 0}, {d, 512, 0}, {st, 1, 0}};
            post(h, s, 3);
            break;
        }
        case 5: /* packed: the status slot not made available */
            atk_packed_set(&h->ring, 0, hdr, 16, 0, VBLK_DESC_F_NEXT);
            atk_packed_set(&h->ring, 1, d, 512, 0, VBLK_DESC_F_NEXT | W);
            atk_packed_set(&h->ring, 2, st, 1, 0, W);
            atk_packed_mark_avail(&h->ring, 1, 1, 1);
            atk_packed_mark_avail(&h->ring, 0, 1, 1);
            break;
        }
        assert_int_equal(process(h), -EIO);
        assert_true(vblk_queue_broken(&h->q));
        assert_int_equal(h->tb.nsubmit, 0);
        assert_int_equal(vblk_queue_stats(&h->q)->completed, 0);
    }
}

/* Guest memory in two regions: buffers in either take the fast path; a
 * buffer that crosses from one into the other takes the general one. */
static void second_region_and_crossing_buffers(void **state)
{
    struct h *h = *state;
    for (int packed = 0; packed < 2; packed++) {
        if (packed)
            h = restart(state);
        const uint64_t gpa2 = GPA + MEM_LEN;
        uint8_t *ram2 = calloc(1, 8192);
        assert_non_null(ram2);
        assert_int_equal(vblk_mem_add(&h->mem, gpa2, 8192, ram2, NULL), 0);
        start(h, packed, true, false);
        uint64_t st = galloc(h, 1, 0xff);
        struct seg far[3] = {{mkhdr(h, VBLK_T_IN, 0), 16, 0}, {gpa2 + 4096, 4096, W}, {st, 1, W}};
        uint32_t ulen;
        assert_int_equal(fallback(h, far, 3, st, &ulen), VBLK_S_OK);
        assert_int_equal(ulen, 4097);
        assert_int_equal(h->tb.nsubmit, 0);
        st = galloc(h, 1, 0xff);
        struct seg cross[3] = {{mkhdr(h, VBLK_T_OUT, 0), 16, 0}, {gpa2 - 512, 1024, 0}, {st, 1, W}};
        assert_int_equal(fallback(h, cross, 3, st, &ulen), VBLK_S_OK);
        assert_int_equal(ulen, 1);
        assert_int_equal(h->tb.nsubmit, 1);
        free(ram2);
    }
}

/* size_max binds every descriptor; a data buffer above it is an error. */
static void size_max_is_enforced(void **state)
{
    struct h *h = *state;
    for (int packed = 0; packed < 2; packed++) {
        if (packed)
            h = restart(state);
        h->p.size_max = 1024;
        start(h, packed, true, false);
        assert_true(vblk_dev_driver_features(&h->dev) & F(SIZE_MAX));
        uint64_t st = post_rw(h, VBLK_T_IN, 0, 1024, NULL);
        assert_int_equal(process(h), 1);
        assert_int_equal(take_used(h, NULL), 1025);
        assert_int_equal(status_at(h, st), VBLK_S_OK);
        st = post_rw(h, VBLK_T_IN, 0, 1536, NULL);
        process(h);
        assert_int_equal(take_used(h, NULL), 1);
        assert_int_equal(status_at(h, st), VBLK_S_IOERR);
        assert_int_equal(h->tb.nsubmit, 0);
    }
}

/* A burst of fast and slow requests: every one completes, in ring order
 * (all complete inline), under one used index store and one notification. */
static void mixed_burst_keeps_order(void **state)
{
    struct h *h = *state;
    for (int packed = 0; packed < 2; packed++) {
        if (packed)
            h = restart(state);
        start(h, packed, true, false);
        uint16_t ids[5];
        uint64_t sts[5];
        uint32_t want[5];
        for (unsigned i = 0; i < 5; i++) {
            if (i % 2 == 0) {
                sts[i] = post_rw(h, VBLK_T_IN, i, 512, &ids[i]);
                want[i] = 513;
            } else if (i == 1) {
                /* indirect */
                sts[i] = galloc(h, 1, 0xff);
                uint64_t t = galloc(h, 48, 0);
                struct atk_seg tab[3] = {
                    {mkhdr(h, VBLK_T_OUT, 0), 16, 0}, {galloc(h, 512, 0), 512, 0}, {sts[i], 1, W}};
                atk_table_write(packed, hp(h, t), tab, 3);
                ids[i] = packed ? h->ring.id : h->ring.next;
                atk_post_indirect(&h->ring, t, 48, 0);
                want[i] = 1;
            } else {
                /* four descriptors */
                sts[i] = galloc(h, 1, 0xff);
                struct atk_seg s[4] = {{mkhdr(h, VBLK_T_IN, 0), 16, 0},
                                       {galloc(h, 512, 0), 512, W},
                                       {galloc(h, 512, 0), 512, W},
                                       {sts[i], 1, W}};
                ids[i] = atk_post(&h->ring, s, 4);
                want[i] = 1025;
            }
        }
        assert_int_equal(process(h), 5);
        assert_int_equal(h->tb.nsubmit, 2);
        assert_int_equal(h->notifies, 1);
        if (!packed)
            assert_int_equal(h->used->idx, 5);
        for (unsigned i = 0; i < 5; i++) {
            uint16_t id;
            assert_int_equal(take_used(h, &id), want[i]);
            assert_int_equal(id, ids[i]);
            assert_int_equal(status_at(h, sts[i]), VBLK_S_OK);
        }
        uint16_t id;
        uint32_t len;
        assert_int_equal(atk_used(&h->ring, &id, &len), 0);
        /* A budget stops a burst part-way; the rest follows. */
        for (unsigned i = 0; i < 4; i++)
            post_rw(h, VBLK_T_OUT, i, 512, NULL);
        assert_int_equal(vblk_queue_process(&h->q, 3), 3);
        assert_int_equal(vblk_queue_process(&h->q, 3), 1);
        for (unsigned i = 0; i < 4; i++)
            assert_int_equal(take_used(h, NULL), 1);
        assert_int_equal(vblk_queue_inflight(&h->q), 0);
    }
}

/* The driver asks for a notification at a used position; a burst whose
 * single publish moves past it notifies, others do not. */
static void event_idx_crossing_inside_a_burst(void **state)
{
    struct h *h = *state;
    for (int packed = 0; packed < 2; packed++) {
        if (packed)
            h = restart(state);
        start(h, packed, true, true);
        assert_true(vblk_dev_driver_features(&h->dev) & F(EVENT_IDX));
        struct vblk_packed_event *ev = (struct vblk_packed_event *)(void *)h->ring.driver;
        /* Split: used_event after avail->ring[]. Packed: the driver event
         * structure, in ring slots (each request takes three). */
        uint16_t *used_event = &h->avail->ring[QSIZE];
        /* burst: requests, the event position (in requests) and whether a
         * notification is due. The first publish always notifies. */
        const struct {
            unsigned n, event;
            bool notify;
        } bursts[] = {{2, 100, true}, {2, 7, false}, {3, 5, true}, {2, 3, false}, {2, 10, true}};
        unsigned used = 0, notifies = 0;
        for (unsigned b = 0; b < sizeof(bursts) / sizeof(bursts[0]); b++) {
            if (packed) {
                uint32_t slot = 3u * bursts[b].event;
                uint16_t pos = (uint16_t)(slot % QSIZE);
                uint8_t wrap = (uint8_t)((1 + slot / QSIZE) & 1);
                ev->off_wrap = vblk_off_wrap(pos, wrap);
                ev->flags = VBLK_EVENT_F_DESC;
            } else {
                *used_event = (uint16_t)bursts[b].event;
            }
            for (unsigned i = 0; i < bursts[b].n; i++)
                post_rw(h, VBLK_T_IN, i, 512, NULL);
            assert_int_equal(process(h), (int)bursts[b].n);
            assert_int_equal(h->tb.nsubmit, 0);
            notifies += bursts[b].notify;
            assert_int_equal(h->notifies, notifies);
            for (unsigned i = 0; i < bursts[b].n; i++)
                assert_int_equal(take_used(h, NULL), 513);
            used += bursts[b].n;
            if (!packed)
                assert_int_equal(h->used->idx, used);
        }
    }
}

/* The RAM disk (no NOP_RW): the fast path fills the request exactly as
 * the general path does (forced here by request hooks). */
struct seen {
    struct vblk_req r;
    struct vblk_iov iov[3];
    struct vblk_iov data;
};

static struct seen seen[2];
static unsigned nseen;

static void record_submit(void *be, void *qctx, struct vblk_req *r)
{
    struct seen *s = &seen[nseen++ % 2];
    s->r = *r;
    memcpy(s->iov, r->chain.iov, sizeof(s->iov));
    s->data = r->iov[0];
    tb_submit(be, qctx, r);
}

static void hook_nop(void *o, const struct vblk_req *r)
{
    (void)o;
    (void)r;
}

static void both_paths_hand_the_backend_the_same_request(void **state)
{
    static const struct vblk_queue_hooks hooks = {hook_nop, hook_nop, NULL};
    struct h *h = *state;
    for (int c = 0; c < 4; c++) {
        bool packed = c >= 2;
        uint32_t type = c % 2 ? VBLK_T_OUT : VBLK_T_IN;
        if (c)
            h = restart(state);
        h->tb.ops.submit = record_submit;
        start(h, packed, false, false);
        uint64_t st = galloc(h, 1, 0xff), hdr = mkhdr(h, type, 3), d = galloc(h, 1024, 0x11);
        struct seg s[3] = {{hdr, 16, 0}, {d, 1024, type == VBLK_T_IN ? W : 0}, {st, 1, W}};
        nseen = 0;
        post(h, s, 3);
        assert_int_equal(process(h), 1);
        h->q.hooks = &hooks; /* white box: hooks keep requests on the general path */
        post(h, s, 3);
        assert_int_equal(process(h), 1);
        h->q.hooks = NULL;
        assert_int_equal(nseen, 2);
        assert_int_equal(h->tb.nsubmit, 2);
        const struct vblk_req *a = &seen[0].r, *b = &seen[1].r;
        assert_int_equal(a->type, b->type);
        assert_int_equal(a->sector, b->sector);
        assert_int_equal(a->len, b->len);
        assert_int_equal(a->niov, b->niov);
        assert_int_equal(a->nranges, b->nranges);
        assert_int_equal(a->flags, b->flags);
        assert_ptr_equal(seen[0].data.base, seen[1].data.base);
        assert_int_equal(seen[0].data.len, seen[1].data.len);
        assert_int_equal(a->chain.nout, b->chain.nout);
        assert_int_equal(a->chain.nin, b->chain.nin);
        assert_int_equal(a->chain.out_len, b->chain.out_len);
        assert_int_equal(a->chain.in_len, b->chain.in_len);
        assert_int_equal(a->chain.ndata, b->chain.ndata);
        assert_int_equal(a->chain.ndescs, b->chain.ndescs);
        assert_int_equal(a->chain.fault, b->chain.fault);
        assert_int_equal(a->chain.last_mapped, b->chain.last_mapped);
        assert_int_equal(a->chain.max_desc_len, b->chain.max_desc_len);
        for (unsigned i = 0; i < 3; i++) {
            assert_ptr_equal(seen[0].iov[i].base, seen[1].iov[i].base);
            assert_int_equal(seen[0].iov[i].len, seen[1].iov[i].len);
        }
        for (unsigned i = 0; i < 2; i++) {
            uint16_t id;
            assert_int_equal(take_used(h, &id), type == VBLK_T_IN ? 1025 : 1);
        }
        assert_int_equal(status_at(h, st), VBLK_S_OK);
        if (type == VBLK_T_IN)
            assert_memory_equal(hp(h, d), h->tb.disk + 3 * 512, 1024);
        assert_int_equal(vblk_queue_stats(&h->q)->submitted, 2);
        assert_int_equal(vblk_queue_stats(&h->q)->completed, 2);
    }
}

/* A backend that holds its requests, and a driver that makes one head
 * available again and again: the fast path stops at the empty pool, which
 * the general path counts as back-pressure, and goes on after completions. */
static void fast_path_respects_the_pool(void **state)
{
    struct h *h = *state;
    h->qsize = 4;
    atk_ring_init(&h->ring, h->ram.host, GPA, 4, false);
    start(h, false, false, false);
    h->tb.hold = true;
    post_rw(h, VBLK_T_IN, 0, 512, NULL);
    for (unsigned i = 0; i < 3; i++)
        atk_split_publish(&h->ring, 0);
    assert_int_equal(process(h), 4);
    atk_split_publish(&h->ring, 0);
    assert_int_equal(process(h), 0);
    assert_int_equal(vblk_queue_stats(&h->q)->pool_full, 1);
    assert_int_equal(vblk_queue_inflight(&h->q), 4);
    for (unsigned i = 0; i < 4; i++)
        vblk_req_complete(h->tb.held[i], VBLK_S_OK);
    vblk_queue_flush(&h->q);
    assert_int_equal(process(h), 1);
    vblk_req_complete(h->tb.held[4], VBLK_S_OK);
    vblk_queue_flush(&h->q);
    for (unsigned i = 0; i < 5; i++) {
        uint16_t id;
        assert_int_equal(take_used(h, &id), 513);
        assert_int_equal(id, 0);
    }
    assert_int_equal(vblk_queue_inflight(&h->q), 0);
    assert_false(vblk_queue_broken(&h->q));
}

/* ---- differential: the same requests with and without the fast path ---- */

static uint32_t next_rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* One of @n values, picked by @s. */
#define PICK(s, ...)                                                                               \
    ((const uint32_t[]){                                                                           \
        __VA_ARGS__}[next_rnd(s) % (sizeof((const uint32_t[]){__VA_ARGS__}) / sizeof(uint32_t))])

/* A buffer of @len bytes: mapped (usually), unmapped, or running off the
 * end of guest memory. */
static uint64_t rnd_buf(struct h *h, uint32_t *s, uint32_t len)
{
    switch (next_rnd(s) % 32) {
    case 0:
        return GPA + MEM_LEN + 4096;
    case 1:
        return GPA + MEM_LEN - (len > 1 ? len / 2 : 0);
    default:
        return galloc(h, len ? len : 1, 0xee);
    }
}

/* Posts one to four requests drawn from @seed: mostly the common shape,
 * often with one thing wrong (a length, a flag, a type, a buffer, the
 * descriptor count), sometimes as an indirect table. */
static void post_random(struct h *h, uint32_t seed, bool packed)
{
    uint32_t s = seed * 2654435761u + 1;
    unsigned k = 1 + next_rnd(&s) % 4;
    for (unsigned r = 0; r < k; r++) {
        uint32_t type = PICK(&s, VBLK_T_IN, VBLK_T_IN, VBLK_T_OUT, VBLK_T_OUT, VBLK_T_FLUSH, 0x77);
        uint64_t sector = next_rnd(&s) % 2 ? next_rnd(&s) % SECTORS : SECTORS - next_rnd(&s) % 4;
        unsigned n = next_rnd(&s) % 4 ? 3 : 1 + next_rnd(&s) % 4;
        bool odd = next_rnd(&s) % 3 == 0; /* one field off the common shape */
        unsigned which = next_rnd(&s) % 6;
        struct seg g[4];
        for (unsigned i = 0; i < n; i++) {
            bool status = i == n - 1 && n > 1, hdr = i == 0;
            uint32_t len = hdr ? 16 : status ? 1 : PICK(&s, 512, 512, 1024, 4096, 8192);
            uint16_t flags = hdr ? 0 : status ? W : type == VBLK_T_IN ? W : 0;
            if (odd && which == 0 && i == n / 2)
                len = PICK(&s, 0, 1, 8, 15, 17, 100, 513, 4097);
            if (odd && which == 1 && i == n / 2)
                flags ^= W;
            if (odd && which == 2 && status)
                len = PICK(&s, 0, 2, 16);
            uint64_t addr = rnd_buf(h, &s, len);
            if (hdr && len >= 16 && addr >= GPA && addr + 16 <= GPA + MEM_LEN) {
                struct vblk_req_hdr rh = {type, 0, sector};
                memcpy(hp(h, addr), &rh, sizeof(rh));
            }
            g[i] = (struct seg){addr, len, flags};
        }
        if (odd && which == 3) {
            /* The header split in two, when there is room. */
            if (n < 4 && g[0].len == 16) {
                memmove(&g[1], &g[0], n * sizeof(g[0]));
                g[0].len = 8;
                g[1].addr += 8;
                g[1].len = 8;
                n++;
            }
        }
        if (odd && which == 4 && n > 1) {
            uint64_t t = galloc(h, 16u * n, 0);
            struct atk_seg tab[4];
            for (unsigned i = 0; i < n; i++)
                tab[i] = (struct atk_seg){g[i].addr, g[i].len, g[i].flags};
            atk_table_write(packed, hp(h, t), tab, n);
            atk_post_indirect(&h->ring, t, 16u * n, 0);
            continue;
        }
        post(h, g, n);
    }
}

struct outcome {
    int rc;
    bool broken;
    unsigned nsubmit;
    struct vblk_queue_stats qs;
    uint8_t *ram; /* guest memory afterwards */
    uint8_t disk[DISK];
};

static void run_random(void **state, uint32_t seed, bool packed, bool nop, bool fast,
                       struct outcome *o)
{
    static const struct vblk_queue_hooks hooks = {hook_nop, hook_nop, NULL};
    struct h *h = restart(state);
    start(h, packed, nop, seed % 2 == 0);
    if (!fast)
        h->q.hooks = &hooks; /* white box: the general path only */
    post_random(h, seed, packed);
    o->rc = process(h);
    o->broken = vblk_queue_broken(&h->q);
    o->nsubmit = h->tb.nsubmit;
    o->qs = *vblk_queue_stats(&h->q);
    o->ram = malloc(MEM_LEN);
    assert_non_null(o->ram);
    memcpy(o->ram, h->ram.host, MEM_LEN);
    memcpy(o->disk, h->tb.disk, DISK);
    h->q.hooks = NULL;
}

static void fast_and_general_paths_agree(void **state)
{
    struct outcome *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    assert_true(a && b);
    unsigned fast_taken = 0;
    for (uint32_t seed = 1; seed <= 150; seed++) {
        for (unsigned c = 0; c < 4; c++) {
            bool packed = c & 1, nop = c & 2;
            run_random(state, seed, packed, nop, true, a);
            run_random(state, seed, packed, nop, false, b);
            assert_int_equal(a->rc, b->rc);
            assert_int_equal(a->broken, b->broken);
            assert_int_equal(a->qs.submitted, b->qs.submitted);
            assert_int_equal(a->qs.completed, b->qs.completed);
            assert_int_equal(a->qs.ioerr, b->qs.ioerr);
            assert_int_equal(a->qs.unsupp, b->qs.unsupp);
            if (!nop)
                assert_int_equal(a->nsubmit, b->nsubmit);
            fast_taken += b->nsubmit - a->nsubmit;
            /* Status bytes, used entries, data read and written. */
            assert_memory_equal(a->ram, b->ram, MEM_LEN);
            assert_memory_equal(a->disk, b->disk, DISK);
            free(a->ram);
            free(b->ram);
        }
    }
    /* The draw must exercise the fast path, not only its fallbacks. */
    assert_true(fast_taken > 100);
    free(a);
    free(b);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(direct_chains_take_the_fast_path),
        T(other_shapes_fall_back),
        T(malformed_chains_break_the_ring),
        T(second_region_and_crossing_buffers),
        T(size_max_is_enforced),
        T(mixed_burst_keeps_order),
        T(event_idx_crossing_inside_a_burst),
        T(both_paths_hand_the_backend_the_same_request),
        T(fast_path_respects_the_pool),
        T(fast_and_general_paths_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
