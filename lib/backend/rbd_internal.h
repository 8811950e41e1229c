/* SPDX-License-Identifier: MIT */
/*
 * Private declarations of the RBD backend (rbd.c: open and close, rbd_io.c:
 * the datapath, rbd_util.c: spec parsing, messages and status mapping).
 * Nothing here is part of the public API.
 */
#ifndef VBLK_RBD_INTERNAL_H
#define VBLK_RBD_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

#include "backend/backend_internal.h"
#include "virtioblk/backend.h"
#include "virtioblk/rbd.h"

/* Where vblk_backend_rbd_open() failed; selects the message. */
enum rbd_stage {
    RBD_STAGE_OPTIONS,  /* the options themselves */
    RBD_STAGE_CREATE,   /* rados_create2 */
    RBD_STAGE_CONF,     /* reading ceph.conf */
    RBD_STAGE_KEYRING,  /* the keyring file */
    RBD_STAGE_CONNECT,  /* rados_connect: monitors, authentication */
    RBD_STAGE_POOL,     /* rados_ioctx_create */
    RBD_STAGE_NS,       /* the namespace */
    RBD_STAGE_IMAGE,    /* rbd_open */
    RBD_STAGE_SNAPSHOT, /* the image exists, its snapshot does not */
    RBD_STAGE_SIZE,     /* rbd_get_size, or an empty image */
};

/*
 * Writes the one-line explanation of error @p err (negative errno) at
 * @p stage into @p buf (always NUL-terminated when @p len > 0). @p timeout
 * is the timeout (seconds) that bounded the step, @p mon the monitor
 * addresses if known (or NULL).
 */
void rbd_error_message(enum rbd_stage stage, int err, const struct vblk_rbd_opts *o,
                       unsigned timeout, const char *mon, char *buf, size_t len);

/* Writes "POOL[/NAMESPACE]/IMAGE[@SNAP]" into @p buf. */
void rbd_spec_string(const struct vblk_rbd_opts *o, char *buf, size_t len);

/*
 * The virtio status for librbd's result @p r (a byte count or a negative
 * errno) of a request of type @p type whose data length is @p len.
 */
uint8_t rbd_result_status(int64_t r, uint32_t type, uint32_t len);

/* Counters shared by every queue of one backend (relaxed atomics). */
struct rbd_counters {
    atomic_uint_fast64_t reads, writes, flushes, discards, write_zeroes, fua_flushes;
    atomic_uint_fast64_t errors, timeouts, bounced, bounce_bytes;
};

/*
 * A backend instance. Its ops table is a per-instance copy: the
 * capabilities depend on the image (snapshot, read-only) and the cache mode.
 */
struct rbd_be {
    struct vblk_backend_ops ops;
    rados_t cluster;
    rados_ioctx_t ioctx;
    rbd_image_t image;
    uint64_t size;        /* bytes at open, a multiple of 512 */
    uint64_t image_size;  /* what the last resize (or open) set the image to */
    bool read_only;       /* opened read-only (or a snapshot) */
    bool flush_after_fua; /* a write-through write is followed by a flush */
    /* The size requests may touch; a step is counted in it from its bounds
     * check until librbd calls back, so that a shrink can wait for every
     * step checked against the old size before rbd_resize2 cuts the image. */
    struct be_guard guard;
    /* vblk_backend_rbd_update_fd(): an eventfd signalled from librbd's
     * update watch (-1 until asked for), and the watch's handle. */
    int update_fd;
    uint64_t update_handle;
    struct rbd_counters n;
};

/* rbd_io.c: installs the datapath methods into be->ops. */
void rbd_io_setup(struct rbd_be *be);

#endif
