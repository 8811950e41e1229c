/* SPDX-License-Identifier: MIT */
/* Notification fds from the front-end (kick, call, err): which ones the
 * server accepts, and how it signals through them without a thread ever
 * waiting on the front-end.
 *
 * The policy (docs/security.md, "Received file descriptors"):
 *  - kick, call and err must be eventfds. Pipes, sockets, regular files and
 *    devices are refused at once; so is any other anonymous-inode fd (a
 *    signalfd would let us steal our own signals, a timerfd never wakes).
 *    The kind is read from /proc/self/fd; without /proc only the fstat()
 *    part of the check can be made.
 *  - every accepted eventfd gets O_NONBLOCK. The flag belongs to the open
 *    file description the front-end shares, so it can clear it again: the
 *    server therefore never reads a kick fd at all (edge-triggered epoll),
 *    and writes call/err fds outside every lock, holding a reference, so a
 *    write that does block stalls only the thread doing it, and the
 *    control thread can release it by lowering the counter
 *    (vu_notifier_unstick). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vu_internal.h"

int vu_event_fd_adopt(int fd)
{
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return -EBADF;
    /* An anonymous inode carries no file type: anything with one (regular
     * file, directory, device, FIFO, socket, symlink) is not an eventfd. */
    if ((st.st_mode & S_IFMT) != 0)
        return -EINVAL;
    char path[32], link[32];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof(link) - 1);
    if (n >= 0) {
        link[n] = '\0';
        if (strcmp(link, "anon_inode:[eventfd]") != 0)
            return -EINVAL;
    } else if (errno != ENOENT) {
        return -errno;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || ((fl & O_ACCMODE) != O_RDWR && (fl & O_ACCMODE) != O_WRONLY))
        return -EINVAL;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

struct vu_notifier *vu_notifier_new(int fd)
{
    struct vu_notifier *n = malloc(sizeof(*n));
    if (!n)
        return NULL;
    n->fd = fd;
    atomic_init(&n->refs, 1);
    atomic_init(&n->seq, 0);
    n->seen = 0;
    return n;
}

void vu_notifier_get(struct vu_notifier *n)
{
    atomic_fetch_add_explicit(&n->refs, 1, memory_order_relaxed);
}

void vu_notifier_put(struct vu_notifier *n)
{
    if (n && atomic_fetch_sub_explicit(&n->refs, 1, memory_order_acq_rel) == 1) {
        close(n->fd);
        free(n);
    }
}

void vu_notifier_signal(struct vu_notifier *n)
{
    /* @seq is odd while a write is under way. A full counter (EAGAIN)
     * means the front-end has a signal pending: this one adds nothing. */
    atomic_fetch_add_explicit(&n->seq, 1, memory_order_relaxed);
    (void)eventfd_write(n->fd, 1);
    atomic_fetch_add_explicit(&n->seq, 1, memory_order_release);
}

bool vu_notifier_stuck(struct vu_notifier *n)
{
    /* The same write still under way as at the previous look. */
    uint64_t seq = atomic_load_explicit(&n->seq, memory_order_acquire);
    bool stuck = (seq & 1) && seq == n->seen;
    n->seen = seq;
    return stuck;
}

void vu_notifier_unstick(struct vu_notifier *n)
{
    /* Reading takes the counter to zero, which lets a blocked write
     * return. RWF_NOWAIT keeps this read from blocking even if the
     * front-end made the description blocking again. */
    uint64_t v;
    struct iovec io = {&v, sizeof(v)};
    if (preadv2(n->fd, &io, 1, -1, RWF_NOWAIT) >= 0 || errno == EAGAIN)
        return;
    /* Without RWF_NOWAIT on eventfds (kernels before 5.12, some
     * emulators): read only what poll() says is there. A write blocked on
     * the counter means it is full, so this read finds it non-empty. */
    struct pollfd p = {n->fd, POLLIN, 0};
    if (poll(&p, 1, 0) == 1 && (p.revents & POLLIN))
        (void)read(n->fd, &v, sizeof(v));
}
