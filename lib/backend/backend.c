/* SPDX-License-Identifier: MIT */
/*
 * Backend helpers shared by the built-in backends, and
 * vblk_backend_destroy().
 */
#include <string.h>

#include "backend/backend_internal.h"

void vblk_backend_destroy(struct vblk_backend *be)
{
    if (be == NULL)
        return;
    if (be->ops != NULL && be->ops->destroy != NULL)
        be->ops->destroy(be->ctx);
    memset(be, 0, sizeof(*be));
}

void be_iov_advance(const struct vblk_iov *iov, uint32_t niov, struct iov_pos *pos, uint64_t n)
{
    while (n > 0 && pos->idx < niov) {
        uint64_t left = iov[pos->idx].len - pos->off;
        if (n < left) {
            pos->off += (uint32_t)n;
            return;
        }
        n -= left;
        pos->idx++;
        pos->off = 0;
    }
}

void be_iov_zero(const struct vblk_iov *iov, uint32_t niov, struct iov_pos pos)
{
    for (uint32_t i = pos.idx; i < niov; i++) {
        size_t off = i == pos.idx ? pos.off : 0;
        if (iov[i].len > off)
            memset((uint8_t *)iov[i].base + off, 0, iov[i].len - off);
    }
}
