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

#include "vu_internal.h"

#define CTL_TAG UINT32_MAX

/* How long a second connection waits for the attached front-end to go
 * (a VMM reconnecting before its old socket's hang-up was processed). */
#define PENDING_GRACE_MS 1000
/* The watchdog's period while a front-end is attached: a write to one of
 * its fds blocked for a whole period is released (vu_queue_watchdog). */
#define WATCHDOG_MS 200
/* How long stopping waits for a worker thread. */
#define JOIN_TIMEOUT_MS 2000

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
    uint16_t nworkers;
    struct worker *w;
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

/* Adaptive polling: the shortest and longest poll after the last request
 * found. The window doubles when a sleep turned out shorter than the
 * longest poll (polling on would have caught the work without the cost of
 * waking), and halves when a sleep was longer (polling would have burnt
 * the CPU for nothing). */
#define POLL_MIN_NS         1000u
#define POLL_MAX_NS_DEFAULT 128000u
/* Poll phases in a row that found nothing, each followed by work within a
 * quarter of the longest poll after going to sleep, before the window stops
 * growing and shrinks instead. A driver that needs this CPU to submit its
 * next request (a spinning driver or a busy vCPU on the same CPU) cannot
 * run while we poll: its request comes just after we sleep, which looks
 * like a window too short and would keep it at the maximum. Polling is
 * tried again from the start after POLL_RETRY_NS. */
#define POLL_EMPTY_MAX 3u
#define POLL_RETRY_NS  50000000u

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Switches every queue of @w; returns what the last look found. */
static int set_polling(struct worker *w, struct vblk_vu_dev *d, bool on)
{
    int found = 0;
    for (uint32_t q = w->first; q < d->nq; q += w->step)
        found += vblk_vu_queue_set_polling(d, (uint16_t)q, on);
    return found;
}

/* One pass over the worker's active queues; returns the requests found. */
static int poll_once(struct worker *w, struct vblk_vu_dev *d)
{
    int found = 0;
    for (uint32_t q = w->first; q < d->nq; q += w->step)
        if (vblk_vu_queue_active(d, (uint16_t)q)) {
            int rc = vblk_vu_queue_process(d, (uint16_t)q);
            found += rc > 0 ? rc : 0;
        }
    return found;
}

/* Waits for events and processes the queues they name. */
static void wait_and_process(struct worker *w, struct vblk_vu_dev *d)
{
    struct epoll_event ev[16];
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

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct vblk_vu_server *s = w->s;
    struct vblk_vu_dev *d = s->d;
    enum vblk_notify_mode mode = vu_notify_mode(d);
    uint64_t max_ns = d->opts.poll_max_us ? d->opts.poll_max_us * 1000ull : POLL_MAX_NS_DEFAULT;
    uint64_t window = max_ns / 4, last = 0, gave_up = 0;
    unsigned empty = 0;
    int phase = 0; /* the poll phase before the sleep: 0 none, 1 found work, -1 nothing */
    bool polling = false, found = false;
    if (mode == VBLK_NOTIFY_POLL)
        set_polling(w, d, true);
    while (!atomic_load_explicit(&s->stopping, memory_order_relaxed)) {
        if (mode == VBLK_NOTIFY_POLL) {
            /* Busy polling: no system call unless the guest must be
             * interrupted. Inactive queues wait for the next idle phase. */
            if (worker_has_active(w, d)) {
                (void)poll_once(w, d);
                continue;
            }
            wait_and_process(w, d);
            continue;
        }
        if (polling) {
            uint64_t now = mono_ns();
            if (poll_once(w, d) > 0) {
                last = now;
                found = true;
                continue;
            }
            if (now - last < window)
                continue;
            /* Kicks on, one more look, then sleep. */
            if (set_polling(w, d, false) > 0) {
                (void)set_polling(w, d, true);
                last = mono_ns();
                found = true;
                continue;
            }
            polling = false;
            phase = found ? 1 : -1;
        }
        uint64_t slept = mono_ns();
        wait_and_process(w, d);
        if (mode == VBLK_NOTIFY_EVENT || !worker_has_active(w, d))
            continue;
        last = mono_ns();
        slept = last - slept;
        if (phase > 0 || (phase < 0 && slept >= max_ns / 4))
            empty = 0;
        else if (phase < 0 && ++empty == POLL_EMPTY_MAX)
            gave_up = last;
        phase = 0;
        if (empty >= POLL_EMPTY_MAX && last - gave_up >= POLL_RETRY_NS) {
            empty = 0;
            window = max_ns / 4;
        } else if (slept < max_ns && empty < POLL_EMPTY_MAX) {
            window = window * 2 > max_ns ? max_ns
                                         : (window * 2 < POLL_MIN_NS ? POLL_MIN_NS : window * 2);
        } else {
            window /= 2;
        }
        if (window >= POLL_MIN_NS) {
            (void)set_polling(w, d, true);
            polling = true;
            found = false;
        }
    }
    return NULL;
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
    atomic_store(&s->stopping, true);
    for (uint16_t i = 0; i < s->d->nq; i++)
        atomic_store(&s->d->q[i].thread, -1);
    for (uint16_t i = 0; i < s->nworkers; i++) {
        struct worker *w = &s->w[i];
        if (!w->running)
            continue;
        (void)eventfd_write(w->evfd, 1);
        /* A worker cannot stay blocked on a front-end fd (the watchdog
         * releases it), but stopping must end even if one does. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += JOIN_TIMEOUT_MS / 1000;
        int rc = pthread_timedjoin_np(w->tid, NULL, &until);
        if (rc == ETIMEDOUT) {
            unstick_all(s);
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            rc = pthread_timedjoin_np(w->tid, NULL, &until);
        }
        if (rc != 0) {
            vu_log(s->d, VBLK_LOG_ERR, "worker %u does not stop; leaving it behind", i);
            pthread_detach(w->tid);
            s->abandoned = true;
        }
        w->running = false;
    }
    if (s->abandoned)
        return;
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
        for (uint32_t q = w->first; q < d->nq && rc == 0; q += w->step) {
            rc = ep_add(w->epfd, vblk_vu_queue_fd(d, (uint16_t)q), q);
            atomic_store(&d->q[q].thread, (int)i);
        }
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
