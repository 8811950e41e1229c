/* SPDX-License-Identifier: MIT */
/* vhost-user in-flight I/O tracking (split rings).
 *
 * The front-end keeps a shared memory region across back-end restarts
 * (GET_INFLIGHT_FD / SET_INFLIGHT_FD). Per queue it holds the layout the
 * vhost-user specification describes for split rings: a header and one
 * entry per descriptor head recording whether the head is in flight and in
 * which order it was fetched. A back-end that crashed left the truth there:
 *
 *  - fetched = used + in flight, so the ring position to resume from is the
 *    used index in guest memory plus the number of heads still in flight;
 *  - heads in flight are resubmitted in fetch order;
 *  - the last batch of used entries is linked through `next`, so if the
 *    crash fell between publishing the used index and clearing the batch's
 *    in-flight marks, the marks can be cleared on restart.
 *
 * The region is written at crash-consistency points with release stores:
 * whatever prefix of the updates reached memory must be recoverable.
 * Packed rings are not tracked: their descriptors are overwritten by used
 * entries while other requests are still in flight, so a restart could not
 * re-read them from the ring. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vu_internal.h"

struct desc_state {
    uint8_t inflight;
    uint8_t padding[5];
    uint16_t next;
    uint64_t counter;
};

struct split_region {
    uint64_t features;
    uint16_t version;
    uint16_t desc_num;
    uint16_t last_batch_head;
    uint16_t used_idx;
    struct desc_state desc[];
};

_Static_assert(sizeof(struct desc_state) == 16, "vhost-user DescStateSplit");
_Static_assert(sizeof(struct split_region) == 16, "vhost-user QueueRegionSplit");

#define REGION_VERSION 1u
#define REGION_ALIGN   64u

#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

uint64_t vu_inflight_queue_bytes(uint16_t qsize)
{
    /* Room for the packed layout (32-byte header and entries) as well, so
     * the size does not depend on features negotiated later. */
    uint64_t n = 32u + 32ull * qsize;
    return (n + REGION_ALIGN - 1) & ~(uint64_t)(REGION_ALIGN - 1);
}

static void reset_region(struct split_region *r, uint16_t num, uint16_t used_idx)
{
    STORE(&r->version, 0);
    memset(r->desc, 0, sizeof(r->desc[0]) * num);
    r->features = 0;
    r->desc_num = num;
    r->last_batch_head = 0;
    r->used_idx = used_idx;
    STORE(&r->version, (uint16_t)REGION_VERSION);
}

struct pending {
    uint64_t counter;
    uint16_t head;
};

/* Sorts private copies: the front-end could change the region while a
 * comparison runs, and qsort must see a consistent order. */
static int by_counter(const void *a, const void *b)
{
    uint64_t ca = ((const struct pending *)a)->counter;
    uint64_t cb = ((const struct pending *)b)->counter;
    return ca < cb ? -1 : ca > cb;
}

int vu_inflight_prepare(struct vu_queue *q, struct vblk_vq_state *st, uint16_t **heads)
{
    struct vblk_vu_dev *d = q->d;
    *heads = NULL;
    q->inf.region = NULL;
    q->inf.batch = 0;
    q->inf.counter = 1;
    q->inf.last_head = 0;
    if (!d->inflight || vu_packed(d) || q->index >= d->inflight_nq || q->num > d->inflight_qsize)
        return 0;
    struct split_region *r =
        (struct split_region *)(d->inflight +
                                q->index * vu_inflight_queue_bytes(d->inflight_qsize));
    q->inf.region = r;
    uint16_t num = (uint16_t)q->num;
    /* A fresh region, one for another ring size, or a restart of a ring
     * this process drained itself: start clean. */
    if (q->have_saved || r->version != REGION_VERSION || r->desc_num != num) {
        reset_region(r, num, st->used_idx);
        return 0;
    }
    q->inf.last_head = r->last_batch_head < num ? r->last_batch_head : 0;

    /* The used index reached the ring but the batch's marks were not
     * cleared yet: clear them now. */
    uint16_t used = st->used_idx;
    if (r->used_idx != used) {
        uint16_t batch = (uint16_t)(used - r->used_idx);
        uint16_t h = q->inf.last_head;
        for (uint32_t i = 0; i < batch && i < num && h < num; i++) {
            STORE(&r->desc[h].inflight, 0);
            h = r->desc[h].next;
        }
        STORE(&r->used_idx, used);
    }

    struct pending *list = malloc(sizeof(*list) * num);
    if (!list)
        return -ENOMEM;
    uint32_t n = 0;
    uint64_t max_counter = 0;
    for (uint16_t i = 0; i < num; i++) {
        if (__atomic_load_n(&r->desc[i].inflight, __ATOMIC_RELAXED) != 1) {
            r->desc[i].inflight = 0;
            continue;
        }
        list[n].head = i;
        list[n].counter = __atomic_load_n(&r->desc[i].counter, __ATOMIC_RELAXED);
        if (list[n].counter > max_counter)
            max_counter = list[n].counter;
        n++;
    }
    qsort(list, n, sizeof(*list), by_counter);
    q->inf.counter = max_counter + 1;
    /* Every head fetched is either used or still in flight. */
    st->last_avail_idx = (uint16_t)(used + n);
    uint16_t *order = n ? malloc(sizeof(*order) * n) : NULL;
    for (uint32_t i = 0; order && i < n; i++)
        order[i] = list[i].head;
    free(list);
    if (n && !order)
        return -ENOMEM;
    *heads = order;
    return (int)n;
}

static struct split_region *region_of(void *opaque)
{
    return ((struct vu_queue *)opaque)->inf.region;
}

/* The front-end can rewrite the region at any time: indices come from the
 * ring (checked against our own ring size) or from private copies, never
 * from the region. */
static void on_started(void *opaque, const struct vblk_req *req)
{
    struct vu_queue *q = opaque;
    struct split_region *r = region_of(opaque);
    uint16_t id = req->chain.id;
    if (id >= q->num)
        return;
    r->desc[id].counter = q->inf.counter++;
    STORE(&r->desc[id].inflight, 1);
}

static void on_done(void *opaque, const struct vblk_req *req)
{
    struct vu_queue *q = opaque;
    struct split_region *r = region_of(opaque);
    uint16_t id = req->chain.id;
    if (id >= q->num)
        return;
    STORE(&r->desc[id].next, q->inf.last_head);
    STORE(&r->last_batch_head, id);
    q->inf.last_head = id;
    q->inf.batch++;
}

static void on_published(void *opaque, const struct vblk_vq_state *st)
{
    struct vu_queue *q = opaque;
    struct split_region *r = region_of(opaque);
    /* The used index store must be in memory before any mark is cleared. */
    atomic_thread_fence(memory_order_seq_cst);
    uint16_t h = q->inf.last_head;
    for (uint32_t i = 0; i < q->inf.batch && h < q->num; i++) {
        STORE(&r->desc[h].inflight, 0);
        h = __atomic_load_n(&r->desc[h].next, __ATOMIC_RELAXED);
    }
    STORE(&r->used_idx, st->used_idx);
    q->inf.batch = 0;
}

static const struct vblk_queue_hooks split_hooks = {
    .started = on_started,
    .done = on_done,
    .published = on_published,
};

const struct vblk_queue_hooks *vu_inflight_hooks(struct vu_queue *q)
{
    return q->inf.region ? &split_hooks : NULL;
}

/* ---- messages: GET_INFLIGHT_FD, SET_INFLIGHT_FD ---- */

void vu_inflight_unmap(struct vblk_vu_dev *d)
{
    if (d->inflight_map)
        munmap(d->inflight_map, d->inflight_map_len);
    d->inflight_map = NULL;
    d->inflight_map_len = 0;
    d->inflight = NULL;
    d->inflight_size = 0;
    d->inflight_nq = d->inflight_qsize = 0;
    for (uint16_t i = 0; i < d->nq; i++)
        memset(&d->q[i].inf, 0, sizeof(d->q[i].inf));
}

static int check_geometry(const struct vblk_vu_dev *d, const struct vu_inflight *in)
{
    if (!vu_has_protocol(d, VBLK_VU_PROTOCOL_F_INFLIGHT_SHMFD))
        return -ENOTSUP;
    if (in->num_queues == 0 || in->num_queues > d->nq || in->queue_size == 0 ||
        in->queue_size > VBLK_QUEUE_SIZE_MAX)
        return -EINVAL;
    /* The rings hold pointers into the region. */
    if (vu_any_live(d))
        return -EBUSY;
    return 0;
}

static void install(struct vblk_vu_dev *d, void *map, size_t map_len, void *ptr,
                    const struct vu_inflight *in)
{
    vu_inflight_unmap(d);
    d->inflight_map = map;
    d->inflight_map_len = map_len;
    d->inflight = ptr;
    d->inflight_size = in->mmap_size;
    d->inflight_nq = in->num_queues;
    d->inflight_qsize = in->queue_size;
}

int vu_h_get_inflight_fd(struct vblk_vu_dev *d, struct vu_msg *m, struct vblk_vu_reply *rep)
{
    struct vu_inflight in = m->p.inflight;
    int rc = check_geometry(d, &in);
    if (rc < 0)
        return rc;
    in.mmap_size = in.num_queues * vu_inflight_queue_bytes(in.queue_size);
    in.mmap_offset = 0;
    int fd = memfd_create("vblk-inflight", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    void *map, *ptr;
    size_t len;
    if (ftruncate(fd, (off_t)in.mmap_size) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    rc = vu_shm_map(fd, 0, in.mmap_size, &map, &len, &ptr);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    install(d, map, len, ptr, &in);
    vu_reply(rep, m, &in, sizeof(in));
    rep->fd = fd;
    vu_log(d, VBLK_VU_LOG_INFO, "in-flight region: %u queues of %u entries", in.num_queues,
           in.queue_size);
    return 0;
}

int vu_h_set_inflight_fd(struct vblk_vu_dev *d, struct vu_msg *m)
{
    const struct vu_inflight *in = &m->p.inflight;
    int rc = check_geometry(d, in);
    if (rc < 0)
        return rc;
    if (in->mmap_size < in->num_queues * vu_inflight_queue_bytes(in->queue_size))
        return -EINVAL;
    void *map, *ptr;
    size_t len;
    rc = vu_shm_map(m->fds[0], in->mmap_offset, in->mmap_size, &map, &len, &ptr);
    if (rc < 0)
        return rc == -ENOMEM ? rc : -EINVAL;
    install(d, map, len, ptr, in);
    return 0;
}
