/* SPDX-License-Identifier: MIT */
/* --metrics ADDR:PORT: the export counters in the Prometheus text format
 * over HTTP (libmicrohttpd), on the loopback interface only. The HTTP
 * server runs inside the control loop (its epoll fd is watched there), so
 * it reads the exports on the thread that changes them. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "vblkd.h"

struct vblkd_metrics {
    struct MHD_Daemon *mhd;
    struct vblkd *d;
    uint16_t port;
};

/* A growing text buffer; on allocation failure it stays short and marked. */
struct text {
    char *buf;
    size_t len, cap;
    bool failed;
};

static void add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = t->failed ? 0 : vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (t->failed || n < 0)
            return;
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)n + 1;
        char *b = realloc(t->buf, cap);
        if (!b) {
            t->failed = true;
            return;
        }
        t->buf = b;
        t->cap = cap;
    }
}

static void header(struct text *t, const char *name, const char *type, const char *help)
{
    add(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Per-queue series: name, help, and how to read the value. */
enum qfield {
    Q_SUBMITTED,
    Q_COMPLETED,
    Q_INFLIGHT,
    Q_IOERR,
    Q_UNSUPP,
    Q_KICKS,
    Q_NOTIFIES,
    Q_BROKEN
};

static uint64_t qvalue(const struct vblk_transport_queue_stats *q, enum qfield f)
{
    switch (f) {
    case Q_SUBMITTED:
        return q->req.submitted;
    case Q_COMPLETED:
        return q->req.completed;
    case Q_INFLIGHT:
        return q->req.submitted >= q->req.completed ? q->req.submitted - q->req.completed : 0;
    case Q_IOERR:
        return q->req.ioerr;
    case Q_UNSUPP:
        return q->req.unsupp;
    case Q_KICKS:
        return q->kicks;
    case Q_NOTIFIES:
        return q->notifies;
    case Q_BROKEN:
        return q->broken;
    }
    return 0;
}

/* What the page shows of one export. */
struct snap {
    struct export *x;
    bool attached;
    struct vblk_transport_stats dev;
    struct vblk_transport_queue_stats *q;
    struct vblk_transport_queue_metrics *m;
};

/* Requests and bytes by kind, and the latency histogram, of every queue. */
static void render_requests(struct text *t, const struct snap *s, unsigned n)
{
    static const char *const lbl = "export=\"%s\",queue=\"%u\",thread=\"%d\"";
    char labels[160];
    header(t, "vblkd_queue_requests_total", "counter", "Requests completed, by kind.");
    for (unsigned i = 0; i < n; i++)
        for (uint16_t q = 0; s[i].m && q < export_queues(s[i].x); q++) {
            snprintf(labels, sizeof(labels), lbl, s[i].x->spec.name, q, s[i].q[q].thread);
            for (unsigned k = 0; k < VBLK_METRIC_KINDS; k++)
                add(t, "vblkd_queue_requests_total{%s,kind=\"%s\"} %" PRIu64 "\n", labels,
                    vblkd_metric_kinds[k], s[i].m[q].requests[k]);
        }
    header(t, "vblkd_queue_bytes_total", "counter",
           "Bytes read or written, or covered by discard and write-zeroes ranges, by kind.");
    for (unsigned i = 0; i < n; i++)
        for (uint16_t q = 0; s[i].m && q < export_queues(s[i].x); q++) {
            snprintf(labels, sizeof(labels), lbl, s[i].x->spec.name, q, s[i].q[q].thread);
            for (unsigned k = 0; k < VBLK_METRIC_KINDS; k++)
                if (k != VBLK_METRIC_FLUSH && k != VBLK_METRIC_OTHER)
                    add(t, "vblkd_queue_bytes_total{%s,kind=\"%s\"} %" PRIu64 "\n", labels,
                        vblkd_metric_kinds[k], s[i].m[q].bytes[k]);
        }
    header(t, "vblkd_queue_latency_seconds", "histogram",
           "Time from taking a request off the ring to completing it.");
    for (unsigned i = 0; i < n; i++)
        for (uint16_t q = 0; s[i].m && q < export_queues(s[i].x); q++) {
            const struct vblk_transport_queue_metrics *m = &s[i].m[q];
            snprintf(labels, sizeof(labels), lbl, s[i].x->spec.name, q, s[i].q[q].thread);
            uint64_t cum = 0;
            for (unsigned b = 0; b + 1 < VBLK_LATENCY_BUCKETS; b++) {
                cum += m->latency[b];
                add(t, "vblkd_queue_latency_seconds_bucket{%s,le=\"%g\"} %" PRIu64 "\n", labels,
                    (double)((uint64_t)1 << b) * 1e-6, cum);
            }
            cum += m->latency[VBLK_LATENCY_BUCKETS - 1];
            add(t, "vblkd_queue_latency_seconds_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", labels, cum);
            add(t, "vblkd_queue_latency_seconds_sum{%s} %.9f\n", labels,
                (double)m->latency_sum_ns * 1e-9);
            add(t, "vblkd_queue_latency_seconds_count{%s} %" PRIu64 "\n", labels, cum);
        }
}

/* The whole page. Export names need no escaping: they are letters, digits,
 * '_', '-' and '.'. */
static void render(struct vblkd *d, struct text *t)
{
    header(t, "vblkd_exports", "gauge", "Exports this daemon serves.");
    add(t, "vblkd_exports %u\n", vblkd_export_count(d));
    header(t, "vblkd_worker_threads", "gauge", "Worker threads running the queues.");
    add(t, "vblkd_worker_threads %u\n", vblkd_threads(d));

    /* Counters of every export, gathered once. */
    unsigned n = vblkd_export_count(d), i = 0;
    struct snap *s = calloc(n ? n : 1, sizeof(*s));
    if (!s) {
        t->failed = true;
        return;
    }
    for (struct export *x = vblkd_exports(d); x && i < n; x = x->next, i++) {
        s[i].x = x;
        s[i].attached = export_attached(x);
        s[i].q = calloc(export_queues(x), sizeof(*s[i].q));
        s[i].m = calloc(export_queues(x), sizeof(*s[i].m));
        if (s[i].q)
            export_stats(d, x, &s[i].dev, s[i].q);
        if (s[i].m)
            export_metrics(d, x, s[i].m);
    }

    header(t, "vblkd_export_size_bytes", "gauge", "Capacity of the export.");
    for (i = 0; i < n; i++)
        add(t, "vblkd_export_size_bytes{export=\"%s\"} %" PRIu64 "\n", s[i].x->spec.name,
            s[i].x->size);
    header(t, "vblkd_export_attached", "gauge", "1 while a front-end or driver is attached.");
    for (i = 0; i < n; i++)
        add(t, "vblkd_export_attached{export=\"%s\"} %d\n", s[i].x->spec.name, s[i].attached);
    header(t, "vblkd_export_read_only", "gauge", "1 while the export refuses writes.");
    for (i = 0; i < n; i++)
        add(t, "vblkd_export_read_only{export=\"%s\"} %d\n", s[i].x->spec.name, s[i].x->read_only);
    static const struct {
        const char *name, *help;
        size_t off;
    } dev[] = {
        {"vblkd_export_connections_total", "Front-ends that attached.",
         offsetof(struct vblk_transport_stats, connections)},
        {"vblkd_export_messages_total", "Control messages handled.",
         offsetof(struct vblk_transport_stats, messages)},
        {"vblkd_export_bad_messages_total", "Malformed control messages.",
         offsetof(struct vblk_transport_stats, bad_messages)},
        {"vblkd_export_refused_messages_total", "Control messages answered with a failure.",
         offsetof(struct vblk_transport_stats, failed)},
        {"vblkd_export_resets_total", "Device resets.",
         offsetof(struct vblk_transport_stats, resets)},
        {"vblkd_export_broken_queues_total", "Queues stopped because the driver corrupted them.",
         offsetof(struct vblk_transport_stats, broken_queues)},
        {"vblkd_export_memory_faults_total", "Addresses the driver used that nothing maps.",
         offsetof(struct vblk_transport_stats, memory_faults)},
    };
    for (size_t k = 0; k < sizeof(dev) / sizeof(dev[0]); k++) {
        header(t, dev[k].name, "counter", dev[k].help);
        for (i = 0; i < n; i++) {
            uint64_t v;
            memcpy(&v, (const char *)&s[i].dev + dev[k].off, sizeof(v));
            add(t, "%s{export=\"%s\"} %" PRIu64 "\n", dev[k].name, s[i].x->spec.name, v);
        }
    }
    static const struct {
        const char *name, *type, *help, *extra;
        enum qfield f;
    } qs[] = {
        {"vblkd_queue_requests_submitted_total", "counter", "Requests handed to the backend.", "",
         Q_SUBMITTED},
        {"vblkd_queue_requests_completed_total", "counter", "Requests completed (any status).", "",
         Q_COMPLETED},
        {"vblkd_queue_requests_in_flight", "gauge", "Requests submitted and not yet completed.", "",
         Q_INFLIGHT},
        {"vblkd_queue_errors_total", "counter", "Requests completed with an error, by status.",
         ",status=\"ioerr\"", Q_IOERR},
        {"vblkd_queue_errors_total", NULL, NULL, ",status=\"unsupp\"", Q_UNSUPP},
        {"vblkd_queue_kicks_total", "counter", "Driver notifications seen.", "", Q_KICKS},
        {"vblkd_queue_interrupts_total", "counter", "Used-buffer notifications sent to the driver.",
         "", Q_NOTIFIES},
        {"vblkd_queue_broken_total", "counter", "Times the driver corrupted the ring.", "",
         Q_BROKEN},
    };
    for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
        if (qs[k].type)
            header(t, qs[k].name, qs[k].type, qs[k].help);
        for (i = 0; i < n; i++) {
            if (!s[i].q)
                continue;
            for (uint16_t q = 0; q < export_queues(s[i].x); q++)
                add(t, "%s{export=\"%s\",queue=\"%u\",thread=\"%d\"%s} %" PRIu64 "\n", qs[k].name,
                    s[i].x->spec.name, q, s[i].q[q].thread, qs[k].extra,
                    qvalue(&s[i].q[q], qs[k].f));
        }
    }
    render_requests(t, s, n);
    for (i = 0; i < n; i++) {
        free(s[i].q);
        free(s[i].m);
    }
    free(s);
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    struct vblkd_metrics *m = cls;
    (void)version;
    (void)upload;
    (void)con_cls;
    struct MHD_Response *r;
    unsigned status;
    if (*upload_size) {
        *upload_size = 0; /* nothing is read from a request body */
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char msg[] = "only GET /metrics\n";
        r = MHD_create_response_from_buffer(sizeof(msg) - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
    } else if (strcmp(url, "/metrics") != 0) {
        static const char msg[] = "not found: the metrics are at /metrics\n";
        r = MHD_create_response_from_buffer(sizeof(msg) - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
        status = MHD_HTTP_NOT_FOUND;
    } else {
        struct text t = {0};
        render(m->d, &t);
        if (t.failed) {
            free(t.buf);
            return MHD_NO;
        }
        r = MHD_create_response_from_buffer(t.len, t.buf, MHD_RESPMEM_MUST_FREE);
        if (r)
            MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4");
        else
            free(t.buf);
        status = MHD_HTTP_OK;
    }
    if (!r)
        return MHD_NO;
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

int vblkd_metrics_start(struct vblkd *d, const char *addr, struct vblkd_metrics **out,
                        struct vblkd_error *e)
{
    /* ADDR:PORT, or [ADDR]:PORT for IPv6. */
    char host[128];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || strlen(addr) >= sizeof(host)) {
        vblkd_errorf(e, RPC_INVALID_PARAMS, "--metrics %s: expected ADDR:PORT, e.g. 127.0.0.1:9110",
                     addr);
        return -1;
    }
    size_t hl = (size_t)(colon - addr);
    memcpy(host, addr, hl);
    host[hl] = '\0';
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV},
                    *ai = NULL;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc != 0) {
        vblkd_errorf(e, RPC_INVALID_PARAMS, "--metrics %s: %s", addr, gai_strerror(rc));
        return -1;
    }
    bool loopback = false;
    if (ai->ai_family == AF_INET)
        loopback = (ntohl(((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr) >> 24) == 127;
    else if (ai->ai_family == AF_INET6)
        loopback = IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr);
    if (!loopback) {
        freeaddrinfo(ai);
        vblkd_errorf(e, RPC_INVALID_PARAMS,
                     "--metrics %s: only loopback addresses (127.0.0.1, ::1) are served; put a "
                     "proxy in front to publish the metrics further",
                     addr);
        return -1;
    }
    struct vblkd_metrics *m = calloc(1, sizeof(*m));
    if (!m) {
        freeaddrinfo(ai);
        vblkd_errorf(e, RPC_INTERNAL_ERROR, "out of memory");
        return -1;
    }
    m->d = d;
    unsigned flags = MHD_USE_EPOLL | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0u);
    m->mhd = MHD_start_daemon(flags, 0, NULL, NULL, answer, m, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!m->mhd) {
        free(m);
        vblkd_errorf(e, RPC_RESOURCE_ERROR, "--metrics %s: cannot listen (address in use?)", addr);
        return -1;
    }
    const union MHD_DaemonInfo *pi = MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_BIND_PORT);
    m->port = pi ? pi->port : 0;
    *out = m;
    return 0;
}

int vblkd_metrics_fd(const struct vblkd_metrics *m)
{
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    return i ? i->epoll_fd : -1;
}

uint16_t vblkd_metrics_port(const struct vblkd_metrics *m)
{
    return m->port;
}

void vblkd_metrics_run(struct vblkd_metrics *m)
{
    (void)MHD_run(m->mhd);
}

int vblkd_metrics_timeout(struct vblkd_metrics *m)
{
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(m->mhd, &ms) != MHD_YES)
        return -1;
    return ms > 1000 ? 1000 : (int)ms;
}

void vblkd_metrics_stop(struct vblkd_metrics *m)
{
    if (!m)
        return;
    MHD_stop_daemon(m->mhd);
    free(m);
}
