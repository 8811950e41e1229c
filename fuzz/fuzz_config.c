/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: device parameters, feature negotiation and config space.
 * vblk_dev_init() gets fuzzed parameters and backend capabilities, then a
 * stream of driver operations runs: config reads and writes at any offset
 * and size, feature selections, resizes and queue setups. Each result is
 * checked against the rules in blk.h and virtio 1.2 5.2.
 *
 * Input: the parameters (see read_params()), u8 backend caps, u8 backend
 * size selector, then operations (see the switch in LLVMFuzzerTestOneInput).
 */
#include <stddef.h>

#include "fuzz_common.h"

/* The fuzzed backends are regular (not zoned) disks. */
#define CFG_SIZE VBLK_CONFIG_SIZE_NO_ZONED

static struct vblk_mem g_mem;

static uint64_t pick_u64(struct fuzz_in *in)
{
    uint8_t sel = in_u8(in);
    switch (sel & 3) {
    case 0:
        return in_u64(in);
    case 1:
        return (uint64_t)in_u16(in) * VBLK_SECTOR_SIZE;
    case 2:
        return (uint64_t)1 << (sel >> 2);
    default:
        return sel >> 2;
    }
}

static uint32_t pick_u32(struct fuzz_in *in)
{
    uint8_t sel = in_u8(in);
    switch (sel & 3) {
    case 0:
        return in_u32(in);
    case 1:
        return (uint32_t)1 << ((sel >> 2) & 31);
    default:
        return sel >> 2;
    }
}

static void read_params(struct fuzz_in *in, struct vblk_dev_params *p)
{
    vblk_dev_params_default(p, 0);
    uint8_t keep = in_u8(in); /* bit i set: field group i keeps its default */
    p->capacity = pick_u64(in);
    if (!(keep & 1)) {
        p->blk_size = pick_u32(in);
        p->seg_max = pick_u32(in);
        p->size_max = pick_u32(in);
    }
    if (!(keep & 2)) {
        p->num_queues = in_u16(in);
        p->queue_size = in_u16(in);
    }
    uint8_t flags = in_u8(in);
    p->read_only = flags & 1;
    p->writeback = (flags & 2) != 0;
    p->write_zeroes_may_unmap = (flags & 4) != 0;
    p->lifetime = (flags & 8) != 0;
    in_bytes(in, p->serial, sizeof(p->serial));
    if (!(keep & 4)) {
        p->cylinders = in_u16(in);
        p->heads = in_u8(in);
        p->sectors = in_u8(in);
        p->physical_block_exp = in_u8(in);
        p->alignment_offset = in_u8(in);
        p->min_io_size = in_u16(in);
        p->opt_io_size = in_u32(in);
    }
    if (!(keep & 8)) {
        p->max_discard_sectors = pick_u32(in);
        p->max_discard_seg = pick_u32(in);
        p->discard_sector_alignment = pick_u32(in);
    }
    if (!(keep & 16)) {
        p->max_write_zeroes_sectors = pick_u32(in);
        p->max_write_zeroes_seg = pick_u32(in);
    }
    if (!(keep & 32)) {
        p->max_secure_erase_sectors = pick_u32(in);
        p->max_secure_erase_seg = pick_u32(in);
        p->secure_erase_sector_alignment = pick_u32(in);
    }
    if (!(keep & 64)) {
        p->lifetime_info.pre_eol_info = in_u16(in);
        p->lifetime_info.device_lifetime_est_typ_a = in_u16(in);
        p->lifetime_info.device_lifetime_est_typ_b = in_u16(in);
    }
    if (!(keep & 128))
        p->features_off = in_u64(in);
}

static uint32_t max3(uint32_t a, uint32_t b, uint32_t c)
{
    uint32_t m = a > b ? a : b;
    return m > c ? m : c;
}

/* What vblk_dev_init() must return for these inputs (blk.h). */
static int expected_init(const struct vblk_dev_params *p, const struct vblk_backend *be,
                         uint64_t *features)
{
    uint32_t caps = be->ops->caps;
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
    bool ro = p->read_only || (caps & VBLK_BACKEND_CAP_READ_ONLY);
    uint64_t f = VBLK_BIT(VBLK_F_VERSION_1) | VBLK_BIT(VBLK_F_INDIRECT_DESC) |
                 VBLK_BIT(VBLK_F_EVENT_IDX) | VBLK_BIT(VBLK_F_RING_PACKED) |
                 VBLK_BIT(VBLK_F_IN_ORDER) | VBLK_BIT(VBLK_F_SEG_MAX) | VBLK_BIT(VBLK_F_BLK_SIZE) |
                 VBLK_BIT(VBLK_F_TOPOLOGY) | VBLK_BIT(VBLK_F_MQ);
    if (p->size_max)
        f |= VBLK_BIT(VBLK_F_SIZE_MAX);
    if (p->cylinders)
        f |= VBLK_BIT(VBLK_F_GEOMETRY);
    if (ro)
        f |= VBLK_BIT(VBLK_F_RO);
    if (caps & VBLK_BACKEND_CAP_FLUSH)
        f |= VBLK_BIT(VBLK_F_FLUSH) | VBLK_BIT(VBLK_F_CONFIG_WCE);
    if (!ro && (caps & VBLK_BACKEND_CAP_DISCARD) && p->max_discard_sectors)
        f |= VBLK_BIT(VBLK_F_DISCARD);
    if (!ro && (caps & VBLK_BACKEND_CAP_WRITE_ZEROES) && p->max_write_zeroes_sectors)
        f |= VBLK_BIT(VBLK_F_WRITE_ZEROES);
    if (!ro && (caps & VBLK_BACKEND_CAP_SECURE_ERASE) && p->max_secure_erase_sectors)
        f |= VBLK_BIT(VBLK_F_SECURE_ERASE);
    if (p->lifetime)
        f |= VBLK_BIT(VBLK_F_LIFETIME);
    f &= ~p->features_off;
    /* virtio 1.2 5.2.5.2: CONFIG_WCE only together with FLUSH. */
    if (!(f & VBLK_BIT(VBLK_F_FLUSH)))
        f &= ~VBLK_BIT(VBLK_F_CONFIG_WCE);
    *features = f;
    uint32_t ds = p->max_discard_seg ? p->max_discard_seg : 1;
    uint32_t ws = p->max_write_zeroes_seg ? p->max_write_zeroes_seg : 1;
    uint32_t ss = p->max_secure_erase_seg ? p->max_secure_erase_seg : 1;
    uint32_t ranges =
        max3((f & VBLK_BIT(VBLK_F_DISCARD)) ? ds : 1, (f & VBLK_BIT(VBLK_F_WRITE_ZEROES)) ? ws : 1,
             (f & VBLK_BIT(VBLK_F_SECURE_ERASE)) ? ss : 1);
    if (ranges > 256)
        return -EINVAL;
    return 0;
}

static void check_config(const struct vblk_dev *dev, const struct vblk_dev_params *p,
                         const struct vblk_backend *be, uint64_t f)
{
    struct vblk_config c;
    FUZZ_CHECK(vblk_dev_config_size(dev) == CFG_SIZE);
    FUZZ_CHECK(vblk_dev_config_read(dev, 0, &c, CFG_SIZE) == 0);
    uint64_t cap = p->capacity ? p->capacity : be->size - be->size % VBLK_SECTOR_SIZE;
    FUZZ_CHECK(c.capacity == cap / VBLK_SECTOR_SIZE);
    FUZZ_CHECK(c.seg_max == p->seg_max && c.size_max == p->size_max);
    FUZZ_CHECK(c.blk_size == p->blk_size && c.num_queues == p->num_queues);
    FUZZ_CHECK(c.geometry.cylinders == p->cylinders && c.geometry.heads == p->heads);
    FUZZ_CHECK(c.writeback == ((f & VBLK_BIT(VBLK_F_FLUSH)) && p->writeback));
    FUZZ_CHECK(c.unused0 == 0 && c.unused1[0] == 0 && c.unused1[1] == 0 && c.unused1[2] == 0);
    if (!(be->ops->caps & VBLK_BACKEND_CAP_DISCARD))
        FUZZ_CHECK(c.max_discard_sectors == 0);
    if (!(be->ops->caps & VBLK_BACKEND_CAP_WRITE_ZEROES))
        FUZZ_CHECK(c.max_write_zeroes_sectors == 0);
    if (f & VBLK_BIT(VBLK_F_DISCARD))
        FUZZ_CHECK(c.max_discard_seg >= 1 && c.max_discard_seg <= 256);
    if (f & VBLK_BIT(VBLK_F_WRITE_ZEROES))
        FUZZ_CHECK(c.max_write_zeroes_seg >= 1 && c.max_write_zeroes_seg <= 256);
}

/* A queue over a small split or packed ring, set up with fuzzed parameters. */
static void try_queue(struct vblk_dev *dev, struct fuzz_in *in)
{
    struct vblk_queue_params qp = {0};
    qp.index = in_u8(in);
    qp.size = in_u16(in);
    uint8_t how = in_u8(in);
    size_t need = vblk_queue_mem_size(dev, qp.size);
    if (need > (1u << 20))
        return;
    if (how & 1) {
        /* Buffer problems: none, misaligned, or one byte short. */
        uint8_t *b = malloc(need + 17);
        FUZZ_CHECK(b);
        struct vblk_queue q;
        int rc = vblk_queue_init(&q, dev, &g_mem, &qp, b + 1, need);
        FUZZ_CHECK(rc < 0);
        rc = vblk_queue_init(&q, dev, &g_mem, &qp, NULL, need);
        FUZZ_CHECK(rc < 0);
        if (need) {
            uint8_t *a = (uint8_t *)(((uintptr_t)b + 15) & ~(uintptr_t)15);
            rc = vblk_queue_init(&q, dev, &g_mem, &qp, a, need - 1);
            FUZZ_CHECK(rc < 0);
        }
        free(b);
        return;
    }
    if (qp.size > 256)
        return;
    bool packed = (vblk_dev_driver_features(dev) & VBLK_BIT(VBLK_F_RING_PACKED)) != 0;
    size_t n = qp.size ? qp.size : 1;
    size_t ring = packed ? 16 * n + 8 : 16 * n + 6 + 2 * n + 2 + 6 + 8 * n;
    uint8_t *mem = calloc(1, ring);
    FUZZ_CHECK(mem);
    vblk_mem_init(&g_mem);
    FUZZ_CHECK(vblk_mem_add(&g_mem, 0x40000, ring, mem, NULL) == 0);
    qp.addrs.desc = 0x40000;
    qp.addrs.driver = 0x40000 + 16 * n;
    qp.addrs.device = packed ? qp.addrs.driver + 4 : ((qp.addrs.driver + 6 + 2 * n + 3) & ~3ull);
    if (how & 2)
        qp.addrs.device += how >> 2; /* misaligned or outside the map */
    void *buf = aligned_alloc(16, need ? (need + 15) & ~(size_t)15 : 16);
    FUZZ_CHECK(buf);
    struct vblk_queue q;
    int rc = vblk_queue_init(&q, dev, &g_mem, &qp, buf, need);
    if (!dev->features_ok || qp.index >= dev->p.num_queues || qp.size > dev->p.queue_size ||
        qp.size == 0 || (!packed && (qp.size & (qp.size - 1))))
        FUZZ_CHECK(rc == -EINVAL);
    if (rc == 0) {
        FUZZ_CHECK(vblk_queue_process(&q, 0) == 0);
        FUZZ_CHECK(vblk_queue_on_kick(&q) == 0);
        FUZZ_CHECK(vblk_queue_inflight(&q) == 0);
        (void)vblk_queue_stop(&q);
        FUZZ_CHECK(vblk_queue_destroy(&q) == 0);
    }
    free(buf);
    free(mem);
    vblk_mem_init(&g_mem);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    struct vblk_dev_params p;
    read_params(&in, &p);

    struct fuzz_be *fb = malloc(sizeof(*fb));
    FUZZ_CHECK(fb);
    fuzz_be_init(fb, in_u8(&in) & 0x1f, NULL, 0);
    uint8_t bsz = in_u8(&in);
    struct vblk_backend be = {&fb->ops, fb, bsz ? (uint64_t)bsz << (bsz & 31) : (uint64_t)64 << 20};
    if (bsz == 0xff)
        be.size = p.capacity;

    struct vblk_dev dev;
    uint64_t offered = 0;
    int want = expected_init(&p, &be, &offered);
    int rc = vblk_dev_init(&dev, &p, &be);
    FUZZ_CHECK(rc == want);
    if (rc == 0) {
        FUZZ_CHECK(vblk_dev_features(&dev) == offered);
        check_config(&dev, &p, &be, offered);
        /* Must not fail for a default-sized queue. */
        (void)vblk_queue_mem_size(&dev, dev.p.queue_size);
    }
    /* A failed init leaves a device that must still answer safely. */
    struct vblk_config shadow;
    FUZZ_CHECK(vblk_dev_config_read(&dev, 0, &shadow, CFG_SIZE) == 0);

    while (rc == 0 && in.n > 0) {
        uint8_t op = in_u8(&in);
        switch (op % 8) {
        case 0: {
            uint32_t off = (op & 8) ? in_u32(&in) : in_u8(&in);
            uint32_t len = (op & 16) ? in_u32(&in) : in_u8(&in);
            bool valid = off <= CFG_SIZE && len <= CFG_SIZE - off;
            uint8_t *buf = malloc(valid && len ? len : 1);
            FUZZ_CHECK(buf);
            int r = vblk_dev_config_read(&dev, off, buf, len);
            FUZZ_CHECK(r == (valid ? 0 : -EINVAL));
            if (valid)
                FUZZ_CHECK(memcmp(buf, (uint8_t *)&shadow + off, len) == 0);
            free(buf);
            break;
        }
        case 1: {
            uint32_t off = (op & 8) ? in_u32(&in) : in_u8(&in);
            uint32_t len = (op & 16) ? in_u32(&in) : in_u8(&in) % 8u;
            uint8_t val[8];
            in_bytes(&in, val, sizeof(val));
            bool valid = off <= CFG_SIZE && len <= CFG_SIZE - off;
            int want_w;
            if (!valid)
                want_w = -EINVAL;
            else if (len != 1 || off != offsetof(struct vblk_config, writeback))
                want_w = -EPERM;
            else if (!(vblk_dev_features(&dev) & VBLK_BIT(VBLK_F_CONFIG_WCE)))
                want_w = -EPERM;
            else if (dev.features_ok &&
                     !(vblk_dev_driver_features(&dev) & VBLK_BIT(VBLK_F_CONFIG_WCE)))
                want_w = -EPERM;
            else
                want_w = 0;
            /* Oversized lengths are only ever checked, never read. */
            int r = vblk_dev_config_write(&dev, off, val, len <= sizeof(val) ? len : 0);
            if (len > sizeof(val))
                break;
            FUZZ_CHECK(r == want_w);
            if (r == 0) {
                shadow.writeback = val[0] ? 1 : 0;
                FUZZ_CHECK(vblk_dev_writeback(&dev) == (val[0] != 0));
            }
            struct vblk_config now;
            FUZZ_CHECK(vblk_dev_config_read(&dev, 0, &now, CFG_SIZE) == 0);
            FUZZ_CHECK(memcmp(&now, &shadow, CFG_SIZE) == 0);
            break;
        }
        case 2:
        case 3: {
            uint64_t f = in_u64(&in);
            if (op & 1)
                f = (f & vblk_dev_features(&dev)) | VBLK_BIT(VBLK_F_VERSION_1);
            uint64_t before = vblk_dev_driver_features(&dev);
            int r = vblk_dev_set_features(&dev, f);
            bool ok = !(f & ~vblk_dev_features(&dev)) && (f & VBLK_BIT(VBLK_F_VERSION_1));
            FUZZ_CHECK(r == (ok ? 0 : -EINVAL));
            FUZZ_CHECK(vblk_dev_driver_features(&dev) == (ok ? f : before));
            break;
        }
        case 4: {
            uint64_t c = pick_u64(&in);
            vblk_dev_set_capacity(&dev, c);
            FUZZ_CHECK(vblk_dev_config_read(&dev, 0, &shadow, CFG_SIZE) == 0);
            FUZZ_CHECK(shadow.capacity == c / VBLK_SECTOR_SIZE);
            break;
        }
        case 5:
            try_queue(&dev, &in);
            break;
        case 6:
            FUZZ_CHECK(vblk_req_type_name(in_u32(&in)) != NULL);
            break;
        default:
            FUZZ_CHECK(vblk_dev_writeback(&dev) == (shadow.writeback != 0));
            break;
        }
    }
    free(fb);
    return 0;
}
