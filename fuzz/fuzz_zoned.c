/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: zone requests and zone state. A RAM disk with emulated
 * zones (geometry and limits from the first input bytes) behind a loopback
 * device; the rest of the input is a list of requests: writes and appends
 * at any sector and length (every zone boundary, past the write pointer,
 * into conventional zones), reads, ZONE_REPORT into buffers of every size
 * from 0 bytes up, zone operations at any sector, RESET_ALL, and injected
 * zone failures (read-only, offline).
 *
 * Checked besides memory safety, after every request: the status is one
 * the spec defines; a report holds exactly the whole descriptors that fit,
 * each equal to the table's zone, and nothing is written past them; a
 * successful append returned the old write pointer and moved it by its
 * length; the table stays consistent (write pointers inside their zones,
 * EMPTY at the start, FULL at the capacity, open and active counts within
 * the limits and equal to a recount).
 */
#include "fuzz_common.h"

#include "virtioblk/loopback.h"
#include "virtioblk/zone.h"

#define BUF_LEN (64u * 1024u)

struct src {
    const uint8_t *p;
    size_t n;
};

static uint8_t u8(struct src *s)
{
    if (!s->n)
        return 0;
    s->n--;
    return *s->p++;
}

static uint16_t u16(struct src *s)
{
    return (uint16_t)(u8(s) | (u8(s) << 8));
}

static bool status_ok(int st)
{
    return st >= (int)VBLK_S_OK && st <= (int)VBLK_S_ZONE_ACTIVE_RESOURCE;
}

static void check_table(struct vblk_zone_table *t)
{
    struct vblk_zone_info in;
    vblk_zone_table_info(t, &in);
    uint32_t open = 0, active = 0;
    for (uint32_t i = 0; i < vblk_zone_table_count(t); i++) {
        struct vblk_zone z;
        FUZZ_CHECK(vblk_zone_table_get(t, i, &z) == 0);
        FUZZ_CHECK(z.wp >= z.start && z.wp - z.start <= z.cap);
        if (z.type == VBLK_ZT_CONV) {
            FUZZ_CHECK(z.state == VBLK_ZS_NOT_WP);
            continue;
        }
        FUZZ_CHECK(z.state != VBLK_ZS_EMPTY || z.wp == z.start);
        FUZZ_CHECK(z.state != VBLK_ZS_FULL || z.wp == z.start + z.cap);
        open += z.state == VBLK_ZS_IOPEN || z.state == VBLK_ZS_EOPEN;
        active += z.state == VBLK_ZS_IOPEN || z.state == VBLK_ZS_EOPEN || z.state == VBLK_ZS_CLOSED;
    }
    FUZZ_CHECK(open == t->nr_open && active == t->nr_active);
    FUZZ_CHECK(!in.max_open_zones || open <= in.max_open_zones);
    FUZZ_CHECK(!in.max_active_zones || active <= in.max_active_zones);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct src s = {data, size};
    uint8_t g = u8(&s);
    struct vblk_zoned_opts o = {
        .zone_sectors = 8u << (g & 3), /* 8..64 sectors */
        .nr_conv = u8(&s) % 4,
        .max_open = u8(&s) % 5,
        .max_active = u8(&s) % 7,
        .max_append_sectors = 1u + u8(&s) % 40,
        .write_granularity = 512u << ((g >> 2) & 1),
        .model = (g & 0x10) ? VBLK_Z_HA : VBLK_Z_HM,
    };
    uint32_t nzones = 2 + u8(&s) % 14;
    /* A runt last zone now and then. */
    uint64_t cap = (uint64_t)nzones * o.zone_sectors - ((g & 0x20) ? o.zone_sectors / 2 : 0);
    if (o.max_open > o.max_active && o.max_active)
        o.max_open = o.max_active;
    struct vblk_backend be;
    if (vblk_backend_memory_create_zoned(cap * 512, &o, &be) < 0)
        return 0;
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, cap * 512);
    p.seg_max = 8;
    struct vblk_loopback_opts lo = {.queue_size = 16, .arena_size = 1u << 20, .packed = g & 0x40};
    struct vblk_loopback *lb;
    if (vblk_loopback_create(&p, &be, &lo, &lb) < 0) {
        vblk_backend_destroy(&be);
        return 0;
    }
    struct vblk_zone_table *t = vblk_backend_zone_table(&be);
    FUZZ_CHECK(t != NULL);
    uint8_t *buf = vblk_loopback_alloc(lb, BUF_LEN);
    FUZZ_CHECK(buf != NULL);
    uint32_t zs = o.zone_sectors;
    for (unsigned step = 0; s.n && step < 64; step++) {
        uint8_t op = u8(&s);
        uint64_t sector = u16(&s) % (cap + zs);
        uint32_t len = (uint32_t)u8(&s) * 512u / ((op & 0x80) ? 1 : 2);
        int st;
        switch (op & 15) {
        case 0:
        case 1:
            st = vblk_loopback_rw(lb, 0, VBLK_T_OUT, sector, len ? buf : NULL, len);
            break;
        case 2: {
            uint64_t zone = (sector / zs) * zs, at = UINT64_MAX;
            struct vblk_zone before = {0};
            bool inside = zone < cap;
            if (inside)
                vblk_zone_table_get(t, (uint32_t)(zone / zs), &before);
            st = vblk_loopback_zone_append(lb, 0, (op & 0x40) ? sector : zone, buf, len, &at);
            if (st == VBLK_S_OK && inside && !(op & 0x40)) {
                struct vblk_zone after;
                vblk_zone_table_get(t, (uint32_t)(zone / zs), &after);
                FUZZ_CHECK(at == before.wp);
                FUZZ_CHECK(after.wp == before.wp + len / 512);
            }
            break;
        }
        case 3:
            st = vblk_loopback_rw(lb, 0, VBLK_T_IN, sector, len ? buf : NULL, len);
            break;
        case 4:
        case 5: {
            uint32_t rl = (uint32_t)u16(&s) % (64u * 20u);
            memset(buf, 0xa5, rl + 64);
            st = vblk_loopback_rw(lb, 0, VBLK_T_ZONE_REPORT, sector, rl ? buf : NULL, rl);
            if (st == VBLK_S_OK) {
                uint64_t n, first = sector / zs;
                memcpy(&n, buf, 8);
                uint64_t fit = (rl - 64) / 64, left = vblk_zone_table_count(t) - first;
                FUZZ_CHECK(rl >= 64 && n == (fit < left ? fit : left));
                for (uint64_t i = 0; i < n; i++) {
                    struct vblk_zone_descriptor d;
                    struct vblk_zone z;
                    memcpy(&d, buf + 64 + i * 64, sizeof(d));
                    vblk_zone_table_get(t, (uint32_t)(first + i), &z);
                    FUZZ_CHECK(d.z_start == z.start && d.z_cap == z.cap && d.z_wp == z.wp &&
                               d.z_type == z.type && d.z_state == z.state);
                }
                for (size_t b = 64 + n * 64; b < rl + 64; b++)
                    FUZZ_CHECK(buf[b] == 0xa5);
            } else {
                FUZZ_CHECK(rl < 64 || sector >= cap);
            }
            break;
        }
        case 6:
            st = vblk_loopback_rw(lb, 0, VBLK_T_ZONE_OPEN, (op & 0x40) ? sector : sector / zs * zs,
                                  NULL, 0);
            break;
        case 7:
            st = vblk_loopback_rw(lb, 0, VBLK_T_ZONE_CLOSE, sector / zs * zs, NULL, 0);
            break;
        case 8:
            st = vblk_loopback_rw(lb, 0, VBLK_T_ZONE_FINISH, sector / zs * zs, NULL, 0);
            break;
        case 9:
        case 10:
            st = vblk_loopback_rw(lb, 0, VBLK_T_ZONE_RESET, (op & 0x40) ? sector : sector / zs * zs,
                                  NULL, 0);
            break;
        case 11:
            st = vblk_loopback_rw(lb, 0, VBLK_T_ZONE_RESET_ALL, sector, NULL, 0);
            break;
        case 12:
            vblk_zone_table_set_condition(t, (uint32_t)(sector / zs),
                                          (op & 0x40) ? VBLK_ZS_OFFLINE : VBLK_ZS_RDONLY);
            st = VBLK_S_OK;
            break;
        default:
            st = vblk_loopback_rw(lb, 0, VBLK_T_OUT, vblk_zone_table_count(t) ? sector : 0,
                                  len ? buf : NULL, len);
            break;
        }
        FUZZ_CHECK(status_ok(st));
        check_table(t);
    }
    vblk_loopback_destroy(lb);
    vblk_backend_destroy(&be);
    return 0;
}
