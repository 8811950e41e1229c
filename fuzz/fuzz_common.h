/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the fuzz harnesses: a byte reader over the fuzz input,
 * a hard assertion that survives NDEBUG, and a scriptable backend that
 * checks what the device hands it and then completes inline, with odd
 * statuses, later and out of order, or through the asynchronous path.
 */
#ifndef VBLK_FUZZ_COMMON_H
#define VBLK_FUZZ_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "virtioblk/backends.h"
#include "virtioblk/blk.h"
#include "virtioblk/driver.h"
#include "virtioblk/mem.h"
#include "virtioblk/spec.h"
#include "virtioblk/vq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of the library was violated: crash so the fuzzer keeps the input. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #cond);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define FUZZ_DISK_BYTES (1u << 20)

/* The backend of a FUZZ_DISK_BYTES disk for one input: a RAM disk created
 * once and kept across inputs (so that no input pays for a fresh one), or
 * a null backend. */
static inline struct vblk_backend fuzz_disk_backend(bool memory)
{
    static struct vblk_backend ram;
    struct vblk_backend be;
    if (!memory) {
        FUZZ_CHECK(vblk_backend_null_create(FUZZ_DISK_BYTES, &be) == 0);
        return be;
    }
    if (!ram.ops)
        FUZZ_CHECK(vblk_backend_memory_create(FUZZ_DISK_BYTES, &ram) == 0);
    return ram;
}

/* Open file descriptors of the process, for harnesses that check that a
 * message sequence leaked none. */
static inline int count_fds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    FUZZ_CHECK(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL)
        n += e->d_name[0] != '.';
    closedir(dir);
    return n;
}

/* VBLK_FUZZ_VERBOSE=1 makes the harnesses describe what happened (for
 * checking seeds and reproducing crashes). */
static inline bool fuzz_verbose(void)
{
    static int v = -1;
    if (v < 0)
        v = getenv("VBLK_FUZZ_VERBOSE") != NULL;
    return v != 0;
}

/* Reads the fuzz input front to back; past the end everything reads as zero. */
struct fuzz_in {
    const uint8_t *p;
    size_t n;
};

static inline uint8_t in_u8(struct fuzz_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint16_t in_u16(struct fuzz_in *in)
{
    uint16_t lo = in_u8(in);
    return (uint16_t)(lo | (uint16_t)in_u8(in) << 8);
}

static inline uint32_t in_u32(struct fuzz_in *in)
{
    uint32_t lo = in_u16(in);
    return lo | (uint32_t)in_u16(in) << 16;
}

static inline uint64_t in_u64(struct fuzz_in *in)
{
    uint64_t lo = in_u32(in);
    return lo | (uint64_t)in_u32(in) << 32;
}

/* Copies up to @len bytes, zero-filling what the input lacks. */
static inline void in_bytes(struct fuzz_in *in, void *dst, size_t len)
{
    size_t n = len < in->n ? len : in->n;
    memcpy(dst, in->p, n);
    memset((uint8_t *)dst + n, 0, len - n);
    in->p += n;
    in->n -= n;
}

/* ------------------------------------------------------------------------ */
/* The scriptable backend.                                                   */

#define FUZZ_BE_MAX_PENDING 1024

/* What submit() does with a request, picked from the decision tape. */
enum fuzz_be_action {
    FUZZ_BE_OK = 0,     /* complete inline with VBLK_S_OK */
    FUZZ_BE_STATUS = 1, /* complete inline with a status from the tape */
    FUZZ_BE_DEFER = 2,  /* keep it; the harness completes it later, in any order */
    FUZZ_BE_ASYNC = 3,  /* vblk_req_complete_async() from inside submit() */
};

struct fuzz_be {
    struct vblk_backend_ops ops;
    uint64_t capacity_sectors; /* as the device reported it when the request was validated */
    const uint8_t *tape;       /* decision tape, read cyclically */
    size_t tape_len;
    size_t tape_pos;
    struct vblk_req *pending[FUZZ_BE_MAX_PENDING];
    unsigned npending;
    unsigned started, stopped;
    bool fail_start; /* queue_start() fails */
    uint64_t submits, batches, polls;
    bool odd_status; /* FUZZ_BE_STATUS may pick values no spec defines */
    uint8_t sink;
};

static inline uint8_t fuzz_be_next(struct fuzz_be *fb)
{
    if (fb->tape_len == 0)
        return 0;
    uint8_t v = fb->tape[fb->tape_pos % fb->tape_len];
    fb->tape_pos++;
    return v;
}

/* Checks what the core promises about a request it hands to a backend, and
 * touches every byte of its buffers so ASan sees any bad iovec. */
static inline void fuzz_be_check_req(struct fuzz_be *fb, struct vblk_req *req)
{
    const struct vblk_dev *dev = req->q->dev;
    FUZZ_CHECK(strcmp(vblk_req_type_name(req->type), "UNKNOWN") != 0);
    uint64_t cap = dev->config.capacity;
    switch (req->type) {
    case VBLK_T_IN:
    case VBLK_T_OUT: {
        FUZZ_CHECK(req->len > 0 && req->len % VBLK_SECTOR_SIZE == 0);
        FUZZ_CHECK(req->sector <= cap && (req->len >> VBLK_SECTOR_SHIFT) <= cap - req->sector);
        FUZZ_CHECK(req->type == VBLK_T_IN || !dev->p.read_only);
        uint64_t total = 0;
        for (uint16_t i = 0; i < req->niov; i++) {
            total += req->iov[i].len;
            if (req->type == VBLK_T_IN) {
                memset(req->iov[i].base, 0xa5, req->iov[i].len);
            } else {
                const uint8_t *b = req->iov[i].base;
                for (size_t j = 0; j < req->iov[i].len; j++)
                    fb->sink ^= b[j];
            }
        }
        FUZZ_CHECK(total == req->len);
        break;
    }
    case VBLK_T_FLUSH:
        FUZZ_CHECK(dev->driver_features & VBLK_BIT(VBLK_F_FLUSH));
        break;
    case VBLK_T_DISCARD:
    case VBLK_T_WRITE_ZEROES:
    case VBLK_T_SECURE_ERASE:
        FUZZ_CHECK(!dev->p.read_only);
        FUZZ_CHECK(req->nranges >= 1 && req->nranges <= dev->max_ranges);
        for (uint32_t i = 0; i < req->nranges; i++) {
            const struct vblk_discard_wz_seg *s = &req->ranges[i];
            FUZZ_CHECK(s->sector <= cap && s->num_sectors <= cap - s->sector);
            FUZZ_CHECK((s->flags & ~VBLK_WZ_F_UNMAP) == 0);
            FUZZ_CHECK(!(s->flags & VBLK_WZ_F_UNMAP) || req->type == VBLK_T_WRITE_ZEROES);
        }
        break;
    default:
        /* GET_ID, GET_LIFETIME and unknown types never reach a backend. */
        FUZZ_CHECK(0 && "unexpected request type at the backend");
    }
}

static inline void fuzz_be_submit(void *be, void *qctx, struct vblk_req *req)
{
    struct fuzz_be *fb = be;
    (void)qctx;
    fb->submits++;
    fuzz_be_check_req(fb, req);
    uint8_t d = fuzz_be_next(fb);
    switch (d & 3) {
    case FUZZ_BE_OK:
        vblk_req_complete(req, VBLK_S_OK);
        break;
    case FUZZ_BE_STATUS:
        /* Mostly real statuses; now and then a value no spec defines. */
        if (fb->odd_status && (d >> 2) >= 48)
            vblk_req_complete(req, (uint8_t)(d >> 2));
        else
            vblk_req_complete(req, (uint8_t)((d >> 2) % 3));
        break;
    case FUZZ_BE_DEFER:
        if (fb->npending < FUZZ_BE_MAX_PENDING) {
            fb->pending[fb->npending++] = req;
            break;
        }
        vblk_req_complete(req, VBLK_S_OK);
        break;
    default:
        vblk_req_complete_async(req, (uint8_t)((d >> 2) % 3));
        break;
    }
}

static inline int fuzz_be_queue_start(void *be, uint16_t qidx, void **qctx)
{
    struct fuzz_be *fb = be;
    (void)qidx;
    if (fb->fail_start)
        return -ENOMEM;
    fb->started++;
    *qctx = fb;
    return 0;
}

static inline void fuzz_be_queue_stop(void *be, uint16_t qidx, void *qctx)
{
    struct fuzz_be *fb = be;
    (void)qidx;
    FUZZ_CHECK(qctx == fb);
    fb->stopped++;
}

static inline void fuzz_be_submit_done(void *be, void *qctx)
{
    struct fuzz_be *fb = be;
    FUZZ_CHECK(qctx == fb);
    fb->batches++;
}

/* Completes up to three of the oldest deferred requests, as a backend
 * reaping finished I/O would. */
static inline int fuzz_be_poll(void *be, void *qctx)
{
    struct fuzz_be *fb = be;
    FUZZ_CHECK(qctx == fb);
    fb->polls++;
    unsigned n = (fuzz_be_next(fb) >> 2) % 4u;
    int done = 0;
    while (n-- && fb->npending) {
        struct vblk_req *r = fb->pending[0];
        memmove(&fb->pending[0], &fb->pending[1], (fb->npending - 1) * sizeof(r));
        fb->npending--;
        vblk_req_complete(r, VBLK_S_OK);
        done++;
    }
    return done;
}

static inline int fuzz_be_queue_fd(void *be, void *qctx)
{
    (void)be;
    (void)qctx;
    return -1;
}

static inline void fuzz_be_init(struct fuzz_be *fb, uint32_t caps, const uint8_t *tape,
                                size_t tape_len)
{
    memset(fb, 0, sizeof(*fb));
    fb->ops.version = VBLK_BACKEND_OPS_V1;
    fb->ops.caps = caps;
    fb->ops.name = "fuzz";
    fb->ops.submit = fuzz_be_submit;
    fb->ops.queue_start = fuzz_be_queue_start;
    fb->ops.queue_stop = fuzz_be_queue_stop;
    fb->ops.submit_done = fuzz_be_submit_done;
    fb->ops.poll = fuzz_be_poll;
    fb->ops.queue_fd = fuzz_be_queue_fd;
    fb->tape = tape;
    fb->tape_len = tape_len;
}

/* Removes and returns pending request @i (order of the rest is kept). */
static inline struct vblk_req *fuzz_be_take(struct fuzz_be *fb, unsigned i)
{
    struct vblk_req *r = fb->pending[i];
    memmove(&fb->pending[i], &fb->pending[i + 1], (fb->npending - i - 1) * sizeof(r));
    fb->npending--;
    return r;
}

/* Status for a deferred completion, from the tape. */
static inline uint8_t fuzz_be_status(struct fuzz_be *fb)
{
    uint8_t d = fuzz_be_next(fb);
    return d < 200 ? VBLK_S_OK : (uint8_t)(d % 3);
}

#endif
