/* SPDX-License-Identifier: MIT */
/*
 * The attack catalogue, vhost-user layer: one case per thing a hostile
 * vhost-user front-end can do through the byte-buffer entry point
 * vblk_vu_dev_handle_msg() (lib/transport/vhost-user/), each named after
 * what it models and asserting the outcome the library defines:
 *
 *  - an error reply (REPLY_ACK non-zero) for a refused message;
 *  - a disconnect (-EPROTO) for a message that leaves the stream or the
 *    protocol state unrecoverable;
 *  - a broken queue (DEVICE_NEEDS_RESET, the error eventfd) for a ring the
 *    driver corrupts.
 *
 * Hostile fds against the real server are in test_attacks_vu_fds.c,
 * hostile shared files in test_attacks_mapping.c.
 *
 * Every case also checks what must NOT happen: no request reaches the
 * backend unless it is valid, no fd stays open, no request stays in
 * flight. Under ASan/LSan (VBLK_SANITIZE=ON) an out-of-bounds access or a
 * leak fails the case too: the RAM disk and the request pools are separate
 * heap blocks so that any overrun is visible.
 *
 * docs/security.md lists the catalogue as a table (case, outcome, test);
 * tests/attack_cases.sh checks that every case it names exists. The
 * harness is tests/support/attack_harness.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "attack_harness.h"

#define IN   VBLK_T_IN
#define NEXT VBLK_DESC_F_NEXT

/* ======================================================================
 * vhost-user: a hostile front-end, through vblk_vu_dev_handle_msg().
 * ==================================================================== */

static void vu_vring_index_out_of_range_cve_2011_2512_class(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    atk_vu_mem_table(v);
    int fd = eventfd(0, EFD_CLOEXEC);
    int before = count_fds();
    uint32_t bad[] = {ATK_VU_NQ, 255, 256, 0x10000, UINT32_MAX};
    for (unsigned i = 0; i < 5; i++) {
        struct atk_vu_state s = {bad[i], ATK_VU_QSIZE};
        atk_vu_refused(v, ATK_VU_SET_VRING_NUM, &s, 8, NULL, 0);
        atk_vu_refused(v, ATK_VU_SET_VRING_BASE, &s, 8, NULL, 0);
        s.num = 1;
        atk_vu_refused(v, ATK_VU_SET_VRING_ENABLE, &s, 8, NULL, 0);
        struct atk_vu_addr a = {
            bad[i], 0, ATK_VU_UA, ATK_VU_UA + ATK_DEVICE_OFF, ATK_VU_UA + ATK_DRIVER_OFF, 0};
        atk_vu_refused(v, ATK_VU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
    }
    /* The fd messages carry the index in bits 0-7, "no fd" in bit 8. */
    uint64_t fidx[] = {ATK_VU_NQ, 255, 0x200, 1ull << 40};
    uint32_t fdreq[] = {ATK_VU_SET_VRING_KICK, ATK_VU_SET_VRING_CALL, ATK_VU_SET_VRING_ERR};
    for (unsigned i = 0; i < 4; i++)
        for (unsigned r = 0; r < 3; r++)
            atk_vu_refused(v, fdreq[r], &fidx[i], 8, &fd, 1);
    /* Every fd handed over with a refused message was closed. */
    assert_int_equal(count_fds(), before);
    /* Queue 0 can still be set up. */
    atk_vu_ring(v, false, 0);
    close(fd);
    atk_vu_free(v, false);
}

static void vu_get_vring_base_index_out_of_range(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    /* No ring state can be reported: the connection must end. */
    struct atk_vu_state s = {ATK_VU_NQ, 0};
    assert_int_equal(atk_vu_send(v, ATK_VU_GET_VRING_BASE, 0, &s, 8, NULL, 0), -EPROTO);
    s.index = UINT32_MAX;
    assert_int_equal(atk_vu_send(v, ATK_VU_GET_VRING_BASE, 0, &s, 8, NULL, 0), -EPROTO);
    atk_vu_free(v, false);
}

static void vu_get_vring_base_on_queue_never_started(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    /* Nothing configured at all: position 0. */
    struct atk_vu_state s = {1, 12345}, out;
    assert_int_equal(atk_vu_send(v, ATK_VU_GET_VRING_BASE, 0, &s, 8, NULL, 0), 0);
    assert_int_equal(v->rep.len, 12 + 8);
    memcpy(&out, v->rep.buf + 12, 8);
    assert_int_equal(out.index, 1);
    assert_int_equal(out.num, 0);
    /* A base set but never started (no memory, no kick): that base. */
    s = (struct atk_vu_state){0, 7};
    atk_vu_ok(v, ATK_VU_SET_VRING_BASE, &s, 8, NULL, 0);
    assert_int_equal(atk_vu_send(v, ATK_VU_GET_VRING_BASE, 0, &s, 8, NULL, 0), 0);
    memcpy(&out, v->rep.buf + 12, 8);
    assert_int_equal(out.num, 7);
    assert_false(vblk_vu_queue_active(v->d, 0));
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 0);
    assert_int_equal(vblk_vu_queue_process(v->d, 1), 0);
    atk_vu_free(v, false);
}

static void vu_fds_on_messages_that_take_none_cve_2022_0669_class(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    int fds[9];
    for (int i = 0; i < 9; i++) {
        fds[i] = eventfd(0, EFD_CLOEXEC);
        assert_true(fds[i] >= 0);
    }
    int before = count_fds();
    uint64_t feat = v->virtio_features, idx = 0, nofd = ATK_VU_NOFD;
    struct atk_vu_state num = {0, ATK_VU_QSIZE};
    atk_vu_refused(v, ATK_VU_SET_OWNER, NULL, 0, fds, 1);
    atk_vu_refused(v, ATK_VU_SET_FEATURES, &feat, 8, fds, 2);
    atk_vu_refused(v, ATK_VU_SET_VRING_NUM, &num, 8, fds, 3);
    atk_vu_refused(v, ATK_VU_SET_VRING_CALL, &nofd, 8, fds, 1);
    atk_vu_refused(v, ATK_VU_SET_VRING_CALL, &idx, 8, fds, 2);
    atk_vu_refused(v, 200, NULL, 0, fds, 8); /* unknown request */
    /* More fds than any message may carry: a framing error, so the
     * connection ends (the fds are closed all the same). */
    assert_int_equal(atk_vu_send(v, ATK_VU_SET_OWNER, 0, NULL, 0, fds, 9), -EPROTO);
    struct atk_vu_table t = {.nregions = 1};
    t.r[0] = (struct atk_vu_region){ATK_VU_GPA, ATK_VU_MEM, ATK_VU_UA, 0};
    int three[3] = {v->memfd, v->memfd, v->memfd};
    atk_vu_refused(v, ATK_VU_SET_MEM_TABLE, &t, 8 + 32, three, 3);
    struct atk_vu_single one = {0, {ATK_VU_GPA, 4096, ATK_VU_UA, 0}};
    atk_vu_refused(v, ATK_VU_REM_MEM_REG, &one, sizeof(one), fds, 1);
    /* A GET that comes with an fd cannot be answered: disconnect. */
    assert_int_equal(atk_vu_send(v, ATK_VU_GET_FEATURES, 0, NULL, 0, fds, 1), -EPROTO);
    /* None of the fds survived. */
    assert_int_equal(count_fds(), before);
    for (int i = 0; i < 9; i++)
        close(fds[i]);
    atk_vu_free(v, false);
}

static void vu_log_base_size_overflow_cve_2020_10722_class(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_ready(false);
    int lfd = memfd_create("atk-log", MFD_CLOEXEC);
    assert_true(lfd >= 0);
    assert_int_equal(ftruncate(lfd, 65536), 0);
    struct atk_vu_log bad[] = {
        {UINT64_MAX - 10, 64},    /* size + offset wraps */
        {4096, UINT64_MAX},       /* offset + size wraps */
        {UINT64_MAX, 0},          /* size beyond anything */
        {1ull << 63, 1ull << 63}, /* sums to exactly 2^64 */
        {65536, 4096},            /* beyond the end of the file */
        {0, 0},                   /* empty */
    };
    int before = count_fds();
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        atk_vu_refused(v, ATK_VU_SET_LOG_BASE, &bad[i], sizeof(bad[i]), &lfd, 1);
    assert_int_equal(count_fds(), before);
    /* The ring still runs. */
    size_t st = atk_vu_rq(v, 0x8000, IN, 0, 512);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
    assert_int_equal(v->mem[st], VBLK_S_OK);
    close(lfd);
    atk_vu_free(v, false);
}

static void vu_dirty_log_shorter_than_guest_memory(void **state)
{
    (void)state;
    /* A log that covers the ring's pages but ends before the data
     * buffer's: the device sets the bits it can and writes nothing past
     * the log. */
    struct atk_vu *v = atk_vu_ready(false);
    uint64_t first = ATK_VU_GPA >> 12;
    uint64_t size = (first + 8) / 8 + 1; /* bits up to ~ 8 pages past GPA */
    size_t file = 0x10000;
    int lfd = memfd_create("atk-log", MFD_CLOEXEC);
    assert_true(lfd >= 0);
    assert_true(size < file);
    assert_int_equal(ftruncate(lfd, (off_t)file), 0);
    uint8_t *log = mmap(NULL, file, PROT_READ | PROT_WRITE, MAP_SHARED, lfd, 0);
    assert_true(log != MAP_FAILED);
    struct atk_vu_log lg = {size, 0};
    atk_vu_ok(v, ATK_VU_SET_LOG_BASE, &lg, sizeof(lg), &lfd, 1);
    uint64_t feat = v->virtio_features | VBLK_BIT(VBLK_VU_F_LOG_ALL);
    atk_vu_ok(v, ATK_VU_SET_FEATURES, &feat, 8, NULL, 0);
    /* Data 128 KiB into guest memory: 32 pages past the log's end. */
    size_t st = atk_vu_rq(v, 0x20000, IN, 0, 4096);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
    assert_int_equal(v->mem[st], VBLK_S_OK);
    /* The used ring's page (GPA + 0x2000) is logged ... */
    uint64_t used_page = (ATK_VU_GPA + ATK_DEVICE_OFF) >> 12;
    assert_true(log[used_page / 8] & (1u << (used_page % 8)));
    /* ... and not one byte past the log was touched. */
    for (size_t i = size; i < file; i++)
        assert_int_equal(log[i], 0);
    munmap(log, file);
    close(lfd);
    atk_vu_free(v, false);
}

static void vu_memory_regions_overlapping(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    int two[2] = {v->memfd, v->memfd};
    struct atk_vu_table t = {.nregions = 2};
    /* Guest-physical ranges overlap. */
    t.r[0] = (struct atk_vu_region){ATK_VU_GPA, ATK_VU_MEM / 2, ATK_VU_UA, 0};
    t.r[1] = (struct atk_vu_region){ATK_VU_GPA + 4096, ATK_VU_MEM / 2, ATK_VU_UA + ATK_VU_MEM,
                                    ATK_VU_MEM / 2};
    atk_vu_refused(v, ATK_VU_SET_MEM_TABLE, &t, 8 + 64, two, 2);
    /* Front-end user addresses overlap. */
    t.r[1] = (struct atk_vu_region){ATK_VU_GPA + ATK_VU_MEM, ATK_VU_MEM / 2, ATK_VU_UA + 4096,
                                    ATK_VU_MEM / 2};
    atk_vu_refused(v, ATK_VU_SET_MEM_TABLE, &t, 8 + 64, two, 2);
    /* One region overlapping an existing one, through ADD_MEM_REG. */
    atk_vu_mem_table(v);
    struct atk_vu_single one = {
        0, {ATK_VU_GPA + ATK_VU_MEM - 4096, 8192, ATK_VU_UA + 2 * ATK_VU_MEM, 0}};
    atk_vu_refused(v, ATK_VU_ADD_MEM_REG, &one, sizeof(one), &v->memfd, 1);
    one.r = (struct atk_vu_region){ATK_VU_GPA + 2 * ATK_VU_MEM, 4096, ATK_VU_UA + 4096, 0};
    atk_vu_refused(v, ATK_VU_ADD_MEM_REG, &one, sizeof(one), &v->memfd, 1);
    /* The table that was accepted still works. */
    atk_vu_ring(v, false, 0);
    size_t st = atk_vu_rq(v, 0x8000, IN, 0, 512);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
    assert_int_equal(v->mem[st], VBLK_S_OK);
    atk_vu_free(v, false);
}

static void vu_memory_region_empty_or_not_backed(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    struct atk_vu_region bad[] = {
        {ATK_VU_GPA, 0, ATK_VU_UA, 0},                   /* size 0 */
        {UINT64_MAX - 4095, 8192, ATK_VU_UA, 0},         /* GPA wraps */
        {ATK_VU_GPA, 8192, UINT64_MAX - 4095, 0},        /* user address wraps */
        {ATK_VU_GPA, ATK_VU_MEM, ATK_VU_UA, 4096},       /* past the end of the fd */
        {ATK_VU_GPA, 4096, ATK_VU_UA, UINT64_MAX - 100}, /* offset wraps */
        {ATK_VU_GPA, 2 * ATK_VU_MEM, ATK_VU_UA, 0},      /* bigger than the fd */
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct atk_vu_table t = {.nregions = 1};
        t.r[0] = bad[i];
        atk_vu_refused(v, ATK_VU_SET_MEM_TABLE, &t, 8 + 32, &v->memfd, 1);
        struct atk_vu_single one = {0, bad[i]};
        atk_vu_refused(v, ATK_VU_ADD_MEM_REG, &one, sizeof(one), &v->memfd, 1);
    }
    /* A pipe is not memory. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct atk_vu_table t = {.nregions = 1};
    t.r[0] = (struct atk_vu_region){ATK_VU_GPA, 4096, ATK_VU_UA, 0};
    atk_vu_refused(v, ATK_VU_SET_MEM_TABLE, &t, 8 + 32, &p[0], 1);
    close(p[0]);
    close(p[1]);
    /* Nothing was mapped: a ring cannot be placed anywhere. */
    struct atk_vu_state num = {0, ATK_VU_QSIZE};
    atk_vu_ok(v, ATK_VU_SET_VRING_NUM, &num, 8, NULL, 0);
    struct atk_vu_addr a = {0, 0, ATK_VU_UA, ATK_VU_UA + ATK_DEVICE_OFF, ATK_VU_UA + ATK_DRIVER_OFF,
                            0};
    atk_vu_refused(v, ATK_VU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
    atk_vu_free(v, false);
}

static void vu_message_truncated_mid_header(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    struct atk_vu_hdr h = {ATK_VU_SET_FEATURES, ATK_VU_VERSION | ATK_VU_NEED_REPLY, 8};
    for (size_t len = 0; len < sizeof(h); len++)
        assert_int_equal(atk_vu_raw(v, &h, len, NULL, 0), -EPROTO);
    /* With an fd attached: the fd is closed all the same. */
    int before = count_fds();
    int fd = eventfd(0, EFD_CLOEXEC);
    assert_int_equal(atk_vu_raw(v, &h, 6, &fd, 1), -EPROTO);
    assert_int_equal(count_fds(), before);
    atk_vu_free(v, false);
}

static void vu_payload_size_larger_than_message(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    uint8_t buf[64] = {0};
    /* The header announces 40 bytes; 8 follow. Or 8, and 40 follow. */
    struct atk_vu_hdr h = {ATK_VU_SET_FEATURES, ATK_VU_VERSION | ATK_VU_NEED_REPLY, 40};
    memcpy(buf, &h, sizeof(h));
    assert_int_equal(atk_vu_raw(v, buf, 12 + 8, NULL, 0), 0);
    assert_int_equal(atk_vu_u64(v), 1);
    h.size = 8;
    memcpy(buf, &h, sizeof(h));
    assert_int_equal(atk_vu_raw(v, buf, 12 + 40, NULL, 0), 0);
    assert_int_equal(atk_vu_u64(v), 1);
    /* A payload larger than any request takes: the stream cannot be
     * resynchronised, so the connection ends. */
    uint32_t huge[] = {VBLK_VU_MAX_PAYLOAD + 1, 0x10000, UINT32_MAX};
    for (unsigned i = 0; i < 3; i++) {
        h.size = huge[i];
        memcpy(buf, &h, sizeof(h));
        assert_int_equal(atk_vu_raw(v, buf, 12 + 8, NULL, 0), -EPROTO);
    }
    /* Within the maximum but more than this request allows: refused. */
    uint8_t big[12 + VBLK_VU_MAX_PAYLOAD] = {0};
    h = (struct atk_vu_hdr){ATK_VU_SET_VRING_NUM, ATK_VU_VERSION | ATK_VU_NEED_REPLY,
                            VBLK_VU_MAX_PAYLOAD};
    memcpy(big, &h, sizeof(h));
    assert_int_equal(atk_vu_raw(v, big, sizeof(big), NULL, 0), 0);
    assert_int_equal(atk_vu_u64(v), 1);
    atk_vu_free(v, false);
}

static void vu_wrong_version_or_reply_flag(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    struct atk_vu_hdr h = {ATK_VU_GET_FEATURES, 2, 0};
    assert_int_equal(atk_vu_raw(v, &h, sizeof(h), NULL, 0), -EPROTO);
    h.flags = 0;
    assert_int_equal(atk_vu_raw(v, &h, sizeof(h), NULL, 0), -EPROTO);
    /* A reply sent to the back-end is not a request. */
    uint8_t buf[20] = {0};
    h = (struct atk_vu_hdr){ATK_VU_SET_OWNER, ATK_VU_VERSION | ATK_VU_REPLY | ATK_VU_NEED_REPLY, 8};
    memcpy(buf, &h, sizeof(h));
    assert_int_equal(atk_vu_raw(v, buf, sizeof(buf), NULL, 0), 0);
    assert_int_equal(atk_vu_u64(v), 1);
    atk_vu_free(v, false);
}

static void vu_rings_outside_guest_memory(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    atk_vu_mem_table(v);
    struct atk_vu_state num = {0, ATK_VU_QSIZE};
    atk_vu_ok(v, ATK_VU_SET_VRING_NUM, &num, 8, NULL, 0);
    uint64_t ok_d = ATK_VU_UA, ok_u = ATK_VU_UA + ATK_DEVICE_OFF, ok_a = ATK_VU_UA + ATK_DRIVER_OFF;
    uint64_t end = ATK_VU_UA + ATK_VU_MEM;
    struct atk_vu_addr bad[] = {
        {0, 0, end, ok_u, ok_a, 0},      /* past the end */
        {0, 0, end - 64, ok_u, ok_a, 0}, /* straddling it */
        {0, 0, ok_d, end - 8, ok_a, 0},
        {0, 0, ok_d, ok_u, end - 2, 0},
        {0, 0, ATK_VU_UA - 4096, ok_u, ok_a, 0}, /* below */
        {0, 0, UINT64_MAX - 15, ok_u, ok_a, 0},  /* wrapping */
        {0, 0, ATK_VU_GPA, ok_u, ok_a, 0},       /* a GPA is not a user address */
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        atk_vu_refused(v, ATK_VU_SET_VRING_ADDR, &bad[i], sizeof(bad[i]), NULL, 0);
    atk_vu_free(v, false);
}

static void vu_ring_size_invalid(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    /* 0, not a power of two (split), above the device's maximum (64),
     * above the protocol's, beyond 16 bits. */
    uint32_t sizes[] = {0, 3, 48, 128, 32769, 65536, UINT32_MAX};
    for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct atk_vu_state num = {0, sizes[i]};
        atk_vu_refused(v, ATK_VU_SET_VRING_NUM, &num, 8, NULL, 0);
    }
    /* A split ring's base is a 16-bit index. */
    struct atk_vu_state base = {0, 0x10000};
    atk_vu_refused(v, ATK_VU_SET_VRING_BASE, &base, 8, NULL, 0);
    atk_vu_free(v, false);
}

static void vu_packed_ring_base_beyond_ring_size(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, true);
    atk_vu_mem_table(v);
    atk_ring_init(&v->ring, v->mem, ATK_VU_GPA, ATK_VU_QSIZE, true);
    struct atk_vu_state num = {0, ATK_VU_QSIZE};
    atk_vu_ok(v, ATK_VU_SET_VRING_NUM, &num, 8, NULL, 0);
    /* Avail position 100 (wrap 1), used position 20 (wrap 1) in a ring of 16. */
    struct atk_vu_state b = {0, 100u | 1u << 15 | (20u | 1u << 15) << 16};
    atk_vu_ok(v, ATK_VU_SET_VRING_BASE, &b, 8, NULL, 0);
    struct atk_vu_addr a = {0, 0, ATK_VU_UA, ATK_VU_UA + ATK_DEVICE_OFF, ATK_VU_UA + ATK_DRIVER_OFF,
                            0};
    atk_vu_ok(v, ATK_VU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
    uint64_t idx = 0;
    /* The ring cannot start from there. */
    atk_vu_refused(v, ATK_VU_SET_VRING_KICK, &idx, 8, &v->kick, 1);
    assert_false(vblk_vu_queue_active(v->d, 0));
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 0);
    atk_vu_free(v, false);
}

static void vu_driver_breaks_the_ring(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_ready(false);
    size_t st = atk_vu_rq(v, 0x8000, IN, 0, 512);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
    assert_int_equal(v->mem[st], VBLK_S_OK);
    assert_int_equal(atk_vu_get(v, ATK_VU_GET_STATUS) & VBLK_STATUS_DEVICE_NEEDS_RESET, 0);
    /* A descriptor loop. */
    atk_split_set(&v->ring, 5, atk_vu_gpa(0x8000), 16, NEXT, 6);
    atk_split_set(&v->ring, 6, atk_vu_gpa(0x8000), 16, NEXT, 5);
    atk_split_publish(&v->ring, 5);
    assert_int_equal(eventfd_write(v->kick, 1), 0);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), -EIO);
    assert_true(atk_vu_get(v, ATK_VU_GET_STATUS) & VBLK_STATUS_DEVICE_NEEDS_RESET);
    eventfd_t n = 0;
    assert_int_equal(eventfd_read(v->err, &n), 0);
    assert_true(n >= 1);
    assert_false(vblk_vu_queue_active(v->d, 0));
    /* More traffic is ignored, not processed. */
    st = atk_vu_rq(v, 0x9000, IN, 0, 512);
    assert_true(vblk_vu_queue_process(v->d, 0) <= 0);
    assert_int_equal(v->mem[st], 0xee);
    atk_vu_free(v, false);
}

static void vu_memory_removed_under_running_ring(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_ready(false);
    size_t st = atk_vu_rq(v, 0x8000, IN, 0, 512);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
    assert_int_equal(v->mem[st], VBLK_S_OK);
    struct atk_vu_single one = {0, {ATK_VU_GPA, ATK_VU_MEM, ATK_VU_UA, 0}};
    atk_vu_ok(v, ATK_VU_REM_MEM_REG, &one, sizeof(one), NULL, 0);
    assert_true(atk_vu_get(v, ATK_VU_GET_STATUS) & VBLK_STATUS_DEVICE_NEEDS_RESET);
    /* The ring is no longer processed: the device has no mapping for it. */
    st = atk_vu_rq(v, 0x9000, IN, 0, 512);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 0);
    assert_int_equal(v->mem[st], 0xee);
    atk_vu_free(v, false);
}

static void vu_set_config_outside_config_space(void **state)
{
    (void)state;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    struct vblk_config before = {0};
    const uint32_t size = VBLK_CONFIG_SIZE_NO_ZONED;
    assert_int_equal(vblk_dev_config_read(vblk_vu_dev_blk(v->d), 0, &before, size), 0);
    struct {
        uint32_t offset, size;
    } bad[] = {{250, 10}, {256, 0}, {0, 8}, {0, 72}, {200, 56}, {UINT32_MAX, 1}};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct atk_vu_config c = {bad[i].offset, bad[i].size, 0, {0}};
        memset(c.data, 0xff, sizeof(c.data));
        atk_vu_refused(v, ATK_VU_SET_CONFIG, &c, 12 + bad[i].size, NULL, 0);
    }
    struct vblk_config after = {0};
    assert_int_equal(vblk_dev_config_read(vblk_vu_dev_blk(v->d), 0, &after, size), 0);
    assert_memory_equal(&before, &after, sizeof(before));
    atk_vu_free(v, false);
}

/* The in-flight region (vhost-user specification, split rings): a 16-byte
 * header, then 16 bytes per descriptor head. */
#define INFL_DESC_NUM 10u

#define INFL_LAST_BATCH 12u

#define INFL_DESC(i) (16u + 16u * (uint32_t)(i))

struct tamper_be {
    struct vblk_backend_ops ops;
    uint8_t *region; /* the front-end's view of queue 0's in-flight region */
};

/* Completes every request at once, then plays the front-end rewriting
 * the shared region at the worst moment: after the device linked the
 * request into its batch, before it publishes the batch. */
static void tamper_submit(void *be, void *qctx, struct vblk_req *r)
{
    struct tamper_be *t = be;
    (void)qctx;
    vblk_req_complete(r, VBLK_S_OK);
    uint16_t num = 0xffff, head = 0xfff0;
    memcpy(t->region + INFL_DESC_NUM, &num, 2);
    memcpy(t->region + INFL_LAST_BATCH, &head, 2);
}

static void vu_inflight_region_rewritten_by_front_end(void **state)
{
    (void)state;
    struct tamper_be t = {.ops = {.version = VBLK_BACKEND_OPS_V1,
                                  .caps = VBLK_BACKEND_CAP_FLUSH,
                                  .name = "tamper",
                                  .submit = tamper_submit}};
    struct vblk_backend be = {&t.ops, &t, ATK_DISK};
    struct atk_vu *v = atk_vu_new(&be);
    atk_vu_negotiate(v, false);
    atk_vu_mem_table(v);
    /* The front-end supplies a large region: the device maps all of it. */
    size_t size = 2u << 20;
    int ifd = memfd_create("atk-inflight", MFD_CLOEXEC);
    assert_true(ifd >= 0);
    assert_int_equal(ftruncate(ifd, (off_t)size), 0);
    uint8_t *region = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, ifd, 0);
    assert_true(region != MAP_FAILED);
    struct atk_vu_inflight in = {size, 0, 1, ATK_VU_QSIZE, 0};
    atk_vu_ok(v, ATK_VU_SET_INFLIGHT_FD, &in, 20, &ifd, 1);
    atk_vu_ring(v, false, 0);
    /* Queue 0's part is a few hundred bytes; the entry for head 0xfff0
     * would be a megabyte further on. */
    size_t far = INFL_DESC(0xfff0);
    assert_true(far < size);
    region[far] = 0xaa;
    t.region = region;
    size_t st = atk_vu_rq(v, 0x8000, VBLK_T_FLUSH, 0, 0);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
    assert_int_equal(v->mem[st], VBLK_S_OK);
    uint8_t canary = region[far];
    munmap(region, size);
    close(ifd);
    atk_vu_free(v, true);
    /* Whatever the front-end writes into the region, the device only
     * touches the entries of heads that exist in its ring. */
    assert_int_equal(canary, 0xaa);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* vhost-user */
        cmocka_unit_test(vu_vring_index_out_of_range_cve_2011_2512_class),
        cmocka_unit_test(vu_get_vring_base_index_out_of_range),
        cmocka_unit_test(vu_get_vring_base_on_queue_never_started),
        cmocka_unit_test(vu_fds_on_messages_that_take_none_cve_2022_0669_class),
        cmocka_unit_test(vu_log_base_size_overflow_cve_2020_10722_class),
        cmocka_unit_test(vu_dirty_log_shorter_than_guest_memory),
        cmocka_unit_test(vu_memory_regions_overlapping),
        cmocka_unit_test(vu_memory_region_empty_or_not_backed),
        cmocka_unit_test(vu_message_truncated_mid_header),
        cmocka_unit_test(vu_payload_size_larger_than_message),
        cmocka_unit_test(vu_wrong_version_or_reply_flag),
        cmocka_unit_test(vu_rings_outside_guest_memory),
        cmocka_unit_test(vu_ring_size_invalid),
        cmocka_unit_test(vu_packed_ring_base_beyond_ring_size),
        cmocka_unit_test(vu_driver_breaks_the_ring),
        cmocka_unit_test(vu_memory_removed_under_running_ring),
        cmocka_unit_test(vu_set_config_outside_config_space),
        cmocka_unit_test(vu_inflight_region_rewritten_by_front_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
