/* SPDX-License-Identifier: MIT */
/* Listening on a Unix socket path: see unix_listen.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "transport/unix_listen.h"

/* Refuses a path a live server owns, and replaces a stale socket file. */
static int claim_path(const struct sockaddr_un *sa)
{
    struct stat st;
    if (lstat(sa->sun_path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
    int err = errno;
    close(fd);
    if (rc == 0)
        return -EADDRINUSE;
    if (err != ECONNREFUSED)
        return -err;
    return unlink(sa->sun_path) < 0 ? -errno : 0;
}

/* Binds @fd to @sa, with exactly @mode (>= 0) or the process umask (-1). */
static int bind_mode(int fd, const struct sockaddr_un *sa, int mode)
{
    if (mode < 0)
        return bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0 ? -errno : 0;
    mode_t old = umask(0177);
    int rc = bind(fd, (const struct sockaddr *)sa, sizeof(*sa));
    umask(old);
    if (rc == 0)
        rc = chmod(sa->sun_path, (mode_t)mode);
    return rc < 0 ? -errno : 0;
}

int unix_listen(const char *path, int mode, int backlog)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    int rc = claim_path(&sa);
    if (rc < 0)
        return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    /* The path appears only once the socket listens: bound and listening
     * under a private name first, then renamed into place. A client that
     * sees the file can connect at once, and the stale-socket check of a
     * second server never takes a socket that is not listening yet for a
     * dead one. A path with no room for the suffix is bound directly. */
    struct sockaddr_un tmp = {.sun_family = AF_UNIX};
    int n = snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s.%ld~", path, (long)getpid());
    bool staged = n > 0 && (size_t)n < sizeof(tmp.sun_path);
    if (staged) {
        struct stat st;
        if (lstat(tmp.sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
            (void)unlink(tmp.sun_path); /* left by a process of our pid */
    }
    const struct sockaddr_un *at = staged ? &tmp : &sa;
    rc = bind_mode(fd, at, mode);
    if (rc == 0 && listen(fd, backlog) < 0)
        rc = -errno;
    if (rc == 0 && staged && rename(tmp.sun_path, path) < 0)
        rc = -errno;
    if (rc < 0) {
        if (staged)
            (void)unlink(tmp.sun_path);
        close(fd);
        return rc;
    }
    return fd;
}
