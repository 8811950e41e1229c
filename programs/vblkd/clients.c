/* SPDX-License-Identifier: MIT */
/* vblkd's JSON-RPC connections: requests read with an incremental json-c
 * tokener (bounded in size and depth), answered in order, one line each;
 * a client that stops reading or leaves mid-request is dropped. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon.h"

/* ---- RPC clients ---- */

void client_free(struct vblkd *d, struct rpc_client *c)
{
    for (struct rpc_client **p = &d->clients; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    d->nclients--;
    ep_del(d, c->fd);
    close(c->fd);
    json_tokener_free(c->tok);
    free(c->out);
    free(c);
}

static void client_flush(struct vblkd *d, struct rpc_client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n =
            send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            c->closing = true;
            c->out_off = c->out_len;
            break;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
    }
    struct epoll_event ev = {.events = EPOLLIN | (c->out_len ? EPOLLOUT : 0u), .data.ptr = &c->tag};
    (void)epoll_ctl(d->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void client_send(struct vblkd *d, struct rpc_client *c, const char *text)
{
    size_t len = strlen(text);
    if (c->out_len - c->out_off + len + 1 > VBLKD_RPC_MAX_OUTPUT) {
        /* It does not read its answers: drop it rather than buffer more. */
        vblkd_log(d, VBLK_LOG_WARN, "RPC client does not read its responses; disconnecting it");
        c->closing = true;
        c->out_off = c->out_len = 0;
        return;
    }
    if (c->out_off) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    char *n = realloc(c->out, c->out_len + len + 1);
    if (!n) {
        c->closing = true;
        return;
    }
    c->out = n;
    memcpy(c->out + c->out_len, text, len);
    c->out[c->out_len + len] = '\n';
    c->out_len += len + 1;
    client_flush(d, c);
}

static void client_error(struct vblkd *d, struct rpc_client *c, int code, const char *msg)
{
    json_object *r = json_object_new_object();
    json_object_object_add(r, "jsonrpc", json_object_new_string("2.0"));
    json_object *err = json_object_new_object();
    json_object_object_add(err, "code", json_object_new_int(code));
    json_object_object_add(err, "message", json_object_new_string(msg));
    json_object_object_add(r, "error", err);
    json_object_object_add(r, "id", NULL);
    client_send(d, c, json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN));
    json_object_put(r);
}

static json_tokener *new_tokener(void)
{
    json_tokener *tok = json_tokener_new_ex(VBLKD_RPC_MAX_DEPTH);
    if (tok) {
        int flags = JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8;
#ifdef JSON_TOKENER_ALLOW_TRAILING_CHARS
        flags |= JSON_TOKENER_ALLOW_TRAILING_CHARS;
#endif
        json_tokener_set_flags(tok, flags);
    }
    return tok;
}

void rpc_accept(struct vblkd *d)
{
    int fd = accept4(d->rpc_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    if (d->nclients >= VBLKD_RPC_MAX_CLIENTS) {
        vblkd_log(d, VBLK_LOG_WARN, "refusing an RPC client: %u are connected",
                  VBLKD_RPC_MAX_CLIENTS);
        close(fd);
        return;
    }
    struct rpc_client *c = calloc(1, sizeof(*c));
    if (!c || !(c->tok = new_tokener())) {
        free(c);
        close(fd);
        return;
    }
    c->fd = fd;
    c->tag = (struct vblkd_tag){TAG_RPC_CLIENT, c};
    if (ep_add(d, fd, EPOLLIN, &c->tag) < 0) {
        json_tokener_free(c->tok);
        free(c);
        close(fd);
        return;
    }
    c->next = d->clients;
    d->clients = c;
    d->nclients++;
}

/* Feeds what the client sent to the tokener; handles each complete request. */
static void client_input(struct vblkd *d, struct rpc_client *c, const char *buf, size_t n)
{
    size_t off = 0;
    while (off < n && !c->closing) {
        /* Whitespace between requests is not part of one. */
        if (c->pending == 0 &&
            (buf[off] == ' ' || buf[off] == '\n' || buf[off] == '\r' || buf[off] == '\t')) {
            off++;
            continue;
        }
        size_t chunk = n - off;
        if (c->pending + chunk > VBLKD_RPC_MAX_REQUEST)
            chunk = VBLKD_RPC_MAX_REQUEST - c->pending + 1;
        json_object *o = json_tokener_parse_ex(c->tok, buf + off, (int)chunk);
        enum json_tokener_error err = json_tokener_get_error(c->tok);
        if (err == json_tokener_continue) {
            c->pending += chunk;
            off += chunk;
            if (c->pending > VBLKD_RPC_MAX_REQUEST) {
                char msg[128];
                snprintf(msg, sizeof(msg), "request larger than %u bytes; closing the connection",
                         VBLKD_RPC_MAX_REQUEST);
                client_error(d, c, RPC_INVALID_REQUEST, msg);
                c->closing = true;
            }
            continue;
        }
        if (err != json_tokener_success) {
            char msg[160];
            snprintf(msg, sizeof(msg), "parse error: %s; closing the connection",
                     json_tokener_error_desc(err));
            client_error(d, c, RPC_PARSE_ERROR, msg);
            c->closing = true;
            json_object_put(o);
            break;
        }
        size_t used = json_tokener_get_parse_end(c->tok);
        off += used;
        c->pending = 0;
        json_tokener_reset(c->tok);
        json_object *resp = vblkd_rpc_call(d, o);
        json_object_put(o);
        if (resp) {
            client_send(d, c, json_object_to_json_string_ext(resp, JSON_C_TO_STRING_PLAIN));
            json_object_put(resp);
        }
    }
}

void client_event(struct vblkd *d, struct rpc_client *c, uint32_t events)
{
    if (events & EPOLLOUT)
        client_flush(d, c);
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->closing) {
        char buf[16384];
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            /* Gone, possibly in the middle of a request: forget it. */
            client_free(d, c);
            return;
        }
        client_input(d, c, buf, (size_t)n);
    }
    if (c->closing && c->out_len == 0)
        client_free(d, c);
}
