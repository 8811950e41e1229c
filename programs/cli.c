/* SPDX-License-Identifier: MIT */
/* What the programs share on the command line: see cli.h. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

int cli_size(const char *s, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s)
        return -1;
    static const char units[] = "kmgt"; /* powers of 1024 */
    const char *u = *end ? strchr(units, tolower((unsigned char)*end)) : NULL;
    unsigned shift = u ? 10u * (unsigned)(u - units + 1) : 0;
    if (u) {
        end++;
        if (*end == 'i')
            end++;
        if (*end == 'B')
            end++;
    }
    if (*end || (shift && v > (UINT64_MAX >> shift)))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

int cli_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int cli_seconds(const char *s, double max, double *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    double d = strtod(s, &end);
    if (*end || !(d > 0) || d > max)
        return -1;
    *out = d;
    return 0;
}

int cli_bad(const char *prog, const char *opt, const char *value, const char *what)
{
    if (value)
        fprintf(stderr, "%s: %s %s: expected %s\n", prog, opt, value, what);
    else
        fprintf(stderr, "%s: %s: %s\n", prog, opt, what);
    return 2;
}

void cli_log(void *opaque, int level, const char *msg)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    fprintf(stderr, "%s: %s: %s\n", (const char *)opaque, names[level & 3], msg);
}

int cli_signalfd(const char *prog)
{
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &sigs, NULL) < 0) {
        fprintf(stderr, "%s: sigprocmask: %s\n", prog, strerror(errno));
        return -1;
    }
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0)
        fprintf(stderr, "%s: signalfd: %s\n", prog, strerror(errno));
    return sfd;
}

int cli_signal_take(int sfd)
{
    struct signalfd_siginfo si;
    if (read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return 0;
    return (int)si.ssi_signo;
}

/* --zoned zone-size=SIZE[,conv=N][,max-open=N][,max-active=N]
 *         [,max-append=SIZE][,granularity=SIZE][,model=hm|ha][,meta=PATH] */
static int zoned_option(struct cli_disk *d, const char *prog, const char *spec)
{
    struct vblk_zoned_opts *o = &d->zoned_opts;
    memset(o, 0, sizeof(*o));
    d->zone_meta[0] = 0;
    for (const char *p = spec; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[256], *v;
        uint64_t x = 0;
        if (len >= sizeof(item))
            return cli_bad(prog, "--zoned", spec, "KEY=VALUE items shorter than 256 bytes");
        memcpy(item, p, len);
        item[len] = 0;
        p += len + (comma != NULL);
        v = strchr(item, '=');
        if (!v)
            return cli_bad(prog, "--zoned", item, "KEY=VALUE (see --help)");
        *v++ = 0;
        bool size_ok = cli_size(v, &x) == 0;
        if (!strcmp(item, "model") && (!strcmp(v, "hm") || !strcmp(v, "ha"))) {
            o->model = v[1] == 'm' ? VBLK_Z_HM : VBLK_Z_HA;
        } else if (!strcmp(item, "meta") && *v && strlen(v) < sizeof(d->zone_meta)) {
            strcpy(d->zone_meta, v);
        } else if (!strcmp(item, "zone-size") && size_ok && x && x % 512 == 0 &&
                   x / 512 <= UINT32_MAX) {
            o->zone_sectors = (uint32_t)(x / 512);
        } else if (!strcmp(item, "max-append") && size_ok && x && x % 512 == 0 &&
                   x / 512 <= UINT32_MAX) {
            o->max_append_sectors = (uint32_t)(x / 512);
        } else if (!strcmp(item, "granularity") && size_ok && x && x <= UINT32_MAX) {
            o->write_granularity = (uint32_t)x;
        } else if (!strcmp(item, "conv") && size_ok && x <= UINT32_MAX) {
            o->nr_conv = (uint32_t)x;
        } else if (!strcmp(item, "max-open") && size_ok && x <= UINT32_MAX) {
            o->max_open = (uint32_t)x;
        } else if (!strcmp(item, "max-active") && size_ok && x <= UINT32_MAX) {
            o->max_active = (uint32_t)x;
        } else {
            v[-1] = '=';
            return cli_bad(prog, "--zoned", item, "a valid KEY=VALUE (see --help)");
        }
    }
    if (!o->zone_sectors)
        return cli_bad(prog, "--zoned", spec, "zone-size=SIZE");
    d->zoned = true;
    return 1;
}

/* Says why the zone options do not fit a disk of @bytes. */
static void zoned_explain(const struct cli_disk *d, const char *prog, uint64_t bytes)
{
    const struct vblk_zoned_opts *o = &d->zoned_opts;
    fprintf(stderr,
            "%s: --zoned does not fit a %" PRIu64 "-byte disk: the zone size must be a power "
            "of two, conv at most the number of zones (%u here), max-open at most max-active, "
            "granularity a power of two >= 512 and <= max-append\n",
            prog, bytes, vblk_zone_count(bytes / 512, o->zone_sectors));
}

void cli_disk_init(struct cli_disk *d)
{
    *d = (struct cli_disk){.queues = 1, .queue_size = 256, .engine = VBLK_FILE_ENGINE_AUTO};
    d->nbd.log_level = VBLK_LOG_INFO;
}

int cli_disk_option(struct cli_disk *d, const char *prog, int code, const char *arg)
{
    char what[96];
    int r = rbd_cli_option(&d->rbd, code, arg, prog);
    if (r == 0)
        r = nbd_cli_option(&d->nbd, code, arg, prog);
    if (r != 0)
        return r < 0 ? 2 : 1;
    switch (code) {
    case CLI_OPT_IMAGE:
        d->image = arg;
        return 1;
    case CLI_OPT_MEMORY:
    case CLI_OPT_NULL: {
        const char *opt = code == CLI_OPT_NULL ? "--null" : "--memory";
        if (d->have_size)
            return cli_bad(prog, opt, NULL, "--memory and --null are mutually exclusive");
        if (cli_size(arg, &d->size) < 0 || d->size == 0 || d->size % VBLK_SECTOR_SIZE)
            return cli_bad(prog, opt, arg,
                           "a size such as 512M or 4G (a non-zero multiple of 512 bytes)");
        d->have_size = true;
        d->null = code == CLI_OPT_NULL;
        return 1;
    }
    case CLI_OPT_QUEUES:
        snprintf(what, sizeof(what), "1..%u", VBLK_MAX_QUEUES);
        if (cli_uint(arg, 1, VBLK_MAX_QUEUES, &d->queues) < 0)
            return cli_bad(prog, "--queues", arg, what);
        return 1;
    case CLI_OPT_QUEUE_SIZE:
        if (cli_uint(arg, 1, VBLK_QUEUE_SIZE_MAX, &d->queue_size) < 0 ||
            (d->pow2_queue_size && (d->queue_size & (d->queue_size - 1)))) {
            snprintf(what, sizeof(what), "%s1..%u", d->pow2_queue_size ? "a power of two in " : "",
                     VBLK_QUEUE_SIZE_MAX);
            return cli_bad(prog, "--queue-size", arg, what);
        }
        return 1;
    case CLI_OPT_READ_ONLY:
        d->read_only = true;
        return 1;
    case CLI_OPT_SERIAL:
        if (strlen(arg) > VBLK_ID_BYTES) {
            fprintf(stderr, "%s: --serial '%s' is longer than %u bytes\n", prog, arg,
                    VBLK_ID_BYTES);
            return 2;
        }
        d->serial = arg;
        return 1;
    case CLI_OPT_ENGINE:
        if (strcmp(arg, "io_uring") == 0)
            d->engine = VBLK_FILE_ENGINE_IO_URING;
        else if (strcmp(arg, "psync") == 0)
            d->engine = VBLK_FILE_ENGINE_PSYNC;
        else
            return cli_bad(prog, "--backend", arg, "io_uring or psync");
        return 1;
    case CLI_OPT_NO_PACKED:
        d->no_packed = true;
        return 1;
    case CLI_OPT_PACKED:
        d->no_packed = false;
        return 1;
    case CLI_OPT_ZONED:
        return zoned_option(d, prog, arg);
    case CLI_OPT_LIFETIME: {
        unsigned pre, a, b;
        char tail;
        if (sscanf(arg, "%u,%u,%u%c", &pre, &a, &b, &tail) != 3 || pre > 3 || a > 11 || b > 11)
            return cli_bad(prog, "--lifetime", arg, "P,A,B with P 0..3 and A, B 0..11");
        d->lifetime = true;
        d->lifetime_info.pre_eol_info = (uint16_t)pre;
        d->lifetime_info.device_lifetime_est_typ_a = (uint16_t)a;
        d->lifetime_info.device_lifetime_est_typ_b = (uint16_t)b;
        return 1;
    }
    case CLI_OPT_DISCARD_SEGMENTS: {
        unsigned long v;
        if (cli_uint(arg, 1, 256, &v) < 0)
            return cli_bad(prog, "--discard-segments", arg, "1..256");
        d->discard_segments = (uint32_t)v;
        return 1;
    }
    case CLI_OPT_DISCARD_MAX: {
        uint64_t v;
        if (cli_size(arg, &v) < 0 || !v || v % VBLK_SECTOR_SIZE || v > (1ull << 31))
            return cli_bad(prog, "--discard-max", arg, "a multiple of 512 bytes up to 2G");
        d->discard_max_sectors = (uint32_t)(v / VBLK_SECTOR_SIZE);
        return 1;
    }
    case CLI_OPT_SECURE_ERASE:
        d->secure_erase = true;
        return 1;
    default:
        return 0;
    }
}

void cli_disk_usage(FILE *f)
{
    fprintf(f,
            "  --image FILE         disk image or block device to serve\n" RBD_CLI_HELP NBD_CLI_HELP
            "  --memory SIZE        a zero-filled RAM disk of SIZE bytes (K/M/G/T suffixes,\n"
            "                       powers of 1024; a multiple of 512)\n"
            "  --null SIZE          a disk of SIZE bytes that completes every request at once\n"
            "                       without touching the data (for benchmarks)\n"
            "  --queues N           number of queues, 1..%u (default 1)\n"
            "  --queue-size N       largest ring size, 1..%u (default 256)\n"
            "  --read-only          refuse writes; the driver sees a read-only disk\n"
            "  --serial STRING      serial number reported by GET_ID (up to %u bytes)\n"
            "  --backend ENGINE     I/O engine for --image: io_uring or psync (default: io_uring\n"
            "                       when the kernel allows it, else psync)\n"
            "  --packed, --no-packed\n"
            "                       offer packed virtqueues or split ones only (default:\n"
            "                       vblk-vhost-user offers them, vblk-vduse does not; see\n"
            "                       docs/vduse.md)\n"
            "  --zoned SPEC         emulated zones over --image or --memory (host-managed by\n"
            "                       default; docs/zoned.md): SPEC is zone-size=SIZE[,conv=N]\n"
            "                       [,max-open=N][,max-active=N][,max-append=SIZE]\n"
            "                       [,granularity=SIZE][,model=hm|ha][,meta=PATH]; with --image\n"
            "                       the zone state is kept in PATH (default IMAGE.zones). A\n"
            "                       zoned block device as --image is passed through as is.\n"
            "  --lifetime P,A,B     offer GET_LIFETIME: pre_eol_info P (0..3), wear estimates\n"
            "                       A and B (0..11)\n"
            "  --discard-segments N ranges per DISCARD, WRITE_ZEROES and SECURE_ERASE request\n"
            "                       (1..256, default 1)\n"
            "  --discard-max SIZE   largest range of those requests (default 2G)\n"
            "  --secure-erase       offer SECURE_ERASE (--image: BLKSECDISCARD on a block\n"
            "                       device, else zeros written over the range and synced)\n",
            VBLK_MAX_QUEUES, VBLK_QUEUE_SIZE_MAX, VBLK_ID_BYTES);
}

int cli_disk_check(struct cli_disk *d, const char *prog, uint64_t default_size)
{
    if ((d->image != NULL) + (d->rbd.spec != NULL) + (d->nbd.uri != NULL) + d->have_size > 1) {
        fprintf(stderr, "%s: --image, --rbd, --nbd, --memory and --null are mutually exclusive\n",
                prog);
        return 2;
    }
    if (rbd_cli_check(&d->rbd, prog) < 0 || nbd_cli_check(&d->nbd, prog) < 0)
        return 2;
    if (!d->image && !d->rbd.spec && !d->nbd.uri && !d->have_size) {
        if (!default_size) {
            fprintf(stderr, "%s: choose a disk: --image FILE, --memory SIZE or --null SIZE\n",
                    prog);
            return 2;
        }
        d->size = default_size;
        d->have_size = true;
    }
    if (!d->image && d->engine != VBLK_FILE_ENGINE_AUTO) {
        fprintf(stderr, "%s: --backend applies to --image only\n", prog);
        return 2;
    }
    if (d->zoned && (d->null || d->rbd.spec || d->nbd.uri)) {
        fprintf(stderr, "%s: --zoned applies to --image and --memory\n", prog);
        return 2;
    }
    if (d->zoned && d->engine == VBLK_FILE_ENGINE_IO_URING) {
        fprintf(stderr, "%s: --zoned images use the psync engine\n", prog);
        return 2;
    }
    return 0;
}

/* One clear line for each way the image can be unusable. */
static int open_image(const struct cli_disk *d, const char *prog, struct vblk_backend *be)
{
    const char *path = d->image;
    struct stat st;
    if (stat(path, &st) < 0) {
        fprintf(stderr, "%s: cannot open image '%s': %s\n", prog, path, strerror(errno));
        return 1;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        fprintf(stderr, "%s: image '%s' is not a regular file or a block device\n", prog, path);
        return 1;
    }
    if (S_ISREG(st.st_mode) && st.st_size % VBLK_SECTOR_SIZE) {
        fprintf(stderr, "%s: image '%s' is %lld bytes, not a multiple of 512\n", prog, path,
                (long long)st.st_size);
        return 1;
    }
    struct vblk_file_opts fo = {.read_only = d->read_only,
                                .engine = d->engine,
                                .zoned = d->zoned ? &d->zoned_opts : NULL,
                                .zone_meta = d->zone_meta[0] ? d->zone_meta : NULL,
                                .secure_erase = d->secure_erase};
    int rc = vblk_backend_file_open(path, &fo, be);
    if (rc == -EBADMSG) {
        fprintf(stderr,
                "%s: the zone metadata of '%s' is damaged or was made for other --zoned "
                "settings\n",
                prog, path);
        return 1;
    }
    if (rc == -EINVAL && d->zoned) {
        if (S_ISBLK(st.st_mode))
            fprintf(stderr, "%s: '%s': --zoned cannot emulate zones over a zoned device\n", prog,
                    path);
        else
            zoned_explain(d, prog, (uint64_t)st.st_size);
        return 1;
    }
    if (rc == -ENOTSUP && d->engine == VBLK_FILE_ENGINE_IO_URING) {
        fprintf(stderr, "%s: --backend io_uring: io_uring is not available here\n", prog);
        return 1;
    }
    if (rc < 0) {
        fprintf(stderr, "%s: cannot open image '%s'%s: %s\n", prog, path,
                d->read_only ? " read-only" : " for writing", strerror(-rc));
        return 1;
    }
    if (be->size < VBLK_SECTOR_SIZE) {
        fprintf(stderr, "%s: image '%s' is empty\n", prog, path);
        vblk_backend_destroy(be);
        return 1;
    }
    return 0;
}

int cli_disk_open(const struct cli_disk *d, const char *prog, const char *default_serial,
                  struct vblk_backend *be, struct vblk_dev_params *p)
{
    if (d->image) {
        if (open_image(d, prog, be))
            return 1;
    } else if (d->rbd.spec) {
        if (rbd_cli_open(&d->rbd, d->read_only, be, prog) < 0)
            return 1;
    } else if (d->nbd.uri) {
        if (nbd_cli_open(&d->nbd, d->read_only, be, prog) < 0)
            return 1;
    } else {
        int rc = d->null    ? vblk_backend_null_create(d->size, be)
                 : d->zoned ? vblk_backend_memory_create_zoned(d->size, &d->zoned_opts, be)
                            : vblk_backend_memory_create(d->size, be);
        if (rc == -EINVAL && d->zoned) {
            zoned_explain(d, prog, d->size);
            return 1;
        }
        if (rc < 0) {
            fprintf(stderr, "%s: cannot create a %" PRIu64 "-byte %s: %s\n", prog, d->size,
                    d->null ? "null disk" : "RAM disk", strerror(-rc));
            return 1;
        }
    }
    vblk_dev_params_default(p, be->size - be->size % VBLK_SECTOR_SIZE);
    p->num_queues = (uint16_t)d->queues;
    p->queue_size = (uint16_t)d->queue_size;
    p->read_only = d->read_only;
    const char *serial = d->serial ? d->serial : default_serial;
    if (serial)
        memcpy(p->serial, serial, strnlen(serial, VBLK_ID_BYTES));
    if (d->no_packed)
        p->features_off |= VBLK_BIT(VBLK_F_RING_PACKED);
    p->lifetime = d->lifetime;
    p->lifetime_info = d->lifetime_info;
    if (d->discard_segments) {
        p->max_discard_seg = d->discard_segments;
        p->max_write_zeroes_seg = d->discard_segments;
        p->max_secure_erase_seg = d->discard_segments;
    }
    if (d->secure_erase) {
        p->max_secure_erase_sectors = 1u << 22;
        p->secure_erase_sector_alignment = 8;
    }
    if (d->discard_max_sectors) {
        p->max_discard_sectors = d->discard_max_sectors;
        p->max_write_zeroes_sectors = d->discard_max_sectors;
        if (p->max_secure_erase_sectors)
            p->max_secure_erase_sectors = d->discard_max_sectors;
    }
    return 0;
}

const char *cli_disk_name(const struct cli_disk *d)
{
    return d->image      ? d->image
           : d->rbd.spec ? d->rbd.spec
           : d->nbd.uri  ? d->nbd.uri
           : d->null     ? "a null disk"
                         : "a RAM disk";
}

/* @bytes in the largest binary unit that divides it exactly: the number and
 * the unit's letter (' ' for bytes). */
static uint64_t exact_unit(uint64_t bytes, char *unit)
{
    static const char units[] = " KMGTP";
    unsigned u = 0;
    while (bytes >= 1024 && bytes % 1024 == 0 && u + 1 < sizeof(units) - 1) {
        bytes >>= 10;
        u++;
    }
    *unit = units[u];
    return bytes;
}

const char *cli_human(uint64_t bytes, char *buf, size_t len)
{
    char unit;
    uint64_t n = exact_unit(bytes, &unit);
    if (unit == ' ')
        snprintf(buf, len, "%" PRIu64 " bytes", n);
    else
        snprintf(buf, len, "%" PRIu64 " %ciB", n, unit);
    return buf;
}

const char *cli_size_arg(uint64_t bytes, char *buf, size_t len)
{
    char unit;
    uint64_t n = exact_unit(bytes, &unit);
    if (unit == ' ')
        snprintf(buf, len, "%" PRIu64, n);
    else
        snprintf(buf, len, "%" PRIu64 "%c", n, unit);
    return buf;
}
