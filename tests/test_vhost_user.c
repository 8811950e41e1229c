/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user back-end's protocol session over a socketpair: the
 * front-end of vu_frontend.h (messages with fds, a memfd as guest memory,
 * rings built with the library's driver side) against
 * vblk_vu_dev_handle_socket() / vblk_vu_queue_process(). Every test counts
 * the fds in /proc/self/fd before and after, so any fd the device kept or
 * leaked fails it. In-flight tracking across a restart is in
 * test_vu_inflight.c.
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
#include "vu_frontend.h"

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
    assert_int_not_equal(fe_ack(f, VU_SET_BACKEND_REQ_FD, NULL, 0, &fd, 1), 0);
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

/* Reads the config space's capacity through GET_CONFIG. */
static uint64_t fe_capacity(struct fe *f)
{
    struct vu_config c = {0, sizeof(struct vblk_config), 0, {0}};
    assert_int_equal(fe_send(f, VU_GET_CONFIG, 0, &c, 12 + c.size, NULL, 0), 0);
    assert_int_equal(fe_recv(f, VU_GET_CONFIG, &c, sizeof(c), NULL),
                     12 + (int)sizeof(struct vblk_config));
    struct vblk_config cfg;
    memcpy(&cfg, c.data, sizeof(cfg));
    return cfg.capacity;
}

/* Online resize through the back-end request channel: the front-end hands
 * over one end of a socketpair, the device sends CONFIG_CHANGE_MSG on it
 * (no reply asked) and GET_CONFIG shows the new capacity, which survives a
 * device reset. */
static void test_backend_req_config_change(void **state)
{
    (void)state;
    struct fe *f = fe_new(NULL);
    fe_negotiate(f, false);
    uint64_t proto = fe_get_u64(f, VU_GET_PROTOCOL_FEATURES);
    assert_true(proto & VBLK_BIT(VBLK_VU_PROTOCOL_F_BACKEND_REQ));
    /* No channel yet: the capacity changes, nobody is told. */
    assert_int_equal(vblk_vu_dev_set_capacity(f->d, DISK_SIZE / 2), 0);
    assert_int_equal(fe_capacity(f), DISK_SIZE / 2 / 512);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(fe_ack(f, VU_SET_BACKEND_REQ_FD, NULL, 0, &sv[1], 1), 0);
    close(sv[1]);
    assert_int_equal(vblk_vu_dev_set_capacity(f->d, DISK_SIZE), 1);
    struct vu_hdr h;
    assert_int_equal(recv(sv[0], &h, sizeof(h), MSG_DONTWAIT), (ssize_t)sizeof(h));
    assert_int_equal(h.request, VU_BACKEND_CONFIG_CHANGE_MSG);
    assert_int_equal(h.flags, VU_VERSION);
    assert_int_equal(h.size, 0);
    assert_int_equal(fe_capacity(f), DISK_SIZE / 512);
    /* Bad sizes change nothing. */
    assert_int_equal(vblk_vu_dev_set_capacity(f->d, 0), -EINVAL);
    assert_int_equal(vblk_vu_dev_set_capacity(f->d, 1000), -EINVAL);
    assert_int_equal(fe_capacity(f), DISK_SIZE / 512);
    /* A reset rebuilds the device model with the new capacity. */
    assert_int_equal(vblk_vu_dev_set_capacity(f->d, DISK_SIZE / 4), 1);
    assert_int_equal(recv(sv[0], &h, sizeof(h), MSG_DONTWAIT), (ssize_t)sizeof(h));
    assert_int_equal(fe_ack(f, VU_RESET_DEVICE, NULL, 0, NULL, 0), 0);
    assert_int_equal(fe_capacity(f), DISK_SIZE / 4 / 512);
    /* A new channel replaces the old one, which is closed (the fd count at
     * the end checks that nothing is kept). */
    int sv2[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv2), 0);
    assert_int_equal(fe_ack(f, VU_SET_BACKEND_REQ_FD, NULL, 0, &sv2[1], 1), 0);
    close(sv2[1]);
    char b;
    assert_int_equal(recv(sv[0], &b, 1, MSG_DONTWAIT), 0); /* hung up */
    assert_int_equal(vblk_vu_dev_set_capacity(f->d, DISK_SIZE), 1);
    assert_int_equal(recv(sv2[0], &h, sizeof(h), MSG_DONTWAIT), (ssize_t)sizeof(h));
    close(sv[0]);
    close(sv2[0]);
    fe_free(f);
}

/* Hostile use of SET_BACKEND_REQ_FD: without the protocol feature, with
 * an fd that is not a stream socket, with two fds or none; a channel the
 * front-end never reads, and one it closed. Each gets a defined answer and
 * the connection goes on. */
static void test_backend_req_hostile(void **state)
{
    (void)state;
    struct fe *f = fe_new(NULL);
    uint64_t proto = VBLK_BIT(VBLK_VU_PROTOCOL_F_REPLY_ACK) | VBLK_BIT(VBLK_VU_PROTOCOL_F_CONFIG);
    assert_int_equal(fe_send(f, VU_SET_PROTOCOL_FEATURES, 0, &proto, 8, NULL, 0), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    /* Not negotiated. */
    assert_int_not_equal(fe_ack(f, VU_SET_BACKEND_REQ_FD, NULL, 0, &sv[1], 1), 0);
    proto |= VBLK_BIT(VBLK_VU_PROTOCOL_F_BACKEND_REQ);
    assert_int_equal(fe_send(f, VU_SET_PROTOCOL_FEATURES, 0, &proto, 8, NULL, 0), 0);
    /* Wrong kinds of fd. */
    int efd = eventfd(0, EFD_CLOEXEC);
    assert_int_not_equal(fe_ack(f, VU_SET_BACKEND_REQ_FD, NULL, 0, &efd, 1), 0);
    int dg[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, dg), 0);
    assert_int_not_equal(fe_ack(f, VU_SET_BACKEND_REQ_FD, NULL, 0, &dg[1], 1), 0);
    int memfd = memfd_create("x", MFD_CLOEXEC);
    assert_int_not_equal(fe_ack(f, VU_SET_BACKEND_REQ_FD, NULL, 0, &memfd, 1), 0);
    /* No fd, two fds, an oversized payload: malformed, refused. */
    assert_int_not_equal(fe_ack(f, VU_SET_BACKEND_REQ_FD, NULL, 0, NULL, 0), 0);
    int two[2] = {sv[1], efd};
    assert_int_not_equal(fe_ack(f, VU_SET_BACKEND_REQ_FD, NULL, 0, two, 2), 0);
    uint8_t big[16] = {0};
    assert_int_not_equal(fe_ack(f, VU_SET_BACKEND_REQ_FD, big, sizeof(big), &sv[1], 1), 0);
    assert_int_equal(vblk_vu_dev_set_capacity(f->d, DISK_SIZE / 2), 0); /* no channel */
    /* Accepted before SET_OWNER: QEMU sets the channel up first. */
    assert_int_equal(fe_ack(f, VU_SET_BACKEND_REQ_FD, NULL, 0, &sv[1], 1), 0);
    assert_int_equal(fe_ack(f, VU_SET_OWNER, NULL, 0, NULL, 0), 0);
    /* A channel nobody reads: the device never blocks, it reports -EAGAIN. */
    int small = 4096;
    (void)setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    assert_int_equal(fe_ack(f, VU_SET_BACKEND_REQ_FD, NULL, 0, &sv[1], 1), 0);
    int rc, sent = 0;
    while ((rc = vblk_vu_dev_set_capacity(f->d, DISK_SIZE)) == 1)
        assert_true(++sent < 1000000);
    assert_int_equal(rc, -EAGAIN);
    assert_true(sent > 0);
    assert_int_equal(fe_capacity(f), DISK_SIZE / 512); /* in force all the same */
    /* The front-end closes its end: -EPIPE once (no SIGPIPE), then the
     * channel is gone. */
    close(sv[0]);
    assert_int_equal(vblk_vu_dev_set_capacity(f->d, DISK_SIZE / 2), -EPIPE);
    assert_int_equal(vblk_vu_dev_set_capacity(f->d, DISK_SIZE), 0);
    assert_true(fe_get_u64(f, VU_GET_FEATURES) != 0);
    close(sv[1]);
    close(efd);
    close(dg[0]);
    close(dg[1]);
    close(memfd);
    fe_free(f);
}

/* Per-request metrics: off by default; once on, every completion is
 * counted by kind, with its bytes and latency. */
static void test_metrics(void **state)
{
    (void)state;
    struct fe *f = fe_new(NULL);
    fe_negotiate(f, false);
    vblk_vu_dev_set_metrics(f->d, true);
    fe_mem_table(f);
    fe_vring(f, 0, 0);
    fe_start(f, 0);
    uint8_t *buf = f->mem + DATA_OFF;
    assert_int_equal(fe_io(f, 0, VBLK_T_OUT, 8, buf, 8192), VBLK_S_OK);
    assert_int_equal(fe_io(f, 0, VBLK_T_IN, 8, buf, 4096), VBLK_S_OK);
    assert_int_equal(fe_io(f, 0, VBLK_T_IN, 16, buf, 4096), VBLK_S_OK);
    assert_int_equal(fe_io(f, 0, VBLK_T_FLUSH, 0, NULL, 0), VBLK_S_OK);
    assert_int_equal(fe_io(f, 0, VBLK_T_IN, DISK_SIZE / 512, buf, 4096), VBLK_S_IOERR);
    struct vblk_transport_queue_metrics m;
    assert_int_equal(vblk_vu_queue_metrics(f->d, 0, &m), 0);
    assert_int_equal(m.requests[VBLK_METRIC_WRITE], 1);
    assert_int_equal(m.bytes[VBLK_METRIC_WRITE], 8192);
    assert_int_equal(m.requests[VBLK_METRIC_READ], 3);
    assert_int_equal(m.requests[VBLK_METRIC_FLUSH], 1);
    uint64_t n = 0;
    for (unsigned i = 0; i < VBLK_LATENCY_BUCKETS; i++)
        n += m.latency[i];
    assert_int_equal(n, 5);
    assert_true(m.latency_sum_ns > 0);
    assert_int_equal(vblk_vu_queue_metrics(f->d, 2, &m), -EINVAL);
    /* Queue 1 never ran: zeros. */
    assert_int_equal(vblk_vu_queue_metrics(f->d, 1, &m), 0);
    assert_int_equal(m.requests[VBLK_METRIC_READ], 0);
    fe_free(f);
}

/* The read-only switch: writes fail at once, reads go on; the RO feature
 * follows from the next negotiation. */
static void test_set_read_only(void **state)
{
    (void)state;
    struct fe *f = fe_ready(false);
    uint8_t *buf = f->mem + DATA_OFF;
    assert_int_equal(fe_io(f, 0, VBLK_T_OUT, 8, buf, 4096), VBLK_S_OK);
    assert_int_equal(vblk_vu_dev_set_read_only(f->d, true), 0);
    assert_int_equal(fe_io(f, 0, VBLK_T_OUT, 8, buf, 4096), VBLK_S_IOERR);
    assert_int_equal(fe_io(f, 0, VBLK_T_IN, 8, buf, 4096), VBLK_S_OK);
    assert_int_equal(vblk_vu_dev_set_read_only(f->d, false), 0);
    assert_int_equal(fe_io(f, 0, VBLK_T_OUT, 8, buf, 4096), VBLK_S_OK);
    assert_false(fe_get_u64(f, VU_GET_FEATURES) & VBLK_BIT(VBLK_F_RO));
    /* The offer changes with the next negotiation (a reset). */
    assert_int_equal(vblk_vu_dev_set_read_only(f->d, true), 0);
    assert_int_equal(fe_ack(f, VU_RESET_DEVICE, NULL, 0, NULL, 0), 0);
    assert_true(fe_get_u64(f, VU_GET_FEATURES) & VBLK_BIT(VBLK_F_RO));
    fe_free(f);
}

/* Shrinking under a running ring: requests past the new end fail with
 * IOERR and the RAM disk's data there is gone when it grows again. */
static void test_resize_io(void **state)
{
    (void)state;
    struct fe *f = fe_ready(false);
    uint8_t *buf = f->mem + DATA_OFF;
    uint64_t last = DISK_SIZE / 512 - 8;
    memset(buf, 0xab, 4096);
    assert_int_equal(fe_io(f, 0, VBLK_T_OUT, last, buf, 4096), VBLK_S_OK);
    assert_int_equal(vblk_vu_dev_set_capacity(f->d, DISK_SIZE / 2), 0);
    assert_int_equal(vblk_backend_resize(&f->be, DISK_SIZE / 2), 0);
    assert_int_equal(fe_io(f, 0, VBLK_T_IN, last, buf, 4096), VBLK_S_IOERR);
    assert_int_equal(fe_io(f, 0, VBLK_T_OUT, DISK_SIZE / 1024, buf, 4096), VBLK_S_IOERR);
    assert_int_equal(fe_io(f, 0, VBLK_T_IN, DISK_SIZE / 1024 - 8, buf, 4096), VBLK_S_OK);
    assert_int_equal(vblk_backend_resize(&f->be, DISK_SIZE), 0);
    assert_int_equal(vblk_vu_dev_set_capacity(f->d, DISK_SIZE), 0);
    memset(buf, 0x11, 4096);
    assert_int_equal(fe_io(f, 0, VBLK_T_IN, last, buf, 4096), VBLK_S_OK);
    for (size_t i = 0; i < 4096; i++)
        assert_int_equal(buf[i], 0);
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
        cmocka_unit_test(test_backend_req_config_change),
        cmocka_unit_test(test_backend_req_hostile),
        cmocka_unit_test(test_set_read_only),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_resize_io),
        cmocka_unit_test(test_dirty_log),
        cmocka_unit_test(test_reset_and_reconnect),
        cmocka_unit_test(test_poll_mode),
        cmocka_unit_test(test_msg_validate),
        cmocka_unit_test(test_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
