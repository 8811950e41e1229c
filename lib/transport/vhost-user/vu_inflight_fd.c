/* SPDX-License-Identifier: MIT */
/* vhost-user in-flight region messages: GET_INFLIGHT_FD hands out a new
 * region (a sealed memfd), SET_INFLIGHT_FD takes one back after a back-end
 * restart. The tracking itself is in vu_inflight.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vu_internal.h"

/* ---- messages: GET_INFLIGHT_FD, SET_INFLIGHT_FD ---- */

void vu_inflight_unmap(struct vblk_vu_dev *d)
{
    vu_shm_unmap(d->inflight_map, d->inflight_map_len);
    d->inflight_map = NULL;
    d->inflight_map_len = 0;
    d->inflight = NULL;
    d->inflight_size = 0;
    d->inflight_nq = d->inflight_qsize = 0;
    for (uint16_t i = 0; i < d->nq; i++)
        vu_inflight_release(&d->q[i]);
}

static int check_geometry(const struct vblk_vu_dev *d, const struct vu_inflight *in)
{
    if (!vu_has_protocol(d, VBLK_VU_PROTOCOL_F_INFLIGHT_SHMFD))
        return -ENOTSUP;
    if (in->num_queues == 0 || in->num_queues > d->nq || in->queue_size == 0 ||
        in->queue_size > VBLK_QUEUE_SIZE_MAX)
        return -EINVAL;
    /* The rings hold pointers into the region. */
    if (vu_any_live(d))
        return -EBUSY;
    return 0;
}

static void install(struct vblk_vu_dev *d, void *map, size_t map_len, void *ptr,
                    const struct vu_inflight *in)
{
    vu_inflight_unmap(d);
    d->inflight_map = map;
    d->inflight_map_len = map_len;
    d->inflight = ptr;
    d->inflight_size = in->mmap_size;
    d->inflight_nq = in->num_queues;
    d->inflight_qsize = in->queue_size;
}

int vu_h_get_inflight_fd(struct vblk_vu_dev *d, struct vu_msg *m, struct vblk_vu_reply *rep)
{
    struct vu_inflight in = m->p.inflight;
    int rc = check_geometry(d, &in);
    if (rc < 0)
        return rc;
    in.mmap_size = in.num_queues * vu_inflight_queue_bytes(in.queue_size);
    in.mmap_offset = 0;
    /* The front-end must not be able to take the region's pages away:
     * back every page now and seal the size (it cannot shrink the file
     * under the mapping, nor grow it to fill the filesystem), then seal
     * the seals. */
    int fd = memfd_create("vblk-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    void *map, *ptr;
    size_t len;
    if (ftruncate(fd, (off_t)in.mmap_size) < 0 || fallocate(fd, 0, 0, (off_t)in.mmap_size) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    rc = vu_shm_map(d, fd, 0, in.mmap_size, VU_SHM_POPULATE, &map, &len, &ptr);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    install(d, map, len, ptr, &in);
    vu_reply(rep, m, &in, sizeof(in));
    rep->fd = fd;
    vu_log(d, VBLK_LOG_INFO, "in-flight region: %u queues of %u entries", in.num_queues,
           in.queue_size);
    return 0;
}

int vu_h_set_inflight_fd(struct vblk_vu_dev *d, struct vu_msg *m)
{
    const struct vu_inflight *in = &m->p.inflight;
    int rc = check_geometry(d, in);
    if (rc < 0)
        return rc;
    /* The region holds 64-bit fields, accessed atomically. */
    if (in->mmap_size < in->num_queues * vu_inflight_queue_bytes(in->queue_size) ||
        (in->mmap_offset & 7))
        return -EINVAL;
    void *map, *ptr;
    size_t len;
    rc =
        vu_shm_map(d, m->fds[0], in->mmap_offset, in->mmap_size, VU_SHM_POPULATE, &map, &len, &ptr);
    if (rc < 0)
        return rc == -ENOMEM || rc == -ENOSPC ? rc : -EINVAL;
    install(d, map, len, ptr, in);
    return 0;
}
