/* SPDX-License-Identifier: MIT */
/* Listening on a Unix socket path: see unix_listen.h. */
#include <errno.h>
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
    if (mode >= 0) {
        mode_t old = umask(0177);
        rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old);
        if (rc == 0)
            rc = chmod(path, (mode_t)mode);
    } else {
        rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    }
    if (rc < 0 || listen(fd, backlog) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}
