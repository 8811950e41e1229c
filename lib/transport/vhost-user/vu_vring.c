/* SPDX-License-Identifier: MIT */
/* vhost-user ring messages: SET_VRING_NUM / ADDR / BASE / KICK / CALL /
 * ERR / ENABLE and GET_VRING_BASE. Each validates the queue index and its
 * values, then changes the queue under its lock. */
#include <errno.h>
#include <unistd.h>

#include "vu_internal.h"

static struct vu_queue *queue_of(struct vblk_vu_dev *d, uint32_t index)
{
    return index < d->nq ? &d->q[index] : NULL;
}

int vu_h_set_vring_num(struct vblk_vu_dev *d, struct vu_msg *m)
{
    struct vu_queue *q = queue_of(d, m->p.state.index);
    uint32_t num = m->p.state.num;
    if (!q)
        return -EINVAL;
    /* virtio 1.2 2.7 / 2.8: 1..32768, a power of two for split rings. */
    if (num == 0 || num > VBLK_QUEUE_SIZE_MAX || num > d->params.queue_size ||
        (d->features_set && !vu_packed(d) && (num & (num - 1)))) {
        vu_log(d, VBLK_LOG_WARN, "queue %u: ring size %u refused (1..%u%s)", q->index, num,
               d->params.queue_size, vu_packed(d) ? "" : ", a power of two");
        return -EINVAL;
    }
    int rc = 0;
    vu_queue_lock(q);
    if (q->tq.live)
        rc = -EBUSY;
    else
        q->num = num;
    vu_queue_unlock(q);
    return rc;
}

int vu_h_set_vring_addr(struct vblk_vu_dev *d, struct vu_msg *m)
{
    const struct vu_vring_addr *a = &m->p.addr;
    struct vu_queue *q = queue_of(d, a->index);
    if (!q)
        return -EINVAL;
    if (d->mem.n == 0)
        return -EINVAL;
    /* Every ring area must lie inside guest memory (whole, once the size
     * is known). */
    uint64_t ldesc = 1, lavail = 1, lused = 1, gpa;
    if (q->num)
        vu_ring_sizes(vu_packed(d), q->num, &ldesc, &lavail, &lused);
    if (vu_mem_ua_to_gpa(&d->mem, a->desc, ldesc, &gpa) < 0 ||
        vu_mem_ua_to_gpa(&d->mem, a->avail, lavail, &gpa) < 0 ||
        vu_mem_ua_to_gpa(&d->mem, a->used, lused, &gpa) < 0)
        return -EFAULT;
    int rc = 0;
    vu_queue_lock(q);
    q->ua_desc = a->desc;
    q->ua_avail = a->avail;
    q->ua_used = a->used;
    q->log_addr = a->log;
    q->addr_flags = a->flags;
    q->addr_set = true;
    if (q->tq.live) {
        /* Typically the front-end turning used-ring logging on for
         * migration: restart the ring where it is. */
        vu_queue_quiesce(q);
        rc = vu_queue_start(q);
        if (rc < 0) {
            (void)vu_queue_break(q);
            vu_queue_update_active(q);
        }
    }
    vu_queue_unlock(q);
    return rc;
}

int vu_h_set_vring_base(struct vblk_vu_dev *d, struct vu_msg *m)
{
    struct vu_queue *q = queue_of(d, m->p.state.index);
    if (!q)
        return -EINVAL;
    /* Split rings have a 16-bit index; packed ones encode both sides. */
    if (d->features_set && !vu_packed(d) && m->p.state.num > UINT16_MAX)
        return -EINVAL;
    int rc = 0;
    vu_queue_lock(q);
    if (q->tq.live) {
        rc = -EBUSY;
    } else {
        q->base = m->p.state.num;
        q->tq.have_saved = false;
    }
    vu_queue_unlock(q);
    return rc;
}

int vu_h_get_vring_base(struct vblk_vu_dev *d, struct vu_msg *m, struct vblk_vu_reply *rep)
{
    struct vu_queue *q = queue_of(d, m->p.state.index);
    if (!q)
        return -EPROTO;
    struct vblk_vq_state st;
    vu_queue_lock(q);
    vu_queue_stop(q, &st);
    vu_queue_unlock(q);
    struct vu_vring_state out = {m->p.state.index, st.last_avail_idx};
    if (vu_packed(d)) {
        uint32_t avail = vblk_off_wrap(st.last_avail_idx, st.avail_wrap);
        uint32_t used = vblk_off_wrap(st.used_idx, st.used_wrap);
        out.num = avail | used << 16;
    }
    vu_reply(rep, m, &out, sizeof(out));
    return 0;
}

int vu_h_set_vring_fd(struct vblk_vu_dev *d, struct vu_msg *m)
{
    struct vu_queue *q = queue_of(d, (uint32_t)(m->p.u64 & VU_VRING_IDX_MASK));
    if (!q)
        return -EINVAL;
    bool nofd = (m->p.u64 & VU_VRING_NOFD) != 0;
    int fd = -1;
    if (!nofd) {
        /* Kick, call and err fds must be eventfds; they are made
         * non-blocking (vu_notify.c). */
        int rc = vu_event_fd_adopt(m->fds[0]);
        if (rc < 0) {
            vu_log(d, VBLK_LOG_WARN, "queue %u: %s refused: not an eventfd", q->index,
                   vu_req_name(m->hdr.request));
            return rc;
        }
        fd = m->fds[0];
        m->fds[0] = -1;
    }
    int rc = 0;
    vu_queue_lock(q);
    switch (m->hdr.request) {
    case VU_SET_VRING_KICK:
        /* No kick fd means "poll the ring": only possible when polling. */
        if (nofd && vu_notify_mode(d) != VBLK_NOTIFY_POLL) {
            rc = -ENOTSUP;
            break;
        }
        /* vhost-user: the ring starts when its kick fd arrives. */
        vu_queue_set_kick(q, fd);
        q->started = true;
        if (!vu_has_feature(d, VBLK_VU_F_PROTOCOL_FEATURES))
            q->enabled = true;
        rc = vu_queue_start(q);
        if (rc < 0) {
            q->started = false;
            vu_queue_set_kick(q, -1);
            vu_log(d, VBLK_LOG_WARN, "queue %u: cannot start: %d", q->index, rc);
        }
        vu_queue_update_active(q);
        break;
    default:
        /* Swapped under the lock: a thread signalling through the old
         * fd keeps it open until it is done. */
        rc = vu_queue_set_notifier(q, m->hdr.request == VU_SET_VRING_ERR, fd);
        break;
    }
    vu_queue_unlock(q);
    return rc;
}

int vu_h_set_vring_enable(struct vblk_vu_dev *d, struct vu_msg *m)
{
    struct vu_queue *q = queue_of(d, m->p.state.index);
    if (!q || m->p.state.num > 1)
        return -EINVAL;
    vu_queue_lock(q);
    vu_queue_set_enabled(q, m->p.state.num == 1);
    vu_queue_unlock(q);
    return 0;
}
