/* SPDX-License-Identifier: MIT */
/*
 * vblk-vhost-user: serve a disk image (or a RAM disk) to a vhost-user
 * front-end such as QEMU's vhost-user-blk-pci.
 *
 *   vblk-vhost-user --socket /run/vblk0.sock --image disk.img &
 *   qemu-system-x86_64 ... -object memory-backend-memfd,id=mem,size=2G,share=on \
 *       -numa node,memdev=mem -chardev socket,id=vblk0,path=/run/vblk0.sock,reconnect=1 \
 *       -device vhost-user-blk-pci,chardev=vblk0
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "virtioblk/virtioblk.h"
#include "blk_opt.h"
#include "zoned_opt.h"

#define PROG "vblk-vhost-user"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " PROG " --socket PATH [--image FILE | --memory SIZE | --null SIZE] [options]\n"
            "\n"
            "Serves a virtio-blk disk to a vhost-user front-end (QEMU's vhost-user-blk-pci,\n"
            "libvirt, other VMMs) over the Unix socket PATH. One front-end is served at a\n"
            "time; when it disconnects the server waits for the next one, so a front-end\n"
            "with reconnect=1 survives a restart of this program. SIGINT or SIGTERM stops\n"
            "it cleanly: requests in flight complete, the image is flushed and the socket\n"
            "removed. Per-queue counters are printed at exit.\n"
            "\n"
            "  --socket PATH        Unix socket to listen on (a stale socket file is replaced)\n"
            "  --image FILE         disk image or block device to serve\n"
            "  --memory SIZE        serve a zero-filled RAM disk of SIZE bytes (K/M/G/T\n"
            "                       suffixes, a multiple of 512); the default with neither\n"
            "                       option is a 1 GiB RAM disk\n"
            "  --null SIZE          a disk of SIZE bytes that completes every request at once\n"
            "                       without touching the data (for benchmarks)\n"
            "  --queues N           number of queues, 1..%u (default 1); give QEMU the same\n"
            "                       num-queues\n"
            "  --queue-size N       largest ring size accepted, 1..32768 (default 256); QEMU's\n"
            "                       queue-size must not be larger\n"
            "  --read-only          refuse writes; the guest sees a read-only disk\n"
            "  --serial STRING      serial number reported by GET_ID (up to 20 bytes)\n"
            "  --backend ENGINE     I/O engine for --image: io_uring or psync (default: io_uring\n"
            "                       when the kernel allows it, else psync)\n"
            "  --notify MODE        how worker threads wait for requests: adaptive (default:\n"
            "                       poll for a while after activity, then sleep), event\n"
            "                       (sleep until kicked) or poll (busy-poll for ever)\n"
            "  --poll               the same as --notify poll (one CPU per worker at 100%%)\n"
            "  --poll-max-us N      adaptive mode: longest poll after the last request, in\n"
            "                       microseconds, 1..1000000 (default 128)\n"
            "  --coalesce N,US      while polling, interrupt the guest at most once per N\n"
            "                       completions or US microseconds after the first one held\n"
            "                       (default: no coalescing)\n"
            "  --threads N          worker threads running the queues (default: one per queue)\n"
            ZONED_OPT_HELP BLK_OPT_HELP
            "  --verbose, -v        log connections and queue events; twice: every message\n"
            "  --quiet, -q          print only errors\n"
            "  --help, -h           this text\n"
            "\n"
            "Guest RAM must be shared with this process: give QEMU a memory backend with\n"
            "share=on (the exact options are printed at start).\n",
            VBLK_MAX_QUEUES);
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    if (!s || *s == '-' || *s == '\0')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s)
        return -1;
    unsigned shift = 0;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    case 't':
    case 'T':
        shift = 40;
        end++;
        break;
    default:
        break;
    }
    if (shift && *end == 'i')
        end++;
    if (shift && *end == 'B')
        end++;
    if (*end || (shift && v > (UINT64_MAX >> shift)))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    if (!s || *s == '-')
        return -1;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v == 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

static void log_line(void *opaque, int level, const char *msg)
{
    (void)opaque;
    static const char *const names[] = {"error", "warning", "info", "debug"};
    fprintf(stderr, PROG ": %s: %s\n", names[level & 3], msg);
}

static const char *human(uint64_t bytes, char *buf, size_t len)
{
    static const char units[] = "KMGTP";
    if (bytes < 1024 || bytes % 1024) {
        snprintf(buf, len, "%" PRIu64 " bytes", bytes);
        return buf;
    }
    unsigned u = 0;
    bytes >>= 10;
    while (bytes >= 1024 && bytes % 1024 == 0 && u + 1 < sizeof(units) - 1) {
        bytes >>= 10;
        u++;
    }
    snprintf(buf, len, "%" PRIu64 " %ciB", bytes, units[u]);
    return buf;
}

/* One clear line for each way the image can be unusable. */
/* --zoned: emulated zones over --image or --memory (zoned_opt.h). */
static const struct vblk_zoned_opts *g_zoned;
static const char *g_zone_meta;
static bool g_secure_erase; /* --secure-erase */

static int open_image(const char *path, bool ro, int engine, struct vblk_backend *be)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        fprintf(stderr, PROG ": cannot open image '%s': %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        fprintf(stderr, PROG ": image '%s' is not a regular file or a block device\n", path);
        return -1;
    }
    if (S_ISREG(st.st_mode) && st.st_size % 512) {
        fprintf(stderr, PROG ": image '%s' is %lld bytes, not a multiple of 512\n", path,
                (long long)st.st_size);
        return -1;
    }
    struct vblk_file_opts fo = {
        .read_only = ro,
        .engine = engine,
        .zoned = g_zoned,
        .zone_meta = g_zone_meta,
        .secure_erase = g_secure_erase};
    int rc = vblk_backend_file_open(path, &fo, be);
    if (rc == -EBADMSG) {
        fprintf(stderr,
                PROG ": the zone metadata of '%s' is damaged or was made for other --zoned "
                     "settings\n",
                path);
        return -1;
    }
    if (rc == -EINVAL && g_zoned) {
        zoned_opt_explain(PROG, g_zoned, (uint64_t)st.st_size);
        return -1;
    }
    if (rc == -ENOTSUP && engine == VBLK_FILE_ENGINE_IO_URING) {
        fprintf(stderr, PROG ": --backend io_uring: io_uring is not available here\n");
        return -1;
    }
    if (rc < 0) {
        fprintf(stderr, PROG ": cannot open image '%s'%s: %s\n", path,
                ro ? " read-only" : " for writing", strerror(-rc));
        return -1;
    }
    if (be->size == 0) {
        fprintf(stderr, PROG ": image '%s' is empty\n", path);
        vblk_backend_destroy(be);
        return -1;
    }
    return 0;
}

static void explain_server_error(const char *path, int rc)
{
    switch (rc) {
    case -EADDRINUSE:
        fprintf(stderr, PROG ": socket %s is busy: another server is listening on it\n", path);
        break;
    case -EEXIST:
        fprintf(stderr, PROG ": %s exists and is not a socket; not replacing it\n", path);
        break;
    case -ENAMETOOLONG:
        fprintf(stderr, PROG ": socket path %s is too long (at most 107 bytes)\n", path);
        break;
    default:
        fprintf(stderr, PROG ": cannot create socket %s: %s\n", path, strerror(-rc));
        break;
    }
}

static void print_attach_hint(const char *path, uint16_t nq, uint16_t qsize)
{
    char abs[PATH_MAX];
    const char *p = path;
    if (path[0] != '/' && getcwd(abs, sizeof(abs) - strlen(path) - 2)) {
        strcat(abs, "/");
        strcat(abs, path);
        p = abs;
    }
    /* QEMU's default ring size is 128; ask for less if we accept less. */
    char qs[32] = "";
    if (qsize < 128) {
        unsigned pow2 = 1;
        while (pow2 * 2 <= qsize)
            pow2 *= 2;
        snprintf(qs, sizeof(qs), ",queue-size=%u", pow2);
    }
    printf(PROG ": attach QEMU with (size= must equal -m; reconnect=1 lets this server "
                "restart):\n"
                "  -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem "
                "-chardev socket,id=vblk0,path=%s,reconnect=1 "
                "-device vhost-user-blk-pci,chardev=vblk0,num-queues=%u%s\n",
           p, nq, qs);
    fflush(stdout);
}

static void print_stats(struct vblk_vu_server *s, uint64_t connections)
{
    struct vblk_vu_dev *d = vblk_vu_server_dev(s);
    fprintf(stderr, PROG ": %" PRIu64 " connection(s)\n", connections);
    for (uint16_t i = 0; i < vblk_vu_dev_num_queues(d); i++) {
        struct vblk_vu_queue_stats st;
        if (vblk_vu_queue_stats(d, i, &st) < 0)
            continue;
        fprintf(stderr,
                PROG ": queue %u: %" PRIu64 " requests, %" PRIu64 " completed, %" PRIu64
                     " I/O errors, %" PRIu64 " unsupported, %" PRIu64 " kicks, %" PRIu64
                     " interrupts, %" PRIu64 " starts, %" PRIu64 " resubmitted\n",
                i, st.req.submitted, st.req.completed, st.req.ioerr, st.req.unsupp, st.kicks,
                st.calls, st.starts, st.resubmitted);
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, 's'},
        {"image", required_argument, NULL, 'i'},
        {"memory", required_argument, NULL, 'm'},
        {"null", required_argument, NULL, 'N'},
        {"queues", required_argument, NULL, 'Q'},
        {"queue-size", required_argument, NULL, 'S'},
        {"read-only", no_argument, NULL, 'r'},
        {"serial", required_argument, NULL, 'n'},
        {"poll", no_argument, NULL, 'p'},
        {"notify", required_argument, NULL, 'M'},
        {"poll-max-us", required_argument, NULL, 'P'},
        {"coalesce", required_argument, NULL, 'C'},
        {"backend", required_argument, NULL, 'b'},
        {"threads", required_argument, NULL, 't'},
        {"zoned", required_argument, NULL, 'Z'},
        {"lifetime", required_argument, NULL, 'L'},
        {"discard-segments", required_argument, NULL, 'D'},
        {"secure-erase", no_argument, NULL, 'E'},
        {"discard-max", required_argument, NULL, 'X'},
        {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *sock = NULL, *image = NULL, *memory = NULL, *serial = NULL;
    unsigned long queues = 1, qsize = 256, threads = 0;
    int engine = VBLK_FILE_ENGINE_AUTO, verbose = 1;
    bool ro = false;
    enum vblk_notify_mode notify = VBLK_NOTIFY_ADAPTIVE;
    unsigned long poll_max_us = 0, coal_n = 0, coal_us = 0;
    const char *null_arg = NULL;
    struct vblk_zoned_opts zo;
    char *zmeta = NULL;
    struct vblk_dev_params lt = {0}; /* --lifetime */
    uint32_t segs = 0, discard_max = 0;
    int c;
    while ((c = getopt_long(argc, argv, "vqh", longopts, NULL)) != -1) {
        switch (c) {
        case 'L':
            if (blk_opt_lifetime(PROG, optarg, &lt) < 0)
                return 2;
            break;
        case 'D':
            if (blk_opt_segments(PROG, optarg, &segs) < 0)
                return 2;
            break;
        case 'E':
            g_secure_erase = true;
            break;
        case 'X':
            if (blk_opt_discard_max(PROG, optarg, &discard_max) < 0)
                return 2;
            break;
        case 'Z':
            free(zmeta);
            if (zoned_opt_parse(PROG, optarg, &zo, &zmeta) < 0)
                return 2;
            g_zoned = &zo;
            g_zone_meta = zmeta;
            break;
        case 's':
            sock = optarg;
            break;
        case 'i':
            image = optarg;
            break;
        case 'm':
            memory = optarg;
            break;
        case 'N':
            null_arg = optarg;
            break;
        case 'r':
            ro = true;
            break;
        case 'n':
            serial = optarg;
            break;
        case 'p':
            notify = VBLK_NOTIFY_POLL;
            break;
        case 'M':
            if (strcmp(optarg, "adaptive") == 0) {
                notify = VBLK_NOTIFY_ADAPTIVE;
            } else if (strcmp(optarg, "event") == 0) {
                notify = VBLK_NOTIFY_EVENT;
            } else if (strcmp(optarg, "poll") == 0) {
                notify = VBLK_NOTIFY_POLL;
            } else {
                fprintf(stderr, PROG ": --notify %s: expected adaptive, event or poll\n", optarg);
                return 2;
            }
            break;
        case 'P':
            if (parse_uint(optarg, 1000000, &poll_max_us) < 0) {
                fprintf(stderr, PROG ": --poll-max-us %s: expected 1..1000000\n", optarg);
                return 2;
            }
            break;
        case 'C': {
            char n[32];
            const char *comma = strchr(optarg, ',');
            size_t len = comma ? (size_t)(comma - optarg) : 0;
            if (!comma || len == 0 || len >= sizeof(n)) {
                fprintf(stderr, PROG ": --coalesce %s: expected N,US such as 8,50\n", optarg);
                return 2;
            }
            memcpy(n, optarg, len);
            n[len] = '\0';
            if (parse_uint(n, 65536, &coal_n) < 0 || parse_uint(comma + 1, 1000000, &coal_us) < 0) {
                fprintf(stderr,
                        PROG ": --coalesce %s: expected N,US with N 1..65536 and US 1..1000000\n",
                        optarg);
                return 2;
            }
            break;
        }
        case 'v':
            verbose++;
            break;
        case 'q':
            verbose = 0;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'Q':
            if (parse_uint(optarg, VBLK_MAX_QUEUES, &queues) < 0) {
                fprintf(stderr, PROG ": --queues %s: expected 1..%u\n", optarg, VBLK_MAX_QUEUES);
                return 2;
            }
            break;
        case 'S':
            if (parse_uint(optarg, VBLK_QUEUE_SIZE_MAX, &qsize) < 0) {
                fprintf(stderr, PROG ": --queue-size %s: expected 1..32768\n", optarg);
                return 2;
            }
            break;
        case 't':
            if (parse_uint(optarg, VBLK_MAX_QUEUES, &threads) < 0) {
                fprintf(stderr, PROG ": --threads %s: expected 1..%u\n", optarg, VBLK_MAX_QUEUES);
                return 2;
            }
            break;
        case 'b':
            if (strcmp(optarg, "io_uring") == 0) {
                engine = VBLK_FILE_ENGINE_IO_URING;
            } else if (strcmp(optarg, "psync") == 0) {
                engine = VBLK_FILE_ENGINE_PSYNC;
            } else {
                fprintf(stderr, PROG ": --backend %s: expected io_uring or psync\n", optarg);
                return 2;
            }
            break;
        default:
            fprintf(stderr, PROG ": see --help for the options\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, PROG ": unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    if (!sock) {
        fprintf(stderr, PROG ": --socket PATH is required (see --help)\n");
        return 2;
    }
    if ((image != NULL) + (memory != NULL) + (null_arg != NULL) > 1) {
        fprintf(stderr, PROG ": --image, --memory and --null are mutually exclusive\n");
        return 2;
    }
    bool null_disk = null_arg != NULL;
    if (null_disk)
        memory = null_arg;
    if (serial && strlen(serial) > VBLK_ID_BYTES) {
        fprintf(stderr, PROG ": --serial '%s' is longer than %u bytes\n", serial, VBLK_ID_BYTES);
        return 2;
    }
    if (!image && engine != VBLK_FILE_ENGINE_AUTO) {
        fprintf(stderr, PROG ": --backend applies to --image only\n");
        return 2;
    }
    uint64_t mem_size = 1ull << 30;
    if (memory && parse_size(memory, &mem_size) < 0) {
        fprintf(stderr, PROG ": %s %s: expected a size such as 512M or 4G\n",
                null_disk ? "--null" : "--memory", memory);
        return 2;
    }
    if (!image && (mem_size == 0 || mem_size % 512)) {
        fprintf(stderr, PROG ": %s %s: the size must be a non-zero multiple of 512 bytes\n",
                null_disk ? "--null" : "--memory", memory);
        return 2;
    }

    /* Signals arrive through a signalfd the server watches: SIGINT and
     * SIGTERM are blocked in every thread. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &sigs, NULL) < 0) {
        perror(PROG ": sigprocmask");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        perror(PROG ": signalfd");
        return 1;
    }

    struct vblk_backend be;
    if (image) {
        if (open_image(image, ro, engine, &be) < 0)
            return 1;
    } else {
        int rc = null_disk ? vblk_backend_null_create(mem_size, &be)
                 : g_zoned ? vblk_backend_memory_create_zoned(mem_size, g_zoned, &be)
                           : vblk_backend_memory_create(mem_size, &be);
        if (rc == -EINVAL && g_zoned) {
            zoned_opt_explain(PROG, g_zoned, mem_size);
            return 2;
        }
        if (rc < 0) {
            fprintf(stderr, PROG ": cannot create a %" PRIu64 "-byte RAM disk: %s\n", mem_size,
                    strerror(-rc));
            return 1;
        }
    }

    struct vblk_dev_params p;
    vblk_dev_params_default(&p, be.size - be.size % 512);
    p.num_queues = (uint16_t)queues;
    p.queue_size = (uint16_t)qsize;
    p.read_only = ro;
    if (serial)
        memcpy(p.serial, serial, strlen(serial));
    else
        memcpy(p.serial, "vblk-vhost-user", 15);
    p.lifetime = lt.lifetime;
    p.lifetime_info = lt.lifetime_info;
    blk_opt_apply(&p, segs, discard_max, g_secure_erase);

    struct vblk_vu_server_opts so = {
        .socket_path = sock,
        .threads = (uint16_t)threads,
        .stop_fd = sfd,
        .dev = {.notify = notify,
                .poll_max_us = (uint32_t)poll_max_us,
                .coalesce_count = (uint32_t)coal_n,
                .coalesce_us = (uint32_t)coal_us,
                .log = log_line,
                .log_opaque = NULL,
                .log_level = verbose},
    };
    struct vblk_vu_server *s;
    int rc = vblk_vu_server_create(&p, &be, &so, &s);
    if (rc < 0) {
        if (rc == -EINVAL)
            fprintf(stderr, PROG ": invalid device parameters\n");
        else
            explain_server_error(sock, rc);
        vblk_backend_destroy(&be);
        return 1;
    }

    char sz[32];
    if (verbose) {
        const struct vblk_dev *dev = vblk_vu_dev_blk(vblk_vu_server_dev(s));
        printf(PROG ": serving %s (%s, %s, %s) on %s: %lu queue(s) of up to %lu entries%s\n",
               image       ? image
               : null_disk ? "a null disk"
                           : "a RAM disk",
               human(be.size, sz, sizeof(sz)), dev->p.read_only ? "read-only" : "read-write",
               be.ops->name, sock, queues, qsize,
               notify == VBLK_NOTIFY_POLL    ? ", busy polling"
               : notify == VBLK_NOTIFY_EVENT ? ", event mode"
                                             : ", adaptive polling");
        print_attach_hint(sock, (uint16_t)queues, (uint16_t)qsize);
    }

    rc = vblk_vu_server_run(s);
    if (rc < 0)
        fprintf(stderr, PROG ": server failed: %s\n", strerror(-rc));
    struct signalfd_siginfo si;
    if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si) && verbose)
        fprintf(stderr, PROG ": %s: stopped\n", strsignal((int)si.ssi_signo));
    if (verbose)
        print_stats(s, vblk_vu_server_connections(s));
    vblk_vu_server_destroy(s);
    vblk_backend_destroy(&be);
    if (image && !ro) {
        /* Whatever the backend wrote reaches stable storage before exit. */
        int fd = open(image, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
            fprintf(stderr, PROG ": flushing %s: %s\n", image, strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    close(sfd);
    return rc < 0 ? 1 : 0;
}
