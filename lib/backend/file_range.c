/* SPDX-License-Identifier: MIT */
/*
 * The file backend's DISCARD and WRITE_ZEROES ranges, shared by the psync
 * and io_uring engines: which fallocate() mode a range takes, and the
 * synchronous fallback when the file system or device refuses it.
 */
#ifndef _FILE_OFFSET_BITS
#define _FILE_OFFSET_BITS 64
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "backend/backend_internal.h"

int file_range_mode(struct file_be *fb, uint32_t type, const struct vblk_discard_wz_seg *r)
{
    const int punch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;

    if (type == VBLK_T_DISCARD)
        return punch;
    if (type != VBLK_T_WRITE_ZEROES)
        return 0;
    if ((r->flags & VBLK_WZ_F_UNMAP) != 0)
        return punch;
    if (!fb->blkdev && atomic_load_explicit(&fb->no_zero_range, memory_order_relaxed))
        return punch;
    return FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
}

uint8_t file_range_falloc(int fd, int mode, uint64_t off, uint64_t len)
{
    int r;
    do {
        r = fallocate(fd, mode, (off_t)off, (off_t)len);
    } while (r < 0 && errno == EINTR);
    return r == 0 ? VBLK_S_OK : be_errno_status(-errno);
}

uint8_t file_range_fallback(struct file_be *fb, uint32_t type, const struct vblk_discard_wz_seg *r,
                            int mode)
{
    uint64_t off = be_range_off(r);
    uint64_t len = be_range_len(r);

    if (fb->blkdev) {
        uint64_t rng[2] = {off, len};
        unsigned long req = type == VBLK_T_DISCARD ? BLKDISCARD : BLKZEROOUT;
        if (type != VBLK_T_DISCARD && type != VBLK_T_WRITE_ZEROES)
            return VBLK_S_UNSUPP;
        if (ioctl(fb->fd, req, rng) == 0)
            return VBLK_S_OK;
        return be_errno_status(-errno);
    }
    if (type == VBLK_T_WRITE_ZEROES && (mode & FALLOC_FL_ZERO_RANGE) != 0) {
        /* Remember it, so later requests go straight to PUNCH_HOLE. */
        atomic_store_explicit(&fb->no_zero_range, true, memory_order_relaxed);
        return file_range_falloc(fb->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
    }
    return VBLK_S_UNSUPP;
}

/* Overwrites [off, off + len) with zeros. Returns a VBLK_S_* status. */
static uint8_t zero_fill(int fd, uint64_t off, uint64_t len)
{
    static const uint8_t zeros[64 * 1024];
    while (len) {
        size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
        ssize_t w = pwrite(fd, zeros, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return VBLK_S_IOERR;
        off += (uint64_t)w;
        len -= (uint64_t)w;
    }
    return VBLK_S_OK;
}

uint8_t file_secure_erase(struct file_be *fb, const struct vblk_req *req)
{
    for (uint32_t i = 0; i < req->nranges; i++) {
        const struct vblk_discard_wz_seg *r = &req->ranges[i];
        uint64_t rng[2] = {be_range_off(r), be_range_len(r)};
        if (!rng[1])
            continue;
        if (fb->blkdev && ioctl(fb->fd, BLKSECDISCARD, rng) == 0)
            continue;
        uint8_t st = zero_fill(fb->fd, rng[0], rng[1]);
        if (st != VBLK_S_OK)
            return st;
    }
    return fdatasync(fb->fd) == 0 ? VBLK_S_OK : VBLK_S_IOERR;
}
