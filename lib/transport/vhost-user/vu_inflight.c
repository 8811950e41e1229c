/* SPDX-License-Identifier: MIT */
/* vhost-user in-flight I/O tracking.
 *
 * The front-end keeps a shared memory region across back-end restarts
 * (GET_INFLIGHT_FD / SET_INFLIGHT_FD). Per queue it holds the layout the
 * vhost-user specification describes for the ring format. A back-end that
 * crashed left the truth there.
 *
 * Split rings: a header and one entry per descriptor head recording
 * whether the head is in flight and in which order it was fetched.
 *
 *  - fetched = used + in flight, so the ring position to resume from is the
 *    used index in guest memory plus the number of heads still in flight;
 *  - heads in flight are resubmitted in fetch order;
 *  - the last batch of used entries is linked through `next`, so if the
 *    crash fell between publishing the used index and clearing the batch's
 *    in-flight marks, the marks can be cleared on restart.
 *
 * Packed rings: used entries overwrite the descriptor ring while other
 * requests are still in flight, so the region keeps a copy of every
 * descriptor list in flight, one entry per descriptor, the entries of a
 * list linked through `next` and the unused ones on a free list. The head
 * entry of a list holds the in-flight mark, the list's length, its last
 * entry and the fetch order. The header records the device's used position
 * (`used_idx`, `used_wrap_counter`) and, after the `old_` fields, the last
 * position whose bookkeeping is complete. On a restart:
 *
 *  - the used position comes from the region (the front-end cannot know
 *    it): an update left half done is finished using the ring itself (the
 *    used entry is written before the region records it), and used entries
 *    written just before the crash are found by scanning the ring;
 *  - fetched = used + in flight counts descriptors here, which gives the
 *    available position;
 *  - lists in flight are resubmitted in fetch order from their copies.
 *
 * The region is written at crash-consistency points with release stores:
 * whatever prefix of the updates reached memory must be recoverable. The
 * front-end can rewrite it at any time: while a ring runs the device only
 * writes it, from private copies; a restart reads it once into a private
 * snapshot and checks every value it uses. */
#include <errno.h>
#include <fcntl.h>
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

struct pk_state {
    uint8_t inflight;
    uint8_t padding;
    uint16_t next;
    uint16_t last;
    uint16_t num;
    uint64_t counter;
    uint16_t id;
    uint16_t flags;
    uint32_t len;
    uint64_t addr;
};

struct pk_region {
    uint64_t features;
    uint16_t version;
    uint16_t desc_num;
    uint16_t free_head;
    uint16_t old_free_head;
    uint16_t used_idx;
    uint16_t old_used_idx;
    uint8_t used_wrap_counter;
    uint8_t old_used_wrap_counter;
    uint8_t padding[7];
    struct pk_state desc[];
};

_Static_assert(sizeof(struct pk_state) == 32, "vhost-user DescStatePacked");
_Static_assert(offsetof(struct pk_region, desc) == 32, "vhost-user QueueRegionPacked");

#define REGION_VERSION 1u
#define REGION_ALIGN   64u

#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define LOAD(p)     __atomic_load_n((p), __ATOMIC_RELAXED)

uint64_t vu_inflight_queue_bytes(uint16_t qsize)
{
    /* Room for the packed layout (32-byte header and entries) as well, so
     * the size does not depend on features negotiated later. */
    uint64_t n = 32u + 32ull * qsize;
    return (n + REGION_ALIGN - 1) & ~(uint64_t)(REGION_ALIGN - 1);
}

static void *queue_region(const struct vu_queue *q)
{
    const struct vblk_vu_dev *d = q->d;
    return d->inflight + q->index * vu_inflight_queue_bytes(d->inflight_qsize);
}

void vu_inflight_drop_plan(struct vu_queue *q)
{
    free(q->inf.plan);
    q->inf.plan = NULL;
    q->inf.nplan = 0;
}

void vu_inflight_release(struct vu_queue *q)
{
    vu_inflight_drop_plan(q);
    free(q->inf.slot);
    free(q->inf.by_id);
    free(q->inf.saved);
    free(q->inf.copy);
    memset(&q->inf, 0, sizeof(q->inf));
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

/* Stores @n heads of @list, sorted, as the resubmission plan. */
static int make_plan(struct vu_queue *q, struct pending *list, uint32_t n)
{
    qsort(list, n, sizeof(*list), by_counter);
    if (!n)
        return 0;
    q->inf.plan = malloc(sizeof(*q->inf.plan) * n);
    if (!q->inf.plan)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        q->inf.plan[i] = list[i].head;
    q->inf.nplan = n;
    return (int)n;
}

/* ---- split rings ---- */

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

static int split_prepare(struct vu_queue *q, struct vblk_vq_state *st)
{
    struct split_region *r = q->inf.region;
    uint16_t num = (uint16_t)q->num;
    /* A fresh region, one for another ring size, or a restart of a ring
     * this process drained itself: start clean. */
    if (q->tq.have_saved || r->version != REGION_VERSION || r->desc_num != num) {
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
    q->inf.counter = max_counter + 1;
    /* Every head fetched is either used or still in flight. */
    st->last_avail_idx = (uint16_t)(used + n);
    int rc = make_plan(q, list, n);
    free(list);
    return rc;
}

/* The front-end can rewrite the region at any time: indices come from the
 * ring (checked against our own ring size) or from private copies, never
 * from the region. */
static void on_started(void *opaque, const struct vblk_req *req)
{
    struct vu_queue *q = opaque;
    struct split_region *r = q->inf.region;
    uint16_t id = req->chain.id;
    if (id >= q->num)
        return;
    r->desc[id].counter = q->inf.counter++;
    STORE(&r->desc[id].inflight, 1);
}

static void on_done(void *opaque, const struct vblk_req *req)
{
    struct vu_queue *q = opaque;
    struct split_region *r = q->inf.region;
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
    struct split_region *r = q->inf.region;
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

/* ---- packed rings ---- */

#define NONE 0xffffu

/* Clears head entry @h's mark and puts its entries on the free list. */
static void pk_free(struct vu_queue *q, uint16_t h)
{
    struct pk_region *r = q->inf.region;
    struct vu_inflight_q *inf = &q->inf;
    STORE(&r->desc[h].inflight, 0);
    uint16_t last = inf->slot[h].last;
    inf->slot[last].next = inf->free_head;
    STORE(&r->desc[last].next, inf->free_head);
    inf->free_head = h;
    inf->nfree = (uint16_t)(inf->nfree + inf->slot[h].num);
    STORE(&r->free_head, h);
}

/* Records the used position (@idx, @wrap) reached by the used entry of
 * head entry @h (NONE: a request that was not tracked), freeing @h's
 * entries. The order is what a restart relies on: the used index first
 * (the update is then "in progress"), the in-flight mark, the free list,
 * and the old_ copies last (the update is complete). */
static void pk_record(struct vu_queue *q, uint16_t h, uint16_t idx, uint8_t wrap)
{
    struct pk_region *r = q->inf.region;
    STORE(&r->used_idx, idx);
    STORE(&r->used_wrap_counter, wrap);
    if (h != NONE)
        pk_free(q, h);
    STORE(&r->old_free_head, q->inf.free_head);
    STORE(&r->old_used_wrap_counter, wrap);
    STORE(&r->old_used_idx, idx);
}

static int pk_alloc(struct vu_queue *q, uint16_t num)
{
    q->inf.slot = malloc(sizeof(*q->inf.slot) * num);
    q->inf.by_id = calloc(num, sizeof(*q->inf.by_id));
    q->inf.saved = malloc(sizeof(*q->inf.saved) * num);
    q->inf.copy = malloc(sizeof(*q->inf.copy) * num);
    if (!q->inf.slot || !q->inf.by_id || !q->inf.saved || !q->inf.copy)
        return -ENOMEM;
    return 0;
}

/* Puts every entry not owned by a list in flight (@owner[i] != 0) on the
 * free list, privately and in the region. */
static void pk_rebuild_free(struct vu_queue *q, const uint16_t *owner)
{
    struct pk_region *r = q->inf.region;
    uint16_t num = (uint16_t)q->num, head = num, nfree = 0;
    for (uint16_t i = num; i-- > 0;) {
        if (owner && owner[i])
            continue;
        q->inf.slot[i].next = head;
        STORE(&r->desc[i].next, head);
        head = i;
        nfree++;
    }
    q->inf.free_head = head;
    q->inf.nfree = nfree;
    STORE(&r->free_head, head);
    STORE(&r->old_free_head, head);
}

static void pk_reset(struct vu_queue *q, const struct vblk_vq_state *st)
{
    struct pk_region *r = q->inf.region;
    uint16_t num = (uint16_t)q->num;
    STORE(&r->version, 0);
    memset(r->desc, 0, sizeof(r->desc[0]) * num);
    r->features = 0;
    r->desc_num = num;
    r->used_idx = r->old_used_idx = st->used_idx;
    r->used_wrap_counter = r->old_used_wrap_counter = st->used_wrap;
    pk_rebuild_free(q, NULL);
    STORE(&r->version, (uint16_t)REGION_VERSION);
}

/* Claims the @len entries of the list starting at @h for owner @h + 1.
 * Returns the last entry, or NONE (nothing claimed) if the list leaves the
 * region or crosses an entry already claimed. */
static uint16_t pk_claim(const struct pk_state *snap, uint16_t *owner, uint16_t num, uint16_t h,
                         uint16_t len)
{
    uint16_t e = h, k = 0;
    for (; k < len; k++) {
        if (e >= num || owner[e])
            break;
        owner[e] = (uint16_t)(h + 1);
        if (k + 1 == len)
            return e;
        e = snap[e].next;
    }
    /* Give back the @k entries claimed, along the same private path. */
    for (e = h; k-- > 0; e = snap[e].next)
        owner[e] = 0;
    return NONE;
}

static void pk_disown(const struct vu_inflight_q *inf, uint16_t *owner, uint16_t h)
{
    uint16_t e = h;
    for (uint16_t k = 0; k < inf->slot[h].num; k++, e = inf->slot[e].next)
        owner[e] = 0;
}

/* A restart over a region a previous back-end filled: recovers the ring
 * position into @st and plans the resubmissions. Returns their number,
 * -EINVAL if the region is not usable, or another negative errno. */
/* Recovery's view of the used entries the previous back-end wrote. */
struct used_scan {
    struct vu_inflight_q *inf;
    uint16_t *owner;
    uint16_t *fin; /* heads whose used entry is written, in ring order */
    uint16_t num;
    uint32_t nfin;
    bool known; /* peek_used(): the entry names a list in flight */
};

static uint16_t peek_used(void *opaque, uint16_t id)
{
    struct used_scan *sc = opaque;
    sc->known = id < sc->num && sc->inf->by_id[id];
    return 0;
}

/* A used entry for a list in flight: that list is done. */
static uint16_t claim_used(void *opaque, uint16_t id)
{
    struct used_scan *sc = opaque;
    struct vu_inflight_q *inf = sc->inf;
    if (id >= sc->num || !inf->by_id[id])
        return 0;
    uint16_t h = (uint16_t)(inf->by_id[id] - 1);
    inf->by_id[id] = 0;
    pk_disown(inf, sc->owner, h);
    sc->fin[sc->nfin++] = h;
    return inf->slot[h].num;
}

static int pk_recover(struct vu_queue *q, uint64_t desc_gpa, struct vblk_vq_state *st)
{
    struct pk_region *r = q->inf.region;
    struct vu_inflight_q *inf = &q->inf;
    uint16_t num = (uint16_t)q->num;
    uint16_t used = LOAD(&r->used_idx), old_used = LOAD(&r->old_used_idx);
    uint8_t wrap = LOAD(&r->used_wrap_counter), old_wrap = LOAD(&r->old_used_wrap_counter);
    if (used >= num || old_used >= num || wrap > 1 || old_wrap > 1)
        return -EINVAL;

    /* One private snapshot; nothing below reads the region again. */
    struct pk_state *snap = malloc(sizeof(*snap) * num);
    uint16_t *owner = calloc(num, sizeof(*owner));
    struct pending *list = malloc(sizeof(*list) * num);
    uint16_t *fin = malloc(sizeof(*fin) * num);
    int rc = -ENOMEM;
    if (!snap || !owner || !list || !fin)
        goto out;
    memcpy(snap, r->desc, sizeof(*snap) * num);

    /* The lists in flight: chains of distinct entries, each ending in a
     * buffer ID in range that no other list has. */
    uint32_t dropped = 0;
    for (uint16_t h = 0; h < num; h++) {
        inf->saved[h] =
            (struct vblk_packed_desc){snap[h].addr, snap[h].len, snap[h].id, snap[h].flags};
        inf->slot[h].next = snap[h].next;
    }
    for (uint16_t h = 0; h < num; h++) {
        if (snap[h].inflight != 1)
            continue;
        uint16_t len = snap[h].num;
        uint16_t last = len >= 1 && len <= num ? pk_claim(snap, owner, num, h, len) : NONE;
        if (last != NONE &&
            (snap[h].last != last || snap[last].id >= num || inf->by_id[snap[last].id])) {
            inf->slot[h].num = len;
            pk_disown(inf, owner, h);
            last = NONE;
        }
        if (last == NONE) {
            dropped++;
            continue;
        }
        inf->slot[h].num = len;
        inf->slot[h].last = last;
        inf->by_id[snap[last].id] = (uint16_t)(h + 1);
    }

    /* Where the used entries end. An update left in progress: the used
     * entry at old_used_idx was written before it started, and the ring
     * tells that entry's wrap counter even if the driver took it since. */
    uint16_t pos = old_used;
    uint8_t pwrap = old_wrap;
    struct used_scan sc = {inf, owner, fin, num, 0, false};
    if (used != old_used || wrap != old_wrap) {
        uint8_t lap = 2;
        rc = vblk_vq_packed_scan_used(&q->mem, desc_gpa, num, &pos, &lap, peek_used, &sc);
        if (rc < 0)
            goto out;
        pwrap = lap;
        if (!sc.known) {
            /* Its mark was cleared, so the used index was recorded. */
            pwrap = used > old_used ? pwrap : pwrap ^ 1;
            pos = used;
        }
    }
    /* Used entries written but not (completely) recorded yet. */
    uint16_t start = pos;
    uint8_t start_wrap = pwrap;
    rc = vblk_vq_packed_scan_used(&q->mem, desc_gpa, num, &pos, &pwrap, claim_used, &sc);
    if (rc < 0)
        goto out;

    /* What remains is in flight: fetched = used + in flight. */
    uint16_t avail = pos;
    uint8_t awrap = pwrap;
    uint64_t max_counter = 0;
    uint32_t n = 0;
    for (uint16_t id = 0; id < num; id++) {
        if (!inf->by_id[id])
            continue;
        uint16_t h = inf->by_id[id] - 1;
        list[n].head = h;
        list[n].counter = snap[h].counter;
        if (list[n].counter > max_counter)
            max_counter = list[n].counter;
        n++;
        vblk_ring_advance(num, &avail, &awrap, inf->slot[h].num);
    }

    /* Bring the region up to date in the order the hooks use, so that a
     * crash in between is recovered the same way. */
    for (uint32_t i = 0; i < sc.nfin; i++) {
        vblk_ring_advance(num, &start, &start_wrap, inf->slot[fin[i]].num);
        STORE(&r->used_idx, start);
        STORE(&r->used_wrap_counter, start_wrap);
        STORE(&r->desc[fin[i]].inflight, 0);
        STORE(&r->old_used_wrap_counter, start_wrap);
        STORE(&r->old_used_idx, start);
    }
    for (uint16_t h = 0; h < num; h++)
        if (snap[h].inflight && !owner[h])
            STORE(&r->desc[h].inflight, 0);
    STORE(&r->used_idx, pos);
    STORE(&r->used_wrap_counter, pwrap);
    STORE(&r->old_used_wrap_counter, pwrap);
    STORE(&r->old_used_idx, pos);
    pk_rebuild_free(q, owner);

    /* The resubmitted requests bind their entries again (see pk_started). */
    memset(inf->by_id, 0, sizeof(*inf->by_id) * num);
    inf->counter = max_counter + 1;
    st->used_idx = pos;
    st->used_wrap = pwrap;
    st->last_avail_idx = avail;
    st->avail_wrap = awrap;
    if (dropped)
        vu_log(q->d, VBLK_LOG_WARN,
               "queue %u: %u inconsistent lists in the in-flight region not resubmitted", q->index,
               dropped);
    rc = make_plan(q, list, n);
out:
    free(snap);
    free(owner);
    free(list);
    free(fin);
    return rc;
}

static int packed_prepare(struct vu_queue *q, uint64_t desc_gpa, struct vblk_vq_state *st)
{
    struct pk_region *r = q->inf.region;
    uint16_t num = (uint16_t)q->num;
    if (pk_alloc(q, num) < 0)
        return -ENOMEM;
    /* A fresh region, one for another ring size, or a restart of a ring
     * this process drained itself: start clean from where the front-end
     * (or this process) says the ring is. */
    if (!q->tq.have_saved && LOAD(&r->version) == REGION_VERSION && LOAD(&r->desc_num) == num) {
        struct vblk_vq_state set = *st;
        int rc = pk_recover(q, desc_gpa, st);
        if (rc >= 0) {
            vu_log(q->d, VBLK_LOG_INFO,
                   "queue %u: packed ring position from the in-flight region: avail %u/%u used "
                   "%u/%u (front-end: avail %u/%u used %u/%u)",
                   q->index, st->last_avail_idx, st->avail_wrap, st->used_idx, st->used_wrap,
                   set.last_avail_idx, set.avail_wrap, set.used_idx, set.used_wrap);
            return rc;
        }
        if (rc != -EINVAL)
            return rc;
        vu_log(q->d, VBLK_LOG_WARN, "queue %u: in-flight region unusable; starting it over",
               q->index);
        *st = set;
        memset(q->inf.by_id, 0, sizeof(*q->inf.by_id) * num);
    }
    pk_reset(q, st);
    return 0;
}

static void pk_warn(struct vu_queue *q, const char *what)
{
    if (q->inf.warned)
        return;
    q->inf.warned = true;
    vu_log(q->d, VBLK_LOG_WARN, "queue %u: a request is not tracked in flight: %s", q->index,
           what);
}

/* A list was popped (or resubmitted): copy it into free entries of the
 * region. Everything comes from the ring or from private copies. */
static void pk_started(void *opaque, const struct vblk_req *req)
{
    struct vu_queue *q = opaque;
    struct vu_inflight_q *inf = &q->inf;
    struct pk_region *r = inf->region;
    uint16_t id = req->chain.id, n = req->chain.ndescs;
    if (inf->resub_head) {
        /* A resubmitted list keeps the entries it has. */
        uint16_t h = (uint16_t)(inf->resub_head - 1);
        inf->resub_head = 0;
        if (id < q->num && !inf->by_id[id]) {
            inf->by_id[id] = (uint16_t)(h + 1);
        } else {
            pk_free(q, h);
            STORE(&r->old_free_head, inf->free_head);
            pk_warn(q, "buffer ID out of range or in use");
        }
        return;
    }
    if (id >= q->num || inf->by_id[id]) {
        pk_warn(q, "buffer ID out of range or in use");
        return;
    }
    if (n == 0 || n > inf->nfree) {
        pk_warn(q, "more descriptors in flight than the ring holds");
        return;
    }
    struct vblk_packed_desc *copy = inf->copy;
    uint16_t pos;
    uint8_t wrap;
    vblk_req_ring_pos(req, &pos, &wrap);
    if (vblk_vq_copy_descs(vblk_queue_vq(&q->tq.q), pos, n, copy) < 0 ||
        copy[n - 1].id != id) {
        pk_warn(q, "the list changed under the device");
        return;
    }
    uint16_t h = inf->free_head, e = h, last = h;
    for (uint16_t k = 0; k < n; k++) {
        struct pk_state *s = &r->desc[e];
        s->addr = copy[k].addr;
        s->len = copy[k].len;
        s->id = copy[k].id;
        s->flags = copy[k].flags;
        last = e;
        e = inf->slot[e].next;
    }
    inf->free_head = e;
    inf->nfree = (uint16_t)(inf->nfree - n);
    inf->slot[h].num = n;
    inf->slot[h].last = last;
    inf->by_id[id] = (uint16_t)(h + 1);
    r->desc[h].num = n;
    r->desc[h].last = last;
    r->desc[h].counter = inf->counter++;
    STORE(&r->desc[h].inflight, 1);
    STORE(&r->free_head, e);
    STORE(&r->old_free_head, e);
}

/* Its used entry is in the ring: record the new used position. */
static void pk_done(void *opaque, const struct vblk_req *req)
{
    struct vu_queue *q = opaque;
    struct vu_inflight_q *inf = &q->inf;
    struct vblk_vq_state st;
    vblk_vq_get_state(vblk_queue_vq(&q->tq.q), &st);
    uint16_t id = req->chain.id, h = NONE;
    if (id < q->num && inf->by_id[id]) {
        h = (uint16_t)(inf->by_id[id] - 1);
        inf->by_id[id] = 0;
    }
    pk_record(q, h, st.used_idx, st.used_wrap);
}

static const struct vblk_queue_hooks packed_hooks = {
    .started = pk_started,
    .done = pk_done,
};

/* ---- both ---- */

int vu_inflight_prepare(struct vu_queue *q, uint64_t desc_gpa, struct vblk_vq_state *st)
{
    struct vblk_vu_dev *d = q->d;
    vu_inflight_release(q);
    q->inf.counter = 1;
    if (!d->inflight || q->index >= d->inflight_nq || q->num > d->inflight_qsize)
        return 0;
    q->inf.region = queue_region(q);
    int rc = vu_packed(d) ? packed_prepare(q, desc_gpa, st) : split_prepare(q, st);
    if (rc < 0)
        vu_inflight_release(q);
    return rc;
}

int vu_inflight_resubmit(struct vu_queue *q)
{
    struct vu_inflight_q *inf = &q->inf;
    bool packed = vu_packed(q->d);
    int done = 0;
    for (uint32_t i = 0; i < inf->nplan; i++) {
        uint16_t h = inf->plan[i];
        int rc;
        if (packed) {
            /* Gather the list from the private snapshot. */
            uint16_t e = h, n = inf->slot[h].num;
            for (uint16_t k = 0; k < n; k++, e = inf->slot[e].next)
                inf->copy[k] = inf->saved[e];
            inf->resub_head = (uint32_t)h + 1;
            rc = vblk_queue_resubmit_saved(&q->tq.q, inf->copy, n);
            inf->resub_head = 0;
        } else {
            rc = vblk_queue_resubmit(&q->tq.q, h, 0);
        }
        if (rc < 0) {
            vu_log(q->d, VBLK_LOG_WARN, "queue %u: resubmitting %s %u failed: %d", q->index,
                   packed ? "in-flight entry" : "head", h, rc);
            break;
        }
        done++;
    }
    vu_inflight_drop_plan(q);
    return done;
}

const struct vblk_queue_hooks *vu_inflight_hooks(struct vu_queue *q)
{
    if (!q->inf.region)
        return NULL;
    return vu_packed(q->d) ? &packed_hooks : &split_hooks;
}
