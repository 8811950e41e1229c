/* SPDX-License-Identifier: MIT */
/**
 * @file zone.h
 * @brief Emulated zones: the zone state machine of virtio 1.2 5.2.6 over
 *        caller-provided memory, for backends that emulate a zoned disk.
 *
 * The device core only checks what the config space says about a zoned
 * request (bounds, zone starts, append size and alignment). The zone rules
 * (write pointers, states, open and active limits) belong to the backend:
 * a host zoned device enforces them itself, an emulating backend (memory,
 * file) asks this table. Like the core, it is freestanding: no allocation,
 * no OS calls. One spin lock per table makes every call atomic, so queues
 * on different threads may share a table; it is held for a few
 * instructions, never across I/O.
 *
 * Writes reserve their range first: vblk_zone_table_write_begin() checks
 * the zone, opens it if needed and advances the write pointer past the
 * range, so two ZONE_APPENDs racing on two queues get distinct ranges.
 * vblk_zone_table_write_end() then settles the reservation. Between the
 * two, reads of the range return whatever the storage has (the write is in
 * flight: its data is undefined until it completes).
 *
 * States: conventional zones are VBLK_ZS_NOT_WP; sequential zones move
 * between EMPTY, IOPEN, EOPEN, CLOSED and FULL as the spec's state machine
 * says, and RDONLY / OFFLINE are entered only through
 * vblk_zone_table_set_condition() (a failure the embedder injects).
 * Reaching max_open_zones through a write closes an implicitly open zone
 * (virtio 1.2 5.2.6 allows it); an explicit open never does.
 */
#ifndef VIRTIOBLK_ZONE_H
#define VIRTIOBLK_ZONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "spec.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Options of an emulated zoned disk. Zero fields take the defaults. */
struct vblk_zoned_opts {
    uint32_t zone_sectors;       /**< Sectors per zone; a power of two (default 524288: 256 MiB). */
    uint32_t nr_conv;            /**< Conventional zones at the start (default 0). */
    uint32_t max_open;           /**< Open zone limit (0: none). */
    uint32_t max_active;         /**< Active zone limit (0: none). */
    uint32_t max_append_sectors; /**< Largest ZONE_APPEND (default 256). */
    uint32_t write_granularity;  /**< Bytes, a power of two >= 512 (default 512). */
    uint8_t model;               /**< VBLK_Z_HM (default) or VBLK_Z_HA. */
};

/** @cond PRIVATE */
struct vblk_zone_slot {
    uint64_t wp;
    uint8_t state;
    uint8_t type;
    uint8_t pad[6];
};
/** @endcond */

/** An emulated zone table. Treat the fields as private. */
struct vblk_zone_table {
    /** @cond PRIVATE */
    struct vblk_zone_info info;
    uint64_t capacity; /* sectors */
    uint32_t nr_zones;
    uint32_t nr_conv;
    uint32_t nr_open;   /* IOPEN + EOPEN */
    uint32_t nr_active; /* IOPEN + EOPEN + CLOSED */
    uint32_t lock;
    uint8_t shift; /* log2(zone_sectors) */
    struct vblk_zone_slot *z;
    /** @endcond */
};

/**
 * Fills in the defaults of @p o and checks it against a disk of
 * @p capacity sectors. Returns 0 or -EINVAL (zone size not a power of two,
 * more conventional zones than zones, limits that contradict each other,
 * ...).
 */
int vblk_zoned_opts_check(struct vblk_zoned_opts *o, uint64_t capacity);

/** Zones of a disk of @p capacity sectors with zones of @p zone_sectors. */
uint32_t vblk_zone_count(uint64_t capacity, uint32_t zone_sectors);

/** Bytes of memory a table of @p nr_zones zones needs (8-byte aligned). */
size_t vblk_zone_table_mem_size(uint32_t nr_zones);

/**
 * Initializes @p t for a disk of @p capacity sectors, every sequential
 * zone empty, in @p mem (vblk_zone_table_mem_size() bytes, 8-byte aligned).
 * @p o must have passed vblk_zoned_opts_check(). Returns 0 or -EINVAL.
 */
int vblk_zone_table_init(struct vblk_zone_table *t, uint64_t capacity,
                         const struct vblk_zoned_opts *o, void *mem, size_t len);

/** The geometry and limits for the backend's zone_info(). */
void vblk_zone_table_info(const struct vblk_zone_table *t, struct vblk_zone_info *info);

/** Number of zones. */
static inline uint32_t vblk_zone_table_count(const struct vblk_zone_table *t)
{
    return t->nr_zones;
}

/** Index of the zone holding @p sector (the caller checked the bounds). */
static inline uint32_t vblk_zone_table_index(const struct vblk_zone_table *t, uint64_t sector)
{
    return (uint32_t)(sector >> t->shift);
}

/**
 * A zone_report() for the table: up to @p n zones from the one holding
 * @p sector. Returns the number filled (0 at or past the capacity).
 */
int vblk_zone_table_report(struct vblk_zone_table *t, uint64_t sector, struct vblk_zone *zones,
                           uint32_t n);

/** Copies zone @p idx into @p out. Returns 0 or -EINVAL. */
int vblk_zone_table_get(struct vblk_zone_table *t, uint32_t idx, struct vblk_zone *out);

/**
 * Restores zone @p idx from persisted metadata: write pointer @p wp and
 * condition @p cond (0, VBLK_ZS_RDONLY or VBLK_ZS_OFFLINE). A zone comes
 * back EMPTY, CLOSED or FULL from its write pointer (open zones do not
 * survive a restart, as on a real device after a power cycle). Returns 0,
 * or -EINVAL for a write pointer outside the zone, a conventional zone
 * with a condition, or an active zone beyond max_active_zones.
 */
int vblk_zone_table_restore(struct vblk_zone_table *t, uint32_t idx, uint64_t wp, uint8_t cond);

/**
 * Moves sequential zone @p idx to VBLK_ZS_RDONLY or VBLK_ZS_OFFLINE (a
 * device failure, for tests and fault injection). Returns 0 or -EINVAL.
 */
int vblk_zone_table_set_condition(struct vblk_zone_table *t, uint32_t idx, uint8_t cond);

/**
 * Checks a read of @p nsect sectors at @p sector. Returns VBLK_S_OK with
 * @p *valid set to the sectors from @p sector that hold written data (the
 * rest, past the write pointer, reads as zeros: virtio 1.2 5.2.6
 * "unwritten data"), or a VBLK_S_ZONE_* status (offline zone, a range
 * across a sequential zone's end).
 */
uint8_t vblk_zone_table_read(struct vblk_zone_table *t, uint64_t sector, uint64_t nsect,
                             uint64_t *valid);

/**
 * Starts a write (VBLK_T_OUT, @p append false) of @p nsect sectors at
 * @p sector, or a ZONE_APPEND (@p append true) to the zone starting at
 * @p sector. On VBLK_S_OK the range [*at, *at + nsect) is reserved: the
 * caller writes it and calls vblk_zone_table_write_end(). Any other
 * status is the request's answer and nothing changed.
 */
uint8_t vblk_zone_table_write_begin(struct vblk_zone_table *t, bool append, uint64_t sector,
                                    uint64_t nsect, uint64_t *at);

/**
 * Ends a write that vblk_zone_table_write_begin() reserved. A failed write
 * (@p ok false) gives its range back when no later write was reserved
 * behind it in the zone; otherwise the range stays below the write pointer
 * with undefined contents, as after a failed write on a real device.
 */
void vblk_zone_table_write_end(struct vblk_zone_table *t, uint64_t at, uint64_t nsect, bool ok);

/**
 * A zone management request: VBLK_T_ZONE_OPEN, _CLOSE, _FINISH, _RESET on
 * the zone starting at @p sector, or VBLK_T_ZONE_RESET_ALL. Returns the
 * request's status (VBLK_S_OK, VBLK_S_ZONE_INVALID_CMD for a conventional
 * zone or a transition the state machine forbids, _OPEN_RESOURCE,
 * _ACTIVE_RESOURCE).
 */
uint8_t vblk_zone_table_mgmt(struct vblk_zone_table *t, uint32_t type, uint64_t sector);

#ifdef __cplusplus
}
#endif
#endif
