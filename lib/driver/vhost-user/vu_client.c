/* SPDX-License-Identifier: MIT */
/* vhost-user front-end: connection set-up (features, protocol features,
 * config space, memory table, rings), notifications and tear-down. The
 * message layer is in vu_client_msg.c. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vu_client_internal.h"

/* Features this front-end can drive: the config-space and request-type
 * bits of virtio-blk need nothing of the transport. ZONED, IN_ORDER and
 * ACCESS_PLATFORM are never accepted. */
#define BLK_FEATURES                                                                               \
    (VBLK_BIT(VBLK_F_SIZE_MAX) | VBLK_BIT(VBLK_F_SEG_MAX) | VBLK_BIT(VBLK_F_GEOMETRY) |            \
     VBLK_BIT(VBLK_F_RO) | VBLK_BIT(VBLK_F_BLK_SIZE) | VBLK_BIT(VBLK_F_FLUSH) |                    \
     VBLK_BIT(VBLK_F_TOPOLOGY) | VBLK_BIT(VBLK_F_CONFIG_WCE) | VBLK_BIT(VBLK_F_MQ) |               \
     VBLK_BIT(VBLK_F_DISCARD) | VBLK_BIT(VBLK_F_WRITE_ZEROES) | VBLK_BIT(VBLK_F_LIFETIME) |        \
     VBLK_BIT(VBLK_F_SECURE_ERASE) | VBLK_BIT(VBLK_F_ZONED))

#define WANTED_PROTOCOL                                                                            \
    (VBLK_BIT(VBLK_VU_PROTOCOL_F_MQ) | VBLK_BIT(VBLK_VU_PROTOCOL_F_REPLY_ACK) |                    \
     VBLK_BIT(VBLK_VU_PROTOCOL_F_CONFIG))

/* SET_VRING_KICK / CALL payload: ring index in bits 0-7. */
#define VRING_IDX_MASK 0xffu

/* Most queues one connection sets up (the ring index field is 8 bits). */
#define MAX_QUEUES 256u

static bool has(uint64_t set, unsigned bit)
{
    return (set & VBLK_BIT(bit)) != 0;
}

static size_t align_up(size_t v, size_t a)
{
    return (v + a - 1) & ~(a - 1);
}

void *vblk_vu_client_alloc(struct vblk_vu_client *c, size_t len)
{
    size_t align = len >= 4096 ? 4096 : 64;
    size_t off = align_up(c->mem_used, align);
    if (len == 0 || off > c->mem_size || len > c->mem_size - off)
        return NULL;
    c->mem_used = off + len;
    return c->mem + off;
}

/* Reads @p len bytes of config space at offset 0. Returns 0, -EIO if the
 * back-end answered with an empty payload (its way to refuse), or a
 * connection error. */
static int get_config(struct vblk_vu_client *c, uint32_t len, struct vu_config *out)
{
    struct vu_config req = {.offset = 0, .size = len, .flags = 0};
    uint32_t got;
    int rc = vuc_send(c, VU_GET_CONFIG, 0, &req, 12 + len, -1);
    if (rc == 0)
        rc = vuc_recv(c, VU_GET_CONFIG, out, 0, 12 + len, &got);
    if (rc < 0)
        return rc;
    if (got == 0)
        return -EIO;
    if (got != 12 + len || out->size != len || out->offset != 0) {
        c->broken = -EPROTO;
        return vuc_fail(c, -EPROTO,
                        "vhost-user GET_CONFIG: reply of %u bytes for offset %u size %u, "
                        "expected %u bytes for offset 0 size %u",
                        got, out->offset, out->size, 12 + len, len);
    }
    return 0;
}

/* Tries the whole virtio-blk config, then the shorter layouts older
 * back-ends know (up to write_zeroes_may_unmap, up to num_queues). */
static int read_config(struct vblk_vu_client *c, struct vblk_config *cfg, uint32_t *len_out)
{
    static const uint32_t lens[] = {sizeof(struct vblk_config), VBLK_CONFIG_SIZE_NO_ZONED, 60, 36};
    struct vu_config rep;
    int rc = -EIO;
    for (unsigned i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        rc = get_config(c, lens[i], &rep);
        if (rc != -EIO) {
            if (rc == 0) {
                memset(cfg, 0, sizeof(*cfg));
                memcpy(cfg, rep.data, lens[i]);
                *len_out = lens[i];
            }
            return rc;
        }
    }
    return vuc_fail(c, -EIO, "vhost-user GET_CONFIG: the back-end refused every size");
}

int vblk_vu_client_config(struct vblk_vu_client *c, struct vblk_config *cfg)
{
    if (!has(c->protocol, VBLK_VU_PROTOCOL_F_CONFIG))
        return vuc_fail(c, -ENOTSUP, "the back-end does not offer its config space");
    if (c->broken)
        return c->broken;
    uint32_t len;
    int rc = read_config(c, &c->config, &len);
    if (rc == 0) {
        c->config_len = len;
        *cfg = c->config;
    }
    return rc;
}

static int negotiate(struct vblk_vu_client *c, const struct vblk_vu_client_opts *o)
{
    int rc = vuc_get_u64(c, VU_GET_FEATURES, &c->offered);
    if (rc < 0)
        return rc;
    if (!has(c->offered, VBLK_F_VERSION_1))
        return vuc_fail(c, -ENOTSUP,
                        "the back-end does not offer VIRTIO_F_VERSION_1 "
                        "(features 0x%llx)",
                        (unsigned long long)c->offered);
    if (o->packed && !has(c->offered, VBLK_F_RING_PACKED))
        return vuc_fail(c, -ENOTSUP,
                        "the back-end does not offer packed rings "
                        "(VIRTIO_F_RING_PACKED)");
    uint64_t want =
        VBLK_BIT(VBLK_F_VERSION_1) | BLK_FEATURES | VBLK_BIT(VBLK_VU_F_PROTOCOL_FEATURES);
    if (o->packed)
        want |= VBLK_BIT(VBLK_F_RING_PACKED);
    if (o->event_idx)
        want |= VBLK_BIT(VBLK_F_EVENT_IDX);
    if (o->indirect)
        want |= VBLK_BIT(VBLK_F_INDIRECT_DESC);
    c->features = c->offered & want & ~(o->features_off & ~VBLK_BIT(VBLK_F_VERSION_1));

    if (has(c->features, VBLK_VU_F_PROTOCOL_FEATURES)) {
        uint64_t pf;
        rc = vuc_get_u64(c, VU_GET_PROTOCOL_FEATURES, &pf);
        if (rc < 0)
            return rc;
        pf &= WANTED_PROTOCOL & ~o->protocol_features_off;
        rc = vuc_send(c, VU_SET_PROTOCOL_FEATURES, 0, &pf, sizeof(pf), -1);
        if (rc < 0)
            return rc;
        /* REPLY_ACK applies from the next request on. */
        c->protocol = pf;
        if (has(pf, VBLK_VU_PROTOCOL_F_MQ)) {
            rc = vuc_get_u64(c, VU_GET_QUEUE_NUM, &c->max_queues);
            if (rc < 0)
                return rc;
        }
    }
    rc = vuc_call(c, VU_SET_OWNER, NULL, 0, -1);
    if (rc < 0)
        return rc;
    if (has(c->protocol, VBLK_VU_PROTOCOL_F_CONFIG)) {
        rc = read_config(c, &c->config, &c->config_len);
        if (rc < 0 && rc != -EIO)
            return rc;
        c->have_config = rc == 0;
    }
    /* How many queues may be used: GET_QUEUE_NUM, else the config space. */
    uint64_t limit = 1;
    if (c->max_queues)
        limit = c->max_queues;
    else if (c->have_config && has(c->features, VBLK_F_MQ) && c->config.num_queues)
        limit = c->config.num_queues;
    if (c->nq > limit)
        return vuc_fail(c, -ENOTSUP, "%u queues requested, the back-end offers %llu", c->nq,
                        (unsigned long long)limit);
    return vuc_call(c, VU_SET_FEATURES, &c->features, sizeof(c->features), -1);
}

static int setup_memory(struct vblk_vu_client *c)
{
    c->memfd = memfd_create("vblk-vu-client", MFD_CLOEXEC);
    if (c->memfd < 0)
        return vuc_fail(c, -errno, "memfd_create: %s", strerror(errno));
    if (ftruncate(c->memfd, (off_t)c->mem_size) < 0)
        return vuc_fail(c, -errno, "cannot size the shared memory to %zu bytes: %s", c->mem_size,
                        strerror(errno));
    void *p = mmap(NULL, c->mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->memfd, 0);
    if (p == MAP_FAILED)
        return vuc_fail(c, -errno, "cannot map the shared memory: %s", strerror(errno));
    c->mem = p;
    c->gpa_base = VBLK_VU_CLIENT_GPA_BASE;
    struct vuc_mem_table t = {.nregions = 1};
    t.regions[0] = (struct vu_region_desc){
        .gpa = c->gpa_base,
        .size = c->mem_size,
        .uaddr = (uint64_t)(uintptr_t)c->mem,
        .mmap_offset = 0,
    };
    return vuc_call(c, VU_SET_MEM_TABLE, &t, sizeof(t), c->memfd);
}

/* Host pointer of a driver address (the rings live in the shared region). */
static uint64_t uaddr_of(const struct vblk_vu_client *c, uint64_t drv_addr)
{
    return drv_addr - c->gpa_base + (uint64_t)(uintptr_t)c->mem;
}

static int setup_queue(struct vblk_vu_client *c, uint16_t i, const struct vblk_vu_client_opts *o)
{
    struct vuc_queue *q = &c->q[i];
    bool packed = has(c->features, VBLK_F_RING_PACKED);
    bool indirect = has(c->features, VBLK_F_INDIRECT_DESC);
    struct vblk_drv_vq_config dc = {
        .size = c->qsize,
        .packed = packed,
        .event_idx = has(c->features, VBLK_F_EVENT_IDX),
        .indirect = indirect,
        .indirect_max = indirect ? (o->indirect_max ? o->indirect_max : 16) : 0,
        .addr_delta = c->gpa_base - (uint64_t)(uintptr_t)c->mem,
    };
    size_t ring_len = vblk_drv_vq_ring_size(&dc);
    if (ring_len == 0)
        return vuc_fail(c, -EINVAL, "queue size %u is not valid for a %s ring", c->qsize,
                        packed ? "packed" : "split");
    void *ring = vblk_vu_client_alloc(c, align_up(ring_len, 4096));
    if (!ring)
        return vuc_fail(c, -ENOMEM, "shared memory of %zu bytes is too small for the rings",
                        c->mem_size);
    size_t st_len = vblk_drv_vq_state_size(&dc);
    q->state = aligned_alloc(8, align_up(st_len, 8));
    if (!q->state)
        return -ENOMEM;
    int rc = vblk_drv_vq_init(&q->vq, &dc, ring, ring_len, q->state, st_len);
    if (rc < 0)
        return vuc_fail(c, rc, "cannot set up ring %u", i);
    /* Notifications only while someone waits (vblk_vu_client_wait()). */
    (void)vblk_drv_vq_enable_cb(&q->vq, false);
    q->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    q->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->kick_fd < 0 || q->call_fd < 0)
        return vuc_fail(c, -errno, "eventfd: %s", strerror(errno));

    struct vu_vring_state st = {i, c->qsize};
    rc = vuc_call(c, VU_SET_VRING_NUM, &st, sizeof(st), -1);
    if (rc < 0)
        return rc;
    /* A fresh packed ring starts with both wrap counters at 1: avail
     * position in bits 0-15, used position in bits 16-31. */
    st.num = packed ? (0x8000u | 0x8000u << 16) : 0;
    rc = vuc_call(c, VU_SET_VRING_BASE, &st, sizeof(st), -1);
    if (rc < 0)
        return rc;
    struct vblk_vq_addrs a;
    vblk_drv_vq_addrs(&q->vq, &a);
    struct vu_vring_addr va = {
        .index = i,
        .flags = 0,
        .desc = uaddr_of(c, a.desc),
        .used = uaddr_of(c, a.device),
        .avail = uaddr_of(c, a.driver),
        .log = 0,
    };
    rc = vuc_call(c, VU_SET_VRING_ADDR, &va, sizeof(va), -1);
    if (rc < 0)
        return rc;
    /* The call fd first, so the ring never runs without one. */
    uint64_t idx = i & VRING_IDX_MASK;
    rc = vuc_call(c, VU_SET_VRING_CALL, &idx, sizeof(idx), q->call_fd);
    if (rc < 0)
        return rc;
    rc = vuc_call(c, VU_SET_VRING_KICK, &idx, sizeof(idx), q->kick_fd);
    if (rc < 0)
        return rc;
    /* With protocol features, rings start disabled. */
    if (has(c->features, VBLK_VU_F_PROTOCOL_FEATURES)) {
        st.num = 1;
        rc = vuc_call(c, VU_SET_VRING_ENABLE, &st, sizeof(st), -1);
    }
    return rc;
}

static void report(const struct vblk_vu_client_opts *o, const char *msg)
{
    if (o->errbuf && o->errbuf_len)
        snprintf(o->errbuf, o->errbuf_len, "%s", msg);
}

int vblk_vu_client_connect_fd(int sock, const struct vblk_vu_client_opts *opts,
                              struct vblk_vu_client **out)
{
    struct vblk_vu_client_opts o = {0};
    if (opts)
        o = *opts;
    if (!out) {
        close(sock);
        return -EINVAL;
    }
    report(&o, "");
    struct vblk_vu_client *c = calloc(1, sizeof(*c));
    if (!c) {
        close(sock);
        report(&o, "out of memory");
        return -ENOMEM;
    }
    c->sock = sock;
    c->memfd = -1;
    c->log = o.log;
    c->log_opaque = o.log_opaque;
    c->log_level = o.log_level;
    c->timeout_ms = o.timeout_ms > 0 ? o.timeout_ms : 5000;
    c->nq = o.queues ? o.queues : 1;
    c->qsize = o.queue_size ? o.queue_size : 256;
    c->mem_size = align_up(o.mem_size ? o.mem_size : (64u << 20), 4096);
    int rc = 0;
    if (c->nq > MAX_QUEUES || c->qsize > VBLK_QUEUE_SIZE_MAX)
        rc = vuc_fail(c, -EINVAL, "%u queues of %u entries: too many", c->nq, c->qsize);
    if (rc == 0) {
        c->q = calloc(c->nq, sizeof(*c->q));
        if (!c->q)
            rc = -ENOMEM;
        for (uint16_t i = 0; c->q && i < c->nq; i++)
            c->q[i].kick_fd = c->q[i].call_fd = -1;
    }
    if (rc == 0) {
        /* Sends that cannot go out within the timeout fail too. */
        struct timeval tv = {c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000};
        (void)setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        (void)fcntl(sock, F_SETFD, FD_CLOEXEC);
        rc = negotiate(c, &o);
    }
    if (rc == 0)
        rc = setup_memory(c);
    for (uint16_t i = 0; rc == 0 && i < c->nq; i++)
        rc = setup_queue(c, i, &o);
    if (rc < 0) {
        if (!c->err[0])
            snprintf(c->err, sizeof(c->err), "%s", strerror(-rc));
        report(&o, c->err);
        /* No point in stopping rings on a connection that failed. */
        c->broken = c->broken ? c->broken : rc;
        vblk_vu_client_close(c);
        return rc;
    }
    vuc_log(c, VBLK_LOG_INFO,
            "connected: %u %s queue(s) of %u, features 0x%llx, protocol features 0x%llx", c->nq,
            has(c->features, VBLK_F_RING_PACKED) ? "packed" : "split", c->qsize,
            (unsigned long long)c->features, (unsigned long long)c->protocol);
    *out = c;
    return 0;
}

int vblk_vu_client_connect(const char *path, const struct vblk_vu_client_opts *opts,
                           struct vblk_vu_client **out)
{
    struct vblk_vu_client_opts none = {0};
    const struct vblk_vu_client_opts *o = opts ? opts : &none;
    char msg[300];
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (!path || !out || strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(msg, sizeof(msg), "socket path %s is too long (at most %zu bytes)",
                 path ? path : "(null)", sizeof(sa.sun_path) - 1);
        report(o, msg);
        return path && out ? -ENAMETOOLONG : -EINVAL;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        int e = errno;
        snprintf(msg, sizeof(msg), "socket: %s", strerror(e));
        report(o, msg);
        return -e;
    }
    /* connect() on a Unix socket waits for backlog room: bound it. */
    int tmo = o->timeout_ms > 0 ? o->timeout_ms : 5000;
    struct timeval tv = {tmo / 1000, (tmo % 1000) * 1000};
    (void)setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno == EAGAIN || errno == EINPROGRESS ? ETIMEDOUT : errno;
        snprintf(msg, sizeof(msg), "cannot connect: %s", strerror(e));
        report(o, msg);
        if (o->log && o->log_level >= VBLK_LOG_ERR)
            o->log(o->log_opaque, VBLK_LOG_ERR, msg);
        close(s);
        return -e;
    }
    return vblk_vu_client_connect_fd(s, opts, out);
}

void vblk_vu_client_close(struct vblk_vu_client *c)
{
    if (!c)
        return;
    /* A back-end that hangs should not hold the caller up for long. */
    if (c->timeout_ms > 2000)
        c->timeout_ms = 2000;
    for (uint16_t i = 0; c->q && i < c->nq; i++) {
        struct vuc_queue *q = &c->q[i];
        /* Stop the ring: the back-end finishes with it before replying. */
        if (!c->broken && q->kick_fd >= 0) {
            struct vu_vring_state st = {i, 0}, rep;
            uint32_t got;
            if (vuc_send(c, VU_GET_VRING_BASE, 0, &st, sizeof(st), -1) == 0)
                (void)vuc_recv(c, VU_GET_VRING_BASE, &rep, sizeof(rep), sizeof(rep), &got);
        }
    }
    if (c->sock >= 0)
        close(c->sock);
    for (uint16_t i = 0; c->q && i < c->nq; i++) {
        if (c->q[i].kick_fd >= 0)
            close(c->q[i].kick_fd);
        if (c->q[i].call_fd >= 0)
            close(c->q[i].call_fd);
        free(c->q[i].state);
    }
    free(c->q);
    if (c->mem)
        munmap(c->mem, c->mem_size);
    if (c->memfd >= 0)
        close(c->memfd);
    free(c);
}

uint16_t vblk_vu_client_num_queues(const struct vblk_vu_client *c)
{
    return c->nq;
}

uint16_t vblk_vu_client_queue_size(const struct vblk_vu_client *c)
{
    return c->qsize;
}

struct vblk_drv_vq *vblk_vu_client_queue(struct vblk_vu_client *c, uint16_t q)
{
    return q < c->nq ? &c->q[q].vq : NULL;
}

int vblk_vu_client_call_fd(const struct vblk_vu_client *c, uint16_t q)
{
    return q < c->nq ? c->q[q].call_fd : -1;
}

int vblk_vu_client_kick(struct vblk_vu_client *c, uint16_t q)
{
    if (q >= c->nq)
        return -EINVAL;
    if (!vblk_drv_vq_kick_prepare(&c->q[q].vq))
        return 0;
    uint64_t one = 1;
    /* An eventfd write fails only when the counter would overflow, and the
     * back-end has then a kick pending anyway. */
    (void)!write(c->q[q].kick_fd, &one, sizeof(one));
    return 1;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int vblk_vu_client_wait(struct vblk_vu_client *c, uint16_t q, int timeout_ms)
{
    if (q >= c->nq)
        return -EINVAL;
    struct vuc_queue *vq = &c->q[q];
    if (vblk_drv_vq_has_used(&vq->vq))
        return 1;
    int64_t deadline = timeout_ms < 0 ? -1 : mono_ms() + timeout_ms;
    int rc = 0;
    /* Enabling returns true when a used entry raced in. */
    if (vblk_drv_vq_enable_cb(&vq->vq, true)) {
        rc = 1;
        goto out;
    }
    for (;;) {
        int left = -1;
        if (deadline >= 0) {
            int64_t l = deadline - mono_ms();
            left = l > 0 ? (int)l : 0;
        }
        /* Only hang-ups on the socket: a reply for the control thread may
         * be readable at any time. */
        struct pollfd p[2] = {{.fd = vq->call_fd, .events = POLLIN},
                              {.fd = c->sock, .events = POLLRDHUP}};
        int n = poll(p, 2, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (p[0].revents & POLLIN) {
            uint64_t v;
            (void)!read(vq->call_fd, &v, sizeof(v));
        }
        if (vblk_drv_vq_has_used(&vq->vq)) {
            rc = 1;
            break;
        }
        if (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
            rc = -ECONNRESET;
            break;
        }
        if (n == 0)
            break;
    }
out:
    (void)vblk_drv_vq_enable_cb(&vq->vq, false);
    return rc;
}

uint64_t vblk_vu_client_features(const struct vblk_vu_client *c)
{
    return c->features & ~VBLK_BIT(VBLK_VU_F_PROTOCOL_FEATURES);
}

uint64_t vblk_vu_client_protocol_features(const struct vblk_vu_client *c)
{
    return c->protocol;
}

const char *vblk_vu_client_error(const struct vblk_vu_client *c)
{
    return c->err;
}
