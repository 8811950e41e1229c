/* SPDX-License-Identifier: MIT */
/* vhost-user wire format, shared by the back-end (vu_*.c) and the front-end
 * (vu_client*.c). Not installed. The protocol facts follow the vhost-user
 * specification in QEMU's documentation. */
#ifndef VBLK_VU_PROTO_H
#define VBLK_VU_PROTO_H

#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

enum vu_request {
    VU_GET_FEATURES = 1,
    VU_SET_FEATURES = 2,
    VU_SET_OWNER = 3,
    VU_RESET_OWNER = 4,
    VU_SET_MEM_TABLE = 5,
    VU_SET_LOG_BASE = 6,
    VU_SET_LOG_FD = 7,
    VU_SET_VRING_NUM = 8,
    VU_SET_VRING_ADDR = 9,
    VU_SET_VRING_BASE = 10,
    VU_GET_VRING_BASE = 11,
    VU_SET_VRING_KICK = 12,
    VU_SET_VRING_CALL = 13,
    VU_SET_VRING_ERR = 14,
    VU_GET_PROTOCOL_FEATURES = 15,
    VU_SET_PROTOCOL_FEATURES = 16,
    VU_GET_QUEUE_NUM = 17,
    VU_SET_VRING_ENABLE = 18,
    VU_SEND_RARP = 19,
    VU_NET_SET_MTU = 20,
    VU_SET_BACKEND_REQ_FD = 21,
    VU_IOTLB_MSG = 22,
    VU_SET_VRING_ENDIAN = 23,
    VU_GET_CONFIG = 24,
    VU_SET_CONFIG = 25,
    VU_GET_INFLIGHT_FD = 31,
    VU_SET_INFLIGHT_FD = 32,
    VU_RESET_DEVICE = 34,
    VU_VRING_KICK = 35,
    VU_GET_MAX_MEM_SLOTS = 36,
    VU_ADD_MEM_REG = 37,
    VU_REM_MEM_REG = 38,
    VU_SET_STATUS = 39,
    VU_GET_STATUS = 40,
    VU_REQUEST_MAX = 41,
};

/* Messages the back-end sends on the back-end request channel. */
enum vu_backend_request {
    VU_BACKEND_IOTLB_MSG = 1,
    VU_BACKEND_CONFIG_CHANGE_MSG = 2,
};

#define VU_VERSION         0x1u
#define VU_VERSION_MASK    0x3u
#define VU_FLAG_REPLY      (1u << 2)
#define VU_FLAG_NEED_REPLY (1u << 3)

/* SET_VRING_KICK / CALL / ERR payload: index in bits 0-7, "no fd" in bit 8. */
#define VU_VRING_IDX_MASK 0xffu
#define VU_VRING_NOFD     (1u << 8)
/* SET_VRING_ADDR flags: log used-ring writes. */
#define VU_VRING_F_LOG 1u
/* Largest config space access (GET_CONFIG / SET_CONFIG). */
#define VU_CONFIG_MAX 256u
/* Regions in one SET_MEM_TABLE message. */
#define VU_MEM_TABLE_MAX 8u

struct vu_hdr {
    uint32_t request;
    uint32_t flags;
    uint32_t size;
};

struct vu_vring_state {
    uint32_t index;
    uint32_t num;
};

struct vu_vring_addr {
    uint32_t index;
    uint32_t flags;
    uint64_t desc;
    uint64_t used;
    uint64_t avail;
    uint64_t log;
};

struct vu_region_desc {
    uint64_t gpa;
    uint64_t size;
    uint64_t uaddr;
    uint64_t mmap_offset;
};

struct vu_mem_table {
    uint32_t nregions;
    uint32_t padding;
    struct vu_region_desc regions[VU_MEM_TABLE_MAX];
};

struct vu_mem_single {
    uint64_t padding;
    struct vu_region_desc region;
};

struct vu_log {
    uint64_t size;
    uint64_t offset;
};

struct vu_config {
    uint32_t offset;
    uint32_t size;
    uint32_t flags;
    uint8_t data[VU_CONFIG_MAX];
};

struct vu_inflight {
    uint64_t mmap_size;
    uint64_t mmap_offset;
    uint16_t num_queues;
    uint16_t queue_size;
};

/* Control-message space for the one fd a sent message carries. */
union vu_fd_cmsg {
    struct cmsghdr align;
    unsigned char buf[CMSG_SPACE(sizeof(int))];
};

/* Attaches @fd to @mh as SCM_RIGHTS ancillary data held in @ctl. */
static inline void vu_attach_fd(struct msghdr *mh, union vu_fd_cmsg *ctl, int fd)
{
    memset(ctl, 0, sizeof(*ctl));
    mh->msg_control = ctl->buf;
    mh->msg_controllen = sizeof(ctl->buf);
    struct cmsghdr *c = CMSG_FIRSTHDR(mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
}

#endif
