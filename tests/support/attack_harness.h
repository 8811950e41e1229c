/* SPDX-License-Identifier: MIT */
/*
 * The attack catalogue's harness (tests/test_attacks_*.c and the vhost-user
 * tests that borrow it): a hostile driver that writes ring memory by hand
 * (ring_writer.h), a device over a RAM disk that ASan can watch, a hostile
 * vhost-user front-end that speaks through the byte-buffer entry point
 * vblk_vu_dev_handle_msg(), and a VDUSE kernel stand-in that maps one IOVA
 * range. Everything goes through the library's API; the vhost-user wire
 * layouts are written out here from the protocol specification. The
 * helpers assert with cmocka: include after cmocka.h and call them from a
 * running test.
 */
#ifndef VBLK_TEST_ATTACK_HARNESS_H
#define VBLK_TEST_ATTACK_HARNESS_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fd_count.h"
#include "ring_writer.h"
#include "virtioblk/advanced_msg.h"
#include "virtioblk/virtioblk.h"

struct vduse_abi_request;
#include "ram_harness.h"

/* ---- a RAM disk backend that ASan can watch ---- */

#define ATK_SECTORS 256u
#define ATK_DISK    (ATK_SECTORS * 512u)
#define ATK_HELD    64u

struct atk_disk {
    struct vblk_backend_ops ops;
    uint8_t *disk; /* its own heap block: an overrun is an ASan report */
    unsigned nsubmit;
    bool hold; /* keep requests for the test to complete */
    unsigned nheld;
    struct vblk_req *held[ATK_HELD];
    struct vblk_req last; /* copy of the last request submitted */
};

/* Carries out @r on the disk. No range checks of its own: an overrun of
 * b->disk is an ASan report. */
uint8_t atk_disk_io(struct atk_disk *b, struct vblk_req *r);

/* A backend over a fresh disk with a known pattern, every capability. */
void atk_disk_init(struct atk_disk *b, struct vblk_backend *out);

/* Completes the held requests on the queue thread (the test's). */
void atk_disk_release(struct atk_disk *b, uint8_t status);

/* ---- the core under attack: one queue over hand-written guest memory ---- */

#define ATK_GPA     0x100000000ull /* guest memory starts at 4 GiB */
#define ATK_MEM_LEN (1u << 20)
#define ATK_QSIZE   16u
#define ATK_DATA    0x4000u /* first byte of buffer memory */

struct atk {
    struct vblk_mem mem;
    struct guest_ram ram; /* [ATK_GPA, ATK_GPA + ATK_MEM_LEN) */
    struct atk_ring ring;
    struct atk_disk bd;
    struct vblk_backend be;
    struct vblk_dev_params p;
    struct vblk_dev dev;
    uint64_t drop; /* feature bits the driver does not accept */
    struct vblk_queue q;
    void *pool;
    bool started;
    unsigned notifies;
};

/* A device whose driver will use a split or packed ring; not started yet,
 * so a case can change a->p or a->drop first. */
struct atk *atk_new(bool packed);

/* The queue parameters of queue 0 over a->ring. */
struct vblk_queue_params atk_qparams(struct atk *a);

/* Negotiates and starts queue 0 over a->ring. */
void atk_start(struct atk *a);

/* atk_new() and atk_start(). */
struct atk *atk_up(bool packed);

/* Releases everything; whatever the driver did, no request may be left in
 * flight once the backend has finished its work. */
void atk_free(struct atk *a);

/* Guest memory for buffers: 16-byte aligned, filled with @fill. */
uint64_t atk_galloc(struct atk *a, size_t len, int fill);

void *atk_host(struct atk *a, uint64_t gpa);

/* A request header in guest memory. */
uint64_t atk_hdr(struct atk *a, uint32_t type, uint64_t sector);

/* A status byte, preset to a value no device writes. */
uint64_t atk_status(struct atk *a);

uint8_t atk_status_of(struct atk *a, uint64_t st);

/* Posts [header][data if len][status]; returns the status byte's address. */
uint64_t atk_rq(struct atk *a, uint32_t type, uint64_t sector, uint64_t data, uint32_t len,
                uint16_t dflags);

/* An indirect table in guest memory (atk_table_write()). Returns its
 * address; its length is 16 * n. */
uint64_t atk_table(struct atk *a, const struct atk_seg *s, unsigned n);

/* A well-formed IN request as an indirect table: header, 512 data bytes,
 * status (whose address goes to *st). */
uint64_t atk_good_table(struct atk *a, uint64_t *st);

int atk_process(struct atk *a);

/* Outcome: the request completed with status @want, status-only length. */
void atk_expect_status(struct atk *a, uint64_t st, uint8_t want);

/* Outcome: the queue is broken (DEVICE_NEEDS_RESET), nothing was used or
 * submitted, and it stays broken. */
void atk_expect_broken(struct atk *a);

/* ---- a request completed late, from another thread ---- */

/* A backend completion that arrives @delay_ms after the thread starts,
 * unless the transport let go of the queue first (which would make the
 * completion a use-after-free; it is only recorded in too_early). */
struct atk_late {
    struct vblk_req *req;
    atomic_int released; /* the transport has let go of the queue */
    atomic_int too_early;
    int delay_ms;
};

/* Thread body for pthread_create() with a struct atk_late. */
void *atk_late_completion(void *arg);

/* ---- a hostile vhost-user front-end over the byte-buffer entry point ---- */

/* Request codes and payload layouts from the vhost-user specification. */
enum {
    ATK_VU_GET_FEATURES = 1,
    ATK_VU_SET_FEATURES = 2,
    ATK_VU_SET_OWNER = 3,
    ATK_VU_SET_MEM_TABLE = 5,
    ATK_VU_SET_LOG_BASE = 6,
    ATK_VU_SET_VRING_NUM = 8,
    ATK_VU_SET_VRING_ADDR = 9,
    ATK_VU_SET_VRING_BASE = 10,
    ATK_VU_GET_VRING_BASE = 11,
    ATK_VU_SET_VRING_KICK = 12,
    ATK_VU_SET_VRING_CALL = 13,
    ATK_VU_SET_VRING_ERR = 14,
    ATK_VU_GET_PROTOCOL_FEATURES = 15,
    ATK_VU_SET_PROTOCOL_FEATURES = 16,
    ATK_VU_SET_VRING_ENABLE = 18,
    ATK_VU_SET_CONFIG = 25,
    ATK_VU_SET_INFLIGHT_FD = 32,
    ATK_VU_ADD_MEM_REG = 37,
    ATK_VU_REM_MEM_REG = 38,
    ATK_VU_GET_STATUS = 40,
};

#define ATK_VU_VERSION    1u
#define ATK_VU_REPLY      (1u << 2)
#define ATK_VU_NEED_REPLY (1u << 3)
#define ATK_VU_NOFD       (1u << 8)

struct atk_vu_hdr {
    uint32_t request, flags, size;
};
struct atk_vu_state {
    uint32_t index, num;
};
struct atk_vu_addr {
    uint32_t index, flags;
    uint64_t desc, used, avail, log;
};
struct atk_vu_region {
    uint64_t gpa, size, uaddr, mmap_offset;
};
struct atk_vu_table {
    uint32_t nregions, padding;
    struct atk_vu_region r[8];
};
struct atk_vu_single {
    uint64_t padding;
    struct atk_vu_region r;
};
struct atk_vu_log {
    uint64_t size, offset;
};
struct atk_vu_config {
    uint32_t offset, size, flags;
    uint8_t data[256];
};
struct atk_vu_inflight {
    uint64_t mmap_size, mmap_offset;
    uint16_t num_queues, queue_size;
    uint32_t pad;
};

#define ATK_VU_GPA   0x40000000ull     /* guest-physical base */
#define ATK_VU_UA    0x7f0000000000ull /* the front-end's user address of it */
#define ATK_VU_MEM   (1u << 20)
#define ATK_VU_QSIZE 16u
#define ATK_VU_NQ    2u

struct atk_vu {
    int fds_before;
    struct vblk_backend be;
    struct atk_disk *bd; /* when the case brought its own backend */
    struct vblk_vu_dev *d;
    int memfd;
    uint8_t *mem; /* guest memory, shared with the device */
    struct atk_ring ring;
    int kick, call, err;
    struct vblk_vu_reply rep;
    uint64_t virtio_features; /* accepted by SET_FEATURES */
};

/* A device with ATK_VU_NQ queues over the memory backend (or @be), and
 * guest memory in a memfd. */
struct atk_vu *atk_vu_new(const struct vblk_backend *be);

/* Frees everything; no fd the front-end ever sent may remain open. */
void atk_vu_free(struct atk_vu *v, bool own_backend);

/* Hands one raw message to the device (the device owns the fds after). */
int atk_vu_raw(struct atk_vu *v, const void *buf, size_t len, const int *fds, unsigned nfds);

/* Sends request @req with @flags and @size payload bytes; every fd in
 * @fds is duplicated first, so the caller keeps its own. Returns what the
 * device returned (0: handled, -EPROTO: it wants the connection closed). */
int atk_vu_send(struct atk_vu *v, uint32_t req, uint32_t flags, const void *payload, uint32_t size,
                const int *fds, unsigned nfds);

/* The u64 in the last reply (the REPLY_ACK value, or a GET answer). */
uint64_t atk_vu_u64(struct atk_vu *v);

/* Outcome: accepted (REPLY_ACK 0). */
void atk_vu_ok(struct atk_vu *v, uint32_t req, const void *payload, uint32_t size, const int *fds,
               unsigned nfds);

/* Outcome: an error reply (REPLY_ACK non-zero); the connection goes on. */
void atk_vu_refused(struct atk_vu *v, uint32_t req, const void *payload, uint32_t size,
                    const int *fds, unsigned nfds);

/* A GET request's u64 answer. */
uint64_t atk_vu_get(struct atk_vu *v, uint32_t req);

/* SET_OWNER, every protocol feature offered, the virtio features offered
 * (split or packed). */
void atk_vu_negotiate(struct atk_vu *v, bool packed);

/* SET_MEM_TABLE with the one memfd region. */
void atk_vu_mem_table(struct atk_vu *v);

/* Configures queue 0 over a hand-written ring at the start of guest memory
 * (one ring area), up to but not including SET_VRING_KICK. */
void atk_vu_ring_setup(struct atk_vu *v, bool packed, uint32_t base);

/* Configures and starts queue 0 (atk_vu_ring_setup(), then the kick fd
 * and ENABLE). */
void atk_vu_ring(struct atk_vu *v, bool packed, uint32_t base);

/* A front-end with negotiated features, one memory region, queue 0 running. */
struct atk_vu *atk_vu_ready(bool packed);

/* Guest memory for buffers in the vhost-user case: offset @off of the
 * memfd; returns its guest-physical address. */
static inline uint64_t atk_vu_gpa(size_t off)
{
    return ATK_VU_GPA + off;
}

/* Posts a request [header at @off][data][status] in guest memory. Returns
 * the status byte's offset. */
size_t atk_vu_rq(struct atk_vu *v, size_t off, uint32_t type, uint64_t sector, uint32_t len);

/* ---- VDUSE: a kernel stand-in that maps one IOVA range ---- */

#define VD_IOVA  0x80000000ull
#define VD_ARENA (256u << 10)

struct vd_kernel {
    uint64_t features;
    uint8_t *arena;
    struct atk_ring *ring; /* queue 0's ring, once the driver set it up */
    int kickfd;
};

struct vd {
    struct vd_kernel k;
    struct atk_disk bd;
    struct vblk_backend be;
    struct vblk_vduse *v;
    struct atk_ring ring;
    uint32_t next_id;
};

/* A VDUSE device with two queues over an atk_disk, its IOVA space the
 * VD_ARENA bytes at VD_IOVA; split rings only. */
struct vd *vd_new(void);

void vd_free(struct vd *x);

/* Sends one kernel request; returns the handler's return value and the
 * response's result in *result. */
int vd_send(struct vd *x, const struct vduse_abi_request *body, size_t len, uint32_t *result);

/* SET_STATUS @status; returns the response's result. */
uint32_t vd_status(struct vd *x, uint8_t status);

#endif
