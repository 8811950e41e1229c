/* SPDX-License-Identifier: MIT */
/* vhost-user guest memory: mapping the front-end's regions, overlap checks,
 * and translation of front-end user addresses to guest-physical ones. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vu_internal.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* Seals the file against shrinking if it allows that (a memfd created with
 * MFD_ALLOW_SEALING and not yet sealed with F_SEAL_SEAL); then only a
 * full filesystem or hugetlb pool can take pages away under the mapping.
 * Returns whether the file can no longer shrink. */
static bool seal_shrink(int fd)
{
    (void)fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK);
    int seals = fcntl(fd, F_GET_SEALS);
    return seals >= 0 && (seals & F_SEAL_SHRINK);
}

int vu_shm_map(struct vblk_vu_dev *d, int fd, uint64_t offset, uint64_t size, unsigned flags,
               void **map, size_t *map_len, void **ptr)
{
    struct stat st;
    if (size == 0 || offset + size < offset || offset + size > (uint64_t)INT64_MAX)
        return -EINVAL;
    if ((uint64_t)SIZE_MAX < offset + size)
        return -EINVAL;
    if (fstat(fd, &st) < 0)
        return -errno;
    /* Touching a page past the end of a file raises SIGBUS, so only map
     * what the file really holds (memfd, tmpfs, hugetlbfs files are all
     * regular files). */
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < offset + size)
        return -EINVAL;
    bool sealed = seal_shrink(fd);
    uint64_t align = (uint64_t)sysconf(_SC_PAGESIZE);
    /* hugetlbfs reports its page size here, and wants mappings aligned to it. */
    if (st.st_blksize > 0 && (uint64_t)st.st_blksize > align &&
        !((uint64_t)st.st_blksize & ((uint64_t)st.st_blksize - 1)))
        align = (uint64_t)st.st_blksize;
    uint64_t start = offset & ~(align - 1);
    uint64_t len = offset + size - start;
    /* No MAP_NORESERVE: on hugetlbfs the mapping then reserves its huge
     * pages now, and fails with ENOMEM when the pool cannot hold them,
     * instead of raising SIGBUS at the first access. */
    void *p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)start);
    if (p == MAP_FAILED)
        return -errno;
    /* Small areas the back-end writes all the time (dirty log, in-flight
     * region): allocate every page now, so a full filesystem under a
     * sparse file is an error reply here rather than a fault later.
     * Kernels before 5.14 do not know the advice (EINVAL); the guard below
     * still contains a fault there. */
    if ((flags & VU_SHM_POPULATE) && madvise(p, (size_t)len, MADV_POPULATE_WRITE) < 0 &&
        errno != EINVAL) {
        int err = errno;
        munmap(p, (size_t)len);
        vu_log(d, VBLK_LOG_WARN, "shared file cannot be backed: %s", strerror(err));
        return -ENOMEM;
    }
    int rc = fault_guard_add(&d->fault, p, (size_t)len, (size_t)align);
    if (rc < 0) {
        munmap(p, (size_t)len);
        return rc;
    }
    if (!sealed)
        vu_log(d, VBLK_LOG_DEBUG,
               "shared file not sealed against shrinking; a truncation will break the device");
    *map = p;
    *map_len = (size_t)len;
    *ptr = (uint8_t *)p + (offset - start);
    return 0;
}

void vu_shm_unmap(void *map, size_t map_len)
{
    if (!map)
        return;
    fault_guard_remove(map);
    munmap(map, map_len);
}

int vu_region_map(struct vblk_vu_dev *d, struct vu_region *r, const struct vu_region_desc *desc,
                  int fd)
{
    memset(r, 0, sizeof(*r));
    /* Empty regions, and ranges that wrap in either address space. */
    if (desc->size == 0 || desc->gpa + (desc->size - 1) < desc->gpa ||
        desc->uaddr + (desc->size - 1) < desc->uaddr)
        return -EINVAL;
    void *ptr = NULL;
    int rc = vu_shm_map(d, fd, desc->mmap_offset, desc->size, 0, &r->map, &r->map_len, &ptr);
    if (rc < 0)
        return rc == -ENOMEM || rc == -ENOSPC ? rc : -EINVAL;
    r->gpa = desc->gpa;
    r->size = desc->size;
    r->uaddr = desc->uaddr;
    r->mmap_offset = desc->mmap_offset;
    r->host = ptr;
    vu_count(&d->stats.memory_maps);
    return 0;
}

void vu_region_unmap(struct vblk_vu_dev *d, struct vu_region *r)
{
    if (r->map)
        vu_count(&d->stats.memory_unmaps);
    vu_shm_unmap(r->map, r->map_len);
    memset(r, 0, sizeof(*r));
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    /* Written as differences so that ranges ending at 2^64 work. */
    return a - b < blen || b - a < alen;
}

int vu_mem_check(const struct vu_mem *m, const struct vu_region *r)
{
    if (m->n >= VBLK_VU_MAX_MEM_SLOTS)
        return -ENOSPC;
    for (uint32_t i = 0; i < m->n; i++) {
        const struct vu_region *e = &m->r[i];
        if (ranges_overlap(r->gpa, r->size, e->gpa, e->size) ||
            ranges_overlap(r->uaddr, r->size, e->uaddr, e->size))
            return -EEXIST;
    }
    return 0;
}

void vu_mem_clear(struct vblk_vu_dev *d, struct vu_mem *m)
{
    for (uint32_t i = 0; i < m->n; i++)
        vu_region_unmap(d, &m->r[i]);
    m->n = 0;
}

int vu_mem_build(const struct vu_mem *m, struct vblk_mem *out)
{
    void *log = out->log;
    uint64_t log_size = out->log_size;
    vblk_mem_init(out);
    for (uint32_t i = 0; i < m->n; i++) {
        const struct vu_region *r = &m->r[i];
        int rc = vblk_mem_add(out, r->gpa, r->size, r->host, r->map);
        if (rc < 0) {
            vblk_mem_init(out);
            return rc;
        }
    }
    vblk_mem_set_log(out, log, log_size);
    return 0;
}

int vu_mem_ua_to_gpa(const struct vu_mem *m, uint64_t ua, uint64_t len, uint64_t *gpa)
{
    for (uint32_t i = 0; i < m->n; i++) {
        const struct vu_region *r = &m->r[i];
        uint64_t off = ua - r->uaddr;
        if (off < r->size && len <= r->size - off) {
            *gpa = r->gpa + off;
            return 0;
        }
    }
    return -EFAULT;
}
