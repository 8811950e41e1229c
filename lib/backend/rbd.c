/* SPDX-License-Identifier: MIT */
/*
 * The RBD backend: connecting to the cluster, opening the image, closing
 * it, and the counters. The datapath is in rbd_io.c.
 *
 * Every step of opening is bounded in time: rados_connect by
 * client_mount_timeout and rados_mon_op_timeout (the connect timeout), the
 * OSD reads of rbd_open by rados_osd_op_timeout (the I/O timeout, which
 * also bounds every request later). A failure names the step that failed
 * in one line (rbd_error_message).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#if VBLK_HAVE_RBD
#include "backend/backend_internal.h"
#include "backend/rbd_internal.h"

static void rbd_destroy(void *ctx)
{
    struct rbd_be *be = ctx;

    if (be == NULL)
        return;
    /* No update callback runs once rbd_update_unwatch has returned. */
    if (be->update_fd >= 0) {
        rbd_update_unwatch(be->image, be->update_handle);
        close(be->update_fd);
    }
    /* rbd_close writes back the cache and releases the exclusive lock:
     * bounded by the I/O timeout like any other operation. */
    if (be->image != NULL)
        rbd_close(be->image);
    if (be->ioctx != NULL)
        rados_ioctx_destroy(be->ioctx);
    if (be->cluster != NULL)
        rados_shutdown(be->cluster);
    free(be);
}

static int resize_progress(uint64_t done, uint64_t total, void *arg)
{
    (void)done;
    (void)total;
    (void)arg;
    return 0;
}

/*
 * Grows or shrinks the image with librbd. Growing: the image first, then
 * requests may use the new space. Shrinking: requests past the new end are
 * refused first, the steps already checked against the old size are waited
 * for (BE_RESIZE_TIMEOUT_MS) until librbd has completed them, then
 * rbd_resize2 cuts the image. rbd_resize2 is bounded by the I/O timeout
 * (rados_osd_op_timeout) like every other operation.
 */
static int rbd_be_resize(void *ctx, uint64_t size)
{
    struct rbd_be *be = ctx;
    uint64_t old = be_guard_size(&be->guard);
    int r;

    if (be->read_only)
        return -EROFS;
    if (size >= old) {
        /* Growing (or back after a shrink that timed out): the image
         * first. An image already that large (grown by its admin) is left
         * alone; one that is larger is cut only back to what requests
         * could not have touched. */
        if (size != be->image_size) {
            r = rbd_resize2(be->image, size, size < be->image_size, resize_progress, NULL);
            /* -ETIMEDOUT would say the new size is in force. */
            if (r == -ETIMEDOUT)
                return -ETIME;
            if (r < 0)
                return r;
            be->image_size = size;
        }
        atomic_store(&be->guard.size, size);
        return 0;
    }
    /* -ETIMEDOUT: new requests see the new size, the image keeps its own. */
    r = be_guard_set_size(&be->guard, size, BE_RESIZE_TIMEOUT_MS);
    if (r < 0)
        return r;
    r = rbd_resize2(be->image, size, true, resize_progress, NULL);
    if (r < 0) {
        atomic_store(&be->guard.size, old);
        return r == -ETIMEDOUT ? -ETIME : r;
    }
    be->image_size = size;
    return 0;
}

/* librbd's thread: the image's header changed (a resize, a snapshot, ...). */
static void on_update(void *arg)
{
    struct rbd_be *be = arg;
    (void)eventfd_write(be->update_fd, 1);
}

int vblk_backend_rbd_update_fd(const struct vblk_backend *b)
{
    struct rbd_be *be;
    int r;

    if (b == NULL || b->ops == NULL || b->ctx == NULL || b->ops->destroy != rbd_destroy)
        return -EINVAL;
    be = b->ctx;
    /* librbd keeps no watch on an image opened read-only: no updates. */
    if (be->read_only)
        return -ENOTSUP;
    if (be->update_fd >= 0)
        return be->update_fd;
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return -errno;
    be->update_fd = fd;
    /* librbd's own header watch calls back: no extra traffic to the OSDs. */
    r = rbd_update_watch(be->image, &be->update_handle, on_update, be);
    if (r < 0) {
        be->update_fd = -1;
        close(fd);
        return r;
    }
    return fd;
}

int vblk_backend_rbd_image_size(const struct vblk_backend *b, uint64_t *size)
{
    struct rbd_be *be;
    uint64_t sz;
    int r;

    if (b == NULL || size == NULL || b->ops == NULL || b->ctx == NULL ||
        b->ops->destroy != rbd_destroy)
        return -EINVAL;
    be = b->ctx;
    /* librbd refreshes the image's header first if it changed. */
    r = rbd_get_size(be->image, &sz);
    if (r < 0)
        return r;
    *size = sz - sz % VBLK_SECTOR_SIZE;
    return 0;
}

/* Settings this backend imposes, applied after ceph.conf and $CEPH_ARGS. */
static int apply_settings(rados_t cl, const struct vblk_rbd_opts *o, unsigned ctimeout,
                          unsigned iotimeout)
{
    char ct[16], it[16];
    const char *const common[][2] = {
        {"client_mount_timeout", ct},
        {"rados_mon_op_timeout", ct},
        {"rados_osd_op_timeout", it},
        /* The queue thread must never wait inside rbd_aio_*. */
        {"rbd_non_blocking_aio", "true"},
        /* A discarded range reads back as zeros, even a partial object. */
        {"rbd_skip_partial_discard", "false"},
        /* librbd keeps the caller's buffers for writes (and copies them
         * anyway when a write-back cache holds dirty data). */
        {"rbd_disable_zero_copy_writes", "false"},
        /* Start-up failures are reported by the caller in one line. */
        {"log_to_stderr", "false"},
        {"err_to_stderr", "false"},
    };
    int r;

    snprintf(ct, sizeof(ct), "%u", ctimeout);
    snprintf(it, sizeof(it), "%u", iotimeout);
    for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++) {
        r = rados_conf_set(cl, common[i][0], common[i][1]);
        if (r < 0)
            return r;
    }
    switch (o->cache) {
    case VBLK_RBD_CACHE_WRITEBACK:
        if ((r = rados_conf_set(cl, "rbd_cache", "true")) < 0 ||
            (r = rados_conf_set(cl, "rbd_cache_policy", "writeback")) < 0)
            return r;
        break;
    case VBLK_RBD_CACHE_WRITETHROUGH:
        if ((r = rados_conf_set(cl, "rbd_cache", "true")) < 0 ||
            (r = rados_conf_set(cl, "rbd_cache_policy", "writethrough")) < 0 ||
            (r = rados_conf_set(cl, "rbd_cache_max_dirty", "0")) < 0)
            return r;
        break;
    case VBLK_RBD_CACHE_NONE:
        if ((r = rados_conf_set(cl, "rbd_cache", "false")) < 0)
            return r;
        break;
    default:
        break;
    }
    return 0;
}

/* Opens the image (read-only when asked or for a snapshot). */
static int open_image(struct rbd_be *be, const struct vblk_rbd_opts *o, bool ro,
                      enum rbd_stage *stage)
{
    int r;

    *stage = RBD_STAGE_IMAGE;
    if (ro)
        r = rbd_open_read_only(be->ioctx, o->image, &be->image, o->snapshot);
    else
        r = rbd_open(be->ioctx, o->image, &be->image, NULL);
    if (r == -ENOENT && o->snapshot != NULL) {
        /* The image or its snapshot? */
        rbd_image_t head;
        if (rbd_open_read_only(be->ioctx, o->image, &head, NULL) == 0) {
            rbd_close(head);
            *stage = RBD_STAGE_SNAPSHOT;
        }
    }
    if (r < 0)
        be->image = NULL;
    return r;
}

/* NULL if the options make sense, else what is wrong with them. */
static const char *check_options(const struct vblk_rbd_opts *o)
{
    if (o->pool == NULL || *o->pool == '\0')
        return "no pool given";
    if (o->image == NULL || *o->image == '\0')
        return "no image given";
    if (o->snapshot != NULL && *o->snapshot == '\0')
        return "empty snapshot name";
    if (o->cache < VBLK_RBD_CACHE_DEFAULT || o->cache > VBLK_RBD_CACHE_NONE)
        return "unknown cache mode";
    if (o->connect_timeout_s > VBLK_RBD_MAX_TIMEOUT || o->io_timeout_s > VBLK_RBD_MAX_TIMEOUT)
        return "timeout longer than a day";
    return NULL;
}

int vblk_backend_rbd_open(const struct vblk_rbd_opts *o, struct vblk_backend *out, char *err,
                          size_t errlen)
{
    enum rbd_stage stage = RBD_STAGE_OPTIONS;
    unsigned ctimeout, iotimeout, timeout = 0;
    char name[256], mon[256] = "";
    struct rbd_be *be;
    bool ro;
    int r;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (o == NULL || out == NULL)
        return -EINVAL;
    const char *bad = check_options(o);
    if (bad != NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "rbd: invalid options: %s", bad);
        return -EINVAL;
    }
    ctimeout = o->connect_timeout_s ? o->connect_timeout_s : VBLK_RBD_DEFAULT_CONNECT_TIMEOUT;
    iotimeout = o->io_timeout_s ? o->io_timeout_s : VBLK_RBD_DEFAULT_IO_TIMEOUT;
    ro = o->read_only || o->snapshot != NULL;

    /* The resize guard's slots are cache-line aligned. */
    if (posix_memalign((void **)&be, 64, sizeof(*be)) != 0) {
        be = NULL;
        r = -ENOMEM;
        goto fail_msg;
    }
    memset(be, 0, sizeof(*be));
    be->update_fd = -1;
    stage = RBD_STAGE_CREATE;
    snprintf(name, sizeof(name), "client.%s",
             o->client_id != NULL && *o->client_id ? o->client_id : "admin");
    r = rados_create2(&be->cluster, "ceph", name, 0);
    if (r < 0) {
        be->cluster = NULL;
        goto fail;
    }

    stage = RBD_STAGE_CONF;
    if (o->conf_path != NULL) {
        /* rados_conf_read_file says ENOENT for an unreadable file too. */
        if (access(o->conf_path, R_OK) < 0) {
            r = -errno;
            goto fail;
        }
        r = rados_conf_read_file(be->cluster, o->conf_path);
        if (r < 0)
            goto fail;
    } else {
        /* Ceph's search path; having no file at all is fine when
         * $CEPH_ARGS or the defaults name the monitors. */
        (void)rados_conf_read_file(be->cluster, NULL);
    }
    r = rados_conf_parse_env(be->cluster, NULL);
    if (r < 0)
        goto fail;
    if (o->keyring != NULL) {
        stage = RBD_STAGE_KEYRING;
        if (access(o->keyring, R_OK) < 0) {
            r = -errno;
            goto fail;
        }
        r = rados_conf_set(be->cluster, "keyring", o->keyring);
        if (r < 0)
            goto fail;
    }
    stage = RBD_STAGE_OPTIONS;
    r = apply_settings(be->cluster, o, ctimeout, iotimeout);
    if (r < 0)
        goto fail;
    if (rados_conf_get(be->cluster, "mon_host", mon, sizeof(mon)) < 0)
        mon[0] = '\0';

    stage = RBD_STAGE_CONNECT;
    timeout = ctimeout;
    r = rados_connect(be->cluster);
    if (r < 0)
        goto fail;

    stage = RBD_STAGE_POOL;
    r = rados_ioctx_create(be->cluster, o->pool, &be->ioctx);
    if (r < 0) {
        be->ioctx = NULL;
        goto fail;
    }
    if (o->pool_namespace != NULL && *o->pool_namespace != '\0') {
        bool exists = false;
        stage = RBD_STAGE_NS;
        timeout = iotimeout;
        r = rbd_namespace_exists(be->ioctx, o->pool_namespace, &exists);
        if (r == 0 && !exists)
            r = -ENOENT;
        if (r < 0)
            goto fail;
        rados_ioctx_set_namespace(be->ioctx, o->pool_namespace);
    }

    timeout = iotimeout;
    r = open_image(be, o, ro, &stage);
    if (r < 0)
        goto fail;

    stage = RBD_STAGE_SIZE;
    r = rbd_get_size(be->image, &be->size);
    if (r < 0)
        goto fail;
    be->size -= be->size % VBLK_SECTOR_SIZE;
    if (be->size == 0) {
        r = -EINVAL;
        goto fail;
    }

    be_guard_init(&be->guard, be->size);
    be->image_size = be->size;
    be->read_only = ro;
    be->ops.version = VBLK_BACKEND_OPS_V3;
    be->ops.name = "rbd";
    be->ops.destroy = rbd_destroy;
    be->ops.resize = rbd_be_resize;
    if (ro) {
        be->ops.caps = VBLK_BACKEND_CAP_READ_ONLY;
    } else {
        be->ops.caps = VBLK_BACKEND_CAP_DISCARD | VBLK_BACKEND_CAP_WRITE_ZEROES;
        /* Only a cache that may hold dirty data needs FLUSH; without it
         * the disk is write-through and every write is stable when done. */
        if (o->cache == VBLK_RBD_CACHE_DEFAULT || o->cache == VBLK_RBD_CACHE_WRITEBACK) {
            be->ops.caps |= VBLK_BACKEND_CAP_FLUSH;
            be->flush_after_fua = true;
        }
    }
    rbd_io_setup(be);

    memset(out, 0, sizeof(*out));
    out->ops = &be->ops;
    out->ctx = be;
    out->size = be->size;
    return 0;

fail:
    rbd_destroy(be);
fail_msg:
    if (err != NULL && errlen > 0)
        rbd_error_message(stage, r, o, timeout, mon, err, errlen);
    return r;
}

int vblk_backend_rbd_stats(const struct vblk_backend *be, struct vblk_rbd_stats *st)
{
    const struct rbd_be *rb;

    if (be == NULL || st == NULL || be->ops == NULL || be->ctx == NULL ||
        be->ops->destroy != rbd_destroy)
        return -EINVAL;
    rb = be->ctx;
#define RBD_LOAD(f) st->f = atomic_load_explicit(&rb->n.f, memory_order_relaxed)
    RBD_LOAD(reads);
    RBD_LOAD(writes);
    RBD_LOAD(flushes);
    RBD_LOAD(discards);
    RBD_LOAD(write_zeroes);
    RBD_LOAD(fua_flushes);
    RBD_LOAD(errors);
    RBD_LOAD(timeouts);
    RBD_LOAD(bounced);
    RBD_LOAD(bounce_bytes);
#undef RBD_LOAD
    return 0;
}

#else
typedef int vblk_rbd_unused;
#endif
