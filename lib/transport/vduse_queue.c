/* SPDX-License-Identifier: MIT */
/*
 * VDUSE queues: a vblk_queue per virtqueue the driver made ready, started
 * when the driver sets DRIVER_OK and stopped on reset (or around an IOTLB
 * invalidation, which may pull the rings from under it).
 *
 * Each running queue has two eventfds in the device's event loop: the kick
 * fd the kernel signals when the driver kicks, and a wakeup fd for
 * completions from backend threads; plus the backend's own fd if it has
 * one. Used-buffer notifications become VDUSE_VQ_INJECT_IRQ; the core
 * calls for one at most once per batch.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "transport/vduse_internal.h"

/* How long a stopping queue waits for the backend to finish its requests. */
#define DRAIN_TIMEOUT_MS 10000

static void on_notify(void *opaque)
{
    struct vduse_vq *vq = opaque;
    vq->irqs++;
    vq->v->stats.irqs++;
    /* Fails only while the driver is not running the device, when the
     * interrupt does not matter. */
    (void)vq->v->kops->inject_irq(vq->v->k, vq->index);
}

/* Runs on a backend thread: only touch the eventfd. */
static void on_wake(void *opaque)
{
    struct vduse_vq *vq = opaque;
    (void)eventfd_write(vq->wakefd, 1);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void unwatch_all(struct vduse_vq *vq)
{
    vduse_unwatch(vq->v, vq->kickfd);
    vduse_unwatch(vq->v, vq->wakefd);
    if (vq->befd >= 0)
        vduse_unwatch(vq->v, vq->befd);
}

/* Starts @vq over rings at @addrs with @size entries from position @st. */
static int start(struct vblk_vduse *v, struct vduse_vq *vq, uint16_t size,
                 const struct vblk_vq_addrs *addrs, const struct vblk_vq_state *st)
{
    int rc = -ENOMEM;
    vq->kickfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    vq->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    vq->befd = -1;
    size_t len = vblk_queue_mem_size(&v->dev, size);
    vq->pool = aligned_alloc(16, (len + 15) & ~(size_t)15);
    if (vq->kickfd < 0 || vq->wakefd < 0 || !vq->pool)
        goto fail;

    struct vblk_queue_params qp = {
        .index = vq->index,
        .size = size,
        .addrs = *addrs,
        .state = st,
        .notify = on_notify,
        .notify_opaque = vq,
        .wake = on_wake,
        .wake_opaque = vq,
    };
    rc = vblk_queue_init(&vq->q, &v->dev, &v->mem, &qp, vq->pool, len);
    if (rc < 0)
        goto fail;
    rc = v->kops->set_kickfd(v->k, vq->index, vq->kickfd);
    if (rc < 0) {
        vblk_queue_destroy(&vq->q);
        goto fail;
    }
    vq->befd = vblk_queue_backend_fd(&vq->q);
    vq->size = size;
    vq->addrs = *addrs;
    vq->kicks = 0;
    vq->irqs = 0;
    vq->running = true;
    vduse_watch(v, vq->kickfd, VDUSE_TAG_KICK, vq->index);
    vduse_watch(v, vq->wakefd, VDUSE_TAG_WAKE, vq->index);
    if (vq->befd >= 0)
        vduse_watch(v, vq->befd, VDUSE_TAG_BACKEND, vq->index);
    /* The driver may have made buffers available before the kick fd was
     * in place. */
    vduse_vq_run(v, vq->index);
    return 0;
fail:
    free(vq->pool);
    vq->pool = NULL;
    close_fd(&vq->kickfd);
    close_fd(&vq->wakefd);
    return rc;
}

int vduse_vq_start(struct vblk_vduse *v, uint16_t index)
{
    struct vduse_vq *vq = &v->vqs[index];
    if (vq->running)
        return 0;
    struct vduse_abi_vq_info info;
    memset(&info, 0, sizeof(info));
    info.index = index;
    int rc = v->kops->vq_info(v->k, &info);
    if (rc < 0)
        return rc;
    if (!info.ready)
        return 0; /* the driver does not use this queue */
    if (info.num == 0 && !info.desc_addr && !info.driver_addr && !info.device_addr) {
        /* Enabled but never set up: vhost-vdpa enables every queue, also
         * those a firmware driver (SeaBIOS) left alone. A virtio-blk device
         * serves the queues that were set up, so this one stays idle until
         * the next reset. */
        vduse_log(v, "queue %u: enabled but never set up; left unused", index);
        return 0;
    }
    if (info.num == 0 || info.num > v->params.queue_size)
        return -EINVAL;

    struct vblk_vq_state st = {0};
    if (v->packed) {
        st.last_avail_idx = info.packed.last_avail_idx & 0x7fff;
        st.avail_wrap = info.packed.last_avail_counter & 1;
        st.used_idx = info.packed.last_used_idx & 0x7fff;
        st.used_wrap = info.packed.last_used_counter & 1;
        /* Positions index the ring (virtio 1.2 2.8). */
        if (st.last_avail_idx >= info.num || st.used_idx >= info.num)
            return -EINVAL;
    } else {
        /* Only the avail index is kept: every popped buffer was used. */
        st.last_avail_idx = info.split.avail_index;
        st.used_idx = info.split.avail_index;
    }
    struct vblk_vq_addrs addrs = {info.desc_addr, info.driver_addr, info.device_addr};
    return start(v, vq, (uint16_t)info.num, &addrs, &st);
}

int vduse_vq_resume(struct vblk_vduse *v, uint16_t index)
{
    struct vduse_vq *vq = &v->vqs[index];
    if (vq->running || vq->broken || !vq->have_state)
        return 0;
    struct vblk_vq_state st = vq->state;
    struct vblk_vq_addrs addrs = vq->addrs;
    return start(v, vq, vq->size, &addrs, &st);
}

static long elapsed_ms(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

void vduse_vq_stop(struct vblk_vduse *v, uint16_t index)
{
    struct vduse_vq *vq = &v->vqs[index];
    if (!vq->running)
        return;
    /* Let the backend finish what it started; its buffers are driver
     * memory that is about to be unmapped. */
    vblk_queue_stop(&vq->q);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (vblk_queue_inflight(&vq->q)) {
        vblk_queue_process(&vq->q, 0);
        if (!vblk_queue_inflight(&vq->q) || elapsed_ms(&t0) > DRAIN_TIMEOUT_MS)
            break;
        struct pollfd pfd[2] = {{vq->wakefd, POLLIN, 0}, {vq->befd, POLLIN, 0}};
        (void)poll(pfd, vq->befd >= 0 ? 2 : 1, 10);
        uint64_t n;
        (void)eventfd_read(vq->wakefd, &n);
    }
    vblk_queue_get_state(&vq->q, &vq->state);
    vq->have_state = true;
    const struct vblk_queue_stats *qs = vblk_queue_stats(&vq->q);
    vduse_log(v, "queue %u stopped: %llu requests, %llu kicks, %llu interrupts, %llu multi-range",
              index, (unsigned long long)qs->completed, (unsigned long long)vq->kicks,
              (unsigned long long)vq->irqs, (unsigned long long)qs->multi_range);
    unwatch_all(vq);
    (void)v->kops->set_kickfd(v->k, index, -1);
    close_fd(&vq->kickfd);
    if (vblk_queue_destroy(&vq->q) == 0) {
        free(vq->pool);
        close_fd(&vq->wakefd);
    } else {
        /* The backend still owns requests: their slots must outlive it. */
        vduse_log(v, "queue %u: %u requests still in flight after %d ms, leaking its memory", index,
                  vblk_queue_inflight(&vq->q), DRAIN_TIMEOUT_MS);
    }
    vq->pool = NULL;
    vq->befd = -1;
    vq->running = false;
}

void vduse_vq_run(struct vblk_vduse *v, uint16_t index)
{
    struct vduse_vq *vq = &v->vqs[index];
    if (!vq->running)
        return;
    if (vq->broken) {
        /* Only reap what the backend finishes, so its requests are
         * released; the ring itself is not touched again. */
        (void)vblk_queue_process(&vq->q, 0);
        return;
    }
    int rc = vblk_queue_run(&vq->q);
    if (vduse_fault_check(v) || rc != -EIO)
        return;
    /* VDUSE has no way to set DEVICE_NEEDS_RESET: stop serving the queue
     * until the driver resets the device. Kicks are ignored from now on. */
    vq->broken = true;
    v->stats.broken_queues++;
    vduse_unwatch(v, vq->kickfd);
    vduse_log(v, "queue %u: the driver corrupted the ring; queue stopped until reset", index);
}

void vduse_vq_get_state(const struct vblk_vduse *v, uint16_t index, struct vblk_vq_state *st)
{
    const struct vduse_vq *vq = &v->vqs[index];
    if (vq->running) {
        vblk_queue_get_state(&vq->q, st);
    } else if (vq->have_state) {
        *st = vq->state;
    } else {
        memset(st, 0, sizeof(*st));
        st->avail_wrap = 1;
        st->used_wrap = 1;
    }
}

void vduse_vq_forget(struct vblk_vduse *v, uint16_t index)
{
    struct vduse_vq *vq = &v->vqs[index];
    vq->have_state = false;
    vq->broken = false;
    memset(&vq->state, 0, sizeof(vq->state));
}

bool vduse_fault_check(struct vblk_vduse *v)
{
    unsigned n = fault_owner_count(&v->fault);
    if (n == v->faults_handled)
        return false;
    v->stats.mapping_faults += n - v->faults_handled;
    v->faults_handled = n;
    /* Every mapping is suspect once one faulted: stop serving the rings,
     * as for a corrupted one, until the driver resets the device (which
     * drops every mapping). Requests in flight are still reaped. */
    for (uint16_t i = 0; i < v->nq; i++) {
        struct vduse_vq *vq = &v->vqs[i];
        if (!vq->running || vq->broken)
            continue;
        vq->broken = true;
        v->stats.broken_queues++;
        vduse_unwatch(v, vq->kickfd);
    }
    vduse_log(v, "an IOTLB mapping faulted (%u faults contained); queues stopped until reset", n);
    return true;
}
