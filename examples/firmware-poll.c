/* SPDX-License-Identifier: MIT */
/*
 * firmware-poll: a virtio-blk device the way firmware runs one.
 *
 * Everything lives in static memory, nothing is allocated, and nothing
 * calls the operating system: the device is the freestanding core
 * (virtioblk-core), its storage a RAM disk over a static array, and its
 * only contact with the outside world is a loop that polls the ring. It
 * needs memcpy, memset, memmove and memcmp from its C library, and nothing
 * else (docs/embedding.md).
 *
 * The "host" that drives the device is the core's own driver side
 * (lib/driver), in the same image. On a DPU the driver is the host's
 * virtio-blk driver on the far side of PCIe; here both sides share one
 * static arena that stands in for the DMA window, seen by the driver at a
 * bus address (BUS_BASE) and by the device through its memory map.
 *
 *   driver (host)                      device (firmware)
 *   vblk_drv_blk_add()   -- avail -->  vblk_queue_process()  (polled)
 *   kick_prepare() (doorbell)          ram_submit()          RAM disk
 *   vblk_drv_vq_get_used() <- used --  notify()              "interrupt"
 *
 * Built hosted (Linux), main() prints one line; built freestanding
 * (arm-none-eabi), it only returns 0 on success, for the board's startup
 * code to report.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <virtioblk/blk.h>
#include <virtioblk/driver.h>
#include <virtioblk/version.h>

#if __STDC_HOSTED__
#include <stdio.h>
#endif

#define DISK_BYTES  (32u * 1024u) /* the RAM disk */
#define QSIZE       32u           /* queue entries: 3 descriptors a request */
#define SEG_MAX     4u            /* data descriptors per request */
#define BLOCK       1024u         /* bytes per test request */
#define NBLOCKS     8u            /* requests in flight at once */
#define ARENA_BYTES (16u * 1024u) /* the shared "DMA window" */
#define BUS_BASE    0x40000000u   /* where the driver sees the arena */

/* ---- Static memory: the only memory the example uses. ---------------- */

static uint8_t disk[DISK_BYTES];

/* Shared between driver and device: rings first, then request frames and
 * data buffers. The ring must be 4096-byte aligned (driver.h). */
static _Alignas(4096) uint8_t arena[ARENA_BYTES];
static size_t arena_used;

/* Private bookkeeping of each side, sized with some headroom; setup checks
 * the sizes the library asks for against them. */
static _Alignas(16) uint8_t drv_state[1024];
static _Alignas(16) uint8_t queue_pool[20480];

static struct vblk_mem mem;
static struct vblk_dev dev;
static struct vblk_queue queue;
static struct vblk_drv_vq drv;

/* What a real device would turn into an MSI, and a real driver into an
 * MMIO write to the queue's notify register. */
static unsigned interrupts;
static unsigned doorbells;

/* ---- The backend: a RAM disk that completes every request inline. ---- */

static void ram_submit(void *be, void *qctx, struct vblk_req *req)
{
    (void)be;
    (void)qctx;
    /* The device checked the sector range against the capacity and the
     * iovecs against the memory map before calling us. */
    size_t off = (size_t)req->sector * VBLK_SECTOR_SIZE;
    uint8_t status = VBLK_S_OK;
    switch (req->type) {
    case VBLK_T_IN:
    case VBLK_T_OUT:
        for (uint16_t i = 0; i < req->niov; i++) {
            if (req->type == VBLK_T_IN)
                memcpy(req->iov[i].base, disk + off, req->iov[i].len);
            else
                memcpy(disk + off, req->iov[i].base, req->iov[i].len);
            off += req->iov[i].len;
        }
        break;
    case VBLK_T_FLUSH:
        break; /* RAM is as stable as it gets */
    default:
        status = VBLK_S_UNSUPP;
        break;
    }
    vblk_req_complete(req, status);
}

static const struct vblk_backend_ops ram_ops = {
    .version = VBLK_BACKEND_OPS_V1,
    .caps = VBLK_BACKEND_CAP_FLUSH,
    .name = "ram",
    .submit = ram_submit,
};

static void on_notify(void *opaque)
{
    (void)opaque;
    interrupts++;
}

static void *arena_take(size_t len, size_t align)
{
    size_t off = (arena_used + align - 1) & ~(align - 1);
    if (off > ARENA_BYTES || len > ARENA_BYTES - off)
        return NULL;
    arena_used = off + len;
    return arena + off;
}

/* ---- Bring-up: what the transport does at DRIVER_OK. ----------------- */

static int setup(void)
{
    struct vblk_backend be = {.ops = &ram_ops, .ctx = disk, .size = DISK_BYTES};
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, DISK_BYTES);
    p.queue_size = QSIZE;
    p.seg_max = SEG_MAX;
    memcpy(p.serial, "firmware-poll", 13);
    int rc = vblk_dev_init(&dev, &p, &be);
    if (rc < 0)
        return rc;

    /* The driver accepts the offer minus packed rings and in-order use. */
    uint64_t features = vblk_dev_features(&dev);
    features &= ~(VBLK_BIT(VBLK_F_RING_PACKED) | VBLK_BIT(VBLK_F_IN_ORDER));
    rc = vblk_dev_set_features(&dev, features);
    if (rc < 0)
        return rc;

    /* The device reaches driver memory only through its map: one region,
     * the DMA window, from bus address BUS_BASE. */
    vblk_mem_init(&mem);
    rc = vblk_mem_add(&mem, BUS_BASE, ARENA_BYTES, arena, NULL);
    if (rc < 0)
        return rc;

    struct vblk_drv_vq_config dc = {
        .size = QSIZE,
        .event_idx = (features & VBLK_BIT(VBLK_F_EVENT_IDX)) != 0,
        .addr_delta = (uint64_t)BUS_BASE - (uint64_t)(uintptr_t)arena,
    };
    size_t ring_len = vblk_drv_vq_ring_size(&dc);
    void *ring = arena_take(ring_len, 4096);
    if (!ring || vblk_drv_vq_state_size(&dc) > sizeof(drv_state))
        return -1;
    rc = vblk_drv_vq_init(&drv, &dc, ring, ring_len, drv_state, sizeof(drv_state));
    if (rc < 0)
        return rc;

    struct vblk_queue_params qp = {
        .index = 0,
        .size = QSIZE,
        .notify = on_notify,
    };
    vblk_drv_vq_addrs(&drv, &qp.addrs);
    if (vblk_queue_mem_size(&dev, QSIZE) > sizeof(queue_pool))
        return -1;
    rc = vblk_queue_init(&queue, &dev, &mem, &qp, queue_pool, sizeof(queue_pool));
    if (rc < 0)
        return rc;
    /* Firmware polls: the driver need not ring the doorbell. */
    vblk_queue_set_polling(&queue, true);
    return 0;
}

/* ---- The main loop: one device poll, then the host's turn. ----------- */

/* Submits @n requests of @type from @frames / @bufs, then polls the device
 * until every one has come back. Returns the number whose status was not
 * @want, or -1 on a protocol error or a device that stopped. */
static int run_batch(struct vblk_drv_blk_frame *frames, uint8_t *bufs[], unsigned n, uint32_t type,
                     const uint64_t sectors[], uint8_t want)
{
    for (unsigned i = 0; i < n; i++) {
        struct vblk_iov data = {bufs[i], type == VBLK_T_GET_ID ? VBLK_ID_BYTES : BLOCK};
        if (vblk_drv_blk_add(&drv, &frames[i], type, sectors[i], &data, 1, &frames[i], false) < 0)
            return -1;
    }
    if (vblk_drv_vq_kick_prepare(&drv))
        doorbells++; /* a polling device suppresses them once it runs */

    int bad = 0;
    unsigned done = 0;
    for (unsigned spins = 0; done < n; spins++) {
        if (spins > 1000 || vblk_queue_process(&queue, 0) < 0)
            return -1;
        void *token;
        uint32_t len;
        int got;
        while ((got = vblk_drv_vq_get_used(&drv, &token, &len)) == 1) {
            const struct vblk_drv_blk_frame *fr = token;
            bad += fr->status != want;
            done++;
        }
        if (got < 0)
            return -1;
    }
    return bad;
}

static void fill(uint8_t *buf, unsigned seed)
{
    for (unsigned i = 0; i < BLOCK; i++)
        buf[i] = (uint8_t)(seed * 131u + i * 7u + (i >> 8));
}

/* Writes NBLOCKS patterns, reads them back and compares; then asks for the
 * serial, flushes, and checks that a read past the end is refused.
 * Returns the number of bytes verified, or -1. */
static long workload(void)
{
    struct vblk_drv_blk_frame *frames = arena_take(NBLOCKS * sizeof(*frames), 16);
    uint8_t *bufs[NBLOCKS];
    uint8_t expect[BLOCK];
    uint64_t sectors[NBLOCKS];
    if (!frames)
        return -1;
    for (unsigned i = 0; i < NBLOCKS; i++) {
        bufs[i] = arena_take(BLOCK, 64);
        if (!bufs[i])
            return -1;
        fill(bufs[i], i);
        /* Scatter the blocks over the disk, not in order. */
        sectors[i] = ((i * 5u) % NBLOCKS) * (DISK_BYTES / NBLOCKS / VBLK_SECTOR_SIZE);
    }
    if (run_batch(frames, bufs, NBLOCKS, VBLK_T_OUT, sectors, VBLK_S_OK) != 0)
        return -1;

    for (unsigned i = 0; i < NBLOCKS; i++)
        memset(bufs[i], 0, BLOCK);
    if (run_batch(frames, bufs, NBLOCKS, VBLK_T_IN, sectors, VBLK_S_OK) != 0)
        return -1;
    for (unsigned i = 0; i < NBLOCKS; i++) {
        fill(expect, i);
        if (memcmp(bufs[i], expect, BLOCK) != 0)
            return -1;
    }

    uint64_t zero[1] = {0};
    memset(bufs[0], 0, BLOCK);
    if (run_batch(frames, bufs, 1, VBLK_T_GET_ID, zero, VBLK_S_OK) != 0 ||
        memcmp(bufs[0], "firmware-poll", 14) != 0)
        return -1;
    if (run_batch(frames, bufs, 1, VBLK_T_FLUSH, zero, VBLK_S_OK) != 0)
        return -1;
    uint64_t past_end[1] = {DISK_BYTES / VBLK_SECTOR_SIZE};
    if (run_batch(frames, bufs, 1, VBLK_T_IN, past_end, VBLK_S_IOERR) != 0)
        return -1;
    return (long)NBLOCKS * BLOCK;
}

int main(void)
{
    long verified = setup() == 0 ? workload() : -1;
    bool ok = verified > 0 && !vblk_queue_broken(&queue);
#if __STDC_HOSTED__
    printf("firmware-poll: %s, %ld bytes written and read back, %u interrupts, "
           "%u doorbells, virtioblk-core %s\n",
           ok ? "ok" : "FAILED", verified, interrupts, doorbells, vblk_version());
#endif
    return ok ? 0 : 1;
}
