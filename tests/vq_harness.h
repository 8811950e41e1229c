/* SPDX-License-Identifier: MIT */
/*
 * Shared by the device-side virtqueue tests (test_vq_split.c,
 * test_vq_packed.c): a buffer that the memory map exposes at a non-identity
 * driver address, the queue under test and the chain it pops into. Each
 * test defines GPA, the driver address of the buffer, lays its ring out
 * inside the buffer, and makes a struct vq_harness the first member of its
 * own fixture.
 */
#ifndef VBLK_TEST_VQ_HARNESS_H
#define VBLK_TEST_VQ_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "virtioblk/advanced.h"
#include "virtioblk/ring.h"
#include "virtioblk/vq.h"

#define MEM_LEN 0x10000u /* mapped bytes at GPA */
#define NIOV    32

#define G(off) (GPA + (uint64_t)(off)) /* driver address of buffer offset @off */
#define R      0u
#define W      VBLK_DESC_F_WRITE
#define N      VBLK_DESC_F_NEXT
#define I      VBLK_DESC_F_INDIRECT

struct vq_harness {
    struct vblk_mem mem;
    uint8_t *buf; /* host view of [GPA, GPA + MEM_LEN) */
    struct vblk_vq vq;
    struct vblk_iov iov[NIOV];
    struct vblk_chain c;
};

/* Allocates a zeroed fixture of @size bytes that starts with a struct
 * vq_harness, and maps its buffer at @gpa. The buffer is heap memory of
 * exactly the mapped size so that AddressSanitizer reports any read past
 * the map. Returns NULL on failure. */
static inline void *vq_harness_new(size_t size, uint64_t gpa)
{
    struct vq_harness *v = calloc(1, size);
    if (!v)
        return NULL;
    v->buf = calloc(1, MEM_LEN);
    vblk_mem_init(&v->mem);
    if (!v->buf || vblk_mem_add(&v->mem, gpa, MEM_LEN, v->buf, NULL) < 0) {
        free(v->buf);
        free(v);
        return NULL;
    }
    v->c.iov = v->iov;
    v->c.cap = NIOV;
    return v;
}

/* cmocka teardown of a fixture made by vq_harness_new(). */
static inline int vq_harness_teardown(void **state)
{
    struct vq_harness *v = *state;
    free(v->buf);
    free(v);
    return 0;
}

/* Initialises the queue from @c with the given features, optionally at a
 * saved position @st, and asserts that it starts. */
static inline void vq_harness_start(struct vq_harness *v, struct vblk_vq_config c, bool event_idx,
                                    bool indirect, const struct vblk_vq_state *st)
{
    c.event_idx = event_idx;
    c.indirect = indirect;
    c.state = st;
    assert_int_equal(vblk_vq_init(&v->vq, &v->mem, &c), 0);
}

static inline int pop(struct vq_harness *v)
{
    return vblk_vq_pop(&v->vq, &v->c);
}

/* Pops and asserts the queue broke, once, and stays broken. */
static inline void expect_broken(struct vq_harness *v)
{
    assert_int_equal(pop(v), -EIO);
    assert_true(vblk_vq_broken(&v->vq));
    assert_int_equal(vblk_vq_stats(&v->vq)->broken, 1);
    assert_int_equal(pop(v), -EIO);
    assert_int_equal(vblk_vq_stats(&v->vq)->broken, 1);
    assert_int_equal(vblk_vq_stats(&v->vq)->chains, 0);
}

#endif
