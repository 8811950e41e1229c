/* SPDX-License-Identifier: MIT */
/* vhost-user: the device's log line and the reply a handler fills, used by
 * every part of the transport. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vu_internal.h"

void vu_log(const struct vblk_vu_dev *d, int level, const char *fmt, ...)
{
    if (!d->opts.log || level > d->opts.log_level)
        return;
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    d->opts.log(d->opts.log_opaque, level, buf);
}

void vu_reply(struct vblk_vu_reply *rep, const struct vu_msg *m, const void *payload, uint32_t size)
{
    struct vu_hdr h = {m->hdr.request, VU_VERSION | VU_FLAG_REPLY, size};
    memcpy(rep->buf, &h, sizeof(h));
    if (size)
        memcpy(rep->buf + sizeof(h), payload, size);
    rep->len = sizeof(h) + size;
}
