/* SPDX-License-Identifier: MIT */
/*
 * In-flight tracking of the vhost-user back-end across a restart: the
 * front-end (vu_frontend.h) shares an in-flight region
 * (SET_INFLIGHT_FD / GET_INFLIGHT_FD), the back-end dies with requests in
 * flight, and a new instance resubmits them from the region and the ring
 * (vhost-user specification, "Inflight I/O tracking"). Split rings; packed
 * rings across a simulated crash at each point of the region update, and a
 * region full of garbage. Every test counts the fds in /proc/self/fd
 * before and after.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fd_count.h"
#include "vu_frontend.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inflight_resubmit),
        cmocka_unit_test(test_inflight_packed_restart),
        cmocka_unit_test(test_inflight_packed_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
