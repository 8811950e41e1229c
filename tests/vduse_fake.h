/* SPDX-License-Identifier: MIT */
/*
 * VDUSE without a kernel, for test_vduse.c and test_attacks_mapping.c: a
 * fake kernel (struct vduse_kops) with an IOTLB of a few entries over a
 * "guest" arena, a fixture with a device over it, real rings built with
 * the library's driver side, and requests fed to
 * vblk_vduse_handle_request() as byte buffers. Include after cmocka.h.
 */
#ifndef VBLK_TEST_VDUSE_FAKE_H
#define VBLK_TEST_VDUSE_FAKE_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "transport/vduse/vduse_internal.h"
#include "virtioblk/advanced_msg.h"
#include "virtioblk/virtioblk.h"

#define ARENA_SIZE (1u << 20)
#define RING_AREA  (64u << 10) /* first IOTLB entry: rings */
#define IOVA_BASE  0x40000000ull
#define QSIZE      16
#define DISK_SIZE  (1u << 20)

/* ---- the fake kernel ---- */

struct fake_entry {
    uint64_t start, last;
    uint8_t perm;
    uint8_t *host;
};

struct fake_kernel {
    uint64_t features;
    struct vduse_abi_vq_info info[2];
    int kickfd[2];
    unsigned irqs[2];
    struct fake_entry e[4];
    unsigned ne;
    unsigned maps, unmaps, lookups;
    uint8_t config[256];
    uint32_t config_len;
    unsigned config_irqs;
};

static inline int f_get_features(void *k, uint64_t *f)
{
    *f = ((struct fake_kernel *)k)->features;
    return 0;
}

static inline int f_vq_info(void *k, struct vduse_abi_vq_info *info)
{
    struct fake_kernel *fk = k;
    if (info->index >= 2)
        return -EINVAL;
    *info = fk->info[info->index];
    return 0;
}

static inline int f_set_kickfd(void *k, uint32_t index, int fd)
{
    ((struct fake_kernel *)k)->kickfd[index] = fd;
    return 0;
}

static inline int f_inject_irq(void *k, uint32_t index)
{
    ((struct fake_kernel *)k)->irqs[index]++;
    return 0;
}

static inline int f_map(void *k, uint64_t iova, struct vduse_mapping *m)
{
    struct fake_kernel *fk = k;
    fk->lookups++;
    for (unsigned i = 0; i < fk->ne; i++) {
        if (iova >= fk->e[i].start && iova <= fk->e[i].last) {
            m->start = fk->e[i].start;
            m->last = fk->e[i].last;
            m->perm = fk->e[i].perm;
            m->host = fk->e[i].host;
            m->base = fk->e[i].host;
            fk->maps++;
            return 0;
        }
    }
    return -EFAULT;
}

static inline void f_unmap(void *k, const struct vblk_mem_region *r)
{
    (void)r;
    ((struct fake_kernel *)k)->unmaps++;
}

static inline int f_set_config(void *k, uint32_t off, const void *buf, uint32_t len)
{
    struct fake_kernel *fk = k;
    memcpy(fk->config + off, buf, len);
    fk->config_len = len;
    return 0;
}

static inline int f_config_irq(void *k)
{
    ((struct fake_kernel *)k)->config_irqs++;
    return 0;
}

static const struct vduse_kops fake_kops = {
    .get_features = f_get_features,
    .vq_info = f_vq_info,
    .set_kickfd = f_set_kickfd,
    .inject_irq = f_inject_irq,
    .map = f_map,
    .unmap = f_unmap,
    .set_config = f_set_config,
    .config_irq = f_config_irq,
};

/* ---- fixture: a device, a fake kernel and a driver over an arena ---- */

struct fixture {
    struct fake_kernel fk;
    int arena_fd; /* the arena's memfd, or -1 (heap) */
    struct vblk_backend be;
    struct vblk_vduse *v;
    uint8_t *arena;
    uint64_t delta; /* IOVA = host pointer + delta */
    struct vblk_drv_vq drv;
    void *drv_state;
    size_t data_off;
    uint32_t next_id;
};

/* A device over a fake kernel whose IOTLB entries point into an arena:
 * heap memory, or with @shared a memfd mapping (which a case can truncate
 * under the device). */
static inline int vduse_fx_setup(void **state, bool shared)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    fx->arena_fd = -1;
    if (shared) {
        fx->arena_fd = memfd_create("vduse-arena", MFD_CLOEXEC);
        assert_true(fx->arena_fd >= 0);
        assert_int_equal(ftruncate(fx->arena_fd, ARENA_SIZE), 0);
        fx->arena = mmap(NULL, ARENA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fx->arena_fd, 0);
        assert_true(fx->arena != MAP_FAILED);
    } else {
        fx->arena = aligned_alloc(4096, ARENA_SIZE);
        assert_non_null(fx->arena);
    }
    memset(fx->arena, 0, ARENA_SIZE);
    fx->delta = IOVA_BASE - (uint64_t)(uintptr_t)fx->arena;
    fx->fk.kickfd[0] = fx->fk.kickfd[1] = -1;
    /* Two IOTLB entries: the ring area and the buffer area. */
    fx->fk.e[0] =
        (struct fake_entry){IOVA_BASE, IOVA_BASE + RING_AREA - 1, VDUSE_ABI_ACCESS_RW, fx->arena};
    fx->fk.e[1] = (struct fake_entry){IOVA_BASE + RING_AREA, IOVA_BASE + ARENA_SIZE - 1,
                                      VDUSE_ABI_ACCESS_RW, fx->arena + RING_AREA};
    fx->fk.ne = 2;
    assert_int_equal(vblk_backend_memory_create(DISK_SIZE, &fx->be), 0);

    struct vblk_dev_params p;
    vblk_dev_params_default(&p, DISK_SIZE);
    p.num_queues = 2;
    p.queue_size = QSIZE;
    memcpy(p.serial, "vduse-test", 10);
    assert_int_equal(vduse_alloc(&p, &fx->be, &fake_kops, &fx->fk, &fx->v), 0);
    *state = fx;
    return 0;
}

static inline int setup(void **state)
{
    return vduse_fx_setup(state, false);
}

static inline int teardown(void **state)
{
    struct fixture *fx = *state;
    vduse_free(fx->v);
    vblk_backend_destroy(&fx->be);
    free(fx->drv_state);
    if (fx->arena_fd >= 0) {
        munmap(fx->arena, ARENA_SIZE);
        close(fx->arena_fd);
    } else {
        free(fx->arena);
    }
    free(fx);
    return 0;
}

/* Sends one request; returns the response. */
static inline struct vduse_abi_response send_req(struct fixture *fx, uint32_t type,
                                                 const struct vduse_abi_request *body)
{
    struct vduse_abi_request req;
    struct vduse_abi_response resp;
    if (body)
        req = *body;
    else
        memset(&req, 0, sizeof(req));
    req.type = type;
    req.request_id = ++fx->next_id;
    memset(&resp, 0xee, sizeof(resp));
    int n = vblk_vduse_handle_request(fx->v, &req, sizeof(req), &resp, sizeof(resp));
    assert_int_equal(n, VBLK_VDUSE_MSG_SIZE);
    assert_int_equal(resp.request_id, fx->next_id);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(resp.reserved[i], 0);
    return resp;
}

static inline uint32_t set_status(struct fixture *fx, uint8_t status)
{
    struct vduse_abi_request req;
    memset(&req, 0, sizeof(req));
    req.status = status;
    return send_req(fx, VDUSE_MSG_SET_STATUS, &req).result;
}

static inline uint32_t update_iotlb(struct fixture *fx, uint64_t start, uint64_t last)
{
    struct vduse_abi_request req;
    memset(&req, 0, sizeof(req));
    req.iova.start = start;
    req.iova.last = last;
    return send_req(fx, VDUSE_MSG_UPDATE_IOTLB, &req).result;
}

/* The driver side of queue 0 in the arena's ring area; the kernel's view
 * of it in fk.info[0]. */
static inline void driver_setup(struct fixture *fx, bool packed)
{
    struct vblk_drv_vq_config dc = {
        .size = QSIZE,
        .packed = packed,
        .event_idx = true,
        .addr_delta = fx->delta,
    };
    size_t ring_len = vblk_drv_vq_ring_size(&dc);
    assert_true(ring_len <= RING_AREA);
    size_t st_len = vblk_drv_vq_state_size(&dc);
    free(fx->drv_state);
    fx->drv_state = aligned_alloc(16, (st_len + 15) & ~(size_t)15);
    assert_int_equal(vblk_drv_vq_init(&fx->drv, &dc, fx->arena, ring_len, fx->drv_state, st_len),
                     0);
    struct vblk_vq_addrs a;
    vblk_drv_vq_addrs(&fx->drv, &a);
    struct vduse_abi_vq_info *info = &fx->fk.info[0];
    memset(info, 0, sizeof(*info));
    info->index = 0;
    info->num = QSIZE;
    info->desc_addr = a.desc;
    info->driver_addr = a.driver;
    info->device_addr = a.device;
    if (packed) {
        info->packed.last_avail_counter = 1;
        info->packed.last_used_counter = 1;
    }
    info->ready = 1;
    fx->fk.info[1].index = 1; /* not ready: the driver uses one queue */
    fx->data_off = RING_AREA;
    uint64_t f = vblk_dev_features(vblk_vduse_blk(fx->v)) | VBLK_BIT(VBLK_F_ACCESS_PLATFORM);
    if (!packed)
        f &= ~VBLK_BIT(VBLK_F_RING_PACKED);
    f &= ~VBLK_BIT(VBLK_F_IN_ORDER);
    fx->fk.features = f;
}

static inline void bring_up(struct fixture *fx, bool packed)
{
    driver_setup(fx, packed);
    assert_int_equal(set_status(fx, VBLK_STATUS_ACKNOWLEDGE), VDUSE_ABI_RESULT_OK);
    assert_int_equal(set_status(fx, VBLK_STATUS_ACKNOWLEDGE | VBLK_STATUS_DRIVER),
                     VDUSE_ABI_RESULT_OK);
    assert_int_equal(
        set_status(fx, VBLK_STATUS_ACKNOWLEDGE | VBLK_STATUS_DRIVER | VBLK_STATUS_FEATURES_OK),
        VDUSE_ABI_RESULT_OK);
    assert_int_equal(set_status(fx, VBLK_STATUS_ACKNOWLEDGE | VBLK_STATUS_DRIVER |
                                        VBLK_STATUS_FEATURES_OK | VBLK_STATUS_DRIVER_OK),
                     VDUSE_ABI_RESULT_OK);
}

static inline void *arena_alloc(struct fixture *fx, size_t len)
{
    size_t off = (fx->data_off + 63) & ~(size_t)63;
    assert_true(off + len <= ARENA_SIZE);
    fx->data_off = off + len;
    return fx->arena + off;
}

/* One request through the ring, the kick fd and the device; returns the
 * status byte the device wrote. */
static inline int do_request(struct fixture *fx, uint32_t type, uint64_t sector, void *buf,
                             size_t len)
{
    struct vblk_drv_blk_frame *fr = arena_alloc(fx, sizeof(*fr));
    fr->status = 0xff;
    struct vblk_iov data = {buf, len};
    assert_int_equal(vblk_drv_blk_add(&fx->drv, fr, type, sector, &data, buf ? 1 : 0, fr, false),
                     0);
    if (vblk_drv_vq_kick_prepare(&fx->drv)) {
        assert_true(fx->fk.kickfd[0] >= 0);
        assert_int_equal(eventfd_write(fx->fk.kickfd[0], 1), 0);
    }
    vduse_vq_run(fx->v, 0); /* what the event loop does on a kick */
    void *tok;
    uint32_t ulen;
    assert_int_equal(vblk_drv_vq_get_used(&fx->drv, &tok, &ulen), 1);
    assert_ptr_equal(tok, fr);
    return fr->status;
}

#endif
