/* SPDX-License-Identifier: MIT */
/* Driver-side virtqueue: layout, setup, validation and format dispatch. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "drv_internal.h"

#define DRV_RING_ALIGN 4096u

/* Most elements in one buffer, direct or indirect; devices reject longer tables. */
#define DRV_MAX_ELEMS VBLK_QUEUE_SIZE_MAX

struct drv_layout {
    uint64_t driver;   /* offset of the avail ring / driver event struct */
    uint64_t device;   /* offset of the used ring / device event struct */
    uint64_t indirect; /* offset of the indirect tables */
    uint64_t total;
};

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

static bool cfg_valid(const struct vblk_drv_vq_config *cfg)
{
    if (cfg == NULL || cfg->size == 0 || cfg->size > VBLK_QUEUE_SIZE_MAX)
        return false;
    /* virtio 1.2 2.7: split queue sizes are powers of two. */
    if (!cfg->packed && (cfg->size & (cfg->size - 1)) != 0)
        return false;
    return true;
}

static void layout(const struct vblk_drv_vq_config *cfg, struct drv_layout *l)
{
    uint64_t end;

    if (cfg->packed) {
        /* virtio 1.2 2.8.10.1: the event structs need 4-byte alignment. */
        l->driver = (uint64_t)cfg->size * sizeof(struct vblk_packed_desc);
        l->device = l->driver + sizeof(struct vblk_packed_event);
        end = l->device + sizeof(struct vblk_packed_event);
    } else {
        l->driver = VBLK_SPLIT_DESC_SIZE(cfg->size);
        l->device = align_up(l->driver + VBLK_SPLIT_AVAIL_SIZE(cfg->size), DRV_RING_ALIGN);
        end = l->device + VBLK_SPLIT_USED_SIZE(cfg->size);
    }
    l->indirect = align_up(end, 16);
    if (cfg->indirect_max > 0)
        end = l->indirect + (uint64_t)cfg->size * cfg->indirect_max * 16u;
    l->total = end;
}

size_t vblk_drv_vq_ring_size(const struct vblk_drv_vq_config *cfg)
{
    struct drv_layout l;

    if (!cfg_valid(cfg))
        return 0;
    layout(cfg, &l);
    if (l.total > SIZE_MAX)
        return 0;
    return (size_t)l.total;
}

size_t vblk_drv_vq_state_size(const struct vblk_drv_vq_config *cfg)
{
    size_t n;

    if (!cfg_valid(cfg))
        return 0;
    n = (size_t)cfg->size * sizeof(struct vblk_drv_slot) + (size_t)cfg->size * sizeof(uint16_t);
    return (n + 7u) & ~(size_t)7u;
}

int vblk_drv_vq_init(struct vblk_drv_vq *vq, const struct vblk_drv_vq_config *cfg, void *ring,
                     size_t ring_len, void *state, size_t state_len)
{
    struct drv_layout l;
    size_t need;
    uint8_t *r = ring;

    if (vq == NULL || !cfg_valid(cfg) || ring == NULL || state == NULL)
        return -EINVAL;
    need = vblk_drv_vq_ring_size(cfg);
    if (need == 0 || ring_len < need || ((uintptr_t)ring & (DRV_RING_ALIGN - 1)) != 0)
        return -EINVAL;
    if (state_len < vblk_drv_vq_state_size(cfg) || ((uintptr_t)state & 7u) != 0)
        return -EINVAL;

    layout(cfg, &l);
    memset(ring, 0, need);
    memset(state, 0, vblk_drv_vq_state_size(cfg));
    memset(vq, 0, sizeof(*vq));
    vq->cfg = *cfg;
    vq->ring = r;
    vq->driver_area = r + l.driver;
    vq->device_area = r + l.device;
    vq->indirect_tables = cfg->indirect_max > 0 ? r + l.indirect : NULL;
    vq->slots = state;
    vq->next_free = (uint16_t *)(vq->slots + cfg->size);
    vq->num_free = cfg->size;
    for (uint32_t i = 0; i < cfg->size; i++)
        vq->next_free[i] = (uint16_t)(i + 1);
    vq->free_head = 0;

    if (cfg->packed)
        drv_packed_init(vq);
    return 0;
}

void vblk_drv_vq_addrs(const struct vblk_drv_vq *vq, struct vblk_vq_addrs *addrs)
{
    addrs->desc = drv_addr(vq, vq->ring);
    addrs->driver = drv_addr(vq, vq->driver_area);
    addrs->device = drv_addr(vq, vq->device_area);
}

uint16_t vblk_drv_vq_num_free(const struct vblk_drv_vq *vq)
{
    return vq->num_free;
}

/*
 * Everything about the list is checked here, before either ring format
 * touches shared memory, so a failed add leaves no trace.
 */
int drv_add(struct vblk_drv_vq *vq, const struct drv_sg *sg, unsigned nsg, void *token,
            bool use_indirect)
{
    struct drv_buf b = {.sg = sg, .nsg = nsg};
    bool seen_write = false;
    uint64_t total = 0, in_len = 0;
    unsigned need;

    for (unsigned g = 0; g < nsg; g++) {
        if (sg[g].n == 0)
            continue;
        if (sg[g].iov == NULL || sg[g].n > DRV_MAX_ELEMS - b.nelem)
            return -EINVAL;
        /* virtio 1.2 2.7.4.2 / 2.8.17: readable elements come first. */
        if (seen_write && !sg[g].write)
            return -EINVAL;
        seen_write = seen_write || sg[g].write;
        for (unsigned i = 0; i < sg[g].n; i++) {
            if (sg[g].iov[i].len > UINT32_MAX)
                return -EINVAL;
            total += sg[g].iov[i].len;
            if (sg[g].write)
                in_len += sg[g].iov[i].len;
        }
        b.nelem += sg[g].n;
    }
    /* virtio 1.2 2.7.5.2: a chain holds at most 2^32 bytes. */
    if (b.nelem == 0 || total > (1ull << 32))
        return -EINVAL;
    b.in_len = in_len > UINT32_MAX ? UINT32_MAX : (uint32_t)in_len;

    /* virtio 1.2 2.7.5.3.1 / 2.8.19: INDIRECT only when negotiated. */
    b.indirect = use_indirect && vq->cfg.indirect && vq->cfg.indirect_max > 0 && b.nelem > 1;
    if (b.indirect && b.nelem > vq->cfg.indirect_max)
        return -EINVAL;
    /* virtio 1.2 2.7.5.3.1 / 2.8.17: no chain longer than the queue. */
    if (!b.indirect && b.nelem > vq->cfg.size)
        return -EINVAL;
    need = b.indirect ? 1u : b.nelem;
    if (need > vq->num_free)
        return -ENOSPC;

    if (vq->cfg.packed)
        drv_packed_add(vq, &b, token);
    else
        drv_split_add(vq, &b, token);
    return 0;
}

int vblk_drv_vq_add(struct vblk_drv_vq *vq, const struct vblk_iov *out, unsigned nout,
                    const struct vblk_iov *in, unsigned nin, void *token, bool use_indirect)
{
    const struct drv_sg sg[2] = {
        {.iov = out, .n = nout, .write = false},
        {.iov = in, .n = nin, .write = true},
    };

    return drv_add(vq, sg, 2, token, use_indirect);
}

bool vblk_drv_vq_kick_prepare(struct vblk_drv_vq *vq)
{
    return vq->cfg.packed ? drv_packed_kick_prepare(vq) : drv_split_kick_prepare(vq);
}

int vblk_drv_vq_get_used(struct vblk_drv_vq *vq, void **token, uint32_t *len)
{
    void *t = NULL;
    uint32_t l = 0;
    int rc;

    rc = vq->cfg.packed ? drv_packed_get_used(vq, &t, &l) : drv_split_get_used(vq, &t, &l);
    if (token != NULL)
        *token = t;
    if (len != NULL)
        *len = l;
    return rc;
}

bool vblk_drv_vq_enable_cb(struct vblk_drv_vq *vq, bool enable)
{
    vq->cb_disabled = enable ? 0 : 1;
    return vq->cfg.packed ? drv_packed_enable_cb(vq, enable) : drv_split_enable_cb(vq, enable);
}

bool vblk_drv_vq_has_used(const struct vblk_drv_vq *vq)
{
    return vq->cfg.packed ? drv_packed_has_used(vq) : drv_split_has_used(vq);
}
