/* SPDX-License-Identifier: MIT */
/* vhost-user message framing and validation, and the socket receiver.
 *
 * vu_msg_parse() works on a plain byte buffer plus an fd count, so a fuzzer
 * can drive the whole message path without a socket. It checks only what
 * needs no device state: the header, the payload size each request type
 * allows, and how many fds it takes. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vu_internal.h"

_Static_assert(sizeof(struct vu_hdr) == VBLK_VU_HDR_SIZE, "header layout");
_Static_assert(sizeof(struct vu_vring_addr) == 40, "vring address layout");
_Static_assert(sizeof(struct vu_region_desc) == 32, "region layout");
_Static_assert(sizeof(struct vu_mem_single) == 40, "single region layout");
_Static_assert(sizeof(struct vu_mem_table) == 8 + 32 * VU_MEM_TABLE_MAX, "memory table layout");
_Static_assert(sizeof(struct vu_config) == VBLK_VU_MAX_PAYLOAD, "config layout");
_Static_assert(sizeof(struct vu_inflight) == 24, "inflight layout");

/* How many fds a request takes. */
enum fd_rule {
    FDS_NONE,     /* none */
    FDS_ONE,      /* exactly one */
    FDS_RING,     /* one, or none with VU_VRING_NOFD in the payload */
    FDS_TABLE,    /* one per region of the memory table */
    FDS_OPTIONAL, /* zero or one (closed unused: REM_MEM_REG) */
    FDS_ANY,      /* requests the device refuses anyway */
};

struct rule {
    const char *name;
    uint16_t min, max; /* payload bytes */
    uint8_t fds;
};

#define R(req, mn, mx, f) [VU_##req] = {#req, mn, mx, f}
static const struct rule rules[VU_REQUEST_MAX] = {
    R(GET_FEATURES, 0, 8, FDS_NONE),
    R(SET_FEATURES, 8, 8, FDS_NONE),
    R(SET_OWNER, 0, 8, FDS_NONE),
    R(RESET_OWNER, 0, 8, FDS_NONE),
    R(SET_MEM_TABLE, 8 + 32, sizeof(struct vu_mem_table), FDS_TABLE),
    R(SET_LOG_BASE, sizeof(struct vu_log), sizeof(struct vu_log), FDS_ONE),
    R(SET_LOG_FD, 0, 8, FDS_ONE),
    R(SET_VRING_NUM, 8, 8, FDS_NONE),
    R(SET_VRING_ADDR, sizeof(struct vu_vring_addr), sizeof(struct vu_vring_addr), FDS_NONE),
    R(SET_VRING_BASE, 8, 8, FDS_NONE),
    R(GET_VRING_BASE, 8, 8, FDS_NONE),
    R(SET_VRING_KICK, 8, 8, FDS_RING),
    R(SET_VRING_CALL, 8, 8, FDS_RING),
    R(SET_VRING_ERR, 8, 8, FDS_RING),
    R(GET_PROTOCOL_FEATURES, 0, 8, FDS_NONE),
    R(SET_PROTOCOL_FEATURES, 8, 8, FDS_NONE),
    R(GET_QUEUE_NUM, 0, 8, FDS_NONE),
    R(SET_VRING_ENABLE, 8, 8, FDS_NONE),
    R(SEND_RARP, 0, VBLK_VU_MAX_PAYLOAD, FDS_ANY),
    R(NET_SET_MTU, 0, VBLK_VU_MAX_PAYLOAD, FDS_ANY),
    R(SET_BACKEND_REQ_FD, 0, 8, FDS_ONE),
    R(IOTLB_MSG, 0, VBLK_VU_MAX_PAYLOAD, FDS_ANY),
    R(SET_VRING_ENDIAN, 0, VBLK_VU_MAX_PAYLOAD, FDS_ANY),
    R(GET_CONFIG, 12, VBLK_VU_MAX_PAYLOAD, FDS_NONE),
    R(SET_CONFIG, 12, VBLK_VU_MAX_PAYLOAD, FDS_NONE),
    R(GET_INFLIGHT_FD, 20, sizeof(struct vu_inflight), FDS_NONE),
    R(SET_INFLIGHT_FD, 20, sizeof(struct vu_inflight), FDS_ONE),
    R(RESET_DEVICE, 0, 8, FDS_NONE),
    R(VRING_KICK, 0, VBLK_VU_MAX_PAYLOAD, FDS_ANY),
    R(GET_MAX_MEM_SLOTS, 0, 8, FDS_NONE),
    R(ADD_MEM_REG, sizeof(struct vu_mem_single), sizeof(struct vu_mem_single), FDS_ONE),
    R(REM_MEM_REG, sizeof(struct vu_mem_single), sizeof(struct vu_mem_single), FDS_OPTIONAL),
    R(SET_STATUS, 8, 8, FDS_NONE),
    R(GET_STATUS, 0, 8, FDS_NONE),
};
#undef R

const char *vu_req_name(uint32_t request)
{
    if (request < VU_REQUEST_MAX && rules[request].name)
        return rules[request].name;
    return "UNKNOWN";
}

/* Checks the payload-dependent parts: fd counts and embedded sizes. */
static int check_payload(const struct vu_msg *m, const struct rule *r, unsigned nfds)
{
    uint32_t size = m->hdr.size;
    switch (m->hdr.request) {
    case VU_SET_MEM_TABLE: {
        uint32_t n = m->p.mem.nregions;
        /* Every region comes with its fd, in order. */
        if (n == 0 || n > VU_MEM_TABLE_MAX || size < 8 + 32 * n)
            return -EINVAL;
        return nfds == n ? 0 : -EBADMSG;
    }
    case VU_GET_CONFIG:
    case VU_SET_CONFIG:
        if (m->p.config.size > VU_CONFIG_MAX || size != 12 + m->p.config.size)
            return -EINVAL;
        break;
    default:
        break;
    }
    switch (r->fds) {
    case FDS_NONE:
        return nfds == 0 ? 0 : -EBADMSG;
    case FDS_ONE:
        return nfds == 1 ? 0 : -EBADMSG;
    case FDS_RING: {
        if (m->p.u64 & ~(uint64_t)(VU_VRING_IDX_MASK | VU_VRING_NOFD))
            return -EINVAL;
        unsigned want = (m->p.u64 & VU_VRING_NOFD) ? 0 : 1;
        return nfds == want ? 0 : -EBADMSG;
    }
    case FDS_OPTIONAL:
        return nfds <= 1 ? 0 : -EBADMSG;
    default:
        return 0;
    }
}

int vu_msg_parse(const void *buf, size_t len, const int *fds, unsigned nfds, struct vu_msg *m)
{
    memset(&m->hdr, 0, sizeof(m->hdr));
    memset(&m->p, 0, sizeof(m->p));
    m->nfds = 0;
    if (len < VBLK_VU_HDR_SIZE || nfds > VBLK_VU_MAX_FDS)
        return -EINVAL;
    memcpy(&m->hdr, buf, sizeof(m->hdr));
    /* The payload must be exactly the rest of the buffer. */
    if (m->hdr.size > VBLK_VU_MAX_PAYLOAD || m->hdr.size != len - VBLK_VU_HDR_SIZE)
        return -EINVAL;
    if ((m->hdr.flags & VU_VERSION_MASK) != VU_VERSION || (m->hdr.flags & VU_FLAG_REPLY))
        return -EINVAL;
    memcpy(m->p.raw, (const uint8_t *)buf + VBLK_VU_HDR_SIZE, m->hdr.size);
    for (unsigned i = 0; i < nfds; i++)
        m->fds[i] = fds[i];
    m->nfds = nfds;

    static const struct rule unknown = {"UNKNOWN", 0, VBLK_VU_MAX_PAYLOAD, FDS_ANY};
    const struct rule *r = &unknown;
    if (m->hdr.request < VU_REQUEST_MAX && rules[m->hdr.request].name)
        r = &rules[m->hdr.request];
    if (m->hdr.size < r->min || m->hdr.size > r->max)
        return -EINVAL;
    return check_payload(m, r, nfds);
}

int vblk_vu_msg_validate(const void *buf, size_t len, unsigned nfds)
{
    static const int no_fds[VBLK_VU_MAX_FDS] = {-1, -1, -1, -1, -1, -1, -1, -1};
    struct vu_msg m;
    if (!buf)
        return -EINVAL;
    if (nfds > VBLK_VU_MAX_FDS)
        return -EBADMSG;
    return vu_msg_parse(buf, len, no_fds, nfds, &m);
}

/* ---- socket receiver ---- */

void vu_rx_init(struct vu_rx *rx)
{
    rx->have = 0;
    rx->nfds = 0;
    rx->fd_overflow = false;
}

void vu_rx_reset(struct vu_rx *rx)
{
    for (unsigned i = 0; i < rx->nfds; i++)
        close(rx->fds[i]);
    vu_rx_init(rx);
}

/* Takes the fds out of every SCM_RIGHTS message; any beyond the limit are
 * closed at once and mark the message bad. */
static void take_fds(struct vu_rx *rx, struct msghdr *mh)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const uint8_t *data = CMSG_DATA(c);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, data + i * sizeof(int), sizeof(int));
            if (rx->nfds < VBLK_VU_MAX_FDS) {
                rx->fds[rx->nfds++] = fd;
            } else {
                close(fd);
                rx->fd_overflow = true;
            }
        }
    }
}

int vu_rx_read(int sock, struct vu_rx *rx)
{
    for (;;) {
        size_t want;
        if (rx->have < VBLK_VU_HDR_SIZE) {
            want = VBLK_VU_HDR_SIZE - rx->have;
        } else {
            struct vu_hdr h;
            memcpy(&h, rx->buf, sizeof(h));
            /* Never read past this message: the next one's fds would come
             * along with its first bytes. */
            if (h.size > VBLK_VU_MAX_PAYLOAD)
                return -EPROTO;
            want = VBLK_VU_HDR_SIZE + h.size - rx->have;
            if (want == 0)
                return rx->fd_overflow ? -EPROTO : (int)rx->have;
        }
        union {
            struct cmsghdr align;
            uint8_t buf[CMSG_SPACE(VBLK_VU_MAX_FDS * sizeof(int))];
        } ctl;
        struct iovec iov = {rx->buf + rx->have, want};
        struct msghdr mh = {
            .msg_iov = &iov,
            .msg_iovlen = 1,
            .msg_control = ctl.buf,
            .msg_controllen = sizeof(ctl.buf),
        };
        ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -errno;
        }
        take_fds(rx, &mh);
        if (mh.msg_flags & MSG_CTRUNC)
            rx->fd_overflow = true;
        if (n == 0)
            return -ECONNRESET;
        rx->have += (size_t)n;
    }
}

int vu_send(int sock, const void *buf, size_t len, int fd)
{
    union vu_fd_cmsg ctl;
    struct iovec iov = {(void *)buf, len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0)
        vu_attach_fd(&mh, &ctl, fd);
    for (;;) {
        ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        /* Replies are a few hundred bytes; a partial send means the peer
         * stopped reading. */
        return (size_t)n == len ? 0 : -EPROTO;
    }
}
