/* SPDX-License-Identifier: MIT */
/**
 * @file rbd.h
 * @brief The Ceph RBD backend: a virtio-blk disk stored in an RBD image,
 *        through librbd.
 *
 * Built when librbd and librados are found (CMake option @c VBLK_RBD);
 * programs can test for @c VBLK_HAVE_RBD. Link with the library as usual:
 * libvirtioblk then depends on librbd and librados.
 *
 * ## Behaviour
 * - One cluster connection and one image handle serve every queue (the
 *   image's exclusive lock is taken once). Requests are started with the
 *   librbd @c rbd_aio_* calls on the queue thread, which never waits for
 *   the cluster; librbd's threads deliver the completions, which are handed
 *   to the queue thread through a per-queue event fd (the backend's
 *   @c queue_fd), where the requests complete.
 * - IN / OUT use @c rbd_aio_readv / @c rbd_aio_writev straight on the
 *   request's buffers. A request with more buffers than librbd accepts in
 *   one call (IOV_MAX) goes through a bounce buffer, counted in
 *   vblk_rbd_stats::bounced.
 * - FLUSH is @c rbd_aio_flush. It is offered only when the cache mode can
 *   hold dirty data (#VBLK_RBD_CACHE_DEFAULT, #VBLK_RBD_CACHE_WRITEBACK);
 *   in write-through mode (virtio CONFIG_WCE) a write is followed by a
 *   flush before it completes.
 * - DISCARD is @c rbd_aio_discard with partial-object discards enabled
 *   (@c rbd_skip_partial_discard off), so a discarded range reads back as
 *   zeros; WRITE_ZEROES is @c rbd_aio_write_zeroes. Ranges of one request
 *   are done one after the other.
 * - A request the cluster does not answer within the I/O timeout
 *   (@c rados_osd_op_timeout) fails with VIRTIO_BLK_S_IOERR; shorter
 *   outages (an OSD restarting) only delay it, librbd resends.
 * - The capacity is the image's size (rounded down to 512 bytes), read at
 *   open time.
 * - vblk_backend_resize() grows or shrinks the image with @c rbd_resize2
 *   (not for a snapshot or a read-only image: -EROFS). A shrink first
 *   refuses requests past the new end (VIRTIO_BLK_S_IOERR, nothing reaches
 *   librbd), waits up to 5 s for the requests already started that were
 *   checked against the old size, then cuts the image. A size the image
 *   already has (an administrator ran @c rbd @c resize) is adopted without
 *   changing the image; vblk_backend_rbd_image_size() reads it. -ETIME:
 *   the cluster did not answer within the I/O timeout, and the size did
 *   not change. The capacity changes only through vblk_backend_resize():
 *   to follow resizes made elsewhere, watch vblk_backend_rbd_update_fd().
 */
#ifndef VIRTIOBLK_RBD_H
#define VIRTIOBLK_RBD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @name RBD cache modes (vblk_rbd_opts::cache) */
/**@{*/
/** Whatever the Ceph configuration says (librbd's default: a write-back
 *  cache that stays write-through until the first flush). FLUSH offered. */
#define VBLK_RBD_CACHE_DEFAULT 0
/** librbd cache in write-back mode (@c rbd_cache_policy=writeback). FLUSH offered. */
#define VBLK_RBD_CACHE_WRITEBACK 1
/** librbd cache for reads only: writes complete once the OSDs have them.
 *  FLUSH not offered (the disk is write-through). */
#define VBLK_RBD_CACHE_WRITETHROUGH 2
/** No librbd cache (@c rbd_cache=false). FLUSH not offered. */
#define VBLK_RBD_CACHE_NONE 3
/**@}*/

/** Connection timeout used when vblk_rbd_opts::connect_timeout_s is 0. */
#define VBLK_RBD_DEFAULT_CONNECT_TIMEOUT 10u
/** I/O timeout used when vblk_rbd_opts::io_timeout_s is 0. */
#define VBLK_RBD_DEFAULT_IO_TIMEOUT 30u
/** Largest timeout accepted, in seconds. */
#define VBLK_RBD_MAX_TIMEOUT 86400u

/**
 * Options for vblk_backend_rbd_open(). Zero-initialise, then set at least
 * @c pool and @c image. The strings are only read during the call.
 */
struct vblk_rbd_opts {
    /** Pool name (required). */
    const char *pool;
    /** RADOS namespace inside the pool, or NULL / "" for the default one. */
    const char *pool_namespace;
    /** Image name (required). */
    const char *image;
    /** Snapshot to serve, or NULL for the image itself. A snapshot is
     *  always read-only. */
    const char *snapshot;
    /** Serve the image read-only. */
    bool read_only;
    /** ceph.conf to read, or NULL for Ceph's search path ($CEPH_CONF,
     *  /etc/ceph/ceph.conf, ...). $CEPH_ARGS is applied in both cases. */
    const char *conf_path;
    /** Client id without the "client." prefix, or NULL for "admin". */
    const char *client_id;
    /** Keyring file, or NULL for the one the configuration names. */
    const char *keyring;
    /** Seconds to reach the monitors and authenticate (@c
     *  client_mount_timeout, @c rados_mon_op_timeout); 0:
     *  #VBLK_RBD_DEFAULT_CONNECT_TIMEOUT. */
    unsigned connect_timeout_s;
    /** Seconds after which an operation the OSDs have not answered fails
     *  (@c rados_osd_op_timeout); 0: #VBLK_RBD_DEFAULT_IO_TIMEOUT. Opening
     *  the image is bounded by both timeouts together. */
    unsigned io_timeout_s;
    /** Cache mode: VBLK_RBD_CACHE_*. */
    int cache;
};

/** Counters of an RBD backend (vblk_backend_rbd_stats()). */
struct vblk_rbd_stats {
    uint64_t reads;        /**< IN requests started. */
    uint64_t writes;       /**< OUT requests started. */
    uint64_t flushes;      /**< FLUSH requests started. */
    uint64_t discards;     /**< DISCARD requests started. */
    uint64_t write_zeroes; /**< WRITE_ZEROES requests started. */
    uint64_t fua_flushes;  /**< Flushes issued after write-through writes. */
    uint64_t errors;       /**< Requests that failed. */
    uint64_t timeouts;     /**< Of those, failed because the I/O timeout expired. */
    uint64_t bounced;      /**< Requests copied through a bounce buffer. */
    uint64_t bounce_bytes; /**< Bytes copied through bounce buffers. */
};

/**
 * Parses an image spec @c POOL/IMAGE, @c POOL/NAMESPACE/IMAGE, either
 * followed by @c \@SNAPSHOT (the syntax of the @c rbd tool, which also
 * accepts a bare @c IMAGE for the pool "rbd"). The names are copied into
 * @p buf (@p buflen bytes, at least strlen(@p spec) + 4) and @p opts'
 * pool, pool_namespace (NULL when absent), image and snapshot (NULL when
 * absent) point into it; other fields are left alone. Returns 0,
 * -EINVAL for a malformed spec (empty name, too many '/', '@' twice) or
 * -ENAMETOOLONG if @p buf is too small.
 */
int vblk_rbd_parse_spec(const char *spec, char *buf, size_t buflen, struct vblk_rbd_opts *opts);

/**
 * Connects to the cluster, opens the image and fills @p out. Bounded in
 * time by the connect and I/O timeouts. On failure returns a negative
 * errno and, if @p err is not NULL, writes one line (no newline) saying
 * what is wrong into @p err (@p errlen bytes): "pool 'x' does not exist",
 * "no answer from the Ceph monitors ... within 10 s", ...
 */
int vblk_backend_rbd_open(const struct vblk_rbd_opts *opts, struct vblk_backend *out, char *err,
                          size_t errlen);

/**
 * Copies the counters of @p be, which must come from
 * vblk_backend_rbd_open(), into @p st. Safe while queues run (each counter
 * is read atomically). Returns 0 or -EINVAL for another kind of backend.
 */
int vblk_backend_rbd_stats(const struct vblk_backend *be, struct vblk_rbd_stats *st);

/**
 * Reads the size the image has now in the cluster (rounded down to 512
 * bytes) into @p size: librbd re-reads the image's header when it changed,
 * so a resize made with the @c rbd tool shows here. @p be must come from
 * vblk_backend_rbd_open(). Bounded by the I/O timeout. Returns 0, -EINVAL
 * for another kind of backend, or librbd's negative errno.
 */
int vblk_backend_rbd_image_size(const struct vblk_backend *be, uint64_t *size);

/**
 * A file descriptor that becomes readable when the image's header changes
 * in the cluster: a resize (by anyone, this backend included), a snapshot,
 * a feature change. Read 8 bytes from it to consume the event, then compare
 * vblk_backend_rbd_image_size() with the capacity and call
 * vblk_backend_resize() (and tell the device) to follow a resize made with
 * the @c rbd tool. It comes from librbd's update watch (@c
 * rbd_update_watch, on the watch librbd keeps on the image anyway: no
 * extra traffic), set up on the first call; the backend owns the
 * descriptor and closes it when destroyed. @p be must come from
 * vblk_backend_rbd_open(). Returns the descriptor, -EINVAL for another
 * kind of backend, -ENOTSUP for a snapshot or an image opened read-only
 * (librbd does not watch those: a read-only handle keeps the size it was
 * opened with), or a negative errno.
 */
int vblk_backend_rbd_update_fd(const struct vblk_backend *be);

#ifdef __cplusplus
}
#endif
#endif
