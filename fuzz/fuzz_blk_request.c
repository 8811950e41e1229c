/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: virtio-blk request decoding and completion. The rings are
 * built correctly by the driver library; the fuzz input is the requests:
 * types, headers, sectors, data lengths, discard segments and the shape of
 * each chain (split header, merged status byte, missing status, empty
 * descriptors, indirect tables, buffers straddling memory regions). Every
 * buffer is its own allocation mapped as its own region(s), so ASan sees
 * any byte the device touches outside it. The input format is described in
 * fuzz_format.h.
 *
 * What is checked besides memory safety: the driver library accepts every
 * used entry (no unknown id, no length beyond the writable bytes); each
 * request is completed exactly once; the status byte is a defined status;
 * an error completes with length 1; readable buffers are never written;
 * the backend only sees validated requests (fuzz_common.h).
 */
#include "fuzz_common.h"
#include "fuzz_format.h"

#define MAX_BUFS_PER_REQ 12u
#define MAX_REGIONS      480u
#define MAX_DATA_LEN     8192u

struct buf {
    uint8_t *p;
    size_t len;
    bool write;
    uint8_t *snap; /* readable buffers: contents when added */
};

struct req_rec {
    uint32_t type;
    bool added, used;
    uint8_t *status; /* host address of the status byte, or NULL */
    uint32_t in_len;
    uint8_t shape;
    unsigned nbufs, nout, nin;
    struct buf bufs[MAX_BUFS_PER_REQ];
    struct vblk_iov out[MAX_BUFS_PER_REQ], in[MAX_BUFS_PER_REQ];
};

struct blk_run {
    uint8_t hdr[BLK_HDR_SIZE];
    struct fuzz_in in;
    unsigned splits; /* regions per buffer */
    struct vblk_dev dev;
    struct vblk_backend be;
    struct vblk_queue q;
    void *qbuf;
    struct vblk_drv_vq dvq;
    void *ring, *dstate;
    struct req_rec reqs[BLK_MAX_REQS];
    unsigned nreqs;
    unsigned nused;
};

static struct vblk_mem g_mem;
static struct fuzz_be g_fb;

_Static_assert(BLK_BE_SIZE == FUZZ_DISK_BYTES, "the RAM disk backend has the size inputs assume");

static const uint32_t g_types[8] = {VBLK_T_IN,           VBLK_T_OUT,          VBLK_T_FLUSH,
                                    VBLK_T_GET_ID,       VBLK_T_GET_LIFETIME, VBLK_T_DISCARD,
                                    VBLK_T_WRITE_ZEROES, VBLK_T_SECURE_ERASE};

/* Maps @len bytes at @p as up to rr->splits adjacent regions. */
static void map_buf(struct blk_run *rr, uint8_t *p, size_t len)
{
    if (len == 0)
        return;
    unsigned k = rr->splits;
    if (vblk_mem_count(&g_mem) + k > MAX_REGIONS)
        k = 1;
    if (vblk_mem_count(&g_mem) + k > MAX_REGIONS)
        return; /* left unmapped: the device must fail the request */
    if (k > len)
        k = (unsigned)len;
    size_t off = 0;
    for (unsigned i = 0; i < k; i++) {
        size_t n = i + 1 == k ? len - off : len / k;
        FUZZ_CHECK(vblk_mem_add(&g_mem, (uint64_t)(uintptr_t)(p + off) + BLK_DRV_DELTA, n, p + off,
                                NULL) == 0);
        off += n;
    }
}

/* A buffer of @len bytes: @prefix first, then (readable) input bytes or
 * (writable) a fill pattern. */
static struct buf *new_buf(struct blk_run *rr, struct req_rec *rec, size_t len, bool write,
                           const void *prefix, size_t prefix_len)
{
    if (rec->nbufs == MAX_BUFS_PER_REQ)
        return NULL;
    struct buf *b = &rec->bufs[rec->nbufs++];
    b->p = malloc(len ? len : 1);
    FUZZ_CHECK(b->p);
    b->len = len;
    b->write = write;
    b->snap = NULL;
    if (prefix_len > len)
        prefix_len = len;
    if (prefix_len)
        memcpy(b->p, prefix, prefix_len);
    if (write)
        memset(b->p + prefix_len, 0x5a, len - prefix_len);
    else
        in_bytes(&rr->in, b->p + prefix_len, len - prefix_len);
    map_buf(rr, b->p, len);
    return b;
}

static void put(struct req_rec *rec, const struct buf *b)
{
    if (!b)
        return;
    if (b->write)
        rec->in[rec->nin++] = (struct vblk_iov){b->p, b->len};
    else
        rec->out[rec->nout++] = (struct vblk_iov){b->p, b->len};
}

static size_t len_from(struct fuzz_in *in, uint8_t sel)
{
    switch (sel & 3) {
    case 0:
        return ((size_t)(sel >> 2) % 16u + 1u) * VBLK_SECTOR_SIZE;
    case 1:
        return ((size_t)(sel >> 2) % 4u + 1u) * sizeof(struct vblk_discard_wz_seg);
    case 2:
        return sel >> 2;
    default:
        return in_u16(in) % (MAX_DATA_LEN + 1);
    }
}

static uint64_t sector_from(struct blk_run *rr, uint8_t sel)
{
    uint64_t cap = rr->dev.config.capacity;
    switch (sel & 7) {
    case 0:
        return in_u64(&rr->in);
    case 1:
        return 0;
    case 2:
        return cap ? cap - 1 : 0;
    case 3:
        return cap;
    case 4:
        return cap + 1;
    case 5:
        return UINT64_MAX - (sel >> 3);
    default:
        return in_u8(&rr->in);
    }
}

static bool type_writes(uint32_t type)
{
    return type == VBLK_T_IN || type == VBLK_T_GET_ID || type == VBLK_T_GET_LIFETIME;
}

/* Builds one request from the input. */
static void build_request(struct blk_run *rr, struct req_rec *rec)
{
    struct fuzz_in *in = &rr->in;

    uint8_t tsel = in_u8(in);
    rec->type = tsel < 0xf0 ? g_types[tsel % 8] : in_u32(in);
    uint8_t shape = in_u8(in);
    rec->shape = shape;
    uint64_t sector = sector_from(rr, in_u8(in));
    uint8_t nb = in_u8(in);
    unsigned ndata = nb % 5u;
    bool data_write = type_writes(rec->type) ^ ((nb & 0x80) != 0);
    size_t lens[4];
    for (unsigned i = 0; i < ndata; i++)
        lens[i] = len_from(in, in_u8(in));

    struct vblk_req_hdr h = {.type = rec->type, .ioprio = 0, .sector = sector};
    unsigned hshape = shape & 3;
    if (hshape == 3 && !(ndata > 0 && !data_write))
        hshape = 0;
    unsigned first = 0;
    switch (hshape) {
    case 0:
        put(rec, new_buf(rr, rec, sizeof(h), false, &h, sizeof(h)));
        break;
    case 1: {
        /* Header split across two descriptors. */
        size_t cut = 1u + (sector & 7u);
        put(rec, new_buf(rr, rec, cut, false, &h, cut));
        put(rec, new_buf(rr, rec, sizeof(h) - cut, false, (uint8_t *)&h + cut, sizeof(h) - cut));
        break;
    }
    case 2:
        /* Short header (more readable bytes may follow as data). */
        put(rec, new_buf(rr, rec, 8, false, &h, 8));
        break;
    default:
        /* Header and the first data buffer in one descriptor. */
        put(rec, new_buf(rr, rec, sizeof(h) + lens[0], false, &h, sizeof(h)));
        first = 1;
        break;
    }

    for (unsigned i = 0; i < (shape >> 6); i++)
        put(rec, new_buf(rr, rec, 0, data_write, NULL, 0));

    bool merge_status = (shape & 4) && ndata > 0 && data_write && !(shape & 16);
    for (unsigned i = first; i < ndata; i++) {
        size_t len = lens[i] + (i + 1 == ndata && merge_status ? 1 : 0);
        put(rec, new_buf(rr, rec, len, data_write, NULL, 0));
    }
    if (!(shape & 16) && !merge_status)
        put(rec, new_buf(rr, rec, 1, !(shape & 32), NULL, 0));

    /* The status is the last byte of the last writable descriptor; without
     * one the device must give up on the queue. */
    rec->status = NULL;
    rec->in_len = 0;
    for (unsigned i = 0; i < rec->nin; i++)
        rec->in_len += (uint32_t)rec->in[i].len;
    if (rec->nin && rec->in[rec->nin - 1].len) {
        const struct vblk_iov *last = &rec->in[rec->nin - 1];
        rec->status = (uint8_t *)last->base + last->len - 1;
        *rec->status = 0xff;
    }
    for (unsigned i = 0; i < rec->nbufs; i++) {
        struct buf *b = &rec->bufs[i];
        if (b->write || b->len == 0)
            continue;
        b->snap = malloc(b->len);
        FUZZ_CHECK(b->snap);
        memcpy(b->snap, b->p, b->len);
    }
}

/* Returns false if the ring is full. */
static bool add_request(struct blk_run *rr, struct req_rec *rec)
{
    int rc = vblk_drv_vq_add(&rr->dvq, rec->out, rec->nout, rec->in, rec->nin, rec,
                             (rec->shape & 8) != 0);
    if (rc == -ENOSPC)
        return false;
    rec->added = rc == 0;
    return true;
}

static void complete_pending(void)
{
    /* Deferred completions, oldest or newest first as the tape says. */
    while (g_fb.npending) {
        uint8_t d = fuzz_be_next(&g_fb);
        struct vblk_req *r = fuzz_be_take(&g_fb, (d & 1) ? 0 : g_fb.npending - 1);
        uint8_t st = (uint8_t)((d >> 1) % 3);
        if (d & 0x80)
            vblk_req_complete_async(r, st);
        else
            vblk_req_complete(r, st);
    }
}

static void collect_used(struct blk_run *rr)
{
    for (;;) {
        void *token = NULL;
        uint32_t len = 0;
        int rc = vblk_drv_vq_get_used(&rr->dvq, &token, &len);
        /* The device wrote an id that is not in flight, or a length beyond
         * the buffer's writable bytes. */
        FUZZ_CHECK(rc != -EPROTO);
        if (rc <= 0)
            break;
        struct req_rec *rec = token;
        FUZZ_CHECK(rec && rec->added && !rec->used);
        rec->used = true;
        rr->nused++;
        FUZZ_CHECK(rec->status != NULL);
        uint8_t st = *rec->status;
        if (fuzz_verbose())
            fprintf(stderr, "used: type %s status %u len %u\n", vblk_req_type_name(rec->type), st,
                    len);
        FUZZ_CHECK(st == VBLK_S_OK || st == VBLK_S_IOERR || st == VBLK_S_UNSUPP);
        FUZZ_CHECK(len >= 1 && len <= rec->in_len);
        if (st != VBLK_S_OK)
            FUZZ_CHECK(len == 1);
        else if (rec->type == VBLK_T_IN)
            FUZZ_CHECK(len == rec->in_len);
        for (unsigned i = 0; i < rec->nbufs; i++) {
            const struct buf *b = &rec->bufs[i];
            if (b->snap)
                FUZZ_CHECK(memcmp(b->snap, b->p, b->len) == 0);
        }
    }
}

static void round_trip(struct blk_run *rr)
{
    (void)vblk_drv_vq_kick_prepare(&rr->dvq);
    (void)vblk_queue_process(&rr->q, 0);
    for (int i = 0; i < 3; i++) {
        complete_pending();
        vblk_queue_flush(&rr->q);
        (void)vblk_queue_process(&rr->q, 0);
    }
    collect_used(rr);
}

static void setup_device(struct blk_run *rr)
{
    const uint8_t *h = rr->hdr;
    bool use_fuzz_be = (h[0] & 0x80) != 0;
    uint64_t cap_bytes = ((uint64_t)h[5] + 1) * 8 * VBLK_SECTOR_SIZE;

    if (use_fuzz_be) {
        uint32_t caps = VBLK_BACKEND_CAP_DISCARD | VBLK_BACKEND_CAP_WRITE_ZEROES |
                        VBLK_BACKEND_CAP_SECURE_ERASE;
        if (!(h[1] & 2))
            caps |= VBLK_BACKEND_CAP_FLUSH;
        fuzz_be_init(&g_fb, caps, &h[8], 8);
        rr->be = (struct vblk_backend){&g_fb.ops, &g_fb, BLK_BE_SIZE};
    } else {
        fuzz_be_init(&g_fb, 0, &h[8], 8);
        rr->be = fuzz_disk_backend(true);
    }

    struct vblk_dev_params p;
    vblk_dev_params_default(&p, cap_bytes);
    p.read_only = h[1] & 1;
    p.lifetime = (h[1] & 4) != 0;
    p.lifetime_info = (struct vblk_lifetime){1, 2, 3};
    if (h[1] & 8) {
        p.cylinders = 1024;
        p.heads = 16;
        p.sectors = 63;
    }
    p.write_zeroes_may_unmap = (h[1] & 16) != 0;
    p.writeback = !(h[1] & 64);
    p.seg_max = h[2] % 8u + 1;
    p.size_max = h[3] * 256u;
    p.max_discard_seg = (h[4] & 3u) + 1;
    p.max_write_zeroes_seg = ((h[4] >> 2) & 3u) + 1;
    p.max_secure_erase_seg = ((h[4] >> 4) & 3u) + 1;
    p.max_discard_sectors = (h[4] & 64) ? 64 : 1u << 22;
    p.max_secure_erase_sectors = 1u << 12;
    p.features_off = 0;
    memcpy(p.serial, "0123456789abcdefghij", VBLK_ID_BYTES);
    FUZZ_CHECK(vblk_dev_init(&rr->dev, &p, &rr->be) == 0);

    static const uint8_t droppable[8] = {
        VBLK_F_FLUSH,        VBLK_F_CONFIG_WCE, VBLK_F_DISCARD,  VBLK_F_WRITE_ZEROES,
        VBLK_F_SECURE_ERASE, VBLK_F_LIFETIME,   VBLK_F_SIZE_MAX, VBLK_F_RO};
    uint64_t ring_bits = VBLK_BIT(VBLK_F_RING_PACKED) | VBLK_BIT(VBLK_F_INDIRECT_DESC) |
                         VBLK_BIT(VBLK_F_EVENT_IDX) | VBLK_BIT(VBLK_F_IN_ORDER);
    uint64_t f = vblk_dev_features(&rr->dev) & ~ring_bits;
    if (h[0] & 8)
        f |= VBLK_BIT(VBLK_F_RING_PACKED);
    if (h[0] & 16)
        f |= VBLK_BIT(VBLK_F_INDIRECT_DESC);
    if (h[0] & 32)
        f |= VBLK_BIT(VBLK_F_EVENT_IDX);
    if (h[0] & 64)
        f |= VBLK_BIT(VBLK_F_IN_ORDER);
    for (unsigned i = 0; i < 8; i++)
        if (h[7] & (1u << i))
            f &= ~VBLK_BIT(droppable[i]);
    if (h[1] & 32)
        f &= ~VBLK_BIT(VBLK_F_CONFIG_WCE);
    FUZZ_CHECK(vblk_dev_set_features(&rr->dev, f) == 0);
    if (h[1] & 128) {
        uint8_t wb = !vblk_dev_writeback(&rr->dev);
        int rc = vblk_dev_config_write(&rr->dev, 32, &wb, 1);
        if (rc == 0)
            FUZZ_CHECK(vblk_dev_writeback(&rr->dev) == (wb != 0));
        else
            FUZZ_CHECK(rc == -EPERM);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct blk_run rr;
    memset(&rr, 0, sizeof(rr));
    rr.in = (struct fuzz_in){data, size};
    in_bytes(&rr.in, rr.hdr, BLK_HDR_SIZE);
    rr.splits = rr.hdr[6] % 4u + 1;
    vblk_mem_init(&g_mem);
    setup_device(&rr);

    uint16_t qsize = (uint16_t)(1u << (rr.hdr[0] % 5u + 2));
    struct vblk_drv_vq_config dc = {
        .size = qsize,
        .packed = (rr.hdr[0] & 8) != 0,
        .event_idx = (rr.hdr[0] & 32) != 0,
        .indirect = (rr.hdr[0] & 16) != 0,
        .indirect_max = MAX_BUFS_PER_REQ,
        .addr_delta = BLK_DRV_DELTA,
    };
    size_t ring_len = vblk_drv_vq_ring_size(&dc);
    size_t state_len = vblk_drv_vq_state_size(&dc);
    rr.ring = aligned_alloc(4096, (ring_len + 4095) & ~(size_t)4095);
    rr.dstate = aligned_alloc(8, (state_len + 7) & ~(size_t)7);
    FUZZ_CHECK(rr.ring && rr.dstate);
    FUZZ_CHECK(vblk_drv_vq_init(&rr.dvq, &dc, rr.ring, ring_len, rr.dstate, state_len) == 0);
    FUZZ_CHECK(vblk_mem_add(&g_mem, (uint64_t)(uintptr_t)rr.ring + BLK_DRV_DELTA, ring_len, rr.ring,
                            NULL) == 0);

    struct vblk_queue_params qp = {.index = 0, .size = qsize};
    vblk_drv_vq_addrs(&rr.dvq, &qp.addrs);
    size_t need = vblk_queue_mem_size(&rr.dev, qsize);
    rr.qbuf = aligned_alloc(16, (need + 15) & ~(size_t)15);
    FUZZ_CHECK(rr.qbuf);
    FUZZ_CHECK(vblk_queue_init(&rr.q, &rr.dev, &g_mem, &qp, rr.qbuf, need) == 0);

    /* Rounds: fill the ring from the input, run the device, collect. */
    unsigned added = 0;
    struct req_rec *waiting = NULL;
    while (!vblk_queue_broken(&rr.q)) {
        unsigned batch = 0;
        if (waiting) {
            if (!add_request(&rr, waiting))
                break; /* still full after a round: nothing completes */
            added += waiting->added;
            waiting = NULL;
        }
        while (rr.in.n > 0 && rr.nreqs < BLK_MAX_REQS) {
            struct req_rec *rec = &rr.reqs[rr.nreqs++];
            build_request(&rr, rec);
            if (!add_request(&rr, rec)) {
                waiting = rec;
                break;
            }
            added += rec->added;
            batch++;
        }
        round_trip(&rr);
        if (!waiting && (batch == 0 || rr.in.n == 0 || rr.nreqs == BLK_MAX_REQS))
            break;
    }
    if (!vblk_queue_broken(&rr.q)) {
        FUZZ_CHECK(rr.nused == added);
        FUZZ_CHECK(vblk_queue_inflight(&rr.q) == 0);
    }

    /* Whatever is still held (a broken queue) completes before teardown. */
    complete_pending();
    (void)vblk_queue_process(&rr.q, 0);
    (void)vblk_queue_stop(&rr.q);
    if (vblk_queue_inflight(&rr.q) == 0)
        FUZZ_CHECK(vblk_queue_destroy(&rr.q) == 0);

    for (unsigned i = 0; i < rr.nreqs; i++) {
        for (unsigned j = 0; j < rr.reqs[i].nbufs; j++) {
            free(rr.reqs[i].bufs[j].p);
            free(rr.reqs[i].bufs[j].snap);
        }
    }
    free(rr.qbuf);
    free(rr.ring);
    free(rr.dstate);
    return 0;
}
