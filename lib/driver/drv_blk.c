/* SPDX-License-Identifier: MIT */
/* virtio-blk request framing for drivers (virtio 1.2 5.2.6). */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drv_internal.h"

_Static_assert(sizeof(struct vblk_req_hdr) == 16, "virtio 1.2 5.2.6: 16-byte request header");
_Static_assert(sizeof(struct vblk_drv_blk_frame) % 16 == 0, "frames stay 16-byte aligned");

/* Types whose data the device writes; FLUSH has none; the rest it reads. */
static bool data_is_writable(uint32_t type)
{
    return type == VBLK_T_IN || type == VBLK_T_GET_ID || type == VBLK_T_GET_LIFETIME;
}

int vblk_drv_blk_add(struct vblk_drv_vq *vq, struct vblk_drv_blk_frame *frame, uint32_t type,
                     uint64_t sector, const struct vblk_iov *data, unsigned ndata, void *token,
                     bool use_indirect)
{
    struct vblk_iov hdr, status;
    struct drv_sg sg[3];

    if (frame == NULL)
        return -EINVAL;
    if (type == VBLK_T_FLUSH)
        ndata = 0;

    /* spec.h: little-endian hosts only, so plain stores are the wire format. */
    frame->hdr.type = type;
    frame->hdr.ioprio = 0;
    frame->hdr.sector = sector;
    /* Not a valid status: shows whether the device wrote one. */
    frame->status = 0xff;

    hdr.base = &frame->hdr;
    hdr.len = sizeof(frame->hdr);
    status.base = &frame->status;
    status.len = sizeof(frame->status);
    sg[0] = (struct drv_sg){.iov = &hdr, .n = 1, .write = false};
    sg[1] = (struct drv_sg){.iov = data, .n = ndata, .write = data_is_writable(type)};
    sg[2] = (struct drv_sg){.iov = &status, .n = 1, .write = true};
    return drv_add(vq, sg, 3, token, use_indirect);
}
