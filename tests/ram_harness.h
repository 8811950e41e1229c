/* SPDX-License-Identifier: MIT */
/*
 * Shared by the device-model harnesses (blk_harness.h,
 * support/attack_harness.h) and test_threads.c: driver buffers handed out
 * from guest memory that the test maps, and the I/O of a RAM disk backend.
 * Include after cmocka.h.
 */
#ifndef VBLK_TEST_RAM_HARNESS_H
#define VBLK_TEST_RAM_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "virtioblk/blk.h"

/* Guest memory for the driver's buffers: @host is the host view of
 * [@gpa, @gpa + @len); guest_alloc() hands out bytes from @bump on. */
struct guest_ram {
    uint8_t *host;
    uint64_t gpa;
    size_t len;
    size_t bump;
};

/* Guest memory for buffers: 16-byte aligned, filled with @fill. Returns
 * its driver address. */
static inline uint64_t guest_alloc(struct guest_ram *g, size_t len, int fill)
{
    size_t off = (g->bump + 15) & ~(size_t)15;
    assert_true(off + len <= g->len);
    g->bump = off + len;
    memset(g->host + off, fill, len);
    return g->gpa + off;
}

static inline void *guest_host(const struct guest_ram *g, uint64_t gpa)
{
    return g->host + (gpa - g->gpa);
}

/* A request header in fresh guest memory; returns its driver address. */
static inline uint64_t guest_hdr(struct guest_ram *g, uint32_t type, uint64_t sector)
{
    uint64_t ga = guest_alloc(g, 16, 0);
    struct vblk_req_hdr hdr = {type, 0, sector};
    memcpy(guest_host(g, ga), &hdr, sizeof(hdr));
    return ga;
}

/* Asserts that @bytes from @sector lie inside a disk of @sectors sectors. */
static inline void ram_disk_check(uint64_t sectors, uint64_t sector, uint64_t bytes)
{
    assert_true(sector <= sectors);
    assert_true(bytes <= (sectors - sector) * 512);
}

/* Copies the data of a read (VBLK_T_IN) or write (VBLK_T_OUT) request
 * between its buffers and the disk bytes at @p. */
static inline void ram_disk_rw(uint8_t *p, const struct vblk_req *r)
{
    for (unsigned i = 0; i < r->niov; i++) {
        if (r->type == VBLK_T_IN)
            memcpy(r->iov[i].base, p, r->iov[i].len);
        else
            memcpy(p, r->iov[i].base, r->iov[i].len);
        p += r->iov[i].len;
    }
}

/* Carries out @r on the RAM disk @disk of @sectors sectors and returns the
 * status. With @check, every access is asserted to lie inside the disk
 * first, for a disk that ASan cannot watch on its own. */
static inline uint8_t ram_disk_io(uint8_t *disk, uint64_t sectors, bool check,
                                  const struct vblk_req *r)
{
    switch (r->type) {
    case VBLK_T_IN:
    case VBLK_T_OUT:
        if (check)
            ram_disk_check(sectors, r->sector, r->len);
        ram_disk_rw(disk + r->sector * 512, r);
        return VBLK_S_OK;
    case VBLK_T_DISCARD:
    case VBLK_T_WRITE_ZEROES:
    case VBLK_T_SECURE_ERASE:
        for (uint32_t i = 0; i < r->nranges; i++) {
            if (check)
                ram_disk_check(sectors, r->ranges[i].sector, r->ranges[i].num_sectors * 512ull);
            memset(disk + r->ranges[i].sector * 512, 0, r->ranges[i].num_sectors * 512ull);
        }
        return VBLK_S_OK;
    default:
        return VBLK_S_OK;
    }
}

#endif
