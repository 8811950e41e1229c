/* SPDX-License-Identifier: MIT */
/* vblkd's JSON-RPC 2.0 methods, and the configuration file (a list of
 * export_add parameters). Every request is checked before anything is
 * done: unknown members and keys, types, ranges; every failure is an error
 * object whose message says what to change. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vblkd.h"

#define CONFIG_MAX_BYTES (16u << 20)

/* ---- parameter helpers ---- */

static const char *type_name(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null:
        return "null";
    case json_type_boolean:
        return "a boolean";
    case json_type_double:
        return "a fraction";
    case json_type_int:
        return "an integer";
    case json_type_object:
        return "an object";
    case json_type_array:
        return "an array";
    case json_type_string:
        return "a string";
    }
    return "?";
}

/* Refuses keys of @p not in @allowed (NULL-terminated). */
static int check_keys(json_object *p, const char *const *allowed, struct vblkd_error *e)
{
    json_object_object_foreach(p, key, val)
    {
        (void)val;
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            ok = ok || strcmp(*a, key) == 0;
        if (!ok) {
            char list[256] = "";
            size_t at = 0;
            for (const char *const *a = allowed; *a && at < sizeof(list); a++)
                at +=
                    (size_t)snprintf(list + at, sizeof(list) - at, "%s\"%s\"", at ? ", " : "", *a);
            vblkd_errorf(e, RPC_INVALID_PARAMS, "unknown parameter \"%.64s\"; this method takes %s",
                         key, at ? list : "none");
            return -1;
        }
    }
    return 0;
}

/* 1: absent (and not required), 0: found, -1: error in @e. */
static int get_string(json_object *p, const char *key, bool required, const char **out,
                      struct vblkd_error *e)
{
    json_object *v;
    if (!json_object_object_get_ex(p, key, &v)) {
        if (!required)
            return 1;
        vblkd_errorf(e, RPC_INVALID_PARAMS, "parameter \"%s\" (a string) is required", key);
        return -1;
    }
    if (!json_object_is_type(v, json_type_string)) {
        vblkd_errorf(e, RPC_INVALID_PARAMS, "parameter \"%s\" must be a string, not %s", key,
                     type_name(v));
        return -1;
    }
    *out = json_object_get_string(v);
    if (strlen(*out) != (size_t)json_object_get_string_len(v)) {
        vblkd_errorf(e, RPC_INVALID_PARAMS, "parameter \"%s\" contains a NUL character", key);
        return -1;
    }
    return 0;
}

static int get_bool(json_object *p, const char *key, bool required, bool *out,
                    struct vblkd_error *e)
{
    json_object *v;
    if (!json_object_object_get_ex(p, key, &v)) {
        if (!required)
            return 1;
        vblkd_errorf(e, RPC_INVALID_PARAMS, "parameter \"%s\" (true or false) is required", key);
        return -1;
    }
    if (!json_object_is_type(v, json_type_boolean)) {
        vblkd_errorf(e, RPC_INVALID_PARAMS, "parameter \"%s\" must be true or false, not %s", key,
                     type_name(v));
        return -1;
    }
    *out = json_object_get_boolean(v);
    return 0;
}

static int get_uint(json_object *p, const char *key, uint64_t min, uint64_t max, uint64_t *out,
                    struct vblkd_error *e)
{
    json_object *v;
    if (!json_object_object_get_ex(p, key, &v))
        return 1;
    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < (int64_t)min ||
        json_object_get_int64(v) > (int64_t)max) {
        vblkd_errorf(e, RPC_INVALID_PARAMS,
                     "parameter \"%s\" must be an integer from %" PRIu64 " to %" PRIu64, key, min,
                     max);
        return -1;
    }
    *out = (uint64_t)json_object_get_int64(v);
    return 0;
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > VBLKD_NAME_MAX || s[0] == '.' || s[0] == '-')
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.'))
            return false;
    return true;
}

/* The export @p names: 0, or -1 with @e filled. */
static int get_export(struct vblkd *d, json_object *p, struct export **out, struct vblkd_error *e)
{
    const char *name;
    if (get_string(p, "name", true, &name, e))
        return -1;
    *out = export_find(d, name);
    if (!*out) {
        vblkd_errorf(e, RPC_NO_SUCH_EXPORT, "no export named \"%.64s\" (export_list shows them)",
                     name);
        return -1;
    }
    return 0;
}

/* ---- views of an export ---- */

static json_object *u64(uint64_t v)
{
    return json_object_new_int64(v > INT64_MAX ? INT64_MAX : (int64_t)v);
}

/* export_add's parameters as they stand now: the configuration format. */
static json_object *export_config(struct export *x)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(x->spec.name));
    if (x->vu) {
        json_object_object_add(o, "transport", json_object_new_string("vhost-user"));
        json_object_object_add(o, "socket", json_object_new_string(x->spec.socket));
    } else {
        json_object_object_add(o, "transport", json_object_new_string("vduse"));
        json_object_object_add(o, "vduse_name", json_object_new_string(x->spec.vduse_name));
    }
    json_object *be = NULL;
    (void)json_object_deep_copy(x->spec.backend, &be, NULL);
    json_object_object_add(o, "backend", be);
    json_object_object_add(o, "queues", json_object_new_int(export_queues(x)));
    json_object_object_add(o, "queue_size", json_object_new_int(x->params.queue_size));
    json_object_object_add(o, "read_only", json_object_new_boolean(x->read_only));
    json_object_object_add(o, "packed", json_object_new_boolean(x->spec.packed));
    json_object_object_add(o, "serial", json_object_new_string(x->spec.serial));
    return o;
}

static json_object *export_view(struct export *x)
{
    json_object *o = export_config(x);
    json_object_object_add(o, "size", u64(x->size));
    json_object_object_add(o, "attached", json_object_new_boolean(export_attached(x)));
    json_object_object_add(o, "resizes", u64(x->resizes));
    json_object *th = json_object_new_array();
    for (uint16_t i = 0; i < export_queues(x); i++)
        json_object_array_add(th, json_object_new_int(x->item_thread[x->vduse ? 0 : i]));
    json_object_object_add(o, "queue_threads", th);
    return o;
}

/* Requests and bytes by kind, and latency percentiles, of @m. */
static void add_metrics(json_object *o, const struct vblk_transport_queue_metrics *m)
{
    json_object *req = json_object_new_object(), *bytes = json_object_new_object();
    uint64_t n = 0;
    for (unsigned k = 0; k < VBLK_METRIC_KINDS; k++) {
        json_object_object_add(req, vblkd_metric_kinds[k], u64(m->requests[k]));
        json_object_object_add(bytes, vblkd_metric_kinds[k], u64(m->bytes[k]));
        n += m->requests[k];
    }
    json_object_object_add(o, "requests", req);
    json_object_object_add(o, "bytes", bytes);
    json_object *lat = json_object_new_object();
    json_object_object_add(
        lat, "mean", json_object_new_double(n ? (double)m->latency_sum_ns / (double)n / 1e3 : 0));
    json_object_object_add(lat, "p50", u64(metrics_percentile_us(m, 0.5)));
    json_object_object_add(lat, "p90", u64(metrics_percentile_us(m, 0.9)));
    json_object_object_add(lat, "p99", u64(metrics_percentile_us(m, 0.99)));
    json_object_object_add(lat, "p999", u64(metrics_percentile_us(m, 0.999)));
    json_object_object_add(o, "latency_us", lat);
}

static json_object *stats_view(struct vblkd *d, struct export *x)
{
    uint16_t nq = export_queues(x);
    struct vblk_transport_stats st;
    struct vblk_transport_queue_stats *qs = calloc(nq, sizeof(*qs));
    struct vblk_transport_queue_metrics *ms = calloc(nq, sizeof(*ms)), msum = {0};
    if (!qs || !ms) {
        free(qs);
        free(ms);
        return NULL;
    }
    export_stats(d, x, &st, qs);
    export_metrics(d, x, ms);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(x->spec.name));
    json_object_object_add(o, "size", u64(x->size));
    json_object_object_add(o, "attached", json_object_new_boolean(export_attached(x)));
    json_object *dev = json_object_new_object();
#define DEV(f) json_object_object_add(dev, #f, u64(st.f))
    DEV(connections);
    DEV(messages);
    DEV(bad_messages);
    DEV(failed);
    DEV(resets);
    DEV(broken_queues);
    DEV(memory_updates);
    DEV(memory_maps);
    DEV(memory_unmaps);
    DEV(memory_faults);
    DEV(mapping_faults);
#undef DEV
    json_object_object_add(o, "device", dev);
    struct vblk_transport_queue_stats sum = {0};
    json_object *qa = json_object_new_array();
    for (uint16_t i = 0; i < nq; i++) {
        struct vblk_transport_queue_stats *q = &qs[i];
        json_object *qo = json_object_new_object();
        json_object_object_add(qo, "index", json_object_new_int(i));
        json_object_object_add(qo, "thread", json_object_new_int(q->thread));
        json_object_object_add(qo, "submitted", u64(q->req.submitted));
        json_object_object_add(qo, "completed", u64(q->req.completed));
        json_object_object_add(
            qo, "in_flight",
            u64(q->req.submitted >= q->req.completed ? q->req.submitted - q->req.completed : 0));
        json_object_object_add(qo, "ioerr", u64(q->req.ioerr));
        json_object_object_add(qo, "unsupp", u64(q->req.unsupp));
        json_object_object_add(qo, "pool_full", u64(q->req.pool_full));
        json_object_object_add(qo, "kicks", u64(q->kicks));
        json_object_object_add(qo, "notifies", u64(q->notifies));
        json_object_object_add(qo, "starts", u64(q->starts));
        json_object_object_add(qo, "resubmitted", u64(q->resubmitted));
        json_object_object_add(qo, "broken", u64(q->broken));
        add_metrics(qo, &ms[i]);
        json_object_array_add(qa, qo);
        const uint64_t *src = (const uint64_t *)&ms[i];
        uint64_t *dst = (uint64_t *)&msum;
        for (size_t k = 0; k < sizeof(msum) / sizeof(uint64_t); k++)
            dst[k] += src[k];
        sum.req.submitted += q->req.submitted;
        sum.req.completed += q->req.completed;
        sum.req.ioerr += q->req.ioerr;
        sum.req.unsupp += q->req.unsupp;
        sum.kicks += q->kicks;
        sum.notifies += q->notifies;
    }
    json_object *tot = json_object_new_object();
    json_object_object_add(tot, "submitted", u64(sum.req.submitted));
    json_object_object_add(tot, "completed", u64(sum.req.completed));
    json_object_object_add(tot, "ioerr", u64(sum.req.ioerr));
    json_object_object_add(tot, "unsupp", u64(sum.req.unsupp));
    json_object_object_add(tot, "kicks", u64(sum.kicks));
    json_object_object_add(tot, "notifies", u64(sum.notifies));
    add_metrics(tot, &msum);
    json_object_object_add(o, "totals", tot);
    json_object_object_add(o, "queues", qa);
    free(qs);
    free(ms);
    return o;
}

/* ---- methods ---- */

typedef json_object *(*method_fn)(struct vblkd *d, json_object *p, struct vblkd_error *e);

static const char *const add_keys[] = {"name",    "transport", "socket",     "vduse_name",
                                       "backend", "queues",    "queue_size", "read_only",
                                       "serial",  "packed",    NULL};

/* Checks export_add's parameters into @s. */
static int parse_spec(struct vblkd *d, json_object *p, struct export_spec *s, struct vblkd_error *e)
{
    const char *name, *transport, *str;
    uint64_t v;
    memset(s, 0, sizeof(*s));
    if (check_keys(p, add_keys, e) || get_string(p, "name", true, &name, e))
        return -1;
    if (!name_ok(name)) {
        vblkd_errorf(e, RPC_INVALID_PARAMS,
                     "export name \"%.64s\" is not valid: 1 to %u letters, digits, '_', '-' or "
                     "'.', not starting with '.' or '-'",
                     name, VBLKD_NAME_MAX);
        return -1;
    }
    snprintf(s->name, sizeof(s->name), "%s", name);
    if (get_string(p, "transport", true, &transport, e))
        return -1;
    if (strcmp(transport, "vhost-user") == 0) {
        s->transport = VBLKD_VHOST_USER;
    } else if (strcmp(transport, "vduse") == 0) {
        s->transport = VBLKD_VDUSE;
    } else {
        vblkd_errorf(e, RPC_INVALID_PARAMS,
                     "transport \"%.64s\" is not known: use \"vhost-user\" or \"vduse\"",
                     transport);
        return -1;
    }
    int rc = get_string(p, "socket", s->transport == VBLKD_VHOST_USER, &str, e);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        if (s->transport != VBLKD_VHOST_USER) {
            vblkd_errorf(e, RPC_INVALID_PARAMS, "\"socket\" is for vhost-user exports only");
            return -1;
        }
        if (vblkd_check_path(d, "socket", str, VBLKD_SOCKET_PATH_MAX, e) < 0)
            return -1;
        s->socket = strdup(str);
    }
    rc = get_string(p, "vduse_name", false, &str, e);
    if (rc < 0)
        return -1;
    if (rc == 0 && s->transport != VBLKD_VDUSE) {
        vblkd_errorf(e, RPC_INVALID_PARAMS, "\"vduse_name\" is for VDUSE exports only");
        return -1;
    }
    if (s->transport == VBLKD_VDUSE) {
        if (rc == 1)
            str = name;
        if (!name_ok(str)) {
            vblkd_errorf(e, RPC_INVALID_PARAMS,
                         "VDUSE name \"%.64s\" is not valid: letters, digits, '_', '-', '.'", str);
            return -1;
        }
        s->vduse_name = strdup(str);
    }
    json_object *be;
    if (!json_object_object_get_ex(p, "backend", &be)) {
        vblkd_errorf(e, RPC_INVALID_PARAMS,
                     "parameter \"backend\" is required, e.g. {\"type\": \"file\", \"path\": "
                     "\"/var/lib/disk.img\"} or {\"type\": \"memory\", \"size\": \"1G\"}");
        return -1;
    }
    if (!json_object_is_type(be, json_type_object)) {
        vblkd_errorf(e, RPC_INVALID_PARAMS, "parameter \"backend\" must be an object, not %s",
                     type_name(be));
        return -1;
    }
    (void)json_object_deep_copy(be, &s->backend, NULL);
    s->queues = 1;
    s->queue_size = 256;
    if ((rc = get_uint(p, "queues", 1, VBLK_MAX_QUEUES, &v, e)) < 0)
        return -1;
    if (rc == 0)
        s->queues = (uint16_t)v;
    if ((rc = get_uint(p, "queue_size", 1, VBLK_QUEUE_SIZE_MAX, &v, e)) < 0)
        return -1;
    if (rc == 0)
        s->queue_size = (uint16_t)v;
    if (get_bool(p, "read_only", false, &s->read_only, e) < 0)
        return -1;
    /* Linux's packed ring fails a request with an I/O error when VDUSE's
     * bounce buffer is full (docs/vduse.md): VDUSE exports offer split
     * rings unless asked. */
    s->packed = s->transport == VBLKD_VHOST_USER;
    if (get_bool(p, "packed", false, &s->packed, e) < 0)
        return -1;
    rc = get_string(p, "serial", false, &str, e);
    if (rc < 0)
        return -1;
    if (rc == 1)
        str = name;
    else if (strlen(str) > VBLK_ID_BYTES) {
        vblkd_errorf(e, RPC_INVALID_PARAMS, "\"serial\" is %zu bytes; at most %u are reported",
                     strlen(str), VBLK_ID_BYTES);
        return -1;
    }
    snprintf(s->serial, sizeof(s->serial), "%.*s", (int)VBLK_ID_BYTES, str);
    if ((s->transport == VBLKD_VHOST_USER && !s->socket) ||
        (s->transport == VBLKD_VDUSE && !s->vduse_name) || !s->backend) {
        vblkd_errorf(e, RPC_INTERNAL_ERROR, "out of memory");
        return -1;
    }
    return 0;
}

static json_object *m_export_add(struct vblkd *d, json_object *p, struct vblkd_error *e)
{
    struct export_spec s;
    if (parse_spec(d, p, &s, e) < 0) {
        export_spec_clear(&s);
        return NULL;
    }
    struct export *x;
    if (export_create(d, &s, &x, e) < 0)
        return NULL;
    return export_view(x);
}

static json_object *m_export_del(struct vblkd *d, json_object *p, struct vblkd_error *e)
{
    static const char *const keys[] = {"name", "force", NULL};
    struct export *x;
    bool force = false;
    if (check_keys(p, keys, e) || get_bool(p, "force", false, &force, e) < 0 ||
        get_export(d, p, &x, e))
        return NULL;
    bool was_attached = export_attached(x);
    if (export_delete(d, x, force, e) < 0)
        return NULL;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "deleted", json_object_new_boolean(true));
    json_object_object_add(o, "disconnected", json_object_new_boolean(was_attached));
    return o;
}

static json_object *m_export_list(struct vblkd *d, json_object *p, struct vblkd_error *e)
{
    static const char *const keys[] = {NULL};
    if (check_keys(p, keys, e))
        return NULL;
    json_object *a = json_object_new_array();
    for (struct export *x = vblkd_exports(d); x; x = x->next)
        json_object_array_add(a, export_view(x));
    return a;
}

static json_object *m_export_get(struct vblkd *d, json_object *p, struct vblkd_error *e)
{
    static const char *const keys[] = {"name", NULL};
    struct export *x;
    if (check_keys(p, keys, e) || get_export(d, p, &x, e))
        return NULL;
    return export_view(x);
}

static json_object *m_export_resize(struct vblkd *d, json_object *p, struct vblkd_error *e)
{
    static const char *const keys[] = {"name", "size", NULL};
    struct export *x;
    json_object *v;
    uint64_t size = 0;
    if (check_keys(p, keys, e) || get_export(d, p, &x, e))
        return NULL;
    /* Without a size, a network export adopts what its server reports. */
    bool follow = !json_object_object_get_ex(p, "size", &v);
    if (!follow && (vblkd_parse_size(v, &size) < 0 || size == 0 || size % 512)) {
        vblkd_errorf(e, RPC_INVALID_PARAMS,
                     "\"size\" must be a positive multiple of 512 bytes: an integer, or a string "
                     "like \"512M\" or \"20G\"");
        return NULL;
    }
    uint64_t old = x->size;
    bool notified;
    if (export_resize(d, x, size, follow, &size, &notified, e) < 0)
        return NULL;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(x->spec.name));
    json_object_object_add(o, "old_size", u64(old));
    json_object_object_add(o, "size", u64(size));
    json_object_object_add(o, "notified", json_object_new_boolean(notified));
    return o;
}

static json_object *m_export_stats(struct vblkd *d, json_object *p, struct vblkd_error *e)
{
    static const char *const keys[] = {"name", NULL};
    struct export *x;
    if (check_keys(p, keys, e) || get_export(d, p, &x, e))
        return NULL;
    json_object *o = stats_view(d, x);
    if (!o)
        vblkd_errorf(e, RPC_INTERNAL_ERROR, "out of memory");
    return o;
}

static json_object *m_export_set_readonly(struct vblkd *d, json_object *p, struct vblkd_error *e)
{
    static const char *const keys[] = {"name", "read_only", NULL};
    struct export *x;
    bool ro;
    if (check_keys(p, keys, e) || get_export(d, p, &x, e) ||
        get_bool(p, "read_only", true, &ro, e) < 0)
        return NULL;
    if (export_set_read_only(d, x, ro, e) < 0)
        return NULL;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(x->spec.name));
    json_object_object_add(o, "read_only", json_object_new_boolean(ro));
    return o;
}

static const char *notify_name(enum vblk_notify_mode m)
{
    return m == VBLK_NOTIFY_EVENT ? "event" : m == VBLK_NOTIFY_POLL ? "poll" : "adaptive";
}

static json_object *m_server_info(struct vblkd *d, json_object *p, struct vblkd_error *e)
{
    static const char *const keys[] = {NULL};
    if (check_keys(p, keys, e))
        return NULL;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string("vblkd"));
    json_object_object_add(o, "version", json_object_new_string(vblk_version()));
    json_object_object_add(o, "pid", json_object_new_int((int)getpid()));
    json_object_object_add(o, "threads", json_object_new_int((int)vblkd_threads(d)));
    json_object_object_add(o, "max_threads", json_object_new_int((int)vblkd_max_threads(d)));
    json_object_object_add(o, "notify",
                           json_object_new_string(notify_name(vblkd_options(d)->notify)));
    json_object_object_add(o, "exports", json_object_new_int((int)vblkd_export_count(d)));
    json_object_object_add(o, "max_exports", json_object_new_int(VBLKD_MAX_EXPORTS));
    json_object_object_add(o, "uptime", json_object_new_double(vblkd_uptime(d)));
    if (vblkd_rpc_path(d))
        json_object_object_add(o, "rpc_socket", json_object_new_string(vblkd_rpc_path(d)));
    if (vblkd_metrics_port_of(d))
        json_object_object_add(o, "metrics_port", json_object_new_int(vblkd_metrics_port_of(d)));
    json_object *kinds = json_object_new_array();
    for (size_t i = 0; backend_kind_at(i); i++)
        json_object_array_add(kinds, json_object_new_string(backend_kind_at(i)->type));
    json_object_object_add(o, "backends", kinds);
    return o;
}

static json_object *m_server_shutdown(struct vblkd *d, json_object *p, struct vblkd_error *e)
{
    static const char *const keys[] = {NULL};
    if (check_keys(p, keys, e))
        return NULL;
    vblkd_request_stop(d);
    vblkd_log(d, VBLK_LOG_INFO, "server_shutdown: stopping");
    json_object *o = json_object_new_object();
    json_object_object_add(o, "stopping", json_object_new_boolean(true));
    return o;
}

static json_object *m_server_config(struct vblkd *d, json_object *p, struct vblkd_error *e)
{
    static const char *const keys[] = {NULL};
    if (check_keys(p, keys, e))
        return NULL;
    return vblkd_dump_config(d);
}

static const struct {
    const char *name;
    method_fn fn;
} methods[] = {
    {"export_add", m_export_add},
    {"export_del", m_export_del},
    {"export_list", m_export_list},
    {"export_get", m_export_get},
    {"export_resize", m_export_resize},
    {"export_stats", m_export_stats},
    {"export_set_readonly", m_export_set_readonly},
    {"server_info", m_server_info},
    {"server_config", m_server_config},
    {"server_shutdown", m_server_shutdown},
};

/* ---- the protocol ---- */

static json_object *error_response(json_object *id, int code, const char *msg)
{
    json_object *r = json_object_new_object();
    json_object_object_add(r, "jsonrpc", json_object_new_string("2.0"));
    json_object *err = json_object_new_object();
    json_object_object_add(err, "code", json_object_new_int(code));
    json_object_object_add(err, "message", json_object_new_string(msg));
    json_object_object_add(r, "error", err);
    json_object_object_add(r, "id", id ? json_object_get(id) : NULL);
    return r;
}

static json_object *call_one(struct vblkd *d, json_object *req)
{
    if (!json_object_is_type(req, json_type_object))
        return error_response(NULL, RPC_INVALID_REQUEST,
                              "a request must be an object with \"jsonrpc\": \"2.0\", \"method\", "
                              "\"params\" and \"id\"");
    json_object *id = NULL, *ver, *method, *params = NULL;
    bool has_id = json_object_object_get_ex(req, "id", &id);
    if (has_id && id && !json_object_is_type(id, json_type_int) &&
        !json_object_is_type(id, json_type_string))
        return error_response(NULL, RPC_INVALID_REQUEST,
                              "\"id\" must be a string, an integer or null");
    json_object_object_foreach(req, key, val)
    {
        (void)val;
        if (strcmp(key, "jsonrpc") && strcmp(key, "method") && strcmp(key, "params") &&
            strcmp(key, "id")) {
            char msg[160];
            snprintf(msg, sizeof(msg), "unknown request member \"%.64s\"", key);
            return error_response(id, RPC_INVALID_REQUEST, msg);
        }
    }
    if (!json_object_object_get_ex(req, "jsonrpc", &ver) ||
        !json_object_is_type(ver, json_type_string) ||
        strcmp(json_object_get_string(ver), "2.0") != 0)
        return error_response(id, RPC_INVALID_REQUEST, "\"jsonrpc\" must be \"2.0\"");
    if (!json_object_object_get_ex(req, "method", &method) ||
        !json_object_is_type(method, json_type_string))
        return error_response(id, RPC_INVALID_REQUEST, "\"method\" (a string) is required");
    if (json_object_object_get_ex(req, "params", &params) && params &&
        !json_object_is_type(params, json_type_object))
        return error_response(id, RPC_INVALID_PARAMS,
                              "\"params\" must be an object of named parameters");
    const char *name = json_object_get_string(method);
    method_fn fn = NULL;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (strcmp(methods[i].name, name) == 0)
            fn = methods[i].fn;
    json_object *result = NULL;
    struct vblkd_error e = {0};
    if (!fn) {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "unknown method \"%.64s\"; methods: export_add, export_del, export_list, "
                 "export_get, export_resize, export_stats, export_set_readonly, server_info, "
                 "server_config, server_shutdown",
                 name);
        vblkd_errorf(&e, RPC_METHOD_NOT_FOUND, "%s", msg);
    } else {
        json_object *empty = NULL;
        if (!params)
            params = empty = json_object_new_object();
        result = fn(d, params, &e);
        json_object_put(empty);
        if (!result && e.code == 0)
            vblkd_errorf(&e, RPC_INTERNAL_ERROR, "internal error");
    }
    if (!has_id) { /* a notification: no answer, even for an error */
        json_object_put(result);
        return NULL;
    }
    if (!result)
        return error_response(id, e.code, e.msg);
    json_object *r = json_object_new_object();
    json_object_object_add(r, "jsonrpc", json_object_new_string("2.0"));
    json_object_object_add(r, "result", result);
    json_object_object_add(r, "id", json_object_get(id));
    return r;
}

json_object *vblkd_rpc_call(struct vblkd *d, json_object *req)
{
    if (!json_object_is_type(req, json_type_array))
        return call_one(d, req);
    size_t n = json_object_array_length(req);
    if (n == 0)
        return error_response(NULL, RPC_INVALID_REQUEST,
                              "an empty batch: send at least one request in the array");
    json_object *out = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        json_object *r = call_one(d, json_object_array_get_idx(req, i));
        if (r)
            json_object_array_add(out, r);
    }
    if (json_object_array_length(out) == 0) {
        json_object_put(out);
        return NULL;
    }
    return out;
}

/* Parses all of @text (@len bytes, strict JSON, bounded depth) into *@out
 * (NULL for a JSON null). Returns 0, or -1 with @e filled. */
static int parse_all(const char *text, size_t len, json_object **out, struct vblkd_error *e)
{
    *out = NULL;
    json_tokener *tok = json_tokener_new_ex(VBLKD_RPC_MAX_DEPTH);
    if (!tok) {
        vblkd_errorf(e, RPC_INTERNAL_ERROR, "out of memory");
        return -1;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error err = json_tokener_get_error(tok);
    size_t end = len;
    if (err == json_tokener_continue) {
        /* The end of the text ends a top-level number ("42"). */
        o = json_tokener_parse_ex(tok, "", 1);
        err = json_tokener_get_error(tok);
        if (err == json_tokener_continue)
            err = json_tokener_error_parse_eof;
    } else if (err == json_tokener_success) {
        end = json_tokener_get_parse_end(tok);
    }
    json_tokener_free(tok);
    if (err != json_tokener_success) {
        json_object_put(o);
        vblkd_errorf(e, RPC_PARSE_ERROR, "parse error: %s", json_tokener_error_desc(err));
        return -1;
    }
    for (; end < len; end++)
        if (text[end] != ' ' && text[end] != '\n' && text[end] != '\r' && text[end] != '\t') {
            json_object_put(o);
            vblkd_errorf(e, RPC_PARSE_ERROR, "parse error: data after the JSON value");
            return -1;
        }
    *out = o;
    return 0;
}

char *vblkd_rpc_handle(struct vblkd *d, const char *req, size_t len)
{
    struct vblkd_error e;
    json_object *r;
    if (len > VBLKD_RPC_MAX_REQUEST || len > INT32_MAX) {
        char msg[96];
        snprintf(msg, sizeof(msg), "request larger than %u bytes", VBLKD_RPC_MAX_REQUEST);
        r = error_response(NULL, RPC_INVALID_REQUEST, msg);
    } else {
        json_object *o;
        r = parse_all(req, len, &o, &e) == 0 ? vblkd_rpc_call(d, o)
                                             : error_response(NULL, e.code, e.msg);
        json_object_put(o);
    }
    if (!r)
        return NULL;
    char *s = strdup(json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN));
    json_object_put(r);
    return s;
}

/* ---- configuration ---- */

json_object *vblkd_dump_config(struct vblkd *d)
{
    json_object *o = json_object_new_object();
    json_object *a = json_object_new_array();
    for (struct export *x = vblkd_exports(d); x; x = x->next)
        json_object_array_add(a, export_config(x));
    json_object_object_add(o, "exports", a);
    return o;
}

int vblkd_load_config(struct vblkd *d, const char *path, struct vblkd_error *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        vblkd_errorf(e, RPC_RESOURCE_ERROR, "cannot read %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > CONFIG_MAX_BYTES) {
        vblkd_errorf(e, RPC_RESOURCE_ERROR, "%s is not a regular file of at most %u bytes", path,
                     CONFIG_MAX_BYTES);
        close(fd);
        return -1;
    }
    size_t len = (size_t)st.st_size;
    char *text = malloc(len + 1);
    size_t got = 0;
    while (text && got < len) {
        ssize_t n = read(fd, text + got, len - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (!text || got != len) {
        free(text);
        vblkd_errorf(e, RPC_RESOURCE_ERROR, "cannot read %s", path);
        return -1;
    }
    struct vblkd_error pe;
    json_object *o;
    int prc = parse_all(text, len, &o, &pe);
    free(text);
    if (prc < 0) {
        vblkd_errorf(e, RPC_PARSE_ERROR, "%s: %s", path, pe.msg);
        return -1;
    }
    int rc = -1;
    json_object *a;
    static const char *const keys[] = {"exports", NULL};
    if (!json_object_is_type(o, json_type_object)) {
        vblkd_errorf(e, RPC_INVALID_PARAMS,
                     "%s: the configuration must be an object {\"exports\": [...]}", path);
    } else if (check_keys(o, keys, &pe)) {
        vblkd_errorf(e, RPC_INVALID_PARAMS, "%s: %s", path, pe.msg);
    } else if (!json_object_object_get_ex(o, "exports", &a) ||
               !json_object_is_type(a, json_type_array)) {
        vblkd_errorf(e, RPC_INVALID_PARAMS,
                     "%s: \"exports\" must be an array of export_add parameters", path);
    } else {
        rc = 0;
        for (size_t i = 0; i < json_object_array_length(a) && rc == 0; i++) {
            json_object *p = json_object_array_get_idx(a, i);
            if (!json_object_is_type(p, json_type_object)) {
                vblkd_errorf(e, RPC_INVALID_PARAMS, "%s: exports[%zu] must be an object", path, i);
                rc = -1;
                break;
            }
            json_object *r = m_export_add(d, p, &pe);
            if (!r) {
                vblkd_errorf(e, pe.code, "%s: exports[%zu]: %s", path, i, pe.msg);
                rc = -1;
            }
            json_object_put(r);
        }
    }
    json_object_put(o);
    return rc;
}
