/* SPDX-License-Identifier: MIT */
/* vblkd's control thread: creating the daemon, its listening sockets, the
 * control loop (vhost-user connections and their messages, the JSON-RPC
 * clients, the metrics server, the watchdog) and stopping. Worker threads
 * (lib/transport/worker.c) run the queues (exports.c); each queue belongs
 * to one worker, so a request is popped, submitted, completed and
 * signalled on one thread. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "transport/unix_listen.h"

/* How long stopping waits for a worker. */
#define WORKER_STOP_MS 3000

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void vblkd_errorf(struct vblkd_error *e, int code, const char *fmt, ...)
{
    va_list ap;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
}

void vblkd_log(struct vblkd *d, int level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    if (level > d->o.log_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "vblkd: %s: %s\n", names[level & 3], msg);
}

int vblkd_check_path(struct vblkd *d, const char *what, const char *path, size_t max,
                     struct vblkd_error *e)
{
    size_t len = strlen(path);
    if (len == 0 || path[0] != '/') {
        vblkd_errorf(e, RPC_INVALID_PARAMS, "%s '%.200s' must be an absolute path", what, path);
        return -1;
    }
    if (len > max) {
        vblkd_errorf(e, RPC_INVALID_PARAMS, "%s is %zu bytes long; at most %zu are allowed", what,
                     len, max);
        return -1;
    }
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            vblkd_errorf(e, RPC_INVALID_PARAMS, "%s contains a control character", what);
            return -1;
        }
    /* ".." would let a path escape --path-prefix. */
    for (const char *p = path; (p = strstr(p, "..")) != NULL; p += 2)
        if (p[-1] == '/' && (p[2] == '/' || p[2] == '\0')) {
            vblkd_errorf(e, RPC_INVALID_PARAMS, "%s '%.200s' must not contain '..'", what, path);
            return -1;
        }
    if (d->path_prefix) {
        size_t n = strlen(d->path_prefix);
        if (strncmp(path, d->path_prefix, n) != 0 || (path[n] != '/' && path[n - 1] != '/')) {
            vblkd_errorf(e, RPC_INVALID_PARAMS, "%s '%.200s' is outside %s (--path-prefix)", what,
                         path, d->path_prefix);
            return -1;
        }
    }
    return 0;
}

int ep_add(struct vblkd *d, int fd, uint32_t events, struct vblkd_tag *tag)
{
    struct epoll_event ev = {.events = events, .data.ptr = tag};
    return epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

void ep_del(struct vblkd *d, int fd)
{
    if (fd >= 0)
        (void)epoll_ctl(d->epfd, EPOLL_CTL_DEL, fd, NULL);
}

/* ---- creation ---- */

int vblkd_create(const struct vblkd_opts *o, struct vblkd **out)
{
    struct vblkd *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->o = *o;
    d->rpc_fd = -1;
    d->started = now_ms();
    if (o->path_prefix) {
        d->path_prefix = strdup(o->path_prefix);
        if (!d->path_prefix) {
            free(d);
            return -ENOMEM;
        }
        d->o.path_prefix = d->path_prefix;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    d->max_threads = o->threads ? o->threads : (cpus > 0 ? (unsigned)cpus : 1u);
    if (d->max_threads > VBLKD_MAX_THREADS)
        d->max_threads = VBLKD_MAX_THREADS;
    d->workers = calloc(d->max_threads, sizeof(*d->workers));
    d->load = calloc(d->max_threads, sizeof(*d->load));
    d->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!d->workers || !d->load || d->epfd < 0) {
        int rc = d->epfd < 0 ? -errno : -ENOMEM;
        vblkd_destroy(d);
        return rc;
    }
    d->rpc_tag = (struct vblkd_tag){TAG_RPC_LISTEN, d};
    d->stop_tag = (struct vblkd_tag){TAG_STOP, d};
    d->metrics_tag = (struct vblkd_tag){TAG_METRICS, d};
    *out = d;
    return 0;
}

/* Listens on @path with permissions @mode. Returns the fd or a negative errno. */
int listen_unix(const char *path, mode_t mode)
{
    return unix_listen(path, (int)mode, 16);
}

const char *listen_error(int rc)
{
    switch (rc) {
    case -EADDRINUSE:
        return "another server is listening on it";
    case -EEXIST:
        return "the path exists and is not a socket; not replacing it";
    case -ENAMETOOLONG:
        return "the path is too long (at most 107 bytes)";
    default:
        return strerror(-rc);
    }
}

int vblkd_listen_rpc(struct vblkd *d, const char *path, mode_t mode)
{
    int fd = listen_unix(path, mode);
    if (fd < 0) {
        vblkd_log(d, VBLK_LOG_ERR, "cannot listen on %s: %s", path, listen_error(fd));
        return fd;
    }
    d->rpc_fd = fd;
    d->rpc_path = strdup(path);
    if (!d->rpc_path)
        return -ENOMEM;
    return ep_add(d, fd, EPOLLIN, &d->rpc_tag);
}

int vblkd_serve_metrics(struct vblkd *d, const char *addr, struct vblkd_error *e)
{
#if VBLKD_HAVE_METRICS
    if (vblkd_metrics_start(d, addr, &d->metrics, e) < 0)
        return -1;
    if (ep_add(d, vblkd_metrics_fd(d->metrics), EPOLLIN, &d->metrics_tag) < 0) {
        vblkd_errorf(e, RPC_INTERNAL_ERROR, "epoll: %s", strerror(errno));
        vblkd_metrics_stop(d->metrics);
        d->metrics = NULL;
        return -1;
    }
    return 0;
#else
    (void)d;
    vblkd_errorf(e, RPC_NOT_SUPPORTED,
                 "--metrics %s: this vblkd was built without libmicrohttpd "
                 "(Debian: libmicrohttpd-dev)",
                 addr);
    return -1;
#endif
}

uint16_t vblkd_metrics_port_of(const struct vblkd *d)
{
#if VBLKD_HAVE_METRICS
    return d->metrics ? vblkd_metrics_port(d->metrics) : 0;
#else
    (void)d;
    return 0;
#endif
}

int vblkd_add_stop_fd(struct vblkd *d, int fd)
{
    return ep_add(d, fd, EPOLLIN, &d->stop_tag);
}

/* ---- the loop ---- */

int vblkd_run_once(struct vblkd *d, int timeout_ms)
{
    bool any_attached = false;
    for (struct export *x = d->exports; x; x = x->next)
        any_attached = any_attached || (x->vu && vblk_vu_dev_attached(x->vu));
    int t = timeout_ms;
    if (any_attached && (t < 0 || t > WATCHDOG_MS))
        t = WATCHDOG_MS;
    if (d->stop && (t < 0 || t > 50))
        t = 50;
#if VBLKD_HAVE_METRICS
    if (d->metrics) {
        int mt = vblkd_metrics_timeout(d->metrics);
        if (mt >= 0 && (t < 0 || mt < t))
            t = mt;
    }
#endif
    struct epoll_event ev[32];
    int n = epoll_wait(d->epfd, ev, 32, t);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    /* Front-ends first (their hang-ups make room for new connections),
     * then new connections, then the RPC clients, which may delete exports
     * and so must come after every event that names one. */
    for (int i = 0; i < n; i++) {
        struct vblkd_tag *tag = ev[i].data.ptr;
        if (tag->kind != TAG_VU_CONN)
            continue;
        struct export *x = tag->obj;
        if (!vblk_vu_dev_attached(x->vu))
            continue;
        int r = vblk_vu_dev_handle_socket(x->vu);
        if (r < 0)
            vu_drop(d, x, r);
    }
    for (int i = 0; i < n; i++) {
        struct vblkd_tag *tag = ev[i].data.ptr;
        if (tag->kind == TAG_VU_LISTEN)
            vu_accept(d, tag->obj);
        else if (tag->kind == TAG_RPC_LISTEN)
            rpc_accept(d);
        else if (tag->kind == TAG_STOP)
            d->stop = true;
        else if (tag->kind == TAG_BACKEND_UPDATE)
            export_follow(d, tag->obj);
    }
#if VBLKD_HAVE_METRICS
    /* Also after a timeout: connections time out. */
    if (d->metrics)
        vblkd_metrics_run(d->metrics);
#endif
    for (int i = 0; i < n; i++) {
        struct vblkd_tag *tag = ev[i].data.ptr;
        if (tag->kind != TAG_RPC_CLIENT)
            continue;
        /* A client freed earlier in this round cannot be named twice: each
         * fd appears once per epoll_wait. */
        client_event(d, tag->obj, ev[i].events);
    }
    uint64_t now = now_ms();
    if (now - d->last_watch >= WATCHDOG_MS) {
        d->last_watch = now;
        for (struct export *x = d->exports; x; x = x->next)
            if (x->vu && vblk_vu_dev_attached(x->vu))
                (void)vblk_vu_dev_watchdog(x->vu);
    }
    if (d->stop && !d->stop_since)
        d->stop_since = now;
    return 0;
}

void vblkd_request_stop(struct vblkd *d)
{
    d->stop = true;
}

bool vblkd_stopping(const struct vblkd *d)
{
    if (!d->stop)
        return false;
    /* Let the answers (server_shutdown's own) go out first, briefly. */
    bool pending = false;
    for (struct rpc_client *c = d->clients; c; c = c->next)
        pending = pending || c->out_len > 0;
    return !pending || (d->stop_since && now_ms() - d->stop_since > 1000);
}

unsigned vblkd_threads(const struct vblkd *d)
{
    return d->nworkers;
}

unsigned vblkd_max_threads(const struct vblkd *d)
{
    return d->max_threads;
}

const struct vblkd_opts *vblkd_options(const struct vblkd *d)
{
    return &d->o;
}

const char *vblkd_rpc_path(const struct vblkd *d)
{
    return d->rpc_path;
}

double vblkd_uptime(const struct vblkd *d)
{
    return (double)(now_ms() - d->started) / 1000.0;
}

void vblkd_destroy(struct vblkd *d)
{
    if (!d)
        return;
    struct vblkd_error e;
    while (d->exports)
        (void)export_delete(d, d->exports, true, &e);
    while (d->clients)
        client_free(d, d->clients);
    for (unsigned i = 0; i < d->nworkers; i++) {
        if (worker_stop(d->workers[i], WORKER_STOP_MS) < 0) {
            vblkd_log(d, VBLK_LOG_ERR, "worker %u does not stop; leaving it behind", i);
            worker_abandon(d->workers[i]);
        }
        worker_destroy(d->workers[i]);
    }
    if (d->rpc_fd >= 0) {
        close(d->rpc_fd);
        unlink(d->rpc_path);
    }
#if VBLKD_HAVE_METRICS
    vblkd_metrics_stop(d->metrics);
#endif
    if (d->epfd >= 0)
        close(d->epfd);
    free(d->rpc_path);
    free(d->workers);
    free(d->load);
    free(d->path_prefix);
    free(d);
}
