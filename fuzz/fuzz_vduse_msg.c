/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the VDUSE device's handling of kernel requests, through
 * vblk_vduse_handle_request() on byte buffers, against a fake kernel (the
 * adapter's struct vduse_kops) whose every answer comes from the input:
 * the driver's features, each queue's ring addresses and position, and an
 * IOTLB of a few entries. Each IOTLB entry is its own allocation, so ASan
 * sees any access past what the "kernel" mapped; entries can be remapped
 * behind the device's back, or looked up dishonestly (an entry that does
 * not cover the address asked for). Between requests the queues run over
 * guest memory the input filled, and the driver may write more.
 *
 * Checked besides memory safety: every response is a full response with
 * the request's id and a defined result; malformed lengths are refused
 * without an answer; every IOTLB mapping the device made is unmapped by
 * the time it is freed; no file descriptor outlives it; the kick fds it
 * hands the kernel are open.
 *
 * Input: see read_kernel() and the switch in LLVMFuzzerTestOneInput().
 */
#include <fcntl.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "transport/vduse/vduse_internal.h"

#define NENTRIES 4
#define NQ       2
#define QSIZE    64

struct fake_entry {
    uint64_t start;
    uint64_t size;
    uint8_t *host; /* exactly size bytes */
    uint8_t perm;
    bool lie;   /* answer lookups with a range that misses the address */
    int mapped; /* mappings the device holds */
};

struct fake_kernel {
    struct fake_entry e[NENTRIES];
    unsigned ne;
    uint64_t features;
    struct vduse_abi_vq_info info[NQ];
    int kickfd[NQ];
    uint64_t irqs, maps, unmaps, lookups;
};

static int k_get_features(void *k, uint64_t *f)
{
    *f = ((struct fake_kernel *)k)->features;
    return 0;
}

static int k_vq_info(void *k, struct vduse_abi_vq_info *info)
{
    struct fake_kernel *fk = k;
    FUZZ_CHECK(info->index < NQ);
    *info = fk->info[info->index];
    return 0;
}

static int k_set_kickfd(void *k, uint32_t index, int fd)
{
    struct fake_kernel *fk = k;
    FUZZ_CHECK(index < NQ);
    /* The kernel would EBADF; the device must only hand over open fds. */
    if (fd >= 0)
        FUZZ_CHECK(fcntl(fd, F_GETFD) >= 0);
    fk->kickfd[index] = fd;
    return 0;
}

static int k_inject_irq(void *k, uint32_t index)
{
    struct fake_kernel *fk = k;
    if (fuzz_verbose())
        fprintf(stderr, "irq on queue %u\n", index);
    FUZZ_CHECK(index < NQ);
    fk->irqs++;
    return 0;
}

static int k_map(void *k, uint64_t iova, struct vduse_mapping *m)
{
    struct fake_kernel *fk = k;
    fk->lookups++;
    for (unsigned i = 0; i < fk->ne; i++) {
        struct fake_entry *e = &fk->e[i];
        if (iova - e->start >= e->size)
            continue;
        m->start = e->start;
        m->last = e->start + e->size - 1;
        if (e->lie) {
            /* A range that does not contain the address asked for. */
            m->start = iova + 1;
            m->last = iova + e->size;
        }
        m->perm = e->perm;
        m->host = e->host;
        m->base = e;
        e->mapped++;
        fk->maps++;
        if (fuzz_verbose())
            fprintf(stderr, "map 0x%llx: entry %u\n", (unsigned long long)iova, i);
        return 0;
    }
    return -EFAULT;
}

static void k_unmap(void *k, const struct vblk_mem_region *r)
{
    struct fake_kernel *fk = k;
    struct fake_entry *e = r->opaque;
    FUZZ_CHECK(e >= fk->e && e < fk->e + fk->ne);
    FUZZ_CHECK(r->host == e->host && e->mapped > 0);
    e->mapped--;
    fk->unmaps++;
}

static int k_set_config(void *k, uint32_t off, const void *buf, uint32_t len)
{
    (void)k;
    FUZZ_CHECK(off <= sizeof(struct vblk_config) && len <= sizeof(struct vblk_config) - off);
    volatile uint8_t sink = 0;
    for (uint32_t i = 0; i < len; i++)
        sink ^= ((const uint8_t *)buf)[i];
    (void)sink;
    return 0;
}

static int k_config_irq(void *k)
{
    (void)k;
    return 0;
}

static const struct vduse_kops fake_kops = {
    .get_features = k_get_features,
    .vq_info = k_vq_info,
    .set_kickfd = k_set_kickfd,
    .inject_irq = k_inject_irq,
    .map = k_map,
    .unmap = k_unmap,
    .set_config = k_set_config,
    .config_irq = k_config_irq,
};

/* An IOVA given as (entry, offset), so that rings land in mapped memory. */
static uint64_t pick_iova(struct fake_kernel *fk, struct fuzz_in *in)
{
    uint8_t sel = in_u8(in);
    if (sel == 0xff)
        return in_u64(in);
    const struct fake_entry *e = &fk->e[sel % fk->ne];
    return e->start + in_u16(in);
}

static void read_vq_info(struct fake_kernel *fk, struct fuzz_in *in, unsigned q)
{
    struct vduse_abi_vq_info *vi = &fk->info[q];
    memset(vi, 0, sizeof(*vi));
    vi->index = q;
    uint8_t b = in_u8(in);
    vi->ready = b & 1;
    vi->num = (b & 2) ? in_u16(in) : (1u << ((b >> 2) % 7));
    vi->desc_addr = pick_iova(fk, in);
    vi->driver_addr = pick_iova(fk, in);
    vi->device_addr = pick_iova(fk, in);
    vi->packed.last_avail_idx = in_u16(in);
    vi->packed.last_avail_counter = in_u16(in);
    vi->packed.last_used_idx = in_u16(in);
    vi->packed.last_used_counter = in_u16(in);
}

static void read_kernel(struct fake_kernel *fk, struct fuzz_in *in, uint64_t offered)
{
    memset(fk, 0, sizeof(*fk));
    fk->kickfd[0] = fk->kickfd[1] = -1;
    uint64_t f = in_u64(in);
    uint8_t how = in_u8(in);
    /* Mostly a subset of what the device offers; now and then anything. */
    fk->features = (how & 1) ? f : (f & offered) | VBLK_BIT(VBLK_F_VERSION_1);
    fk->ne = how >> 6 ? how >> 6 : 1;
    uint64_t next = 0x100000;
    for (unsigned i = 0; i < fk->ne; i++) {
        struct fake_entry *e = &fk->e[i];
        uint8_t sel = in_u8(in);
        e->size = (uint64_t)(in_u16(in) % 16384) + 1;
        /* Back to back, a gap, or anywhere (overlaps included). */
        if (sel & 0x80)
            e->start = (uint64_t)in_u32(in) << 4;
        else
            e->start = next + (sel & 0x40 ? 4096 : 0);
        if (e->start + (e->size - 1) < e->start)
            e->start = 0;
        next = e->start + e->size;
        e->perm = (uint8_t)(sel & 3);
        e->lie = (sel & 0x3c) == 0x3c;
        e->host = malloc(e->size);
        FUZZ_CHECK(e->host);
        size_t fill = in_u16(in);
        if (fill > e->size)
            fill = e->size;
        in_bytes(in, e->host, fill);
        memset(e->host + fill, 0, e->size - fill);
    }
    for (unsigned q = 0; q < NQ; q++)
        read_vq_info(fk, in, q);
}

static void send(struct vblk_vduse *v, const void *req, size_t len)
{
    uint8_t resp[VBLK_VDUSE_MSG_SIZE + 8];
    memset(resp, 0xa5, sizeof(resp));
    int rc = vblk_vduse_handle_request(v, req, len, resp, sizeof(resp));
    if (len != VBLK_VDUSE_MSG_SIZE) {
        FUZZ_CHECK(rc == -EBADMSG);
        return;
    }
    FUZZ_CHECK(rc == (int)VBLK_VDUSE_MSG_SIZE);
    struct vduse_abi_request q;
    struct vduse_abi_response r;
    memcpy(&q, req, sizeof(q));
    memcpy(&r, resp, sizeof(r));
    FUZZ_CHECK(r.request_id == q.request_id);
    FUZZ_CHECK(r.result == VDUSE_ABI_RESULT_OK || r.result == VDUSE_ABI_RESULT_FAILED);
    FUZZ_CHECK(r.reserved[0] == 0 && r.reserved[1] == 0 && r.reserved[2] == 0 &&
               r.reserved[3] == 0);
    FUZZ_CHECK(resp[VBLK_VDUSE_MSG_SIZE] == 0xa5); /* nothing past the response */
    if (fuzz_verbose())
        fprintf(stderr, "request type %u: result %u\n", q.type, r.result);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fds_before = count_fds();
    struct fuzz_in in = {data, size};
    uint8_t flags = in_u8(&in);

    struct vblk_backend be = fuzz_disk_backend((flags & 1) != 0);
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, 1u << 20);
    p.num_queues = NQ;
    p.queue_size = QSIZE;
    p.features_off = (flags & 2) ? 0 : VBLK_BIT(VBLK_F_IN_ORDER);

    static struct fake_kernel fk;
    struct vblk_vduse *v = NULL;
    /* Features are read before the device exists: use its offer. */
    struct vblk_dev probe;
    FUZZ_CHECK(vblk_dev_init(&probe, &p, &be) == 0);
    read_kernel(&fk, &in, vblk_dev_features(&probe) | VBLK_BIT(VBLK_F_ACCESS_PLATFORM));
    FUZZ_CHECK(vduse_alloc(&p, &be, &fake_kops, &fk, &v) == 0);
    FUZZ_CHECK(vblk_vduse_num_queues(v) == NQ);
    /* VDUSE's config space is read-only to the driver. */
    FUZZ_CHECK(!(vblk_dev_features(vblk_vduse_blk(v)) & VBLK_BIT(VBLK_F_CONFIG_WCE)));

    unsigned nmsg = 0;
    while (in.n > 0 && nmsg < 128) {
        uint8_t op = in_u8(&in);
        struct vduse_abi_request req;
        memset(&req, 0, sizeof(req));
        req.request_id = nmsg++;
        switch (op % 10) {
        case 0:
            req.type = VDUSE_MSG_SET_STATUS;
            req.status = in_u8(&in);
            send(v, &req, sizeof(req));
            break;
        case 1:
            req.type = VDUSE_MSG_GET_VQ_STATE;
            req.vq_state.index = in_u8(&in) % 4;
            send(v, &req, sizeof(req));
            break;
        case 2:
            req.type = VDUSE_MSG_UPDATE_IOTLB;
            req.iova.start = pick_iova(&fk, &in);
            req.iova.last = (op & 0x80) ? UINT64_MAX : req.iova.start + in_u16(&in);
            send(v, &req, sizeof(req));
            break;
        case 3: {
            /* Any bytes, at the right length or not. */
            uint8_t raw[VBLK_VDUSE_MSG_SIZE + 8];
            size_t len = (op & 0x80) ? in_u8(&in) % sizeof(raw) : VBLK_VDUSE_MSG_SIZE;
            in_bytes(&in, raw, len);
            send(v, raw, len);
            break;
        }
        case 4: {
            uint16_t q = (uint16_t)((op >> 4) % NQ);
            vduse_vq_run(v, q);
            struct vblk_queue *vq = vblk_vduse_queue(v, q);
            if (vq)
                FUZZ_CHECK(vblk_queue_inflight(vq) == 0); /* inline backends */
            break;
        }
        case 5: {
            /* The driver writes guest memory. */
            struct fake_entry *e = &fk.e[in_u8(&in) % fk.ne];
            size_t off = in_u16(&in) % e->size;
            size_t len = in_u8(&in);
            if (len > e->size - off)
                len = e->size - off;
            in_bytes(&in, e->host + off, len);
            break;
        }
        case 6: {
            /* The kernel moves an entry without telling the device. */
            struct fake_entry *e = &fk.e[in_u8(&in) % fk.ne];
            uint64_t start = (uint64_t)in_u32(&in) << 4;
            if (start + (e->size - 1) >= start)
                e->start = start;
            break;
        }
        case 7:
            fk.features = (op & 0x80) ? in_u64(&in) : fk.features ^ VBLK_BIT(VBLK_F_RING_PACKED);
            break;
        case 8: {
            struct vblk_transport_stats st;
            vblk_vduse_stats(v, &st);
            FUZZ_CHECK(st.messages <= nmsg);
            FUZZ_CHECK(st.memory_maps >= st.memory_unmaps);
            (void)vblk_vduse_attached(v);
            break;
        }
        default:
            read_vq_info(&fk, &in, (op >> 4) % NQ);
            break;
        }
    }

    vduse_free(v);
    for (unsigned i = 0; i < fk.ne; i++) {
        /* Every mapping was given back. */
        FUZZ_CHECK(fk.e[i].mapped == 0);
        free(fk.e[i].host);
    }
    FUZZ_CHECK(fk.maps == fk.unmaps);
    FUZZ_CHECK(count_fds() == fds_before);
    return 0;
}
