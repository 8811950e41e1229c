/* SPDX-License-Identifier: MIT */
/* vhost-user queues: starting and stopping rings on the core, the fds that
 * wake a queue's event loop, and the processing entry point.
 *
 * Each queue has a mutex. The thread that processes the queue holds it for
 * one vblk_queue_on_kick(); the message handler holds it while it reconfigures
 * the queue. ctl_waiting tells a busy-polling thread to step aside so the
 * handler gets the lock promptly.
 *
 * No front-end fd is read or written under the lock: kicks are edge-
 * triggered events in the queue's epoll set (never read), and used-buffer
 * and error notifications are noted under the lock and sent by the thread
 * that releases it (vu_notify.c says why that is enough). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "vu_internal.h"

enum { EV_WAKE, EV_KICK, EV_BACKEND };

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The ring asks for a used-buffer notification. With coalescing, a queue
 * thread that is polling holds it back until enough are due or the oldest
 * has waited coalesce_us; flush_held() sends what is held when it stops. */
static void on_notify(void *opaque)
{
    struct vu_queue *q = opaque;
    const struct vblk_vu_opts *o = &q->d->opts;
    if (!o->coalesce_us || !atomic_load_explicit(&q->polling, memory_order_relaxed)) {
        q->call_pending = true;
        return;
    }
    if (q->held++ == 0)
        q->held_since = now_ns();
    if (q->held >= o->coalesce_count) {
        q->held = 0;
        q->call_pending = true;
    }
}

/* Sends held notifications: all of them (@all), or those past the bound. */
static void flush_held(struct vu_queue *q, bool all)
{
    if (q->held && (all || now_ns() - q->held_since >= q->d->opts.coalesce_us * 1000ull)) {
        q->held = 0;
        q->call_pending = true;
    }
}

/* Wakes the queue's loop. The eventfd is edge-triggered and never read:
 * every write is one event. */
static void wake(struct vu_queue *q)
{
    (void)eventfd_write(q->tq.wake_fd, 1);
}

static void watch(struct vu_queue *q, int fd, uint32_t tag, uint32_t events, bool add)
{
    struct epoll_event ev = {.events = events, .data.u32 = tag};
    if (fd >= 0)
        (void)epoll_ctl(q->epfd, add ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev);
}

/* The notifications noted under the lock, with references taken. */
struct pending {
    struct vu_notifier *call, *err;
};

static void take_pending(struct vu_queue *q, struct pending *p)
{
    p->call = p->err = NULL;
    /* A broken device reports only the error: its call fd may be the
     * reason it broke. */
    if (q->call_pending && q->call && !atomic_load_explicit(&q->broken, memory_order_relaxed)) {
        p->call = q->call;
        vu_notifier_get(p->call);
        q->tq.stats.notifies++;
    }
    if (q->err_pending && q->err) {
        p->err = q->err;
        vu_notifier_get(p->err);
    }
    q->call_pending = q->err_pending = false;
}

/* The message handler's thread must never block: it writes only while
 * the front-end has left the fd non-blocking (it can clear the flag on its
 * side of the shared description). A queue thread writes regardless, and
 * the watchdog releases it if the write blocks. */
static bool may_block(const struct vu_notifier *n)
{
    int fl = fcntl(n->fd, F_GETFL);
    return fl < 0 || !(fl & O_NONBLOCK);
}

static void send_pending(struct vu_queue *q, struct pending *p, bool handler)
{
    struct vu_notifier *n[2] = {p->call, p->err};
    for (int i = 0; i < 2; i++) {
        if (!n[i])
            continue;
        if (handler && may_block(n[i])) {
            vu_log(q->d, VBLK_LOG_ERR,
                   "queue %u: the front-end made its %s fd blocking; device needs reset", q->index,
                   i ? "err" : "call");
            (void)vu_queue_break(q);
            atomic_store(&q->active, false);
        } else {
            vu_notifier_signal(n[i]);
            /* A polling thread would keep a driver it just woke on this CPU
             * from running until its time slice ends: let it go first. */
            if (i == 0 && !handler && atomic_load_explicit(&q->polling, memory_order_relaxed))
                sched_yield();
        }
        vu_notifier_put(n[i]);
    }
}

static void unlock_and_signal(struct vu_queue *q, bool handler)
{
    struct pending p;
    take_pending(q, &p);
    pthread_mutex_unlock(&q->lock);
    send_pending(q, &p, handler);
}

int vu_queue_setup(struct vblk_vu_dev *d, struct vu_queue *q, uint16_t index)
{
    memset(q, 0, sizeof(*q));
    q->d = d;
    q->index = index;
    q->kick_fd = -1;
    q->epfd = epoll_create1(EPOLL_CLOEXEC);
    int err = q->epfd < 0 ? -errno : tq_init(&q->tq, true);
    if (err < 0) {
        if (q->epfd >= 0)
            close(q->epfd);
        q->epfd = -1;
        return err;
    }
    watch(q, q->tq.wake_fd, EV_WAKE, EPOLLIN | EPOLLET, true);
    pthread_mutex_init(&q->lock, NULL);
    atomic_init(&q->ctl_waiting, 0);
    atomic_init(&q->active, false);
    atomic_init(&q->times_broken, 0);
    atomic_init(&q->thread, -1);
    return 0;
}

void vu_queue_teardown(struct vu_queue *q)
{
    if (q->epfd < 0)
        return;
    vu_queue_lock(q);
    vu_queue_reset(q);
    vu_queue_unlock(q);
    tq_fini(&q->tq);
    close(q->epfd);
    q->epfd = -1;
    pthread_mutex_destroy(&q->lock);
}

void vu_queue_lock(struct vu_queue *q)
{
    atomic_fetch_add(&q->ctl_waiting, 1);
    pthread_mutex_lock(&q->lock);
}

void vu_queue_unlock(struct vu_queue *q)
{
    unlock_and_signal(q, true);
    atomic_fetch_sub(&q->ctl_waiting, 1);
}

void vu_lock_all(struct vblk_vu_dev *d)
{
    for (uint16_t i = 0; i < d->nq; i++)
        vu_queue_lock(&d->q[i]);
}

void vu_unlock_all(struct vblk_vu_dev *d)
{
    for (uint16_t i = d->nq; i-- > 0;)
        vu_queue_unlock(&d->q[i]);
}

void vu_queue_poke(struct vu_queue *q)
{
    wake(q);
}

void vu_queue_update_active(struct vu_queue *q)
{
    bool on = q->tq.live && q->enabled && !q->broken;
    atomic_store(&q->active, on);
    /* Wake the loop: it processes what arrived meanwhile, or a polling
     * thread notices it has something to spin on. */
    vu_queue_poke(q);
}

void vu_queue_set_kick(struct vu_queue *q, int fd)
{
    watch(q, q->kick_fd, EV_KICK, 0, false);
    if (q->kick_fd >= 0)
        close(q->kick_fd);
    q->kick_fd = fd;
    watch(q, fd, EV_KICK, EPOLLIN | EPOLLET, true);
}

int vu_queue_set_notifier(struct vu_queue *q, bool err, int fd)
{
    struct vu_notifier **slot = err ? &q->err : &q->call;
    struct vu_notifier *n = NULL;
    if (fd >= 0 && !(n = vu_notifier_new(fd))) {
        close(fd);
        return -ENOMEM;
    }
    /* A thread signalling through the old one holds its own reference. */
    vu_notifier_put(*slot);
    *slot = n;
    return 0;
}

unsigned vu_queue_watchdog(struct vu_queue *q)
{
    unsigned released = 0;
    vu_queue_lock(q);
    struct vu_notifier *n[2] = {q->call, q->err};
    for (int i = 0; i < 2; i++) {
        if (!n[i] || !vu_notifier_stuck(n[i]))
            continue;
        vu_notifier_unstick(n[i]);
        released++;
        if (!vu_queue_break(q))
            vu_log(q->d, VBLK_LOG_ERR,
                   "queue %u: a write to the front-end's %s fd blocked; device needs reset",
                   q->index, i ? "err" : "call");
        atomic_store(&q->active, false);
    }
    vu_queue_unlock(q);
    return released;
}

void vu_queue_set_enabled(struct vu_queue *q, bool enabled)
{
    q->enabled = enabled;
    if (!enabled) {
        /* A disabled ring is not processed: finish its requests and let go
         * of the core queue (and the backend's fd), keeping its position. */
        vu_queue_quiesce(q);
    } else if (q->started && !q->tq.live) {
        int rc = vu_queue_start(q);
        if (rc < 0) {
            vu_log(q->d, VBLK_LOG_ERR, "queue %u: cannot restart: %d", q->index, rc);
            (void)vu_queue_break(q);
        }
    }
    vu_queue_update_active(q);
}

void vu_ring_sizes(bool packed, uint32_t num, uint64_t *desc, uint64_t *avail, uint64_t *used)
{
    *desc = 16ull * num;
    if (packed) {
        /* virtio 1.2 2.8.10: the event suppression structures. */
        *avail = 4;
        *used = 4;
    } else {
        *avail = VBLK_SPLIT_AVAIL_SIZE(num);
        *used = VBLK_SPLIT_USED_SIZE(num);
    }
}

/* Bits 0-14: avail index, 15: avail wrap counter; bits 16-30 and 31: the
 * same for the used side. A front-end that sends only the low half means
 * "everything fetched was used". */
static void packed_base_decode(uint32_t b, struct vblk_vq_state *st)
{
    uint32_t used = b >> 16 ? b >> 16 : (b & 0xffff);
    st->last_avail_idx = vblk_off_wrap_pos((uint16_t)b);
    st->avail_wrap = vblk_off_wrap_wrap((uint16_t)b);
    st->used_idx = vblk_off_wrap_pos((uint16_t)used);
    st->used_wrap = vblk_off_wrap_wrap((uint16_t)used);
}

/* The starting ring position when the front-end (re)starts a ring. */
static int initial_state(struct vu_queue *q, uint64_t used_gpa, struct vblk_vq_state *st)
{
    memset(st, 0, sizeof(*st));
    if (vu_packed(q->d)) {
        packed_base_decode(q->base, st);
        return 0;
    }
    /* Split: the used index lives in guest memory. */
    const uint16_t *idx = vblk_mem_ptr(&q->mem, used_gpa + 2, 2);
    if (!idx)
        return -EFAULT;
    st->last_avail_idx = (uint16_t)q->base;
    st->used_idx = __atomic_load_n(idx, __ATOMIC_ACQUIRE);
    return 0;
}

void vu_queue_refresh_log(struct vu_queue *q)
{
    struct vblk_vu_dev *d = q->d;
    bool log = d->log && vu_has_feature(d, VBLK_VU_F_LOG_ALL);
    vblk_mem_set_log(&q->mem, log ? d->log : NULL, log ? d->log_size : 0);
}

int vu_queue_start(struct vu_queue *q)
{
    struct vblk_vu_dev *d = q->d;
    if (q->tq.live)
        return 0;
    if (!d->features_set || !q->addr_set || q->num == 0 || d->mem.n == 0)
        return -EINVAL;
    bool packed = vu_packed(d);
    if (q->num > d->params.queue_size || (!packed && (q->num & (q->num - 1))))
        return -EINVAL;

    struct vblk_queue_params qp = {
        .index = q->index,
        .size = (uint16_t)q->num,
        .notify = on_notify,
        .notify_opaque = q,
        .hooks_opaque = q,
    };
    uint64_t ldesc, lavail, lused;
    vu_ring_sizes(packed, q->num, &ldesc, &lavail, &lused);
    if (vu_mem_ua_to_gpa(&d->mem, q->ua_desc, ldesc, &qp.addrs.desc) < 0 ||
        vu_mem_ua_to_gpa(&d->mem, q->ua_avail, lavail, &qp.addrs.driver) < 0 ||
        vu_mem_ua_to_gpa(&d->mem, q->ua_used, lused, &qp.addrs.device) < 0)
        return -EFAULT;
    memcpy(&q->mem, &d->map, sizeof(q->mem));
    vu_queue_refresh_log(q);

    struct vblk_vq_state st;
    if (q->tq.have_saved) {
        st = q->tq.saved;
    } else {
        int rc = initial_state(q, qp.addrs.device, &st);
        if (rc < 0)
            return rc;
    }
    int nres = vu_inflight_prepare(q, qp.addrs.desc, &st);
    if (nres < 0)
        return nres;
    qp.state = &st;
    qp.hooks = vu_inflight_hooks(q);

    int rc = tq_start(&q->tq, &d->dev, &q->mem, &qp, vu_notify_mode(d) != VBLK_NOTIFY_POLL);
    if (rc < 0) {
        vu_inflight_drop_plan(q);
        return rc;
    }
    atomic_store(&q->broken, false);
    watch(q, q->tq.be_fd, EV_BACKEND, EPOLLIN, true);
    if (vu_notify_mode(d) == VBLK_NOTIFY_POLL)
        atomic_store(&q->polling, true);
    if (atomic_load(&q->polling))
        vblk_queue_set_polling(&q->tq.q, true);

    /* Requests a previous back-end had fetched but not completed: the
     * driver is still waiting for them (vhost-user inflight tracking). */
    if (nres) {
        int done = vu_inflight_resubmit(q);
        q->tq.stats.resubmitted += (uint64_t)done;
        vblk_queue_flush(&q->tq.q);
        vu_log(d, VBLK_LOG_INFO, "queue %u: resubmitted %d in-flight requests", q->index, done);
    }
    vu_log(d, VBLK_LOG_INFO, "queue %u: started (%s ring, %u entries, avail %u used %u)", q->index,
           packed ? "packed" : "split", q->num, st.last_avail_idx, st.used_idx);
    vu_queue_update_active(q);
    return 0;
}

/* A stop that waits long for the backend says so. */
static void drain_warn(void *opaque, uint32_t inflight, unsigned waited_ms)
{
    struct vu_queue *q = opaque;
    vu_log(q->d, VBLK_LOG_WARN, "queue %u: still waiting for %u requests after %u ms", q->index,
           inflight, waited_ms);
}

void vu_queue_quiesce(struct vu_queue *q)
{
    if (!q->tq.live)
        return;
    watch(q, q->tq.be_fd, EV_BACKEND, 0, false);
    tq_stop(&q->tq, drain_warn, q);
    vu_queue_update_active(q);
}

void vu_queue_stop(struct vu_queue *q, struct vblk_vq_state *st)
{
    bool ran = q->tq.live || q->tq.have_saved;
    vu_queue_quiesce(q);
    if (q->tq.have_saved) {
        *st = q->tq.saved;
    } else {
        /* Never started: nothing was fetched, report what was set. */
        memset(st, 0, sizeof(*st));
        if (vu_packed(q->d))
            packed_base_decode(q->base, st);
        else
            st->last_avail_idx = (uint16_t)q->base;
    }
    q->tq.have_saved = false;
    q->started = false;
    vu_queue_set_kick(q, -1);
    if (ran)
        vu_log(q->d, VBLK_LOG_INFO, "queue %u: stopped at avail %u used %u", q->index,
               st->last_avail_idx, st->used_idx);
}

void vu_queue_reset(struct vu_queue *q)
{
    vu_queue_quiesce(q);
    q->tq.have_saved = false;
    q->started = false;
    q->enabled = false;
    q->addr_set = false;
    q->num = q->base = q->addr_flags = 0;
    vu_queue_set_kick(q, -1);
    /* A queue thread blocked writing to one of them is released: the
     * front-end is gone or resetting, so no signal is lost. */
    for (struct vu_notifier *n = q->call; n; n = n == q->call ? q->err : NULL)
        if (atomic_load(&n->refs) > 1)
            vu_notifier_unstick(n);
    (void)vu_queue_set_notifier(q, false, -1);
    (void)vu_queue_set_notifier(q, true, -1);
    q->call_pending = q->err_pending = false;
    vu_inflight_release(q);
    atomic_store(&q->broken, false);
    vu_queue_update_active(q);
}

uint16_t vblk_vu_dev_num_queues(const struct vblk_vu_dev *d)
{
    return d->nq;
}

int vblk_vu_queue_fd(struct vblk_vu_dev *d, uint16_t qidx)
{
    return d && qidx < d->nq ? d->q[qidx].epfd : -1;
}

bool vblk_vu_queue_active(struct vblk_vu_dev *d, uint16_t qidx)
{
    return d && qidx < d->nq && atomic_load_explicit(&d->q[qidx].active, memory_order_relaxed);
}

/* Takes the queue's pending events (lock held): kicks are counted; a kick
 * fd that hung up (only a non-eventfd could) is dropped and breaks the
 * queue rather than waking the loop for ever. */
static void take_events(struct vu_queue *q)
{
    struct epoll_event ev[4];
    int n = epoll_wait(q->epfd, ev, 4, 0);
    for (int i = 0; i < n; i++) {
        if (ev[i].data.u32 != EV_KICK)
            continue;
        if (ev[i].events & (EPOLLHUP | EPOLLERR)) {
            vu_queue_set_kick(q, -1);
            if (!vu_queue_break(q))
                vu_log(q->d, VBLK_LOG_ERR, "queue %u: the kick fd hung up; device needs reset",
                       q->index);
            atomic_store(&q->active, false);
            q->err_pending = true;
        } else {
            q->tq.stats.kicks++;
        }
    }
}

int vblk_vu_queue_process(struct vblk_vu_dev *d, uint16_t qidx)
{
    if (!d || qidx >= d->nq)
        return -EINVAL;
    struct vu_queue *q = &d->q[qidx];
    bool polling = atomic_load_explicit(&q->polling, memory_order_relaxed) &&
                   atomic_load_explicit(&q->active, memory_order_relaxed);
    /* A spinning poller would starve the message handler of the lock. */
    if (polling && atomic_load_explicit(&q->ctl_waiting, memory_order_relaxed))
        return 0;
    pthread_mutex_lock(&q->lock);
    if (!polling)
        take_events(q);
    int rc = 0;
    if (q->tq.live && q->enabled) {
        rc = vblk_queue_on_kick(&q->tq.q);
        if (vu_faulted(d) && !atomic_load(&q->broken)) {
            /* The run touched front-end memory that faulted (fault_guard.h). */
            rc = vu_queue_fault(q);
        } else if (rc == -EIO && !vu_queue_break(q)) {
            /* The driver corrupted the ring: report DEVICE_NEEDS_RESET. */
            atomic_store(&q->active, false);
            q->err_pending = true;
            vu_log(d, VBLK_LOG_ERR, "queue %u: the driver broke the ring; device needs reset",
                   q->index);
        }
    }
    /* A thread that is not polling sleeps next: nothing may stay held. */
    flush_held(q, !polling);
    unlock_and_signal(q, false);
    return rc;
}

int vblk_vu_queue_set_polling(struct vblk_vu_dev *d, uint16_t qidx, bool on)
{
    if (!d || qidx >= d->nq)
        return -EINVAL;
    struct vu_queue *q = &d->q[qidx];
    if (vu_notify_mode(d) == VBLK_NOTIFY_POLL)
        on = true;
    int found = 0;
    pthread_mutex_lock(&q->lock);
    atomic_store_explicit(&q->polling, on, memory_order_relaxed);
    /* Events that arrived while polling are stale: the look below covers
     * them, and left in place they would end the coming sleep at once. */
    if (!on)
        take_events(q);
    if (q->tq.live && q->enabled) {
        vblk_queue_set_polling(&q->tq.q, on);
        /* Kicks are on again: look once more, as vblk_queue_on_kick() does,
         * for what the driver published before it saw them enabled. */
        if (!on)
            found = vblk_queue_on_kick(&q->tq.q);
    }
    if (!on)
        flush_held(q, true);
    unlock_and_signal(q, false);
    return found < 0 ? 0 : found;
}

int vblk_vu_queue_stats(struct vblk_vu_dev *d, uint16_t qidx, struct vblk_transport_queue_stats *st)
{
    if (!d || qidx >= d->nq || !st)
        return -EINVAL;
    struct vu_queue *q = &d->q[qidx];
    vu_queue_lock(q);
    tq_stats(&q->tq, st);
    vu_queue_unlock(q);
    st->broken = atomic_load_explicit(&q->times_broken, memory_order_relaxed);
    st->thread = atomic_load_explicit(&q->thread, memory_order_relaxed);
    return 0;
}

void vblk_vu_dev_stats(struct vblk_vu_dev *d, struct vblk_transport_stats *st)
{
    const uint64_t *src = (const uint64_t *)&d->stats;
    uint64_t *dst = (uint64_t *)st;
    for (size_t i = 0; i < sizeof(*st) / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
    st->broken_queues = 0;
    for (uint16_t i = 0; i < d->nq; i++)
        st->broken_queues += atomic_load_explicit(&d->q[i].times_broken, memory_order_relaxed);
    st->mapping_faults = fault_owner_count(&d->fault);
}

bool vu_any_live(const struct vblk_vu_dev *d)
{
    for (uint16_t i = 0; i < d->nq; i++)
        if (d->q[i].tq.live)
            return true;
    return false;
}

int vu_queue_fault(struct vu_queue *q)
{
    struct vblk_vu_dev *d = q->d;
    /* No more requests from this ring; completions are still reaped until
     * the detach drains it. */
    (void)vblk_queue_stop(&q->tq.q);
    (void)vu_queue_break(q);
    atomic_store(&q->active, false);
    q->err_pending = true; /* sent when the lock is released */
    vu_log(d, VBLK_LOG_ERR,
           "queue %u: the front-end's memory faulted (%u faults contained); "
           "device needs reset, disconnecting",
           q->index, fault_owner_count(&d->fault) - atomic_load(&d->faults_before));
    /* The control loop sees the socket hang up and detaches, which stops
     * every queue and unmaps the front-end's files. The fd stays open
     * until then (detach clears fault_sock under this lock first). */
    if (d->fault_sock >= 0)
        (void)shutdown(d->fault_sock, SHUT_RDWR);
    return -EIO;
}
