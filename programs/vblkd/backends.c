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

static const char *const memory_keys[] = {"size", NULL};

static int memory_open(struct vblkd *d, json_object *spec, bool ro, struct vblk_backend *be,
                       struct vblkd_error *e)
{
    (void)d;
    (void)ro;
    uint64_t size;
    if (get_size(spec, "size", true, &size, e) < 0)
        return -1;
    int rc = vblk_backend_memory_create(size, be);
    if (rc < 0) {
        vblkd_errorf(e, RPC_RESOURCE_ERROR,
                     "memory backend of %" PRIu64 " bytes: %s (is there that much memory?)", size,
                     strerror(-rc));
        return -1;
    }
    return 0;
}

/* ---- file ---- */

static const char *const file_keys[] = {"path", "engine", "direct", "size", NULL};

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

static const struct backend_kind kinds[] = {
    {"null", null_keys, null_open},
    {"memory", memory_keys, memory_open},
    {"file", file_keys, file_open},
};

const struct backend_kind *backend_kind_find(const char *type)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(kinds[i].type, type) == 0)
            return &kinds[i];
    return NULL;
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

void backend_spec_set_size(json_object *spec, uint64_t size)
{
    json_object_object_add(spec, "size", json_object_new_int64((int64_t)size));
}
