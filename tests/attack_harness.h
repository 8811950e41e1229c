/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the attack catalogue (test_attacks.c): a hostile driver that
 * writes ring memory by hand, a device over a RAM disk that ASan can watch,
 * and a hostile vhost-user front-end that speaks through the byte-buffer
 * entry point vblk_vu_dev_handle_msg(). Everything goes through the public
 * API; the vhost-user wire layouts are written out here from the protocol
 * specification. Include after cmocka.h.
 */
#ifndef VBLK_TEST_ATTACK_HARNESS_H
#define VBLK_TEST_ATTACK_HARNESS_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fd_count.h"
#include "virtioblk/advanced_msg.h"
#include "virtioblk/virtioblk.h"
#include "ram_harness.h"

/* ---- a ring the attacker writes by hand ---- */

/* Layout inside a ring area: descriptors at +0, the driver area (split:
 * available ring; packed: driver event structure) at +0x1000, the device
 * area (used ring / device event structure) at +0x2000. */
#define ATK_DRIVER_OFF 0x1000u
#define ATK_DEVICE_OFF 0x2000u
#define ATK_RING_BYTES 0x3000u
#define ATK_RING_MAX   64u /* largest queue size the helpers handle */

struct atk_ring {
    uint8_t *host;             /* host view of the ring area */
    uint64_t gpa;              /* its driver address */
    uint16_t size;             /* queue size */
    bool packed;               /* packed layout */
    uint16_t next;             /* split: next descriptor to fill; packed: next slot */
    uint16_t avail;            /* split: avail->idx shadow */
    uint8_t wrap;              /* packed: driver wrap counter */
    uint16_t used;             /* split: used entries seen; packed: next used slot */
    uint8_t uwrap;             /* packed: used wrap counter */
    uint16_t id;               /* packed: next buffer ID */
    uint16_t nd[ATK_RING_MAX]; /* packed: slots used by each buffer ID */
};

/* One buffer of a chain: driver address, length, VBLK_DESC_F_* flags.
 * NEXT is added by atk_post() between buffers. */
struct atk_seg {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
};

#define ATK_W VBLK_DESC_F_WRITE

static inline void atk_ring_init(struct atk_ring *r, void *host, uint64_t gpa, uint16_t size,
                                 bool packed)
{
    assert_true(size <= ATK_RING_MAX);
    memset(r, 0, sizeof(*r));
    r->host = host;
    r->gpa = gpa;
    r->size = size;
    r->packed = packed;
    r->wrap = r->uwrap = 1;
    memset(host, 0, ATK_RING_BYTES);
}

static inline struct vblk_vq_addrs atk_ring_addrs(const struct atk_ring *r)
{
    return (struct vblk_vq_addrs){r->gpa, r->gpa + ATK_DRIVER_OFF, r->gpa + ATK_DEVICE_OFF};
}

static inline struct vblk_split_desc *atk_split_desc(struct atk_ring *r)
{
    return (struct vblk_split_desc *)(void *)r->host;
}

static inline struct vblk_split_avail *atk_split_avail(struct atk_ring *r)
{
    return (struct vblk_split_avail *)(void *)(r->host + ATK_DRIVER_OFF);
}

static inline struct vblk_split_used *atk_split_used(struct atk_ring *r)
{
    return (struct vblk_split_used *)(void *)(r->host + ATK_DEVICE_OFF);
}

static inline struct vblk_packed_desc *atk_packed_desc(struct atk_ring *r)
{
    return (struct vblk_packed_desc *)(void *)r->host;
}

/* Split: writes descriptor @i verbatim. */
static inline void atk_split_set(struct atk_ring *r, uint16_t i, uint64_t addr, uint32_t len,
                                 uint16_t flags, uint16_t next)
{
    atk_split_desc(r)[i] = (struct vblk_split_desc){addr, len, flags, next};
}

/* Split: makes head @head available (publishes avail->idx). */
static inline void atk_split_publish(struct atk_ring *r, uint16_t head)
{
    struct vblk_split_avail *a = atk_split_avail(r);
    a->ring[r->avail % r->size] = head;
    r->avail++;
    __atomic_store_n(&a->idx, r->avail, __ATOMIC_RELEASE);
}

/* Packed: writes slot @i verbatim. */
static inline void atk_packed_set(struct atk_ring *r, uint16_t i, uint64_t addr, uint32_t len,
                                  uint16_t id, uint16_t flags)
{
    struct vblk_packed_desc *d = &atk_packed_desc(r)[i];
    d->addr = addr;
    d->len = len;
    d->id = id;
    __atomic_store_n(&d->flags, flags, __ATOMIC_RELEASE);
}

/* Posts @n buffers as one chain, the way a driver does: split descriptors
 * from r->next on (wrapping), packed slots from r->next on with the current
 * wrap counter, head made available last. Returns the head index (split)
 * or the buffer ID (packed). */
static inline uint16_t atk_post(struct atk_ring *r, const struct atk_seg *s, unsigned n)
{
    if (!r->packed) {
        uint16_t head = r->next;
        for (unsigned i = 0; i < n; i++) {
            uint16_t d = r->next;
            r->next = (uint16_t)((r->next + 1) % r->size);
            uint16_t more = i + 1 < n ? VBLK_DESC_F_NEXT : 0;
            atk_split_set(r, d, s[i].addr, s[i].len, (uint16_t)(s[i].flags | more), r->next);
        }
        atk_split_publish(r, head);
        return head;
    }
    uint16_t id = r->id;
    r->id = (uint16_t)((r->id + 1) % r->size);
    r->nd[id] = (uint16_t)n;
    uint16_t head = r->next;
    uint16_t head_flags = 0;
    for (unsigned i = 0; i < n; i++) {
        uint16_t f = (uint16_t)(s[i].flags | vblk_packed_avail_bits(r->wrap) |
                                (i + 1 < n ? VBLK_DESC_F_NEXT : 0));
        struct vblk_packed_desc *d = &atk_packed_desc(r)[r->next];
        d->addr = s[i].addr;
        d->len = s[i].len;
        d->id = id;
        if (i == 0)
            head_flags = f;
        else
            __atomic_store_n(&d->flags, f, __ATOMIC_RELAXED);
        if (++r->next == r->size) {
            r->next = 0;
            r->wrap ^= 1;
        }
    }
    __atomic_store_n(&atk_packed_desc(r)[head].flags, head_flags, __ATOMIC_RELEASE);
    return id;
}

/* Takes the next used entry. Returns 1 (id and len filled) or 0. */
static inline int atk_used(struct atk_ring *r, uint16_t *id, uint32_t *len)
{
    if (!r->packed) {
        struct vblk_split_used *u = atk_split_used(r);
        if (__atomic_load_n(&u->idx, __ATOMIC_ACQUIRE) == r->used)
            return 0;
        struct vblk_split_used_elem *e = &u->ring[r->used % r->size];
        if (id)
            *id = (uint16_t)e->id;
        if (len)
            *len = e->len;
        r->used++;
        return 1;
    }
    struct vblk_packed_desc *d = &atk_packed_desc(r)[r->used];
    uint16_t f = __atomic_load_n(&d->flags, __ATOMIC_ACQUIRE);
    bool avail = (f & VBLK_DESC_F_AVAIL) != 0, used = (f & VBLK_DESC_F_USED) != 0;
    if (avail != used || used != (r->uwrap != 0))
        return 0;
    uint16_t bid = d->id;
    if (id)
        *id = bid;
    if (len)
        *len = (f & VBLK_DESC_F_WRITE) ? d->len : 0;
    /* virtio 1.2 2.8.6: the entry stands for the whole chain. */
    uint16_t skip = bid < r->size && r->nd[bid] ? r->nd[bid] : 1;
    r->used = (uint16_t)(r->used + skip);
    if (r->used >= r->size) {
        r->used = (uint16_t)(r->used - r->size);
        r->uwrap ^= 1;
    }
    return 1;
}

/* Posts one descriptor that refers to an indirect table at @table (@len
 * bytes), with @extra flags besides INDIRECT. */
static inline void atk_post_indirect(struct atk_ring *r, uint64_t table, uint32_t len,
                                     uint16_t extra)
{
    uint16_t flags = (uint16_t)(VBLK_DESC_F_INDIRECT | extra);
    if (!r->packed) {
        uint16_t d = r->next;
        r->next = (uint16_t)((r->next + 1) % r->size);
        atk_split_set(r, d, table, len, flags, r->next);
        atk_split_publish(r, d);
        return;
    }
    uint16_t id = r->id;
    r->id = (uint16_t)((r->id + 1) % r->size);
    r->nd[id] = 1;
    atk_packed_set(r, r->next, table, len, id, (uint16_t)(flags | vblk_packed_avail_bits(r->wrap)));
    if (++r->next == r->size) {
        r->next = 0;
        r->wrap ^= 1;
    }
}

/* ---- a RAM disk backend that ASan can watch ---- */

#define ATK_SECTORS 256u
#define ATK_DISK    (ATK_SECTORS * 512u)
#define ATK_HELD    64u

struct atk_disk {
    struct vblk_backend_ops ops;
    uint8_t *disk; /* its own heap block: an overrun is an ASan report */
    unsigned nsubmit;
    bool hold; /* keep requests for the test to complete */
    unsigned nheld;
    struct vblk_req *held[ATK_HELD];
    struct vblk_req last; /* copy of the last request submitted */
};

/* No range checks of its own: an overrun of b->disk is an ASan report. */
static inline uint8_t atk_disk_io(struct atk_disk *b, struct vblk_req *r)
{
    return ram_disk_io(b->disk, ATK_SECTORS, false, r);
}

static inline void atk_disk_submit(void *be, void *qctx, struct vblk_req *r)
{
    struct atk_disk *b = be;
    (void)qctx;
    b->nsubmit++;
    b->last = *r;
    if (b->hold) {
        assert_true(b->nheld < ATK_HELD);
        b->held[b->nheld++] = r;
        return;
    }
    vblk_req_complete(r, atk_disk_io(b, r));
}

static inline int atk_disk_start(void *be, uint16_t qidx, void **qctx)
{
    (void)qidx;
    *qctx = be;
    return 0;
}

static inline void atk_disk_init(struct atk_disk *b, struct vblk_backend *out)
{
    memset(b, 0, sizeof(*b));
    b->ops = (struct vblk_backend_ops){
        .version = VBLK_BACKEND_OPS_V1,
        .caps = VBLK_BACKEND_CAP_FLUSH | VBLK_BACKEND_CAP_DISCARD | VBLK_BACKEND_CAP_WRITE_ZEROES |
                VBLK_BACKEND_CAP_SECURE_ERASE,
        .name = "attack-disk",
        .queue_start = atk_disk_start,
        .submit = atk_disk_submit,
    };
    b->disk = malloc(ATK_DISK);
    assert_non_null(b->disk);
    for (unsigned i = 0; i < ATK_DISK; i++)
        b->disk[i] = (uint8_t)(i * 13 + i / 512);
    *out = (struct vblk_backend){&b->ops, b, ATK_DISK};
}

/* Completes the held requests on the queue thread (the test's). */
static inline void atk_disk_release(struct atk_disk *b, uint8_t status)
{
    for (unsigned i = 0; i < b->nheld; i++)
        vblk_req_complete(b->held[i], status == VBLK_S_OK ? atk_disk_io(b, b->held[i]) : status);
    b->nheld = 0;
}

/* ---- the core under attack: one queue over hand-written guest memory ---- */

#define ATK_GPA     0x100000000ull /* guest memory starts at 4 GiB */
#define ATK_MEM_LEN (1u << 20)
#define ATK_QSIZE   16u
#define ATK_DATA    0x4000u /* first byte of buffer memory */

struct atk {
    struct vblk_mem mem;
    struct guest_ram ram; /* [ATK_GPA, ATK_GPA + ATK_MEM_LEN) */
    struct atk_ring ring;
    struct atk_disk bd;
    struct vblk_backend be;
    struct vblk_dev_params p;
    struct vblk_dev dev;
    uint64_t drop; /* feature bits the driver does not accept */
    struct vblk_queue q;
    void *pool;
    bool started;
    unsigned notifies;
};

static inline void atk_on_notify(void *opaque)
{
    ((struct atk *)opaque)->notifies++;
}

/* A device whose driver will use a split or packed ring; not started yet,
 * so a case can change a->p or a->drop first. */
static inline struct atk *atk_new(bool packed)
{
    struct atk *a = calloc(1, sizeof(*a));
    assert_non_null(a);
    a->ram.host = aligned_alloc(4096, ATK_MEM_LEN);
    assert_non_null(a->ram.host);
    memset(a->ram.host, 0, ATK_MEM_LEN);
    a->ram.gpa = ATK_GPA;
    a->ram.len = ATK_MEM_LEN;
    a->ram.bump = ATK_DATA;
    vblk_mem_init(&a->mem);
    assert_int_equal(vblk_mem_add(&a->mem, ATK_GPA, ATK_MEM_LEN, a->ram.host, NULL), 0);
    atk_ring_init(&a->ring, a->ram.host, ATK_GPA, ATK_QSIZE, packed);
    atk_disk_init(&a->bd, &a->be);
    vblk_dev_params_default(&a->p, ATK_DISK);
    a->p.seg_max = 8;
    a->p.max_discard_sectors = 64;
    a->p.max_discard_seg = 2;
    a->p.max_write_zeroes_sectors = 64;
    a->p.max_write_zeroes_seg = 2;
    memcpy(a->p.serial, "ATTACK-SERIAL-000001", VBLK_ID_BYTES);
    a->drop = VBLK_BIT(VBLK_F_IN_ORDER);
    if (!packed)
        a->drop |= VBLK_BIT(VBLK_F_RING_PACKED);
    return a;
}

static inline struct vblk_queue_params atk_qparams(struct atk *a)
{
    return (struct vblk_queue_params){
        .index = 0,
        .size = a->ring.size,
        .addrs = atk_ring_addrs(&a->ring),
        .notify = atk_on_notify,
        .notify_opaque = a,
    };
}

/* Negotiates and starts queue 0 over a->ring. */
static inline void atk_start(struct atk *a)
{
    assert_int_equal(vblk_dev_init(&a->dev, &a->p, &a->be), 0);
    assert_int_equal(vblk_dev_set_features(&a->dev, vblk_dev_features(&a->dev) & ~a->drop), 0);
    size_t len = vblk_queue_mem_size(&a->dev, a->ring.size);
    a->pool = aligned_alloc(16, (len + 15) & ~(size_t)15);
    assert_non_null(a->pool);
    struct vblk_queue_params qp = atk_qparams(a);
    assert_int_equal(vblk_queue_init(&a->q, &a->dev, &a->mem, &qp, a->pool, len), 0);
    a->started = true;
}

static inline struct atk *atk_up(bool packed)
{
    struct atk *a = atk_new(packed);
    atk_start(a);
    return a;
}

/* Releases everything; whatever the driver did, no request may be left in
 * flight once the backend has finished its work. */
static inline void atk_free(struct atk *a)
{
    if (a->started) {
        atk_disk_release(&a->bd, VBLK_S_IOERR);
        (void)vblk_queue_process(&a->q, 0);
        vblk_queue_stop(&a->q);
        assert_int_equal(vblk_queue_inflight(&a->q), 0);
        assert_int_equal(vblk_queue_destroy(&a->q), 0);
    }
    free(a->pool);
    free(a->bd.disk);
    free(a->ram.host);
    free(a);
}

/* Guest memory for buffers: 16-byte aligned, filled with @fill. */
static inline uint64_t atk_galloc(struct atk *a, size_t len, int fill)
{
    return guest_alloc(&a->ram, len, fill);
}

static inline void *atk_host(struct atk *a, uint64_t gpa)
{
    return guest_host(&a->ram, gpa);
}

static inline uint64_t atk_hdr(struct atk *a, uint32_t type, uint64_t sector)
{
    return guest_hdr(&a->ram, type, sector);
}

/* A status byte, preset to a value no device writes. */
static inline uint64_t atk_status(struct atk *a)
{
    return atk_galloc(a, 1, 0xee);
}

static inline uint8_t atk_status_of(struct atk *a, uint64_t st)
{
    return *(uint8_t *)atk_host(a, st);
}

/* Posts [header][data if len][status]; returns the status byte's address. */
static inline uint64_t atk_rq(struct atk *a, uint32_t type, uint64_t sector, uint64_t data,
                              uint32_t len, uint16_t dflags)
{
    uint64_t st = atk_status(a);
    struct atk_seg s[3] = {{atk_hdr(a, type, sector), 16, 0}};
    unsigned n = 1;
    if (len)
        s[n++] = (struct atk_seg){data, len, dflags};
    s[n++] = (struct atk_seg){st, 1, ATK_W};
    atk_post(&a->ring, s, n);
    return st;
}

static inline int atk_process(struct atk *a)
{
    return vblk_queue_process(&a->q, 0);
}

/* Outcome: the request completed with status @want, status-only length. */
static inline void atk_expect_status(struct atk *a, uint64_t st, uint8_t want)
{
    assert_true(atk_process(a) >= 0);
    assert_false(vblk_queue_broken(&a->q));
    uint32_t len = 0;
    assert_int_equal(atk_used(&a->ring, NULL, &len), 1);
    assert_int_equal(atk_status_of(a, st), want);
    if (want != VBLK_S_OK)
        assert_int_equal(len, 1);
}

/* Outcome: the queue is broken (DEVICE_NEEDS_RESET), nothing was used or
 * submitted, and it stays broken. */
static inline void atk_expect_broken(struct atk *a)
{
    unsigned before = a->bd.nsubmit;
    assert_int_equal(atk_process(a), -EIO);
    assert_true(vblk_queue_broken(&a->q));
    assert_int_equal(vblk_vq_stats(vblk_queue_vq(&a->q))->broken, 1);
    assert_int_equal(atk_used(&a->ring, NULL, NULL), 0);
    assert_int_equal(a->bd.nsubmit, before);
    assert_int_equal(atk_process(a), -EIO);
}

/* ---- a hostile vhost-user front-end over the byte-buffer entry point ---- */

/* Request codes and payload layouts from the vhost-user specification. */
enum {
    ATK_VU_GET_FEATURES = 1,
    ATK_VU_SET_FEATURES = 2,
    ATK_VU_SET_OWNER = 3,
    ATK_VU_SET_MEM_TABLE = 5,
    ATK_VU_SET_LOG_BASE = 6,
    ATK_VU_SET_VRING_NUM = 8,
    ATK_VU_SET_VRING_ADDR = 9,
    ATK_VU_SET_VRING_BASE = 10,
    ATK_VU_GET_VRING_BASE = 11,
    ATK_VU_SET_VRING_KICK = 12,
    ATK_VU_SET_VRING_CALL = 13,
    ATK_VU_SET_VRING_ERR = 14,
    ATK_VU_GET_PROTOCOL_FEATURES = 15,
    ATK_VU_SET_PROTOCOL_FEATURES = 16,
    ATK_VU_SET_VRING_ENABLE = 18,
    ATK_VU_SET_CONFIG = 25,
    ATK_VU_SET_INFLIGHT_FD = 32,
    ATK_VU_ADD_MEM_REG = 37,
    ATK_VU_REM_MEM_REG = 38,
    ATK_VU_GET_STATUS = 40,
};

#define ATK_VU_VERSION    1u
#define ATK_VU_REPLY      (1u << 2)
#define ATK_VU_NEED_REPLY (1u << 3)
#define ATK_VU_NOFD       (1u << 8)

struct atk_vu_hdr {
    uint32_t request, flags, size;
};
struct atk_vu_state {
    uint32_t index, num;
};
struct atk_vu_addr {
    uint32_t index, flags;
    uint64_t desc, used, avail, log;
};
struct atk_vu_region {
    uint64_t gpa, size, uaddr, mmap_offset;
};
struct atk_vu_table {
    uint32_t nregions, padding;
    struct atk_vu_region r[8];
};
struct atk_vu_single {
    uint64_t padding;
    struct atk_vu_region r;
};
struct atk_vu_log {
    uint64_t size, offset;
};
struct atk_vu_config {
    uint32_t offset, size, flags;
    uint8_t data[256];
};
struct atk_vu_inflight {
    uint64_t mmap_size, mmap_offset;
    uint16_t num_queues, queue_size;
    uint32_t pad;
};

#define ATK_VU_GPA   0x40000000ull     /* guest-physical base */
#define ATK_VU_UA    0x7f0000000000ull /* the front-end's user address of it */
#define ATK_VU_MEM   (1u << 20)
#define ATK_VU_QSIZE 16u
#define ATK_VU_NQ    2u

struct atk_vu {
    int fds_before;
    struct vblk_backend be;
    struct atk_disk *bd; /* when the case brought its own backend */
    struct vblk_vu_dev *d;
    int memfd;
    uint8_t *mem; /* guest memory, shared with the device */
    struct atk_ring ring;
    int kick, call, err;
    struct vblk_vu_reply rep;
    uint64_t virtio_features; /* accepted by SET_FEATURES */
};

/* A device with ATK_VU_NQ queues over the memory backend (or @be), and
 * guest memory in a memfd. */
static inline struct atk_vu *atk_vu_new(const struct vblk_backend *be)
{
    struct atk_vu *v = calloc(1, sizeof(*v));
    assert_non_null(v);
    v->fds_before = count_fds();
    if (be)
        v->be = *be;
    else
        assert_int_equal(vblk_backend_memory_create(ATK_DISK, &v->be), 0);
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, ATK_DISK);
    p.num_queues = ATK_VU_NQ;
    p.queue_size = 64;
    assert_int_equal(vblk_vu_dev_create(&p, &v->be, NULL, &v->d), 0);
    v->memfd = memfd_create("atk-guest", MFD_CLOEXEC);
    assert_true(v->memfd >= 0);
    assert_int_equal(ftruncate(v->memfd, ATK_VU_MEM), 0);
    v->mem = mmap(NULL, ATK_VU_MEM, PROT_READ | PROT_WRITE, MAP_SHARED, v->memfd, 0);
    assert_true(v->mem != MAP_FAILED);
    v->kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    v->call = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    v->err = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(v->kick >= 0 && v->call >= 0 && v->err >= 0);
    v->rep.fd = -1;
    return v;
}

/* Frees everything; no fd the front-end ever sent may remain open. */
static inline void atk_vu_free(struct atk_vu *v, bool own_backend)
{
    vblk_vu_dev_destroy(v->d);
    if (!own_backend)
        vblk_backend_destroy(&v->be);
    munmap(v->mem, ATK_VU_MEM);
    close(v->memfd);
    close(v->kick);
    close(v->call);
    close(v->err);
    if (v->rep.fd >= 0)
        close(v->rep.fd);
    int before = v->fds_before;
    free(v);
    assert_int_equal(count_fds(), before);
}

/* Hands one raw message to the device (the device owns the fds after). */
static inline int atk_vu_raw(struct atk_vu *v, const void *buf, size_t len, const int *fds,
                             unsigned nfds)
{
    if (v->rep.fd >= 0)
        close(v->rep.fd);
    memset(&v->rep, 0, sizeof(v->rep));
    v->rep.fd = -1;
    return vblk_vu_dev_handle_msg(v->d, buf, len, fds, nfds, &v->rep);
}

/* Sends request @req with NEED_REPLY and @size payload bytes; every fd in
 * @fds is duplicated first, so the caller keeps its own. Returns what the
 * device returned (0: handled, -EPROTO: it wants the connection closed). */
static inline int atk_vu_send(struct atk_vu *v, uint32_t req, uint32_t flags, const void *payload,
                              uint32_t size, const int *fds, unsigned nfds)
{
    uint8_t buf[VBLK_VU_MAX_MSG + 64];
    struct atk_vu_hdr h = {req, ATK_VU_VERSION | flags, size};
    assert_true(size <= sizeof(buf) - sizeof(h));
    memcpy(buf, &h, sizeof(h));
    if (size)
        memcpy(buf + sizeof(h), payload, size);
    int dups[16];
    assert_true(nfds <= 16);
    for (unsigned i = 0; i < nfds; i++) {
        dups[i] = dup(fds[i]);
        assert_true(dups[i] >= 0);
    }
    return atk_vu_raw(v, buf, sizeof(h) + size, dups, nfds);
}

/* The u64 in the last reply (the REPLY_ACK value, or a GET answer). */
static inline uint64_t atk_vu_u64(struct atk_vu *v)
{
    struct atk_vu_hdr h;
    assert_int_equal(v->rep.len, sizeof(h) + 8);
    memcpy(&h, v->rep.buf, sizeof(h));
    assert_int_equal(h.flags, ATK_VU_VERSION | ATK_VU_REPLY);
    uint64_t x;
    memcpy(&x, v->rep.buf + sizeof(h), 8);
    return x;
}

/* Outcome: accepted (REPLY_ACK 0). */
static inline void atk_vu_ok(struct atk_vu *v, uint32_t req, const void *payload, uint32_t size,
                             const int *fds, unsigned nfds)
{
    assert_int_equal(atk_vu_send(v, req, ATK_VU_NEED_REPLY, payload, size, fds, nfds), 0);
    assert_int_equal(atk_vu_u64(v), 0);
}

/* Outcome: an error reply (REPLY_ACK non-zero); the connection goes on. */
static inline void atk_vu_refused(struct atk_vu *v, uint32_t req, const void *payload,
                                  uint32_t size, const int *fds, unsigned nfds)
{
    assert_int_equal(atk_vu_send(v, req, ATK_VU_NEED_REPLY, payload, size, fds, nfds), 0);
    assert_int_not_equal(atk_vu_u64(v), 0);
}

static inline uint64_t atk_vu_get(struct atk_vu *v, uint32_t req)
{
    assert_int_equal(atk_vu_send(v, req, 0, NULL, 0, NULL, 0), 0);
    return atk_vu_u64(v);
}

/* SET_OWNER, every protocol feature offered, the virtio features offered
 * (split or packed). */
static inline void atk_vu_negotiate(struct atk_vu *v, bool packed)
{
    atk_vu_ok(v, ATK_VU_SET_OWNER, NULL, 0, NULL, 0);
    uint64_t feat = atk_vu_get(v, ATK_VU_GET_FEATURES);
    uint64_t proto = atk_vu_get(v, ATK_VU_GET_PROTOCOL_FEATURES);
    atk_vu_ok(v, ATK_VU_SET_PROTOCOL_FEATURES, &proto, 8, NULL, 0);
    feat &= ~VBLK_BIT(VBLK_F_IN_ORDER);
    if (!packed)
        feat &= ~VBLK_BIT(VBLK_F_RING_PACKED);
    feat &= ~VBLK_BIT(VBLK_VU_F_LOG_ALL);
    atk_vu_ok(v, ATK_VU_SET_FEATURES, &feat, 8, NULL, 0);
    v->virtio_features = feat;
}

static inline void atk_vu_mem_table(struct atk_vu *v)
{
    struct atk_vu_table t = {.nregions = 1};
    t.r[0] = (struct atk_vu_region){ATK_VU_GPA, ATK_VU_MEM, ATK_VU_UA, 0};
    atk_vu_ok(v, ATK_VU_SET_MEM_TABLE, &t, 8 + 32, &v->memfd, 1);
}

/* Configures queue 0 over a hand-written ring at the start of guest memory
 * (one ring area), up to but not including SET_VRING_KICK. */
static inline void atk_vu_ring_setup(struct atk_vu *v, bool packed, uint32_t base)
{
    atk_ring_init(&v->ring, v->mem, ATK_VU_GPA, ATK_VU_QSIZE, packed);
    struct atk_vu_state num = {0, ATK_VU_QSIZE}, b = {0, base};
    atk_vu_ok(v, ATK_VU_SET_VRING_NUM, &num, 8, NULL, 0);
    atk_vu_ok(v, ATK_VU_SET_VRING_BASE, &b, 8, NULL, 0);
    struct atk_vu_addr a = {0, 0, ATK_VU_UA, ATK_VU_UA + ATK_DEVICE_OFF, ATK_VU_UA + ATK_DRIVER_OFF,
                            0};
    atk_vu_ok(v, ATK_VU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
    uint64_t idx = 0;
    atk_vu_ok(v, ATK_VU_SET_VRING_CALL, &idx, 8, &v->call, 1);
    atk_vu_ok(v, ATK_VU_SET_VRING_ERR, &idx, 8, &v->err, 1);
}

/* Configures and starts queue 0 (atk_vu_ring_setup(), then the kick fd
 * and ENABLE). */
static inline void atk_vu_ring(struct atk_vu *v, bool packed, uint32_t base)
{
    atk_vu_ring_setup(v, packed, base);
    uint64_t idx = 0;
    atk_vu_ok(v, ATK_VU_SET_VRING_KICK, &idx, 8, &v->kick, 1);
    struct atk_vu_state en = {0, 1};
    atk_vu_ok(v, ATK_VU_SET_VRING_ENABLE, &en, 8, NULL, 0);
    assert_true(vblk_vu_queue_active(v->d, 0));
}

/* A front-end with negotiated features, one memory region, queue 0 running. */
static inline struct atk_vu *atk_vu_ready(bool packed)
{
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, packed);
    atk_vu_mem_table(v);
    atk_vu_ring(v, packed, packed ? (1u << 15 | 1u << 31) : 0);
    return v;
}

/* Guest memory for buffers in the vhost-user case: offset @off of the
 * memfd; returns its guest-physical address. */
static inline uint64_t atk_vu_gpa(size_t off)
{
    return ATK_VU_GPA + off;
}

/* Posts a request [header at @off][data][status] in guest memory. Returns
 * the status byte's offset. */
static inline size_t atk_vu_rq(struct atk_vu *v, size_t off, uint32_t type, uint64_t sector,
                               uint32_t len)
{
    struct vblk_req_hdr h = {type, 0, sector};
    memcpy(v->mem + off, &h, sizeof(h));
    size_t data = off + 64, st = data + len;
    v->mem[st] = 0xee;
    struct atk_seg s[3] = {{atk_vu_gpa(off), 16, 0}};
    unsigned n = 1;
    if (len)
        s[n++] = (struct atk_seg){atk_vu_gpa(data), len, type == VBLK_T_IN ? ATK_W : 0};
    s[n++] = (struct atk_seg){atk_vu_gpa(st), 1, ATK_W};
    atk_post(&v->ring, s, n);
    return st;
}

#endif
