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
#include <unistd.h>

#include "cli.h"
#include "virtioblk/virtioblk.h"

#define PROG "vblk-vduse"

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: vblk-vduse --name NAME (--image FILE | --rbd SPEC | --nbd URI | --memory SIZE |\n"
        "       --null SIZE) [options]\n"
        "\n"
        "Serves a virtio-blk device through VDUSE. Attach it with\n"
        "  vdpa dev add name NAME mgmtdev vduse\n"
        "and detach it with 'vdpa dev del NAME', after which vblk-vduse exits.\n"
        "\n"
        "  --name NAME          VDUSE and vDPA device name\n"
        "  --reclaim            replace a stale VDUSE device of the same name (one whose\n"
        "                       process died); a device in use is never touched\n"
        "  --quiet              print only errors\n"
        "  --help               this text\n"
        "\n"
        "The disk (--queue-size must be a power of two):\n");
    cli_disk_usage(f);
}

/* "vblk-vduse: NAME: level: message" */
static void log_line(void *opaque, int level, const char *msg)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    fprintf(stderr, "vblk-vduse: %s: %s: %s\n", (const char *)opaque, names[level & 3], msg);
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
    struct vblk_transport_stats st;
    vblk_vduse_stats(v, &st);
    uint64_t kicks = 0, irqs = 0;
    for (uint16_t i = 0; i < vblk_vduse_num_queues(v); i++) {
        struct vblk_transport_queue_stats qs;
        if (vblk_vduse_queue_stats(v, i, &qs) == 0) {
            kicks += qs.kicks;
            irqs += qs.notifies;
        }
    }
    fprintf(stderr,
            "vblk-vduse: %s: %" PRIu64 " kernel requests (%" PRIu64 " bad, %" PRIu64
            " failed), %" PRIu64 " resets, %" PRIu64 " kicks, %" PRIu64 " interrupts, %" PRIu64
            " IOVA ranges mapped, %" PRIu64 " IOVA faults, %" PRIu64 " broken queues, %" PRIu64
            " page faults contained\n",
            name, st.messages, st.bad_messages, st.failed, st.resets, kicks, irqs, st.memory_maps,
            st.memory_faults, st.broken_queues, st.mapping_faults);
}

int main(int argc, char **argv)
{
    enum { OPT_QUIET = 256, OPT_RECLAIM };
    static const struct option longopts[] = {
        {"name", required_argument, NULL, 'n'},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"reclaim", no_argument, NULL, OPT_RECLAIM},
        {"help", no_argument, NULL, 'h'},
        CLI_DISK_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    struct cli_disk disk;
    cli_disk_init(&disk);
    disk.pow2_queue_size = true; /* virtio 1.2 2.7: split rings */
    /* Split rings unless --packed: Linux's packed ring fails a request with
     * an I/O error when VDUSE's bounce buffer is full, where a split ring
     * retries it (docs/vduse.md). */
    disk.no_packed = true;
    const char *name = NULL;
    bool quiet = false, reclaim = false;
    int c, rc;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if ((rc = cli_disk_option(&disk, PROG, c, optarg)) != 0) {
            if (rc != 1)
                return rc;
            continue;
        }
        switch (c) {
        case 'n':
            name = optarg;
            break;
        case OPT_QUIET:
            quiet = true;
            break;
        case OPT_RECLAIM:
            reclaim = true;
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
        fprintf(stderr, PROG ": unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    if (!name) {
        fprintf(stderr, PROG ": --name NAME is required (see --help)\n");
        return 2;
    }
    if (strlen(name) > VBLK_VDUSE_NAME_MAX || strchr(name, '/') || !name[0]) {
        fprintf(stderr, PROG ": --name must be 1..%u characters without '/'\n",
                VBLK_VDUSE_NAME_MAX);
        return 2;
    }
    if ((rc = cli_disk_check(&disk, PROG, 0)) != 0)
        return rc;

    /* Signals arrive through a signalfd the loop watches with the device. */
    int sfd = cli_signalfd(PROG);
    if (sfd < 0)
        return 1;
    struct vblk_backend be;
    struct vblk_dev_params p;
    disk.nbd.log_level = quiet ? VBLK_LOG_ERR : VBLK_LOG_INFO;
    if (cli_disk_open(&disk, PROG, NULL, &be, &p))
        return 1;

    struct vblk_vduse_opts o = {
        .name = name,
        .exit_on_detach = true,
        .reclaim = reclaim,
        .log = log_line,
        .log_opaque = (void *)name,
        .log_level = VBLK_LOG_INFO,
    };
    struct vblk_vduse *v;
    rc = vblk_vduse_create(&p, &be, &o, &v);
    if (rc < 0) {
        explain_create_error(name, reclaim, rc);
        vblk_backend_destroy(&be);
        return 1;
    }
    if (!quiet)
        fprintf(stderr,
                "vblk-vduse: %s: %" PRIu64 " bytes, %lu queue(s) of up to %lu, %s%s; attach with "
                "'vdpa dev add name %s mgmtdev vduse'\n",
                name, p.capacity, disk.queues, disk.queue_size,
                disk.read_only ? "read-only" : "read-write",
                disk.no_packed ? "" : ", packed rings offered", name);

    int status = 0;
    bool warned = false;
    for (;;) {
        if (vblk_vduse_detached(v))
            break;
        int sig = cli_signal_take(sfd);
        if (sig) {
            /* Taking the disk away under a driver would lose its writes:
             * wait for the detach, unless asked twice. */
            if (!vblk_vduse_attached(v) || warned)
                break;
            fprintf(stderr,
                    "vblk-vduse: %s is attached: waiting for 'vdpa dev del %s' (signal again to "
                    "quit now)\n",
                    name, name);
            warned = true;
        }
        struct pollfd pfd[2] = {{vblk_vduse_fd(v), POLLIN, 0}, {sfd, POLLIN, 0}};
        rc = poll(pfd, 2, -1);
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
    if (!quiet) {
        print_stats(v, name);
        rbd_cli_print_stats(&be, PROG);
        nbd_cli_print_stats(&be, PROG);
    }
    /* The kernel keeps a device that is still on the vDPA bus. */
    bool kept = vblk_vduse_attached(v) && !vblk_vduse_detached(v);
    vblk_vduse_destroy(v);
    if (kept) {
        fprintf(stderr,
                "vblk-vduse: %s is still on the vDPA bus; the kernel keeps the device until "
                "'vdpa dev del %s'\n",
                name, name);
        status = 1;
    } else if (!quiet) {
        fprintf(stderr, "vblk-vduse: %s: device destroyed, exiting\n", name);
    }
    vblk_backend_destroy(&be);
    return status;
}
