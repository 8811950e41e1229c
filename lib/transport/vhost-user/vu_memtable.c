/* SPDX-License-Identifier: MIT */
/* vhost-user memory messages: SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG and
 * SET_LOG_BASE. Each builds the new map aside, then stops the rings, swaps
 * it in and restarts them (mem_commit). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vu_internal.h"

/* ---- messages: SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG, SET_LOG_BASE ---- */

typedef void (*mem_change_fn)(struct vblk_vu_dev *d, void *arg);

/* Applies a change to the region table with every queue paused: running
 * rings are drained (their requests point into the old mappings), the
 * change is made, and they restart where they stopped with the rings
 * translated through the new table. */
static void mem_commit(struct vblk_vu_dev *d, mem_change_fn change, void *arg)
{
    uint64_t restart = 0;
    vu_count(&d->stats.memory_updates);
    vu_lock_all(d);
    for (uint16_t i = 0; i < d->nq; i++) {
        if (d->q[i].tq.live) {
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
            vu_log(d, VBLK_LOG_ERR, "queue %u: ring not in the new memory map (%d)", i, rc);
            (void)vu_queue_break(&d->q[i]);
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
                vu_region_unmap(d, &r);
        }
        if (rc < 0) {
            vu_mem_clear(d, nm);
            free(nm);
            return rc;
        }
        nm->r[nm->n++] = r;
    }
    mem_commit(d, swap_table, nm);
    vu_mem_clear(d, nm); /* the old table */
    free(nm);
    vu_log(d, VBLK_LOG_INFO, "memory table: %u regions, %llu MiB", d->mem.n,
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
        vu_region_unmap(d, &r);
        return rc;
    }
    mem_commit(d, add_region, &r);
    vu_log(d, VBLK_LOG_INFO, "memory region added: gpa 0x%llx, %llu MiB (%u regions)",
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
        vu_region_unmap(d, &rm.gone);
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
        if (d->q[i].tq.live)
            vu_queue_refresh_log(&d->q[i]);
    vu_unlock_all(d);
    vu_shm_unmap(old, old_len);
    vu_log(d, VBLK_LOG_INFO, "dirty log: %llu bytes", (unsigned long long)d->log_size);
    return 0;
}
