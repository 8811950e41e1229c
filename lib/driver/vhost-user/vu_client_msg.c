/* SPDX-License-Identifier: MIT */
/* vhost-user front-end: the message layer. Requests go out with at most one
 * fd; replies are read with a deadline and checked before anything in them
 * is used. Any failure breaks the connection for good. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "vu_client_internal.h"

static void vuc_vlog(struct vblk_vu_client *c, int level, const char *fmt, va_list ap)
{
    if (!c->log || level > c->log_level)
        return;
    char buf[256];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    c->log(c->log_opaque, level, buf);
}

void vuc_log(struct vblk_vu_client *c, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vuc_vlog(c, level, fmt, ap);
    va_end(ap);
}

int vuc_fail(struct vblk_vu_client *c, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    vuc_log(c, VBLK_LOG_ERR, "%s", c->err);
    return rc;
}

const char *vuc_req_name(uint32_t req)
{
    switch (req) {
    case VU_GET_FEATURES:
        return "GET_FEATURES";
    case VU_SET_FEATURES:
        return "SET_FEATURES";
    case VU_SET_OWNER:
        return "SET_OWNER";
    case VU_SET_MEM_TABLE:
        return "SET_MEM_TABLE";
    case VU_SET_VRING_NUM:
        return "SET_VRING_NUM";
    case VU_SET_VRING_ADDR:
        return "SET_VRING_ADDR";
    case VU_SET_VRING_BASE:
        return "SET_VRING_BASE";
    case VU_GET_VRING_BASE:
        return "GET_VRING_BASE";
    case VU_SET_VRING_KICK:
        return "SET_VRING_KICK";
    case VU_SET_VRING_CALL:
        return "SET_VRING_CALL";
    case VU_GET_PROTOCOL_FEATURES:
        return "GET_PROTOCOL_FEATURES";
    case VU_SET_PROTOCOL_FEATURES:
        return "SET_PROTOCOL_FEATURES";
    case VU_GET_QUEUE_NUM:
        return "GET_QUEUE_NUM";
    case VU_SET_VRING_ENABLE:
        return "SET_VRING_ENABLE";
    case VU_GET_CONFIG:
        return "GET_CONFIG";
    default:
        return "request";
    }
}

/* Marks the connection broken with @p rc and a reason. */
static int broken(struct vblk_vu_client *c, int rc, uint32_t req, const char *what)
{
    c->broken = rc;
    return vuc_fail(c, rc, "vhost-user %s: %s", vuc_req_name(req), what);
}

int vuc_send(struct vblk_vu_client *c, uint32_t req, uint32_t flags, const void *payload,
             uint32_t size, int fd)
{
    if (c->broken)
        return c->broken;
    uint8_t buf[sizeof(struct vu_hdr) + VUC_MAX_PAYLOAD];
    struct vu_hdr h = {req, VU_VERSION | flags, size};
    if (size > VUC_MAX_PAYLOAD)
        return -EINVAL;
    memcpy(buf, &h, sizeof(h));
    if (size)
        memcpy(buf + sizeof(h), payload, size);
    size_t len = sizeof(h) + size, off = 0;
    union vu_fd_cmsg ctl;
    vuc_log(c, VBLK_LOG_DEBUG, "-> %s (%u bytes%s)", vuc_req_name(req), size,
            fd >= 0 ? ", 1 fd" : "");
    while (off < len) {
        struct iovec iov = {buf + off, len - off};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        if (off == 0 && fd >= 0)
            vu_attach_fd(&mh, &ctl, fd);
        ssize_t n = sendmsg(c->sock, &mh, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return broken(c, -ETIMEDOUT, req, "the back-end does not read its socket");
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
            return broken(c, -errno, req, "the back-end closed the connection");
        if (n < 0)
            return broken(c, -errno, req, strerror(errno));
        off += (size_t)n;
    }
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads exactly @p len bytes before @p deadline; counts (and closes) every
 * fd that comes with them. Returns 0 or a negative errno. */
static int read_full(struct vblk_vu_client *c, void *buf, size_t len, int64_t deadline,
                     unsigned *nfds)
{
    size_t off = 0;
    while (off < len) {
        int64_t left = deadline - now_ms();
        struct pollfd p = {.fd = c->sock, .events = POLLIN};
        int pr = left > 0 ? poll(&p, 1, (int)left) : 0;
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            return -errno;
        if (pr == 0)
            return -ETIMEDOUT;
        union {
            char b[CMSG_SPACE(sizeof(int) * 16)];
            struct cmsghdr align;
        } ctl;
        struct iovec iov = {(uint8_t *)buf + off, len - off};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof(ctl)};
        ssize_t n = recvmsg(c->sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n < 0)
            return errno == ECONNRESET ? -ECONNRESET : -errno;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                continue;
            size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < k; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                close(fd);
                (*nfds)++;
            }
        }
        if (mh.msg_flags & MSG_CTRUNC)
            (*nfds)++;
        if (n == 0)
            return -ECONNRESET;
        off += (size_t)n;
    }
    return 0;
}

static int recv_error(struct vblk_vu_client *c, int rc, uint32_t req)
{
    switch (rc) {
    case -ETIMEDOUT:
        return broken(c, rc, req, "no reply from the back-end in time");
    case -ECONNRESET:
        return broken(c, rc, req, "the back-end closed the connection");
    default:
        return broken(c, rc, req, strerror(-rc));
    }
}

int vuc_recv(struct vblk_vu_client *c, uint32_t req, void *payload, uint32_t min, uint32_t max,
             uint32_t *got)
{
    if (c->broken)
        return c->broken;
    int64_t deadline = now_ms() + c->timeout_ms;
    unsigned nfds = 0;
    struct vu_hdr h;
    int rc = read_full(c, &h, sizeof(h), deadline, &nfds);
    if (rc < 0)
        return recv_error(c, rc, req);
    char what[160];
    if ((h.flags & VU_VERSION_MASK) != VU_VERSION || !(h.flags & VU_FLAG_REPLY)) {
        snprintf(what, sizeof(what), "malformed reply header (flags 0x%x)", h.flags);
        return broken(c, -EPROTO, req, what);
    }
    if (h.request != req) {
        snprintf(what, sizeof(what), "reply is for request %u, expected %u", h.request, req);
        return broken(c, -EPROTO, req, what);
    }
    if (h.size < min || h.size > max) {
        if (min == max)
            snprintf(what, sizeof(what), "reply payload of %u bytes, expected %u", h.size, min);
        else
            snprintf(what, sizeof(what), "reply payload of %u bytes, expected %u..%u", h.size, min,
                     max);
        return broken(c, -EPROTO, req, what);
    }
    if (h.size) {
        rc = read_full(c, payload, h.size, deadline, &nfds);
        if (rc < 0)
            return recv_error(c, rc, req);
    }
    if (nfds) {
        snprintf(what, sizeof(what), "reply carried %u unexpected file descriptor(s)", nfds);
        return broken(c, -EPROTO, req, what);
    }
    vuc_log(c, VBLK_LOG_DEBUG, "<- %s (%u bytes)", vuc_req_name(req), h.size);
    *got = h.size;
    return 0;
}

int vuc_get_u64(struct vblk_vu_client *c, uint32_t req, uint64_t *out)
{
    uint32_t got;
    int rc = vuc_send(c, req, 0, NULL, 0, -1);
    if (rc == 0)
        rc = vuc_recv(c, req, out, sizeof(*out), sizeof(*out), &got);
    return rc;
}

int vuc_call(struct vblk_vu_client *c, uint32_t req, const void *payload, uint32_t size, int fd)
{
    bool ack = (c->protocol & VBLK_BIT(VBLK_VU_PROTOCOL_F_REPLY_ACK)) != 0;
    int rc = vuc_send(c, req, ack ? VU_FLAG_NEED_REPLY : 0, payload, size, fd);
    if (rc < 0 || !ack)
        return rc;
    uint64_t v;
    uint32_t got;
    rc = vuc_recv(c, req, &v, sizeof(v), sizeof(v), &got);
    if (rc < 0)
        return rc;
    if (v != 0)
        return vuc_fail(c, -EIO, "vhost-user %s: the back-end refused it (ack %llu)",
                        vuc_req_name(req), (unsigned long long)v);
    return 0;
}
