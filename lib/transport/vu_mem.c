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
        vu_log(d, VBLK_VU_LOG_WARN, "shared file cannot be backed: %s", strerror(err));
        return -ENOMEM;
    }
    int rc = fault_guard_add(&d->fault, p, (size_t)len, (size_t)align);
    if (rc < 0) {
        munmap(p, (size_t)len);
        return rc;
    }
    if (!sealed)
        vu_log(d, VBLK_VU_LOG_DEBUG,
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
    return 0;
}

void vu_region_unmap(struct vu_region *r)
{
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

void vu_mem_clear(struct vu_mem *m)
{
    for (uint32_t i = 0; i < m->n; i++)
        vu_region_unmap(&m->r[i]);
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

/* ---- messages: SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG, SET_LOG_BASE ---- */

typedef void (*mem_change_fn)(struct vblk_vu_dev *d, void *arg);

/* Applies a change to the region table with every queue paused: running
 * rings are drained (their requests point into the old mappings), the
 * change is made, and they restart where they stopped with the rings
 * translated through the new table. */
static void mem_commit(struct vblk_vu_dev *d, mem_change_fn change, void *arg)
{
    uint64_t restart = 0;
    vu_lock_all(d);
    for (uint16_t i = 0; i < d->nq; i++) {
        if (d->q[i].live) {
            vu_queue_quiesce(&d->q[i]);
            restart |= 1ull << i;
        }
    }
    change(d, arg);
    if (vu_mem_build(&d->mem, &d->map) < 0)
        vblk_mem_init(&d->map);
    for (uint16_t i = 0; i < d->nq; i++) {
        if (!(restart >> i & 1))
            continue;
        int rc = vu_queue_start(&d->q[i]);
        if (rc < 0) {
            vu_log(d, VBLK_VU_LOG_ERR, "queue %u: ring not in the new memory map (%d)", i, rc);
            atomic_store(&d->q[i].broken, true);
            vu_queue_update_active(&d->q[i]);
        }
    }
    vu_unlock_all(d);
}

static void swap_table(struct vblk_vu_dev *d, void *arg)
{
    struct vu_mem *other = arg;
    struct vu_mem tmp = d->mem;
    d->mem = *other;
    *other = tmp;
}

static uint64_t total_size(const struct vu_mem *m)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i < m->n; i++)
        sum += m->r[i].size;
    return sum;
}

int vu_h_set_mem_table(struct vblk_vu_dev *d, struct vu_msg *m)
{
    struct vu_mem *nm = calloc(1, sizeof(*nm));
    if (!nm)
        return -ENOMEM;
    int rc = 0;
    for (uint32_t i = 0; i < m->p.mem.nregions; i++) {
        struct vu_region r;
        rc = vu_region_map(d, &r, &m->p.mem.regions[i], m->fds[i]);
        if (rc == 0) {
            rc = vu_mem_check(nm, &r);
            if (rc < 0)
                vu_region_unmap(&r);
        }
        if (rc < 0) {
            vu_mem_clear(nm);
            free(nm);
            return rc;
        }
        nm->r[nm->n++] = r;
    }
    mem_commit(d, swap_table, nm);
    vu_mem_clear(nm); /* the old table */
    free(nm);
    vu_log(d, VBLK_VU_LOG_INFO, "memory table: %u regions, %llu MiB", d->mem.n,
           (unsigned long long)(total_size(&d->mem) >> 20));
    return rc;
}

static void add_region(struct vblk_vu_dev *d, void *arg)
{
    d->mem.r[d->mem.n++] = *(struct vu_region *)arg;
}

int vu_h_add_mem_reg(struct vblk_vu_dev *d, struct vu_msg *m)
{
    struct vu_region r;
    int rc = vu_region_map(d, &r, &m->p.single.region, m->fds[0]);
    if (rc < 0)
        return rc;
    rc = vu_mem_check(&d->mem, &r);
    if (rc < 0) {
        vu_region_unmap(&r);
        return rc;
    }
    mem_commit(d, add_region, &r);
    vu_log(d, VBLK_VU_LOG_INFO, "memory region added: gpa 0x%llx, %llu MiB (%u regions)",
           (unsigned long long)r.gpa, (unsigned long long)(r.size >> 20), d->mem.n);
    return 0;
}

struct removal {
    uint32_t index;
    struct vu_region gone;
};

static void remove_region(struct vblk_vu_dev *d, void *arg)
{
    struct removal *rm = arg;
    rm->gone = d->mem.r[rm->index];
    memmove(&d->mem.r[rm->index], &d->mem.r[rm->index + 1],
            (d->mem.n - rm->index - 1) * sizeof(d->mem.r[0]));
    d->mem.n--;
}

int vu_h_rem_mem_reg(struct vblk_vu_dev *d, struct vu_msg *m)
{
    /* vhost-user: identified by guest address, user address and size; an
     * fd, if any, is closed unused (by the caller). */
    const struct vu_region_desc *want = &m->p.single.region;
    for (uint32_t i = 0; i < d->mem.n; i++) {
        const struct vu_region *r = &d->mem.r[i];
        if (r->gpa != want->gpa || r->uaddr != want->uaddr || r->size != want->size)
            continue;
        struct removal rm = {.index = i};
        mem_commit(d, remove_region, &rm);
        vu_region_unmap(&rm.gone);
        return 0;
    }
    return -ENOENT;
}

void vu_log_unmap(struct vblk_vu_dev *d)
{
    vu_shm_unmap(d->log_map, d->log_map_len);
    d->log_map = NULL;
    d->log_map_len = 0;
    d->log = NULL;
    d->log_size = 0;
}

int vu_h_set_log_base(struct vblk_vu_dev *d, struct vu_msg *m)
{
    if (!vu_has_protocol(d, VBLK_VU_PROTOCOL_F_LOG_SHMFD))
        return -ENOTSUP;
    void *map, *ptr;
    size_t len;
    int rc =
        vu_shm_map(d, m->fds[0], m->p.log.offset, m->p.log.size, VU_SHM_POPULATE, &map, &len, &ptr);
    if (rc < 0)
        return rc == -ENOMEM || rc == -ENOSPC ? rc : -EINVAL;
    vu_lock_all(d);
    void *old = d->log_map;
    size_t old_len = d->log_map_len;
    d->log_map = map;
    d->log_map_len = len;
    d->log = ptr;
    d->log_size = m->p.log.size;
    for (uint16_t i = 0; i < d->nq; i++)
        if (d->q[i].live)
            vu_queue_refresh_log(&d->q[i]);
    vu_unlock_all(d);
    vu_shm_unmap(old, old_len);
    vu_log(d, VBLK_VU_LOG_INFO, "dirty log: %llu bytes", (unsigned long long)d->log_size);
    return 0;
}
