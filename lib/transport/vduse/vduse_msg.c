/* SPDX-License-Identifier: MIT */
/*
 * The kernel's requests to a VDUSE device (read from /dev/vduse/NAME).
 *
 * The kernel sends one request at a time per driver action and blocks the
 * driver until the answer (or a timeout, after which it marks the device
 * broken), so every handler here is quick and never waits for the driver.
 *
 *  - SET_STATUS: the driver wrote the status byte. FEATURES_OK makes the
 *    device accept the driver's features, DRIVER_OK starts the queues the
 *    driver made ready, 0 resets the device to its initial state.
 *  - GET_VQ_STATE: where a queue's ring stands (split or packed form,
 *    according to the negotiated features).
 *  - UPDATE_IOTLB: mappings of an IOVA range changed; drop ours.
 *
 * Everything else is answered with a failure.
 */
#include <errno.h>
#include <string.h>

#include "transport/vduse/vduse_internal.h"

/* Takes the driver's feature selection. The transport bit VDUSE insists
 * on is no business of the device model. */
static bool accept_features(struct vblk_vduse *v)
{
    uint64_t f;
    int rc = v->kops->get_features(v->k, &f);
    if (rc < 0) {
        vduse_log(v, VBLK_LOG_ERR, "cannot read the driver's features: %s", strerror(-rc));
        return false;
    }
    rc = vblk_dev_set_features(&v->dev, f & ~VBLK_BIT(VBLK_F_ACCESS_PLATFORM));
    if (rc < 0) {
        vduse_log(v, VBLK_LOG_WARN, "driver features 0x%llx refused", (unsigned long long)f);
        return false;
    }
    v->packed = (f & VBLK_BIT(VBLK_F_RING_PACKED)) != 0;
    v->features_ok = true;
    return true;
}

static void stop_queues(struct vblk_vduse *v)
{
    for (uint16_t i = 0; i < v->nq; i++)
        vduse_vq_stop(v, i);
}

static bool start_queues(struct vblk_vduse *v)
{
    for (uint16_t i = 0; i < v->nq; i++) {
        int rc = vduse_vq_start(v, i);
        if (rc < 0) {
            vduse_log(v, VBLK_LOG_ERR, "queue %u: cannot start: %s", i, strerror(-rc));
            stop_queues(v);
            return false;
        }
    }
    return true;
}

void vduse_reset(struct vblk_vduse *v)
{
    stop_queues(v);
    for (uint16_t i = 0; i < v->nq; i++)
        vduse_vq_forget(v, i);
    /* virtio_vdpa frees its rings on reset without invalidating them, and
     * the next driver may put new ones at the same IOVAs. */
    vduse_iotlb_drop(v, 0, UINT64_MAX);
    /* Back to the state of a new device: features, cache mode, config. */
    (void)vblk_dev_init(&v->dev, &v->params, &v->be);
    v->status = 0;
    v->features_ok = false;
    v->packed = false;
    v->stats.resets++;
}

static bool set_status(struct vblk_vduse *v, uint8_t status)
{
    uint8_t old = v->status;
    if (status == 0) {
        vduse_reset(v);
        return true;
    }
    v->attached = true;
    /* virtio 1.2 3.1.1: features are final once FEATURES_OK is set. */
    if ((status & VBLK_STATUS_FEATURES_OK) && !v->features_ok && !accept_features(v))
        return false;
    if ((status & VBLK_STATUS_DRIVER_OK) && !(old & VBLK_STATUS_DRIVER_OK)) {
        /* A legacy-style driver that skipped FEATURES_OK still needs them. */
        if (!v->features_ok && !accept_features(v))
            return false;
        if (!start_queues(v))
            return false;
    } else if (!(status & VBLK_STATUS_DRIVER_OK) && (old & VBLK_STATUS_DRIVER_OK)) {
        stop_queues(v);
    }
    v->status = status;
    return true;
}

static bool get_vq_state(struct vblk_vduse *v, uint32_t index, struct vduse_abi_response *resp)
{
    if (index >= v->nq)
        return false;
    /* The kernel reads the union by the features the driver wrote, which
     * may not have been accepted yet: ask which form it expects. */
    uint64_t f = 0;
    if (v->kops->get_features(v->k, &f) < 0)
        return false;
    struct vblk_vq_state st;
    vduse_vq_get_state(v, (uint16_t)index, &st);
    resp->vq_state.index = index;
    if (f & VBLK_BIT(VBLK_F_RING_PACKED)) {
        resp->vq_state.packed.last_avail_counter = st.avail_wrap;
        resp->vq_state.packed.last_avail_idx = st.last_avail_idx;
        resp->vq_state.packed.last_used_counter = st.used_wrap;
        resp->vq_state.packed.last_used_idx = st.used_idx;
    } else {
        resp->vq_state.split.avail_index = st.last_avail_idx;
    }
    return true;
}

static bool update_iotlb(struct vblk_vduse *v, uint64_t start, uint64_t last)
{
    v->stats.memory_updates++;
    if (start > last)
        return false;
    if (vduse_iotlb_overlaps(v, start, last) == 0)
        return true;
    /* Rings and in-flight buffers may live in the range: let the queues
     * drain and stop, drop the mappings, then resume where they were. The
     * rings map again on first use. */
    bool running[VBLK_MAX_QUEUES];
    for (uint16_t i = 0; i < v->nq; i++) {
        running[i] = v->vqs[i].tq.live;
        vduse_vq_stop(v, i);
    }
    vduse_iotlb_drop(v, start, last);
    for (uint16_t i = 0; i < v->nq; i++) {
        if (!running[i])
            continue;
        int rc = vduse_vq_resume(v, i);
        if (rc < 0) {
            v->vqs[i].broken = true;
            v->stats.broken_queues++;
            vduse_log(v, VBLK_LOG_ERR, "queue %u: cannot resume after an IOTLB update: %s", i,
                      strerror(-rc));
        }
    }
    return true;
}

int vblk_vduse_handle_request(struct vblk_vduse *v, const void *buf, size_t len, void *out,
                              size_t out_size)
{
    struct vduse_abi_request req;
    struct vduse_abi_response resp;
    if (out_size < sizeof(resp))
        return -EINVAL;
    /* read(2) returns whole requests; anything else is not one. */
    if (len != sizeof(req)) {
        v->stats.bad_messages++;
        return -EBADMSG;
    }
    memcpy(&req, buf, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    resp.request_id = req.request_id;
    v->stats.messages++;

    bool ok;
    switch (req.type) {
    case VDUSE_MSG_GET_VQ_STATE:
        ok = get_vq_state(v, req.vq_state.index, &resp);
        break;
    case VDUSE_MSG_SET_STATUS:
        ok = set_status(v, req.status);
        break;
    case VDUSE_MSG_UPDATE_IOTLB:
        ok = update_iotlb(v, req.iova.start, req.iova.last);
        break;
    default:
        v->stats.bad_messages++;
        ok = false;
        break;
    }
    /* Starting or draining a ring touched a mapping that faulted. */
    (void)vduse_fault_check(v);
    resp.result = ok ? VDUSE_ABI_RESULT_OK : VDUSE_ABI_RESULT_FAILED;
    if (!ok)
        v->stats.failed++;
    memcpy(out, &resp, sizeof(resp));
    return (int)sizeof(resp);
}
