/* SPDX-License-Identifier: MIT */
/* virtio-blk request decoding and validation (virtio 1.2 5.2.6). */
#include <errno.h>
#include <string.h>

#include "blk_internal.h"
#include "div64.h"

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

/* Writes @len bytes @skip bytes into @iov; the caller checked the room. */
static void iov_scatter_at(struct vblk_iov *iov, unsigned n, uint64_t skip, const void *src,
                           size_t len)
{
    const uint8_t *s = src;
    for (unsigned i = 0; i < n && len; i++) {
        if (skip >= iov[i].len) {
            skip -= iov[i].len;
            continue;
        }
        size_t chunk = iov[i].len - (size_t)skip;
        if (chunk > len)
            chunk = len;
        memcpy((uint8_t *)iov[i].base + skip, s, chunk);
        s += chunk;
        len -= chunk;
        skip = 0;
    }
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

/* ZONE_REPORT: the descriptors from the zone holding r->sector, as many
 * as the driver's buffer holds whole (virtio 1.2 5.2.6), fetched from the
 * backend a few at a time. */
static int zone_report(const struct vblk_queue *q, struct vblk_req *r, struct vblk_iov *win,
                       uint16_t nwin, uint32_t wr_len)
{
    const struct vblk_dev *dev = q->dev;
    /* Not even room for the header: nothing meaningful can be returned. */
    if (wr_len < sizeof(struct vblk_zone_report) || r->sector >= vblk_dev_capacity_sectors(dev))
        return VBLK_S_ZONE_INVALID_CMD;
    uint64_t want =
        (wr_len - sizeof(struct vblk_zone_report)) / sizeof(struct vblk_zone_descriptor);
    uint64_t sector = r->sector, done = 0;
    while (done < want) {
        struct vblk_zone z[8];
        uint32_t n = want - done < 8 ? (uint32_t)(want - done) : 8;
        int got = dev->be.ops->zone_report(dev->be.ctx, sector, z, n);
        if (got < 0)
            return VBLK_S_IOERR;
        if (got == 0)
            break;
        if ((uint32_t)got > n)
            got = (int)n;
        for (int i = 0; i < got; i++) {
            /* A backend that goes backwards would loop forever. */
            if (z[i].start + z[i].len <= sector || z[i].len == 0)
                return VBLK_S_IOERR;
            struct vblk_zone_descriptor d;
            memset(&d, 0, sizeof(d));
            d.z_cap = z[i].cap;
            d.z_start = z[i].start;
            d.z_wp = z[i].wp;
            d.z_type = z[i].type;
            d.z_state = z[i].state;
            iov_scatter_at(win, nwin,
                           sizeof(struct vblk_zone_report) + (done + (uint64_t)i) * sizeof(d), &d,
                           sizeof(d));
            sector = z[i].start + z[i].len;
        }
        done += (uint32_t)got;
        if (sector >= vblk_dev_capacity_sectors(dev))
            break;
    }
    struct vblk_zone_report h;
    memset(&h, 0, sizeof(h));
    h.nr_zones = done;
    iov_scatter(win, nwin, &h, sizeof(h));
    r->iov = win;
    r->niov = nwin;
    r->used_len = (uint32_t)(sizeof(h) + done * sizeof(struct vblk_zone_descriptor)) + 1;
    return VBLK_S_OK;
}

int req_decode_zoned(const struct vblk_queue *q, struct vblk_req *r, struct vblk_iov *rd,
                     uint16_t nrd, uint32_t rd_len, struct vblk_iov *win, uint16_t nwin,
                     uint32_t wr_len)
{
    const struct vblk_dev *dev = q->dev;
    const struct vblk_zone_info *zi = &dev->zinfo;
    uint64_t cap = vblk_dev_capacity_sectors(dev);
    switch (r->type) {
    case VBLK_T_ZONE_REPORT:
        return zone_report(q, r, win, nwin, wr_len);
    case VBLK_T_ZONE_APPEND: {
        /* The extended in-header: append_sector, then the status byte. */
        if (wr_len < VBLK_ZONE_APPEND_INHDR || rd_len % VBLK_SECTOR_SIZE)
            return VBLK_S_IOERR;
        if (r->chain.ndata > dev->p.seg_max + 2u)
            return VBLK_S_IOERR;
        uint64_t nsect = rd_len >> VBLK_SECTOR_SHIFT;
        /* virtio 1.2 5.2.6.2: the append size limit, then the zone rules
         * the config space tells (the backend applies the rest). */
        if (nsect > zi->max_append_sectors)
            return zi->max_append_sectors ? VBLK_S_ZONE_INVALID_CMD : VBLK_S_UNSUPP;
        if (r->sector >= cap || mod64_32(r->sector, zi->zone_sectors))
            return VBLK_S_ZONE_INVALID_CMD;
        if (rd_len % zi->write_granularity)
            return VBLK_S_ZONE_UNALIGNED_WP;
        r->iov = rd;
        r->niov = nrd;
        r->len = rd_len;
        r->zin = win;
        r->nzin = nwin;
        r->used_len = wr_len + 1;
        if (req_write_through(dev))
            r->flags |= VBLK_REQ_F_FUA;
        return REQ_SUBMIT;
    }
    case VBLK_T_ZONE_OPEN:
    case VBLK_T_ZONE_CLOSE:
    case VBLK_T_ZONE_FINISH:
    case VBLK_T_ZONE_RESET:
        if (r->sector >= cap || mod64_32(r->sector, zi->zone_sectors))
            return VBLK_S_ZONE_INVALID_CMD;
        return REQ_SUBMIT;
    case VBLK_T_ZONE_RESET_ALL:
        r->sector = 0;
        return REQ_SUBMIT;
    default:
        return VBLK_S_UNSUPP;
    }
}

void vblk_req_set_append_sector(struct vblk_req *r, uint64_t sector)
{
    /* zin is set by every ZONE_APPEND that reaches a backend (and only
     * read for one), so the common path never clears it. */
    if (r->type != VBLK_T_ZONE_APPEND || !r->zin)
        return;
    iov_scatter(r->zin, r->nzin, &sector, sizeof(sector));
    struct vblk_mem *mem = r->q->vq.mem;
    if (mem->log) {
        size_t left = sizeof(sector);
        for (uint16_t i = 0; i < r->nzin && left; i++) {
            size_t n = r->zin[i].len < left ? r->zin[i].len : left;
            vblk_mem_log_host(mem, r->zin[i].base, n);
            left -= n;
        }
    }
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
           type == VBLK_T_SECURE_ERASE || type == VBLK_T_ZONE_APPEND || type == VBLK_T_ZONE_OPEN ||
           type == VBLK_T_ZONE_CLOSE || type == VBLK_T_ZONE_FINISH || type == VBLK_T_ZONE_RESET ||
           type == VBLK_T_ZONE_RESET_ALL;
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
        if (req_write_through(dev))
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
        /* virtio 1.2 5.2.6.2: without ZONED negotiated the zone types are
         * unsupported, like unknown types. */
        if (!dev->zoned_on)
            return VBLK_S_UNSUPP;
        return req_decode_zoned(q, r, rd, nrd, rd_len, win, nwin, wr_len);
    }
    if ((r->type == VBLK_T_IN || r->type == VBLK_T_OUT) && r->len == 0)
        return VBLK_S_OK;
    return REQ_SUBMIT;
}
