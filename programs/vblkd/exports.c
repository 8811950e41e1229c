/* SPDX-License-Identifier: MIT */
/* vblkd's exports: creating one (backend, device, socket or VDUSE device,
 * its queues on the workers), deleting, the read-only switch,
 * counters and metrics, and the vhost-user connections. Runs on the
 * control thread; what a VDUSE device needs on its own thread goes there
 * with worker_call(). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "daemon.h"

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

/* ---- workers ---- */

/* While the control thread waits for a worker: the worker may be blocked
 * writing to a front-end's eventfd that only the watchdog releases. */
static void watchdog_all(void *arg)
{
    struct vblkd *d = arg;
    for (struct export *x = d->exports; x; x = x->next)
        if (x->vu && vblk_vu_dev_attached(x->vu))
            (void)vblk_vu_dev_watchdog(x->vu);
}

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
            if (rc == 0)
                worker_set_wait_hook(w, watchdog_all, d, WATCHDOG_MS);
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
    if (x->update_fd >= 0)
        ep_del(d, x->update_fd); /* the backend closes it */
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
    x->update_fd = -1;
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
    if (!x->spec.packed)
        x->params.features_off |= VBLK_BIT(VBLK_F_RING_PACKED);
    memcpy(x->params.serial, x->spec.serial, strnlen(x->spec.serial, VBLK_ID_BYTES));
    x->size = x->be.size;
    x->read_only = x->spec.read_only || (x->be.ops->caps & VBLK_BACKEND_CAP_READ_ONLY);
    int rc =
        x->spec.transport == VBLKD_VHOST_USER ? setup_vhost_user(d, x, e) : setup_vduse(d, x, e);
    if (rc < 0) {
        export_free(d, x);
        return -1;
    }
    const struct backend_kind *k = backend_kind_of(x->spec.backend);
    if (k != NULL && k->update_fd != NULL) {
        /* Follow resizes made on the storage's side. Not fatal: the export
         * still works, and export_resize without a size follows by hand. */
        int fd = k->update_fd(&x->be);
        x->update_tag = (struct vblkd_tag){TAG_BACKEND_UPDATE, x};
        if (fd >= 0 && ep_add(d, fd, EPOLLIN, &x->update_tag) == 0)
            x->update_fd = fd;
        else if (fd != -ENOTSUP) /* a read-only image keeps its size */
            vblkd_log(d, VBLK_LOG_WARN,
                      "%s: resizes of the image made elsewhere will not be followed (%s); "
                      "use export_resize without a size",
                      x->spec.name, strerror(fd < 0 ? -fd : errno));
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

void vu_drop(struct vblkd *d, struct export *x, int why)
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

struct worker *export_worker(struct vblkd *d, struct export *x)
{
    return d->workers[x->item_thread[0]];
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

void vu_accept(struct vblkd *d, struct export *x)
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
