/* SPDX-License-Identifier: MIT */
/*
 * Driver and device on different threads, several queues, completions out
 * of order from backend threads, and every byte checked.
 *
 * Built from the public API only: one arena stands in for guest memory
 * (identity-mapped, as the loopback transport does), each queue has a
 * driver thread (struct vblk_drv_vq) and a device thread
 * (vblk_queue_on_kick() / vblk_queue_process()), and the backend hands every
 * request to a pool of worker threads that pick them in random order and
 * finish them with vblk_req_complete_async(). The queue's wake hook and
 * the used-buffer notification are eventfds; kicks are too.
 *
 * Each queue owns a range of the disk, split into slots with one request
 * in flight each: a slot writes a pattern, reads it back, compares, and
 * moves on to the next pattern. A lost wakeup shows up as a driver that
 * waits for 10 seconds; a lost or misdirected completion, torn data or a
 * wrong length as a recorded error. Meant to run under ThreadSanitizer
 * as well (tests/tsan/run.sh), where it checks the memory ordering of the
 * rings, the completion list and the wake protocol.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "virtioblk/virtioblk.h"
#include "ram_harness.h"

#define NQ          4u
#define QSIZE       64u
#define NSLOTS      20u /* requests in flight per queue: 3 descriptors each fit */
#define SLOT_BYTES  4096u
#define SLOT_SECTS  (SLOT_BYTES / 512u)
#define NWORKERS    3u
#define DISK_BYTES  ((uint64_t)NQ * NSLOTS * SLOT_BYTES)
#define ARENA_BYTES (8u << 20)
#define WAIT_MS     10000

/* ---- errors seen on other threads, checked by the test thread ---- */

static atomic_uint errors;
static char first_error[256];
static pthread_mutex_t error_lock = PTHREAD_MUTEX_INITIALIZER;

static void record_error(const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&error_lock);
    if (atomic_fetch_add(&errors, 1) == 0) {
        va_start(ap, fmt);
        vsnprintf(first_error, sizeof(first_error), fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&error_lock);
}

/* eventfds with plain read(2)/write(2), which ThreadSanitizer intercepts. */
static void fd_signal(int fd)
{
    uint64_t one = 1;
    if (write(fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
        record_error("eventfd write: %s", strerror(errno));
}

static void fd_drain(int fd)
{
    uint64_t v;
    (void)!read(fd, &v, sizeof(v));
}

/* ---- the backend: a RAM disk served by a pool of worker threads ---- */

struct workers {
    struct vblk_backend_ops ops;
    uint8_t *disk;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct vblk_req *pending[NQ * QSIZE];
    unsigned npending;
    bool stop;
    pthread_t th[NWORKERS];
    atomic_ulong done;
};

static void w_submit(void *be, void *qctx, struct vblk_req *r)
{
    struct workers *w = be;
    (void)qctx;
    pthread_mutex_lock(&w->lock);
    if (w->npending == NQ * QSIZE)
        record_error("more requests in flight than the queues hold");
    else
        w->pending[w->npending++] = r;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static uint8_t w_io(struct workers *w, struct vblk_req *r)
{
    if (r->type != VBLK_T_IN && r->type != VBLK_T_OUT)
        return VBLK_S_UNSUPP;
    if (r->sector > DISK_BYTES / 512 || r->len > DISK_BYTES - r->sector * 512) {
        record_error("request beyond the disk: sector %llu len %u", (unsigned long long)r->sector,
                     r->len);
        return VBLK_S_IOERR;
    }
    ram_disk_rw(w->disk + r->sector * 512, r);
    return VBLK_S_OK;
}

/* Takes a random pending request, so completions come back out of order. */
static void *w_main(void *arg)
{
    struct workers *w = arg;
    unsigned seed = (unsigned)(uintptr_t)pthread_self();
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (!w->npending && !w->stop)
            pthread_cond_wait(&w->cond, &w->lock);
        if (!w->npending) {
            pthread_mutex_unlock(&w->lock);
            return NULL;
        }
        unsigned i = (unsigned)rand_r(&seed) % w->npending;
        struct vblk_req *r = w->pending[i];
        w->pending[i] = w->pending[--w->npending];
        pthread_mutex_unlock(&w->lock);
        if (rand_r(&seed) % 4 == 0)
            sched_yield();
        vblk_req_complete_async(r, w_io(w, r));
        atomic_fetch_add(&w->done, 1);
    }
}

static int w_queue_start(void *be, uint16_t qidx, void **qctx)
{
    (void)qidx;
    *qctx = be;
    return 0;
}

static void workers_start(struct workers *w)
{
    memset(w, 0, sizeof(*w));
    w->ops = (struct vblk_backend_ops){
        .version = VBLK_BACKEND_OPS_V1,
        .name = "workers",
        .queue_start = w_queue_start,
        .submit = w_submit,
    };
    w->disk = calloc(1, DISK_BYTES);
    assert_non_null(w->disk);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    for (unsigned i = 0; i < NWORKERS; i++)
        assert_int_equal(pthread_create(&w->th[i], NULL, w_main, w), 0);
}

static void workers_stop(struct workers *w)
{
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    for (unsigned i = 0; i < NWORKERS; i++)
        pthread_join(w->th[i], NULL);
    assert_int_equal(w->npending, 0);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w->disk);
}

/* ---- one queue: its driver side, its device side, their threads ---- */

struct slot {
    struct vblk_drv_blk_frame *frame; /* in the arena */
    uint8_t *buf;                     /* SLOT_BYTES in the arena */
    uint32_t gen;
    bool reading;
    uint32_t seq; /* submission order, for the in-order check */
};

struct run;

struct q {
    struct run *run;
    uint16_t index;
    struct vblk_drv_vq drv;
    void *drv_state;
    struct vblk_queue dq;
    void *pool;
    int kick_fd, call_fd, wake_fd, stop_fd;
    struct slot slots[NSLOTS];
    uint32_t next_seq, last_seq_done;
    unsigned reordered;
    unsigned requests;
    pthread_t drv_th, dev_th;
};

struct cfg {
    bool packed;
    bool event_idx;
    bool in_order;
    bool polling;
    unsigned rounds; /* write + read pairs per slot */
};

struct run {
    struct cfg cfg;
    uint8_t *arena;
    size_t used;
    struct vblk_mem mem;
    struct workers w;
    struct vblk_dev dev;
    atomic_bool stop;
    struct q q[NQ];
};

static void *arena_alloc(struct run *r, size_t len, size_t align)
{
    size_t off = (r->used + align - 1) & ~(align - 1);
    assert_true(off + len <= ARENA_BYTES);
    r->used = off + len;
    return r->arena + off;
}

static uint8_t pattern(const struct q *q, unsigned s, uint32_t gen, unsigned i)
{
    return (uint8_t)(q->index * 131u + s * 31u + gen * 7u + i * 13u + (i >> 8));
}

static uint64_t slot_sector(const struct q *q, unsigned s)
{
    return ((uint64_t)q->index * NSLOTS + s) * SLOT_SECTS;
}

static void on_notify(void *opaque)
{
    fd_signal(((struct q *)opaque)->call_fd);
}

static void on_wake(void *opaque)
{
    fd_signal(((struct q *)opaque)->wake_fd);
}

/* Device thread: runs the queue on kicks, completions and, when polling,
 * all the time. */
static void *dev_main(void *arg)
{
    struct q *q = arg;
    struct run *r = q->run;
    if (r->cfg.polling) {
        vblk_queue_set_polling(&q->dq, true);
        while (!atomic_load_explicit(&r->stop, memory_order_acquire)) {
            int rc = vblk_queue_process(&q->dq, 0);
            if (rc < 0) {
                record_error("queue %u: process: %d", q->index, rc);
                return NULL;
            }
            if (rc == 0)
                sched_yield();
        }
        return NULL;
    }
    struct pollfd p[3] = {
        {q->kick_fd, POLLIN, 0}, {q->wake_fd, POLLIN, 0}, {q->stop_fd, POLLIN, 0}};
    for (;;) {
        int rc = vblk_queue_on_kick(&q->dq);
        if (rc < 0) {
            record_error("queue %u: run: %d", q->index, rc);
            return NULL;
        }
        if (poll(p, 3, -1) < 0 && errno != EINTR) {
            record_error("poll: %s", strerror(errno));
            return NULL;
        }
        if (p[2].revents)
            return NULL;
        if (p[0].revents)
            fd_drain(q->kick_fd);
        if (p[1].revents)
            fd_drain(q->wake_fd);
    }
}

/* Adds the next request of slot @s. */
static bool drv_add(struct q *q, unsigned s, unsigned *rnd)
{
    struct slot *sl = &q->slots[s];
    struct vblk_iov data = {sl->buf, SLOT_BYTES};
    uint32_t type = sl->reading ? VBLK_T_IN : VBLK_T_OUT;
    if (sl->reading)
        memset(sl->buf, 0, SLOT_BYTES);
    else
        for (unsigned i = 0; i < SLOT_BYTES; i++)
            sl->buf[i] = pattern(q, s, sl->gen, i);
    bool indirect = (rand_r(rnd) & 1) != 0;
    int rc = vblk_drv_blk_add(&q->drv, sl->frame, type, slot_sector(q, s), &data, 1, sl, indirect);
    if (rc < 0) {
        record_error("queue %u: add: %d", q->index, rc);
        return false;
    }
    sl->seq = q->next_seq++;
    q->requests++;
    return true;
}

/* Checks one completion and moves its slot on. Returns false on error. */
static bool drv_complete(struct q *q, struct slot *sl, uint32_t len)
{
    unsigned s = (unsigned)(sl - q->slots);
    if (sl->frame->status != VBLK_S_OK) {
        record_error("queue %u slot %u: status %u", q->index, s, sl->frame->status);
        return false;
    }
    uint32_t want = sl->reading ? SLOT_BYTES + 1 : 1;
    if (len != want) {
        record_error("queue %u slot %u: used length %u, expected %u", q->index, s, len, want);
        return false;
    }
    if (sl->seq != q->last_seq_done + 1 && !(sl->seq == 0 && q->last_seq_done == UINT32_MAX))
        q->reordered++;
    q->last_seq_done = sl->seq;
    if (sl->reading) {
        for (unsigned i = 0; i < SLOT_BYTES; i++) {
            if (sl->buf[i] != pattern(q, s, sl->gen, i)) {
                record_error("queue %u slot %u gen %u: byte %u is %02x, expected %02x", q->index, s,
                             sl->gen, i, sl->buf[i], pattern(q, s, sl->gen, i));
                return false;
            }
        }
        sl->gen++;
        sl->reading = false;
        return true;
    }
    sl->reading = true;
    return true;
}

/* Driver thread: keeps every slot busy until each has done its rounds. */
static void *drv_main(void *arg)
{
    struct q *q = arg;
    struct run *r = q->run;
    unsigned rnd = q->index * 7919u + 1;
    unsigned active = NSLOTS;
    q->last_seq_done = UINT32_MAX;
    if (r->cfg.polling)
        vblk_drv_vq_enable_cb(&q->drv, false);
    for (unsigned s = 0; s < NSLOTS; s++)
        if (!drv_add(q, s, &rnd))
            return NULL;
    if (vblk_drv_vq_kick_prepare(&q->drv) && !r->cfg.polling)
        fd_signal(q->kick_fd);
    while (active && !atomic_load(&errors)) {
        unsigned got = 0, added = 0;
        for (;;) {
            void *tok = NULL;
            uint32_t len = 0;
            int rc = vblk_drv_vq_get_used(&q->drv, &tok, &len);
            if (rc == 0)
                break;
            if (rc < 0) {
                record_error("queue %u: bad used entry (%d)", q->index, rc);
                return NULL;
            }
            got++;
            struct slot *sl = tok;
            if (!drv_complete(q, sl, len))
                return NULL;
            if (!sl->reading && sl->gen >= r->cfg.rounds) {
                active--;
                continue;
            }
            if (!drv_add(q, (unsigned)(sl - q->slots), &rnd))
                return NULL;
            added++;
        }
        if (added && vblk_drv_vq_kick_prepare(&q->drv) && !r->cfg.polling)
            fd_signal(q->kick_fd);
        if (got || !active)
            continue;
        if (r->cfg.polling) {
            sched_yield();
            continue;
        }
        /* Re-arm, re-check, then sleep until the device notifies. */
        if (vblk_drv_vq_enable_cb(&q->drv, true))
            continue;
        struct pollfd p = {q->call_fd, POLLIN, 0};
        int n = poll(&p, 1, WAIT_MS);
        if (n == 0) {
            record_error("queue %u: no notification for %d ms with %u slots busy", q->index,
                         WAIT_MS, active);
            return NULL;
        }
        fd_drain(q->call_fd);
    }
    return NULL;
}

static int new_eventfd(void)
{
    int fd = eventfd(0, EFD_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static void setup_queue(struct run *r, uint16_t i)
{
    struct q *q = &r->q[i];
    uint64_t f = vblk_dev_driver_features(&r->dev);
    q->run = r;
    q->index = i;
    q->kick_fd = new_eventfd();
    q->call_fd = new_eventfd();
    q->wake_fd = new_eventfd();
    q->stop_fd = new_eventfd();
    struct vblk_drv_vq_config dc = {
        .size = QSIZE,
        .packed = (f & VBLK_BIT(VBLK_F_RING_PACKED)) != 0,
        .event_idx = (f & VBLK_BIT(VBLK_F_EVENT_IDX)) != 0,
        .indirect = true,
        .indirect_max = 3,
        .addr_delta = 0,
    };
    size_t ring_len = vblk_drv_vq_ring_size(&dc);
    void *ring = arena_alloc(r, ring_len, 4096);
    size_t st_len = vblk_drv_vq_state_size(&dc);
    q->drv_state = aligned_alloc(16, (st_len + 15) & ~(size_t)15);
    assert_non_null(q->drv_state);
    assert_int_equal(vblk_drv_vq_init(&q->drv, &dc, ring, ring_len, q->drv_state, st_len), 0);
    for (unsigned s = 0; s < NSLOTS; s++) {
        q->slots[s].frame = arena_alloc(r, sizeof(struct vblk_drv_blk_frame), 64);
        q->slots[s].buf = arena_alloc(r, SLOT_BYTES, 64);
    }
    struct vblk_queue_params qp = {
        .index = i,
        .size = QSIZE,
        .notify = on_notify,
        .notify_opaque = q,
        .wake = r->cfg.polling ? NULL : on_wake,
        .wake_opaque = q,
    };
    vblk_drv_vq_addrs(&q->drv, &qp.addrs);
    size_t len = vblk_queue_mem_size(&r->dev, QSIZE);
    q->pool = aligned_alloc(16, (len + 15) & ~(size_t)15);
    assert_non_null(q->pool);
    assert_int_equal(vblk_queue_init(&q->dq, &r->dev, &r->mem, &qp, q->pool, len), 0);
}

static void run(const struct cfg *cfg)
{
    struct run *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->cfg = *cfg;
    atomic_store(&errors, 0);
    r->arena = aligned_alloc(4096, ARENA_BYTES);
    assert_non_null(r->arena);
    memset(r->arena, 0, ARENA_BYTES);
    vblk_mem_init(&r->mem);
    /* Identity map: a driver address is the pointer value. */
    assert_int_equal(vblk_mem_add(&r->mem, (uintptr_t)r->arena, ARENA_BYTES, r->arena, NULL), 0);
    workers_start(&r->w);
    struct vblk_backend be = {&r->w.ops, &r->w, DISK_BYTES};

    struct vblk_dev_params p;
    vblk_dev_params_default(&p, DISK_BYTES);
    p.num_queues = NQ;
    p.queue_size = QSIZE;
    if (cfg->in_order)
        p.features_off &= ~VBLK_BIT(VBLK_F_IN_ORDER);
    assert_int_equal(vblk_dev_init(&r->dev, &p, &be), 0);
    uint64_t f = vblk_dev_features(&r->dev);
    if (!cfg->packed)
        f &= ~VBLK_BIT(VBLK_F_RING_PACKED);
    if (!cfg->event_idx)
        f &= ~VBLK_BIT(VBLK_F_EVENT_IDX);
    assert_true(!cfg->in_order || (f & VBLK_BIT(VBLK_F_IN_ORDER)));
    assert_int_equal(vblk_dev_set_features(&r->dev, f), 0);

    for (uint16_t i = 0; i < NQ; i++)
        setup_queue(r, i);
    for (unsigned i = 0; i < NQ; i++)
        assert_int_equal(pthread_create(&r->q[i].dev_th, NULL, dev_main, &r->q[i]), 0);
    for (unsigned i = 0; i < NQ; i++)
        assert_int_equal(pthread_create(&r->q[i].drv_th, NULL, drv_main, &r->q[i]), 0);
    for (unsigned i = 0; i < NQ; i++)
        pthread_join(r->q[i].drv_th, NULL);
    atomic_store_explicit(&r->stop, true, memory_order_release);
    for (unsigned i = 0; i < NQ; i++) {
        fd_signal(r->q[i].stop_fd);
        pthread_join(r->q[i].dev_th, NULL);
    }
    /* Back on this thread: anything a failed run left in flight. */
    workers_stop(&r->w);
    unsigned reordered = 0, requests = 0;
    for (unsigned i = 0; i < NQ; i++) {
        struct q *q = &r->q[i];
        vblk_queue_stop(&q->dq);
        while (vblk_queue_inflight(&q->dq) && !atomic_load(&errors))
            (void)vblk_queue_process(&q->dq, 0);
        const struct vblk_queue_stats *qs = vblk_queue_stats(&q->dq);
        if (!atomic_load(&errors)) {
            assert_int_equal(qs->submitted, 2ull * NSLOTS * cfg->rounds);
            assert_int_equal(qs->completed, qs->submitted);
            assert_int_equal(qs->ioerr + qs->unsupp, 0);
            assert_int_equal(vblk_queue_destroy(&q->dq), 0);
        }
        reordered += q->reordered;
        requests += q->requests;
        close(q->kick_fd);
        close(q->call_fd);
        close(q->wake_fd);
        close(q->stop_fd);
        if (!atomic_load(&errors)) {
            free(q->pool);
            free(q->drv_state);
        }
    }
    unsigned n = atomic_load(&errors);
    if (n)
        print_error("%u errors; first: %s\n", n, first_error);
    assert_int_equal(n, 0);
    assert_int_equal(requests, NQ * 2u * NSLOTS * cfg->rounds);
    assert_int_equal(atomic_load(&r->w.done), requests);
    /* The workers pick at random: without IN_ORDER the driver must have
     * seen completions out of submission order; with it, never. */
    if (cfg->in_order)
        assert_int_equal(reordered, 0);
    else
        assert_true(reordered > 0);
    free(r->arena);
    free(r);
}

static unsigned rounds(void)
{
    const char *e = getenv("VBLK_THREADS_ROUNDS");
    unsigned n = e ? (unsigned)strtoul(e, NULL, 10) : 0;
    return n ? n : 40;
}

static void split_event_idx_out_of_order(void **state)
{
    (void)state;
    run(&(struct cfg){.event_idx = true, .rounds = rounds()});
}

static void split_notification_flags_out_of_order(void **state)
{
    (void)state;
    run(&(struct cfg){.rounds = rounds()});
}

static void packed_event_idx_out_of_order(void **state)
{
    (void)state;
    run(&(struct cfg){.packed = true, .event_idx = true, .rounds = rounds()});
}

static void packed_notification_flags_out_of_order(void **state)
{
    (void)state;
    run(&(struct cfg){.packed = true, .rounds = rounds()});
}

static void split_in_order_with_out_of_order_backend(void **state)
{
    (void)state;
    run(&(struct cfg){.event_idx = true, .in_order = true, .rounds = rounds()});
}

static void packed_in_order_with_out_of_order_backend(void **state)
{
    (void)state;
    run(&(struct cfg){.packed = true, .event_idx = true, .in_order = true, .rounds = rounds()});
}

static void split_busy_polling(void **state)
{
    (void)state;
    run(&(struct cfg){.event_idx = true, .polling = true, .rounds = rounds() / 4 + 1});
}

static void packed_busy_polling(void **state)
{
    (void)state;
    run(&(struct cfg){
        .packed = true, .event_idx = true, .polling = true, .rounds = rounds() / 4 + 1});
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(split_event_idx_out_of_order),
        cmocka_unit_test(split_notification_flags_out_of_order),
        cmocka_unit_test(packed_event_idx_out_of_order),
        cmocka_unit_test(packed_notification_flags_out_of_order),
        cmocka_unit_test(split_in_order_with_out_of_order_backend),
        cmocka_unit_test(packed_in_order_with_out_of_order_backend),
        cmocka_unit_test(split_busy_polling),
        cmocka_unit_test(packed_busy_polling),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
