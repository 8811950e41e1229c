/* SPDX-License-Identifier: MIT */
/* The attack harness: a VDUSE kernel stand-in that maps one IOVA range
 * (attack_harness.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "attack_harness.h"
#include "transport/vduse/vduse_internal.h"

static int vd_get_features(void *k, uint64_t *f)
{
    *f = ((struct vd_kernel *)k)->features;
    return 0;
}

static int vd_vq_info(void *k, struct vduse_abi_vq_info *info)
{
    struct vd_kernel *vk = k;
    uint32_t index = info->index;
    memset(info, 0, sizeof(*info));
    info->index = index;
    if (index != 0 || !vk->ring)
        return 0; /* not ready */
    struct vblk_vq_addrs a = atk_ring_addrs(vk->ring);
    info->num = vk->ring->size;
    info->desc_addr = a.desc;
    info->driver_addr = a.driver;
    info->device_addr = a.device;
    info->ready = 1;
    return 0;
}

static int vd_set_kickfd(void *k, uint32_t index, int fd)
{
    (void)index;
    ((struct vd_kernel *)k)->kickfd = fd;
    return 0;
}

static int vd_inject_irq(void *k, uint32_t index)
{
    (void)k;
    (void)index;
    return 0;
}

static int vd_map(void *k, uint64_t iova, struct vduse_mapping *m)
{
    struct vd_kernel *vk = k;
    if (iova < VD_IOVA || iova - VD_IOVA >= VD_ARENA)
        return -EFAULT;
    m->start = VD_IOVA;
    m->last = VD_IOVA + VD_ARENA - 1;
    m->perm = VDUSE_ABI_ACCESS_RW;
    m->host = vk->arena;
    m->base = vk->arena;
    return 0;
}

static void vd_unmap(void *k, const struct vblk_mem_region *r)
{
    (void)k;
    (void)r;
}

static int vd_set_config(void *k, uint32_t off, const void *buf, uint32_t len)
{
    (void)k;
    (void)off;
    (void)buf;
    (void)len;
    return 0;
}

static int vd_config_irq(void *k)
{
    (void)k;
    return 0;
}

static const struct vduse_kops vd_kops = {
    .get_features = vd_get_features,
    .vq_info = vd_vq_info,
    .set_kickfd = vd_set_kickfd,
    .inject_irq = vd_inject_irq,
    .map = vd_map,
    .unmap = vd_unmap,
    .set_config = vd_set_config,
    .config_irq = vd_config_irq,
};

struct vd *vd_new(void)
{
    struct vd *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    x->k.arena = aligned_alloc(4096, VD_ARENA);
    assert_non_null(x->k.arena);
    memset(x->k.arena, 0, VD_ARENA);
    x->k.kickfd = -1;
    atk_disk_init(&x->bd, &x->be);
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, ATK_DISK);
    p.num_queues = 2;
    p.queue_size = ATK_QSIZE;
    assert_int_equal(vduse_alloc(&p, &x->be, &vd_kops, &x->k, &x->v), 0);
    uint64_t f = vblk_dev_features(vblk_vduse_blk(x->v)) | VBLK_BIT(VBLK_F_ACCESS_PLATFORM);
    x->k.features = f & ~(VBLK_BIT(VBLK_F_RING_PACKED) | VBLK_BIT(VBLK_F_IN_ORDER));
    return x;
}

void vd_free(struct vd *x)
{
    vduse_free(x->v);
    free(x->bd.disk);
    free(x->k.arena);
    free(x);
}

int vd_send(struct vd *x, const struct vduse_abi_request *body, size_t len, uint32_t *result)
{
    struct vduse_abi_request req = *body;
    req.request_id = ++x->next_id;
    struct vduse_abi_response resp;
    memset(&resp, 0xee, sizeof(resp));
    int n = vblk_vduse_handle_request(x->v, &req, len, &resp, sizeof(resp));
    if (n == VBLK_VDUSE_MSG_SIZE) {
        assert_int_equal(resp.request_id, x->next_id);
        *result = resp.result;
    }
    return n;
}

uint32_t vd_status(struct vd *x, uint8_t status)
{
    struct vduse_abi_request req;
    memset(&req, 0, sizeof(req));
    req.type = VDUSE_MSG_SET_STATUS;
    req.status = status;
    uint32_t result = 99;
    assert_int_equal(vd_send(x, &req, sizeof(req), &result), VBLK_VDUSE_MSG_SIZE);
    return result;
}
