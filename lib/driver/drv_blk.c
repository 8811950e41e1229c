/* SPDX-License-Identifier: MIT */
/* virtio-blk request framing for drivers (virtio 1.2 5.2.6). */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drv_internal.h"

_Static_assert(sizeof(struct vblk_req_hdr) == 16, "virtio 1.2 5.2.6: 16-byte request header");
_Static_assert(sizeof(struct vblk_drv_blk_frame) % 16 == 0, "frames stay 16-byte aligned");
_Static_assert(sizeof(struct vblk_drv_blk_za_frame) % 16 == 0, "frames stay 16-byte aligned");
_Static_assert(offsetof(struct vblk_drv_blk_za_frame, status) ==
                   offsetof(struct vblk_drv_blk_za_frame, append_sector) + VBLK_ZONE_APPEND_INHDR,
               "virtio 1.2 5.2.6: append_sector, then status");

/* Types whose data the device writes; FLUSH has none; the rest it reads. */
static bool data_is_writable(uint32_t type)
{
    return type == VBLK_T_IN || type == VBLK_T_GET_ID || type == VBLK_T_GET_LIFETIME ||
           type == VBLK_T_ZONE_REPORT;
}

/* Requests without data. */
static bool no_data(uint32_t type)
{
    return type == VBLK_T_FLUSH || type == VBLK_T_ZONE_OPEN || type == VBLK_T_ZONE_CLOSE ||
           type == VBLK_T_ZONE_FINISH || type == VBLK_T_ZONE_RESET || type == VBLK_T_ZONE_RESET_ALL;
}

int vblk_drv_blk_add(struct vblk_drv_vq *vq, struct vblk_drv_blk_frame *frame, uint32_t type,
                     uint64_t sector, const struct vblk_iov *data, unsigned ndata, void *token,
                     bool use_indirect)
{
    struct vblk_iov hdr, status;
    struct drv_sg sg[3];

    if (frame == NULL)
        return -EINVAL;
    if (no_data(type))
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

int vblk_drv_blk_add_append(struct vblk_drv_vq *vq, struct vblk_drv_blk_za_frame *frame,
                            uint64_t zone_sector, const struct vblk_iov *data, unsigned ndata,
                            void *token, bool use_indirect)
{
    struct vblk_iov hdr, in;
    struct drv_sg sg[3];

    if (frame == NULL)
        return -EINVAL;
    frame->hdr.type = VBLK_T_ZONE_APPEND;
    frame->hdr.ioprio = 0;
    frame->hdr.sector = zone_sector;
    frame->append_sector = UINT64_MAX;
    frame->status = 0xff;
    hdr.base = &frame->hdr;
    hdr.len = sizeof(frame->hdr);
    in.base = &frame->append_sector;
    in.len = VBLK_ZONE_APPEND_INHDR + 1;
    sg[0] = (struct drv_sg){.iov = &hdr, .n = 1, .write = false};
    sg[1] = (struct drv_sg){.iov = data, .n = ndata, .write = false};
    sg[2] = (struct drv_sg){.iov = &in, .n = 1, .write = true};
    return drv_add(vq, sg, 3, token, use_indirect);
}
