/* SPDX-License-Identifier: MIT */
/* virtio-blk device model: parameters, feature negotiation, config space. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "virtioblk/blk.h"

_Static_assert(sizeof(struct vblk_config) == 96, "virtio 1.2 5.2.4 layout");
_Static_assert(offsetof(struct vblk_config, zoned) == VBLK_CONFIG_SIZE_NO_ZONED, "zoned offset");
_Static_assert(offsetof(struct vblk_config, zoned.model) == 92, "zoned model offset");
_Static_assert(sizeof(struct vblk_zone_report) == 64, "zone report header");
_Static_assert(sizeof(struct vblk_zone_descriptor) == 64, "zone descriptor");
_Static_assert(offsetof(struct vblk_config, writeback) == 32, "writeback offset");
_Static_assert(offsetof(struct vblk_config, num_queues) == 34, "num_queues offset");
_Static_assert(offsetof(struct vblk_config, max_discard_sectors) == 36, "discard offset");
_Static_assert(offsetof(struct vblk_config, write_zeroes_may_unmap) == 56, "wz offset");
_Static_assert(offsetof(struct vblk_config, max_secure_erase_sectors) == 60, "se offset");
_Static_assert(sizeof(struct vblk_req_hdr) == 16, "request header");
_Static_assert(sizeof(struct vblk_discard_wz_seg) == 16, "discard segment");

void vblk_dev_params_default(struct vblk_dev_params *p, uint64_t capacity)
{
    memset(p, 0, sizeof(*p));
    p->capacity = capacity;
    p->blk_size = 512;
    p->seg_max = 126;
    p->num_queues = 1;
    p->queue_size = 256;
    p->writeback = true;
    p->max_discard_sectors = 1u << 22;
    p->max_discard_seg = 1;
    p->discard_sector_alignment = 8;
    p->max_write_zeroes_sectors = 1u << 22;
    p->max_write_zeroes_seg = 1;
    p->write_zeroes_may_unmap = true;
    /* IN_ORDER costs a reorder step whenever a backend completes out of
     * order, so it is opt-in. */
    p->features_off = VBLK_BIT(VBLK_F_IN_ORDER);
}

static uint32_t max_u32(uint32_t a, uint32_t b)
{
    return a > b ? a : b;
}

/* The zoned fields of the config space: the geometry, or zeros. */
static void fill_zoned(struct vblk_dev *dev, bool on)
{
    memset(&dev->config.zoned, 0, sizeof(dev->config.zoned));
    if (!on)
        return;
    dev->config.zoned.zone_sectors = dev->zinfo.zone_sectors;
    dev->config.zoned.max_open_zones = dev->zinfo.max_open_zones;
    dev->config.zoned.max_active_zones = dev->zinfo.max_active_zones;
    dev->config.zoned.max_append_sectors = dev->zinfo.max_append_sectors;
    dev->config.zoned.write_granularity = dev->zinfo.write_granularity;
    dev->config.zoned.model = dev->zinfo.model;
}

/* A zoned backend's geometry, checked against what the device offers. */
static int zoned_init(struct vblk_dev *dev, const struct vblk_backend *be)
{
    const struct vblk_backend_ops *ops = be->ops;
    /* backend.h: never look at a method past the declared version. */
    if (ops->version < VBLK_BACKEND_OPS_V2 || !ops->zone_info)
        return 0;
    struct vblk_zone_info *zi = &dev->zinfo;
    int rc = ops->zone_info(be->ctx, zi);
    if (rc <= 0)
        return rc;
    if (!ops->zone_report || (zi->model != VBLK_Z_HM && zi->model != VBLK_Z_HA))
        return -EINVAL;
    if (!zi->zone_sectors || !zi->write_granularity || zi->write_granularity % VBLK_SECTOR_SIZE)
        return -EINVAL;
    /* virtio 1.2 5.2.4: max_append_sectors <= seg_max * size_max. */
    if (dev->p.size_max && (uint64_t)zi->max_append_sectors * VBLK_SECTOR_SIZE >
                               (uint64_t)dev->p.seg_max * dev->p.size_max)
        return -EINVAL;
    dev->zoned = 1;
    return 1;
}

int vblk_dev_init(struct vblk_dev *dev, const struct vblk_dev_params *p,
                  const struct vblk_backend *be)
{
    memset(dev, 0, sizeof(*dev));
    if (!be || !be->ops || !be->ops->submit)
        return -EINVAL;
    if (p->capacity % VBLK_SECTOR_SIZE || p->seg_max == 0 || p->seg_max > 4096)
        return -EINVAL;
    if (p->blk_size < 512 || p->blk_size > 65536 || (p->blk_size & (p->blk_size - 1)))
        return -EINVAL;
    if (p->num_queues == 0 || p->num_queues > VBLK_MAX_QUEUES)
        return -EINVAL;
    if (p->queue_size == 0 || p->queue_size > VBLK_QUEUE_SIZE_MAX)
        return -EINVAL;
    if (p->capacity > be->size)
        return -EINVAL;
    dev->p = *p;
    if (dev->p.capacity == 0)
        dev->p.capacity = be->size - be->size % VBLK_SECTOR_SIZE;
    dev->be = *be;

    uint32_t caps = be->ops->caps;
    if (caps & VBLK_BACKEND_CAP_READ_ONLY)
        dev->p.read_only = true;
    if (!(caps & VBLK_BACKEND_CAP_DISCARD))
        dev->p.max_discard_sectors = 0;
    if (!(caps & VBLK_BACKEND_CAP_WRITE_ZEROES))
        dev->p.max_write_zeroes_sectors = 0;
    if (!(caps & VBLK_BACKEND_CAP_SECURE_ERASE))
        dev->p.max_secure_erase_sectors = 0;
    if (dev->p.max_discard_seg == 0)
        dev->p.max_discard_seg = 1;
    if (dev->p.max_write_zeroes_seg == 0)
        dev->p.max_write_zeroes_seg = 1;
    if (dev->p.max_secure_erase_seg == 0)
        dev->p.max_secure_erase_seg = 1;
    int zrc = zoned_init(dev, be);
    if (zrc < 0)
        return zrc;
    if (dev->zoned) {
        /* Ranges make no sense on sequential zones (and SECURE_ERASE would
         * have to act as a zone reset, virtio 1.2 5.2.6): not offered. */
        dev->p.max_discard_sectors = 0;
        dev->p.max_write_zeroes_sectors = 0;
        dev->p.max_secure_erase_sectors = 0;
    }

    uint64_t f = VBLK_BIT(VBLK_F_VERSION_1) | VBLK_BIT(VBLK_F_INDIRECT_DESC) |
                 VBLK_BIT(VBLK_F_EVENT_IDX) | VBLK_BIT(VBLK_F_RING_PACKED) |
                 VBLK_BIT(VBLK_F_IN_ORDER) | VBLK_BIT(VBLK_F_SEG_MAX) | VBLK_BIT(VBLK_F_BLK_SIZE) |
                 VBLK_BIT(VBLK_F_TOPOLOGY) | VBLK_BIT(VBLK_F_MQ);
    if (dev->p.size_max)
        f |= VBLK_BIT(VBLK_F_SIZE_MAX);
    if (dev->p.cylinders)
        f |= VBLK_BIT(VBLK_F_GEOMETRY);
    if (dev->p.read_only)
        f |= VBLK_BIT(VBLK_F_RO);
    if (caps & VBLK_BACKEND_CAP_FLUSH)
        f |= VBLK_BIT(VBLK_F_FLUSH) | VBLK_BIT(VBLK_F_CONFIG_WCE);
    if (dev->p.max_discard_sectors && !dev->p.read_only)
        f |= VBLK_BIT(VBLK_F_DISCARD);
    if (dev->p.max_write_zeroes_sectors && !dev->p.read_only)
        f |= VBLK_BIT(VBLK_F_WRITE_ZEROES);
    if (dev->p.max_secure_erase_sectors && !dev->p.read_only)
        f |= VBLK_BIT(VBLK_F_SECURE_ERASE);
    if (dev->p.lifetime)
        f |= VBLK_BIT(VBLK_F_LIFETIME);
    if (dev->zoned)
        f |= VBLK_BIT(VBLK_F_ZONED);
    f &= ~dev->p.features_off;
    /* A host-managed device cannot pass as a regular one. */
    if (dev->zoned && !(f & VBLK_BIT(VBLK_F_ZONED)) && dev->zinfo.model == VBLK_Z_HM)
        return -EINVAL;
    if (!(f & VBLK_BIT(VBLK_F_ZONED)))
        dev->zoned = 0;
    /* virtio 1.2 5.2.5.2: CONFIG_WCE may only be offered with FLUSH. */
    if (!(f & VBLK_BIT(VBLK_F_FLUSH)))
        f &= ~VBLK_BIT(VBLK_F_CONFIG_WCE);
    dev->host_features = f;

    dev->max_ranges = 1;
    if (f & VBLK_BIT(VBLK_F_DISCARD))
        dev->max_ranges = max_u32(dev->max_ranges, dev->p.max_discard_seg);
    if (f & VBLK_BIT(VBLK_F_WRITE_ZEROES))
        dev->max_ranges = max_u32(dev->max_ranges, dev->p.max_write_zeroes_seg);
    if (f & VBLK_BIT(VBLK_F_SECURE_ERASE))
        dev->max_ranges = max_u32(dev->max_ranges, dev->p.max_secure_erase_seg);
    if (dev->max_ranges > 256)
        return -EINVAL;

    struct vblk_config *c = &dev->config;
    c->capacity = dev->p.capacity / VBLK_SECTOR_SIZE;
    c->size_max = dev->p.size_max;
    c->seg_max = dev->p.seg_max;
    c->geometry.cylinders = dev->p.cylinders;
    c->geometry.heads = dev->p.heads;
    c->geometry.sectors = dev->p.sectors;
    c->blk_size = dev->p.blk_size;
    c->physical_block_exp = dev->p.physical_block_exp;
    c->alignment_offset = dev->p.alignment_offset;
    c->min_io_size = dev->p.min_io_size;
    c->opt_io_size = dev->p.opt_io_size;
    c->writeback = (f & VBLK_BIT(VBLK_F_FLUSH)) && dev->p.writeback;
    c->num_queues = dev->p.num_queues;
    c->max_discard_sectors = dev->p.max_discard_sectors;
    c->max_discard_seg = dev->p.max_discard_seg;
    c->discard_sector_alignment = dev->p.discard_sector_alignment;
    c->max_write_zeroes_sectors = dev->p.max_write_zeroes_sectors;
    c->max_write_zeroes_seg = dev->p.max_write_zeroes_seg;
    c->write_zeroes_may_unmap = dev->p.write_zeroes_may_unmap;
    c->max_secure_erase_sectors = dev->p.max_secure_erase_sectors;
    c->max_secure_erase_seg = dev->p.max_secure_erase_seg;
    c->secure_erase_sector_alignment = dev->p.secure_erase_sector_alignment;
    fill_zoned(dev, dev->zoned);
    return 0;
}

uint64_t vblk_dev_features(const struct vblk_dev *dev)
{
    return dev->host_features;
}

int vblk_dev_set_features(struct vblk_dev *dev, uint64_t features)
{
    /* virtio 1.2 2.2.1: the driver accepts a subset; 6.1: modern only. */
    if ((features & ~dev->host_features) || !(features & VBLK_BIT(VBLK_F_VERSION_1)))
        return -EINVAL;
    bool zoned = (features & VBLK_BIT(VBLK_F_ZONED)) != 0;
    if (dev->zoned) {
        /* virtio 1.2 5.2.5.2: host-managed needs a driver that takes
         * ZONED; a host-aware device then reads as a regular one, its
         * zoned fields zero. */
        if (!zoned && dev->zinfo.model == VBLK_Z_HM)
            return -EINVAL;
        fill_zoned(dev, zoned);
        dev->zoned_on = zoned;
    }
    dev->driver_features = features;
    dev->features_ok = 1;
    return 0;
}

uint32_t vblk_dev_config_size(const struct vblk_dev *dev)
{
    return dev->zoned ? (uint32_t)sizeof(struct vblk_config) : VBLK_CONFIG_SIZE_NO_ZONED;
}

int vblk_dev_config_read(const struct vblk_dev *dev, uint32_t offset, void *buf, uint32_t len)
{
    uint32_t size = vblk_dev_config_size(dev);
    if (offset > size || len > size - offset)
        return -EINVAL;
    memcpy(buf, (const uint8_t *)&dev->config + offset, len);
    return 0;
}

int vblk_dev_config_write(struct vblk_dev *dev, uint32_t offset, const void *buf, uint32_t len)
{
    uint32_t size = vblk_dev_config_size(dev);
    if (offset > size || len > size - offset)
        return -EINVAL;
    const uint32_t wb = offsetof(struct vblk_config, writeback);
    /* virtio 1.2 5.2.5: only writeback is writable, with CONFIG_WCE. */
    if (len != 1 || offset != wb)
        return -EPERM;
    if (!(dev->host_features & VBLK_BIT(VBLK_F_CONFIG_WCE)))
        return -EPERM;
    if (dev->features_ok && !(dev->driver_features & VBLK_BIT(VBLK_F_CONFIG_WCE)))
        return -EPERM;
    dev->config.writeback = *(const uint8_t *)buf ? 1 : 0;
    return 0;
}

bool vblk_dev_writeback(const struct vblk_dev *dev)
{
    return dev->config.writeback != 0;
}

void vblk_dev_set_capacity(struct vblk_dev *dev, uint64_t capacity)
{
    /* Queue threads read the capacity while the control thread resizes. */
    uint64_t bytes = capacity - capacity % VBLK_SECTOR_SIZE;
#if __GCC_ATOMIC_LLONG_LOCK_FREE == 2
    __atomic_store_n(&dev->p.capacity, bytes, __ATOMIC_RELAXED);
    __atomic_store_n(&dev->config.capacity, bytes / VBLK_SECTOR_SIZE, __ATOMIC_RELEASE);
#else
    /* 32-bit CPUs: the halves are written inside an odd update count, so
     * that vblk_dev_capacity_sectors() never combines two sizes. One
     * thread changes the capacity at a time. */
    uint32_t seq = __atomic_load_n(&dev->cap_seq, __ATOMIC_RELAXED);
    __atomic_store_n(&dev->cap_seq, seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    uint64_t sectors = bytes / VBLK_SECTOR_SIZE;
    uint32_t parts[2];
    __builtin_memcpy(parts, &sectors, sizeof(parts));
    uint32_t *half = (uint32_t *)(void *)&dev->config.capacity;
    __atomic_store_n(&half[0], parts[0], __ATOMIC_RELAXED);
    __atomic_store_n(&half[1], parts[1], __ATOMIC_RELAXED);
    dev->p.capacity = bytes;
    __atomic_store_n(&dev->cap_seq, seq + 2, __ATOMIC_RELEASE);
#endif
}

void vblk_dev_set_read_only(struct vblk_dev *dev, bool read_only)
{
    __atomic_store_n(&dev->p.read_only, read_only, __ATOMIC_RELEASE);
}

const char *vblk_req_type_name(uint32_t type)
{
    switch (type) {
    case VBLK_T_IN:
        return "IN";
    case VBLK_T_OUT:
        return "OUT";
    case VBLK_T_FLUSH:
        return "FLUSH";
    case VBLK_T_GET_ID:
        return "GET_ID";
    case VBLK_T_GET_LIFETIME:
        return "GET_LIFETIME";
    case VBLK_T_DISCARD:
        return "DISCARD";
    case VBLK_T_WRITE_ZEROES:
        return "WRITE_ZEROES";
    case VBLK_T_SECURE_ERASE:
        return "SECURE_ERASE";
    case VBLK_T_ZONE_APPEND:
        return "ZONE_APPEND";
    case VBLK_T_ZONE_REPORT:
        return "ZONE_REPORT";
    case VBLK_T_ZONE_OPEN:
        return "ZONE_OPEN";
    case VBLK_T_ZONE_CLOSE:
        return "ZONE_CLOSE";
    case VBLK_T_ZONE_FINISH:
        return "ZONE_FINISH";
    case VBLK_T_ZONE_RESET:
        return "ZONE_RESET";
    case VBLK_T_ZONE_RESET_ALL:
        return "ZONE_RESET_ALL";
    default:
        return "UNKNOWN";
    }
}
