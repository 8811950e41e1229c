/* SPDX-License-Identifier: MIT */
/**
 * @file vduse.h
 * @brief VDUSE transport: the virtio-blk device as a Linux vDPA device.
 *
 * VDUSE (vDPA Device in Userspace, Linux 5.15+) lets a process implement a
 * virtio device that the kernel puts on its vDPA bus. From there it is
 * bound either to `virtio_vdpa`, which makes it an ordinary /dev/vdX for
 * the host (containers, host applications), or to `vhost_vdpa`, which hands
 * it to a virtual machine (QEMU's vhost-vdpa devices).
 *
 * The adapter creates the device through /dev/vduse/control with the
 * virtio-blk config space and features of a vblk_dev, then serves
 * /dev/vduse/NAME:
 *  - the kernel's requests (read(2) / write(2)): device status changes,
 *    queue position queries and IOTLB invalidations;
 *  - driver kicks through one eventfd per queue (VDUSE_VQ_SETUP_KICKFD) and
 *    used-buffer notifications with VDUSE_VQ_INJECT_IRQ, at most one per
 *    batch;
 *  - memory: ring and buffer addresses are IOVAs. The adapter maps an IOVA
 *    range into the process the first time the rings or a request touch it
 *    (VDUSE_IOTLB_GET_FD + mmap), and drops the mapping when the kernel
 *    invalidates it. An IOVA the kernel does not map fails that request
 *    with VIRTIO_BLK_S_IOERR (or, for a ring, stops the queue).
 *
 * After vblk_vduse_create() the device exists but no driver sees it until
 * it is added to the vDPA bus: `vdpa dev add name NAME mgmtdev vduse`.
 * `vdpa dev del NAME` removes it again.
 *
 * ## Threading
 * One thread runs the device: every function here except vblk_vduse_stop()
 * must be called on it. All queues are served from that thread's event
 * loop (vblk_vduse_run() or vblk_vduse_poll()). A backend may complete
 * requests from other threads with vblk_req_complete_async().
 */
#ifndef VIRTIOBLK_VDUSE_H
#define VIRTIOBLK_VDUSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "blk.h"
#include "transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Bytes of one kernel request and of one response (the VDUSE ABI). */
#define VBLK_VDUSE_MSG_SIZE 152u

/** Longest device name, in bytes, without the terminating NUL. */
#define VBLK_VDUSE_NAME_MAX 255u

/** A VDUSE virtio-blk device. */
struct vblk_vduse;

/** Options for vblk_vduse_create(). */
struct vblk_vduse_opts {
    /** Device name: /dev/vduse/NAME and the vDPA device name. Required. */
    const char *name;
    /**
     * vblk_vduse_run() returns once the vDPA device has been added and then
     * deleted again (`vdpa dev del NAME`), so that the program can exit.
     */
    bool exit_on_detach;
    /**
     * If a VDUSE device with this name exists but is stale (nobody serves
     * it and it is not on the vDPA bus, e.g. its process was killed),
     * destroy it and create the new one. A device in use is never touched.
     */
    bool reclaim;
    /** Optional log sink (queue errors, resets, detach); NULL: silent. */
    vblk_log_fn log;
    /** Argument of @ref log. */
    void *log_opaque;
    /** Most verbose level passed to @ref log (VBLK_LOG_*). */
    int log_level;
};

/**
 * Creates the VDUSE device @p opts->name for a virtio-blk device with
 * parameters @p params over backend @p be (which the caller keeps and
 * destroys after vblk_vduse_destroy()). The device offers the features of
 * vblk_dev_features() plus VIRTIO_F_ACCESS_PLATFORM, which VDUSE requires,
 * minus VIRTIO_BLK_F_CONFIG_WCE, which VDUSE refuses (its config space is
 * read-only to the driver). It has params->num_queues queues of up to
 * params->queue_size entries.
 *
 * Returns 0 or a negative errno; the ones worth telling apart:
 *  - -ENOENT: /dev/vduse/control does not exist (module `vduse` not loaded);
 *  - -EACCES or -EPERM: no permission to use /dev/vduse/control;
 *  - -EEXIST: a VDUSE device with this name already exists (and is in use,
 *    with vblk_vduse_opts::reclaim);
 *  - -EINVAL: bad name or parameters, or the kernel refused the device;
 *  - -EPROTONOSUPPORT: the kernel does not speak VDUSE API version 0.
 *
 * Pages of an IOTLB mapping can fault (a device deleted under I/O, a bounce
 * page the kernel never backed). The first mapping installs a process-wide
 * SIGBUS handler that contains such a fault: the device stops serving its
 * queues until the driver resets it, counted in
 * vblk_transport_stats::mapping_faults. The thread that runs the device must
 * not block SIGBUS; see vblk_vu_dev_create() and docs/security.md.
 */
int vblk_vduse_create(const struct vblk_dev_params *params, const struct vblk_backend *be,
                      const struct vblk_vduse_opts *opts, struct vblk_vduse **out);

/**
 * Stops the queues, closes the device and destroys the VDUSE device, then
 * frees @p v. NULL is allowed. If the vDPA device still exists, the kernel
 * keeps the VDUSE device until `vdpa dev del NAME` removes it (a warning
 * is logged); the name can be used again once it is gone, or at once with
 * vblk_vduse_opts::reclaim.
 */
void vblk_vduse_destroy(struct vblk_vduse *v);

/**
 * Handles events until vblk_vduse_stop() is called or, with
 * vblk_vduse_opts::exit_on_detach, the vDPA device is deleted. Returns 0,
 * or a negative errno if the device failed (e.g. -EIO when the kernel
 * marked it broken).
 */
int vblk_vduse_run(struct vblk_vduse *v);

/**
 * One round of the event loop: waits up to @p timeout_ms (-1: no limit)
 * for events and handles them all. Returns 0, -EINTR if a signal
 * interrupted the wait, or a negative errno if the device failed.
 *
 * To react to signals without a race, block them, and wait for
 * vblk_vduse_fd() with ppoll() and the unblocked mask yourself; then call
 * this with timeout 0.
 */
int vblk_vduse_poll(struct vblk_vduse *v, int timeout_ms);

/**
 * Makes vblk_vduse_run() return soon. Safe from any thread and from a
 * signal handler.
 */
void vblk_vduse_stop(struct vblk_vduse *v);

/**
 * A file descriptor that is readable when vblk_vduse_poll() has work, for
 * an application's own poll loop (call vblk_vduse_poll() with timeout 0).
 */
int vblk_vduse_fd(const struct vblk_vduse *v);

/** True once a driver has set the device up through the vDPA bus. */
bool vblk_vduse_attached(const struct vblk_vduse *v);

/**
 * True once the vDPA device was deleted after having been attached (only
 * tracked with vblk_vduse_opts::exit_on_detach).
 */
bool vblk_vduse_detached(const struct vblk_vduse *v);

/** The virtio-blk device model, e.g. for vblk_dev_set_capacity(). */
struct vblk_dev *vblk_vduse_blk(struct vblk_vduse *v);

/** Queue @p index while the driver runs it, else NULL. */
struct vblk_queue *vblk_vduse_queue(struct vblk_vduse *v, uint16_t index);

/** Number of queues the device was created with. */
uint16_t vblk_vduse_num_queues(const struct vblk_vduse *v);

/**
 * Copies the device's counters to @p st. memory_updates counts IOTLB
 * invalidations, memory_maps / memory_unmaps the IOVA ranges mapped and
 * unmapped, memory_faults the IOVAs the kernel could not translate.
 */
void vblk_vduse_stats(const struct vblk_vduse *v, struct vblk_transport_stats *st);

/**
 * Copies the counters of queue @p index to @p st (summed over every time
 * the driver started it). Returns 0 or -EINVAL.
 */
int vblk_vduse_queue_stats(const struct vblk_vduse *v, uint16_t index,
                           struct vblk_transport_queue_stats *st);

/**
 * Publishes the device's current config space to the kernel and raises a
 * config-change interrupt, after a change such as vblk_dev_set_capacity().
 * Returns 0 or a negative errno.
 */
int vblk_vduse_update_config(struct vblk_vduse *v);

#ifdef __cplusplus
}
#endif
#endif
