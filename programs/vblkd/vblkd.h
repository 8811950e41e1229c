/* SPDX-License-Identifier: MIT */
/* vblkd: one process serving many virtio-blk exports (vhost-user sockets and
 * VDUSE devices), managed over JSON-RPC 2.0. Shared by the daemon's files,
 * its unit tests and its fuzz target. */
#ifndef VBLKD_H
#define VBLKD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "transport/worker.h"
#include "virtioblk/virtioblk.h"

/* Limits on what a request may ask for. */
#define VBLKD_NAME_MAX        64u   /* export names */
#define VBLKD_PATH_MAX        4095u /* image paths */
#define VBLKD_SOCKET_PATH_MAX 107u  /* sun_path minus the NUL */
#define VBLKD_MAX_EXPORTS     1024u
#define VBLKD_MAX_THREADS     256u
#define VBLKD_RPC_MAX_REQUEST 65536u /* bytes of one request */
#define VBLKD_RPC_MAX_CLIENTS 64u
#define VBLKD_RPC_MAX_OUTPUT  (4u << 20) /* unread responses a client may have */
#define VBLKD_RPC_MAX_DEPTH   16         /* JSON nesting */

/* JSON-RPC 2.0 error codes: the standard ones, then the daemon's own. */
enum {
    RPC_PARSE_ERROR = -32700,
    RPC_INVALID_REQUEST = -32600,
    RPC_METHOD_NOT_FOUND = -32601,
    RPC_INVALID_PARAMS = -32602,
    RPC_INTERNAL_ERROR = -32603,
    RPC_NO_SUCH_EXPORT = -32001, /* no export has that name */
    RPC_EXPORT_EXISTS = -32002,  /* the name, socket or VDUSE name is taken */
    RPC_EXPORT_BUSY = -32003,    /* a front-end is attached (use force) */
    RPC_RESOURCE_ERROR = -32004, /* a file, socket or device could not be set up */
    RPC_NOT_SUPPORTED = -32005,  /* the backend or transport cannot do that */
    RPC_LIMIT = -32006,          /* too many exports */
    RPC_SIZE_MISMATCH = -32007,  /* a network image does not have the size asked for */
};

/* An error for the client: a JSON-RPC code and a message a person can act on. */
struct vblkd_error {
    int code;
    char msg[512];
};

void vblkd_errorf(struct vblkd_error *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

enum vblkd_transport { VBLKD_VHOST_USER, VBLKD_VDUSE };

/* What an export was asked to be (export_add's parameters, checked). */
struct export_spec {
    char name[VBLKD_NAME_MAX + 1];
    enum vblkd_transport transport;
    char *socket;         /* vhost-user: socket path */
    char *vduse_name;     /* VDUSE: device name */
    json_object *backend; /* {"type": ..., ...}: a reference we own */
    uint16_t queues;
    uint16_t queue_size;
    bool read_only;
    bool packed; /* offer packed rings (default: vhost-user yes, VDUSE no) */
    char serial[VBLK_ID_BYTES + 1];
};

void export_spec_clear(struct export_spec *s);

struct vblkd;

/* What an epoll event of the control loop is about. */
struct vblkd_tag {
    int kind;
    void *obj;
};

/* One export. */
struct export
{
    struct vblkd *d;
    struct export_spec spec;
    struct vblk_backend be;
    struct vblk_dev_params params;
    uint64_t size;  /* current capacity in bytes */
    bool read_only; /* current mode */
    /* vhost-user */
    struct vblk_vu_dev *vu;
    int lfd;
    struct vblkd_tag listen_tag, conn_tag;
    /* VDUSE */
    struct vblk_vduse *vduse;
    /* workers: one item per queue (vhost-user) or one for the device (VDUSE) */
    struct worker_item *items;
    void *item_args;  /* what the items point to */
    int *item_thread; /* worker index of each item */
    unsigned nitems;
    uint64_t resizes;
    int update_fd; /* the backend's update_fd, or -1 */
    struct vblkd_tag update_tag;
    bool failed; /* VDUSE: the device failed; no longer served */
    struct export *next;
};

/* ---- backends (backends.c): the kinds export_add knows ---- */

struct backend_kind {
    const char *type;
    /* Keys besides "type" that the spec may have. */
    const char *const *keys;
    /* Opens the backend @spec describes (keys already checked against
     * @keys). Returns 0 or fills @e. */
    int (*open)(struct vblkd *d, json_object *spec, bool read_only, struct vblk_backend *be,
                struct vblkd_error *e);
    bool network; /* reaches a server: refused with no_network_backends */
    /* Network kinds: the size the storage has now on its server (rounded
     * down to 512 bytes), for a resize that follows it; NULL otherwise.
     * Returns 0 or fills @e. */
    int (*storage_size)(struct vblk_backend *be, uint64_t *size, struct vblkd_error *e);
    /* Optional: an fd that becomes readable when the storage may have been
     * resized on its server (read 8 bytes to consume), or a negative errno. */
    int (*update_fd)(const struct vblk_backend *be);
};

/* Every kind, in the order of backend_kind_names() (NULL-terminated). */
const struct backend_kind *backend_kind_at(size_t i);

/* The kind named @type, or NULL. */
const struct backend_kind *backend_kind_find(const char *type);
/* The kind of a backend spec (its "type"), or NULL. */
const struct backend_kind *backend_kind_of(json_object *spec);
/* The names of every kind, comma-separated, for messages. */
const char *backend_kind_names(void);
/* Opens the backend of @spec, checking its keys. */
int backend_open(struct vblkd *d, json_object *spec, bool read_only, struct vblk_backend *be,
                 struct vblkd_error *e);
/* Records a new size in the spec (so that a dumped configuration creates
 * the export at its current size). */
void backend_spec_set_size(json_object *spec, uint64_t size);

/* A size: a non-negative integer (bytes) or a string with K/M/G/T (binary)
 * suffix. Returns 0 or -EINVAL. */
int vblkd_parse_size(json_object *v, uint64_t *out);
/* Checks a path a request gave: absolute, no "..", no control characters,
 * at most @max bytes, under the daemon's --path-prefix if it has one. */
int vblkd_check_path(struct vblkd *d, const char *what, const char *path, size_t max,
                     struct vblkd_error *e);

/* ---- the daemon (daemon.c; creation and the loop in loop.c) ---- */

struct vblkd_opts {
    unsigned threads;             /* 0: one per CPU */
    enum vblk_notify_mode notify; /* how workers wait */
    uint32_t poll_max_us;
    const char *path_prefix;  /* NULL: any absolute path */
    int log_level;            /* VBLK_LOG_* */
    bool no_request_metrics;  /* do not time requests (two clock reads each) */
    bool no_vduse;            /* refuse VDUSE exports (the fuzz target) */
    bool no_network_backends; /* refuse nbd and rbd (the fuzz target) */
};

int vblkd_create(const struct vblkd_opts *o, struct vblkd **out);
/* Deletes every export (forcibly), stops the workers, frees @d. */
void vblkd_destroy(struct vblkd *d);
/* Listens for RPC clients on @path with permissions @mode. */
int vblkd_listen_rpc(struct vblkd *d, const char *path, mode_t mode);
/* Watches @fd (e.g. a signalfd): readable means stop. */
int vblkd_add_stop_fd(struct vblkd *d, int fd);
/* One round of the control loop: waits up to @timeout_ms, then handles
 * RPC clients, vhost-user connections and their messages. */
int vblkd_run_once(struct vblkd *d, int timeout_ms);
/* True once server_shutdown was called or a stop fd fired. */
bool vblkd_stopping(const struct vblkd *d);
/* Stops the daemon once the pending responses are sent (server_shutdown). */
void vblkd_request_stop(struct vblkd *d);
void vblkd_log(struct vblkd *d, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Worker threads running now, and the most there may be. */
unsigned vblkd_threads(const struct vblkd *d);
unsigned vblkd_max_threads(const struct vblkd *d);
const struct vblkd_opts *vblkd_options(const struct vblkd *d);
const char *vblkd_rpc_path(const struct vblkd *d);
double vblkd_uptime(const struct vblkd *d);

/* Exports, in the order they were added. */
struct export *vblkd_exports(struct vblkd *d);
unsigned vblkd_export_count(const struct vblkd *d);
struct export *export_find(struct vblkd *d, const char *name);
/* Creates an export from @spec (whose contents it takes, also on failure). */
int export_create(struct vblkd *d, struct export_spec *spec, struct export **out,
                  struct vblkd_error *e);
/* Deletes @x; refuses while a front-end is attached unless @force. */
int export_delete(struct vblkd *d, struct export *x, bool force, struct vblkd_error *e);
/* Resizes @x to @size bytes, or with @follow to the size its network
 * image has now on its server (then @size is ignored). *@size_out: the
 * new size; *@notified: the driver was told. */
int export_resize(struct vblkd *d, struct export *x, uint64_t size, bool follow, uint64_t *size_out,
                  bool *notified, struct vblkd_error *e);
int export_set_read_only(struct vblkd *d, struct export *x, bool ro, struct vblkd_error *e);
bool export_attached(struct export *x);
uint16_t export_queues(const struct export *x);
/* Counters: the device's, and those of each queue (an array of
 * export_queues() entries) with the worker thread serving it. */
void export_stats(struct vblkd *d, struct export *x, struct vblk_transport_stats *dev,
                  struct vblk_transport_queue_stats *q);
/* Request metrics of each queue (an array of export_queues() entries). */
void export_metrics(struct vblkd *d, struct export *x, struct vblk_transport_queue_metrics *m);
/* The latency below which a fraction @p of the requests of @m completed,
 * in microseconds (the upper bound of its histogram bucket), or 0. */
uint64_t metrics_percentile_us(const struct vblk_transport_queue_metrics *m, double p);
/* Names of the VBLK_METRIC_* kinds. */
extern const char *const vblkd_metric_kinds[VBLK_METRIC_KINDS];

/* Serves the metrics on @addr (ADDR:PORT, loopback only) from the control
 * loop. Returns 0 or fills @e (also when built without libmicrohttpd). */
int vblkd_serve_metrics(struct vblkd *d, const char *addr, struct vblkd_error *e);
/* The port the metrics are served on, or 0. */
uint16_t vblkd_metrics_port_of(const struct vblkd *d);

/* ---- metrics (metrics.c, with libmicrohttpd) ---- */

struct vblkd_metrics;
int vblkd_metrics_start(struct vblkd *d, const char *addr, struct vblkd_metrics **out,
                        struct vblkd_error *e);
int vblkd_metrics_fd(const struct vblkd_metrics *m);
uint16_t vblkd_metrics_port(const struct vblkd_metrics *m);
void vblkd_metrics_run(struct vblkd_metrics *m);
/* Milliseconds until the HTTP server needs to run again, or -1. */
int vblkd_metrics_timeout(struct vblkd_metrics *m);
void vblkd_metrics_stop(struct vblkd_metrics *m);

/* ---- JSON-RPC (rpc.c) ---- */

/* Handles one request (or batch) of @len bytes. Returns the response text
 * (free() it), or NULL when nothing is to be sent (notifications). */
char *vblkd_rpc_handle(struct vblkd *d, const char *req, size_t len);
/* Handles one parsed request; returns the response object or NULL. */
json_object *vblkd_rpc_call(struct vblkd *d, json_object *req);
/* Creates the exports of a configuration file. Returns 0 or fills @e. */
int vblkd_load_config(struct vblkd *d, const char *path, struct vblkd_error *e);
/* The running configuration, in the format of --config. */
json_object *vblkd_dump_config(struct vblkd *d);

#endif
