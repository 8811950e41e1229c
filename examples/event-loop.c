/* SPDX-License-Identifier: MIT */
/*
 * event-loop: a vhost-user-blk device driven from the application's own
 * epoll loop, on one thread. The library starts no thread of its own: it
 * hands out file descriptors, and the loop calls it back when one of them
 * is readable.
 *
 *   epoll_wait() -- listening socket -> accept(), vblk_vu_dev_attach()
 *                -- device socket    -> vblk_vu_dev_handle_socket()  messages
 *                -- each queue fd    -> vblk_vu_queue_process()      requests
 *                -- signalfd         -> leave the loop
 *
 * The front-end (QEMU) shares guest memory and the rings through messages
 * on the socket, and kicks a queue by writing an eventfd that it sent in
 * one of them. Those eventfds come and go with each connection, but the
 * queue fd the library gives us never changes: it fires for a kick, for a
 * backend completion and for a reconfiguration alike, so it is registered
 * once. Every fd is non-blocking and level-triggered: whatever a call
 * leaves unread keeps its fd readable, and the next round comes back to it.
 *
 * Usage: event-loop SOCKET   serve QEMU on SOCKET (prints the command line)
 *        event-loop --self-test
 *            a thread in this process connects with the library's own
 *            vhost-user front-end (vhost_user_client.h), writes four blocks,
 *            reads them back and disconnects; then the counters are printed
 *            and the exit status says whether the data came back intact.
 *
 * Build: cc event-loop.c $(pkg-config --cflags --libs libvirtioblk) -lpthread
 */
#define _GNU_SOURCE /* accept4(), mkdtemp(), realpath() */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <virtioblk/virtioblk.h>

#define PROG "event-loop"
enum { TAG_LISTEN = 1000, TAG_SOCKET, TAG_SIGNAL }; /* queue fds are tagged 0..63 */

static int watch(int ep, int fd, uint32_t tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = tag};
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

static void log_line(void *opaque, int level, const char *msg)
{
    (void)opaque;
    (void)level;
    fprintf(stderr, PROG ": %s\n", msg);
}

/* The whole device, on this thread. Returns 0 when told to stop (or, with
 * @once, when the first front-end has gone), -1 if nothing happened for
 * @idle_ms (-1: wait for ever). */
static int serve(struct vblk_vu_dev *d, int ep, int listener, bool once, int idle_ms)
{
    for (;;) {
        struct epoll_event ev[8];
        int n = epoll_wait(ep, ev, 8, idle_ms);
        if (n < 0 && errno == EINTR) /* after a SIGSTOP, for one */
            continue;
        if (n <= 0)
            return -1;
        for (int i = 0; i < n; i++) {
            uint32_t tag = ev[i].data.u32;
            if (tag == TAG_SIGNAL)
                return 0;
            if (tag == TAG_LISTEN) {
                int s = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
                /* One front-end at a time: attach refuses a second one
                 * with -EBUSY, and we hang up on it. Once attached, the
                 * socket is the device's: it closes it on detach. */
                if (s >= 0 && vblk_vu_dev_attach(d, s) < 0)
                    close(s);
                else if (s >= 0 && watch(ep, vblk_vu_dev_socket_fd(d), TAG_SOCKET) < 0)
                    vblk_vu_dev_detach(d);
            } else if (tag == TAG_SOCKET) {
                /* Reads what has arrived, handles every complete message
                 * (memory table, ring addresses, kick and call fds, ...)
                 * and replies. Negative: the front-end closed the socket or
                 * broke the protocol. Detach stops the rings, waits for the
                 * requests in flight, unmaps guest memory and closes the
                 * socket, so unwatch it first. */
                if (vblk_vu_dev_handle_socket(d) < 0) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, vblk_vu_dev_socket_fd(d), NULL);
                    vblk_vu_dev_detach(d);
                    if (once)
                        return 0;
                }
            } else {
                /* Runs the ring until it is empty. -EIO means the guest
                 * broke it: the device now reports DEVICE_NEEDS_RESET and
                 * serves nothing until the guest resets it; a fault in
                 * guest memory also shuts the socket, which ends up above. */
                vblk_vu_queue_process(d, (uint16_t)tag);
            }
        }
    }
}

/* ---- The self-test's front-end, on a thread of its own. -------------- */

/* One request of 4 KiB at @sector, waited for. Returns its status or -1. */
static int client_rw(struct vblk_vu_client *c, struct vblk_drv_blk_frame *fr, uint32_t type,
                     uint64_t sector, uint8_t *buf)
{
    struct vblk_drv_vq *vq = vblk_vu_client_queue(c, 0);
    struct vblk_iov data = {buf, 4096};
    if (vblk_drv_blk_add(vq, fr, type, sector, &data, 1, fr, false) < 0)
        return -1;
    vblk_vu_client_kick(c, 0);
    void *tok;
    uint32_t len;
    int got;
    while ((got = vblk_drv_vq_get_used(vq, &tok, &len)) == 0)
        if (vblk_vu_client_wait(c, 0, 5000) <= 0)
            return -1;
    return got == 1 ? fr->status : -1;
}

struct self_test {
    const char *path;
    bool ok;
};

static void *front_end(void *arg)
{
    struct self_test *t = arg;
    struct vblk_vu_client_opts o = {.mem_size = 1u << 20, .event_idx = true};
    struct vblk_vu_client *c;
    if (vblk_vu_client_connect(t->path, &o, &c) < 0)
        return NULL;
    /* Requests and buffers must be in the memory shared with the device. */
    struct vblk_drv_blk_frame *fr = vblk_vu_client_alloc(c, sizeof(*fr));
    uint8_t *buf = vblk_vu_client_alloc(c, 4096), want[4096];
    bool ok = fr && buf;
    for (unsigned i = 0; ok && i < 8; i++) { /* four writes, then four reads */
        memset(want, 'A' + i % 4, sizeof(want));
        if (i < 4)
            memcpy(buf, want, sizeof(want));
        else
            memset(buf, 0, 4096);
        ok = client_rw(c, fr, i < 4 ? VBLK_T_OUT : VBLK_T_IN, i % 4 * 1000, buf) == VBLK_S_OK &&
             memcmp(buf, want, 4096) == 0;
    }
    vblk_vu_client_close(c); /* stops the rings, then hangs up */
    t->ok = ok;
    return NULL;
}

static void print_stats(struct vblk_vu_dev *d)
{
    struct vblk_transport_stats ds;
    vblk_vu_dev_stats(d, &ds);
    printf(PROG ": %" PRIu64 " connection(s), %" PRIu64 " messages, %" PRIu64 " bad\n",
           ds.connections, ds.messages, ds.bad_messages);
    for (uint16_t q = 0; q < vblk_vu_dev_num_queues(d); q++) {
        struct vblk_transport_queue_stats st;
        if (vblk_vu_queue_stats(d, q, &st) == 0)
            printf(PROG ": queue %u: %" PRIu64 " requests, %" PRIu64 " completed, %" PRIu64
                        " I/O errors, %" PRIu64 " kicks, %" PRIu64 " interrupts\n",
                   q, st.req.submitted, st.req.completed, st.req.ioerr, st.kicks, st.notifies);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2 || (argv[1][0] == '-' && strcmp(argv[1], "--self-test") != 0)) {
        fprintf(stderr, "usage: " PROG " SOCKET | --self-test\n");
        return 2;
    }
    bool self_test = strcmp(argv[1], "--self-test") == 0;
    char dir[] = "/tmp/" PROG ".XXXXXX", path[PATH_MAX], abs[PATH_MAX];
    snprintf(path, sizeof(path), "%s", argv[1]);
    if (self_test && (!mkdtemp(dir) || snprintf(path, sizeof(path), "%s/sock", dir) < 0))
        return 1;

    /* The disk: a 64 MiB RAM disk with the default virtio-blk parameters. */
    struct vblk_backend be;
    struct vblk_dev_params p;
    struct vblk_vu_dev *d;
    struct vblk_vu_opts vo = {.log = log_line, .log_level = VBLK_LOG_INFO};
    if (vblk_backend_memory_create(64u << 20, &be) < 0)
        return 1;
    vblk_dev_params_default(&p, be.size);
    memcpy(p.serial, PROG, sizeof(PROG) - 1);
    if (vblk_vu_dev_create(&p, &be, &vo, &d) < 0)
        return 1;

    /* SIGINT and SIGTERM arrive as a readable fd, like everything else. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);

    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (strlen(path) >= sizeof(sa.sun_path) || sfd < 0 || ls < 0 || ep < 0) {
        fprintf(stderr, PROG ": cannot set up %s\n", path);
        return 1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 1) < 0) {
        perror(PROG ": bind"); /* a socket file left behind: remove it */
        return 1;
    }
    int rc = watch(ep, ls, TAG_LISTEN) | watch(ep, sfd, TAG_SIGNAL);
    for (uint16_t q = 0; q < vblk_vu_dev_num_queues(d); q++) /* once, for good */
        rc |= watch(ep, vblk_vu_queue_fd(d, q), q);

    struct self_test t = {.path = path};
    pthread_t thr;
    if (rc == 0 && self_test) {
        /* The front-end waits on the device's replies, so it must run
         * beside the loop, not in it. */
        if (pthread_create(&thr, NULL, front_end, &t) != 0)
            return 1;
        rc = serve(d, ep, ls, true, 10000);
        vblk_vu_dev_detach(d); /* after a failure: lets the front-end go */
        pthread_join(thr, NULL);
        /* The data came back, and the device counted every request. */
        struct vblk_transport_queue_stats st;
        vblk_vu_queue_stats(d, 0, &st);
        rc = rc == 0 && t.ok && st.req.completed == 8 && st.req.ioerr == 0 ? 0 : -1;
        print_stats(d);
        printf(PROG ": self-test %s\n", rc == 0 ? "ok" : "FAILED");
    } else if (rc == 0) {
        printf(PROG ": serving a 64 MiB RAM disk; attach QEMU with (size= must equal -m):\n"
                    "  -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem "
                    "-chardev socket,id=vblk0,path=%s -device "
                    "vhost-user-blk-pci,chardev=vblk0,num-queues=1\n",
               realpath(path, abs) ? abs : path);
        fflush(stdout);
        rc = serve(d, ep, ls, false, -1);
        print_stats(d);
    }
    vblk_vu_dev_destroy(d); /* detaches a front-end still attached */
    vblk_backend_destroy(&be);
    close(ep);
    close(ls);
    close(sfd);
    unlink(path);
    if (self_test)
        rmdir(dir);
    return rc == 0 ? 0 : 1;
}
