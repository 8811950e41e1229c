/* SPDX-License-Identifier: MIT */
/* vblkd's control thread: creating the daemon, its listening sockets, the
 * control loop (vhost-user connections and their messages, the JSON-RPC
 * clients, the metrics server, the watchdog) and stopping. Worker threads
 * (lib/transport/worker.c) run the queues (exports.c); each queue belongs
 * to one worker, so a request is popped, submitted, completed and
 * signalled on one thread. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "daemon.h"

/* How long stopping waits for a worker. */
#define WORKER_STOP_MS 3000

/* ---- creation ---- */

int vblkd_create(const struct vblkd_opts *o, struct vblkd **out)
{
    struct vblkd *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->o = *o;
    d->rpc_fd = -1;
    d->started = vblkd_now_ms();
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
    d->metrics_port = vblkd_metrics_port(d->metrics);
    if (ep_add(d, vblkd_metrics_fd(d->metrics), EPOLLIN, &d->metrics_tag) < 0) {
        vblkd_errorf(e, RPC_INTERNAL_ERROR, "epoll: %s", strerror(errno));
        vblkd_metrics_stop(d->metrics);
        d->metrics = NULL;
        d->metrics_port = 0;
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
    uint64_t now = vblkd_now_ms();
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
