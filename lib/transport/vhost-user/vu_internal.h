/* SPDX-License-Identifier: MIT */
/* Shared by the vhost-user transport files (lib/transport/vhost-user/). Not installed. */
#ifndef VBLK_VU_INTERNAL_H
#define VBLK_VU_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/fault_guard.h"
#include "transport/tqueue.h"
#include "virtioblk/blk.h"
#include "virtioblk/ring.h"
#include "virtioblk/advanced.h"
#include "virtioblk/advanced_msg.h"
#include "virtioblk/vhost_user.h"
#include "vu_proto.h"

/* Everything declared here is internal to the library, static archive
 * included. */
#pragma GCC visibility push(hidden)

/* ---- messages (vu_msg.c) ---- */

/* A validated message. The payload is copied; unused bytes are zero. */
struct vu_msg {
    struct vu_hdr hdr;
    union {
        uint64_t u64;
        struct vu_vring_state state;
        struct vu_vring_addr addr;
        struct vu_mem_table mem;
        struct vu_mem_single single;
        struct vu_log log;
        struct vu_config config;
        struct vu_inflight inflight;
        uint8_t raw[VBLK_VU_MAX_PAYLOAD];
    } p;
    int fds[VBLK_VU_MAX_FDS];
    unsigned nfds;
};

/* Checks @buf as a message with @nfds fds and copies it into @m (fds are
 * copied from @fds, ownership unchanged). Returns 0, -EINVAL or -EBADMSG. */
int vu_msg_parse(const void *buf, size_t len, const int *fds, unsigned nfds, struct vu_msg *m);

/* Name of a request type, for messages. */
const char *vu_req_name(uint32_t request);

/* Incremental receiver for a non-blocking stream socket. */
struct vu_rx {
    uint8_t buf[VBLK_VU_MAX_MSG];
    size_t have;
    int fds[VBLK_VU_MAX_FDS];
    unsigned nfds;
    bool fd_overflow;
};

void vu_rx_init(struct vu_rx *rx);
/* Closes any fds held by @rx and empties it. */
void vu_rx_reset(struct vu_rx *rx);
/* Reads from @sock. Returns the length of a complete message now in
 * rx->buf (its fds in rx->fds), 0 if more bytes are needed, -ECONNRESET if
 * the peer closed, -EPROTO for a malformed frame or another negative errno. */
int vu_rx_read(int sock, struct vu_rx *rx);
/* Sends @len bytes and at most one fd. Returns 0 or a negative errno. */
int vu_send(int sock, const void *buf, size_t len, int fd);

/* ---- guest memory (vu_mem.c) ---- */

struct vu_region {
    uint64_t gpa;
    uint64_t size;
    uint64_t uaddr;
    uint64_t mmap_offset;
    void *map;
    size_t map_len;
    uint8_t *host;
};

struct vu_mem {
    uint32_t n;
    struct vu_region r[VBLK_VU_MAX_MEM_SLOTS];
};

/* vu_shm_map() flag: allocate every page of the mapping now. */
#define VU_SHM_POPULATE 1u

/* Maps [offset, offset + size) of the front-end's file @fd for @d,
 * checking ranges and the file size, sealing the file against shrinking
 * where it allows that, and guarding the mapping against faults
 * (fault_guard.h). Returns 0 and sets *map / *map_len (for vu_shm_unmap())
 * and *ptr; -EINVAL, -ENOMEM (cannot be backed) or -ENOSPC (no guard slot
 * left). */
int vu_shm_map(struct vblk_vu_dev *d, int fd, uint64_t offset, uint64_t size, unsigned flags,
               void **map, size_t *map_len, void **ptr);
/* Undoes vu_shm_map(); does nothing for a NULL @map. */
void vu_shm_unmap(void *map, size_t map_len);
/* Validates @desc and maps it from @fd into @r. Returns 0, -EINVAL, -ENOMEM
 * or -ENOSPC. */
int vu_region_map(struct vblk_vu_dev *d, struct vu_region *r, const struct vu_region_desc *desc,
                  int fd);
void vu_region_unmap(struct vblk_vu_dev *d, struct vu_region *r);
/* -EEXIST if @r overlaps a region of @m (guest-physical or user address). */
int vu_mem_check(const struct vu_mem *m, const struct vu_region *r);
/* Unmaps every region. */
void vu_mem_clear(struct vblk_vu_dev *d, struct vu_mem *m);
/* Rebuilds @out (keeping its log) from @m. Returns 0 or a negative errno. */
int vu_mem_build(const struct vu_mem *m, struct vblk_mem *out);
/* Front-end user address -> guest-physical address for a @len byte range
 * that lies in one region. Returns 0 or -EFAULT. */
int vu_mem_ua_to_gpa(const struct vu_mem *m, uint64_t ua, uint64_t len, uint64_t *gpa);

/* ---- queues (vu_queue.c) and in-flight tracking (vu_inflight.c) ---- */

/* Private bookkeeping of one entry of a packed queue's in-flight region. */
struct vu_pk_slot {
    uint16_t next; /* free list / descriptor list link */
    uint16_t last; /* head entries: the list's last entry */
    uint16_t num;  /* head entries: the list's length */
};

struct vu_inflight_q {
    void *region;       /* this queue's part of the shared region, or NULL */
    uint64_t counter;   /* next fetch order value */
    uint16_t batch;     /* used entries pushed since the last publish */
    uint16_t last_head; /* private copy of the region's last_batch_head */
    /* requests to resubmit after a restart, in fetch order: split heads
     * or packed head entries (whose lists are in @saved) */
    uint16_t *plan;
    uint32_t nplan;
    /* packed rings: private copies of everything the hooks rely on */
    struct vu_pk_slot *slot;        /* per region entry */
    uint16_t *by_id;                /* buffer ID -> head entry + 1, or 0 */
    struct vblk_packed_desc *saved; /* per region entry: the descriptor it holds */
    struct vblk_packed_desc *copy;  /* scratch: one descriptor list */
    uint32_t resub_head;            /* head entry + 1 being resubmitted, or 0 */
    uint16_t free_head;             /* first free entry (the ring size: none) */
    uint16_t nfree;
    bool warned;
};

/* ---- notification fds (vu_notify.c) ---- */

/* A call or err eventfd from the front-end. Threads signal through it
 * outside the queue lock, each holding a reference; the last reference
 * closes the fd. */
struct vu_notifier {
    atomic_uint refs;
    atomic_uint_fast64_t seq; /* odd while a write is under way */
    uint64_t seen;            /* @seq at the watchdog's previous look */
    int fd;
};

/* Checks that @fd is an eventfd and makes it non-blocking. Returns 0,
 * -EINVAL (another kind of fd) or a negative errno. */
int vu_event_fd_adopt(int fd);
/* Wraps @fd (owned from now on) with one reference, or returns NULL. */
struct vu_notifier *vu_notifier_new(int fd);
void vu_notifier_get(struct vu_notifier *n);
/* Drops a reference (NULL is ignored). */
void vu_notifier_put(struct vu_notifier *n);
/* Adds 1 to the eventfd; a full counter counts as signalled. */
void vu_notifier_signal(struct vu_notifier *n);
/* True if the write under way now was already under way at the previous
 * call (called from one thread, at intervals). */
bool vu_notifier_stuck(struct vu_notifier *n);
/* Empties the counter so that a write blocked on it returns. */
void vu_notifier_unstick(struct vu_notifier *n);

struct vu_queue {
    pthread_mutex_t lock;
    atomic_uint ctl_waiting; /* the message handler wants the lock */
    atomic_bool active;      /* live and enabled: worth processing */
    struct vblk_vu_dev *d;
    uint16_t index;
    int epfd;    /* the stable fd the application watches */
    int kick_fd; /* edge-triggered in epfd, never read */
    struct vu_notifier *call;
    struct vu_notifier *err;
    bool call_pending;   /* signal @call when the lock is released */
    bool err_pending;    /* signal @err when the lock is released */
    atomic_bool polling; /* kicks suppressed; the thread polls the ring */
    uint32_t held;       /* coalescing: notifications held back */
    uint64_t held_since; /* ... since this time (ns) */
    /* ring configuration from the front-end */
    uint32_t num;
    uint32_t base;
    uint32_t addr_flags;
    uint64_t ua_desc, ua_avail, ua_used, log_addr;
    bool addr_set;
    bool started; /* SET_VRING_KICK seen, no GET_VRING_BASE since */
    bool enabled;
    atomic_bool broken;                /* the driver corrupted the ring */
    atomic_uint_fast64_t times_broken; /* for the counters */
    atomic_int thread;                 /* worker thread serving the queue, or -1 */
    /* the core queue, its pool, the wake eventfd (completions,
     * reconfiguration; edge-triggered in epfd), the backend's fd (in epfd),
     * the position kept across a stop (restart from it when the memory
     * changed under a live ring) and the counters */
    struct tqueue tq;
    struct vblk_mem mem; /* this queue's copy of the memory map */
    struct vu_inflight_q inf;
};

struct vblk_vu_dev {
    struct vblk_dev dev;
    struct vblk_dev_params params;
    struct vblk_backend be;
    struct vblk_vu_opts opts;
    uint16_t nq;
    struct vu_queue *q;
    /* connection */
    int sock;
    struct vu_rx rx;
    bool owner;
    bool features_set;
    uint64_t features;          /* acked vhost features */
    uint64_t protocol_features; /* acked protocol features */
    uint8_t status;
    /* guest memory and the dirty log */
    struct vu_mem mem;
    struct vblk_mem map; /* master copy of the memory map (no log) */
    void *log_map;
    size_t log_map_len;
    void *log;
    uint64_t log_size;
    /* in-flight region */
    void *inflight_map;
    size_t inflight_map_len;
    uint8_t *inflight;
    uint64_t inflight_size;
    uint16_t inflight_nq;
    uint16_t inflight_qsize;
    /* faults contained in the mappings above (fault_guard.h) */
    struct fault_owner fault;
    atomic_uint faults_before; /* fault.faults when the connection began */
    int fault_sock;            /* the socket, for queue threads (under every queue lock) */
    /* device counters; written by the message handler's thread, read with
     * relaxed atomics from any thread (vu_count()) */
    struct vblk_transport_stats stats;
};

/* Counts one event in a device counter (see vblk_vu_dev::stats). */
static inline void vu_count(uint64_t *counter)
{
    __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

/* Marks queue @q broken; returns true if it already was. */
static inline bool vu_queue_break(struct vu_queue *q)
{
    bool was = atomic_exchange(&q->broken, true);
    if (!was)
        atomic_fetch_add_explicit(&q->times_broken, 1, memory_order_relaxed);
    return was;
}

void vu_log(const struct vblk_vu_dev *d, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline bool vu_has_feature(const struct vblk_vu_dev *d, unsigned bit)
{
    return (d->features >> bit) & 1;
}

static inline bool vu_has_protocol(const struct vblk_vu_dev *d, unsigned bit)
{
    return (d->protocol_features >> bit) & 1;
}

/* The notification mode in force. */
static inline enum vblk_notify_mode vu_notify_mode(const struct vblk_vu_dev *d)
{
    return d->opts.notify;
}

static inline bool vu_packed(const struct vblk_vu_dev *d)
{
    return vu_has_feature(d, VBLK_F_RING_PACKED);
}

/* True once a fault in one of the connection's mappings was contained:
 * the device must not be used any more until the front-end is gone. One
 * relaxed load; checked after each queue run and each message. */
static inline bool vu_faulted(const struct vblk_vu_dev *d)
{
    return fault_owner_count(&d->fault) !=
           atomic_load_explicit(&d->faults_before, memory_order_relaxed);
}

/* Breaks queue @q after a contained fault (lock held): DEVICE_NEEDS_RESET,
 * the error eventfd, and the socket shut down so the control loop detaches.
 * Returns -EIO. */
int vu_queue_fault(struct vu_queue *q);

int vu_queue_setup(struct vblk_vu_dev *d, struct vu_queue *q, uint16_t index);
void vu_queue_teardown(struct vu_queue *q);
void vu_queue_lock(struct vu_queue *q);
void vu_queue_unlock(struct vu_queue *q);
void vu_lock_all(struct vblk_vu_dev *d);
void vu_unlock_all(struct vblk_vu_dev *d);
/* Starts the ring (lock held). Returns 0 or a negative errno. */
int vu_queue_start(struct vu_queue *q);
/* Waits for the requests in flight and releases the core queue, keeping
 * the ring position in q->tq.saved (lock held). */
void vu_queue_quiesce(struct vu_queue *q);
/* Stops the ring for GET_VRING_BASE or a reset; returns its position. */
void vu_queue_stop(struct vu_queue *q, struct vblk_vq_state *st);
/* Forgets everything the front-end configured (lock held). */
void vu_queue_reset(struct vu_queue *q);
/* Replaces the kick fd (lock held); closes the old one. */
void vu_queue_set_kick(struct vu_queue *q, int fd);
/* Replaces the call or err notifier (lock held) with one for @fd (-1: none).
 * Returns 0 or -ENOMEM (then @fd is closed). */
int vu_queue_set_notifier(struct vu_queue *q, bool err, int fd);
/* Releases front-end notification fds a thread has been blocked writing
 * for a whole watchdog period, and breaks their queues. Called from one
 * thread at intervals. Returns the number released. */
unsigned vu_queue_watchdog(struct vu_queue *q);
void vu_queue_set_enabled(struct vu_queue *q, bool enabled);
/* Installs or removes the dirty log in the queue's memory map (lock held). */
void vu_queue_refresh_log(struct vu_queue *q);
/* Recomputes q->active and pokes the queue's loop. */
void vu_queue_update_active(struct vu_queue *q);
void vu_queue_poke(struct vu_queue *q);
/* Ring sizes for one queue of @num entries. */
void vu_ring_sizes(bool packed, uint32_t num, uint64_t *desc, uint64_t *avail, uint64_t *used);

/* Message handlers (vu_vring.c, vu_memtable.c, vu_inflight_fd.c). They return 0,
 * a negative errno (the request is refused), or -EPROTO (the connection
 * must end). Handlers that take an fd set m->fds[i] to -1. */
void vu_reply(struct vblk_vu_reply *rep, const struct vu_msg *m, const void *payload,
              uint32_t size);
int vu_h_set_vring_num(struct vblk_vu_dev *d, struct vu_msg *m);
int vu_h_set_vring_addr(struct vblk_vu_dev *d, struct vu_msg *m);
int vu_h_set_vring_base(struct vblk_vu_dev *d, struct vu_msg *m);
int vu_h_get_vring_base(struct vblk_vu_dev *d, struct vu_msg *m, struct vblk_vu_reply *rep);
int vu_h_set_vring_fd(struct vblk_vu_dev *d, struct vu_msg *m);
int vu_h_set_vring_enable(struct vblk_vu_dev *d, struct vu_msg *m);
int vu_h_set_mem_table(struct vblk_vu_dev *d, struct vu_msg *m);
int vu_h_add_mem_reg(struct vblk_vu_dev *d, struct vu_msg *m);
int vu_h_rem_mem_reg(struct vblk_vu_dev *d, struct vu_msg *m);
int vu_h_set_log_base(struct vblk_vu_dev *d, struct vu_msg *m);
int vu_h_get_inflight_fd(struct vblk_vu_dev *d, struct vu_msg *m, struct vblk_vu_reply *rep);
int vu_h_set_inflight_fd(struct vblk_vu_dev *d, struct vu_msg *m);
/* True if some queue is running on the core. */
bool vu_any_live(const struct vblk_vu_dev *d);
/* Unmaps the dirty log / the in-flight region. */
void vu_log_unmap(struct vblk_vu_dev *d);
void vu_inflight_unmap(struct vblk_vu_dev *d);

/* Per-queue bytes of the in-flight region for rings of @qsize entries. */
uint64_t vu_inflight_queue_bytes(uint16_t qsize);
/* Prepares in-flight tracking for a ring start (lock held, the core queue
 * not yet initialised): picks this queue's part of the region (if it can be
 * tracked), and after a back-end restart recovers the ring position into
 * @st (split: whose used_idx was read from the ring; packed: the position
 * the region records replaces the one the front-end set) and plans the
 * requests to resubmit. @desc_gpa is the ring's descriptor area. Returns
 * the number of requests to resubmit or a negative errno. */
int vu_inflight_prepare(struct vu_queue *q, uint64_t desc_gpa, struct vblk_vq_state *st);
/* Resubmits what vu_inflight_prepare() planned, once the core queue runs.
 * Returns the number of requests resubmitted. */
int vu_inflight_resubmit(struct vu_queue *q);
/* Forgets the plan (the ring did not start). */
void vu_inflight_drop_plan(struct vu_queue *q);
/* Frees the queue's private tracking state and forgets its region. */
void vu_inflight_release(struct vu_queue *q);
/* The hooks the core calls, or NULL when the queue is not tracked. */
const struct vblk_queue_hooks *vu_inflight_hooks(struct vu_queue *q);

#pragma GCC visibility pop

#endif
