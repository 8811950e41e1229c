/* SPDX-License-Identifier: MIT */
/**
 * @file mem.h
 * @brief Driver-address to host-pointer translation (the guest memory map).
 *
 * Every address the driver writes into a ring is a *driver address*: a
 * guest-physical address for vhost-user, an IOVA for VDUSE, a plain pointer
 * value for the loopback transport. A vblk_mem holds a sorted set of
 * non-overlapping regions, each mapping a driver address range onto host
 * memory the caller already has access to. The virtqueue code never touches
 * driver memory except through this map, which is what makes one ring
 * implementation serve every transport.
 *
 * The map is caller-owned storage, never allocates, and is not internally
 * locked: change it only while no queue that uses it is being processed
 * (the transports stop their queues around a change).
 */
#ifndef VIRTIOBLK_MEM_H
#define VIRTIOBLK_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Most regions one map holds (vhost-user allows up to 509 memory slots). */
#define VBLK_MEM_MAX_REGIONS 512

/**
 * A scatter-gather element. Layout-compatible with POSIX `struct iovec`
 * (the backends rely on that, and check it at compile time).
 */
struct vblk_iov {
    void *base; /**< Host pointer. */
    size_t len; /**< Bytes. */
};

/** One mapped range of driver addresses. */
struct vblk_mem_region {
    uint64_t addr; /**< First driver address. */
    uint64_t size; /**< Bytes; never 0. */
    uint8_t *host; /**< Host pointer for @ref addr. */
    void *opaque;  /**< Owner's cookie (e.g. mmap base for munmap). */
};

struct vblk_mem;

/**
 * Translation-miss handler, see vblk_mem_set_miss(). Called with the driver
 * address that no region covers. It may add a region containing @p addr with
 * vblk_mem_add() and return 0; any other value leaves @p addr unmapped.
 */
typedef int (*vblk_mem_miss_fn)(void *opaque, struct vblk_mem *mem, uint64_t addr);

/** The memory map. Treat the fields as private; use the functions. */
struct vblk_mem {
    uint32_t nregions;           /**< Regions in use, sorted by addr. */
    uint32_t last;               /**< Index of the last region that matched. */
    uint8_t *log;                /**< Dirty log bitmap (1 bit per 4 KiB page) or NULL. */
    uint64_t log_size;           /**< Bytes of @ref log. */
    vblk_mem_miss_fn miss;       /**< Translation-miss handler or NULL. */
    void *miss_opaque;           /**< Argument of @ref miss. */
    struct vblk_mem_region regions[VBLK_MEM_MAX_REGIONS]; /**< Sorted, disjoint. */
};

/** Empties @p mem (no log, no miss handler). */
void vblk_mem_init(struct vblk_mem *mem);

/**
 * Installs a handler that runs when a translation (vblk_mem_ptr(),
 * vblk_mem_map()) finds no region for an address, so a transport can fill
 * the map lazily: VDUSE learns an IOVA's backing only by asking the kernel.
 * The lookup is retried once after the handler returns 0. The handler runs
 * on the thread doing the translation, so the usual rule applies: only that
 * thread may be using the map. NULL removes the handler.
 */
void vblk_mem_set_miss(struct vblk_mem *mem, vblk_mem_miss_fn fn, void *opaque);

/**
 * Adds a region. Returns 0, -EINVAL if @p size is 0, the range wraps past
 * 2^64 (driver or host side) or @p host is NULL, -EEXIST if it overlaps an
 * existing region, -ENOSPC if the map is full.
 */
int vblk_mem_add(struct vblk_mem *mem, uint64_t addr, uint64_t size, void *host, void *opaque);

/**
 * Removes the region that starts at @p addr with size @p size. If @p removed
 * is not NULL it receives a copy of the region. Returns 0 or -ENOENT.
 */
int vblk_mem_remove(struct vblk_mem *mem, uint64_t addr, uint64_t size,
                    struct vblk_mem_region *removed);

/** Number of regions in the map. */
uint32_t vblk_mem_count(const struct vblk_mem *mem);

/** The region at @p index (0 .. count-1), or NULL. */
const struct vblk_mem_region *vblk_mem_region_at(const struct vblk_mem *mem, uint32_t index);

/**
 * Translates [@p addr, @p addr + @p len) into at most @p max host iovecs,
 * splitting it where it crosses from one region into an adjacent one.
 * @p len 0 yields 0 iovecs. Returns the number of iovecs written,
 * -EFAULT if any byte is unmapped or the range wraps past 2^64, or
 * -ENOBUFS if more than @p max iovecs would be needed. Never allocates.
 */
int vblk_mem_map(struct vblk_mem *mem, uint64_t addr, uint64_t len, struct vblk_iov *iov,
                 unsigned max);

/**
 * Translates a range that must be contiguous in host memory (a ring, an
 * indirect table). Returns the host pointer, or NULL if the range is not
 * entirely inside one region or wraps.
 */
void *vblk_mem_ptr(struct vblk_mem *mem, uint64_t addr, uint64_t len);

/**
 * Installs a dirty-page log: bit N of @p log set means the 4 KiB page at
 * driver address N * 4096 was written by the device (vhost-user's
 * VHOST_F_LOG_ALL layout). NULL disables logging.
 */
void vblk_mem_set_log(struct vblk_mem *mem, void *log, uint64_t size);

/**
 * Marks [@p addr, @p addr + @p len) dirty in the log, if one is installed.
 * Bits past the end of the log are ignored. Safe against a concurrent
 * reader of the log (atomic OR).
 */
void vblk_mem_log_write(struct vblk_mem *mem, uint64_t addr, uint64_t len);

/**
 * Like vblk_mem_log_write() for a range given by host pointer (a buffer the
 * device wrote through an iovec). Ranges outside every region are ignored.
 */
void vblk_mem_log_host(struct vblk_mem *mem, const void *host, uint64_t len);

/** True if a dirty log is installed. */
static inline bool vblk_mem_logging(const struct vblk_mem *mem)
{
    return mem->log != NULL;
}

#ifdef __cplusplus
}
#endif
#endif
