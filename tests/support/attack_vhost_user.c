/* SPDX-License-Identifier: MIT */
/* The attack harness: a hostile vhost-user front-end (attack_harness.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "attack_harness.h"

struct atk_vu *atk_vu_new(const struct vblk_backend *be)
{
    struct atk_vu *v = calloc(1, sizeof(*v));
    assert_non_null(v);
    v->fds_before = count_fds();
    if (be)
        v->be = *be;
    else
        assert_int_equal(vblk_backend_memory_create(ATK_DISK, &v->be), 0);
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, ATK_DISK);
    p.num_queues = ATK_VU_NQ;
    p.queue_size = 64;
    assert_int_equal(vblk_vu_dev_create(&p, &v->be, NULL, &v->d), 0);
    v->memfd = memfd_create("atk-guest", MFD_CLOEXEC);
    assert_true(v->memfd >= 0);
    assert_int_equal(ftruncate(v->memfd, ATK_VU_MEM), 0);
    v->mem = mmap(NULL, ATK_VU_MEM, PROT_READ | PROT_WRITE, MAP_SHARED, v->memfd, 0);
    assert_true(v->mem != MAP_FAILED);
    v->kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    v->call = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    v->err = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(v->kick >= 0 && v->call >= 0 && v->err >= 0);
    v->rep.fd = -1;
    return v;
}

void atk_vu_free(struct atk_vu *v, bool own_backend)
{
    vblk_vu_dev_destroy(v->d);
    if (!own_backend)
        vblk_backend_destroy(&v->be);
    munmap(v->mem, ATK_VU_MEM);
    close(v->memfd);
    close(v->kick);
    close(v->call);
    close(v->err);
    if (v->rep.fd >= 0)
        close(v->rep.fd);
    int before = v->fds_before;
    free(v);
    assert_int_equal(count_fds(), before);
}

int atk_vu_raw(struct atk_vu *v, const void *buf, size_t len, const int *fds, unsigned nfds)
{
    if (v->rep.fd >= 0)
        close(v->rep.fd);
    memset(&v->rep, 0, sizeof(v->rep));
    v->rep.fd = -1;
    return vblk_vu_dev_handle_msg(v->d, buf, len, fds, nfds, &v->rep);
}

int atk_vu_send(struct atk_vu *v, uint32_t req, uint32_t flags, const void *payload, uint32_t size,
                const int *fds, unsigned nfds)
{
    uint8_t buf[VBLK_VU_MAX_MSG + 64];
    struct atk_vu_hdr h = {req, ATK_VU_VERSION | flags, size};
    assert_true(size <= sizeof(buf) - sizeof(h));
    memcpy(buf, &h, sizeof(h));
    if (size)
        memcpy(buf + sizeof(h), payload, size);
    int dups[16];
    assert_true(nfds <= 16);
    for (unsigned i = 0; i < nfds; i++) {
        dups[i] = dup(fds[i]);
        assert_true(dups[i] >= 0);
    }
    return atk_vu_raw(v, buf, sizeof(h) + size, dups, nfds);
}

uint64_t atk_vu_u64(struct atk_vu *v)
{
    struct atk_vu_hdr h;
    assert_int_equal(v->rep.len, sizeof(h) + 8);
    memcpy(&h, v->rep.buf, sizeof(h));
    assert_int_equal(h.flags, ATK_VU_VERSION | ATK_VU_REPLY);
    uint64_t x;
    memcpy(&x, v->rep.buf + sizeof(h), 8);
    return x;
}

void atk_vu_ok(struct atk_vu *v, uint32_t req, const void *payload, uint32_t size, const int *fds,
               unsigned nfds)
{
    assert_int_equal(atk_vu_send(v, req, ATK_VU_NEED_REPLY, payload, size, fds, nfds), 0);
    assert_int_equal(atk_vu_u64(v), 0);
}

void atk_vu_refused(struct atk_vu *v, uint32_t req, const void *payload, uint32_t size,
                    const int *fds, unsigned nfds)
{
    assert_int_equal(atk_vu_send(v, req, ATK_VU_NEED_REPLY, payload, size, fds, nfds), 0);
    assert_int_not_equal(atk_vu_u64(v), 0);
}

uint64_t atk_vu_get(struct atk_vu *v, uint32_t req)
{
    assert_int_equal(atk_vu_send(v, req, 0, NULL, 0, NULL, 0), 0);
    return atk_vu_u64(v);
}

void atk_vu_negotiate(struct atk_vu *v, bool packed)
{
    atk_vu_ok(v, ATK_VU_SET_OWNER, NULL, 0, NULL, 0);
    uint64_t feat = atk_vu_get(v, ATK_VU_GET_FEATURES);
    uint64_t proto = atk_vu_get(v, ATK_VU_GET_PROTOCOL_FEATURES);
    atk_vu_ok(v, ATK_VU_SET_PROTOCOL_FEATURES, &proto, 8, NULL, 0);
    feat &= ~VBLK_BIT(VBLK_F_IN_ORDER);
    if (!packed)
        feat &= ~VBLK_BIT(VBLK_F_RING_PACKED);
    feat &= ~VBLK_BIT(VBLK_VU_F_LOG_ALL);
    atk_vu_ok(v, ATK_VU_SET_FEATURES, &feat, 8, NULL, 0);
    v->virtio_features = feat;
}

void atk_vu_mem_table(struct atk_vu *v)
{
    struct atk_vu_table t = {.nregions = 1};
    t.r[0] = (struct atk_vu_region){ATK_VU_GPA, ATK_VU_MEM, ATK_VU_UA, 0};
    atk_vu_ok(v, ATK_VU_SET_MEM_TABLE, &t, 8 + 32, &v->memfd, 1);
}

void atk_vu_ring_setup(struct atk_vu *v, bool packed, uint32_t base)
{
    atk_ring_init(&v->ring, v->mem, ATK_VU_GPA, ATK_VU_QSIZE, packed);
    struct atk_vu_state num = {0, ATK_VU_QSIZE}, b = {0, base};
    atk_vu_ok(v, ATK_VU_SET_VRING_NUM, &num, 8, NULL, 0);
    atk_vu_ok(v, ATK_VU_SET_VRING_BASE, &b, 8, NULL, 0);
    struct atk_vu_addr a = {0, 0, ATK_VU_UA, ATK_VU_UA + ATK_DEVICE_OFF, ATK_VU_UA + ATK_DRIVER_OFF,
                            0};
    atk_vu_ok(v, ATK_VU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
    uint64_t idx = 0;
    atk_vu_ok(v, ATK_VU_SET_VRING_CALL, &idx, 8, &v->call, 1);
    atk_vu_ok(v, ATK_VU_SET_VRING_ERR, &idx, 8, &v->err, 1);
}

void atk_vu_ring(struct atk_vu *v, bool packed, uint32_t base)
{
    atk_vu_ring_setup(v, packed, base);
    uint64_t idx = 0;
    atk_vu_ok(v, ATK_VU_SET_VRING_KICK, &idx, 8, &v->kick, 1);
    struct atk_vu_state en = {0, 1};
    atk_vu_ok(v, ATK_VU_SET_VRING_ENABLE, &en, 8, NULL, 0);
    assert_true(vblk_vu_queue_active(v->d, 0));
}

struct atk_vu *atk_vu_ready(bool packed)
{
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, packed);
    atk_vu_mem_table(v);
    atk_vu_ring(v, packed, packed ? (1u << 15 | 1u << 31) : 0);
    return v;
}

size_t atk_vu_rq(struct atk_vu *v, size_t off, uint32_t type, uint64_t sector, uint32_t len)
{
    struct vblk_req_hdr h = {type, 0, sector};
    memcpy(v->mem + off, &h, sizeof(h));
    size_t data = off + 64, st = data + len;
    v->mem[st] = 0xee;
    struct atk_seg s[3] = {{atk_vu_gpa(off), 16, 0}};
    unsigned n = 1;
    if (len)
        s[n++] = (struct atk_seg){atk_vu_gpa(data), len, type == VBLK_T_IN ? ATK_W : 0};
    s[n++] = (struct atk_seg){atk_vu_gpa(st), 1, ATK_W};
    atk_post(&v->ring, s, n);
    return st;
}
