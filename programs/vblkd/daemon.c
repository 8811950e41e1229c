/* SPDX-License-Identifier: MIT */
/* vblkd's control thread and exports. One thread (the caller of
 * vblkd_run_once()) accepts vhost-user front-ends, handles their messages,
 * and serves the JSON-RPC clients; worker threads (lib/transport/worker.c)
 * run the queues. Each queue belongs to one worker, so a request is
 * popped, submitted, completed and signalled on one thread. */
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

#include "vblkd.h"

/* How often the watchdog looks at attached front-ends' notification fds. */
#define WATCHDOG_MS 200
/* How long stopping waits for a worker. */
#define WORKER_STOP_MS 3000

enum { TAG_RPC_LISTEN = 1, TAG_RPC_CLIENT, TAG_VU_LISTEN, TAG_VU_CONN, TAG_STOP, TAG_METRICS };

struct rpc_client {
    struct vblkd_tag tag;
    int fd;
    json_tokener *tok;
    size_t pending; /* bytes of the request being read */
    char *out;      /* responses not yet sent */
    size_t out_len, out_off;
    bool closing; /* close once @out is sent */
    struct rpc_client *next;
};

struct vblkd {
    struct vblkd_opts o;
    char *path_prefix;
    int epfd;
    /* RPC */
    int rpc_fd;
    char *rpc_path;
    struct vblkd_tag rpc_tag, stop_tag, metrics_tag;
    struct vblkd_metrics *metrics;
    struct rpc_client *clients;
    unsigned nclients;
    bool stop;
    uint64_t stop_since;
    /* workers */
    unsigned max_threads;
    unsigned nworkers;
    struct worker **workers;
    uint64_t *load; /* queues per worker */
    uint64_t total_queues;
    /* exports */
    struct export *exports;
    unsigned nexports;
    uint64_t started, last_watch;
};

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

static void export_log(void *opaque, int level, const char *msg)
{
    struct export *x = opaque;
    vblkd_log(x->d, level, "%s: %s", x->spec.name, msg);
}

void export_spec_clear(struct export_spec *s)
{
    free(s->socket);
    free(s->vduse_name);
    if (s->backend)
        json_object_put(s->backend);
    memset(s, 0, sizeof(*s));
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

static int ep_add(struct vblkd *d, int fd, uint32_t events, struct vblkd_tag *tag)
{
    struct epoll_event ev = {.events = events, .data.ptr = tag};
    return epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static void ep_del(struct vblkd *d, int fd)
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

/* Listens on @path with permissions @mode. Returns the fd or a negative errno. */
static int listen_unix(const char *path, mode_t mode)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    int rc = claim_path(&sa);
    if (rc < 0)
        return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    /* Never reachable with more permissions than asked, not even briefly. */
    mode_t old = umask(0177);
    rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc < 0 || chmod(path, mode) < 0 || listen(fd, 16) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

static const char *listen_error(int rc)
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

/* ---- workers ---- */

/* The worker for an item that carries @weight queues: a new thread while
 * there are fewer threads than queues (and than --threads), else the least
 * loaded. Returns its index or a negative errno. */
static int pick_worker(struct vblkd *d, unsigned weight)
{
    if (d->nworkers < d->max_threads && d->nworkers < d->total_queues + weight) {
        bool idle = false;
        for (unsigned i = 0; i < d->nworkers; i++)
            idle = idle || d->load[i] == 0;
        if (!idle) {
            struct worker_opts wo = {.notify = d->o.notify, .poll_max_us = d->o.poll_max_us};
            struct worker *w;
            int rc = worker_create(&wo, &w);
            if (rc == 0 && (rc = worker_start(w)) < 0)
                worker_destroy(w);
            if (rc < 0)
                return rc;
            d->workers[d->nworkers] = w;
            d->load[d->nworkers] = 0;
            return (int)d->nworkers++;
        }
    }
    unsigned best = 0;
    for (unsigned i = 1; i < d->nworkers; i++)
        if (d->load[i] < d->load[best])
            best = i;
    return (int)best;
}

static void unassign(struct vblkd *d, struct export *x)
{
    for (unsigned i = 0; i < x->nitems; i++) {
        int t = x->item_thread[i];
        if (t < 0)
            continue;
        worker_del(d->workers[t], &x->items[i]);
        unsigned weight = x->vduse ? export_queues(x) : 1u;
        d->load[t] -= weight;
        d->total_queues -= weight;
        x->item_thread[i] = -1;
    }
}

static int assign(struct vblkd *d, struct export *x, struct vblkd_error *e)
{
    for (unsigned i = 0; i < x->nitems; i++) {
        unsigned weight = x->vduse ? export_queues(x) : 1u;
        int t = pick_worker(d, weight);
        int rc = t < 0 ? t : worker_add(d->workers[t], &x->items[i]);
        if (rc < 0) {
            vblkd_errorf(e, RPC_RESOURCE_ERROR, "cannot start a worker thread: %s", strerror(-rc));
            return -1;
        }
        x->item_thread[i] = t;
        d->load[t] += weight;
        d->total_queues += weight;
    }
    return 0;
}

/* What a vhost-user queue's worker item points to. */
struct vu_item_arg {
    struct vblk_vu_dev *vu;
    uint16_t q;
};

static int vu_process(void *arg)
{
    struct vu_item_arg *a = arg;
    return vblk_vu_queue_process(a->vu, a->q);
}

static bool vu_active(void *arg)
{
    struct vu_item_arg *a = arg;
    return vblk_vu_queue_active(a->vu, a->q);
}

static int vu_set_polling(void *arg, bool on)
{
    struct vu_item_arg *a = arg;
    return vblk_vu_queue_set_polling(a->vu, a->q, on);
}

static int vduse_process(void *arg)
{
    struct export *x = arg;
    int rc = vblk_vduse_poll(x->vduse, 0);
    if (rc < 0 && rc != -EINTR && !x->failed) {
        /* The kernel gave up on the device: stop watching it (its fd stays
         * readable) until the export is deleted. */
        x->failed = true;
        vblkd_log(x->d, VBLK_LOG_ERR, "%s: the VDUSE device failed (%s); delete the export",
                  x->spec.name, strerror(-rc));
        worker_del(x->d->workers[x->item_thread[0]], &x->items[0]);
    }
    return 0;
}

/* ---- exports ---- */

struct export *vblkd_exports(struct vblkd *d)
{
    return d->exports;
}

unsigned vblkd_export_count(const struct vblkd *d)
{
    return d->nexports;
}

struct export *export_find(struct vblkd *d, const char *name)
{
    for (struct export *x = d->exports; x; x = x->next)
        if (strcmp(x->spec.name, name) == 0)
            return x;
    return NULL;
}

uint16_t export_queues(const struct export *x)
{
    return x->params.num_queues;
}

struct vduse_state {
    struct vblk_vduse *v;
    bool attached;
};

static void vduse_attached_here(void *arg)
{
    struct vduse_state *s = arg;
    s->attached = vblk_vduse_attached(s->v) && !vblk_vduse_detached(s->v);
}

bool export_attached(struct export *x)
{
    if (x->vu)
        return vblk_vu_dev_attached(x->vu);
    if (x->vduse && x->nitems && x->item_thread[0] >= 0) {
        /* The device belongs to its worker's thread. */
        struct vduse_state s = {x->vduse, false};
        worker_call(x->d->workers[x->item_thread[0]], vduse_attached_here, &s);
        return s.attached;
    }
    return false;
}

static void export_free(struct vblkd *d, struct export *x)
{
    unassign(d, x);
    if (x->lfd >= 0) {
        ep_del(d, x->lfd);
        close(x->lfd);
        unlink(x->spec.socket);
    }
    if (x->vu) {
        ep_del(d, vblk_vu_dev_socket_fd(x->vu));
        vblk_vu_dev_destroy(x->vu);
    }
    vblk_vduse_destroy(x->vduse);
    vblk_backend_destroy(&x->be);
    free(x->item_args);
    free(x->items);
    free(x->item_thread);
    export_spec_clear(&x->spec);
    free(x);
}

static int setup_vhost_user(struct vblkd *d, struct export *x, struct vblkd_error *e)
{
    struct vblk_vu_opts vo = {
        .notify = d->o.notify,
        .poll_max_us = d->o.poll_max_us,
        .log = export_log,
        .log_opaque = x,
        .log_level = d->o.log_level,
    };
    int rc = vblk_vu_dev_create(&x->params, &x->be, &vo, &x->vu);
    if (rc < 0) {
        vblkd_errorf(e, rc == -EINVAL ? RPC_INVALID_PARAMS : RPC_RESOURCE_ERROR,
                     "cannot create the vhost-user device: %s", strerror(-rc));
        return -1;
    }
    vblk_vu_dev_set_metrics(x->vu, !d->o.no_request_metrics);
    uint16_t nq = export_queues(x);
    struct vu_item_arg *args = calloc(nq, sizeof(*args));
    x->item_args = args;
    x->items = calloc(nq, sizeof(*x->items));
    x->item_thread = calloc(nq, sizeof(*x->item_thread));
    if (!args || !x->items || !x->item_thread) {
        vblkd_errorf(e, RPC_INTERNAL_ERROR, "out of memory");
        return -1;
    }
    x->nitems = nq;
    for (uint16_t i = 0; i < nq; i++) {
        args[i] = (struct vu_item_arg){x->vu, i};
        x->items[i] = (struct worker_item){
            .fd = vblk_vu_queue_fd(x->vu, i),
            .process = vu_process,
            .active = vu_active,
            .set_polling = vu_set_polling,
            .arg = &args[i],
        };
        x->item_thread[i] = -1;
    }
    if (assign(d, x, e) < 0)
        return -1;
    x->lfd = listen_unix(x->spec.socket, 0600);
    if (x->lfd < 0) {
        int err = x->lfd;
        x->lfd = -1;
        vblkd_errorf(e,
                     err == -EADDRINUSE || err == -EEXIST ? RPC_EXPORT_EXISTS : RPC_RESOURCE_ERROR,
                     "cannot listen on %s: %s", x->spec.socket, listen_error(err));
        return -1;
    }
    x->listen_tag = (struct vblkd_tag){TAG_VU_LISTEN, x};
    x->conn_tag = (struct vblkd_tag){TAG_VU_CONN, x};
    if (ep_add(d, x->lfd, EPOLLIN, &x->listen_tag) < 0) {
        vblkd_errorf(e, RPC_INTERNAL_ERROR, "epoll: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int setup_vduse(struct vblkd *d, struct export *x, struct vblkd_error *e)
{
    if (d->o.no_vduse) {
        vblkd_errorf(e, RPC_NOT_SUPPORTED, "VDUSE exports are disabled in this daemon");
        return -1;
    }
    struct vblk_vduse_opts vo = {
        .name = x->spec.vduse_name,
        .reclaim = true,
        .exit_on_detach = true, /* tracks vdpa dev del, for export_del */
        .log = export_log,
        .log_opaque = x,
        .log_level = d->o.log_level,
    };
    int rc = vblk_vduse_create(&x->params, &x->be, &vo, &x->vduse);
    if (rc < 0) {
        const char *hint = "";
        if (rc == -ENOENT)
            hint = " (load the vduse module: modprobe vduse)";
        else if (rc == -EEXIST)
            hint = " (a VDUSE device with that name is in use)";
        else if (rc == -EACCES || rc == -EPERM)
            hint = " (no permission to use /dev/vduse/control)";
        vblkd_errorf(e, rc == -EEXIST ? RPC_EXPORT_EXISTS : RPC_RESOURCE_ERROR,
                     "cannot create VDUSE device '%s': %s%s", x->spec.vduse_name, strerror(-rc),
                     hint);
        x->vduse = NULL;
        return -1;
    }
    /* Not yet on a worker: this thread may still set it up. */
    vblk_vduse_set_metrics(x->vduse, !d->o.no_request_metrics);
    x->items = calloc(1, sizeof(*x->items));
    x->item_thread = calloc(1, sizeof(*x->item_thread));
    if (!x->items || !x->item_thread) {
        vblkd_errorf(e, RPC_INTERNAL_ERROR, "out of memory");
        return -1;
    }
    x->nitems = 1;
    x->items[0] =
        (struct worker_item){.fd = vblk_vduse_fd(x->vduse), .process = vduse_process, .arg = x};
    x->item_thread[0] = -1;
    return assign(d, x, e);
}

int export_create(struct vblkd *d, struct export_spec *spec, struct export **out,
                  struct vblkd_error *e)
{
    if (d->nexports >= VBLKD_MAX_EXPORTS) {
        vblkd_errorf(e, RPC_LIMIT, "this daemon already serves %u exports, the most it allows",
                     d->nexports);
        export_spec_clear(spec);
        return -1;
    }
    for (struct export *o = d->exports; o; o = o->next) {
        const char *clash = NULL;
        if (strcmp(o->spec.name, spec->name) == 0)
            clash = "an export with this name exists";
        else if (spec->socket && o->spec.socket && strcmp(o->spec.socket, spec->socket) == 0)
            clash = "another export listens on this socket";
        else if (spec->vduse_name && o->spec.vduse_name &&
                 strcmp(o->spec.vduse_name, spec->vduse_name) == 0)
            clash = "another export has this VDUSE name";
        if (clash) {
            vblkd_errorf(e, RPC_EXPORT_EXISTS,
                         "export '%s': %s ('%s'); delete it first or pick another", spec->name,
                         clash, o->spec.name);
            export_spec_clear(spec);
            return -1;
        }
    }
    struct export *x = calloc(1, sizeof(*x));
    if (!x) {
        vblkd_errorf(e, RPC_INTERNAL_ERROR, "out of memory");
        export_spec_clear(spec);
        return -1;
    }
    x->d = d;
    x->lfd = -1;
    x->spec = *spec;
    memset(spec, 0, sizeof(*spec));
    if (backend_open(d, x->spec.backend, x->spec.read_only, &x->be, e) < 0) {
        export_spec_clear(&x->spec);
        free(x);
        return -1;
    }
    vblk_dev_params_default(&x->params, x->be.size);
    x->params.num_queues = x->spec.queues;
    x->params.queue_size = x->spec.queue_size;
    x->params.read_only = x->spec.read_only;
    memcpy(x->params.serial, x->spec.serial, strnlen(x->spec.serial, VBLK_ID_BYTES));
    x->size = x->be.size;
    x->read_only = x->spec.read_only || (x->be.ops->caps & VBLK_BACKEND_CAP_READ_ONLY);
    int rc =
        x->spec.transport == VBLKD_VHOST_USER ? setup_vhost_user(d, x, e) : setup_vduse(d, x, e);
    if (rc < 0) {
        export_free(d, x);
        return -1;
    }
    struct export **tail = &d->exports;
    while (*tail)
        tail = &(*tail)->next;
    *tail = x;
    d->nexports++;
    vblkd_log(d, VBLK_LOG_INFO, "%s: %s export of %" PRIu64 " bytes (%s backend), %u queue(s)",
              x->spec.name, x->vu ? "vhost-user" : "VDUSE", x->size, x->be.ops->name,
              export_queues(x));
    if (out)
        *out = x;
    return 0;
}

static void vu_drop(struct vblkd *d, struct export *x, int why)
{
    ep_del(d, vblk_vu_dev_socket_fd(x->vu));
    vblk_vu_dev_detach(x->vu);
    vblkd_log(d, VBLK_LOG_INFO, "%s: front-end disconnected (%s)", x->spec.name,
              why == -ECONNRESET ? "closed" : strerror(-why));
}

int export_delete(struct vblkd *d, struct export *x, bool force, struct vblkd_error *e)
{
    if (export_attached(x) && !force) {
        if (x->vu)
            vblkd_errorf(
                e, RPC_EXPORT_BUSY,
                "export '%s' has a front-end attached; detach it first (e.g. QMP device_del) "
                "or pass \"force\": true to disconnect it",
                x->spec.name);
        else
            vblkd_errorf(e, RPC_EXPORT_BUSY,
                         "export '%s' is on the vDPA bus; run 'vdpa dev del %s' first or pass "
                         "\"force\": true",
                         x->spec.name, x->spec.vduse_name);
        return -1;
    }
    /* Stop listening, then end the connection while the workers still run
     * the queues: the requests in flight finish (or fail) and reach the
     * driver; then the workers let go of the queues. */
    if (x->lfd >= 0) {
        ep_del(d, x->lfd);
        close(x->lfd);
        x->lfd = -1;
        unlink(x->spec.socket);
    }
    if (x->vu && vblk_vu_dev_attached(x->vu))
        vu_drop(d, x, -ESHUTDOWN);
    for (struct export **p = &d->exports; *p; p = &(*p)->next)
        if (*p == x) {
            *p = x->next;
            break;
        }
    d->nexports--;
    vblkd_log(d, VBLK_LOG_INFO, "%s: deleted", x->spec.name);
    export_free(d, x);
    return 0;
}

struct vduse_call {
    struct export *x;
    uint64_t size;
    bool ro;
    int rc;
    struct vblk_transport_stats *dev;
    struct vblk_transport_queue_stats *q;
    struct vblk_transport_queue_metrics *m;
};

static void vduse_metrics_here(void *arg)
{
    struct vduse_call *c = arg;
    for (uint16_t i = 0; i < export_queues(c->x); i++)
        (void)vblk_vduse_queue_metrics(c->x->vduse, i, &c->m[i]);
}

static void vduse_resize_here(void *arg)
{
    struct vduse_call *c = arg;
    c->rc = vblk_vduse_set_capacity(c->x->vduse, c->size);
}

static void vduse_ro_here(void *arg)
{
    struct vduse_call *c = arg;
    c->rc = vblk_vduse_set_read_only(c->x->vduse, c->ro);
}

static void vduse_stats_here(void *arg)
{
    struct vduse_call *c = arg;
    vblk_vduse_stats(c->x->vduse, c->dev);
    for (uint16_t i = 0; i < export_queues(c->x); i++)
        (void)vblk_vduse_queue_stats(c->x->vduse, i, &c->q[i]);
}

static struct worker *export_worker(struct vblkd *d, struct export *x)
{
    return d->workers[x->item_thread[0]];
}

/* Tells the device (and through it the driver) the new capacity. */
static int tell_device(struct vblkd *d, struct export *x, uint64_t size, bool *notified)
{
    if (x->vu) {
        int rc = vblk_vu_dev_set_capacity(x->vu, size);
        *notified = rc == 1;
        return rc < 0 && rc != -EAGAIN && rc != -EPIPE ? rc : 0;
    }
    struct vduse_call c = {.x = x, .size = size};
    worker_call(export_worker(d, x), vduse_resize_here, &c);
    *notified = c.rc == 0 && export_attached(x);
    return c.rc;
}

int export_resize(struct vblkd *d, struct export *x, uint64_t size, bool *notified,
                  struct vblkd_error *e)
{
    *notified = false;
    if (size == 0 || size % 512) {
        vblkd_errorf(e, RPC_INVALID_PARAMS, "size %" PRIu64 " is not a positive multiple of 512",
                     size);
        return -1;
    }
    uint64_t old = x->size;
    int rc;
    if (size > old) {
        /* Storage first: the driver must never see sectors that do not exist. */
        rc = vblk_backend_resize(&x->be, size);
        if (rc == 0)
            rc = tell_device(d, x, size, notified);
    } else {
        /* The device refuses requests past the new end at once; the backend
         * then waits for those it was already given before it shrinks. */
        rc = tell_device(d, x, size, notified);
        if (rc == 0)
            rc = vblk_backend_resize(&x->be, size);
    }
    if (rc == -ENOTSUP) {
        vblkd_errorf(e, RPC_NOT_SUPPORTED,
                     "export '%s': the %s backend cannot change its size (block devices and "
                     "network images are resized outside vblkd)",
                     x->spec.name, x->be.ops->name);
        return -1;
    }
    if (rc == -ENOSPC) {
        vblkd_errorf(e, RPC_NOT_SUPPORTED,
                     "export '%s': a RAM disk can grow to twice its first size or 64 GiB, "
                     "whichever is larger; delete it and add it again with the size you need",
                     x->spec.name);
        return -1;
    }
    if (rc == -EROFS) {
        vblkd_errorf(e, RPC_NOT_SUPPORTED,
                     "export '%s': its image is open read-only; it cannot be resized",
                     x->spec.name);
        return -1;
    }
    if (rc == -ETIMEDOUT) {
        x->size = size;
        backend_spec_set_size(x->spec.backend, size);
        vblkd_errorf(e, RPC_RESOURCE_ERROR,
                     "export '%s': requests in flight did not finish within 5 s; the new size is "
                     "in force but the storage was not shrunk; retry the resize",
                     x->spec.name);
        return -1;
    }
    if (rc < 0) {
        vblkd_errorf(e, RPC_RESOURCE_ERROR, "export '%s': resize to %" PRIu64 " bytes failed: %s",
                     x->spec.name, size, strerror(-rc));
        return -1;
    }
    x->size = size;
    x->resizes++;
    backend_spec_set_size(x->spec.backend, size);
    vblkd_log(d, VBLK_LOG_INFO, "%s: resized from %" PRIu64 " to %" PRIu64 " bytes%s", x->spec.name,
              old, size, *notified ? "; driver notified" : "");
    return 0;
}

int export_set_read_only(struct vblkd *d, struct export *x, bool ro, struct vblkd_error *e)
{
    int rc;
    if (x->vu) {
        rc = vblk_vu_dev_set_read_only(x->vu, ro);
    } else {
        struct vduse_call c = {.x = x, .ro = ro};
        worker_call(export_worker(d, x), vduse_ro_here, &c);
        rc = c.rc;
    }
    if (rc == -EROFS) {
        vblkd_errorf(e, RPC_NOT_SUPPORTED,
                     "export '%s' was added read-only, so its image is open read-only; delete it "
                     "and add it again without \"read_only\"",
                     x->spec.name);
        return -1;
    }
    if (rc < 0) {
        vblkd_errorf(e, RPC_INTERNAL_ERROR, "%s", strerror(-rc));
        return -1;
    }
    x->read_only = ro;
    x->spec.read_only = ro;
    vblkd_log(d, VBLK_LOG_INFO, "%s: %s", x->spec.name, ro ? "read-only" : "writable");
    return 0;
}

void export_stats(struct vblkd *d, struct export *x, struct vblk_transport_stats *dev,
                  struct vblk_transport_queue_stats *q)
{
    uint16_t nq = export_queues(x);
    memset(dev, 0, sizeof(*dev));
    memset(q, 0, nq * sizeof(*q));
    if (x->vu) {
        vblk_vu_dev_stats(x->vu, dev);
        for (uint16_t i = 0; i < nq; i++) {
            (void)vblk_vu_queue_stats(x->vu, i, &q[i]);
            q[i].thread = x->item_thread[i];
        }
        return;
    }
    struct vduse_call c = {.x = x, .dev = dev, .q = q};
    worker_call(export_worker(d, x), vduse_stats_here, &c);
    for (uint16_t i = 0; i < nq; i++)
        q[i].thread = x->item_thread[0];
}

const char *const vblkd_metric_kinds[VBLK_METRIC_KINDS] = {
    "read", "write", "flush", "discard", "write_zeroes", "other",
};

void export_metrics(struct vblkd *d, struct export *x, struct vblk_transport_queue_metrics *m)
{
    uint16_t nq = export_queues(x);
    memset(m, 0, nq * sizeof(*m));
    if (x->vu) {
        for (uint16_t i = 0; i < nq; i++)
            (void)vblk_vu_queue_metrics(x->vu, i, &m[i]);
        return;
    }
    struct vduse_call c = {.x = x, .m = m};
    worker_call(export_worker(d, x), vduse_metrics_here, &c);
}

uint64_t metrics_percentile_us(const struct vblk_transport_queue_metrics *m, double p)
{
    uint64_t total = 0, seen = 0;
    for (unsigned i = 0; i < VBLK_LATENCY_BUCKETS; i++)
        total += m->latency[i];
    if (!total)
        return 0;
    for (unsigned i = 0; i < VBLK_LATENCY_BUCKETS; i++) {
        seen += m->latency[i];
        if ((double)seen >= p * (double)total)
            return (uint64_t)1 << i;
    }
    return (uint64_t)1 << (VBLK_LATENCY_BUCKETS - 1);
}

/* ---- vhost-user connections ---- */

static void vu_accept(struct vblkd *d, struct export *x)
{
    int fd = accept4(x->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    /* The previous front-end may be gone with its hang-up not read yet. */
    if (vblk_vu_dev_attached(x->vu)) {
        int r = vblk_vu_dev_handle_socket(x->vu);
        if (r < 0)
            vu_drop(d, x, r);
    }
    if (vblk_vu_dev_attached(x->vu)) {
        vblkd_log(d, VBLK_LOG_WARN, "%s: refusing a second front-end: one is connected",
                  x->spec.name);
        close(fd);
        return;
    }
    if (vblk_vu_dev_attach(x->vu, fd) < 0) {
        close(fd);
        return;
    }
    if (ep_add(d, fd, EPOLLIN, &x->conn_tag) < 0) {
        vblk_vu_dev_detach(x->vu);
        return;
    }
    vblkd_log(d, VBLK_LOG_INFO, "%s: front-end connected", x->spec.name);
}

/* ---- RPC clients ---- */

static void client_free(struct vblkd *d, struct rpc_client *c)
{
    for (struct rpc_client **p = &d->clients; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    d->nclients--;
    ep_del(d, c->fd);
    close(c->fd);
    json_tokener_free(c->tok);
    free(c->out);
    free(c);
}

static void client_flush(struct vblkd *d, struct rpc_client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n =
            send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            c->closing = true;
            c->out_off = c->out_len;
            break;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
    }
    struct epoll_event ev = {.events = EPOLLIN | (c->out_len ? EPOLLOUT : 0u), .data.ptr = &c->tag};
    (void)epoll_ctl(d->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void client_send(struct vblkd *d, struct rpc_client *c, const char *text)
{
    size_t len = strlen(text);
    if (c->out_len - c->out_off + len + 1 > VBLKD_RPC_MAX_OUTPUT) {
        /* It does not read its answers: drop it rather than buffer more. */
        vblkd_log(d, VBLK_LOG_WARN, "RPC client does not read its responses; disconnecting it");
        c->closing = true;
        c->out_off = c->out_len = 0;
        return;
    }
    if (c->out_off) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    char *n = realloc(c->out, c->out_len + len + 1);
    if (!n) {
        c->closing = true;
        return;
    }
    c->out = n;
    memcpy(c->out + c->out_len, text, len);
    c->out[c->out_len + len] = '\n';
    c->out_len += len + 1;
    client_flush(d, c);
}

static void client_error(struct vblkd *d, struct rpc_client *c, int code, const char *msg)
{
    json_object *r = json_object_new_object();
    json_object_object_add(r, "jsonrpc", json_object_new_string("2.0"));
    json_object *err = json_object_new_object();
    json_object_object_add(err, "code", json_object_new_int(code));
    json_object_object_add(err, "message", json_object_new_string(msg));
    json_object_object_add(r, "error", err);
    json_object_object_add(r, "id", NULL);
    client_send(d, c, json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN));
    json_object_put(r);
}

static json_tokener *new_tokener(void)
{
    json_tokener *tok = json_tokener_new_ex(VBLKD_RPC_MAX_DEPTH);
    if (tok) {
        int flags = JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8;
#ifdef JSON_TOKENER_ALLOW_TRAILING_CHARS
        flags |= JSON_TOKENER_ALLOW_TRAILING_CHARS;
#endif
        json_tokener_set_flags(tok, flags);
    }
    return tok;
}

static void rpc_accept(struct vblkd *d)
{
    int fd = accept4(d->rpc_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    if (d->nclients >= VBLKD_RPC_MAX_CLIENTS) {
        vblkd_log(d, VBLK_LOG_WARN, "refusing an RPC client: %u are connected",
                  VBLKD_RPC_MAX_CLIENTS);
        close(fd);
        return;
    }
    struct rpc_client *c = calloc(1, sizeof(*c));
    if (!c || !(c->tok = new_tokener())) {
        free(c);
        close(fd);
        return;
    }
    c->fd = fd;
    c->tag = (struct vblkd_tag){TAG_RPC_CLIENT, c};
    if (ep_add(d, fd, EPOLLIN, &c->tag) < 0) {
        json_tokener_free(c->tok);
        free(c);
        close(fd);
        return;
    }
    c->next = d->clients;
    d->clients = c;
    d->nclients++;
}

/* Feeds what the client sent to the tokener; handles each complete request. */
static void client_input(struct vblkd *d, struct rpc_client *c, const char *buf, size_t n)
{
    size_t off = 0;
    while (off < n && !c->closing) {
        /* Whitespace between requests is not part of one. */
        if (c->pending == 0 &&
            (buf[off] == ' ' || buf[off] == '\n' || buf[off] == '\r' || buf[off] == '\t')) {
            off++;
            continue;
        }
        size_t chunk = n - off;
        if (c->pending + chunk > VBLKD_RPC_MAX_REQUEST)
            chunk = VBLKD_RPC_MAX_REQUEST - c->pending + 1;
        json_object *o = json_tokener_parse_ex(c->tok, buf + off, (int)chunk);
        enum json_tokener_error err = json_tokener_get_error(c->tok);
        if (err == json_tokener_continue) {
            c->pending += chunk;
            off += chunk;
            if (c->pending > VBLKD_RPC_MAX_REQUEST) {
                char msg[128];
                snprintf(msg, sizeof(msg), "request larger than %u bytes; closing the connection",
                         VBLKD_RPC_MAX_REQUEST);
                client_error(d, c, RPC_INVALID_REQUEST, msg);
                c->closing = true;
            }
            continue;
        }
        if (err != json_tokener_success) {
            char msg[160];
            snprintf(msg, sizeof(msg), "parse error: %s; closing the connection",
                     json_tokener_error_desc(err));
            client_error(d, c, RPC_PARSE_ERROR, msg);
            c->closing = true;
            json_object_put(o);
            break;
        }
        size_t used = json_tokener_get_parse_end(c->tok);
        off += used;
        c->pending = 0;
        json_tokener_reset(c->tok);
        json_object *resp = vblkd_rpc_call(d, o);
        json_object_put(o);
        if (resp) {
            client_send(d, c, json_object_to_json_string_ext(resp, JSON_C_TO_STRING_PLAIN));
            json_object_put(resp);
        }
    }
}

static void client_event(struct vblkd *d, struct rpc_client *c, uint32_t events)
{
    if (events & EPOLLOUT)
        client_flush(d, c);
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->closing) {
        char buf[16384];
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            /* Gone, possibly in the middle of a request: forget it. */
            client_free(d, c);
            return;
        }
        client_input(d, c, buf, (size_t)n);
    }
    if (c->closing && c->out_len == 0)
        client_free(d, c);
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
