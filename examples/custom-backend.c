/* SPDX-License-Identifier: MIT */
/*
 * custom-backend: a storage backend written from scratch against the
 * vtable in <virtioblk/backend.h>. It is a copy-on-write overlay: the guest
 * sees one disk, whose reads come from a *base* disk that is never written,
 * while its writes go to an *overlay* of changed blocks kept in memory. A
 * VM snapshot, or a qcow2 image over a backing file, works this way.
 *
 *   guest driver --ring--> device (lib/core) --> ovl_submit()
 *                                                  |- changed block: overlay
 *                                                  `- otherwise: base disk,
 *                                                     through a read-only device
 *
 * The overlay keeps 4 KiB blocks, but the guest may write a single 512-byte
 * sector. Such a write first copies the block up from the base and then
 * changes its part of it (read-modify-write): the "copy" in copy-on-write.
 *
 * A backend is only ever *handed* requests; it has no "read" call that
 * another piece of code could make. So the overlay reaches its base the way
 * the guest reaches the overlay: through a device in front of it, here a
 * loopback transport. That device is read-only, so even a bug in this file
 * could not write to the base: the device would fail the write first.
 *
 * Build: cc custom-backend.c $(pkg-config --cflags --libs libvirtioblk) -lpthread
 */
#define _DEFAULT_SOURCE /* htole64() and htole32() in <endian.h> */
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <virtioblk/virtioblk.h>

#define OVL_BLOCK  4096u                          /* overlay granularity */
#define BLK_SECTS  (OVL_BLOCK / VBLK_SECTOR_SIZE) /* sectors per block */
#define DISK_BYTES (1u << 20)

/* A block the guest zeroed or discarded: reads as zeros, owns no memory. */
static uint8_t zero_block[OVL_BLOCK]; /* never written */

struct overlay {
    pthread_mutex_t lock;       /* blocks[] is shared by every queue */
    uint8_t **blocks;           /* per block: NULL (base), zero_block, or ours */
    uint64_t nblocks;           /* the base's size in blocks */
    struct vblk_loopback *base; /* the base disk behind a read-only device */
    uint8_t **bounce;           /* per queue: one block of the base device's memory */
    uint16_t nqueues;
    uint64_t base_reads, copied_up; /* summed from the queues as they stop */
};

/* Per-queue state, created by queue_start and passed to submit as qctx.
 * Each queue runs on one thread at a time, and it has the base device's
 * queue of the same index to itself: nothing here needs a lock. */
struct ovl_queue {
    uint16_t qidx;
    uint8_t *bounce;
    uint64_t base_reads, copied_up;
};

/* Block @b of the base, in the queue's bounce buffer; NULL on error. */
static const uint8_t *base_block(struct overlay *o, struct ovl_queue *oq, uint64_t b)
{
    oq->base_reads++;
    int st = vblk_loopback_rw(o->base, oq->qidx, VBLK_T_IN, b * BLK_SECTS, oq->bounce, OVL_BLOCK);
    return st == VBLK_S_OK ? oq->bounce : NULL;
}

/* Copies @len bytes between @buf and the request's data, from byte @pos.
 * The guest splits its buffer into descriptors as it likes (one 4 KiB
 * iovec, or three of 1366, 1365 and 1365 bytes): iovecs need not line up
 * with sectors, let alone with our blocks. */
static void iov_copy(const struct vblk_req *req, size_t pos, uint8_t *buf, size_t len,
                     bool to_guest)
{
    for (uint16_t i = 0; i < req->niov && len > 0; i++) {
        size_t n = req->iov[i].len;
        if (pos >= n) {
            pos -= n;
            continue;
        }
        uint8_t *g = (uint8_t *)req->iov[i].base + pos;
        n = n - pos < len ? n - pos : len;
        memcpy(to_guest ? g : buf, to_guest ? buf : g, n);
        buf += n;
        len -= n;
        pos = 0;
    }
}

/* Our own copy of block @b, to modify: the copy-on-write step. @whole: the
 * caller overwrites all of it, so nothing needs copying up. */
static uint8_t *own_block(struct overlay *o, struct ovl_queue *oq, uint64_t b, bool whole)
{
    uint8_t *cur = o->blocks[b];
    if (cur && cur != zero_block)
        return cur;
    uint8_t *mine = malloc(OVL_BLOCK);
    if (!mine)
        return NULL;
    if (!whole && cur == zero_block) {
        memset(mine, 0, OVL_BLOCK);
    } else if (!whole) {
        const uint8_t *src = base_block(o, oq, b);
        if (!src) {
            free(mine);
            return NULL;
        }
        memcpy(mine, src, OVL_BLOCK);
        oq->copied_up++;
    }
    return o->blocks[b] = mine;
}

/* Writes @len bytes at byte @off: the request's data, or zeros when @req is
 * NULL. With @unmap, whole zeroed blocks give their memory back. */
static uint8_t ovl_write(struct overlay *o, struct ovl_queue *oq, uint64_t off, uint64_t len,
                         const struct vblk_req *req, bool unmap)
{
    for (uint64_t done = 0; done < len;) {
        uint64_t b = (off + done) / OVL_BLOCK;
        size_t in = (off + done) % OVL_BLOCK;
        size_t n = OVL_BLOCK - in < len - done ? OVL_BLOCK - in : (size_t)(len - done);
        if (!req && unmap && n == OVL_BLOCK) {
            if (o->blocks[b] != zero_block)
                free(o->blocks[b]);
            o->blocks[b] = zero_block; /* not NULL: that would bring the base back */
        } else {
            uint8_t *blk = own_block(o, oq, b, n == OVL_BLOCK);
            if (!blk)
                return VBLK_S_IOERR;
            if (req)
                iov_copy(req, done, blk + in, n, false);
            else
                memset(blk + in, 0, n);
        }
        done += n;
    }
    return VBLK_S_OK;
}

static uint8_t ovl_read(struct overlay *o, struct ovl_queue *oq, const struct vblk_req *req)
{
    uint64_t off = req->sector * VBLK_SECTOR_SIZE;
    for (uint32_t done = 0; done < req->len;) {
        uint64_t b = (off + done) / OVL_BLOCK;
        size_t in = (off + done) % OVL_BLOCK;
        size_t n = OVL_BLOCK - in < req->len - done ? OVL_BLOCK - in : req->len - done;
        const uint8_t *src = o->blocks[b] ? o->blocks[b] : base_block(o, oq, b);
        if (!src)
            return VBLK_S_IOERR;
        iov_copy(req, done, (uint8_t *)src + in, n, true);
        done += (uint32_t)n;
    }
    return VBLK_S_OK;
}

/*
 * The device has already checked the request: its type was negotiated, its
 * sectors lie within the capacity, its buffers are mapped guest memory.
 *
 * We complete every request inline, before returning: all of it is memory,
 * and the base answers within vblk_loopback_rw(). A backend whose I/O takes
 * time must not wait here, or it stalls every other request of the queue.
 * It starts the I/O (an io_uring entry, a message to a server), keeps the
 * request (valid until completed; req->priv and req->scratch are its own)
 * and returns; it finishes later with vblk_req_complete() from its poll()
 * method on the queue thread, as the file backend does, or with
 * vblk_req_complete_async() from whatever thread saw the I/O end. Over a
 * slow base (a network disk), base_block() is what would go asynchronous.
 */
static void ovl_submit(void *be, void *qctx, struct vblk_req *req)
{
    struct overlay *o = be;
    struct ovl_queue *oq = qctx;
    uint8_t st = VBLK_S_OK;

    pthread_mutex_lock(&o->lock); /* one lock per request: simple, and all memory */
    switch (req->type) {
    case VBLK_T_IN:
        st = ovl_read(o, oq, req);
        break;
    case VBLK_T_OUT:
        st = ovl_write(o, oq, req->sector * VBLK_SECTOR_SIZE, req->len, req, false);
        break;
    case VBLK_T_DISCARD:
    case VBLK_T_WRITE_ZEROES:
        /* Both leave zeros. Dropping the block instead would let the base's
         * old data reappear under a file the guest deleted. WRITE_ZEROES
         * without UNMAP keeps the block allocated, as the guest asked. */
        for (uint32_t i = 0; i < req->nranges && st == VBLK_S_OK; i++) {
            const struct vblk_discard_wz_seg *r = &req->ranges[i]; /* checked copy */
            bool unmap = req->type == VBLK_T_DISCARD || (r->flags & VBLK_WZ_F_UNMAP);
            st = ovl_write(o, oq, r->sector * VBLK_SECTOR_SIZE,
                           (uint64_t)r->num_sectors * VBLK_SECTOR_SIZE, NULL, unmap);
        }
        break;
    case VBLK_T_FLUSH:
        /* FLUSH (like a write with VBLK_REQ_F_FUA) asks that completed
         * writes be stable. No cache sits between a completed write and
         * blocks[], so there is nothing to push; an overlay kept in a file
         * would call fdatasync() here. The base is never written: nothing
         * to flush there. */
        break;
    default:
        st = VBLK_S_UNSUPP;
        break;
    }
    pthread_mutex_unlock(&o->lock);
    vblk_req_complete(req, st);
}

static int ovl_queue_start(void *be, uint16_t qidx, void **qctx)
{
    struct overlay *o = be;
    if (qidx >= o->nqueues) /* the base device has one queue for each of ours */
        return -EINVAL;
    struct ovl_queue *oq = calloc(1, sizeof(*oq));
    if (!oq)
        return -ENOMEM;
    oq->qidx = qidx;
    oq->bounce = o->bounce[qidx];
    *qctx = oq;
    return 0;
}

/* Called once the queue's last request has completed. */
static void ovl_queue_stop(void *be, uint16_t qidx, void *qctx)
{
    struct overlay *o = be;
    struct ovl_queue *oq = qctx;
    (void)qidx;
    pthread_mutex_lock(&o->lock);
    o->base_reads += oq->base_reads;
    o->copied_up += oq->copied_up;
    pthread_mutex_unlock(&o->lock);
    free(oq);
}

static void ovl_destroy(void *be)
{
    struct overlay *o = be;
    vblk_loopback_destroy(o->base); /* the base backend itself is the caller's */
    for (uint64_t b = 0; o->blocks && b < o->nblocks; b++)
        if (o->blocks[b] != zero_block)
            free(o->blocks[b]);
    free(o->blocks);
    free(o->bounce);
    pthread_mutex_destroy(&o->lock);
    free(o);
}

static const struct vblk_backend_ops ovl_ops = {
    .version = VBLK_BACKEND_OPS_V1,
    /* What the overlay really does. Not SECURE_ERASE: the old data would
     * survive in the base, which we may not touch. */
    .caps = VBLK_BACKEND_CAP_FLUSH | VBLK_BACKEND_CAP_DISCARD | VBLK_BACKEND_CAP_WRITE_ZEROES,
    .name = "cow-overlay",
    .queue_start = ovl_queue_start,
    .queue_stop = ovl_queue_stop,
    .submit = ovl_submit,
    .destroy = ovl_destroy,
};

/* Stacks an overlay for @nqueues queues over @base, which must outlive it. */
static int overlay_create(struct vblk_backend *base, uint16_t nqueues, struct vblk_backend *out)
{
    if (base->size % OVL_BLOCK || nqueues == 0)
        return -EINVAL;
    struct overlay *o = calloc(1, sizeof(*o));
    if (!o)
        return -ENOMEM;
    pthread_mutex_init(&o->lock, NULL);
    o->nblocks = base->size / OVL_BLOCK;
    o->nqueues = nqueues;
    o->blocks = calloc(o->nblocks, sizeof(*o->blocks));
    o->bounce = calloc(nqueues, sizeof(*o->bounce));
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, base->size);
    p.read_only = true;
    p.num_queues = nqueues;
    struct vblk_loopback_opts lo = {.queue_size = 4, .arena_size = (nqueues + 16u) * OVL_BLOCK};
    int rc = o->blocks && o->bounce ? vblk_loopback_create(&p, base, &lo, &o->base) : -ENOMEM;
    for (uint16_t q = 0; rc == 0 && q < nqueues; q++)
        rc = (o->bounce[q] = vblk_loopback_alloc(o->base, OVL_BLOCK)) ? 0 : -ENOMEM;
    if (rc < 0) {
        ovl_destroy(o);
        return rc;
    }
    *out = (struct vblk_backend){.ops = &ovl_ops, .ctx = o, .size = base->size};
    return 0;
}

/* ---- The proof: a guest writes through the overlay. ------------------ */

static uint8_t pattern(uint64_t off)
{
    return (uint8_t)(off / VBLK_SECTOR_SIZE * 31u + off % 251u);
}

/* One guest request, its buffer split into three uneven descriptors
 * (@len >= 3; NULL and 0 for FLUSH), on queue 0. Returns its status. */
static int guest_io(struct vblk_loopback *lb, struct vblk_drv_blk_frame *fr, uint32_t type,
                    uint64_t sector, uint8_t *buf, uint32_t len)
{
    struct vblk_iov iov[3];
    if (buf) {
        uint32_t a = len / 3 + 1, b = len / 3;
        iov[0] = (struct vblk_iov){buf, a};
        iov[1] = (struct vblk_iov){buf + a, b};
        iov[2] = (struct vblk_iov){buf + a + b, len - a - b};
    }
    struct vblk_drv_vq *vq = vblk_loopback_driver(lb, 0);
    if (vblk_drv_blk_add(vq, fr, type, sector, iov, buf ? 3 : 0, fr, false) < 0 ||
        vblk_loopback_kick(lb, 0) < 0)
        return -1;
    /* The backend completes inline: the used entry is there after the kick. */
    void *tok;
    uint32_t used;
    return vblk_drv_vq_get_used(vq, &tok, &used) == 1 ? fr->status : -1;
}

/* Writes the pattern over the whole base disk (@write), or checks that it
 * is all still there, through a loopback device of its own. */
static bool base_pass(struct vblk_backend *base, bool write)
{
    struct vblk_dev_params p;
    struct vblk_loopback *lb;
    vblk_dev_params_default(&p, base->size);
    if (vblk_loopback_create(&p, base, NULL, &lb) < 0)
        return false;
    uint8_t *buf = vblk_loopback_alloc(lb, 65536);
    bool ok = buf != NULL;
    for (uint64_t off = 0; ok && off < base->size; off += 65536) {
        for (uint32_t i = 0; write && i < 65536; i++)
            buf[i] = pattern(off + i);
        ok = vblk_loopback_rw(lb, 0, write ? VBLK_T_OUT : VBLK_T_IN, off / VBLK_SECTOR_SIZE, buf,
                              65536) == VBLK_S_OK;
        for (uint32_t i = 0; ok && !write && i < 65536; i++)
            ok = buf[i] == pattern(off + i);
    }
    vblk_loopback_destroy(lb);
    return ok;
}

int main(void)
{
    struct vblk_backend base, ovl;
    struct vblk_dev_params p;
    struct vblk_loopback *lb = NULL;
    uint8_t *expect = malloc(DISK_BYTES); /* what the guest must read back */
    if (!expect || vblk_backend_memory_create(DISK_BYTES, &base) < 0 || !base_pass(&base, true))
        return 1;
    for (uint32_t i = 0; i < DISK_BYTES; i++)
        expect[i] = pattern(i);

    /* The guest's disk: the overlay over the base. The topology tells the
     * guest that 4 KiB is our physical block, so a Linux guest aligns its
     * writes to it and read-modify-write stays rare. */
    vblk_dev_params_default(&p, DISK_BYTES);
    p.physical_block_exp = 3;
    if (overlay_create(&base, p.num_queues, &ovl) < 0 ||
        vblk_loopback_create(&p, &ovl, NULL, &lb) < 0)
        return 1;
    struct vblk_drv_blk_frame *fr = vblk_loopback_alloc(lb, sizeof(*fr));
    uint8_t *buf = vblk_loopback_alloc(lb, 8192);

    /* The guest's requests, and what each leaves on the disk:
     *  - a whole block (2), written over: nothing to copy up;
     *  - one sector in block 5: block 5 is copied up first;
     *  - 4 KiB from the middle of block 7 into block 8: both copied up;
     *  - WRITE_ZEROES with UNMAP over sectors 20-35: the end of block 2,
     *    all of 3 (which gives its memory back), the start of 4;
     *  - DISCARD of blocks 8-9; WRITE_ZEROES keeping block 12 allocated. */
    const struct {
        uint32_t type, flags;
        uint64_t sector;
        uint32_t sectors;
    } op[] = {{VBLK_T_OUT, 0, 16, 8},      {VBLK_T_OUT, 0, 41, 1},
              {VBLK_T_OUT, 0, 60, 8},      {VBLK_T_WRITE_ZEROES, VBLK_WZ_F_UNMAP, 20, 16},
              {VBLK_T_DISCARD, 0, 64, 16}, {VBLK_T_WRITE_ZEROES, 0, 96, 8}};
    struct vblk_discard_wz_seg *seg = (void *)buf;
    bool ok = true;
    for (unsigned k = 0; k < sizeof(op) / sizeof(op[0]); k++) {
        uint32_t len = op[k].sectors * VBLK_SECTOR_SIZE;
        uint8_t *want = expect + op[k].sector * VBLK_SECTOR_SIZE;
        if (op[k].type == VBLK_T_OUT) {
            for (uint32_t i = 0; i < len; i++)
                buf[i] = (uint8_t)(0xa0 + k + i * 13);
            memcpy(want, buf, len);
            ok = ok && guest_io(lb, fr, VBLK_T_OUT, op[k].sector, buf, len) == VBLK_S_OK;
        } else { /* one range, little-endian as on any ring */
            *seg = (struct vblk_discard_wz_seg){htole64(op[k].sector), htole32(op[k].sectors),
                                                htole32(op[k].flags)};
            memset(want, 0, len);
            ok = ok && guest_io(lb, fr, op[k].type, 0, buf, sizeof(*seg)) == VBLK_S_OK;
        }
    }
    ok = ok && guest_io(lb, fr, VBLK_T_FLUSH, 0, NULL, 0) == VBLK_S_OK;

    /* Read the whole disk back in 5-sector pieces that straddle block
     * boundaries, each split over three buffers: overlay, zeroed and base
     * blocks, all mixed. */
    unsigned bad = 0;
    for (uint32_t off = 0; ok && off < DISK_BYTES; off += 2560) {
        uint32_t len = DISK_BYTES - off < 2560 ? DISK_BYTES - off : 2560;
        ok = guest_io(lb, fr, VBLK_T_IN, off / VBLK_SECTOR_SIZE, buf, len) == VBLK_S_OK;
        bad += ok && memcmp(buf, expect + off, len) != 0;
    }
    vblk_loopback_destroy(lb); /* stops the queue: queue_stop sums its counters */

    struct overlay *o = ovl.ctx;
    unsigned owned = 0, zeroed = 0;
    for (uint64_t b = 0; b < o->nblocks; b++) {
        owned += o->blocks[b] && o->blocks[b] != zero_block;
        zeroed += o->blocks[b] == zero_block;
    }
    printf("custom-backend: %u blocks in the overlay, %u zeroed; %llu base reads, %llu blocks "
           "copied up\n",
           owned, zeroed, (unsigned long long)o->base_reads, (unsigned long long)o->copied_up);
    vblk_backend_destroy(&ovl);

    /* The base must hold exactly what it held before the guest came. */
    bool base_ok = base_pass(&base, false);
    printf("custom-backend: %s (requests %s, %u mismatched reads, base disk %s)\n",
           ok && !bad && base_ok ? "ok" : "FAILED", ok ? "ok" : "failed", bad,
           base_ok ? "unchanged" : "MODIFIED");
    vblk_backend_destroy(&base);
    free(expect);
    return ok && !bad && base_ok ? 0 : 1;
}
