/* SPDX-License-Identifier: MIT */
/*
 * Private declarations of the NBD backend (nbd.c, nbd_conn.c,
 * nbd_config.c). Nothing here is part of the public API; the unit tests
 * include it for the parsers.
 */
#ifndef VBLK_NBD_INTERNAL_H
#define VBLK_NBD_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include "backend/backend_internal.h"
#include "virtioblk/blk.h"
#include "virtioblk/nbd.h"

/* NBD_MAX_STRING in the protocol: longest export name. */
#define NBD_EXPORT_MAX   4096u
#define NBD_DEFAULT_PORT "10809"

/* A parsed NBD URI (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/uri.md). */
struct nbdbe_uri {
    bool unix_socket; /* nbd+unix:// */
    char host[256];   /* TCP: host name or address (IPv6 without brackets) */
    char port[8];     /* TCP: decimal port */
    char socket[108]; /* UNIX: socket path (sun_path) */
    char export_name[NBD_EXPORT_MAX + 1];
};

/*
 * Parses @p s. Returns 0, or -EINVAL with a reason in @p err (which may be
 * NULL): bad syntax, an unsupported scheme (TLS, vsock), a missing or
 * superfluous socket= parameter, an unknown parameter, ...
 */
int nbdbe_uri_parse(const char *s, struct nbdbe_uri *u, char *err, size_t errlen);

/* Options with the defaults filled in, times in nanoseconds. */
struct nbdbe_cfg {
    uint64_t connect_ns;
    uint64_t request_ns;
    uint64_t backoff_min_ns;
    uint64_t backoff_max_ns;
    bool one_connection;
    bool read_only;
    vblk_log_fn log;
    void *log_opaque;
};

/* Validates @p o (may be NULL) into @p cfg. Returns 0 or -EINVAL with a reason in @p err. */
int nbdbe_cfg_from_opts(const struct vblk_nbd_opts *o, struct nbdbe_cfg *cfg, char *err,
                        size_t errlen);

/* The virtio status for an errno reported by libnbd (0: success). */
uint8_t nbdbe_errno_status(int err);

/* Largest read or write payload when the server advertises none. */
#define NBD_PAYLOAD_DEFAULT (32u << 20)
/* Largest TRIM / WRITE_ZEROES length per command (the protocol has 32 bits). */
#define NBD_RANGE_MAX (1u << 30)

/*
 * Largest payload per command for a server maximum of @p advertised bytes
 * (0 or less: none advertised), a multiple of 512.
 */
uint32_t nbdbe_payload_max(int64_t advertised);

/* ---- the backend (nbd.c) and its connections (nbd_conn.c) ---- */

struct nbdbe_be;
struct nbdbe_q;

enum nbdbe_state { C_DOWN, C_CONNECTING, C_READY };

/* epoll tags in a queue's epfd. */
#define NBD_TAG_TIMER 1u
#define NBD_TAG_SOCK  2u

/*
 * One connection to the server. Everything in it is protected by @c lock,
 * which is held around every libnbd call on @c h; libnbd calls the
 * completion callbacks under it. @c cur names the queue whose thread holds
 * the lock, so a callback finishes that queue's requests directly and hands
 * the others over with vblk_req_complete_async().
 *
 * The socket and the timer are watched by one attached queue, the
 * @c driver: they are in its epoll set. Any attached queue may move the
 * connection on (a driver queue can be paused while another queue drains).
 */
struct nbdbe_conn {
    struct nbdbe_be *be;
    pthread_mutex_t lock;
    struct nbd_handle *h; /* NULL while down */
    enum nbdbe_state state;
    int tfd;                      /* timerfd: request timeouts, connect deadline, back-off */
    uint64_t timer_at;            /* when tfd fires (0: disarmed) */
    uint64_t deadline;            /* CONNECTING: give up; DOWN: next attempt */
    uint64_t backoff_ns;          /* current back-off */
    bool was_up;                  /* it has been READY: a failure is a disconnect */
    struct vblk_req *head, *tail; /* requests in flight, oldest first */
    struct vblk_req *deferred;    /* writes waiting for their FUA flush */
    struct nbdbe_q *queues;       /* attached queues */
    struct nbdbe_q *driver;
    struct nbdbe_q *cur;
    int reg_ep, reg_fd; /* where the socket is registered, and with what */
    uint32_t reg_ev;
    struct nbdbe_conn *next_idle;
    /* Resize: the handle was opened for generation @c gen of the export's
     * size; when the backend's differs, the connection is replaced
     * (@c switching): new requests wait in @c held (linked through priv)
     * while the old handle's requests finish, then a new handle is
     * connected and the held requests go to it. */
    unsigned gen;
    bool switching;
    struct vblk_req *held, *held_tail;
    bool probe;        /* only reads the export's size (resize) */
    bool quiet;        /* a synchronous attempt: the caller reports failures */
    unsigned failures; /* attempts failed in a row */
    int err_errno;     /* errno of the last failed attempt */
    char err[256];     /* why the last attempt failed */
};

/* A queue's state (qctx). */
struct nbdbe_q {
    struct nbdbe_be *be;
    struct nbdbe_conn *c;
    uint16_t qidx;
    int epfd;
    int completed;         /* during this poll() */
    atomic_uint pending;   /* own requests in flight */
    atomic_bool is_driver; /* the connection's socket and timer are in epfd */
    struct nbdbe_q *next;  /* in c->queues */
};

struct nbdbe_be {
    struct vblk_backend_ops ops;
    struct nbdbe_cfg cfg;
    struct nbdbe_uri uri;
    char *uri_str; /* as given, for messages */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint64_t size;   /* bytes the export has (under lock): at open, then resizes */
    atomic_uint gen; /* changes with size (under lock): connections compare theirs */
    uint32_t payload_max;
    bool can_flush, can_fua, can_trim, can_zero, multi, read_only;
    pthread_mutex_t lock;      /* idle, shared, counters below */
    struct nbdbe_conn *idle;   /* connected, unused (multi-conn) */
    struct nbdbe_conn *shared; /* the one connection (no multi-conn) */
    uint16_t nconn;
    struct vblk_nbd_stats st; /* under lock, except connections */
    struct be_guard guard;    /* the capacity requests may touch; resize */
};

/*
 * Connects a throw-away connection within the connect timeout and reads the
 * export's size into @p size. Returns 0 or a negative errno with a reason
 * in @p err.
 */
int nbdbe_probe_size(struct nbdbe_be *be, uint64_t *size, char *err, size_t errlen);

/* Monotonic clock in nanoseconds. */
uint64_t nbdbe_now(void);

/* Logs one formatted line through the configured sink. */
void nbdbe_log(const struct nbdbe_be *be, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Adds @p n to a counter of be->st under be->lock. */
void nbdbe_count(struct nbdbe_be *be, uint64_t *counter, uint64_t n);

/* A new connection object (not connected), or NULL. */
struct nbdbe_conn *nbdbe_conn_new(struct nbdbe_be *be);

/* Closes the handle (without callbacks) and frees @p c; nothing may be in flight. */
void nbdbe_conn_free(struct nbdbe_conn *c);

/*
 * Connects @p c synchronously within the connect timeout. Returns 0 (READY)
 * or a negative errno with a reason in @p err; @p c is then DOWN.
 */
int nbdbe_conn_connect_sync(struct nbdbe_conn *c, char *err, size_t errlen);

/* Attaches @p q to @p c (lock held); the first becomes the driver. */
void nbdbe_conn_attach(struct nbdbe_conn *c, struct nbdbe_q *q);

/* Detaches @p q (lock held); hands the driver role to another queue. */
void nbdbe_conn_detach(struct nbdbe_conn *c, struct nbdbe_q *q);

/*
 * Moves the connection on (lock held, c->cur set): reads replies and
 * writes requests as the socket allows (@p revents from poll(), or -1 to
 * ask the socket), expires timeouts, reconnects when due, issues deferred
 * flushes, and updates the watched events and the timer.
 */
void nbdbe_conn_service(struct nbdbe_conn *c, int revents);

/* Starts @p req on @p c (lock held, c->cur set); completes it on failure. */
void nbdbe_conn_submit(struct nbdbe_conn *c, struct vblk_req *req);

/* Updates the watched socket events and the timer after submissions (lock held). */
void nbdbe_conn_rearm(struct nbdbe_conn *c);

/* Consumes the timer's expiry (lock held). */
void nbdbe_conn_timer_fired(struct nbdbe_conn *c);

/* Whether an idle connection is still fit for use (lock held). */
bool nbdbe_conn_idle_usable(struct nbdbe_conn *c);

#endif
