/* SPDX-License-Identifier: MIT */
/* The SIGBUS guard over mappings of a peer's files (see fault_guard.h).
 *
 * The registry is a fixed array of slots, because the handler may run at
 * any moment on any thread: it can neither take a lock nor follow memory
 * that another thread frees. Each slot is a sequence lock: a writer makes
 * the sequence odd (claiming the slot with a compare-and-swap), writes the
 * fields and makes it even again; the handler uses what it read only if
 * the sequence was even and unchanged around the reads. The transports
 * remove a mapping only once they stopped touching it (queues drained,
 * message handled), so a fault never races with the removal of the
 * mapping it hit. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "transport/fault_guard.h"

struct slot {
    atomic_uint seq; /* odd: being written */
    atomic_uintptr_t start;
    atomic_size_t len; /* 0: free */
    atomic_size_t page;
    _Atomic(struct fault_owner *) owner;
};

struct view {
    uintptr_t start;
    size_t len, page;
    struct fault_owner *owner;
};

static struct slot slots[FAULT_GUARD_SLOTS];
static atomic_uint slots_used; /* one past the highest slot ever claimed */
static atomic_ulong total_faults;
static struct sigaction previous; /* written once, before our handler runs */
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_error;

/* A consistent copy of slot @s, or false while it is being written. */
static bool slot_read(struct slot *s, struct view *v)
{
    unsigned seq = atomic_load_explicit(&s->seq, memory_order_acquire);
    if (seq & 1)
        return false;
    v->start = atomic_load_explicit(&s->start, memory_order_relaxed);
    v->len = atomic_load_explicit(&s->len, memory_order_relaxed);
    v->page = atomic_load_explicit(&s->page, memory_order_relaxed);
    v->owner = atomic_load_explicit(&s->owner, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(&s->seq, memory_order_relaxed) == seq && v->len != 0;
}

/* Claims slot @s if its sequence is still @seq (even). */
static bool slot_lock(struct slot *s, unsigned seq)
{
    return atomic_compare_exchange_strong(&s->seq, &seq, seq + 1);
}

static void slot_write(struct slot *s, const struct view *v)
{
    atomic_store_explicit(&s->start, v->start, memory_order_relaxed);
    atomic_store_explicit(&s->len, v->len, memory_order_relaxed);
    atomic_store_explicit(&s->page, v->page, memory_order_relaxed);
    atomic_store_explicit(&s->owner, v->owner, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->seq, 1, memory_order_release);
}

/* Hands a fault that is not ours to whoever had SIGBUS before. */
static void chain(int sig, siginfo_t *si, void *uc)
{
    if (previous.sa_flags & SA_SIGINFO) {
        previous.sa_sigaction(sig, si, uc);
        return;
    }
    if (previous.sa_handler == SIG_IGN && si->si_code <= 0)
        return; /* sent with kill(): ignoring it was asked for */
    if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
        return;
    }
    /* The default action: a real bug must still end the process, with the
     * signal that says what happened. The signal is blocked in here, so it
     * is delivered as this handler returns (a fault also repeats). */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    (void)sigaction(sig, &dfl, NULL);
    (void)raise(sig);
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    int saved_errno = errno;
    /* si_code <= 0: sent by a process, not raised by an access. */
    if (si->si_code > 0) {
        uintptr_t a = (uintptr_t)si->si_addr;
        unsigned n = atomic_load_explicit(&slots_used, memory_order_acquire);
        for (unsigned i = 0; i < n; i++) {
            struct view v;
            if (!slot_read(&slots[i], &v) || a - v.start >= v.len)
                continue;
            /* Anonymous memory over the page that faulted: the access that
             * faulted completes when the handler returns, and so does any
             * later one to the same page. mmap() is a plain system call. */
            uintptr_t base = a & ~(uintptr_t)(v.page - 1);
            void *p = mmap((void *)base, v.page, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
            if (p == MAP_FAILED)
                break; /* cannot contain it: die as before */
            atomic_fetch_add_explicit(&v.owner->faults, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&total_faults, 1, memory_order_relaxed);
            errno = saved_errno;
            return;
        }
    }
    chain(sig, si, uc);
    errno = saved_errno;
}

static void install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, NULL, &previous) < 0 || sigaction(SIGBUS, &sa, NULL) < 0)
        install_error = -errno;
}

int fault_guard_install(void)
{
    (void)pthread_once(&install_once, install);
    return install_error;
}

int fault_guard_add(struct fault_owner *o, void *addr, size_t len, size_t page)
{
    int rc = fault_guard_install();
    if (rc < 0)
        return rc;
    if (len == 0 || page == 0 || (page & (page - 1)))
        return -EINVAL;
    for (unsigned i = 0; i < FAULT_GUARD_SLOTS; i++) {
        struct slot *s = &slots[i];
        unsigned seq = atomic_load_explicit(&s->seq, memory_order_acquire);
        if ((seq & 1) || atomic_load_explicit(&s->len, memory_order_relaxed) != 0 ||
            !slot_lock(s, seq))
            continue;
        unsigned used = atomic_load(&slots_used);
        while (used < i + 1 && !atomic_compare_exchange_weak(&slots_used, &used, i + 1))
            ;
        slot_write(s, &(struct view){(uintptr_t)addr, len, page, o});
        return 0;
    }
    return -ENOSPC;
}

void fault_guard_remove(void *addr)
{
    unsigned n = atomic_load(&slots_used);
    for (unsigned i = 0; i < n; i++) {
        struct slot *s = &slots[i];
        unsigned seq = atomic_load_explicit(&s->seq, memory_order_acquire);
        struct view v;
        if (!slot_read(s, &v) || v.start != (uintptr_t)addr || !slot_lock(s, seq))
            continue;
        slot_write(s, &(struct view){0, 0, 0, NULL});
        return;
    }
}

unsigned long fault_guard_total(void)
{
    return atomic_load_explicit(&total_faults, memory_order_relaxed);
}
