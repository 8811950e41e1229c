/* SPDX-License-Identifier: MIT */
/*
 * A vhost-user front-end for the back-end's unit tests (test_vhost_user.c,
 * test_vu_inflight.c): messages with fds over a socketpair, a memfd as
 * guest memory, rings built with the library's driver side, and the
 * device's vblk_vu_dev_handle_socket() / vblk_vu_queue_process() called
 * at once. fe_free() checks that the device kept or leaked no fd. The
 * helpers assert with cmocka: include after cmocka.h.
 */
#ifndef VBLK_TEST_VU_FRONTEND_H
#define VBLK_TEST_VU_FRONTEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/vhost-user/vu_internal.h"
#include "virtioblk/advanced_msg.h"
#include "virtioblk/virtioblk.h"

#define MEM_SIZE    (1u << 20)
#define GPA_BASE    0x40000000ull
#define UA_BASE     0x7f0000000000ull
#define QSIZE       16
#define DISK_SIZE   (4u << 20)
#define RING_OFF(q) ((size_t)(q) * (64u << 10))
#define DATA_OFF    (256u << 10)

struct fe {
    int fds_before;
    int sock;
    struct vblk_vu_dev *d;
    struct vblk_backend be;
    bool own_be;
    int memfd;
    uint8_t *mem;
    int kick[2], call[2];
    struct vblk_drv_vq drv[2];
    void *drv_state[2];
    bool packed;
};

/* A new device instance over f->be, connected to f->sock. */
void fe_new_device(struct fe *f, const struct vblk_vu_opts *opts);

/* A device over @be (NULL: a RAM disk of DISK_SIZE bytes, destroyed with
 * the device; otherwise the caller's). */
struct fe *fe_new_be(const struct vblk_vu_opts *opts, const struct vblk_backend *be);

struct fe *fe_new(const struct vblk_vu_opts *opts);

void fe_free(struct fe *f);

uint64_t ua_of_gpa(uint64_t gpa);

/* Sends one message; the device handles it at once. Returns what
 * vblk_vu_dev_handle_socket() returned. */
int fe_send(struct fe *f, uint32_t req, uint32_t flags, const void *payload, uint32_t size,
            const int *fds, unsigned nfds);

/* Reads one reply. Returns its payload size, or -1 if there is none. */
int fe_recv(struct fe *f, uint32_t req, void *payload, size_t cap, int *fd);

/* A request with need_reply: returns the ack value (0 ok). */
uint64_t fe_ack(struct fe *f, uint32_t req, const void *payload, uint32_t size, const int *fds,
                unsigned nfds);

uint64_t fe_get_u64(struct fe *f, uint32_t req);

void fe_u64(struct fe *f, uint32_t req, uint64_t v, uint64_t want_ack);

/* SET_OWNER, protocol features, virtio features (split or packed). */
void fe_negotiate(struct fe *f, bool packed);

void fe_mem_table(struct fe *f);

/* Builds the driver side of queue @q and configures the device ring. */
void fe_vring(struct fe *f, uint16_t q, uint32_t base);

/* SET_VRING_NUM / BASE / ADDR for the driver ring already built. */
void fe_vring_msgs(struct fe *f, uint16_t q, uint32_t base);

void fe_start(struct fe *f, uint16_t q);

/* One synchronous request through queue @q. Returns the status byte. */
int fe_io(struct fe *f, uint16_t q, uint32_t type, uint64_t sector, void *buf, size_t len);

struct fe *fe_ready(bool packed);

#endif
