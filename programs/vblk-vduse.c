/* SPDX-License-Identifier: MIT */
/*
 * vblk-vduse: serve a disk image (or a RAM disk) as a VDUSE virtio-blk
 * device. Add it to the vDPA bus afterwards:
 *
 *   vblk-vduse --name vblk0 --image disk.img &
 *   vdpa dev add name vblk0 mgmtdev vduse        # -> /dev/vdX (virtio_vdpa)
 *   ...
 *   vdpa dev del vblk0                            # vblk-vduse exits
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "virtioblk/virtioblk.h"
#include "blk_opt.h"
#include "zoned_opt.h"

static volatile sig_atomic_t g_signal;

static void on_signal(int sig)
{
    g_signal = sig;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vblk-vduse --name NAME (--image FILE | --memory SIZE) [options]\n"
            "\n"
            "Serves a virtio-blk device through VDUSE. Attach it with\n"
            "  vdpa dev add name NAME mgmtdev vduse\n"
            "and detach it with 'vdpa dev del NAME', after which vblk-vduse exits.\n"
            "\n"
            "  --name NAME          VDUSE and vDPA device name\n"
            "  --image FILE         disk image or block device to serve\n"
            "  --memory SIZE        serve a zero-filled RAM disk of SIZE bytes (K/M/G suffixes)\n"
            "  --queues N           number of queues (default 1)\n"
            "  --queue-size N       largest queue size, a power of two (default 256)\n"
            "  --read-only          refuse writes (offers VIRTIO_BLK_F_RO)\n"
            "  --serial STRING      serial number reported by GET_ID (up to 20 bytes)\n"
            "  --no-packed          do not offer packed virtqueues\n" ZONED_OPT_HELP BLK_OPT_HELP
            "  --reclaim            replace a stale VDUSE device of the same name (one whose\n"
            "                       process died); a device in use is never touched\n"
            "  --quiet              print only errors\n"
            "  --help               this text\n");
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *s == '-')
        return -1;
    static const char units[] = "kmgt"; /* powers of 1024 */
    const char *u = *end ? strchr(units, tolower((unsigned char)*end)) : NULL;
    unsigned shift = u ? 10u * (unsigned)(u - units + 1) : 0;
    if (u)
        end++;
    if (*end == 'i' && shift)
        end++;
    if (*end == 'B' && shift)
        end++;
    if (*end || (shift && v > (UINT64_MAX >> shift)))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v == 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

static void log_line(void *opaque, const char *msg)
{
    fprintf(stderr, "vblk-vduse: %s: %s\n", (const char *)opaque, msg);
}

/* True if another process serves /dev/vduse/NAME: the kernel lets one
 * process at a time open a device. */
static bool device_in_use(const char *name)
{
    char path[sizeof("/dev/vduse/") + VBLK_VDUSE_NAME_MAX];
    snprintf(path, sizeof(path), "/dev/vduse/%s", name);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno == EBUSY;
    close(fd);
    return false;
}

/* One line that says what to do about a failed create. */
static void explain_create_error(const char *name, bool reclaim, int rc)
{
    switch (-rc) {
    case ENOENT:
        fprintf(stderr, "vblk-vduse: /dev/vduse/control not found: load the VDUSE kernel module "
                        "(modprobe vduse)\n");
        break;
    case EACCES:
    case EPERM:
        fprintf(stderr, "vblk-vduse: permission denied on /dev/vduse/control: run as root or "
                        "grant access to the VDUSE device nodes\n");
        break;
    case EEXIST:
        if (device_in_use(name))
            fprintf(stderr,
                    "vblk-vduse: a VDUSE device named '%s' already exists and is in use: choose "
                    "another --name\n",
                    name);
        else if (reclaim)
            fprintf(stderr,
                    "vblk-vduse: a VDUSE device named '%s' already exists; nothing serves it, but "
                    "it is still on the vDPA bus: run 'vdpa dev del %s' first\n",
                    name, name);
        else
            fprintf(stderr,
                    "vblk-vduse: a VDUSE device named '%s' already exists but nothing serves it "
                    "(its process died?): add --reclaim to replace it\n",
                    name);
        break;
    case EPROTONOSUPPORT:
        fprintf(stderr, "vblk-vduse: the kernel does not support VDUSE API version 0\n");
        break;
    default:
        fprintf(stderr, "vblk-vduse: cannot create VDUSE device '%s': %s\n", name, strerror(-rc));
        break;
    }
}

static void print_stats(struct vblk_vduse *v, const char *name)
{
    struct vblk_vduse_stats st;
    vblk_vduse_get_stats(v, &st);
    fprintf(stderr,
            "vblk-vduse: %s: %" PRIu64 " kernel requests (%" PRIu64 " bad, %" PRIu64
            " failed), %" PRIu64 " resets, %" PRIu64 " kicks, %" PRIu64 " interrupts, %" PRIu64
            " IOVA ranges mapped, %" PRIu64 " IOVA faults, %" PRIu64 " broken queues, %" PRIu64
            " page faults contained\n",
            name, st.messages, st.bad_messages, st.failed, st.resets, st.kicks, st.irqs,
            st.iotlb_maps, st.iotlb_faults, st.broken_queues, st.mapping_faults);
}

int main(int argc, char **argv)
{
    enum {
        OPT_NO_PACKED = 256,
        OPT_QUIET,
        OPT_RECLAIM,
        OPT_ZONED,
        OPT_LIFETIME,
        OPT_SEGMENTS,
        OPT_SECURE_ERASE,
        OPT_DISCARD_MAX
    };
    static const struct option longopts[] = {
        {"name", required_argument, NULL, 'n'},
        {"image", required_argument, NULL, 'i'},
        {"memory", required_argument, NULL, 'm'},
        {"queues", required_argument, NULL, 'q'},
        {"queue-size", required_argument, NULL, 's'},
        {"read-only", no_argument, NULL, 'r'},
        {"serial", required_argument, NULL, 'S'},
        {"no-packed", no_argument, NULL, OPT_NO_PACKED},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"reclaim", no_argument, NULL, OPT_RECLAIM},
        {"zoned", required_argument, NULL, OPT_ZONED},
        {"lifetime", required_argument, NULL, OPT_LIFETIME},
        {"discard-segments", required_argument, NULL, OPT_SEGMENTS},
        {"secure-erase", no_argument, NULL, OPT_SECURE_ERASE},
        {"discard-max", required_argument, NULL, OPT_DISCARD_MAX},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *name = NULL, *image = NULL, *serial = NULL;
    uint64_t memory = 0;
    unsigned long queues = 1, queue_size = 256;
    bool read_only = false, no_packed = false, quiet = false, reclaim = false, zoned = false;
    struct vblk_zoned_opts zo;
    char *zmeta = NULL;
    struct vblk_dev_params lt = {0}; /* --lifetime */
    uint32_t segs = 0, discard_max = 0;
    bool secure_erase = false;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n':
            name = optarg;
            break;
        case 'i':
            image = optarg;
            break;
        case 'm':
            if (parse_size(optarg, &memory) < 0 || memory == 0 || memory % 512) {
                fprintf(stderr, "vblk-vduse: --memory needs a non-zero multiple of 512 bytes\n");
                return 2;
            }
            break;
        case 'q':
            if (parse_uint(optarg, VBLK_MAX_QUEUES, &queues) < 0) {
                fprintf(stderr, "vblk-vduse: --queues must be 1..%d\n", VBLK_MAX_QUEUES);
                return 2;
            }
            break;
        case 's':
            if (parse_uint(optarg, VBLK_QUEUE_SIZE_MAX, &queue_size) < 0 ||
                (queue_size & (queue_size - 1))) {
                fprintf(stderr, "vblk-vduse: --queue-size must be a power of two up to %u\n",
                        VBLK_QUEUE_SIZE_MAX);
                return 2;
            }
            break;
        case 'r':
            read_only = true;
            break;
        case 'S':
            if (strlen(optarg) > VBLK_ID_BYTES) {
                fprintf(stderr, "vblk-vduse: --serial is at most %u bytes\n", VBLK_ID_BYTES);
                return 2;
            }
            serial = optarg;
            break;
        case OPT_NO_PACKED:
            no_packed = true;
            break;
        case OPT_QUIET:
            quiet = true;
            break;
        case OPT_RECLAIM:
            reclaim = true;
            break;
        case OPT_LIFETIME:
            if (blk_opt_lifetime("vblk-vduse", optarg, &lt) < 0)
                return 2;
            break;
        case OPT_SEGMENTS:
            if (blk_opt_segments("vblk-vduse", optarg, &segs) < 0)
                return 2;
            break;
        case OPT_DISCARD_MAX:
            if (blk_opt_discard_max("vblk-vduse", optarg, &discard_max) < 0)
                return 2;
            break;
        case OPT_SECURE_ERASE:
            secure_erase = true;
            break;
        case OPT_ZONED:
            free(zmeta);
            if (zoned_opt_parse("vblk-vduse", optarg, &zo, &zmeta) < 0)
                return 2;
            zoned = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc || !name || (!image == !memory)) {
        fprintf(stderr, "vblk-vduse: need --name and exactly one of --image or --memory\n");
        usage(stderr);
        return 2;
    }
    if (strlen(name) > VBLK_VDUSE_NAME_MAX || strchr(name, '/') || !name[0]) {
        fprintf(stderr, "vblk-vduse: --name must be 1..%u characters without '/'\n",
                VBLK_VDUSE_NAME_MAX);
        return 2;
    }

    struct vblk_backend be;
    int rc;
    if (image) {
        struct vblk_file_opts fo = {.read_only = read_only,
                                    .zoned = zoned ? &zo : NULL,
                                    .zone_meta = zmeta,
                                    .secure_erase = secure_erase};
        rc = vblk_backend_file_open(image, &fo, &be);
        if (rc == -EBADMSG)
            fprintf(stderr,
                    "vblk-vduse: the zone metadata of %s is damaged or was made for other "
                    "--zoned settings\n",
                    image);
        if (rc == -EINVAL && zoned) {
            struct stat st;
            zoned_opt_explain("vblk-vduse", &zo, stat(image, &st) == 0 ? (uint64_t)st.st_size : 0);
            return 2;
        }
        if (rc < 0) {
            fprintf(stderr, "vblk-vduse: cannot open %s: %s\n", image, strerror(-rc));
            return 1;
        }
    } else {
        rc = zoned ? vblk_backend_memory_create_zoned(memory, &zo, &be)
                   : vblk_backend_memory_create(memory, &be);
        if (rc == -EINVAL && zoned) {
            zoned_opt_explain("vblk-vduse", &zo, memory);
            return 2;
        }
        if (rc < 0) {
            fprintf(stderr, "vblk-vduse: cannot create a %" PRIu64 "-byte RAM disk: %s\n", memory,
                    strerror(-rc));
            return 1;
        }
    }

    struct vblk_dev_params p;
    vblk_dev_params_default(&p, be.size - be.size % VBLK_SECTOR_SIZE);
    p.num_queues = (uint16_t)queues;
    p.queue_size = (uint16_t)queue_size;
    p.read_only = read_only;
    if (serial)
        memcpy(p.serial, serial, strlen(serial));
    if (no_packed)
        p.features_off |= VBLK_BIT(VBLK_F_RING_PACKED);
    p.lifetime = lt.lifetime;
    p.lifetime_info = lt.lifetime_info;
    blk_opt_apply(&p, segs, discard_max, secure_erase);

    /* Signals are blocked except while the loop waits, so none is lost
     * between checking the flag and going to sleep. */
    sigset_t block, waitmask;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &waitmask);
    sigdelset(&waitmask, SIGINT);
    sigdelset(&waitmask, SIGTERM);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct vblk_vduse_opts o = {
        .name = name,
        .exit_on_detach = true,
        .reclaim = reclaim,
        .log = log_line,
        .log_opaque = (void *)name,
    };
    struct vblk_vduse *v;
    rc = vblk_vduse_create(&o, &p, &be, &v);
    if (rc < 0) {
        explain_create_error(name, reclaim, rc);
        vblk_backend_destroy(&be);
        return 1;
    }
    if (!quiet)
        fprintf(stderr,
                "vblk-vduse: %s: %" PRIu64 " bytes, %lu queue(s) of up to %lu, %s%s; attach with "
                "'vdpa dev add name %s mgmtdev vduse'\n",
                name, p.capacity, queues, queue_size, read_only ? "read-only" : "read-write",
                no_packed ? ", split rings only" : "", name);

    int status = 0;
    bool warned = false;
    for (;;) {
        if (vblk_vduse_detached(v))
            break;
        if (g_signal) {
            /* Taking the disk away under a driver would lose its writes:
             * wait for the detach, unless asked twice. */
            if (!vblk_vduse_attached(v) || warned)
                break;
            fprintf(stderr,
                    "vblk-vduse: %s is attached: waiting for 'vdpa dev del %s' (signal again to "
                    "quit now)\n",
                    name, name);
            warned = true;
            g_signal = 0;
        }
        struct pollfd pfd = {vblk_vduse_fd(v), POLLIN, 0};
        rc = ppoll(&pfd, 1, NULL, &waitmask);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
        } else {
            rc = vblk_vduse_poll(v, 0);
        }
        if (rc < 0 && rc != -EINTR) {
            fprintf(stderr, "vblk-vduse: %s: device failed: %s\n", name, strerror(-rc));
            status = 1;
            break;
        }
    }
    if (!quiet)
        print_stats(v, name);
    rc = vblk_vduse_destroy(v);
    if (rc == -EBUSY) {
        fprintf(stderr,
                "vblk-vduse: %s is still on the vDPA bus; the kernel keeps the device until "
                "'vdpa dev del %s'\n",
                name, name);
        status = 1;
    } else if (rc < 0) {
        fprintf(stderr, "vblk-vduse: destroying %s: %s\n", name, strerror(-rc));
        status = 1;
    } else if (!quiet) {
        fprintf(stderr, "vblk-vduse: %s: device destroyed, exiting\n", name);
    }
    vblk_backend_destroy(&be);
    return status;
}
