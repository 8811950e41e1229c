/* SPDX-License-Identifier: MIT */
/*
 * The raw ring writer shared by the tests and the fuzzers: a driver that
 * writes split or packed ring memory by hand (virtio 1.2 sections 2.7 and
 * 2.8), descriptor by descriptor, and reads the used entries the device
 * wrote back; and, for tests of the driver side, the device's used-entry
 * writes. Hostile rings are written this way on purpose: the library's own
 * driver side refuses to build them. Spec arithmetic (wrap bits, wrap
 * counter advance) comes from virtioblk/ring.h.
 *
 * No test framework here, so that the fuzzers link it too: a misuse of the
 * writer itself (a queue larger than ATK_RING_MAX) aborts.
 */
#ifndef VBLK_TEST_RING_WRITER_H
#define VBLK_TEST_RING_WRITER_H

#include <stdbool.h>
#include <stdint.h>

#include "virtioblk/ring.h"
#include "virtioblk/spec.h"
#include "virtioblk/vq.h"

/* Layout inside a ring area (atk_ring_init()): descriptors at +0, the
 * driver area (split: available ring; packed: driver event structure) at
 * +0x1000, the device area (used ring / device event structure) at
 * +0x2000. */
#define ATK_DRIVER_OFF 0x1000u
#define ATK_DEVICE_OFF 0x2000u
#define ATK_RING_BYTES 0x3000u
#define ATK_RING_MAX   256u /* largest queue size the writer handles */

struct atk_ring {
    uint8_t *host;              /* the ring area (atk_ring_init()), or NULL */
    uint64_t gpa;               /* its driver address */
    uint8_t *desc;              /* host view of the descriptor area */
    uint8_t *driver;            /* host view of the driver area */
    uint8_t *device;            /* host view of the device area */
    struct vblk_vq_addrs addrs; /* driver addresses of the three areas */
    uint16_t size;              /* queue size */
    bool packed;                /* packed layout */
    uint16_t next;              /* split: next descriptor to fill; packed: next slot */
    uint16_t avail;             /* split: avail->idx shadow */
    uint8_t wrap;               /* packed: driver wrap counter */
    uint16_t used;              /* split: used entries seen; packed: next used slot */
    uint8_t uwrap;              /* packed: used wrap counter */
    uint16_t id;                /* packed: next buffer ID */
    uint16_t nd[ATK_RING_MAX];  /* packed: slots used by each buffer ID */
    uint16_t dev_used;          /* device side: split used->idx; packed: next used slot */
    uint8_t dev_wrap;           /* device side, packed: used wrap counter */
};

/* One buffer of a chain: driver address, length, VBLK_DESC_F_* flags.
 * NEXT is added by atk_post() between buffers. */
struct atk_seg {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
};

#define ATK_W VBLK_DESC_F_WRITE

/* A ring of @size entries in the ATK_RING_BYTES at @host (driver address
 * @gpa), laid out as above; the area is zeroed. */
void atk_ring_init(struct atk_ring *r, void *host, uint64_t gpa, uint16_t size, bool packed);

/* A ring whose three areas lie wherever the caller put them (@addrs: their
 * driver addresses, or NULL when nobody asks). Nothing is cleared. */
void atk_ring_init_areas(struct atk_ring *r, uint16_t size, bool packed, void *desc, void *driver,
                         void *device, const struct vblk_vq_addrs *addrs);

/* The driver addresses to give the device. */
struct vblk_vq_addrs atk_ring_addrs(const struct atk_ring *r);

static inline struct vblk_split_desc *atk_split_desc(struct atk_ring *r)
{
    return (struct vblk_split_desc *)(void *)r->desc;
}

static inline struct vblk_split_avail *atk_split_avail(struct atk_ring *r)
{
    return (struct vblk_split_avail *)(void *)r->driver;
}

static inline struct vblk_split_used *atk_split_used(struct atk_ring *r)
{
    return (struct vblk_split_used *)(void *)r->device;
}

static inline struct vblk_packed_desc *atk_packed_desc(struct atk_ring *r)
{
    return (struct vblk_packed_desc *)(void *)r->desc;
}

/* Split: writes descriptor @i verbatim. */
void atk_split_set(struct atk_ring *r, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                   uint16_t next);

/* Split: makes head @head available (publishes avail->idx). */
void atk_split_publish(struct atk_ring *r, uint16_t head);

/* Split: moves avail->idx on by @n from the value in ring memory, exposing
 * whatever the available ring holds there. */
void atk_split_avail_add(struct atk_ring *r, uint16_t n);

/* Packed: writes slot @i verbatim. */
void atk_packed_set(struct atk_ring *r, uint16_t i, uint64_t addr, uint32_t len, uint16_t id,
                    uint16_t flags);

/* Packed: marks @n slots from position (@pos, @wrap) on available in their
 * own lap, keeping every other flag bit and field as it is. */
void atk_packed_mark_avail(struct atk_ring *r, uint16_t pos, uint8_t wrap, unsigned n);

/* Posts @n buffers as one chain, the way a driver does: split descriptors
 * from r->next on (wrapping), packed slots from r->next on with the current
 * wrap counter, head made available last. Returns the head index (split)
 * or the buffer ID (packed). */
uint16_t atk_post(struct atk_ring *r, const struct atk_seg *s, unsigned n);

/* Posts one descriptor that refers to an indirect table at @table (@len
 * bytes), with @extra flags besides INDIRECT. */
void atk_post_indirect(struct atk_ring *r, uint64_t table, uint32_t len, uint16_t extra);

/* Writes @n entries of an indirect table at @table: split entries linked
 * in order (NEXT between them), packed entries with their flags as given. */
void atk_table_write(bool packed, void *table, const struct atk_seg *s, unsigned n);

/* Takes the next used entry. Returns 1 (id and len filled) or 0. */
int atk_used(struct atk_ring *r, uint16_t *id, uint32_t *len);

/* Device side: writes one used entry for buffer @id with @len bytes
 * written; a packed entry stands for @skip slots and carries WRITE when
 * @write. */
void atk_used_push(struct atk_ring *r, uint32_t id, uint32_t len, uint16_t skip, bool write);

#endif
