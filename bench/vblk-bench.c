/* SPDX-License-Identifier: MIT */
/*
 * vblk-bench: drives a virtio-blk device through real rings and reports
 * IOPS, bandwidth, latency percentiles and the benchmark's CPU time.
 *
 * --loopback: driver and device run in this process on one thread, through
 * the loopback transport and the null backend. Every request makes the full
 * round trip: driver adds a chain, device pops/validates/decodes it, the
 * backend completes it, the device pushes the used entry, the driver reaps
 * it. This measures the library's per-request cost, not storage.
 *
 * --socket PATH: a vhost-user front-end (vhost_user_client.h) drives any
 * vhost-user-blk back-end: this library's vblk-vhost-user,
 * qemu-storage-daemon, ... One thread per queue, each keeping --iodepth
 * requests in flight on its own queue and its own share of the disk.
 *
 * --verify writes a pattern (every sector names itself and the write that
 * produced it) and checks it on read-back; any mismatch ends the run with
 * exit status 3 and the sector, the expected and the actual bytes.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench_requests.h"
#include "cli.h"
#include "virtioblk/virtioblk.h"

#define HIST_SUB     64
#define HIST_BUCKETS (64 * HIST_SUB)
#define PROG         "vblk-bench"
#define EXIT_VERIFY  3
#define PAT_MAGIC    0x6b6c6276u /* "vblk" */

enum rw_mode { RW_READ, RW_WRITE, RW_RANDREAD, RW_RANDWRITE, RW_RANDRW };

struct opts {
    bool loopback;
    const char *socket;
    bool packed;
    enum rw_mode rw;
    uint32_t bs;
    uint32_t iodepth;
    uint16_t queues;
    uint16_t queue_size;
    double runtime;
    double timeout;
    uint64_t size;
    bool verify;
    bool spin;
    bool idle;
    bool json;
    bool zoned;
    bool lifetime;
    bool secure_erase;
};

/* Log-linear latency histogram (ns): 64 sub-buckets per power of two. */
struct hist {
    uint64_t count[HIST_BUCKETS];
    uint64_t total;
};

static unsigned hist_index(uint64_t ns)
{
    if (ns < HIST_SUB)
        return (unsigned)ns;
    unsigned msb = 63u - (unsigned)__builtin_clzll(ns);
    unsigned shift = msb - 6;
    unsigned idx = (shift + 1) * HIST_SUB + (unsigned)((ns >> shift) & (HIST_SUB - 1));
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

static uint64_t hist_value(unsigned idx)
{
    if (idx < HIST_SUB)
        return idx;
    unsigned shift = idx / HIST_SUB - 1;
    return ((uint64_t)(HIST_SUB + idx % HIST_SUB)) << shift;
}

static void hist_add(struct hist *h, uint64_t ns, uint64_t n)
{
    h->count[hist_index(ns)] += n;
    h->total += n;
}

static double hist_pct(const struct hist *h, double pct)
{
    uint64_t want = (uint64_t)((double)h->total * pct / 100.0);
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen > want)
            return (double)hist_value(i) / 1000.0;
    }
    return 0;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " PROG " (--socket PATH | --loopback) [--ring split|packed]\n"
            "                  [--rw read|write|randread|randwrite|randrw] [--bs BYTES]\n"
            "                  [--iodepth N] [--queues N] [--runtime SECONDS] [--verify] [--spin]\n"
            "                  [--idle] [--json]\n"
            "\n"
            "  --socket PATH     drive the vhost-user-blk back-end listening on PATH\n"
            "  --loopback        driver and device in this process (null backend)\n"
            "  --ring FORMAT     split (default) or packed virtqueue\n"
            "  --rw MODE         access pattern (default randread)\n"
            "  --bs BYTES        request size, a multiple of 512 (default 4096)\n"
            "  --iodepth N       requests kept in flight per queue (default 128)\n"
            "  --queues N        queues, one thread each, each on its own slice of the\n"
            "                    disk (default 1; --socket only)\n"
            "  --queue-size N    ring entries (default 256; --socket only)\n"
            "  --runtime SECONDS how long to run (default 5)\n"
            "  --size BYTES      bytes of the disk to use (default: all of it; with\n"
            "                    --verify at most 1 GiB)\n"
            "  --verify          write a pattern and check it on read-back: read-only\n"
            "                    modes fill the area first, write modes read back every\n"
            "                    block written at the end (--socket only)\n"
            "  --spin            busy-poll the used rings instead of sleeping on the\n"
            "                    call eventfd (--socket only)\n"
            "  --idle            set the queues up, then submit nothing for --runtime\n"
            "                    seconds: an attached idle device (--socket only)\n"
            "  --timeout SECONDS fail when a request takes longer (default 10)\n"
            "  --zoned           check a zoned (host-managed) back-end: zone report,\n"
            "                    states, write pointer rules, then ZONE_APPENDs from every\n"
            "                    queue racing into one zone (--socket only)\n"
            "  --get-lifetime    send GET_LIFETIME and print the answer (--socket only)\n"
            "  --check-secure-erase\n"
            "                    write blocks 0-7, SECURE_ERASE some of them, check what\n"
            "                    reads back (--socket only; the first 32 KiB are overwritten)\n"
            "  --json            print one JSON object instead of text\n"
            "\n"
            "Exit status: 0 success, 1 I/O or device error, 2 usage, 3 verify mismatch.\n");
}

static int bad(const char *msg)
{
    fprintf(stderr, PROG ": %s\n", msg);
    return -1;
}

static int parse(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        {"loopback", no_argument, NULL, 'l'},      {"socket", required_argument, NULL, 's'},
        {"ring", required_argument, NULL, 'r'},    {"rw", required_argument, NULL, 'w'},
        {"bs", required_argument, NULL, 'b'},      {"iodepth", required_argument, NULL, 'd'},
        {"queues", required_argument, NULL, 'Q'},  {"queue-size", required_argument, NULL, 'S'},
        {"runtime", required_argument, NULL, 't'}, {"timeout", required_argument, NULL, 'T'},
        {"size", required_argument, NULL, 'z'},    {"verify", no_argument, NULL, 'v'},
        {"spin", no_argument, NULL, 'p'},          {"json", no_argument, NULL, 'j'},
        {"idle", no_argument, NULL, 'i'},          {"zoned", no_argument, NULL, 'Z'},
        {"get-lifetime", no_argument, NULL, 'G'},  {"check-secure-erase", no_argument, NULL, 'E'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    static const char *const modes[] = {"read", "write", "randread", "randwrite", "randrw"};
    *o = (struct opts){
        .rw = RW_RANDREAD, .bs = 4096, .iodepth = 128, .runtime = 5, .queues = 1, .timeout = 10};
    uint64_t v;
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'l':
            o->loopback = true;
            break;
        case 's':
            o->socket = optarg;
            break;
        case 'r':
            if (strcmp(optarg, "split") && strcmp(optarg, "packed"))
                return bad("--ring must be split or packed");
            o->packed = !strcmp(optarg, "packed");
            break;
        case 'w': {
            unsigned i = 0;
            while (i < 5 && strcmp(optarg, modes[i]))
                i++;
            if (i == 5) {
                fprintf(stderr, PROG ": unknown --rw mode '%s'\n", optarg);
                return -1;
            }
            o->rw = (enum rw_mode)i;
            break;
        }
        case 'b':
            if (cli_size(optarg, &v) < 0 || v == 0 || v % 512 || v > (1u << 20))
                return bad("--bs must be a multiple of 512 up to 1 MiB");
            o->bs = (uint32_t)v;
            break;
        case 'd':
            if (cli_size(optarg, &v) < 0 || v == 0 || v > 1024)
                return bad("--iodepth must be 1..1024");
            o->iodepth = (uint32_t)v;
            break;
        case 'Q':
            if (cli_size(optarg, &v) < 0 || v == 0 || v > 64)
                return bad("--queues must be 1..64");
            o->queues = (uint16_t)v;
            break;
        case 'S':
            if (cli_size(optarg, &v) < 0 || v == 0 || v > 32768)
                return bad("--queue-size must be 1..32768");
            o->queue_size = (uint16_t)v;
            break;
        case 't':
        case 'T':
            if (cli_seconds(optarg, 86400, c == 't' ? &o->runtime : &o->timeout) < 0)
                return bad(c == 't' ? "--runtime must be positive seconds"
                                    : "--timeout must be positive seconds");
            break;
        case 'z':
            if (cli_size(optarg, &v) < 0 || v == 0)
                return bad("--size must be a positive number of bytes (K/M/G/T suffixes)");
            o->size = v;
            break;
        case 'v':
            o->verify = true;
            break;
        case 'p':
            o->spin = true;
            break;
        case 'j':
            o->json = true;
            break;
        case 'i':
            o->idle = true;
            break;
        case 'Z':
            o->zoned = true;
            break;
        case 'G':
            o->lifetime = true;
            break;
        case 'E':
            o->secure_erase = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!o->loopback == !o->socket)
        return bad("choose one target: --socket PATH or --loopback");
    if (o->loopback && (o->queues > 1 || o->verify || o->spin || o->idle || o->queue_size ||
                        o->zoned || o->lifetime || o->secure_erase))
        return bad("--queues, --queue-size, --verify, --spin, --idle, --zoned, --get-lifetime and "
                   "--check-secure-erase need --socket");
    if (o->idle && o->verify)
        return bad("--idle submits nothing to verify");
    if (o->size && o->size < o->bs * (uint64_t)o->queues)
        return bad("--size must hold at least one block per queue");
    return 0;
}

/* ---- the data pattern ---- */

/* Every 512-byte sector starts with its own sector number and the version
 * of the write that produced it; the rest depends on both. */
static void pattern_sector(uint8_t *p, uint64_t sector, uint32_t version)
{
    uint64_t x = sector * 0x9e3779b97f4a7c15ull ^ ((uint64_t)version << 32 | 0x5bd1e995u);
    uint32_t magic = PAT_MAGIC;
    memcpy(p, &sector, 8);
    memcpy(p + 8, &version, 4);
    memcpy(p + 12, &magic, 4);
    for (unsigned off = 16; off < VBLK_SECTOR_SIZE; off += 8) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t w = x ^ (x >> 29);
        memcpy(p + off, &w, 8);
    }
}

static void pattern_fill(uint8_t *buf, uint32_t len, uint64_t sector, uint32_t version)
{
    for (uint32_t off = 0; off < len; off += VBLK_SECTOR_SIZE)
        pattern_sector(buf + off, sector++, version);
}

/* ---- workers ---- */

struct slot {
    uint64_t start;
    uint64_t blk;
    uint32_t version;
    bool write;
    bool busy;
};

struct shared;

struct worker {
    struct shared *sh;
    uint16_t q;
    /* Copies of what the hot path needs, next to its own state. */
    bool verify, indirect;
    enum rw_mode rw;
    uint32_t bs, spb, nseg, seglen, iodepth;
    struct vblk_drv_vq *vq;
    uint8_t *bufs;
    struct vblk_drv_blk_frame *frames;
    struct slot *slots;
    uint32_t *free_slots;
    uint32_t nfree;
    uint64_t blk0, nblk; /* this worker's slice of the disk, in blocks */
    uint32_t *version;   /* --verify: per block, 0 = contents unknown */
    uint8_t *inflight;   /* --verify: per block, a request is in flight */
    uint32_t next_version;
    uint64_t rng, seq;
    struct hist lat;
    _Atomic uint64_t ios; /* completed in the timed phase */
    uint64_t verified;    /* blocks whose contents were checked */
    bool timed;           /* in the timed phase: count kicks and waits */
    uint64_t kicks;       /* kick eventfd writes (the device asked for them) */
    uint64_t waits;       /* sleeps on the call eventfd */
    uint64_t phase_ios;
    int rc;
    pthread_t thread;
};

struct shared {
    const struct opts *o;
    struct vblk_vu_client *client;
    struct vblk_loopback *lb;
    uint32_t nseg;   /* data descriptors per request */
    uint32_t seglen; /* bytes per data descriptor */
    bool indirect;
    uint64_t t_end;
    pthread_barrier_t ready, go, done;
    atomic_bool stop;
    pthread_mutex_t err_lock;
    int exit_code;
};

static void fail(struct worker *w, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct worker *w, int code, const char *fmt, ...)
{
    struct shared *sh = w->sh;
    va_list ap;
    pthread_mutex_lock(&sh->err_lock);
    /* The first failure is the one that matters; the rest follow from it. */
    if (!sh->exit_code) {
        va_start(ap, fmt);
        fprintf(stderr, PROG ": ");
        if (sh->o->queues > 1)
            fprintf(stderr, "queue %u: ", w->q);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        sh->exit_code = code;
    }
    pthread_mutex_unlock(&sh->err_lock);
    w->rc = -1;
    atomic_store(&sh->stop, true);
}

static const char *status_name(uint8_t s)
{
    switch (s) {
    case VBLK_S_IOERR:
        return "IOERR";
    case VBLK_S_UNSUPP:
        return "UNSUPP";
    case 0xff:
        return "never written by the device";
    default:
        return "not a valid status";
    }
}

/* Checks a block read back against the pattern of @p version. */
static bool check_block(struct worker *w, const uint8_t *buf, uint64_t blk, uint32_t version)
{
    uint32_t bs = w->bs;
    uint64_t sector = (w->blk0 + blk) * w->spb;
    uint8_t want[VBLK_SECTOR_SIZE];
    for (uint32_t off = 0; off < bs; off += VBLK_SECTOR_SIZE, sector++) {
        pattern_sector(want, sector, version);
        if (memcmp(want, buf + off, VBLK_SECTOR_SIZE) == 0)
            continue;
        unsigned i = 0;
        while (want[i] == buf[off + i])
            i++;
        uint64_t got_sector;
        uint32_t got_version, got_magic;
        memcpy(&got_sector, buf + off, 8);
        memcpy(&got_version, buf + off + 8, 4);
        memcpy(&got_magic, buf + off + 12, 4);
        char holds[96] = "data that is not this benchmark's pattern";
        if (got_magic == PAT_MAGIC)
            snprintf(holds, sizeof(holds), "the pattern of sector %" PRIu64 ", write %u",
                     got_sector, got_version);
        fail(w, EXIT_VERIFY,
             "verify failed: sector %" PRIu64 ", byte %u: expected 0x%02x, read 0x%02x "
             "(expected the pattern of write %u; the sector holds %s)",
             sector, i, want[i], buf[off + i], version, holds);
        return false;
    }
    return true;
}

/* Adds one request for block @p blk. Returns 0, or -ENOSPC (ring full). */
static inline __attribute__((always_inline)) int submit(struct worker *w, uint64_t blk, bool write,
                                                        uint64_t t)
{
    uint32_t slot = w->free_slots[w->nfree - 1];
    struct slot *s = &w->slots[slot];
    uint8_t *buf = w->bufs + (size_t)slot * w->bs;
    uint64_t sector = (w->blk0 + blk) * w->spb;
    if (w->verify && write) {
        s->version = ++w->next_version;
        pattern_fill(buf, w->bs, sector, s->version);
    }
    struct vblk_iov d[64];
    d[0].base = buf;
    d[0].len = w->bs;
    for (uint32_t i = 1; i < w->nseg; i++) {
        uint32_t off = i * w->seglen;
        d[i - 1].len = w->seglen;
        d[i].base = buf + off;
        d[i].len = w->bs - off;
    }
    w->frames[slot].status = 0xff;
    int rc = vblk_drv_blk_add(w->vq, &w->frames[slot], write ? VBLK_T_OUT : VBLK_T_IN, sector, d,
                              w->nseg, (void *)(uintptr_t)slot, w->indirect);
    if (rc < 0)
        return rc;
    w->nfree--;
    s->start = t;
    s->blk = blk;
    s->write = write;
    s->busy = true;
    if (w->verify)
        w->inflight[blk] = 1;
    return 0;
}

/* Reaps every used buffer. Returns the number reaped, or -1 after a failure. */
static int reap(struct worker *w, uint64_t t, bool timed)
{
    void *tok;
    uint32_t len;
    int got, n = 0;
    while ((got = vblk_drv_vq_get_used(w->vq, &tok, &len)) == 1) {
        uint32_t slot = (uint32_t)(uintptr_t)tok;
        struct slot *s = &w->slots[slot];
        uint8_t st = w->frames[slot].status;
        if (st != VBLK_S_OK) {
            fail(w, 1, "%s of %u sectors at sector %" PRIu64 " failed: status %u (%s)",
                 s->write ? "write" : "read", w->spb, (w->blk0 + s->blk) * w->spb, st,
                 status_name(st));
            return -1;
        }
        if (w->verify) {
            if (s->write)
                w->version[s->blk] = s->version;
            else if (w->version[s->blk]) {
                if (!check_block(w, w->bufs + (size_t)slot * w->bs, s->blk, w->version[s->blk]))
                    return -1;
                w->verified++;
            }
            w->inflight[s->blk] = 0;
        }
        s->busy = false;
        w->free_slots[w->nfree++] = slot;
        if (timed)
            hist_add(&w->lat, t - s->start, 1);
        n++;
    }
    if (timed && n)
        atomic_store_explicit(&w->ios, atomic_load_explicit(&w->ios, memory_order_relaxed) + n,
                              memory_order_relaxed);
    if (got < 0) {
        fail(w, 1,
             "the device wrote a bad used entry (%s): an id that is not in flight or a "
             "length beyond the buffer",
             strerror(-got));
        return -1;
    }
    return n;
}

static bool timed_out(struct worker *w, uint64_t t)
{
    const struct opts *o = w->sh->o;
    uint64_t limit = (uint64_t)(o->timeout * 1e9);
    for (uint32_t i = 0; i < o->iodepth; i++) {
        struct slot *s = &w->slots[i];
        if (s->busy && t - s->start > limit) {
            fail(w, 1, "%s of %u sectors at sector %" PRIu64 " did not complete within %.0f s",
                 s->write ? "write" : "read", o->bs / VBLK_SECTOR_SIZE,
                 (w->blk0 + s->blk) * (o->bs / VBLK_SECTOR_SIZE), o->timeout);
            return true;
        }
    }
    return false;
}

/* Publishes and waits for completions when none are pending. 0 or -1. */
static int kick_and_wait(struct worker *w, bool added)
{
    struct shared *sh = w->sh;
    if (sh->lb) {
        /* The device runs on this thread: a kick completes the batch. */
        if ((added ? vblk_loopback_kick(sh->lb, 0) : vblk_loopback_process(sh->lb, 0)) < 0) {
            fail(w, 1, "the device reported a broken queue");
            return -1;
        }
        return 0;
    }
    if (added && vblk_vu_client_kick(sh->client, w->q) > 0)
        w->kicks += w->timed;
    if (sh->o->spin || vblk_drv_vq_has_used(w->vq))
        return 0;
    w->waits += w->timed;
    int rc = vblk_vu_client_wait(sh->client, w->q, 100);
    if (rc == -ECONNRESET) {
        fail(w, 1, "the vhost-user back-end closed the connection");
        return -1;
    }
    if (rc < 0) {
        fail(w, 1, "waiting for completions: %s", strerror(-rc));
        return -1;
    }
    if (rc == 0 && timed_out(w, now_ns()))
        return -1;
    return 0;
}

enum phase { PH_FILL, PH_TIMED, PH_READBACK };

/* Picks the next block for @p ph. Returns false when the phase has nothing
 * more to submit now. */
static bool next_block(struct worker *w, enum phase ph, uint64_t *blk, bool *write)
{
    if (ph != PH_TIMED) {
        /* Sequential passes: fill everything, or read back what was written. */
        while (w->seq < w->nblk &&
               (w->inflight[w->seq] || (ph == PH_READBACK && !w->version[w->seq])))
            w->seq++;
        if (w->seq >= w->nblk)
            return false;
        *blk = w->seq++;
        *write = ph == PH_FILL;
        return true;
    }
    for (unsigned tries = 0; tries < 8; tries++) {
        switch (w->rw) {
        case RW_READ:
        case RW_WRITE:
            *blk = w->seq++ % w->nblk;
            *write = w->rw == RW_WRITE;
            break;
        default:
            *blk = xorshift(&w->rng) % w->nblk;
            *write = w->rw == RW_RANDWRITE || (w->rw == RW_RANDRW && (w->rng & 1));
            break;
        }
        /* With --verify no two requests touch a block at once. */
        if (!w->verify || !w->inflight[*blk])
            return true;
    }
    return false;
}

static int run_phase(struct worker *w, enum phase ph)
{
    struct shared *sh = w->sh;
    uint64_t t = now_ns(), polls = 0;
    bool more = true;
    w->timed = ph == PH_TIMED;
    for (;;) {
        if (reap(w, t, ph == PH_TIMED) < 0)
            return -1;
        if (atomic_load_explicit(&sh->stop, memory_order_relaxed))
            return -1;
        if (ph == PH_TIMED && t >= sh->t_end)
            more = false;
        bool added = false;
        while (more && w->nfree) {
            uint64_t blk;
            bool write;
            if (!next_block(w, ph, &blk, &write)) {
                more = ph == PH_TIMED;
                break;
            }
            if (submit(w, blk, write, t) < 0) {
                if (ph != PH_TIMED)
                    w->seq--;
                break;
            }
            added = true;
        }
        if (!more && w->nfree == w->iodepth)
            return 0;
        if (kick_and_wait(w, added) < 0)
            return -1;
        /* One clock read per batch keeps timing out of the per-request cost. */
        t = now_ns();
        if (sh->o->spin && !sh->lb && ++polls % 65536 == 0 && timed_out(w, t))
            return -1;
    }
}

static bool read_only_mode(enum rw_mode m)
{
    return m == RW_READ || m == RW_RANDREAD;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct shared *sh = w->sh;
    const struct opts *o = sh->o;
    if (o->verify && read_only_mode(o->rw) && run_phase(w, PH_FILL) < 0)
        w->rc = -1;
    w->seq = 0;
    /* The clock starts once every worker has filled its slice. */
    pthread_barrier_wait(&sh->ready);
    pthread_barrier_wait(&sh->go);
    if (w->rc == 0 && !o->idle && run_phase(w, PH_TIMED) < 0)
        w->rc = -1;
    w->timed = false;
    pthread_barrier_wait(&sh->done);
    w->seq = 0;
    /* Write modes: read back every block written (reads were checked as
     * they completed). */
    if (w->rc == 0 && o->verify && !read_only_mode(o->rw) && !atomic_load(&sh->stop) &&
        run_phase(w, PH_READBACK) < 0)
        w->rc = -1;
    return NULL;
}

/* ---- targets ---- */

static uint16_t pow2_at_least(uint32_t n, uint32_t lo, uint32_t hi)
{
    uint32_t s = lo;
    while (s < n && s < hi)
        s <<= 1;
    return (uint16_t)s;
}

/* Connects and works out the request layout the device allows. */
static int open_socket(const struct opts *o, struct shared *sh, uint64_t *capacity)
{
    uint32_t nseg_guess = (o->bs + 4095) / 4096;
    uint16_t qsize = o->queue_size ? o->queue_size : 256;
    uint16_t indirect_max = (uint16_t)(nseg_guess + 2 < 16 ? 16 : nseg_guess + 2);
    size_t ring_mem = (size_t)qsize * (16u * indirect_max + 64u) + (64u << 10);
    char err[256];
    struct vblk_vu_client_opts co = {
        .queues = o->queues,
        .queue_size = qsize,
        .packed = o->packed,
        .event_idx = true,
        .indirect = true,
        .indirect_max = indirect_max,
        .mem_size = (size_t)o->queues * ((size_t)o->iodepth * (o->bs + 64) + ring_mem) + (1u << 20),
        .timeout_ms = (int)(o->timeout * 1000),
        .errbuf = err,
        .errbuf_len = sizeof(err),
    };
    int rc = vblk_vu_client_connect(o->socket, &co, &sh->client);
    if (rc < 0) {
        fprintf(stderr, PROG ": %s: %s\n", o->socket, err[0] ? err : strerror(-rc));
        return -1;
    }
    uint64_t f = vblk_vu_client_features(sh->client);
    struct vblk_config cfg = {0};
    if (vblk_vu_client_config(sh->client, &cfg) < 0) {
        fprintf(stderr, PROG ": %s: cannot read the device's config space: %s\n", o->socket,
                vblk_vu_client_error(sh->client));
        return -1;
    }
    *capacity = cfg.capacity * VBLK_SECTOR_SIZE;
    if ((f & VBLK_BIT(VBLK_F_RO)) && o->rw != RW_READ && o->rw != RW_RANDREAD)
        fprintf(stderr, PROG ": warning: the device is read-only; writes will fail\n");
    sh->seglen = o->bs;
    if ((f & VBLK_BIT(VBLK_F_SIZE_MAX)) && cfg.size_max >= VBLK_SECTOR_SIZE && cfg.size_max < o->bs)
        sh->seglen = cfg.size_max & ~(VBLK_SECTOR_SIZE - 1);
    sh->nseg = (o->bs + sh->seglen - 1) / sh->seglen;
    if (sh->nseg > 64 ||
        ((f & VBLK_BIT(VBLK_F_SEG_MAX)) && cfg.seg_max && sh->nseg > cfg.seg_max)) {
        fprintf(stderr, PROG ": --bs %u needs %u segments of %u bytes; the device takes %u\n",
                o->bs, sh->nseg, sh->seglen, cfg.seg_max);
        return -1;
    }
    /* Indirect tables when the chains of a full iodepth would not fit. */
    uint32_t descs = sh->nseg + 2;
    sh->indirect = (f & VBLK_BIT(VBLK_F_INDIRECT_DESC)) && descs <= co.indirect_max &&
                   (uint64_t)descs * o->iodepth > qsize;
    uint32_t per_req = sh->indirect ? 1 : descs;
    if ((uint64_t)per_req * o->iodepth > qsize && !o->json)
        fprintf(stderr,
                PROG ": note: a ring of %u entries holds %u requests of %u descriptors; "
                     "iodepth is effectively %u\n",
                qsize, qsize / per_req, per_req, qsize / per_req);
    return 0;
}

static int open_loopback(const struct opts *o, struct shared *sh, struct vblk_backend *be,
                         uint64_t *capacity)
{
    *capacity = 1ull << 30;
    int rc = vblk_backend_null_create(*capacity, be);
    if (rc < 0)
        return rc;
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, *capacity);
    uint16_t qsize = pow2_at_least(o->iodepth, 64, 32768);
    p.queue_size = qsize;
    struct vblk_loopback_opts lo = {
        .packed = o->packed,
        .queue_size = qsize,
        .arena_size = (size_t)o->iodepth * (o->bs + 64) + (8u << 20),
    };
    rc = vblk_loopback_create(&p, be, &lo, &sh->lb);
    if (rc < 0)
        return rc;
    sh->nseg = 1;
    sh->seglen = o->bs;
    return 0;
}

static void *shared_alloc(struct shared *sh, size_t len)
{
    return sh->lb ? vblk_loopback_alloc(sh->lb, len) : vblk_vu_client_alloc(sh->client, len);
}

static int setup_worker(struct worker *w, struct shared *sh, uint16_t q, uint64_t nblk_total)
{
    const struct opts *o = sh->o;
    w->sh = sh;
    w->q = q;
    w->verify = o->verify;
    w->indirect = sh->indirect;
    w->rw = o->rw;
    w->bs = o->bs;
    w->spb = o->bs / VBLK_SECTOR_SIZE;
    w->nseg = sh->nseg;
    w->seglen = sh->seglen;
    w->iodepth = o->iodepth;
    w->vq = sh->lb ? vblk_loopback_driver(sh->lb, 0) : vblk_vu_client_queue(sh->client, q);
    w->bufs = shared_alloc(sh, (size_t)o->iodepth * o->bs);
    w->frames = shared_alloc(sh, (size_t)o->iodepth * sizeof(*w->frames));
    w->slots = calloc(o->iodepth, sizeof(*w->slots));
    w->free_slots = calloc(o->iodepth, sizeof(*w->free_slots));
    w->blk0 = nblk_total * q / o->queues;
    w->nblk = nblk_total * (q + 1u) / o->queues - w->blk0;
    if (o->verify) {
        w->version = calloc(w->nblk, sizeof(*w->version));
        w->inflight = calloc(w->nblk, 1);
    }
    if (!w->vq || !w->bufs || !w->frames || !w->slots || !w->free_slots ||
        (o->verify && (!w->version || !w->inflight)))
        return -ENOMEM;
    w->nfree = o->iodepth;
    for (uint32_t i = 0; i < o->iodepth; i++)
        w->free_slots[i] = o->iodepth - 1 - i;
    w->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)q << 32 | 0x1234567u);
    return 0;
}

static const char *rw_name(enum rw_mode m)
{
    static const char *names[] = {"read", "write", "randread", "randwrite", "randrw"};
    return names[m];
}

static double cpu_seconds(const struct rusage *a, const struct rusage *b)
{
    return (double)(b->ru_utime.tv_sec - a->ru_utime.tv_sec) +
           (double)(b->ru_stime.tv_sec - a->ru_stime.tv_sec) +
           (double)(b->ru_utime.tv_usec - a->ru_utime.tv_usec) / 1e6 +
           (double)(b->ru_stime.tv_usec - a->ru_stime.tv_usec) / 1e6;
}

static void report(const struct opts *o, const struct shared *sh, const struct hist *lat,
                   uint64_t ios, double secs, double cpu, uint64_t verified, uint64_t kicks,
                   uint64_t waits)
{
    double iops = secs > 0 ? (double)ios / secs : 0;
    double mibs = iops * o->bs / (1024.0 * 1024.0);
    double per_cpu = cpu > 0 ? (double)ios / cpu : 0;
    const char *ring = o->packed ? "packed" : "split";
    if (o->json) {
        printf("{\"target\":\"%s\",\"ring\":\"%s\",\"rw\":\"%s\",\"bs\":%u,\"iodepth\":%u,"
               "\"queues\":%u,\"runtime_s\":%.3f,\"ios\":%" PRIu64 ",\"iops\":%.0f,"
               "\"mib_s\":%.1f,\"lat_p50_us\":%.3f,\"lat_p99_us\":%.3f,\"lat_p999_us\":%.3f,"
               "\"cpu_s\":%.3f,\"ios_per_cpu_s\":%.0f,\"kicks\":%" PRIu64 ",\"waits\":%" PRIu64
               ",\"verify\":%s,\"verified_blocks\":%" PRIu64 "}\n",
               sh->lb ? "loopback" : "vhost-user", ring, rw_name(o->rw), o->bs, o->iodepth,
               o->queues, secs, ios, iops, mibs, hist_pct(lat, 50), hist_pct(lat, 99),
               hist_pct(lat, 99.9), cpu, per_cpu, kicks, waits, o->verify ? "true" : "false",
               verified);
        return;
    }
    if (sh->lb)
        printf("loopback %s ring, %s, bs %u, iodepth %u, %.1f s\n", ring, rw_name(o->rw), o->bs,
               o->iodepth, secs);
    else
        printf("vhost-user %s: %s ring, %u queue(s), %s, bs %u, iodepth %u per queue, %.1f s\n",
               o->socket, ring, o->queues, rw_name(o->rw), o->bs, o->iodepth, secs);
    printf("  IOPS      %.0f\n  MiB/s     %.1f\n", iops, mibs);
    printf("  latency   p50 %.3f us  p99 %.3f us  p99.9 %.3f us\n", hist_pct(lat, 50),
           hist_pct(lat, 99), hist_pct(lat, 99.9));
    printf("  CPU       %.2f s %s, %.0f requests per CPU second\n", cpu,
           sh->lb ? "(driver and device on one thread)" : "(this client, all threads)", per_cpu);
    if (!sh->lb)
        printf("  notify    %" PRIu64 " kicks, %" PRIu64 " sleeps on the call eventfd\n", kicks,
               waits);
    if (o->verify)
        printf("  verify    %" PRIu64 " blocks read back and checked\n", verified);
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse(argc, argv, &o) < 0)
        return 2;
    struct shared sh = {.o = &o};
    pthread_mutex_init(&sh.err_lock, NULL);
    struct vblk_backend be = {0};
    uint64_t capacity = 0;
    int rc = o.loopback ? open_loopback(&o, &sh, &be, &capacity) : open_socket(&o, &sh, &capacity);
    if (rc == 0 && (o.zoned || o.lifetime || o.secure_erase)) {
        int ex = o.zoned      ? bench_zoned(sh.client, o.queues, o.iodepth, o.timeout)
                 : o.lifetime ? bench_lifetime(sh.client, o.timeout)
                              : bench_secure_erase(sh.client, o.timeout);
        vblk_vu_client_close(sh.client);
        return ex;
    }
    struct worker *w = calloc(o.queues, sizeof(*w));
    struct hist *lat = calloc(1, sizeof(*lat));
    if (rc == 0 && (!w || !lat))
        rc = -ENOMEM;
    uint64_t area = o.size ? o.size : capacity;
    if (o.verify && !o.size && area > (1ull << 30))
        area = 1ull << 30;
    if (rc == 0 && area > capacity) {
        fprintf(stderr, PROG ": --size %" PRIu64 " is larger than the disk (%" PRIu64 " bytes)\n",
                area, capacity);
        rc = -1;
    }
    uint64_t nblk = area / o.bs;
    if (rc == 0 && nblk < o.queues) {
        fprintf(stderr, PROG ": the disk (%" PRIu64 " bytes) is smaller than one block per queue\n",
                capacity);
        rc = -1;
    }
    for (uint16_t q = 0; rc == 0 && q < o.queues; q++)
        if (setup_worker(&w[q], &sh, q, nblk) < 0) {
            fprintf(stderr, PROG ": out of shared memory or memory\n");
            rc = -1;
        }
    if (rc < 0) {
        if (rc != -1)
            fprintf(stderr, PROG ": %s\n", strerror(-rc));
        sh.exit_code = 1;
        goto out;
    }

    pthread_barrier_init(&sh.ready, NULL, o.queues + 1u);
    pthread_barrier_init(&sh.go, NULL, o.queues + 1u);
    pthread_barrier_init(&sh.done, NULL, o.queues + 1u);
    uint16_t started = 0;
    for (; started < o.queues; started++)
        if (pthread_create(&w[started].thread, NULL, worker_main, &w[started]) != 0)
            break;
    if (started < o.queues) {
        /* Cannot happen in practice; the barriers would never fill. */
        fprintf(stderr, PROG ": cannot start the worker threads\n");
        exit(1);
    }
    bool tty = !o.json && isatty(STDOUT_FILENO);
    struct rusage ru0, ru1;
    pthread_barrier_wait(&sh.ready);
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t t_start = now_ns();
    sh.t_end = t_start + (uint64_t)(o.runtime * 1e9);
    pthread_barrier_wait(&sh.go);
    /* A progress line each second on a terminal. */
    uint64_t last_ios = 0, last_t = t_start;
    while ((tty || o.idle) && !atomic_load(&sh.stop)) {
        uint64_t t = now_ns();
        if (t >= sh.t_end)
            break;
        uint64_t left = sh.t_end - t;
        struct timespec ts = {0, 0};
        uint64_t nap = left < 1000000000u ? left : 1000000000u;
        ts.tv_sec = (time_t)(nap / 1000000000u);
        ts.tv_nsec = (long)(nap % 1000000000u);
        nanosleep(&ts, NULL);
        if (!tty)
            continue;
        uint64_t ios = 0;
        for (uint16_t q = 0; q < o.queues; q++)
            ios += atomic_load_explicit(&w[q].ios, memory_order_relaxed);
        t = now_ns();
        printf("\r%10.0f IOPS  %8.1f MiB/s  %4.0f s left ",
               (double)(ios - last_ios) * 1e9 / (double)(t - last_t),
               (double)(ios - last_ios) * o.bs / (1024.0 * 1024.0) * 1e9 / (double)(t - last_t),
               t < sh.t_end ? (double)(sh.t_end - t) / 1e9 : 0.0);
        fflush(stdout);
        last_ios = ios;
        last_t = t;
    }
    pthread_barrier_wait(&sh.done);
    uint64_t t_stop = now_ns();
    getrusage(RUSAGE_SELF, &ru1);
    if (tty)
        printf("\r%50s\r", "");
    uint64_t ios = 0, verified = 0, kicks = 0, waits = 0;
    for (uint16_t q = 0; q < o.queues; q++) {
        pthread_join(w[q].thread, NULL);
        ios += atomic_load(&w[q].ios);
        verified += w[q].verified;
        kicks += w[q].kicks;
        waits += w[q].waits;
        for (unsigned i = 0; i < HIST_BUCKETS; i++)
            if (w[q].lat.count[i])
                hist_add(lat, hist_value(i), w[q].lat.count[i]);
    }
    pthread_barrier_destroy(&sh.ready);
    pthread_barrier_destroy(&sh.go);
    pthread_barrier_destroy(&sh.done);
    if (!sh.exit_code) {
        /* hist_value() of a bucket maps back into the same bucket. */
        report(&o, &sh, lat, ios, (double)(t_stop - t_start) / 1e9, cpu_seconds(&ru0, &ru1),
               verified, kicks, waits);
    }
out:
    for (uint16_t q = 0; w && q < o.queues; q++) {
        free(w[q].slots);
        free(w[q].free_slots);
        free(w[q].version);
        free(w[q].inflight);
    }
    free(w);
    free(lat);
    vblk_vu_client_close(sh.client);
    vblk_loopback_destroy(sh.lb);
    if (be.ops)
        vblk_backend_destroy(&be);
    return sh.exit_code;
}
