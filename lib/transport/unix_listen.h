/* SPDX-License-Identifier: MIT */
/* Listening on a Unix socket path, for the vhost-user server and programs
 * that serve several sockets. Not installed. */
#ifndef VBLK_TRANSPORT_UNIX_LISTEN_H
#define VBLK_TRANSPORT_UNIX_LISTEN_H

#pragma GCC visibility push(hidden)

/* Listens on the Unix socket @path with a backlog of @backlog. A path that
 * a live server owns is refused (-EADDRINUSE), as is one that exists and is
 * not a socket (-EEXIST); a stale socket file (nothing listening) is
 * replaced. With @mode >= 0 the socket file gets exactly those permissions
 * and is never reachable with more, not even while it is created; with -1
 * the process umask applies. Returns a non-blocking, close-on-exec fd, or a
 * negative errno (-ENAMETOOLONG, -EACCES, ...). */
int unix_listen(const char *path, int mode, int backlog);

#pragma GCC visibility pop

#endif
