/* SPDX-License-Identifier: MIT */
/*
 * The RBD backend's pure functions, kept apart from librbd calls so that the
 * unit tests can check them: image spec parsing, the one-line messages for
 * start-up failures, and the mapping of librbd results to virtio status.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#if VBLK_HAVE_RBD
#include "backend/rbd_internal.h"
#include "virtioblk/spec.h"

/* A name the rbd tool would accept: non-empty, no separator in it. */
static bool name_ok(const char *s)
{
    return *s != '\0' && strpbrk(s, "/@") == NULL;
}

int vblk_rbd_parse_spec(const char *spec, char *buf, size_t buflen, struct vblk_rbd_opts *opts)
{
    char *parts[4], *at, *p;
    size_t n, len;

    if (spec == NULL || buf == NULL || opts == NULL)
        return -EINVAL;
    len = strlen(spec);
    if (len == 0)
        return -EINVAL;
    if (buflen < len + 5) /* the copy, its NUL, and "rbd" + NUL for a bare IMAGE */
        return -ENAMETOOLONG;
    memcpy(buf, spec, len + 1);

    at = strchr(buf, '@');
    if (at != NULL) {
        *at++ = '\0';
        if (!name_ok(at))
            return -EINVAL;
    }
    n = 0;
    p = buf;
    for (;;) {
        char *slash = strchr(p, '/');
        if (n == 3)
            return -EINVAL; /* a fourth component */
        parts[n++] = p;
        if (slash == NULL)
            break;
        *slash = '\0';
        p = slash + 1;
    }
    for (size_t i = 0; i < n; i++)
        if (!name_ok(parts[i]))
            return -EINVAL;

    opts->pool_namespace = NULL;
    switch (n) {
    case 1: /* IMAGE: the rbd tool's default pool */
        p = buf + len + 1;
        memcpy(p, "rbd", 4);
        opts->pool = p;
        opts->image = parts[0];
        break;
    case 2:
        opts->pool = parts[0];
        opts->image = parts[1];
        break;
    default:
        opts->pool = parts[0];
        opts->pool_namespace = parts[1];
        opts->image = parts[2];
        break;
    }
    opts->snapshot = at;
    return 0;
}

void rbd_spec_string(const struct vblk_rbd_opts *o, char *buf, size_t len)
{
    const char *ns = o->pool_namespace != NULL ? o->pool_namespace : "";
    snprintf(buf, len, "%s/%s%s%s%s%s", o->pool ? o->pool : "?", ns, *ns ? "/" : "",
             o->image ? o->image : "?", o->snapshot ? "@" : "", o->snapshot ? o->snapshot : "");
}

static bool denied(int err)
{
    return err == -EACCES || err == -EPERM;
}

void rbd_error_message(enum rbd_stage stage, int err, const struct vblk_rbd_opts *o,
                       unsigned timeout, const char *mon, char *buf, size_t len)
{
    const char *id = o->client_id != NULL && *o->client_id ? o->client_id : "admin";
    const char *why = strerror(err < 0 ? -err : err);
    char spec[512];

    if (len == 0)
        return;
    rbd_spec_string(o, spec, sizeof(spec));
    if (mon == NULL || *mon == '\0')
        mon = "mon_host not set";
    switch (stage) {
    case RBD_STAGE_OPTIONS:
        snprintf(buf, len, "rbd %s: librbd rejected a setting: %s", spec, why);
        break;
    case RBD_STAGE_CREATE:
        snprintf(buf, len, "rbd %s: cannot create a Ceph client for client.%s: %s", spec, id, why);
        break;
    case RBD_STAGE_CONF:
        if (o->conf_path != NULL)
            snprintf(buf, len, "rbd %s: cannot read the Ceph configuration %s: %s", spec,
                     o->conf_path, err == -EINVAL ? "not a valid configuration file" : why);
        else
            snprintf(buf, len,
                     "rbd %s: cannot use the Ceph configuration ($CEPH_CONF, $CEPH_ARGS): %s", spec,
                     why);
        break;
    case RBD_STAGE_KEYRING:
        snprintf(buf, len, "rbd %s: cannot read keyring %s: %s", spec,
                 o->keyring ? o->keyring : "?", why);
        break;
    case RBD_STAGE_CONNECT:
        if (err == -ETIMEDOUT)
            snprintf(buf, len, "rbd %s: no answer from the Ceph monitors (%s) within %u s", spec,
                     mon, timeout);
        else if (denied(err))
            snprintf(buf, len,
                     "rbd %s: the Ceph monitors (%s) refused client.%s: permission denied "
                     "(unknown client, or a wrong key in the keyring)",
                     spec, mon, id);
        else if (err == -ENOENT)
            snprintf(buf, len,
                     "rbd %s: no key for client.%s: no keyring found (name one in ceph.conf "
                     "or give one)",
                     spec, id);
        else
            snprintf(buf, len, "rbd %s: cannot connect to the Ceph monitors (%s) as client.%s: %s",
                     spec, mon, id, why);
        break;
    case RBD_STAGE_POOL:
        if (err == -ENOENT)
            snprintf(buf, len, "rbd %s: pool '%s' does not exist", spec, o->pool);
        else if (denied(err))
            snprintf(buf, len, "rbd %s: client.%s may not use pool '%s'", spec, id, o->pool);
        else
            snprintf(buf, len, "rbd %s: cannot open pool '%s': %s", spec, o->pool, why);
        break;
    case RBD_STAGE_NS:
        if (err == -ENOENT)
            snprintf(buf, len, "rbd %s: namespace '%s' does not exist in pool '%s'", spec,
                     o->pool_namespace, o->pool);
        else
            snprintf(buf, len, "rbd %s: cannot look up namespace '%s' in pool '%s': %s", spec,
                     o->pool_namespace, o->pool, why);
        break;
    case RBD_STAGE_IMAGE:
        if (err == -ENOENT)
            snprintf(buf, len, "rbd %s: image '%s' does not exist", spec, o->image);
        else if (denied(err))
            snprintf(buf, len, "rbd %s: client.%s may not open image '%s': permission denied", spec,
                     id, o->image);
        else if (err == -ETIMEDOUT)
            snprintf(buf, len,
                     "rbd %s: no answer from the OSDs within %u s while opening image '%s'", spec,
                     timeout, o->image);
        else
            snprintf(buf, len, "rbd %s: cannot open image '%s': %s", spec, o->image, why);
        break;
    case RBD_STAGE_SNAPSHOT:
        snprintf(buf, len, "rbd %s: image '%s' has no snapshot '%s'", spec, o->image,
                 o->snapshot ? o->snapshot : "?");
        break;
    case RBD_STAGE_SIZE:
        if (err == -EINVAL)
            snprintf(buf, len, "rbd %s: image '%s' is smaller than one 512-byte sector", spec,
                     o->image);
        else
            snprintf(buf, len, "rbd %s: cannot read the size of image '%s': %s", spec, o->image,
                     why);
        break;
    }
}

uint8_t rbd_result_status(int64_t r, uint32_t type, uint32_t len)
{
    if (r >= 0) {
        /* A read returns its byte count (a short one is padded with zeros
         * by the caller); nothing else returns more than 0. */
        if (type == VBLK_T_IN)
            return r <= (int64_t)len ? VBLK_S_OK : VBLK_S_IOERR;
        return VBLK_S_OK;
    }
    switch (-r) {
    case EOPNOTSUPP:
#if ENOTSUP != EOPNOTSUPP
    case ENOTSUP:
#endif
    case ENOSYS:
        return VBLK_S_UNSUPP;
    default:
        /* ETIMEDOUT (the I/O timeout), EIO, EROFS, EBLOCKLISTED (ESHUTDOWN),
         * ENOSPC, ...: the driver can only retry or give up. */
        return VBLK_S_IOERR;
    }
}

#else
typedef int vblk_rbd_util_unused;
#endif
