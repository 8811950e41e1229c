/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the virtio-blk device model (lib/core/blk_dev.c,
 * blk_req.c): feature negotiation, configuration space, and every request
 * type and status byte, through a real device queue over a hand-written
 * split ring (see blk_harness.h). Queue-level behaviour (request pool,
 * ordering, asynchronous completion, counters) is in test_blk_queue.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "blk_harness.h"

/* ---- features and configuration space ---- */

static void offer_has_core_bits_and_follows_backend(void **state)
{
    struct h *h = *state;
    dev_up(h);
    uint64_t f = vblk_dev_features(&h->dev);
    uint64_t want = F(VERSION_1) | F(INDIRECT_DESC) | F(EVENT_IDX) | F(RING_PACKED) | F(SEG_MAX) |
                    F(BLK_SIZE) | F(TOPOLOGY) | F(MQ) | F(FLUSH) | F(CONFIG_WCE) | F(DISCARD) |
                    F(WRITE_ZEROES) | F(SECURE_ERASE);
    assert_int_equal(f, want);
    /* Optional fields are offered only when set. */
    h->p.size_max = 65536;
    h->p.cylinders = 100;
    h->p.lifetime = true;
    dev_up(h);
    f = vblk_dev_features(&h->dev);
    assert_true(f & F(SIZE_MAX));
    assert_true(f & F(GEOMETRY));
    assert_true(f & F(LIFETIME));
}

static void set_features_needs_subset_with_version_1(void **state)
{
    struct h *h = *state;
    dev_up(h);
    uint64_t f = vblk_dev_features(&h->dev);
    assert_int_equal(vblk_dev_set_features(&h->dev, f | F(RO)), -EINVAL);
    assert_int_equal(vblk_dev_set_features(&h->dev, f | F(IN_ORDER)), -EINVAL);
    assert_int_equal(vblk_dev_set_features(&h->dev, f & ~F(VERSION_1)), -EINVAL);
    assert_int_equal(vblk_dev_set_features(&h->dev, 0), -EINVAL);
    assert_int_equal(vblk_dev_driver_features(&h->dev), 0);
    assert_int_equal(vblk_dev_set_features(&h->dev, F(VERSION_1)), 0);
    assert_int_equal(vblk_dev_driver_features(&h->dev), F(VERSION_1));
    assert_int_equal(vblk_dev_set_features(&h->dev, f), 0);
    assert_int_equal(vblk_dev_driver_features(&h->dev), f);
}

static void backend_caps_narrow_the_offer(void **state)
{
    struct h *h = *state;
    h->tb.ops.caps = 0;
    dev_up(h);
    uint64_t f = vblk_dev_features(&h->dev);
    assert_false(f & (F(FLUSH) | F(CONFIG_WCE) | F(DISCARD) | F(WRITE_ZEROES) | F(SECURE_ERASE)));
    struct vblk_config c = {0};
    assert_int_equal(vblk_dev_config_read(&h->dev, 0, &c, VBLK_CONFIG_SIZE_NO_ZONED), 0);
    assert_int_equal(c.max_discard_sectors, 0);
    assert_int_equal(c.max_write_zeroes_sectors, 0);
    assert_int_equal(c.max_secure_erase_sectors, 0);
    assert_int_equal(c.writeback, 0); /* no cache to write back without FLUSH */
    assert_false(vblk_dev_writeback(&h->dev));
    h->tb.ops.caps = VBLK_BACKEND_CAP_WRITE_ZEROES;
    dev_up(h);
    f = vblk_dev_features(&h->dev);
    assert_true(f & F(WRITE_ZEROES));
    assert_false(f & (F(DISCARD) | F(FLUSH)));
}

static void read_only_backend_forces_read_only(void **state)
{
    struct h *h = *state;
    h->tb.ops.caps = ALL_CAPS | VBLK_BACKEND_CAP_READ_ONLY;
    dev_up(h);
    uint64_t f = vblk_dev_features(&h->dev);
    assert_true(f & F(RO));
    assert_true(f & F(FLUSH));
    assert_false(f & (F(DISCARD) | F(WRITE_ZEROES) | F(SECURE_ERASE)));
    h->tb.ops.caps = ALL_CAPS;
    h->p.read_only = true;
    dev_up(h);
    assert_true(vblk_dev_features(&h->dev) & F(RO));
}

static void features_off_withholds_bits(void **state)
{
    struct h *h = *state;
    dev_up(h);
    assert_false(vblk_dev_features(&h->dev) & F(IN_ORDER)); /* opt-in by default */
    h->p.features_off = F(RING_PACKED) | F(DISCARD) | F(FLUSH);
    dev_up(h);
    uint64_t f = vblk_dev_features(&h->dev);
    assert_true(f & F(IN_ORDER));
    assert_false(f & (F(RING_PACKED) | F(DISCARD) | F(FLUSH)));
    /* virtio 1.2 5.2.5.2: no CONFIG_WCE without FLUSH, so the driver
     * cannot select a write-back cache it has no way to flush. */
    assert_false(f & F(CONFIG_WCE));
    uint8_t one = 1;
    assert_int_equal(vblk_dev_config_write(&h->dev, 32, &one, 1), -EPERM);
    assert_false(vblk_dev_writeback(&h->dev));
    h->p.features_off = F(CONFIG_WCE);
    dev_up(h);
    f = vblk_dev_features(&h->dev);
    assert_true(f & F(FLUSH));
    assert_false(f & F(CONFIG_WCE));
}

static void inconsistent_params_are_rejected(void **state)
{
    struct h *h = *state;
    struct vblk_dev_params good = h->p;
    struct {
        struct vblk_dev_params p;
    } bad[8];
    for (int i = 0; i < 8; i++)
        bad[i].p = good;
    bad[0].p.capacity = DISK - 100;
    bad[1].p.seg_max = 0;
    bad[2].p.blk_size = 1000;
    bad[3].p.blk_size = 256;
    bad[4].p.num_queues = 0;
    bad[5].p.num_queues = VBLK_MAX_QUEUES + 1;
    bad[6].p.queue_size = 0;
    bad[7].p.capacity = DISK + 512;
    for (int i = 0; i < 8; i++)
        assert_int_equal(vblk_dev_init(&h->dev, &bad[i].p, &h->be), -EINVAL);
    struct vblk_backend nosubmit = h->be;
    struct vblk_backend_ops ops = h->tb.ops;
    ops.submit = NULL;
    nosubmit.ops = &ops;
    assert_int_equal(vblk_dev_init(&h->dev, &good, &nosubmit), -EINVAL);
    /* Capacity 0 takes the backend's size. */
    good.capacity = 0;
    assert_int_equal(vblk_dev_init(&h->dev, &good, &h->be), 0);
    uint64_t cap;
    assert_int_equal(vblk_dev_config_read(&h->dev, 0, &cap, 8), 0);
    assert_int_equal(cap, SECTORS);
}

static uint64_t cfg_le(struct h *h, uint32_t off, uint32_t len)
{
    uint8_t b[8];
    uint64_t v = 0;
    assert_int_equal(vblk_dev_config_read(&h->dev, off, b, len), 0);
    for (uint32_t i = len; i-- > 0;)
        v = v << 8 | b[i];
    return v;
}

static void config_fields_are_little_endian_at_spec_offsets(void **state)
{
    struct h *h = *state;
    h->p.size_max = 0x12345;
    h->p.cylinders = 0x1234;
    h->p.heads = 16;
    h->p.sectors = 63;
    h->p.blk_size = 4096;
    h->p.physical_block_exp = 3;
    h->p.alignment_offset = 1;
    h->p.min_io_size = 0x0102;
    h->p.opt_io_size = 0x01020304;
    h->p.num_queues = 3;
    h->p.discard_sector_alignment = 8;
    h->p.write_zeroes_may_unmap = true;
    h->p.secure_erase_sector_alignment = 16;
    dev_up(h);
    assert_int_equal(vblk_dev_config_size(&h->dev), 72);
    assert_int_equal(cfg_le(h, 0, 8), SECTORS);
    assert_int_equal(cfg_le(h, 8, 4), 0x12345);
    assert_int_equal(cfg_le(h, 12, 4), 4);
    assert_int_equal(cfg_le(h, 16, 2), 0x1234);
    assert_int_equal(cfg_le(h, 18, 1), 16);
    assert_int_equal(cfg_le(h, 19, 1), 63);
    assert_int_equal(cfg_le(h, 20, 4), 4096);
    assert_int_equal(cfg_le(h, 24, 1), 3);
    assert_int_equal(cfg_le(h, 25, 1), 1);
    assert_int_equal(cfg_le(h, 26, 2), 0x0102);
    assert_int_equal(cfg_le(h, 28, 4), 0x01020304);
    assert_int_equal(cfg_le(h, 32, 1), 1);
    assert_int_equal(cfg_le(h, 34, 2), 3);
    assert_int_equal(cfg_le(h, 36, 4), 64);
    assert_int_equal(cfg_le(h, 40, 4), 2);
    assert_int_equal(cfg_le(h, 44, 4), 8);
    assert_int_equal(cfg_le(h, 48, 4), 64);
    assert_int_equal(cfg_le(h, 52, 4), 2);
    assert_int_equal(cfg_le(h, 56, 1), 1);
    assert_int_equal(cfg_le(h, 60, 4), 32);
    assert_int_equal(cfg_le(h, 64, 4), 1);
    assert_int_equal(cfg_le(h, 68, 4), 16);
    /* A read may start anywhere inside the space. */
    assert_int_equal(cfg_le(h, 1, 2), 0);
    assert_int_equal(cfg_le(h, 70, 2), 0);
    vblk_dev_set_capacity(&h->dev, 1000 * 512 + 100);
    assert_int_equal(cfg_le(h, 0, 8), 1000);
}

static void config_reads_outside_space_fail(void **state)
{
    struct h *h = *state;
    uint8_t b[80];
    dev_up(h);
    assert_int_equal(vblk_dev_config_read(&h->dev, 72, b, 1), -EINVAL);
    assert_int_equal(vblk_dev_config_read(&h->dev, 70, b, 4), -EINVAL);
    assert_int_equal(vblk_dev_config_read(&h->dev, 0, b, 73), -EINVAL);
    assert_int_equal(vblk_dev_config_read(&h->dev, 73, b, 0), -EINVAL);
    assert_int_equal(vblk_dev_config_read(&h->dev, UINT32_MAX, b, 2), -EINVAL);
    assert_int_equal(vblk_dev_config_read(&h->dev, 8, b, UINT32_MAX), -EINVAL);
    assert_int_equal(vblk_dev_config_read(&h->dev, 0, b, 72), 0);
}

static void config_writes_only_writeback_with_wce(void **state)
{
    struct h *h = *state;
    uint8_t zero = 0, one = 1, b2[2] = {0, 0};
    dev_up(h);
    assert_true(vblk_dev_writeback(&h->dev));
    /* Offered, not yet negotiated: the driver may set it before FEATURES_OK. */
    assert_int_equal(vblk_dev_config_write(&h->dev, 32, &zero, 1), 0);
    assert_false(vblk_dev_writeback(&h->dev));
    assert_int_equal(cfg_le(h, 32, 1), 0);
    assert_int_equal(vblk_dev_config_write(&h->dev, 32, &one, 1), 0);
    assert_true(vblk_dev_writeback(&h->dev));
    assert_int_equal(vblk_dev_config_write(&h->dev, 0, &zero, 1), -EPERM);
    assert_int_equal(vblk_dev_config_write(&h->dev, 33, &zero, 1), -EPERM);
    assert_int_equal(vblk_dev_config_write(&h->dev, 32, b2, 2), -EPERM);
    assert_int_equal(vblk_dev_config_write(&h->dev, 72, &zero, 1), -EINVAL);
    assert_int_equal(vblk_dev_config_write(&h->dev, 71, b2, 2), -EINVAL);
    assert_int_equal(cfg_le(h, 0, 8), SECTORS);
    /* Negotiated without CONFIG_WCE: read-only. */
    uint64_t f = vblk_dev_features(&h->dev) & ~F(CONFIG_WCE);
    assert_int_equal(vblk_dev_set_features(&h->dev, f), 0);
    assert_int_equal(vblk_dev_config_write(&h->dev, 32, &zero, 1), -EPERM);
    assert_true(vblk_dev_writeback(&h->dev));
    /* Not offered at all. */
    h->tb.ops.caps = 0;
    dev_up(h);
    assert_int_equal(vblk_dev_config_write(&h->dev, 32, &one, 1), -EPERM);
    assert_false(vblk_dev_writeback(&h->dev));
}

/* ---- requests: data transfer ---- */

static void in_reads_disk_and_used_len_counts_data_and_status(void **state)
{
    struct h *h = *state;
    up(h);
    uint64_t d = galloc(h, 1024, 0);
    uint32_t ulen;
    assert_int_equal(rq(h, VBLK_T_IN, 3, d, 1024, W, &ulen), VBLK_S_OK);
    assert_memory_equal(hp(h, d), h->tb.disk + 3 * 512, 1024);
    assert_int_equal(ulen, 1025);
    assert_int_equal(h->tb.ntype[VBLK_T_IN], 1);
    /* The last sector is readable; zero-length reads up to the end too. */
    assert_int_equal(rq(h, VBLK_T_IN, SECTORS - 1, d, 512, W, NULL), VBLK_S_OK);
    assert_int_equal(rq(h, VBLK_T_IN, SECTORS, 0, 0, W, &ulen), VBLK_S_OK);
    assert_int_equal(ulen, 1);
}

static void out_writes_disk_and_used_len_is_status_only(void **state)
{
    struct h *h = *state;
    up(h);
    uint64_t d = galloc(h, 1536, 0x5a);
    uint32_t ulen;
    assert_int_equal(rq(h, VBLK_T_OUT, 10, d, 1536, 0, &ulen), VBLK_S_OK);
    assert_int_equal(ulen, 1);
    for (unsigned i = 0; i < 1536; i++)
        assert_int_equal(h->tb.disk[10 * 512 + i], 0x5a);
    assert_int_not_equal(h->tb.disk[13 * 512], 0x5a);
    assert_int_equal(h->tb.last_flags, 0); /* write-back cache: no FUA */
}

static void data_may_span_up_to_seg_max_descriptors(void **state)
{
    struct h *h = *state;
    up(h);
    uint64_t st = galloc(h, 1, 0xff), d[5];
    struct seg s[7] = {{mkhdr(h, VBLK_T_IN, 0), 16, 0}};
    for (int i = 0; i < 5; i++) {
        d[i] = galloc(h, 512, 0);
        s[i + 1] = (struct seg){d[i], 512, W};
    }
    s[5] = (struct seg){st, 1, W};
    post(h, s, 6); /* seg_max = 4 data descriptors */
    assert_int_equal(process(h), 1);
    assert_int_equal(take_used(h, NULL), 4 * 512 + 1);
    assert_int_equal(*(uint8_t *)hp(h, st), VBLK_S_OK);
    for (int i = 0; i < 4; i++)
        assert_memory_equal(hp(h, d[i]), h->tb.disk + i * 512, 512);
    s[6] = (struct seg){st, 1, W};
    s[5] = (struct seg){d[4], 512, W};
    post(h, s, 7); /* five: too many */
    assert_int_equal(process(h), 0);
    assert_int_equal(take_used(h, NULL), 1);
    assert_int_equal(*(uint8_t *)hp(h, st), VBLK_S_IOERR);
    assert_int_equal(h->tb.nsubmit, 1);
}

static void size_max_limits_each_data_descriptor(void **state)
{
    struct h *h = *state;
    h->p.size_max = 4096;
    up(h);
    assert_true(vblk_dev_driver_features(&h->dev) & F(SIZE_MAX));
    uint64_t d = galloc(h, 8192, 0), st = galloc(h, 1, 0xff);
    assert_int_equal(rq(h, VBLK_T_IN, 0, d, 4096, W, NULL), VBLK_S_OK);
    assert_int_equal(rq(h, VBLK_T_IN, 0, d, 8192, W, NULL), VBLK_S_IOERR);
    struct seg s[] = {
        {mkhdr(h, VBLK_T_IN, 0), 16, 0}, {d, 4096, W}, {d + 4096, 4096, W}, {st, 1, W}};
    post(h, s, 4);
    assert_int_equal(process(h), 1);
    assert_int_equal(take_used(h, NULL), 8193);
    assert_int_equal(*(uint8_t *)hp(h, st), VBLK_S_OK);
}

static void rw_outside_capacity_or_unaligned_fails(void **state)
{
    struct h *h = *state;
    up(h);
    uint64_t d = galloc(h, 1024, 0);
    assert_int_equal(rq(h, VBLK_T_IN, SECTORS, d, 512, W, NULL), VBLK_S_IOERR);
    assert_int_equal(rq(h, VBLK_T_IN, SECTORS - 1, d, 1024, W, NULL), VBLK_S_IOERR);
    assert_int_equal(rq(h, VBLK_T_OUT, SECTORS - 1, d, 1024, 0, NULL), VBLK_S_IOERR);
    assert_int_equal(rq(h, VBLK_T_IN, SECTORS + 1, 0, 0, W, NULL), VBLK_S_IOERR);
    /* sector * 512 would overflow 64 bits. */
    assert_int_equal(rq(h, VBLK_T_IN, 1ULL << 63, d, 512, W, NULL), VBLK_S_IOERR);
    assert_int_equal(rq(h, VBLK_T_OUT, UINT64_MAX, d, 512, 0, NULL), VBLK_S_IOERR);
    assert_int_equal(rq(h, VBLK_T_IN, 0, d, 100, W, NULL), VBLK_S_IOERR);
    assert_int_equal(rq(h, VBLK_T_OUT, 0, d, 513, 0, NULL), VBLK_S_IOERR);
    assert_int_equal(h->tb.nsubmit, 0);
    assert_int_equal(vblk_queue_stats(&h->q)->ioerr, 8);
}

static void header_split_or_joined_with_data_works(void **state)
{
    struct h *h = *state;
    up(h);
    uint64_t hdr = mkhdr(h, VBLK_T_IN, 5), d = galloc(h, 512, 0), st = galloc(h, 1, 0xff);
    struct seg s[] = {{hdr, 8, 0}, {hdr + 8, 8, 0}, {d, 512, W}, {st, 1, W}};
    post(h, s, 4);
    assert_int_equal(process(h), 1);
    assert_int_equal(take_used(h, NULL), 513);
    assert_int_equal(*(uint8_t *)hp(h, st), VBLK_S_OK);
    assert_memory_equal(hp(h, d), h->tb.disk + 5 * 512, 512);
    /* OUT with header and data in one buffer, data and status in another. */
    uint64_t b = galloc(h, 16 + 512, 0x33), ds = galloc(h, 513, 0x44);
    struct vblk_req_hdr oh = {VBLK_T_OUT, 0, 20};
    memcpy(hp(h, b), &oh, 16);
    struct seg s2[] = {{b, 16 + 512, 0}, {ds, 513, W}};
    post(h, s2, 2);
    assert_int_equal(process(h), 1);
    assert_int_equal(take_used(h, NULL), 1);
    assert_int_equal(*(uint8_t *)hp(h, ds + 512), VBLK_S_OK);
    assert_int_equal(h->tb.disk[20 * 512], 0x33);
    assert_int_equal(h->tb.disk[20 * 512 + 511], 0x33);
}

static void malformed_headers_fail_with_ioerr(void **state)
{
    struct h *h = *state;
    up(h);
    uint64_t hdr = mkhdr(h, VBLK_T_IN, 0), st = galloc(h, 1, 0xff);
    struct seg s[] = {{hdr, 8, 0}, {st, 1, W}};
    post(h, s, 2); /* only 8 header bytes */
    assert_int_equal(process(h), 0);
    assert_int_equal(take_used(h, NULL), 1);
    assert_int_equal(*(uint8_t *)hp(h, st), VBLK_S_IOERR);
    /* Header placed in a writable buffer: nothing readable at all. */
    *(uint8_t *)hp(h, st) = 0xff;
    struct seg s2[] = {{hdr, 16, W}, {st, 1, W}};
    post(h, s2, 2);
    assert_int_equal(process(h), 0);
    assert_int_equal(take_used(h, NULL), 1);
    assert_int_equal(*(uint8_t *)hp(h, st), VBLK_S_IOERR);
    /* A data buffer outside guest memory. */
    *(uint8_t *)hp(h, st) = 0xff;
    struct seg s3[] = {{hdr, 16, 0}, {GPA + MEM_LEN - 256, 512, W}, {st, 1, W}};
    post(h, s3, 3);
    assert_int_equal(process(h), 0);
    assert_int_equal(take_used(h, NULL), 1);
    assert_int_equal(*(uint8_t *)hp(h, st), VBLK_S_IOERR);
    assert_false(vblk_queue_broken(&h->q));
    assert_int_equal(h->tb.nsubmit, 0);
}

static void status_without_writable_byte_breaks_queue(void **state)
{
    struct h *h = *state;
    up(h);
    uint64_t d = galloc(h, 512, 0);
    struct seg s[] = {{mkhdr(h, VBLK_T_OUT, 0), 16, 0}, {d, 512, 0}};
    post(h, s, 2);
    assert_int_equal(process(h), -EIO);
    assert_true(vblk_queue_broken(&h->q));
    assert_int_equal(h->used->idx, 0);
    assert_int_equal(vblk_queue_inflight(&h->q), 0);
    assert_int_equal(h->tb.nsubmit, 0);
    assert_int_equal(process(h), -EIO);
    assert_int_equal(vblk_queue_destroy(&h->q), 0);
    assert_int_equal(h->tb.nstop, 1);
}

/* ---- requests: the other types ---- */

static void flush_needs_the_feature(void **state)
{
    struct h *h = *state;
    up(h);
    uint32_t ulen;
    assert_int_equal(rq(h, VBLK_T_FLUSH, 0, 0, 0, 0, &ulen), VBLK_S_OK);
    assert_int_equal(ulen, 1);
    assert_int_equal(h->tb.ntype[VBLK_T_FLUSH], 1);
    h = restart(state);
    bring_up(h, 0, F(RING_PACKED) | F(EVENT_IDX) | F(FLUSH));
    assert_int_equal(rq(h, VBLK_T_FLUSH, 0, 0, 0, 0, NULL), VBLK_S_UNSUPP);
    assert_int_equal(h->tb.nsubmit, 0);
    assert_int_equal(vblk_queue_stats(&h->q)->unsupp, 1);
}

static void get_id_returns_serial_truncated_to_buffer(void **state)
{
    struct h *h = *state;
    up(h);
    uint64_t d = galloc(h, 32, 0xee);
    uint32_t ulen;
    assert_int_equal(rq(h, VBLK_T_GET_ID, 0, d, 32, W, &ulen), VBLK_S_OK);
    assert_int_equal(ulen, 21);
    assert_memory_equal(hp(h, d), SERIAL, 20);
    assert_int_equal(((uint8_t *)hp(h, d))[20], 0xee);
    uint64_t s = galloc(h, 8, 0xee);
    assert_int_equal(rq(h, VBLK_T_GET_ID, 0, s, 8, W, &ulen), VBLK_S_OK);
    assert_int_equal(ulen, 9);
    assert_memory_equal(hp(h, s), SERIAL, 8);
    assert_int_equal(h->tb.nsubmit, 0);
}

static void get_lifetime_needs_feature_and_six_bytes(void **state)
{
    struct h *h = *state;
    up(h);
    uint64_t d = galloc(h, 8, 0xee);
    assert_int_equal(rq(h, VBLK_T_GET_LIFETIME, 0, d, 8, W, NULL), VBLK_S_UNSUPP);
    h = restart(state);
    h->p.lifetime = true;
    h->p.lifetime_info = (struct vblk_lifetime){1, 0x0203, 0x0405};
    up(h);
    d = galloc(h, 8, 0xee);
    uint32_t ulen;
    assert_int_equal(rq(h, VBLK_T_GET_LIFETIME, 0, d, 8, W, &ulen), VBLK_S_OK);
    assert_int_equal(ulen, 7);
    const uint8_t want[8] = {1, 0, 3, 2, 5, 4, 0xee, 0xee};
    assert_memory_equal(hp(h, d), want, 8);
    assert_int_equal(rq(h, VBLK_T_GET_LIFETIME, 0, d, 5, W, &ulen), VBLK_S_IOERR);
    assert_int_equal(ulen, 1);
    assert_int_equal(h->tb.nsubmit, 0);
}

static void unknown_types_are_unsupported(void **state)
{
    struct h *h = *state;
    up(h);
    uint64_t d = galloc(h, 512, 0);
    const uint32_t types[] = {2, 3, 5, 7, 9, 12, 15, 16, 99, UINT32_MAX};
    for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        assert_int_equal(rq(h, types[i], 0, d, 512, W, NULL), VBLK_S_UNSUPP);
    assert_int_equal(h->tb.nsubmit, 0);
    assert_int_equal(vblk_queue_stats(&h->q)->unsupp, 10);
    assert_string_equal(vblk_req_type_name(99), "UNKNOWN");
    assert_string_equal(vblk_req_type_name(VBLK_T_WRITE_ZEROES), "WRITE_ZEROES");
}

#define SEG(s, n, f) ((struct vblk_discard_wz_seg){(s), (n), (f)})

static void range_requests_reach_backend_as_copies(void **state)
{
    struct h *h = *state;
    up(h);
    struct vblk_discard_wz_seg r[2] = {SEG(0, 8, 0), SEG(100, 28, 0)};
    assert_int_equal(rq_ranges(h, VBLK_T_DISCARD, r, 2, 0), VBLK_S_OK);
    assert_int_equal(h->tb.last_nranges, 2);
    assert_int_equal(h->tb.ranges[1].sector, 100);
    assert_int_equal(h->tb.ranges[1].num_sectors, 28);
    assert_int_equal(h->tb.disk[100 * 512], 0);
    r[0] = SEG(4, 64, VBLK_WZ_F_UNMAP);
    assert_int_equal(rq_ranges(h, VBLK_T_WRITE_ZEROES, r, 1, 0), VBLK_S_OK);
    assert_int_equal(h->tb.ranges[0].flags, VBLK_WZ_F_UNMAP);
    assert_int_equal(rq_ranges(h, VBLK_T_SECURE_ERASE, &SEG(96, 32, 0), 1, 0), VBLK_S_OK);
    assert_int_equal(h->tb.ntype[VBLK_T_DISCARD], 1);
    assert_int_equal(h->tb.ntype[VBLK_T_WRITE_ZEROES], 1);
    assert_int_equal(h->tb.ntype[VBLK_T_SECURE_ERASE], 1);
}

/* Linux's virtio_blk puts SECURE_ERASE ranges in a device-writable buffer
 * (type 14 lacks the VIRTIO_BLK_T_OUT bit). Through a bounce buffer
 * (VDUSE) the device would read stale data there, so it must not take
 * ranges from it: IOERR, and nothing reaches the backend. */
static void secure_erase_ranges_in_a_writable_buffer_refused(void **state)
{
    struct h *h = *state;
    up(h);
    uint64_t ga = galloc(h, 32, 0);
    struct vblk_discard_wz_seg seg = SEG(96, 32, 0);
    memcpy(hp(h, ga), &seg, 16);
    assert_int_equal(rq(h, VBLK_T_SECURE_ERASE, 0, ga, 16, W, NULL), VBLK_S_IOERR);
    assert_int_equal(h->tb.ntype[VBLK_T_SECURE_ERASE], 0);
}

static void write_zeroes_unmap_dropped_when_not_allowed(void **state)
{
    struct h *h = *state;
    h->p.write_zeroes_may_unmap = false;
    up(h);
    assert_int_equal(rq_ranges(h, VBLK_T_WRITE_ZEROES, &SEG(0, 1, VBLK_WZ_F_UNMAP), 1, 0),
                     VBLK_S_OK);
    assert_int_equal(h->tb.last_nranges, 1);
    assert_int_equal(h->tb.ranges[0].flags, 0);
}

static const uint32_t range_types[] = {VBLK_T_DISCARD, VBLK_T_WRITE_ZEROES, VBLK_T_SECURE_ERASE};

static void range_requests_need_their_feature(void **state)
{
    struct h *h = *state;
    bring_up(h, F(VERSION_1), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(rq_ranges(h, range_types[i], &SEG(0, 1, 0), 1, 0), VBLK_S_UNSUPP);
    assert_int_equal(h->tb.nsubmit, 0);
}

static void range_flags_unknown_or_unmap_misuse_are_unsupported(void **state)
{
    struct h *h = *state;
    up(h);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rq_ranges(h, range_types[i], &SEG(0, 1, 2), 1, 0), VBLK_S_UNSUPP);
        assert_int_equal(rq_ranges(h, range_types[i], &SEG(0, 1, 1u << 31), 1, 0), VBLK_S_UNSUPP);
    }
    assert_int_equal(rq_ranges(h, VBLK_T_DISCARD, &SEG(0, 1, VBLK_WZ_F_UNMAP), 1, 0),
                     VBLK_S_UNSUPP);
    assert_int_equal(rq_ranges(h, VBLK_T_SECURE_ERASE, &SEG(0, 1, VBLK_WZ_F_UNMAP), 1, 0),
                     VBLK_S_UNSUPP);
    /* A bad flag in the second range fails the whole request. */
    struct vblk_discard_wz_seg r[2] = {SEG(0, 1, 0), SEG(8, 1, 4)};
    assert_int_equal(rq_ranges(h, VBLK_T_WRITE_ZEROES, r, 2, 0), VBLK_S_UNSUPP);
    assert_int_equal(h->tb.nsubmit, 0);
}

static void range_limits_fail_with_ioerr(void **state)
{
    struct h *h = *state;
    up(h);
    struct vblk_discard_wz_seg three[3] = {SEG(0, 1, 0), SEG(2, 1, 0), SEG(4, 1, 0)};
    assert_int_equal(rq_ranges(h, VBLK_T_DISCARD, three, 3, 0), VBLK_S_IOERR);
    assert_int_equal(rq_ranges(h, VBLK_T_SECURE_ERASE, three, 2, 0), VBLK_S_IOERR);
    assert_int_equal(rq_ranges(h, VBLK_T_DISCARD, &SEG(0, 65, 0), 1, 0), VBLK_S_IOERR);
    assert_int_equal(rq_ranges(h, VBLK_T_SECURE_ERASE, &SEG(0, 33, 0), 1, 0), VBLK_S_IOERR);
    for (int i = 0; i < 3; i++) {
        uint32_t t = range_types[i];
        assert_int_equal(rq_ranges(h, t, &SEG(SECTORS - 8, 9, 0), 1, 0), VBLK_S_IOERR);
        assert_int_equal(rq_ranges(h, t, &SEG(SECTORS + 1, 0, 0), 1, 0), VBLK_S_IOERR);
        assert_int_equal(rq_ranges(h, t, &SEG(UINT64_MAX - 1, 4, 0), 1, 0), VBLK_S_IOERR);
        assert_int_equal(rq_ranges(h, t, &SEG(1ULL << 63, 1, 0), 1, 0), VBLK_S_IOERR);
        /* The payload is whole 16-byte segments, at least one. */
        assert_int_equal(rq_ranges(h, t, &SEG(0, 1, 0), 1, 24), VBLK_S_IOERR);
        assert_int_equal(rq_ranges(h, t, &SEG(0, 1, 0), 1, 8), VBLK_S_IOERR);
        assert_int_equal(rq(h, t, 0, 0, 0, 0, NULL), VBLK_S_IOERR);
    }
    assert_int_equal(h->tb.nsubmit, 0);
    /* Up to the last sector is fine. */
    assert_int_equal(rq_ranges(h, VBLK_T_DISCARD, &SEG(SECTORS - 8, 8, 0), 1, 0), VBLK_S_OK);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(offer_has_core_bits_and_follows_backend),
        T(set_features_needs_subset_with_version_1),
        T(backend_caps_narrow_the_offer),
        T(read_only_backend_forces_read_only),
        T(features_off_withholds_bits),
        T(inconsistent_params_are_rejected),
        T(config_fields_are_little_endian_at_spec_offsets),
        T(config_reads_outside_space_fail),
        T(config_writes_only_writeback_with_wce),
        T(in_reads_disk_and_used_len_counts_data_and_status),
        T(out_writes_disk_and_used_len_is_status_only),
        T(data_may_span_up_to_seg_max_descriptors),
        T(size_max_limits_each_data_descriptor),
        T(rw_outside_capacity_or_unaligned_fails),
        T(header_split_or_joined_with_data_works),
        T(malformed_headers_fail_with_ioerr),
        T(status_without_writable_byte_breaks_queue),
        T(flush_needs_the_feature),
        T(get_id_returns_serial_truncated_to_buffer),
        T(get_lifetime_needs_feature_and_six_bytes),
        T(unknown_types_are_unsupported),
        T(range_requests_reach_backend_as_copies),
        T(secure_erase_ranges_in_a_writable_buffer_refused),
        T(write_zeroes_unmap_dropped_when_not_allowed),
        T(range_requests_need_their_feature),
        T(range_flags_unknown_or_unmap_misuse_are_unsupported),
        T(range_limits_fail_with_ioerr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
