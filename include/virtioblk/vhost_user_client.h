/* SPDX-License-Identifier: MIT */
/**
 * @file vhost_user_client.h
 * @brief A vhost-user-blk front-end: drive any vhost-user-blk back-end
 *        (this library's server, `qemu-storage-daemon`, SPDK, ...) from a
 *        process, without a virtual machine.
 *
 * The client plays the part of a VMM: it connects to the back-end's Unix
 * socket, negotiates virtio and protocol features, shares one memfd region
 * with it (the rings, and whatever the caller allocates with
 * vblk_vu_client_alloc(): request frames and data buffers), and sets up
 * split or packed rings whose driver side is a vblk_drv_vq (driver.h).
 * Requests are added with vblk_drv_blk_add() on vblk_vu_client_queue(),
 * published with vblk_vu_client_kick(), and reaped with
 * vblk_drv_vq_get_used(), either by busy-polling the used ring or after
 * vblk_vu_client_wait() reports a used-buffer notification.
 *
 * Guest-physical addresses: the shared region appears to the back-end at
 * guest-physical address @ref VBLK_VU_CLIENT_GPA_BASE, and the rings'
 * driver addresses are `host pointer + delta` (vblk_drv_vq_config::addr_delta),
 * so buffers from vblk_vu_client_alloc() can be passed to the driver-side
 * functions as plain pointers.
 *
 * The back-end is not trusted: every reply is checked (header, request
 * code, payload size, no unexpected file descriptors), every socket read
 * has a time limit, and what the back-end writes into the rings is checked
 * by the driver side. A malformed reply gives -EPROTO, a back-end that
 * closed the connection -ECONNRESET (or -EPIPE when sending), one that does
 * not answer -ETIMEDOUT; after any of these the connection is unusable and
 * every further control call fails with the same error.
 *
 * Threads: the control calls (connect, config, close) must not run
 * concurrently with each other. Each queue may be driven by its own thread
 * (vblk_vu_client_queue(), vblk_vu_client_kick(), vblk_vu_client_wait() on
 * that queue only). vblk_vu_client_alloc() is not thread-safe: allocate
 * before starting the queue threads.
 */
#ifndef VIRTIOBLK_VHOST_USER_CLIENT_H
#define VIRTIOBLK_VHOST_USER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "driver.h"
#include "spec.h"
#include "vhost_user.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Guest-physical address at which the back-end sees the shared region. */
#define VBLK_VU_CLIENT_GPA_BASE 0x100000000ull

/** Client options. Zero-initialise, then set what you need. */
struct vblk_vu_client_opts {
    /** Queues to set up (default 1). More than one needs a back-end that
     *  offers them (GET_QUEUE_NUM, or num_queues in the config space). */
    uint16_t queues;
    /** Entries per ring (default 256); a power of two for split rings. */
    uint16_t queue_size;
    /** Use packed rings: connect fails with -ENOTSUP if the back-end does
     *  not offer VIRTIO_F_RING_PACKED. */
    bool packed;
    /** Negotiate VIRTIO_F_EVENT_IDX if the back-end offers it. */
    bool event_idx;
    /** Negotiate VIRTIO_F_INDIRECT_DESC if the back-end offers it, and
     *  give every ring slot an indirect table of @ref indirect_max entries. */
    bool indirect;
    /** Entries of each indirect table (default 16). */
    uint16_t indirect_max;
    /** Bytes of shared memory, rings included (default 64 MiB). */
    size_t mem_size;
    /** Longest wait for each reply from the back-end, in ms (default 5000). */
    int timeout_ms;
    /** virtio feature bits never to accept (tests, comparisons). */
    uint64_t features_off;
    /** vhost-user protocol feature bits never to accept. */
    uint64_t protocol_features_off;
    /** Optional log sink (VBLK_LOG_* levels); NULL: silent. */
    vblk_log_fn log;
    /** Argument of @ref log. */
    void *log_opaque;
    /** Most verbose level passed to @ref log. */
    int log_level;
    /** Optional buffer that receives a one-line reason when connecting fails. */
    char *errbuf;
    /** Bytes of @ref errbuf. */
    size_t errbuf_len;
};

/** A connection to a vhost-user-blk back-end with its rings and memory. */
struct vblk_vu_client;

/**
 * Connects to the back-end listening on the Unix socket @p path and sets up
 * the device: owner, features, protocol features (MQ, REPLY_ACK, CONFIG
 * when offered), the config space, the shared memory table, and every ring
 * (size, base, addresses, call and kick eventfds, enabled). @p opts may be
 * NULL. Returns 0, or -ENOENT / -ECONNREFUSED (nobody listens), -ENOTSUP
 * (the back-end lacks VIRTIO_F_VERSION_1, packed rings or enough queues),
 * -EINVAL (bad options), -ENOMEM, -EPROTO, -ECONNRESET, -EPIPE, -ETIMEDOUT,
 * or -EIO (the back-end refused a request).
 */
int vblk_vu_client_connect(const char *path, const struct vblk_vu_client_opts *opts,
                           struct vblk_vu_client **out);

/**
 * Like vblk_vu_client_connect() over an already connected stream socket
 * @p sock, which the client owns from now on (closed on failure too).
 */
int vblk_vu_client_connect_fd(int sock, const struct vblk_vu_client_opts *opts,
                              struct vblk_vu_client **out);

/**
 * Stops every ring (GET_VRING_BASE, unless the connection already broke),
 * closes the socket and every eventfd, and unmaps the shared memory.
 * NULL is allowed.
 */
void vblk_vu_client_close(struct vblk_vu_client *c);

/** Number of queues set up. */
uint16_t vblk_vu_client_num_queues(const struct vblk_vu_client *c);

/** Entries per ring. */
uint16_t vblk_vu_client_queue_size(const struct vblk_vu_client *c);

/** The driver side of queue @p q, or NULL for a bad index. */
struct vblk_drv_vq *vblk_vu_client_queue(struct vblk_vu_client *c, uint16_t q);

/**
 * Allocates @p len bytes of shared memory (64-byte aligned; 4096-byte
 * aligned for 4096 bytes and more), zero-filled. Returns NULL when the
 * region is exhausted. Memory lives until vblk_vu_client_close().
 */
void *vblk_vu_client_alloc(struct vblk_vu_client *c, size_t len);

/**
 * Publishes the buffers added on queue @p q and, if the back-end asked for
 * it (vblk_drv_vq_kick_prepare()), writes its kick eventfd. Returns 1 if it
 * kicked, 0 if no kick was needed, -EINVAL for a bad index.
 */
int vblk_vu_client_kick(struct vblk_vu_client *c, uint16_t q);

/**
 * Waits up to @p timeout_ms (-1: forever) for a used buffer on queue @p q:
 * asks the back-end for notifications, waits on the queue's call eventfd,
 * and turns notifications off again. Returns 1 when used buffers are
 * pending, 0 on timeout, -ECONNRESET if the back-end closed the connection,
 * -EINVAL for a bad index.
 */
int vblk_vu_client_wait(struct vblk_vu_client *c, uint16_t q, int timeout_ms);

/** The call eventfd of queue @p q (for the caller's own event loop), or -1. */
int vblk_vu_client_call_fd(const struct vblk_vu_client *c, uint16_t q);

/**
 * Reads the virtio-blk config space from the back-end (GET_CONFIG) into
 * @p cfg. Fields past what the back-end returned read as 0. Returns 0,
 * -ENOTSUP if the back-end does not offer VHOST_USER_PROTOCOL_F_CONFIG,
 * -EIO if it refused, or a connection error.
 */
int vblk_vu_client_config(struct vblk_vu_client *c, struct vblk_config *cfg);

/** The virtio feature bits accepted (VBLK_BIT(VBLK_F_*)). */
uint64_t vblk_vu_client_features(const struct vblk_vu_client *c);

/** The vhost-user protocol feature bits accepted (VBLK_VU_PROTOCOL_F_*). */
uint64_t vblk_vu_client_protocol_features(const struct vblk_vu_client *c);

/** The last error, as one line of text ("" if none). */
const char *vblk_vu_client_error(const struct vblk_vu_client *c);

#ifdef __cplusplus
}
#endif
#endif
