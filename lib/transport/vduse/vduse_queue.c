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

#include "transport/vduse/vduse_internal.h"

static void on_notify(void *opaque)
{
    struct vduse_vq *vq = opaque;
    vq->tq.stats.notifies++;
    /* Fails only while the driver is not running the device, when the
     * interrupt does not matter. */
    (void)vq->v->kops->inject_irq(vq->v->k, vq->index);
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
    vduse_unwatch(vq->v, vq->tq.wake_fd);
    if (vq->tq.be_fd >= 0)
        vduse_unwatch(vq->v, vq->tq.be_fd);
}

/* Starts @vq over rings at @addrs with @size entries from position @st. */
static int start(struct vblk_vduse *v, struct vduse_vq *vq, uint16_t size,
                 const struct vblk_vq_addrs *addrs, const struct vblk_vq_state *st)
{
    vq->kickfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (vq->kickfd < 0)
        return -errno;
    int rc = v->kops->set_kickfd(v->k, vq->index, vq->kickfd);
    if (rc < 0) {
        close_fd(&vq->kickfd);
        return rc;
    }
    struct vblk_queue_params qp = {
        .index = vq->index,
        .size = size,
        .addrs = *addrs,
        .state = st,
        .notify = on_notify,
        .notify_opaque = vq,
    };
    rc = tq_start(&vq->tq, &v->dev, &v->mem, &qp, true);
    if (rc < 0) {
        (void)v->kops->set_kickfd(v->k, vq->index, -1);
        close_fd(&vq->kickfd);
        return rc;
    }
    vq->size = size;
    vq->addrs = *addrs;
    vq->kicks0 = vq->tq.stats.kicks;
    vq->notifies0 = vq->tq.stats.notifies;
    vduse_watch(v, vq->kickfd, VDUSE_TAG_KICK, vq->index);
    vduse_watch(v, vq->tq.wake_fd, VDUSE_TAG_WAKE, vq->index);
    if (vq->tq.be_fd >= 0)
        vduse_watch(v, vq->tq.be_fd, VDUSE_TAG_BACKEND, vq->index);
    /* The driver may have made buffers available before the kick fd was
     * in place. */
    vduse_vq_run(v, vq->index);
    return 0;
}

int vduse_vq_start(struct vblk_vduse *v, uint16_t index)
{
    struct vduse_vq *vq = &v->vqs[index];
    if (vq->tq.live)
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
        vduse_log(v, VBLK_LOG_WARN, "queue %u: enabled but never set up; left unused", index);
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
    if (vq->tq.live || vq->broken || !vq->tq.have_saved)
        return 0;
    struct vblk_vq_state st = vq->tq.saved;
    struct vblk_vq_addrs addrs = vq->addrs;
    return start(v, vq, vq->size, &addrs, &st);
}

/* A stop that waits long for the backend says so. */
static void drain_warn(void *opaque, uint32_t inflight, unsigned waited_ms)
{
    struct vduse_vq *vq = opaque;
    vduse_log(vq->v, VBLK_LOG_WARN, "queue %u: still waiting for %u requests after %u ms",
              vq->index, inflight, waited_ms);
}

void vduse_vq_stop(struct vblk_vduse *v, uint16_t index)
{
    struct vduse_vq *vq = &v->vqs[index];
    if (!vq->tq.live)
        return;
    unwatch_all(vq);
    (void)v->kops->set_kickfd(v->k, index, -1);
    close_fd(&vq->kickfd);
    /* The backend finishes what it started before the driver memory its
     * buffers point to can be unmapped (tqueue.h). */
    uint64_t before = vq->tq.stats.req.completed, mr = vq->tq.stats.req.multi_range;
    tq_stop(&vq->tq, drain_warn, vq);
    vduse_log(v, VBLK_LOG_INFO,
              "queue %u stopped: %llu requests, %llu kicks, %llu interrupts, %llu multi-range",
              index, (unsigned long long)(vq->tq.stats.req.completed - before),
              (unsigned long long)(vq->tq.stats.kicks - vq->kicks0),
              (unsigned long long)(vq->tq.stats.notifies - vq->notifies0),
              (unsigned long long)(vq->tq.stats.req.multi_range - mr));
}

void vduse_vq_run(struct vblk_vduse *v, uint16_t index)
{
    struct vduse_vq *vq = &v->vqs[index];
    if (!vq->tq.live)
        return;
    if (vq->broken) {
        /* Only reap what the backend finishes, so its requests are
         * released; the ring itself is not touched again. */
        (void)vblk_queue_process(&vq->tq.q, 0);
        return;
    }
    int rc = vblk_queue_on_kick(&vq->tq.q);
    if (vduse_fault_check(v) || rc != -EIO)
        return;
    /* VDUSE has no way to set DEVICE_NEEDS_RESET: stop serving the queue
     * until the driver resets the device. Kicks are ignored from now on. */
    vq->broken = true;
    vq->tq.stats.broken++;
    v->stats.broken_queues++;
    vduse_unwatch(v, vq->kickfd);
    vduse_log(v, VBLK_LOG_ERR, "queue %u: the driver corrupted the ring; queue stopped until reset",
              index);
}

void vduse_vq_get_state(const struct vblk_vduse *v, uint16_t index, struct vblk_vq_state *st)
{
    const struct vduse_vq *vq = &v->vqs[index];
    if (vq->tq.live) {
        vblk_queue_get_state(&vq->tq.q, st);
    } else if (vq->tq.have_saved) {
        *st = vq->tq.saved;
    } else {
        memset(st, 0, sizeof(*st));
        st->avail_wrap = 1;
        st->used_wrap = 1;
    }
}

void vduse_vq_forget(struct vblk_vduse *v, uint16_t index)
{
    struct vduse_vq *vq = &v->vqs[index];
    vq->tq.have_saved = false;
    vq->broken = false;
    memset(&vq->tq.saved, 0, sizeof(vq->tq.saved));
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
        if (!vq->tq.live || vq->broken)
            continue;
        vq->broken = true;
        v->stats.broken_queues++;
        vduse_unwatch(v, vq->kickfd);
    }
    vduse_log(v, VBLK_LOG_ERR,
              "an IOTLB mapping faulted (%u faults contained); queues stopped until reset", n);
    return true;
}
