/* SPDX-License-Identifier: MIT */
/*
 * The NBD disk options (--nbd, --nbd-timeout), part of the disk options of
 * cli.h. They are always accepted; without libnbd at build time --nbd says
 * so in one line.
 */
#ifndef VBLK_PROGRAMS_NBD_CLI_H
#define VBLK_PROGRAMS_NBD_CLI_H

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "virtioblk/backend.h"
#include "virtioblk/transport.h"
#if VBLK_HAVE_NBD
#include "virtioblk/nbd.h"
#endif

/* getopt_long codes, clear of cli.h's and rbd_cli.h's. */
enum {
    NBD_CLI_OPT_NBD = 0x1200,
    NBD_CLI_OPT_TIMEOUT,
};

/* Entries for the programs' struct option tables (in CLI_DISK_LONGOPTS). */
#define NBD_CLI_LONGOPTS                                                                           \
    {"nbd", required_argument, NULL, NBD_CLI_OPT_NBD},                                             \
    {                                                                                              \
        "nbd-timeout", required_argument, NULL, NBD_CLI_OPT_TIMEOUT                                \
    }

/* Lines for the programs' --help. */
#define NBD_CLI_HELP                                                                               \
    "  --nbd URI            serve an NBD export: nbd://HOST[:PORT]/EXPORT or\n"                    \
    "                       nbd+unix:///EXPORT?socket=PATH (one connection per queue\n"            \
    "                       if the server allows multi-conn; reconnects on its own)\n"             \
    "  --nbd-timeout SECS   --nbd: a request the server does not answer within SECS\n"             \
    "                       fails with an I/O error and the connection is reopened;\n"             \
    "                       connection attempts give up after SECS too (default: 30\n"             \
    "                       for requests, 5 for connecting)\n"

struct nbd_cli {
    const char *uri;  /* --nbd */
    double timeout;   /* --nbd-timeout, seconds (0: the backend's defaults) */
    int log_level;    /* most verbose VBLK_LOG_* level printed (set by the program) */
    const char *prog; /* for the log lines */
};

/*
 * Handles option @p c with argument @p arg. Returns 1 if it was one of
 * ours, 0 if not, -1 after printing why the value is wrong.
 */
static inline int nbd_cli_option(struct nbd_cli *n, int c, const char *arg, const char *prog)
{
    char *end;

    switch (c) {
    case NBD_CLI_OPT_NBD:
        n->uri = arg;
        n->prog = prog;
        return 1;
    case NBD_CLI_OPT_TIMEOUT:
        errno = 0;
        n->timeout = strtod(arg, &end);
        if (errno || end == arg || *end || !(n->timeout >= 0.001 && n->timeout <= 86400)) {
            fprintf(stderr, "%s: --nbd-timeout %s: expected 0.001..86400 seconds\n", prog, arg);
            return -1;
        }
        return 1;
    default:
        return 0;
    }
}

/* Checks the combination: -1 (after a message) if --nbd-timeout came without --nbd. */
static inline int nbd_cli_check(const struct nbd_cli *n, const char *prog)
{
    if (n->timeout > 0 && n->uri == NULL) {
        fprintf(stderr, "%s: --nbd-timeout needs --nbd\n", prog);
        return -1;
    }
    return 0;
}

#if VBLK_HAVE_NBD
static inline void nbd_cli_log(void *opaque, int level, const char *msg)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    const struct nbd_cli *n = opaque;
    if (level <= n->log_level)
        fprintf(stderr, "%s: %s: %s\n", n->prog, names[level & 3], msg);
}
#endif

/*
 * Connects to the export; on failure the backend has printed one line
 * (through nbd_cli_log, at any log level) and -1 is returned. @p n is the
 * log's argument: it must outlive the backend.
 */
static inline int nbd_cli_open(const struct nbd_cli *n, bool read_only, struct vblk_backend *be,
                               const char *prog)
{
#if VBLK_HAVE_NBD
    (void)prog;
    struct vblk_nbd_opts o = {.read_only = read_only, .log = nbd_cli_log, .log_opaque = (void *)n};
    if (n->timeout > 0) {
        o.request_timeout_ms = (uint32_t)(n->timeout * 1000 + 0.5);
        o.connect_timeout_ms = o.request_timeout_ms;
    }
    return vblk_backend_nbd_open(n->uri, &o, be) < 0 ? -1 : 0;
#else
    (void)read_only;
    (void)be;
    fprintf(stderr, "%s: --nbd %s: this build has no NBD support (build with libnbd-dev)\n", prog,
            n->uri);
    return -1;
#endif
}

/* Prints the backend's NBD counters, if it is one. */
static inline void nbd_cli_print_stats(const struct vblk_backend *be, const char *prog)
{
#if VBLK_HAVE_NBD
    struct vblk_nbd_stats st;
    if (vblk_backend_nbd_stats(be, &st) < 0)
        return;
    fprintf(stderr,
            "%s: nbd: %" PRIu64 " connects, %" PRIu64 " failed attempts, %" PRIu64
            " disconnects (%" PRIu64 " timeouts), %" PRIu64 " requests failed while down, %" PRIu64
            " bounced\n",
            prog, st.connects, st.failures, st.disconnects, st.timeouts, st.failed_fast,
            st.bounced);
#else
    (void)be;
    (void)prog;
#endif
}

#endif
