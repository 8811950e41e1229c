/* SPDX-License-Identifier: MIT */
/*
 * The Ceph RBD disk options (--rbd, --ceph-conf, --ceph-id, --rbd-timeout,
 * --rbd-cache), part of the disk options of cli.h. They are always
 * accepted; without librbd at build time --rbd says so in one line.
 */
#ifndef VBLK_PROGRAMS_RBD_CLI_H
#define VBLK_PROGRAMS_RBD_CLI_H

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "virtioblk/backend.h"
#if VBLK_HAVE_RBD
#include "virtioblk/rbd.h"
#endif

/* getopt_long codes, clear of cli.h's. */
enum {
    RBD_CLI_OPT_RBD = 0x1100,
    RBD_CLI_OPT_CONF,
    RBD_CLI_OPT_ID,
    RBD_CLI_OPT_TIMEOUT,
    RBD_CLI_OPT_CACHE,
};

/* Entries for the programs' struct option tables (in CLI_DISK_LONGOPTS). */
#define RBD_CLI_LONGOPTS                                                                           \
    {"rbd", required_argument, NULL, RBD_CLI_OPT_RBD},                                             \
        {"ceph-conf", required_argument, NULL, RBD_CLI_OPT_CONF},                                  \
        {"ceph-id", required_argument, NULL, RBD_CLI_OPT_ID},                                      \
        {"rbd-timeout", required_argument, NULL, RBD_CLI_OPT_TIMEOUT},                             \
    {                                                                                              \
        "rbd-cache", required_argument, NULL, RBD_CLI_OPT_CACHE                                    \
    }

/* Lines for the programs' --help. */
#define RBD_CLI_HELP                                                                               \
    "  --rbd POOL/IMAGE[@SNAP]  serve a Ceph RBD image (also POOL/NAMESPACE/IMAGE); a\n"           \
    "                       snapshot is served read-only\n"                                        \
    "  --ceph-conf PATH     ceph.conf for --rbd (default: $CEPH_CONF, then\n"                      \
    "                       /etc/ceph/ceph.conf); $CEPH_ARGS applies as well\n"                    \
    "  --ceph-id ID         Ceph client id for --rbd, without \"client.\" (default: admin);\n"     \
    "                       its key comes from the keyring ceph.conf names\n"                      \
    "  --rbd-timeout SECS   --rbd: a request the cluster has not answered after SECS\n"            \
    "                       seconds fails with an I/O error (default 30; start-up waits\n"         \
    "                       at most 10 s for the monitors)\n"                                      \
    "  --rbd-cache MODE     --rbd: librbd cache: default (as ceph.conf says, with FLUSH),\n"       \
    "                       writeback, writethrough or none (the last two: no FLUSH needed)\n"

struct rbd_cli {
    const char *spec; /* --rbd */
    const char *conf;
    const char *id;
    unsigned long timeout;
    int cache;
    bool other; /* an --rbd-only option was given */
};

/*
 * Handles option @p c with argument @p arg. Returns 1 if it was one of
 * ours, 0 if not, -1 after printing why the value is wrong.
 */
static inline int rbd_cli_option(struct rbd_cli *r, int c, const char *arg, const char *prog)
{
    char *end;

    switch (c) {
    case RBD_CLI_OPT_RBD:
        r->spec = arg;
        return 1;
    case RBD_CLI_OPT_CONF:
        r->conf = arg;
        r->other = true;
        return 1;
    case RBD_CLI_OPT_ID:
        if (*arg == '\0' || strncmp(arg, "client.", 7) == 0) {
            fprintf(stderr, "%s: --ceph-id %s: expected an id without \"client.\", such as admin\n",
                    prog, arg);
            return -1;
        }
        r->id = arg;
        r->other = true;
        return 1;
    case RBD_CLI_OPT_TIMEOUT:
        errno = 0;
        r->timeout = strtoul(arg, &end, 10);
        if (*arg == '-' || errno || end == arg || *end || r->timeout == 0 || r->timeout > 86400) {
            fprintf(stderr, "%s: --rbd-timeout %s: expected 1..86400 seconds\n", prog, arg);
            return -1;
        }
        r->other = true;
        return 1;
    case RBD_CLI_OPT_CACHE: {
        static const char *const modes[] = {"default", "writeback", "writethrough", "none"};
        for (int i = 0; i < 4; i++) {
            if (strcmp(arg, modes[i]) == 0) {
                r->cache = i; /* the VBLK_RBD_CACHE_* values, in order */
                r->other = true;
                return 1;
            }
        }
        fprintf(stderr, "%s: --rbd-cache %s: expected default, writeback, writethrough or none\n",
                prog, arg);
        return -1;
    }
    default:
        return 0;
    }
}

/* Checks the combination: -1 (after a message) if an --rbd option came without --rbd. */
static inline int rbd_cli_check(const struct rbd_cli *r, const char *prog)
{
    if (r->other && r->spec == NULL) {
        fprintf(stderr, "%s: --ceph-conf, --ceph-id, --rbd-timeout and --rbd-cache need --rbd\n",
                prog);
        return -1;
    }
    return 0;
}

/* Opens the image; on failure prints one line and returns -1. */
static inline int rbd_cli_open(const struct rbd_cli *r, bool read_only, struct vblk_backend *be,
                               const char *prog)
{
#if VBLK_HAVE_RBD
    struct vblk_rbd_opts o = {
        .read_only = read_only,
        .conf_path = r->conf,
        .client_id = r->id,
        .io_timeout_s = (unsigned)r->timeout,
        .cache = r->cache,
    };
    size_t len = strlen(r->spec) + 8;
    char *buf = malloc(len), err[512];
    int rc;

    if (buf == NULL || vblk_rbd_parse_spec(r->spec, buf, len, &o) < 0) {
        fprintf(stderr,
                "%s: --rbd %s: expected POOL/IMAGE, POOL/NAMESPACE/IMAGE, either with @SNAP\n",
                prog, r->spec);
        free(buf);
        return -1;
    }
    rc = vblk_backend_rbd_open(&o, be, err, sizeof(err));
    free(buf);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return -1;
    }
    return 0;
#else
    (void)read_only;
    (void)be;
    fprintf(stderr, "%s: --rbd %s: this build has no Ceph RBD support (build with librbd-dev)\n",
            prog, r->spec);
    return -1;
#endif
}

/* Prints the backend's RBD counters, if it is one. */
static inline void rbd_cli_print_stats(const struct vblk_backend *be, const char *prog)
{
#if VBLK_HAVE_RBD
    struct vblk_rbd_stats st;
    if (vblk_backend_rbd_stats(be, &st) < 0)
        return;
    fprintf(stderr,
            "%s: rbd: %" PRIu64 " reads, %" PRIu64 " writes, %" PRIu64 " flushes (+%" PRIu64
            " after write-through writes), %" PRIu64 " discards, %" PRIu64 " write-zeroes, %" PRIu64
            " errors (%" PRIu64 " timed out), %" PRIu64 " bounced (%" PRIu64 " bytes)\n",
            prog, st.reads, st.writes, st.flushes, st.fua_flushes, st.discards, st.write_zeroes,
            st.errors, st.timeouts, st.bounced, st.bounce_bytes);
#else
    (void)be;
    (void)prog;
#endif
}

#endif
