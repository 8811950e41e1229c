/* SPDX-License-Identifier: MIT */
/* Driver-address translation: sorted, disjoint regions with a last-hit cache. */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "virtioblk/mem.h"

void vblk_mem_init(struct vblk_mem *mem)
{
    mem->nregions = 0;
    mem->last = 0;
    mem->log = NULL;
    mem->log_size = 0;
    mem->miss = NULL;
    mem->miss_opaque = NULL;
}

void vblk_mem_set_miss(struct vblk_mem *mem, vblk_mem_miss_fn fn, void *opaque)
{
    mem->miss = fn;
    mem->miss_opaque = fn ? opaque : NULL;
}

/* Index of the first region whose addr is > @addr (upper bound). */
static uint32_t upper_bound(const struct vblk_mem *mem, uint64_t addr)
{
    uint32_t lo = 0, hi = mem->nregions;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (mem->regions[mid].addr <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int vblk_mem_add(struct vblk_mem *mem, uint64_t addr, uint64_t size, void *host, void *opaque)
{
    if (size == 0 || host == NULL)
        return -EINVAL;
    if (addr + (size - 1) < addr)
        return -EINVAL;
    if ((uintptr_t)host + (size - 1) < (uintptr_t)host)
        return -EINVAL;
    if (mem->nregions >= VBLK_MEM_MAX_REGIONS)
        return -ENOSPC;

    uint32_t pos = upper_bound(mem, addr);
    if (pos > 0) {
        const struct vblk_mem_region *prev = &mem->regions[pos - 1];
        if (addr - prev->addr < prev->size)
            return -EEXIST;
    }
    if (pos < mem->nregions && mem->regions[pos].addr - addr < size)
        return -EEXIST;

    memmove(&mem->regions[pos + 1], &mem->regions[pos],
            (mem->nregions - pos) * sizeof(mem->regions[0]));
    mem->regions[pos] = (struct vblk_mem_region){addr, size, host, opaque};
    mem->nregions++;
    mem->last = pos;
    return 0;
}

int vblk_mem_remove(struct vblk_mem *mem, uint64_t addr, uint64_t size,
                    struct vblk_mem_region *removed)
{
    for (uint32_t i = 0; i < mem->nregions; i++) {
        if (mem->regions[i].addr != addr || mem->regions[i].size != size)
            continue;
        if (removed)
            *removed = mem->regions[i];
        memmove(&mem->regions[i], &mem->regions[i + 1],
                (mem->nregions - i - 1) * sizeof(mem->regions[0]));
        mem->nregions--;
        mem->last = 0;
        return 0;
    }
    return -ENOENT;
}

uint32_t vblk_mem_count(const struct vblk_mem *mem)
{
    return mem->nregions;
}

const struct vblk_mem_region *vblk_mem_region_at(const struct vblk_mem *mem, uint32_t index)
{
    return index < mem->nregions ? &mem->regions[index] : NULL;
}

/* The region containing @addr, or NULL. The common case (same region as
 * last time) costs one compare pair. */
static const struct vblk_mem_region *lookup(struct vblk_mem *mem, uint64_t addr)
{
    const struct vblk_mem_region *r = &mem->regions[mem->last];
    if (mem->last < mem->nregions && addr - r->addr < r->size)
        return r;
    uint32_t pos = upper_bound(mem, addr);
    if (pos == 0)
        return NULL;
    r = &mem->regions[pos - 1];
    if (addr - r->addr >= r->size)
        return NULL;
    mem->last = pos - 1;
    return r;
}

/* lookup(), giving the miss handler one chance to map @addr. */
static const struct vblk_mem_region *find(struct vblk_mem *mem, uint64_t addr)
{
    const struct vblk_mem_region *r = lookup(mem, addr);
    if (r || !mem->miss || mem->miss(mem->miss_opaque, mem, addr) != 0)
        return r;
    return lookup(mem, addr);
}

void *vblk_mem_ptr(struct vblk_mem *mem, uint64_t addr, uint64_t len)
{
    const struct vblk_mem_region *r = find(mem, addr);
    if (!r)
        return NULL;
    uint64_t off = addr - r->addr;
    /* off < size, so size - off cannot underflow; this also rejects wraps. */
    if (len > r->size - off)
        return NULL;
    return r->host + off;
}

int vblk_mem_map(struct vblk_mem *mem, uint64_t addr, uint64_t len, struct vblk_iov *iov,
                 unsigned max)
{
    unsigned n = 0;
    if (len == 0)
        return 0;
    if (addr + (len - 1) < addr)
        return -EFAULT;
    while (len) {
        const struct vblk_mem_region *r = find(mem, addr);
        if (!r)
            return -EFAULT;
        if (n == max)
            return -ENOBUFS;
        uint64_t off = addr - r->addr;
        uint64_t chunk = r->size - off;
        if (chunk > len)
            chunk = len;
        iov[n].base = r->host + off;
        iov[n].len = (size_t)chunk;
        n++;
        addr += chunk;
        len -= chunk;
    }
    return (int)n;
}

void vblk_mem_set_log(struct vblk_mem *mem, void *log, uint64_t size)
{
    mem->log = log;
    mem->log_size = log ? size : 0;
}

#define LOG_PAGE_SHIFT 12

void vblk_mem_log_write(struct vblk_mem *mem, uint64_t addr, uint64_t len)
{
    if (!mem->log || len == 0)
        return;
    uint64_t first = addr >> LOG_PAGE_SHIFT;
    uint64_t last = (addr + (len - 1)) >> LOG_PAGE_SHIFT;
    if (addr + (len - 1) < addr)
        last = UINT64_MAX >> LOG_PAGE_SHIFT;
    uint64_t nbits = mem->log_size * 8;
    if (first >= nbits)
        return;
    if (last >= nbits)
        last = nbits - 1;
    for (uint64_t page = first; page <= last; page++) {
        /* vhost-user: the front-end reads the log concurrently; set bits
         * with an atomic OR so no other bit in the byte is lost. Release
         * orders the guest-memory writes before the bit. */
        _Atomic uint8_t *byte = (_Atomic uint8_t *)&mem->log[page >> 3];
        atomic_fetch_or_explicit(byte, (uint8_t)(1u << (page & 7)), memory_order_release);
    }
}

void vblk_mem_log_host(struct vblk_mem *mem, const void *host, uint64_t len)
{
    if (!mem->log || len == 0)
        return;
    /* Only used while migrating, so a linear search over the few regions
     * is cheaper than keeping a second index on the datapath. */
    uintptr_t h = (uintptr_t)host;
    for (uint32_t i = 0; i < mem->nregions; i++) {
        const struct vblk_mem_region *r = &mem->regions[i];
        uintptr_t base = (uintptr_t)r->host;
        if (h - base < r->size) {
            uint64_t off = h - base;
            uint64_t n = len < r->size - off ? len : r->size - off;
            vblk_mem_log_write(mem, r->addr + off, n);
            return;
        }
    }
}
