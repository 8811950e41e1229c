/* SPDX-License-Identifier: MIT */
/* Format-independent virtqueue entry points. */
#include <errno.h>
#include <string.h>

#include "ring_walk.h"

int vblk_vq_init(struct vblk_vq *vq, struct vblk_mem *mem, const struct vblk_vq_config *cfg)
{
    memset(vq, 0, sizeof(*vq));
    if (cfg->size == 0 || cfg->size > VBLK_QUEUE_SIZE_MAX)
        return -EINVAL;
    /* virtio 1.2 2.7: split queue sizes are powers of two; 2.8 lifts that. */
    if (!cfg->packed && (cfg->size & (cfg->size - 1)))
        return -EINVAL;
    vq->mem = mem;
    vq->size = cfg->size;
    vq->packed = cfg->packed;
    vq->event_idx = cfg->event_idx;
    vq->indirect = cfg->indirect;
    vq->addrs = cfg->addrs;
    if (cfg->state) {
        vq->last_avail = cfg->state->last_avail_idx;
        vq->used_idx = cfg->state->used_idx;
        vq->avail_wrap = cfg->state->avail_wrap ? 1 : 0;
        vq->used_wrap = cfg->state->used_wrap ? 1 : 0;
    } else {
        vq->avail_wrap = 1;
        vq->used_wrap = 1;
    }
    int rc = vq->packed ? vq_packed_init(vq) : vq_split_init(vq);
    if (rc < 0) {
        vq->mem = NULL;
        vq->is_broken = 1;
    }
    return rc;
}

int vblk_vq_pop(struct vblk_vq *vq, struct vblk_chain *c)
{
    if (vq->is_broken)
        return -EIO;
    int rc = vq->packed ? vq_packed_pop(vq, c) : vq_split_pop(vq, c);
    if (rc > 0) {
        vq->stats.chains++;
        if (c->fault)
            vq->stats.bad_chains++;
    }
    return rc;
}

int vblk_vq_pop_at(struct vblk_vq *vq, uint16_t pos, uint8_t wrap, struct vblk_chain *c)
{
    if (vq->is_broken)
        return -EIO;
    int rc;
    if (vq->packed) {
        uint16_t end_pos;
        uint8_t end_wrap;
        rc = vq_packed_walk(vq, pos, wrap, c, &end_pos, &end_wrap);
    } else {
        rc = vq_split_walk(vq, pos, c);
    }
    if (rc > 0) {
        vq->stats.chains++;
        if (c->fault)
            vq->stats.bad_chains++;
    }
    return rc;
}

int vblk_vq_pop_saved(struct vblk_vq *vq, const struct vblk_packed_desc *descs, uint16_t n,
                      struct vblk_chain *c)
{
    if (vq->is_broken)
        return -EIO;
    if (!vq->packed)
        return -EINVAL;
    int rc = vq_packed_walk_saved(vq, descs, n, c);
    if (rc > 0) {
        vq->stats.chains++;
        if (c->fault)
            vq->stats.bad_chains++;
    }
    return rc;
}

int vblk_vq_copy_descs(const struct vblk_vq *vq, uint16_t pos, uint16_t n,
                       struct vblk_packed_desc *out)
{
    if (!vq->packed || vq->is_broken)
        return -EINVAL;
    return vq_packed_copy_descs(vq, pos, n, out);
}

void vblk_vq_push(struct vblk_vq *vq, uint16_t id, uint16_t ndescs, uint32_t len)
{
    if (vq->is_broken)
        return;
    if (vq->packed)
        vq_packed_push(vq, id, ndescs, len);
    else
        vq_split_push(vq, id, len);
}

bool vblk_vq_publish(struct vblk_vq *vq)
{
    if (vq->is_broken)
        return false;
    bool notify = vq->packed ? vq_packed_publish(vq) : vq_split_publish(vq);
    if (notify)
        vq->stats.notifies++;
    return notify;
}

void vblk_vq_disable_notify(struct vblk_vq *vq)
{
    if (vq->is_broken || vq->notify_off)
        return;
    vq->notify_off = 1;
    if (vq->packed)
        vq_packed_set_notify(vq, false);
    else
        vq_split_set_notify(vq, false);
}

bool vblk_vq_enable_notify(struct vblk_vq *vq)
{
    if (vq->is_broken)
        return false;
    vq->notify_off = 0;
    if (vq->packed) {
        vq_packed_set_notify(vq, true);
        return vq_packed_has_avail(vq);
    }
    vq_split_set_notify(vq, true);
    return vq_split_has_avail(vq);
}

bool vblk_vq_has_avail(struct vblk_vq *vq)
{
    if (vq->is_broken)
        return false;
    return vq->packed ? vq_packed_has_avail(vq) : vq_split_has_avail(vq);
}

void vblk_vq_get_state(const struct vblk_vq *vq, struct vblk_vq_state *st)
{
    st->last_avail_idx = vq->last_avail;
    st->used_idx = vq->used_idx;
    st->avail_wrap = vq->packed ? vq->avail_wrap : 0;
    st->used_wrap = vq->packed ? vq->used_wrap : 0;
}
