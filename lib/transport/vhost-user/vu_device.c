/* SPDX-License-Identifier: MIT */
/* vhost-user device: connection life cycle, message dispatch, feature and
 * protocol-feature negotiation, config space, status and resets. Ring,
 * memory and log, and in-flight region messages are handled in
 * vu_vring.c, vu_memtable.c and vu_inflight_fd.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vu_internal.h"

#define OFFERED_PROTOCOL_FEATURES                                                                  \
    (VBLK_BIT(VBLK_VU_PROTOCOL_F_MQ) | VBLK_BIT(VBLK_VU_PROTOCOL_F_LOG_SHMFD) |                    \
     VBLK_BIT(VBLK_VU_PROTOCOL_F_REPLY_ACK) | VBLK_BIT(VBLK_VU_PROTOCOL_F_CONFIG) |                \
     VBLK_BIT(VBLK_VU_PROTOCOL_F_INFLIGHT_SHMFD) | VBLK_BIT(VBLK_VU_PROTOCOL_F_RESET_DEVICE) |     \
     VBLK_BIT(VBLK_VU_PROTOCOL_F_CONFIGURE_MEM_SLOTS) | VBLK_BIT(VBLK_VU_PROTOCOL_F_STATUS))

#define VHOST_FEATURES (VBLK_BIT(VBLK_VU_F_LOG_ALL) | VBLK_BIT(VBLK_VU_F_PROTOCOL_FEATURES))

static uint64_t offered_protocol(const struct vblk_vu_dev *d)
{
    return OFFERED_PROTOCOL_FEATURES & ~d->opts.protocol_features_off;
}

static uint64_t offered_features(const struct vblk_vu_dev *d)
{
    return vblk_dev_features(&d->dev) | VHOST_FEATURES;
}

static void reply_u64(struct vblk_vu_reply *rep, const struct vu_msg *m, uint64_t v)
{
    vu_reply(rep, m, &v, sizeof(v));
}

/* Stops every ring and forgets the front-end's device configuration. */
static void reset_device(struct vblk_vu_dev *d)
{
    vu_lock_all(d);
    for (uint16_t i = 0; i < d->nq; i++)
        vu_queue_reset(&d->q[i]);
    vu_unlock_all(d);
    d->features = 0;
    d->features_set = false;
    d->status = 0;
    vu_log_unmap(d);
    /* Back to the initial feature and config state (write cache mode). */
    (void)vblk_dev_init(&d->dev, &d->params, &d->be);
}

int vblk_vu_dev_create(const struct vblk_dev_params *p, const struct vblk_backend *be,
                       const struct vblk_vu_opts *opts, struct vblk_vu_dev **out)
{
    if (!p || !be || !out)
        return -EINVAL;
    struct vblk_vu_dev *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->sock = -1;
    d->fault_sock = -1;
    if (opts)
        d->opts = *opts;
    d->params = *p;
    d->be = *be;
    vu_rx_init(&d->rx);
    vblk_mem_init(&d->map);
    int rc = vblk_dev_init(&d->dev, p, be);
    if (rc < 0) {
        free(d);
        return rc;
    }
    d->params = d->dev.p;
    d->q = calloc(p->num_queues, sizeof(*d->q));
    if (!d->q) {
        free(d);
        return -ENOMEM;
    }
    for (uint16_t i = 0; i < p->num_queues; i++) {
        rc = vu_queue_setup(d, &d->q[i], i);
        if (rc < 0) {
            vblk_vu_dev_destroy(d);
            return rc;
        }
        d->nq = (uint16_t)(i + 1);
    }
    *out = d;
    return 0;
}

void vblk_vu_dev_destroy(struct vblk_vu_dev *d)
{
    if (!d)
        return;
    vblk_vu_dev_detach(d);
    for (uint16_t i = 0; i < d->nq; i++)
        vu_queue_teardown(&d->q[i]);
    free(d->q);
    free(d);
}

int vblk_vu_dev_attach(struct vblk_vu_dev *d, int sock)
{
    if (d->sock >= 0)
        return -EBUSY;
    int fl = fcntl(sock, F_GETFL);
    if (fl < 0 || fcntl(sock, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    (void)fcntl(sock, F_SETFD, FD_CLOEXEC);
    d->sock = sock;
    vu_count(&d->stats.connections);
    d->owner = false;
    d->protocol_features = 0;
    reset_device(d);
    vu_rx_init(&d->rx);
    /* A new front-end starts with a device that has not faulted. */
    vu_lock_all(d);
    d->fault_sock = sock;
    atomic_store(&d->faults_before, fault_owner_count(&d->fault));
    vu_unlock_all(d);
    return 0;
}

void vblk_vu_dev_detach(struct vblk_vu_dev *d)
{
    vu_lock_all(d);
    d->fault_sock = -1;
    vu_unlock_all(d);
    reset_device(d);
    vu_inflight_unmap(d);
    vu_mem_clear(d, &d->mem);
    vblk_mem_init(&d->map);
    vu_rx_reset(&d->rx);
    /* Every guarded mapping is gone: the device is whole again. */
    atomic_store(&d->faults_before, fault_owner_count(&d->fault));
    if (d->sock >= 0)
        close(d->sock);
    d->sock = -1;
    d->owner = false;
    d->protocol_features = 0;
}

bool vblk_vu_dev_attached(const struct vblk_vu_dev *d)
{
    return d->sock >= 0;
}

int vblk_vu_dev_socket_fd(const struct vblk_vu_dev *d)
{
    return d->sock;
}

struct vblk_dev *vblk_vu_dev_blk(struct vblk_vu_dev *d)
{
    return &d->dev;
}

/* ---- small handlers ---- */

static int set_features(struct vblk_vu_dev *d, uint64_t f)
{
    if (f & ~offered_features(d))
        return -EINVAL;
    uint64_t virtio = f & ~VHOST_FEATURES;
    if (!d->features_set || virtio != vblk_dev_driver_features(&d->dev)) {
        /* The rings were set up for the old features. */
        if (vu_any_live(d))
            return -EBUSY;
        int rc = vblk_dev_set_features(&d->dev, virtio);
        if (rc < 0)
            return rc;
    }
    /* Toggling LOG_ALL (migration) is the only change allowed while the
     * rings run; install or remove the log under every queue lock. */
    vu_lock_all(d);
    d->features = f;
    d->features_set = true;
    for (uint16_t i = 0; i < d->nq; i++) {
        if (d->q[i].tq.live)
            vu_queue_refresh_log(&d->q[i]);
        /* Without protocol features, rings start enabled. */
        if (!vu_has_feature(d, VBLK_VU_F_PROTOCOL_FEATURES) && !d->q[i].enabled)
            vu_queue_set_enabled(&d->q[i], true);
    }
    vu_unlock_all(d);
    return 0;
}

static int get_config(struct vblk_vu_dev *d, struct vu_msg *m, struct vblk_vu_reply *rep)
{
    struct vu_config c = m->p.config;
    uint32_t have = vblk_dev_config_size(&d->dev);
    if (c.offset > VU_CONFIG_MAX || c.size > VU_CONFIG_MAX - c.offset)
        return -EINVAL;
    /* The reply has the size asked for; bytes past our config space read
     * as zero. */
    memset(c.data, 0, sizeof(c.data));
    if (c.offset < have) {
        uint32_t n = c.size < have - c.offset ? c.size : have - c.offset;
        (void)vblk_dev_config_read(&d->dev, c.offset, c.data, n);
    }
    vu_reply(rep, m, &c, 12 + c.size);
    return 0;
}

#define VU_CONFIG_MIGRATION 1u

static int set_config(struct vblk_vu_dev *d, struct vu_msg *m)
{
    const struct vu_config *c = &m->p.config;
    uint32_t wb = offsetof(struct vblk_config, writeback);
    if (c->offset > VU_CONFIG_MAX || c->size > VU_CONFIG_MAX - c->offset || c->size == 0)
        return -EINVAL;
    int rc;
    vu_lock_all(d);
    if (c->flags & VU_CONFIG_MIGRATION) {
        /* Restoring a migrated device: only the write cache mode is state. */
        rc = 0;
        if (wb >= c->offset && wb - c->offset < c->size)
            rc = vblk_dev_config_write(&d->dev, wb, &c->data[wb - c->offset], 1);
        if (rc == -EPERM)
            rc = 0;
    } else {
        rc = vblk_dev_config_write(&d->dev, c->offset, c->data, c->size);
    }
    vu_unlock_all(d);
    if (rc == 0 && c->offset == wb)
        vu_log(d, VBLK_LOG_INFO, "write cache: %s",
               vblk_dev_writeback(&d->dev) ? "write-back" : "write-through");
    return rc;
}

static uint64_t status_of(const struct vblk_vu_dev *d)
{
    uint64_t s = d->status;
    for (uint16_t i = 0; i < d->nq; i++)
        if (atomic_load(&d->q[i].broken))
            s |= VBLK_STATUS_DEVICE_NEEDS_RESET;
    if (vu_faulted(d))
        s |= VBLK_STATUS_DEVICE_NEEDS_RESET;
    return s;
}

/* ---- dispatch ---- */

static bool needs_owner(uint32_t req)
{
    switch (req) {
    case VU_GET_FEATURES:
    case VU_GET_PROTOCOL_FEATURES:
    case VU_SET_PROTOCOL_FEATURES:
    case VU_GET_QUEUE_NUM:
    case VU_GET_MAX_MEM_SLOTS:
    case VU_SET_OWNER:
    case VU_RESET_OWNER:
    case VU_RESET_DEVICE:
    case VU_GET_STATUS:
        return false;
    default:
        return true;
    }
}

static int dispatch(struct vblk_vu_dev *d, struct vu_msg *m, struct vblk_vu_reply *rep)
{
    if (!d->owner && needs_owner(m->hdr.request))
        return -EPERM;
    switch (m->hdr.request) {
    case VU_GET_FEATURES:
        reply_u64(rep, m, offered_features(d));
        return 0;
    case VU_SET_FEATURES:
        return set_features(d, m->p.u64);
    case VU_GET_PROTOCOL_FEATURES:
        reply_u64(rep, m, offered_protocol(d));
        return 0;
    case VU_SET_PROTOCOL_FEATURES:
        if (m->p.u64 & ~offered_protocol(d))
            return -EINVAL;
        d->protocol_features = m->p.u64;
        return 0;
    case VU_SET_OWNER:
        d->owner = true;
        return 0;
    case VU_RESET_OWNER:
        /* Deprecated; the specification suggests disabling the rings. */
        vu_lock_all(d);
        for (uint16_t i = 0; i < d->nq; i++)
            vu_queue_reset(&d->q[i]);
        vu_unlock_all(d);
        return 0;
    case VU_RESET_DEVICE:
        vu_count(&d->stats.resets);
        reset_device(d);
        return 0;
    case VU_GET_QUEUE_NUM:
        reply_u64(rep, m, d->nq);
        return 0;
    case VU_GET_MAX_MEM_SLOTS:
        reply_u64(rep, m, VBLK_VU_MAX_MEM_SLOTS);
        return 0;
    case VU_SET_MEM_TABLE:
        return vu_h_set_mem_table(d, m);
    case VU_ADD_MEM_REG:
        return vu_h_add_mem_reg(d, m);
    case VU_REM_MEM_REG:
        return vu_h_rem_mem_reg(d, m);
    case VU_SET_LOG_BASE: {
        int rc = vu_h_set_log_base(d, m);
        /* With LOG_SHMFD the front-end waits for an answer. */
        reply_u64(rep, m, rc < 0);
        return rc;
    }
    case VU_SET_LOG_FD:
        /* Only used to signal log changes, which nothing here needs. */
        return 0;
    case VU_SET_VRING_NUM:
        return vu_h_set_vring_num(d, m);
    case VU_SET_VRING_ADDR:
        return vu_h_set_vring_addr(d, m);
    case VU_SET_VRING_BASE:
        return vu_h_set_vring_base(d, m);
    case VU_GET_VRING_BASE:
        return vu_h_get_vring_base(d, m, rep);
    case VU_SET_VRING_KICK:
    case VU_SET_VRING_CALL:
    case VU_SET_VRING_ERR:
        return vu_h_set_vring_fd(d, m);
    case VU_SET_VRING_ENABLE:
        return vu_h_set_vring_enable(d, m);
    case VU_GET_CONFIG:
        return get_config(d, m, rep);
    case VU_SET_CONFIG:
        return set_config(d, m);
    case VU_GET_INFLIGHT_FD:
        return vu_h_get_inflight_fd(d, m, rep);
    case VU_SET_INFLIGHT_FD:
        return vu_h_set_inflight_fd(d, m);
    case VU_SET_STATUS:
        d->status = (uint8_t)m->p.u64;
        return 0;
    case VU_GET_STATUS:
        reply_u64(rep, m, status_of(d));
        return 0;
    default:
        return -ENOTSUP;
    }
}

/* A refused request whose type always has a reply body still needs one.
 * Returns -EPROTO when no reply could be meaningful. */
static int error_reply(const struct vu_msg *m, struct vblk_vu_reply *rep)
{
    switch (m->hdr.request) {
    case VU_GET_CONFIG:
        /* vhost-user: an empty payload reports the error. */
        vu_reply(rep, m, NULL, 0);
        return 0;
    case VU_GET_INFLIGHT_FD: {
        /* mmap_size 0: the front-end goes on without in-flight tracking. */
        struct vu_inflight none = {0};
        vu_reply(rep, m, &none, sizeof(none));
        return 0;
    }
    case VU_SET_LOG_BASE:
        reply_u64(rep, m, 1);
        return 0;
    case VU_GET_FEATURES:
    case VU_GET_PROTOCOL_FEATURES:
    case VU_GET_QUEUE_NUM:
    case VU_GET_MAX_MEM_SLOTS:
    case VU_GET_STATUS:
    case VU_GET_VRING_BASE:
        return -EPROTO;
    default:
        return 0;
    }
}

int vblk_vu_dev_handle_msg(struct vblk_vu_dev *d, const void *buf, size_t len, const int *fds,
                           unsigned nfds, struct vblk_vu_reply *rep)
{
    struct vu_msg m;
    rep->len = 0;
    rep->fd = -1;
    int rc = vu_msg_parse(buf, len, fds, nfds, &m);
    vu_count(&d->stats.messages);
    if (rc < 0) {
        vu_count(&d->stats.bad_messages);
        for (unsigned i = 0; i < nfds; i++)
            close(fds[i]);
        m.nfds = 0;
        uint32_t req = len >= sizeof(m.hdr) ? m.hdr.request : 0;
        vu_log(d, VBLK_LOG_WARN, "malformed %s message (%zu bytes, %u fds): %s", vu_req_name(req),
               len, nfds, rc == -EBADMSG ? "wrong number of fds" : "bad header or size");
        /* Without a sane header the stream cannot be trusted any more. */
        if (len < sizeof(m.hdr) || (m.hdr.flags & VU_VERSION_MASK) != VU_VERSION ||
            m.hdr.size > VBLK_VU_MAX_PAYLOAD)
            return -EPROTO;
    } else {
        vu_log(d, VBLK_LOG_DEBUG, "%s (%u bytes, %u fds)", vu_req_name(m.hdr.request), m.hdr.size,
               m.nfds);
        rc = dispatch(d, &m, rep);
        for (unsigned i = 0; i < m.nfds; i++)
            if (m.fds[i] >= 0)
                close(m.fds[i]);
        if (rc < 0 && rc != -EPROTO)
            vu_log(d, VBLK_LOG_WARN, "%s refused: %s", vu_req_name(m.hdr.request), strerror(-rc));
    }
    if (rc < 0)
        vu_count(&d->stats.failed);
    if (rc == -EPROTO)
        return -EPROTO;
    if (rc < 0 && rep->len == 0 && error_reply(&m, rep) < 0)
        return -EPROTO;
    /* REPLY_ACK: an explicit answer for requests that have none. */
    if (rep->len == 0 && (m.hdr.flags & VU_FLAG_NEED_REPLY))
        reply_u64(rep, &m, rc < 0 ? 1 : 0);
    /* Handling the message touched a mapping that faulted (a ring start
     * reading the in-flight region, a drain writing completions): answer,
     * then end the connection. */
    if (vu_faulted(d)) {
        vu_log(d, VBLK_LOG_ERR, "%s: the front-end's memory faulted; disconnecting",
               vu_req_name(m.hdr.request));
        return -EPROTO;
    }
    return 0;
}

int vblk_vu_dev_handle_socket(struct vblk_vu_dev *d)
{
    if (d->sock < 0)
        return -ENOTCONN;
    /* A queue thread shut the socket down after a contained fault. */
    if (vu_faulted(d))
        return -EPROTO;
    for (;;) {
        int n = vu_rx_read(d->sock, &d->rx);
        if (n <= 0)
            return n;
        struct vblk_vu_reply rep;
        /* The fds now belong to the message handler. */
        unsigned nfds = d->rx.nfds;
        d->rx.nfds = 0;
        int rc = vblk_vu_dev_handle_msg(d, d->rx.buf, (size_t)n, d->rx.fds, nfds, &rep);
        vu_rx_init(&d->rx);
        int sent = 0;
        if (rep.len)
            sent = vu_send(d->sock, rep.buf, rep.len, rep.fd);
        if (rep.fd >= 0)
            close(rep.fd);
        if (rc < 0)
            return rc;
        if (sent < 0)
            return sent == -EPIPE || sent == -ECONNRESET ? -ECONNRESET : -EPROTO;
    }
}
