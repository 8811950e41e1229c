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
 * File or block device backend. FLUSH maps to fdatasync, DISCARD to
 * fallocate(PUNCH_HOLE), WRITE_ZEROES to fallocate(ZERO_RANGE) (or
 * PUNCH_HOLE with the UNMAP flag). @p opts may be NULL for defaults.
 * Returns 0 or a negative errno (-ENOENT, -EACCES, -EINVAL if the size is
 * not a multiple of 512, ...).
 */
int vblk_backend_file_open(const char *path, const struct vblk_file_opts *opts,
                           struct vblk_backend *out);

#ifdef __cplusplus
}
#endif
#endif
