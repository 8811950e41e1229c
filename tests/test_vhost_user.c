/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user back-end over a socketpair: this file plays the front-end
 * (messages with fds, a memfd as guest memory, rings built with the
 * library's driver side) and calls vblk_vu_dev_handle_socket() /
 * vblk_vu_queue_process() on the device. Every test counts the fds in
 * /proc/self/fd before and after, so any fd the device kept or leaked
 * fails it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "transport/vhost-user/vu_internal.h"
#include "fd_count.h"
#include "virtioblk/advanced_msg.h"
#include "virtioblk/virtioblk.h"

#define MEM_SIZE    (1u << 20)
#define GPA_BASE    0x40000000ull
#define UA_BASE     0x7f0000000000ull
#define QSIZE       16
#define DISK_SIZE   (4u << 20)
#define RING_OFF(q) ((size_t)(q) * (64u << 10))
#define DATA_OFF    (256u << 10)

struct fe {
    int fds_before;
    int sock;
    struct vblk_vu_dev *d;
    struct vblk_backend be;
    bool own_be;
    int memfd;
    uint8_t *mem;
    int kick[2], call[2];
    struct vblk_drv_vq drv[2];
    void *drv_state[2];
    bool packed;
};

/* A new device instance over f->be, connected to f->sock. */
static void fe_new_device(struct fe *f, const struct vblk_vu_opts *opts)
{
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, DISK_SIZE);
    p.num_queues = 2;
    p.queue_size = 256;
    memcpy(p.serial, "unit-serial", 11);
    assert_int_equal(vblk_vu_dev_create(&p, &f->be, opts, &f->d), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    f->sock = sv[0];
    assert_int_equal(vblk_vu_dev_attach(f->d, sv[1]), 0);
}

/* A device over @be (NULL: a RAM disk of DISK_SIZE bytes, destroyed with
 * the device; otherwise the caller's). */
static struct fe *fe_new_be(const struct vblk_vu_opts *opts, const struct vblk_backend *be)
{
    struct fe *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->fds_before = count_fds();
    f->own_be = !be;
    if (be)
        f->be = *be;
    else
        assert_int_equal(vblk_backend_memory_create(DISK_SIZE, &f->be), 0);
    fe_new_device(f, opts);
    f->memfd = memfd_create("guest", MFD_CLOEXEC);
    assert_true(f->memfd >= 0);
    assert_int_equal(ftruncate(f->memfd, MEM_SIZE), 0);
    f->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
    assert_true(f->mem != MAP_FAILED);
    for (int i = 0; i < 2; i++) {
        f->kick[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        f->call[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    }
    return f;
}

static struct fe *fe_new(const struct vblk_vu_opts *opts)
{
    return fe_new_be(opts, NULL);
}

static void fe_free(struct fe *f)
{
    vblk_vu_dev_destroy(f->d);
    if (f->own_be)
        vblk_backend_destroy(&f->be);
    close(f->sock);
    munmap(f->mem, MEM_SIZE);
    close(f->memfd);
    for (int i = 0; i < 2; i++) {
        close(f->kick[i]);
        close(f->call[i]);
        free(f->drv_state[i]);
    }
    int fds_before = f->fds_before;
    free(f);
    if (count_fds() != fds_before && getenv("VU_TEST_LSFD")) {
        char cmd[64];
        snprintf(cmd, sizeof(cmd), "ls -l /proc/%d/fd >&2", (int)getpid());
        (void)system(cmd);
    }
    assert_int_equal(count_fds(), fds_before);
}

static uint64_t ua_of_gpa(uint64_t gpa)
{
    return gpa - GPA_BASE + UA_BASE;
}

/* Sends one message; the device handles it at once. Returns what
 * vblk_vu_dev_handle_socket() returned. */
static int fe_send(struct fe *f, uint32_t req, uint32_t flags, const void *payload, uint32_t size,
                   const int *fds, unsigned nfds)
{
    uint8_t buf[VBLK_VU_MAX_MSG + 64];
    struct vu_hdr h = {req, VU_VERSION | flags, size};
    memcpy(buf, &h, sizeof(h));
    if (size)
        memcpy(buf + sizeof(h), payload, size);
    union {
        struct cmsghdr align;
        uint8_t b[CMSG_SPACE(16 * sizeof(int))];
    } ctl;
    struct iovec iov = {buf, sizeof(h) + size};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.b;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    assert_int_equal(sendmsg(f->sock, &mh, 0), (ssize_t)iov.iov_len);
    return vblk_vu_dev_handle_socket(f->d);
}

/* Reads one reply. Returns its payload size, or -1 if there is none. */
static int fe_recv(struct fe *f, uint32_t req, void *payload, size_t cap, int *fd)
{
    uint8_t buf[VBLK_VU_MAX_MSG];
    union {
        struct cmsghdr align;
        uint8_t b[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct iovec iov = {buf, sizeof(buf)};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b)};
    ssize_t n = recvmsg(f->sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return -1;
    struct vu_hdr h;
    assert_true(n >= (ssize_t)sizeof(h));
    memcpy(&h, buf, sizeof(h));
    assert_int_equal(h.request, req);
    assert_int_equal(h.flags, VU_VERSION | VU_FLAG_REPLY);
    assert_int_equal(h.size, n - (ssize_t)sizeof(h));
    assert_true(h.size <= cap);
    memcpy(payload, buf + sizeof(h), h.size);
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    if (fd) {
        *fd = -1;
        if (c)
            memcpy(fd, CMSG_DATA(c), sizeof(int));
    } else {
        assert_null(c);
    }
    return (int)h.size;
}

/* A request with need_reply: returns the ack value (0 ok). */
static uint64_t fe_ack(struct fe *f, uint32_t req, const void *payload, uint32_t size,
                       const int *fds, unsigned nfds)
{
    assert_int_equal(fe_send(f, req, VU_FLAG_NEED_REPLY, payload, size, fds, nfds), 0);
    uint64_t v = 99;
    assert_int_equal(fe_recv(f, req, &v, sizeof(v), NULL), 8);
    return v;
}

static uint64_t fe_get_u64(struct fe *f, uint32_t req)
{
    assert_int_equal(fe_send(f, req, 0, NULL, 0, NULL, 0), 0);
    uint64_t v = 0;
    assert_int_equal(fe_recv(f, req, &v, sizeof(v), NULL), 8);
    return v;
}

static void fe_u64(struct fe *f, uint32_t req, uint64_t v, uint64_t want_ack)
{
    assert_int_equal(fe_ack(f, req, &v, 8, NULL, 0), want_ack);
}

/* SET_OWNER, protocol features, virtio features (split or packed). */
static void fe_negotiate(struct fe *f, bool packed)
{
    assert_int_equal(fe_ack(f, VU_SET_OWNER, NULL, 0, NULL, 0), 0);
    uint64_t feat = fe_get_u64(f, VU_GET_FEATURES);
    assert_true(feat & VBLK_BIT(VBLK_VU_F_PROTOCOL_FEATURES));
    assert_true(feat & VBLK_BIT(VBLK_VU_F_LOG_ALL));
    assert_true(feat & VBLK_BIT(VBLK_F_RING_PACKED));
    uint64_t proto = fe_get_u64(f, VU_GET_PROTOCOL_FEATURES);
    assert_true(proto & VBLK_BIT(VBLK_VU_PROTOCOL_F_REPLY_ACK));
    assert_true(proto & VBLK_BIT(VBLK_VU_PROTOCOL_F_CONFIG));
    assert_true(proto & VBLK_BIT(VBLK_VU_PROTOCOL_F_INFLIGHT_SHMFD));
    assert_int_equal(fe_send(f, VU_SET_PROTOCOL_FEATURES, 0, &proto, 8, NULL, 0), 0);
    assert_int_equal(fe_get_u64(f, VU_GET_QUEUE_NUM), 2);
    if (!packed)
        feat &= ~VBLK_BIT(VBLK_F_RING_PACKED);
    fe_u64(f, VU_SET_FEATURES, feat, 0);
    f->packed = packed;
}

static void fe_mem_table(struct fe *f)
{
    struct vu_mem_table t = {.nregions = 1};
    t.regions[0] = (struct vu_region_desc){GPA_BASE, MEM_SIZE, UA_BASE, 0};
    assert_int_equal(fe_ack(f, VU_SET_MEM_TABLE, &t, 8 + 32, &f->memfd, 1), 0);
}

static void fe_vring_msgs(struct fe *f, uint16_t q, uint32_t base);

/* Builds the driver side of queue @q and configures the device ring. */
static void fe_vring(struct fe *f, uint16_t q, uint32_t base)
{
    struct vblk_drv_vq_config dc = {
        .size = QSIZE,
        .packed = f->packed,
        .event_idx = true,
        .indirect = true,
        .indirect_max = 8,
        .addr_delta = GPA_BASE - (uintptr_t)f->mem,
    };
    size_t st = vblk_drv_vq_state_size(&dc);
    free(f->drv_state[q]);
    f->drv_state[q] = aligned_alloc(16, (st + 15) & ~(size_t)15);
    assert_int_equal(vblk_drv_vq_init(&f->drv[q], &dc, f->mem + RING_OFF(q),
                                      vblk_drv_vq_ring_size(&dc), f->drv_state[q], st),
                     0);
    fe_vring_msgs(f, q, base);
}

/* SET_VRING_NUM / BASE / ADDR for the driver ring already built. */
static void fe_vring_msgs(struct fe *f, uint16_t q, uint32_t base)
{
    struct vblk_vq_addrs a;
    vblk_drv_vq_addrs(&f->drv[q], &a);
    /* Packed rings: both wrap counters start at 1 (bits 15 and 31). */
    if (f->packed && base == 0)
        base = 1u << 15 | 1u << 31;
    struct vu_vring_state num = {q, QSIZE}, b = {q, base};
    assert_int_equal(fe_ack(f, VU_SET_VRING_NUM, &num, 8, NULL, 0), 0);
    assert_int_equal(fe_ack(f, VU_SET_VRING_BASE, &b, 8, NULL, 0), 0);
    struct vu_vring_addr va = {q, 0, ua_of_gpa(a.desc), ua_of_gpa(a.device), ua_of_gpa(a.driver),
                               0};
    assert_int_equal(fe_ack(f, VU_SET_VRING_ADDR, &va, sizeof(va), NULL, 0), 0);
}

static void fe_start(struct fe *f, uint16_t q)
{
    int call = dup(f->call[q]), kick = dup(f->kick[q]);
    uint64_t idx = q;
    assert_int_equal(fe_ack(f, VU_SET_VRING_CALL, &idx, 8, &call, 1), 0);
    assert_int_equal(fe_ack(f, VU_SET_VRING_KICK, &idx, 8, &kick, 1), 0);
    close(call);
    close(kick);
    struct vu_vring_state en = {q, 1};
    assert_int_equal(fe_ack(f, VU_SET_VRING_ENABLE, &en, 8, NULL, 0), 0);
}

/* One synchronous request through queue @q. Returns the status byte. */
static int fe_io(struct fe *f, uint16_t q, uint32_t type, uint64_t sector, void *buf, size_t len)
{
    struct vblk_drv_blk_frame *fr = (void *)(f->mem + DATA_OFF - 4096 + 64 * q);
    struct vblk_iov data = {buf, len};
    assert_int_equal(vblk_drv_blk_add(&f->drv[q], fr, type, sector, &data, buf ? 1 : 0, fr, false),
                     0);
    if (vblk_drv_vq_kick_prepare(&f->drv[q]))
        assert_int_equal(eventfd_write(f->kick[q], 1), 0);
    assert_true(vblk_vu_queue_process(f->d, q) >= 0);
    void *tok = NULL;
    uint32_t ulen;
    assert_int_equal(vblk_drv_vq_get_used(&f->drv[q], &tok, &ulen), 1);
    assert_ptr_equal(tok, fr);
    return fr->status;
}

static struct fe *fe_ready(bool packed)
{
    struct fe *f = fe_new(NULL);
    fe_negotiate(f, packed);
    fe_mem_table(f);
    fe_vring(f, 0, 0);
    fe_start(f, 0);
    return f;
}

/* ---- tests ---- */

static void io_roundtrip(bool packed)
{
    struct fe *f = fe_ready(packed);
    uint8_t *wbuf = f->mem + DATA_OFF, *rbuf = f->mem + DATA_OFF + 65536;
    for (size_t i = 0; i < 65536; i++)
        wbuf[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(fe_io(f, 0, VBLK_T_OUT, 8, wbuf, 65536), VBLK_S_OK);
    memset(rbuf, 0, 65536);
    assert_int_equal(fe_io(f, 0, VBLK_T_IN, 8, rbuf, 65536), VBLK_S_OK);
    assert_memory_equal(wbuf, rbuf, 65536);
    assert_int_equal(fe_io(f, 0, VBLK_T_GET_ID, 0, rbuf, VBLK_ID_BYTES), VBLK_S_OK);
    assert_memory_equal(rbuf, "unit-serial", 11);
    assert_int_equal(fe_io(f, 0, VBLK_T_FLUSH, 0, NULL, 0), VBLK_S_OK);
    eventfd_t calls = 0;
    assert_int_equal(eventfd_read(f->call[0], &calls), 0);
    assert_true(calls >= 1);

    /* GET_VRING_BASE stops the ring and reports where it is. */
    struct vu_vring_state st = {0, 0};
    assert_int_equal(fe_send(f, VU_GET_VRING_BASE, 0, &st, 8, NULL, 0), 0);
    assert_int_equal(fe_recv(f, VU_GET_VRING_BASE, &st, sizeof(st), NULL), 8);
    assert_int_equal(st.index, 0);
    if (packed) /* positions count descriptors: 3 + 3 + 3 + 2 */
        assert_int_equal(st.num, 11u | 1u << 15 | (11u | 1u << 15) << 16);
    else
        assert_int_equal(st.num, 4);
    assert_false(vblk_vu_queue_active(f->d, 0));
    struct vblk_transport_queue_stats qs;
    assert_int_equal(vblk_vu_queue_stats(f->d, 0, &qs), 0);
    assert_int_equal(qs.req.completed, 4);
    assert_int_equal(qs.starts, 1);
    fe_free(f);
}

static void test_split_io(void **state)
{
    (void)state;
    io_roundtrip(false);
}

static void test_packed_io(void **state)
{
    (void)state;
    io_roundtrip(true);
}

static void test_two_queues(void **state)
{
    (void)state;
    struct fe *f = fe_ready(false);
    fe_vring(f, 1, 0);
    fe_start(f, 1);
    uint8_t *buf = f->mem + DATA_OFF;
    memset(buf, 0x5a, 4096);
    assert_int_equal(fe_io(f, 1, VBLK_T_OUT, 0, buf, 4096), VBLK_S_OK);
    memset(buf, 0, 4096);
    assert_int_equal(fe_io(f, 0, VBLK_T_IN, 0, buf, 4096), VBLK_S_OK);
    assert_int_equal(buf[100], 0x5a);
    fe_free(f);
}

static void test_disable_enable(void **state)
{
    (void)state;
    struct fe *f = fe_ready(false);
    uint8_t *buf = f->mem + DATA_OFF;
    memset(buf, 0x11, 4096);
    assert_int_equal(fe_io(f, 0, VBLK_T_OUT, 0, buf, 4096), VBLK_S_OK);
    /* A disabled ring is not processed, and keeps its position. */
    struct vu_vring_state en = {0, 0};
    assert_int_equal(fe_ack(f, VU_SET_VRING_ENABLE, &en, 8, NULL, 0), 0);
    assert_false(vblk_vu_queue_active(f->d, 0));
    struct vblk_drv_blk_frame *fr = (void *)(f->mem + DATA_OFF - 4096);
    struct vblk_iov data = {buf, 4096};
    assert_int_equal(vblk_drv_blk_add(&f->drv[0], fr, VBLK_T_IN, 0, &data, 1, fr, false), 0);
    if (vblk_drv_vq_kick_prepare(&f->drv[0]))
        assert_int_equal(eventfd_write(f->kick[0], 1), 0);
    assert_int_equal(vblk_vu_queue_process(f->d, 0), 0);
    void *tok;
    uint32_t ulen;
    assert_int_equal(vblk_drv_vq_get_used(&f->drv[0], &tok, &ulen), 0);
    /* Enabled again: the waiting request is served. */
    en.num = 1;
    assert_int_equal(fe_ack(f, VU_SET_VRING_ENABLE, &en, 8, NULL, 0), 0);
    assert_true(vblk_vu_queue_active(f->d, 0));
    assert_true(vblk_vu_queue_process(f->d, 0) >= 0);
    assert_int_equal(vblk_drv_vq_get_used(&f->drv[0], &tok, &ulen), 1);
    assert_int_equal(fr->status, VBLK_S_OK);
    assert_int_equal(buf[4095], 0x11);
    en.num = 0;
    assert_int_equal(fe_ack(f, VU_SET_VRING_ENABLE, &en, 8, NULL, 0), 0);
    struct vu_vring_state st = {0, 0};
    assert_int_equal(fe_send(f, VU_GET_VRING_BASE, 0, &st, 8, NULL, 0), 0);
    assert_int_equal(fe_recv(f, VU_GET_VRING_BASE, &st, sizeof(st), NULL), 8);
    assert_int_equal(st.num, 2);
    fe_free(f);
}

static void test_unknown_request(void **state)
{
    (void)state;
    struct fe *f = fe_new(NULL);
    fe_negotiate(f, false);
    /* Unknown and unsupported requests are refused; the connection goes on. */
    assert_int_not_equal(fe_ack(f, 99, NULL, 0, NULL, 0), 0);
    assert_int_not_equal(fe_ack(f, VU_SEND_RARP, "\1\2\3\4\5\6\0\0", 8, NULL, 0), 0);
    int fd = eventfd(0, EFD_CLOEXEC);
    assert_int_not_equal(fe_ack(f, VU_SET_SLAVE_REQ_FD, NULL, 0, &fd, 1), 0);
    close(fd);
    assert_true(fe_get_u64(f, VU_GET_FEATURES) != 0);
    fe_free(f);
}

static void test_before_owner(void **state)
{
    (void)state;
    struct fe *f = fe_new(NULL);
    uint64_t proto = VBLK_BIT(VBLK_VU_PROTOCOL_F_REPLY_ACK);
    assert_int_equal(fe_send(f, VU_SET_PROTOCOL_FEATURES, 0, &proto, 8, NULL, 0), 0);
    struct vu_mem_table t = {.nregions = 1};
    t.regions[0] = (struct vu_region_desc){GPA_BASE, MEM_SIZE, UA_BASE, 0};
    int fd = dup(f->memfd);
    assert_int_not_equal(fe_ack(f, VU_SET_MEM_TABLE, &t, 8 + 32, &fd, 1), 0);
    close(fd);
    uint64_t feat = VBLK_BIT(VBLK_F_VERSION_1);
    assert_int_not_equal(fe_ack(f, VU_SET_FEATURES, &feat, 8, NULL, 0), 0);
    /* A request that must be answered with a ring state cannot be: the
     * connection ends, and the device takes the next one. */
    struct vu_vring_state st = {0, 0};
    assert_true(fe_send(f, VU_GET_VRING_BASE, 0, &st, 8, NULL, 0) < 0);
    vblk_vu_dev_detach(f->d);
    close(f->sock);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    f->sock = sv[0];
    assert_int_equal(vblk_vu_dev_attach(f->d, sv[1]), 0);
    fe_negotiate(f, false);
    fe_free(f);
}

static void test_before_mem_table(void **state)
{
    (void)state;
    struct fe *f = fe_new(NULL);
    fe_negotiate(f, false);
    struct vu_vring_state num = {0, QSIZE};
    assert_int_equal(fe_ack(f, VU_SET_VRING_NUM, &num, 8, NULL, 0), 0);
    struct vu_vring_addr va = {0, 0, UA_BASE, UA_BASE + 4096, UA_BASE + 8192, 0};
    assert_int_not_equal(fe_ack(f, VU_SET_VRING_ADDR, &va, sizeof(va), NULL, 0), 0);
    /* A kick for a ring that is not configured is refused and its fd closed. */
    int kick = eventfd(0, EFD_CLOEXEC);
    uint64_t idx = 0;
    assert_int_not_equal(fe_ack(f, VU_SET_VRING_KICK, &idx, 8, &kick, 1), 0);
    close(kick);
    fe_free(f);
}

static void test_bad_regions(void **state)
{
    (void)state;
    struct fe *f = fe_new(NULL);
    fe_negotiate(f, false);
    struct vu_mem_table t = {.nregions = 2};
    int fds[8];
    for (int i = 0; i < 8; i++)
        fds[i] = dup(f->memfd);
    /* Overlapping guest-physical ranges. */
    t.regions[0] = (struct vu_region_desc){GPA_BASE, MEM_SIZE / 2, UA_BASE, 0};
    t.regions[1] =
        (struct vu_region_desc){GPA_BASE + 4096, MEM_SIZE / 2, UA_BASE + MEM_SIZE, MEM_SIZE / 2};
    assert_int_not_equal(fe_ack(f, VU_SET_MEM_TABLE, &t, 8 + 64, fds, 2), 0);
    /* Overlapping user addresses. */
    t.regions[1] =
        (struct vu_region_desc){GPA_BASE + MEM_SIZE, MEM_SIZE / 2, UA_BASE + 4096, MEM_SIZE / 2};
    assert_int_not_equal(fe_ack(f, VU_SET_MEM_TABLE, &t, 8 + 64, fds, 2), 0);
    t.nregions = 1;
    /* Size 0, guest-physical and user-address wraps, beyond the file. */
    t.regions[0] = (struct vu_region_desc){GPA_BASE, 0, UA_BASE, 0};
    assert_int_not_equal(fe_ack(f, VU_SET_MEM_TABLE, &t, 8 + 32, fds, 1), 0);
    t.regions[0] = (struct vu_region_desc){UINT64_MAX - 4095, 8192, UA_BASE, 0};
    assert_int_not_equal(fe_ack(f, VU_SET_MEM_TABLE, &t, 8 + 32, fds, 1), 0);
    t.regions[0] = (struct vu_region_desc){GPA_BASE, 8192, UINT64_MAX - 4095, 0};
    assert_int_not_equal(fe_ack(f, VU_SET_MEM_TABLE, &t, 8 + 32, fds, 1), 0);
    t.regions[0] = (struct vu_region_desc){GPA_BASE, MEM_SIZE, UA_BASE, 4096};
    assert_int_not_equal(fe_ack(f, VU_SET_MEM_TABLE, &t, 8 + 32, fds, 1), 0);
    t.regions[0] = (struct vu_region_desc){GPA_BASE, 4096, UA_BASE, UINT64_MAX - 100};
    assert_int_not_equal(fe_ack(f, VU_SET_MEM_TABLE, &t, 8 + 32, fds, 1), 0);
    /* A pipe is not memory. */
    int pfd[2];
    assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
    t.regions[0] = (struct vu_region_desc){GPA_BASE, 4096, UA_BASE, 0};
    assert_int_not_equal(fe_ack(f, VU_SET_MEM_TABLE, &t, 8 + 32, &pfd[0], 1), 0);
    close(pfd[0]);
    close(pfd[1]);
    /* Fewer fds than regions, more fds than regions, no fds, 9 regions. */
    t.nregions = 2;
    t.regions[1] = (struct vu_region_desc){GPA_BASE + MEM_SIZE, 4096, UA_BASE + MEM_SIZE, 0};
    assert_int_not_equal(fe_ack(f, VU_SET_MEM_TABLE, &t, 8 + 64, fds, 1), 0);
    t.nregions = 1;
    assert_int_not_equal(fe_ack(f, VU_SET_MEM_TABLE, &t, 8 + 32, fds, 3), 0);
    assert_int_not_equal(fe_ack(f, VU_SET_MEM_TABLE, &t, 8 + 32, NULL, 0), 0);
    t.nregions = 9;
    assert_int_not_equal(fe_ack(f, VU_SET_MEM_TABLE, &t, sizeof(t), fds, 8), 0);
    /* Payload shorter than the regions it announces. */
    t.nregions = 2;
    assert_int_not_equal(fe_ack(f, VU_SET_MEM_TABLE, &t, 8 + 32, fds, 2), 0);
    for (int i = 0; i < 8; i++)
        close(fds[i]);
    /* The device still works. */
    fe_mem_table(f);
    fe_free(f);
}

static void test_add_rem_region(void **state)
{
    (void)state;
    struct fe *f = fe_new(NULL);
    fe_negotiate(f, false);
    assert_int_equal(fe_get_u64(f, VU_GET_MAX_MEM_SLOTS), VBLK_VU_MAX_MEM_SLOTS);
    struct vu_mem_single one = {0, {GPA_BASE, MEM_SIZE / 2, UA_BASE, 0}};
    int fd = dup(f->memfd);
    assert_int_equal(fe_ack(f, VU_ADD_MEM_REG, &one, sizeof(one), &fd, 1), 0);
    /* Overlap with the region just added. */
    struct vu_mem_single two = {0, {GPA_BASE + 4096, MEM_SIZE / 2, UA_BASE + MEM_SIZE, 0}};
    assert_int_not_equal(fe_ack(f, VU_ADD_MEM_REG, &two, sizeof(two), &fd, 1), 0);
    two.region = (struct vu_region_desc){GPA_BASE + MEM_SIZE / 2, MEM_SIZE / 2,
                                         UA_BASE + MEM_SIZE / 2, MEM_SIZE / 2};
    assert_int_equal(fe_ack(f, VU_ADD_MEM_REG, &two, sizeof(two), &fd, 1), 0);
    /* No fd for ADD; removing something unknown; REM with a stray fd. */
    assert_int_not_equal(fe_ack(f, VU_ADD_MEM_REG, &two, sizeof(two), NULL, 0), 0);
    struct vu_mem_single bogus = {0, {GPA_BASE, 4096, UA_BASE, 0}};
    assert_int_not_equal(fe_ack(f, VU_REM_MEM_REG, &bogus, sizeof(bogus), NULL, 0), 0);
    assert_int_equal(fe_ack(f, VU_REM_MEM_REG, &two, sizeof(two), &fd, 1), 0);
    close(fd);
    /* Rings in the remaining region work. */
    fe_vring(f, 0, 0);
    fe_start(f, 0);
    uint8_t *buf = f->mem + DATA_OFF;
    assert_int_equal(fe_io(f, 0, VBLK_T_IN, 0, buf, 512), VBLK_S_OK);
    /* Removing the region under a running ring breaks it, nothing worse. */
    assert_int_equal(fe_ack(f, VU_REM_MEM_REG, &one, sizeof(one), NULL, 0), 0);
    assert_int_equal(fe_get_u64(f, VU_GET_STATUS) & VBLK_STATUS_DEVICE_NEEDS_RESET,
                     VBLK_STATUS_DEVICE_NEEDS_RESET);
    fe_free(f);
}

static void test_fds_on_wrong_messages(void **state)
{
    (void)state;
    struct fe *f = fe_new(NULL);
    fe_negotiate(f, false);
    int fd = eventfd(0, EFD_CLOEXEC);
    /* A request without a reply body: refused, fd closed. */
    assert_int_not_equal(fe_ack(f, VU_SET_OWNER, NULL, 0, &fd, 1), 0);
    struct vu_vring_state en = {0, 1};
    assert_int_not_equal(fe_ack(f, VU_SET_VRING_ENABLE, &en, 8, &fd, 1), 0);
    /* SET_VRING_CALL with the no-fd flag and an fd anyway. */
    uint64_t nofd = VU_VRING_NOFD;
    assert_int_not_equal(fe_ack(f, VU_SET_VRING_CALL, &nofd, 8, &fd, 1), 0);
    /* ... and without the flag and without an fd. */
    uint64_t idx = 0;
    assert_int_not_equal(fe_ack(f, VU_SET_VRING_CALL, &idx, 8, NULL, 0), 0);
    /* More fds than a message may carry. */
    int many[12];
    for (int i = 0; i < 12; i++)
        many[i] = fd;
    assert_true(fe_send(f, VU_SET_OWNER, 0, NULL, 0, many, 12) < 0);
    close(fd);
    fe_free(f);
}

static void test_fd_on_get_request(void **state)
{
    (void)state;
    struct fe *f = fe_new(NULL);
    int fd = eventfd(0, EFD_CLOEXEC);
    /* A GET with an fd cannot be answered sensibly: the connection ends. */
    assert_true(fe_send(f, VU_GET_FEATURES, 0, NULL, 0, &fd, 1) < 0);
    close(fd);
    fe_free(f);
}

static void test_ring_checks(void **state)
{
    (void)state;
    struct fe *f = fe_new(NULL);
    fe_negotiate(f, false);
    fe_mem_table(f);
    /* Queue index out of range, for every kind of ring message. */
    struct vu_vring_state bad = {2, QSIZE};
    assert_int_not_equal(fe_ack(f, VU_SET_VRING_NUM, &bad, 8, NULL, 0), 0);
    assert_int_not_equal(fe_ack(f, VU_SET_VRING_BASE, &bad, 8, NULL, 0), 0);
    bad.num = 1;
    assert_int_not_equal(fe_ack(f, VU_SET_VRING_ENABLE, &bad, 8, NULL, 0), 0);
    struct vu_vring_addr va = {200, 0, UA_BASE, UA_BASE + 4096, UA_BASE + 8192, 0};
    assert_int_not_equal(fe_ack(f, VU_SET_VRING_ADDR, &va, sizeof(va), NULL, 0), 0);
    int fd = eventfd(0, EFD_CLOEXEC);
    uint64_t idx = 77;
    assert_int_not_equal(fe_ack(f, VU_SET_VRING_CALL, &idx, 8, &fd, 1), 0);
    idx = 1u << 12; /* bits beyond index and no-fd flag */
    assert_int_not_equal(fe_ack(f, VU_SET_VRING_KICK, &idx, 8, &fd, 1), 0);
    close(fd);
    /* Queue sizes: 0, > 32768, above the device maximum, not a power of two. */
    uint32_t sizes[] = {0, 32769, 65536, 512, 100};
    for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct vu_vring_state num = {0, sizes[i]};
        assert_int_not_equal(fe_ack(f, VU_SET_VRING_NUM, &num, 8, NULL, 0), 0);
    }
    /* Ring addresses outside guest memory, or straddling its end. */
    struct vu_vring_state num = {0, QSIZE};
    assert_int_equal(fe_ack(f, VU_SET_VRING_NUM, &num, 8, NULL, 0), 0);
    va = (struct vu_vring_addr){0, 0, UA_BASE + MEM_SIZE, UA_BASE + 4096, UA_BASE + 8192, 0};
    assert_int_not_equal(fe_ack(f, VU_SET_VRING_ADDR, &va, sizeof(va), NULL, 0), 0);
    va = (struct vu_vring_addr){0, 0, UA_BASE, UA_BASE + MEM_SIZE - 8, UA_BASE + 8192, 0};
    assert_int_not_equal(fe_ack(f, VU_SET_VRING_ADDR, &va, sizeof(va), NULL, 0), 0);
    va = (struct vu_vring_addr){0, 0, 0, 16, 32, 0};
    assert_int_not_equal(fe_ack(f, VU_SET_VRING_ADDR, &va, sizeof(va), NULL, 0), 0);
    /* Misaligned rings pass translation but the ring cannot start. */
    va = (struct vu_vring_addr){0, 0, UA_BASE + 8, UA_BASE + 4096, UA_BASE + 8192, 0};
    assert_int_equal(fe_ack(f, VU_SET_VRING_ADDR, &va, sizeof(va), NULL, 0), 0);
    int kick = eventfd(0, EFD_CLOEXEC);
    idx = 0;
    assert_int_not_equal(fe_ack(f, VU_SET_VRING_KICK, &idx, 8, &kick, 1), 0);
    close(kick);
    /* GET_VRING_BASE of a ring never started: the base it was given. */
    struct vu_vring_state b = {1, 7};
    assert_int_equal(fe_ack(f, VU_SET_VRING_BASE, &b, 8, NULL, 0), 0);
    struct vu_vring_state st = {1, 0};
    assert_int_equal(fe_send(f, VU_GET_VRING_BASE, 0, &st, 8, NULL, 0), 0);
    assert_int_equal(fe_recv(f, VU_GET_VRING_BASE, &st, sizeof(st), NULL), 8);
    assert_int_equal(st.num, 7);
    /* Out of range: no state to report, so the connection ends. */
    st.index = 9;
    assert_true(fe_send(f, VU_GET_VRING_BASE, 0, &st, 8, NULL, 0) < 0);
    fe_free(f);
}

static void test_bad_sizes(void **state)
{
    (void)state;
    struct fe *f = fe_new(NULL);
    fe_negotiate(f, false);
    /* A u64 request with 4 bytes, a ring state with 12, a payload larger
     * than the request allows: refused, the stream stays in sync. */
    assert_int_not_equal(fe_ack(f, VU_SET_FEATURES, "\0\0\0\0", 4, NULL, 0), 0);
    uint8_t junk[VBLK_VU_MAX_PAYLOAD] = {0};
    assert_int_not_equal(fe_ack(f, VU_SET_VRING_NUM, junk, 12, NULL, 0), 0);
    assert_int_not_equal(fe_ack(f, VU_SET_OWNER, junk, 64, NULL, 0), 0);
    /* GET_CONFIG whose size disagrees with the payload. */
    struct vu_config c = {0, 200, 0, {0}};
    assert_int_equal(fe_send(f, VU_GET_CONFIG, 0, &c, 12 + 8, NULL, 0), 0);
    assert_int_equal(fe_recv(f, VU_GET_CONFIG, &c, sizeof(c), NULL), 0);
    assert_true(fe_get_u64(f, VU_GET_FEATURES) != 0);
    /* A size larger than any message: the stream cannot be resynced. */
    struct vu_hdr h = {VU_SET_OWNER, VU_VERSION, 100000};
    assert_int_equal(write(f->sock, &h, sizeof(h)), sizeof(h));
    assert_true(vblk_vu_dev_handle_socket(f->d) < 0);
    fe_free(f);
}

static void test_truncated(void **state)
{
    (void)state;
    struct fe *f = fe_new(NULL);
    fe_negotiate(f, false);
    /* Half a header, then nothing yet: wait. Then the peer goes away. */
    struct vu_hdr h = {VU_SET_FEATURES, VU_VERSION, 8};
    assert_int_equal(write(f->sock, &h, 6), 6);
    assert_int_equal(vblk_vu_dev_handle_socket(f->d), 0);
    assert_int_equal(write(f->sock, (uint8_t *)&h + 6, 6), 6);
    assert_int_equal(write(f->sock, "\1\2", 2), 2);
    assert_int_equal(vblk_vu_dev_handle_socket(f->d), 0);
    shutdown(f->sock, SHUT_WR);
    assert_int_equal(vblk_vu_dev_handle_socket(f->d), -ECONNRESET);
    /* A wrong version ends the connection too. */
    vblk_vu_dev_detach(f->d);
    close(f->sock);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    f->sock = sv[0];
    assert_int_equal(vblk_vu_dev_attach(f->d, sv[1]), 0);
    h = (struct vu_hdr){VU_GET_FEATURES, 2, 0};
    assert_int_equal(write(f->sock, &h, sizeof(h)), sizeof(h));
    assert_true(vblk_vu_dev_handle_socket(f->d) < 0);
    fe_free(f);
}

static void test_config_and_status(void **state)
{
    (void)state;
    struct fe *f = fe_new(NULL);
    fe_negotiate(f, false);
    struct vu_config c = {0, VBLK_CONFIG_SIZE_NO_ZONED, 0, {0}};
    assert_int_equal(fe_send(f, VU_GET_CONFIG, 0, &c, 12 + c.size, NULL, 0), 0);
    assert_int_equal(fe_recv(f, VU_GET_CONFIG, &c, sizeof(c), NULL), 12 + 72);
    struct vblk_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    memcpy(&cfg, c.data, VBLK_CONFIG_SIZE_NO_ZONED);
    assert_int_equal(cfg.capacity, DISK_SIZE / 512);
    assert_int_equal(cfg.num_queues, 2);
    assert_int_equal(cfg.writeback, 1);
    /* Beyond the config space: zeros; beyond 256 bytes: an empty reply. */
    c = (struct vu_config){100, 8, 0, {0}};
    assert_int_equal(fe_send(f, VU_GET_CONFIG, 0, &c, 12 + 8, NULL, 0), 0);
    assert_int_equal(fe_recv(f, VU_GET_CONFIG, &c, sizeof(c), NULL), 12 + 8);
    c = (struct vu_config){250, 8, 0, {0}};
    assert_int_equal(fe_send(f, VU_GET_CONFIG, 0, &c, 12 + 8, NULL, 0), 0);
    assert_int_equal(fe_recv(f, VU_GET_CONFIG, &c, sizeof(c), NULL), 0);
    /* WCE: write-through, then back; capacity is read-only. */
    c = (struct vu_config){offsetof(struct vblk_config, writeback), 1, 0, {0}};
    assert_int_equal(fe_ack(f, VU_SET_CONFIG, &c, 13, NULL, 0), 0);
    assert_false(vblk_dev_writeback(vblk_vu_dev_blk(f->d)));
    c.data[0] = 1;
    assert_int_equal(fe_ack(f, VU_SET_CONFIG, &c, 13, NULL, 0), 0);
    assert_true(vblk_dev_writeback(vblk_vu_dev_blk(f->d)));
    c = (struct vu_config){0, 8, 0, {1}};
    assert_int_not_equal(fe_ack(f, VU_SET_CONFIG, &c, 20, NULL, 0), 0);
    c = (struct vu_config){250, 10, 0, {1}};
    assert_int_not_equal(fe_ack(f, VU_SET_CONFIG, &c, 22, NULL, 0), 0);
    fe_u64(f, VU_SET_STATUS, 15, 0);
    assert_int_equal(fe_get_u64(f, VU_GET_STATUS), 15);
    /* Features not offered, or without VERSION_1. */
    fe_u64(f, VU_SET_FEATURES, VBLK_BIT(VBLK_F_VERSION_1) | VBLK_BIT(60), 1);
    fe_u64(f, VU_SET_FEATURES, VBLK_BIT(VBLK_F_FLUSH), 1);
    uint64_t proto = 1ull << 40;
    assert_int_not_equal(fe_ack(f, VU_SET_PROTOCOL_FEATURES, &proto, 8, NULL, 0), 0);
    fe_free(f);
}

static void test_dirty_log(void **state)
{
    (void)state;
    struct fe *f = fe_ready(false);
    int lfd = memfd_create("log", MFD_CLOEXEC);
    assert_int_equal(ftruncate(lfd, 65536), 0);
    uint8_t *log = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_SHARED, lfd, 0);
    assert_true(log != MAP_FAILED);
    /* Size or offset wrapping, or past the end of the file. */
    struct vu_log bad[] = {{64, UINT64_MAX - 10}, {UINT64_MAX, 4096}, {65536, 4096}, {0, 0}};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(fe_send(f, VU_SET_LOG_BASE, 0, &bad[i], sizeof(bad[i]), &lfd, 1), 0);
        uint64_t v = 0;
        assert_int_equal(fe_recv(f, VU_SET_LOG_BASE, &v, sizeof(v), NULL), 8);
        assert_int_not_equal(v, 0);
    }
    /* The log covers guest-physical addresses up to GPA_BASE + MEM_SIZE. */
    uint64_t pages = (GPA_BASE + MEM_SIZE) / 4096;
    struct vu_log lg = {pages / 8, 0};
    assert_true(lg.size <= 65536 * 2);
    assert_int_equal(ftruncate(lfd, (off_t)lg.size), 0);
    munmap(log, 65536);
    log = mmap(NULL, lg.size, PROT_READ | PROT_WRITE, MAP_SHARED, lfd, 0);
    assert_int_equal(fe_send(f, VU_SET_LOG_BASE, 0, &lg, sizeof(lg), &lfd, 1), 0);
    uint64_t v = 1;
    assert_int_equal(fe_recv(f, VU_SET_LOG_BASE, &v, sizeof(v), NULL), 8);
    assert_int_equal(v, 0);
    uint64_t feat = vblk_dev_driver_features(vblk_vu_dev_blk(f->d)) |
                    VBLK_BIT(VBLK_VU_F_PROTOCOL_FEATURES) | VBLK_BIT(VBLK_VU_F_LOG_ALL);
    fe_u64(f, VU_SET_FEATURES, feat, 0);
    /* A read writes guest memory: its pages must be logged. */
    uint8_t *buf = f->mem + DATA_OFF + 8192;
    assert_int_equal(fe_io(f, 0, VBLK_T_IN, 0, buf, 4096), VBLK_S_OK);
    uint64_t page = (GPA_BASE + DATA_OFF + 8192) / 4096;
    assert_true(log[page / 8] & (1u << (page % 8)));
    munmap(log, lg.size);
    close(lfd);
    fe_free(f);
}

struct split_desc_state {
    uint8_t inflight;
    uint8_t pad[5];
    uint16_t next;
    uint64_t counter;
};

static void test_inflight_resubmit(void **state)
{
    (void)state;
    struct fe *f = fe_new(NULL);
    fe_negotiate(f, false);
    fe_mem_table(f);
    /* Geometry checks first. */
    struct vu_inflight in = {0, 0, 3, QSIZE};
    assert_int_equal(fe_send(f, VU_GET_INFLIGHT_FD, 0, &in, sizeof(in), NULL, 0), 0);
    assert_int_equal(fe_recv(f, VU_GET_INFLIGHT_FD, &in, sizeof(in), NULL), sizeof(in));
    assert_int_equal(in.mmap_size, 0);
    in = (struct vu_inflight){0, 0, 1, QSIZE};
    int ifd = -1;
    assert_int_equal(fe_send(f, VU_GET_INFLIGHT_FD, 0, &in, sizeof(in), NULL, 0), 0);
    assert_int_equal(fe_recv(f, VU_GET_INFLIGHT_FD, &in, sizeof(in), &ifd), sizeof(in));
    assert_true(ifd >= 0);
    assert_true(in.mmap_size >= 16 + 16 * QSIZE);
    struct vu_inflight small = in;
    small.mmap_size = 64;
    assert_int_not_equal(fe_ack(f, VU_SET_INFLIGHT_FD, &small, sizeof(small), &ifd, 1), 0);

    /* Pretend a previous back-end fetched the chain at avail[0] and died:
     * the region says head H is in flight, the used ring is empty. */
    uint8_t *region = mmap(NULL, in.mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, ifd, 0);
    assert_true(region != MAP_FAILED);
    fe_vring(f, 0, 0);
    uint8_t *buf = f->mem + DATA_OFF;
    memset(buf, 0xab, 4096);
    struct vblk_drv_blk_frame *fr = (void *)(f->mem + DATA_OFF - 4096);
    struct vblk_iov data = {buf, 4096};
    assert_int_equal(vblk_drv_blk_add(&f->drv[0], fr, VBLK_T_OUT, 16, &data, 1, fr, false), 0);
    (void)vblk_drv_vq_kick_prepare(&f->drv[0]);
    struct vblk_vq_addrs a;
    vblk_drv_vq_addrs(&f->drv[0], &a);
    uint16_t head = ((struct vblk_split_avail *)(f->mem + (a.driver - GPA_BASE)))->ring[0];
    uint16_t hdr[4] = {0, 0, 0, 0};
    uint64_t features = 0;
    memcpy(region, &features, 8);
    hdr[0] = 1;     /* version */
    hdr[1] = QSIZE; /* desc_num */
    memcpy(region + 8, hdr, sizeof(hdr));
    struct split_desc_state *ds = (void *)(region + 16);
    ds[head].counter = 5;
    ds[head].inflight = 1;
    assert_int_equal(fe_ack(f, VU_SET_INFLIGHT_FD, &in, sizeof(in), &ifd, 1), 0);
    fe_start(f, 0);
    void *tok;
    uint32_t ulen;
    assert_int_equal(vblk_drv_vq_get_used(&f->drv[0], &tok, &ulen), 1);
    assert_ptr_equal(tok, fr);
    assert_int_equal(fr->status, VBLK_S_OK);
    assert_int_equal(ds[head].inflight, 0);
    struct vblk_transport_queue_stats qs;
    assert_int_equal(vblk_vu_queue_stats(f->d, 0, &qs), 0);
    assert_int_equal(qs.resubmitted, 1);
    /* The ring goes on after the resubmitted chain. */
    memset(buf, 0, 4096);
    assert_int_equal(fe_io(f, 0, VBLK_T_IN, 16, buf, 4096), VBLK_S_OK);
    assert_int_equal(buf[4095], 0xab);
    struct vu_vring_state st = {0, 0};
    assert_int_equal(fe_send(f, VU_GET_VRING_BASE, 0, &st, 8, NULL, 0), 0);
    assert_int_equal(fe_recv(f, VU_GET_VRING_BASE, &st, sizeof(st), NULL), 8);
    assert_int_equal(st.num, 2);
    munmap(region, in.mmap_size);
    close(ifd);
    fe_free(f);
}

/* ---- packed rings: in-flight tracking across a back-end restart ---- */

/* The packed layout of the in-flight region (vhost-user specification):
 * a 32-byte header, then 32 bytes per descriptor. */
#define PK_USED_IDX     16u
#define PK_OLD_USED_IDX 18u
#define PK_DESC(i)      (32u + 32u * (uint32_t)(i))

#define HOLD_MAX 8

/* A RAM disk that can hold requests instead of completing them. */
struct hold_be {
    struct vblk_backend_ops ops;
    uint8_t *disk;
    bool hold;
    unsigned nheld;
    struct vblk_req *held[HOLD_MAX];
    unsigned writes; /* OUT requests executed */
};

static uint8_t hold_io(struct hold_be *h, struct vblk_req *r)
{
    uint64_t off = r->sector * 512;
    if (r->type != VBLK_T_IN && r->type != VBLK_T_OUT)
        return VBLK_S_OK;
    if (off + r->len > DISK_SIZE)
        return VBLK_S_IOERR;
    for (unsigned i = 0; i < r->niov; i++) {
        if (r->type == VBLK_T_OUT)
            memcpy(h->disk + off, r->iov[i].base, r->iov[i].len);
        else
            memcpy(r->iov[i].base, h->disk + off, r->iov[i].len);
        off += r->iov[i].len;
    }
    if (r->type == VBLK_T_OUT)
        h->writes++;
    return VBLK_S_OK;
}

static void hold_submit(void *be, void *qctx, struct vblk_req *r)
{
    struct hold_be *h = be;
    (void)qctx;
    if (h->hold) {
        assert_true(h->nheld < HOLD_MAX);
        h->held[h->nheld++] = r;
        return;
    }
    vblk_req_complete(r, hold_io(h, r));
}

static void hold_init(struct hold_be *h, struct vblk_backend *be)
{
    memset(h, 0, sizeof(*h));
    h->ops = (struct vblk_backend_ops){.version = VBLK_BACKEND_OPS_V1,
                                       .caps = VBLK_BACKEND_CAP_FLUSH,
                                       .name = "hold",
                                       .submit = hold_submit};
    h->disk = calloc(1, DISK_SIZE);
    assert_non_null(h->disk);
    *be = (struct vblk_backend){&h->ops, h, DISK_SIZE};
}

/* A memfd holding a copy of @len bytes at @src. */
static int memfd_copy(const void *src, size_t len)
{
    int fd = memfd_create("copy", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)len), 0);
    assert_int_equal(pwrite(fd, src, len, 0), (ssize_t)len);
    return fd;
}

/* Adds a request to queue 0 and kicks, without processing it. */
static void fe_add(struct fe *f, struct vblk_drv_blk_frame *fr, uint32_t type, uint64_t sector,
                   void *buf, size_t len)
{
    struct vblk_iov data = {buf, len};
    assert_int_equal(vblk_drv_blk_add(&f->drv[0], fr, type, sector, &data, 1, fr, false), 0);
    if (vblk_drv_vq_kick_prepare(&f->drv[0]))
        assert_int_equal(eventfd_write(f->kick[0], 1), 0);
}

enum crash_point {
    CRASH_RECORDED,    /* every used entry was recorded in the region */
    CRASH_UNRECORDED,  /* between a used entry and its record */
    CRASH_USED_IDX,    /* after the record's used index */
    CRASH_MARK_CLEARED /* after the record cleared the in-flight mark */
};

/* Three writes in flight on a packed ring of 16 that wraps under them; the
 * second completes, and its used entry overwrites the first one's
 * descriptors. The back-end dies (its memory is frozen from the guest's
 * view: the guest gets a copy) and a new instance takes over the guest
 * memory and the region as they were at @crash. */
static void packed_restart(enum crash_point crash)
{
    struct hold_be hb;
    struct vblk_backend be;
    hold_init(&hb, &be);
    struct fe *f = fe_new_be(NULL, &be);
    fe_negotiate(f, true);
    fe_mem_table(f);
    struct vu_inflight in = {0, 0, 1, QSIZE};
    int ifd = -1;
    assert_int_equal(fe_send(f, VU_GET_INFLIGHT_FD, 0, &in, sizeof(in), NULL, 0), 0);
    assert_int_equal(fe_recv(f, VU_GET_INFLIGHT_FD, &in, sizeof(in), &ifd), sizeof(in));
    assert_true(ifd >= 0);
    assert_true(in.mmap_size >= 32 + 32 * QSIZE);
    assert_int_equal(fe_ack(f, VU_SET_INFLIGHT_FD, &in, sizeof(in), &ifd, 1), 0);
    uint8_t *region = mmap(NULL, in.mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, ifd, 0);
    assert_true(region != MAP_FAILED);
    fe_vring(f, 0, 0);
    fe_start(f, 0);

    /* Four requests of 3 descriptors: the ring is at 12 of 16. */
    uint8_t *tmp = f->mem + DATA_OFF;
    for (int i = 0; i < 4; i++)
        assert_int_equal(fe_io(f, 0, VBLK_T_IN, 0, tmp, 512), VBLK_S_OK);

    /* Three writes in flight: slots 12-14, 15-1 (wrapping), 2-4. */
    struct vblk_drv_blk_frame *fr[3];
    uint8_t *buf[3];
    uint64_t sector[3] = {64, 128, 192};
    hb.hold = true;
    for (int i = 0; i < 3; i++) {
        fr[i] = (void *)(f->mem + DATA_OFF - 4096 + 256 + 64 * i);
        buf[i] = f->mem + DATA_OFF + (128u << 10) + 4096u * (unsigned)i;
        memset(buf[i], 0x11 * (i + 1), 4096);
        fe_add(f, fr[i], VBLK_T_OUT, sector[i], buf[i], 4096);
    }
    assert_int_equal(vblk_vu_queue_process(f->d, 0), 3);
    assert_int_equal(hb.nheld, 3);
    uint8_t *stale = malloc(in.mmap_size);
    assert_non_null(stale);
    memcpy(stale, region, in.mmap_size);
    /* The second one completes: its used entry goes to slot 12. */
    vblk_req_complete(hb.held[1], hold_io(&hb, hb.held[1]));
    assert_true(vblk_vu_queue_process(f->d, 0) >= 0);
    assert_int_equal(hb.writes, 1);

    /* The back-end dies here. What the new instance finds: */
    uint8_t *reg = region;
    if (crash != CRASH_RECORDED) {
        uint16_t used_now;
        memcpy(&used_now, region + PK_USED_IDX, 2);
        assert_int_equal(used_now, 15);
        if (crash >= CRASH_USED_IDX)
            memcpy(stale + PK_USED_IDX, &used_now, 2);
        if (crash == CRASH_MARK_CLEARED) {
            unsigned cleared = 0;
            for (unsigned i = 0; i < QSIZE; i++)
                if (stale[PK_DESC(i)] == 1 && region[PK_DESC(i)] == 0) {
                    stale[PK_DESC(i)] = 0;
                    cleared++;
                }
            assert_int_equal(cleared, 1);
        }
        reg = stale;
    }
    int ifd2 = memfd_copy(reg, in.mmap_size);
    int memfd2 = memfd_copy(f->mem, MEM_SIZE);
    assert_true(mmap(f->mem, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, memfd2, 0) ==
                f->mem);
    struct vblk_vu_dev *old_d = f->d;
    int old_sock = f->sock, old_memfd = f->memfd;
    f->memfd = memfd2;

    /* The new instance: the front-end sets the ring position it had at the
     * last start, which is stale. */
    hb.hold = false;
    unsigned nheld = hb.nheld;
    hb.nheld = 0;
    fe_new_device(f, NULL);
    fe_negotiate(f, true);
    fe_mem_table(f);
    assert_int_equal(fe_ack(f, VU_SET_INFLIGHT_FD, &in, sizeof(in), &ifd2, 1), 0);
    fe_vring_msgs(f, 0, 0);
    fe_start(f, 0);
    struct vblk_transport_queue_stats qs;
    assert_int_equal(vblk_vu_queue_stats(f->d, 0, &qs), 0);
    assert_int_equal(qs.resubmitted, 2);

    /* The driver sees each request complete once: the second (used before
     * the crash), then the first and the third. */
    int order[3] = {1, 0, 2};
    for (int i = 0; i < 3; i++) {
        void *tok = NULL;
        uint32_t ulen;
        assert_int_equal(vblk_drv_vq_get_used(&f->drv[0], &tok, &ulen), 1);
        assert_ptr_equal(tok, fr[order[i]]);
        assert_int_equal(fr[order[i]]->status, VBLK_S_OK);
    }
    void *tok = NULL;
    uint32_t ulen;
    assert_int_equal(vblk_drv_vq_get_used(&f->drv[0], &tok, &ulen), 0);
    assert_int_equal(hb.writes, 3);
    for (int i = 0; i < 3; i++) {
        uint8_t want[4096];
        memset(want, 0x11 * (i + 1), sizeof(want));
        assert_memory_equal(hb.disk + sector[i] * 512, want, sizeof(want));
    }

    /* The ring goes on where it is: avail and used at 21 = 5 (wrap 0). */
    memset(tmp, 0x5a, 4096);
    assert_int_equal(fe_io(f, 0, VBLK_T_OUT, 256, tmp, 4096), VBLK_S_OK);
    memset(tmp, 0, 4096);
    assert_int_equal(fe_io(f, 0, VBLK_T_IN, 64, tmp, 4096), VBLK_S_OK);
    assert_int_equal(tmp[4095], 0x11);
    struct vu_vring_state st = {0, 0};
    assert_int_equal(fe_send(f, VU_GET_VRING_BASE, 0, &st, 8, NULL, 0), 0);
    assert_int_equal(fe_recv(f, VU_GET_VRING_BASE, &st, sizeof(st), NULL), 8);
    assert_int_equal(st.num, 11u | 11u << 16);
    /* Nothing is in flight any more, and the region says so. */
    uint8_t *r2 = mmap(NULL, in.mmap_size, PROT_READ, MAP_SHARED, ifd2, 0);
    assert_true(r2 != MAP_FAILED);
    for (unsigned i = 0; i < QSIZE; i++)
        assert_int_equal(r2[PK_DESC(i)], 0);
    uint16_t u, ou;
    memcpy(&u, r2 + PK_USED_IDX, 2);
    memcpy(&ou, r2 + PK_OLD_USED_IDX, 2);
    assert_int_equal(u, 11);
    assert_int_equal(ou, 11);
    munmap(r2, in.mmap_size);

    /* The old instance goes away (its requests end in its own memory). */
    for (unsigned i = 0; i < nheld; i++)
        if (i != 1)
            vblk_req_complete(hb.held[i], VBLK_S_IOERR);
    vblk_vu_dev_destroy(old_d);
    close(old_sock);
    close(old_memfd);
    munmap(region, in.mmap_size);
    free(stale);
    close(ifd);
    close(ifd2);
    fe_free(f);
    free(hb.disk);
}

static void test_inflight_packed_restart(void **state)
{
    (void)state;
    packed_restart(CRASH_RECORDED);
    packed_restart(CRASH_UNRECORDED);
    packed_restart(CRASH_USED_IDX);
    packed_restart(CRASH_MARK_CLEARED);
}

static uint32_t xorshift(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* The front-end writes garbage into a packed ring's region: while the ring
 * runs (the device only writes it), and before a restart (the device reads
 * it): the device neither crashes nor touches memory it should not; the
 * ring either runs or is reported broken. */
static void test_inflight_packed_hostile(void **state)
{
    (void)state;
    for (uint32_t seed = 1; seed <= 60; seed++) {
        struct fe *f = fe_new(NULL);
        fe_negotiate(f, true);
        fe_mem_table(f);
        struct vu_inflight in = {0, 0, 1, QSIZE};
        int ifd = -1;
        assert_int_equal(fe_send(f, VU_GET_INFLIGHT_FD, 0, &in, sizeof(in), NULL, 0), 0);
        assert_int_equal(fe_recv(f, VU_GET_INFLIGHT_FD, &in, sizeof(in), &ifd), sizeof(in));
        if (seed == 1) {
            /* A region that would not be 8-byte aligned. */
            int big = memfd_create("big", MFD_CLOEXEC);
            assert_int_equal(ftruncate(big, (off_t)in.mmap_size + 64), 0);
            struct vu_inflight odd = in;
            odd.mmap_offset = 4;
            assert_int_not_equal(fe_ack(f, VU_SET_INFLIGHT_FD, &odd, sizeof(odd), &big, 1), 0);
            odd.mmap_offset = 64;
            assert_int_equal(fe_ack(f, VU_SET_INFLIGHT_FD, &odd, sizeof(odd), &big, 1), 0);
            close(big);
        }
        assert_int_equal(fe_ack(f, VU_SET_INFLIGHT_FD, &in, sizeof(in), &ifd, 1), 0);
        uint8_t *region = mmap(NULL, in.mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, ifd, 0);
        assert_true(region != MAP_FAILED);
        uint32_t rnd = seed * 2654435761u;
        fe_vring(f, 0, 0);
        fe_start(f, 0);
        uint8_t *buf = f->mem + DATA_OFF;
        /* Rewritten under a running ring. */
        for (uint64_t i = 0; i < in.mmap_size; i++)
            region[i] = (uint8_t)xorshift(&rnd);
        assert_int_equal(fe_io(f, 0, VBLK_T_OUT, 8, buf, 4096), VBLK_S_OK);
        assert_int_equal(fe_io(f, 0, VBLK_T_IN, 8, buf, 4096), VBLK_S_OK);
        struct vu_vring_state st = {0, 0};
        assert_int_equal(fe_send(f, VU_GET_VRING_BASE, 0, &st, 8, NULL, 0), 0);
        assert_int_equal(fe_recv(f, VU_GET_VRING_BASE, &st, sizeof(st), NULL), 8);

        /* Garbage for the next start: a valid header at least, for most
         * seeds in-range positions and plausible lists too. */
        for (uint64_t i = 0; i < in.mmap_size; i++)
            region[i] = (uint8_t)xorshift(&rnd);
        uint16_t hdr[2] = {1, QSIZE};
        if (seed % 8)
            memcpy(region + 8, hdr, sizeof(hdr));
        if (seed % 4) {
            for (unsigned o = PK_USED_IDX; o < PK_USED_IDX + 4; o += 2) {
                uint16_t v = (uint16_t)(xorshift(&rnd) % QSIZE);
                memcpy(region + o, &v, 2);
            }
            region[20] = (uint8_t)(xorshift(&rnd) & 1);
            region[21] = (uint8_t)(xorshift(&rnd) & 1);
        }
        if (seed % 2) {
            for (unsigned i = 0; i < QSIZE; i++) {
                uint8_t *e = region + PK_DESC(i);
                uint16_t next = (uint16_t)(xorshift(&rnd) % (QSIZE + 2)),
                         last = (uint16_t)(xorshift(&rnd) % (QSIZE + 1)),
                         num = (uint16_t)(xorshift(&rnd) % 4),
                         id = (uint16_t)(xorshift(&rnd) % QSIZE),
                         flags = (uint16_t)(xorshift(&rnd) & 0x8087);
                uint32_t len = xorshift(&rnd) % 8192;
                uint64_t addr = GPA_BASE + DATA_OFF + (xorshift(&rnd) % 65536);
                e[0] = (uint8_t)(xorshift(&rnd) % 3 == 0);
                memcpy(e + 2, &next, 2);
                memcpy(e + 4, &last, 2);
                memcpy(e + 6, &num, 2);
                memcpy(e + 16, &id, 2);
                memcpy(e + 18, &flags, 2);
                memcpy(e + 20, &len, 4);
                memcpy(e + 24, &addr, 8);
            }
        }
        /* Requests available at the restart. */
        for (int i = 0; i < 2; i++) {
            struct vblk_drv_blk_frame *fr = (void *)(f->mem + DATA_OFF - 4096 + 256 + 64 * i);
            fe_add(f, fr, VBLK_T_IN, 0, buf + 8192 * (i + 1), 4096);
        }
        fe_vring_msgs(f, 0, st.num);
        int call = dup(f->call[0]), kick = dup(f->kick[0]);
        uint64_t idx = 0;
        assert_int_equal(fe_ack(f, VU_SET_VRING_CALL, &idx, 8, &call, 1), 0);
        (void)fe_ack(f, VU_SET_VRING_KICK, &idx, 8, &kick, 1);
        close(call);
        close(kick);
        struct vu_vring_state en = {0, 1};
        assert_int_equal(fe_ack(f, VU_SET_VRING_ENABLE, &en, 8, NULL, 0), 0);
        int rc = vblk_vu_queue_process(f->d, 0);
        assert_true(rc >= 0 || rc == -EIO);
        void *tok;
        uint32_t ulen;
        for (int i = 0; i < 2 * QSIZE; i++)
            if (vblk_drv_vq_get_used(&f->drv[0], &tok, &ulen) == 0)
                break;
        /* The device still answers. */
        assert_int_equal(fe_send(f, VU_GET_VRING_BASE, 0, &st, 8, NULL, 0), 0);
        assert_int_equal(fe_recv(f, VU_GET_VRING_BASE, &st, sizeof(st), NULL), 8);
        munmap(region, in.mmap_size);
        close(ifd);
        fe_free(f);
    }
}

static void test_reset_and_reconnect(void **state)
{
    (void)state;
    struct fe *f = fe_ready(true);
    uint8_t *buf = f->mem + DATA_OFF;
    assert_int_equal(fe_io(f, 0, VBLK_T_IN, 0, buf, 512), VBLK_S_OK);
    assert_int_equal(fe_ack(f, VU_RESET_DEVICE, NULL, 0, NULL, 0), 0);
    assert_false(vblk_vu_queue_active(f->d, 0));
    /* The front-end goes away with a ring running; the next one starts over. */
    fe_negotiate(f, false);
    fe_vring(f, 0, 0);
    fe_start(f, 0);
    vblk_vu_dev_detach(f->d);
    close(f->sock);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    f->sock = sv[0];
    assert_int_equal(vblk_vu_dev_attach(f->d, sv[1]), 0);
    fe_negotiate(f, false);
    fe_mem_table(f);
    fe_vring(f, 0, 0);
    fe_start(f, 0);
    assert_int_equal(fe_io(f, 0, VBLK_T_IN, 0, buf, 512), VBLK_S_OK);
    fe_free(f);
}

static void test_poll_mode(void **state)
{
    (void)state;
    struct vblk_vu_opts o = {.notify = VBLK_NOTIFY_POLL};
    struct fe *f = fe_new(&o);
    fe_negotiate(f, false);
    fe_mem_table(f);
    fe_vring(f, 0, 0);
    fe_start(f, 0);
    assert_true(vblk_vu_queue_active(f->d, 0));
    uint8_t *buf = f->mem + DATA_OFF;
    /* Processing needs no kick: the queue is polled. */
    for (int i = 0; i < 20; i++)
        assert_int_equal(fe_io(f, 0, VBLK_T_IN, (uint64_t)i, buf, 512), VBLK_S_OK);
    fe_free(f);
}

static void test_msg_validate(void **state)
{
    (void)state;
    uint8_t buf[64] = {0};
    struct vu_hdr h = {VU_SET_FEATURES, VU_VERSION, 8};
    memcpy(buf, &h, sizeof(h));
    assert_int_equal(vblk_vu_msg_validate(buf, 20, 0), 0);
    assert_int_equal(vblk_vu_msg_validate(buf, 19, 0), -EINVAL);
    assert_int_equal(vblk_vu_msg_validate(buf, 20, 1), -EBADMSG);
    assert_int_equal(vblk_vu_msg_validate(buf, 5, 0), -EINVAL);
    h = (struct vu_hdr){VU_SET_VRING_KICK, VU_VERSION, 8};
    memcpy(buf, &h, sizeof(h));
    assert_int_equal(vblk_vu_msg_validate(buf, 20, 1), 0);
    buf[13] = 1; /* no-fd flag */
    assert_int_equal(vblk_vu_msg_validate(buf, 20, 0), 0);
    assert_int_equal(vblk_vu_msg_validate(buf, 20, 1), -EBADMSG);
    h = (struct vu_hdr){VU_GET_FEATURES, VU_VERSION | VU_FLAG_REPLY, 0};
    memcpy(buf, &h, sizeof(h));
    assert_int_equal(vblk_vu_msg_validate(buf, 12, 0), -EINVAL);
    assert_int_equal(vblk_vu_msg_validate(buf, 12, 9), -EBADMSG);

    /* Byte buffers straight into a device, no socket. */
    struct vblk_backend be;
    assert_int_equal(vblk_backend_null_create(1 << 20, &be), 0);
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, 1 << 20);
    struct vblk_vu_dev *d;
    assert_int_equal(vblk_vu_dev_create(&p, &be, NULL, &d), 0);
    struct vblk_vu_reply rep;
    h = (struct vu_hdr){VU_GET_QUEUE_NUM, VU_VERSION, 0};
    assert_int_equal(vblk_vu_dev_handle_msg(d, &h, sizeof(h), NULL, 0, &rep), 0);
    assert_int_equal(rep.len, 20);
    assert_int_equal(rep.fd, -1);
    for (unsigned req = 0; req < 50; req++) {
        uint8_t m[VBLK_VU_HDR_SIZE + 40] = {0};
        h = (struct vu_hdr){req, VU_VERSION | VU_FLAG_NEED_REPLY, 40};
        memcpy(m, &h, sizeof(h));
        memset(m + sizeof(h), 0xff, 40);
        (void)vblk_vu_dev_handle_msg(d, m, sizeof(m), NULL, 0, &rep);
        if (rep.fd >= 0)
            close(rep.fd);
    }
    vblk_vu_dev_destroy(d);
    vblk_backend_destroy(&be);
}

struct server_thread {
    struct vblk_vu_server *s;
    int rc;
};

static void *run_server(void *arg)
{
    struct server_thread *t = arg;
    t->rc = vblk_vu_server_run(t->s);
    return NULL;
}

static int connect_to(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* GET_QUEUE_NUM from a fresh connection; false if the server hung up
 * (it still had the previous front-end attached). */
static bool client_queue_num(const char *path, uint64_t *v)
{
    int fd = connect_to(path);
    struct vu_hdr h = {VU_GET_QUEUE_NUM, VU_VERSION, 0};
    assert_int_equal(write(fd, &h, sizeof(h)), sizeof(h));
    uint8_t buf[20];
    size_t got = 0;
    while (got < sizeof(buf)) {
        ssize_t n = read(fd, buf + got, sizeof(buf) - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (got != sizeof(buf))
        return false;
    memcpy(v, buf + 12, 8);
    return true;
}

static void test_server(void **state)
{
    (void)state;
    int before = count_fds();
    char dir[] = "/tmp/vblk-vu-test.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/sock", dir);
    struct vblk_backend be;
    assert_int_equal(vblk_backend_memory_create(1 << 20, &be), 0);
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, 1 << 20);
    p.num_queues = 2;
    struct vblk_vu_server_opts o = {.socket_path = path, .stop_fd = -1};
    struct vblk_vu_server *s, *s2;
    assert_int_equal(vblk_vu_server_create(&p, &be, &o, &s), 0);
    /* A live server owns the path. */
    assert_int_equal(vblk_vu_server_create(&p, &be, &o, &s2), -EADDRINUSE);
    struct server_thread t = {s, -1};
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, run_server, &t), 0);
    for (int round = 0; round < 3; round++) {
        uint64_t v = 0;
        int tries = 0;
        while (!client_queue_num(path, &v) && ++tries < 200)
            usleep(10000);
        assert_int_equal(v, 2);
    }
    vblk_vu_server_stop(s);
    pthread_join(tid, NULL);
    assert_int_equal(t.rc, 0);
    struct vblk_transport_stats ds;
    vblk_vu_dev_stats(vblk_vu_server_dev(s), &ds);
    assert_true(ds.connections >= 3);
    vblk_vu_server_destroy(s);
    struct stat st;
    assert_int_equal(stat(path, &st), -1);
    /* A stale socket file is replaced; a regular file is not. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    assert_int_equal(vblk_vu_server_create(&p, &be, &o, &s), 0);
    vblk_vu_server_destroy(s);
    fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    close(fd);
    assert_int_equal(vblk_vu_server_create(&p, &be, &o, &s), -EEXIST);
    unlink(path);
    rmdir(dir);
    vblk_backend_destroy(&be);
    assert_int_equal(count_fds(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_io),
        cmocka_unit_test(test_packed_io),
        cmocka_unit_test(test_two_queues),
        cmocka_unit_test(test_disable_enable),
        cmocka_unit_test(test_unknown_request),
        cmocka_unit_test(test_before_owner),
        cmocka_unit_test(test_before_mem_table),
        cmocka_unit_test(test_bad_regions),
        cmocka_unit_test(test_add_rem_region),
        cmocka_unit_test(test_fds_on_wrong_messages),
        cmocka_unit_test(test_fd_on_get_request),
        cmocka_unit_test(test_ring_checks),
        cmocka_unit_test(test_bad_sizes),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_config_and_status),
        cmocka_unit_test(test_dirty_log),
        cmocka_unit_test(test_inflight_resubmit),
        cmocka_unit_test(test_inflight_packed_restart),
        cmocka_unit_test(test_inflight_packed_hostile),
        cmocka_unit_test(test_reset_and_reconnect),
        cmocka_unit_test(test_poll_mode),
        cmocka_unit_test(test_msg_validate),
        cmocka_unit_test(test_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
