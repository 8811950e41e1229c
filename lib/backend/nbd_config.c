/* SPDX-License-Identifier: MIT */
/*
 * The NBD backend's configuration: URI parsing, options and their
 * defaults, and the mapping of libnbd's errors to virtio status bytes.
 * Pure functions, no libnbd calls: the unit tests exercise them directly.
 *
 * URIs follow the NBD URI specification (doc/uri.md in the NBD project):
 *   nbd://HOST[:PORT]/EXPORT        TCP, port 10809 by default
 *   nbd+unix:///EXPORT?socket=PATH  UNIX domain socket
 * The export name is the path after its first '/', percent-decoded.
 * TLS (nbds, tls-*) and vsock are refused with a message saying so rather
 * than being ignored.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/nbd_internal.h"
#include "virtioblk/spec.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/*
 * Percent-decodes [s, s + n) into @p out (capacity @p cap, NUL-terminated).
 * Returns the decoded length, -1 for a bad escape or an encoded NUL, -2 if
 * it does not fit.
 */
static long pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = hexval(s[i + 1]);
            int lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (o + 1 >= cap)
            return -2;
        out[o++] = c;
    }
    out[o] = '\0';
    return (long)o;
}

/* Host part of the authority [s, s + n): "host", "host:port", "[v6]:port". */
static int parse_authority(const char *s, size_t n, struct nbdbe_uri *u, char *err, size_t errlen)
{
    const char *end = s + n, *hs = s, *he, *port = NULL;

    if (memchr(s, '@', n) != NULL)
        return fail(err, errlen, "user names in NBD URIs are for TLS, which is not supported");
    if (n > 0 && s[0] == '[') {
        he = memchr(s, ']', n);
        if (he == NULL)
            return fail(err, errlen, "unterminated '[' in the host");
        hs = s + 1;
        if (he + 1 < end) {
            if (he[1] != ':')
                return fail(err, errlen, "unexpected text after ']' in the host");
            port = he + 2;
        }
    } else {
        he = memchr(s, ':', n);
        if (he != NULL)
            port = he + 1;
        else
            he = end;
    }
    if (he == hs) {
        strcpy(u->host, "localhost");
    } else {
        long l = pct_decode(hs, (size_t)(he - hs), u->host, sizeof(u->host));
        if (l < 0)
            return fail(err, errlen, "bad host name");
    }
    if (port == NULL || port == end) {
        strcpy(u->port, NBD_DEFAULT_PORT);
        return 0;
    }
    unsigned long v = 0;
    for (const char *p = port; p < end; p++) {
        if (!isdigit((unsigned char)*p) || p - port >= 5)
            return fail(err, errlen, "bad port '%.*s'", (int)(end - port), port);
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v == 0 || v > 65535)
        return fail(err, errlen, "port %lu is out of range 1..65535", v);
    snprintf(u->port, sizeof(u->port), "%lu", v);
    return 0;
}

static int parse_query(const char *q, struct nbdbe_uri *u, char *err, size_t errlen)
{
    bool have_socket = false;
    while (*q != '\0') {
        size_t n = strcspn(q, "&;");
        const char *eq = memchr(q, '=', n);
        size_t klen = eq != NULL ? (size_t)(eq - q) : n;
        if (klen == 6 && memcmp(q, "socket", 6) == 0 && eq != NULL) {
            if (!u->unix_socket)
                return fail(err, errlen, "socket= applies to nbd+unix:// URIs only");
            long l = pct_decode(eq + 1, n - klen - 1, u->socket, sizeof(u->socket));
            if (l == -2)
                return fail(err, errlen, "socket path longer than %zu bytes",
                            sizeof(u->socket) - 1);
            if (l <= 0)
                return fail(err, errlen, "bad socket path");
            have_socket = true;
        } else if (klen >= 4 && memcmp(q, "tls-", 4) == 0) {
            return fail(err, errlen, "TLS is not supported ('%.*s')", (int)klen, q);
        } else if (klen > 0) {
            return fail(err, errlen, "unknown URI parameter '%.*s'", (int)klen, q);
        }
        q += n;
        if (*q != '\0')
            q++;
    }
    if (u->unix_socket && !have_socket)
        return fail(err, errlen, "nbd+unix:// needs ?socket=PATH");
    return 0;
}

int nbdbe_uri_parse(const char *s, struct nbdbe_uri *u, char *err, size_t errlen)
{
    static const char unix_scheme[] = "nbd+unix://";
    static const char tcp_scheme[] = "nbd://";
    static const char tcp2_scheme[] = "nbd+tcp://";
    const char *p;

    if (s == NULL || u == NULL)
        return fail(err, errlen, "no URI");
    memset(u, 0, sizeof(*u));
    if (strncmp(s, unix_scheme, sizeof(unix_scheme) - 1) == 0) {
        u->unix_socket = true;
        p = s + sizeof(unix_scheme) - 1;
    } else if (strncmp(s, tcp_scheme, sizeof(tcp_scheme) - 1) == 0) {
        p = s + sizeof(tcp_scheme) - 1;
    } else if (strncmp(s, tcp2_scheme, sizeof(tcp2_scheme) - 1) == 0) {
        p = s + sizeof(tcp2_scheme) - 1;
    } else if (strncmp(s, "nbds", 4) == 0) {
        return fail(err, errlen, "TLS (nbds://) is not supported");
    } else if (strncmp(s, "nbd+vsock://", 12) == 0) {
        return fail(err, errlen, "vsock is not supported");
    } else {
        return fail(err, errlen,
                    "not an NBD URI: expected nbd://HOST[:PORT]/EXPORT or "
                    "nbd+unix:///EXPORT?socket=PATH");
    }
    if (strchr(p, '#') != NULL)
        return fail(err, errlen, "fragments ('#') are not allowed in NBD URIs");
    for (const char *c = p; *c != '\0'; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            return fail(err, errlen, "spaces and control characters must be percent-encoded");

    size_t alen = strcspn(p, "/?");
    if (u->unix_socket) {
        if (alen != 0)
            return fail(err, errlen, "nbd+unix:// takes no host (nbd+unix:///EXPORT?socket=PATH)");
    } else {
        int r = parse_authority(p, alen, u, err, errlen);
        if (r < 0)
            return r;
    }
    p += alen;
    const char *query = strchr(p, '?');
    size_t plen = query != NULL ? (size_t)(query - p) : strlen(p);
    if (plen > 0) {
        /* The export name is the path without its leading '/'. */
        long l = pct_decode(p + 1, plen - 1, u->export_name, sizeof(u->export_name));
        if (l == -2)
            return fail(err, errlen, "export name longer than %u bytes", NBD_EXPORT_MAX);
        if (l < 0)
            return fail(err, errlen, "bad percent-encoding in the export name");
    }
    return parse_query(query != NULL ? query + 1 : "", u, err, errlen);
}

#define MS                 1000000ull
#define NBD_TIMEOUT_MAX_MS 86400000u

int nbdbe_cfg_from_opts(const struct vblk_nbd_opts *o, struct nbdbe_cfg *cfg, char *err,
                        size_t errlen)
{
    static const struct vblk_nbd_opts defaults = {0};
    if (o == NULL)
        o = &defaults;
    memset(cfg, 0, sizeof(*cfg));
    if (o->connect_timeout_ms > NBD_TIMEOUT_MAX_MS || o->request_timeout_ms > NBD_TIMEOUT_MAX_MS ||
        o->reconnect_min_ms > NBD_TIMEOUT_MAX_MS || o->reconnect_max_ms > NBD_TIMEOUT_MAX_MS)
        return fail(err, errlen, "timeouts and delays are at most %u ms (one day)",
                    NBD_TIMEOUT_MAX_MS);
    cfg->connect_ns = (o->connect_timeout_ms ? o->connect_timeout_ms : 5000u) * MS;
    cfg->request_ns = (o->request_timeout_ms ? o->request_timeout_ms : 30000u) * MS;
    cfg->backoff_min_ns = (o->reconnect_min_ms ? o->reconnect_min_ms : 100u) * MS;
    cfg->backoff_max_ns = (o->reconnect_max_ms ? o->reconnect_max_ms : 5000u) * MS;
    if (o->reconnect_max_ms == 0 && cfg->backoff_min_ns > cfg->backoff_max_ns)
        cfg->backoff_max_ns = cfg->backoff_min_ns;
    if (cfg->backoff_min_ns > cfg->backoff_max_ns)
        return fail(err, errlen, "reconnect_min_ms (%u) is larger than reconnect_max_ms (%u)",
                    o->reconnect_min_ms, o->reconnect_max_ms);
    cfg->one_connection = o->one_connection;
    cfg->read_only = o->read_only;
    cfg->log = o->log;
    cfg->log_opaque = o->log_opaque;
    return 0;
}

uint8_t nbdbe_errno_status(int err)
{
    if (err == 0)
        return VBLK_S_OK;
    /* The server or libnbd does not implement the command: the driver may
     * stop sending it. Everything else, including a dropped connection
     * (ENOTCONN, ESHUTDOWN) and a full export (ENOSPC), is an I/O error. */
    if (err == ENOTSUP || err == EOPNOTSUPP)
        return VBLK_S_UNSUPP;
    return VBLK_S_IOERR;
}

uint32_t nbdbe_payload_max(int64_t advertised)
{
    if (advertised <= 0 || advertised > (int64_t)NBD_PAYLOAD_DEFAULT)
        return NBD_PAYLOAD_DEFAULT;
    uint32_t v = (uint32_t)advertised & ~(uint32_t)(VBLK_SECTOR_SIZE - 1);
    return v != 0 ? v : VBLK_SECTOR_SIZE;
}
