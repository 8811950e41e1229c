/* SPDX-License-Identifier: MIT */
/* The NBD backend's log line and counters, used by all of its files. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "backend/backend_internal.h"
#include "backend/nbd_internal.h"

void nbdbe_log(const struct nbdbe_be *be, int level, const char *fmt, ...)
{
    if (be->cfg.log == NULL)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    be->cfg.log(be->cfg.log_opaque, level, msg);
}

void nbdbe_count(struct nbdbe_be *be, uint64_t *counter, uint64_t n)
{
    pthread_mutex_lock(&be->lock);
    *counter += n;
    pthread_mutex_unlock(&be->lock);
}
