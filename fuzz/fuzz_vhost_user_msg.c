/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the vhost-user back-end's message handling, fed a stream of
 * messages through vblk_vu_dev_handle_msg() (no socket), each with
 * simulated file descriptors: the shared guest memory file, fresh memfds
 * of various sizes, memfds holding bytes from the input (an in-flight
 * region left by a previous back-end), the in-flight region the device
 * handed out, eventfds (non-blocking, blocking, blocking with a saturated
 * counter), and fds of other kinds (a hung-up pipe, an empty blocking pipe
 * whose writer stays open, /dev/null, a regular file). A blocking read or
 * write on any of them hangs the target, which libFuzzer reports. Between messages the
 * rings are run with vblk_vu_queue_process() over guest memory whose initial contents come from the
 * input, and the "driver" may poke bytes into it.
 *
 * Checked besides memory safety: replies are well-formed (version, REPLY
 * flag, size matching the length, same request type); the handler returns
 * only 0 or -EPROTO; and no file descriptor outlives the device (every fd
 * passed in is owned by the device, whatever the outcome).
 *
 * Input:
 *   u8  device: bit 0 busy polling; bit 1 log sink at debug level; bit 2
 *       memory backend (else null); bit 3 hide some protocol features
 *   u8  guest memory size 4096 << (v % 6)
 *   u16 image length, then that many bytes of initial guest memory
 *   then records until the input ends (see run_record()).
 */
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "virtioblk/advanced_msg.h"
#include "virtioblk/vhost_user.h"

#define MAX_KEPT 16

struct vu_run {
    struct fuzz_in in;
    struct vblk_vu_dev *d;
    int guest_fd;
    uint8_t *guest;
    size_t guest_len;
    int kick[MAX_KEPT];  /* our ends of the kick eventfds, by queue index */
    int spare[MAX_KEPT]; /* pipe writers kept open while their readers are in use */
    unsigned nspare;
    int inflight_fd;    /* last in-flight region the device handed out */
    unsigned msgs, replies, eproto;
};

static void log_sink(void *opaque, int level, const char *msg)
{
    (void)opaque;
    FUZZ_CHECK(level >= VBLK_LOG_ERR && level <= VBLK_LOG_DEBUG);
    FUZZ_CHECK(msg != NULL);
    /* The whole line must be readable. */
    volatile size_t n = strlen(msg);
    (void)n;
    if (fuzz_verbose())
        fprintf(stderr, "vu[%d]: %s\n", level, msg);
}

static int new_memfd(size_t size)
{
    int fd = memfd_create("vblk-fuzz", MFD_CLOEXEC);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(ftruncate(fd, (off_t)size) == 0);
    return fd;
}

static void keep_kick(int fd, int *kick_slot)
{
    if (kick_slot) {
        if (*kick_slot >= 0)
            close(*kick_slot);
        *kick_slot = dup(fd);
    }
}

/* Kinds 0xf0-0xff: fds that would block a careless reader or writer. */
static int make_blocking_fd(struct vu_run *vr, uint8_t kind, int *kick_slot)
{
    int fd = -1;
    switch (kind & 3) {
    case 0: /* an eventfd without EFD_NONBLOCK */
    case 1: /* the same with its counter at the maximum */
        fd = eventfd(0, EFD_CLOEXEC);
        FUZZ_CHECK(fd >= 0);
        if (kind & 1)
            FUZZ_CHECK(eventfd_write(fd, 0xfffffffffffffffeull) == 0);
        keep_kick(fd, kick_slot);
        break;
    case 2: { /* an empty pipe whose writer stays open */
        int p[2];
        FUZZ_CHECK(pipe(p) == 0);
        if (vr->nspare < MAX_KEPT) {
            vr->spare[vr->nspare++] = p[1];
        } else {
            close(p[1]);
        }
        fd = p[0];
        break;
    }
    default: /* a regular file */
        fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0)
            fd = new_memfd(4096);
        break;
    }
    FUZZ_CHECK(fd >= 0);
    return fd;
}

/* One fd of the kind the input picks; @kick_slot keeps our end of an eventfd. */
static int make_fd(struct vu_run *vr, uint8_t kind, int *kick_slot)
{
    if (kind >= 0xf0)
        return make_blocking_fd(vr, kind, kick_slot);
    int fd = -1;
    switch (kind % 7) {
    case 0:
        fd = dup(vr->guest_fd);
        break;
    case 1:
        fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        FUZZ_CHECK(fd >= 0);
        keep_kick(fd, kick_slot);
        break;
    case 2:
        fd = new_memfd((size_t)4096 << ((kind >> 3) % 9));
        break;
    case 3: {
        int p[2];
        FUZZ_CHECK(pipe(p) == 0);
        close(p[1]);
        fd = p[0];
        break;
    }
    case 4:
        fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        break;
    case 5:
        fd = vr->inflight_fd >= 0 ? dup(vr->inflight_fd) : new_memfd(4096);
        break;
    default: {
        /* A shared region whose contents the front-end wrote (an in-flight
         * region from a previous back-end, a dirty log). */
        size_t size = (size_t)4096 << ((kind >> 3) % 4);
        fd = new_memfd(size);
        uint8_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        FUZZ_CHECK(p != MAP_FAILED);
        size_t fill = in_u16(&vr->in);
        in_bytes(&vr->in, p, fill < size ? fill : size);
        munmap(p, size);
        break;
    }
    }
    FUZZ_CHECK(fd >= 0);
    return fd;
}

static void check_reply(const struct vblk_vu_reply *rep, uint32_t request)
{
    if (rep->len == 0) {
        FUZZ_CHECK(rep->fd == -1);
        return;
    }
    FUZZ_CHECK(rep->len >= VBLK_VU_HDR_SIZE && rep->len <= VBLK_VU_MAX_MSG);
    uint32_t h[3];
    memcpy(h, rep->buf, sizeof(h));
    FUZZ_CHECK(h[0] == request);
    FUZZ_CHECK(h[1] == (1u | 4u)); /* version 1, REPLY */
    FUZZ_CHECK(h[2] == rep->len - VBLK_VU_HDR_SIZE);
}

static void send_message(struct vu_run *vr, uint8_t ctl)
{
    struct fuzz_in *in = &vr->in;
    uint8_t msg[VBLK_VU_MAX_MSG + 16];
    unsigned nfds = ctl & 3;
    uint32_t request = in_u8(in);
    uint32_t flags = 1u | ((ctl & 8) ? 8u : 0u);
    size_t plen;
    uint32_t size;
    if (ctl & 4) {
        /* Raw framing: header fields as given, any payload length. */
        flags = in_u32(in);
        size = in_u32(in);
        plen = in_u16(in) % (VBLK_VU_MAX_PAYLOAD + 16 + 1);
        if (ctl & 16)
            nfds = in_u8(in) % (VBLK_VU_MAX_FDS + 1);
    } else {
        plen = in_u16(in) % (VBLK_VU_MAX_PAYLOAD + 1);
        size = (uint32_t)plen;
    }
    memcpy(msg, &request, 4);
    memcpy(msg + 4, &flags, 4);
    memcpy(msg + 8, &size, 4);
    in_bytes(in, msg + VBLK_VU_HDR_SIZE, plen);

    int fds[VBLK_VU_MAX_FDS];
    uint8_t ring = msg[VBLK_VU_HDR_SIZE];
    for (unsigned i = 0; i < nfds; i++) {
        int *slot = request == 12 /* SET_VRING_KICK */ && ring < MAX_KEPT ? &vr->kick[ring] : NULL;
        fds[i] = make_fd(vr, in_u8(in), slot);
    }

    struct vblk_vu_reply rep;
    memset(&rep, 0xa5, sizeof(rep));
    int rc = vblk_vu_dev_handle_msg(vr->d, msg, VBLK_VU_HDR_SIZE + plen, fds, nfds, &rep);
    vr->msgs++;
    if (fuzz_verbose())
        fprintf(stderr, "message %u (%zu bytes, %u fds): rc %d, reply %zu bytes, fd %d\n", request,
                VBLK_VU_HDR_SIZE + plen, nfds, rc, rep.len, rep.fd);
    FUZZ_CHECK(rc == 0 || rc == -EPROTO);
    check_reply(&rep, request);
    if (rep.len)
        vr->replies++;
    if (rep.fd >= 0) {
        /* Ours now: keep the latest in-flight region to hand it back later. */
        if (vr->inflight_fd >= 0)
            close(vr->inflight_fd);
        vr->inflight_fd = rep.fd;
    }
    if (rc == -EPROTO) {
        /* The connection ends; the device must be ready for the next one. */
        vr->eproto++;
        vblk_vu_dev_detach(vr->d);
    }
}

static void run_action(struct vu_run *vr, uint8_t ctl)
{
    struct fuzz_in *in = &vr->in;
    uint16_t nq = vblk_vu_dev_num_queues(vr->d);
    switch (ctl & 0x0f) {
    case 0:
    case 1:
    case 2: {
        uint16_t q = (uint16_t)(ctl & 3);
        int rc = vblk_vu_queue_process(vr->d, q);
        if (fuzz_verbose())
            fprintf(stderr, "process queue %u: %d\n", q, rc);
        FUZZ_CHECK(q < nq ? rc >= 0 || rc == -EIO : rc == -EINVAL);
        break;
    }
    case 3: {
        uint8_t q = in_u8(in) % MAX_KEPT;
        /* A saturated kick counter means the kick is already pending.
         * Ask first: a blocking eventfd the device refused (so never made
         * non-blocking) would block this single-threaded front-end. */
        struct pollfd pf = {vr->kick[q], POLLOUT, 0};
        if (vr->kick[q] >= 0 && poll(&pf, 1, 0) == 1)
            FUZZ_CHECK(eventfd_write(vr->kick[q], 1) == 0);
        if (q < nq)
            (void)vblk_vu_queue_process(vr->d, q);
        break;
    }
    case 4: {
        struct vblk_transport_queue_stats st;
        uint16_t q = in_u8(in) % 4;
        int rc = vblk_vu_queue_stats(vr->d, q, &st);
        FUZZ_CHECK(rc == (q < nq ? 0 : -EINVAL));
        (void)vblk_vu_queue_active(vr->d, q);
        FUZZ_CHECK((vblk_vu_queue_fd(vr->d, q) >= 0) == (q < nq));
        break;
    }
    case 5: {
        /* The driver writes guest memory (e.g. publishes more buffers). */
        size_t off = in_u16(in) % vr->guest_len;
        size_t len = in_u8(in);
        if (len > vr->guest_len - off)
            len = vr->guest_len - off;
        in_bytes(in, vr->guest + off, len);
        break;
    }
    case 6:
        vblk_vu_dev_detach(vr->d);
        FUZZ_CHECK(!vblk_vu_dev_attached(vr->d));
        break;
    default: {
        /* Framing check alone, on a message from the input. */
        uint8_t buf[VBLK_VU_MAX_MSG + 8];
        size_t len = in_u16(in) % sizeof(buf);
        in_bytes(in, buf, len);
        int rc = vblk_vu_msg_validate(buf, len, in_u8(in) % 10);
        FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -EBADMSG);
        break;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fds_before = count_fds();
    struct vu_run vr;
    memset(&vr, 0, sizeof(vr));
    vr.in = (struct fuzz_in){data, size};
    vr.inflight_fd = -1;
    for (unsigned i = 0; i < MAX_KEPT; i++)
        vr.kick[i] = -1;

    uint8_t flags = in_u8(&vr.in);
    vr.guest_len = (size_t)4096 << (in_u8(&vr.in) % 6);
    vr.guest_fd = new_memfd(vr.guest_len);
    vr.guest = mmap(NULL, vr.guest_len, PROT_READ | PROT_WRITE, MAP_SHARED, vr.guest_fd, 0);
    FUZZ_CHECK(vr.guest != MAP_FAILED);
    size_t img = in_u16(&vr.in);
    if (img > vr.guest_len)
        img = vr.guest_len;
    in_bytes(&vr.in, vr.guest, img);

    struct vblk_backend be = fuzz_disk_backend((flags & 4) != 0);
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, 1u << 20);
    p.num_queues = 2;
    p.queue_size = 64;
    p.features_off = 0;
    struct vblk_vu_opts opts = {0};
    opts.notify = (flags & 1) ? VBLK_NOTIFY_POLL : VBLK_NOTIFY_ADAPTIVE;
    if (flags & 2) {
        opts.log = log_sink;
        opts.log_level = VBLK_LOG_DEBUG;
    }
    if (flags & 8)
        opts.protocol_features_off = (1u << VBLK_VU_PROTOCOL_F_INFLIGHT_SHMFD) |
                                     (1u << VBLK_VU_PROTOCOL_F_CONFIGURE_MEM_SLOTS);
    FUZZ_CHECK(vblk_vu_dev_create(&p, &be, &opts, &vr.d) == 0);
    FUZZ_CHECK(vblk_vu_dev_num_queues(vr.d) == 2);

    while (vr.in.n > 0 && vr.msgs < 256) {
        uint8_t ctl = in_u8(&vr.in);
        if (ctl >= 0xe0)
            run_action(&vr, ctl);
        else
            send_message(&vr, ctl);
    }

    vblk_vu_dev_destroy(vr.d);
    for (unsigned i = 0; i < MAX_KEPT; i++)
        if (vr.kick[i] >= 0)
            close(vr.kick[i]);
    for (unsigned i = 0; i < vr.nspare; i++)
        close(vr.spare[i]);
    if (vr.inflight_fd >= 0)
        close(vr.inflight_fd);
    munmap(vr.guest, vr.guest_len);
    close(vr.guest_fd);
    /* Every fd handed to the device was closed by it. */
    FUZZ_CHECK(count_fds() == fds_before);
    return 0;
}
