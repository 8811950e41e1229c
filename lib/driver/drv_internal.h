/* SPDX-License-Identifier: MIT */
/*
 * Private to lib/driver: the parts of the driver-side virtqueue shared by
 * the split and packed implementations. Nothing here is exported (the
 * version script only exports vblk_*).
 */
#ifndef VBLK_DRV_INTERNAL_H
#define VBLK_DRV_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtioblk/driver.h"
#include "virtioblk/ring.h"

/* A run of host buffers that are all readable or all writable. */
struct drv_sg {
    const struct vblk_iov *iov;
    unsigned n;
    bool write;
};

/* A validated buffer: its runs (readable before writable) and totals. */
struct drv_buf {
    const struct drv_sg *sg;
    unsigned nsg;
    unsigned nelem;  /* elements in all runs */
    uint32_t in_len; /* writable bytes, saturating */
    bool indirect;   /* goes into this buffer's indirect table */
};

/* Walks the elements of a drv_buf in order. */
struct drv_iter {
    const struct drv_sg *sg;
    unsigned nsg;
    unsigned g;
    unsigned i;
};

static inline void drv_iter_init(struct drv_iter *it, const struct drv_buf *b)
{
    it->sg = b->sg;
    it->nsg = b->nsg;
    it->g = 0;
    it->i = 0;
}

/* Next element; the caller knows how many there are (drv_buf::nelem). */
static inline const struct vblk_iov *drv_iter_next(struct drv_iter *it, bool *write)
{
    while (it->i >= it->sg[it->g].n) {
        it->g++;
        it->i = 0;
    }
    *write = it->sg[it->g].write;
    return &it->sg[it->g].iov[it->i++];
}

/* Driver address of host memory (see driver.h). */
static inline uint64_t drv_addr(const struct vblk_drv_vq *vq, const void *p)
{
    return (uint64_t)(uintptr_t)p + vq->cfg.addr_delta;
}

/* The indirect table that belongs to ring slot / buffer id @p n. */
static inline void *drv_indirect_table(const struct vblk_drv_vq *vq, uint16_t n)
{
    return vq->indirect_tables + (size_t)n * vq->cfg.indirect_max * 16u;
}

/*
 * Fields the device may write are read exactly once, through an atomic
 * load, so a racing device can never make two reads disagree.
 */
static inline uint16_t drv_load16(const uint16_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline uint32_t drv_load32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void drv_store16(uint16_t *p, uint16_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/*
 * Full barrier for the store-then-load patterns of the notification
 * protocol. ThreadSanitizer does not model fences (GCC rejects them under
 * -fsanitize=thread -Werror), so there a seq_cst read-modify-write stands in.
 */
static inline void drv_mb(void)
{
#if defined(__SANITIZE_THREAD__)
    static atomic_int tsan_mb;

    atomic_fetch_add_explicit(&tsan_mb, 0, memory_order_seq_cst);
#else
    atomic_thread_fence(memory_order_seq_cst);
#endif
}

/* Split ring (drv_split.c). */
void drv_split_add(struct vblk_drv_vq *vq, const struct drv_buf *b, void *token);
bool drv_split_kick_prepare(struct vblk_drv_vq *vq);
int drv_split_get_used(struct vblk_drv_vq *vq, void **token, uint32_t *len);
bool drv_split_enable_cb(struct vblk_drv_vq *vq, bool enable);
bool drv_split_has_used(const struct vblk_drv_vq *vq);

/* Packed ring (drv_packed.c). */
void drv_packed_init(struct vblk_drv_vq *vq);
void drv_packed_add(struct vblk_drv_vq *vq, const struct drv_buf *b, void *token);
bool drv_packed_kick_prepare(struct vblk_drv_vq *vq);
int drv_packed_get_used(struct vblk_drv_vq *vq, void **token, uint32_t *len);
bool drv_packed_enable_cb(struct vblk_drv_vq *vq, bool enable);
bool drv_packed_has_used(const struct vblk_drv_vq *vq);

/* Validates and adds a buffer made of @p nsg runs (drv_vq.c). */
int drv_add(struct vblk_drv_vq *vq, const struct drv_sg *sg, unsigned nsg, void *token,
            bool use_indirect);

#endif
