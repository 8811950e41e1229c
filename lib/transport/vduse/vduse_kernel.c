/* SPDX-License-Identifier: MIT */
/*
 * The real kernel behind struct vduse_kops: ioctls on /dev/vduse/control
 * and /dev/vduse/NAME, and mmap of the files that back IOTLB entries.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "transport/vduse/vduse_internal.h"

#define CONTROL_PATH "/dev/vduse/control"
#define DEV_DIR      "/dev/vduse/"

/* virtio 1.2 5.2: the block device ID. */
#define VIRTIO_ID_BLOCK 2u

/* How long to wait for a device node or for the kernel to let go of a
 * device whose vDPA side is being deleted. */
#define SETTLE_MS 2000
#define RETRY_MS  20

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int kfd(void *k)
{
    return (int)(intptr_t)k;
}

static int xioctl(int fd, unsigned long req, void *arg)
{
    int rc;
    do {
        rc = ioctl(fd, req, arg);
    } while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : rc;
}

static int k_get_features(void *k, uint64_t *features)
{
    int rc = xioctl(kfd(k), VDUSE_DEV_GET_FEATURES, features);
    return rc < 0 ? rc : 0;
}

static int k_vq_info(void *k, struct vduse_abi_vq_info *info)
{
    int rc = xioctl(kfd(k), VDUSE_VQ_GET_INFO, info);
    return rc < 0 ? rc : 0;
}

static int k_set_kickfd(void *k, uint32_t index, int fd)
{
    struct vduse_abi_vq_eventfd e = {index, fd};
    int rc = xioctl(kfd(k), VDUSE_VQ_SETUP_KICKFD, &e);
    return rc < 0 ? rc : 0;
}

static int k_inject_irq(void *k, uint32_t index)
{
    int rc = xioctl(kfd(k), VDUSE_VQ_INJECT_IRQ, &index);
    return rc < 0 ? rc : 0;
}

static int k_map(void *k, uint64_t iova, struct vduse_mapping *m)
{
    struct vduse_abi_iotlb_entry e;
    memset(&e, 0, sizeof(e));
    e.start = iova;
    e.last = iova;
    int fd = xioctl(kfd(k), VDUSE_IOTLB_GET_FD, &e);
    if (fd < 0)
        return fd == -EINVAL ? -EFAULT : fd;

    int rc = -EFAULT;
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t delta = e.offset & (page - 1);
    if (e.start > iova || e.last < iova || e.last - e.start >= SIZE_MAX - delta)
        goto out;
    uint64_t len = e.last - e.start + 1 + delta;
    int prot = PROT_READ | PROT_WRITE;
    int flags;
    switch (e.perm) {
    case VDUSE_ABI_ACCESS_RW:
        flags = MAP_SHARED;
        break;
    case VDUSE_ABI_ACCESS_RO:
        /* The device must not write here. A private mapping turns a stray
         * write (a driver that lets the device write into a read-only
         * buffer) into a copy the driver never sees, not a crash. */
        flags = MAP_PRIVATE;
        break;
    default:
        /* Write-only: the fd cannot be mapped at all. */
        rc = -EACCES;
        goto out;
    }
    void *base = mmap(NULL, (size_t)len, prot, flags, fd, (off_t)(e.offset - delta));
    if (base == MAP_FAILED) {
        rc = -errno;
        goto out;
    }
    m->start = e.start;
    m->last = e.last;
    m->perm = e.perm;
    m->base = base;
    m->host = (uint8_t *)base + delta;
    rc = 0;
out:
    close(fd);
    return rc;
}

static void k_unmap(void *k, const struct vblk_mem_region *r)
{
    (void)k;
    size_t delta = (size_t)((uint8_t *)r->host - (uint8_t *)r->opaque);
    munmap(r->opaque, (size_t)r->size + delta);
}

static int k_set_config(void *k, uint32_t offset, const void *buf, uint32_t len)
{
    /* The header, then the bytes (a flexible array member). */
    _Alignas(8) uint8_t msg[sizeof(struct vduse_abi_config_data) + 256];
    struct vduse_abi_config_data *c = (struct vduse_abi_config_data *)msg;
    if (len == 0 || len > sizeof(msg) - sizeof(*c))
        return -EINVAL;
    c->offset = offset;
    c->length = len;
    memcpy(c->buffer, buf, len);
    int rc = xioctl(kfd(k), VDUSE_DEV_SET_CONFIG, msg);
    return rc < 0 ? rc : 0;
}

static int k_config_irq(void *k)
{
    int rc = xioctl(kfd(k), VDUSE_DEV_INJECT_CONFIG_IRQ, NULL);
    return rc < 0 ? rc : 0;
}

const struct vduse_kops vduse_kernel_kops = {
    .get_features = k_get_features,
    .vq_info = k_vq_info,
    .set_kickfd = k_set_kickfd,
    .inject_irq = k_inject_irq,
    .map = k_map,
    .unmap = k_unmap,
    .set_config = k_set_config,
    .config_irq = k_config_irq,
};

int vduse_ctl_open(int *ctl)
{
    int fd = open(CONTROL_PATH, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    uint64_t version = 0;
    int rc = xioctl(fd, VDUSE_GET_API_VERSION, &version);
    if (rc == 0) {
        /* Pin version 0: newer kernels change structures for newer ones. */
        version = VDUSE_ABI_VERSION;
        rc = xioctl(fd, VDUSE_SET_API_VERSION, &version);
    }
    if (rc < 0) {
        close(fd);
        return -EPROTONOSUPPORT;
    }
    *ctl = fd;
    return 0;
}

int vduse_ctl_create(int ctl, const char *name, uint64_t features, uint16_t nq, const void *config,
                     uint32_t config_size)
{
    /* The header, then the config space (a flexible array member). */
    _Alignas(8) uint8_t msg[sizeof(struct vduse_abi_dev_config) + 256];
    struct vduse_abi_dev_config *d = (struct vduse_abi_dev_config *)msg;
    if (config_size > sizeof(msg) - sizeof(*d) || strlen(name) >= sizeof(d->name))
        return -EINVAL;
    memset(msg, 0, sizeof(msg));
    strcpy(d->name, name);
    d->device_id = VIRTIO_ID_BLOCK;
    d->features = features;
    d->vq_num = nq;
    d->vq_align = (uint32_t)sysconf(_SC_PAGESIZE);
    d->config_size = config_size;
    memcpy(d->config, config, config_size);
    int rc = xioctl(ctl, VDUSE_CREATE_DEV, msg);
    return rc < 0 ? rc : 0;
}

int vduse_node_setup_vqs(int devfd, uint16_t nq, uint16_t qsize)
{
    /* The kernel will not put the device on the vDPA bus until every
     * queue has a maximum size. */
    for (uint16_t i = 0; i < nq; i++) {
        struct vduse_abi_vq_config q;
        memset(&q, 0, sizeof(q));
        q.index = i;
        q.max_size = qsize;
        int rc = xioctl(devfd, VDUSE_VQ_SETUP, &q);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int vduse_ctl_destroy(int ctl, const char *name, bool wait)
{
    char buf[VDUSE_ABI_NAME_MAX];
    memset(buf, 0, sizeof(buf));
    strncpy(buf, name, sizeof(buf) - 1);
    int rc = 0;
    for (long waited = 0; waited <= (wait ? SETTLE_MS : 0); waited += RETRY_MS) {
        rc = xioctl(ctl, VDUSE_DESTROY_DEV, buf);
        /* EBUSY while the vDPA device is still being torn down. */
        if (rc != -EBUSY)
            break;
        sleep_ms(RETRY_MS);
    }
    return rc < 0 ? rc : 0;
}

int vduse_node_open(const char *name, int *out)
{
    char path[sizeof(DEV_DIR) + VDUSE_ABI_NAME_MAX];
    strcpy(path, DEV_DIR);
    strncat(path, name, VDUSE_ABI_NAME_MAX - 1);
    int fd = -1;
    /* Without devtmpfs, udev creates the node a little later. */
    for (long waited = 0; waited <= SETTLE_MS; waited += RETRY_MS) {
        fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
        if (fd >= 0 || errno != ENOENT)
            break;
        sleep_ms(RETRY_MS);
    }
    if (fd < 0)
        return -errno;
    *out = fd;
    return 0;
}
