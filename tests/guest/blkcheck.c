/*
 * blkcheck - guest-side block device checker for the libvirtioblk guest tests.
 *
 * Runs inside a Linux guest against a virtio-blk disk (e.g. /dev/vda), and on
 * the host against a regular file (pattern-check, verify).  Every subcommand
 * prints one "blkcheck CMD: PASS ..." or "blkcheck CMD: FAIL ..." line and
 * exits 0 on success, 1 on failure, 2 on a usage error.
 *
 * Build: gcc -std=c11 -static -O2 -pthread -o blkcheck blkcheck.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define SECTOR 512u
#define BUF_ALIGN 4096u
#define CHUNK (1024u * 1024u)

static const char *g_cmd = "?";

/* ------------------------------------------------------------------ output */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("blkcheck %s: ", g_cmd);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    va_start(ap, fmt);
    printf("blkcheck %s: FAIL ", g_cmd);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    exit(1);
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "blkcheck %s: usage error: ", g_cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (run 'blkcheck help')\n");
    va_end(ap);
    exit(2);
}

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --------------------------------------------------------------- parsing */

/* Accepts decimal/hex/octal with an optional K/M/G/T (binary) suffix. */
static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (s == NULL || *s == '\0' || *s == '-')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno != 0 || end == s)
        return false;
    unsigned shift = 0;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: return false;
    }
    if (*end == 'i' || *end == 'B')  /* tolerate "KiB", "MB" */
        end++;
    if (*end == 'B')
        end++;
    if (*end != '\0')
        return false;
    if (shift && v > (UINT64_MAX >> shift))
        return false;
    *out = (uint64_t)v << shift;
    return true;
}

static uint64_t arg_u64(const char *what, const char *s)
{
    uint64_t v;
    if (!parse_u64(s, &v))
        usage_error("bad %s '%s' (expected a number, optional K/M/G suffix)", what, s ? s : "(missing)");
    return v;
}

/* ----------------------------------------------------- deterministic data */

static inline uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static inline uint64_t rng_next(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ULL;
    return mix64(*state);
}

static inline uint64_t rng_below(uint64_t *state, uint64_t n)
{
    return n ? rng_next(state) % n : 0;
}

/*
 * Byte at absolute position p of the pattern for seed s is byte (p % 8) (little
 * endian) of mix64(key ^ (p / 8)).  Depending only on (seed, absolute offset)
 * lets the host check the same bytes in an image file, whatever the chunking.
 */
static inline uint64_t pattern_key(uint64_t seed)
{
    return mix64(seed ^ 0x56424c4b50415454ULL);
}

static void pattern_fill(uint8_t *buf, uint64_t pos, size_t len, uint64_t seed)
{
    uint64_t key = pattern_key(seed);
    size_t i = 0;
    while (i < len) {
        uint64_t p = pos + i;
        uint64_t w = mix64(key ^ (p >> 3));
        unsigned b = (unsigned)(p & 7);
        if (b == 0 && len - i >= 8) {
            for (unsigned k = 0; k < 8; k++)
                buf[i + k] = (uint8_t)(w >> (8 * k));
            i += 8;
        } else {
            buf[i++] = (uint8_t)(w >> (8 * b));
        }
    }
}

/* ------------------------------------------------------------ device I/O */

struct target {
    const char *path;
    int fd;
    bool is_blk;
    bool direct;
    uint64_t size;
    unsigned lbs;        /* logical block size (alignment unit for O_DIRECT) */
    unsigned pbs;
    dev_t rdev;
};

static void *xalloc_aligned(size_t len)
{
    void *p = NULL;
    if (len == 0)
        len = BUF_ALIGN;
    int rc = posix_memalign(&p, BUF_ALIGN, (len + BUF_ALIGN - 1) / BUF_ALIGN * BUF_ALIGN);
    if (rc != 0)
        fail("cannot allocate %zu bytes: %s", len, strerror(rc));
    return p;
}

/*
 * Opens PATH.  With want_direct, block devices are opened O_DIRECT (failure is
 * fatal); regular files try O_DIRECT and silently fall back to buffered I/O
 * (tmpfs and some host file systems refuse it).
 */
static void target_open(struct target *t, const char *path, int flags, bool want_direct)
{
    struct stat st;
    memset(t, 0, sizeof(*t));
    t->path = path;
    if (stat(path, &st) != 0)
        fail("cannot stat %s: %s", path, strerror(errno));
    t->is_blk = S_ISBLK(st.st_mode);
    if (!t->is_blk && !S_ISREG(st.st_mode))
        fail("%s is neither a block device nor a regular file", path);

    int fd = -1;
    if (want_direct) {
        fd = open(path, flags | O_DIRECT | O_CLOEXEC);
        if (fd >= 0)
            t->direct = true;
        else if (t->is_blk || errno != EINVAL)
            fail("cannot open %s%s: %s", path, t->is_blk ? " with O_DIRECT" : "", strerror(errno));
    }
    if (fd < 0)
        fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        fail("cannot open %s: %s", path, strerror(errno));
    t->fd = fd;

    if (t->is_blk) {
        uint64_t sz = 0;
        int lbs = 0;
        unsigned int pbs = 0;
        if (ioctl(fd, BLKGETSIZE64, &sz) != 0)
            fail("BLKGETSIZE64 on %s: %s", path, strerror(errno));
        if (ioctl(fd, BLKSSZGET, &lbs) != 0 || lbs <= 0)
            fail("BLKSSZGET on %s: %s", path, strerror(errno));
        if (ioctl(fd, BLKPBSZGET, &pbs) != 0)
            pbs = (unsigned)lbs;
        t->size = sz;
        t->lbs = (unsigned)lbs;
        t->pbs = pbs;
        t->rdev = st.st_rdev;
    } else {
        t->size = (uint64_t)st.st_size;
        /* O_DIRECT on a file needs the underlying fs alignment: be safe */
        t->lbs = t->direct ? BUF_ALIGN : SECTOR;
        t->pbs = t->lbs;
    }
}

static int full_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -ENOSPC;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int full_pread(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -ENODATA; /* unexpected end of device/file */
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Reads a small sysfs attribute of the disk behind a block device node. */
static bool sysfs_attr(const struct target *t, const char *attr, char *out, size_t outlen)
{
    char path[256];
    if (!t->is_blk)
        return false;
    snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/%s", major(t->rdev), minor(t->rdev), attr);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    bool ok = fgets(out, (int)outlen, f) != NULL;
    fclose(f);
    if (ok)
        out[strcspn(out, "\n")] = '\0';
    return ok;
}

static void require_range(const struct target *t, uint64_t off, uint64_t len, bool need_align)
{
    if (len == 0)
        usage_error("length must be > 0");
    if (off > t->size || len > t->size - off)
        fail("range [%" PRIu64 ", +%" PRIu64 ") is beyond the end of %s (size %" PRIu64 ")",
             off, len, t->path, t->size);
    if (need_align && ((off % t->lbs) != 0 || (len % t->lbs) != 0))
        usage_error("offset %" PRIu64 " and length %" PRIu64 " must be multiples of the logical block size %u",
                    off, len, t->lbs);
}

/* --------------------------------------------------------------- verify */

/*
 * Every 512-byte sector written by verify starts with a header naming the
 * write that produced it; the rest is pattern data keyed by the same write.
 * When a read-back mismatches, decoding the header tells stale data (older
 * op), misplaced data (other offset) and zeroes apart.
 */
#define HDR_MAGIC 0x4b4c4256u /* "VBLK" */

struct sector_hdr {
    uint32_t magic;
    uint32_t worker;
    uint64_t op;
    uint64_t offset;   /* absolute byte offset of this sector */
    uint64_t seed;
};

static uint64_t op_seed(uint64_t seed, unsigned worker, uint64_t op)
{
    return mix64(seed ^ mix64(((uint64_t)worker << 48) ^ op));
}

static void verify_fill(uint8_t *buf, uint64_t off, size_t len, uint64_t seed, unsigned worker, uint64_t op)
{
    uint64_t s = op_seed(seed, worker, op);
    pattern_fill(buf, off, len, s);
    for (size_t i = 0; i < len; i += SECTOR) {
        struct sector_hdr h = { HDR_MAGIC, worker, op, off + i, seed };
        memcpy(buf + i, &h, sizeof(h));
    }
}

struct op_rec {
    uint64_t off;
    uint64_t len;
};

struct verify_cfg {
    struct target *t;
    uint64_t seed;
    uint64_t min, max;     /* I/O size bounds, multiples of unit */
    uint64_t unit;         /* alignment of offsets and sizes */
    uint64_t count;        /* ops for this worker */
    bool readback;         /* read back every write right away */
};

struct worker {
    pthread_t tid;
    unsigned idx;
    int cpu_wanted;
    int cpu_seen;
    const struct verify_cfg *cfg;
    uint64_t slice_off, slice_len;
    uint64_t ops, bytes_written, bytes_read, sectors_checked;
    char err[512];
    bool failed;
};

static void describe_mismatch(char *out, size_t outlen, const uint8_t *got, const uint8_t *want,
                              uint64_t sector_off, const struct worker *w)
{
    struct sector_hdr h;
    memcpy(&h, got, sizeof(h));
    size_t first = 0;
    while (first < SECTOR && got[first] == want[first])
        first++;
    bool zero = true;
    for (size_t i = 0; i < SECTOR; i++)
        if (got[i] != 0) {
            zero = false;
            break;
        }
    struct sector_hdr whs;
    memcpy(&whs, want, sizeof(whs));
    const struct sector_hdr *wh = &whs;
    char what[200];
    if (zero)
        snprintf(what, sizeof(what), "sector reads as all zeroes");
    else if (h.magic != HDR_MAGIC)
        snprintf(what, sizeof(what), "sector holds foreign data (no blkcheck header)");
    else if (h.seed != wh->seed)
        snprintf(what, sizeof(what), "sector is from another blkcheck run (seed %" PRIu64 ")", h.seed);
    else if (h.offset != sector_off)
        snprintf(what, sizeof(what), "misplaced data: sector was written for offset %" PRIu64
                 " by worker %u op %" PRIu64, h.offset, h.worker, h.op);
    else if (h.worker != wh->worker || h.op != wh->op)
        snprintf(what, sizeof(what), "stale data from worker %u op %" PRIu64 " (expected op %" PRIu64 ")",
                 h.worker, h.op, wh->op);
    else
        snprintf(what, sizeof(what), "header ok but payload corrupt");
    snprintf(out, outlen, "worker %u: mismatch at byte offset %" PRIu64 " (sector %" PRIu64
             ", byte %zu in sector: got 0x%02x want 0x%02x): %s",
             w->idx, sector_off + first, sector_off / SECTOR, first, got[first], want[first], what);
}

/* Reads [off, off+len) and compares with what op wrote there. */
static bool check_range(struct worker *w, uint8_t *rbuf, uint8_t *ebuf, uint64_t off, uint64_t len, uint64_t op,
                        const char *phase)
{
    const struct verify_cfg *c = w->cfg;
    while (len > 0) {
        size_t n = len > c->max ? (size_t)c->max : (size_t)len;
        int rc = full_pread(c->t->fd, rbuf, n, off);
        if (rc < 0) {
            snprintf(w->err, sizeof(w->err), "worker %u: %s read of %zu bytes at %" PRIu64 " failed: %s",
                     w->idx, phase, n, off, strerror(-rc));
            return false;
        }
        w->bytes_read += n;
        verify_fill(ebuf, off, n, c->seed, w->idx, op);
        if (memcmp(rbuf, ebuf, n) != 0) {
            for (size_t i = 0; i < n; i += SECTOR) {
                if (memcmp(rbuf + i, ebuf + i, SECTOR) != 0) {
                    char d[400];
                    describe_mismatch(d, sizeof(d), rbuf + i, ebuf + i, off + i, w);
                    snprintf(w->err, sizeof(w->err), "%s (%s, op %" PRIu64 " wrote %zu bytes at %" PRIu64 ")",
                             d, phase, op, n, off);
                    return false;
                }
            }
        }
        w->sectors_checked += n / SECTOR;
        off += n;
        len -= n;
    }
    return true;
}

static uint64_t pick_size(const struct verify_cfg *c, uint64_t *rng, uint64_t limit)
{
    /* log-uniform bucket [2^k * unit, 2^(k+1) * unit), then either the power
     * of two itself or an odd multiple of the unit inside the bucket */
    uint64_t max = c->max < limit ? c->max : limit;
    uint64_t lo = c->min;
    unsigned nb = 0;
    for (uint64_t b = lo; b <= max; b <<= 1)
        nb++;
    for (;;) {
        uint64_t b = lo << rng_below(rng, nb ? nb : 1);
        uint64_t sz;
        if (rng_below(rng, 2) == 0 || b == c->unit) {
            sz = b;
        } else {
            uint64_t units = b / c->unit;           /* >= 2 */
            uint64_t k = units + rng_below(rng, units);
            k |= 1;                                  /* odd multiple */
            sz = k * c->unit;
        }
        if (sz >= c->min && sz <= max)
            return sz;
        if (b <= max && b >= c->min)
            return b;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const struct verify_cfg *c = w->cfg;
    uint64_t rng = mix64(c->seed ^ (0x1000 + w->idx));
    uint8_t *wbuf = xalloc_aligned(c->max);
    uint8_t *rbuf = xalloc_aligned(c->max);
    uint8_t *ebuf = xalloc_aligned(c->max);
    struct op_rec *ops = calloc(c->count ? c->count : 1, sizeof(*ops));
    if (ops == NULL) {
        snprintf(w->err, sizeof(w->err), "worker %u: out of memory", w->idx);
        w->failed = true;
        return NULL;
    }

    if (w->cpu_wanted >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->cpu_wanted, &set);
        (void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    }

    /* write phase, each write read back right away */
    for (uint64_t i = 0; i < c->count; i++) {
        uint64_t sz = pick_size(c, &rng, w->slice_len);
        uint64_t slots = (w->slice_len - sz) / c->unit + 1;
        uint64_t off = w->slice_off + rng_below(&rng, slots) * c->unit;
        verify_fill(wbuf, off, (size_t)sz, c->seed, w->idx, i);
        int rc = full_pwrite(c->t->fd, wbuf, (size_t)sz, off);
        if (rc < 0) {
            snprintf(w->err, sizeof(w->err), "worker %u: write op %" PRIu64 " of %" PRIu64 " bytes at %" PRIu64
                     " failed: %s", w->idx, i, sz, off, strerror(-rc));
            w->failed = true;
            goto out;
        }
        ops[i].off = off;
        ops[i].len = sz;
        w->ops++;
        w->bytes_written += sz;
        if (c->readback && !check_range(w, rbuf, ebuf, off, sz, i, "immediate read-back")) {
            w->failed = true;
            goto out;
        }
        if (i == 0)
            w->cpu_seen = sched_getcpu();
    }

    /*
     * final pass: newest op first; each op is checked only where no later op
     * overwrote it.  `cov` is a sorted list of disjoint covered intervals.
     */
    struct op_rec *cov = calloc(c->count ? c->count : 1, sizeof(*cov));
    size_t ncov = 0;
    if (cov == NULL) {
        snprintf(w->err, sizeof(w->err), "worker %u: out of memory", w->idx);
        w->failed = true;
        goto out;
    }
    for (uint64_t j = c->count; j-- > 0;) {
        uint64_t s = ops[j].off, e = ops[j].off + ops[j].len, cur = s;
        for (size_t k = 0; k < ncov && cur < e; k++) {
            uint64_t cs = cov[k].off, ce = cov[k].off + cov[k].len;
            if (ce <= cur)
                continue;
            if (cs >= e)
                break;
            if (cs > cur && !check_range(w, rbuf, ebuf, cur, cs - cur, j, "final verification")) {
                w->failed = true;
                break;
            }
            cur = ce;
        }
        if (w->failed)
            break;
        if (cur < e && !check_range(w, rbuf, ebuf, cur, e - cur, j, "final verification")) {
            w->failed = true;
            break;
        }
        /* insert [s, e) into cov, merging overlapping/adjacent intervals */
        size_t k = 0;
        while (k < ncov && cov[k].off + cov[k].len < s)
            k++;
        size_t m = k;
        uint64_t ns = s, ne = e;
        while (m < ncov && cov[m].off <= ne) {
            if (cov[m].off < ns)
                ns = cov[m].off;
            if (cov[m].off + cov[m].len > ne)
                ne = cov[m].off + cov[m].len;
            m++;
        }
        if (m == k) { /* no merge: shift right */
            memmove(&cov[k + 1], &cov[k], (ncov - k) * sizeof(*cov));
            ncov++;
        } else if (m > k + 1) {
            memmove(&cov[k + 1], &cov[m], (ncov - m) * sizeof(*cov));
            ncov -= m - k - 1;
        }
        cov[k].off = ns;
        cov[k].len = ne - ns;
    }
    free(cov);
out:
    free(ops);
    free(wbuf);
    free(rbuf);
    free(ebuf);
    return NULL;
}

static int cmd_verify(int argc, char **argv)
{
    if (argc < 1)
        usage_error("verify needs DEV");
    const char *dev = argv[0];
    uint64_t min = 512, max = 1024 * 1024, count = 400, threads = 4;
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    bool readback = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--min") == 0) { min = arg_u64("--min", v); i++; }
        else if (strcmp(a, "--max") == 0) { max = arg_u64("--max", v); i++; }
        else if (strcmp(a, "--count") == 0) { count = arg_u64("--count", v); i++; }
        else if (strcmp(a, "--seed") == 0) { seed = arg_u64("--seed", v); i++; }
        else if (strcmp(a, "--threads") == 0) { threads = arg_u64("--threads", v); i++; }
        else if (strcmp(a, "--no-readback") == 0) { readback = false; }
        else usage_error("unknown verify option '%s'", a);
    }
    if (threads < 1 || threads > 64)
        usage_error("--threads must be 1..64");
    if (count < threads)
        count = threads;

    struct target t;
    target_open(&t, dev, O_RDWR, true);
    uint64_t unit = t.lbs > SECTOR ? t.lbs : SECTOR;
    if (min < unit)
        min = unit;
    if (min % unit != 0 || max % unit != 0)
        usage_error("--min/--max must be multiples of %" PRIu64, unit);
    /* sizes are powers of two times the unit: round min up to one */
    uint64_t m2 = unit;
    while (m2 < min)
        m2 <<= 1;
    min = m2;
    uint64_t slice = t.size / threads / unit * unit;
    if (slice < min)
        fail("%s is too small (%" PRIu64 " bytes) for %" PRIu64 " workers with --min %" PRIu64,
             dev, t.size, threads, min);
    if (max > slice)
        max = slice / unit * unit;
    if (max < min)
        max = min;

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1)
        ncpu = 1;
    say("device %s size %" PRIu64 " lbs %u pbs %u%s; seed %" PRIu64 " count %" PRIu64
        " sizes %" PRIu64 "..%" PRIu64 " workers %" PRIu64 " cpus %ld",
        dev, t.size, t.lbs, t.pbs, t.direct ? " O_DIRECT" : " buffered", seed, count, min, max,
        threads, ncpu);

    struct verify_cfg cfg[64];
    struct worker w[64];
    double t0 = now_sec();
    for (unsigned i = 0; i < threads; i++) {
        cfg[i] = (struct verify_cfg){ &t, seed, min, max, unit, count / threads + (i < count % threads), readback };
        w[i] = (struct worker){ .idx = i, .cfg = &cfg[i], .cpu_wanted = (int)(i % (unsigned)ncpu),
                                .cpu_seen = -1, .slice_off = i * slice, .slice_len = slice };
        int rc = pthread_create(&w[i].tid, NULL, worker_main, &w[i]);
        if (rc != 0)
            fail("pthread_create: %s", strerror(rc));
    }
    uint64_t ops = 0, wr = 0, rd = 0;
    bool failed = false;
    char cpus[256] = "";
    for (unsigned i = 0; i < threads; i++) {
        pthread_join(w[i].tid, NULL);
        ops += w[i].ops;
        wr += w[i].bytes_written;
        rd += w[i].bytes_read;
        size_t l = strlen(cpus);
        snprintf(cpus + l, sizeof(cpus) - l, "%s%d", i ? "," : "", w[i].cpu_seen);
        if (w[i].failed) {
            failed = true;
            printf("blkcheck verify: %s\n", w[i].err);
        }
    }
    if (failed)
        fail("data verification failed on %s (seed %" PRIu64 ")", dev, seed);
    if (fsync(t.fd) != 0)
        fail("fsync %s: %s", dev, strerror(errno));
    double dt = now_sec() - t0;
    close(t.fd);
    say("PASS %" PRIu64 " writes, %.1f MiB written, %.1f MiB read back and compared, %.2f s (%.1f MiB/s), "
        "workers on cpus [%s], seed %" PRIu64,
        ops, (double)wr / 1048576.0, (double)rd / 1048576.0, dt, (double)(wr + rd) / 1048576.0 / (dt > 0 ? dt : 1),
        cpus, seed);
    return 0;
}

/* ------------------------------------------------------ small commands */

static int cmd_flush(int argc, char **argv)
{
    if (argc != 1)
        usage_error("flush needs DEV");
    struct target t;
    target_open(&t, argv[0], O_RDWR, false);
    char wc[64] = "n/a";
    sysfs_attr(&t, "queue/write_cache", wc, sizeof(wc));
    double t0 = now_sec();
    if (fsync(t.fd) != 0)
        fail("fsync %s: %s", t.path, strerror(errno));
    if (fdatasync(t.fd) != 0)
        fail("fdatasync %s: %s", t.path, strerror(errno));
    double dt = now_sec() - t0;
    close(t.fd);
    say("PASS fsync+fdatasync on %s succeeded in %.3f s (queue/write_cache: %s)", t.path, dt, wc);
    return 0;
}

static int cmd_discard(int argc, char **argv)
{
    if (argc != 3)
        usage_error("discard needs DEV OFFSET LEN");
    struct target t;
    target_open(&t, argv[0], O_RDWR, false);
    if (!t.is_blk)
        fail("%s is not a block device", t.path);
    uint64_t off = arg_u64("OFFSET", argv[1]), len = arg_u64("LEN", argv[2]);
    require_range(&t, off, len, true);
    char gran[64] = "?", maxb[64] = "?";
    sysfs_attr(&t, "queue/discard_granularity", gran, sizeof(gran));
    sysfs_attr(&t, "queue/discard_max_bytes", maxb, sizeof(maxb));
    uint64_t r[2] = { off, len };
    if (ioctl(t.fd, BLKDISCARD, r) != 0)
        fail("BLKDISCARD [%" PRIu64 ", +%" PRIu64 ") on %s: %s (discard_max_bytes=%s granularity=%s)",
             off, len, t.path, strerror(errno), maxb, gran);
    close(t.fd);
    say("PASS BLKDISCARD [%" PRIu64 ", +%" PRIu64 ") on %s (discard_max_bytes=%s granularity=%s)",
        off, len, t.path, maxb, gran);
    return 0;
}

/* pattern bytes forced non-zero so that "all zero" after zeroout means something */
static void nonzero_fill(uint8_t *buf, uint64_t pos, size_t len, uint64_t seed)
{
    pattern_fill(buf, pos, len, seed);
    for (size_t i = 0; i < len; i++)
        buf[i] |= 1;
}

static int cmd_zeroout(int argc, char **argv)
{
    if (argc != 3)
        usage_error("zeroout needs DEV OFFSET LEN");
    struct target t;
    target_open(&t, argv[0], O_RDWR, true);
    if (!t.is_blk)
        fail("%s is not a block device", t.path);
    uint64_t off = arg_u64("OFFSET", argv[1]), len = arg_u64("LEN", argv[2]);
    require_range(&t, off, len, true);
    char wz[64] = "?";
    sysfs_attr(&t, "queue/write_zeroes_max_bytes", wz, sizeof(wz));
    uint8_t *buf = xalloc_aligned(CHUNK), *rbuf = xalloc_aligned(CHUNK);
    const uint64_t seed = 0x7a65726fULL;

    for (uint64_t done = 0; done < len;) {
        size_t n = len - done > CHUNK ? CHUNK : (size_t)(len - done);
        nonzero_fill(buf, off + done, n, seed);
        int rc = full_pwrite(t.fd, buf, n, off + done);
        if (rc < 0)
            fail("writing the non-zero pattern at %" PRIu64 ": %s", off + done, strerror(-rc));
        done += n;
    }
    if (fsync(t.fd) != 0)
        fail("fsync: %s", strerror(errno));
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done > CHUNK ? CHUNK : (size_t)(len - done);
        int rc = full_pread(t.fd, rbuf, n, off + done);
        if (rc < 0)
            fail("reading back the pattern at %" PRIu64 ": %s", off + done, strerror(-rc));
        nonzero_fill(buf, off + done, n, seed);
        if (memcmp(buf, rbuf, n) != 0)
            fail("pattern written before BLKZEROOUT did not read back at chunk %" PRIu64, off + done);
        done += n;
    }
    uint64_t r[2] = { off, len };
    if (ioctl(t.fd, BLKZEROOUT, r) != 0)
        fail("BLKZEROOUT [%" PRIu64 ", +%" PRIu64 ") on %s: %s", off, len, t.path, strerror(errno));
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done > CHUNK ? CHUNK : (size_t)(len - done);
        int rc = full_pread(t.fd, rbuf, n, off + done);
        if (rc < 0)
            fail("reading back after BLKZEROOUT at %" PRIu64 ": %s", off + done, strerror(-rc));
        for (size_t i = 0; i < n; i++)
            if (rbuf[i] != 0)
                fail("byte at offset %" PRIu64 " is 0x%02x after BLKZEROOUT (expected 0)", off + done + i, rbuf[i]);
        done += n;
    }
    close(t.fd);
    say("PASS BLKZEROOUT [%" PRIu64 ", +%" PRIu64 ") on %s reads back as zeroes "
        "(write_zeroes_max_bytes=%s: %s)", off, len, t.path, wz,
        strcmp(wz, "0") == 0 ? "kernel wrote zero buffers, no WRITE_ZEROES request"
                             : "sent as VIRTIO_BLK_T_WRITE_ZEROES");
    return 0;
}

static int cmd_readonly(int argc, char **argv)
{
    if (argc != 1)
        usage_error("readonly needs DEV");
    struct target t;
    target_open(&t, argv[0], O_RDONLY, true);
    if (!t.is_blk)
        fail("%s is not a block device", t.path);
    int ro = -1;
    if (ioctl(t.fd, BLKROGET, &ro) != 0)
        fail("BLKROGET on %s: %s", t.path, strerror(errno));
    char sro[16] = "?";
    sysfs_attr(&t, "ro", sro, sizeof(sro));
    if (ro != 1)
        fail("BLKROGET on %s reports %d (sysfs ro=%s), expected 1", t.path, ro, sro);

    /* keep the original content: read block 0 and try to write it back */
    uint8_t *buf = xalloc_aligned(t.lbs);
    int rc = full_pread(t.fd, buf, t.lbs, 0);
    if (rc < 0)
        fail("reading block 0 of %s: %s", t.path, strerror(-rc));
    close(t.fd);
    int fd = open(t.path, O_WRONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0) {
        say("PASS %s: BLKROGET=1 (sysfs ro=%s); open(O_WRONLY) refused: %s", t.path, sro, strerror(errno));
        return 0;
    }
    rc = full_pwrite(fd, buf, t.lbs, 0);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    close(fd);
    if (rc == 0)
        fail("%s: BLKROGET=1 but a %u-byte write at offset 0 succeeded", t.path, t.lbs);
    say("PASS %s: BLKROGET=1 (sysfs ro=%s); open(O_WRONLY) allowed but the write failed: %s",
        t.path, sro, strerror(-rc));
    return 0;
}

static int cmd_pattern(int argc, char **argv, bool write)
{
    if (argc != 4)
        usage_error("pattern-%s needs DEV|FILE OFFSET LEN SEED", write ? "write" : "check");
    uint64_t off = arg_u64("OFFSET", argv[1]), len = arg_u64("LEN", argv[2]), seed = arg_u64("SEED", argv[3]);
    struct target t;
    struct stat st;
    /* O_DIRECT on block devices so the check sees the device, not the page
     * cache; plain buffered I/O on files (any offset, host image checks) */
    bool blk = stat(argv[0], &st) == 0 && S_ISBLK(st.st_mode);
    target_open(&t, argv[0], write ? O_RDWR : O_RDONLY, blk);
    require_range(&t, off, len, t.is_blk);
    uint8_t *buf = xalloc_aligned(CHUNK), *rbuf = xalloc_aligned(CHUNK);
    uint64_t bad = 0, first_bad = 0;
    double t0 = now_sec();
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done > CHUNK ? CHUNK : (size_t)(len - done);
        pattern_fill(buf, off + done, n, seed);
        int rc;
        if (write) {
            rc = full_pwrite(t.fd, buf, n, off + done);
            if (rc < 0)
                fail("write of %zu bytes at %" PRIu64 " on %s: %s", n, off + done, t.path, strerror(-rc));
        } else {
            rc = full_pread(t.fd, rbuf, n, off + done);
            if (rc < 0)
                fail("read of %zu bytes at %" PRIu64 " on %s: %s", n, off + done, t.path, strerror(-rc));
            if (memcmp(buf, rbuf, n) != 0) {
                for (size_t i = 0; i < n; i++) {
                    if (buf[i] != rbuf[i]) {
                        if (bad == 0) {
                            first_bad = off + done + i;
                            printf("blkcheck pattern-check: first mismatch at offset %" PRIu64
                                   ": got 0x%02x want 0x%02x\n", first_bad, rbuf[i], buf[i]);
                        }
                        bad++;
                    }
                }
            }
        }
        done += n;
    }
    if (write && fsync(t.fd) != 0)
        fail("fsync %s: %s", t.path, strerror(errno));
    double dt = now_sec() - t0;
    close(t.fd);
    if (bad)
        fail("%s: %" PRIu64 " of %" PRIu64 " bytes in [%" PRIu64 ", +%" PRIu64 ") differ from pattern seed %"
             PRIu64 " (first at %" PRIu64 ")", t.path, bad, len, off, len, seed, first_bad);
    say("PASS %s [%" PRIu64 ", +%" PRIu64 ") seed %" PRIu64 " %s in %.2f s", t.path, off, len, seed,
        write ? "written and synced" : "matches", dt);
    return 0;
}

static const char *const feature_names[64] = {
    [0] = "BARRIER", [1] = "SIZE_MAX", [2] = "SEG_MAX", [4] = "GEOMETRY", [5] = "RO",
    [6] = "BLK_SIZE", [7] = "SCSI", [9] = "FLUSH", [10] = "TOPOLOGY", [11] = "CONFIG_WCE",
    [12] = "MQ", [13] = "DISCARD", [14] = "WRITE_ZEROES", [15] = "LIFETIME",
    [16] = "SECURE_ERASE", [17] = "ZONED", [24] = "NOTIFY_ON_EMPTY", [27] = "ANY_LAYOUT",
    [28] = "INDIRECT_DESC", [29] = "EVENT_IDX", [32] = "VERSION_1", [33] = "ACCESS_PLATFORM",
    [34] = "RING_PACKED", [35] = "IN_ORDER", [36] = "ORDER_PLATFORM", [37] = "SR_IOV",
    [38] = "NOTIFICATION_DATA", [39] = "NOTIF_CONFIG_DATA", [40] = "RING_RESET",
};

static const char *feature_name(unsigned bit)
{
    return bit < 64 && feature_names[bit] ? feature_names[bit] : "unknown";
}

static int cmd_features(int argc, char **argv)
{
    if (argc < 1 || argc > 2)
        usage_error("features needs DEV_NAME [BIT]");
    const char *name = argv[0];
    if (strncmp(name, "/dev/", 5) == 0)
        name += 5;
    char path[256], feat[512];
    snprintf(path, sizeof(path), "/sys/block/%s/device/features", name);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "blkcheck features: cannot open %s: %s\n", path, strerror(errno));
        return 2;
    }
    if (fgets(feat, sizeof(feat), f) == NULL)
        feat[0] = '\0';
    fclose(f);
    feat[strcspn(feat, "\n")] = '\0';
    size_t n = strlen(feat);
    if (argc == 1) {
        printf("blkcheck features: %s: %s\n", name, feat);
        for (size_t i = 0; i < n; i++)
            if (feat[i] == '1')
                printf("blkcheck features:   bit %2zu %s\n", i, feature_name((unsigned)i));
        return 0;
    }
    uint64_t bit = arg_u64("BIT", argv[1]);
    bool set = bit < n && feat[bit] == '1';
    printf("blkcheck features: %s: bit %" PRIu64 " (%s) is %s\n", name, bit, feature_name((unsigned)(bit < 64 ? bit : 63)),
           set ? "set" : "NOT set");
    return set ? 0 : 1;
}

static int cmd_info(int argc, char **argv)
{
    if (argc != 1)
        usage_error("info needs DEV");
    struct target t;
    target_open(&t, argv[0], O_RDONLY, false);
    printf("blkcheck info: %s: %s size %" PRIu64 " (%.1f MiB) lbs %u pbs %u\n", t.path,
           t.is_blk ? "block device" : "regular file", t.size, (double)t.size / 1048576.0, t.lbs, t.pbs);
    if (t.is_blk) {
        static const char *const attrs[] = {
            "ro", "queue/write_cache", "queue/max_hw_sectors_kb", "queue/max_segments",
            "queue/discard_max_bytes", "queue/discard_granularity", "queue/write_zeroes_max_bytes",
            "queue/nr_requests", "serial",
        };
        for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
            char v[128];
            if (sysfs_attr(&t, attrs[i], v, sizeof(v)))
                printf("blkcheck info:   %-28s %s\n", attrs[i], v);
        }
    }
    close(t.fd);
    return 0;
}

static void help(void)
{
    printf(
        "usage: blkcheck COMMAND ARGS...\n"
        "  verify DEV [--min 512] [--max 1M] [--count N] [--seed S] [--threads T] [--no-readback]\n"
        "        random-size O_DIRECT writes at random aligned offsets by T pinned workers,\n"
        "        each read back at once and again at the end; then fsync\n"
        "  flush DEV                      fsync + fdatasync\n"
        "  discard DEV OFFSET LEN         ioctl BLKDISCARD\n"
        "  zeroout DEV OFFSET LEN         write non-zero data, BLKZEROOUT, check zeroes\n"
        "  readonly DEV                   BLKROGET is 1 and writing fails\n"
        "  pattern-write DEV OFFSET LEN SEED\n"
        "  pattern-check DEV|FILE OFFSET LEN SEED   (works on a host image file too)\n"
        "  features DEV_NAME [BIT]        exit 0 if virtio feature BIT is negotiated\n"
        "  info DEV                       print size and queue limits\n"
        "Numbers accept K/M/G/T suffixes (powers of 1024).\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        help();
        return argc < 2 ? 2 : 0;
    }
    g_cmd = argv[1];
    int n = argc - 2;
    char **a = argv + 2;
    if (strcmp(g_cmd, "verify") == 0) return cmd_verify(n, a);
    if (strcmp(g_cmd, "flush") == 0) return cmd_flush(n, a);
    if (strcmp(g_cmd, "discard") == 0) return cmd_discard(n, a);
    if (strcmp(g_cmd, "zeroout") == 0) return cmd_zeroout(n, a);
    if (strcmp(g_cmd, "readonly") == 0) return cmd_readonly(n, a);
    if (strcmp(g_cmd, "pattern-write") == 0) return cmd_pattern(n, a, true);
    if (strcmp(g_cmd, "pattern-check") == 0) return cmd_pattern(n, a, false);
    if (strcmp(g_cmd, "features") == 0) return cmd_features(n, a);
    if (strcmp(g_cmd, "info") == 0) return cmd_info(n, a);
    usage_error("unknown command '%s'", g_cmd);
}
