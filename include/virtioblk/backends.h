/* SPDX-License-Identifier: MIT */
/**
 * @file backends.h
 * @brief The built-in storage backends: null, memory (a RAM disk) and file
 *        (a regular file or block device, with io_uring or psync).
 *
 * Each constructor fills a struct vblk_backend (backend.h) that the caller
 * hands to a device and destroys with vblk_backend_destroy().
 */
#ifndef VIRTIOBLK_BACKENDS_H
#define VIRTIOBLK_BACKENDS_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "zone.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Options for vblk_backend_file_open(). */
struct vblk_file_opts {
    bool read_only; /**< Open read-only. */
    bool direct;    /**< O_DIRECT. */
    /** Engine: VBLK_FILE_ENGINE_AUTO, _IO_URING or _PSYNC. */
    int engine;
    /** Queue depth of each io_uring (0: 256). */
    unsigned ring_depth;
    /**
     * Emulated zones over the file (NULL: a regular disk). The zone state
     * lives in @ref zone_meta and survives a restart; zoned files use the
     * psync engine.
     */
    const struct vblk_zoned_opts *zoned;
    /** Zone metadata file (NULL: the image's path with ".zones" appended). */
    const char *zone_meta;
    /**
     * Offer SECURE_ERASE: BLKSECDISCARD on a block device that has it,
     * otherwise the ranges are overwritten with zeros and synced. On a file
     * system that copies on write or journals data the old blocks may
     * survive elsewhere, so it is opt-in.
     */
    bool secure_erase;
};

/** @name File backend I/O engines */
/**@{*/
#define VBLK_FILE_ENGINE_AUTO     0 /**< io_uring if the kernel allows it, else psync. */
#define VBLK_FILE_ENGINE_IO_URING 1 /**< io_uring only (fails if unavailable). */
#define VBLK_FILE_ENGINE_PSYNC    2 /**< preadv/pwritev on the queue thread. */
/**@}*/

/**
 * Null backend: every request succeeds at once, reads return whatever is in
 * the buffers. Capacity @p size bytes (multiple of 512). Returns 0 or a
 * negative errno.
 */
int vblk_backend_null_create(uint64_t size, struct vblk_backend *out);

/**
 * RAM disk of @p size bytes (multiple of 512), zero-filled, supporting
 * every request type. Safe for queues on different threads. Returns 0,
 * -EINVAL or -ENOMEM.
 */
int vblk_backend_memory_create(uint64_t size, struct vblk_backend *out);

/**
 * A RAM disk of @p size bytes with emulated zones (@p zoned; see zone.h):
 * a zoned device with the zones' rules, every zone empty. Returns 0,
 * -EINVAL (options that do not fit the size) or -ENOMEM.
 */
int vblk_backend_memory_create_zoned(uint64_t size, const struct vblk_zoned_opts *zoned,
                                     struct vblk_backend *out);

/**
 * The zone table of a built-in backend with emulated zones, or NULL. For
 * tests and fault injection (vblk_zone_table_set_condition()); call
 * vblk_backend_zone_persist() after changing a zone behind the device.
 */
struct vblk_zone_table *vblk_backend_zone_table(const struct vblk_backend *be);

/**
 * Writes zone @p idx's state to the backend's zone metadata (file images;
 * a no-op for RAM disks). Returns 0 or a negative errno.
 */
int vblk_backend_zone_persist(const struct vblk_backend *be, uint32_t idx);

/**
 * File or block device backend. FLUSH maps to fdatasync, DISCARD to
 * fallocate(PUNCH_HOLE), WRITE_ZEROES to fallocate(ZERO_RANGE) (or
 * PUNCH_HOLE with the UNMAP flag). @p opts may be NULL for defaults.
 * Returns 0 or a negative errno (-ENOENT, -EACCES, -EINVAL if the size is
 * not a multiple of 512, ...). With @p opts->zoned the file carries
 * emulated zones whose state is kept in a metadata file (format in
 * docs/zoned.md): -EBADMSG if that file belongs to another geometry or is
 * damaged. A host zoned block device (a SMR disk, a ZNS namespace,
 * null_blk with zoned=1) is passed through as a zoned device: zone
 * requests become BLKREPORTZONE / BLKOPENZONE / ... ioctls, ZONE_APPEND a
 * write at the zone's write pointer under a per-zone lock.
 */
int vblk_backend_file_open(const char *path, const struct vblk_file_opts *opts,
                           struct vblk_backend *out);

#ifdef __cplusplus
}
#endif
#endif
