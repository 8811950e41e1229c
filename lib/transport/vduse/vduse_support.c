/* SPDX-License-Identifier: MIT */
/*
 * What every file of the VDUSE adapter uses: the log, and registering fds
 * with the device's epoll set. Calls nothing else in the adapter.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>

#include "transport/vduse/vduse_internal.h"

void vduse_log(struct vblk_vduse *v, int level, const char *fmt, ...)
{
    if (!v->log || level > v->log_level)
        return;
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    v->log(v->log_opaque, level, buf);
}

void vduse_watch(struct vblk_vduse *v, int fd, enum vduse_tag tag, uint16_t index)
{
    if (v->epfd < 0 || fd < 0)
        return;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ((uint64_t)tag << 32) | index};
    if (epoll_ctl(v->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        vduse_log(v, VBLK_LOG_ERR, "epoll_ctl: %s", strerror(errno));
}

void vduse_unwatch(struct vblk_vduse *v, int fd)
{
    if (v->epfd >= 0 && fd >= 0)
        (void)epoll_ctl(v->epfd, EPOLL_CTL_DEL, fd, NULL);
}
