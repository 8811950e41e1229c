/* SPDX-License-Identifier: MIT */
/*
 * Emulated zones for the memory and file backends: the zone table of
 * zone.h, the backend ops that report it, and (file images) its
 * persistence in a metadata file.
 *
 * Metadata file (little-endian; docs/zoned.md):
 *   header, 64 bytes: "VBLKZONE", u32 version (1), u32 header size (64),
 *     u64 capacity in sectors, u32 zone_sectors, u32 zones, u32
 *     conventional zones, u32 model, 20 reserved zero bytes, u32 FNV-1a of
 *     bytes 0..59;
 *   then one 16-byte record per zone: u64 write pointer, u8 condition (0,
 *     13 read-only, 15 offline), 3 reserved zero bytes, u32 FNV-1a of bytes
 *     0..11 and the zone index.
 * A record is rewritten in place (one aligned 16-byte pwrite, inside one
 * sector, so never torn) before the request that changed it completes:
 * an acknowledged write is never behind the persisted write pointer.
 * Records are written under one mutex from a snapshot taken under it, so
 * the last record written for a zone is its newest state.
 */
#ifndef _FILE_OFFSET_BITS
#define _FILE_OFFSET_BITS 64
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/backend_internal.h"

#define META_MAGIC   "VBLKZONE"
#define META_VERSION 1u
#define META_HDR     64u
#define META_REC     16u

static uint32_t fnv1a(const uint8_t *p, size_t n, uint32_t h)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

int zemu_create(uint64_t size, const struct vblk_zoned_opts *opts, struct zemu **out)
{
    struct vblk_zoned_opts o = *opts;
    uint64_t cap = size / VBLK_SECTOR_SIZE;
    if (size % VBLK_SECTOR_SIZE || vblk_zoned_opts_check(&o, cap) < 0)
        return -EINVAL;
    uint32_t n = vblk_zone_count(cap, o.zone_sectors);
    struct zemu *z = calloc(1, sizeof(*z));
    if (!z)
        return -ENOMEM;
    z->slots = calloc(n, sizeof(struct vblk_zone_slot));
    if (!z->slots) {
        free(z);
        return -ENOMEM;
    }
    z->meta_fd = -1;
    pthread_mutex_init(&z->lock, NULL);
    vblk_zone_table_init(&z->t, cap, &o, z->slots, vblk_zone_table_mem_size(n));
    *out = z;
    return 0;
}

void zemu_destroy(struct zemu *z)
{
    if (!z)
        return;
    if (z->meta_fd >= 0)
        close(z->meta_fd);
    pthread_mutex_destroy(&z->lock);
    free(z->slots);
    free(z);
}

static void meta_header(const struct zemu *z, uint8_t *h)
{
    struct vblk_zone_info in;
    vblk_zone_table_info(&z->t, &in);
    memset(h, 0, META_HDR);
    memcpy(h, META_MAGIC, 8);
    put32(h + 8, META_VERSION);
    put32(h + 12, META_HDR);
    put64(h + 16, z->t.capacity);
    put32(h + 24, in.zone_sectors);
    put32(h + 28, z->t.nr_zones);
    put32(h + 32, z->t.nr_conv);
    put32(h + 36, in.model);
    put32(h + 60, fnv1a(h, 60, 2166136261u));
}

static void meta_record(uint32_t idx, const struct vblk_zone *zn, uint8_t *r)
{
    uint8_t cond = zn->state == VBLK_ZS_RDONLY || zn->state == VBLK_ZS_OFFLINE ? zn->state : 0;
    uint8_t ix[4];
    memset(r, 0, META_REC);
    put64(r, zn->type == VBLK_ZT_CONV ? zn->start : zn->wp);
    r[8] = cond;
    put32(ix, idx);
    put32(r + 12, fnv1a(ix, 4, fnv1a(r, 12, 2166136261u)));
}

static int pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        p += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

static int pread_all(int fd, void *buf, size_t len, off_t off)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = pread(fd, p, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EBADMSG; /* short: truncated metadata */
        p += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

/* Writes the records of zones [first, first + n) from one snapshot. */
static int persist(struct zemu *z, uint32_t first, uint32_t n)
{
    if (z->meta_fd < 0)
        return 0;
    uint8_t buf[64 * META_REC];
    int rc = 0;
    pthread_mutex_lock(&z->lock);
    while (n && rc == 0) {
        uint32_t k = n < 64 ? n : 64;
        for (uint32_t i = 0; i < k; i++) {
            struct vblk_zone zn;
            vblk_zone_table_get(&z->t, first + i, &zn);
            meta_record(first + i, &zn, buf + i * META_REC);
        }
        rc = pwrite_all(z->meta_fd, buf, (size_t)k * META_REC,
                        (off_t)META_HDR + (off_t)first * META_REC);
        first += k;
        n -= k;
    }
    pthread_mutex_unlock(&z->lock);
    return rc;
}

int zemu_persist_sector(struct zemu *z, uint64_t sector)
{
    if (sector >= z->t.capacity)
        return 0;
    return persist(z, vblk_zone_table_index(&z->t, sector), 1);
}

int zemu_persist_all(struct zemu *z)
{
    return persist(z, 0, z->t.nr_zones);
}

int zemu_sync(struct zemu *z)
{
    if (z->meta_fd >= 0 && fdatasync(z->meta_fd) < 0)
        return -errno;
    return 0;
}

int zemu_attach_meta(struct zemu *z, const char *path, bool read_only)
{
    int fd = open(path, (read_only ? O_RDONLY : O_RDWR | O_CREAT) | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    struct stat st;
    int rc = fstat(fd, &st) < 0 ? -errno : 0;
    uint8_t want[META_HDR];
    meta_header(z, want);
    if (rc == 0 && st.st_size == 0 && !read_only) {
        /* New: every zone empty, written and synced before use. */
        z->meta_fd = fd;
        rc = pwrite_all(fd, want, META_HDR, 0);
        if (rc == 0)
            rc = zemu_persist_all(z);
        if (rc == 0 && fsync(fd) < 0)
            rc = -errno;
        if (rc < 0)
            z->meta_fd = -1;
    } else if (rc == 0) {
        uint8_t h[META_HDR];
        rc = pread_all(fd, h, META_HDR, 0);
        /* A different geometry is a different disk: refuse it. */
        if (rc == 0 && memcmp(h, want, META_HDR) != 0)
            rc = -EBADMSG;
        for (uint32_t i = 0; rc == 0 && i < z->t.nr_zones; i++) {
            uint8_t r[META_REC], ix[4];
            rc = pread_all(fd, r, META_REC, (off_t)META_HDR + (off_t)i * META_REC);
            if (rc < 0)
                break;
            put32(ix, i);
            if (get32(r + 12) != fnv1a(ix, 4, fnv1a(r, 12, 2166136261u)))
                rc = -EBADMSG;
            else if (vblk_zone_table_restore(&z->t, i, get64(r), r[8]) < 0)
                rc = -EBADMSG;
        }
        if (rc == 0)
            z->meta_fd = read_only ? -1 : fd;
    }
    if (z->meta_fd != fd)
        close(fd);
    return rc;
}

struct zemu *zemu_of(void *be)
{
    return *(struct zemu **)be;
}

int zemu_zone_info(void *be, struct vblk_zone_info *info)
{
    struct zemu *z = zemu_of(be);
    if (!z)
        return 0;
    vblk_zone_table_info(&z->t, info);
    return 1;
}

int zemu_zone_report(void *be, uint64_t sector, struct vblk_zone *zones, uint32_t n)
{
    struct zemu *z = zemu_of(be);
    return z ? vblk_zone_table_report(&z->t, sector, zones, n) : -EOPNOTSUPP;
}

struct vblk_zone_table *vblk_backend_zone_table(const struct vblk_backend *be)
{
    if (!be || !be->ops || be->ops->version < VBLK_BACKEND_OPS_V2 ||
        be->ops->zone_info != zemu_zone_info)
        return NULL;
    struct zemu *z = zemu_of(be->ctx);
    return z ? &z->t : NULL;
}

int vblk_backend_zone_persist(const struct vblk_backend *be, uint32_t idx)
{
    struct vblk_zone_table *t = vblk_backend_zone_table(be);
    if (!t || idx >= t->nr_zones)
        return -EINVAL;
    return persist(zemu_of(be->ctx), idx, 1);
}
