/* SPDX-License-Identifier: MIT */
/* A worker thread: one event loop (or polling loop) over a set of items.
 * The set changes only on the worker's own thread (worker_call()), between
 * two rounds of the loop, so an item is never processed after worker_del()
 * returned. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "transport/worker.h"

struct call {
    void (*fn)(void *);
    void *arg;
    bool done;
    struct call *next;
};

struct worker {
    struct worker_opts o;
    pthread_t tid;
    bool running;   /* the thread exists (not yet joined) */
    bool abandoned; /* it never stopped */
    int epfd;
    int evfd;
    atomic_bool stopping;
    atomic_bool calls_pending;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct call *calls;
    void (*wait_hook)(void *);
    void *wait_arg;
    unsigned wait_ms;
    /* Owned by the worker's thread once it runs. */
    struct worker_item **items;
    unsigned nitems, cap;
    bool polling; /* items are switched to polling */
};

int worker_create(const struct worker_opts *o, struct worker **out)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    if (o)
        w->o = *o;
    atomic_init(&w->stopping, false);
    atomic_init(&w->calls_pending, false);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (w->epfd < 0 || w->evfd < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->evfd, &ev) < 0) {
        int rc = -errno;
        worker_destroy(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* Runs the calls queued by other threads. */
static void run_calls(struct worker *w)
{
    if (!atomic_exchange(&w->calls_pending, false))
        return;
    pthread_mutex_lock(&w->lock);
    struct call *c = w->calls;
    w->calls = NULL;
    pthread_mutex_unlock(&w->lock);
    while (c) {
        struct call *next = c->next;
        c->fn(c->arg);
        pthread_mutex_lock(&w->lock);
        c->done = true;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        c = next;
    }
}

void worker_call(struct worker *w, void (*fn)(void *), void *arg)
{
    if (!w->running || pthread_equal(pthread_self(), w->tid)) {
        fn(arg);
        return;
    }
    struct call c = {.fn = fn, .arg = arg};
    pthread_mutex_lock(&w->lock);
    c.next = w->calls;
    w->calls = &c;
    atomic_store(&w->calls_pending, true);
    pthread_mutex_unlock(&w->lock);
    (void)eventfd_write(w->evfd, 1);
    pthread_mutex_lock(&w->lock);
    while (!c.done) {
        if (!w->wait_hook) {
            pthread_cond_wait(&w->cond, &w->lock);
            continue;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)w->wait_ms * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        if (pthread_cond_timedwait(&w->cond, &w->lock, &until) == ETIMEDOUT && !c.done) {
            pthread_mutex_unlock(&w->lock);
            w->wait_hook(w->wait_arg);
            pthread_mutex_lock(&w->lock);
        }
    }
    pthread_mutex_unlock(&w->lock);
}

void worker_set_wait_hook(struct worker *w, void (*hook)(void *), void *arg, unsigned period_ms)
{
    w->wait_hook = hook;
    w->wait_arg = arg;
    w->wait_ms = period_ms ? period_ms : 100;
}

/* ---- the item set ---- */

struct item_op {
    struct worker *w;
    struct worker_item *it;
    int rc;
};

static void add_here(void *arg)
{
    struct item_op *op = arg;
    struct worker *w = op->w;
    if (w->nitems == w->cap) {
        unsigned cap = w->cap ? w->cap * 2 : 8;
        struct worker_item **n = realloc(w->items, cap * sizeof(*n));
        if (!n) {
            op->rc = -ENOMEM;
            return;
        }
        w->items = n;
        w->cap = cap;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = op->it};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, op->it->fd, &ev) < 0) {
        op->rc = -errno;
        return;
    }
    w->items[w->nitems++] = op->it;
    if (w->polling && op->it->set_polling)
        (void)op->it->set_polling(op->it->arg, true);
    op->rc = 0;
}

static void del_here(void *arg)
{
    struct item_op *op = arg;
    struct worker *w = op->w;
    for (unsigned i = 0; i < w->nitems; i++) {
        if (w->items[i] != op->it)
            continue;
        (void)epoll_ctl(w->epfd, EPOLL_CTL_DEL, op->it->fd, NULL);
        if (w->polling && op->it->set_polling)
            (void)op->it->set_polling(op->it->arg, false);
        memmove(&w->items[i], &w->items[i + 1], (w->nitems - i - 1) * sizeof(w->items[0]));
        w->nitems--;
        return;
    }
}

int worker_add(struct worker *w, struct worker_item *it)
{
    struct item_op op = {w, it, 0};
    worker_call(w, add_here, &op);
    return op.rc;
}

void worker_del(struct worker *w, struct worker_item *it)
{
    struct item_op op = {w, it, 0};
    worker_call(w, del_here, &op);
}

unsigned worker_items(const struct worker *w)
{
    return w->nitems;
}

/* ---- the loop ---- */

/* Adaptive polling: the shortest and longest poll after the last request
 * found. The window doubles when a sleep turned out shorter than the
 * longest poll (polling on would have caught the work without the cost of
 * waking), and halves when a sleep was longer (polling would have burnt
 * the CPU for nothing). */
#define POLL_MIN_NS         1000u
#define POLL_MAX_NS_DEFAULT 128000u
/* Poll phases in a row that found nothing, each followed by work within a
 * quarter of the longest poll after going to sleep, before the window stops
 * growing and shrinks instead. A driver that needs this CPU to submit its
 * next request (a spinning driver or a busy vCPU on the same CPU) cannot
 * run while we poll: its request comes just after we sleep, which looks
 * like a window too short and would keep it at the maximum. Polling is
 * tried again from the start after POLL_RETRY_NS. */
#define POLL_EMPTY_MAX 3u
#define POLL_RETRY_NS  50000000u

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool has_active(struct worker *w)
{
    for (unsigned i = 0; i < w->nitems; i++)
        if (w->items[i]->active && w->items[i]->active(w->items[i]->arg))
            return true;
    return false;
}

/* Switches every pollable item; returns what the last look found. */
static int set_polling(struct worker *w, bool on)
{
    int found = 0;
    w->polling = on;
    for (unsigned i = 0; i < w->nitems; i++)
        if (w->items[i]->set_polling) {
            int rc = w->items[i]->set_polling(w->items[i]->arg, on);
            found += rc > 0 ? rc : 0;
        }
    return found;
}

/* One pass over the active items; returns the requests found. */
static int poll_once(struct worker *w)
{
    int found = 0;
    for (unsigned i = 0; i < w->nitems; i++) {
        struct worker_item *it = w->items[i];
        if (it->active && it->active(it->arg)) {
            int rc = it->process(it->arg);
            found += rc > 0 ? rc : 0;
        }
    }
    return found;
}

/* Waits for events and processes the items they name; the set changes
 * only after the whole batch. */
static void wait_and_process(struct worker *w)
{
    struct epoll_event ev[16];
    int n = epoll_wait(w->epfd, ev, 16, -1);
    bool ctl = false;
    for (int i = 0; i < n; i++) {
        struct worker_item *it = ev[i].data.ptr;
        if (!it) {
            eventfd_t v;
            (void)eventfd_read(w->evfd, &v);
            ctl = true;
            continue;
        }
        (void)it->process(it->arg);
    }
    if (ctl)
        run_calls(w);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    enum vblk_notify_mode mode = w->o.notify;
    uint64_t max_ns = w->o.poll_max_us ? w->o.poll_max_us * 1000ull : POLL_MAX_NS_DEFAULT;
    uint64_t window = max_ns / 4, last = 0, gave_up = 0;
    unsigned empty = 0;
    int phase = 0; /* the poll phase before the sleep: 0 none, 1 found work, -1 nothing */
    bool polling = false, found = false;
    if (mode == VBLK_NOTIFY_POLL)
        set_polling(w, true);
    while (!atomic_load_explicit(&w->stopping, memory_order_relaxed)) {
        if (atomic_load_explicit(&w->calls_pending, memory_order_relaxed))
            run_calls(w);
        if (mode == VBLK_NOTIFY_POLL) {
            /* Busy polling: no system call unless the guest must be
             * interrupted. Inactive items wait for the next idle phase. */
            if (has_active(w)) {
                (void)poll_once(w);
                continue;
            }
            wait_and_process(w);
            continue;
        }
        if (polling) {
            uint64_t now = mono_ns();
            if (poll_once(w) > 0) {
                last = now;
                found = true;
                continue;
            }
            if (now - last < window)
                continue;
            /* Kicks on, one more look, then sleep. */
            if (set_polling(w, false) > 0) {
                (void)set_polling(w, true);
                last = mono_ns();
                found = true;
                continue;
            }
            polling = false;
            phase = found ? 1 : -1;
        }
        uint64_t slept = mono_ns();
        wait_and_process(w);
        if (mode == VBLK_NOTIFY_EVENT || !has_active(w))
            continue;
        last = mono_ns();
        slept = last - slept;
        if (phase > 0 || (phase < 0 && slept >= max_ns / 4))
            empty = 0;
        else if (phase < 0 && ++empty == POLL_EMPTY_MAX)
            gave_up = last;
        phase = 0;
        if (empty >= POLL_EMPTY_MAX && last - gave_up >= POLL_RETRY_NS) {
            empty = 0;
            window = max_ns / 4;
        } else if (slept < max_ns && empty < POLL_EMPTY_MAX) {
            window = window * 2 > max_ns ? max_ns
                                         : (window * 2 < POLL_MIN_NS ? POLL_MIN_NS : window * 2);
        } else {
            window /= 2;
        }
        if (window >= POLL_MIN_NS) {
            (void)set_polling(w, true);
            polling = true;
            found = false;
        }
    }
    if (w->polling)
        (void)set_polling(w, false);
    return NULL;
}

int worker_start(struct worker *w)
{
    if (w->running)
        return 0;
    atomic_store(&w->stopping, false);
    /* Signals belong to the application's thread, not to ours. Faults
     * are the exception: they go to the thread that caused them, and a
     * blocked one kills the process without running any handler, so the
     * SIGBUS guard over a front-end's memory (fault_guard.h) could not
     * contain it. */
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = -pthread_create(&w->tid, NULL, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    w->running = rc == 0;
    return rc;
}

int worker_stop(struct worker *w, unsigned timeout_ms)
{
    if (!w->running)
        return 0;
    atomic_store(&w->stopping, true);
    (void)eventfd_write(w->evfd, 1);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    int rc = pthread_timedjoin_np(w->tid, NULL, &until);
    if (rc != 0)
        return -ETIMEDOUT;
    w->running = false;
    /* Calls queued while it stopped run here. */
    atomic_store(&w->calls_pending, true);
    run_calls(w);
    return 0;
}

void worker_abandon(struct worker *w)
{
    if (!w->running)
        return;
    pthread_detach(w->tid);
    w->running = false;
    w->abandoned = true;
}

void worker_destroy(struct worker *w)
{
    if (!w || w->abandoned)
        return; /* a thread that never stopped may still use it all */
    if (w->epfd >= 0)
        close(w->epfd);
    if (w->evfd >= 0)
        close(w->evfd);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w->items);
    free(w);
}
