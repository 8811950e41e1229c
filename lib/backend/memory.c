/* SPDX-License-Identifier: MIT */
/*
 * The memory backend: a zero-filled RAM disk in an anonymous private
 * mapping, so untouched parts cost no memory. Requests complete inline.
 *
 * Concurrency: the instance is read-only after creation, so queues on
 * different threads may submit at once with no locking. Requests touching
 * distinct sectors are independent; requests racing on the same sectors get
 * whatever interleaving memcpy()/memset() produce, exactly as two in-flight
 * writes to one sector of a real disk have no defined order. A driver that
 * needs ordering waits for the completion of one request before issuing the
 * next (as it must with any disk).
 *
 * Resizing: the mapping reserves address space for growth (PROT_NONE, which
 * costs no memory) and only its first @c size bytes are accessible. Growing
 * opens more of it; shrinking waits for the requests in flight (the resize
 * guard) and gives the tail's pages back, so that it reads as zeros if the
 * disk grows again. The mapping never moves under a request.
 *
 * With emulated zones (vblk_backend_memory_create_zoned()) the zone table
 * of zone.h decides every write and zone operation; its spin lock makes
 * ZONE_APPENDs from several queues take distinct ranges of a zone.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/backend_internal.h"

/* Ranges at least this large are zeroed with MADV_DONTNEED (page-aligned part). */
#define MEM_MADV_MIN (256u * 1024u)

/* Address space reserved for growth on 64-bit hosts: the larger of twice
 * the initial size and this. */
#define MEM_GROW_RESERVE (64ull << 30)

struct mem_be {
    struct zemu *zemu; /* emulated zones or NULL (first member: zemu_of) */
    uint8_t *base;
    size_t map_len;    /* reserved */
    size_t access_len; /* readable and writable, page-aligned */
    size_t page;
    struct be_guard guard;
};

static void mem_zero(struct mem_be *mb, uint64_t off, uint64_t len)
{
    uint8_t *p = mb->base + off;
    if (len >= MEM_MADV_MIN) {
        uintptr_t start = ((uintptr_t)p + mb->page - 1) & ~(uintptr_t)(mb->page - 1);
        uintptr_t end = ((uintptr_t)p + len) & ~(uintptr_t)(mb->page - 1);
        if (end > start && madvise((void *)start, end - start, MADV_DONTNEED) == 0) {
            /* Pages dropped from a private anonymous mapping read back as zeros. */
            memset(p, 0, start - (uintptr_t)p);
            memset((void *)end, 0, (uintptr_t)p + len - end);
            return;
        }
    }
    memset(p, 0, len);
}

/* Copies @len bytes between the disk at sector @at and the request's
 * buffers (in @req's direction); reads zero the buffers past @len. */
static uint8_t mem_copy(struct mem_be *mb, struct vblk_req *req, uint64_t at, uint32_t len)
{
    uint64_t off = at << VBLK_SECTOR_SHIFT;
    uint32_t left = len;
    uint8_t *disk;

    /* The device validated it against the capacity, which a resize may
     * have shrunk since. */
    if (!be_guard_fits(&mb->guard, off, left))
        return VBLK_S_IOERR;
    disk = mb->base + off;
    for (uint32_t i = 0; i < req->niov && left > 0; i++) {
        size_t n = req->iov[i].len < left ? req->iov[i].len : left;
        if (req->type == VBLK_T_IN)
            memcpy(req->iov[i].base, disk, n);
        else
            memcpy(disk, req->iov[i].base, n);
        disk += n;
        left -= (uint32_t)n;
    }
    if (left)
        return VBLK_S_IOERR;
    if (req->type == VBLK_T_IN && len < req->len) {
        struct iov_pos pos = {0, 0};
        be_iov_advance(req->iov, req->niov, &pos, len);
        be_iov_zero(req->iov, req->niov, pos);
    }
    return VBLK_S_OK;
}

static uint8_t mem_rw(struct mem_be *mb, struct vblk_req *req)
{
    return mem_copy(mb, req, req->sector, req->len);
}

/* Requests of a zoned RAM disk: the zone table first, then the copy. */
static uint8_t mem_zoned(struct mem_be *mb, struct vblk_req *req)
{
    struct vblk_zone_table *t = &mb->zemu->t;
    uint64_t nsect = req->len >> VBLK_SECTOR_SHIFT, at, valid;
    uint8_t st;
    switch (req->type) {
    case VBLK_T_IN:
        st = vblk_zone_table_read(t, req->sector, nsect, &valid);
        return st != VBLK_S_OK ? st : mem_copy(mb, req, req->sector, (uint32_t)valid << 9);
    case VBLK_T_OUT:
    case VBLK_T_ZONE_APPEND:
        st = vblk_zone_table_write_begin(t, req->type == VBLK_T_ZONE_APPEND, req->sector, nsect,
                                         &at);
        if (st != VBLK_S_OK)
            return st;
        st = mem_copy(mb, req, at, req->len);
        vblk_zone_table_write_end(t, at, nsect, st == VBLK_S_OK);
        if (st == VBLK_S_OK)
            vblk_req_set_append_sector(req, at);
        return st;
    case VBLK_T_FLUSH:
        return VBLK_S_OK;
    case VBLK_T_ZONE_OPEN:
    case VBLK_T_ZONE_CLOSE:
    case VBLK_T_ZONE_FINISH:
        return vblk_zone_table_mgmt(t, req->type, req->sector);
    case VBLK_T_ZONE_RESET:
    case VBLK_T_ZONE_RESET_ALL:
        /* The data is unreachable past the write pointer (it reads as
         * zeros); dropping it gives the memory back. */
        st = vblk_zone_table_mgmt(t, req->type, req->sector);
        if (st == VBLK_S_OK && req->type == VBLK_T_ZONE_RESET) {
            struct vblk_zone z;
            vblk_zone_table_get(t, vblk_zone_table_index(t, req->sector), &z);
            if (z.wp == z.start)
                mem_zero(mb, z.start << VBLK_SECTOR_SHIFT, z.len << VBLK_SECTOR_SHIFT);
        }
        return st;
    default:
        return VBLK_S_UNSUPP;
    }
}

static uint8_t mem_ranges(struct mem_be *mb, struct vblk_req *req)
{
    if (!be_guard_req_fits(&mb->guard, req))
        return VBLK_S_IOERR;
    /* DISCARD, WRITE_ZEROES and SECURE_ERASE all leave zeros behind. */
    for (uint32_t i = 0; i < req->nranges; i++)
        mem_zero(mb, be_range_off(&req->ranges[i]), be_range_len(&req->ranges[i]));
    return VBLK_S_OK;
}

static void mem_submit(void *be, void *qctx, struct vblk_req *req)
{
    struct mem_be *mb = be;
    uint8_t st;

    (void)qctx;
    if (mb->zemu) {
        vblk_req_complete(req, mem_zoned(mb, req));
        return;
    }
    unsigned token = be_guard_enter(&mb->guard, req->queue);
    switch (req->type) {
    case VBLK_T_IN:
    case VBLK_T_OUT:
        st = mem_rw(mb, req);
        break;
    case VBLK_T_FLUSH:
        st = VBLK_S_OK;
        break;
    case VBLK_T_DISCARD:
    case VBLK_T_WRITE_ZEROES:
    case VBLK_T_SECURE_ERASE:
        st = mem_ranges(mb, req);
        break;
    default:
        st = VBLK_S_UNSUPP;
        break;
    }
    be_guard_exit(&mb->guard, req->queue, token);
    vblk_req_complete(req, st);
}

static size_t page_up(const struct mem_be *mb, uint64_t n)
{
    return (size_t)((n + mb->page - 1) & ~(uint64_t)(mb->page - 1));
}

static int mem_resize(void *be, uint64_t size)
{
    struct mem_be *mb = be;
    uint64_t old = be_guard_size(&mb->guard);
    /* A zoned layout is fixed at creation. */
    if (mb->zemu)
        return -ENOTSUP;
    if (size > mb->map_len)
        return -ENOSPC;
    if (size > old) {
        size_t want = page_up(mb, size);
        if (want > mb->access_len) {
            if (mprotect(mb->base + mb->access_len, want - mb->access_len, PROT_READ | PROT_WRITE) <
                0)
                return -ENOMEM;
            mb->access_len = want;
        }
        /* What a request wrote past an earlier, smaller end is gone. */
        mem_zero(mb, old, size - old);
        return be_guard_set_size(&mb->guard, size, BE_RESIZE_TIMEOUT_MS);
    }
    int rc = be_guard_set_size(&mb->guard, size, BE_RESIZE_TIMEOUT_MS);
    if (rc < 0)
        return rc;
    /* Give the tail's memory back; it stays mapped (nothing can fault). */
    if (old > size)
        mem_zero(mb, size, old - size);
    return 0;
}

static void mem_destroy(void *be)
{
    struct mem_be *mb = be;
    if (mb == NULL)
        return;
    if (mb->base != NULL)
        munmap(mb->base, mb->map_len);
    zemu_destroy(mb->zemu);
    free(mb);
}

static const struct vblk_backend_ops mem_ops = {
    .version = VBLK_BACKEND_OPS_V3,
    /* FLUSH is a no-op but offered so that every request type works. */
    .caps = VBLK_BACKEND_CAP_FLUSH | VBLK_BACKEND_CAP_DISCARD | VBLK_BACKEND_CAP_WRITE_ZEROES |
            VBLK_BACKEND_CAP_SECURE_ERASE,
    .name = "memory",
    .submit = mem_submit,
    .destroy = mem_destroy,
    .zone_info = zemu_zone_info,
    .zone_report = zemu_zone_report,
    .resize = mem_resize,
};

int vblk_backend_memory_create(uint64_t size, struct vblk_backend *out)
{
    struct mem_be *mb;
    long page;

    if (out == NULL || size % VBLK_SECTOR_SIZE != 0)
        return -EINVAL;
    if (size > SIZE_MAX / 2)
        return -ENOMEM;
    mb = calloc(1, sizeof(*mb));
    if (mb == NULL)
        return -ENOMEM;
    page = sysconf(_SC_PAGESIZE);
    mb->page = page > 0 ? (size_t)page : 4096;
    be_guard_init(&mb->guard, size);
    uint64_t reserve = size;
    if (sizeof(void *) >= 8)
        reserve = size > MEM_GROW_RESERVE / 2 ? size * 2 : MEM_GROW_RESERVE;
    mb->map_len = page_up(mb, reserve);
    mb->access_len = page_up(mb, size);
    mb->base = mmap(NULL, mb->map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mb->base == MAP_FAILED) {
        free(mb);
        return -ENOMEM;
    }
    if (mb->access_len && mprotect(mb->base, mb->access_len, PROT_READ | PROT_WRITE) < 0) {
        munmap(mb->base, mb->map_len);
        free(mb);
        return -ENOMEM;
    }
    memset(out, 0, sizeof(*out));
    out->ops = &mem_ops;
    out->ctx = mb;
    out->size = size;
    return 0;
}

int vblk_backend_memory_create_zoned(uint64_t size, const struct vblk_zoned_opts *zoned,
                                     struct vblk_backend *out)
{
    struct zemu *z;
    if (out == NULL || zoned == NULL)
        return -EINVAL;
    int rc = zemu_create(size, zoned, &z);
    if (rc < 0)
        return rc;
    rc = vblk_backend_memory_create(size, out);
    if (rc < 0) {
        zemu_destroy(z);
        return rc;
    }
    ((struct mem_be *)out->ctx)->zemu = z;
    return 0;
}
