/* SPDX-License-Identifier: MIT */
/**
 * @file advanced_msg.h
 * @brief Raw message entry points of the vhost-user and VDUSE transports,
 *        for event loops of one's own, tests and fuzzers.
 *
 * Like advanced.h, not included by the umbrella header virtioblk.h. Each
 * handler takes a message as bytes, exactly as it would arrive on the
 * socket or the device file, and produces the answer in a buffer.
 */
#ifndef VIRTIOBLK_ADVANCED_MSG_H
#define VIRTIOBLK_ADVANCED_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "vduse.h"
#include "vhost_user.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A reply produced by vblk_vu_dev_handle_msg(). */
struct vblk_vu_reply {
    uint8_t buf[VBLK_VU_MAX_MSG]; /**< Header and payload. */
    size_t len;                   /**< Bytes in @ref buf; 0: no reply. */
    int fd;                       /**< File descriptor to send with it, or -1. */
};

/**
 * Handles one message given as bytes (header and payload, @p len bytes) and
 * the @p nfds file descriptors that came with it, without a socket: the
 * entry point for fuzzers and tests. The device takes ownership of every fd
 * in @p fds, whatever the outcome. On return @p reply holds the reply to
 * send (if any); the caller owns @c reply->fd. The device need not be
 * attached. Returns 0 if the message was handled (successfully or with an
 * error reply), -EPROTO if the connection must end (also when the front-end's
 * memory faulted, during this message or before: @p reply still holds the
 * answer, and GET_STATUS reports DEVICE_NEEDS_RESET).
 */
int vblk_vu_dev_handle_msg(struct vblk_vu_dev *d, const void *buf, size_t len, const int *fds,
                           unsigned nfds, struct vblk_vu_reply *reply);

/**
 * Checks the framing of a message in @p buf (@p len bytes) carrying @p nfds
 * file descriptors: header, payload size against the request type and the
 * buffer, and the number of fds the request takes. Needs no device state.
 * Returns 0, -EINVAL (malformed) or -EBADMSG (wrong number of fds).
 */
int vblk_vu_msg_validate(const void *buf, size_t len, unsigned nfds);

/**
 * Handles one kernel request: @p req holds the @p len bytes read from
 * /dev/vduse/NAME. Writes the answer to @p resp (@p resp_size >=
 * VBLK_VDUSE_MSG_SIZE) and returns its length, VBLK_VDUSE_MSG_SIZE.
 * A request of the wrong length is not answered: -EBADMSG. A request of an
 * unknown type is answered with a failure result. The event loop calls
 * this for every request; it is public so that other loops and fuzzers can
 * drive the message handling from a byte buffer.
 */
int vblk_vduse_handle_request(struct vblk_vduse *v, const void *req, size_t len, void *resp,
                              size_t resp_size);

#ifdef __cplusplus
}
#endif
#endif
