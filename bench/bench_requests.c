/* SPDX-License-Identifier: MIT */
/*
 * vblk-bench --get-lifetime: one GET_LIFETIME request, its answer printed.
 *
 * vblk-bench --zoned: checks a zoned vhost-user-blk back-end through its
 * rings, then races ZONE_APPENDs from every queue into one zone.
 *
 *  1. the config space says host-managed, with a zone size; ZONE_RESET_ALL
 *     and ZONE_REPORT find every sequential zone empty;
 *  2. in one sequential zone: writes at the write pointer, a write beyond
 *     it (ZONE_UNALIGNED_WP), read-back, a read past the write pointer
 *     (zeros), ZONE_CLOSE / _OPEN / _FINISH / _RESET with the states that
 *     ZONE_REPORT shows after each, a write and an append to the full zone
 *     (ZONE_INVALID_CMD); a reset of a conventional zone (ZONE_INVALID_CMD);
 *  3. every queue, on its own thread, keeps --iodepth one-block appends in
 *     flight to the same zone until the zone is full: every append_sector
 *     must be distinct, they must tile the zone, each block must read back
 *     as the append that wrote it, and the zone must be FULL.
 * Prints the append rate. Exit status 0, or 1 on the first failure.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_requests.h"

#define PROG "vblk-bench"

struct zq {
    struct vblk_vu_client *c;
    uint16_t q;
    struct vblk_drv_vq *vq;
    struct vblk_drv_blk_frame *fr;
    struct vblk_drv_blk_za_frame *za; /* iodepth of them */
    uint8_t *buf;                     /* iodepth blocks */
    uint32_t bs, iodepth;
    int timeout_ms;
    uint64_t zone;    /* append race: the zone start */
    uint64_t nblocks; /* blocks in the zone */
    uint64_t *owner;  /* per block of the zone: tag of its append, 0 free */
    pthread_mutex_t *lock;
    uint64_t appends;
    int rc;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return -1;
}

/* Waits for one used buffer on @z's queue. Returns its token, or NULL. */
static void *reap_one(struct zq *z)
{
    uint64_t t0 = now_ns();
    for (;;) {
        void *tok;
        uint32_t len;
        int got = vblk_drv_vq_get_used(z->vq, &tok, &len);
        if (got > 0)
            return tok;
        if (got < 0) {
            fail("queue %u: bad used entry", z->q);
            return NULL;
        }
        int rc = vblk_vu_client_wait(z->c, z->q, 100);
        if (rc < 0) {
            fail("queue %u: waiting: %s", z->q, strerror(-rc));
            return NULL;
        }
        if (now_ns() - t0 > (uint64_t)z->timeout_ms * 1000000u) {
            fail("queue %u: no completion within %d ms", z->q, z->timeout_ms);
            return NULL;
        }
    }
}

/* One request, waited for. Returns the status byte or -1. */
static int zsync(struct zq *z, uint32_t type, uint64_t sector, void *data, uint32_t len)
{
    struct vblk_iov d = {data, len};
    int rc = vblk_drv_blk_add(z->vq, z->fr, type, sector, &d, data ? 1 : 0, z->fr, false);
    if (rc < 0)
        return fail("queue %u: cannot add a request: %s", z->q, strerror(-rc));
    vblk_vu_client_kick(z->c, z->q);
    return reap_one(z) ? z->fr->status : -1;
}

static int zappend(struct zq *z, uint64_t zone, void *data, uint32_t len, uint64_t *at)
{
    struct vblk_iov d = {data, len};
    int rc = vblk_drv_blk_add_append(z->vq, &z->za[0], zone, &d, 1, &z->za[0], false);
    if (rc < 0)
        return fail("queue %u: cannot add an append: %s", z->q, strerror(-rc));
    vblk_vu_client_kick(z->c, z->q);
    if (!reap_one(z))
        return -1;
    *at = z->za[0].append_sector;
    return z->za[0].status;
}

static void fill(uint8_t *p, uint32_t len, uint64_t tag)
{
    for (uint32_t off = 0; off < len; off += 8) {
        uint64_t v = tag * 0x9e3779b97f4a7c15ull + off;
        memcpy(p + off, &v, 8);
    }
}

static bool check(const uint8_t *p, uint32_t len, uint64_t tag)
{
    for (uint32_t off = 0; off < len; off += 8) {
        uint64_t v = tag * 0x9e3779b97f4a7c15ull + off, got;
        memcpy(&got, p + off, 8);
        if (got != v)
            return false;
    }
    return true;
}

static bool all_zero(const uint8_t *p, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

/* The descriptor of the zone starting at @sector. */
static int zone_of(struct zq *z, uint64_t sector, struct vblk_zone_descriptor *out)
{
    uint8_t *b = z->buf;
    memset(b, 0xee, 128);
    int st = zsync(z, VBLK_T_ZONE_REPORT, sector, b, 128);
    if (st != VBLK_S_OK)
        return fail("ZONE_REPORT at sector %" PRIu64 ": status %d", sector, st);
    uint64_t n;
    memcpy(&n, b, 8);
    memcpy(out, b + 64, sizeof(*out));
    if (n != 1 || out->z_start != sector)
        return fail("ZONE_REPORT at sector %" PRIu64 ": %" PRIu64 " zones, first at %" PRIu64,
                    sector, n, out->z_start);
    return 0;
}

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return fail(__VA_ARGS__);                                                              \
    } while (0)

static int expect_state(struct zq *z, uint64_t zone, uint8_t state, const char *after)
{
    struct vblk_zone_descriptor d;
    if (zone_of(z, zone, &d) < 0)
        return -1;
    EXPECT(d.z_state == state, "zone %" PRIu64 " after %s: state %u, expected %u", zone, after,
           d.z_state, state);
    return 0;
}

/* Part 2: the rules, on queue 0. */
static int rules(struct zq *z, uint64_t zone, uint64_t conv_zone, bool have_conv)
{
    uint32_t bs = z->bs, spb = bs / 512;
    uint8_t *b = z->buf;
    int st;
    for (uint32_t i = 0; i < 4; i++) {
        fill(b, bs, zone + i * spb);
        st = zsync(z, VBLK_T_OUT, zone + i * spb, b, bs);
        EXPECT(st == VBLK_S_OK, "write at the write pointer (block %u): status %d", i, st);
    }
    st = zsync(z, VBLK_T_OUT, zone + 5 * spb, b, bs);
    EXPECT(st == VBLK_S_ZONE_UNALIGNED_WP, "write past the write pointer: status %d", st);
    for (uint32_t i = 0; i < 4; i++) {
        st = zsync(z, VBLK_T_IN, zone + i * spb, b, bs);
        EXPECT(st == VBLK_S_OK && check(b, bs, zone + i * spb), "read-back of block %u", i);
    }
    memset(b, 0xee, bs);
    st = zsync(z, VBLK_T_IN, zone + 4 * spb, b, bs);
    EXPECT(st == VBLK_S_OK && all_zero(b, bs), "read past the write pointer: status %d", st);
    struct vblk_zone_descriptor d;
    if (zone_of(z, zone, &d) < 0)
        return -1;
    EXPECT(d.z_state == VBLK_ZS_IOPEN && d.z_wp == zone + 4 * spb,
           "after 4 writes: state %u wp %" PRIu64, d.z_state, d.z_wp);
    static const struct {
        uint32_t type;
        uint8_t state;
        const char *name;
    } ops[] = {{VBLK_T_ZONE_CLOSE, VBLK_ZS_CLOSED, "ZONE_CLOSE"},
               {VBLK_T_ZONE_OPEN, VBLK_ZS_EOPEN, "ZONE_OPEN"},
               {VBLK_T_ZONE_FINISH, VBLK_ZS_FULL, "ZONE_FINISH"}};
    for (unsigned i = 0; i < 3; i++) {
        st = zsync(z, ops[i].type, zone, NULL, 0);
        EXPECT(st == VBLK_S_OK, "%s: status %d", ops[i].name, st);
        if (expect_state(z, zone, ops[i].state, ops[i].name) < 0)
            return -1;
    }
    st = zsync(z, VBLK_T_OUT, zone + 4 * spb, b, bs);
    EXPECT(st == VBLK_S_ZONE_INVALID_CMD, "write to a full zone: status %d", st);
    uint64_t at;
    st = zappend(z, zone, b, bs, &at);
    EXPECT(st == VBLK_S_ZONE_INVALID_CMD, "append to a full zone: status %d", st);
    st = zsync(z, VBLK_T_ZONE_RESET, zone, NULL, 0);
    EXPECT(st == VBLK_S_OK, "ZONE_RESET: status %d", st);
    if (expect_state(z, zone, VBLK_ZS_EMPTY, "ZONE_RESET") < 0)
        return -1;
    memset(b, 0xee, bs);
    st = zsync(z, VBLK_T_IN, zone, b, bs);
    EXPECT(st == VBLK_S_OK && all_zero(b, bs), "read after reset: status %d", st);
    st = zsync(z, VBLK_T_ZONE_OPEN, zone + 1, NULL, 0);
    EXPECT(st == VBLK_S_ZONE_INVALID_CMD, "ZONE_OPEN off a zone start: status %d", st);
    if (have_conv) {
        st = zsync(z, VBLK_T_ZONE_RESET, conv_zone, NULL, 0);
        EXPECT(st == VBLK_S_ZONE_INVALID_CMD, "reset of a conventional zone: status %d", st);
        fill(b, bs, 7);
        st = zsync(z, VBLK_T_OUT, conv_zone + spb, b, bs);
        EXPECT(st == VBLK_S_OK, "write to a conventional zone: status %d", st);
    }
    return 0;
}

/* Part 3: one queue's appends, iodepth in flight, until the zone is full. */
static void *racer(void *arg)
{
    struct zq *z = arg;
    uint32_t bs = z->bs, spb = bs / 512;
    uint32_t inflight = 0;
    bool full = false;
    uint64_t seq = 0;
    for (uint32_t i = 0; i < z->iodepth; i++)
        z->za[i].status = 0xfe;
    for (;;) {
        while (!full && inflight < z->iodepth) {
            uint32_t slot = 0;
            while (z->za[slot].status != 0xfe)
                slot++;
            uint64_t tag = ((uint64_t)(z->q + 1) << 40) | ++seq;
            fill(z->buf + (size_t)slot * bs, bs, tag);
            struct vblk_iov d = {z->buf + (size_t)slot * bs, bs};
            int rc = vblk_drv_blk_add_append(z->vq, &z->za[slot], z->zone, &d, 1,
                                             (void *)(uintptr_t)(slot + 1), false);
            if (rc < 0) {
                z->rc = fail("queue %u: cannot add an append: %s", z->q, strerror(-rc));
                return NULL;
            }
            memcpy(z->za[slot].pad, &tag, 7); /* the driver keeps its tag next to the frame */
            inflight++;
        }
        if (!inflight)
            break;
        vblk_vu_client_kick(z->c, z->q);
        void *tok = reap_one(z);
        if (!tok) {
            z->rc = -1;
            return NULL;
        }
        uint32_t slot = (uint32_t)(uintptr_t)tok - 1; /* tokens are never NULL */
        struct vblk_drv_blk_za_frame *f = &z->za[slot];
        uint64_t tag = 0;
        memcpy(&tag, f->pad, 7);
        inflight--;
        if (f->status == VBLK_S_ZONE_INVALID_CMD) {
            full = true; /* past the zone's capacity */
        } else if (f->status != VBLK_S_OK) {
            z->rc = fail("queue %u: append: status %u", z->q, f->status);
            return NULL;
        } else {
            uint64_t at = f->append_sector;
            uint64_t blk = (at - z->zone) / spb;
            if (at < z->zone || (at - z->zone) % spb || blk >= z->nblocks) {
                z->rc = fail("queue %u: append_sector %" PRIu64 " outside the zone", z->q, at);
                return NULL;
            }
            pthread_mutex_lock(z->lock);
            uint64_t prev = z->owner[blk];
            z->owner[blk] = tag;
            pthread_mutex_unlock(z->lock);
            if (prev) {
                z->rc = fail("append_sector %" PRIu64 " given out twice", at);
                return NULL;
            }
            z->appends++;
        }
        f->status = 0xfe;
    }
    return NULL;
}

int bench_zoned(struct vblk_vu_client *c, uint16_t queues, uint32_t iodepth, double timeout)
{
    uint64_t f = vblk_vu_client_features(c);
    struct vblk_config cfg;
    if (!(f & VBLK_BIT(VBLK_F_ZONED)))
        return fail("the back-end does not offer VIRTIO_BLK_F_ZONED"), 1;
    if (vblk_vu_client_config(c, &cfg) < 0)
        return fail("cannot read the config space: %s", vblk_vu_client_error(c)), 1;
    if (cfg.zoned.model != VBLK_Z_HM || !cfg.zoned.zone_sectors)
        return fail("model %u, zone size %u: not host-managed", cfg.zoned.model,
                    cfg.zoned.zone_sectors),
               1;
    uint64_t zs = cfg.zoned.zone_sectors, cap = cfg.capacity;
    uint64_t nz = (cap + zs - 1) / zs;
    uint32_t bs = cfg.zoned.write_granularity > 4096 ? cfg.zoned.write_granularity : 4096;
    if ((uint64_t)bs / 512 > cfg.zoned.max_append_sectors || zs < 8ull * bs / 512)
        return fail("zones of %" PRIu64 " sectors or appends of %u sectors are too small", zs,
                    cfg.zoned.max_append_sectors),
               1;
    printf("zoned: %" PRIu64 " zones of %" PRIu64 " sectors, max open %u, max active %u, "
           "max append %u sectors, write granularity %u\n",
           nz, zs, cfg.zoned.max_open_zones, cfg.zoned.max_active_zones,
           cfg.zoned.max_append_sectors, cfg.zoned.write_granularity);
    struct zq *z = calloc(queues, sizeof(*z));
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    size_t rep_len = 64 + 64 * (size_t)(nz < 4096 ? nz : 4096);
    for (uint16_t q = 0; z && q < queues; q++) {
        z[q] = (struct zq){.c = c,
                           .q = q,
                           .vq = vblk_vu_client_queue(c, q),
                           .bs = bs,
                           .iodepth = iodepth,
                           .timeout_ms = (int)(timeout * 1000),
                           .lock = &lock};
        z[q].fr = vblk_vu_client_alloc(c, sizeof(*z[q].fr));
        z[q].za = vblk_vu_client_alloc(c, sizeof(*z[q].za) * iodepth);
        size_t bl = (size_t)bs * iodepth > rep_len ? (size_t)bs * iodepth : rep_len;
        z[q].buf = vblk_vu_client_alloc(c, bl);
        if (!z[q].fr || !z[q].za || !z[q].buf)
            return fail("out of shared memory"), 1;
        for (uint32_t i = 0; i < iodepth; i++)
            z[q].za[i].status = 0xfe;
    }
    if (!z)
        return 1;
    int rc = 1;
    /* 1: reset everything, and the report agrees. */
    int st = zsync(&z[0], VBLK_T_ZONE_RESET_ALL, 0, NULL, 0);
    if (st != VBLK_S_OK) {
        fail("ZONE_RESET_ALL: status %d", st);
        goto out;
    }
    uint64_t nconv = 0, seq0 = UINT64_MAX, checked = 0;
    for (uint64_t s = 0; s < cap;) {
        st = zsync(&z[0], VBLK_T_ZONE_REPORT, s, z[0].buf, (uint32_t)rep_len);
        uint64_t n;
        memcpy(&n, z[0].buf, 8);
        if (st != VBLK_S_OK || n == 0) {
            fail("ZONE_REPORT at sector %" PRIu64 ": status %d, %" PRIu64 " zones", s, st, n);
            goto out;
        }
        for (uint64_t i = 0; i < n; i++) {
            struct vblk_zone_descriptor d;
            memcpy(&d, z[0].buf + 64 + i * 64, sizeof(d));
            if (d.z_start != s) {
                fail("zone %" PRIu64 " starts at %" PRIu64, s / zs, d.z_start);
                goto out;
            }
            if (d.z_type == VBLK_ZT_CONV) {
                nconv++;
            } else if (d.z_state != VBLK_ZS_EMPTY || d.z_wp != d.z_start) {
                fail("zone %" PRIu64 " not empty after ZONE_RESET_ALL", s / zs);
                goto out;
            } else if (seq0 == UINT64_MAX) {
                seq0 = s;
            }
            s += zs;
            checked++;
        }
    }
    printf("zoned: report: %" PRIu64 " zones, %" PRIu64 " conventional\n", checked, nconv);
    if (checked != nz || seq0 == UINT64_MAX || seq0 + 2 * zs > cap) {
        fail("the report lists %" PRIu64 " zones, need 2 sequential ones", checked);
        goto out;
    }
    /* 2 */
    if (rules(&z[0], seq0, 0, nconv > 0) < 0)
        goto out;
    printf("zoned: write pointer, states and errors as the spec says\n");
    /* 3 */
    uint64_t zone = seq0 + zs, nblocks = zs / (bs / 512);
    uint64_t *owner = calloc(nblocks, sizeof(*owner));
    if (!owner)
        goto out;
    pthread_t th[64];
    uint64_t t0 = now_ns();
    for (uint16_t q = 0; q < queues; q++) {
        z[q].zone = zone;
        z[q].nblocks = nblocks;
        z[q].owner = owner;
        pthread_create(&th[q], NULL, racer, &z[q]);
    }
    uint64_t appends = 0;
    int bad = 0;
    for (uint16_t q = 0; q < queues; q++) {
        pthread_join(th[q], NULL);
        appends += z[q].appends;
        bad |= z[q].rc;
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    if (bad)
        goto out_owner;
    if (appends != nblocks) {
        fail("%" PRIu64 " appends succeeded in a zone of %" PRIu64 " blocks", appends, nblocks);
        goto out_owner;
    }
    for (uint64_t b = 0; b < nblocks; b++) {
        st = zsync(&z[0], VBLK_T_IN, zone + b * (bs / 512), z[0].buf, bs);
        if (st != VBLK_S_OK || !check(z[0].buf, bs, owner[b])) {
            fail("block %" PRIu64 " of the append zone does not hold its append (status %d)", b,
                 st);
            goto out_owner;
        }
    }
    if (expect_state(&z[0], zone, VBLK_ZS_FULL, "the appends") < 0)
        goto out_owner;
    printf("zoned: %u queue(s), iodepth %u: %" PRIu64 " appends of %u bytes tile the zone, "
           "%.0f appends/s\n",
           queues, iodepth, appends, bs, secs > 0 ? (double)appends / secs : 0.0);
    st = zsync(&z[0], VBLK_T_ZONE_RESET_ALL, 0, NULL, 0);
    rc = st == VBLK_S_OK ? 0 : 1;
out_owner:
    free(owner);
out:
    free(z);
    return rc;
}

int bench_lifetime(struct vblk_vu_client *c, double timeout)
{
    if (!(vblk_vu_client_features(c) & VBLK_BIT(VBLK_F_LIFETIME)))
        return fail("the back-end does not offer VIRTIO_BLK_F_LIFETIME"), 1;
    struct zq z = {
        .c = c, .q = 0, .vq = vblk_vu_client_queue(c, 0), .timeout_ms = (int)(timeout * 1000)};
    z.fr = vblk_vu_client_alloc(c, sizeof(*z.fr));
    uint8_t *b = vblk_vu_client_alloc(c, 64);
    if (!z.fr || !b)
        return fail("out of shared memory"), 1;
    memset(b, 0xee, 64);
    int st = zsync(&z, VBLK_T_GET_LIFETIME, 0, b, sizeof(struct vblk_lifetime));
    if (st != VBLK_S_OK)
        return fail("GET_LIFETIME: status %d", st), 1;
    struct vblk_lifetime lt;
    memcpy(&lt, b, sizeof(lt));
    printf(
        "lifetime: pre_eol_info %u, device_lifetime_est_typ_a %u, device_lifetime_est_typ_b %u\n",
        lt.pre_eol_info, lt.device_lifetime_est_typ_a, lt.device_lifetime_est_typ_b);
    return 0;
}

int bench_secure_erase(struct vblk_vu_client *c, double timeout)
{
    if (!(vblk_vu_client_features(c) & VBLK_BIT(VBLK_F_SECURE_ERASE)))
        return fail("the back-end does not offer VIRTIO_BLK_F_SECURE_ERASE"), 1;
    struct vblk_config cfg;
    if (vblk_vu_client_config(c, &cfg) < 0)
        return fail("cannot read the config space: %s", vblk_vu_client_error(c)), 1;
    if (cfg.capacity < 64 || cfg.max_secure_erase_sectors < 16)
        return fail("disk or max_secure_erase_sectors too small"), 1;
    struct zq z = {
        .c = c, .q = 0, .vq = vblk_vu_client_queue(c, 0), .timeout_ms = (int)(timeout * 1000)};
    z.fr = vblk_vu_client_alloc(c, sizeof(*z.fr));
    uint8_t *b = vblk_vu_client_alloc(c, 4096);
    struct vblk_discard_wz_seg *seg = vblk_vu_client_alloc(c, 2 * sizeof(*seg));
    if (!z.fr || !b || !seg)
        return fail("out of shared memory"), 1;
    /* Blocks 0..7 of 4 KiB; erase block 1, and blocks 4-5 as a second
     * range when the device takes two. */
    for (uint64_t i = 0; i < 8; i++) {
        fill(b, 4096, 100 + i);
        int st = zsync(&z, VBLK_T_OUT, i * 8, b, 4096);
        if (st != VBLK_S_OK)
            return fail("write of block %" PRIu64 ": status %d", i, st), 1;
    }
    unsigned n = cfg.max_secure_erase_seg >= 2 ? 2 : 1;
    seg[0] = (struct vblk_discard_wz_seg){.sector = 8, .num_sectors = 8};
    seg[1] = (struct vblk_discard_wz_seg){.sector = 32, .num_sectors = 16};
    int st = zsync(&z, VBLK_T_SECURE_ERASE, 0, seg, n * (uint32_t)sizeof(*seg));
    if (st != VBLK_S_OK)
        return fail("SECURE_ERASE of %u range(s): status %d", n, st), 1;
    for (uint64_t i = 0; i < 8; i++) {
        bool erased = i == 1 || (n == 2 && (i == 4 || i == 5));
        st = zsync(&z, VBLK_T_IN, i * 8, b, 4096);
        if (st != VBLK_S_OK || (erased ? !all_zero(b, 4096) : !check(b, 4096, 100 + i)))
            return fail("block %" PRIu64 " after SECURE_ERASE: status %d, %s", i, st,
                        erased ? "not zeros" : "its data changed"),
                   1;
    }
    printf("secure erase: %u range(s) read back as zeros, the blocks around them intact\n", n);
    return 0;
}
