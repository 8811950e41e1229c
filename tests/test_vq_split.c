/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the device side of the split virtqueue (lib/core/vq_split.c).
 * The tests play the driver by writing descriptors, the available ring
 * (through the shared ring writer, ring_writer.h) and the used ring's
 * suppression fields straight into a buffer that the
 * memory map exposes at a non-identity driver address, following the
 * layout of virtio 1.2 section 2.7. The buffer is heap memory of exactly
 * the mapped size so that AddressSanitizer reports any read past the map.
 */
#include "ring_writer.h"
#include "vq_harness.h"

#define GPA       0x7f0000000ULL /* driver address of the buffer */
#define DESC_OFF  0x0000u
#define AVAIL_OFF 0x1000u
#define USED_OFF  0x2000u
#define IND_OFF   0x3000u /* indirect tables */
#define DATA_OFF  0x4000u /* data buffers */

struct h {
    struct vq_harness v;
    uint16_t size;
    struct atk_ring ring; /* the driver: ring.avail is its avail->idx */
    struct vblk_split_desc *desc;
    struct vblk_split_avail *avail;
    struct vblk_split_used *used;
};
_Static_assert(offsetof(struct h, v) == 0, "vq_harness_teardown() frees struct h through h->v");

static int setup(void **state)
{
    struct h *h = vq_harness_new(sizeof(*h), GPA);
    if (!h)
        return -1;
    h->desc = (struct vblk_split_desc *)(h->v.buf + DESC_OFF);
    h->avail = (struct vblk_split_avail *)(h->v.buf + AVAIL_OFF);
    h->used = (struct vblk_split_used *)(h->v.buf + USED_OFF);
    *state = h;
    return 0;
}

static struct vblk_vq_config cfg(uint16_t size)
{
    struct vblk_vq_config c = {
        .size = size,
        .indirect = true,
        .addrs = {G(DESC_OFF), G(AVAIL_OFF), G(USED_OFF)},
    };
    return c;
}

/* Starts the queue, optionally at a saved position (the rings agree). */
static void start(struct h *h, uint16_t size, bool event_idx, bool indirect,
                  const struct vblk_vq_state *st)
{
    h->size = size;
    atk_ring_init_areas(&h->ring, size, false, h->desc, h->avail, h->used, NULL);
    h->ring.avail = st ? st->last_avail_idx : 0;
    h->avail->idx = h->ring.avail;
    h->used->idx = st ? st->used_idx : 0;
    vq_harness_start(&h->v, cfg(size), event_idx, indirect, st);
}

static void set_desc(struct vblk_split_desc *d, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    d->addr = addr;
    d->len = len;
    d->flags = flags;
    d->next = next;
}

static void make_avail(struct h *h, uint16_t head)
{
    atk_split_publish(&h->ring, head);
}

static uint16_t *used_event(struct h *h)
{
    return &h->avail->ring[h->size];
}

static uint16_t *avail_event(struct h *h)
{
    return (uint16_t *)&h->used->ring[h->size];
}

/* A one-descriptor chain (readable, 16 bytes) at descriptor @i. */
static void simple(struct h *h, uint16_t i)
{
    set_desc(&h->desc[i], G(DATA_OFF + 16u * i), 16, R, 0);
    make_avail(h, i);
}

static void direct_chain_gives_readable_then_writable_iovecs(void **state)
{
    struct h *h = *state;
    start(h, 8, false, true, NULL);
    set_desc(&h->desc[5], G(DATA_OFF), 16, N, 2);
    set_desc(&h->desc[2], G(DATA_OFF + 0x100), 512, W | N, 7);
    set_desc(&h->desc[7], G(DATA_OFF + 0x400), 1, W, 0);
    make_avail(h, 5);
    assert_int_equal(pop(&h->v), 1);
    assert_int_equal(h->v.c.id, 5);
    assert_int_equal(h->v.c.nout, 1);
    assert_int_equal(h->v.c.nin, 2);
    assert_int_equal(h->v.c.out_len, 16);
    assert_int_equal(h->v.c.in_len, 513);
    assert_int_equal(h->v.c.ndata, 3);
    assert_int_equal(h->v.c.fault, 0);
    assert_int_equal(h->v.c.last_mapped, 1);
    assert_int_equal(h->v.c.max_desc_len, 512);
    assert_ptr_equal(h->v.iov[0].base, h->v.buf + DATA_OFF);
    assert_int_equal(h->v.iov[0].len, 16);
    assert_ptr_equal(h->v.iov[1].base, h->v.buf + DATA_OFF + 0x100);
    assert_int_equal(h->v.iov[1].len, 512);
    assert_ptr_equal(h->v.iov[2].base, h->v.buf + DATA_OFF + 0x400);
    assert_int_equal(h->v.iov[2].len, 1);
    assert_int_equal(pop(&h->v), 0);
    assert_int_equal(vblk_vq_stats(&h->v.vq)->chains, 1);
}

static void zero_length_descriptor_adds_no_iovec(void **state)
{
    struct h *h = *state;
    start(h, 4, false, true, NULL);
    set_desc(&h->desc[0], G(DATA_OFF), 16, N, 1);
    set_desc(&h->desc[1], 0xdead0000, 0, N, 2); /* unmapped, but empty */
    set_desc(&h->desc[2], G(DATA_OFF + 16), 1, W, 0);
    make_avail(h, 0);
    assert_int_equal(pop(&h->v), 1);
    assert_int_equal(h->v.c.fault, 0);
    assert_int_equal(h->v.c.nout, 1);
    assert_int_equal(h->v.c.nin, 1);
    assert_int_equal(h->v.c.ndata, 3);
    assert_ptr_equal(h->v.iov[1].base, h->v.buf + DATA_OFF + 16);
}

static void indirect_table_is_walked_through_next(void **state)
{
    struct h *h = *state;
    struct vblk_split_desc *t = (struct vblk_split_desc *)(h->v.buf + IND_OFF);
    start(h, 4, false, true, NULL);
    /* The walk starts at entry 0 and follows next; entry 1 is skipped. */
    set_desc(&t[0], G(DATA_OFF), 16, N, 2);
    set_desc(&t[1], 0, 0, 0xffff, 0xffff);
    set_desc(&t[2], G(DATA_OFF + 0x200), 4096, W | N, 3);
    set_desc(&t[3], G(DATA_OFF + 0x2000), 1, W, 0);
    set_desc(&h->desc[1], G(IND_OFF), 4 * 16, I, 0);
    make_avail(h, 1);
    assert_int_equal(pop(&h->v), 1);
    assert_int_equal(h->v.c.id, 1);
    assert_int_equal(h->v.c.ndata, 3);
    assert_int_equal(h->v.c.nout, 1);
    assert_int_equal(h->v.c.nin, 2);
    assert_int_equal(h->v.c.out_len, 16);
    assert_int_equal(h->v.c.in_len, 4097);
    assert_int_equal(h->v.c.fault, 0);
    assert_ptr_equal(h->v.iov[0].base, h->v.buf + DATA_OFF);
    assert_ptr_equal(h->v.iov[1].base, h->v.buf + DATA_OFF + 0x200);
    assert_ptr_equal(h->v.iov[2].base, h->v.buf + DATA_OFF + 0x2000);
}

static void direct_descriptors_then_indirect_form_one_chain(void **state)
{
    struct h *h = *state;
    struct vblk_split_desc *t = (struct vblk_split_desc *)(h->v.buf + IND_OFF);
    start(h, 4, false, true, NULL);
    set_desc(&h->desc[0], G(DATA_OFF), 16, N, 3);
    set_desc(&h->desc[3], G(IND_OFF), 2 * 16, I, 0);
    set_desc(&t[0], G(DATA_OFF + 0x100), 512, N, 1);
    set_desc(&t[1], G(DATA_OFF + 0x300), 1, W, 0);
    make_avail(h, 0);
    assert_int_equal(pop(&h->v), 1);
    assert_int_equal(h->v.c.id, 0);
    assert_int_equal(h->v.c.ndata, 3);
    assert_int_equal(h->v.c.nout, 2);
    assert_int_equal(h->v.c.nin, 1);
    assert_int_equal(h->v.c.out_len, 528);
    assert_ptr_equal(h->v.iov[1].base, h->v.buf + DATA_OFF + 0x100);
    assert_ptr_equal(h->v.iov[2].base, h->v.buf + DATA_OFF + 0x300);
}

static void avail_and_used_indices_wrap_at_65535(void **state)
{
    struct h *h = *state;
    struct vblk_vq_state st = {.last_avail_idx = 65530, .used_idx = 65530};
    start(h, 8, false, false, &st);
    for (uint16_t n = 0; n < 12; n++) {
        uint16_t d = n % 8;
        simple(h, d);
        assert_int_equal(pop(&h->v), 1);
        assert_int_equal(h->v.c.id, d);
        vblk_vq_push(&h->v.vq, d, 1, 100u + n);
        vblk_vq_publish(&h->v.vq);
        uint16_t slot = (uint16_t)(65530u + n) % 8;
        assert_int_equal(h->used->ring[slot].id, d);
        assert_int_equal(h->used->ring[slot].len, 100u + n);
        assert_int_equal(h->used->idx, (uint16_t)(65531u + n));
    }
    assert_int_equal(h->used->idx, 6);
    assert_int_equal(pop(&h->v), 0);
    vblk_vq_get_state(&h->v.vq, &st);
    assert_int_equal(st.last_avail_idx, 6);
    assert_int_equal(st.used_idx, 6);
    assert_false(vblk_vq_broken(&h->v.vq));
}

static void out_of_order_pushes_appear_at_publish_and_in_state(void **state)
{
    struct h *h = *state;
    start(h, 8, false, false, NULL);
    for (uint16_t d = 0; d < 3; d++) {
        simple(h, d);
        assert_int_equal(pop(&h->v), 1);
    }
    vblk_vq_push(&h->v.vq, 2, 1, 7);
    vblk_vq_push(&h->v.vq, 0, 1, 0);
    struct vblk_vq_state st;
    vblk_vq_get_state(&h->v.vq, &st);
    assert_int_equal(st.last_avail_idx, 3);
    assert_int_equal(st.used_idx, 2);
    assert_int_equal(st.avail_wrap, 0);
    assert_int_equal(st.used_wrap, 0);
    vblk_vq_push(&h->v.vq, 1, 1, 513);
    assert_int_equal(h->used->idx, 0); /* nothing visible yet */
    assert_true(vblk_vq_publish(&h->v.vq));
    assert_int_equal(h->used->idx, 3);
    assert_int_equal(h->used->ring[0].id, 2);
    assert_int_equal(h->used->ring[0].len, 7);
    assert_int_equal(h->used->ring[1].id, 0);
    assert_int_equal(h->used->ring[1].len, 0);
    assert_int_equal(h->used->ring[2].id, 1);
    assert_int_equal(h->used->ring[2].len, 513);
    /* Nothing new: no second notification. */
    assert_false(vblk_vq_publish(&h->v.vq));
    assert_int_equal(vblk_vq_stats(&h->v.vq)->notifies, 1);
}

static void publish_honours_no_interrupt_flag(void **state)
{
    struct h *h = *state;
    start(h, 4, false, false, NULL);
    simple(h, 0);
    simple(h, 1);
    assert_int_equal(pop(&h->v), 1);
    assert_int_equal(pop(&h->v), 1);
    h->avail->flags = VBLK_AVAIL_F_NO_INTERRUPT;
    vblk_vq_push(&h->v.vq, 0, 1, 0);
    assert_false(vblk_vq_publish(&h->v.vq));
    assert_int_equal(h->used->idx, 1);
    h->avail->flags = 0;
    vblk_vq_push(&h->v.vq, 1, 1, 0);
    assert_true(vblk_vq_publish(&h->v.vq));
    assert_int_equal(vblk_vq_stats(&h->v.vq)->notifies, 1);
}

/* Pushes @n chains from used position @from, with used_event @ev. */
static bool publish_with_event(struct h *h, uint16_t from, uint16_t n, uint16_t ev)
{
    /* The first publish after a start always notifies, so start one entry
     * earlier and publish that entry first. */
    uint16_t at = (uint16_t)(from - 1);
    struct vblk_vq_state st = {.last_avail_idx = at, .used_idx = at};
    start(h, 8, true, false, &st);
    for (uint16_t i = 0; i <= n; i++) {
        simple(h, i);
        assert_int_equal(pop(&h->v), 1);
        vblk_vq_push(&h->v.vq, i, 1, 0);
        if (i == 0)
            assert_true(vblk_vq_publish(&h->v.vq));
    }
    *used_event(h) = ev;
    return vblk_vq_publish(&h->v.vq);
}

/* A device restarted at used 10 while the driver still waits for the event
 * it set at 9: the previous device instance wrote entry 9 but may have died
 * before notifying. The first publish notifies anyway; later ones follow
 * used_event again. */
static void first_publish_after_restart_notifies(void **state)
{
    struct h *h = *state;
    struct vblk_vq_state st = {.last_avail_idx = 10, .used_idx = 10};
    start(h, 8, true, false, &st);
    *used_event(h) = 9;
    simple(h, 0);
    assert_int_equal(pop(&h->v), 1);
    vblk_vq_push(&h->v.vq, 0, 1, 0);
    assert_true(vblk_vq_publish(&h->v.vq));
    simple(h, 1);
    assert_int_equal(pop(&h->v), 1);
    vblk_vq_push(&h->v.vq, 1, 1, 0);
    assert_false(vblk_vq_publish(&h->v.vq));
    assert_int_equal(vblk_vq_stats(&h->v.vq)->notifies, 1);
}

static void publish_event_idx_window_boundaries(void **state)
{
    struct h *h = *state;
    /* old = 10, new = 13: notify iff used_event is in [old, new). */
    assert_true(publish_with_event(h, 10, 3, 10));
    assert_true(publish_with_event(h, 10, 3, 11));
    assert_true(publish_with_event(h, 10, 3, 12));
    assert_false(publish_with_event(h, 10, 3, 13));
    assert_false(publish_with_event(h, 10, 3, 9));
    assert_false(publish_with_event(h, 10, 3, 100));
}

static void publish_event_idx_across_16bit_wrap(void **state)
{
    struct h *h = *state;
    /* old = 65534, new = 2. */
    assert_true(publish_with_event(h, 65534, 4, 65534));
    assert_true(publish_with_event(h, 65534, 4, 65535));
    assert_true(publish_with_event(h, 65534, 4, 0));
    assert_true(publish_with_event(h, 65534, 4, 1));
    assert_false(publish_with_event(h, 65534, 4, 2));
    assert_false(publish_with_event(h, 65534, 4, 65533));
}

static void publish_event_idx_counts_from_last_publish(void **state)
{
    struct h *h = *state;
    start(h, 8, true, false, NULL);
    *used_event(h) = 0;
    simple(h, 0);
    assert_int_equal(pop(&h->v), 1);
    vblk_vq_push(&h->v.vq, 0, 1, 0);
    assert_true(vblk_vq_publish(&h->v.vq));
    /* The driver did not move used_event: later batches stay quiet. */
    simple(h, 1);
    assert_int_equal(pop(&h->v), 1);
    vblk_vq_push(&h->v.vq, 1, 1, 0);
    assert_false(vblk_vq_publish(&h->v.vq));
    *used_event(h) = 2;
    simple(h, 2);
    simple(h, 3);
    assert_int_equal(pop(&h->v), 1);
    assert_int_equal(pop(&h->v), 1);
    vblk_vq_push(&h->v.vq, 2, 1, 0);
    vblk_vq_push(&h->v.vq, 3, 1, 0);
    assert_true(vblk_vq_publish(&h->v.vq));
    assert_int_equal(vblk_vq_stats(&h->v.vq)->notifies, 2);
}

static void notify_flags_form_sets_used_flags(void **state)
{
    struct h *h = *state;
    start(h, 4, false, false, NULL);
    vblk_vq_disable_notify(&h->v.vq);
    assert_int_equal(h->used->flags, VBLK_USED_F_NO_NOTIFY);
    assert_false(vblk_vq_enable_notify(&h->v.vq));
    assert_int_equal(h->used->flags, 0);
    vblk_vq_disable_notify(&h->v.vq);
    simple(h, 0);
    /* A buffer slipped in while kicks were off: the caller must look. */
    assert_true(vblk_vq_enable_notify(&h->v.vq));
    assert_int_equal(h->used->flags, 0);
    assert_true(vblk_vq_has_avail(&h->v.vq));
    assert_int_equal(pop(&h->v), 1);
    assert_false(vblk_vq_has_avail(&h->v.vq));
}

static void notify_event_idx_writes_avail_event(void **state)
{
    struct h *h = *state;
    struct vblk_vq_state st = {.last_avail_idx = 65535, .used_idx = 65535};
    start(h, 4, true, false, &st);
    *avail_event(h) = 0x1234;
    assert_false(vblk_vq_enable_notify(&h->v.vq));
    assert_int_equal(*avail_event(h), 65535);
    assert_int_equal(h->used->flags, 0);
    simple(h, 0);
    simple(h, 1);
    assert_int_equal(pop(&h->v), 1);
    /* Disabling leaves avail_event behind; the flags field is untouched. */
    vblk_vq_disable_notify(&h->v.vq);
    assert_int_equal(*avail_event(h), 65535);
    assert_int_equal(h->used->flags, 0);
    assert_true(vblk_vq_enable_notify(&h->v.vq));
    assert_int_equal(*avail_event(h), 0);
    assert_int_equal(pop(&h->v), 1);
    assert_false(vblk_vq_enable_notify(&h->v.vq));
    assert_int_equal(*avail_event(h), 1);
}

static void dirty_log_marks_used_ring_writes(void **state)
{
    struct h *h = *state;
    const uint64_t used_page = G(USED_OFF) >> 12, avail_page = G(AVAIL_OFF) >> 12;
    size_t log_len = (size_t)(used_page / 8 + 1);
    uint8_t *log = calloc(1, log_len);
    assert_non_null(log);
    start(h, 4, true, false, NULL);
    vblk_mem_set_log(&h->v.mem, log, log_len);
    simple(h, 0);
    assert_int_equal(pop(&h->v), 1);
    assert_int_equal(log[used_page / 8], 0); /* reading logs nothing */
    vblk_vq_push(&h->v.vq, 0, 1, 0);
    assert_int_equal(log[used_page / 8], 1u << (used_page % 8));
    log[used_page / 8] = 0;
    vblk_vq_publish(&h->v.vq);
    assert_int_equal(log[used_page / 8], 1u << (used_page % 8));
    log[used_page / 8] = 0;
    assert_false(vblk_vq_enable_notify(&h->v.vq)); /* writes avail_event */
    assert_int_equal(log[used_page / 8], 1u << (used_page % 8));
    assert_int_equal(log[avail_page / 8] & (1u << (avail_page % 8)), 0);
    vblk_mem_set_log(&h->v.mem, NULL, 0);
    free(log);
}

static void pop_at_rereads_chain_without_advancing(void **state)
{
    struct h *h = *state;
    struct vblk_vq_state st;
    start(h, 8, false, false, NULL);
    set_desc(&h->desc[6], G(DATA_OFF), 16, N, 4);
    set_desc(&h->desc[4], G(DATA_OFF + 0x100), 8, W, 0);
    make_avail(h, 6);
    assert_int_equal(pop(&h->v), 1);
    memset(&h->v.c, 0xa5, offsetof(struct vblk_chain, cap));
    assert_int_equal(vblk_vq_pop_at(&h->v.vq, 6, 0, &h->v.c), 1);
    assert_int_equal(h->v.c.id, 6);
    assert_int_equal(h->v.c.nout, 1);
    assert_int_equal(h->v.c.nin, 1);
    assert_int_equal(h->v.c.in_len, 8);
    assert_int_equal(h->v.c.fault, 0);
    vblk_vq_get_state(&h->v.vq, &st);
    assert_int_equal(st.last_avail_idx, 1);
    assert_int_equal(pop(&h->v), 0);
    assert_int_equal(vblk_vq_pop_at(&h->v.vq, 8, 0, &h->v.c), -EIO);
    assert_true(vblk_vq_broken(&h->v.vq));
    assert_int_equal(vblk_vq_stats(&h->v.vq)->broken, 1);
}

static void descriptor_loop_breaks_queue(void **state)
{
    struct h *h = *state;
    start(h, 4, false, true, NULL);
    set_desc(&h->desc[0], G(DATA_OFF), 16, N, 1);
    set_desc(&h->desc[1], G(DATA_OFF), 16, N, 2);
    set_desc(&h->desc[2], G(DATA_OFF), 16, N, 0);
    make_avail(h, 0);
    expect_broken(&h->v);
    /* Completions and kicks are ignored on a broken queue. */
    uint16_t before = h->used->idx;
    vblk_vq_push(&h->v.vq, 0, 1, 1);
    assert_false(vblk_vq_publish(&h->v.vq));
    assert_false(vblk_vq_enable_notify(&h->v.vq));
    assert_false(vblk_vq_has_avail(&h->v.vq));
    assert_int_equal(h->used->idx, before);
    assert_int_equal(vblk_vq_pop_at(&h->v.vq, 0, 0, &h->v.c), -EIO);
}

static void chain_longer_than_queue_breaks_queue(void **state)
{
    struct h *h = *state;
    start(h, 4, false, true, NULL);
    set_desc(&h->desc[3], G(DATA_OFF), 16, N, 3); /* points at itself */
    make_avail(h, 3);
    expect_broken(&h->v);
}

static void next_out_of_range_breaks_queue(void **state)
{
    struct h *h = *state;
    start(h, 4, false, true, NULL);
    set_desc(&h->desc[0], G(DATA_OFF), 16, N, 4);
    make_avail(h, 0);
    expect_broken(&h->v);
}

static void head_out_of_range_breaks_queue(void **state)
{
    struct h *h = *state;
    start(h, 4, false, true, NULL);
    make_avail(h, 4);
    expect_broken(&h->v);
}

static void avail_idx_beyond_queue_size_breaks_queue(void **state)
{
    struct h *h = *state;
    start(h, 4, false, true, NULL);
    /* Exactly a full ring is fine. */
    for (uint16_t d = 0; d < 4; d++)
        simple(h, d);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pop(&h->v), 1);
    h->avail->idx = (uint16_t)(h->avail->idx + 5);
    assert_false(vblk_vq_has_avail(&h->v.vq));
    assert_true(vblk_vq_broken(&h->v.vq));
    assert_int_equal(pop(&h->v), -EIO);
    assert_int_equal(vblk_vq_stats(&h->v.vq)->broken, 1);
}

static void avail_idx_jump_on_fresh_queue_breaks_queue(void **state)
{
    struct h *h = *state;
    start(h, 4, false, true, NULL);
    h->avail->idx = 5;
    expect_broken(&h->v);
}

/* Starts a queue (INDIRECT_DESC negotiated if @feature), writes @n table
 * entries at IND_OFF, makes descriptor 0 an indirect descriptor with
 * @flags over @len bytes at @addr, and expects the pop to break the queue. */
static void expect_indirect_breaks(void **state, bool feature, const struct vblk_split_desc *tab,
                                   unsigned n, uint64_t addr, uint32_t len, uint16_t flags)
{
    struct h *h = *state;
    start(h, 4, false, feature, NULL);
    memcpy(h->v.buf + IND_OFF, tab, 16 * n);
    set_desc(&h->desc[0], addr, len, flags, 1);
    set_desc(&h->desc[1], G(DATA_OFF), 1, W, 0);
    make_avail(h, 0);
    expect_broken(&h->v);
}

/* A well-formed two-entry table: the tests below break one thing each. */
static const struct vblk_split_desc good_table[2] = {{G(DATA_OFF), 16, N, 1},
                                                     {G(DATA_OFF + 16), 1, W, 0}};

static void nested_indirect_breaks_queue(void **state)
{
    const struct vblk_split_desc t[2] = {{G(DATA_OFF), 16, N, 1}, {G(IND_OFF), 32, I, 0}};
    expect_indirect_breaks(state, true, t, 2, G(IND_OFF), 32, I);
}

static void indirect_with_next_breaks_queue(void **state)
{
    expect_indirect_breaks(state, true, good_table, 2, G(IND_OFF), 32, I | N);
}

static void indirect_empty_table_breaks_queue(void **state)
{
    expect_indirect_breaks(state, true, good_table, 2, G(IND_OFF), 0, I);
}

static void indirect_partial_descriptor_breaks_queue(void **state)
{
    expect_indirect_breaks(state, true, good_table, 2, G(IND_OFF), 24, I);
}

static void indirect_without_feature_breaks_queue(void **state)
{
    expect_indirect_breaks(state, false, good_table, 2, G(IND_OFF), 32, I);
}

static void indirect_table_outside_map_breaks_queue(void **state)
{
    /* The last 16 bytes of the map plus 16 unmapped ones. */
    expect_indirect_breaks(state, true, good_table, 2, G(MEM_LEN - 16), 32, I);
}

static void indirect_loop_breaks_queue(void **state)
{
    const struct vblk_split_desc t[2] = {{G(DATA_OFF), 16, N, 1}, {G(DATA_OFF), 16, N, 0}};
    expect_indirect_breaks(state, true, t, 2, G(IND_OFF), 32, I);
}

static void indirect_next_out_of_table_breaks_queue(void **state)
{
    /* Entry 2 exists in memory but not in the 2-entry table. */
    const struct vblk_split_desc t[3] = {
        {G(DATA_OFF), 16, N, 2}, {G(DATA_OFF), 16, N, 0}, {G(DATA_OFF), 1, W, 0}};
    expect_indirect_breaks(state, true, t, 3, G(IND_OFF), 32, I);
}

static void readable_after_writable_in_indirect_breaks_queue(void **state)
{
    const struct vblk_split_desc t[2] = {{G(DATA_OFF), 16, W | N, 1}, {G(DATA_OFF), 16, R, 0}};
    expect_indirect_breaks(state, true, t, 2, G(IND_OFF), 32, I);
}

static void readable_after_writable_breaks_queue(void **state)
{
    struct h *h = *state;
    start(h, 4, false, true, NULL);
    set_desc(&h->desc[0], G(DATA_OFF), 16, W | N, 1);
    set_desc(&h->desc[1], G(DATA_OFF), 16, R, 0);
    make_avail(h, 0);
    expect_broken(&h->v);
}

static void readable_indirect_after_writable_direct_breaks_queue(void **state)
{
    struct h *h = *state;
    struct vblk_split_desc *t = (struct vblk_split_desc *)(h->v.buf + IND_OFF);
    start(h, 4, false, true, NULL);
    set_desc(&h->desc[2], G(DATA_OFF), 16, W | N, 3);
    set_desc(&h->desc[3], G(IND_OFF), 16, I, 0);
    set_desc(&t[0], G(DATA_OFF), 16, R, 0);
    make_avail(h, 2);
    expect_broken(&h->v);
}

static void buffer_wrapping_2_64_faults_chain(void **state)
{
    struct h *h = *state;
    start(h, 4, false, true, NULL);
    set_desc(&h->desc[0], UINT64_MAX - 7, 16, N, 1);
    set_desc(&h->desc[1], G(DATA_OFF), 1, W, 0);
    make_avail(h, 0);
    assert_int_equal(pop(&h->v), 1);
    assert_int_equal(h->v.c.fault, 1);
    assert_int_equal(h->v.c.nout, 0);
    assert_int_equal(h->v.c.nin, 1);
    assert_int_equal(h->v.c.last_mapped, 1);
    assert_false(vblk_vq_broken(&h->v.vq));
    assert_int_equal(vblk_vq_stats(&h->v.vq)->bad_chains, 1);
    assert_int_equal(vblk_vq_stats(&h->v.vq)->chains, 1);
}

static void buffer_straddling_region_into_hole_faults_chain(void **state)
{
    struct h *h = *state;
    uint8_t *other = calloc(1, 0x1000);
    assert_non_null(other);
    /* A second region after a one-page hole. */
    assert_int_equal(vblk_mem_add(&h->v.mem, G(MEM_LEN + 0x1000), 0x1000, other, NULL), 0);
    start(h, 4, false, true, NULL);
    set_desc(&h->desc[0], G(DATA_OFF), 16, N, 1);
    set_desc(&h->desc[1], G(MEM_LEN - 0x100), 0x200, W | N, 2);
    set_desc(&h->desc[2], G(MEM_LEN + 0x1000), 1, W, 0);
    make_avail(h, 0);
    assert_int_equal(pop(&h->v), 1);
    assert_int_equal(h->v.c.fault, 1);
    assert_int_equal(h->v.c.ndata, 3);
    assert_int_equal(h->v.c.nout, 1);
    assert_int_equal(h->v.c.nin, 1); /* only the status-like last buffer */
    assert_ptr_equal(h->v.iov[1].base, other);
    assert_false(vblk_vq_broken(&h->v.vq));
    free(other);
}

static void more_buffers_than_iovecs_faults_chain(void **state)
{
    struct h *h = *state;
    start(h, 8, false, true, NULL);
    h->v.c.cap = 2;
    set_desc(&h->desc[0], G(DATA_OFF), 16, N, 1);
    set_desc(&h->desc[1], G(DATA_OFF + 16), 16, N, 2);
    set_desc(&h->desc[2], G(DATA_OFF + 32), 1, W, 0);
    make_avail(h, 0);
    assert_int_equal(pop(&h->v), 1);
    assert_int_equal(h->v.c.fault, 1);
    assert_int_equal(h->v.c.nout, 2);
    assert_int_equal(h->v.c.nin, 0);
    assert_int_equal(h->v.c.last_mapped, 0);
}

static void rings_outside_memory_fail_init(void **state)
{
    struct h *h = *state;
    struct vblk_vq_config c = cfg(8);
    c.addrs.desc = 0x1000;
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EFAULT);
    assert_true(vblk_vq_broken(&h->v.vq));
    c = cfg(8);
    c.addrs.driver = G(MEM_LEN - 16); /* avail ring needs 22 bytes */
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EFAULT);
    c = cfg(8);
    c.addrs.device = G(MEM_LEN - 68); /* used ring needs 70 bytes */
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EFAULT);
    c.addrs.device = G(MEM_LEN - 72); /* fits exactly */
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), 0);
    c = cfg(8);
    c.addrs.desc = G(MEM_LEN - 64); /* table needs 128 bytes */
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EFAULT);
}

static void misaligned_rings_fail_init(void **state)
{
    struct h *h = *state;
    struct vblk_vq_config c = cfg(8);
    c.addrs.desc += 8;
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EINVAL);
    c = cfg(8);
    c.addrs.driver += 1;
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EINVAL);
    c = cfg(8);
    c.addrs.device += 2;
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EINVAL);
    c = cfg(8);
    c.addrs.driver += 2; /* 2-byte alignment is enough for avail */
    c.addrs.device += 4; /* and 4 for used */
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), 0);
}

static void bad_queue_sizes_fail_init(void **state)
{
    struct h *h = *state;
    struct vblk_vq_config c = cfg(0);
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EINVAL);
    c.size = 6;
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EINVAL);
    c.size = 32769;
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EINVAL);
    c.size = 65535;
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), -EINVAL);
    c.size = 1;
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), 0);
}

static void largest_queue_size_is_accepted(void **state)
{
    struct h *h = *state;
    const uint16_t n = VBLK_QUEUE_SIZE_MAX;
    const uint64_t base = G(0x100000), avail = base + VBLK_SPLIT_DESC_SIZE(n);
    const uint64_t used = avail + 0x20000, len = used - base + VBLK_SPLIT_USED_SIZE(n);
    uint8_t *b = calloc(1, len);
    assert_non_null(b);
    assert_int_equal(vblk_mem_add(&h->v.mem, base, len, b, NULL), 0);
    struct vblk_vq_state st = {.last_avail_idx = n - 1};
    struct vblk_vq_config c = {.size = n, .addrs = {base, avail, used}, .state = &st};
    assert_int_equal(vblk_vq_init(&h->v.vq, &h->v.mem, &c), 0);
    /* The last descriptor and the last avail slot are reachable. */
    set_desc((struct vblk_split_desc *)b + n - 1, G(DATA_OFF), 1, W, 0);
    struct vblk_split_avail *a = (struct vblk_split_avail *)(b + (avail - base));
    a->ring[n - 1] = n - 1;
    a->idx = n;
    assert_int_equal(pop(&h->v), 1);
    assert_int_equal(h->v.c.id, n - 1);
    free(b);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, vq_harness_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(direct_chain_gives_readable_then_writable_iovecs),
        T(zero_length_descriptor_adds_no_iovec),
        T(indirect_table_is_walked_through_next),
        T(direct_descriptors_then_indirect_form_one_chain),
        T(avail_and_used_indices_wrap_at_65535),
        T(out_of_order_pushes_appear_at_publish_and_in_state),
        T(publish_honours_no_interrupt_flag),
        T(first_publish_after_restart_notifies),
        T(publish_event_idx_window_boundaries),
        T(publish_event_idx_across_16bit_wrap),
        T(publish_event_idx_counts_from_last_publish),
        T(notify_flags_form_sets_used_flags),
        T(notify_event_idx_writes_avail_event),
        T(dirty_log_marks_used_ring_writes),
        T(pop_at_rereads_chain_without_advancing),
        T(descriptor_loop_breaks_queue),
        T(chain_longer_than_queue_breaks_queue),
        T(next_out_of_range_breaks_queue),
        T(head_out_of_range_breaks_queue),
        T(avail_idx_beyond_queue_size_breaks_queue),
        T(avail_idx_jump_on_fresh_queue_breaks_queue),
        T(nested_indirect_breaks_queue),
        T(indirect_with_next_breaks_queue),
        T(indirect_empty_table_breaks_queue),
        T(indirect_partial_descriptor_breaks_queue),
        T(indirect_without_feature_breaks_queue),
        T(indirect_table_outside_map_breaks_queue),
        T(indirect_loop_breaks_queue),
        T(indirect_next_out_of_table_breaks_queue),
        T(readable_after_writable_breaks_queue),
        T(readable_indirect_after_writable_direct_breaks_queue),
        T(readable_after_writable_in_indirect_breaks_queue),
        T(buffer_wrapping_2_64_faults_chain),
        T(buffer_straddling_region_into_hole_faults_chain),
        T(more_buffers_than_iovecs_faults_chain),
        T(rings_outside_memory_fail_init),
        T(misaligned_rings_fail_init),
        T(bad_queue_sizes_fail_init),
        T(largest_queue_size_is_accepted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
