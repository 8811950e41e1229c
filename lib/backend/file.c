/* SPDX-License-Identifier: MIT */
/*
 * The file backend: a regular file or a block device. This file opens it,
 * works out its size and capabilities, and implements the psync engine
 * (preadv/pwritev/fdatasync/fallocate on the queue thread). The io_uring
 * engine lives in file_uring.c.
 *
 * Mapping of request types:
 *  - IN / OUT: preadv / pwritev of the request's iovecs, resumed after a
 *    short transfer; a read past the end of a regular file (it shrank under
 *    us) returns zeros.
 *  - FLUSH: fdatasync.
 *  - DISCARD: fallocate(PUNCH_HOLE | KEEP_SIZE).
 *  - WRITE_ZEROES: fallocate(ZERO_RANGE | KEEP_SIZE), or PUNCH_HOLE with the
 *    UNMAP flag. A regular file whose filesystem lacks ZERO_RANGE (tmpfs)
 *    gets PUNCH_HOLE instead: holes read back as zeros, which is all the
 *    spec asks of WRITE_ZEROES.
 *  - EOPNOTSUPP from fallocate on a block device falls back to the
 *    BLKDISCARD / BLKZEROOUT ioctls (synchronous); otherwise VBLK_S_UNSUPP.
 *  - SECURE_ERASE only with opts->secure_erase (no way to guarantee it on
 *    a file system): BLKSECDISCARD, or zeros written over the ranges and
 *    fdatasync (file_secure_erase()), synchronously in either engine.
 *
 * With emulated zones (opts->zoned) the zone table (zone.h) decides every
 * write and zone operation, and its state is persisted in a metadata file
 * (zoned_emul.c) before the request completes; such files use the psync
 * engine.
 */
#ifndef _FILE_OFFSET_BITS
#define _FILE_OFFSET_BITS 64
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
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

#define FILE_DEFAULT_RING_DEPTH 256u
#define FILE_MAX_RING_DEPTH     32768u

/* ---- psync engine ---- */

static uint8_t psync_rw(struct file_be *fb, struct vblk_req *req)
{
    const bool in = req->type == VBLK_T_IN;
    const uint64_t base = req->sector << VBLK_SECTOR_SHIFT;
    struct iov_pos pos = {0, 0};
    uint64_t done = 0;

    while (done < req->len) {
        const struct vblk_iov *v;
        off_t at = (off_t)(base + done);
        ssize_t n;

        if (pos.idx >= req->niov)
            return VBLK_S_IOERR; /* iovecs shorter than len */
        v = &req->iov[pos.idx];
        if (pos.off != 0) {
            /* Resume inside one buffer without touching the iovec array. */
            void *p = (uint8_t *)v->base + pos.off;
            size_t l = v->len - pos.off;
            n = in ? pread(fb->fd, p, l, at) : pwrite(fb->fd, p, l, at);
        } else {
            uint32_t cnt = req->niov - pos.idx;
            if (cnt > IOV_MAX)
                cnt = IOV_MAX;
            n = in ? preadv(fb->fd, (const struct iovec *)v, (int)cnt, at)
                   : pwritev(fb->fd, (const struct iovec *)v, (int)cnt, at);
        }
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return VBLK_S_IOERR;
        }
        if (n == 0) {
            if (!in)
                return VBLK_S_IOERR;
            be_iov_zero(req->iov, req->niov, pos); /* past EOF */
            return VBLK_S_OK;
        }
        done += (uint64_t)n;
        be_iov_advance(req->iov, req->niov, &pos, (uint64_t)n);
    }
    /* Write-through cache mode: the write must be stable at completion. */
    if (!in && (req->flags & VBLK_REQ_F_FUA) && fdatasync(fb->fd) < 0)
        return VBLK_S_IOERR;
    return VBLK_S_OK;
}

static uint8_t psync_ranges(struct file_be *fb, struct vblk_req *req)
{
    uint8_t st = VBLK_S_OK;

    for (uint32_t i = 0; i < req->nranges; i++) {
        const struct vblk_discard_wz_seg *r = &req->ranges[i];
        int mode = file_range_mode(fb, req->type, r);
        uint8_t s;

        if (r->num_sectors == 0)
            continue;
        s = file_range_falloc(fb->fd, mode, be_range_off(r), be_range_len(r));
        if (s == VBLK_S_UNSUPP)
            s = file_range_fallback(fb, req->type, r, mode);
        if (s != VBLK_S_OK && st == VBLK_S_OK)
            st = s;
    }
    return st;
}

/* Requests of a file with emulated zones. */
static uint8_t psync_zoned(struct file_be *fb, struct vblk_req *req)
{
    struct zemu *z = fb->zemu;
    struct vblk_zone_table *t = &z->t;
    uint64_t nsect = req->len >> VBLK_SECTOR_SHIFT, at, valid;
    uint32_t len = req->len;
    uint8_t st;
    switch (req->type) {
    case VBLK_T_IN:
        st = vblk_zone_table_read(t, req->sector, nsect, &valid);
        if (st != VBLK_S_OK)
            return st;
        /* Past the write pointer: unwritten data reads as zeros. */
        req->len = (uint32_t)valid << VBLK_SECTOR_SHIFT;
        st = psync_rw(fb, req);
        req->len = len;
        if (st == VBLK_S_OK && valid < nsect) {
            struct iov_pos pos = {0, 0};
            be_iov_advance(req->iov, req->niov, &pos, valid << VBLK_SECTOR_SHIFT);
            be_iov_zero(req->iov, req->niov, pos);
        }
        return st;
    case VBLK_T_OUT:
    case VBLK_T_ZONE_APPEND: {
        uint64_t sector = req->sector;
        st = vblk_zone_table_write_begin(t, req->type == VBLK_T_ZONE_APPEND, sector, nsect, &at);
        if (st != VBLK_S_OK)
            return st;
        req->sector = at;
        st = psync_rw(fb, req);
        req->sector = sector;
        vblk_zone_table_write_end(t, at, nsect, st == VBLK_S_OK);
        /* The new write pointer is on disk before the write completes. */
        if (st == VBLK_S_OK && zemu_persist_sector(z, at) < 0)
            st = VBLK_S_IOERR;
        if (st == VBLK_S_OK && (req->flags & VBLK_REQ_F_FUA) && zemu_sync(z) < 0)
            st = VBLK_S_IOERR;
        if (st == VBLK_S_OK)
            vblk_req_set_append_sector(req, at);
        return st;
    }
    case VBLK_T_FLUSH:
        if (fdatasync(fb->fd) < 0 || zemu_sync(z) < 0)
            return VBLK_S_IOERR;
        return VBLK_S_OK;
    case VBLK_T_ZONE_OPEN:
    case VBLK_T_ZONE_CLOSE:
    case VBLK_T_ZONE_FINISH:
    case VBLK_T_ZONE_RESET:
    case VBLK_T_ZONE_RESET_ALL: {
        st = vblk_zone_table_mgmt(t, req->type, req->sector);
        if (st != VBLK_S_OK)
            return st;
        int rc = req->type == VBLK_T_ZONE_RESET_ALL ? zemu_persist_all(z)
                                                    : zemu_persist_sector(z, req->sector);
        /* Zone operations are rare: each is durable when it completes. */
        if (rc < 0 || zemu_sync(z) < 0)
            return VBLK_S_IOERR;
        if (req->type == VBLK_T_ZONE_RESET) {
            /* Give the space back; the zone reads as zeros anyway. */
            struct vblk_zone zn;
            vblk_zone_table_get(t, vblk_zone_table_index(t, req->sector), &zn);
            if (zn.wp == zn.start)
                (void)file_range_falloc(fb->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                        zn.start << VBLK_SECTOR_SHIFT, zn.len << VBLK_SECTOR_SHIFT);
        }
        return VBLK_S_OK;
    }
    default:
        return VBLK_S_UNSUPP;
    }
}

static void psync_submit(void *be, void *qctx, struct vblk_req *req)
{
    struct file_be *fb = be;
    uint8_t st;

    (void)qctx;
    if (fb->zemu) {
        vblk_req_complete(req, psync_zoned(fb, req));
        return;
    }
    unsigned token = be_guard_enter(&fb->guard, req->queue);
    if (!be_guard_req_fits(&fb->guard, req)) {
        /* Checked by the device against a capacity a resize just shrank. */
        be_guard_exit(&fb->guard, req->queue, token);
        vblk_req_complete(req, VBLK_S_IOERR);
        return;
    }
    switch (req->type) {
    case VBLK_T_IN:
    case VBLK_T_OUT:
        st = psync_rw(fb, req);
        break;
    case VBLK_T_FLUSH:
        st = fdatasync(fb->fd) == 0 ? VBLK_S_OK : VBLK_S_IOERR;
        break;
    case VBLK_T_DISCARD:
    case VBLK_T_WRITE_ZEROES:
        st = psync_ranges(fb, req);
        break;
    case VBLK_T_SECURE_ERASE:
        /* Only when offered (opts->secure_erase). */
        st = (fb->ops.caps & VBLK_BACKEND_CAP_SECURE_ERASE) ? file_secure_erase(fb, req)
                                                            : VBLK_S_UNSUPP;
        break;
    default:
        st = VBLK_S_UNSUPP;
        break;
    }
    be_guard_exit(&fb->guard, req->queue, token);
    vblk_req_complete(req, st);
}

/* ---- open / destroy ---- */

/* Regular files only: a block device's size is not ours to change. */
static int file_resize(void *be, uint64_t size)
{
    struct file_be *fb = be;
    /* A zoned layout (and its metadata) is fixed at creation. */
    if (fb->blkdev || fb->zemu)
        return -ENOTSUP;
    if (fb->ops.caps & VBLK_BACKEND_CAP_READ_ONLY)
        return -EROFS;
    uint64_t old = be_guard_size(&fb->guard);
    if (size > (uint64_t)INT64_MAX)
        return -EFBIG;
    if (size >= old) {
        /* Grow the file first, then let requests in. */
        if (ftruncate(fb->fd, (off_t)size) < 0)
            return -errno;
        return be_guard_set_size(&fb->guard, size, BE_RESIZE_TIMEOUT_MS);
    }
    /* Shrink: no request may write past the end once the file is cut (a
     * write there would extend it again). */
    int rc = be_guard_set_size(&fb->guard, size, BE_RESIZE_TIMEOUT_MS);
    if (rc < 0)
        return rc;
    return ftruncate(fb->fd, (off_t)size) < 0 ? -errno : 0;
}

static void file_destroy(void *be)
{
    struct file_be *fb = be;
    if (fb == NULL)
        return;
    close(fb->fd);
    zemu_destroy(fb->zemu);
    file_zoned_dev_free(fb);
    free(fb);
}

/*
 * Whether a block device can discard: /sys/dev/block/M:m/queue (or its
 * parent's, for a partition) has discard_max_bytes > 0. Unknown: yes.
 */
static bool blkdev_can_discard(dev_t rdev)
{
    static const char *const fmt[] = {"/sys/dev/block/%u:%u/queue/discard_max_bytes",
                                      "/sys/dev/block/%u:%u/../queue/discard_max_bytes"};
    for (size_t i = 0; i < sizeof(fmt) / sizeof(fmt[0]); i++) {
        char path[96];
        unsigned long long v;
        FILE *f;
        int n;

        snprintf(path, sizeof(path), fmt[i], major(rdev), minor(rdev));
        f = fopen(path, "re");
        if (f == NULL)
            continue;
        n = fscanf(f, "%llu", &v);
        fclose(f);
        if (n == 1)
            return v > 0;
    }
    return true;
}

/*
 * Whether the filesystem can punch holes: punch one page past the end of
 * the file, which changes nothing. Only EOPNOTSUPP counts as "no".
 */
static bool file_can_punch(int fd, uint64_t size)
{
    uint64_t at = (size + 4095u) & ~(uint64_t)4095u;
    int r;
    do {
        r = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)at, 4096);
    } while (r < 0 && errno == EINTR);
    return r == 0 || (errno != EOPNOTSUPP && errno != ENOTSUP);
}

static int file_get_size(int fd, const struct stat *st, uint64_t *size)
{
    if (S_ISREG(st->st_mode)) {
        *size = (uint64_t)st->st_size;
        return 0;
    }
    if (S_ISBLK(st->st_mode))
        return ioctl(fd, BLKGETSIZE64, size) == 0 ? 0 : -errno;
    return -EINVAL;
}

/* Picks the engine. Returns 1 for io_uring, 0 for psync, or a negative errno. */
static int file_pick_engine(int engine, unsigned depth)
{
#if VBLK_HAVE_URING
    int r;
    if (engine == VBLK_FILE_ENGINE_PSYNC)
        return 0;
    r = file_uring_probe(depth);
    if (r == 0)
        return 1;
    return engine == VBLK_FILE_ENGINE_IO_URING ? r : 0;
#else
    (void)depth;
    return engine == VBLK_FILE_ENGINE_IO_URING ? -ENOTSUP : 0;
#endif
}

/* Emulated zones: the table, and its state from the metadata file. */
static int file_zoned_setup(struct file_be *fb, const char *path, const struct vblk_file_opts *opts)
{
    int r = zemu_create(fb->size, opts->zoned, &fb->zemu);
    if (r < 0)
        return r;
    char *meta = NULL;
    const char *mp = opts->zone_meta;
    if (mp == NULL) {
        size_t n = strlen(path);
        meta = malloc(n + sizeof(".zones"));
        if (meta == NULL) {
            r = -ENOMEM;
            goto out;
        }
        memcpy(meta, path, n);
        memcpy(meta + n, ".zones", sizeof(".zones"));
        mp = meta;
    }
    r = zemu_attach_meta(fb->zemu, mp, opts->read_only);
out:
    free(meta);
    if (r < 0) {
        zemu_destroy(fb->zemu);
        fb->zemu = NULL;
    }
    return r;
}

int vblk_backend_file_open(const char *path, const struct vblk_file_opts *opts,
                           struct vblk_backend *out)
{
    static const struct vblk_file_opts defaults = {0};
    struct file_be *fb;
    struct stat st;
    uint64_t size = 0;
    unsigned depth;
    int flags, fd, r, uring;

    if (path == NULL || out == NULL)
        return -EINVAL;
    if (opts == NULL)
        opts = &defaults;
    if (opts->engine != VBLK_FILE_ENGINE_AUTO && opts->engine != VBLK_FILE_ENGINE_IO_URING &&
        opts->engine != VBLK_FILE_ENGINE_PSYNC)
        return -EINVAL;
    depth = opts->ring_depth != 0 ? opts->ring_depth : FILE_DEFAULT_RING_DEPTH;
    if (depth > FILE_MAX_RING_DEPTH)
        return -EINVAL;

    flags = O_CLOEXEC | (opts->read_only ? O_RDONLY : O_RDWR) | (opts->direct ? O_DIRECT : 0);
    fd = open(path, flags);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto fail_fd;
    }
    r = file_get_size(fd, &st, &size);
    if (r < 0)
        goto fail_fd;
    if (size % VBLK_SECTOR_SIZE != 0) {
        r = -EINVAL;
        goto fail_fd;
    }
    /* Zones, emulated or passed through, run on the psync engine; zones
     * cannot be emulated over a zoned device. */
    bool zdev = S_ISBLK(st.st_mode) && file_is_zoned_dev(fd);
    if ((opts->zoned || zdev) && opts->engine == VBLK_FILE_ENGINE_IO_URING) {
        r = -EINVAL;
        goto fail_fd;
    }
    if (opts->zoned && zdev) {
        r = -EINVAL;
        goto fail_fd;
    }
    uring = opts->zoned || zdev ? 0 : file_pick_engine(opts->engine, depth);
    if (uring < 0) {
        r = uring;
        goto fail_fd;
    }
    fb = calloc(1, sizeof(*fb));
    if (fb == NULL) {
        r = -ENOMEM;
        goto fail_fd;
    }
    fb->fd = fd;
    fb->blkdev = S_ISBLK(st.st_mode);
    fb->ring_depth = depth;
    fb->size = size;
    be_guard_init(&fb->guard, size);
    atomic_init(&fb->no_zero_range, false);

    fb->ops.version = VBLK_BACKEND_OPS_V3;
    fb->ops.resize = file_resize;
    fb->ops.name = "file";
    fb->ops.submit = psync_submit;
    fb->ops.destroy = file_destroy;
    fb->ops.zone_info = zemu_zone_info;
    fb->ops.zone_report = zemu_zone_report;
    if (opts->zoned) {
        r = file_zoned_setup(fb, path, opts);
        if (r < 0) {
            free(fb);
            goto fail_fd;
        }
    }
    if (opts->read_only) {
        fb->ops.caps = VBLK_BACKEND_CAP_READ_ONLY;
    } else {
        bool discard = fb->blkdev ? blkdev_can_discard(st.st_rdev) : file_can_punch(fd, size);
        fb->ops.caps = VBLK_BACKEND_CAP_FLUSH | VBLK_BACKEND_CAP_WRITE_ZEROES;
        if (discard)
            fb->ops.caps |= VBLK_BACKEND_CAP_DISCARD;
        else if (!fb->blkdev)
            fb->ops.caps &= ~VBLK_BACKEND_CAP_WRITE_ZEROES; /* no way to zero cheaply */
        if (opts->secure_erase)
            fb->ops.caps |= VBLK_BACKEND_CAP_SECURE_ERASE;
    }
    if (zdev) {
        r = file_zoned_dev_setup(fb, path, &st, opts->read_only);
        if (r < 0) {
            fd = fb->fd; /* setup may have replaced it */
            free(fb);
            goto fail_fd;
        }
    }
#if VBLK_HAVE_URING
    if (uring)
        file_uring_setup(fb);
#endif

    memset(out, 0, sizeof(*out));
    out->ops = &fb->ops;
    out->ctx = fb;
    out->size = size;
    return 0;

fail_fd:
    close(fd);
    return r;
}
