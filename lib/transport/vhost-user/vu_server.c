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
#include <time.h>
#include <unistd.h>

#include "transport/worker.h"
#include "transport/unix_listen.h"
#include "vu_internal.h"

/* How long a second connection waits for the attached front-end to go
 * (a VMM reconnecting before its old socket's hang-up was processed). */
#define PENDING_GRACE_MS 1000
/* The watchdog's period while a front-end is attached: a write to one of
 * its fds blocked for a whole period is released (vu_queue_watchdog). */
#define WATCHDOG_MS 200
/* How long stopping waits for a worker thread. */
#define JOIN_TIMEOUT_MS 2000

/* One worker thread and the queues it serves. */
struct srv_worker {
    struct worker *w;
    struct worker_item *items; /* one per queue it serves */
    unsigned nitems;
};

struct vblk_vu_server {
    struct vblk_vu_dev *d;
    char *path;
    int lfd;
    int epfd;
    int stop_evfd;
    int user_stop_fd;
    uint16_t nworkers;
    struct srv_worker *w;
    atomic_bool stopping;
    int pending_fd; /* a connection waiting for the attached one to go */
    int64_t pending_deadline;
    int64_t last_watch; /* the watchdog's previous look */
    bool abandoned;     /* a worker never stopped: its memory is never freed */
};

enum { TAG_LISTEN = 1, TAG_STOP, TAG_USER_STOP, TAG_CONN, TAG_PENDING };

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int ep_add(int epfd, int fd, uint64_t tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int vblk_vu_server_create(const struct vblk_dev_params *p, const struct vblk_backend *be,
                          const struct vblk_vu_server_opts *opts, struct vblk_vu_server **out)
{
    if (!opts || !opts->socket_path || !out)
        return -EINVAL;

    struct vblk_vu_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->lfd = s->epfd = s->stop_evfd = s->pending_fd = -1;
    s->user_stop_fd = opts->stop_fd;
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
    s->lfd = unix_listen(opts->socket_path, -1, 4);
    if (s->lfd < 0) {
        rc = s->lfd;
        s->lfd = -1;
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

static int item_process(void *arg)
{
    struct vu_queue *q = arg;
    return vblk_vu_queue_process(q->d, q->index);
}

static bool item_active(void *arg)
{
    struct vu_queue *q = arg;
    return vblk_vu_queue_active(q->d, q->index);
}

static int item_set_polling(void *arg, bool on)
{
    struct vu_queue *q = arg;
    return vblk_vu_queue_set_polling(q->d, q->index, on);
}

/* Releases every write to a front-end fd that is blocked now. */
static void unstick_all(struct vblk_vu_server *s)
{
    struct vblk_vu_dev *d = s->d;
    for (uint16_t i = 0; i < d->nq; i++) {
        vu_queue_lock(&d->q[i]);
        for (struct vu_notifier *n = d->q[i].call; n; n = n == d->q[i].call ? d->q[i].err : NULL)
            vu_notifier_unstick(n);
        vu_queue_unlock(&d->q[i]);
    }
}

static void stop_workers(struct vblk_vu_server *s)
{
    for (uint16_t i = 0; i < s->d->nq; i++)
        atomic_store(&s->d->q[i].thread, -1);
    for (uint16_t i = 0; i < s->nworkers; i++) {
        struct srv_worker *sw = &s->w[i];
        if (!sw->w)
            continue;
        /* A worker cannot stay blocked on a front-end fd (the watchdog
         * releases it), but stopping must end even if one does. */
        if (worker_stop(sw->w, JOIN_TIMEOUT_MS) < 0) {
            unstick_all(s);
            if (worker_stop(sw->w, 1000) < 0) {
                vu_log(s->d, VBLK_LOG_ERR, "worker %u does not stop; leaving it behind", i);
                worker_abandon(sw->w);
                s->abandoned = true;
            }
        }
    }
    if (s->abandoned)
        return;
    for (uint16_t i = 0; i < s->nworkers; i++) {
        worker_destroy(s->w[i].w);
        s->w[i].w = NULL;
        free(s->w[i].items);
        s->w[i].items = NULL;
    }
}

static int start_workers(struct vblk_vu_server *s)
{
    struct vblk_vu_dev *d = s->d;
    struct worker_opts wo = {.notify = vu_notify_mode(d), .poll_max_us = d->opts.poll_max_us};
    int rc = 0;
    for (uint16_t i = 0; i < s->nworkers && rc == 0; i++) {
        struct srv_worker *sw = &s->w[i];
        sw->nitems = (unsigned)((d->nq - i + s->nworkers - 1) / s->nworkers);
        sw->items = calloc(sw->nitems, sizeof(*sw->items));
        if (!sw->items) {
            rc = -ENOMEM;
            break;
        }
        rc = worker_create(&wo, &sw->w);
        /* Queues i, i + nworkers, ... */
        unsigned k = 0;
        for (uint32_t q = i; q < d->nq && rc == 0; q += s->nworkers, k++) {
            sw->items[k] = (struct worker_item){
                .fd = vblk_vu_queue_fd(d, (uint16_t)q),
                .process = item_process,
                .active = item_active,
                .set_polling = item_set_polling,
                .arg = &d->q[q],
            };
            rc = worker_add(sw->w, &sw->items[k]);
            atomic_store(&d->q[q].thread, (int)i);
        }
        if (rc == 0)
            rc = worker_start(sw->w);
    }
    if (rc < 0)
        stop_workers(s);
    return rc;
}

static void serve(struct vblk_vu_server *s, int fd)
{
    if (vblk_vu_dev_attach(s->d, fd) < 0) {
        close(fd);
        return;
    }
    if (ep_add(s->epfd, fd, TAG_CONN) < 0) {
        vblk_vu_dev_detach(s->d); /* closes fd */
        return;
    }
    vu_log(s->d, VBLK_LOG_INFO, "front-end connected (connection %llu)",
           (unsigned long long)__atomic_load_n(&s->d->stats.connections, __ATOMIC_RELAXED));
}

static void drop_pending(struct vblk_vu_server *s, const char *why)
{
    (void)epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->pending_fd, NULL);
    close(s->pending_fd);
    s->pending_fd = -1;
    if (why)
        vu_log(s->d, VBLK_LOG_WARN, "refusing a second front-end: %s", why);
}

static void drop_connection(struct vblk_vu_server *s, int why)
{
    int fd = vblk_vu_dev_socket_fd(s->d);
    if (fd >= 0)
        (void)epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
    vblk_vu_dev_detach(s->d);
    vu_log(s->d, VBLK_LOG_INFO, "front-end disconnected (%s); waiting for the next one",
           why == -ECONNRESET ? "closed" : strerror(-why));
    if (s->pending_fd >= 0 && !atomic_load(&s->stopping)) {
        int next = s->pending_fd;
        (void)epoll_ctl(s->epfd, EPOLL_CTL_DEL, next, NULL);
        s->pending_fd = -1;
        serve(s, next);
    }
}

static void accept_one(struct vblk_vu_server *s)
{
    int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    /* The previous front-end may be gone with its hang-up not processed
     * yet: read what its socket holds first. */
    if (vblk_vu_dev_attached(s->d)) {
        int r = vblk_vu_dev_handle_socket(s->d);
        if (r < 0)
            drop_connection(s, r);
    }
    if (!vblk_vu_dev_attached(s->d)) {
        serve(s, fd);
        return;
    }
    if (s->pending_fd >= 0) {
        close(fd);
        vu_log(s->d, VBLK_LOG_WARN,
               "refusing a second front-end: one is connected and another is waiting");
        return;
    }
    /* Only its hang-up matters until it is served. */
    struct epoll_event ev = {.events = EPOLLRDHUP, .data.u64 = TAG_PENDING};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        close(fd);
        return;
    }
    s->pending_fd = fd;
    s->pending_deadline = now_ms() + PENDING_GRACE_MS;
    vu_log(s->d, VBLK_LOG_INFO,
           "a second front-end connected; it is served if the first goes within %d ms",
           PENDING_GRACE_MS);
}

static int loop_timeout(struct vblk_vu_server *s)
{
    int t = vblk_vu_dev_attached(s->d) ? WATCHDOG_MS : -1;
    if (s->pending_fd >= 0) {
        int64_t left = s->pending_deadline - now_ms();
        left = left < 0 ? 0 : left;
        if (t < 0 || left < t)
            t = (int)left;
    }
    return t;
}

static void on_tick(struct vblk_vu_server *s)
{
    struct vblk_vu_dev *d = s->d;
    int64_t now = now_ms();
    if (vblk_vu_dev_attached(d) && now - s->last_watch >= WATCHDOG_MS) {
        s->last_watch = now;
        for (uint16_t i = 0; i < d->nq; i++)
            (void)vu_queue_watchdog(&d->q[i]);
    }
    if (s->pending_fd >= 0 && now >= s->pending_deadline)
        drop_pending(s, "one is connected");
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
        int n = epoll_wait(s->epfd, ev, 4, loop_timeout(s));
        if (n < 0 && errno != EINTR) {
            rc = -errno;
            break;
        }
        /* The attached front-end first: its hang-up makes room for a new
         * connection in the same round. */
        for (int i = 0; i < n; i++) {
            if (ev[i].data.u64 != TAG_CONN || !vblk_vu_dev_attached(s->d))
                continue;
            int r = vblk_vu_dev_handle_socket(s->d);
            if (r < 0)
                drop_connection(s, r);
        }
        for (int i = 0; i < n; i++) {
            switch (ev[i].data.u64) {
            case TAG_CONN:
                break;
            case TAG_LISTEN:
                accept_one(s);
                break;
            case TAG_PENDING:
                if (s->pending_fd >= 0)
                    drop_pending(s, NULL); /* it hung up while waiting */
                break;
            default:
                stop = true;
                break;
            }
        }
        on_tick(s);
    }
    atomic_store(&s->stopping, true);
    if (s->pending_fd >= 0)
        drop_pending(s, NULL);
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
    if (s->abandoned)
        return; /* a thread that never stopped may still use it all */
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
