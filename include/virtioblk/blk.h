/* SPDX-License-Identifier: MIT */
/**
 * @file blk.h
 * @brief The virtio-blk device model: features, config space, queues and
 *        requests.
 *
 * The life of one request:
 *  1. the transport sees a kick and calls vblk_queue_process();
 *  2. the queue pops a chain (vq.h), takes a request slot from its pool,
 *     reads the header, checks the sector range and segment limits;
 *  3. valid I/O goes to the backend's submit(); GET_ID and GET_LIFETIME are
 *     answered by the device itself; invalid requests complete at once with
 *     VBLK_S_IOERR or VBLK_S_UNSUPP;
 *  4. the backend calls vblk_req_complete(); the status byte is written,
 *     the chain is pushed to the used ring, and at the end of the batch the
 *     driver is notified once if it asked to be.
 *
 * Nothing here allocates: the device, the queues and their request pools
 * live in memory the caller provides (see vblk_queue_mem_size()).
 */
#ifndef VIRTIOBLK_BLK_H
#define VIRTIOBLK_BLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "mem.h"
#include "spec.h"
#include "vq.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Most queues one device supports. */
#define VBLK_MAX_QUEUES 64

/** Device parameters. Start from vblk_dev_params_default(). */
struct vblk_dev_params {
    uint64_t capacity;                      /**< Bytes; a multiple of 512. */
    uint32_t blk_size;                      /**< Logical block size (512..65536, power of two). */
    uint32_t seg_max;                       /**< Most data descriptors per request (>= 1). */
    uint32_t size_max;                      /**< Largest data descriptor in bytes; 0: no limit. */
    uint16_t num_queues;                    /**< 1..VBLK_MAX_QUEUES. */
    uint16_t queue_size;                    /**< Largest queue size the device accepts. */
    bool read_only;                         /**< Offer VIRTIO_BLK_F_RO; refuse writes. */
    bool writeback;                         /**< Initial write cache mode (CONFIG_WCE). */
    char serial[VBLK_ID_BYTES];             /**< GET_ID answer; need not be NUL-terminated. */
    uint16_t cylinders;                     /**< Geometry; 0 disables VIRTIO_BLK_F_GEOMETRY. */
    uint8_t heads;                          /**< Geometry heads. */
    uint8_t sectors;                        /**< Geometry sectors per track. */
    uint8_t physical_block_exp;             /**< Topology: log2(physical / logical block). */
    uint8_t alignment_offset;               /**< Topology: in logical blocks. */
    uint16_t min_io_size;                   /**< Topology: in logical blocks. */
    uint32_t opt_io_size;                   /**< Topology: in logical blocks. */
    uint32_t max_discard_sectors;           /**< 0 disables DISCARD. */
    uint32_t max_discard_seg;               /**< Ranges per DISCARD (>= 1). */
    uint32_t discard_sector_alignment;      /**< In 512-byte sectors. */
    uint32_t max_write_zeroes_sectors;      /**< 0 disables WRITE_ZEROES. */
    uint32_t max_write_zeroes_seg;          /**< Ranges per WRITE_ZEROES (>= 1). */
    bool write_zeroes_may_unmap;            /**< UNMAP flag may deallocate. */
    uint32_t max_secure_erase_sectors;      /**< 0 disables SECURE_ERASE. */
    uint32_t max_secure_erase_seg;          /**< Ranges per SECURE_ERASE (>= 1). */
    uint32_t secure_erase_sector_alignment; /**< In 512-byte sectors. */
    bool lifetime;                          /**< Offer GET_LIFETIME with the values below. */
    struct vblk_lifetime lifetime_info;     /**< GET_LIFETIME answer (host order). */
    uint64_t features_off;                  /**< Feature bits never to offer. */
};

/**
 * Fills @p p with defaults for a disk of @p capacity bytes: 512-byte
 * blocks, seg_max 126, 1 queue of up to 256 entries, write-back, flush,
 * and discard / write-zeroes with one range of up to 2^22 sectors.
 */
void vblk_dev_params_default(struct vblk_dev_params *p, uint64_t capacity);

/** Device-wide counters. */
struct vblk_dev_stats {
    uint64_t ioerr;  /**< Requests failed with VBLK_S_IOERR. */
    uint64_t unsupp; /**< Requests failed with VBLK_S_UNSUPP. */
};

/** A virtio-blk device. Treat the fields as private. */
struct vblk_dev {
    /** @cond PRIVATE */
    struct vblk_dev_params p;
    struct vblk_backend be;
    struct vblk_config config; /**< Little-endian, as the driver reads it. */
    uint64_t host_features;
    uint64_t driver_features;
    uint8_t features_ok;
    uint8_t zoned;    /* ZONED offered (a zoned backend) */
    uint8_t zoned_on; /* zoned requests accepted: ZONED negotiated, model HM / HA */
    uint32_t max_ranges;
    struct vblk_zone_info zinfo;
    uint32_t cap_seq; /* capacity updates, odd while one is under way (32-bit CPUs) */
    /** @endcond */
};

/**
 * Initializes @p dev for backend @p be. The backend's capabilities narrow
 * the features (no DISCARD without VBLK_BACKEND_CAP_DISCARD, ...), and a
 * read-only backend forces read-only. A zoned backend (zone_info(), V2)
 * makes a zoned device: VIRTIO_BLK_F_ZONED with its geometry, and no
 * DISCARD, WRITE_ZEROES or SECURE_ERASE. Returns 0, -EINVAL for
 * inconsistent parameters (capacity not a multiple of 512, seg_max 0, a
 * zone geometry that does not fit, ...) or the error of zone_info().
 */
int vblk_dev_init(struct vblk_dev *dev, const struct vblk_dev_params *p,
                  const struct vblk_backend *be);

/** Feature bits the device offers (transport bits included). */
uint64_t vblk_dev_features(const struct vblk_dev *dev);

/**
 * Accepts the driver's feature selection. Returns 0, or -EINVAL if it is not
 * a subset of the offer, lacks VIRTIO_F_VERSION_1, or lacks
 * VIRTIO_BLK_F_ZONED on a host-managed zoned device (virtio 1.2 5.2.5.2).
 */
int vblk_dev_set_features(struct vblk_dev *dev, uint64_t features);

/** Features accepted by vblk_dev_set_features(). */
static inline uint64_t vblk_dev_driver_features(const struct vblk_dev *dev)
{
    return dev->driver_features;
}

/** Size of the configuration space in bytes: 96 for a zoned device, else 72. */
uint32_t vblk_dev_config_size(const struct vblk_dev *dev);

/**
 * Reads @p len bytes of config space at @p offset into @p buf. Returns 0, or
 * -EINVAL if the range is not inside the config space.
 */
int vblk_dev_config_read(const struct vblk_dev *dev, uint32_t offset, void *buf, uint32_t len);

/**
 * Driver write to config space. Only @c writeback is writable, and only with
 * VIRTIO_BLK_F_CONFIG_WCE negotiated (virtio 1.2 5.2.5). Returns 0,
 * -EINVAL for a range outside config space, -EPERM for a read-only field.
 */
int vblk_dev_config_write(struct vblk_dev *dev, uint32_t offset, const void *buf, uint32_t len);

/** Current write cache mode: true for write-back. */
bool vblk_dev_writeback(const struct vblk_dev *dev);

/**
 * Sets the capacity to @p capacity bytes (rounded down to 512). Queue
 * threads may be processing meanwhile: a request checked against the old
 * capacity can still reach the backend, which must check its own size
 * (vblk_backend_resize() does). The transport tells the driver
 * (vblk_vu_dev_set_capacity(), vblk_vduse_update_config()).
 */
void vblk_dev_set_capacity(struct vblk_dev *dev, uint64_t capacity);

/**
 * The capacity in 512-byte sectors, as the driver sees it. Any thread may
 * call it while another changes the capacity with vblk_dev_set_capacity().
 */
static inline uint64_t vblk_dev_capacity_sectors(const struct vblk_dev *dev)
{
#if __GCC_ATOMIC_LLONG_LOCK_FREE == 2
    return __atomic_load_n(&dev->config.capacity, __ATOMIC_ACQUIRE);
#else
    /* No single-copy 64-bit load on this CPU (and no libatomic in
     * firmware): read the two halves between two equal, even values of the
     * update count that vblk_dev_set_capacity() keeps. */
    const uint32_t *half = (const uint32_t *)(const void *)&dev->config.capacity;
    for (;;) {
        uint32_t seq = __atomic_load_n(&dev->cap_seq, __ATOMIC_ACQUIRE);
        uint32_t parts[2] = {__atomic_load_n(&half[0], __ATOMIC_RELAXED),
                             __atomic_load_n(&half[1], __ATOMIC_RELAXED)};
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (!(seq & 1) && __atomic_load_n(&dev->cap_seq, __ATOMIC_RELAXED) == seq) {
            uint64_t v;
            __builtin_memcpy(&v, parts, sizeof(v));
            return v;
        }
    }
#endif
}

/**
 * Switches read-only mode at run time. Requests that modify the disk fail
 * with VBLK_S_IOERR from now on (or succeed again); the VIRTIO_BLK_F_RO
 * feature bit a running driver negotiated does not change, the next
 * vblk_dev_init() offers the new one.
 */
void vblk_dev_set_read_only(struct vblk_dev *dev, bool read_only);

/**
 * The write must be stable before completion (write-through cache mode,
 * virtio 1.2 5.2.6.1): the backend syncs after writing.
 */
#define VBLK_REQ_F_FUA 1u

/** A request as the backend sees it. Fields past @c priv are private. */
struct vblk_req {
    uint32_t type;  /**< VBLK_T_IN, _OUT, _FLUSH, _DISCARD, _WRITE_ZEROES, _SECURE_ERASE, or (zoned)
                       _ZONE_*. */
    uint16_t queue; /**< Queue index. */
    uint16_t niov;  /**< Data iovecs. */
    uint64_t sector;      /**< First sector for IN / OUT; the zone start for ZONE_* requests. */
    uint32_t len;         /**< Data bytes for IN / OUT / ZONE_APPEND. */
    uint32_t nranges;     /**< Ranges for DISCARD / WRITE_ZEROES / SECURE_ERASE. */
    uint32_t flags;       /**< VBLK_REQ_F_*. */
    struct vblk_iov *iov; /**< Data buffers (driver memory). */
    struct vblk_discard_wz_seg *ranges; /**< Validated copies, host byte order. */
    void *priv;                         /**< Free for the backend's use. */
    uint64_t scratch[4];                /**< Free for the backend's use. */
    /** @cond PRIVATE */
    struct vblk_queue *q;
    struct vblk_req *next;
    uint8_t *status;
    uint32_t used_len;
    uint16_t id;
    uint16_t ndescs;
    uint8_t done;
    uint8_t state;
    uint32_t seq;
    uint16_t head_pos;
    uint8_t head_wrap;
    uint16_t nzin;        /* ZONE_APPEND: writable iovecs before the status byte */
    struct vblk_iov *zin; /* ZONE_APPEND: where append_sector goes */
    /** @endcond */
    struct vblk_chain chain; /**< The descriptor chain (read-only for backends). */
};

/** Per-request hooks for in-flight tracking (advanced.h). */
struct vblk_queue_hooks;

/** Callback the queue uses to notify the driver or wake its own thread. */
typedef void (*vblk_queue_cb)(void *opaque);

/** Parameters for vblk_queue_init(). */
struct vblk_queue_params {
    uint16_t index;                    /**< Queue index. */
    uint16_t size;                     /**< Queue size chosen by the driver. */
    struct vblk_vq_addrs addrs;        /**< Ring areas. */
    const struct vblk_vq_state *state; /**< Starting position or NULL. */
    vblk_queue_cb notify;              /**< Sends a used-buffer notification (call fd, IRQ). */
    void *notify_opaque;               /**< Argument of notify. */
    vblk_queue_cb
        wake; /**< Wakes the queue thread after async completion; may be NULL when polling. */
    void *wake_opaque;                    /**< Argument of wake. */
    const struct vblk_queue_hooks *hooks; /**< Optional request hooks (advanced.h), or NULL. */
    void *hooks_opaque;                   /**< Argument of the hooks. */
};

/** Per-queue counters. */
struct vblk_queue_stats {
    uint64_t submitted;   /**< Requests handed to the backend. */
    uint64_t completed;   /**< Requests completed (any status). */
    uint64_t ioerr;       /**< Completed with VBLK_S_IOERR. */
    uint64_t unsupp;      /**< Completed with VBLK_S_UNSUPP. */
    uint64_t pool_full;   /**< Times processing paused because every slot was in flight. */
    uint64_t multi_range; /**< DISCARD / WRITE_ZEROES / SECURE_ERASE requests with more than one
                             range. */
};

/** A device queue: a virtqueue plus its request pool. Fields are private. */
struct vblk_queue {
    /** @cond PRIVATE */
    struct vblk_vq vq;
    struct vblk_dev *dev;
    uint16_t index;
    uint16_t nreqs;
    uint16_t iov_cap;
    uint8_t in_order;
    uint8_t stopping;
    uint8_t need_publish;
    uint8_t started_backend;
    uint8_t polling;
    uint32_t inflight;
    uint32_t seq_next;
    uint32_t seq_done;
    struct vblk_req *reqs;
    struct vblk_req *free;
    struct vblk_req **order;
    void *async_head;      /* _Atomic(struct vblk_req *) */
    uint32_t wake_pending; /* accessed atomically */
    uint32_t async_busy;   /* completions between their push and their wake (atomic) */
    void *qctx;
    vblk_queue_cb notify;
    void *notify_opaque;
    vblk_queue_cb wake;
    void *wake_opaque;
    const struct vblk_queue_hooks *hooks;
    void *hooks_opaque;
    struct vblk_queue_stats stats;
    /** @endcond */
};

/**
 * Bytes of caller memory a queue of @p size entries needs for its request
 * pool (iovecs, ranges, in-order table), for vblk_queue_init().
 */
size_t vblk_queue_mem_size(const struct vblk_dev *dev, uint16_t size);

/**
 * Starts a queue: maps the rings, carves the request pool out of @p buf
 * (@p buflen >= vblk_queue_mem_size(), 16-byte aligned) and calls the
 * backend's queue_start. Call after vblk_dev_set_features(). Returns 0,
 * -EINVAL (bad size or parameters), -EFAULT (rings not mapped), -ENOBUFS
 * (buffer too small) or the backend's error.
 */
int vblk_queue_init(struct vblk_queue *q, struct vblk_dev *dev, struct vblk_mem *mem,
                    const struct vblk_queue_params *qp, void *buf, size_t buflen);

/**
 * Does all pending work on the queue thread: finishes async completions,
 * polls the backend, pops and submits up to @p budget new requests
 * (0: no limit), publishes used entries and notifies the driver at most
 * once. Returns the number of requests submitted, or -EIO if the queue is
 * broken (the transport then signals DEVICE_NEEDS_RESET). A broken queue
 * still reaps completions, so a transport can wait for its requests in
 * flight before vblk_queue_destroy().
 */
int vblk_queue_process(struct vblk_queue *q, unsigned budget);

/**
 * Publishes completions made with vblk_req_complete() outside
 * vblk_queue_process() and notifies the driver if it asked.
 */
void vblk_queue_flush(struct vblk_queue *q);

/**
 * Event-mode helper: processes until the ring is empty with driver kicks
 * disabled, then re-enables them and re-checks (no lost wakeups). Returns
 * requests submitted or -EIO.
 */
int vblk_queue_on_kick(struct vblk_queue *q);

/** Disables (true) or enables (false) driver kicks, for busy polling. */
void vblk_queue_set_polling(struct vblk_queue *q, bool polling);

/** Stops popping new requests; returns requests still in flight. */
uint32_t vblk_queue_stop(struct vblk_queue *q);

/** Requests in flight (submitted, not completed). */
static inline uint32_t vblk_queue_inflight(const struct vblk_queue *q)
{
    return q->inflight;
}

/**
 * Releases the queue after it has stopped with nothing in flight: calls the
 * backend's queue_stop. Returns 0 or -EBUSY if requests are in flight.
 */
int vblk_queue_destroy(struct vblk_queue *q);

/**
 * The backend's event fd for this queue (its queue_fd() method): readable
 * when vblk_queue_process() has completions to reap. Event-driven
 * transports add it to the queue thread's loop. Returns -1 if the backend
 * has none.
 */
int vblk_queue_backend_fd(const struct vblk_queue *q);

/** Ring position for GET_VRING_BASE / migration. */
void vblk_queue_get_state(const struct vblk_queue *q, struct vblk_vq_state *st);

/** True if the queue is broken (the driver corrupted the ring). */
static inline bool vblk_queue_broken(const struct vblk_queue *q)
{
    return vblk_vq_broken(&q->vq);
}

/** Counters of this queue. */
static inline const struct vblk_queue_stats *vblk_queue_stats(const struct vblk_queue *q)
{
    return &q->stats;
}

/** The underlying virtqueue (counters, notification state). */
static inline struct vblk_vq *vblk_queue_vq(struct vblk_queue *q)
{
    return &q->vq;
}

/**
 * Completes @p req with status @p status (VBLK_S_*). Call on the queue
 * thread (see backend.h). Inside vblk_queue_process() the batch is
 * published at its end; elsewhere call vblk_queue_flush() after a batch.
 */
void vblk_req_complete(struct vblk_req *req, uint8_t status);

/**
 * Completes @p req from any thread: the request goes onto the queue's
 * lock-free completion list, and the queue's wake hook runs if the list
 * was empty. The queue thread finishes it in vblk_queue_process().
 */
void vblk_req_complete_async(struct vblk_req *req, uint8_t status);

/**
 * ZONE_APPEND: records @p sector, the first sector the data went to, as the
 * request's append_sector (virtio 1.2 5.2.6). Call before completing the
 * request with VBLK_S_OK, on any thread that owns it.
 */
void vblk_req_set_append_sector(struct vblk_req *req, uint64_t sector);

/** Human-readable name of a request type ("IN", "OUT", ...). */
const char *vblk_req_type_name(uint32_t type);

#ifdef __cplusplus
}
#endif
#endif
