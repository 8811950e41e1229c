/* SPDX-License-Identifier: MIT */
/*
 * vblkd: one process serving many virtio-blk disks (vhost-user sockets and
 * VDUSE devices), managed at run time over JSON-RPC 2.0 (vblk-ctl).
 *
 *   vblkd --rpc /run/vblkd.sock --config /etc/vblkd.json &
 *   vblk-ctl add vhost-user disk0 --socket /run/disk0.sock --image /var/lib/disk0.img
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cli.h"
#include "vblkd.h"

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: vblkd --rpc PATH [--config FILE] [options]\n"
        "\n"
        "Serves many virtio-blk exports from one process: vhost-user sockets (QEMU's\n"
        "vhost-user-blk-pci and other VMMs) and VDUSE devices, each with its own backend\n"
        "(null, memory, file). Exports are added, resized and deleted at run time over\n"
        "JSON-RPC 2.0 on the Unix socket PATH (see vblk-ctl and docs/vblkd.md).\n"
        "SIGINT, SIGTERM or SIGHUP stops it: requests in flight complete, sockets are removed.\n"
        "\n"
        "  --rpc PATH           JSON-RPC socket (a stale socket file is replaced)\n"
        "  --rpc-mode MODE      its permissions, octal (default 0600)\n"
        "  --config FILE        create the exports of FILE at start (the format of\n"
        "                       'vblk-ctl dump-config'); any error stops the start\n"
        "  --threads N          worker threads running the queues, 1..%u (default: one\n"
        "                       per CPU; never more than the exports have queues)\n"
        "  --notify MODE        how workers wait: adaptive (default), event or poll\n"
        "  --poll-max-us N      adaptive mode: longest poll after the last request\n"
        "  --path-prefix DIR    refuse socket and image paths outside DIR\n"
        "  --no-request-metrics do not time requests or count their bytes (saves two\n"
        "                       clock reads per request; the counters stay)\n"
        "  --metrics ADDR:PORT  serve the counters in the Prometheus text format at\n"
        "                       http://ADDR:PORT/metrics (loopback addresses only;\n"
        "                       port 0 picks one and logs it)\n"
        "  --verbose, -v        log connections and changes; twice: every message\n"
        "  --quiet, -q          print only errors\n"
        "  --help, -h           this text\n",
        VBLKD_MAX_THREADS);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"rpc", required_argument, NULL, 'r'},
        {"rpc-mode", required_argument, NULL, 'M'},
        {"config", required_argument, NULL, 'c'},
        {"threads", required_argument, NULL, 't'},
        {"notify", required_argument, NULL, 'n'},
        {"poll-max-us", required_argument, NULL, 'P'},
        {"path-prefix", required_argument, NULL, 'p'},
        {"metrics", required_argument, NULL, 'm'},
        {"no-request-metrics", no_argument, NULL, 'R'},
        {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct vblkd_opts o = {.log_level = VBLK_LOG_WARN};
    const char *rpc = NULL, *config = NULL, *metrics = NULL;
    unsigned long mode = 0600, v;
    int c;
    while ((c = getopt_long(argc, argv, "vqh", lo, NULL)) != -1) {
        switch (c) {
        case 'r':
            rpc = optarg;
            break;
        case 'M': {
            char *end;
            mode = strtoul(optarg, &end, 8);
            if (*end || mode > 0777) {
                fprintf(stderr, "vblkd: --rpc-mode: '%s' is not an octal mode like 0600\n", optarg);
                return 2;
            }
            break;
        }
        case 'c':
            config = optarg;
            break;
        case 'm':
            metrics = optarg;
            break;
        case 'R':
            o.no_request_metrics = true;
            break;
        case 't':
            if (cli_uint(optarg, 1, VBLKD_MAX_THREADS, &v) < 0)
                return cli_bad("vblkd", "--threads", optarg, "a number of threads, 1..256");
            o.threads = (unsigned)v;
            break;
        case 'n':
            if (strcmp(optarg, "adaptive") == 0)
                o.notify = VBLK_NOTIFY_ADAPTIVE;
            else if (strcmp(optarg, "event") == 0)
                o.notify = VBLK_NOTIFY_EVENT;
            else if (strcmp(optarg, "poll") == 0)
                o.notify = VBLK_NOTIFY_POLL;
            else {
                fprintf(stderr, "vblkd: --notify must be adaptive, event or poll\n");
                return 2;
            }
            break;
        case 'P':
            if (cli_uint(optarg, 1, 1000000, &v) < 0)
                return cli_bad("vblkd", "--poll-max-us", optarg, "microseconds, 1..1000000");
            o.poll_max_us = (uint32_t)v;
            break;
        case 'p':
            if (optarg[0] != '/') {
                fprintf(stderr, "vblkd: --path-prefix must be an absolute path\n");
                return 2;
            }
            o.path_prefix = optarg;
            break;
        case 'v':
            o.log_level = o.log_level < VBLK_LOG_INFO ? VBLK_LOG_INFO : VBLK_LOG_DEBUG;
            break;
        case 'q':
            o.log_level = VBLK_LOG_ERR;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vblkd: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!rpc) {
        fprintf(stderr, "vblkd: --rpc PATH is required (the control socket vblk-ctl talks to)\n");
        return 2;
    }

    /* Signals arrive through a signalfd in the control loop. */
    int sfd = cli_signalfd("vblkd");
    if (sfd < 0)
        return 1;

    struct vblkd *d;
    int rc = vblkd_create(&o, &d);
    if (rc < 0) {
        fprintf(stderr, "vblkd: cannot start: %s\n", strerror(-rc));
        return 1;
    }
    (void)vblkd_add_stop_fd(d, sfd);
    if (config) {
        struct vblkd_error e;
        if (vblkd_load_config(d, config, &e) < 0) {
            fprintf(stderr, "vblkd: %s\n", e.msg);
            vblkd_destroy(d);
            return 1;
        }
    }
    if (metrics) {
        struct vblkd_error e;
        if (vblkd_serve_metrics(d, metrics, &e) < 0) {
            fprintf(stderr, "vblkd: %s\n", e.msg);
            vblkd_destroy(d);
            return 1;
        }
        fprintf(stderr, "vblkd: metrics at http://%s/metrics (port %u)\n", metrics,
                vblkd_metrics_port_of(d));
    }
    if (vblkd_listen_rpc(d, rpc, (mode_t)mode) < 0) {
        vblkd_destroy(d);
        return 1;
    }
    vblkd_log(d, VBLK_LOG_INFO, "listening on %s with %u export(s)", rpc, vblkd_export_count(d));
    fprintf(stderr, "vblkd: ready: control socket %s, %u export(s)\n", rpc, vblkd_export_count(d));
    while (!vblkd_stopping(d)) {
        rc = vblkd_run_once(d, -1);
        if (rc < 0) {
            fprintf(stderr, "vblkd: control loop failed: %s\n", strerror(-rc));
            break;
        }
    }
    vblkd_destroy(d);
    close(sfd);
    return rc < 0 ? 1 : 0;
}
