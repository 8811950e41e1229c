/* SPDX-License-Identifier: MIT */
/* vblkd's online resize: the backend and the device in the order that never
 * lets the driver see sectors the storage lacks, nor lets a request touch
 * the part a shrink cuts off; network images that adopt their server's
 * size (NBD) or are followed when resized elsewhere (RBD's update watch).
 * Runs on the control thread; a VDUSE device's config goes through its
 * worker. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

/* The size @x's network storage has now; a failure names the export. */
static int storage_size(const struct backend_kind *k, struct export *x, uint64_t *size,
                        struct vblkd_error *e)
{
    if (k->storage_size(&x->be, size, e) == 0)
        return 0;
    char msg[sizeof(e->msg)];
    snprintf(msg, sizeof(msg), "%s", e->msg);
    vblkd_errorf(e, e->code, "export '%s': %s", x->spec.name, msg);
    return -1;
}

struct resize_call {
    struct export *x;
    uint64_t size;
    int rc;
};

static void vduse_resize_here(void *arg)
{
    struct resize_call *c = arg;
    c->rc = vblk_vduse_set_capacity(c->x->vduse, c->size);
}

/* Tells the device (and through it the driver) the new capacity. */
static int tell_device(struct vblkd *d, struct export *x, uint64_t size, bool *notified)
{
    if (x->vu) {
        int rc = vblk_vu_dev_set_capacity(x->vu, size);
        *notified = rc == 1;
        return rc < 0 && rc != -EAGAIN && rc != -EPIPE ? rc : 0;
    }
    struct resize_call c = {.x = x, .size = size};
    worker_call(export_worker(d, x), vduse_resize_here, &c);
    *notified = c.rc == 0 && export_attached(x);
    return c.rc;
}

int export_resize(struct vblkd *d, struct export *x, uint64_t size, bool follow, uint64_t *size_out,
                  bool *notified, struct vblkd_error *e)
{
    const struct backend_kind *k = backend_kind_of(x->spec.backend);
    const bool network = k != NULL && k->network;
    uint64_t old = x->size;
    int rc;

    *notified = false;
    *size_out = old;
    if (follow) {
        if (k == NULL || k->storage_size == NULL) {
            vblkd_errorf(e, RPC_INVALID_PARAMS,
                         "export '%s': \"size\" is required (only nbd and rbd exports can follow "
                         "the size their server reports)",
                         x->spec.name);
            return -1;
        }
        if (storage_size(k, x, &size, e) < 0)
            return -1;
        if (size == 0) {
            vblkd_errorf(e, RPC_SIZE_MISMATCH,
                         "export '%s': the %s server reports less than one 512-byte sector; "
                         "the export keeps its %" PRIu64 " bytes",
                         x->spec.name, k->type, old);
            return -1;
        }
    }
    if (size == 0 || size % 512) {
        vblkd_errorf(e, RPC_INVALID_PARAMS, "size %" PRIu64 " is not a positive multiple of 512",
                     size);
        return -1;
    }
    if (network && !follow && k->storage_size != NULL && strcmp(k->type, "nbd") == 0) {
        /* NBD cannot resize an export: the server's administrator does,
         * and vblkd adopts what the server reports. */
        uint64_t now;
        if (storage_size(k, x, &now, e) < 0)
            return -1;
        if (now != size) {
            vblkd_errorf(e, RPC_SIZE_MISMATCH,
                         "export '%s': the NBD server reports %" PRIu64 " bytes for this export, "
                         "not %" PRIu64 "; resize the export on the server first (e.g. truncate "
                         "the file it serves; a server that keeps the size it started with must "
                         "be restarted), then resize again, or leave out \"size\" to adopt "
                         "%" PRIu64 " bytes",
                         x->spec.name, now, size, now);
            return -1;
        }
    }
    if (network && size == old) {
        *size_out = size;
        return 0; /* nothing changes: the driver is not bothered */
    }
    if (size > old) {
        /* Storage first: the driver must never see sectors that do not exist. */
        rc = vblk_backend_resize(&x->be, size);
        if (rc == 0)
            rc = tell_device(d, x, size, notified);
    } else {
        /* The device refuses requests past the new end at once; the backend
         * then waits for those it was already given before it shrinks. */
        rc = tell_device(d, x, size, notified);
        if (rc == 0) {
            rc = vblk_backend_resize(&x->be, size);
            if (rc < 0) {
                /* The storage kept its size: so does the device. */
                bool again = false;
                (void)tell_device(d, x, old, &again);
                *notified = false;
            }
        }
    }
    if (rc == -ENOTSUP) {
        vblkd_errorf(e, RPC_NOT_SUPPORTED,
                     "export '%s': the %s backend cannot change its size (zoned disks and block "
                     "devices are resized outside vblkd, or not at all)",
                     x->spec.name, x->be.ops->name);
        return -1;
    }
    if (rc == -ERANGE && network) {
        vblkd_errorf(e, RPC_SIZE_MISMATCH,
                     "export '%s': the server's size changed while resizing to %" PRIu64
                     " bytes; read it with export_resize without \"size\" (the daemon's log has "
                     "the size it reported)",
                     x->spec.name, size);
        return -1;
    }
    if (rc == -ENOSPC) {
        vblkd_errorf(e, RPC_NOT_SUPPORTED,
                     "export '%s': a RAM disk can grow to twice its first size or 64 GiB, "
                     "whichever is larger; delete it and add it again with the size you need",
                     x->spec.name);
        return -1;
    }
    if (rc == -EROFS) {
        vblkd_errorf(e, RPC_NOT_SUPPORTED,
                     "export '%s': its image is open read-only; it cannot be resized",
                     x->spec.name);
        return -1;
    }
    if (rc == -ETIMEDOUT) {
        x->size = size;
        *size_out = size;
        backend_spec_set_size(x->spec.backend, size);
        vblkd_errorf(e, RPC_RESOURCE_ERROR,
                     "export '%s': requests in flight did not finish within 5 s; the new size is "
                     "in force but the storage was not shrunk; retry the resize",
                     x->spec.name);
        return -1;
    }
    if (rc == -ETIME && network) {
        vblkd_errorf(e, RPC_RESOURCE_ERROR,
                     "export '%s': the %s server did not answer in time; the size did not "
                     "change; retry the resize",
                     x->spec.name, k->type);
        return -1;
    }
    if (rc < 0) {
        vblkd_errorf(e, RPC_RESOURCE_ERROR, "export '%s': resize to %" PRIu64 " bytes failed: %s",
                     x->spec.name, size, strerror(-rc));
        return -1;
    }
    x->size = size;
    *size_out = size;
    x->resizes++;
    backend_spec_set_size(x->spec.backend, size);
    vblkd_log(d, VBLK_LOG_INFO, "%s: resized from %" PRIu64 " to %" PRIu64 " bytes%s", x->spec.name,
              old, size, *notified ? "; driver notified" : "");
    return 0;
}

void export_follow(struct vblkd *d, struct export *x)
{
    uint64_t v, old = x->size, size;
    bool notified;
    struct vblkd_error e = {0};

    if (read(x->update_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        vblkd_log(d, VBLK_LOG_WARN, "%s: reading the update event: %s", x->spec.name,
                  strerror(errno));
    if (export_resize(d, x, 0, true, &size, &notified, &e) < 0)
        vblkd_log(d, VBLK_LOG_ERR, "%s: cannot follow a change of the image: %s", x->spec.name,
                  e.msg);
    else if (size != old)
        vblkd_log(d, VBLK_LOG_INFO,
                  "%s: followed the image's resize from %" PRIu64 " to %" PRIu64 " bytes",
                  x->spec.name, old, size);
}
