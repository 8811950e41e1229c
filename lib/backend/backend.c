/* SPDX-License-Identifier: MIT */
/*
 * Backend helpers shared by the built-in backends, and
 * vblk_backend_destroy().
 */
#include <sched.h>
#include <string.h>
#include <time.h>

#include "backend/backend_internal.h"

void vblk_backend_destroy(struct vblk_backend *be)
{
    if (be == NULL)
        return;
    if (be->ops != NULL && be->ops->destroy != NULL)
        be->ops->destroy(be->ctx);
    memset(be, 0, sizeof(*be));
}

int vblk_backend_resize(struct vblk_backend *be, uint64_t size)
{
    if (be == NULL || be->ops == NULL || size % VBLK_SECTOR_SIZE != 0)
        return -EINVAL;
    if (be->ops->version < VBLK_BACKEND_OPS_V3 || be->ops->resize == NULL)
        return -ENOTSUP;
    int rc = be->ops->resize(be->ctx, size);
    if (rc == 0 || rc == -ETIMEDOUT)
        be->size = size;
    return rc;
}

void be_guard_init(struct be_guard *g, uint64_t size)
{
    memset(g, 0, sizeof(*g));
    atomic_init(&g->size, size);
    atomic_init(&g->epoch, 0);
}

static uint64_t guard_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int be_guard_set_size(struct be_guard *g, uint64_t size, unsigned timeout_ms)
{
    /* New requests check against the new size from here on; the ones that
     * entered under the old epoch are waited for. A request that read the
     * old epoch but counted itself after the check below reads the size
     * after counting, and so sees the new one (all sequentially consistent). */
    atomic_store(&g->size, size);
    unsigned old = atomic_fetch_add(&g->epoch, 1) & 1u;
    uint64_t until = guard_now_ms() + timeout_ms;
    for (unsigned i = 0; i < BE_GUARD_SLOTS; i++) {
        while (atomic_load(&g->slot[i].n[old]) != 0) {
            if (guard_now_ms() >= until)
                return -ETIMEDOUT;
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
    }
    return 0;
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

bool be_guard_req_fits(struct be_guard *g, const struct vblk_req *req)
{
    switch (req->type) {
    case VBLK_T_IN:
    case VBLK_T_OUT:
        return be_guard_fits(g, req->sector << VBLK_SECTOR_SHIFT, req->len);
    case VBLK_T_DISCARD:
    case VBLK_T_WRITE_ZEROES:
    case VBLK_T_SECURE_ERASE:
        for (uint32_t i = 0; i < req->nranges; i++)
            if (!be_guard_fits(g, be_range_off(&req->ranges[i]), be_range_len(&req->ranges[i])))
                return false;
        return true;
    default:
        return true;
    }
}
