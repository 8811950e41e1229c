/* SPDX-License-Identifier: MIT */
/*
 * The null backend: every request completes at once with VBLK_S_OK and no
 * data is moved (reads return whatever the buffers held). It has no state,
 * so queues on any number of threads can use it at once. It exists to
 * measure the datapath, so submit() is a single tail call.
 */
#include <errno.h>
#include <string.h>

#include "backend/backend_internal.h"

static void null_submit(void *be, void *qctx, struct vblk_req *req)
{
    (void)be;
    (void)qctx;
    vblk_req_complete(req, VBLK_S_OK);
}

/* No data: any size will do. */
static int null_resize(void *be, uint64_t size)
{
    (void)be;
    (void)size;
    return 0;
}

static const struct vblk_backend_ops null_ops = {
    .version = VBLK_BACKEND_OPS_V3,
    .caps = VBLK_BACKEND_CAP_FLUSH | VBLK_BACKEND_CAP_DISCARD | VBLK_BACKEND_CAP_WRITE_ZEROES |
            VBLK_BACKEND_CAP_SECURE_ERASE | VBLK_BACKEND_CAP_NOP_RW,
    .name = "null",
    .submit = null_submit,
    .resize = null_resize,
};

int vblk_backend_null_create(uint64_t size, struct vblk_backend *out)
{
    if (out == NULL || size % VBLK_SECTOR_SIZE != 0)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->ops = &null_ops;
    out->ctx = NULL;
    out->size = size;
    return 0;
}
