/* SPDX-License-Identifier: MIT */
/*
 * vblk-bench: drives a virtio-blk device through real rings and reports
 * IOPS, bandwidth and latency percentiles.
 *
 * --loopback: driver and device run in this process on one thread, through
 * the loopback transport and the null backend. Every request makes the full
 * round trip: driver adds a chain, device pops/validates/decodes it, the
 * backend completes it, the device pushes the used entry, the driver reaps
 * it. This measures the library's per-request cost, not storage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "virtioblk/virtioblk.h"

#define HIST_SUB     64
#define HIST_BUCKETS (64 * HIST_SUB)

enum rw_mode { RW_READ, RW_WRITE, RW_RANDREAD, RW_RANDWRITE, RW_RANDRW };

struct opts {
    bool loopback;
    bool packed;
    enum rw_mode rw;
    uint32_t bs;
    uint32_t iodepth;
    double runtime;
    bool json;
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
    fprintf(f, "usage: vblk-bench --loopback [--ring split|packed]\n"
               "                  [--rw read|write|randread|randwrite|randrw] [--bs BYTES]\n"
               "                  [--iodepth N] [--runtime SECONDS] [--json]\n"
               "\n"
               "  --loopback        driver and device in this process (null backend)\n"
               "  --ring FORMAT     split (default) or packed virtqueue\n"
               "  --rw MODE         access pattern (default randread)\n"
               "  --bs BYTES        request size, a multiple of 512 (default 4096)\n"
               "  --iodepth N       requests kept in flight (default 128)\n"
               "  --runtime SECONDS how long to run (default 5)\n"
               "  --json            print one JSON object instead of text\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        {"loopback", no_argument, NULL, 'l'},
        {"ring", required_argument, NULL, 'r'},
        {"rw", required_argument, NULL, 'w'},
        {"bs", required_argument, NULL, 'b'},
        {"iodepth", required_argument, NULL, 'd'},
        {"runtime", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct opts){.rw = RW_RANDREAD, .bs = 4096, .iodepth = 128, .runtime = 5};
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'l':
            o->loopback = true;
            break;
        case 'r':
            if (strcmp(optarg, "split") && strcmp(optarg, "packed")) {
                fprintf(stderr, "vblk-bench: --ring must be split or packed\n");
                return -1;
            }
            o->packed = !strcmp(optarg, "packed");
            break;
        case 'w':
            if (!strcmp(optarg, "read"))
                o->rw = RW_READ;
            else if (!strcmp(optarg, "write"))
                o->rw = RW_WRITE;
            else if (!strcmp(optarg, "randread"))
                o->rw = RW_RANDREAD;
            else if (!strcmp(optarg, "randwrite"))
                o->rw = RW_RANDWRITE;
            else if (!strcmp(optarg, "randrw"))
                o->rw = RW_RANDRW;
            else {
                fprintf(stderr, "vblk-bench: unknown --rw mode '%s'\n", optarg);
                return -1;
            }
            break;
        case 'b':
            o->bs = (uint32_t)strtoul(optarg, NULL, 0);
            if (o->bs == 0 || o->bs % 512 || o->bs > (1u << 20)) {
                fprintf(stderr, "vblk-bench: --bs must be a multiple of 512 up to 1 MiB\n");
                return -1;
            }
            break;
        case 'd':
            o->iodepth = (uint32_t)strtoul(optarg, NULL, 0);
            if (o->iodepth == 0 || o->iodepth > 1024) {
                fprintf(stderr, "vblk-bench: --iodepth must be 1..1024\n");
                return -1;
            }
            break;
        case 't':
            o->runtime = strtod(optarg, NULL);
            if (!(o->runtime > 0)) {
                fprintf(stderr, "vblk-bench: --runtime must be positive\n");
                return -1;
            }
            break;
        case 'j':
            o->json = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (!o->loopback) {
        fprintf(stderr, "vblk-bench: choose a target: --loopback\n");
        return -1;
    }
    return 0;
}

struct result {
    uint64_t ios;
    double secs;
    double cpu_secs;
    struct hist lat;
};

static uint16_t ring_size_for(uint32_t iodepth)
{
    uint32_t s = 64;
    while (s < iodepth)
        s <<= 1;
    return (uint16_t)(s > 32768 ? 32768 : s);
}

static int run_loopback(const struct opts *o, struct result *res)
{
    const uint64_t capacity = 1ull << 30;
    struct vblk_backend be;
    int rc = vblk_backend_null_create(capacity, &be);
    if (rc < 0)
        return rc;
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, capacity);
    uint16_t qsize = ring_size_for(o->iodepth);
    p.queue_size = qsize;
    struct vblk_loopback_opts lo = {
        .packed = o->packed,
        .queue_size = qsize,
        .arena_size = (size_t)o->iodepth * (o->bs + 64) + (8u << 20),
    };
    struct vblk_loopback *lb;
    rc = vblk_loopback_create(&p, &be, &lo, &lb);
    if (rc < 0) {
        vblk_backend_destroy(&be);
        return rc;
    }
    struct vblk_drv_vq *vq = vblk_loopback_driver(lb, 0);
    uint8_t *bufs = vblk_loopback_alloc(lb, (size_t)o->iodepth * o->bs);
    struct vblk_drv_blk_frame *frames =
        vblk_loopback_alloc(lb, (size_t)o->iodepth * sizeof(*frames));
    uint64_t *start = calloc(o->iodepth, sizeof(*start));
    uint32_t *free_slots = calloc(o->iodepth, sizeof(*free_slots));
    if (!bufs || !frames || !start || !free_slots) {
        rc = -ENOMEM;
        goto out;
    }
    uint32_t nfree = o->iodepth;
    for (uint32_t i = 0; i < o->iodepth; i++)
        free_slots[i] = i;

    uint64_t rng = 0x9e3779b97f4a7c15ull, seq = 0;
    uint64_t nblocks = capacity / o->bs;
    uint64_t t_start = now_ns(), t_end = t_start + (uint64_t)(o->runtime * 1e9), t = t_start;
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    unsigned iter = 0;
    while (t < t_end) {
        while (nfree) {
            uint32_t slot = free_slots[--nfree];
            uint64_t blk;
            bool write;
            switch (o->rw) {
            case RW_READ:
            case RW_WRITE:
                blk = seq++ % nblocks;
                write = o->rw == RW_WRITE;
                break;
            default:
                blk = xorshift(&rng) % nblocks;
                write = o->rw == RW_RANDWRITE || (o->rw == RW_RANDRW && (rng & 1));
                break;
            }
            struct vblk_iov d = {bufs + (size_t)slot * o->bs, o->bs};
            rc = vblk_drv_blk_add(vq, &frames[slot], write ? VBLK_T_OUT : VBLK_T_IN,
                                  blk * (o->bs / 512), &d, 1, (void *)(uintptr_t)slot, false);
            if (rc < 0) {
                free_slots[nfree++] = slot;
                break;
            }
            start[slot] = t;
        }
        rc = vblk_loopback_kick(lb, 0);
        if (rc < 0) {
            fprintf(stderr, "vblk-bench: device reported a broken queue\n");
            goto out;
        }
        /* One clock read per batch keeps timing out of the per-request cost. */
        t = now_ns();
        void *tok;
        uint32_t len;
        int got;
        while ((got = vblk_drv_vq_get_used(vq, &tok, &len)) == 1) {
            uint32_t slot = (uint32_t)(uintptr_t)tok;
            if (frames[slot].status != VBLK_S_OK) {
                fprintf(stderr, "vblk-bench: request failed with status %u\n", frames[slot].status);
                rc = -EIO;
                goto out;
            }
            hist_add(&res->lat, t - start[slot], 1);
            free_slots[nfree++] = slot;
            res->ios++;
        }
        if (got < 0) {
            fprintf(stderr, "vblk-bench: device wrote a bad used entry (%s)\n", strerror(-got));
            rc = got;
            goto out;
        }
        if (!o->json && isatty(STDOUT_FILENO) && ++iter % 4096 == 0) {
            static uint64_t last_print, last_ios;
            if (t - last_print >= 1000000000ull) {
                if (last_print)
                    printf("\r%8.0f IOPS",
                           (double)(res->ios - last_ios) * 1e9 / (double)(t - last_print));
                fflush(stdout);
                last_print = t;
                last_ios = res->ios;
            }
        }
    }
    getrusage(RUSAGE_SELF, &ru1);
    res->secs = (double)(t - t_start) / 1e9;
    res->cpu_secs = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                    (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                    (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                    (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    rc = 0;
out:
    free(start);
    free(free_slots);
    vblk_loopback_destroy(lb);
    vblk_backend_destroy(&be);
    return rc;
}

static const char *rw_name(enum rw_mode m)
{
    static const char *names[] = {"read", "write", "randread", "randwrite", "randrw"};
    return names[m];
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse(argc, argv, &o) < 0)
        return 2;
    struct result *res = calloc(1, sizeof(*res));
    if (!res)
        return 1;
    int rc = run_loopback(&o, res);
    if (rc < 0) {
        fprintf(stderr, "vblk-bench: %s\n", strerror(-rc));
        return 1;
    }
    double iops = res->secs > 0 ? (double)res->ios / res->secs : 0;
    double mibs = iops * o.bs / (1024.0 * 1024.0);
    if (o.json) {
        printf("{\"target\":\"loopback\",\"ring\":\"%s\",\"rw\":\"%s\",\"bs\":%u,\"iodepth\":%u,"
               "\"runtime_s\":%.3f,\"ios\":%" PRIu64 ",\"iops\":%.0f,\"mib_s\":%.1f,"
               "\"lat_p50_us\":%.3f,\"lat_p99_us\":%.3f,\"lat_p999_us\":%.3f,\"cpu_s\":%.3f,"
               "\"ios_per_cpu_s\":%.0f}\n",
               o.packed ? "packed" : "split", rw_name(o.rw), o.bs, o.iodepth, res->secs, res->ios,
               iops, mibs, hist_pct(&res->lat, 50), hist_pct(&res->lat, 99),
               hist_pct(&res->lat, 99.9), res->cpu_secs,
               res->cpu_secs > 0 ? (double)res->ios / res->cpu_secs : 0);
    } else {
        if (isatty(STDOUT_FILENO))
            printf("\r");
        printf("loopback %s ring, %s, bs %u, iodepth %u, %.1f s\n", o.packed ? "packed" : "split",
               rw_name(o.rw), o.bs, o.iodepth, res->secs);
        printf("  IOPS      %.0f\n  MiB/s     %.1f\n", iops, mibs);
        printf("  latency   p50 %.3f us  p99 %.3f us  p99.9 %.3f us\n", hist_pct(&res->lat, 50),
               hist_pct(&res->lat, 99), hist_pct(&res->lat, 99.9));
        printf("  CPU       %.2f s (driver and device on one thread), %.0f requests per CPU second\n",
               res->cpu_secs, res->cpu_secs > 0 ? (double)res->ios / res->cpu_secs : 0);
    }
    free(res);
    return 0;
}
