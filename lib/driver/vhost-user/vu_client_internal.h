/* SPDX-License-Identifier: MIT */
/* vhost-user front-end (vu_client*.c): wire layouts and the message layer.
 * Not installed. The protocol facts follow QEMU's docs/interop/vhost-user.rst. */
#ifndef VBLK_VU_CLIENT_INTERNAL_H
#define VBLK_VU_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtioblk/driver.h"
#include "virtioblk/vhost_user_client.h"
#include "transport/vhost-user/vu_proto.h"

#pragma GCC visibility push(hidden)

/* Largest reply payload this front-end accepts (GET_CONFIG of 256 bytes). */
#define VUC_MAX_PAYLOAD 268u

/* SET_MEM_TABLE as this front-end sends it: one region. */
struct vuc_mem_table {
    uint32_t nregions;
    uint32_t padding;
    struct vu_region_desc regions[1];
};

struct vuc_queue {
    struct vblk_drv_vq vq;
    void *state;
    int kick_fd;
    int call_fd;
};

struct vblk_vu_client {
    int sock;
    int timeout_ms;
    int broken;          /* 0, or the errno that ended the connection */
    uint64_t offered;    /* virtio + vhost features the back-end offers */
    uint64_t features;   /* accepted */
    uint64_t protocol;   /* accepted protocol features */
    uint64_t max_queues; /* GET_QUEUE_NUM, or 0 */
    bool have_config;
    uint32_t config_len; /* bytes of config space the back-end returned */
    struct vblk_config config;
    int memfd;
    uint8_t *mem;
    size_t mem_size;
    size_t mem_used;
    uint64_t gpa_base;
    uint16_t nq;
    uint16_t qsize;
    struct vuc_queue *q;
    vblk_log_fn log;
    void *log_opaque;
    int log_level;
    char err[256];
};

/* Records @p rc with a message (kept for vblk_vu_client_error(), logged at
 * ERR level) and returns @p rc. */
int vuc_fail(struct vblk_vu_client *c, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Logs at @p level. */
void vuc_log(struct vblk_vu_client *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Name of a request code, for messages. */
const char *vuc_req_name(uint32_t req);

/* Sends one request with @p size payload bytes and at most one fd (-1:
 * none). Returns 0 or a negative errno (the connection is then broken). */
int vuc_send(struct vblk_vu_client *c, uint32_t req, uint32_t flags, const void *payload,
             uint32_t size, int fd);

/* Receives the reply to @p req into @p payload (@p cap bytes). The payload
 * size must lie in [@p min, @p max] (max <= cap); @p got receives it.
 * Replies with a bad header, size or any fd are -EPROTO; a closed socket
 * -ECONNRESET; no reply within the timeout -ETIMEDOUT. */
int vuc_recv(struct vblk_vu_client *c, uint32_t req, void *payload, uint32_t min, uint32_t max,
             uint32_t *got);

/* A request whose reply is a u64 (GET_*). */
int vuc_get_u64(struct vblk_vu_client *c, uint32_t req, uint64_t *out);

/* A request without a reply; with REPLY_ACK it waits for the ack and a
 * non-zero ack is -EIO. */
int vuc_call(struct vblk_vu_client *c, uint32_t req, const void *payload, uint32_t size, int fd);

#pragma GCC visibility pop

#endif
