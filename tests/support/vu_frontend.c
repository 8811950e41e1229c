/* SPDX-License-Identifier: MIT */
/* The vhost-user front-end of the back-end's unit tests (vu_frontend.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fd_count.h"
#include "vu_frontend.h"

void fe_new_device(struct fe *f, const struct vblk_vu_opts *opts)
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

struct fe *fe_new_be(const struct vblk_vu_opts *opts, const struct vblk_backend *be)
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

struct fe *fe_new(const struct vblk_vu_opts *opts)
{
    return fe_new_be(opts, NULL);
}

void fe_free(struct fe *f)
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

uint64_t ua_of_gpa(uint64_t gpa)
{
    return gpa - GPA_BASE + UA_BASE;
}

int fe_send(struct fe *f, uint32_t req, uint32_t flags, const void *payload, uint32_t size,
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

int fe_recv(struct fe *f, uint32_t req, void *payload, size_t cap, int *fd)
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

uint64_t fe_ack(struct fe *f, uint32_t req, const void *payload, uint32_t size, const int *fds,
                unsigned nfds)
{
    assert_int_equal(fe_send(f, req, VU_FLAG_NEED_REPLY, payload, size, fds, nfds), 0);
    uint64_t v = 99;
    assert_int_equal(fe_recv(f, req, &v, sizeof(v), NULL), 8);
    return v;
}

uint64_t fe_get_u64(struct fe *f, uint32_t req)
{
    assert_int_equal(fe_send(f, req, 0, NULL, 0, NULL, 0), 0);
    uint64_t v = 0;
    assert_int_equal(fe_recv(f, req, &v, sizeof(v), NULL), 8);
    return v;
}

void fe_u64(struct fe *f, uint32_t req, uint64_t v, uint64_t want_ack)
{
    assert_int_equal(fe_ack(f, req, &v, 8, NULL, 0), want_ack);
}

void fe_negotiate(struct fe *f, bool packed)
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

void fe_mem_table(struct fe *f)
{
    struct vu_mem_table t = {.nregions = 1};
    t.regions[0] = (struct vu_region_desc){GPA_BASE, MEM_SIZE, UA_BASE, 0};
    assert_int_equal(fe_ack(f, VU_SET_MEM_TABLE, &t, 8 + 32, &f->memfd, 1), 0);
}

void fe_vring(struct fe *f, uint16_t q, uint32_t base)
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

void fe_vring_msgs(struct fe *f, uint16_t q, uint32_t base)
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

void fe_start(struct fe *f, uint16_t q)
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

int fe_io(struct fe *f, uint16_t q, uint32_t type, uint64_t sector, void *buf, size_t len)
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

struct fe *fe_ready(bool packed)
{
    struct fe *f = fe_new(NULL);
    fe_negotiate(f, packed);
    fe_mem_table(f);
    fe_vring(f, 0, 0);
    fe_start(f, 0);
    return f;
}
