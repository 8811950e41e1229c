/* SPDX-License-Identifier: MIT */
/*
 * The VDUSE user-space ABI (Linux 5.15 and later, API version 0), written
 * out here so the build does not depend on the installed kernel headers:
 * older distributions lack some of these definitions. Layouts, sizes and
 * ioctl numbers must match the kernel byte for byte; the static asserts at
 * the end pin the sizes that are encoded in the ioctl numbers.
 *
 * Two character devices:
 *  - /dev/vduse/control creates and destroys devices;
 *  - /dev/vduse/NAME is one device: the kernel queues requests that the
 *    device reads with read(2) and answers with write(2), and the device
 *    drives its queues and memory translation with ioctls.
 */
#ifndef VBLK_VDUSE_ABI_H
#define VBLK_VDUSE_ABI_H

#include <stdint.h>
#include <sys/ioctl.h>

/* ioctl type byte of every VDUSE command. */
#define VDUSE_IOC_MAGIC 0x81

/* The only API version this adapter speaks. Kernels that know a newer one
 * keep serving version 0 to programs that ask for it. */
#define VDUSE_ABI_VERSION 0u

/* Longest device name, NUL included. */
#define VDUSE_ABI_NAME_MAX 256

/* ---- /dev/vduse/control ------------------------------------------------ */

/* Argument of VDUSE_CREATE_DEV; the config space bytes follow it. */
struct vduse_abi_dev_config {
    char name[VDUSE_ABI_NAME_MAX]; /* NUL-terminated device name */
    uint32_t vendor_id;            /* virtio vendor ID */
    uint32_t device_id;            /* virtio device ID (2: block) */
    uint64_t features;             /* feature bits offered to the driver */
    uint32_t vq_num;               /* number of virtqueues */
    uint32_t vq_align;             /* ring alignment the driver must use */
    uint32_t reserved[13];         /* must be zero */
    uint32_t config_size;          /* bytes of config space that follow */
    uint8_t config[];
};

#define VDUSE_GET_API_VERSION _IOR(VDUSE_IOC_MAGIC, 0x00, uint64_t)
#define VDUSE_SET_API_VERSION _IOW(VDUSE_IOC_MAGIC, 0x01, uint64_t)
#define VDUSE_CREATE_DEV      _IOW(VDUSE_IOC_MAGIC, 0x02, struct vduse_abi_dev_config)
#define VDUSE_DESTROY_DEV     _IOW(VDUSE_IOC_MAGIC, 0x03, char[VDUSE_ABI_NAME_MAX])

/* ---- /dev/vduse/NAME: ioctls ------------------------------------------ */

/* Access rights of an IOTLB entry. */
#define VDUSE_ABI_ACCESS_RO 1u
#define VDUSE_ABI_ACCESS_WO 2u
#define VDUSE_ABI_ACCESS_RW 3u

/* VDUSE_IOTLB_GET_FD: in, the IOVA range [start, last] to look up; out, the
 * first entry overlapping it, its offset in the returned file and its
 * access rights. The ioctl's result is a new file descriptor to mmap. */
struct vduse_abi_iotlb_entry {
    uint64_t offset;
    uint64_t start;
    uint64_t last;
    uint8_t perm;
};

/* VDUSE_DEV_SET_CONFIG: replaces @length bytes of config space at @offset
 * with the bytes that follow the header. */
struct vduse_abi_config_data {
    uint32_t offset;
    uint32_t length;
    uint8_t buffer[];
};

/* VDUSE_VQ_SETUP: the largest size the driver may give queue @index. */
struct vduse_abi_vq_config {
    uint32_t index;
    uint16_t max_size;
    uint16_t reserved[13]; /* must be zero */
};

/* Ring position of a split queue: the next available index to read. */
struct vduse_abi_vq_state_split {
    uint16_t avail_index;
};

/* Ring position of a packed queue: positions in [0, size) and their wrap
 * counters (0 or 1). */
struct vduse_abi_vq_state_packed {
    uint16_t last_avail_counter;
    uint16_t last_avail_idx;
    uint16_t last_used_counter;
    uint16_t last_used_idx;
};

/* VDUSE_VQ_GET_INFO: what the driver configured for queue @index. The ring
 * addresses are IOVAs. */
struct vduse_abi_vq_info {
    uint32_t index;
    uint32_t num;
    uint64_t desc_addr;
    uint64_t driver_addr;
    uint64_t device_addr;
    union {
        struct vduse_abi_vq_state_split split;
        struct vduse_abi_vq_state_packed packed;
    };
    uint8_t ready;
};

/* VDUSE_VQ_SETUP_KICKFD: the eventfd the kernel signals when the driver
 * kicks queue @index; -1 removes it. */
struct vduse_abi_vq_eventfd {
    uint32_t index;
    int32_t fd;
};

#define VDUSE_IOTLB_GET_FD          _IOWR(VDUSE_IOC_MAGIC, 0x10, struct vduse_abi_iotlb_entry)
#define VDUSE_DEV_GET_FEATURES      _IOR(VDUSE_IOC_MAGIC, 0x11, uint64_t)
#define VDUSE_DEV_SET_CONFIG        _IOW(VDUSE_IOC_MAGIC, 0x12, struct vduse_abi_config_data)
#define VDUSE_DEV_INJECT_CONFIG_IRQ _IO(VDUSE_IOC_MAGIC, 0x13)
#define VDUSE_VQ_SETUP              _IOW(VDUSE_IOC_MAGIC, 0x14, struct vduse_abi_vq_config)
#define VDUSE_VQ_GET_INFO           _IOWR(VDUSE_IOC_MAGIC, 0x15, struct vduse_abi_vq_info)
#define VDUSE_VQ_SETUP_KICKFD       _IOW(VDUSE_IOC_MAGIC, 0x16, struct vduse_abi_vq_eventfd)
#define VDUSE_VQ_INJECT_IRQ         _IOW(VDUSE_IOC_MAGIC, 0x17, uint32_t)

/* ---- /dev/vduse/NAME: messages ----------------------------------------- */

/* Request types. */
#define VDUSE_MSG_GET_VQ_STATE 0u /* report a queue's ring position */
#define VDUSE_MSG_SET_STATUS   1u /* the driver wrote the status byte */
#define VDUSE_MSG_UPDATE_IOTLB 2u /* mappings in an IOVA range changed */

/* Result codes of a response. */
#define VDUSE_ABI_RESULT_OK     0u
#define VDUSE_ABI_RESULT_FAILED 1u

struct vduse_abi_vq_state {
    uint32_t index;
    union {
        struct vduse_abi_vq_state_split split;
        struct vduse_abi_vq_state_packed packed;
    };
};

/* An inclusive IOVA range. */
struct vduse_abi_iova_range {
    uint64_t start;
    uint64_t last;
};

/* One request, as read(2) returns it: always exactly this size. */
struct vduse_abi_request {
    uint32_t type;
    uint32_t request_id;
    uint32_t reserved[4];
    union {
        struct vduse_abi_vq_state vq_state; /* GET_VQ_STATE: only index is set */
        uint8_t status;                     /* SET_STATUS */
        struct vduse_abi_iova_range iova;   /* UPDATE_IOTLB */
        uint32_t padding[32];
    };
};

/* One response, written with write(2); reserved must be zero. */
struct vduse_abi_response {
    uint32_t request_id;
    uint32_t result;
    uint32_t reserved[4];
    union {
        struct vduse_abi_vq_state vq_state; /* GET_VQ_STATE answer */
        uint32_t padding[32];
    };
};

_Static_assert(sizeof(struct vduse_abi_dev_config) == 336, "VDUSE_CREATE_DEV layout");
_Static_assert(sizeof(struct vduse_abi_iotlb_entry) == 32, "VDUSE_IOTLB_GET_FD layout");
_Static_assert(sizeof(struct vduse_abi_config_data) == 8, "VDUSE_DEV_SET_CONFIG layout");
_Static_assert(sizeof(struct vduse_abi_vq_config) == 32, "VDUSE_VQ_SETUP layout");
_Static_assert(sizeof(struct vduse_abi_vq_info) == 48, "VDUSE_VQ_GET_INFO layout");
_Static_assert(sizeof(struct vduse_abi_vq_eventfd) == 8, "VDUSE_VQ_SETUP_KICKFD layout");
_Static_assert(sizeof(struct vduse_abi_request) == 152, "request layout");
_Static_assert(sizeof(struct vduse_abi_response) == 152, "response layout");

#endif
