/* SPDX-License-Identifier: MIT */
/*
 * VDUSE device lifecycle and its event loop.
 *
 * One epoll set per device holds the device file (kernel requests), a stop
 * eventfd, an optional detach-check timer and, for every running queue,
 * its kick, wakeup and backend fds. Everything runs on the thread calling
 * vblk_vduse_poll(), so the memory map, the queues and the message
 * handling need no locks: an IOTLB invalidation or a reset is handled
 * between two batches of a queue, never during one.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "transport/vduse/vduse_internal.h"

/* How often the vDPA device's presence is checked (exit_on_detach). */
#define DETACH_CHECK_MS 250
/* How long the kernel must be quiet after the vDPA device went away. */
#define DETACH_QUIET_MS 1000
#define SYSFS_VDPA      "/sys/bus/vdpa/devices/"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int vduse_alloc(const struct vblk_dev_params *params, const struct vblk_backend *be,
                const struct vduse_kops *kops, void *k, struct vblk_vduse **out)
{
    struct vblk_vduse *v = calloc(1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    v->params = *params;
    /* VDUSE keeps the config space read-only to the driver, so the kernel
     * refuses a writable cache mode. The driver then follows FLUSH alone
     * (virtio 1.2 5.2.5.1: write-back when FLUSH is offered). */
    v->params.features_off |= VBLK_BIT(VBLK_F_CONFIG_WCE);
    v->be = *be;
    v->kops = kops;
    v->k = k;
    v->epfd = v->devfd = v->ctlfd = v->stopfd = v->timerfd = -1;
    int rc = vblk_dev_init(&v->dev, &v->params, be);
    if (rc < 0) {
        free(v);
        return rc;
    }
    v->nq = v->params.num_queues;
    v->vqs = calloc(v->nq, sizeof(*v->vqs));
    if (!v->vqs) {
        free(v);
        return -ENOMEM;
    }
    for (uint16_t i = 0; i < v->nq; i++) {
        struct vduse_vq *vq = &v->vqs[i];
        vq->v = v;
        vq->index = i;
        vq->kickfd = -1;
        rc = tq_init(&vq->tq, true);
        if (rc < 0) {
            while (i--)
                tq_fini(&v->vqs[i].tq);
            free(v->vqs);
            free(v);
            return rc;
        }
    }
    vblk_mem_init(&v->mem);
    vblk_mem_set_miss(&v->mem, vduse_iotlb_miss, v);
    *out = v;
    return 0;
}

void vduse_free(struct vblk_vduse *v)
{
    for (uint16_t i = 0; i < v->nq; i++) {
        vduse_vq_stop(v, i);
        tq_fini(&v->vqs[i].tq);
    }
    vduse_iotlb_drop(v, 0, UINT64_MAX);
    int *fds[] = {&v->devfd, &v->ctlfd, &v->stopfd, &v->timerfd, &v->epfd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (*fds[i] >= 0)
            close(*fds[i]);
    free(v->vqs);
    free(v);
}

static bool valid_name(const char *name)
{
    size_t n = strnlen(name, VBLK_VDUSE_NAME_MAX + 1);
    /* It names a file under /dev/vduse and a sysfs directory. */
    return n > 0 && n <= VBLK_VDUSE_NAME_MAX && !strchr(name, '/') && strcmp(name, ".") &&
           strcmp(name, "..");
}

static int setup_loop(struct vblk_vduse *v)
{
    v->epfd = epoll_create1(EPOLL_CLOEXEC);
    v->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (v->epfd < 0 || v->stopfd < 0)
        return -errno;
    vduse_watch(v, v->devfd, VDUSE_TAG_DEV, 0);
    vduse_watch(v, v->stopfd, VDUSE_TAG_STOP, 0);
    if (v->exit_on_detach) {
        v->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (v->timerfd < 0)
            return -errno;
        struct itimerspec its = {
            .it_interval = {0, DETACH_CHECK_MS * 1000000L},
            .it_value = {0, DETACH_CHECK_MS * 1000000L},
        };
        if (timerfd_settime(v->timerfd, 0, &its, NULL) < 0)
            return -errno;
        vduse_watch(v, v->timerfd, VDUSE_TAG_TIMER, 0);
    }
    return 0;
}

int vblk_vduse_create(const struct vblk_dev_params *params, const struct vblk_backend *be,
                      const struct vblk_vduse_opts *opts, struct vblk_vduse **out)
{
    if (!opts || !opts->name || !valid_name(opts->name) || !params || !be)
        return -EINVAL;
    /* virtio 1.2 2.7: split rings need a power-of-two size. */
    if (params->queue_size & (params->queue_size - 1))
        return -EINVAL;
    struct vblk_vduse *v;
    int rc = vduse_alloc(params, be, &vduse_kernel_kops, NULL, &v);
    if (rc < 0)
        return rc;
    strcpy(v->name, opts->name);
    v->log = opts->log;
    v->log_opaque = opts->log_opaque;
    v->log_level = opts->log_level;
    v->exit_on_detach = opts->exit_on_detach;

    bool created = false;
    rc = vduse_ctl_open(&v->ctlfd);
    if (rc < 0)
        goto fail;
    uint8_t config[sizeof(struct vblk_config)];
    uint32_t config_size = vblk_dev_config_size(&v->dev);
    if (config_size > sizeof(config)) {
        rc = -EINVAL;
        goto fail;
    }
    vblk_dev_config_read(&v->dev, 0, config, config_size);
    uint64_t features = vblk_dev_features(&v->dev) | VBLK_BIT(VBLK_F_ACCESS_PLATFORM);
    rc = vduse_ctl_create(v->ctlfd, v->name, features, v->nq, config, config_size);
    if (rc == -EEXIST && opts->reclaim) {
        /* The kernel destroys only a device that nobody has open and that
         * is off the vDPA bus: one left behind by a process that died. */
        if (vduse_ctl_destroy(v->ctlfd, v->name, false) == 0) {
            vduse_log(v, VBLK_LOG_INFO, "destroyed the stale VDUSE device %s", v->name);
            rc = vduse_ctl_create(v->ctlfd, v->name, features, v->nq, config, config_size);
        }
    }
    if (rc < 0)
        goto fail;
    created = true;
    rc = vduse_node_open(v->name, &v->devfd);
    if (rc < 0)
        goto fail;
    v->k = (void *)(intptr_t)v->devfd;
    rc = vduse_node_setup_vqs(v->devfd, v->nq, v->params.queue_size);
    if (rc < 0)
        goto fail;
    rc = setup_loop(v);
    if (rc < 0)
        goto fail;
    *out = v;
    return 0;
fail:
    if (created) {
        if (v->devfd >= 0)
            close(v->devfd);
        v->devfd = -1;
        (void)vduse_ctl_destroy(v->ctlfd, v->name, true);
    }
    vduse_free(v);
    return rc;
}

void vblk_vduse_destroy(struct vblk_vduse *v)
{
    if (!v)
        return;
    int rc = 0;
    for (uint16_t i = 0; i < v->nq; i++)
        vduse_vq_stop(v, i);
    vduse_iotlb_drop(v, 0, UINT64_MAX);
    /* The kernel destroys only a device nobody has open. */
    if (v->devfd >= 0) {
        close(v->devfd);
        v->devfd = -1;
    }
    if (v->ctlfd >= 0 && v->name[0])
        rc = vduse_ctl_destroy(v->ctlfd, v->name, true);
    if (rc == -EBUSY)
        vduse_log(v, VBLK_LOG_WARN,
                  "the kernel keeps VDUSE device %s until its vDPA device is deleted", v->name);
    else if (rc < 0)
        vduse_log(v, VBLK_LOG_WARN, "cannot destroy VDUSE device %s: %s", v->name, strerror(-rc));
    vduse_free(v);
}

static int handle_requests(struct vblk_vduse *v)
{
    /* Larger than a request, so that a kernel with a different request
     * size shows up as a bad length rather than a short copy. */
    uint8_t req[2 * VBLK_VDUSE_MSG_SIZE];
    uint8_t resp[VBLK_VDUSE_MSG_SIZE];
    for (;;) {
        ssize_t n = read(v->devfd, req, sizeof(req));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 0;
            return -errno;
        }
        if (n == 0)
            return 0;
        v->last_request = now_ms();
        int len = vblk_vduse_handle_request(v, req, (size_t)n, resp, sizeof(resp));
        if (len < 0) {
            vduse_log(v, VBLK_LOG_WARN, "ignored a kernel request of %zd bytes", n);
            continue;
        }
        ssize_t w;
        do {
            w = write(v->devfd, resp, (size_t)len);
        } while (w < 0 && errno == EINTR);
        /* ENOENT: the kernel gave up waiting for this answer. */
        if (w < 0)
            vduse_log(v, VBLK_LOG_ERR, "answering a kernel request: %s", strerror(errno));
    }
}

/*
 * `vdpa dev del` takes the device off the bus (its sysfs entry goes) before
 * the driver lets go and resets it (virtio then sets ACKNOWLEDGE again), and
 * the kernel waits for the device to answer. So the device is gone only once
 * its entry is gone, the driver has stopped it, and the kernel has been
 * quiet for a while; closing earlier would leave the kernel waiting for an
 * answer until its message timeout.
 */
static void check_detach(struct vblk_vduse *v)
{
    char path[sizeof(SYSFS_VDPA) + VBLK_VDUSE_NAME_MAX];
    snprintf(path, sizeof(path), SYSFS_VDPA "%s", v->name);
    uint64_t now = now_ms();
    if (access(path, F_OK) == 0) {
        v->attached = true;
        v->gone_since = 0;
        return;
    }
    if (!v->attached || v->detached)
        return;
    if (!v->gone_since)
        v->gone_since = now;
    if (!(v->status & VBLK_STATUS_DRIVER_OK) && now - v->gone_since >= DETACH_QUIET_MS &&
        now - v->last_request >= DETACH_QUIET_MS) {
        v->detached = true;
        vduse_log(v, VBLK_LOG_INFO, "vDPA device %s was deleted", v->name);
    }
}

static void drain(int fd)
{
    uint64_t n;
    (void)!read(fd, &n, sizeof(n));
}

int vblk_vduse_poll(struct vblk_vduse *v, int timeout_ms)
{
    if (v->error)
        return v->error;
    struct epoll_event ev[32];
    int n = epoll_wait(v->epfd, ev, 32, timeout_ms);
    if (n < 0)
        return -errno;
    for (int i = 0; i < n; i++) {
        enum vduse_tag tag = (enum vduse_tag)(ev[i].data.u64 >> 32);
        uint16_t index = (uint16_t)ev[i].data.u64;
        switch (tag) {
        case VDUSE_TAG_DEV: {
            int rc = handle_requests(v);
            /* EPOLLERR: the kernel timed out on an answer and gave up. */
            if (rc == 0 && (ev[i].events & (EPOLLERR | EPOLLHUP)))
                rc = -EIO;
            if (rc < 0) {
                vduse_log(v, VBLK_LOG_ERR, "device file: %s", strerror(-rc));
                v->error = rc;
                return rc;
            }
            break;
        }
        case VDUSE_TAG_STOP:
            drain(v->stopfd);
            v->stop = true;
            break;
        case VDUSE_TAG_TIMER:
            drain(v->timerfd);
            check_detach(v);
            break;
        case VDUSE_TAG_KICK:
            /* The queue may have stopped earlier in this round: use only
             * its current state, never the fd the event came with. */
            if (index < v->nq && v->vqs[index].tq.live) {
                drain(v->vqs[index].kickfd);
                v->vqs[index].tq.stats.kicks++;
                vduse_vq_run(v, index);
            }
            break;
        case VDUSE_TAG_WAKE:
            if (index < v->nq && v->vqs[index].tq.live) {
                drain(v->vqs[index].tq.wake_fd);
                vduse_vq_run(v, index);
            }
            break;
        case VDUSE_TAG_BACKEND:
            if (index < v->nq)
                vduse_vq_run(v, index);
            break;
        }
    }
    return 0;
}

int vblk_vduse_run(struct vblk_vduse *v)
{
    while (!v->stop && !v->detached) {
        int rc = vblk_vduse_poll(v, -1);
        if (rc < 0 && rc != -EINTR)
            return rc;
    }
    return 0;
}

void vblk_vduse_stop(struct vblk_vduse *v)
{
    /* write(2) only: async-signal-safe. */
    (void)eventfd_write(v->stopfd, 1);
}

int vblk_vduse_fd(const struct vblk_vduse *v)
{
    return v->epfd;
}

bool vblk_vduse_attached(const struct vblk_vduse *v)
{
    return v->attached && !v->detached;
}

bool vblk_vduse_detached(const struct vblk_vduse *v)
{
    return v->detached;
}

struct vblk_dev *vblk_vduse_blk(struct vblk_vduse *v)
{
    return &v->dev;
}

struct vblk_queue *vblk_vduse_queue(struct vblk_vduse *v, uint16_t index)
{
    return index < v->nq && v->vqs[index].tq.live ? &v->vqs[index].tq.q : NULL;
}

uint16_t vblk_vduse_num_queues(const struct vblk_vduse *v)
{
    return v->nq;
}

void vblk_vduse_stats(const struct vblk_vduse *v, struct vblk_transport_stats *st)
{
    *st = v->stats;
    st->connections = v->attached ? 1 : 0;
}

int vblk_vduse_queue_stats(const struct vblk_vduse *v, uint16_t index,
                           struct vblk_transport_queue_stats *st)
{
    if (!v || index >= v->nq || !st)
        return -EINVAL;
    const struct vduse_vq *vq = &v->vqs[index];
    tq_stats(&vq->tq, st);
    st->thread = -1;
    return 0;
}

int vblk_vduse_update_config(struct vblk_vduse *v)
{
    uint8_t config[sizeof(struct vblk_config)];
    uint32_t size = vblk_dev_config_size(&v->dev);
    if (size > sizeof(config))
        return -EINVAL;
    vblk_dev_config_read(&v->dev, 0, config, size);
    int rc = v->kops->set_config(v->k, 0, config, size);
    if (rc < 0)
        return rc;
    /* Without DRIVER_OK there is nobody to tell; the driver reads the new
     * config when it sets the device up. */
    if (!(v->status & VBLK_STATUS_DRIVER_OK))
        return 0;
    return v->kops->config_irq(v->k);
}
