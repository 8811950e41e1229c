/* SPDX-License-Identifier: MIT */
/*
 * Zoned devices (virtio 1.2 5.2.6): the zone state machine of zone.h, every
 * zone request through real rings (loopback) to the memory and file
 * backends, the bad-input list (append to a full zone, too many open zones,
 * report buffers down to one byte, reset of a conventional zone, appends
 * racing on two queues), persistence of a file's zones, and a V1 backend
 * that the library must not read past.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "virtioblk/virtioblk.h"

#define ZS      64u /* sectors per zone */
#define NZ      8u
#define CAP     (ZS * NZ)
#define F(b)    VBLK_BIT(VBLK_F_##b)
#define SECT(n) ((n)*512u)

/* ---- the table alone ---- */

struct tbl {
    struct vblk_zone_table t;
    struct vblk_zone_slot slots[NZ + 1];
};

static void tbl_init(struct tbl *x, uint32_t conv, uint32_t max_open, uint32_t max_active)
{
    struct vblk_zoned_opts o = {.zone_sectors = ZS,
                                .nr_conv = conv,
                                .max_open = max_open,
                                .max_active = max_active,
                                .max_append_sectors = 16};
    assert_int_equal(vblk_zoned_opts_check(&o, CAP), 0);
    assert_int_equal(vblk_zone_table_init(&x->t, CAP, &o, x->slots, sizeof(x->slots)), 0);
}

static uint8_t zstate(struct tbl *x, uint32_t i)
{
    struct vblk_zone z;
    assert_int_equal(vblk_zone_table_get(&x->t, i, &z), 0);
    return z.state;
}

static uint64_t zwp(struct tbl *x, uint32_t i)
{
    struct vblk_zone z;
    assert_int_equal(vblk_zone_table_get(&x->t, i, &z), 0);
    return z.wp;
}

static uint8_t wr(struct tbl *x, uint64_t sector, uint64_t n)
{
    uint64_t at;
    uint8_t st = vblk_zone_table_write_begin(&x->t, false, sector, n, &at);
    if (st == VBLK_S_OK)
        vblk_zone_table_write_end(&x->t, at, n, true);
    return st;
}

static void opts_are_checked(void **state)
{
    (void)state;
    struct vblk_zoned_opts o = {.zone_sectors = 100};
    assert_int_equal(vblk_zoned_opts_check(&o, CAP), -EINVAL); /* not a power of two */
    o = (struct vblk_zoned_opts){.zone_sectors = ZS, .nr_conv = NZ + 1};
    assert_int_equal(vblk_zoned_opts_check(&o, CAP), -EINVAL);
    o = (struct vblk_zoned_opts){.zone_sectors = ZS, .max_open = 4, .max_active = 2};
    assert_int_equal(vblk_zoned_opts_check(&o, CAP), -EINVAL);
    o = (struct vblk_zoned_opts){
        .zone_sectors = ZS, .write_granularity = 4096, .max_append_sectors = 4};
    assert_int_equal(vblk_zoned_opts_check(&o, CAP), -EINVAL); /* append < granularity */
    o = (struct vblk_zoned_opts){.zone_sectors = ZS, .model = 7};
    assert_int_equal(vblk_zoned_opts_check(&o, CAP), -EINVAL);
    o = (struct vblk_zoned_opts){0};
    assert_int_equal(vblk_zoned_opts_check(&o, 1u << 21), 0);
    assert_int_equal(o.zone_sectors, 1u << 19);
    assert_int_equal(o.model, VBLK_Z_HM);
    /* A runt last zone. */
    assert_int_equal(vblk_zone_count(CAP + 1, ZS), NZ + 1);
}

static void state_machine(void **state)
{
    (void)state;
    struct tbl x;
    tbl_init(&x, 1, 0, 0);
    assert_int_equal(zstate(&x, 0), VBLK_ZS_NOT_WP);
    assert_int_equal(zstate(&x, 1), VBLK_ZS_EMPTY);
    /* EMPTY -> IOPEN by a write at the write pointer; not at it: UNALIGNED_WP. */
    assert_int_equal(wr(&x, ZS + 8, 8), VBLK_S_ZONE_UNALIGNED_WP);
    assert_int_equal(wr(&x, ZS, 8), VBLK_S_OK);
    assert_int_equal(zstate(&x, 1), VBLK_ZS_IOPEN);
    assert_int_equal(zwp(&x, 1), ZS + 8);
    assert_int_equal(wr(&x, ZS, 8), VBLK_S_ZONE_UNALIGNED_WP);
    /* IOPEN -> CLOSED -> EOPEN -> CLOSED -> IOPEN */
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_CLOSE, ZS), VBLK_S_OK);
    assert_int_equal(zstate(&x, 1), VBLK_ZS_CLOSED);
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_CLOSE, ZS), VBLK_S_OK);
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_OPEN, ZS), VBLK_S_OK);
    assert_int_equal(zstate(&x, 1), VBLK_ZS_EOPEN);
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_OPEN, ZS), VBLK_S_OK);
    assert_int_equal(wr(&x, ZS + 8, 8), VBLK_S_OK);
    assert_int_equal(zstate(&x, 1), VBLK_ZS_EOPEN); /* a write keeps it explicitly open */
    /* EOPEN at the zone start closes to EMPTY. */
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_OPEN, 2 * ZS), VBLK_S_OK);
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_CLOSE, 2 * ZS), VBLK_S_OK);
    assert_int_equal(zstate(&x, 2), VBLK_ZS_EMPTY);
    /* Closing an empty zone is not a transition. */
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_CLOSE, 2 * ZS),
                     VBLK_S_ZONE_INVALID_CMD);
    /* FINISH -> FULL; writes then fail; OPEN of a full zone fails. */
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_FINISH, ZS), VBLK_S_OK);
    assert_int_equal(zstate(&x, 1), VBLK_ZS_FULL);
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_FINISH, ZS), VBLK_S_OK);
    assert_int_equal(wr(&x, 2 * ZS - 8, 8), VBLK_S_ZONE_INVALID_CMD);
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_OPEN, ZS), VBLK_S_ZONE_INVALID_CMD);
    /* Writing to the capacity makes it FULL too. */
    assert_int_equal(wr(&x, 3 * ZS, ZS), VBLK_S_OK);
    assert_int_equal(zstate(&x, 3), VBLK_ZS_FULL);
    /* RESET -> EMPTY; RESET of an empty zone is fine. */
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_RESET, ZS), VBLK_S_OK);
    assert_int_equal(zstate(&x, 1), VBLK_ZS_EMPTY);
    assert_int_equal(zwp(&x, 1), ZS);
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_RESET, ZS), VBLK_S_OK);
    /* RESET_ALL empties every sequential zone. */
    assert_int_equal(wr(&x, 4 * ZS, 8), VBLK_S_OK);
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_RESET_ALL, 0), VBLK_S_OK);
    for (uint32_t i = 1; i < NZ; i++) {
        assert_int_equal(zstate(&x, i), VBLK_ZS_EMPTY);
        assert_int_equal(zwp(&x, i), i * ZS);
    }
    /* Zone operations need a zone start and a sequential zone. */
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_OPEN, ZS + 1), VBLK_S_ZONE_INVALID_CMD);
    for (uint32_t t = VBLK_T_ZONE_OPEN; t <= VBLK_T_ZONE_RESET; t += 2)
        assert_int_equal(vblk_zone_table_mgmt(&x.t, t, 0), VBLK_S_ZONE_INVALID_CMD);
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_OPEN, CAP), VBLK_S_ZONE_INVALID_CMD);
}

static void writes_and_reads_follow_the_zone_rules(void **state)
{
    (void)state;
    struct tbl x;
    tbl_init(&x, 2, 0, 0);
    uint64_t at, valid;
    /* Conventional zones: anywhere, and across into the next conventional
     * zone, but not into a sequential one; no appends. */
    assert_int_equal(wr(&x, 5, 3), VBLK_S_OK);
    assert_int_equal(wr(&x, ZS - 4, 8), VBLK_S_OK);
    assert_int_equal(wr(&x, 2 * ZS - 4, 8), VBLK_S_ZONE_INVALID_CMD);
    assert_int_equal(vblk_zone_table_write_begin(&x.t, true, 0, 8, &at), VBLK_S_ZONE_INVALID_CMD);
    /* A sequential write past the zone's end. */
    assert_int_equal(wr(&x, 2 * ZS, ZS + 8), VBLK_S_ZONE_INVALID_CMD);
    /* Append at the write pointer; append not at a zone start fails. */
    assert_int_equal(vblk_zone_table_write_begin(&x.t, true, 2 * ZS, 8, &at), VBLK_S_OK);
    assert_int_equal(at, 2 * ZS);
    vblk_zone_table_write_end(&x.t, at, 8, true);
    assert_int_equal(vblk_zone_table_write_begin(&x.t, true, 2 * ZS + 8, 8, &at),
                     VBLK_S_ZONE_INVALID_CMD);
    /* Reads: conventional all valid; sequential up to the write pointer. */
    assert_int_equal(vblk_zone_table_read(&x.t, 0, 16, &valid), VBLK_S_OK);
    assert_int_equal(valid, 16);
    assert_int_equal(vblk_zone_table_read(&x.t, 2 * ZS + 4, 16, &valid), VBLK_S_OK);
    assert_int_equal(valid, 4);
    assert_int_equal(vblk_zone_table_read(&x.t, 3 * ZS, 16, &valid), VBLK_S_OK);
    assert_int_equal(valid, 0);
    assert_int_equal(vblk_zone_table_read(&x.t, 3 * ZS - 8, 16, &valid), VBLK_S_ZONE_INVALID_CMD);
    /* A failed write gives its range back when it was the last one. */
    assert_int_equal(vblk_zone_table_write_begin(&x.t, false, 2 * ZS + 8, 8, &at), VBLK_S_OK);
    vblk_zone_table_write_end(&x.t, at, 8, false);
    assert_int_equal(zwp(&x, 2), 2 * ZS + 8);
    /* Read-only: reads yes, writes and operations no; offline: nothing. */
    assert_int_equal(vblk_zone_table_set_condition(&x.t, 2, VBLK_ZS_RDONLY), 0);
    assert_int_equal(vblk_zone_table_read(&x.t, 2 * ZS, 8, &valid), VBLK_S_OK);
    assert_int_equal(valid, 8);
    assert_int_equal(wr(&x, 2 * ZS + 8, 8), VBLK_S_ZONE_INVALID_CMD);
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_RESET, 2 * ZS),
                     VBLK_S_ZONE_INVALID_CMD);
    assert_int_equal(vblk_zone_table_set_condition(&x.t, 2, VBLK_ZS_OFFLINE), 0);
    assert_int_equal(vblk_zone_table_read(&x.t, 2 * ZS, 8, &valid), VBLK_S_ZONE_INVALID_CMD);
    assert_int_equal(vblk_zone_table_set_condition(&x.t, 2, VBLK_ZS_RDONLY), -EINVAL);
    assert_int_equal(vblk_zone_table_set_condition(&x.t, 0, VBLK_ZS_OFFLINE), -EINVAL);
    /* RESET_ALL leaves the failed zone alone. */
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_RESET_ALL, 0), VBLK_S_OK);
    assert_int_equal(zstate(&x, 2), VBLK_ZS_OFFLINE);
}

static void granularity(void **state)
{
    (void)state;
    struct tbl x;
    struct vblk_zoned_opts o = {.zone_sectors = ZS, .write_granularity = 4096};
    assert_int_equal(vblk_zoned_opts_check(&o, CAP), 0);
    assert_int_equal(vblk_zone_table_init(&x.t, CAP, &o, x.slots, sizeof(x.slots)), 0);
    assert_int_equal(wr(&x, 0, 4), VBLK_S_ZONE_UNALIGNED_WP);
    assert_int_equal(wr(&x, 0, 8), VBLK_S_OK);
}

static void open_and_active_limits(void **state)
{
    (void)state;
    struct tbl x;
    tbl_init(&x, 0, 2, 3);
    /* Two explicit opens fill the open limit; a third fails. */
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_OPEN, 0), VBLK_S_OK);
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_OPEN, ZS), VBLK_S_OK);
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_OPEN, 2 * ZS),
                     VBLK_S_ZONE_OPEN_RESOURCE);
    assert_int_equal(zstate(&x, 2), VBLK_ZS_EMPTY);
    /* Explicitly open zones are not closed for an implicit open either. */
    assert_int_equal(wr(&x, 2 * ZS, 8), VBLK_S_ZONE_OPEN_RESOURCE);
    assert_int_equal(zwp(&x, 2), 2 * ZS);
    /* Close one (it was written: CLOSED, still active), write elsewhere. */
    assert_int_equal(wr(&x, 0, 8), VBLK_S_OK);
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_CLOSE, 0), VBLK_S_OK);
    assert_int_equal(wr(&x, 2 * ZS, 8), VBLK_S_OK); /* active: 0, 1, 2 */
    /* Active limit reached: a fourth zone cannot become active, and the
     * error is ACTIVE_RESOURCE even though the open limit is hit too. */
    assert_int_equal(wr(&x, 3 * ZS, 8), VBLK_S_ZONE_ACTIVE_RESOURCE);
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_OPEN, 3 * ZS),
                     VBLK_S_ZONE_ACTIVE_RESOURCE);
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_FINISH, 3 * ZS),
                     VBLK_S_ZONE_ACTIVE_RESOURCE);
    /* Finishing frees an active resource. */
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_FINISH, ZS), VBLK_S_OK);
    /* Zone 2 is implicitly open, zone 0 closed: writing zone 0 again at the
     * open limit (1 explicit + 1 implicit) closes zone 2 implicitly. */
    assert_int_equal(vblk_zone_table_mgmt(&x.t, VBLK_T_ZONE_OPEN, 3 * ZS), VBLK_S_OK);
    assert_int_equal(wr(&x, 8, 8), VBLK_S_OK);
    assert_int_equal(zstate(&x, 0), VBLK_ZS_IOPEN);
    assert_int_equal(zstate(&x, 2), VBLK_ZS_CLOSED);
    assert_int_equal(zstate(&x, 3), VBLK_ZS_EOPEN);
}

static void restore_from_metadata(void **state)
{
    (void)state;
    struct tbl x;
    tbl_init(&x, 1, 0, 1);
    assert_int_equal(vblk_zone_table_restore(&x.t, 1, ZS + 8, 0), 0);
    assert_int_equal(zstate(&x, 1), VBLK_ZS_CLOSED);
    assert_int_equal(vblk_zone_table_restore(&x.t, 2, 3 * ZS, 0), 0);
    assert_int_equal(zstate(&x, 2), VBLK_ZS_FULL);
    assert_int_equal(vblk_zone_table_restore(&x.t, 3, 3 * ZS, VBLK_ZS_OFFLINE), 0);
    assert_int_equal(zstate(&x, 3), VBLK_ZS_OFFLINE);
    /* Outside the zone, a conventional zone with a write pointer, and a
     * second active zone beyond max_active are refused. */
    assert_int_equal(vblk_zone_table_restore(&x.t, 4, 3 * ZS, 0), -EINVAL);
    assert_int_equal(vblk_zone_table_restore(&x.t, 0, 8, 0), -EINVAL);
    assert_int_equal(vblk_zone_table_restore(&x.t, 4, 4 * ZS + 8, 0), -EINVAL);
    assert_int_equal(vblk_zone_table_restore(&x.t, 4, 4 * ZS, 7), -EINVAL);
}

/* ---- through the device ---- */

struct dz {
    struct vblk_backend be;
    struct vblk_loopback *lb;
    uint8_t *buf;
};

static void dz_up(struct dz *d, const struct vblk_zoned_opts *o, uint16_t queues)
{
    memset(d, 0, sizeof(*d));
    assert_int_equal(vblk_backend_memory_create_zoned(SECT(CAP), o, &d->be), 0);
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, SECT(CAP));
    p.num_queues = queues;
    assert_int_equal(vblk_loopback_create(&p, &d->be, NULL, &d->lb), 0);
    d->buf = vblk_loopback_alloc(d->lb, 1u << 16);
    assert_non_null(d->buf);
}

static void dz_down(struct dz *d)
{
    vblk_loopback_destroy(d->lb);
    vblk_backend_destroy(&d->be);
}

static int io(struct dz *d, uint32_t type, uint64_t sector, size_t len)
{
    return vblk_loopback_rw(d->lb, 0, type, sector, len ? d->buf : NULL, len);
}

static void device_offers_zoned(void **state)
{
    (void)state;
    struct dz d;
    struct vblk_zoned_opts o = {
        .zone_sectors = ZS, .nr_conv = 1, .max_open = 3, .max_active = 5, .max_append_sectors = 16};
    dz_up(&d, &o, 1);
    struct vblk_dev *dev = vblk_loopback_blk(d.lb);
    uint64_t f = vblk_dev_features(dev);
    assert_true(f & F(ZONED));
    assert_false(f & (F(DISCARD) | F(WRITE_ZEROES) | F(SECURE_ERASE)));
    assert_true(vblk_dev_driver_features(dev) & F(ZONED));
    assert_int_equal(vblk_dev_config_size(dev), 96);
    struct vblk_config c;
    assert_int_equal(vblk_dev_config_read(dev, 0, &c, sizeof(c)), 0);
    assert_int_equal(c.zoned.zone_sectors, ZS);
    assert_int_equal(c.zoned.max_open_zones, 3);
    assert_int_equal(c.zoned.max_active_zones, 5);
    assert_int_equal(c.zoned.max_append_sectors, 16);
    assert_int_equal(c.zoned.write_granularity, 512);
    assert_int_equal(c.zoned.model, VBLK_Z_HM);
    /* virtio 1.2 5.2.5.2: host-managed without ZONED: FEATURES_OK fails. */
    assert_int_equal(vblk_dev_set_features(dev, f & ~F(ZONED)), -EINVAL);
    dz_down(&d);
}

static void host_aware_without_zoned_is_a_regular_disk(void **state)
{
    (void)state;
    struct vblk_backend be;
    struct vblk_zoned_opts o = {.zone_sectors = ZS, .model = VBLK_Z_HA};
    assert_int_equal(vblk_backend_memory_create_zoned(SECT(CAP), &o, &be), 0);
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, SECT(CAP));
    struct vblk_dev dev;
    assert_int_equal(vblk_dev_init(&dev, &p, &be), 0);
    uint64_t f = vblk_dev_features(&dev);
    assert_int_equal(vblk_dev_set_features(&dev, f & ~F(ZONED)), 0);
    struct vblk_config c;
    assert_int_equal(vblk_dev_config_read(&dev, 0, &c, sizeof(c)), 0);
    assert_int_equal(c.zoned.zone_sectors, 0);
    assert_int_equal(c.zoned.model, 0);
    /* Not offering ZONED at all for host-managed is refused at init. */
    vblk_backend_destroy(&be);
    o.model = VBLK_Z_HM;
    assert_int_equal(vblk_backend_memory_create_zoned(SECT(CAP), &o, &be), 0);
    p.features_off |= F(ZONED);
    assert_int_equal(vblk_dev_init(&dev, &p, &be), -EINVAL);
    vblk_backend_destroy(&be);
}

static void zone_requests_end_to_end(void **state)
{
    (void)state;
    struct dz d;
    struct vblk_zoned_opts o = {.zone_sectors = ZS, .nr_conv = 1, .max_append_sectors = 16};
    dz_up(&d, &o, 1);
    /* Write at the write pointer, read back; read past it gives zeros. */
    memset(d.buf, 0xa5, SECT(8));
    assert_int_equal(io(&d, VBLK_T_OUT, ZS, SECT(8)), VBLK_S_OK);
    memset(d.buf, 0x11, SECT(16));
    assert_int_equal(io(&d, VBLK_T_IN, ZS, SECT(16)), VBLK_S_OK);
    for (unsigned i = 0; i < SECT(16); i++)
        assert_int_equal(d.buf[i], i < SECT(8) ? 0xa5 : 0);
    /* Unaligned write. */
    assert_int_equal(io(&d, VBLK_T_OUT, ZS + 16, SECT(8)), VBLK_S_ZONE_UNALIGNED_WP);
    /* Append: the sector comes back. */
    uint64_t at = 0;
    memset(d.buf, 0x5a, SECT(8));
    assert_int_equal(vblk_loopback_zone_append(d.lb, 0, ZS, d.buf, SECT(8), &at), VBLK_S_OK);
    assert_int_equal(at, ZS + 8);
    assert_int_equal(vblk_loopback_zone_append(d.lb, 0, ZS, d.buf, SECT(8), &at), VBLK_S_OK);
    assert_int_equal(at, ZS + 16);
    /* Append: bigger than max_append_sectors, not a zone start, to a
     * conventional zone, unaligned size. */
    assert_int_equal(vblk_loopback_zone_append(d.lb, 0, ZS, d.buf, SECT(17), NULL),
                     VBLK_S_ZONE_INVALID_CMD);
    assert_int_equal(vblk_loopback_zone_append(d.lb, 0, ZS + 8, d.buf, SECT(8), NULL),
                     VBLK_S_ZONE_INVALID_CMD);
    assert_int_equal(vblk_loopback_zone_append(d.lb, 0, 0, d.buf, SECT(8), NULL),
                     VBLK_S_ZONE_INVALID_CMD);
    assert_int_equal(vblk_loopback_zone_append(d.lb, 0, ZS, d.buf, 100, NULL), VBLK_S_IOERR);
    /* Zone operations. */
    assert_int_equal(io(&d, VBLK_T_ZONE_OPEN, 2 * ZS, 0), VBLK_S_OK);
    assert_int_equal(io(&d, VBLK_T_ZONE_CLOSE, ZS, 0), VBLK_S_OK);
    assert_int_equal(io(&d, VBLK_T_ZONE_FINISH, 3 * ZS, 0), VBLK_S_OK);
    assert_int_equal(io(&d, VBLK_T_ZONE_OPEN, ZS + 1, 0), VBLK_S_ZONE_INVALID_CMD);
    assert_int_equal(io(&d, VBLK_T_ZONE_OPEN, CAP, 0), VBLK_S_ZONE_INVALID_CMD);
    /* Reset of a conventional zone. */
    assert_int_equal(io(&d, VBLK_T_ZONE_RESET, 0, 0), VBLK_S_ZONE_INVALID_CMD);
    /* Append to a full zone. */
    assert_int_equal(vblk_loopback_zone_append(d.lb, 0, 3 * ZS, d.buf, SECT(8), NULL),
                     VBLK_S_ZONE_INVALID_CMD);
    /* Report everything. */
    size_t rl = 64 + 64 * NZ;
    memset(d.buf, 0xee, rl);
    assert_int_equal(io(&d, VBLK_T_ZONE_REPORT, 0, rl), VBLK_S_OK);
    struct vblk_zone_report h;
    memcpy(&h, d.buf, sizeof(h));
    assert_int_equal(h.nr_zones, NZ);
    for (unsigned i = 0; i < sizeof(h.reserved); i++)
        assert_int_equal(h.reserved[i], 0);
    struct vblk_zone_descriptor z[NZ];
    memcpy(z, d.buf + 64, sizeof(z));
    static const uint8_t want[NZ] = {VBLK_ZS_NOT_WP, VBLK_ZS_CLOSED, VBLK_ZS_EOPEN, VBLK_ZS_FULL,
                                     VBLK_ZS_EMPTY,  VBLK_ZS_EMPTY,  VBLK_ZS_EMPTY, VBLK_ZS_EMPTY};
    for (unsigned i = 0; i < NZ; i++) {
        assert_int_equal(z[i].z_start, i * ZS);
        assert_int_equal(z[i].z_cap, ZS);
        assert_int_equal(z[i].z_type, i ? VBLK_ZT_SWR : VBLK_ZT_CONV);
        assert_int_equal(z[i].z_state, want[i]);
    }
    assert_int_equal(z[1].z_wp, ZS + 24);
    /* Reset, then the data is gone (reads as zeros). */
    assert_int_equal(io(&d, VBLK_T_ZONE_RESET, ZS, 0), VBLK_S_OK);
    memset(d.buf, 0x11, SECT(8));
    assert_int_equal(io(&d, VBLK_T_IN, ZS, SECT(8)), VBLK_S_OK);
    for (unsigned i = 0; i < SECT(8); i++)
        assert_int_equal(d.buf[i], 0);
    assert_int_equal(io(&d, VBLK_T_ZONE_RESET_ALL, 0, 0), VBLK_S_OK);
    assert_int_equal(io(&d, VBLK_T_ZONE_REPORT, 0, rl), VBLK_S_OK);
    memcpy(z, d.buf + 64, sizeof(z));
    for (unsigned i = 1; i < NZ; i++)
        assert_int_equal(z[i].z_state, VBLK_ZS_EMPTY);
    /* Zone types without ZONED, and DISCARD on a zoned device: UNSUPP. */
    assert_int_equal(io(&d, VBLK_T_DISCARD, 0, 16), VBLK_S_UNSUPP);
    dz_down(&d);
}

static void report_buffers_of_every_size(void **state)
{
    (void)state;
    struct dz d;
    struct vblk_zoned_opts o = {.zone_sectors = ZS, .nr_conv = 2};
    dz_up(&d, &o, 1);
    /* The status byte alone (a 1-byte in buffer): nothing fits. */
    assert_int_equal(io(&d, VBLK_T_ZONE_REPORT, 0, 0), VBLK_S_ZONE_INVALID_CMD);
    for (size_t len = 1; len <= 64 + 64 * (NZ + 1) + 7; len += len < 200 ? 1 : 13) {
        memset(d.buf, 0xee, len + 64);
        uint64_t from = (len % NZ) * ZS + len % 5; /* any sector of the zone */
        int st = io(&d, VBLK_T_ZONE_REPORT, from, len);
        if (len < 64) {
            assert_int_equal(st, VBLK_S_ZONE_INVALID_CMD);
            continue;
        }
        assert_int_equal(st, VBLK_S_OK);
        uint64_t n;
        memcpy(&n, d.buf, 8);
        uint64_t fit = (len - 64) / 64, left = NZ - from / ZS;
        assert_int_equal(n, fit < left ? fit : left);
        for (uint64_t i = 0; i < n; i++) {
            struct vblk_zone_descriptor z;
            memcpy(&z, d.buf + 64 + i * 64, sizeof(z));
            assert_int_equal(z.z_start, (from / ZS + i) * ZS);
        }
        /* Nothing written past the whole descriptors... */
        for (size_t b = 64 + n * 64; b < len; b++)
            assert_int_equal(d.buf[b], 0xee);
        /* ...and nothing past the buffer. */
        for (size_t b = len; b < len + 64; b++)
            assert_int_equal(d.buf[b], 0xee);
    }
    assert_int_equal(io(&d, VBLK_T_ZONE_REPORT, CAP, 128), VBLK_S_ZONE_INVALID_CMD);
    dz_down(&d);
}

static void zone_types_unsupported_on_a_regular_disk(void **state)
{
    (void)state;
    struct vblk_backend be;
    assert_int_equal(vblk_backend_memory_create(SECT(CAP), &be), 0);
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, SECT(CAP));
    struct vblk_loopback *lb;
    assert_int_equal(vblk_loopback_create(&p, &be, NULL, &lb), 0);
    assert_false(vblk_dev_features(vblk_loopback_blk(lb)) & F(ZONED));
    assert_int_equal(vblk_dev_config_size(vblk_loopback_blk(lb)), 72);
    uint8_t *buf = vblk_loopback_alloc(lb, 4096);
    assert_int_equal(vblk_loopback_rw(lb, 0, VBLK_T_ZONE_REPORT, 0, buf, 4096), VBLK_S_UNSUPP);
    for (uint32_t t = VBLK_T_ZONE_OPEN; t <= VBLK_T_ZONE_RESET_ALL; t += 2)
        assert_int_equal(vblk_loopback_rw(lb, 0, t, 0, NULL, 0), VBLK_S_UNSUPP);
    assert_int_equal(vblk_loopback_zone_append(lb, 0, 0, buf, 512, NULL), VBLK_S_UNSUPP);
    vblk_loopback_destroy(lb);
    vblk_backend_destroy(&be);
}

/* Two queues on two threads append to one zone: distinct, contiguous
 * ranges, each holding its own data. */
struct racer {
    struct dz *d;
    uint16_t q;
    uint8_t *buf;
    uint64_t at[64];
    unsigned n;
    int bad;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    for (unsigned i = 0; i < 64; i++) {
        memset(r->buf, (int)(r->q * 64 + i + 1), 512);
        uint64_t at;
        int st = vblk_loopback_zone_append(r->d->lb, r->q, 2 * ZS * 4, r->buf, 512, &at);
        if (st == VBLK_S_ZONE_INVALID_CMD)
            break; /* the zone is full */
        if (st != VBLK_S_OK) {
            r->bad = st;
            break;
        }
        r->at[r->n++] = at;
    }
    return NULL;
}

static void appends_race_on_two_queues(void **state)
{
    (void)state;
    struct dz d;
    /* Zone 8 of 16 holds 512 sectors: more than both threads append. */
    memset(&d, 0, sizeof(d));
    struct vblk_zoned_opts o = {.zone_sectors = 2 * ZS * 4, .max_append_sectors = 8};
    assert_int_equal(vblk_backend_memory_create_zoned(SECT(CAP * 16), &o, &d.be), 0);
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, SECT(CAP * 16));
    p.num_queues = 2;
    assert_int_equal(vblk_loopback_create(&p, &d.be, NULL, &d.lb), 0);
    struct racer r[2] = {{.d = &d, .q = 0}, {.d = &d, .q = 1}};
    r[0].buf = vblk_loopback_alloc(d.lb, 4096);
    r[1].buf = vblk_loopback_alloc(d.lb, 4096);
    d.buf = vblk_loopback_alloc(d.lb, 1u << 16);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, race, &r[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(r[0].bad, 0);
    assert_int_equal(r[1].bad, 0);
    assert_int_equal(r[0].n + r[1].n, 128);
    /* Every sector of [start, start + 128) taken exactly once. */
    uint64_t start = 2 * ZS * 4;
    uint8_t seen[128] = {0};
    for (int t = 0; t < 2; t++)
        for (unsigned i = 0; i < r[t].n; i++) {
            uint64_t s = r[t].at[i] - start;
            assert_true(s < 128);
            assert_int_equal(seen[s], 0);
            seen[s] = (uint8_t)(t * 64 + i + 1);
        }
    assert_int_equal(vblk_loopback_rw(d.lb, 0, VBLK_T_IN, start, d.buf, SECT(128)), VBLK_S_OK);
    for (unsigned s = 0; s < 128; s++)
        for (unsigned b = 0; b < 512; b++)
            assert_int_equal(d.buf[s * 512 + b], seen[s]);
    /* The write pointer is right behind them. */
    assert_int_equal(vblk_loopback_rw(d.lb, 0, VBLK_T_ZONE_REPORT, start, d.buf, 128), VBLK_S_OK);
    struct vblk_zone_descriptor z;
    memcpy(&z, d.buf + 64, sizeof(z));
    assert_int_equal(z.z_wp, start + 128);
    assert_int_equal(z.z_state, VBLK_ZS_IOPEN);
    dz_down(&d);
}

static void too_many_open_zones_through_the_device(void **state)
{
    (void)state;
    struct dz d;
    struct vblk_zoned_opts o = {.zone_sectors = ZS, .max_open = 2, .max_active = 2};
    dz_up(&d, &o, 1);
    assert_int_equal(io(&d, VBLK_T_ZONE_OPEN, 0, 0), VBLK_S_OK);
    assert_int_equal(io(&d, VBLK_T_ZONE_OPEN, ZS, 0), VBLK_S_OK);
    assert_int_equal(io(&d, VBLK_T_ZONE_OPEN, 2 * ZS, 0), VBLK_S_ZONE_ACTIVE_RESOURCE);
    assert_int_equal(io(&d, VBLK_T_OUT, 2 * ZS, SECT(1)), VBLK_S_ZONE_ACTIVE_RESOURCE);
    assert_int_equal(io(&d, VBLK_T_ZONE_CLOSE, ZS, 0), VBLK_S_OK); /* empty again */
    assert_int_equal(io(&d, VBLK_T_OUT, 2 * ZS, SECT(1)), VBLK_S_OK);
    dz_down(&d);
}

static void fault_injection(void **state)
{
    (void)state;
    struct dz d;
    struct vblk_zoned_opts o = {.zone_sectors = ZS};
    dz_up(&d, &o, 1);
    struct vblk_zone_table *t = vblk_backend_zone_table(&d.be);
    assert_non_null(t);
    assert_int_equal(vblk_zone_table_set_condition(t, 1, VBLK_ZS_OFFLINE), 0);
    assert_int_equal(io(&d, VBLK_T_IN, ZS, SECT(1)), VBLK_S_ZONE_INVALID_CMD);
    assert_int_equal(io(&d, VBLK_T_OUT, ZS, SECT(1)), VBLK_S_ZONE_INVALID_CMD);
    assert_int_equal(io(&d, VBLK_T_ZONE_RESET, ZS, 0), VBLK_S_ZONE_INVALID_CMD);
    dz_down(&d);
}

/* ---- file images: the zones survive a restart ---- */

static void file_zones_persist(void **state)
{
    (void)state;
    char img[] = "/tmp/vblk-zoned-XXXXXX";
    int fd = mkstemp(img);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, SECT(CAP)), 0);
    close(fd);
    char meta[64];
    snprintf(meta, sizeof(meta), "%s.zones", img);
    unlink(meta);
    struct vblk_zoned_opts o = {.zone_sectors = ZS, .nr_conv = 1, .max_active = 3};
    struct vblk_file_opts fo = {.zoned = &o};
    for (int run = 0; run < 3; run++) {
        struct vblk_backend be;
        assert_int_equal(vblk_backend_file_open(img, &fo, &be), 0);
        struct vblk_dev_params p;
        vblk_dev_params_default(&p, 0);
        struct vblk_loopback *lb;
        assert_int_equal(vblk_loopback_create(&p, &be, NULL, &lb), 0);
        uint8_t *buf = vblk_loopback_alloc(lb, 1u << 16);
        if (run == 0) {
            memset(buf, 0x42, SECT(8));
            assert_int_equal(vblk_loopback_rw(lb, 0, VBLK_T_OUT, ZS, buf, SECT(8)), VBLK_S_OK);
            uint64_t at;
            assert_int_equal(vblk_loopback_zone_append(lb, 0, 2 * ZS, buf, SECT(4), &at),
                             VBLK_S_OK);
            assert_int_equal(vblk_loopback_rw(lb, 0, VBLK_T_ZONE_FINISH, 3 * ZS, NULL, 0),
                             VBLK_S_OK);
            assert_int_equal(vblk_loopback_rw(lb, 0, VBLK_T_ZONE_OPEN, 4 * ZS, NULL, 0), VBLK_S_OK);
        } else {
            /* Open zones come back closed (or empty), the rest as left. */
            assert_int_equal(vblk_loopback_rw(lb, 0, VBLK_T_ZONE_REPORT, 0, buf, 64 + 64 * NZ),
                             VBLK_S_OK);
            struct vblk_zone_descriptor z[NZ];
            memcpy(z, buf + 64, sizeof(z));
            assert_int_equal(z[1].z_state, VBLK_ZS_CLOSED);
            assert_int_equal(z[1].z_wp, ZS + 8);
            assert_int_equal(z[2].z_state, run == 1 ? VBLK_ZS_CLOSED : VBLK_ZS_EMPTY);
            assert_int_equal(z[3].z_state, VBLK_ZS_FULL);
            assert_int_equal(z[4].z_state, VBLK_ZS_EMPTY);
            assert_int_equal(vblk_loopback_rw(lb, 0, VBLK_T_IN, ZS, buf, SECT(8)), VBLK_S_OK);
            for (unsigned i = 0; i < SECT(8); i++)
                assert_int_equal(buf[i], 0x42);
            /* And the next write continues at the write pointer. */
            if (run == 1) {
                assert_int_equal(vblk_loopback_rw(lb, 0, VBLK_T_OUT, ZS + 8, buf, SECT(8)),
                                 VBLK_S_OK);
                assert_int_equal(vblk_loopback_rw(lb, 0, VBLK_T_OUT, ZS, buf, SECT(8)),
                                 VBLK_S_ZONE_UNALIGNED_WP);
                assert_int_equal(vblk_loopback_rw(lb, 0, VBLK_T_ZONE_RESET, 2 * ZS, NULL, 0),
                                 VBLK_S_OK);
                assert_int_equal(vblk_loopback_rw(lb, 0, VBLK_T_OUT, ZS + 8, buf, SECT(8)),
                                 VBLK_S_ZONE_UNALIGNED_WP);
            }
        }
        vblk_loopback_destroy(lb);
        vblk_backend_destroy(&be);
        if (run == 1) {
            /* Undo the extra write of run 1 in the expectations: zone 1 is
             * at ZS + 16 now. Re-open and check only that. */
            assert_int_equal(vblk_backend_file_open(img, &fo, &be), 0);
            struct vblk_zone z;
            assert_int_equal(vblk_zone_table_get(vblk_backend_zone_table(&be), 1, &z), 0);
            assert_int_equal(z.wp, ZS + 16);
            /* Put it back for run 2's checks. */
            assert_int_equal(vblk_zone_table_restore(vblk_backend_zone_table(&be), 1, ZS + 8, 0),
                             0);
            assert_int_equal(vblk_backend_zone_persist(&be, 1), 0);
            vblk_backend_destroy(&be);
        }
    }
    /* Another geometry, a damaged record, a truncated file: refused. */
    struct vblk_backend be;
    struct vblk_zoned_opts o2 = o;
    o2.nr_conv = 2;
    fo.zoned = &o2;
    assert_int_equal(vblk_backend_file_open(img, &fo, &be), -EBADMSG);
    fo.zoned = &o;
    fd = open(meta, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b = 0x77;
    assert_int_equal(pwrite(fd, &b, 1, 64 + 16 * 2 + 3), 1);
    assert_int_equal(vblk_backend_file_open(img, &fo, &be), -EBADMSG);
    assert_int_equal(ftruncate(fd, 64 + 16 * 3), 0);
    close(fd);
    assert_int_equal(vblk_backend_file_open(img, &fo, &be), -EBADMSG);
    unlink(meta);
    unlink(img);
}

/* ---- a V1 backend: the library never reads past its table ---- */

static void v1_submit(void *be, void *qctx, struct vblk_req *req)
{
    (void)be;
    (void)qctx;
    vblk_req_complete(req, VBLK_S_OK);
}

/* The V1 layout of struct vblk_backend_ops, as an old backend has it. */
struct v1_ops {
    uint32_t version, caps;
    const char *name;
    int (*queue_start)(void *, uint16_t, void **);
    void (*queue_stop)(void *, uint16_t, void *);
    void (*submit)(void *, void *, struct vblk_req *);
    void (*submit_done)(void *, void *);
    int (*poll)(void *, void *);
    int (*queue_fd)(void *, void *);
    void (*destroy)(void *);
};
_Static_assert(sizeof(struct v1_ops) == offsetof(struct vblk_backend_ops, zone_info), "V1 layout");

static void v1_backend_still_works(void **state)
{
    (void)state;
    /* A V1 table ends at destroy: allocate exactly that, so ASan sees any
     * read of zone_info or zone_report. */
    struct v1_ops *v1 = calloc(1, sizeof(*v1));
    assert_non_null(v1);
    v1->version = VBLK_BACKEND_OPS_V1;
    v1->name = "v1";
    v1->submit = v1_submit;
    void *ops = v1;
    struct vblk_backend be = {.ops = ops, .ctx = NULL, .size = SECT(CAP)};
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, SECT(CAP));
    struct vblk_loopback *lb;
    assert_int_equal(vblk_loopback_create(&p, &be, NULL, &lb), 0);
    assert_false(vblk_dev_features(vblk_loopback_blk(lb)) & F(ZONED));
    uint8_t *buf = vblk_loopback_alloc(lb, 4096);
    assert_int_equal(vblk_loopback_rw(lb, 0, VBLK_T_OUT, 0, buf, 4096), VBLK_S_OK);
    assert_int_equal(vblk_loopback_rw(lb, 0, VBLK_T_ZONE_REPORT, 0, buf, 4096), VBLK_S_UNSUPP);
    vblk_loopback_destroy(lb);
    free(ops);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(opts_are_checked),
        cmocka_unit_test(state_machine),
        cmocka_unit_test(writes_and_reads_follow_the_zone_rules),
        cmocka_unit_test(granularity),
        cmocka_unit_test(open_and_active_limits),
        cmocka_unit_test(restore_from_metadata),
        cmocka_unit_test(device_offers_zoned),
        cmocka_unit_test(host_aware_without_zoned_is_a_regular_disk),
        cmocka_unit_test(zone_requests_end_to_end),
        cmocka_unit_test(report_buffers_of_every_size),
        cmocka_unit_test(zone_types_unsupported_on_a_regular_disk),
        cmocka_unit_test(appends_race_on_two_queues),
        cmocka_unit_test(too_many_open_zones_through_the_device),
        cmocka_unit_test(fault_injection),
        cmocka_unit_test(file_zones_persist),
        cmocka_unit_test(v1_backend_still_works),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
