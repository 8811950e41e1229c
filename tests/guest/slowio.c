/* SPDX-License-Identifier: MIT */
/* slowio: an LD_PRELOAD shim that makes every pwrite/pwritev sleep first.
 *
 * The reconnect tests run vblk-vhost-user with the psync file engine under
 * this shim, so that a write request is almost always in progress when the
 * server is killed. The restarted server must then find it in the
 * vhost-user in-flight region and resubmit it, which is the path these
 * tests exist for. Without the delay a kill usually lands on an idle ring.
 *
 * SLOWIO_US sets the delay in microseconds (default 5000). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static void delay(void)
{
    static long us = -1;
    if (us < 0) {
        const char *e = getenv("SLOWIO_US");
        us = e ? strtol(e, NULL, 10) : 5000;
        if (us < 0)
            us = 0;
    }
    struct timespec t = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&t, &t) != 0) {
    }
}

#define WRAP(name, ret, params, args)                                                              \
    ret name params                                                                                \
    {                                                                                              \
        static ret(*real) params;                                                                  \
        if (!real)                                                                                 \
            *(void **)&real = dlsym(RTLD_NEXT, #name);                                             \
        delay();                                                                                   \
        return real args;                                                                          \
    }

WRAP(pwrite, ssize_t, (int fd, const void *buf, size_t n, off_t off), (fd, buf, n, off))
WRAP(pwrite64, ssize_t, (int fd, const void *buf, size_t n, off_t off), (fd, buf, n, off))
WRAP(pwritev, ssize_t, (int fd, const struct iovec *iov, int cnt, off_t off), (fd, iov, cnt, off))
WRAP(pwritev64, ssize_t, (int fd, const struct iovec *iov, int cnt, off_t off), (fd, iov, cnt, off))
