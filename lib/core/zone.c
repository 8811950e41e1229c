/* SPDX-License-Identifier: MIT */
/* Emulated zones: the zone state machine of virtio 1.2 5.2.6 (zone.h). */
#include <errno.h>
#include <string.h>

#include "div64.h"
#include "virtioblk/zone.h"

#define DEFAULT_ZONE_SECTORS (1u << 19)
#define DEFAULT_MAX_APPEND   256u

static void zt_lock(struct vblk_zone_table *t)
{
    while (__atomic_exchange_n(&t->lock, 1u, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&t->lock, __ATOMIC_RELAXED))
            ;
}

static void zt_unlock(struct vblk_zone_table *t)
{
    __atomic_store_n(&t->lock, 0u, __ATOMIC_RELEASE);
}

static bool is_pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

uint32_t vblk_zone_count(uint64_t capacity, uint32_t zone_sectors)
{
    if (!zone_sectors)
        return 0;
    uint32_t rem;
    uint64_t n = div64_32(capacity, zone_sectors, &rem);
    n += rem != 0;
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

int vblk_zoned_opts_check(struct vblk_zoned_opts *o, uint64_t capacity)
{
    if (!o->zone_sectors)
        o->zone_sectors = DEFAULT_ZONE_SECTORS;
    if (!o->max_append_sectors)
        o->max_append_sectors = DEFAULT_MAX_APPEND;
    if (!o->write_granularity)
        o->write_granularity = VBLK_SECTOR_SIZE;
    if (!o->model)
        o->model = VBLK_Z_HM;
    if (o->model != VBLK_Z_HM && o->model != VBLK_Z_HA)
        return -EINVAL;
    /* Linux's driver takes only power-of-two zone sizes; so do we, which
     * turns every zone lookup into a shift. */
    if (!is_pow2(o->zone_sectors) || !is_pow2(o->write_granularity) ||
        o->write_granularity < VBLK_SECTOR_SIZE ||
        o->write_granularity > (uint64_t)o->zone_sectors * VBLK_SECTOR_SIZE)
        return -EINVAL;
    /* virtio 1.2 5.2.6: appends come in write_granularity units. */
    if ((uint64_t)o->max_append_sectors * VBLK_SECTOR_SIZE < o->write_granularity)
        return -EINVAL;
    uint32_t n = vblk_zone_count(capacity, o->zone_sectors);
    if (n == 0 || n == UINT32_MAX || o->nr_conv > n)
        return -EINVAL;
    if (o->max_active && o->max_open > o->max_active)
        return -EINVAL;
    return 0;
}

size_t vblk_zone_table_mem_size(uint32_t nr_zones)
{
    return (size_t)nr_zones * sizeof(struct vblk_zone_slot);
}

static uint64_t zone_start(const struct vblk_zone_table *t, uint32_t i)
{
    return (uint64_t)i << t->shift;
}

/* Sectors in zone @i: the last one may be a runt (virtio 1.2 5.2.4). */
static uint64_t zone_len(const struct vblk_zone_table *t, uint32_t i)
{
    uint64_t s = zone_start(t, i), zs = (uint64_t)1 << t->shift;
    return t->capacity - s < zs ? t->capacity - s : zs;
}

int vblk_zone_table_init(struct vblk_zone_table *t, uint64_t capacity,
                         const struct vblk_zoned_opts *o, void *mem, size_t len)
{
    memset(t, 0, sizeof(*t));
    uint32_t n = vblk_zone_count(capacity, o->zone_sectors);
    if (!is_pow2(o->zone_sectors) || n == 0 || o->nr_conv > n || !mem || ((uintptr_t)mem & 7) ||
        len < vblk_zone_table_mem_size(n))
        return -EINVAL;
    t->info.model = o->model;
    t->info.zone_sectors = o->zone_sectors;
    t->info.max_open_zones = o->max_open;
    t->info.max_active_zones = o->max_active;
    t->info.max_append_sectors = o->max_append_sectors;
    t->info.write_granularity = o->write_granularity;
    t->capacity = capacity;
    t->nr_zones = n;
    t->nr_conv = o->nr_conv;
    t->shift = (uint8_t)__builtin_ctz(o->zone_sectors);
    t->z = mem;
    uint8_t seq = o->model == VBLK_Z_HA ? VBLK_ZT_SWP : VBLK_ZT_SWR;
    for (uint32_t i = 0; i < n; i++) {
        struct vblk_zone_slot *z = &t->z[i];
        memset(z, 0, sizeof(*z));
        z->wp = zone_start(t, i);
        z->type = i < o->nr_conv ? VBLK_ZT_CONV : seq;
        z->state = i < o->nr_conv ? VBLK_ZS_NOT_WP : VBLK_ZS_EMPTY;
    }
    return 0;
}

void vblk_zone_table_info(const struct vblk_zone_table *t, struct vblk_zone_info *info)
{
    *info = t->info;
}

static bool st_open(uint8_t s)
{
    return s == VBLK_ZS_IOPEN || s == VBLK_ZS_EOPEN;
}

static bool st_active(uint8_t s)
{
    return st_open(s) || s == VBLK_ZS_CLOSED;
}

/* The only place a sequential zone changes state: keeps the counters. */
static void set_state(struct vblk_zone_table *t, struct vblk_zone_slot *z, uint8_t s)
{
    t->nr_open += (uint32_t)st_open(s) - (uint32_t)st_open(z->state);
    t->nr_active += (uint32_t)st_active(s) - (uint32_t)st_active(z->state);
    z->state = s;
}

/* Can zone @z (EMPTY, CLOSED or open) become open? virtio 1.2 5.2.6: when
 * both limits would be exceeded, ACTIVE_RESOURCE wins. An implicit open at
 * the open limit closes another implicitly open zone instead of failing. */
static uint8_t open_resources(struct vblk_zone_table *t, struct vblk_zone_slot *z, bool implicit)
{
    const struct vblk_zone_info *in = &t->info;
    if (st_open(z->state))
        return VBLK_S_OK;
    if (z->state == VBLK_ZS_EMPTY && in->max_active_zones && t->nr_active >= in->max_active_zones)
        return VBLK_S_ZONE_ACTIVE_RESOURCE;
    if (!in->max_open_zones || t->nr_open < in->max_open_zones)
        return VBLK_S_OK;
    if (implicit)
        for (uint32_t i = t->nr_conv; i < t->nr_zones; i++)
            if (t->z[i].state == VBLK_ZS_IOPEN && &t->z[i] != z) {
                set_state(t, &t->z[i], VBLK_ZS_CLOSED);
                return VBLK_S_OK;
            }
    return VBLK_S_ZONE_OPEN_RESOURCE;
}

static void fill(const struct vblk_zone_table *t, uint32_t i, struct vblk_zone *out)
{
    const struct vblk_zone_slot *z = &t->z[i];
    out->start = zone_start(t, i);
    out->len = zone_len(t, i);
    out->cap = out->len;
    out->wp = z->wp;
    out->type = z->type;
    out->state = z->state;
}

int vblk_zone_table_report(struct vblk_zone_table *t, uint64_t sector, struct vblk_zone *zones,
                           uint32_t n)
{
    if (sector >= t->capacity)
        return 0;
    uint32_t i = vblk_zone_table_index(t, sector), k = 0;
    zt_lock(t);
    for (; k < n && i < t->nr_zones; k++, i++)
        fill(t, i, &zones[k]);
    zt_unlock(t);
    return (int)k;
}

int vblk_zone_table_get(struct vblk_zone_table *t, uint32_t idx, struct vblk_zone *out)
{
    if (idx >= t->nr_zones)
        return -EINVAL;
    zt_lock(t);
    fill(t, idx, out);
    zt_unlock(t);
    return 0;
}

int vblk_zone_table_restore(struct vblk_zone_table *t, uint32_t idx, uint64_t wp, uint8_t cond)
{
    if (idx >= t->nr_zones)
        return -EINVAL;
    uint64_t start = zone_start(t, idx), cap = zone_len(t, idx);
    int rc = 0;
    zt_lock(t);
    struct vblk_zone_slot *z = &t->z[idx];
    if (z->type == VBLK_ZT_CONV) {
        rc = cond || wp != start ? -EINVAL : 0;
    } else if (wp < start || wp - start > cap ||
               (cond && cond != VBLK_ZS_RDONLY && cond != VBLK_ZS_OFFLINE)) {
        rc = -EINVAL;
    } else {
        uint8_t s = cond                ? cond
                    : wp == start       ? VBLK_ZS_EMPTY
                    : wp - start == cap ? VBLK_ZS_FULL
                                        : VBLK_ZS_CLOSED;
        if (s == VBLK_ZS_CLOSED && !st_active(z->state) && t->info.max_active_zones &&
            t->nr_active >= t->info.max_active_zones) {
            rc = -EINVAL;
        } else {
            set_state(t, z, s);
            z->wp = wp;
        }
    }
    zt_unlock(t);
    return rc;
}

int vblk_zone_table_set_condition(struct vblk_zone_table *t, uint32_t idx, uint8_t cond)
{
    if (idx >= t->nr_zones || (cond != VBLK_ZS_RDONLY && cond != VBLK_ZS_OFFLINE))
        return -EINVAL;
    int rc = 0;
    zt_lock(t);
    struct vblk_zone_slot *z = &t->z[idx];
    /* Offline is final; read-only may only go offline. */
    if (z->type == VBLK_ZT_CONV || z->state == VBLK_ZS_OFFLINE)
        rc = -EINVAL;
    else
        set_state(t, z, cond);
    zt_unlock(t);
    return rc;
}

/* A range that leaves its first zone is valid only across conventional
 * zones (virtio 1.2 5.2.6: IN / OUT to a SWR zone must stay in it). */
static bool range_ok(const struct vblk_zone_table *t, uint32_t i, uint64_t sector, uint64_t nsect)
{
    uint64_t end = sector + nsect;
    if (nsect > t->capacity - sector)
        return false;
    if (end <= zone_start(t, i) + zone_len(t, i))
        return true;
    return end <= zone_start(t, t->nr_conv) && t->nr_conv > i;
}

uint8_t vblk_zone_table_read(struct vblk_zone_table *t, uint64_t sector, uint64_t nsect,
                             uint64_t *valid)
{
    *valid = 0;
    if (sector >= t->capacity)
        return VBLK_S_ZONE_INVALID_CMD;
    uint32_t i = vblk_zone_table_index(t, sector);
    if (!range_ok(t, i, sector, nsect))
        return VBLK_S_ZONE_INVALID_CMD;
    zt_lock(t);
    const struct vblk_zone_slot *z = &t->z[i];
    uint8_t st = VBLK_S_OK;
    if (z->type == VBLK_ZT_CONV)
        *valid = nsect;
    else if (z->state == VBLK_ZS_OFFLINE)
        st = VBLK_S_ZONE_INVALID_CMD;
    else if (z->wp > sector)
        *valid = z->wp - sector < nsect ? z->wp - sector : nsect;
    zt_unlock(t);
    return st;
}

uint8_t vblk_zone_table_write_begin(struct vblk_zone_table *t, bool append, uint64_t sector,
                                    uint64_t nsect, uint64_t *at)
{
    if (sector >= t->capacity)
        return VBLK_S_ZONE_INVALID_CMD;
    uint32_t i = vblk_zone_table_index(t, sector);
    uint64_t start = zone_start(t, i), cap = zone_len(t, i);
    uint32_t gran = t->info.write_granularity / VBLK_SECTOR_SIZE;
    struct vblk_zone_slot *z = &t->z[i];
    if (z->type == VBLK_ZT_CONV) {
        /* virtio 1.2 5.2.6: ZONE_APPEND only to a SWR zone. */
        if (append || !range_ok(t, i, sector, nsect))
            return VBLK_S_ZONE_INVALID_CMD;
        *at = sector;
        return VBLK_S_OK;
    }
    if (append && (sector != start || z->type != VBLK_ZT_SWR))
        return VBLK_S_ZONE_INVALID_CMD;
    uint8_t st = VBLK_S_OK;
    zt_lock(t);
    uint64_t w = append ? z->wp : sector;
    if (z->state == VBLK_ZS_OFFLINE || z->state == VBLK_ZS_RDONLY || z->state == VBLK_ZS_FULL) {
        st = VBLK_S_ZONE_INVALID_CMD;
    } else if (z->type == VBLK_ZT_SWR && w != z->wp) {
        st = VBLK_S_ZONE_UNALIGNED_WP;
    } else if (mod64_32(w, gran) || mod64_32(nsect, gran)) {
        st = VBLK_S_ZONE_UNALIGNED_WP;
    } else if (nsect > start + cap - w) {
        /* Past the zone's writable capacity. */
        st = VBLK_S_ZONE_INVALID_CMD;
    } else if (nsect) {
        if (z->state == VBLK_ZS_EMPTY || z->state == VBLK_ZS_CLOSED) {
            st = open_resources(t, z, true);
            if (st == VBLK_S_OK)
                set_state(t, z, VBLK_ZS_IOPEN);
        }
        if (st == VBLK_S_OK) {
            if (w + nsect > z->wp)
                z->wp = w + nsect;
            if (z->wp == start + cap)
                set_state(t, z, VBLK_ZS_FULL);
        }
    }
    zt_unlock(t);
    *at = w;
    return st;
}

void vblk_zone_table_write_end(struct vblk_zone_table *t, uint64_t at, uint64_t nsect, bool ok)
{
    if (ok || !nsect || at >= t->capacity)
        return;
    uint32_t i = vblk_zone_table_index(t, at);
    struct vblk_zone_slot *z = &t->z[i];
    if (z->type == VBLK_ZT_CONV)
        return;
    zt_lock(t);
    /* Only the last reservation of an open zone can be taken back. */
    if (st_open(z->state) && z->wp == at + nsect) {
        z->wp = at;
        if (at == zone_start(t, i) && z->state == VBLK_ZS_IOPEN)
            set_state(t, z, VBLK_ZS_EMPTY);
    }
    zt_unlock(t);
}

static void reset_zone(struct vblk_zone_table *t, uint32_t i)
{
    struct vblk_zone_slot *z = &t->z[i];
    if (st_active(z->state) || z->state == VBLK_ZS_FULL) {
        set_state(t, z, VBLK_ZS_EMPTY);
        z->wp = zone_start(t, i);
    }
}

uint8_t vblk_zone_table_mgmt(struct vblk_zone_table *t, uint32_t type, uint64_t sector)
{
    if (type == VBLK_T_ZONE_RESET_ALL) {
        zt_lock(t);
        for (uint32_t i = t->nr_conv; i < t->nr_zones; i++)
            reset_zone(t, i);
        zt_unlock(t);
        return VBLK_S_OK;
    }
    if (sector >= t->capacity)
        return VBLK_S_ZONE_INVALID_CMD;
    uint32_t i = vblk_zone_table_index(t, sector);
    uint64_t start = zone_start(t, i), cap = zone_len(t, i);
    struct vblk_zone_slot *z = &t->z[i];
    /* virtio 1.2 5.2.6: zone operations on a conventional zone fail. */
    if (sector != start || z->type == VBLK_ZT_CONV)
        return VBLK_S_ZONE_INVALID_CMD;
    uint8_t st = VBLK_S_OK;
    zt_lock(t);
    uint8_t s = z->state;
    if (s == VBLK_ZS_OFFLINE || s == VBLK_ZS_RDONLY) {
        st = VBLK_S_ZONE_INVALID_CMD;
    } else if (type == VBLK_T_ZONE_OPEN) {
        if (s == VBLK_ZS_FULL)
            st = VBLK_S_ZONE_INVALID_CMD;
        else if (s != VBLK_ZS_EOPEN && (st = open_resources(t, z, false)) == VBLK_S_OK)
            set_state(t, z, VBLK_ZS_EOPEN);
    } else if (type == VBLK_T_ZONE_CLOSE) {
        if (st_open(s))
            set_state(t, z, z->wp == start ? VBLK_ZS_EMPTY : VBLK_ZS_CLOSED);
        else if (s != VBLK_ZS_CLOSED)
            st = VBLK_S_ZONE_INVALID_CMD; /* EMPTY, FULL: nothing to close */
    } else if (type == VBLK_T_ZONE_FINISH) {
        if (s == VBLK_ZS_EMPTY)
            st = open_resources(t, z, false);
        if (st == VBLK_S_OK && s != VBLK_ZS_FULL) {
            set_state(t, z, VBLK_ZS_FULL);
            z->wp = start + cap;
        }
    } else if (type == VBLK_T_ZONE_RESET) {
        reset_zone(t, i);
    } else {
        st = VBLK_S_UNSUPP;
    }
    zt_unlock(t);
    return st;
}
