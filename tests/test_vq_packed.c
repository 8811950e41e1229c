/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the device side of the packed virtqueue
 * (lib/core/vq_packed.c). A small driver model in this file writes
 * descriptors with the AVAIL/USED wrap bits and the driver event
 * suppression structure straight into mapped memory, following virtio 1.2
 * section 2.8, and reads back what the device wrote. The memory is heap
 * allocated at exactly the mapped size so ASan flags any read past the map.
 *
 * Packed rings have no descriptor table to loop through and no head index
 * to range-check; their equivalents are a list that runs round the ring
 * onto itself and a descriptor whose wrap bits belong to another lap.
 */
#include "vq_harness.h"

#define GPA      0x100000000ULL
#define DESC_OFF 0x0000u
#define DRV_OFF  0x1000u /* driver event suppression */
#define DEV_OFF  0x1010u /* device event suppression */
#define IND_OFF  0x2000u
#define DATA_OFF 0x4000u

#define AV VBLK_DESC_F_AVAIL
#define US VBLK_DESC_F_USED

struct seg {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
};

struct h {
    struct vq_harness v;
    uint16_t size;
    uint16_t dpos; /* driver: next slot to fill */
    uint8_t dwrap;
    uint16_t upos; /* driver: next slot to read a used entry from */
    uint8_t uwrap;
    struct vblk_packed_desc *desc;
    struct vblk_packed_event *drv_ev;
    struct vblk_packed_event *dev_ev;
};
_Static_assert(offsetof(struct h, v) == 0, "vq_harness_teardown() frees struct h through h->v");

static int setup(void **state)
{
    struct h *h = vq_harness_new(sizeof(*h), GPA);
    if (!h)
        return -1;
    h->desc = (struct vblk_packed_desc *)(h->v.buf + DESC_OFF);
    h->drv_ev = (struct vblk_packed_event *)(h->v.buf + DRV_OFF);
    h->dev_ev = (struct vblk_packed_event *)(h->v.buf + DEV_OFF);
    *state = h;
    return 0;
}

static struct vblk_vq_config cfg(uint16_t size)
{
    struct vblk_vq_config c = {
        .size = size,
        .packed = true,
        .indirect = true,
        .addrs = {G(DESC_OFF), G(DRV_OFF), G(DEV_OFF)},
    };
    return c;
}

/* Starts the queue at position @pos of the lap with wrap counter @wrap. */
static void start_at(struct h *h, uint16_t size, bool event_idx, bool indirect, uint16_t pos,
                     uint8_t wrap)
{
    struct vblk_vq_state st = {pos, pos, wrap, wrap};
    h->size = size;
    h->dpos = h->upos = pos;
    h->dwrap = h->uwrap = wrap;
    vq_harness_start(&h->v, cfg(size), event_idx, indirect, &st);
}

static void start(struct h *h, uint16_t size, bool event_idx, bool indirect)
{
    start_at(h, size, event_idx, indirect, 0, 1);
}

/* Driver: makes @n buffers available as one list with buffer ID @id
 * (written in the last descriptor only; the others get a decoy). Written
 * here rather than with the shared ring writer, which puts the ID in every
 * descriptor: the decoys check that the device takes the last one's. */
static void add(struct h *h, const struct seg *s, unsigned n, uint16_t id)
{
    uint16_t head = h->dpos, head_flags = 0;
    for (unsigned i = 0; i < n; i++) {
        struct vblk_packed_desc *d = &h->desc[h->dpos];
        uint16_t f =
            (uint16_t)(s[i].flags | (i + 1 < n ? N : 0) | vblk_packed_avail_bits(h->dwrap));
        d->addr = s[i].addr;
        d->len = s[i].len;
        d->id = i + 1 < n ? 0xdead : id;
        if (i == 0)
            head_flags = f;
        else
            d->flags = f;
        vblk_ring_next(h->size, &h->dpos, &h->dwrap);
    }
    h->desc[head].flags = head_flags; /* the head goes last (2.8.6) */
}

/* Driver: one readable 16-byte buffer. */
static void add1(struct h *h, uint16_t id)
{
    struct seg s = {G(DATA_OFF + 16u * (id % 64)), 16, R};
    add(h, &s, 1, id);
}

/* Driver: reads the used entry at its position and skips @ndescs slots. */
static void expect_used(struct h *h, uint16_t id, uint32_t len, uint16_t ndescs)
{
    const struct vblk_packed_desc *d = &h->desc[h->upos];
    assert_int_equal(d->flags & (AV | US), vblk_packed_used_bits(h->uwrap));
    assert_int_equal(!!(d->flags & W), len > 0);
    assert_int_equal(d->id, id);
    assert_int_equal(d->len, len);
    vblk_ring_advance(h->size, &h->upos, &h->uwrap, ndescs);
}

static void direct_chain_gives_iovecs_and_id_of_last_descriptor(void **state)
{
    struct h *h = *state;
    struct seg s[] = {
        {G(DATA_OFF), 16, R}, {G(DATA_OFF + 0x100), 512, W}, {G(DATA_OFF + 0x400), 1, W}};
    start(h, 8, false, true);
    add(h, s, 3, 0x4242);
    assert_int_equal(pop(&h->v), 1);
    assert_int_equal(h->v.c.id, 0x4242);
    assert_int_equal(h->v.c.ndescs, 3);
    assert_int_equal(h->v.c.ndata, 3);
    assert_int_equal(h->v.c.nout, 1);
    assert_int_equal(h->v.c.nin, 2);
    assert_int_equal(h->v.c.out_len, 16);
    assert_int_equal(h->v.c.in_len, 513);
    assert_int_equal(h->v.c.max_desc_len, 512);
    assert_int_equal(h->v.c.fault, 0);
    assert_int_equal(h->v.c.last_mapped, 1);
    assert_ptr_equal(h->v.iov[0].base, h->v.buf + DATA_OFF);
    assert_ptr_equal(h->v.iov[1].base, h->v.buf + DATA_OFF + 0x100);
    assert_ptr_equal(h->v.iov[2].base, h->v.buf + DATA_OFF + 0x400);
    assert_int_equal(pop(&h->v), 0);
}

static void zero_length_descriptor_adds_no_iovec(void **state)
{
    struct h *h = *state;
    struct seg s[] = {{G(DATA_OFF), 16, R}, {0xdead0000, 0, R}, {G(DATA_OFF + 16), 1, W}};
    start(h, 8, false, true);
    add(h, s, 3, 1);
    assert_int_equal(pop(&h->v), 1);
    assert_int_equal(h->v.c.fault, 0);
    assert_int_equal(h->v.c.ndata, 3);
    assert_int_equal(h->v.c.ndescs, 3);
    assert_int_equal(h->v.c.nout, 1);
    assert_int_equal(h->v.c.nin, 1);
}

static void indirect_table_takes_one_slot(void **state)
{
    struct h *h = *state;
    struct vblk_packed_desc *t = (struct vblk_packed_desc *)(h->v.buf + IND_OFF);
    t[0] = (struct vblk_packed_desc){G(DATA_OFF), 16, 0, R};
    t[1] = (struct vblk_packed_desc){G(DATA_OFF + 0x200), 4096, 0, W};
    t[2] = (struct vblk_packed_desc){G(DATA_OFF + 0x2000), 1, 0, W};
    struct seg s = {G(IND_OFF), 48, I};
    start(h, 4, false, true);
    add(h, &s, 1, 42);
    assert_int_equal(pop(&h->v), 1);
    assert_int_equal(h->v.c.id, 42);
    assert_int_equal(h->v.c.ndescs, 1);
    assert_int_equal(h->v.c.ndata, 3);
    assert_int_equal(h->v.c.nout, 1);
    assert_int_equal(h->v.c.nin, 2);
    assert_int_equal(h->v.c.in_len, 4097);
    assert_ptr_equal(h->v.iov[2].base, h->v.buf + DATA_OFF + 0x2000);
    vblk_vq_push(&h->v.vq, 42, h->v.c.ndescs, 4097);
    expect_used(h, 42, 4097, 1);
}

static void indirect_entry_flags_other_than_write_are_ignored(void **state)
{
    struct h *h = *state;
    struct vblk_packed_desc *t = (struct vblk_packed_desc *)(h->v.buf + IND_OFF);
    /* virtio 1.2 2.8.7: only WRITE counts inside a packed indirect table.
     * NEXT, INDIRECT and the wrap bits there are reserved; an entry that
     * sets them is still one plain buffer, and the table is read to its
     * end. */
    t[0] = (struct vblk_packed_desc){G(DATA_OFF), 16, 7, R | I | N | AV};
    t[1] = (struct vblk_packed_desc){G(DATA_OFF + 0x100), 1, 9, W | I | US};
    struct seg s = {G(IND_OFF), 32, I};
    start(h, 4, false, true);
    add(h, &s, 1, 3);
    assert_int_equal(pop(&h->v), 1);
    assert_int_equal(h->v.c.id, 3);
    assert_int_equal(h->v.c.ndata, 2);
    assert_int_equal(h->v.c.nout, 1);
    assert_int_equal(h->v.c.nin, 1);
    assert_ptr_equal(h->v.iov[0].base, h->v.buf + DATA_OFF);
    assert_ptr_equal(h->v.iov[1].base, h->v.buf + DATA_OFF + 0x100);
    assert_false(vblk_vq_broken(&h->v.vq));
}

static void direct_then_indirect_breaks_queue(void **state)
{
    struct h *h = *state;
    struct vblk_packed_desc *t = (struct vblk_packed_desc *)(h->v.buf + IND_OFF);
    t[0] = (struct vblk_packed_desc){G(DATA_OFF), 1, 0, W};
    /* Unlike split rings, an indirect descriptor stands alone in a packed
     * list: the device rejects a list that reaches one via NEXT. */
    struct seg s[] = {{G(DATA_OFF), 16, R}, {G(IND_OFF), 16, I}};
    start(h, 4, false, true);
    add(h, s, 2, 1);
    expect_broken(&h->v);
}

static void chain_crossing_ring_end_flips_wrap(void **state)
{
    struct h *h = *state;
    struct vblk_vq_state st;
    struct seg s[] = {{G(DATA_OFF), 16, R}, {G(DATA_OFF + 16), 32, W}, {G(DATA_OFF + 48), 1, W}};
    start_at(h, 5, false, true, 3, 1);
    add(h, s, 3, 77);
    /* Slots 3 and 4 carry the lap-1 bits, slot 0 the lap-0 bits. */
    assert_int_equal(h->desc[4].flags & (AV | US), AV);
    assert_int_equal(h->desc[0].flags & (AV | US), US);
    assert_int_equal(pop(&h->v), 1);
    assert_int_equal(h->v.c.id, 77);
    assert_int_equal(h->v.c.ndescs, 3);
    assert_int_equal(h->v.c.in_len, 33);
    vblk_vq_get_state(&h->v.vq, &st);
    assert_int_equal(st.last_avail_idx, 1);
    assert_int_equal(st.avail_wrap, 0);
    vblk_vq_push(&h->v.vq, 77, 3, 33);
    expect_used(h, 77, 33, 3);
    vblk_vq_get_state(&h->v.vq, &st);
    assert_int_equal(st.used_idx, 1);
    assert_int_equal(st.used_wrap, 0);
    assert_int_equal(h->upos, 1);
    assert_int_equal(h->uwrap, 0);
}

static void wrap_counters_survive_many_laps_with_odd_size(void **state)
{
    struct h *h = *state;
    struct vblk_vq_state st;
    struct seg s[3] = {{G(DATA_OFF), 16, R}, {G(DATA_OFF + 64), 64, W}, {G(DATA_OFF + 256), 1, W}};
    start(h, 5, false, true);
    for (uint16_t i = 0; i < 200; i++) {
        unsigned n1 = 1 + i % 3, n2 = 1 + (i / 3) % 2; /* n1 + n2 <= 5 */
        add(h, s, n1, i);
        add(h, s + 3 - n2, n2, (uint16_t)(1000 + i));
        assert_int_equal(pop(&h->v), 1);
        assert_int_equal(h->v.c.id, i);
        assert_int_equal(h->v.c.ndescs, n1);
        assert_int_equal(pop(&h->v), 1);
        assert_int_equal(h->v.c.id, 1000 + i);
        assert_int_equal(h->v.c.ndescs, n2);
        assert_int_equal(pop(&h->v), 0);
        /* Out of order: the second list completes first. */
        uint32_t len2 = i % 2 ? 0 : 1;
        vblk_vq_push(&h->v.vq, (uint16_t)(1000 + i), (uint16_t)n2, len2);
        vblk_vq_push(&h->v.vq, i, (uint16_t)n1, 65);
        expect_used(h, (uint16_t)(1000 + i), len2, (uint16_t)n2);
        expect_used(h, i, 65, (uint16_t)n1);
        vblk_vq_get_state(&h->v.vq, &st);
        assert_int_equal(st.last_avail_idx, h->dpos);
        assert_int_equal(st.avail_wrap, h->dwrap);
        assert_int_equal(st.used_idx, h->upos);
        assert_int_equal(st.used_wrap, h->uwrap);
    }
    assert_false(vblk_vq_broken(&h->v.vq));
    assert_int_equal(vblk_vq_stats(&h->v.vq)->chains, 400);
}

static void used_entries_are_visible_at_push_and_notified_once(void **state)
{
    struct h *h = *state;
    struct seg two[] = {{G(DATA_OFF), 16, R}, {G(DATA_OFF + 16), 1, W}};
    start(h, 8, false, true);
    add(h, two, 2, 10);
    add1(h, 11);
    add1(h, 12);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pop(&h->v), 1);
    vblk_vq_push(&h->v.vq, 12, 1, 0);
    expect_used(h, 12, 0, 1);
    vblk_vq_push(&h->v.vq, 10, 2, 1);
    vblk_vq_push(&h->v.vq, 11, 1, 0);
    expect_used(h, 10, 1, 2);
    expect_used(h, 11, 0, 1);
    /* Used entries went to slots 0, 1 and 3; slot 2 is skipped (its list
     * of two took slots 1 and 2) and still holds the driver's bits. */
    assert_int_equal(h->desc[2].flags & (AV | US), AV);
    assert_true(vblk_vq_publish(&h->v.vq));
    assert_false(vblk_vq_publish(&h->v.vq));
    assert_int_equal(vblk_vq_stats(&h->v.vq)->notifies, 1);
}

/* Pushes @n one-slot lists starting at @pos/@wrap, sets the driver event
 * structure, and returns what publish decides. */
static bool publish_with(struct h *h, uint16_t size, bool event_idx, uint16_t pos, uint8_t wrap,
                         uint16_t n, uint16_t flags, uint16_t off_wrap)
{
    /* The first publish after a start always notifies (unless disabled),
     * so start one slot earlier and publish that slot first. */
    start_at(h, size, event_idx, false, pos ? (uint16_t)(pos - 1) : (uint16_t)(size - 1),
             pos ? wrap : (uint8_t)!wrap);
    add1(h, n);
    assert_int_equal(pop(&h->v), 1);
    vblk_vq_push(&h->v.vq, n, 1, 0);
    h->drv_ev->flags = VBLK_EVENT_F_ENABLE;
    assert_true(vblk_vq_publish(&h->v.vq));
    for (uint16_t i = 0; i < n; i++) {
        add1(h, i);
        assert_int_equal(pop(&h->v), 1);
        vblk_vq_push(&h->v.vq, i, 1, 0);
    }
    h->drv_ev->flags = flags;
    h->drv_ev->off_wrap = off_wrap;
    return vblk_vq_publish(&h->v.vq);
}

#define WRAP(off, w) ((uint16_t)((off) | ((w) << 15)))

static void event_enable_and_disable(void **state)
{
    struct h *h = *state;
    assert_true(publish_with(h, 8, false, 0, 1, 2, VBLK_EVENT_F_ENABLE, 0));
    assert_false(publish_with(h, 8, false, 0, 1, 2, VBLK_EVENT_F_DISABLE, 0));
    assert_true(publish_with(h, 8, true, 0, 1, 2, VBLK_EVENT_F_ENABLE, WRAP(7, 0)));
    assert_false(publish_with(h, 8, true, 0, 1, 2, VBLK_EVENT_F_DISABLE, WRAP(0, 1)));
    /* DESC needs EVENT_IDX; without it the device treats it as ENABLE. */
    assert_true(publish_with(h, 8, false, 0, 1, 2, VBLK_EVENT_F_DESC, WRAP(6, 1)));
}

static void event_desc_in_current_lap(void **state)
{
    struct h *h = *state;
    /* Slots 3 and 4 of the wrap-1 lap are written in this batch. */
    assert_true(publish_with(h, 8, true, 3, 1, 2, VBLK_EVENT_F_DESC, WRAP(3, 1)));
    assert_true(publish_with(h, 8, true, 3, 1, 2, VBLK_EVENT_F_DESC, WRAP(4, 1)));
    assert_false(publish_with(h, 8, true, 3, 1, 2, VBLK_EVENT_F_DESC, WRAP(5, 1)));
    assert_false(publish_with(h, 8, true, 3, 1, 2, VBLK_EVENT_F_DESC, WRAP(2, 1)));
    /* Same slots of the other lap: an earlier pass, long done. */
    assert_false(publish_with(h, 8, true, 3, 1, 2, VBLK_EVENT_F_DESC, WRAP(3, 0)));
}

static void event_desc_in_previous_lap(void **state)
{
    struct h *h = *state;
    /* Size 4: the batch writes slot 3 of the wrap-1 lap and slot 0 of the
     * wrap-0 lap, so the device ends in the wrap-0 lap. */
    assert_true(publish_with(h, 4, true, 3, 1, 2, VBLK_EVENT_F_DESC, WRAP(3, 1)));
    assert_false(publish_with(h, 4, true, 3, 1, 2, VBLK_EVENT_F_DESC, WRAP(2, 1)));
    assert_true(publish_with(h, 4, true, 3, 1, 2, VBLK_EVENT_F_DESC, WRAP(0, 0)));
    assert_false(publish_with(h, 4, true, 3, 1, 2, VBLK_EVENT_F_DESC, WRAP(1, 0)));
    /* Odd size, wrap 0 -> 1 direction. */
    assert_true(publish_with(h, 5, true, 4, 0, 3, VBLK_EVENT_F_DESC, WRAP(4, 0)));
    assert_true(publish_with(h, 5, true, 4, 0, 3, VBLK_EVENT_F_DESC, WRAP(1, 1)));
    assert_false(publish_with(h, 5, true, 4, 0, 3, VBLK_EVENT_F_DESC, WRAP(2, 1)));
    assert_false(publish_with(h, 5, true, 4, 0, 3, VBLK_EVENT_F_DESC, WRAP(3, 0)));
}

static void event_desc_counts_from_last_publish(void **state)
{
    struct h *h = *state;
    assert_true(publish_with(h, 8, true, 0, 1, 1, VBLK_EVENT_F_DESC, WRAP(0, 1)));
    /* The driver leaves the event at slot 0: the next batch is quiet. */
    add1(h, 5);
    assert_int_equal(pop(&h->v), 1);
    vblk_vq_push(&h->v.vq, 5, 1, 0);
    assert_false(vblk_vq_publish(&h->v.vq));
    h->drv_ev->off_wrap = WRAP(2, 1);
    add1(h, 6);
    assert_int_equal(pop(&h->v), 1);
    vblk_vq_push(&h->v.vq, 6, 1, 0);
    assert_true(vblk_vq_publish(&h->v.vq));
}

/* A device restarted at slot 3 while the driver waits for the event it set
 * at slot 2: the previous device instance wrote that entry but may have died
 * before notifying. The first publish notifies anyway; later ones follow
 * the event again. DISABLE is still honoured. */
static void first_publish_after_restart_notifies(void **state)
{
    struct h *h = *state;
    start_at(h, 8, true, false, 3, 1);
    h->drv_ev->flags = VBLK_EVENT_F_DESC;
    h->drv_ev->off_wrap = WRAP(2, 1);
    add1(h, 0);
    assert_int_equal(pop(&h->v), 1);
    vblk_vq_push(&h->v.vq, 0, 1, 0);
    assert_true(vblk_vq_publish(&h->v.vq));
    add1(h, 1);
    assert_int_equal(pop(&h->v), 1);
    vblk_vq_push(&h->v.vq, 1, 1, 0);
    assert_false(vblk_vq_publish(&h->v.vq));
    assert_int_equal(vblk_vq_stats(&h->v.vq)->notifies, 1);

    start_at(h, 8, true, false, 3, 1);
    h->drv_ev->flags = VBLK_EVENT_F_DISABLE;
    add1(h, 0);
    assert_int_equal(pop(&h->v), 1);
    vblk_vq_push(&h->v.vq, 0, 1, 0);
    assert_false(vblk_vq_publish(&h->v.vq));
}

static void enable_notify_writes_device_event(void **state)
{
    struct h *h = *state;
    start(h, 4, false, true);
    vblk_vq_disable_notify(&h->v.vq);
    assert_int_equal(h->dev_ev->flags, VBLK_EVENT_F_DISABLE);
    assert_false(vblk_vq_enable_notify(&h->v.vq));
    assert_int_equal(h->dev_ev->flags, VBLK_EVENT_F_ENABLE);
    vblk_vq_disable_notify(&h->v.vq);
    add1(h, 1);
    assert_true(vblk_vq_enable_notify(&h->v.vq));
    assert_true(vblk_vq_has_avail(&h->v.vq));

    /* With EVENT_IDX: DESC at the next slot to read, with its lap. */
    start_at(h, 4, true, true, 2, 1);
    assert_false(vblk_vq_enable_notify(&h->v.vq));
    assert_int_equal(h->dev_ev->flags, VBLK_EVENT_F_DESC);
    assert_int_equal(h->dev_ev->off_wrap, WRAP(2, 1));
    add1(h, 1);
    add1(h, 2);
    assert_true(vblk_vq_enable_notify(&h->v.vq));
    assert_int_equal(pop(&h->v), 1);
    assert_int_equal(pop(&h->v), 1);
    vblk_vq_disable_notify(&h->v.vq);
    assert_int_equal(h->dev_ev->flags, VBLK_EVENT_F_DISABLE);
    assert_false(vblk_vq_enable_notify(&h->v.vq));
    assert_int_equal(h->dev_ev->flags, VBLK_EVENT_F_DESC);
    assert_int_equal(h->dev_ev->off_wrap, WRAP(0, 0));
}

static void pop_at_rereads_list_without_advancing(void **state)
{
    struct h *h = *state;
    struct vblk_vq_state st;
    struct seg s[] = {{G(DATA_OFF), 16, R}, {G(DATA_OFF + 16), 8, W}};
    start_at(h, 4, false, true, 3, 1);
    add(h, s, 2, 9); /* slots 3 (lap 1) and 0 (lap 0) */
    assert_int_equal(pop(&h->v), 1);
    memset(&h->v.c, 0xa5, offsetof(struct vblk_chain, cap));
    assert_int_equal(vblk_vq_pop_at(&h->v.vq, 3, 1, &h->v.c), 1);
    assert_int_equal(h->v.c.id, 9);
    assert_int_equal(h->v.c.ndescs, 2);
    assert_int_equal(h->v.c.in_len, 8);
    assert_int_equal(h->v.c.fault, 0);
    vblk_vq_get_state(&h->v.vq, &st);
    assert_int_equal(st.last_avail_idx, 1);
    assert_int_equal(st.avail_wrap, 0);
    /* The same position with the other lap's counter is not available. */
    assert_int_equal(vblk_vq_pop_at(&h->v.vq, 3, 0, &h->v.c), -EIO);
    assert_true(vblk_vq_broken(&h->v.vq));
}

static void pop_at_position_out_of_range_breaks_queue(void **state)
{
    struct h *h = *state;
    start(h, 5, false, true);
    add1(h, 1);
    assert_int_equal(vblk_vq_pop_at(&h->v.vq, 5, 1, &h->v.c), -EIO);
    assert_true(vblk_vq_broken(&h->v.vq));
    assert_int_equal(vblk_vq_stats(&h->v.vq)->broken, 1);
}

static void saved_list_is_resubmitted_after_ring_reuse(void **state)
{
    struct h *h = *state;
    struct vblk_packed_desc saved[2];
    struct seg s[] = {{G(DATA_OFF), 16, R}, {G(DATA_OFF + 16), 8, W}};
    start_at(h, 4, false, true, 3, 1);
    add(h, s, 2, 9); /* slots 3 (lap 1) and 0 (lap 0) */
    assert_int_equal(vblk_vq_copy_descs(&h->v.vq, 3, 2, saved), 0);
    assert_int_equal(pop(&h->v), 1);
    /* A used entry overwrites the head slot: the ring no longer holds the
     * list, but the saved copy does. */
    vblk_vq_push(&h->v.vq, 9, 2, 8);
    memset(&h->v.c, 0xa5, offsetof(struct vblk_chain, cap));
    assert_int_equal(vblk_vq_pop_saved(&h->v.vq, saved, 2, &h->v.c), 1);
    assert_int_equal(h->v.c.id, 9);
    assert_int_equal(h->v.c.ndescs, 2);
    assert_int_equal(h->v.c.nout, 1);
    assert_int_equal(h->v.c.nin, 1);
    assert_int_equal(h->v.c.in_len, 8);
    assert_int_equal(h->v.c.fault, 0);
    assert_false(vblk_vq_broken(&h->v.vq));
}

static void saved_list_is_validated_like_the_ring(void **state)
{
    struct h *h = *state;
    struct vblk_packed_desc saved[2];
    struct seg s[] = {{G(DATA_OFF), 16, R}, {G(DATA_OFF + 16), 8, W}};
    start(h, 8, false, true);
    add(h, s, 2, 3);
    assert_int_equal(vblk_vq_copy_descs(&h->v.vq, 0, 2, saved), 0);
    assert_int_equal(vblk_vq_copy_descs(&h->v.vq, 8, 1, saved), -EINVAL);
    /* The list claims one descriptor more than the copy holds. */
    saved[1].flags |= N;
    assert_int_equal(vblk_vq_pop_saved(&h->v.vq, saved, 2, &h->v.c), -EIO);
    assert_true(vblk_vq_broken(&h->v.vq));
}

static void descriptor_with_wrong_wrap_is_not_available(void **state)
{
    struct h *h = *state;
    start(h, 4, false, true);
    h->desc[0] = (struct vblk_packed_desc){G(DATA_OFF), 16, 1, 0};
    assert_int_equal(pop(&h->v), 0); /* never written */
    h->desc[0].flags = US;
    assert_int_equal(pop(&h->v), 0); /* available in the wrap-0 lap */
    h->desc[0].flags = AV | US;
    assert_int_equal(pop(&h->v), 0); /* used */
    assert_false(vblk_vq_has_avail(&h->v.vq));
    /* After a full lap the old lap-1 entries are not available again. */
    for (uint16_t i = 0; i < 4; i++) {
        add1(h, i);
        assert_int_equal(pop(&h->v), 1);
    }
    h->desc[0].flags = AV;
    assert_int_equal(pop(&h->v), 0);
    assert_false(vblk_vq_broken(&h->v.vq));
}

static void later_descriptor_with_stale_wrap_breaks_queue(void **state)
{
    struct h *h = *state;
    start(h, 4, false, true);
    h->desc[1] = (struct vblk_packed_desc){G(DATA_OFF), 1, 1, W | US};
    h->desc[0] = (struct vblk_packed_desc){G(DATA_OFF), 16, 1, R | N | AV};
    expect_broken(&h->v);
}

static void list_running_round_the_ring_breaks_queue(void **state)
{
    struct h *h = *state;
    start(h, 4, false, true);
    for (int i = 3; i >= 0; i--)
        h->desc[i] = (struct vblk_packed_desc){G(DATA_OFF), 16, 1, R | N | AV};
    expect_broken(&h->v);
}

static void indirect_with_bad_descriptor(struct h *h, uint64_t addr, uint32_t len, uint16_t flags,
                                         bool feature)
{
    struct vblk_packed_desc *t = (struct vblk_packed_desc *)(h->v.buf + IND_OFF);
    t[0] = (struct vblk_packed_desc){G(DATA_OFF), 16, 0, R};
    t[1] = (struct vblk_packed_desc){G(DATA_OFF + 16), 1, 0, W};
    start(h, 4, false, feature);
    h->desc[1] = (struct vblk_packed_desc){G(DATA_OFF + 32), 1, 1, W | AV};
    h->desc[0] = (struct vblk_packed_desc){addr, len, 1, (uint16_t)(flags | AV)};
    expect_broken(&h->v);
}

static void indirect_with_next_breaks_queue(void **state)
{
    indirect_with_bad_descriptor(*state, G(IND_OFF), 32, I | N, true);
}

static void indirect_empty_table_breaks_queue(void **state)
{
    indirect_with_bad_descriptor(*state, G(IND_OFF), 0, I, true);
}

static void indirect_partial_descriptor_breaks_queue(void **state)
{
    indirect_with_bad_descriptor(*state, G(IND_OFF), 24, I, true);
}

static void indirect_without_feature_breaks_queue(void **state)
{
    indirect_with_bad_descriptor(*state, G(IND_OFF), 32, I, false);
}

static void indirect_table_outside_map_breaks_queue(void **state)
{
    indirect_with_bad_descriptor(*state, G(MEM_LEN - 16), 32, I, true);
}

static void readable_after_writable_breaks_queue(void **state)
{
    struct h *h = *state;
    struct seg s[] = {{G(DATA_OFF), 16, W}, {G(DATA_OFF), 16, R}};
    start(h, 4, false, true);
    add(h, s, 2, 1);
    expect_broken(&h->v);
}

static void readable_after_writable_in_indirect_breaks_queue(void **state)
{
    struct h *h = *state;
    struct vblk_packed_desc *t = (struct vblk_packed_desc *)(h->v.buf + IND_OFF);
    t[0] = (struct vblk_packed_desc){G(DATA_OFF), 16, 0, W};
    t[1] = (struct vblk_packed_desc){G(DATA_OFF + 16), 16, 0, R};
    struct seg s = {G(IND_OFF), 32, I};
    start(h, 4, false, true);
    add(h, &s, 1, 1);
    expect_broken(&h->v);
}

static void buffer_wrapping_2_64_faults_chain(void **state)
{
    struct h *h = *state;
    struct seg s[] = {{UINT64_MAX - 7, 16, R}, {G(DATA_OFF), 1, W}};
    start(h, 4, false, true);
    add(h, s, 2, 3);
    assert_int_equal(pop(&h->v), 1);
    assert_int_equal(h->v.c.fault, 1);
    assert_int_equal(h->v.c.id, 3);
    assert_int_equal(h->v.c.ndescs, 2);
    assert_int_equal(h->v.c.nout, 0);
    assert_int_equal(h->v.c.nin, 1);
    assert_false(vblk_vq_broken(&h->v.vq));
    assert_int_equal(vblk_vq_stats(&h->v.vq)->bad_chains, 1);
}

static void buffer_straddling_region_into_hole_faults_chain(void **state)
{
    struct h *h = *state;
    struct seg s[] = {{G(DATA_OFF), 16, R}, {G(MEM_LEN - 8), 16, W}, {G(DATA_OFF + 16), 1, W}};
    start(h, 4, false, true);
    add(h, s, 3, 3);
    assert_int_equal(pop(&h->v), 1);
    assert_int_equal(h->v.c.fault, 1);
    assert_int_equal(h->v.c.nout, 1);
    assert_int_equal(h->v.c.nin, 1);
    assert_false(vblk_vq_broken(&h->v.vq));
}

static void rings_outside_memory_fail_init(void **state)
{
    struct h *h = *state;
    struct vblk_vq_config c = cfg(8);
    c.addrs.desc = G(MEM_LEN - 64); /* needs 128 bytes */
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EFAULT);
    assert_true(vblk_vq_broken(&h->v.vq));
    c = cfg(8);
    c.addrs.driver = G(MEM_LEN);
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EFAULT);
    c = cfg(8);
    c.addrs.device = 0x1000;
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EFAULT);
    c.addrs.device = G(MEM_LEN - 4);
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), 0);
}

static void misaligned_rings_fail_init(void **state)
{
    struct h *h = *state;
    struct vblk_vq_config c = cfg(8);
    c.addrs.desc += 8;
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EINVAL);
    c = cfg(8);
    c.addrs.driver += 2;
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EINVAL);
    c = cfg(8);
    c.addrs.device += 1;
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EINVAL);
}

static void queue_sizes_and_start_positions(void **state)
{
    struct h *h = *state;
    struct vblk_vq_config c = cfg(0);
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EINVAL);
    c.size = 32769;
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EINVAL);
    /* Packed rings need not be a power of two (virtio 1.2 2.8). */
    c.size = 5;
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), 0);
    c.size = 1;
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), 0);
    c.size = 1000;
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), 0);
    c.size = 4097; /* one descriptor more than the 64 KiB map holds */
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EFAULT);
    struct vblk_vq_state st = {5, 0, 1, 1};
    c.size = 5;
    c.state = &st;
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EINVAL);
    st = (struct vblk_vq_state){0, 5, 1, 1};
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EINVAL);
    st = (struct vblk_vq_state){4, 4, 0, 0};
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), 0);
}

/* vblk_vq_packed_scan_used(): the used entries a previous device wrote,
 * read before a queue starts (vhost-user in-flight recovery). */
struct scan_seen {
    uint16_t ids[8];
    unsigned n;
    uint16_t stop_at; /* claim returns 0 for this ID */
    uint16_t span;    /* descriptors each list took */
};

static uint16_t scan_claim(void *opaque, uint16_t id)
{
    struct scan_seen *s = opaque;
    if (id == s->stop_at || s->n == 8)
        return 0;
    s->ids[s->n++] = id;
    return s->span;
}

static void scan_used_follows_lists_across_the_wrap(void **state)
{
    struct h *h = *state;
    const uint16_t size = 5;
    /* Lists of 2 descriptors used at 3-4 (lap 1), then 0-1 and 2-3 in
     * lap 0 after the wrap; entry 4 is still available (not used). */
    h->desc[3] = (struct vblk_packed_desc){0, 0, 7, AV | US};
    h->desc[0] = (struct vblk_packed_desc){0, 0, 8, 0};
    h->desc[2] = (struct vblk_packed_desc){0, 0, 9, 0};
    h->desc[4] = (struct vblk_packed_desc){0, 0, 3, US};
    struct scan_seen s = {.stop_at = 0xffff, .span = 2};
    uint16_t pos = 3;
    uint8_t wrap = 1;
    assert_int_equal(
        vblk_vq_packed_scan_used(&h->v.mem, GPA + DESC_OFF, size, &pos, &wrap, scan_claim, &s), 3);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.ids[0], 7);
    assert_int_equal(s.ids[1], 8);
    assert_int_equal(s.ids[2], 9);
    assert_int_equal(pos, 4);
    assert_int_equal(wrap, 0);

    /* An ID the caller does not know stops the scan on its entry. */
    s = (struct scan_seen){.stop_at = 8, .span = 2};
    pos = 3;
    wrap = 1;
    assert_int_equal(
        vblk_vq_packed_scan_used(&h->v.mem, GPA + DESC_OFF, size, &pos, &wrap, scan_claim, &s), 1);
    assert_int_equal(pos, 0);
    assert_int_equal(wrap, 0);

    /* Lap unknown (2): the first entry's USED flag tells it. */
    s = (struct scan_seen){.stop_at = 0xffff, .span = 2};
    pos = 0;
    wrap = 2;
    assert_int_equal(
        vblk_vq_packed_scan_used(&h->v.mem, GPA + DESC_OFF, size, &pos, &wrap, scan_claim, &s), 2);
    assert_int_equal(pos, 4);
    assert_int_equal(wrap, 0);
    pos = 4;
    wrap = 2;
    assert_int_equal(
        vblk_vq_packed_scan_used(&h->v.mem, GPA + DESC_OFF, size, &pos, &wrap, scan_claim, &s), 0);
    assert_int_equal(wrap, 1);
}

static void scan_used_bounded_and_checked(void **state)
{
    struct h *h = *state;
    /* Every entry used with a list of one: the scan stops after one lap. */
    for (uint16_t i = 0; i < 4; i++)
        h->desc[i] = (struct vblk_packed_desc){0, 0, i, AV | US};
    struct scan_seen s = {.stop_at = 0xffff, .span = 1};
    uint16_t pos = 0;
    uint8_t wrap = 1;
    assert_int_equal(
        vblk_vq_packed_scan_used(&h->v.mem, GPA + DESC_OFF, 4, &pos, &wrap, scan_claim, &s), 4);
    /* A span beyond the ring stops the scan without moving. */
    s = (struct scan_seen){.stop_at = 0xffff, .span = 5};
    pos = 0;
    wrap = 1;
    assert_int_equal(
        vblk_vq_packed_scan_used(&h->v.mem, GPA + DESC_OFF, 4, &pos, &wrap, scan_claim, &s), 0);
    assert_int_equal(pos, 0);
    /* Bad positions, sizes, unmapped or misaligned rings. */
    pos = 4;
    assert_int_equal(
        vblk_vq_packed_scan_used(&h->v.mem, GPA + DESC_OFF, 4, &pos, &wrap, scan_claim, &s),
        -EINVAL);
    pos = 0;
    assert_int_equal(
        vblk_vq_packed_scan_used(&h->v.mem, GPA + DESC_OFF, 0, &pos, &wrap, scan_claim, &s),
        -EINVAL);
    assert_int_equal(
        vblk_vq_packed_scan_used(&h->v.mem, GPA + MEM_LEN - 16, 4, &pos, &wrap, scan_claim, &s),
        -EFAULT);
    assert_int_equal(
        vblk_vq_packed_scan_used(&h->v.mem, GPA + DESC_OFF + 8, 4, &pos, &wrap, scan_claim, &s),
        -EFAULT);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, vq_harness_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(scan_used_follows_lists_across_the_wrap),
        T(scan_used_bounded_and_checked),
        T(direct_chain_gives_iovecs_and_id_of_last_descriptor),
        T(zero_length_descriptor_adds_no_iovec),
        T(indirect_table_takes_one_slot),
        T(indirect_entry_flags_other_than_write_are_ignored),
        T(direct_then_indirect_breaks_queue),
        T(chain_crossing_ring_end_flips_wrap),
        T(wrap_counters_survive_many_laps_with_odd_size),
        T(used_entries_are_visible_at_push_and_notified_once),
        T(event_enable_and_disable),
        T(event_desc_in_current_lap),
        T(event_desc_in_previous_lap),
        T(event_desc_counts_from_last_publish),
        T(first_publish_after_restart_notifies),
        T(enable_notify_writes_device_event),
        T(pop_at_rereads_list_without_advancing),
        T(pop_at_position_out_of_range_breaks_queue),
        T(saved_list_is_resubmitted_after_ring_reuse),
        T(saved_list_is_validated_like_the_ring),
        T(descriptor_with_wrong_wrap_is_not_available),
        T(later_descriptor_with_stale_wrap_breaks_queue),
        T(list_running_round_the_ring_breaks_queue),
        T(indirect_with_next_breaks_queue),
        T(indirect_empty_table_breaks_queue),
        T(indirect_partial_descriptor_breaks_queue),
        T(indirect_without_feature_breaks_queue),
        T(indirect_table_outside_map_breaks_queue),
        T(readable_after_writable_breaks_queue),
        T(readable_after_writable_in_indirect_breaks_queue),
        T(buffer_wrapping_2_64_faults_chain),
        T(buffer_straddling_region_into_hole_faults_chain),
        T(rings_outside_memory_fail_init),
        T(misaligned_rings_fail_init),
        T(queue_sizes_and_start_positions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
