/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the built-in backends (lib/backend/). Requests are built by
 * hand and handed straight to the backend's methods, so every path (short
 * transfers, ring overflow, fallocate fallbacks) can be reached on purpose.
 * This file defines the one core function the backends call,
 * vblk_req_complete(), as a test double. Linked against the static library
 * that is enough: the core's object file is never pulled in, as long as
 * this test calls nothing else from the core. (The full path through the
 * device model is covered by the loopback tests.)
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "virtioblk/backends.h"
#include "virtioblk/blk.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

/* ---- test double for the core ---- */

struct treq {
    struct vblk_req req;
    int status;
    int ncomplete;
};

void vblk_req_complete(struct vblk_req *req, uint8_t status)
{
    struct treq *t = (struct treq *)(void *)((char *)req - offsetof(struct treq, req));
    t->status = status;
    t->ncomplete++;
}

/* ---- helpers ---- */

struct harness {
    struct vblk_backend be;
    void *qctx;
};

static void h_start(struct harness *h)
{
    h->qctx = NULL;
    if (h->be.ops->queue_start)
        assert_int_equal(h->be.ops->queue_start(h->be.ctx, 0, &h->qctx), 0);
}

static void h_stop(struct harness *h)
{
    if (h->be.ops->queue_stop)
        h->be.ops->queue_stop(h->be.ctx, 0, h->qctx);
    vblk_backend_destroy(&h->be);
    assert_null(h->be.ops);
    assert_null(h->be.ctx);
}

static void h_submit(struct harness *h, struct treq *t)
{
    t->status = -1;
    t->ncomplete = 0;
    h->be.ops->submit(h->be.ctx, h->qctx, &t->req);
}

/* Ends the batch and waits (on the queue fd if any) until all of @p t finish. */
static void h_wait(struct harness *h, struct treq *t, size_t n)
{
    const struct vblk_backend_ops *ops = h->be.ops;
    if (ops->submit_done)
        ops->submit_done(h->be.ctx, h->qctx);
    for (int rounds = 0;; rounds++) {
        size_t done = 0;
        if (ops->poll)
            assert_true(ops->poll(h->be.ctx, h->qctx) >= 0);
        for (size_t i = 0; i < n; i++) {
            assert_true(t[i].ncomplete <= 1);
            done += (size_t)t[i].ncomplete;
        }
        if (done == n)
            return;
        assert_non_null(ops->poll); /* inline backends finish in submit() */
        assert_true(rounds < 100000);
        int fd = ops->queue_fd ? ops->queue_fd(h->be.ctx, h->qctx) : -1;
        if (fd >= 0) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            assert_int_equal(poll(&p, 1, 10000), 1); /* 0: no wakeup came */
        }
    }
}

/* Runs @p t alone and checks its status. */
static void h_run(struct harness *h, struct treq *t, int status)
{
    h_submit(h, t);
    h_wait(h, t, 1);
    assert_int_equal(t->status, status);
}

static void treq_rw(struct treq *t, uint32_t type, uint64_t sector, struct vblk_iov *iov,
                    uint16_t niov)
{
    memset(t, 0, sizeof(*t));
    t->req.type = type;
    t->req.sector = sector;
    t->req.iov = iov;
    t->req.niov = niov;
    for (uint16_t i = 0; i < niov; i++)
        t->req.len += (uint32_t)iov[i].len;
}

static void treq_ranges(struct treq *t, uint32_t type, struct vblk_discard_wz_seg *r, uint32_t n)
{
    memset(t, 0, sizeof(*t));
    t->req.type = type;
    t->req.ranges = r;
    t->req.nranges = n;
}

static uint8_t pat(uint64_t off, unsigned seed)
{
    return (uint8_t)((off >> 9) * 13u + off * 7u + seed);
}

static void fill(uint8_t *b, size_t len, uint64_t off, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        b[i] = pat(off + i, seed);
}

/* Writes @p len bytes at @p off through the backend, split into 3 iovecs. */
static void be_write(struct harness *h, uint64_t off, uint8_t *buf, size_t len, unsigned seed)
{
    struct treq t;
    size_t a = len / 4, b = len / 2;
    struct vblk_iov iov[3] = {{buf, a}, {buf + a, b}, {buf + a + b, len - a - b}};
    fill(buf, len, off, seed);
    treq_rw(&t, VBLK_T_OUT, off / 512, iov, 3);
    h_run(h, &t, VBLK_S_OK);
}

static void be_read(struct harness *h, uint64_t off, uint8_t *buf, size_t len)
{
    struct treq t;
    struct vblk_iov iov[2] = {{buf, 512}, {buf + 512, len - 512}};
    memset(buf, 0xEE, len);
    treq_rw(&t, VBLK_T_IN, off / 512, iov, 2);
    h_run(h, &t, VBLK_S_OK);
}

static void h_ranges(struct harness *h, uint32_t type, struct vblk_discard_wz_seg *r, uint32_t n)
{
    struct treq t;
    treq_ranges(&t, type, r, n);
    h_run(h, &t, VBLK_S_OK);
}

static void h_flush(struct harness *h)
{
    struct treq t;
    memset(&t, 0, sizeof(t));
    t.req.type = VBLK_T_FLUSH;
    h_run(h, &t, VBLK_S_OK);
}

static void assert_pattern(const uint8_t *b, size_t len, uint64_t off, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        if (b[i] != pat(off + i, seed))
            fail_msg("byte at %llu: %u, want %u", (unsigned long long)(off + i), b[i],
                     pat(off + i, seed));
}

static void assert_zero(const uint8_t *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (b[i] != 0)
            fail_msg("byte %zu is %u, want 0", i, b[i]);
}

/* What @p n ranges leave in @p exp: zeros. */
static void zero_ranges(uint8_t *exp, const struct vblk_discard_wz_seg *r, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        memset(exp + r[i].sector * 512, 0, (size_t)r[i].num_sectors * 512);
}

static void pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
}

/* ---- null ---- */

static void test_null(void **state)
{
    struct harness h = {0};
    struct treq t;
    uint8_t buf[512];
    struct vblk_iov iov = {buf, sizeof(buf)};
    (void)state;

    assert_int_equal(vblk_backend_null_create(1000, &h.be), -EINVAL);
    assert_int_equal(vblk_backend_null_create(1 * MiB, &h.be), 0);
    assert_int_equal(h.be.size, 1 * MiB);
    assert_string_equal(h.be.ops->name, "null");
    assert_int_equal(h.be.ops->caps, VBLK_BACKEND_CAP_FLUSH | VBLK_BACKEND_CAP_DISCARD |
                                         VBLK_BACKEND_CAP_WRITE_ZEROES |
                                         VBLK_BACKEND_CAP_SECURE_ERASE |
                                         VBLK_BACKEND_CAP_NOP_RW);
    h_start(&h);
    treq_rw(&t, VBLK_T_IN, 0, &iov, 1);
    h_run(&h, &t, VBLK_S_OK); /* inline: h_wait insists, as there is no poll() */
    h_stop(&h);
    vblk_backend_destroy(&h.be); /* twice: harmless */
    vblk_backend_destroy(NULL);
}

/* ---- memory ---- */

static void test_memory(void **state)
{
    struct harness h = {0};
    const uint64_t size = 1024ull * MiB; /* untouched pages cost nothing */
    const size_t n = 4 * MiB;
    uint8_t *buf = malloc(n), *exp = malloc(n);
    /* Small and large (madvise path, not page aligned) ranges. */
    struct vblk_discard_wz_seg r[5] = {
        {1, 3, 0}, {100, 1, 0}, {9, 2048 + 7, VBLK_WZ_F_UNMAP}, {4000, 50, 0}, {8000, 191, 0}};
    (void)state;

    assert_non_null(buf);
    assert_non_null(exp);
    assert_int_equal(vblk_backend_memory_create(513, &h.be), -EINVAL);
    assert_int_equal(vblk_backend_memory_create(size, &h.be), 0);
    assert_int_equal(h.be.size, size);
    assert_true((h.be.ops->caps & VBLK_BACKEND_CAP_READ_ONLY) == 0);
    h_start(&h);
    be_write(&h, size - 8192, buf, 8192, 1);
    be_read(&h, size - 8192, buf, 8192);
    assert_pattern(buf, 8192, size - 8192, 1);
    be_read(&h, 512 * MiB, buf, 8192);
    assert_zero(buf, 8192); /* never written */

    be_write(&h, 0, buf, n, 3);
    fill(exp, n, 0, 3);
    h_ranges(&h, VBLK_T_DISCARD, &r[0], 2);
    h_ranges(&h, VBLK_T_WRITE_ZEROES, &r[2], 1);
    h_ranges(&h, VBLK_T_WRITE_ZEROES, &r[3], 1);
    h_ranges(&h, VBLK_T_SECURE_ERASE, &r[4], 1);
    zero_ranges(exp, r, 5);
    be_read(&h, 0, buf, n);
    assert_memory_equal(buf, exp, n);
    h_flush(&h);
    h_stop(&h);
    free(buf);
    free(exp);
}

/* ---- file ---- */

struct engine {
    int engine;
    const char *name;
};

static const struct engine io_uring = {VBLK_FILE_ENGINE_IO_URING, "io_uring"};
static const struct engine psync = {VBLK_FILE_ENGINE_PSYNC, "psync"};

/* A scratch file, and the backend over it (or over a device). */
struct fx {
    struct harness h;
    char path[64];
    int fd; /* the scratch file, to check it behind the backend's back */
};

static void fx_file(struct fx *f, const char *dir, uint64_t size)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->path, sizeof(f->path), "%s/vblk-test-XXXXXX", dir);
    f->fd = mkstemp(f->path);
    assert_true(f->fd >= 0);
    assert_int_equal(ftruncate(f->fd, (off_t)size), 0);
}

static void fx_remove(struct fx *f)
{
    close(f->fd);
    unlink(f->path);
}

static void fx_skip(struct fx *f, const char *why)
{
    print_message("%s: skipped\n", why);
    fx_remove(f);
    skip();
}

/* Opens @p path (default: the scratch file) with the test's engine and
 * starts queue 0. Skips when the engine is unavailable. */
static void fx_open(void **state, struct fx *f, const char *path, struct vblk_file_opts o)
{
    const struct engine *e = *state;
    int r;

    o.engine = e->engine;
    r = vblk_backend_file_open(path ? path : f->path, &o, &f->h.be);
    if (r != 0 && e->engine == VBLK_FILE_ENGINE_IO_URING && r != -EINVAL)
        fx_skip(f, "io_uring unavailable");
    assert_int_equal(r, 0);
    assert_string_equal(f->h.be.ops->name, "file");
    assert_int_equal(f->h.be.ops->queue_fd != NULL, e->engine == VBLK_FILE_ENGINE_IO_URING);
    h_start(&f->h);
    if (f->h.be.ops->queue_fd)
        assert_true(f->h.be.ops->queue_fd(f->h.be.ctx, f->h.qctx) >= 0);
}

static void fx_close(struct fx *f)
{
    h_stop(&f->h);
    fx_remove(f);
}

static void test_file_rw(void **state)
{
    struct fx f;
    const size_t size = 1 * MiB;
    uint8_t w[64 * KiB], r[64 * KiB];
    struct vblk_discard_wz_seg d[1] = {{8, 8, 0}};
    struct vblk_discard_wz_seg wz[2] = {{24, 3, 0}, {40, 17, VBLK_WZ_F_UNMAP}};
    struct treq t;

    fx_file(&f, "/tmp", size);
    fx_open(state, &f, NULL, (struct vblk_file_opts){0});
    assert_int_equal(f.h.be.size, size);
    assert_int_equal(f.h.be.ops->caps, VBLK_BACKEND_CAP_FLUSH | VBLK_BACKEND_CAP_DISCARD |
                                           VBLK_BACKEND_CAP_WRITE_ZEROES);
    be_write(&f.h, 0, w, sizeof(w), 4);
    be_write(&f.h, size - 4096, w, 4096, 5);
    h_flush(&f.h);
    pread_all(f.fd, r, sizeof(r), 0); /* the file itself holds the data */
    assert_pattern(r, sizeof(r), 0, 4);
    pread_all(f.fd, r, 4096, size - 4096);
    assert_pattern(r, 4096, size - 4096, 5);
    be_read(&f.h, 0, r, sizeof(r));
    assert_pattern(r, sizeof(r), 0, 4);

    h_ranges(&f.h, VBLK_T_DISCARD, d, 1);
    h_ranges(&f.h, VBLK_T_WRITE_ZEROES, wz, 2);
    fill(w, sizeof(w), 0, 4);
    zero_ranges(w, d, 1);
    zero_ranges(w, wz, 2);
    pread_all(f.fd, r, sizeof(r), 0);
    assert_memory_equal(r, w, sizeof(r));
    be_read(&f.h, 0, r, sizeof(r));
    assert_memory_equal(r, w, sizeof(r));

    /* Odd ones: no data, an empty range, a type files cannot do. */
    treq_rw(&t, VBLK_T_IN, 0, NULL, 0);
    h_run(&f.h, &t, VBLK_S_OK);
    d[0].num_sectors = 0;
    h_ranges(&f.h, VBLK_T_DISCARD, d, 1);
    treq_ranges(&t, VBLK_T_SECURE_ERASE, wz, 1);
    h_run(&f.h, &t, VBLK_S_UNSUPP);
    fx_close(&f);
}

/* More iovecs than one preadv/pwritev takes (IOV_MAX). */
static void test_file_many_iov(void **state)
{
    enum { NIOV = 1500 };
    static uint8_t w[NIOV * 512], r[NIOV * 512];
    static struct vblk_iov iov[NIOV];
    struct fx f;
    struct treq t;

    fx_file(&f, "/tmp", sizeof(w));
    fx_open(state, &f, NULL, (struct vblk_file_opts){0});
    fill(w, sizeof(w), 0, 10);
    for (int i = 0; i < NIOV; i++)
        iov[i] = (struct vblk_iov){w + i * 512, 512};
    treq_rw(&t, VBLK_T_OUT, 0, iov, NIOV);
    h_run(&f.h, &t, VBLK_S_OK);
    pread_all(f.fd, r, sizeof(r), 0);
    assert_memory_equal(r, w, sizeof(r));
    memset(r, 0, sizeof(r));
    for (int i = 0; i < NIOV; i++)
        iov[i] = (struct vblk_iov){r + i * 512, 512};
    treq_rw(&t, VBLK_T_IN, 0, iov, NIOV);
    h_run(&f.h, &t, VBLK_S_OK);
    assert_memory_equal(r, w, sizeof(r));
    fx_close(&f);
}

/* tmpfs has no FALLOC_FL_ZERO_RANGE: WRITE_ZEROES falls back to PUNCH_HOLE. */
static void test_file_tmpfs(void **state)
{
    struct fx f;
    uint8_t w[16 * KiB], r[16 * KiB];
    struct vblk_discard_wz_seg wz[2] = {{2, 4, 0}, {20, 3, 0}};
    struct stat st;

    if (stat("/dev/shm", &st) != 0 || !S_ISDIR(st.st_mode)) {
        print_message("no /dev/shm: skipped\n");
        skip();
    }
    fx_file(&f, "/dev/shm", sizeof(w));
    fx_open(state, &f, NULL, (struct vblk_file_opts){0});
    be_write(&f.h, 0, w, sizeof(w), 11);
    h_ranges(&f.h, VBLK_T_WRITE_ZEROES, wz, 1);
    h_ranges(&f.h, VBLK_T_WRITE_ZEROES, &wz[1], 1); /* straight to PUNCH_HOLE now */
    fill(w, sizeof(w), 0, 11);
    zero_ranges(w, wz, 2);
    pread_all(f.fd, r, sizeof(r), 0);
    assert_memory_equal(r, w, sizeof(r));
    fx_close(&f);
}

/* Errors from the kernel become VBLK_S_IOERR (here: writing a read-only fd,
 * which the device would have refused before submit()). */
static void test_file_ioerr(void **state)
{
    struct fx f;
    uint8_t buf[4096];
    struct vblk_iov iov[2] = {{buf, 1024}, {buf + 1024, 3072}};
    struct vblk_discard_wz_seg d[2] = {{0, 1, 0}, {4, 4, 0}};
    struct treq t[2];

    fx_file(&f, "/tmp", 64 * KiB);
    fx_open(state, &f, NULL, (struct vblk_file_opts){.read_only = true});
    assert_int_equal(f.h.be.ops->caps, VBLK_BACKEND_CAP_READ_ONLY);
    treq_rw(&t[0], VBLK_T_OUT, 8, iov, 2);
    treq_ranges(&t[1], VBLK_T_DISCARD, d, 2);
    h_submit(&f.h, &t[0]);
    h_submit(&f.h, &t[1]);
    h_wait(&f.h, t, 2);
    assert_int_equal(t[0].status, VBLK_S_IOERR);
    assert_int_equal(t[1].status, VBLK_S_IOERR);
    treq_rw(&t[0], VBLK_T_IN, 8, iov, 2); /* reading still works */
    h_run(&f.h, &t[0], VBLK_S_OK);
    assert_zero(buf, sizeof(buf));
    fx_close(&f);
}

/* More requests, and more ranges in one request, than the ring holds. */
static void test_file_overflow(void **state)
{
    enum { N = 64, BS = 4096 };
    static uint8_t w[N][BS], r[N][BS];
    static struct treq t[N + 1];
    struct vblk_iov iov[N];
    struct vblk_discard_wz_seg d[10];
    struct fx f;

    fx_file(&f, "/tmp", N * BS);
    fx_open(state, &f, NULL, (struct vblk_file_opts){.ring_depth = 4});
    for (int i = 0; i < N; i++) {
        fill(w[i], BS, (uint64_t)i * BS, 6);
        iov[i] = (struct vblk_iov){w[i], BS};
        treq_rw(&t[i], VBLK_T_OUT, (uint64_t)i * BS / 512, &iov[i], 1);
        h_submit(&f.h, &t[i]);
    }
    h_wait(&f.h, t, N);
    for (int i = 0; i < 10; i++)
        d[i] = (struct vblk_discard_wz_seg){(uint64_t)(i * 6 + 1) * BS / 512, 8, 0};
    treq_ranges(&t[N], VBLK_T_DISCARD, d, 10);
    h_run(&f.h, &t[N], VBLK_S_OK);
    for (int i = 0; i < N; i++) {
        assert_int_equal(t[i].status, VBLK_S_OK);
        iov[i] = (struct vblk_iov){r[i], BS};
        treq_rw(&t[i], VBLK_T_IN, (uint64_t)i * BS / 512, &iov[i], 1);
        h_submit(&f.h, &t[i]);
    }
    h_wait(&f.h, t, N);
    zero_ranges(&w[0][0], d, 10);
    for (int i = 0; i < N; i++)
        assert_int_equal(t[i].status, VBLK_S_OK);
    assert_memory_equal(r, w, sizeof(r));
    fx_close(&f);
}

/* The file shrinks under the backend: short read resumed mid-iovec, then EOF. */
static void test_file_eof(void **state)
{
    struct fx f;
    uint8_t w[16 * KiB], r[3 * KiB];
    struct vblk_iov iov[3] = {{r, 1024}, {r + 1024, 1024}, {r + 2048, 1024}};
    struct treq t;

    fx_file(&f, "/tmp", sizeof(w));
    fill(w, sizeof(w), 0, 7);
    assert_int_equal(pwrite(f.fd, w, sizeof(w), 0), (ssize_t)sizeof(w));
    fx_open(state, &f, NULL, (struct vblk_file_opts){0});
    assert_int_equal(ftruncate(f.fd, 4096 + 1536), 0);
    memset(r, 0xEE, sizeof(r));
    treq_rw(&t, VBLK_T_IN, 8, iov, 3);
    h_run(&f.h, &t, VBLK_S_OK);
    assert_pattern(r, 1536, 4096, 7);
    assert_zero(r + 1536, sizeof(r) - 1536);
    fx_close(&f);
}

static void test_file_direct(void **state)
{
    const struct engine *e = *state;
    struct vblk_file_opts o = {.direct = true, .engine = e->engine};
    struct fx f;
    uint8_t *w, *r;
    struct treq t;

    fx_file(&f, "/var/tmp", 1 * MiB);
    if (vblk_backend_file_open(f.path, &o, &f.h.be) == -EINVAL)
        fx_skip(&f, "O_DIRECT refused by the filesystem of /var/tmp");
    vblk_backend_destroy(&f.h.be);
    fx_open(state, &f, NULL, o);
    assert_int_equal(posix_memalign((void **)&w, 4096, 64 * KiB), 0);
    assert_int_equal(posix_memalign((void **)&r, 4096, 64 * KiB), 0);
    struct vblk_iov iov[2] = {{w, 16 * KiB}, {w + 16 * KiB, 48 * KiB}};
    fill(w, 64 * KiB, 8192, 8);
    treq_rw(&t, VBLK_T_OUT, 16, iov, 2);
    h_run(&f.h, &t, VBLK_S_OK);
    h_flush(&f.h);
    pread_all(f.fd, r, 64 * KiB, 8192);
    assert_pattern(r, 64 * KiB, 8192, 8);
    memset(r, 0, 64 * KiB);
    iov[0].base = r;
    iov[1].base = r + 16 * KiB;
    treq_rw(&t, VBLK_T_IN, 16, iov, 2);
    h_run(&f.h, &t, VBLK_S_OK);
    assert_pattern(r, 64 * KiB, 8192, 8);
    fx_close(&f);
    free(w);
    free(r);
}

/*
 * A loop device, if this process may create one. Backed by tmpfs when there
 * is one: the loop device then lacks ZERO_RANGE, and the ioctl fallback runs.
 */
static void test_file_blkdev(void **state)
{
    const size_t size = 4 * MiB;
    uint8_t w[64 * KiB], r[64 * KiB];
    struct vblk_discard_wz_seg d[1] = {{8, 8, 0}};
    struct vblk_discard_wz_seg wz[2] = {{24, 8, 0}, {40, 16, VBLK_WZ_F_UNMAP}};
    struct stat st;
    struct fx f;
    char dev[32];
    int ctl, n, lfd = -1;

    fx_file(&f, stat("/dev/shm", &st) == 0 ? "/dev/shm" : "/tmp", size);
    ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    n = ctl >= 0 ? ioctl(ctl, LOOP_CTL_GET_FREE) : -1;
    if (ctl >= 0)
        close(ctl);
    if (n >= 0) {
        snprintf(dev, sizeof(dev), "/dev/loop%d", n);
        lfd = open(dev, O_RDWR | O_CLOEXEC);
    }
    if (lfd < 0 || ioctl(lfd, LOOP_SET_FD, f.fd) < 0) {
        if (lfd >= 0)
            close(lfd);
        fx_skip(&f, "cannot set up a loop device (needs root)");
    }
    /* Detach by itself on the last close, even if an assertion fails. */
    struct loop_info64 li = {.lo_flags = LO_FLAGS_AUTOCLEAR};
    assert_int_equal(ioctl(lfd, LOOP_SET_STATUS64, &li), 0);
    fx_open(state, &f, dev, (struct vblk_file_opts){0});
    assert_int_equal(f.h.be.size, size);
    assert_true(f.h.be.ops->caps & VBLK_BACKEND_CAP_WRITE_ZEROES);
    be_write(&f.h, 0, w, sizeof(w), 9);
    h_flush(&f.h);
    if (f.h.be.ops->caps & VBLK_BACKEND_CAP_DISCARD)
        h_ranges(&f.h, VBLK_T_DISCARD, d, 1);
    h_ranges(&f.h, VBLK_T_WRITE_ZEROES, wz, 2);
    fill(w, sizeof(w), 0, 9);
    zero_ranges(w, wz, 2);
    be_read(&f.h, 0, r, sizeof(r));
    memcpy(r + 8 * 512, w + 8 * 512, 8 * 512); /* discarded: contents undefined */
    assert_memory_equal(r, w, sizeof(r));
    h_stop(&f.h);
    close(lfd);
    fx_remove(&f);
}

static void test_file_errors(void **state)
{
    struct vblk_backend be = {0};
    struct vblk_file_opts o = {.engine = 42};
    struct fx f;
    (void)state;

    assert_int_equal(vblk_backend_file_open("/nonexistent/vblk-disk", NULL, &be), -ENOENT);
    assert_int_equal(vblk_backend_file_open(NULL, NULL, &be), -EINVAL);
    fx_file(&f, "/tmp", 64 * KiB);
    assert_int_equal(vblk_backend_file_open(f.path, &o, &be), -EINVAL);
    o = (struct vblk_file_opts){.ring_depth = 1u << 20};
    assert_int_equal(vblk_backend_file_open(f.path, &o, &be), -EINVAL);

    /* Defaults: writable, AUTO engine. */
    assert_int_equal(vblk_backend_file_open(f.path, NULL, &be), 0);
    assert_int_equal(be.size, 64 * KiB);
    assert_true((be.ops->caps & VBLK_BACKEND_CAP_READ_ONLY) == 0);
    vblk_backend_destroy(&be);

    /* Read-only: the capabilities say so (the device refuses writes). */
    o = (struct vblk_file_opts){.read_only = true};
    assert_int_equal(chmod(f.path, 0444), 0);
    assert_int_equal(vblk_backend_file_open(f.path, &o, &be), 0);
    assert_int_equal(be.ops->caps, VBLK_BACKEND_CAP_READ_ONLY);
    vblk_backend_destroy(&be);

    /* Size not a multiple of 512. */
    assert_int_equal(ftruncate(f.fd, 1000), 0);
    assert_int_equal(vblk_backend_file_open(f.path, &o, &be), -EINVAL);
    /* Neither a regular file nor a block device. */
    assert_int_equal(vblk_backend_file_open("/tmp", &o, &be), -EINVAL);
    assert_int_equal(vblk_backend_file_open("/dev/null", &o, &be), -EINVAL);
    assert_null(be.ops);
    fx_remove(&f);
}

/* clang-format off */
#define FILE_TEST(f, e) {#f "/" #e, f, NULL, NULL, (void *)&(e)}
#define FILE_TESTS(e) \
    FILE_TEST(test_file_rw, e), FILE_TEST(test_file_many_iov, e), \
    FILE_TEST(test_file_tmpfs, e), FILE_TEST(test_file_ioerr, e), \
    FILE_TEST(test_file_overflow, e), FILE_TEST(test_file_eof, e), \
    FILE_TEST(test_file_direct, e), FILE_TEST(test_file_blkdev, e)
/* clang-format on */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null),
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_file_errors),
        FILE_TESTS(psync),
        FILE_TESTS(io_uring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
