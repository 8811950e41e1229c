/* SPDX-License-Identifier: MIT */
/**
 * @file nbd.h
 * @brief The NBD backend: a disk served by a Network Block Device server
 *        (nbdkit, qemu-nbd, qemu-storage-daemon, nbd-server), over libnbd.
 *
 * Built when libnbd is found at configure time (CMake option VBLK_NBD);
 * then VBLK_HAVE_NBD is 1 for programs and this header is installed.
 *
 * ## Connections
 * vblk_backend_nbd_open() connects once, synchronously and within the
 * connect timeout, to learn the export's size and what it supports. When
 * the server advertises multi-conn, each queue gets its own connection
 * (the first queue to start takes the one made at open); otherwise all
 * queues share one connection, and a request of one queue may be finished
 * by another queue's thread, which hands it back with
 * vblk_req_complete_async().
 *
 * ## Requests
 * Everything is asynchronous: the backend's queue_fd() is an epoll fd that
 * holds the connection's socket and a timer, and poll() moves the
 * connection on. IN and OUT become NBD reads and writes, split at the
 * server's maximum block size (32 MiB when it advertises none);
 * scattered guest buffers go through one bounce buffer per request. FLUSH
 * is NBD_CMD_FLUSH, DISCARD is NBD_CMD_TRIM, WRITE_ZEROES is
 * NBD_CMD_WRITE_ZEROES (with NO_HOLE unless the driver set the UNMAP
 * flag). A write in write-through mode carries FUA, or is followed by a
 * flush when the server has flush but no FUA. The device offers FLUSH,
 * DISCARD and WRITE_ZEROES only when the server does; a read-only export
 * (or @ref vblk_nbd_opts::read_only) makes a read-only disk.
 *
 * ## Faults
 * A request completes with VBLK_S_OK only after the server acknowledged
 * it. Server errors become VBLK_S_IOERR (VBLK_S_UNSUPP for EOPNOTSUPP).
 * When a connection breaks (the server closes it, the socket fails, or a
 * request has waited longer than the request timeout), every request in
 * flight on it completes with VBLK_S_IOERR at once; while it is down, new
 * requests fail with VBLK_S_IOERR without waiting; it reconnects with
 * exponential back-off, and I/O resumes on the new connection. An export
 * that comes back with another size or read-only is not used (the attempt
 * counts as failed).
 *
 * ## Resize
 * The NBD protocol has no standard way for a client to resize an export
 * (the RESIZE extension is experimental, and nbdkit does not implement
 * it), so vblk_backend_resize() does not change the export: it adopts a
 * size its administrator gave it on the server. It connects anew (within
 * the connect timeout) and reads the export's size; unless that, rounded
 * down to 512 bytes, is the size asked for, it returns -ERANGE and changes
 * nothing (vblk_backend_nbd_server_size() tells the size the server
 * reports); -ETIME or another negative errno when the server could not be
 * reached (nothing changes either). Otherwise every connection is replaced by one that knows the
 * new size: new requests wait while the old connection's requests finish
 * (bounded by the request timeout), then go to the new connection
 * (bounded by the connect timeout; a failure is a broken connection, and
 * the requests fail with VBLK_S_IOERR). A shrink refuses requests past the
 * new end at once (VBLK_S_IOERR, never sent) and waits up to 5 s for the
 * requests in flight that were checked against the old size.
 */
#ifndef VIRTIOBLK_NBD_H
#define VIRTIOBLK_NBD_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Options for vblk_backend_nbd_open(). Zero means "default". */
struct vblk_nbd_opts {
    /**
     * The export, if the @c uri argument of vblk_backend_nbd_open() is
     * NULL: `nbd://HOST[:PORT]/EXPORT` (TCP, port 10809 by default) or
     * `nbd+unix:///EXPORT?socket=PATH`. The export name is the path
     * without its first '/', percent-decoded; an empty one selects the
     * server's default export.
     */
    const char *uri;
    /**
     * Longest time for one connection attempt (TCP connect and NBD
     * handshake), in milliseconds (default 5000).
     */
    uint32_t connect_timeout_ms;
    /**
     * Longest time a request may wait for the server's reply, in
     * milliseconds (default 30000). When one waits longer, the connection
     * is considered broken: every request on it fails with VBLK_S_IOERR
     * and the backend reconnects.
     */
    uint32_t request_timeout_ms;
    /** First delay before reconnecting, in milliseconds (default 100). */
    uint32_t reconnect_min_ms;
    /**
     * Longest delay between reconnection attempts, in milliseconds
     * (default 5000); the delay doubles after each failed attempt.
     */
    uint32_t reconnect_max_ms;
    /**
     * Share one connection between all queues even when the server
     * advertises multi-conn (default: one connection per queue then).
     */
    bool one_connection;
    /** Never write: the disk is read-only even if the export is not. */
    bool read_only;
    /**
     * Optional log sink (transport.h); NULL: silent. VBLK_LOG_ERR: open
     * failed, a connection broke; VBLK_LOG_WARN: the first failed attempt
     * to reconnect; VBLK_LOG_INFO: connected, reconnected; VBLK_LOG_DEBUG:
     * every attempt. Called on the opening thread or a queue thread, never
     * once per request.
     */
    vblk_log_fn log;
    /** Argument of @ref log. */
    void *log_opaque;
};

/**
 * Opens the NBD export @p uri (or @p opts->uri when @p uri is NULL) with
 * options @p opts (may be NULL). Connects within the connect timeout and
 * fills @p out; the capacity is the export's size rounded down to 512
 * bytes. On failure, one line saying why goes to the log sink and a
 * negative errno is returned: -EINVAL for a malformed URI or option,
 * -ECONNREFUSED / -ENOENT when nothing listens, -ETIMEDOUT when the server
 * did not answer in time, -ENOENT (or the server's error) for an unknown
 * export, -EMEDIUMTYPE for an export smaller than 512 bytes.
 */
int vblk_backend_nbd_open(const char *uri, const struct vblk_nbd_opts *opts,
                          struct vblk_backend *out);

/** Counters of an NBD backend, for vblk_backend_nbd_stats(). */
struct vblk_nbd_stats {
    uint64_t connects;    /**< Successful connections, the first included. */
    uint64_t failures;    /**< Connection attempts that failed. */
    uint64_t disconnects; /**< Connections that broke while in use. */
    uint64_t timeouts;    /**< Of those, broken by the request timeout. */
    uint64_t failed_fast; /**< Requests failed because no connection was up. */
    uint64_t bounced;     /**< Requests that went through a bounce buffer. */
    uint16_t connections; /**< Connections open now. */
    bool multi_conn;      /**< One connection per queue (server has multi-conn). */
};

/**
 * Reads the counters of @p be, an NBD backend. Safe from any thread.
 * Returns 0, or -EINVAL if @p be is not an NBD backend.
 */
int vblk_backend_nbd_stats(const struct vblk_backend *be, struct vblk_nbd_stats *st);

/**
 * Connects to the server anew (within the connect timeout) and reads the
 * size in bytes the export of @p be, an NBD backend, has now into
 * @p size: after the server's administrator resized it, the size a
 * vblk_backend_resize() would adopt (rounded down to 512 bytes). Returns
 * 0, -EINVAL if @p be is not an NBD backend, or the negative errno of the
 * failed connection (which also goes to the log sink).
 */
int vblk_backend_nbd_server_size(const struct vblk_backend *be, uint64_t *size);

#ifdef __cplusplus
}
#endif
#endif
