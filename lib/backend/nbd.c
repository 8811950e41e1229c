/* SPDX-License-Identifier: MIT */
/*
 * The NBD backend: opening the export, and the backend methods that give
 * each queue its connection (its own one with multi-conn, else the shared
 * one) and move it on from the queue's event loop. The connection itself
 * is in nbd_conn.c.
 *
 * A queue's queue_fd() is an epoll fd. The queue that drives a connection
 * has the connection's socket (events as libnbd asks) and its timerfd in
 * it; poll() looks at it without blocking and lets the connection act.
 * With a shared connection, the other queues only submit; their poll()
 * moves the connection on too while they have requests in flight, so a
 * queue can drain even while the driving queue's thread is held (the
 * vhost-user transport pauses every queue to change the memory table).
 */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/un.h>
#include <unistd.h>

#include <libnbd.h>

#include "backend/backend_internal.h"
#include "backend/nbd_internal.h"

/* ---- backend methods ---- */

static int nbdbe_queue_start(void *ctx, uint16_t qidx, void **qctx)
{
    struct nbdbe_be *be = ctx;
    struct nbdbe_conn *c = NULL;
    struct nbdbe_q *q = calloc(1, sizeof(*q));

    if (q == NULL)
        return -ENOMEM;
    q->be = be;
    q->qidx = qidx;
    atomic_init(&q->pending, 0);
    atomic_init(&q->is_driver, false);
    q->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (q->epfd < 0) {
        int r = -errno;
        free(q);
        return r;
    }
    if (be->multi) {
        pthread_mutex_lock(&be->lock);
        c = be->idle;
        if (c != NULL)
            be->idle = c->next_idle;
        pthread_mutex_unlock(&be->lock);
        if (c != NULL) {
            pthread_mutex_lock(&c->lock);
            bool ok = nbdbe_conn_idle_usable(c);
            pthread_mutex_unlock(&c->lock);
            if (!ok) {
                nbdbe_conn_free(c);
                c = NULL;
                pthread_mutex_lock(&be->lock);
                be->nconn--;
                pthread_mutex_unlock(&be->lock);
            }
        }
        if (c == NULL) {
            char err[256];
            c = nbdbe_conn_new(be);
            if (c == NULL) {
                close(q->epfd);
                free(q);
                return -ENOMEM;
            }
            pthread_mutex_lock(&be->lock);
            be->nconn++;
            pthread_mutex_unlock(&be->lock);
            /* A failure is not fatal: the queue fails requests fast and the
             * connection is retried in the background. */
            pthread_mutex_lock(&c->lock);
            if (nbdbe_conn_connect_sync(c, err, sizeof(err)) < 0)
                nbdbe_log(be, VBLK_LOG_WARN, "%s: queue %u: cannot connect (%s); retrying",
                          be->uri_str, qidx, err);
            pthread_mutex_unlock(&c->lock);
        }
    } else {
        c = be->shared;
    }
    pthread_mutex_lock(&c->lock);
    c->cur = q;
    nbdbe_conn_attach(c, q);
    c->cur = NULL;
    pthread_mutex_unlock(&c->lock);
    *qctx = q;
    return 0;
}

static void nbdbe_queue_stop(void *ctx, uint16_t qidx, void *qctx)
{
    struct nbdbe_be *be = ctx;
    struct nbdbe_q *q = qctx;
    struct nbdbe_conn *c = q->c;
    bool keep;

    (void)qidx;
    pthread_mutex_lock(&c->lock);
    c->cur = q;
    nbdbe_conn_detach(c, q);
    c->cur = NULL;
    keep = c->state == C_READY && c->head == NULL;
    pthread_mutex_unlock(&c->lock);
    if (be->multi) {
        if (keep) {
            pthread_mutex_lock(&be->lock);
            c->next_idle = be->idle;
            be->idle = c;
            pthread_mutex_unlock(&be->lock);
        } else {
            nbdbe_conn_free(c);
            pthread_mutex_lock(&be->lock);
            be->nconn--;
            pthread_mutex_unlock(&be->lock);
        }
    }
    close(q->epfd);
    free(q);
}

static void nbdbe_submit(void *ctx, void *qctx, struct vblk_req *req)
{
    struct nbdbe_q *q = qctx;
    struct nbdbe_conn *c = q->c;

    (void)ctx;
    pthread_mutex_lock(&c->lock);
    c->cur = q;
    nbdbe_conn_submit(c, req);
    c->cur = NULL;
    pthread_mutex_unlock(&c->lock);
}

static void nbdbe_submit_done(void *ctx, void *qctx)
{
    struct nbdbe_q *q = qctx;
    struct nbdbe_conn *c = q->c;

    (void)ctx;
    pthread_mutex_lock(&c->lock);
    c->cur = q;
    nbdbe_conn_rearm(c);
    c->cur = NULL;
    pthread_mutex_unlock(&c->lock);
}

static int nbdbe_poll(void *ctx, void *qctx)
{
    struct nbdbe_q *q = qctx;
    struct nbdbe_conn *c = q->c;

    (void)ctx;
    q->completed = 0;
    if (atomic_load_explicit(&q->is_driver, memory_order_relaxed)) {
        struct epoll_event ev[4];
        int n = epoll_wait(q->epfd, ev, 4, 0);
        if (n <= 0)
            return 0;
        pthread_mutex_lock(&c->lock);
        c->cur = q;
        int revents = 0;
        for (int i = 0; i < n; i++) {
            if (ev[i].data.u32 == NBD_TAG_TIMER)
                nbdbe_conn_timer_fired(c);
            else
                revents |= (int)ev[i].events; /* EPOLLIN == POLLIN, ... */
        }
        nbdbe_conn_service(c, revents);
        c->cur = NULL;
        pthread_mutex_unlock(&c->lock);
    } else if (atomic_load_explicit(&q->pending, memory_order_relaxed) > 0 &&
               pthread_mutex_trylock(&c->lock) == 0) {
        c->cur = q;
        nbdbe_conn_service(c, -1);
        c->cur = NULL;
        pthread_mutex_unlock(&c->lock);
    }
    return q->completed;
}

static int nbdbe_queue_fd(void *ctx, void *qctx)
{
    struct nbdbe_q *q = qctx;
    (void)ctx;
    return q->epfd;
}

static void nbdbe_destroy(void *ctx)
{
    struct nbdbe_be *be = ctx;
    if (be == NULL)
        return;
    while (be->idle != NULL) {
        struct nbdbe_conn *c = be->idle;
        be->idle = c->next_idle;
        nbdbe_conn_free(c);
    }
    nbdbe_conn_free(be->shared);
    pthread_mutex_destroy(&be->lock);
    free(be->uri_str);
    free(be);
}

int vblk_backend_nbd_stats(const struct vblk_backend *b, struct vblk_nbd_stats *st)
{
    if (b == NULL || st == NULL || b->ops == NULL || b->ops->submit != nbdbe_submit)
        return -EINVAL;
    struct nbdbe_be *be = b->ctx;
    pthread_mutex_lock(&be->lock);
    *st = be->st;
    st->connections = be->multi ? be->nconn : 1;
    st->multi_conn = be->multi;
    pthread_mutex_unlock(&be->lock);
    return 0;
}

/* ---- opening ---- */

/* Resolves the URI's address. Returns 0 or a negative errno, with a reason. */
static int resolve(struct nbdbe_be *be, struct addrinfo **list, char *err, size_t errlen)
{
    if (be->uri.unix_socket) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&be->addr;
        memset(sun, 0, sizeof(*sun));
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, be->uri.socket, strlen(be->uri.socket));
        be->addrlen = (socklen_t)sizeof(*sun);
        *list = NULL;
        return 0;
    }
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    int r = getaddrinfo(be->uri.host, be->uri.port, &hints, list);
    if (r != 0) {
        snprintf(err, errlen, "cannot resolve '%s': %s", be->uri.host, gai_strerror(r));
        return r == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
    }
    return 0;
}

/* Connects @p c to the first address of @p list that answers. */
static int connect_first(struct nbdbe_be *be, struct nbdbe_conn *c, struct addrinfo *list,
                         char *err, size_t errlen)
{
    if (list == NULL)
        return nbdbe_conn_connect_sync(c, err, errlen);
    int r = -EHOSTUNREACH;
    for (struct addrinfo *a = list; a != NULL; a = a->ai_next) {
        if (a->ai_addrlen > sizeof(be->addr))
            continue;
        memcpy(&be->addr, a->ai_addr, a->ai_addrlen);
        be->addrlen = a->ai_addrlen;
        r = nbdbe_conn_connect_sync(c, err, errlen);
        if (r == 0)
            break;
    }
    return r;
}

/*
 * NBD has no standard way to resize an export from the client, so a resize
 * adopts the size the server reports now: a fresh connection reads it, and
 * only if it is @p size does the capacity change. The connections then
 * replace themselves (nbd_conn.c), and a shrink waits for the requests
 * checked against the old size.
 */
static int nbdbe_resize(void *ctx, uint64_t size)
{
    struct nbdbe_be *be = ctx;
    char err[320];
    uint64_t now;
    int r = nbdbe_probe_size(be, &now, err, sizeof(err));

    if (r < 0) {
        nbdbe_log(be, VBLK_LOG_ERR, "%s: resize: cannot connect: %s", be->uri_str, err);
        /* -ETIMEDOUT would say the new size is in force. */
        return r == -ETIMEDOUT ? -ETIME : r;
    }
    if (now - now % VBLK_SECTOR_SIZE != size) {
        nbdbe_log(be, VBLK_LOG_ERR, "%s: resize to %llu bytes: the server reports %llu bytes",
                  be->uri_str, (unsigned long long)size, (unsigned long long)now);
        return -ERANGE;
    }
    uint64_t old = be_guard_size(&be->guard);
    pthread_mutex_lock(&be->lock);
    be->size = now;
    atomic_fetch_add(&be->gen, 1u);
    pthread_mutex_unlock(&be->lock);
    nbdbe_log(be, VBLK_LOG_INFO, "%s: resized from %llu to %llu bytes", be->uri_str,
              (unsigned long long)old, (unsigned long long)size);
    if (size >= old) {
        atomic_store(&be->guard.size, size);
        return 0;
    }
    return be_guard_set_size(&be->guard, size, BE_RESIZE_TIMEOUT_MS);
}

int vblk_backend_nbd_server_size(const struct vblk_backend *b, uint64_t *size)
{
    char err[320];
    if (b == NULL || size == NULL || b->ops == NULL || b->ops->submit != nbdbe_submit)
        return -EINVAL;
    struct nbdbe_be *be = b->ctx;
    int r = nbdbe_probe_size(be, size, err, sizeof(err));
    if (r < 0)
        nbdbe_log(be, VBLK_LOG_ERR, "%s: cannot connect: %s", be->uri_str, err);
    return r;
}

static void set_ops(struct nbdbe_be *be)
{
    be->ops.version = VBLK_BACKEND_OPS_V3;
    be->ops.resize = nbdbe_resize;
    be->ops.name = "nbd";
    be->ops.queue_start = nbdbe_queue_start;
    be->ops.queue_stop = nbdbe_queue_stop;
    be->ops.submit = nbdbe_submit;
    be->ops.submit_done = nbdbe_submit_done;
    be->ops.poll = nbdbe_poll;
    be->ops.queue_fd = nbdbe_queue_fd;
    be->ops.destroy = nbdbe_destroy;
    if (be->read_only) {
        be->ops.caps = VBLK_BACKEND_CAP_READ_ONLY;
        return;
    }
    if (be->can_flush)
        be->ops.caps |= VBLK_BACKEND_CAP_FLUSH;
    if (be->can_trim)
        be->ops.caps |= VBLK_BACKEND_CAP_DISCARD;
    if (be->can_zero)
        be->ops.caps |= VBLK_BACKEND_CAP_WRITE_ZEROES;
}

/* Reads what the export offers from the connected handle. */
static int learn_export(struct nbdbe_be *be, struct nbd_handle *h, char *err, size_t errlen)
{
    int64_t size = nbd_get_size(h);
    if (size < 0) {
        snprintf(err, errlen, "cannot get the export's size: %s", nbd_get_error());
        return -EIO;
    }
    if (size < VBLK_SECTOR_SIZE) {
        snprintf(err, errlen, "the export has %lld bytes, less than one 512-byte sector",
                 (long long)size);
        return -EMEDIUMTYPE;
    }
    be->size = (uint64_t)size;
    be->read_only = be->cfg.read_only || nbd_is_read_only(h) == 1;
    be->can_flush = nbd_can_flush(h) == 1;
    be->can_fua = nbd_can_fua(h) == 1;
    be->can_trim = nbd_can_trim(h) == 1;
    be->can_zero = nbd_can_zero(h) == 1;
    be->multi = nbd_can_multi_conn(h) == 1 && !be->cfg.one_connection;
    be->payload_max = nbdbe_payload_max(nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM));
    return 0;
}

int vblk_backend_nbd_open(const char *uri, const struct vblk_nbd_opts *opts,
                          struct vblk_backend *out)
{
    struct nbdbe_be *be;
    struct nbdbe_conn *c = NULL;
    struct addrinfo *list = NULL;
    char err[320];
    int r;

    if (out == NULL)
        return -EINVAL;
    if (uri == NULL && opts != NULL)
        uri = opts->uri;
    /* The resize guard's slots are cache-line aligned. */
    if (posix_memalign((void **)&be, 64, sizeof(*be)) != 0)
        return -ENOMEM;
    memset(be, 0, sizeof(*be));
    atomic_init(&be->gen, 0u);
    pthread_mutex_init(&be->lock, NULL);
    r = nbdbe_cfg_from_opts(opts, &be->cfg, err, sizeof(err));
    if (r < 0) {
        nbdbe_log(be, VBLK_LOG_ERR, "nbd: bad options: %s", err);
        goto fail;
    }
    if (uri == NULL) {
        nbdbe_log(be, VBLK_LOG_ERR, "nbd: no URI given");
        r = -EINVAL;
        goto fail;
    }
    be->uri_str = strdup(uri);
    if (be->uri_str == NULL) {
        r = -ENOMEM;
        goto fail;
    }
    r = nbdbe_uri_parse(uri, &be->uri, err, sizeof(err));
    if (r < 0) {
        nbdbe_log(be, VBLK_LOG_ERR, "bad NBD URI '%s': %s", uri, err);
        goto fail;
    }
    r = resolve(be, &list, err, sizeof(err));
    if (r < 0) {
        nbdbe_log(be, VBLK_LOG_ERR, "%s: %s", uri, err);
        goto fail;
    }
    c = nbdbe_conn_new(be);
    if (c == NULL) {
        r = -ENOMEM;
        goto fail;
    }
    pthread_mutex_lock(&c->lock);
    r = connect_first(be, c, list, err, sizeof(err));
    if (r == 0)
        r = learn_export(be, c->h, err, sizeof(err));
    pthread_mutex_unlock(&c->lock);
    if (list != NULL)
        freeaddrinfo(list);
    if (r < 0) {
        nbdbe_log(be, VBLK_LOG_ERR, "%s: cannot connect: %s", uri, err);
        goto fail;
    }
    be->nconn = 1;
    be->st.connects = 1;
    if (be->multi)
        be->idle = c;
    else
        be->shared = c;
    set_ops(be);
    nbdbe_log(be, VBLK_LOG_INFO,
              "%s: %llu bytes%s; flush %s, fua %s, trim %s, zero %s; %s; max request %u bytes", uri,
              (unsigned long long)be->size, be->read_only ? ", read-only" : "",
              be->can_flush ? "yes" : "no", be->can_fua ? "yes" : "no", be->can_trim ? "yes" : "no",
              be->can_zero ? "yes" : "no",
              be->multi ? "one connection per queue" : "one connection for all queues",
              be->payload_max);
    memset(out, 0, sizeof(*out));
    out->ops = &be->ops;
    out->ctx = be;
    out->size = be->size - be->size % VBLK_SECTOR_SIZE;
    be_guard_init(&be->guard, out->size);
    return 0;

fail:
    nbdbe_conn_free(c);
    pthread_mutex_destroy(&be->lock);
    free(be->uri_str);
    free(be);
    return r;
}
