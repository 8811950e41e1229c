/* SPDX-License-Identifier: MIT */
/*
 * Passthrough of a host zoned block device (an SMR disk, a ZNS namespace,
 * null_blk with zoned=1) opened by the file backend: the kernel keeps the
 * zone state machine, this file maps the requests onto it.
 *
 *  - ZONE_REPORT: BLKREPORTZONE (the kernel's zone conditions and types use
 *    the virtio numbering already).
 *  - ZONE_OPEN / _CLOSE / _FINISH / _RESET: BLKOPENZONE / BLKCLOSEZONE /
 *    BLKFINISHZONE / BLKRESETZONE on the zone; ZONE_RESET_ALL: BLKRESETZONE
 *    over the whole device.
 *  - IN: as is, with zeros past a sequential zone's write pointer.
 *  - OUT to a sequential zone, and ZONE_APPEND (user space has no zone
 *    append): a write at the zone's write pointer, under that zone's lock,
 *    so appends from several queues are serialised per zone and each gets
 *    its own range. The write pointer is shadowed: read with BLKREPORTZONE
 *    at start and after every zone operation, advanced by every write.
 *    A write off it fails with ZONE_UNALIGNED_WP before reaching the device.
 *  - I/O uses O_DIRECT (the page cache would reorder writes to sequential
 *    zones); buffers O_DIRECT refuses (misaligned, or memory it cannot pin
 *    such as VDUSE's bounce mappings) go through an aligned bounce buffer.
 * Errors the kernel reports: EINVAL as ZONE_INVALID_CMD, ETOOMANYREFS as
 * ZONE_OPEN_RESOURCE, EOVERFLOW as ZONE_ACTIVE_RESOURCE, anything else as
 * IOERR. Zoned devices use the psync engine.
 */
#ifndef _FILE_OFFSET_BITS
#define _FILE_OFFSET_BITS 64
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/blkzoned.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include "backend/backend_internal.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

#define REPORT_CHUNK 64u
#define WP_UNKNOWN   UINT64_MAX

struct zdev {
    struct vblk_zone_info info;
    uint64_t capacity; /* sectors */
    uint32_t nr_zones;
    uint32_t lbs; /* logical block size: the O_DIRECT alignment */
    pthread_mutex_t *lock;
    uint64_t *wp;  /* shadow write pointer of sequential zones, or WP_UNKNOWN */
    uint64_t *cap; /* zone capacity */
    uint8_t *type;
};

static uint64_t sysfs_u64(dev_t rdev, const char *attr, uint64_t dflt)
{
    char path[128];
    unsigned long long v;
    snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/queue/%s", major(rdev), minor(rdev), attr);
    FILE *f = fopen(path, "re");
    if (!f)
        return dflt;
    int n = fscanf(f, "%llu", &v);
    fclose(f);
    return n == 1 ? v : dflt;
}

static uint8_t errno_status(int err)
{
    switch (err) {
    case EINVAL:
        return VBLK_S_ZONE_INVALID_CMD;
    case ETOOMANYREFS:
        return VBLK_S_ZONE_OPEN_RESOURCE;
    case EOVERFLOW:
        return VBLK_S_ZONE_ACTIVE_RESOURCE;
    default:
        return VBLK_S_IOERR;
    }
}

/* BLKREPORTZONE of up to @n zones from @sector into @out. Returns the count
 * or a negative errno. */
static int report(int fd, uint64_t sector, struct vblk_zone *out, uint32_t n)
{
    if (n > REPORT_CHUNK)
        n = REPORT_CHUNK;
    /* The report header and room for its zones[] (a flexible array). */
    union {
        struct blk_zone_report h;
        unsigned char room[sizeof(struct blk_zone_report) + REPORT_CHUNK * sizeof(struct blk_zone)];
    } r;
    memset(&r, 0, sizeof(r));
    r.h.sector = sector;
    r.h.nr_zones = n;
    if (ioctl(fd, BLKREPORTZONE, &r) < 0)
        return -errno;
    if (r.h.nr_zones > n)
        return -EIO;
    for (uint32_t i = 0; i < r.h.nr_zones; i++) {
        const struct blk_zone *z = &r.h.zones[i];
        out[i].start = z->start;
        out[i].len = z->len;
        out[i].cap = (r.h.flags & BLK_ZONE_REP_CAPACITY) ? z->capacity : z->len;
        out[i].wp = z->wp;
        out[i].type = z->type;
        out[i].state = z->cond;
    }
    return (int)r.h.nr_zones;
}

/* Refreshes the shadow of zone @i (its lock held, or before any I/O). */
static int refresh(struct file_be *fb, uint32_t i)
{
    struct zdev *zd = fb->zdev;
    struct vblk_zone z;
    int n = report(fb->fd, (uint64_t)i * zd->info.zone_sectors, &z, 1);
    if (n < 0)
        return n;
    if (n != 1)
        return -EIO;
    zd->type[i] = z.type;
    zd->cap[i] = z.cap;
    bool writable = z.state == VBLK_ZS_EMPTY || z.state == VBLK_ZS_IOPEN ||
                    z.state == VBLK_ZS_EOPEN || z.state == VBLK_ZS_CLOSED;
    zd->wp[i] = z.type != VBLK_ZT_CONV && writable ? z.wp : WP_UNKNOWN;
    return 0;
}

static int zdev_zone_info(void *be, struct vblk_zone_info *info)
{
    struct file_be *fb = be;
    if (!fb->zdev)
        return zemu_zone_info(be, info);
    *info = fb->zdev->info;
    return 1;
}

static int zdev_zone_report(void *be, uint64_t sector, struct vblk_zone *zones, uint32_t n)
{
    struct file_be *fb = be;
    return fb->zdev ? report(fb->fd, sector, zones, n) : zemu_zone_report(be, sector, zones, n);
}

/* pread / pwrite of the whole request at byte @off, straight from the
 * driver's buffers, or through a bounce buffer when O_DIRECT refuses them. */
static uint8_t direct_io(struct file_be *fb, struct vblk_req *req, uint64_t off, uint32_t len)
{
    bool in = req->type == VBLK_T_IN;
    int cnt = req->niov > IOV_MAX ? IOV_MAX : req->niov;
    ssize_t n;
    do {
        n = in ? preadv(fb->fd, (const struct iovec *)req->iov, cnt, (off_t)off)
               : pwritev(fb->fd, (const struct iovec *)req->iov, cnt, (off_t)off);
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)len)
        return VBLK_S_OK;
    if (n >= 0 && (n % fb->zdev->lbs || (!in && n > 0)))
        return VBLK_S_IOERR; /* a partial write at a write pointer cannot be resumed safely */
    /* EINVAL: buffers O_DIRECT cannot take (misaligned); EFAULT: memory
     * the kernel cannot pin for it (a VDUSE bounce mapping). Neither
     * reached the device: once more through a bounce buffer, as is a
     * short read. */
    if (n < 0 && errno != EINVAL && errno != EFAULT)
        return errno_status(errno);
    void *b;
    if (posix_memalign(&b, 4096, len) != 0)
        return VBLK_S_IOERR;
    uint8_t st = VBLK_S_OK;
    if (!in) {
        uint8_t *p = b;
        for (uint16_t i = 0; i < req->niov; i++) {
            memcpy(p, req->iov[i].base, req->iov[i].len);
            p += req->iov[i].len;
        }
    }
    do {
        n = in ? pread(fb->fd, b, len, (off_t)off) : pwrite(fb->fd, b, len, (off_t)off);
    } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)len) {
        st = n < 0 ? errno_status(errno) : VBLK_S_IOERR;
    } else if (in) {
        const uint8_t *p = b;
        for (uint16_t i = 0; i < req->niov; i++) {
            memcpy(req->iov[i].base, p, req->iov[i].len);
            p += req->iov[i].len;
        }
    }
    free(b);
    return st;
}

/* OUT and ZONE_APPEND: a conventional zone is written as is; a sequential
 * one under its lock, at its write pointer. */
static uint8_t zdev_write(struct file_be *fb, struct vblk_req *req)
{
    struct zdev *zd = fb->zdev;
    uint64_t nsect = req->len >> VBLK_SECTOR_SHIFT;
    uint32_t i = (uint32_t)(req->sector / zd->info.zone_sectors);
    uint64_t start = (uint64_t)i * zd->info.zone_sectors;
    bool append = req->type == VBLK_T_ZONE_APPEND;
    if (zd->type[i] == VBLK_ZT_CONV) {
        if (append)
            return VBLK_S_ZONE_INVALID_CMD;
        return direct_io(fb, req, req->sector << VBLK_SECTOR_SHIFT, req->len);
    }
    if (req->sector + nsect > start + zd->info.zone_sectors)
        return VBLK_S_ZONE_INVALID_CMD; /* across the zone's end */
    pthread_mutex_lock(&zd->lock[i]);
    uint64_t wp = zd->wp[i], at = append ? wp : req->sector;
    uint8_t st;
    if (wp == WP_UNKNOWN)
        st = VBLK_S_ZONE_INVALID_CMD; /* full, read-only or offline */
    else if (at != wp)
        st = VBLK_S_ZONE_UNALIGNED_WP;
    else if (nsect > start + zd->cap[i] - wp)
        st = VBLK_S_ZONE_INVALID_CMD;
    else if ((at * VBLK_SECTOR_SIZE) % zd->info.write_granularity ||
             req->len % zd->info.write_granularity)
        st = VBLK_S_ZONE_UNALIGNED_WP;
    else
        st = direct_io(fb, req, at << VBLK_SECTOR_SHIFT, req->len);
    if (st == VBLK_S_OK) {
        zd->wp[i] = at + nsect == start + zd->cap[i] ? WP_UNKNOWN : at + nsect;
        if ((req->flags & VBLK_REQ_F_FUA) && fdatasync(fb->fd) < 0)
            st = VBLK_S_IOERR;
        if (append)
            vblk_req_set_append_sector(req, at);
    } else if (st == VBLK_S_IOERR || st == VBLK_S_ZONE_OPEN_RESOURCE ||
               st == VBLK_S_ZONE_ACTIVE_RESOURCE) {
        (void)refresh(fb, i); /* what did the device do? ask it */
    }
    pthread_mutex_unlock(&zd->lock[i]);
    return st;
}

static uint8_t zdev_mgmt(struct file_be *fb, struct vblk_req *req)
{
    struct zdev *zd = fb->zdev;
    unsigned long op = req->type == VBLK_T_ZONE_OPEN     ? BLKOPENZONE
                       : req->type == VBLK_T_ZONE_CLOSE  ? BLKCLOSEZONE
                       : req->type == VBLK_T_ZONE_FINISH ? BLKFINISHZONE
                                                         : BLKRESETZONE;
    uint32_t first = 0, last = zd->nr_zones;
    struct blk_zone_range r = {0, zd->capacity};
    if (req->type != VBLK_T_ZONE_RESET_ALL) {
        first = (uint32_t)(req->sector / zd->info.zone_sectors);
        last = first + 1;
        /* virtio 1.2 5.2.6: zone operations on a conventional zone fail. */
        if (zd->type[first] == VBLK_ZT_CONV)
            return VBLK_S_ZONE_INVALID_CMD;
        r.sector = req->sector;
        r.nr_sectors = zd->info.zone_sectors;
        if (r.sector + r.nr_sectors > zd->capacity)
            r.nr_sectors = zd->capacity - r.sector;
    }
    for (uint32_t i = first; i < last; i++)
        pthread_mutex_lock(&zd->lock[i]);
    uint8_t st = ioctl(fb->fd, op, &r) == 0 ? VBLK_S_OK : errno_status(errno);
    for (uint32_t i = first; i < last; i++) {
        if (refresh(fb, i) < 0 && st == VBLK_S_OK)
            st = VBLK_S_IOERR;
        pthread_mutex_unlock(&zd->lock[i]);
    }
    return st;
}

/* IN: what the device holds, and zeros past a sequential zone's write
 * pointer (virtio 1.2 5.2.6 "unwritten data": devices such as null_blk
 * return whatever a reset left there). */
static uint8_t zdev_read(struct file_be *fb, struct vblk_req *req)
{
    struct zdev *zd = fb->zdev;
    uint32_t i = (uint32_t)(req->sector / zd->info.zone_sectors);
    uint64_t nsect = req->len >> VBLK_SECTOR_SHIFT;
    if (zd->type[i] != VBLK_ZT_CONV &&
        req->sector + nsect > (uint64_t)(i + 1) * zd->info.zone_sectors)
        return VBLK_S_ZONE_INVALID_CMD; /* across a sequential zone's end */
    uint8_t st = direct_io(fb, req, req->sector << VBLK_SECTOR_SHIFT, req->len);
    if (st != VBLK_S_OK || zd->type[i] == VBLK_ZT_CONV)
        return st;
    pthread_mutex_lock(&zd->lock[i]);
    uint64_t wp = zd->wp[i];
    pthread_mutex_unlock(&zd->lock[i]);
    if (wp == WP_UNKNOWN || wp >= req->sector + nsect)
        return VBLK_S_OK; /* full, read-only: all of it is data */
    struct iov_pos pos = {0, 0};
    uint64_t valid = wp > req->sector ? wp - req->sector : 0;
    be_iov_advance(req->iov, req->niov, &pos, valid << VBLK_SECTOR_SHIFT);
    be_iov_zero(req->iov, req->niov, pos);
    return VBLK_S_OK;
}

static void zdev_submit(void *be, void *qctx, struct vblk_req *req)
{
    struct file_be *fb = be;
    uint8_t st;
    (void)qctx;
    switch (req->type) {
    case VBLK_T_IN:
        st = zdev_read(fb, req);
        break;
    case VBLK_T_OUT:
    case VBLK_T_ZONE_APPEND:
        st = zdev_write(fb, req);
        break;
    case VBLK_T_FLUSH:
        st = fdatasync(fb->fd) == 0 ? VBLK_S_OK : VBLK_S_IOERR;
        break;
    case VBLK_T_ZONE_OPEN:
    case VBLK_T_ZONE_CLOSE:
    case VBLK_T_ZONE_FINISH:
    case VBLK_T_ZONE_RESET:
    case VBLK_T_ZONE_RESET_ALL:
        st = zdev_mgmt(fb, req);
        break;
    default:
        st = VBLK_S_UNSUPP;
        break;
    }
    vblk_req_complete(req, st);
}

bool file_is_zoned_dev(int fd)
{
    uint32_t zs = 0;
    return ioctl(fd, BLKGETZONESZ, &zs) == 0 && zs != 0;
}

void file_zoned_dev_free(struct file_be *fb)
{
    struct zdev *zd = fb->zdev;
    if (!zd)
        return;
    if (zd->lock)
        for (uint32_t i = 0; i < zd->nr_zones; i++)
            pthread_mutex_destroy(&zd->lock[i]);
    free(zd->lock);
    free(zd->wp);
    free(zd->cap);
    free(zd->type);
    free(zd);
    fb->zdev = NULL;
}

int file_zoned_dev_setup(struct file_be *fb, const char *path, const struct stat *st,
                         bool read_only)
{
    uint32_t zs = 0, nz = 0;
    int lbs = 512;
    if (ioctl(fb->fd, BLKGETZONESZ, &zs) < 0 || ioctl(fb->fd, BLKGETNRZONES, &nz) < 0 || !zs || !nz)
        return -EINVAL;
    (void)ioctl(fb->fd, BLKSSZGET, &lbs);
    /* O_DIRECT: the page cache could reorder writes within a zone. */
    int fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    close(fb->fd);
    fb->fd = fd;
    struct zdev *zd = calloc(1, sizeof(*zd));
    if (!zd)
        return -ENOMEM;
    fb->zdev = zd;
    zd->capacity = fb->size >> VBLK_SECTOR_SHIFT;
    zd->nr_zones = nz;
    zd->lbs = (uint32_t)lbs;
    zd->info.model = VBLK_Z_HM;
    zd->info.zone_sectors = zs;
    zd->info.max_open_zones = (uint32_t)sysfs_u64(st->st_rdev, "max_open_zones", 0);
    zd->info.max_active_zones = (uint32_t)sysfs_u64(st->st_rdev, "max_active_zones", 0);
    zd->info.write_granularity = (uint32_t)lbs;
    /* Appends are writes here: as large as a zone allows, up to 1 MiB. */
    zd->info.max_append_sectors = zs < 2048 ? zs : 2048;
    zd->lock = calloc(nz, sizeof(*zd->lock));
    zd->wp = calloc(nz, sizeof(*zd->wp));
    zd->cap = calloc(nz, sizeof(*zd->cap));
    zd->type = calloc(nz, sizeof(*zd->type));
    if (!zd->lock || !zd->wp || !zd->cap || !zd->type) {
        free(zd->lock);
        zd->lock = NULL;
        file_zoned_dev_free(fb);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < nz; i++)
        pthread_mutex_init(&zd->lock[i], NULL);
    struct vblk_zone z[REPORT_CHUNK];
    for (uint32_t i = 0; i < nz;) {
        int n = report(fb->fd, (uint64_t)i * zs, z, REPORT_CHUNK);
        if (n <= 0) {
            file_zoned_dev_free(fb);
            return n < 0 ? n : -EIO;
        }
        for (int k = 0; k < n && i < nz; k++, i++) {
            bool writable = z[k].state == VBLK_ZS_EMPTY || z[k].state == VBLK_ZS_IOPEN ||
                            z[k].state == VBLK_ZS_EOPEN || z[k].state == VBLK_ZS_CLOSED;
            zd->type[i] = z[k].type;
            zd->cap[i] = z[k].cap;
            zd->wp[i] = z[k].type != VBLK_ZT_CONV && writable ? z[k].wp : WP_UNKNOWN;
        }
    }
    fb->ops.submit = zdev_submit;
    fb->ops.zone_info = zdev_zone_info;
    fb->ops.zone_report = zdev_zone_report;
    /* Ranges make no sense on a zoned device (the device offers none). */
    fb->ops.caps &=
        ~(VBLK_BACKEND_CAP_DISCARD | VBLK_BACKEND_CAP_WRITE_ZEROES | VBLK_BACKEND_CAP_SECURE_ERASE);
    return 0;
}
