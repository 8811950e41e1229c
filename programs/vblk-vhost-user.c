/* SPDX-License-Identifier: MIT */
/*
 * vblk-vhost-user: serve a disk image (or a RAM disk) to a vhost-user
 * front-end such as QEMU's vhost-user-blk-pci.
 *
 *   vblk-vhost-user --socket /run/vblk0.sock --image disk.img &
 *   qemu-system-x86_64 ... -object memory-backend-memfd,id=mem,size=2G,share=on \
 *       -numa node,memdev=mem -chardev socket,id=vblk0,path=/run/vblk0.sock,reconnect-ms=1000 \
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

#include "cli.h"
#include "virtioblk/virtioblk.h"

#define PROG "vblk-vhost-user"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " PROG " --socket PATH [--image FILE | --rbd SPEC | --nbd URI | --memory SIZE |\n"
            "       --null SIZE] [options]\n"
            "\n"
            "Serves a virtio-blk disk to a vhost-user front-end (QEMU's vhost-user-blk-pci,\n"
            "libvirt, other VMMs) over the Unix socket PATH. One front-end is served at a\n"
            "time; when it disconnects the server waits for the next one, so a front-end\n"
            "with reconnect-ms=1000 (reconnect=1 before QEMU 9.2) survives a restart of this\n"
            "program. SIGINT or SIGTERM stops\n"
            "it cleanly: requests in flight complete, the image is flushed and the socket\n"
            "removed. Per-queue counters are printed at exit.\n"
            "\n"
            "  --socket PATH        Unix socket to listen on (a stale socket file is replaced)\n"
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
            "  --verbose, -v        log connections and queue events; twice: every message\n"
            "  --quiet, -q          print only errors\n"
            "  --help, -h           this text\n"
            "\n"
            "The disk (default: a 1 GiB RAM disk; give QEMU the same num-queues, and a\n"
            "queue-size no larger than --queue-size):\n");
    cli_disk_usage(f);
    fprintf(f, "\n"
               "Guest RAM must be shared with this process: give QEMU a memory backend with\n"
               "share=on (the exact options are printed at start).\n");
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
    printf(PROG ": attach QEMU with (size= must equal -m; reconnect-ms=1000 lets this server "
                "restart; QEMU before 9.2 spells it reconnect=1):\n"
                "  -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem "
                "-chardev socket,id=vblk0,path=%s,reconnect-ms=1000 "
                "-device vhost-user-blk-pci,chardev=vblk0,num-queues=%u%s\n",
           p, nq, qs);
    fflush(stdout);
}

static void print_stats(struct vblk_vu_server *s)
{
    struct vblk_vu_dev *d = vblk_vu_server_dev(s);
    struct vblk_transport_stats ds;
    vblk_vu_dev_stats(d, &ds);
    fprintf(stderr, PROG ": %" PRIu64 " connection(s)\n", ds.connections);
    for (uint16_t i = 0; i < vblk_vu_dev_num_queues(d); i++) {
        struct vblk_transport_queue_stats st;
        if (vblk_vu_queue_stats(d, i, &st) < 0)
            continue;
        fprintf(stderr,
                PROG ": queue %u: %" PRIu64 " requests, %" PRIu64 " completed, %" PRIu64
                     " I/O errors, %" PRIu64 " unsupported, %" PRIu64 " kicks, %" PRIu64
                     " interrupts, %" PRIu64 " starts, %" PRIu64 " resubmitted\n",
                i, st.req.submitted, st.req.completed, st.req.ioerr, st.req.unsupp, st.kicks,
                st.notifies, st.starts, st.resubmitted);
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, 's'},
        {"poll", no_argument, NULL, 'p'},
        {"notify", required_argument, NULL, 'M'},
        {"poll-max-us", required_argument, NULL, 'P'},
        {"coalesce", required_argument, NULL, 'C'},
        {"threads", required_argument, NULL, 't'},
        {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        CLI_DISK_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    struct cli_disk disk;
    cli_disk_init(&disk);
    const char *sock = NULL;
    unsigned long threads = 0;
    int verbose = 1;
    enum vblk_notify_mode notify = VBLK_NOTIFY_ADAPTIVE;
    unsigned long poll_max_us = 0, coal_n = 0, coal_us = 0;
    char what[64];
    int c, rc;
    while ((c = getopt_long(argc, argv, "vqh", longopts, NULL)) != -1) {
        if ((rc = cli_disk_option(&disk, PROG, c, optarg)) != 0) {
            if (rc != 1)
                return rc;
            continue;
        }
        switch (c) {
        case 's':
            sock = optarg;
            break;
        case 'p':
            notify = VBLK_NOTIFY_POLL;
            break;
        case 'M':
            if (strcmp(optarg, "adaptive") == 0)
                notify = VBLK_NOTIFY_ADAPTIVE;
            else if (strcmp(optarg, "event") == 0)
                notify = VBLK_NOTIFY_EVENT;
            else if (strcmp(optarg, "poll") == 0)
                notify = VBLK_NOTIFY_POLL;
            else
                return cli_bad(PROG, "--notify", optarg, "adaptive, event or poll");
            break;
        case 'P':
            if (cli_uint(optarg, 1, 1000000, &poll_max_us) < 0)
                return cli_bad(PROG, "--poll-max-us", optarg, "1..1000000");
            break;
        case 'C': {
            char n[32];
            const char *comma = strchr(optarg, ',');
            size_t len = comma ? (size_t)(comma - optarg) : 0;
            if (!comma || len == 0 || len >= sizeof(n))
                return cli_bad(PROG, "--coalesce", optarg, "N,US such as 8,50");
            memcpy(n, optarg, len);
            n[len] = '\0';
            if (cli_uint(n, 1, 65536, &coal_n) < 0 || cli_uint(comma + 1, 1, 1000000, &coal_us) < 0)
                return cli_bad(PROG, "--coalesce", optarg,
                               "N,US with N 1..65536 and US 1..1000000");
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
        case 't':
            snprintf(what, sizeof(what), "1..%u", VBLK_MAX_QUEUES);
            if (cli_uint(optarg, 1, VBLK_MAX_QUEUES, &threads) < 0)
                return cli_bad(PROG, "--threads", optarg, what);
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
    if ((rc = cli_disk_check(&disk, PROG, 1ull << 30)) != 0)
        return rc;

    /* Signals arrive through a signalfd the server watches: SIGINT and
     * SIGTERM are blocked in every thread. */
    int sfd = cli_signalfd(PROG);
    if (sfd < 0)
        return 1;
    struct vblk_backend be;
    struct vblk_dev_params p;
    disk.nbd.log_level = verbose;
    if (cli_disk_open(&disk, PROG, PROG, &be, &p))
        return 1;

    struct vblk_vu_server_opts so = {
        .socket_path = sock,
        .threads = (uint16_t)threads,
        .stop_fd = sfd,
        .dev = {.notify = notify,
                .poll_max_us = (uint32_t)poll_max_us,
                .coalesce_count = (uint32_t)coal_n,
                .coalesce_us = (uint32_t)coal_us,
                .log = cli_log,
                .log_opaque = (void *)PROG,
                .log_level = verbose},
    };
    struct vblk_vu_server *s;
    rc = vblk_vu_server_create(&p, &be, &so, &s);
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
               cli_disk_name(&disk), cli_human(be.size, sz, sizeof(sz)),
               dev->p.read_only ? "read-only" : "read-write", be.ops->name, sock, disk.queues,
               disk.queue_size,
               notify == VBLK_NOTIFY_POLL    ? ", busy polling"
               : notify == VBLK_NOTIFY_EVENT ? ", event mode"
                                             : ", adaptive polling");
        print_attach_hint(sock, (uint16_t)disk.queues, (uint16_t)disk.queue_size);
    }

    rc = vblk_vu_server_run(s);
    if (rc < 0)
        fprintf(stderr, PROG ": server failed: %s\n", strerror(-rc));
    int sig = cli_signal_take(sfd);
    if (sig && verbose)
        fprintf(stderr, PROG ": %s: stopped\n", strsignal(sig));
    if (verbose) {
        print_stats(s);
        rbd_cli_print_stats(&be, PROG);
        nbd_cli_print_stats(&be, PROG);
    }
    vblk_vu_server_destroy(s);
    vblk_backend_destroy(&be);
    if (disk.image && !disk.read_only) {
        /* Whatever the backend wrote reaches stable storage before exit. */
        int fd = open(disk.image, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
            fprintf(stderr, PROG ": flushing %s: %s\n", disk.image, strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    close(sfd);
    return rc < 0 ? 1 : 0;
}
