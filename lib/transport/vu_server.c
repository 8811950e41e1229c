/* SPDX-License-Identifier: MIT */
/* vhost-user server: the listening socket, the message loop on the caller's
 * thread, and worker threads that each run an event loop (or a polling
 * loop) over a group of queues. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vu_internal.h"

#define CTL_TAG UINT32_MAX

struct worker {
    pthread_t tid;
    bool running;
    int epfd;
    int evfd;
    struct vblk_vu_server *s;
    uint16_t first, step; /* queues first, first + step, ... */
};

struct vblk_vu_server {
    struct vblk_vu_dev *d;
    char *path;
    int lfd;
    int epfd;
    int stop_evfd;
    int user_stop_fd;
    bool poll;
    uint16_t nworkers;
    struct worker *w;
    atomic_bool stopping;
    uint64_t connections;
};

enum { TAG_LISTEN = 1, TAG_STOP, TAG_USER_STOP, TAG_CONN };

static int ep_add(int epfd, int fd, uint64_t tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* Refuses a path a live server owns, and replaces a stale socket file. */
static int claim_path(const struct sockaddr_un *sa)
{
    struct stat st;
    if (lstat(sa->sun_path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
    int err = errno;
    close(fd);
    if (rc == 0)
        return -EADDRINUSE;
    if (err != ECONNREFUSED)
        return -err;
    return unlink(sa->sun_path) < 0 ? -errno : 0;
}

int vblk_vu_server_create(const struct vblk_dev_params *p, const struct vblk_backend *be,
                          const struct vblk_vu_server_opts *opts, struct vblk_vu_server **out)
{
    if (!opts || !opts->socket_path || !out)
        return -EINVAL;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(opts->socket_path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, opts->socket_path);

    struct vblk_vu_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->lfd = s->epfd = s->stop_evfd = -1;
    s->user_stop_fd = opts->stop_fd;
    s->poll = opts->dev.poll;
    atomic_init(&s->stopping, false);
    int rc = vblk_vu_dev_create(p, be, &opts->dev, &s->d);
    if (rc < 0)
        goto fail;
    uint16_t nq = vblk_vu_dev_num_queues(s->d);
    s->nworkers = opts->threads && opts->threads < nq ? opts->threads : nq;
    s->w = calloc(s->nworkers, sizeof(*s->w));
    s->path = strdup(opts->socket_path);
    if (!s->w || !s->path) {
        rc = -ENOMEM;
        goto fail;
    }
    for (uint16_t i = 0; i < s->nworkers; i++)
        s->w[i].epfd = s->w[i].evfd = -1;
    rc = claim_path(&sa);
    if (rc < 0)
        goto fail;
    s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        rc = -errno;
        if (s->lfd >= 0)
            close(s->lfd);
        s->lfd = -1;
        goto fail;
    }
    if (listen(s->lfd, 4) < 0) {
        rc = -errno;
        goto fail;
    }
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->stop_evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->epfd < 0 || s->stop_evfd < 0) {
        rc = -errno;
        goto fail;
    }
    if ((rc = ep_add(s->epfd, s->lfd, TAG_LISTEN)) < 0 ||
        (rc = ep_add(s->epfd, s->stop_evfd, TAG_STOP)) < 0)
        goto fail;
    if (s->user_stop_fd >= 0 && (rc = ep_add(s->epfd, s->user_stop_fd, TAG_USER_STOP)) < 0)
        goto fail;
    *out = s;
    return 0;
fail:
    vblk_vu_server_destroy(s);
    return rc;
}

static bool worker_has_active(struct worker *w, struct vblk_vu_dev *d)
{
    for (uint32_t q = w->first; q < d->nq; q += w->step)
        if (vblk_vu_queue_active(d, (uint16_t)q))
            return true;
    return false;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct vblk_vu_server *s = w->s;
    struct vblk_vu_dev *d = s->d;
    struct epoll_event ev[16];
    while (!atomic_load(&s->stopping)) {
        if (s->poll && worker_has_active(w, d)) {
            /* Busy polling: no system call unless the guest must be
             * interrupted. Inactive queues wait for the next idle phase. */
            for (uint32_t q = w->first; q < d->nq; q += w->step)
                if (vblk_vu_queue_active(d, (uint16_t)q))
                    (void)vblk_vu_queue_process(d, (uint16_t)q);
            continue;
        }
        int n = epoll_wait(w->epfd, ev, 16, -1);
        for (int i = 0; i < n; i++) {
            if (ev[i].data.u32 == CTL_TAG) {
                eventfd_t v;
                (void)eventfd_read(w->evfd, &v);
                continue;
            }
            (void)vblk_vu_queue_process(d, (uint16_t)ev[i].data.u32);
        }
    }
    return NULL;
}

static void stop_workers(struct vblk_vu_server *s)
{
    atomic_store(&s->stopping, true);
    for (uint16_t i = 0; i < s->nworkers; i++) {
        struct worker *w = &s->w[i];
        if (w->running) {
            (void)eventfd_write(w->evfd, 1);
            pthread_join(w->tid, NULL);
            w->running = false;
        }
    }
    for (uint16_t i = 0; i < s->nworkers; i++) {
        struct worker *w = &s->w[i];
        if (w->epfd >= 0)
            close(w->epfd);
        if (w->evfd >= 0)
            close(w->evfd);
        w->epfd = w->evfd = -1;
    }
}

static int start_workers(struct vblk_vu_server *s)
{
    struct vblk_vu_dev *d = s->d;
    for (uint16_t i = 0; i < s->nworkers; i++)
        s->w[i].epfd = s->w[i].evfd = -1;
    /* Signals belong to the application's thread, not to ours. Faults
     * are the exception: they go to the thread that caused them, and a
     * blocked one kills the process without running any handler, so the
     * SIGBUS guard over the front-end's memory (fault_guard.h) could not
     * contain it. */
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = 0;
    for (uint16_t i = 0; i < s->nworkers && rc == 0; i++) {
        struct worker *w = &s->w[i];
        w->s = s;
        w->first = i;
        w->step = s->nworkers;
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->epfd < 0 || w->evfd < 0) {
            rc = -errno;
            break;
        }
        rc = ep_add(w->epfd, w->evfd, CTL_TAG);
        for (uint32_t q = w->first; q < d->nq && rc == 0; q += w->step)
            rc = ep_add(w->epfd, vblk_vu_queue_fd(d, (uint16_t)q), q);
        if (rc == 0) {
            rc = -pthread_create(&w->tid, NULL, worker_main, w);
            w->running = rc == 0;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc < 0)
        stop_workers(s);
    return rc;
}

static void accept_one(struct vblk_vu_server *s)
{
    int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    if (vblk_vu_dev_attached(s->d)) {
        vu_log(s->d, VBLK_VU_LOG_WARN, "refusing a second front-end while one is connected");
        close(fd);
        return;
    }
    if (vblk_vu_dev_attach(s->d, fd) < 0) {
        close(fd);
        return;
    }
    if (ep_add(s->epfd, fd, TAG_CONN) < 0) {
        vblk_vu_dev_detach(s->d); /* closes fd */
        return;
    }
    s->connections++;
    vu_log(s->d, VBLK_VU_LOG_INFO, "front-end connected (connection %llu)",
           (unsigned long long)s->connections);
}

static void drop_connection(struct vblk_vu_server *s, int why)
{
    int fd = vblk_vu_dev_socket_fd(s->d);
    if (fd >= 0)
        (void)epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
    vblk_vu_dev_detach(s->d);
    vu_log(s->d, VBLK_VU_LOG_INFO, "front-end disconnected (%s); waiting for the next one",
           why == -ECONNRESET ? "closed" : strerror(-why));
}

int vblk_vu_server_run(struct vblk_vu_server *s)
{
    atomic_store(&s->stopping, false);
    int rc = start_workers(s);
    if (rc < 0)
        return rc;
    bool stop = false;
    while (!stop) {
        struct epoll_event ev[4];
        int n = epoll_wait(s->epfd, ev, 4, -1);
        if (n < 0 && errno != EINTR) {
            rc = -errno;
            break;
        }
        for (int i = 0; i < n; i++) {
            switch (ev[i].data.u64) {
            case TAG_LISTEN:
                accept_one(s);
                break;
            case TAG_CONN: {
                int r = vblk_vu_dev_handle_socket(s->d);
                if (r < 0)
                    drop_connection(s, r);
                break;
            }
            default:
                stop = true;
                break;
            }
        }
    }
    /* Finish (or fail) what is in flight, then let the workers go. */
    if (vblk_vu_dev_attached(s->d))
        drop_connection(s, -ESHUTDOWN);
    stop_workers(s);
    return rc;
}

void vblk_vu_server_stop(struct vblk_vu_server *s)
{
    (void)eventfd_write(s->stop_evfd, 1);
}

void vblk_vu_server_destroy(struct vblk_vu_server *s)
{
    if (!s)
        return;
    if (s->w)
        stop_workers(s);
    if (s->lfd >= 0) {
        close(s->lfd);
        unlink(s->path);
    }
    vblk_vu_dev_destroy(s->d);
    if (s->epfd >= 0)
        close(s->epfd);
    if (s->stop_evfd >= 0)
        close(s->stop_evfd);
    free(s->w);
    free(s->path);
    free(s);
}

struct vblk_vu_dev *vblk_vu_server_dev(struct vblk_vu_server *s)
{
    return s->d;
}

uint64_t vblk_vu_server_connections(const struct vblk_vu_server *s)
{
    return s->connections;
}
