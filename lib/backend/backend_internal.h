/* SPDX-License-Identifier: MIT */
/*
 * Private declarations shared by the built-in backends (lib/backend/).
 * Nothing here is part of the public API.
 */
#ifndef VBLK_BACKEND_INTERNAL_H
#define VBLK_BACKEND_INTERNAL_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/uio.h>

#include "virtioblk/backends.h"
#include "virtioblk/blk.h"
#include "virtioblk/spec.h"
#include "virtioblk/zone.h"

#include <pthread.h>

/*
 * Emulated zones (zoned_emul.c), shared by the memory and file backends.
 * A backend instance that may be zoned keeps a `struct zemu *` as its first
 * member (NULL: not zoned), so zemu_of(ctx) finds it.
 */
struct zemu {
    struct vblk_zone_table t;
    struct vblk_zone_slot *slots;
    int meta_fd;          /* metadata file, or -1 (memory) */
    pthread_mutex_t lock; /* orders the metadata record writes */
};

int zemu_create(uint64_t size, const struct vblk_zoned_opts *opts, struct zemu **out);
void zemu_destroy(struct zemu *z);
/* Loads (or creates, every zone empty) the metadata file at @p path. */
int zemu_attach_meta(struct zemu *z, const char *path, bool read_only);
/* Persists the record of the zone holding @p sector / of every zone. */
int zemu_persist_sector(struct zemu *z, uint64_t sector);
int zemu_persist_all(struct zemu *z);
/* fdatasync of the metadata file (FLUSH, write-through writes). */
int zemu_sync(struct zemu *z);
struct zemu *zemu_of(void *be);
int zemu_zone_info(void *be, struct vblk_zone_info *info);
int zemu_zone_report(void *be, uint64_t sector, struct vblk_zone *zones, uint32_t n);

/*
 * Resize guard: tells a shrink when every request that may have been
 * checked against the old size has finished. Each request counts itself in
 * the slot of its queue under the current epoch's parity while it can touch
 * the data; be_guard_set_size() flips the epoch and waits until the old
 * parity's counters are all zero. Slots are per queue (one cache line each)
 * so that queues on different threads share nothing on the datapath.
 */
#define BE_GUARD_SLOTS 64u
struct be_guard {
    _Atomic uint64_t size; /* bytes requests may touch */
    atomic_uint epoch;
    struct {
        atomic_uint n[2];
        char pad[64 - 2 * sizeof(atomic_uint)];
    } slot[BE_GUARD_SLOTS] __attribute__((aligned(64)));
};

void be_guard_init(struct be_guard *g, uint64_t size);

/* Counts a request in; returns its token for be_guard_exit(). */
static inline unsigned be_guard_enter(struct be_guard *g, uint16_t queue)
{
    unsigned e = atomic_load(&g->epoch) & 1u;
    atomic_fetch_add(&g->slot[queue % BE_GUARD_SLOTS].n[e], 1);
    return e;
}

static inline void be_guard_exit(struct be_guard *g, uint16_t queue, unsigned token)
{
    atomic_fetch_sub_explicit(&g->slot[queue % BE_GUARD_SLOTS].n[token & 1u], 1,
                              memory_order_release);
}

/* The size a request that has entered must stay within. */
static inline uint64_t be_guard_size(struct be_guard *g)
{
    return atomic_load(&g->size);
}

/* True if [off, off + len) lies inside the current size. */
static inline bool be_guard_fits(struct be_guard *g, uint64_t off, uint64_t len)
{
    uint64_t size = be_guard_size(g);
    return off <= size && len <= size - off;
}

/* Sets the size and waits up to @p timeout_ms for the requests that entered
 * before. Returns 0 or -ETIMEDOUT. One caller at a time. */
int be_guard_set_size(struct be_guard *g, uint64_t size, unsigned timeout_ms);

/* How long a shrink waits for the requests in flight. */
#define BE_RESIZE_TIMEOUT_MS 5000u

/*
 * The file backend's instance. Its ops table is a per-instance copy: the
 * capabilities (READ_ONLY, DISCARD, ...) and the methods (psync or io_uring)
 * depend on how the file was opened.
 */
struct zdev;

struct file_be {
    struct zemu *zemu; /* emulated zones (first member: zemu_of) */
    struct zdev *zdev; /* a host zoned block device passed through */
    struct vblk_backend_ops ops;
    int fd;
    bool blkdev;               /* block device: fallocate falls back to ioctls */
    unsigned ring_depth;       /* io_uring SQ entries per queue */
    uint64_t size;             /* bytes at open */
    struct be_guard guard;     /* the current size; resize */
    atomic_bool no_zero_range; /* regular file: FALLOC_FL_ZERO_RANGE said EOPNOTSUPP */
};

/* The engines hand the request's iovec array straight to the kernel. */
_Static_assert(sizeof(struct vblk_iov) == sizeof(struct iovec), "vblk_iov size");
_Static_assert(offsetof(struct vblk_iov, base) == offsetof(struct iovec, iov_base),
               "vblk_iov base");
_Static_assert(offsetof(struct vblk_iov, len) == offsetof(struct iovec, iov_len), "vblk_iov len");
_Static_assert(sizeof(((struct vblk_iov *)0)->len) == sizeof(((struct iovec *)0)->iov_len),
               "vblk_iov len size");

/* Byte offset and length of a validated range. */
static inline uint64_t be_range_off(const struct vblk_discard_wz_seg *r)
{
    return r->sector << VBLK_SECTOR_SHIFT;
}

static inline uint64_t be_range_len(const struct vblk_discard_wz_seg *r)
{
    return (uint64_t)r->num_sectors << VBLK_SECTOR_SHIFT;
}

struct vblk_req;
/* True if every byte @p req touches (IN / OUT data, DISCARD, WRITE_ZEROES
 * and SECURE_ERASE ranges) lies inside @p g's current size: a resize may have shrunk it
 * after the device checked the request. Other types touch no data. */
bool be_guard_req_fits(struct be_guard *g, const struct vblk_req *req);

/*
 * Position inside an iovec array: element @c idx, byte @c off of it. Used to
 * resume a transfer after a short read or write without modifying the
 * request's iovec array (the device may still need it after completion).
 */
struct iov_pos {
    uint32_t idx;
    uint32_t off;
};

/* Moves @p pos forward by @p n bytes. */
void be_iov_advance(const struct vblk_iov *iov, uint32_t niov, struct iov_pos *pos, uint64_t n);

/* Zero-fills the buffers from @p pos to the end of the array (read past EOF). */
void be_iov_zero(const struct vblk_iov *iov, uint32_t niov, struct iov_pos pos);

/*
 * fallocate() mode for a range of a DISCARD or WRITE_ZEROES request, or 0 if
 * the type has no fallocate equivalent (SECURE_ERASE).
 */
int file_range_mode(struct file_be *fb, uint32_t type, const struct vblk_discard_wz_seg *r);

/* fallocate(@p mode) over [off, off + len), resumed after EINTR; a VBLK_S_* status. */
uint8_t file_range_falloc(int fd, int mode, uint64_t off, uint64_t len);

/*
 * Synchronous fallback after fallocate(@p mode) failed with EOPNOTSUPP:
 * BLKDISCARD / BLKZEROOUT on a block device, PUNCH_HOLE instead of
 * ZERO_RANGE on a regular file. Returns a VBLK_S_* status.
 */
uint8_t file_range_fallback(struct file_be *fb, uint32_t type, const struct vblk_discard_wz_seg *r,
                            int mode);

/*
 * SECURE_ERASE of every range of @p req, synchronously: BLKSECDISCARD on a
 * block device that supports it, else zeros written over the range, then
 * fdatasync. Returns a VBLK_S_* status.
 */
uint8_t file_secure_erase(struct file_be *fb, const struct vblk_req *req);

/* Zoned block device passthrough (file_zoned_dev.c). */
struct stat;
bool file_is_zoned_dev(int fd);
/* Reopens with O_DIRECT, reads the zones and installs the methods. */
int file_zoned_dev_setup(struct file_be *fb, const char *path, const struct stat *st,
                         bool read_only);
void file_zoned_dev_free(struct file_be *fb);

/* Maps a negative errno from an I/O call to a VBLK_S_* status. */
static inline uint8_t be_errno_status(int err)
{
    return (err == -EOPNOTSUPP || err == -ENOTSUP) ? VBLK_S_UNSUPP : VBLK_S_IOERR;
}

#if VBLK_HAVE_URING
/*
 * Checks that io_uring can be set up with @p depth entries. Returns 0 or a
 * negative errno.
 */
int file_uring_probe(unsigned depth);

/* Installs the io_uring methods into fb->ops. */
void file_uring_setup(struct file_be *fb);
#endif

#endif
