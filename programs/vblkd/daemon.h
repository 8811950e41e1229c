/* SPDX-License-Identifier: MIT */
/* The daemon's state, shared by its files: daemon.c (what they all use),
 * loop.c (creation, the control loop), exports.c (exports and the workers
 * that run them), resize.c (online resize) and clients.c (the JSON-RPC
 * connections). */
#ifndef VBLKD_DAEMON_H
#define VBLKD_DAEMON_H

#include <sys/socket.h>
#include <sys/un.h>

#include "vblkd.h"

enum {
    TAG_RPC_LISTEN = 1,
    TAG_RPC_CLIENT,
    TAG_VU_LISTEN,
    TAG_VU_CONN,
    TAG_STOP,
    TAG_METRICS,
    TAG_BACKEND_UPDATE
};

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
    uint16_t metrics_port; /* 0: no metrics server */
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

/* Milliseconds on the monotonic clock. */
uint64_t vblkd_now_ms(void);

/* How often the watchdog looks at attached front-ends' notification fds. */
#define WATCHDOG_MS 200

/* epoll registration in the control loop. */
int ep_add(struct vblkd *d, int fd, uint32_t events, struct vblkd_tag *tag);
void ep_del(struct vblkd *d, int fd);
/* Listens on @path with permissions @mode: the fd or a negative errno. */
int listen_unix(const char *path, mode_t mode);
/* Why listen_unix() failed, for a message. */
const char *listen_error(int rc);

/* exports.c: a new front-end on @x's socket; the end of its connection. */
void vu_accept(struct vblkd *d, struct export *x);
void vu_drop(struct vblkd *d, struct export *x, int why);
/* exports.c: the worker that serves @x's first queue (a VDUSE device's). */
struct worker *export_worker(struct vblkd *d, struct export *x);
/* resize.c: @x's storage may have been resized on its server: follow it. */
void export_follow(struct vblkd *d, struct export *x);

/* clients.c */
void rpc_accept(struct vblkd *d);
void client_event(struct vblkd *d, struct rpc_client *c, uint32_t events);
void client_free(struct vblkd *d, struct rpc_client *c);

#endif
