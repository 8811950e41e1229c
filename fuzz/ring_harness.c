/* SPDX-License-Identifier: MIT */
/*
 * The ring fuzzers: the input is everything a hostile driver controls in
 * guest memory (descriptors, available ring or descriptor flags, indirect
 * tables, request headers) plus a short script of what happens next
 * (kicks, completions in any order, reconnects, dirty logging). A real
 * device and queue run over it; the input format is in fuzz_format.h.
 */
#include "ring_harness.h"

#include "fuzz_common.h"
#include "fuzz_format.h"
#include "ring_writer.h"
#include "virtioblk/advanced.h"
#include "virtioblk/blk.h"
#include "virtioblk/ring.h"

#define RING_CAPACITY (1u << 20)
#define MAX_PIECES    4u
#define SCRATCH_IOV   64u

struct ring_run {
    bool packed;
    uint16_t size;
    uint8_t hdr[RING_HDR_SIZE];
    struct ring_layout l;
    uint8_t *desc, *driver, *device;
    uint8_t *desc_base, *driver_base, *device_base;
    struct atk_ring ring; /* the driver's hand on the three areas */
    unsigned shift;       /* host misalignment of the ring areas */
    uint8_t *piece[MAX_PIECES];
    uint32_t piece_len[MAX_PIECES];
    unsigned npieces;
    uint8_t *log;
    size_t log_len;
    struct vblk_dev dev;
    struct vblk_backend be;
    bool fuzz_backend;
    struct vblk_queue q;
    struct vblk_queue_params qp;
    struct vblk_vq_state state;
    void *qbuf;
    bool live;
    uint8_t tape[8];
    uint64_t notifies, wakes, started, done, published;
};

static struct vblk_mem g_mem;
static struct fuzz_be g_fb;
static struct vblk_iov g_scratch[SCRATCH_IOV];

static void on_notify(void *opaque)
{
    ((struct ring_run *)opaque)->notifies++;
}

static void on_wake(void *opaque)
{
    ((struct ring_run *)opaque)->wakes++;
}

static void hook_started(void *opaque, const struct vblk_req *req)
{
    struct ring_run *rr = opaque;
    rr->started++;
    if (!rr->packed) {
        FUZZ_CHECK(req->chain.id < rr->size);
        FUZZ_CHECK(req->chain.ndescs == 1);
    } else {
        uint16_t pos;
        uint8_t wrap;
        vblk_req_ring_pos(req, &pos, &wrap);
        FUZZ_CHECK(pos < rr->size && wrap <= 1);
        FUZZ_CHECK(req->chain.ndescs >= 1 && req->chain.ndescs <= rr->size);
    }
}

static void hook_done(void *opaque, const struct vblk_req *req)
{
    struct ring_run *rr = opaque;
    rr->done++;
    if (fuzz_verbose())
        fprintf(stderr, "done: id %u type %s status %u used_len %u\n", req->chain.id,
                vblk_req_type_name(req->type), req->status ? *req->status : 255u, req->used_len);
    /* Split: the device only pushes heads it popped. */
    if (!rr->packed)
        FUZZ_CHECK(req->chain.id < rr->size);
    FUZZ_CHECK(rr->done <= rr->started);
}

static void hook_published(void *opaque, const struct vblk_vq_state *st)
{
    struct ring_run *rr = opaque;
    rr->published++;
    if (rr->packed)
        FUZZ_CHECK(st->used_idx < rr->size && st->last_avail_idx < rr->size);
}

static const struct vblk_queue_hooks g_hooks = {
    .started = hook_started,
    .done = hook_done,
    .published = hook_published,
};

/* Reads every byte of a popped chain, so ASan checks each iovec. */
static void touch_chain(const struct vblk_chain *c)
{
    volatile uint8_t sink = 0;
    FUZZ_CHECK((unsigned)c->nout + c->nin <= c->cap);
    uint64_t out = 0, in = 0;
    for (unsigned i = 0; i < (unsigned)c->nout + c->nin; i++) {
        const uint8_t *b = c->iov[i].base;
        for (size_t j = 0; j < c->iov[i].len; j++)
            sink ^= b[j];
        if (i < c->nout)
            out += c->iov[i].len;
        else
            in += c->iov[i].len;
    }
    if (!c->fault) {
        FUZZ_CHECK(c->out_len == UINT32_MAX || out == c->out_len);
        FUZZ_CHECK(c->in_len == UINT32_MAX || in == c->in_len);
    }
    (void)sink;
}

static int queue_start(struct ring_run *rr)
{
    size_t need = vblk_queue_mem_size(&rr->dev, rr->size);
    if (!rr->qbuf) {
        rr->qbuf = aligned_alloc(16, (need + 15) & ~(size_t)15);
        FUZZ_CHECK(rr->qbuf);
    }
    int rc = vblk_queue_init(&rr->q, &rr->dev, &g_mem, &rr->qp, rr->qbuf, need);
    rr->live = rc == 0;
    return rc;
}

static void complete_all(struct ring_run *rr)
{
    while (g_fb.npending) {
        struct vblk_req *r = fuzz_be_take(&g_fb, g_fb.npending - 1);
        vblk_req_complete(r, fuzz_be_status(&g_fb));
    }
    vblk_queue_flush(&rr->q);
}

/* Stops the queue and finishes everything the backend holds, as a transport
 * does before a reconnect or teardown; afterwards nothing may be in flight. */
static void drain(struct ring_run *rr)
{
    (void)vblk_queue_stop(&rr->q);
    for (int i = 0; i < 3; i++) {
        complete_all(rr);
        /* Asynchronous completions are finished by the next process call,
         * which pops nothing new once the queue is stopping. */
        (void)vblk_queue_process(&rr->q, 0);
    }
}

static void driver_add(struct ring_run *rr, unsigned n)
{
    if (!rr->packed) {
        atk_split_avail_add(&rr->ring, (uint16_t)n);
        return;
    }
    /* Mark n descriptors from the device's position available again, in
     * the driver's wrap counter of each lap; everything else stays. */
    atk_packed_mark_avail(&rr->ring, rr->q.vq.last_avail, rr->q.vq.avail_wrap, n);
}

static uint16_t hdr_u16(const struct ring_run *rr, unsigned off)
{
    return (uint16_t)(rr->hdr[off] | rr->hdr[off + 1] << 8);
}

static void run_op(struct ring_run *rr, uint8_t b)
{
    unsigned arg = b >> 4;
    struct vblk_queue *q = &rr->q;
    switch (b & 15) {
    case OP_PROCESS:
        (void)vblk_queue_process(q, arg);
        break;
    case OP_RUN:
        (void)vblk_queue_on_kick(q);
        break;
    case OP_COMPLETE:
        if (g_fb.npending) {
            struct vblk_req *r = fuzz_be_take(&g_fb, arg % g_fb.npending);
            vblk_req_complete(r, fuzz_be_status(&g_fb));
            vblk_queue_flush(q);
        }
        break;
    case OP_COMPLETE_ALL:
        complete_all(rr);
        break;
    case OP_DRIVER_ADD:
        driver_add(rr, arg + 1);
        break;
    case OP_POP_AT: {
        struct vblk_chain c = {.iov = g_scratch, .cap = SCRATCH_IOV};
        if (vblk_vq_pop_at(&q->vq, hdr_u16(rr, RH_POS + 2 * (arg & 3)), (arg >> 2) & 1, &c) > 0)
            touch_chain(&c);
        break;
    }
    case OP_RESUBMIT: {
        int rc = vblk_queue_resubmit(q, hdr_u16(rr, RH_POS + 2 * (arg & 3)), (arg >> 2) & 1);
        FUZZ_CHECK(rc == 1 || rc == -EBUSY || rc == -EIO);
        if (fuzz_verbose())
            fprintf(stderr, "resubmit: %d\n", rc);
        break;
    }
    case OP_POLLING:
        vblk_queue_set_polling(q, arg & 1);
        break;
    case OP_NOTIFY:
        switch (arg & 3) {
        case 0:
            vblk_vq_disable_notify(&q->vq);
            break;
        case 1:
            (void)vblk_vq_enable_notify(&q->vq);
            break;
        case 2:
            (void)vblk_vq_has_avail(&q->vq);
            break;
        default: {
            struct vblk_vq_state st;
            vblk_queue_get_state(q, &st);
            if (rr->packed && !vblk_queue_broken(q))
                FUZZ_CHECK(st.last_avail_idx < rr->size && st.used_idx < rr->size);
            break;
        }
        }
        break;
    case OP_RECONNECT:
        drain(rr);
        FUZZ_CHECK(vblk_queue_inflight(q) == 0);
        vblk_queue_get_state(q, &rr->state);
        FUZZ_CHECK(vblk_queue_destroy(q) == 0);
        rr->live = false;
        rr->qp.state = &rr->state;
        /* A position the device saved itself is always a valid start. */
        FUZZ_CHECK(queue_start(rr) == 0);
        {
            struct vblk_vq_state now;
            vblk_queue_get_state(q, &now);
            FUZZ_CHECK(memcmp(&now, &rr->state, sizeof(now)) == 0);
        }
        break;
    case OP_LOG:
        if (vblk_mem_logging(&g_mem))
            vblk_mem_set_log(&g_mem, NULL, 0);
        else
            vblk_mem_set_log(&g_mem, rr->log, rr->log_len);
        break;
    case OP_ASYNC:
        for (unsigned i = 0; i <= arg && g_fb.npending; i++) {
            struct vblk_req *r = fuzz_be_take(&g_fb, (i * 7u) % g_fb.npending);
            vblk_req_complete_async(r, fuzz_be_status(&g_fb));
        }
        break;
    case OP_STOP:
        (void)vblk_queue_stop(q);
        break;
    case OP_FLUSH:
        vblk_queue_flush(q);
        break;
    case OP_POP_SAVED:
    case OP_RESUBMIT_SAVED: {
        uint16_t n = (uint16_t)((arg & 7) + 1);
        struct vblk_packed_desc *saved = malloc(n * sizeof(*saved));
        FUZZ_CHECK(saved);
        int rc = 0;
        if (arg & 8) {
            rc = vblk_vq_copy_descs(&q->vq, hdr_u16(rr, RH_POS), n, saved);
            if (!rr->packed || vblk_queue_broken(q))
                FUZZ_CHECK(rc == -EINVAL);
        } else {
            memset(saved, 0, n * sizeof(*saved));
            memcpy(saved, rr->piece[0],
                   n * sizeof(*saved) < rr->piece_len[0] ? n * sizeof(*saved) : rr->piece_len[0]);
        }
        if (rc == 0) {
            if ((b & 15) == OP_POP_SAVED) {
                struct vblk_chain c = {.iov = g_scratch, .cap = SCRATCH_IOV};
                rc = vblk_vq_pop_saved(&q->vq, saved, n, &c);
                if (rc > 0)
                    touch_chain(&c);
                else if (!rr->packed && !vblk_queue_broken(q))
                    FUZZ_CHECK(rc == -EINVAL);
            } else {
                rc = vblk_queue_resubmit_saved(q, saved, n);
                FUZZ_CHECK(rc == 1 || rc == -EBUSY || rc == -EIO || rc == -EINVAL);
                if (!rr->packed)
                    FUZZ_CHECK(rc == -EINVAL || rc == -EBUSY || rc == -EIO);
            }
        }
        if (fuzz_verbose())
            fprintf(stderr, "%s: %d\n", (b & 15) == OP_POP_SAVED ? "pop_saved" : "resubmit_saved",
                    rc);
        free(saved);
        break;
    }
    default:
        (void)vblk_queue_process(q, 0);
        break;
    }
}

/* Split ring: once drained, every used element the device wrote is visible.
 * (The used ring's contents can't be checked here: the driver may point
 * buffers at its own used ring, and the device then writes data there.) */
static void check_split_used(struct ring_run *rr)
{
    if (vblk_queue_broken(&rr->q))
        return;
    FUZZ_CHECK(rr->q.vq.published == rr->q.vq.used_idx);
}

static void setup_memory(struct ring_run *rr, struct fuzz_in *in)
{
    const struct ring_layout *l = &rr->l;
    /* Now and then the host copies of the ring areas sit off the alignment
     * of their driver addresses (a front-end's mmap offset can do that):
     * the device must refuse such rings. */
    rr->shift = (rr->hdr[RH_POOL] & 8) ? 1u + (rr->hdr[RH_POOL] >> 4) % 15u : 0;
    rr->desc_base = malloc(l->desc_len + rr->shift);
    rr->driver_base = malloc(l->driver_len + rr->shift);
    rr->device_base = calloc(1, l->device_len + rr->shift);
    FUZZ_CHECK(rr->desc_base && rr->driver_base && rr->device_base);
    rr->desc = rr->desc_base + rr->shift;
    rr->driver = rr->driver_base + rr->shift;
    rr->device = rr->device_base + rr->shift;
    in_bytes(in, rr->desc, l->desc_len);
    in_bytes(in, rr->driver, l->driver_len);
    atk_ring_init_areas(&rr->ring, rr->size, rr->packed, rr->desc, rr->driver, rr->device, NULL);

    /* The data pool, cut into separately allocated pieces at fuzzed offsets. */
    uint32_t cut[MAX_PIECES + 1];
    unsigned ncut = 0;
    cut[ncut++] = 0;
    for (unsigned i = 0; i < (rr->hdr[RH_POOL] & 3u); i++) {
        uint32_t c = hdr_u16(rr, RH_SPLITS + 2 * i) % RING_POOL_SIZE;
        unsigned j = ncut;
        while (j > 0 && cut[j - 1] > c) {
            cut[j] = cut[j - 1];
            j--;
        }
        cut[j] = c;
        ncut++;
    }
    cut[ncut++] = RING_POOL_SIZE;
    rr->npieces = 0;
    for (unsigned i = 0; i + 1 < ncut; i++) {
        uint32_t len = cut[i + 1] - cut[i];
        if (len == 0)
            continue;
        uint8_t *p = malloc(len);
        FUZZ_CHECK(p);
        in_bytes(in, p, len);
        rr->piece[rr->npieces] = p;
        rr->piece_len[rr->npieces] = len;
        if (!(rr->npieces == 1 && (rr->hdr[RH_POOL] & 4)))
            FUZZ_CHECK(vblk_mem_add(&g_mem, l->pool + cut[i], len, p, NULL) == 0);
        rr->npieces++;
    }
    FUZZ_CHECK(vblk_mem_add(&g_mem, l->desc, l->desc_len, rr->desc, NULL) == 0);
    FUZZ_CHECK(vblk_mem_add(&g_mem, l->driver, l->driver_len, rr->driver, NULL) == 0);
    FUZZ_CHECK(vblk_mem_add(&g_mem, l->device, l->device_len, rr->device, NULL) == 0);

    rr->log_len = (size_t)(rr->hdr[RH_WRAPS] >> 4) + 1;
    rr->log = calloc(1, rr->log_len);
    FUZZ_CHECK(rr->log);
    if (rr->hdr[RH_FEAT] & RF_LOG)
        vblk_mem_set_log(&g_mem, rr->log, rr->log_len);
}

static void teardown(struct ring_run *rr)
{
    if (rr->live) {
        drain(rr);
        FUZZ_CHECK(vblk_queue_inflight(&rr->q) == 0);
        FUZZ_CHECK(vblk_queue_destroy(&rr->q) == 0);
    }
    if (rr->fuzz_backend)
        FUZZ_CHECK(g_fb.started == g_fb.stopped);
    free(rr->qbuf);
    free(rr->desc_base);
    free(rr->driver_base);
    free(rr->device_base);
    for (unsigned i = 0; i < rr->npieces; i++)
        free(rr->piece[i]);
    free(rr->log);
    vblk_mem_init(&g_mem);
}

int ring_fuzz_one(const uint8_t *data, size_t size, bool packed)
{
    struct fuzz_in in = {data, size};
    struct ring_run rr;
    memset(&rr, 0, sizeof(rr));
    rr.packed = packed;
    in_bytes(&in, rr.hdr, RING_HDR_SIZE);
    rr.size = ring_size_from(rr.hdr[RH_SIZE], packed);
    if (rr.size > RING_MAX_SIZE)
        return 0;
    ring_layout_of(packed, rr.size, &rr.l);
    uint8_t feat = rr.hdr[RH_FEAT];

    vblk_mem_init(&g_mem);
    setup_memory(&rr, &in);

    /* Backend. */
    unsigned backend = feat >> 6;
    memcpy(rr.tape, &rr.hdr[RH_DECIDE], sizeof(rr.tape));
    if (backend == RB_NULL) {
        FUZZ_CHECK(vblk_backend_null_create(RING_CAPACITY, &rr.be) == 0);
    } else {
        if (backend == RB_INLINE)
            for (unsigned i = 0; i < sizeof(rr.tape); i++)
                rr.tape[i] &= (uint8_t)~2u;
        fuzz_be_init(&g_fb,
                     VBLK_BACKEND_CAP_FLUSH | VBLK_BACKEND_CAP_DISCARD |
                         VBLK_BACKEND_CAP_WRITE_ZEROES | VBLK_BACKEND_CAP_SECURE_ERASE,
                     rr.tape, sizeof(rr.tape));
        g_fb.odd_status = true;
        rr.be.ops = &g_fb.ops;
        rr.be.ctx = &g_fb;
        rr.be.size = RING_CAPACITY;
        rr.fuzz_backend = true;
    }
    if (!rr.fuzz_backend)
        fuzz_be_init(&g_fb, 0, NULL, 0); /* keeps complete_all() a no-op */

    /* Device. */
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, RING_CAPACITY);
    p.seg_max = rr.hdr[RH_SEG_MAX] ? rr.hdr[RH_SEG_MAX] : 126;
    p.size_max = rr.hdr[RH_SIZE_MAX] * 64u;
    p.queue_size = RING_MAX_SIZE;
    p.max_discard_seg = 2;
    p.max_write_zeroes_seg = 3;
    p.max_secure_erase_sectors = 1u << 16;
    p.lifetime = true;
    p.features_off = 0;
    memcpy(p.serial, "fuzz-serial-01234567", VBLK_ID_BYTES);
    FUZZ_CHECK(vblk_dev_init(&rr.dev, &p, &rr.be) == 0);
    uint64_t ring_bits = VBLK_BIT(VBLK_F_RING_PACKED) | VBLK_BIT(VBLK_F_INDIRECT_DESC) |
                         VBLK_BIT(VBLK_F_EVENT_IDX) | VBLK_BIT(VBLK_F_IN_ORDER);
    uint64_t f = vblk_dev_features(&rr.dev) & ~ring_bits;
    if (packed)
        f |= VBLK_BIT(VBLK_F_RING_PACKED);
    if (feat & RF_INDIRECT)
        f |= VBLK_BIT(VBLK_F_INDIRECT_DESC);
    if (feat & RF_EVENT_IDX)
        f |= VBLK_BIT(VBLK_F_EVENT_IDX);
    if (feat & RF_IN_ORDER)
        f |= VBLK_BIT(VBLK_F_IN_ORDER);
    FUZZ_CHECK(vblk_dev_set_features(&rr.dev, f) == 0);

    /* Queue. */
    rr.qp.index = 0;
    rr.qp.size = rr.size;
    rr.qp.addrs = (struct vblk_vq_addrs){rr.l.desc, rr.l.driver, rr.l.device};
    if (feat & RF_STATE) {
        rr.state.last_avail_idx = hdr_u16(&rr, RH_LAST_AVAIL);
        rr.state.used_idx = hdr_u16(&rr, RH_USED_IDX);
        rr.state.avail_wrap = rr.hdr[RH_WRAPS] & 1;
        rr.state.used_wrap = (rr.hdr[RH_WRAPS] >> 1) & 1;
        /* Mostly in range for packed rings; now and then as given. */
        if (packed && !(rr.hdr[RH_WRAPS] & 4)) {
            rr.state.last_avail_idx %= rr.size;
            rr.state.used_idx %= rr.size;
        }
        rr.qp.state = &rr.state;
    }
    rr.qp.notify = on_notify;
    rr.qp.notify_opaque = &rr;
    rr.qp.wake = on_wake;
    rr.qp.wake_opaque = &rr;
    if (feat & RF_HOOKS) {
        rr.qp.hooks = &g_hooks;
        rr.qp.hooks_opaque = &rr;
    }
    /* Now and then the backend refuses to start the queue. */
    g_fb.fail_start = rr.fuzz_backend && rr.hdr[RH_SIZE_MAX] == 0xff;
    int rc = queue_start(&rr);
    if ((packed && rr.qp.state &&
         (rr.state.last_avail_idx >= rr.size || rr.state.used_idx >= rr.size)) ||
        rr.shift)
        FUZZ_CHECK(rc == -EINVAL);
    else if (g_fb.fail_start)
        FUZZ_CHECK(rc == -ENOMEM);
    else
        FUZZ_CHECK(rc == 0);
    g_fb.fail_start = false;
    if (rr.live)
        FUZZ_CHECK(vblk_queue_backend_fd(&rr.q) == -1);

    if (rr.live)
        (void)vblk_queue_process(&rr.q, 0);
    for (unsigned i = 0; i < RING_NOPS && rr.live; i++)
        run_op(&rr, rr.hdr[RH_OPS + i]);
    if (rr.live) {
        drain(&rr);
        if (fuzz_verbose()) {
            const struct vblk_queue_stats *st = vblk_queue_stats(&rr.q);
            const struct vblk_vq_stats *vs = vblk_vq_stats(&rr.q.vq);
            fprintf(stderr,
                    "size %u: chains %llu bad %llu broken %llu submitted %llu completed %llu "
                    "ioerr %llu unsupp %llu notifies %llu\n",
                    rr.size, (unsigned long long)vs->chains, (unsigned long long)vs->bad_chains,
                    (unsigned long long)vs->broken, (unsigned long long)st->submitted,
                    (unsigned long long)st->completed, (unsigned long long)st->ioerr,
                    (unsigned long long)st->unsupp, (unsigned long long)rr.notifies);
        }
        FUZZ_CHECK(vblk_queue_inflight(&rr.q) == 0);
        if (!packed)
            check_split_used(&rr);
    }
    teardown(&rr);
    return 0;
}
