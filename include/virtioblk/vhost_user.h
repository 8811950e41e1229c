/* SPDX-License-Identifier: MIT */
/**
 * @file vhost_user.h
 * @brief The vhost-user-blk transport: the back-end side of the vhost-user
 *        protocol, and a ready-made server.
 *
 * A vhost-user front-end (QEMU's `vhost-user-blk-pci`, a VMM, libvirt)
 * shares guest memory and the virtqueues with this process over a Unix
 * socket. The adapter only moves messages and notifications: memory regions
 * become a vblk_mem keyed by guest-physical address, ring addresses (front-end
 * user addresses) are translated to guest-physical addresses, and each ring
 * is driven by the core (vblk_queue_init(), vblk_queue_on_kick(),
 * vblk_queue_get_state()).
 *
 * Two ways to run it:
 *
 *  - **vblk_vu_server**: the library listens on a socket path, accepts one
 *    front-end at a time, handles its messages on the thread that calls
 *    vblk_vu_server_run(), and runs the queues on worker threads it starts
 *    (one event loop per queue, or per group of queues).
 *  - **vblk_vu_dev inside your own event loop**: hand a connected socket to
 *    vblk_vu_dev_attach(), watch vblk_vu_dev_socket_fd() and call
 *    vblk_vu_dev_handle_socket() when it is readable; watch each
 *    vblk_vu_queue_fd() and call vblk_vu_queue_process() when it is
 *    readable. Every fd is non-blocking and level-triggered. The queue fds
 *    never change while the device exists, so they can be registered once.
 *    Message handling and queue processing may run on different threads:
 *    each queue has a lock, held while it is processed and while the
 *    message handler reconfigures it.
 *
 * Busy polling (vblk_vu_queue_set_polling()): queues ask the driver not to kick and
 * vblk_vu_queue_process() makes no system call unless a completion must be
 * signalled to the guest. Call it in a loop while vblk_vu_queue_active().
 *
 * Everything the front-end sends is untrusted: every message is validated
 * (sizes, fd counts, indices, address ranges) before it is acted on, and a
 * malformed message gets an error reply (REPLY_ACK) or ends the connection;
 * the device is then ready for the next one.
 */
#ifndef VIRTIOBLK_VHOST_USER_H
#define VIRTIOBLK_VHOST_USER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "blk.h"
#include "transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @name vhost-user protocol feature bits the back-end offers */
/**@{*/
#define VBLK_VU_PROTOCOL_F_MQ                  0  /**< GET_QUEUE_NUM. */
#define VBLK_VU_PROTOCOL_F_LOG_SHMFD           1  /**< Dirty log in shared memory. */
#define VBLK_VU_PROTOCOL_F_REPLY_ACK           3  /**< need_reply flag honoured. */
#define VBLK_VU_PROTOCOL_F_CONFIG              9  /**< GET_CONFIG / SET_CONFIG. */
#define VBLK_VU_PROTOCOL_F_INFLIGHT_SHMFD      12 /**< In-flight I/O tracking. */
#define VBLK_VU_PROTOCOL_F_RESET_DEVICE        13 /**< RESET_DEVICE. */
#define VBLK_VU_PROTOCOL_F_CONFIGURE_MEM_SLOTS 15 /**< ADD_MEM_REG / REM_MEM_REG. */
#define VBLK_VU_PROTOCOL_F_STATUS              16 /**< SET_STATUS / GET_STATUS. */
/**@}*/

/** @name vhost feature bits (besides the virtio ones) */
/**@{*/
#define VBLK_VU_F_LOG_ALL           26 /**< Log all writes to guest memory (migration). */
#define VBLK_VU_F_PROTOCOL_FEATURES 30 /**< Protocol features can be negotiated. */
/**@}*/

/** Bytes of a message header (request, flags, size). */
#define VBLK_VU_HDR_SIZE 12u
/** Largest payload the back-end accepts (GET_CONFIG with 256 bytes). */
#define VBLK_VU_MAX_PAYLOAD 268u
/** Largest message: header plus payload. */
#define VBLK_VU_MAX_MSG (VBLK_VU_HDR_SIZE + VBLK_VU_MAX_PAYLOAD)
/** Most file descriptors one message carries. */
#define VBLK_VU_MAX_FDS 8u
/** Memory slots reported by GET_MAX_MEM_SLOTS. */
#define VBLK_VU_MAX_MEM_SLOTS 64u

/** Device options. Zero-initialise, then set what you need. */
struct vblk_vu_opts {
    /** How queue threads wait for work (used by vblk_vu_server_run(); an
     *  application driving the queues itself decides with
     *  vblk_vu_queue_set_polling()). */
    enum vblk_notify_mode notify;
    /** Adaptive mode: the longest a queue thread polls after the last
     *  request it found, in microseconds. 0: 128. */
    uint32_t poll_max_us;
    /** Interrupt coalescing: signal the driver at most once per this many
     *  completions... (0 or 1: every time the ring asks for it). */
    uint32_t coalesce_count;
    /** ...or once this many microseconds after the first completion not yet
     *  signalled, whichever comes first. 0: no time bound (then
     *  @ref coalesce_count is ignored: a burst's last completion is never
     *  held back without a bound). */
    uint32_t coalesce_us;
    /** Protocol feature bits never to offer (tests, compatibility). */
    uint64_t protocol_features_off;
    /** Optional log sink; NULL: silent. */
    vblk_log_fn log;
    /** Argument of @ref log. */
    void *log_opaque;
    /** Most verbose level passed to @ref log (VBLK_LOG_*). */
    int log_level;
};

/** A vhost-user-blk device: protocol state for one connection at a time. */
struct vblk_vu_dev;

/**
 * Creates a device with parameters @p p (see vblk_dev_params_default())
 * over backend @p be, which must outlive the device. @p opts may be NULL.
 * The number of queues offered is @c p->num_queues; the largest ring size
 * accepted is @c p->queue_size. Returns 0, -EINVAL for bad parameters or
 * -ENOMEM / another negative errno when a resource could not be created.
 *
 * The front-end's files (guest memory, dirty log, in-flight region) can stop
 * backing the device's mappings at any time, which raises SIGBUS. When the
 * device maps the first of them, the library installs a process-wide
 * SIGBUS handler that contains a fault in those mappings: the device breaks
 * (DEVICE_NEEDS_RESET, the connection ends) and the process goes on; any
 * other SIGBUS goes to the handler that was there before, or kills the
 * process as usual. Threads that process queues or handle messages must
 * not block SIGBUS, and a SIGBUS handler the application installs later
 * must pass on the faults it does not own to the previous handler.
 * docs/security.md ("Shared files") has the details.
 */
int vblk_vu_dev_create(const struct vblk_dev_params *p, const struct vblk_backend *be,
                       const struct vblk_vu_opts *opts, struct vblk_vu_dev **out);

/** Detaches the connection, if any, and frees the device. NULL is allowed. */
void vblk_vu_dev_destroy(struct vblk_vu_dev *d);

/**
 * Takes ownership of the connected socket @p sock (made non-blocking and
 * close-on-exec) and resets the protocol state for a new front-end.
 * Returns 0 or -EBUSY if a connection is already attached (@p sock is then
 * left alone).
 */
int vblk_vu_dev_attach(struct vblk_vu_dev *d, int sock);

/**
 * Ends the connection: stops every queue (waiting for the backend to finish
 * the requests in flight and completing them to the guest), unmaps guest
 * memory, closes every fd the front-end sent and the socket. The device is
 * ready for vblk_vu_dev_attach() again. Does nothing if none is attached.
 */
void vblk_vu_dev_detach(struct vblk_vu_dev *d);

/** True while a connection is attached. */
bool vblk_vu_dev_attached(const struct vblk_vu_dev *d);

/** The attached socket (watch it for readability), or -1. */
int vblk_vu_dev_socket_fd(const struct vblk_vu_dev *d);

/**
 * Reads whatever the socket has, handles every complete message and sends
 * the replies. Never blocks. Returns 0 while the connection goes on, or a
 * negative errno when it must end (-ECONNRESET: the front-end closed it;
 * -EPROTO: it broke the protocol, or its memory faulted under the device):
 * then call vblk_vu_dev_detach().
 */
int vblk_vu_dev_handle_socket(struct vblk_vu_dev *d);

/** Number of queues the device offers. */
uint16_t vblk_vu_dev_num_queues(const struct vblk_vu_dev *d);

/** The virtio-blk device model (features, config) behind @p d. */
struct vblk_dev *vblk_vu_dev_blk(struct vblk_vu_dev *d);

/**
 * A file descriptor that becomes readable when queue @p qidx has work (a
 * kick, an asynchronous completion, backend events, a reconfiguration).
 * Stable for the life of the device. Returns -1 for a bad index.
 */
int vblk_vu_queue_fd(struct vblk_vu_dev *d, uint16_t qidx);

/**
 * Does the pending work of queue @p qidx: consumes its events and runs the
 * ring until it is empty (vblk_queue_on_kick()). Call it when
 * vblk_vu_queue_fd() is readable, or in a loop when polling. Returns the
 * number of requests submitted, 0 if the queue is not running, or -EIO if
 * the driver broke the ring (the device then reports DEVICE_NEEDS_RESET), or
 * if the front-end's memory faulted during the run (the device also shuts
 * the socket down, so that the control loop detaches).
 */
int vblk_vu_queue_process(struct vblk_vu_dev *d, uint16_t qidx);

/**
 * True while queue @p qidx is started and enabled: a polling loop spins on
 * vblk_vu_queue_process() only then, and otherwise waits on
 * vblk_vu_queue_fd().
 */
bool vblk_vu_queue_active(struct vblk_vu_dev *d, uint16_t qidx);

/**
 * Switches queue @p qidx between polling (@p on: driver kicks suppressed;
 * the caller calls vblk_vu_queue_process() in a loop) and waiting for
 * kicks. Switching polling off re-enables kicks and checks the ring once
 * more, so that nothing published meanwhile is missed. Returns the number
 * of requests that check found (keep polling if it is not 0), or -EINVAL.
 */
int vblk_vu_queue_set_polling(struct vblk_vu_dev *d, uint16_t qidx, bool on);

/**
 * Copies the counters of queue @p qidx into @p st (summed over every time
 * the ring was started). Returns 0 or -EINVAL.
 */
int vblk_vu_queue_stats(struct vblk_vu_dev *d, uint16_t qidx,
                        struct vblk_transport_queue_stats *st);

/** Copies the device's counters into @p st. */
void vblk_vu_dev_stats(struct vblk_vu_dev *d, struct vblk_transport_stats *st);

/** Server options. */
struct vblk_vu_server_opts {
    /** Path of the Unix socket to listen on (created; removed on destroy). */
    const char *socket_path;
    /** Worker threads; queues are spread round-robin. 0: one per queue. */
    uint16_t threads;
    /** If >= 0, vblk_vu_server_run() returns once this fd is readable (e.g. a signalfd). */
    int stop_fd;
    /** Device options. */
    struct vblk_vu_opts dev;
};

/** A vhost-user-blk server: a listening socket, a device and its threads. */
struct vblk_vu_server;

/**
 * Creates the device and binds and listens on @c opts->socket_path. A
 * stale socket file (nothing listening) is replaced. Returns 0, or
 * -EADDRINUSE (a live server owns the path), -EEXIST (the path exists and
 * is not a socket), -ENAMETOOLONG, -EACCES, or another negative errno.
 */
int vblk_vu_server_create(const struct vblk_dev_params *p, const struct vblk_backend *be,
                          const struct vblk_vu_server_opts *opts, struct vblk_vu_server **out);

/**
 * Runs the server on the calling thread: starts the workers, accepts one
 * front-end at a time (one that connects while another is attached waits
 * up to a second for it to go, then is refused),
 * handles its messages and, when it disconnects, waits for the next one.
 * Returns 0 after vblk_vu_server_stop() or when the stop fd is readable,
 * having stopped every queue (in-flight requests finish first) and the
 * workers; or a negative errno on a fatal error.
 */
int vblk_vu_server_run(struct vblk_vu_server *s);

/** Asks vblk_vu_server_run() to return. Async-signal-safe. */
void vblk_vu_server_stop(struct vblk_vu_server *s);

/** Closes everything, removes the socket file and frees @p s. NULL is allowed. */
void vblk_vu_server_destroy(struct vblk_vu_server *s);

/**
 * The device the server drives: its counters (vblk_vu_dev_stats(),
 * vblk_vu_queue_stats(), with the worker thread of each queue) and its
 * device model (vblk_vu_dev_blk()).
 */
struct vblk_vu_dev *vblk_vu_server_dev(struct vblk_vu_server *s);

#ifdef __cplusplus
}
#endif
#endif
