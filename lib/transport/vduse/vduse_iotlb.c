/* SPDX-License-Identifier: MIT */
/*
 * The IOVA map of a VDUSE device.
 *
 * Every address the driver puts in a ring is an IOVA. The kernel owns the
 * IOTLB that translates them, and tells the device nothing when it adds an
 * entry (virtio_vdpa maps its rings and bounce buffers on the fly); it only
 * reports invalidations. So the device fills its vblk_mem lazily: a
 * translation miss asks the kernel for the entry that covers the address
 * (VDUSE_IOTLB_GET_FD), maps it into the process and adds it as a region;
 * an UPDATE_IOTLB request drops every region overlapping its range.
 *
 * An entry the kernel does not have is a driver error: the miss fails, and
 * the core turns that into an IOERR status or a stopped queue.
 */
#include <errno.h>
#include <unistd.h>

#include "transport/vduse/vduse_internal.h"

int vduse_iotlb_miss(void *opaque, struct vblk_mem *mem, uint64_t addr)
{
    struct vblk_vduse *v = opaque;
    struct vduse_mapping m;
    int rc = v->kops->map(v->k, addr, &m);
    if (rc < 0) {
        v->stats.memory_faults++;
        return rc;
    }
    /* Trust nothing: the entry must cover the address and fit in 2^64. */
    if (m.start > addr || m.last < addr || (m.start == 0 && m.last == UINT64_MAX)) {
        rc = -EFAULT;
    } else {
        /* A device deleted under I/O, or a bounce page the kernel never
         * backed, faults on access: guard the whole mapping. */
        size_t len = (size_t)((uint8_t *)m.host - (uint8_t *)m.base) + (m.last - m.start + 1);
        rc = fault_guard_add(&v->fault, m.base, len, (size_t)sysconf(_SC_PAGESIZE));
        if (rc == 0) {
            rc = vblk_mem_add(mem, m.start, m.last - m.start + 1, m.host, m.base);
            if (rc < 0)
                fault_guard_remove(m.base);
        }
    }
    if (rc < 0) {
        /* -EEXIST: the entry overlaps a stale region the kernel replaced
         * without an invalidation. Fail this access rather than guess. */
        struct vblk_mem_region r = {m.start, m.last - m.start + 1, m.host, m.base};
        v->kops->unmap(v->k, &r);
        v->stats.memory_faults++;
        return rc;
    }
    v->stats.memory_maps++;
    return 0;
}

static bool overlaps(const struct vblk_mem_region *r, uint64_t start, uint64_t last)
{
    return r->addr <= last && r->addr + (r->size - 1) >= start;
}

unsigned vduse_iotlb_overlaps(const struct vblk_vduse *v, uint64_t start, uint64_t last)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < vblk_mem_count(&v->mem); i++)
        if (overlaps(vblk_mem_region_at(&v->mem, i), start, last))
            n++;
    return n;
}

unsigned vduse_iotlb_drop(struct vblk_vduse *v, uint64_t start, uint64_t last)
{
    unsigned n = 0;
    uint32_t i = 0;
    while (i < vblk_mem_count(&v->mem)) {
        struct vblk_mem_region r = *vblk_mem_region_at(&v->mem, i);
        if (!overlaps(&r, start, last)) {
            i++;
            continue;
        }
        /* The region array shifts down: stay at index i. */
        vblk_mem_remove(&v->mem, r.addr, r.size, NULL);
        fault_guard_remove(r.opaque);
        v->kops->unmap(v->k, &r);
        v->stats.memory_unmaps++;
        n++;
    }
    return n;
}
