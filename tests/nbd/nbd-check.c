/* SPDX-License-Identifier: MIT */
/*
 * nbd-check: drives the NBD backend through the loopback transport (the
 * real device code: rings, request decoding, the backend's event fd)
 * against a real NBD server, and checks what comes back.
 *
 *   nbd-check ops URI
 *       DISCARD and WRITE_ZEROES (with and without UNMAP) read back as
 *       zeros, neighbours untouched; FLUSH; scattered buffers (bounce);
 *       requests larger than the server's maximum block size (split).
 *
 *   nbd-check fault URI --pidfile F --mode kill|stop [--restart CMD]
 *                       [--timeout S]
 *       Random 4 KiB reads and writes, 8 in flight, each block tracked.
 *       After 1 s the server is killed (and restarted with CMD 1 s later)
 *       or stopped for longer than the request timeout (and continued; if
 *       the server dies of it, it is restarted with CMD).
 *       Checks: requests in the window fail with IOERR within the timeout
 *       (plus a margin), requests issued while the connection is down fail
 *       fast, I/O succeeds again afterwards, and at the end every block
 *       holds what was last acknowledged, or, where a write failed, either
 *       its old or its new content.
 *
 * Exit status: 0 pass, 1 fail, 2 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "virtioblk/nbd.h"
#include "virtioblk/virtioblk.h"

#define BLK       4096u
#define BLK_SECTS (BLK / 512u)
#define QD        8u

static const char *uri;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("nbd-check: FAIL: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void log_line(void *opaque, int level, const char *msg)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    (void)opaque;
    if (level <= VBLK_LOG_INFO || getenv("NBD_CHECK_DEBUG"))
        fprintf(stderr, "nbd-check: backend %s: %s\n", names[level & 3], msg);
}

/* ---- one request at a time or many: the driver side of queue 0 ---- */

struct slot {
    struct vblk_drv_blk_frame *fr; /* arena */
    uint8_t *buf;                  /* arena, BLK bytes */
    bool busy;
    bool write;
    double idle_until; /* after an IOERR: do not hammer a server that is away */
    uint32_t block;
    uint32_t gen;
    double t0;
};

struct rig {
    struct vblk_backend be;
    struct vblk_loopback *lb;
    struct vblk_drv_vq *drv;
    int befd;
};

static void rig_open(struct rig *r, const struct vblk_nbd_opts *o)
{
    int rc = vblk_backend_nbd_open(uri, o, &r->be);
    if (rc < 0)
        die("cannot open %s: %s", uri, strerror(-rc));
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, r->be.size);
    p.write_zeroes_may_unmap = true;
    p.max_discard_seg = 4;
    p.max_write_zeroes_seg = 4;
    p.seg_max = 126;
    struct vblk_loopback_opts lo = {.arena_size = 48u << 20};
    rc = vblk_loopback_create(&p, &r->be, &lo, &r->lb);
    if (rc < 0)
        die("loopback: %s", strerror(-rc));
    r->drv = vblk_loopback_driver(r->lb, 0);
    r->befd = vblk_queue_backend_fd(vblk_loopback_queue(r->lb, 0));
}

static void rig_close(struct rig *r)
{
    vblk_loopback_destroy(r->lb);
    vblk_backend_destroy(&r->be);
}

/* Runs the device and waits (briefly) on the backend's fd. */
static void rig_turn(struct rig *r, int ms)
{
    if (vblk_loopback_process(r->lb, 0) < 0)
        die("queue broken");
    if (!vblk_drv_vq_has_used(r->drv) && r->befd >= 0) {
        struct pollfd p = {.fd = r->befd, .events = POLLIN};
        (void)poll(&p, 1, ms);
        if (vblk_loopback_process(r->lb, 0) < 0)
            die("queue broken");
    }
}

/* One request with data in @p n buffers; returns the status byte. */
static int rig_req(struct rig *r, uint32_t type, uint64_t sector, const struct vblk_iov *data,
                   unsigned n)
{
    static struct vblk_drv_blk_frame *fr;
    if (fr == NULL)
        fr = vblk_loopback_alloc(r->lb, sizeof(*fr));
    int rc = vblk_drv_blk_add(r->drv, fr, type, sector, data, n, fr, n > 2);
    if (rc < 0)
        die("driver add: %s", strerror(-rc));
    (void)vblk_loopback_kick(r->lb, 0);
    double t0 = now_s();
    for (;;) {
        void *tok;
        uint32_t len;
        int got = vblk_drv_vq_get_used(r->drv, &tok, &len);
        if (got < 0)
            die("driver get_used: %s", strerror(-got));
        if (got > 0)
            return fr->status;
        if (now_s() - t0 > 60)
            die("a request got no completion in 60 s");
        rig_turn(r, 10);
    }
}

static int rig_rw(struct rig *r, uint32_t type, uint64_t sector, void *buf, size_t len)
{
    struct vblk_iov v = {buf, len};
    return rig_req(r, type, sector, buf ? &v : NULL, buf ? 1 : 0);
}

static int rig_range(struct rig *r, uint32_t type, uint64_t sector, uint32_t nsect, bool unmap)
{
    struct vblk_discard_wz_seg *s = vblk_loopback_alloc(r->lb, sizeof(*s));
    if (s == NULL)
        die("arena full");
    s->sector = sector; /* little-endian host */
    s->num_sectors = nsect;
    s->flags = unmap ? VBLK_WZ_F_UNMAP : 0;
    return rig_rw(r, type, 0, s, sizeof(*s));
}

/* ---- ops ---- */

static void fill(uint8_t *b, size_t len, uint32_t seed)
{
    for (size_t i = 0; i < len; i++)
        b[i] = (uint8_t)(seed * 131u + i * 7u + (i >> 9));
}

static void expect_st(int st, int want, const char *what)
{
    if (st != want)
        die("%s: status %d, expected %d", what, st, want);
}

static void expect_zero(const uint8_t *b, size_t len, const char *what)
{
    for (size_t i = 0; i < len; i++)
        if (b[i] != 0)
            die("%s: byte %zu is 0x%02x, expected zero", what, i, b[i]);
}

static int cmd_ops(void)
{
    struct vblk_nbd_opts o = {.log = log_line, .request_timeout_ms = 10000};
    struct rig r;
    rig_open(&r, &o);
    const size_t span = 1u << 20;
    uint8_t *w = vblk_loopback_alloc(r.lb, span), *rd = vblk_loopback_alloc(r.lb, span);
    if (!w || !rd)
        die("arena full");

    fill(w, span, 1);
    expect_st(rig_rw(&r, VBLK_T_OUT, 0, w, span), VBLK_S_OK, "write 1 MiB");
    expect_st(rig_rw(&r, VBLK_T_FLUSH, 0, NULL, 0), VBLK_S_OK, "flush");
    memset(rd, 0xee, span);
    expect_st(rig_rw(&r, VBLK_T_IN, 0, rd, span), VBLK_S_OK, "read 1 MiB");
    if (memcmp(rd, w, span) != 0)
        die("1 MiB read back differs from what was written");

    /* DISCARD 64 KiB at 128 KiB; WRITE_ZEROES with UNMAP at 320 KiB and
     * without it at 512 KiB; everything around them keeps its data. */
    expect_st(rig_range(&r, VBLK_T_DISCARD, 256, 128, false), VBLK_S_OK, "discard");
    expect_st(rig_range(&r, VBLK_T_WRITE_ZEROES, 640, 128, true), VBLK_S_OK,
              "write-zeroes (unmap)");
    expect_st(rig_range(&r, VBLK_T_WRITE_ZEROES, 1024, 128, false), VBLK_S_OK,
              "write-zeroes (no unmap)");
    expect_st(rig_rw(&r, VBLK_T_IN, 0, rd, span), VBLK_S_OK, "read after zeroing");
    static const struct {
        uint32_t at, len;
        const char *what;
    } z[] = {{128u << 10, 64u << 10, "discarded range"},
             {320u << 10, 64u << 10, "write-zeroes (unmap) range"},
             {512u << 10, 64u << 10, "write-zeroes range"}};
    size_t prev = 0;
    for (unsigned i = 0; i < 3; i++) {
        expect_zero(rd + z[i].at, z[i].len, z[i].what);
        if (memcmp(rd + prev, w + prev, z[i].at - prev) != 0)
            die("data before the %s changed", z[i].what);
        prev = z[i].at + z[i].len;
    }
    if (memcmp(rd + prev, w + prev, span - prev) != 0)
        die("data after the zeroed ranges changed");
    printf("nbd-check: discard and write-zeroes read back as zeros, neighbours intact\n");

    /* Scattered buffers: 17 pieces of odd sizes, not adjacent. */
    struct vblk_iov v[17];
    uint8_t *pieces = vblk_loopback_alloc(r.lb, 17 * 8192);
    size_t total = 0;
    for (unsigned i = 0; i < 17; i++) {
        v[i].base = pieces + i * 8192;
        v[i].len = (i % 3 + 1) * 1024;
        total += v[i].len;
    }
    size_t pad = (512 - total % 512) % 512;
    v[16].len += pad;
    total += pad;
    for (unsigned i = 0; i < 17; i++)
        fill(v[i].base, v[i].len, 40 + i);
    expect_st(rig_req(&r, VBLK_T_OUT, 4096, v, 17), VBLK_S_OK, "scattered write");
    expect_st(rig_rw(&r, VBLK_T_IN, 4096, rd, total), VBLK_S_OK, "read of scattered write");
    size_t off = 0;
    for (unsigned i = 0; i < 17; i++) {
        if (memcmp(rd + off, v[i].base, v[i].len) != 0)
            die("scattered write: piece %u read back differently", i);
        off += v[i].len;
    }
    for (unsigned i = 0; i < 17; i++)
        memset(v[i].base, 0, v[i].len);
    expect_st(rig_req(&r, VBLK_T_IN, 4096, v, 17), VBLK_S_OK, "scattered read");
    off = 0;
    for (unsigned i = 0; i < 17; i++) {
        if (memcmp(rd + off, v[i].base, v[i].len) != 0)
            die("scattered read: piece %u differs", i);
        off += v[i].len;
    }
    printf("nbd-check: scattered buffers (%zu bytes in 17 pieces) written and read back\n", total);

    /* Larger than a server maximum of 64 KiB (blocksize-policy filter):
     * the backend splits it. */
    size_t big = 4u << 20;
    uint8_t *bw = vblk_loopback_alloc(r.lb, big), *br = vblk_loopback_alloc(r.lb, big);
    if (!bw || !br)
        die("arena full");
    fill(bw, big, 7);
    expect_st(rig_rw(&r, VBLK_T_OUT, 8192, bw, big), VBLK_S_OK, "4 MiB write");
    expect_st(rig_rw(&r, VBLK_T_IN, 8192, br, big), VBLK_S_OK, "4 MiB read");
    if (memcmp(bw, br, big) != 0)
        die("4 MiB write read back differently");
    printf("nbd-check: 4 MiB requests written and read back\n");

    struct vblk_nbd_stats st;
    vblk_backend_nbd_stats(&r.be, &st);
    if (st.bounced < 2)
        die("the scattered requests did not go through the bounce buffer");
    rig_close(&r);
    printf("nbd-check: ops PASS\n");
    return 0;
}

/* ---- fault ---- */

struct block {
    uint32_t gen;   /* last acknowledged write (0: never written, zeros) */
    uint32_t maybe; /* a failed write that may have landed, or 0 */
    uint32_t next;  /* generations handed out */
    bool busy;
};

static void pattern(uint8_t *b, uint32_t block, uint32_t gen)
{
    if (gen == 0) {
        memset(b, 0, BLK);
        return;
    }
    for (unsigned i = 0; i < BLK; i += 8) {
        uint64_t v = (uint64_t)block << 32 | gen;
        v ^= (uint64_t)i * 0x9e3779b97f4a7c15ull;
        memcpy(b + i, &v, 8);
    }
}

static bool is_pattern(const uint8_t *b, uint32_t block, uint32_t gen)
{
    static uint8_t tmp[BLK];
    pattern(tmp, block, gen);
    return memcmp(b, tmp, BLK) == 0;
}

static pid_t read_pid(const char *pidfile)
{
    FILE *f = fopen(pidfile, "r");
    long v = 0;
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld", &v) != 1)
        v = -1;
    fclose(f);
    return (pid_t)v;
}

/* Whether @p pid runs (not gone, not a zombie). */
static bool alive(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p != NULL && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

/*
 * Runs @p cmd (a shell command that execs the server) as our child: nbdkit
 * ends with its parent, so it must not be a shell that exits at once.
 * Returns when the server has written its pid file.
 */
static void restart_server(const char *cmd, const char *pidfile)
{
    (void)unlink(pidfile);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        if (read_pid(pidfile) > 0)
            return;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            die("the restarted server exited: %s", cmd);
        usleep(10000);
    }
    die("the restarted server wrote no pid file within 5 s");
}

struct fault_stats {
    unsigned w_ok, w_err, r_ok, r_err;
    unsigned after_ok;  /* successes issued after the server came back */
    unsigned fast_fail; /* IOERR within 100 ms while the server was away */
    double worst_err;   /* slowest IOERR (s) */
};

static int cmd_fault(const char *pidfile, const char *mode, const char *restart, double timeout)
{
    const uint32_t nblocks = 8192; /* 32 MiB */
    const bool kill_mode = strcmp(mode, "kill") == 0;
    struct vblk_nbd_opts o = {.log = log_line,
                              .request_timeout_ms = (uint32_t)(timeout * 1000),
                              .connect_timeout_ms = 1000,
                              .reconnect_min_ms = 50,
                              .reconnect_max_ms = 400};
    struct rig r;
    rig_open(&r, &o);
    if (r.be.size < (uint64_t)nblocks * BLK)
        die("export too small");
    struct block *b = calloc(nblocks, sizeof(*b));
    struct slot s[QD];
    for (unsigned i = 0; i < QD; i++) {
        s[i].fr = vblk_loopback_alloc(r.lb, sizeof(*s[i].fr));
        s[i].buf = vblk_loopback_alloc(r.lb, BLK);
        s[i].busy = false;
        s[i].idle_until = 0;
    }
    uint8_t *check = vblk_loopback_alloc(r.lb, BLK);
    struct fault_stats fs = {0};
    unsigned seed = 12345;
    const double t_start = now_s(), t_fault = t_start + 1.0;
    const double away = kill_mode ? 1.0 : timeout + 1.0;
    double t_back = 0;
    int phase = 0; /* 0 before, 1 away, 2 back */
    unsigned inflight = 0;

    for (;;) {
        double t = now_s();
        if (phase == 0 && t >= t_fault) {
            pid_t pid = read_pid(pidfile);
            if (pid <= 0)
                die("no server pid in %s", pidfile);
            if (kill(pid, kill_mode ? SIGKILL : SIGSTOP) < 0)
                die("kill %ld: %s", (long)pid, strerror(errno));
            printf("nbd-check: %.2f s: server %s\n", t - t_start, kill_mode ? "killed" : "stopped");
            phase = 1;
            t_back = t + away;
        } else if (phase == 1 && t >= t_back) {
            if (kill_mode) {
                if (restart == NULL)
                    die("--restart is needed with --mode kill");
                restart_server(restart, pidfile);
            } else {
                pid_t pid = read_pid(pidfile);
                (void)kill(pid, SIGCONT);
                /* nbdkit 1.32 can abort when it replies on a connection that
                 * was closed while it was stopped (raw_send_socket: Assertion
                 * `sock >= 0'); a server that died is replaced. */
                usleep(300000);
                if (!alive(pid)) {
                    printf("nbd-check: the continued server died; restarting it\n");
                    if (restart == NULL)
                        die("the continued server died and there is no --restart");
                    restart_server(restart, pidfile);
                }
            }
            printf("nbd-check: %.2f s: server %s\n", now_s() - t_start,
                   kill_mode ? "restarted" : "continued");
            phase = 2;
            t_back = now_s();
        }
        if (phase == 2 && fs.after_ok >= 200 && inflight == 0)
            break;
        if (t - t_start > 30 + timeout)
            die("I/O did not resume: %u successes after the server came back", fs.after_ok);

        /* Keep QD requests in flight. */
        for (unsigned i = 0; i < QD && phase < 3; i++) {
            if (s[i].busy || s[i].idle_until > t)
                continue;
            uint32_t blk;
            do
                blk = (uint32_t)(rand_r(&seed) % nblocks);
            while (b[blk].busy);
            struct slot *sl = &s[i];
            sl->block = blk;
            sl->write = b[blk].maybe == 0 && (rand_r(&seed) & 1);
            if (sl->write) {
                sl->gen = ++b[blk].next;
                pattern(sl->buf, blk, sl->gen);
            }
            struct vblk_iov v = {sl->buf, BLK};
            if (vblk_drv_blk_add(r.drv, sl->fr, sl->write ? VBLK_T_OUT : VBLK_T_IN,
                                 (uint64_t)blk * BLK_SECTS, &v, 1, sl, false) < 0)
                die("driver add failed");
            sl->busy = b[blk].busy = true;
            sl->t0 = now_s();
            inflight++;
        }
        (void)vblk_loopback_kick(r.lb, 0);
        rig_turn(&r, inflight ? 5 : 1);
        void *tok;
        uint32_t len;
        int got;
        while ((got = vblk_drv_vq_get_used(r.drv, &tok, &len)) > 0) {
            struct slot *sl = tok;
            struct block *bk = &b[sl->block];
            double lat = now_s() - sl->t0;
            int st = sl->fr->status;
            bool issued_back = phase == 2 && sl->t0 >= t_back;
            sl->busy = bk->busy = false;
            inflight--;
            if (st != VBLK_S_OK && st != VBLK_S_IOERR)
                die("block %u: status %d", sl->block, st);
            if (st == VBLK_S_IOERR) {
                if (phase == 0)
                    die("block %u: IOERR before the fault", sl->block);
                if (lat > fs.worst_err)
                    fs.worst_err = lat;
                if (phase >= 1 && lat < 0.1 && sl->t0 > t_fault + 0.05)
                    fs.fast_fail++;
                sl->idle_until = now_s() + 0.005;
            }
            if (sl->write) {
                if (st == VBLK_S_OK) {
                    fs.w_ok++;
                    bk->gen = sl->gen;
                } else {
                    fs.w_err++;
                    bk->maybe = sl->gen;
                }
            } else if (st == VBLK_S_OK) {
                fs.r_ok++;
                bool ok = is_pattern(sl->buf, sl->block, bk->gen) ||
                          (bk->maybe && is_pattern(sl->buf, sl->block, bk->maybe));
                if (!ok)
                    die("block %u: read back neither generation %u nor %u", sl->block, bk->gen,
                        bk->maybe);
            } else {
                fs.r_err++;
            }
            if (st == VBLK_S_OK && issued_back)
                fs.after_ok++;
        }
        if (got < 0)
            die("driver get_used: %s", strerror(-got));
    }

    /* Every block: the acknowledged content, or where a write failed, the
     * old or the new. */
    unsigned old_seen = 0, new_seen = 0;
    for (uint32_t i = 0; i < nblocks; i++) {
        int st = rig_rw(&r, VBLK_T_IN, (uint64_t)i * BLK_SECTS, check, BLK);
        if (st != VBLK_S_OK)
            die("final read of block %u: status %d", i, st);
        if (is_pattern(check, i, b[i].gen)) {
            old_seen += b[i].maybe != 0;
            continue;
        }
        if (b[i].maybe && is_pattern(check, i, b[i].maybe)) {
            new_seen++;
            continue;
        }
        die("block %u holds neither its acknowledged generation %u%s", i, b[i].gen,
            b[i].maybe ? " nor the failed write's" : "");
    }
    struct vblk_nbd_stats st;
    vblk_backend_nbd_stats(&r.be, &st);
    printf("nbd-check: writes %u ok / %u failed, reads %u ok / %u failed; slowest IOERR %.3f s; "
           "%u failed fast while away; %u succeeded after the server came back\n",
           fs.w_ok, fs.w_err, fs.r_ok, fs.r_err, fs.worst_err, fs.fast_fail, fs.after_ok);
    printf("nbd-check: blocks whose failed write landed: %u, did not land: %u; backend: %" PRIu64
           " connects, %" PRIu64 " disconnects (%" PRIu64 " timeouts), %" PRIu64
           " failed attempts, %" PRIu64 " failed fast\n",
           new_seen, old_seen, st.connects, st.disconnects, st.timeouts, st.failures,
           st.failed_fast);
    if (fs.w_err + fs.r_err == 0)
        die("no request failed: the fault was not seen");
    if (st.disconnects == 0)
        die("the backend saw no disconnection");
    if (fs.worst_err > timeout + 1.5)
        die("an IOERR took %.3f s, more than the %.1f s timeout plus 1.5 s", fs.worst_err, timeout);
    if (kill_mode && fs.fast_fail == 0)
        die("no request failed fast while the server was down");
    if (!kill_mode && st.timeouts == 0)
        die("the stalled server did not trip the request timeout");
    free(b);
    rig_close(&r);
    printf("nbd-check: fault (%s) PASS\n", mode);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: nbd-check ops URI | fault URI --pidfile F --mode kill|stop "
                        "[--restart CMD] [--timeout S]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    uri = argv[2];
    if (strcmp(argv[1], "ops") == 0)
        return cmd_ops();
    if (strcmp(argv[1], "fault") == 0) {
        const char *pidfile = NULL, *mode = "kill", *restart = NULL;
        double timeout = 2;
        for (int i = 3; i + 1 < argc; i += 2) {
            if (strcmp(argv[i], "--pidfile") == 0)
                pidfile = argv[i + 1];
            else if (strcmp(argv[i], "--mode") == 0)
                mode = argv[i + 1];
            else if (strcmp(argv[i], "--restart") == 0)
                restart = argv[i + 1];
            else if (strcmp(argv[i], "--timeout") == 0)
                timeout = atof(argv[i + 1]);
            else
                return 2;
        }
        if (pidfile == NULL || timeout <= 0 ||
            (strcmp(mode, "kill") != 0 && strcmp(mode, "stop") != 0))
            return 2;
        return cmd_fault(pidfile, mode, restart, timeout);
    }
    return 2;
}
