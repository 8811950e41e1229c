/* SPDX-License-Identifier: MIT */
/* The backend kinds an export can use. A new kind is one entry in kinds[]:
 * its name, the keys its spec may have, and a function that opens it. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vblkd.h"
#if VBLK_HAVE_NBD
#include "virtioblk/nbd.h"
#endif
#if VBLK_HAVE_RBD
#include "virtioblk/rbd.h"
#endif

int vblkd_parse_size(json_object *v, uint64_t *out)
{
    if (json_object_is_type(v, json_type_int)) {
        int64_t n = json_object_get_int64(v);
        /* json-c saturates at INT64_MAX: refuse it rather than guess. */
        if (n < 0 || n == INT64_MAX)
            return -EINVAL;
        *out = (uint64_t)n;
        return 0;
    }
    if (!json_object_is_type(v, json_type_string))
        return -EINVAL;
    const char *s = json_object_get_string(v);
    char *end;
    if (*s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long n = strtoull(s, &end, 10);
    if (errno)
        return -EINVAL;
    unsigned shift = 0;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    case 't':
    case 'T':
        shift = 40;
        break;
    case '\0':
        break;
    default:
        return -EINVAL;
    }
    if (shift) {
        end++;
        if (*end == 'i')
            end++;
        if (*end == 'B')
            end++;
    }
    if (*end || n > (UINT64_MAX >> shift))
        return -EINVAL;
    *out = (uint64_t)n << shift;
    return 0;
}

static int get_size(json_object *spec, const char *key, bool required, uint64_t *out,
                    struct vblkd_error *e)
{
    json_object *v;
    if (!json_object_object_get_ex(spec, key, &v)) {
        if (!required)
            return 1;
        vblkd_errorf(e, RPC_INVALID_PARAMS,
                     "backend: \"%s\" is required (bytes, or a string like \"1G\")", key);
        return -1;
    }
    if (vblkd_parse_size(v, out) < 0) {
        vblkd_errorf(e, RPC_INVALID_PARAMS,
                     "backend: \"%s\" must be a number of bytes or a string like \"64M\" or \"1G\"",
                     key);
        return -1;
    }
    if (*out == 0 || *out % 512) {
        vblkd_errorf(e, RPC_INVALID_PARAMS,
                     "backend: \"%s\" is %" PRIu64 " bytes; it must be a positive multiple of 512",
                     key, *out);
        return -1;
    }
    return 0;
}

/* "zoned": {"zone_size": SIZE, "conv": N, "max_open": N, "max_active": N,
 * "model": "host-managed" | "host-aware"} on the memory and file kinds:
 * emulated zones (docs/zoned.md). Returns 1 if absent, 0 if parsed into
 * @o, -1 with @e filled. */
static int get_zoned(json_object *spec, struct vblk_zoned_opts *o, struct vblkd_error *e)
{
    json_object *z, *v;
    if (!json_object_object_get_ex(spec, "zoned", &z))
        return 1;
    if (!json_object_is_type(z, json_type_object)) {
        vblkd_errorf(e, RPC_INVALID_PARAMS,
                     "backend: \"zoned\" must be an object such as {\"zone_size\": \"64M\"}");
        return -1;
    }
    *o = (struct vblk_zoned_opts){0};
    static const char *const keys[] = {"zone_size", "conv", "max_open", "max_active", "model"};
    json_object_object_foreach(z, key, val)
    {
        (void)val;
        size_t i = 0;
        while (i < sizeof(keys) / sizeof(keys[0]) && strcmp(key, keys[i]) != 0)
            i++;
        if (i == sizeof(keys) / sizeof(keys[0])) {
            vblkd_errorf(e, RPC_INVALID_PARAMS,
                         "backend: unknown key \"%s\" in \"zoned\" (zone_size, conv, max_open, "
                         "max_active, model)",
                         key);
            return -1;
        }
    }
    uint64_t zs;
    if (!json_object_object_get_ex(z, "zone_size", &v) || vblkd_parse_size(v, &zs) < 0 || !zs ||
        zs % 512 || zs / 512 > UINT32_MAX || (zs & (zs - 1))) {
        vblkd_errorf(e, RPC_INVALID_PARAMS,
                     "backend: \"zoned\" needs \"zone_size\", a power of two of at least 512 "
                     "bytes (such as \"64M\")");
        return -1;
    }
    o->zone_sectors = (uint32_t)(zs / 512);
    static const char *const counts[] = {"conv", "max_open", "max_active"};
    uint32_t *dst[] = {&o->nr_conv, &o->max_open, &o->max_active};
    for (size_t i = 0; i < 3; i++) {
        if (!json_object_object_get_ex(z, counts[i], &v))
            continue;
        int64_t n = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
        if (n < 0 || n > UINT32_MAX) {
            vblkd_errorf(e, RPC_INVALID_PARAMS,
                         "backend: \"zoned\": \"%s\" must be a number of zones", counts[i]);
            return -1;
        }
        *dst[i] = (uint32_t)n;
    }
    if (json_object_object_get_ex(z, "model", &v)) {
        const char *m = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
        if (strcmp(m, "host-managed") == 0)
            o->model = VBLK_Z_HM;
        else if (strcmp(m, "host-aware") == 0)
            o->model = VBLK_Z_HA;
        else {
            vblkd_errorf(e, RPC_INVALID_PARAMS,
                         "backend: \"zoned\": \"model\" must be \"host-managed\" or "
                         "\"host-aware\"");
            return -1;
        }
    }
    return 0;
}

/* The message for zone options that do not fit a disk of @bytes. */
static void zoned_misfit(struct vblkd_error *e, const struct vblk_zoned_opts *o, uint64_t bytes)
{
    vblkd_errorf(e, RPC_INVALID_PARAMS,
                 "backend: \"zoned\" does not fit a %" PRIu64 "-byte disk (%u zones): conv at "
                 "most the number of zones, max_open at most max_active",
                 bytes, vblk_zone_count(bytes / 512, o->zone_sectors));
}

/* ---- null ---- */

static const char *const null_keys[] = {"size", NULL};

static int null_open(struct vblkd *d, json_object *spec, bool ro, struct vblk_backend *be,
                     struct vblkd_error *e)
{
    (void)d;
    (void)ro;
    uint64_t size;
    if (get_size(spec, "size", true, &size, e) < 0)
        return -1;
    int rc = vblk_backend_null_create(size, be);
    if (rc < 0) {
        vblkd_errorf(e, RPC_RESOURCE_ERROR, "null backend: %s", strerror(-rc));
        return -1;
    }
    return 0;
}

/* ---- memory ---- */

static const char *const memory_keys[] = {"size", "zoned", NULL};

static int memory_open(struct vblkd *d, json_object *spec, bool ro, struct vblk_backend *be,
                       struct vblkd_error *e)
{
    (void)d;
    (void)ro;
    uint64_t size;
    if (get_size(spec, "size", true, &size, e) < 0)
        return -1;
    struct vblk_zoned_opts zo;
    int zoned = get_zoned(spec, &zo, e);
    if (zoned < 0)
        return -1;
    int rc = zoned == 0 ? vblk_backend_memory_create_zoned(size, &zo, be)
                        : vblk_backend_memory_create(size, be);
    if (rc == -EINVAL && zoned == 0) {
        zoned_misfit(e, &zo, size);
        return -1;
    }
    if (rc < 0) {
        vblkd_errorf(e, RPC_RESOURCE_ERROR,
                     "memory backend of %" PRIu64 " bytes: %s (is there that much memory?)", size,
                     strerror(-rc));
        return -1;
    }
    return 0;
}

/* ---- file ---- */

static const char *const file_keys[] = {"path", "engine", "direct", "size", "zoned", NULL};

static int file_open(struct vblkd *d, json_object *spec, bool ro, struct vblk_backend *be,
                     struct vblkd_error *e)
{
    json_object *v;
    if (!json_object_object_get_ex(spec, "path", &v) || !json_object_is_type(v, json_type_string)) {
        vblkd_errorf(e, RPC_INVALID_PARAMS,
                     "backend: \"path\" (the image file, a string) is required");
        return -1;
    }
    const char *path = json_object_get_string(v);
    if (vblkd_check_path(d, "backend path", path, VBLKD_PATH_MAX, e) < 0)
        return -1;
    struct vblk_file_opts fo = {.read_only = ro, .engine = VBLK_FILE_ENGINE_AUTO};
    if (json_object_object_get_ex(spec, "engine", &v)) {
        const char *eng = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
        if (strcmp(eng, "io_uring") == 0)
            fo.engine = VBLK_FILE_ENGINE_IO_URING;
        else if (strcmp(eng, "psync") == 0)
            fo.engine = VBLK_FILE_ENGINE_PSYNC;
        else if (strcmp(eng, "auto") != 0) {
            vblkd_errorf(e, RPC_INVALID_PARAMS,
                         "backend: \"engine\" must be \"auto\", \"io_uring\" or \"psync\"");
            return -1;
        }
    }
    if (json_object_object_get_ex(spec, "direct", &v)) {
        if (!json_object_is_type(v, json_type_boolean)) {
            vblkd_errorf(e, RPC_INVALID_PARAMS, "backend: \"direct\" must be true or false");
            return -1;
        }
        fo.direct = json_object_get_boolean(v);
    }
    uint64_t want = 0;
    int has_size = get_size(spec, "size", false, &want, e);
    if (has_size < 0)
        return -1;
    /* Emulated zones keep their state next to the image (IMAGE.zones);
     * zoned images use the psync engine and cannot be resized. */
    struct vblk_zoned_opts zo;
    int zoned = get_zoned(spec, &zo, e);
    if (zoned < 0)
        return -1;
    if (zoned == 0) {
        if (fo.engine == VBLK_FILE_ENGINE_IO_URING) {
            vblkd_errorf(e, RPC_INVALID_PARAMS,
                         "backend: zoned images use the psync engine, not \"io_uring\"");
            return -1;
        }
        fo.engine = VBLK_FILE_ENGINE_PSYNC;
        fo.zoned = &zo;
    }
    struct stat st;
    if (stat(path, &st) < 0) {
        vblkd_errorf(e, RPC_RESOURCE_ERROR, "cannot open image '%s': %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        vblkd_errorf(e, RPC_RESOURCE_ERROR, "image '%s' is not a regular file or a block device",
                     path);
        return -1;
    }
    if (S_ISREG(st.st_mode) && st.st_size % 512) {
        vblkd_errorf(e, RPC_RESOURCE_ERROR, "image '%s' is %lld bytes, not a multiple of 512", path,
                     (long long)st.st_size);
        return -1;
    }
    int rc = vblk_backend_file_open(path, &fo, be);
    if (rc == -EINVAL && zoned == 0) {
        zoned_misfit(e, &zo, S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0);
        return -1;
    }
    if (rc == -EBADMSG && zoned == 0) {
        vblkd_errorf(e, RPC_RESOURCE_ERROR,
                     "the zone metadata of '%s' is damaged or was made for other zone options",
                     path);
        return -1;
    }
    if (rc == -ENOTSUP && fo.engine == VBLK_FILE_ENGINE_IO_URING) {
        vblkd_errorf(e, RPC_NOT_SUPPORTED,
                     "io_uring is not available here; use \"engine\": \"psync\" or \"auto\"");
        return -1;
    }
    if (rc < 0) {
        vblkd_errorf(e, RPC_RESOURCE_ERROR, "cannot open image '%s'%s: %s", path,
                     ro ? " read-only" : " for writing", strerror(-rc));
        return -1;
    }
    /* "size" (written by a dumped configuration after a resize): the image
     * is brought to that size. */
    if (has_size == 0 && want != be->size) {
        rc = vblk_backend_resize(be, want);
        if (rc < 0) {
            vblkd_errorf(e, RPC_RESOURCE_ERROR, "cannot make image '%s' %" PRIu64 " bytes: %s",
                         path, want, strerror(-rc));
            vblk_backend_destroy(be);
            return -1;
        }
    }
    if (be->size == 0) {
        vblkd_errorf(e, RPC_RESOURCE_ERROR,
                     "image '%s' is empty; give it a size first (truncate -s)", path);
        vblk_backend_destroy(be);
        return -1;
    }
    return 0;
}

#if VBLK_HAVE_NBD || VBLK_HAVE_RBD
/* Optional keys of the network kinds. */
static int opt_string(json_object *spec, const char *key, const char **out, struct vblkd_error *e)
{
    json_object *v;
    if (!json_object_object_get_ex(spec, key, &v))
        return 1;
    if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0 ||
        strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v)) {
        vblkd_errorf(e, RPC_INVALID_PARAMS, "backend: \"%s\" must be a non-empty string", key);
        return -1;
    }
    *out = json_object_get_string(v);
    return 0;
}

static int opt_seconds(json_object *spec, const char *key, unsigned max, unsigned *out,
                       struct vblkd_error *e)
{
    json_object *v;
    if (!json_object_object_get_ex(spec, key, &v))
        return 1;
    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 1 ||
        json_object_get_int64(v) > max) {
        vblkd_errorf(e, RPC_INVALID_PARAMS, "backend: \"%s\" must be 1..%u seconds", key, max);
        return -1;
    }
    *out = (unsigned)json_object_get_int64(v);
    return 0;
}

static void network_log(void *opaque, int level, const char *msg)
{
    vblkd_log(opaque, level, "%s", msg);
}
#endif

#if VBLK_HAVE_NBD
/* ---- nbd ---- */

static const char *const nbd_keys[] = {"uri", "timeout", "connect_timeout", "one_connection", NULL};

static int nbd_open(struct vblkd *d, json_object *spec, bool ro, struct vblk_backend *be,
                    struct vblkd_error *e)
{
    struct vblk_nbd_opts o = {.read_only = ro, .log = network_log, .log_opaque = d};
    const char *uri;
    unsigned t;
    json_object *v;
    int rc = opt_string(spec, "uri", &uri, e);
    if (rc) {
        if (rc > 0)
            vblkd_errorf(e, RPC_INVALID_PARAMS,
                         "backend: \"uri\" is required: nbd://HOST[:PORT]/EXPORT or "
                         "nbd+unix:///EXPORT?socket=PATH");
        return -1;
    }
    if ((rc = opt_seconds(spec, "timeout", 3600, &t, e)) < 0)
        return -1;
    if (rc == 0)
        o.request_timeout_ms = t * 1000;
    if ((rc = opt_seconds(spec, "connect_timeout", 600, &t, e)) < 0)
        return -1;
    if (rc == 0)
        o.connect_timeout_ms = t * 1000;
    if (json_object_object_get_ex(spec, "one_connection", &v)) {
        if (!json_object_is_type(v, json_type_boolean)) {
            vblkd_errorf(e, RPC_INVALID_PARAMS,
                         "backend: \"one_connection\" must be true or false");
            return -1;
        }
        o.one_connection = json_object_get_boolean(v);
    }
    rc = vblk_backend_nbd_open(uri, &o, be);
    if (rc < 0) {
        vblkd_errorf(e, rc == -EINVAL ? RPC_INVALID_PARAMS : RPC_RESOURCE_ERROR,
                     "cannot open NBD export %.200s: %s (the daemon's log has the details)", uri,
                     strerror(-rc));
        return -1;
    }
    return 0;
}

/* What the server reports now, rounded down to sectors. */
static int nbd_storage_size(struct vblk_backend *be, uint64_t *size, struct vblkd_error *e)
{
    uint64_t s;
    int rc = vblk_backend_nbd_server_size(be, &s);
    if (rc < 0) {
        vblkd_errorf(e, RPC_RESOURCE_ERROR,
                     "cannot reach the NBD server to read the export's size: %s (the daemon's log "
                     "has the details)",
                     strerror(-rc));
        return -1;
    }
    *size = s - s % VBLK_SECTOR_SIZE;
    return 0;
}
#endif

#if VBLK_HAVE_RBD
/* ---- rbd ---- */

static const char *const rbd_keys[] = {"image",  "pool",    "namespace", "snapshot",        "conf",
                                       "client", "keyring", "timeout",   "connect_timeout", "cache",
                                       NULL};

static int rbd_open(struct vblkd *d, json_object *spec, bool ro, struct vblk_backend *be,
                    struct vblkd_error *e)
{
    struct vblk_rbd_opts o = {.read_only = ro, .pool = "rbd"};
    const char *s;
    int rc;
    if ((rc = opt_string(spec, "image", &o.image, e))) {
        if (rc > 0)
            vblkd_errorf(e, RPC_INVALID_PARAMS,
                         "backend: \"image\" (the RBD image name) is required");
        return -1;
    }
    if (opt_string(spec, "pool", &o.pool, e) < 0 ||
        opt_string(spec, "namespace", &o.pool_namespace, e) < 0 ||
        opt_string(spec, "snapshot", &o.snapshot, e) < 0 ||
        opt_string(spec, "client", &o.client_id, e) < 0)
        return -1;
    if ((rc = opt_string(spec, "conf", &s, e)) < 0)
        return -1;
    if (rc == 0) {
        if (vblkd_check_path(d, "backend conf", s, VBLKD_PATH_MAX, e) < 0)
            return -1;
        o.conf_path = s;
    }
    if ((rc = opt_string(spec, "keyring", &s, e)) < 0)
        return -1;
    if (rc == 0) {
        if (vblkd_check_path(d, "backend keyring", s, VBLKD_PATH_MAX, e) < 0)
            return -1;
        o.keyring = s;
    }
    if (opt_seconds(spec, "timeout", 3600, &o.io_timeout_s, e) < 0 ||
        opt_seconds(spec, "connect_timeout", 600, &o.connect_timeout_s, e) < 0)
        return -1;
    if ((rc = opt_string(spec, "cache", &s, e)) < 0)
        return -1;
    if (rc == 0) {
        if (strcmp(s, "writeback") == 0)
            o.cache = VBLK_RBD_CACHE_WRITEBACK;
        else if (strcmp(s, "writethrough") == 0)
            o.cache = VBLK_RBD_CACHE_WRITETHROUGH;
        else if (strcmp(s, "none") == 0)
            o.cache = VBLK_RBD_CACHE_NONE;
        else {
            vblkd_errorf(e, RPC_INVALID_PARAMS,
                         "backend: \"cache\" must be \"writeback\", \"writethrough\" or \"none\"");
            return -1;
        }
    }
    char err[256] = "";
    rc = vblk_backend_rbd_open(&o, be, err, sizeof(err));
    if (rc < 0) {
        vblkd_errorf(e, rc == -EINVAL ? RPC_INVALID_PARAMS : RPC_RESOURCE_ERROR,
                     "cannot open RBD image %s/%s: %s", o.pool, o.image,
                     err[0] ? err : strerror(-rc));
        return -1;
    }
    return 0;
}

static int rbd_storage_size(struct vblk_backend *be, uint64_t *size, struct vblkd_error *e)
{
    int rc = vblk_backend_rbd_image_size(be, size);
    if (rc < 0) {
        vblkd_errorf(e, RPC_RESOURCE_ERROR, "cannot read the RBD image's size: %s", strerror(-rc));
        return -1;
    }
    return 0;
}
#endif

static const struct backend_kind kinds[] = {
    {"null", null_keys, null_open, false, NULL, NULL},
    {"memory", memory_keys, memory_open, false, NULL, NULL},
    {"file", file_keys, file_open, false, NULL, NULL},
#if VBLK_HAVE_NBD
    /* NBD tells no one about a resize: export_resize asks the server. */
    {"nbd", nbd_keys, nbd_open, true, nbd_storage_size, NULL},
#endif
#if VBLK_HAVE_RBD
    {"rbd", rbd_keys, rbd_open, true, rbd_storage_size, vblk_backend_rbd_update_fd},
#endif
};

const struct backend_kind *backend_kind_find(const char *type)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(kinds[i].type, type) == 0)
            return &kinds[i];
    return NULL;
}

const struct backend_kind *backend_kind_at(size_t i)
{
    return i < sizeof(kinds) / sizeof(kinds[0]) ? &kinds[i] : NULL;
}

const char *backend_kind_names(void)
{
    static char names[256];
    if (!names[0]) {
        size_t at = 0;
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
            at += (size_t)snprintf(names + at, sizeof(names) - at, "%s\"%s\"", i ? ", " : "",
                                   kinds[i].type);
    }
    return names;
}

int backend_open(struct vblkd *d, json_object *spec, bool read_only, struct vblk_backend *be,
                 struct vblkd_error *e)
{
    json_object *t;
    if (!json_object_is_type(spec, json_type_object)) {
        vblkd_errorf(
            e, RPC_INVALID_PARAMS,
            "\"backend\" must be an object such as {\"type\": \"memory\", \"size\": \"1G\"}");
        return -1;
    }
    if (!json_object_object_get_ex(spec, "type", &t) || !json_object_is_type(t, json_type_string)) {
        vblkd_errorf(e, RPC_INVALID_PARAMS, "backend: \"type\" is required: one of %s",
                     backend_kind_names());
        return -1;
    }
    const struct backend_kind *k = backend_kind_find(json_object_get_string(t));
    if (!k) {
        vblkd_errorf(e, RPC_INVALID_PARAMS, "backend: unknown type \"%.64s\"; known types: %s",
                     json_object_get_string(t), backend_kind_names());
        return -1;
    }
    if (k->network && vblkd_options(d)->no_network_backends) {
        vblkd_errorf(e, RPC_NOT_SUPPORTED, "backend: %s is disabled in this daemon", k->type);
        return -1;
    }
    json_object_object_foreach(spec, key, val)
    {
        (void)val;
        if (strcmp(key, "type") == 0)
            continue;
        bool known = false;
        for (const char *const *p = k->keys; *p; p++)
            known = known || strcmp(*p, key) == 0;
        if (!known) {
            vblkd_errorf(e, RPC_INVALID_PARAMS, "backend: unknown key \"%.64s\" for type \"%s\"",
                         key, k->type);
            return -1;
        }
    }
    return k->open(d, spec, read_only, be, e);
}

const struct backend_kind *backend_kind_of(json_object *spec)
{
    json_object *t;
    if (!json_object_object_get_ex(spec, "type", &t) || !json_object_is_type(t, json_type_string))
        return NULL;
    return backend_kind_find(json_object_get_string(t));
}

void backend_spec_set_size(json_object *spec, uint64_t size)
{
    /* A network image's size lives on its server. */
    const struct backend_kind *k = backend_kind_of(spec);
    if (k != NULL && k->network)
        return;
    json_object_object_add(spec, "size", json_object_new_int64((int64_t)size));
}
