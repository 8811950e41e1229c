/* SPDX-License-Identifier: MIT */
/* What every part of vblkd uses: its errors and log, path checks, the
 * control loop's epoll registrations, Unix-socket listening and the
 * daemon's settings. The loop itself is in loop.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "transport/unix_listen.h"

uint64_t vblkd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void vblkd_errorf(struct vblkd_error *e, int code, const char *fmt, ...)
{
    va_list ap;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
}

void vblkd_log(struct vblkd *d, int level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    if (level > d->o.log_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "vblkd: %s: %s\n", names[level & 3], msg);
}

int vblkd_check_path(struct vblkd *d, const char *what, const char *path, size_t max,
                     struct vblkd_error *e)
{
    size_t len = strlen(path);
    if (len == 0 || path[0] != '/') {
        vblkd_errorf(e, RPC_INVALID_PARAMS, "%s '%.200s' must be an absolute path", what, path);
        return -1;
    }
    if (len > max) {
        vblkd_errorf(e, RPC_INVALID_PARAMS, "%s is %zu bytes long; at most %zu are allowed", what,
                     len, max);
        return -1;
    }
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            vblkd_errorf(e, RPC_INVALID_PARAMS, "%s contains a control character", what);
            return -1;
        }
    /* ".." would let a path escape --path-prefix. */
    for (const char *p = path; (p = strstr(p, "..")) != NULL; p += 2)
        if (p[-1] == '/' && (p[2] == '/' || p[2] == '\0')) {
            vblkd_errorf(e, RPC_INVALID_PARAMS, "%s '%.200s' must not contain '..'", what, path);
            return -1;
        }
    if (d->path_prefix) {
        size_t n = strlen(d->path_prefix);
        if (strncmp(path, d->path_prefix, n) != 0 || (path[n] != '/' && path[n - 1] != '/')) {
            vblkd_errorf(e, RPC_INVALID_PARAMS, "%s '%.200s' is outside %s (--path-prefix)", what,
                         path, d->path_prefix);
            return -1;
        }
    }
    return 0;
}

int ep_add(struct vblkd *d, int fd, uint32_t events, struct vblkd_tag *tag)
{
    struct epoll_event ev = {.events = events, .data.ptr = tag};
    return epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

void ep_del(struct vblkd *d, int fd)
{
    if (fd >= 0)
        (void)epoll_ctl(d->epfd, EPOLL_CTL_DEL, fd, NULL);
}

/* Listens on @path with permissions @mode. Returns the fd or a negative errno. */
int listen_unix(const char *path, mode_t mode)
{
    return unix_listen(path, (int)mode, 16);
}

const char *listen_error(int rc)
{
    switch (rc) {
    case -EADDRINUSE:
        return "another server is listening on it";
    case -EEXIST:
        return "the path exists and is not a socket; not replacing it";
    case -ENAMETOOLONG:
        return "the path is too long (at most 107 bytes)";
    default:
        return strerror(-rc);
    }
}

void vblkd_request_stop(struct vblkd *d)
{
    d->stop = true;
}

bool vblkd_stopping(const struct vblkd *d)
{
    if (!d->stop)
        return false;
    /* Let the answers (server_shutdown's own) go out first, briefly. */
    bool pending = false;
    for (struct rpc_client *c = d->clients; c; c = c->next)
        pending = pending || c->out_len > 0;
    return !pending || (d->stop_since && vblkd_now_ms() - d->stop_since > 1000);
}

unsigned vblkd_threads(const struct vblkd *d)
{
    return d->nworkers;
}

unsigned vblkd_max_threads(const struct vblkd *d)
{
    return d->max_threads;
}

const struct vblkd_opts *vblkd_options(const struct vblkd *d)
{
    return &d->o;
}

const char *vblkd_rpc_path(const struct vblkd *d)
{
    return d->rpc_path;
}

double vblkd_uptime(const struct vblkd *d)
{
    return (double)(vblkd_now_ms() - d->started) / 1000.0;
}

uint16_t vblkd_metrics_port_of(const struct vblkd *d)
{
    return d->metrics_port;
}
