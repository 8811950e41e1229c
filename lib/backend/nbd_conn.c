/* SPDX-License-Identifier: MIT */
/*
 * One NBD connection: its life (connect, break, reconnect with back-off),
 * the requests in flight on it, and their completion.
 *
 * Every function here runs with c->lock held. libnbd runs the completion
 * callbacks inside the libnbd call that noticed the reply (or the broken
 * socket), so they run under the lock too, on whichever queue thread made
 * that call (c->cur): that queue's requests are completed directly, the
 * others go to their own queue with vblk_req_complete_async().
 *
 * A request's state lives in the request itself:
 *   priv        next request in flight on the connection (oldest first)
 *   scratch[0]  previous one
 *   scratch[1]  the connection
 *   scratch[2]  bounce buffer, or the next write waiting for its flush
 *   scratch[3]  references (16 bits: one per NBD command plus one while
 *               issuing), status (8), flags (8), deadline in ms (32, wraps)
 * A request is finished when its last reference goes. Requests are in
 * flight in submission order, all with the same timeout, so the oldest
 * one's deadline is the next to expire.
 *
 * Resize. Every request is counted in the backend's resize guard from
 * submission to completion and checked against its size, so a shrink can
 * wait for the requests that may touch the part it cuts off. A handle only
 * knows the export's size from its handshake (libnbd and the server both
 * refuse requests past it), so after a resize each connection is replaced:
 * it stops taking requests (they are held), lets the old handle's requests
 * finish, connects anew, checks the new size and issues the held requests.
 * That is bounded by the request and connect timeouts; a failure fails the
 * held requests with IOERR like any broken connection.
 *
 * When the connection breaks, the handle is closed first: libnbd then
 * forgets its commands without calling back, and stops touching their
 * buffers. Only then are the requests still listed failed with IOERR, so no
 * request completes twice and none completes as a success without the
 * server's reply.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>

#include "backend/backend_internal.h"
#include "backend/nbd_internal.h"

#define F_NEED_FLUSH  1u /* a FUA write on a server without FUA: flush after it */
#define F_READ_BOUNCE 2u /* a read into a bounce buffer: copy out on success */
#define F_GUARD_ODD   4u /* its resize guard token (be_guard_enter) is 1 */

#define REFS_MAX 0xfff0u
#define MS       1000000ull

/* ---- request state ---- */

static uint32_t r_refs(const struct vblk_req *r)
{
    return (uint32_t)(r->scratch[3] & 0xffffu);
}

static uint8_t r_status(const struct vblk_req *r)
{
    return (uint8_t)(r->scratch[3] >> 16);
}

static uint32_t r_flags(const struct vblk_req *r)
{
    return (uint32_t)(r->scratch[3] >> 24) & 0xffu;
}

static uint32_t r_deadline(const struct vblk_req *r)
{
    return (uint32_t)(r->scratch[3] >> 32);
}

static void r_set(struct vblk_req *r, uint32_t refs, uint8_t st, uint32_t flags, uint32_t dl)
{
    r->scratch[3] =
        (uint64_t)refs | (uint64_t)st << 16 | (uint64_t)(flags & 0xffu) << 24 | (uint64_t)dl << 32;
}

static void r_set_refs(struct vblk_req *r, uint32_t refs)
{
    r_set(r, refs, r_status(r), r_flags(r), r_deadline(r));
}

static void r_fail(struct vblk_req *r, uint8_t st)
{
    if (st != VBLK_S_OK && r_status(r) == VBLK_S_OK)
        r_set(r, r_refs(r), st, r_flags(r), r_deadline(r));
}

static struct vblk_req *r_next(const struct vblk_req *r)
{
    return r->priv;
}

static struct vblk_req *r_prev(const struct vblk_req *r)
{
    return (struct vblk_req *)(uintptr_t)r->scratch[0];
}

static void *r_bounce(const struct vblk_req *r)
{
    return (void *)(uintptr_t)r->scratch[2];
}

/* ---- time ---- */

uint64_t nbdbe_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The request deadline @p dl (ms, 32 bits) as monotonic nanoseconds. */
static uint64_t deadline_ns(uint32_t dl, uint64_t now)
{
    uint64_t now_ms = now / MS;
    int32_t left = (int32_t)(dl - (uint32_t)now_ms);
    return (uint64_t)((int64_t)now_ms + left) * MS;
}

/* ---- the in-flight list ---- */

static void list_add(struct nbdbe_conn *c, struct vblk_req *r)
{
    r->priv = NULL;
    r->scratch[0] = (uintptr_t)c->tail;
    if (c->tail != NULL)
        c->tail->priv = r;
    else
        c->head = r;
    c->tail = r;
}

static void list_del(struct nbdbe_conn *c, struct vblk_req *r)
{
    struct vblk_req *n = r_next(r), *p = r_prev(r);
    if (p != NULL)
        p->priv = n;
    else
        c->head = n;
    if (n != NULL)
        n->scratch[0] = (uintptr_t)p;
    else
        c->tail = p;
}

/* ---- completion ---- */

static struct nbdbe_q *owner(struct nbdbe_conn *c, uint16_t qidx)
{
    for (struct nbdbe_q *q = c->queues; q != NULL; q = q->next)
        if (q->qidx == qidx)
            return q;
    return NULL;
}

/* Completes @p r on its own queue thread if that is us, else hands it over. */
static void complete(struct nbdbe_conn *c, struct vblk_req *r, uint8_t st)
{
    struct nbdbe_q *cur = c->cur;

    be_guard_exit(&c->be->guard, r->queue, (r_flags(r) & F_GUARD_ODD) ? 1u : 0u);
    if (cur != NULL && cur->qidx == r->queue) {
        atomic_fetch_sub_explicit(&cur->pending, 1, memory_order_relaxed);
        cur->completed++;
        vblk_req_complete(r, st);
        return;
    }
    struct nbdbe_q *q = owner(c, r->queue);
    if (q != NULL)
        atomic_fetch_sub_explicit(&q->pending, 1, memory_order_relaxed);
    vblk_req_complete_async(r, st);
}

static void free_bounce(struct vblk_req *r)
{
    free(r_bounce(r));
    r->scratch[2] = 0;
}

/* The last reference of @p r went: flush (FUA emulation) or complete. */
static void finish(struct nbdbe_conn *c, struct vblk_req *r)
{
    uint8_t st = r_status(r);
    uint32_t flags = r_flags(r);

    if (st == VBLK_S_OK && (flags & F_NEED_FLUSH)) {
        /* libnbd is locked while calling back: issue the flush later. */
        r_set(r, 0, st, flags & ~F_NEED_FLUSH, r_deadline(r));
        free_bounce(r);
        r->scratch[2] = (uintptr_t)c->deferred;
        c->deferred = r;
        return;
    }
    list_del(c, r);
    if (st == VBLK_S_OK && (flags & F_READ_BOUNCE)) {
        const uint8_t *b = r_bounce(r);
        for (uint32_t i = 0; i < r->niov; i++) {
            memcpy(r->iov[i].base, b, r->iov[i].len);
            b += r->iov[i].len;
        }
    }
    free_bounce(r);
    complete(c, r, st);
}

static void put(struct nbdbe_conn *c, struct vblk_req *r)
{
    uint32_t refs = r_refs(r) - 1;
    r_set_refs(r, refs);
    if (refs == 0)
        finish(c, r);
}

static int on_reply(void *user_data, int *error)
{
    struct vblk_req *r = user_data;
    struct nbdbe_conn *c = (struct nbdbe_conn *)(uintptr_t)r->scratch[1];
    r_fail(r, nbdbe_errno_status(*error));
    put(c, r);
    return 1; /* retire the command */
}

/* ---- watching the socket and the timer ---- */

static void watch_socket(struct nbdbe_conn *c)
{
    int ep = c->driver != NULL ? c->driver->epfd : -1;
    int fd = c->h != NULL ? nbd_aio_get_fd(c->h) : -1;
    uint32_t ev = 0;
    if (fd >= 0) {
        unsigned dir = (unsigned)nbd_aio_get_direction(c->h);
        ev = (dir & LIBNBD_AIO_DIRECTION_READ ? EPOLLIN : 0u) |
             (dir & LIBNBD_AIO_DIRECTION_WRITE ? EPOLLOUT : 0u);
    }
    if (ep == c->reg_ep && fd == c->reg_fd) {
        if (ep >= 0 && fd >= 0 && ev != c->reg_ev) {
            struct epoll_event e = {.events = ev, .data.u32 = NBD_TAG_SOCK};
            (void)epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e);
            c->reg_ev = ev;
        }
        return;
    }
    if (c->reg_ep >= 0 && c->reg_fd >= 0)
        (void)epoll_ctl(c->reg_ep, EPOLL_CTL_DEL, c->reg_fd, NULL);
    c->reg_ep = ep;
    c->reg_fd = fd;
    c->reg_ev = ev;
    if (ep >= 0 && fd >= 0) {
        struct epoll_event e = {.events = ev, .data.u32 = NBD_TAG_SOCK};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0)
            c->reg_fd = -1;
    }
}

static void unwatch_socket(struct nbdbe_conn *c)
{
    if (c->reg_ep >= 0 && c->reg_fd >= 0)
        (void)epoll_ctl(c->reg_ep, EPOLL_CTL_DEL, c->reg_fd, NULL);
    c->reg_fd = -1;
    c->reg_ev = 0;
}

/* When the timer must next fire, or 0. */
static uint64_t next_due(const struct nbdbe_conn *c, uint64_t now)
{
    switch (c->state) {
    case C_READY:
        return c->head != NULL ? deadline_ns(r_deadline(c->head), now) : 0;
    case C_CONNECTING:
        return c->deadline;
    case C_DOWN:
        return c->queues != NULL ? c->deadline : 0;
    }
    return 0;
}

static void arm_timer(struct nbdbe_conn *c, uint64_t now)
{
    uint64_t due = next_due(c, now);
    /* A later deadline is noticed when an earlier firing finds nothing due. */
    if (due == 0 || (c->timer_at != 0 && c->timer_at <= due))
        return;
    if (due <= now)
        due = now + 1;
    struct itimerspec its = {.it_value = {.tv_sec = (time_t)(due / 1000000000ull),
                                          .tv_nsec = (long)(due % 1000000000ull)}};
    if (timerfd_settime(c->tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
        c->timer_at = due;
}

void nbdbe_conn_rearm(struct nbdbe_conn *c)
{
    watch_socket(c);
    arm_timer(c, nbdbe_now());
}

/* ---- connecting and breaking ---- */

static void close_handle(struct nbdbe_conn *c)
{
    if (c->h == NULL)
        return;
    unwatch_socket(c);
    nbd_close(c->h); /* forgets its commands without calling back */
    c->h = NULL;
}

/* Fails every request in flight or held with IOERR (the handle is closed). */
static void fail_all(struct nbdbe_conn *c)
{
    c->deferred = NULL;
    while (c->head != NULL) {
        struct vblk_req *r = c->head;
        list_del(c, r);
        free_bounce(r);
        complete(c, r, VBLK_S_IOERR);
    }
    struct vblk_req *held = c->held;
    c->held = c->held_tail = NULL;
    c->switching = false;
    while (held != NULL) {
        struct vblk_req *r = held;
        held = r->priv;
        complete(c, r, VBLK_S_IOERR);
    }
}

static void go_down(struct nbdbe_conn *c, uint64_t now)
{
    c->state = C_DOWN;
    c->deadline = now + c->backoff_ns;
    c->backoff_ns *= 2;
    if (c->backoff_ns > c->be->cfg.backoff_max_ns)
        c->backoff_ns = c->be->cfg.backoff_max_ns;
}

/* The connection in use broke: fail what is in flight, reconnect later. */
static void conn_break(struct nbdbe_conn *c, const char *why, bool timeout)
{
    struct nbdbe_be *be = c->be;
    uint64_t now = nbdbe_now();
    close_handle(c);
    fail_all(c);
    c->backoff_ns = be->cfg.backoff_min_ns;
    go_down(c, now);
    nbdbe_count(be, &be->st.disconnects, 1);
    if (timeout)
        nbdbe_count(be, &be->st.timeouts, 1);
    nbdbe_log(be, VBLK_LOG_ERR, "%s: connection lost (%s); requests in flight failed; reconnecting",
              be->uri_str, why);
}

/* A connection attempt failed. */
static void connect_failed(struct nbdbe_conn *c, const char *why)
{
    struct nbdbe_be *be = c->be;
    close_handle(c);
    fail_all(c);
    snprintf(c->err, sizeof(c->err), "%s", why);
    go_down(c, nbdbe_now());
    if (!c->probe)
        nbdbe_count(be, &be->st.failures, 1);
    if (!c->quiet)
        nbdbe_log(be, c->failures++ == 0 ? VBLK_LOG_WARN : VBLK_LOG_DEBUG,
                  "%s: cannot reconnect (%s); next attempt in %llu ms", be->uri_str, why,
                  (unsigned long long)((c->deadline - nbdbe_now()) / MS));
}

static const char *nbdbe_error_text(void)
{
    const char *e = nbd_get_error();
    return e != NULL && *e != '\0' ? e : "unknown error";
}

static void issue(struct nbdbe_conn *c, struct vblk_req *r);
static void connect_start(struct nbdbe_conn *c);

/* The handshake finished: check that this is still the export we serve. */
static void connected(struct nbdbe_conn *c)
{
    struct nbdbe_be *be = c->be;
    char why[200];
    int64_t size = nbd_get_size(c->h);
    int ro = nbd_is_read_only(c->h);

    if (c->probe) {
        c->state = C_READY;
        return;
    }
    /* The size (and its generation) a resize may have changed meanwhile. */
    pthread_mutex_lock(&be->lock);
    uint64_t want = be->size;
    unsigned gen = atomic_load(&be->gen);
    pthread_mutex_unlock(&be->lock);
    /* be->size is 0 until the first connection has told it. */
    if (want != 0 && (size < 0 || (uint64_t)size != want)) {
        snprintf(why, sizeof(why),
                 "the export now has %lld bytes instead of %llu (resize the disk to use it)",
                 (long long)size, (unsigned long long)want);
        connect_failed(c, why);
        return;
    }
    if (want != 0 && ro == 1 && !be->read_only) {
        connect_failed(c, "the export became read-only");
        return;
    }
    c->gen = gen;
    if (be->multi && nbd_can_multi_conn(c->h) != 1)
        nbdbe_log(be, VBLK_LOG_WARN,
                  "%s: the server no longer advertises multi-conn; flushes may not cover "
                  "writes made on other connections",
                  be->uri_str);
    c->state = C_READY;
    c->backoff_ns = be->cfg.backoff_min_ns;
    c->failures = 0;
    nbdbe_count(be, &be->st.connects, 1);
    if (c->switching) {
        nbdbe_log(be, VBLK_LOG_DEBUG, "%s: connection replaced for %lld bytes", be->uri_str,
                  (long long)size);
    } else if (c->was_up && !c->quiet) {
        nbdbe_log(be, VBLK_LOG_INFO, "%s: reconnected", be->uri_str);
    }
    c->was_up = true;
    c->switching = false;
    /* The requests that waited for the new handle. */
    struct vblk_req *held = c->held;
    c->held = c->held_tail = NULL;
    while (held != NULL) {
        struct vblk_req *r = held;
        held = r->priv;
        if (c->state == C_READY) {
            issue(c, r);
        } else {
            nbdbe_count(be, &be->st.failed_fast, 1);
            complete(c, r, VBLK_S_IOERR);
        }
    }
}

/* Whether the handle was opened for an older size of the export. */
static bool stale(struct nbdbe_conn *c)
{
    return c->state == C_READY && !c->probe && c->gen != atomic_load(&c->be->gen);
}

/* Moves a replacement on: once the old handle has nothing in flight,
 * connects the new one. */
static void switch_step(struct nbdbe_conn *c)
{
    if (!c->switching && stale(c))
        c->switching = true;
    if (c->switching && c->state == C_READY && c->head == NULL) {
        close_handle(c);
        connect_start(c);
    }
}

/* Breaks the connection if libnbd found it closed or failed. */
static void broken_check(struct nbdbe_conn *c)
{
    if (c->h == NULL)
        return;
    if (nbd_aio_is_closed(c->h) == 1) {
        conn_break(c, "the server closed the connection", false);
    } else if (nbd_aio_is_dead(c->h) == 1) {
        char why[256];
        snprintf(why, sizeof(why), "%s", nbdbe_error_text());
        conn_break(c, why, false);
    }
}

/* Starts a connection attempt. */
static void connect_start(struct nbdbe_conn *c)
{
    struct nbdbe_be *be = c->be;
    close_handle(c);
    c->h = nbd_create();
    if (c->h == NULL) {
        connect_failed(c, nbdbe_error_text());
        return;
    }
    if (nbd_set_export_name(c->h, be->uri.export_name) < 0 ||
        nbd_aio_connect(c->h, (const struct sockaddr *)&be->addr, be->addrlen) < 0) {
        char why[256];
        snprintf(why, sizeof(why), "%s", nbdbe_error_text());
        c->err_errno = nbd_get_errno();
        connect_failed(c, why);
        return;
    }
    c->state = C_CONNECTING;
    c->deadline = nbdbe_now() + be->cfg.connect_ns;
    nbdbe_log(be, VBLK_LOG_DEBUG, "%s: connecting", be->uri_str);
}

/* ---- moving the connection on ---- */

static int socket_revents(struct nbdbe_conn *c)
{
    struct pollfd p = {.fd = nbd_aio_get_fd(c->h), .events = 0};
    unsigned dir = (unsigned)nbd_aio_get_direction(c->h);
    if (p.fd < 0)
        return POLLERR;
    if (dir & LIBNBD_AIO_DIRECTION_READ)
        p.events |= POLLIN;
    if (dir & LIBNBD_AIO_DIRECTION_WRITE)
        p.events |= POLLOUT;
    if (poll(&p, 1, 0) <= 0)
        return 0;
    return p.revents;
}

/* Lets libnbd read and write what the socket allows. */
static void do_io(struct nbdbe_conn *c, int revents)
{
    unsigned dir = (unsigned)nbd_aio_get_direction(c->h);
    if ((dir & LIBNBD_AIO_DIRECTION_READ) && (revents & (POLLIN | POLLHUP | POLLERR))) {
        /*
         * libnbd takes one reply per notification: go on while the socket
         * has more. Never notify without data: libnbd 1.14 then waits in
         * the middle of a reply and holds back new requests until the
         * server sends something.
         */
        bool check = c->queues != NULL && c->queues->next != NULL; /* another queue may have read */
        for (int i = 0; i < 64; i++) {
            if (check || i > 0) {
                struct pollfd p = {.fd = nbd_aio_get_fd(c->h), .events = POLLIN};
                if (p.fd < 0 || poll(&p, 1, 0) <= 0)
                    break;
            }
            if (nbd_aio_notify_read(c->h) < 0 || c->state != C_READY)
                break;
        }
    } else if ((dir & LIBNBD_AIO_DIRECTION_WRITE) && (revents & (POLLOUT | POLLHUP | POLLERR))) {
        /* A failed connect() shows as an error on a socket waiting to write. */
        (void)nbd_aio_notify_write(c->h);
    }
}

static void issue_deferred(struct nbdbe_conn *c)
{
    while (c->deferred != NULL && c->state == C_READY) {
        struct vblk_req *r = c->deferred;
        c->deferred = (struct vblk_req *)(uintptr_t)r->scratch[2];
        r->scratch[2] = 0;
        r_set_refs(r, 2);
        nbd_completion_callback cb = {.callback = on_reply, .user_data = r};
        if (nbd_aio_flush(c->h, cb, 0) < 0) {
            r_set_refs(r, 1);
            r_fail(r, nbdbe_errno_status(nbd_get_errno() ? nbd_get_errno() : EIO));
        }
        put(c, r);
    }
}

void nbdbe_conn_service(struct nbdbe_conn *c, int revents)
{
    if (c->h != NULL) {
        if (revents < 0)
            revents = socket_revents(c);
        if (revents != 0)
            do_io(c, revents);
        if (c->state == C_CONNECTING && c->h != NULL) {
            if (nbd_aio_is_ready(c->h) == 1 || nbd_aio_is_processing(c->h) == 1) {
                connected(c);
            } else if (nbd_aio_is_dead(c->h) == 1 || nbd_aio_is_closed(c->h) == 1) {
                char why[256];
                snprintf(why, sizeof(why), "%s", nbdbe_error_text());
                c->err_errno = nbd_get_errno();
                connect_failed(c, why);
            }
        } else if (c->state == C_READY) {
            broken_check(c);
        }
    }

    uint64_t now = nbdbe_now();
    if (c->state == C_READY && c->head != NULL && deadline_ns(r_deadline(c->head), now) <= now) {
        char why[96];
        snprintf(why, sizeof(why), "no reply within %llu ms",
                 (unsigned long long)(c->be->cfg.request_ns / MS));
        conn_break(c, why, true);
    } else if (c->state == C_CONNECTING && now >= c->deadline) {
        char why[96];
        snprintf(why, sizeof(why), "no answer within %llu ms",
                 (unsigned long long)(c->be->cfg.connect_ns / MS));
        c->err_errno = ETIMEDOUT;
        connect_failed(c, why);
    } else if (c->state == C_DOWN && c->queues != NULL && now >= c->deadline) {
        connect_start(c);
    }
    issue_deferred(c);
    if (c->queues != NULL)
        switch_step(c);
    nbdbe_conn_rearm(c);
}

/* ---- submitting ---- */

/* The request's data as one buffer: its own if contiguous, else a bounce. */
static void *data_buffer(struct nbdbe_conn *c, struct vblk_req *r, bool in)
{
    uint8_t *base = r->iov[0].base;
    uint64_t run = 0;
    uint32_t i;
    for (i = 0; i < r->niov; i++) {
        if ((uint8_t *)r->iov[i].base != base + run)
            break;
        run += r->iov[i].len;
    }
    if (i == r->niov && run >= r->len)
        return base;
    uint8_t *b = malloc(r->len);
    if (b == NULL)
        return NULL;
    r->scratch[2] = (uintptr_t)b;
    nbdbe_count(c->be, &c->be->st.bounced, 1);
    if (in) {
        r_set(r, r_refs(r), r_status(r), r_flags(r) | F_READ_BOUNCE, r_deadline(r));
    } else {
        uint8_t *p = b;
        for (i = 0; i < r->niov; i++) {
            memcpy(p, r->iov[i].base, r->iov[i].len);
            p += r->iov[i].len;
        }
    }
    return b;
}

/* Takes a reference for one more command; false if there are too many. */
static bool take_ref(struct vblk_req *r)
{
    uint32_t refs = r_refs(r);
    if (refs >= REFS_MAX) {
        r_fail(r, VBLK_S_IOERR);
        return false;
    }
    r_set_refs(r, refs + 1);
    return true;
}

/* A command was refused: drop its reference and note why. */
static void refused(struct vblk_req *r)
{
    int e = nbd_get_errno();
    r_set_refs(r, r_refs(r) - 1);
    r_fail(r, nbdbe_errno_status(e != 0 ? e : EIO));
}

static void submit_rw(struct nbdbe_conn *c, struct vblk_req *r)
{
    struct nbdbe_be *be = c->be;
    const bool in = r->type == VBLK_T_IN;
    uint32_t flags = 0;
    uint8_t *buf = data_buffer(c, r, in);

    if (buf == NULL) {
        r_fail(r, VBLK_S_IOERR);
        return;
    }
    if (!in && (r->flags & VBLK_REQ_F_FUA)) {
        /* Write-through: stable at completion. A server without flush has
         * no cache to flush. */
        if (be->can_fua)
            flags = LIBNBD_CMD_FLAG_FUA;
        else if (be->can_flush)
            r_set(r, r_refs(r), r_status(r), r_flags(r) | F_NEED_FLUSH, r_deadline(r));
    }
    uint64_t off = r->sector << VBLK_SECTOR_SHIFT;
    for (uint32_t done = 0; done < r->len;) {
        uint32_t n = r->len - done < be->payload_max ? r->len - done : be->payload_max;
        nbd_completion_callback cb = {.callback = on_reply, .user_data = r};
        if (!take_ref(r))
            return;
        int64_t rc = in ? nbd_aio_pread(c->h, buf + done, n, off + done, cb, 0)
                        : nbd_aio_pwrite(c->h, buf + done, n, off + done, cb, flags);
        if (rc < 0) {
            refused(r);
            return;
        }
        done += n;
    }
}

static void submit_ranges(struct nbdbe_conn *c, struct vblk_req *r)
{
    const bool zero = r->type == VBLK_T_WRITE_ZEROES;
    for (uint32_t i = 0; i < r->nranges; i++) {
        const struct vblk_discard_wz_seg *s = &r->ranges[i];
        uint64_t off = be_range_off(s), left = be_range_len(s);
        /* virtio 1.2 5.2.6.2: without UNMAP the range must stay allocated. */
        uint32_t flags = zero && !(s->flags & VBLK_WZ_F_UNMAP) ? LIBNBD_CMD_FLAG_NO_HOLE : 0;
        while (left > 0) {
            uint64_t n = left < NBD_RANGE_MAX ? left : NBD_RANGE_MAX;
            nbd_completion_callback cb = {.callback = on_reply, .user_data = r};
            if (!take_ref(r))
                return;
            int64_t rc =
                zero ? nbd_aio_zero(c->h, n, off, cb, flags) : nbd_aio_trim(c->h, n, off, cb, 0);
            if (rc < 0) {
                refused(r);
                return;
            }
            off += n;
            left -= n;
        }
    }
}

void nbdbe_conn_submit(struct nbdbe_conn *c, struct vblk_req *r)
{
    struct nbdbe_be *be = c->be;
    unsigned token = be_guard_enter(&be->guard, r->queue);

    r->scratch[1] = (uintptr_t)c;
    r->scratch[2] = 0;
    /* One reference for the duration of issuing, so that commands that
     * finish meanwhile cannot finish the request early. */
    r_set(r, 1, VBLK_S_OK, token ? F_GUARD_ODD : 0, 0);
    atomic_fetch_add_explicit(&c->cur->pending, 1, memory_order_relaxed);
    if (!be_guard_req_fits(&be->guard, r)) {
        complete(c, r, VBLK_S_IOERR);
        return;
    }
    switch_step(c);
    if (c->switching) {
        /* A planned replacement, not an outage: wait for the new handle. */
        r->priv = NULL;
        if (c->held_tail != NULL)
            c->held_tail->priv = r;
        else
            c->held = r;
        c->held_tail = r;
        return;
    }
    if (c->state != C_READY) {
        /* Down or reconnecting: fail at once rather than queue behind it. */
        nbdbe_count(be, &be->st.failed_fast, 1);
        complete(c, r, VBLK_S_IOERR);
        return;
    }
    issue(c, r);
}

/* Sends @p r (counted, checked, with one reference) on the ready handle. */
static void issue(struct nbdbe_conn *c, struct vblk_req *r)
{
    uint64_t now = nbdbe_now();

    r_set(r, r_refs(r), r_status(r), r_flags(r), (uint32_t)((now + c->be->cfg.request_ns) / MS));
    list_add(c, r);
    switch (r->type) {
    case VBLK_T_IN:
    case VBLK_T_OUT:
        submit_rw(c, r);
        break;
    case VBLK_T_FLUSH: {
        nbd_completion_callback cb = {.callback = on_reply, .user_data = r};
        if (take_ref(r) && nbd_aio_flush(c->h, cb, 0) < 0)
            refused(r);
        break;
    }
    case VBLK_T_DISCARD:
    case VBLK_T_WRITE_ZEROES:
        submit_ranges(c, r);
        break;
    default:
        r_fail(r, VBLK_S_UNSUPP);
        break;
    }
    put(c, r);
    /* A command refused because the socket failed: the connection is gone. */
    broken_check(c);
}

/* ---- life of a connection object ---- */

struct nbdbe_conn *nbdbe_conn_new(struct nbdbe_be *be)
{
    struct nbdbe_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->be = be;
    c->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (c->tfd < 0) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    c->state = C_DOWN;
    c->backoff_ns = be->cfg.backoff_min_ns;
    c->reg_ep = c->reg_fd = -1;
    return c;
}

void nbdbe_conn_free(struct nbdbe_conn *c)
{
    if (c == NULL)
        return;
    close_handle(c);
    fail_all(c);
    close(c->tfd);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int nbdbe_probe_size(struct nbdbe_be *be, uint64_t *size, char *err, size_t errlen)
{
    struct nbdbe_conn *c = nbdbe_conn_new(be);
    int r;

    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    c->probe = true;
    pthread_mutex_lock(&c->lock);
    r = nbdbe_conn_connect_sync(c, err, errlen);
    if (r == 0) {
        int64_t s = nbd_get_size(c->h);
        if (s < 0) {
            snprintf(err, errlen, "cannot get the export's size: %s", nbdbe_error_text());
            r = -EIO;
        } else {
            *size = (uint64_t)s;
        }
    }
    pthread_mutex_unlock(&c->lock);
    nbdbe_conn_free(c);
    return r;
}

int nbdbe_conn_connect_sync(struct nbdbe_conn *c, char *err, size_t errlen)
{
    c->quiet = true;
    c->err_errno = 0;
    c->err[0] = '\0';
    connect_start(c);
    while (c->state == C_CONNECTING) {
        uint64_t now = nbdbe_now();
        int ms = now >= c->deadline ? 0 : (int)((c->deadline - now + MS - 1) / MS);
        struct pollfd p = {.fd = nbd_aio_get_fd(c->h), .events = 0};
        unsigned dir = (unsigned)nbd_aio_get_direction(c->h);
        if (dir & LIBNBD_AIO_DIRECTION_READ)
            p.events |= POLLIN;
        if (dir & LIBNBD_AIO_DIRECTION_WRITE)
            p.events |= POLLOUT;
        int n = poll(&p, 1, ms);
        if (n < 0 && errno != EINTR)
            p.revents = POLLERR;
        nbdbe_conn_service(c, n > 0 ? p.revents : 0);
    }
    c->quiet = false;
    if (c->state == C_READY)
        return 0;
    snprintf(err, errlen, "%s", c->err);
    return c->err_errno > 0 ? -c->err_errno : -EIO;
}

void nbdbe_conn_attach(struct nbdbe_conn *c, struct nbdbe_q *q)
{
    q->next = c->queues;
    c->queues = q;
    q->c = c;
    if (c->driver == NULL) {
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = NBD_TAG_TIMER};
        c->driver = q;
        (void)epoll_ctl(q->epfd, EPOLL_CTL_ADD, c->tfd, &e);
        atomic_store(&q->is_driver, true);
    }
    c->timer_at = 0; /* re-arm: a new queue may be waiting for a reconnection */
    nbdbe_conn_rearm(c);
}

void nbdbe_conn_detach(struct nbdbe_conn *c, struct nbdbe_q *q)
{
    for (struct nbdbe_q **p = &c->queues; *p != NULL; p = &(*p)->next) {
        if (*p == q) {
            *p = q->next;
            break;
        }
    }
    if (c->driver == q) {
        (void)epoll_ctl(q->epfd, EPOLL_CTL_DEL, c->tfd, NULL);
        atomic_store(&q->is_driver, false);
        c->driver = NULL;
        unwatch_socket(c);
        c->reg_ep = -1;
        struct nbdbe_q *next = c->queues;
        if (next != NULL) {
            struct epoll_event e = {.events = EPOLLIN, .data.u32 = NBD_TAG_TIMER};
            c->driver = next;
            (void)epoll_ctl(next->epfd, EPOLL_CTL_ADD, c->tfd, &e);
            atomic_store(&next->is_driver, true);
        }
    }
    q->next = NULL;
    q->c = NULL;
    nbdbe_conn_rearm(c);
}

void nbdbe_conn_timer_fired(struct nbdbe_conn *c)
{
    uint64_t v;
    if (read(c->tfd, &v, sizeof(v)) == (ssize_t)sizeof(v))
        c->timer_at = 0;
}

bool nbdbe_conn_idle_usable(struct nbdbe_conn *c)
{
    if (c->state != C_READY || c->h == NULL || c->head != NULL || stale(c))
        return false;
    /* Nobody watched it while idle: data or a hang-up means trouble. */
    struct pollfd p = {.fd = nbd_aio_get_fd(c->h), .events = POLLIN};
    return p.fd >= 0 && poll(&p, 1, 0) == 0;
}
