/* SPDX-License-Identifier: MIT */
/**
 * @file virtioblk.h
 * @brief Umbrella header: everything libvirtioblk exports.
 *
 * The device side of virtio-blk as a library. Start with blk.h (the device
 * model and the life of a request), backend.h (how storage plugs in),
 * vq.h and mem.h (the rings and guest memory), driver.h and loopback.h
 * (an in-process driver), the transports (vhost_user.h, vduse.h), and a
 * vhost-user front-end that drives any vhost-user-blk back-end
 * (vhost_user_client.h). transport.h has what the transports share (log
 * callback, counters). version.h gives the library version.
 *
 * Not included here: advanced.h (restarting a queue with requests in
 * flight) and advanced_msg.h (raw vhost-user and VDUSE messages, for event
 * loops of one's own and fuzzers). docs/api.md maps every header.
 *
 * Firmware that links only virtioblk-core includes the freestanding
 * headers it needs (blk.h, driver.h, vq.h, mem.h, spec.h, version.h)
 * instead of this one; see docs/embedding.md.
 */
#ifndef VIRTIOBLK_VIRTIOBLK_H
#define VIRTIOBLK_VIRTIOBLK_H

#include "spec.h"
#include "ring.h"
#include "mem.h"
#include "vq.h"
#include "backend.h"
#include "backends.h"
#include "zone.h"
#include "blk.h"
#include "driver.h"
#include "transport.h"
#include "loopback.h"
#include "vhost_user.h"
#include "vhost_user_client.h"
#include "vduse.h"
#include "version.h"

#endif
