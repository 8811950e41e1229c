/* SPDX-License-Identifier: MIT */
/*
 * What the programs (vblk-vhost-user, vblk-vduse, vblk-bench) share on the
 * command line: numbers and sizes that mean the same everywhere, the disk
 * options that pick a backend and fill the device parameters, error
 * messages in one form, the log line and signal handling. Not part of the
 * library.
 *
 * Sizes: a decimal (or 0x hexadecimal) number of bytes, optionally followed
 * by K, M, G or T (powers of 1024; k/m/g/t and the forms KiB, KB, Ki are
 * the same): 512, 64K, 1M, 1G, 1T.
 */
#ifndef VBLK_PROGRAMS_CLI_H
#define VBLK_PROGRAMS_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "virtioblk/virtioblk.h"

#include "nbd_cli.h"
#include "rbd_cli.h"

/* Parses a size (see above). Returns 0, or -1 if @s is not one. */
int cli_size(const char *s, uint64_t *out);

/* Parses a decimal integer in [@min, @max]. Returns 0 or -1. */
int cli_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out);

/* Parses a positive number of seconds up to @max. Returns 0 or -1. */
int cli_seconds(const char *s, double max, double *out);

/* Prints "PROG: OPT VALUE: expected WHAT" (or "PROG: OPT: WHAT" without a
 * value) to stderr and returns 2, the exit status of a usage error. */
int cli_bad(const char *prog, const char *opt, const char *value, const char *what);

/* Log callback (vblk_log_fn) printing "PROG: level: message" to stderr;
 * @opaque is the program name. */
void cli_log(void *opaque, int level, const char *msg);

/* Blocks SIGINT, SIGTERM and SIGHUP in this thread and every thread it
 * starts, ignores SIGPIPE, and returns a non-blocking signalfd that becomes
 * readable when one of them arrives; -1 (with a message) on failure. */
int cli_signalfd(const char *prog);

/* Reads one signal from @sfd: its number, or 0 if none is pending. */
int cli_signal_take(int sfd);

/* ---- the disk options ---- */

/* getopt_long codes of the disk options, outside the range of characters. */
enum {
    CLI_OPT_IMAGE = 0x1000,
    CLI_OPT_MEMORY,
    CLI_OPT_NULL,
    CLI_OPT_QUEUES,
    CLI_OPT_QUEUE_SIZE,
    CLI_OPT_READ_ONLY,
    CLI_OPT_SERIAL,
    CLI_OPT_ENGINE,
    CLI_OPT_NO_PACKED,
    CLI_OPT_PACKED,
    CLI_OPT_ZONED,
    CLI_OPT_LIFETIME,
    CLI_OPT_DISCARD_SEGMENTS,
    CLI_OPT_DISCARD_MAX,
    CLI_OPT_SECURE_ERASE,
};

/* The entries to put in a program's getopt_long table. */
#define CLI_DISK_LONGOPTS                                                                          \
    {"image", required_argument, NULL, CLI_OPT_IMAGE},                                             \
        {"memory", required_argument, NULL, CLI_OPT_MEMORY},                                       \
        {"null", required_argument, NULL, CLI_OPT_NULL},                                           \
        {"queues", required_argument, NULL, CLI_OPT_QUEUES},                                       \
        {"queue-size", required_argument, NULL, CLI_OPT_QUEUE_SIZE},                               \
        {"read-only", no_argument, NULL, CLI_OPT_READ_ONLY},                                       \
        {"serial", required_argument, NULL, CLI_OPT_SERIAL},                                       \
        {"backend", required_argument, NULL, CLI_OPT_ENGINE},                                      \
        {"zoned", required_argument, NULL, CLI_OPT_ZONED},                                         \
        {"lifetime", required_argument, NULL, CLI_OPT_LIFETIME},                                   \
        {"discard-segments", required_argument, NULL, CLI_OPT_DISCARD_SEGMENTS},                   \
        {"discard-max", required_argument, NULL, CLI_OPT_DISCARD_MAX},                             \
        {"secure-erase", no_argument, NULL, CLI_OPT_SECURE_ERASE},                                 \
        {"no-packed", no_argument, NULL, CLI_OPT_NO_PACKED},                                       \
        {"packed", no_argument, NULL, CLI_OPT_PACKED}, RBD_CLI_LONGOPTS, NBD_CLI_LONGOPTS

/* The disk a program serves, as its options describe it. */
struct cli_disk {
    const char *image;        /* --image FILE */
    uint64_t size;            /* --memory / --null SIZE */
    bool null;                /* --null rather than --memory */
    bool have_size;           /* --memory or --null given */
    unsigned long queues;     /* --queues N (default 1) */
    unsigned long queue_size; /* --queue-size N (default 256) */
    bool pow2_queue_size;     /* the transport needs a power of two (VDUSE) */
    bool read_only;           /* --read-only */
    const char *serial;       /* --serial STRING */
    int engine;               /* --backend ENGINE (VBLK_FILE_ENGINE_*) */
    bool no_packed;           /* --no-packed, or the program's default without --packed */
    struct rbd_cli rbd;       /* --rbd SPEC and its options */
    struct nbd_cli nbd;       /* --nbd URI and its options; the program sets nbd.log_level */
    bool zoned;               /* --zoned SPEC: emulated zones */
    struct vblk_zoned_opts zoned_opts;
    char zone_meta[4096]; /* --zoned ...,meta=PATH ("": IMAGE.zones) */
    bool lifetime;        /* --lifetime P,A,B */
    struct vblk_lifetime lifetime_info;
    uint32_t discard_segments;    /* --discard-segments N (0: default) */
    uint32_t discard_max_sectors; /* --discard-max SIZE (0: default) */
    bool secure_erase;            /* --secure-erase */
};

/* Defaults: 1 queue of 256 entries, read-write, no disk chosen yet. */
void cli_disk_init(struct cli_disk *d);

/* Handles getopt_long code @code with argument @arg if it is a disk option.
 * Returns 1 if it was (and was valid), 0 if it is not a disk option, or 2
 * after printing a message if the value is invalid. */
int cli_disk_option(struct cli_disk *d, const char *prog, int code, const char *arg);

/* Prints the help text of the disk options. */
void cli_disk_usage(FILE *f);

/* Checks the combination (one of --image, --rbd, --memory, --null at most; none
 * means a RAM disk of @default_size, or is an error when it is 0). Returns
 * 0, or 2 after printing a message. */
int cli_disk_check(struct cli_disk *d, const char *prog, uint64_t default_size);

/* Opens the backend and fills the device parameters, with one clear line
 * for each way the disk can be unusable. @default_serial is reported by
 * GET_ID without --serial (NULL: none). Returns 0, or 1 after printing a
 * message. */
int cli_disk_open(const struct cli_disk *d, const char *prog, const char *default_serial,
                  struct vblk_backend *be, struct vblk_dev_params *p);

/* "a RAM disk", "a null disk" or the image path, for messages. */
const char *cli_disk_name(const struct cli_disk *d);

/* Formats @bytes as "1 GiB" (exact binary units) or "N bytes". */
const char *cli_human(uint64_t bytes, char *buf, size_t len);
/* Formats @bytes the way size arguments are written: "64M" (exact binary
 * units) or a plain number of bytes. */
const char *cli_size_arg(uint64_t bytes, char *buf, size_t len);

#endif
