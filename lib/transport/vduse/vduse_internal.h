/* SPDX-License-Identifier: MIT */
/*
 * Shared between the VDUSE adapter's files. Not installed.
 *
 *   vduse.c         lifecycle and the event loop
 *   vduse_support.c the log and the epoll set, used by all of them
 *   vduse_kernel.c  the real kernel: control device, ioctls, mmap
 *   vduse_msg.c     the kernel's requests: status, queue state, IOTLB
 *   vduse_queue.c   starting, running and stopping queues
 *   vduse_iotlb.c   the IOVA map: lazy mapping and invalidation
 *
 * Everything that touches the kernel goes through struct vduse_kops, so the
 * message handling runs unchanged against a fake kernel in unit tests and
 * fuzzers.
 */
#ifndef VBLK_VDUSE_INTERNAL_H
#define VBLK_VDUSE_INTERNAL_H

#include "transport/fault_guard.h"
#include "transport/tqueue.h"
#include "transport/vduse/vduse_abi.h"
#include "virtioblk/advanced_msg.h"
#include "virtioblk/vduse.h"

/* One IOTLB entry mapped into the process. */
struct vduse_mapping {
    uint64_t start; /* first IOVA */
    uint64_t last;  /* last IOVA, inclusive */
    uint8_t perm;   /* VDUSE_ABI_ACCESS_* */
    void *host;     /* host address of start */
    void *base;     /* start of the mmap, for unmapping */
};

/* The device's view of the kernel. Return 0 or a negative errno. */
struct vduse_kops {
    /* VDUSE_DEV_GET_FEATURES: what the driver accepted. */
    int (*get_features)(void *k, uint64_t *features);
    /* VDUSE_VQ_GET_INFO for info->index. */
    int (*vq_info)(void *k, struct vduse_abi_vq_info *info);
    /* VDUSE_VQ_SETUP_KICKFD; fd -1 removes it. */
    int (*set_kickfd)(void *k, uint32_t index, int fd);
    /* VDUSE_VQ_INJECT_IRQ. */
    int (*inject_irq)(void *k, uint32_t index);
    /* Maps the IOTLB entry that contains @iova (VDUSE_IOTLB_GET_FD + mmap).
     * -EFAULT if the kernel maps nothing there. */
    int (*map)(void *k, uint64_t iova, struct vduse_mapping *m);
    /* Undoes map() for a region built from @m. */
    void (*unmap)(void *k, const struct vblk_mem_region *r);
    /* VDUSE_DEV_SET_CONFIG. */
    int (*set_config)(void *k, uint32_t offset, const void *buf, uint32_t len);
    /* VDUSE_DEV_INJECT_CONFIG_IRQ. */
    int (*config_irq)(void *k);
};

/* The real kernel, for a device file descriptor passed as @k (intptr_t). */
extern const struct vduse_kops vduse_kernel_kops;

/* /dev/vduse/control (vduse_kernel.c): open it and settle on API version
 * 0 (-EPROTONOSUPPORT otherwise); create a virtio-blk device. */
int vduse_ctl_open(int *ctl);
int vduse_ctl_create(int ctl, const char *name, uint64_t features, uint16_t nq, const void *config,
                     uint32_t config_size);
/* Destroys device @name; with @wait, retries while the kernel still holds it
 * (a vDPA device being deleted). -EBUSY: still in use. */
int vduse_ctl_destroy(int ctl, const char *name, bool wait);
/* /dev/vduse/NAME: open it (waiting briefly for udev), and give every queue
 * its maximum size, without which the kernel will not attach the device. */
int vduse_node_open(const char *name, int *fd);
int vduse_node_setup_vqs(int devfd, uint16_t nq, uint16_t qsize);

/* epoll tags: kind in the high half, queue index in the low half. */
enum vduse_tag {
    VDUSE_TAG_DEV = 1, /* /dev/vduse/NAME: kernel requests */
    VDUSE_TAG_STOP,    /* vblk_vduse_stop() */
    VDUSE_TAG_TIMER,   /* detach check */
    VDUSE_TAG_KICK,    /* a queue's kick eventfd */
    VDUSE_TAG_WAKE,    /* a queue's completion wakeup eventfd */
    VDUSE_TAG_BACKEND, /* a queue's backend fd */
};

struct vduse_vq {
    struct vblk_vduse *v;
    uint16_t index;
    bool broken; /* the driver corrupted the ring: ignored until reset */
    int kickfd;
    uint16_t size;
    struct vblk_vq_addrs addrs;
    /* the core queue (running while tq.live), its pool, the wake and
     * backend fds, the position while stopped and the counters */
    struct tqueue tq;
    uint64_t kicks0, notifies0; /* tq.stats when the current run started */
};

struct vblk_vduse {
    struct vblk_dev dev;
    struct vblk_dev_params params; /* as given, for resets */
    struct vblk_backend be;
    const struct vduse_kops *kops;
    void *k;
    uint8_t status;
    bool features_ok; /* the driver's features were accepted */
    bool packed;      /* the driver negotiated VIRTIO_F_RING_PACKED */
    uint16_t nq;
    struct vduse_vq *vqs;
    struct vblk_mem mem;
    /* faults contained in the IOTLB mappings (fault_guard.h), and the
     * count the device last acted on */
    struct fault_owner fault;
    unsigned faults_handled;
    struct vblk_transport_stats stats;
    vblk_log_fn log;
    void *log_opaque;
    int log_level;
    /* Event loop and kernel objects; -1 when absent (unit tests). */
    int epfd;
    int devfd;
    int ctlfd;
    int stopfd;
    int timerfd;
    bool exit_on_detach;
    bool attached;
    bool detached;
    uint64_t gone_since;   /* ms: when the vDPA device's sysfs entry went */
    uint64_t last_request; /* ms: when the kernel last sent a request */
    bool stop;
    int error;
    char name[VBLK_VDUSE_NAME_MAX + 1];
};

/* vduse.c */
int vduse_alloc(const struct vblk_dev_params *params, const struct vblk_backend *be,
                const struct vduse_kops *kops, void *k, struct vblk_vduse **out);
void vduse_free(struct vblk_vduse *v);

/* vduse_support.c: the log (VBLK_LOG_* levels) and the epoll set */
void vduse_log(struct vblk_vduse *v, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void vduse_watch(struct vblk_vduse *v, int fd, enum vduse_tag tag, uint16_t index);
void vduse_unwatch(struct vblk_vduse *v, int fd);

/* vduse_msg.c */
void vduse_reset(struct vblk_vduse *v);

/* vduse_queue.c */
int vduse_vq_start(struct vblk_vduse *v, uint16_t index);
int vduse_vq_resume(struct vblk_vduse *v, uint16_t index);
void vduse_vq_stop(struct vblk_vduse *v, uint16_t index);
void vduse_vq_run(struct vblk_vduse *v, uint16_t index);
void vduse_vq_get_state(const struct vblk_vduse *v, uint16_t index, struct vblk_vq_state *st);
void vduse_vq_forget(struct vblk_vduse *v, uint16_t index);
/* After a queue run or a kernel request: if an IOTLB mapping faulted
 * meanwhile, stops serving every queue until the driver resets the device
 * (VDUSE has no DEVICE_NEEDS_RESET). Returns true if it did. */
bool vduse_fault_check(struct vblk_vduse *v);

/* vduse_iotlb.c */
int vduse_iotlb_miss(void *opaque, struct vblk_mem *mem, uint64_t addr);
unsigned vduse_iotlb_overlaps(const struct vblk_vduse *v, uint64_t start, uint64_t last);
unsigned vduse_iotlb_drop(struct vblk_vduse *v, uint64_t start, uint64_t last);

#endif
