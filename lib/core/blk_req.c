/* SPDX-License-Identifier: MIT */
/* virtio-blk request decoding and validation (virtio 1.2 5.2.6). */
#include <errno.h>
#include <string.h>

#include "blk_internal.h"

/* Copies @len bytes starting @skip bytes into @iov. The caller checked the
 * total length. */
static void iov_gather(const struct vblk_iov *iov, unsigned n, size_t skip, void *dst, size_t len)
{
    uint8_t *d = dst;
    for (unsigned i = 0; i < n && len; i++) {
        if (skip >= iov[i].len) {
            skip -= iov[i].len;
            continue;
        }
        size_t chunk = iov[i].len - skip;
        if (chunk > len)
            chunk = len;
        memcpy(d, (const uint8_t *)iov[i].base + skip, chunk);
        d += chunk;
        len -= chunk;
        skip = 0;
    }
}

/* Writes up to @len bytes into @iov; returns bytes written. */
static size_t iov_scatter(struct vblk_iov *iov, unsigned n, const void *src, size_t len)
{
    const uint8_t *s = src;
    size_t done = 0;
    for (unsigned i = 0; i < n && done < len; i++) {
        size_t chunk = iov[i].len < len - done ? iov[i].len : len - done;
        memcpy(iov[i].base, s + done, chunk);
        done += chunk;
    }
    return done;
}

/* Drops the first @skip bytes of an iovec array in place. Returns the new
 * start and count. */
static struct vblk_iov *iov_advance(struct vblk_iov *iov, uint16_t *n, size_t skip)
{
    while (*n && skip >= iov->len) {
        skip -= iov->len;
        iov++;
        (*n)--;
    }
    if (*n && skip) {
        iov->base = (uint8_t *)iov->base + skip;
        iov->len -= skip;
    }
    return iov;
}


/* Sector range, alignment and segment limits for IN / OUT. */
static bool rw_ok(const struct vblk_queue *q, const struct vblk_req *r)
{
    const struct vblk_dev *dev = q->dev;
    uint64_t cap = vblk_dev_capacity_sectors(dev);
    if (r->len % VBLK_SECTOR_SIZE)
        return false;
    uint64_t nsect = r->len >> VBLK_SECTOR_SHIFT;
    if (r->sector > cap || nsect > cap - r->sector)
        return false;
    /* virtio 1.2 5.2.4: seg_max counts data descriptors; header and status
     * take at most two more. */
    if (r->chain.ndata > dev->p.seg_max + 2u)
        return false;
    if ((dev->driver_features & VBLK_BIT(VBLK_F_SIZE_MAX)) && dev->p.size_max &&
        r->chain.max_desc_len > dev->p.size_max && r->chain.ndata > 1)
        return false;
    return true;
}

/* DISCARD / WRITE_ZEROES / SECURE_ERASE: copy each segment out of driver
 * memory once, then validate only the copies. */
static uint8_t ranges_load(const struct vblk_queue *q, struct vblk_req *r, struct vblk_iov *data,
                           uint16_t ndata, uint32_t len)
{
    const struct vblk_dev *dev = q->dev;
    uint32_t max_seg, max_sect;
    switch (r->type) {
    case VBLK_T_DISCARD:
        max_seg = dev->p.max_discard_seg;
        max_sect = dev->p.max_discard_sectors;
        break;
    case VBLK_T_WRITE_ZEROES:
        max_seg = dev->p.max_write_zeroes_seg;
        max_sect = dev->p.max_write_zeroes_sectors;
        break;
    default:
        max_seg = dev->p.max_secure_erase_seg;
        max_sect = dev->p.max_secure_erase_sectors;
        break;
    }
    if (len == 0 || len % sizeof(struct vblk_discard_wz_seg))
        return VBLK_S_IOERR;
    uint32_t n = len / sizeof(struct vblk_discard_wz_seg);
    if (n > max_seg || n > dev->max_ranges)
        return VBLK_S_IOERR;
    iov_gather(data, ndata, 0, r->ranges, len);
    uint64_t cap = vblk_dev_capacity_sectors(dev);
    for (uint32_t i = 0; i < n; i++) {
        struct vblk_discard_wz_seg *s = &r->ranges[i];
        /* virtio 1.2 5.2.6.1: unknown flags, or UNMAP on anything but
         * WRITE_ZEROES, are unsupported. */
        if (s->flags & ~VBLK_WZ_F_UNMAP)
            return VBLK_S_UNSUPP;
        if ((s->flags & VBLK_WZ_F_UNMAP) && r->type != VBLK_T_WRITE_ZEROES)
            return VBLK_S_UNSUPP;
        if (s->num_sectors > max_sect || s->sector > cap || s->num_sectors > cap - s->sector)
            return VBLK_S_IOERR;
        if (!dev->p.write_zeroes_may_unmap)
            s->flags = 0;
    }
    r->nranges = n;
    return VBLK_S_OK;
}

static bool req_modifies(uint32_t type)
{
    return type == VBLK_T_OUT || type == VBLK_T_DISCARD || type == VBLK_T_WRITE_ZEROES ||
           type == VBLK_T_SECURE_ERASE;
}

static uint64_t feature_for(uint32_t type)
{
    switch (type) {
    case VBLK_T_FLUSH:
        return VBLK_BIT(VBLK_F_FLUSH);
    case VBLK_T_GET_LIFETIME:
        return VBLK_BIT(VBLK_F_LIFETIME);
    case VBLK_T_DISCARD:
        return VBLK_BIT(VBLK_F_DISCARD);
    case VBLK_T_WRITE_ZEROES:
        return VBLK_BIT(VBLK_F_WRITE_ZEROES);
    case VBLK_T_SECURE_ERASE:
        return VBLK_BIT(VBLK_F_SECURE_ERASE);
    default:
        return 0;
    }
}

/* virtio 1.2 5.2.6.1: writes must be stable at completion when the cache
 * is write-through, or when FLUSH was offered but neither FLUSH nor
 * CONFIG_WCE was negotiated. */
static bool write_through(const struct vblk_dev *dev)
{
    uint64_t f = dev->driver_features;
    if (f & VBLK_BIT(VBLK_F_CONFIG_WCE))
        return !dev->config.writeback;
    return (dev->host_features & VBLK_BIT(VBLK_F_FLUSH)) && !(f & VBLK_BIT(VBLK_F_FLUSH));
}

int req_decode(const struct vblk_queue *q, struct vblk_req *r)
{
    struct vblk_chain *c = &r->chain;
    const struct vblk_dev *dev = q->dev;

    r->type = UINT32_MAX;
    r->sector = 0;
    r->len = 0;
    r->niov = 0;
    r->iov = NULL;
    r->nranges = 0;
    r->flags = 0;
    r->used_len = 1;
    r->done = 0;

    /* virtio 1.2 5.2.6: the status is the last writable byte. Without one
     * nothing can be reported, so the driver is broken beyond recovery. */
    if (c->nin == 0 || !c->last_mapped) {
        r->status = NULL;
        return REQ_DROP;
    }
    struct vblk_iov *win = &c->iov[c->nout];
    uint16_t nwin = c->nin;
    struct vblk_iov *last = &win[nwin - 1];
    r->status = (uint8_t *)last->base + last->len - 1;
    if (last->len == 1)
        nwin--;
    else
        last->len--;

    if (c->fault || c->out_len < sizeof(struct vblk_req_hdr) || c->out_len == UINT32_MAX ||
        c->in_len == UINT32_MAX)
        return VBLK_S_IOERR;

    struct vblk_req_hdr hdr = {0};
    if (c->iov[0].len >= sizeof(hdr))
        memcpy(&hdr, c->iov[0].base, sizeof(hdr));
    else
        iov_gather(c->iov, c->nout, 0, &hdr, sizeof(hdr));
    r->type = hdr.type;
    r->sector = hdr.sector;
    uint16_t nrd = c->nout;
    struct vblk_iov *rd = iov_advance(c->iov, &nrd, sizeof(hdr));
    uint32_t rd_len = c->out_len - (uint32_t)sizeof(hdr);
    uint32_t wr_len = c->in_len - 1;

    /* virtio 1.2 5.2.6.2: a read-only device fails writes with IOERR and
     * writes nothing. DISCARD, WRITE_ZEROES and SECURE_ERASE modify the
     * disk too; they are never offered on a read-only device, so check
     * before the feature test or they would come back UNSUPP instead. */
    if (__atomic_load_n(&dev->p.read_only, __ATOMIC_RELAXED) && req_modifies(r->type))
        return VBLK_S_IOERR;

    uint64_t need = feature_for(r->type);
    if (need && !(dev->driver_features & need))
        return VBLK_S_UNSUPP;

    switch (r->type) {
    case VBLK_T_IN:
        r->iov = win;
        r->niov = nwin;
        r->len = wr_len;
        if (!rw_ok(q, r))
            return VBLK_S_IOERR;
        r->used_len = wr_len + 1;
        break;
    case VBLK_T_OUT:
        r->iov = rd;
        r->niov = nrd;
        r->len = rd_len;
        if (!rw_ok(q, r))
            return VBLK_S_IOERR;
        if (write_through(dev))
            r->flags |= VBLK_REQ_F_FUA;
        break;
    case VBLK_T_FLUSH:
        break;
    case VBLK_T_GET_ID: {
        r->iov = win;
        r->niov = nwin;
        size_t n = iov_scatter(win, nwin, dev->p.serial, VBLK_ID_BYTES);
        r->used_len = (uint32_t)n + 1;
        return VBLK_S_OK;
    }
    case VBLK_T_GET_LIFETIME: {
        const struct vblk_lifetime *lt = &dev->p.lifetime_info;
        if (wr_len < sizeof(*lt))
            return VBLK_S_IOERR;
        r->iov = win;
        r->niov = nwin;
        iov_scatter(win, nwin, lt, sizeof(*lt));
        r->used_len = (uint32_t)sizeof(*lt) + 1;
        return VBLK_S_OK;
    }
    case VBLK_T_DISCARD:
    case VBLK_T_WRITE_ZEROES:
    case VBLK_T_SECURE_ERASE: {
        uint8_t st = ranges_load(q, r, rd, nrd, rd_len);
        if (st != VBLK_S_OK)
            return st;
        break;
    }
    default:
        /* Unknown types, and ZONED types until that feature exists. */
        return VBLK_S_UNSUPP;
    }
    if ((r->type == VBLK_T_IN || r->type == VBLK_T_OUT) && r->len == 0)
        return VBLK_S_OK;
    return REQ_SUBMIT;
}
