/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user front-end (vhost_user_client.h) against a fake back-end
 * running in a thread: one that answers correctly except for one injected
 * fault (wrong reply size, wrong request code, missing reply flag, huge
 * payload, an fd in a reply, a negative ack, silence, a closed socket, a
 * bad used entry), and against the library's own server for the I/O path.
 * Every test checks that the error is the documented one, that nothing
 * waits longer than the timeout, and that no fd is left open.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fd_count.h"
#include "virtioblk/virtioblk.h"

/* Request codes and flags of the vhost-user protocol, as the fake needs them. */
enum {
    R_GET_FEATURES = 1,
    R_SET_MEM_TABLE = 5,
    R_SET_VRING_NUM = 8,
    R_SET_VRING_ADDR = 9,
    R_GET_VRING_BASE = 11,
    R_SET_VRING_KICK = 12,
    R_SET_VRING_CALL = 13,
    R_GET_PROTOCOL_FEATURES = 15,
    R_GET_QUEUE_NUM = 17,
    R_SET_VRING_ENABLE = 18,
    R_GET_CONFIG = 24,
};
#define F_VERSION    1u
#define F_REPLY      (1u << 2)
#define F_NEED_REPLY (1u << 3)

#define TIMEOUT_MS 300

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum fault {
    FAULT_NONE,
    FAULT_SHORT,      /* reply payload of 4 bytes instead of 8 */
    FAULT_WRONG_REQ,  /* reply names another request */
    FAULT_NO_REPLY,   /* reply flag missing */
    FAULT_HUGE,       /* reply claims a 1 MiB payload */
    FAULT_FD,         /* a correct reply carrying an fd */
    FAULT_NACK,       /* REPLY_ACK with a non-zero value */
    FAULT_SILENT,     /* never answers */
    FAULT_CLOSE,      /* closes the socket instead of answering */
    FAULT_TRUNCATED,  /* half a payload, then closes */
    FAULT_CONFIG_LEN, /* GET_CONFIG answered with a different size */
};

enum used_fault { USED_OK, USED_BAD_ID, USED_BAD_LEN, USED_HANGUP };

struct fake {
    int sock;
    uint32_t fault_req;
    enum fault fault;
    uint64_t features;
    uint64_t protocol;
    uint64_t queue_num;
    enum used_fault used;
    uint64_t used_ua; /* queue 0's used ring (a pointer in this process) */
    int kick_fd, call_fd;
    bool enabled;
    pthread_t thr;
};

struct msg {
    uint32_t req, flags, size;
    uint8_t p[512];
};

static bool fake_send(struct fake *f, uint32_t req, uint32_t flags, uint32_t size,
                      const void *payload, uint32_t sent, int fd)
{
    uint8_t buf[12 + 512];
    uint32_t h[3] = {req, flags, size};
    memcpy(buf, h, 12);
    memcpy(buf + 12, payload, sent);
    struct iovec iov = {buf, 12 + (size_t)sent};
    union {
        struct cmsghdr align;
        char b[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.b;
        mh.msg_controllen = sizeof(ctl.b);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    return sendmsg(f->sock, &mh, MSG_NOSIGNAL) == (ssize_t)iov.iov_len;
}

/* Reads one request (header, then payload). Keeps the kick and call fds of
 * queue 0, closes every other fd. False when the client went away. */
static bool fake_recv(struct fake *f, struct msg *m)
{
    struct pollfd p = {.fd = f->sock, .events = POLLIN};
    if (poll(&p, 1, 5000) <= 0)
        return false;
    union {
        struct cmsghdr align;
        char b[CMSG_SPACE(8 * sizeof(int))];
    } ctl;
    struct iovec iov = {m, 12};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof(ctl)};
    if (recvmsg(f->sock, &mh, MSG_WAITALL | MSG_CMSG_CLOEXEC) != 12)
        return false;
    int fd = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int x;
            memcpy(&x, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (fd < 0)
                fd = x;
            else
                close(x);
        }
    }
    if (m->size > sizeof(m->p) ||
        (m->size && recv(f->sock, m->p, m->size, MSG_WAITALL) != (ssize_t)m->size)) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    uint64_t idx = 0;
    memcpy(&idx, m->p, m->size >= 8 ? 8 : 0);
    if (fd >= 0 && (m->req == R_SET_VRING_KICK || m->req == R_SET_VRING_CALL) &&
        (idx & 0xff) == 0) {
        int *slot = m->req == R_SET_VRING_KICK ? &f->kick_fd : &f->call_fd;
        if (*slot >= 0)
            close(*slot);
        *slot = fd;
    } else if (fd >= 0) {
        close(fd);
    }
    if (m->req == R_SET_VRING_ADDR) {
        uint32_t index;
        memcpy(&index, m->p, 4);
        if (index == 0)
            memcpy(&f->used_ua, m->p + 16, 8);
    }
    if (m->req == R_SET_VRING_ENABLE && m->p[0] == 0)
        f->enabled = true;
    return true;
}

/* The correct answer to @p m, or the injected fault. False: stop serving. */
static bool fake_answer(struct fake *f, struct msg *m)
{
    uint8_t rep[512];
    uint32_t len = 0;
    bool needs = true;
    memset(rep, 0, sizeof(rep));
    switch (m->req) {
    case R_GET_FEATURES:
        memcpy(rep, &f->features, 8);
        len = 8;
        break;
    case R_GET_PROTOCOL_FEATURES:
        memcpy(rep, &f->protocol, 8);
        len = 8;
        break;
    case R_GET_QUEUE_NUM:
        memcpy(rep, &f->queue_num, 8);
        len = 8;
        break;
    case R_GET_VRING_BASE:
        memcpy(rep, m->p, 8);
        len = 8;
        break;
    case R_GET_CONFIG: {
        struct vblk_config cfg = {.capacity = 2048, .seg_max = 8, .num_queues = 2};
        uint32_t size;
        memcpy(rep, m->p, 12);
        memcpy(&size, m->p + 4, 4);
        memcpy(rep + 12, &cfg, size < sizeof(cfg) ? size : sizeof(cfg));
        len = 12 + size;
        break;
    }
    default:
        needs = (m->flags & F_NEED_REPLY) != 0;
        len = 8; /* ack 0 */
        break;
    }
    if (m->req != f->fault_req || f->fault == FAULT_NONE)
        return !needs || fake_send(f, m->req, F_VERSION | F_REPLY, len, rep, len, -1);
    uint64_t one = 1;
    switch (f->fault) {
    case FAULT_SHORT:
        fake_send(f, m->req, F_VERSION | F_REPLY, 4, rep, 4, -1);
        return true;
    case FAULT_WRONG_REQ:
        fake_send(f, m->req + 1, F_VERSION | F_REPLY, len, rep, len, -1);
        return true;
    case FAULT_NO_REPLY:
        fake_send(f, m->req, F_VERSION, len, rep, len, -1);
        return true;
    case FAULT_HUGE:
        fake_send(f, m->req, F_VERSION | F_REPLY, 1u << 20, rep, len, -1);
        return true;
    case FAULT_FD: {
        int e = eventfd(0, EFD_CLOEXEC);
        fake_send(f, m->req, F_VERSION | F_REPLY, len, rep, len, e);
        close(e);
        return true;
    }
    case FAULT_NACK:
        fake_send(f, m->req, F_VERSION | F_REPLY, 8, &one, 8, -1);
        return true;
    case FAULT_SILENT:
        return true;
    case FAULT_TRUNCATED:
        fake_send(f, m->req, F_VERSION | F_REPLY, len, rep, len / 2, -1);
        return false;
    case FAULT_CONFIG_LEN:
        fake_send(f, m->req, F_VERSION | F_REPLY, 20, rep, 20, -1);
        return true;
    case FAULT_CLOSE:
    default:
        return false;
    }
}

/* After set-up, answers the first kick with the used entry the test asks for. */
static void fake_complete(struct fake *f)
{
    struct pollfd p[2] = {{.fd = f->kick_fd, .events = POLLIN}, {.fd = f->sock, .events = POLLIN}};
    if (poll(p, 2, 5000) <= 0 || !(p[0].revents & POLLIN))
        return;
    uint64_t v;
    (void)!read(f->kick_fd, &v, sizeof(v));
    if (f->used == USED_HANGUP)
        return;
    struct vblk_split_used *used = (struct vblk_split_used *)(uintptr_t)f->used_ua;
    used->ring[0].id = f->used == USED_BAD_ID ? 77 : 0;
    used->ring[0].len = f->used == USED_BAD_LEN ? 1u << 20 : 1;
    __atomic_store_n(&used->idx, 1, __ATOMIC_RELEASE);
    v = 1;
    (void)!write(f->call_fd, &v, sizeof(v));
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    struct msg m;
    while (fake_recv(f, &m)) {
        if (!fake_answer(f, &m))
            break;
        if (f->used != USED_OK && f->enabled) {
            fake_complete(f);
            break;
        }
    }
    /* Until the client has gone (unless the fault is to hang up). */
    if (f->fault != FAULT_CLOSE && f->fault != FAULT_TRUNCATED && f->used != USED_HANGUP)
        while (fake_recv(f, &m))
            (void)fake_answer(f, &m);
    close(f->sock);
    f->sock = -1;
    return NULL;
}

static int client_sock;

static struct fake *fake_start(enum fault fault, uint32_t fault_req)
{
    struct fake *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    f->sock = sv[1];
    client_sock = sv[0];
    f->fault = fault;
    f->fault_req = fault_req;
    f->features = VBLK_BIT(VBLK_F_VERSION_1) | VBLK_BIT(VBLK_VU_F_PROTOCOL_FEATURES) |
                  VBLK_BIT(VBLK_F_SEG_MAX) | VBLK_BIT(VBLK_F_MQ);
    f->protocol = VBLK_BIT(VBLK_VU_PROTOCOL_F_MQ) | VBLK_BIT(VBLK_VU_PROTOCOL_F_REPLY_ACK) |
                  VBLK_BIT(VBLK_VU_PROTOCOL_F_CONFIG);
    f->queue_num = 2;
    f->kick_fd = f->call_fd = -1;
    return f;
}

static void fake_run(struct fake *f)
{
    assert_int_equal(pthread_create(&f->thr, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f)
{
    pthread_join(f->thr, NULL);
    if (f->kick_fd >= 0)
        close(f->kick_fd);
    if (f->call_fd >= 0)
        close(f->call_fd);
    free(f);
}

static struct vblk_vu_client_opts quick_opts(char *err, size_t len)
{
    return (struct vblk_vu_client_opts){
        .queue_size = 16,
        .mem_size = 1u << 20,
        .timeout_ms = TIMEOUT_MS,
        .errbuf = err,
        .errbuf_len = len,
    };
}

/* Connects to a fake with @p fault at @p req; expects @p want and an
 * explanation, within the timeout and without leaking fds. */
static void expect_connect_error(enum fault fault, uint32_t req, int want, const char *words)
{
    int before = count_fds();
    struct fake *f = fake_start(fault, req);
    fake_run(f);
    char err[256];
    struct vblk_vu_client_opts o = quick_opts(err, sizeof(err));
    struct vblk_vu_client *c = NULL;
    int64_t t0 = now_ms();
    int rc = vblk_vu_client_connect_fd(client_sock, &o, &c);
    int64_t took = now_ms() - t0;
    if (rc != want || !strstr(err, words))
        print_error("fault %d at request %u: rc %d (%s), expected %d and \"%s\"\n", fault, req, rc,
                    err, want, words);
    assert_int_equal(rc, want);
    assert_null(c);
    assert_non_null(strstr(err, words));
    assert_true(took < TIMEOUT_MS + 1000);
    fake_stop(f);
    assert_int_equal(count_fds(), before);
}

static void test_bad_reply_size(void **state)
{
    (void)state;
    expect_connect_error(FAULT_SHORT, R_GET_FEATURES, -EPROTO, "4 bytes, expected 8");
    expect_connect_error(FAULT_SHORT, R_SET_MEM_TABLE, -EPROTO, "SET_MEM_TABLE");
    expect_connect_error(FAULT_HUGE, R_GET_PROTOCOL_FEATURES, -EPROTO, "1048576 bytes");
    expect_connect_error(FAULT_CONFIG_LEN, R_GET_CONFIG, -EPROTO, "GET_CONFIG");
}

static void test_wrong_request(void **state)
{
    (void)state;
    expect_connect_error(FAULT_WRONG_REQ, R_GET_FEATURES, -EPROTO, "reply is for request 2");
    expect_connect_error(FAULT_WRONG_REQ, R_SET_VRING_KICK, -EPROTO, "SET_VRING_KICK");
    expect_connect_error(FAULT_NO_REPLY, R_GET_QUEUE_NUM, -EPROTO, "malformed reply header");
}

static void test_fd_in_reply(void **state)
{
    (void)state;
    /* The fd must be closed, not leaked (count_fds() checks). */
    expect_connect_error(FAULT_FD, R_GET_FEATURES, -EPROTO, "unexpected file descriptor");
    expect_connect_error(FAULT_FD, R_SET_VRING_CALL, -EPROTO, "unexpected file descriptor");
}

static void test_refused(void **state)
{
    (void)state;
    expect_connect_error(FAULT_NACK, R_SET_MEM_TABLE, -EIO, "refused");
    expect_connect_error(FAULT_NACK, R_SET_VRING_ENABLE, -EIO, "SET_VRING_ENABLE");
}

static void test_dead_server(void **state)
{
    (void)state;
    expect_connect_error(FAULT_CLOSE, R_GET_FEATURES, -ECONNRESET, "closed the connection");
    expect_connect_error(FAULT_CLOSE, R_SET_VRING_ADDR, -ECONNRESET, "closed the connection");
    expect_connect_error(FAULT_TRUNCATED, R_GET_CONFIG, -ECONNRESET, "closed the connection");
    expect_connect_error(FAULT_SILENT, R_GET_PROTOCOL_FEATURES, -ETIMEDOUT, "no reply");
    expect_connect_error(FAULT_SILENT, R_SET_VRING_NUM, -ETIMEDOUT, "no reply");
}

static void test_not_offered(void **state)
{
    (void)state;
    int before = count_fds();
    char err[256];
    struct vblk_vu_client_opts o = quick_opts(err, sizeof(err));
    struct vblk_vu_client *c = NULL;

    struct fake *f = fake_start(FAULT_NONE, 0);
    f->features &= ~VBLK_BIT(VBLK_F_VERSION_1);
    fake_run(f);
    assert_int_equal(vblk_vu_client_connect_fd(client_sock, &o, &c), -ENOTSUP);
    assert_non_null(strstr(err, "VIRTIO_F_VERSION_1"));
    fake_stop(f);

    f = fake_start(FAULT_NONE, 0);
    fake_run(f);
    o.packed = true;
    assert_int_equal(vblk_vu_client_connect_fd(client_sock, &o, &c), -ENOTSUP);
    assert_non_null(strstr(err, "packed"));
    fake_stop(f);

    f = fake_start(FAULT_NONE, 0);
    fake_run(f);
    o.packed = false;
    o.queues = 3;
    assert_int_equal(vblk_vu_client_connect_fd(client_sock, &o, &c), -ENOTSUP);
    assert_non_null(strstr(err, "3 queues requested, the back-end offers 2"));
    fake_stop(f);

    /* Without protocol features: one queue, rings enabled from the start. */
    f = fake_start(FAULT_NONE, 0);
    f->features &= ~VBLK_BIT(VBLK_VU_F_PROTOCOL_FEATURES);
    fake_run(f);
    o.queues = 1;
    assert_int_equal(vblk_vu_client_connect_fd(client_sock, &o, &c), 0);
    assert_int_equal(vblk_vu_client_protocol_features(c), 0);
    struct vblk_config cfg;
    assert_int_equal(vblk_vu_client_config(c, &cfg), -ENOTSUP);
    vblk_vu_client_close(c);
    fake_stop(f);

    o.queues = 0;
    assert_int_equal(vblk_vu_client_connect("/nonexistent/vblk-test.sock", &o, &c), -ENOENT);
    assert_non_null(strstr(err, "cannot connect"));
    assert_int_equal(count_fds(), before);
}

/* Connects to a fake that completes the first request as @p used says. */
static struct vblk_vu_client *connect_for_io(struct fake **fp, enum used_fault used)
{
    struct fake *f = fake_start(FAULT_NONE, 0);
    f->used = used;
    fake_run(f);
    char err[256];
    struct vblk_vu_client_opts o = quick_opts(err, sizeof(err));
    struct vblk_vu_client *c = NULL;
    assert_int_equal(vblk_vu_client_connect_fd(client_sock, &o, &c), 0);
    assert_int_equal(vblk_vu_client_num_queues(c), 1);
    *fp = f;
    return c;
}

static void submit_read(struct vblk_vu_client *c)
{
    struct vblk_drv_blk_frame *fr = vblk_vu_client_alloc(c, sizeof(*fr));
    uint8_t *buf = vblk_vu_client_alloc(c, 512);
    assert_non_null(fr);
    assert_non_null(buf);
    struct vblk_iov d = {buf, 512};
    assert_int_equal(
        vblk_drv_blk_add(vblk_vu_client_queue(c, 0), fr, VBLK_T_IN, 0, &d, 1, fr, false), 0);
    assert_int_equal(vblk_vu_client_kick(c, 0), 1);
}

static void test_bad_used_entry(void **state)
{
    (void)state;
    int before = count_fds();
    for (int k = 0; k < 2; k++) {
        struct fake *f;
        struct vblk_vu_client *c = connect_for_io(&f, k ? USED_BAD_LEN : USED_BAD_ID);
        submit_read(c);
        assert_int_equal(vblk_vu_client_wait(c, 0, 2000), 1);
        void *tok;
        uint32_t len;
        assert_int_equal(vblk_drv_vq_get_used(vblk_vu_client_queue(c, 0), &tok, &len), -EPROTO);
        vblk_vu_client_close(c);
        fake_stop(f);
    }
    assert_int_equal(count_fds(), before);
}

static void test_hangup_while_waiting(void **state)
{
    (void)state;
    int before = count_fds();
    struct fake *f;
    struct vblk_vu_client *c = connect_for_io(&f, USED_HANGUP);
    submit_read(c);
    int64_t t0 = now_ms();
    assert_int_equal(vblk_vu_client_wait(c, 0, 5000), -ECONNRESET);
    assert_true(now_ms() - t0 < 2000);
    struct vblk_config cfg;
    int rc = vblk_vu_client_config(c, &cfg);
    assert_true(rc == -EPIPE || rc == -ECONNRESET);
    /* Nothing in flight completes; close must not wait for it. */
    vblk_vu_client_close(c);
    fake_stop(f);
    assert_int_equal(count_fds(), before);
}

/* ---- against the library's own server ---- */

struct srv {
    struct vblk_vu_server *s;
    struct vblk_backend be;
    pthread_t thr;
    char dir[64], path[96];
};

static void *srv_main(void *arg)
{
    (void)vblk_vu_server_run(((struct srv *)arg)->s);
    return NULL;
}

static void srv_start(struct srv *v)
{
    strcpy(v->dir, "/tmp/vblk-vuc-XXXXXX");
    assert_non_null(mkdtemp(v->dir));
    snprintf(v->path, sizeof(v->path), "%s/sock", v->dir);
    assert_int_equal(vblk_backend_memory_create(8u << 20, &v->be), 0);
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, 8u << 20);
    p.num_queues = 2;
    struct vblk_vu_server_opts so = {.socket_path = v->path, .stop_fd = -1};
    assert_int_equal(vblk_vu_server_create(&p, &v->be, &so, &v->s), 0);
    assert_int_equal(pthread_create(&v->thr, NULL, srv_main, v), 0);
}

static void srv_stop(struct srv *v)
{
    vblk_vu_server_stop(v->s);
    pthread_join(v->thr, NULL);
    vblk_vu_server_destroy(v->s);
    vblk_backend_destroy(&v->be);
    rmdir(v->dir);
}

/* One request on queue @p q, waited for on the call eventfd. */
static uint8_t do_io(struct vblk_vu_client *c, uint16_t q, struct vblk_drv_blk_frame *fr,
                     uint32_t type, uint64_t sector, void *buf, size_t len)
{
    struct vblk_iov d = {buf, len};
    struct vblk_drv_vq *vq = vblk_vu_client_queue(c, q);
    fr->status = 0xff;
    assert_int_equal(vblk_drv_blk_add(vq, fr, type, sector, &d, 1, fr, false), 0);
    assert_true(vblk_vu_client_kick(c, q) >= 0);
    void *tok = NULL;
    uint32_t used_len;
    int got;
    int64_t t0 = now_ms();
    while ((got = vblk_drv_vq_get_used(vq, &tok, &used_len)) == 0) {
        assert_true(vblk_vu_client_wait(c, q, 1000) >= 0);
        assert_true(now_ms() - t0 < 5000);
    }
    assert_int_equal(got, 1);
    assert_ptr_equal(tok, fr);
    return fr->status;
}

static void test_own_server(void **state)
{
    (void)state;
    int before = count_fds();
    struct srv v;
    srv_start(&v);
    for (int packed = 0; packed < 2; packed++) {
        char err[256];
        struct vblk_vu_client_opts o = {.queues = 2,
                                        .packed = packed,
                                        .event_idx = true,
                                        .indirect = true,
                                        .errbuf = err,
                                        .errbuf_len = sizeof(err)};
        struct vblk_vu_client *c = NULL;
        assert_int_equal(vblk_vu_client_connect(v.path, &o, &c), 0);
        uint64_t f = vblk_vu_client_features(c);
        assert_true(f & VBLK_BIT(VBLK_F_VERSION_1));
        assert_int_equal((f & VBLK_BIT(VBLK_F_RING_PACKED)) != 0, packed);
        assert_true(vblk_vu_client_protocol_features(c) & VBLK_BIT(VBLK_VU_PROTOCOL_F_CONFIG));
        assert_int_equal(vblk_vu_client_queue_size(c), 256);
        assert_null(vblk_vu_client_queue(c, 2));
        assert_true(vblk_vu_client_call_fd(c, 1) >= 0);
        struct vblk_config cfg;
        assert_int_equal(vblk_vu_client_config(c, &cfg), 0);
        assert_int_equal(cfg.capacity, (8u << 20) / 512);
        assert_int_equal(cfg.num_queues, 2);

        struct vblk_drv_blk_frame *fr = vblk_vu_client_alloc(c, sizeof(*fr));
        uint8_t *buf = vblk_vu_client_alloc(c, 8192);
        assert_non_null(buf);
        assert_int_equal(((uintptr_t)buf) & 4095, 0);
        for (uint16_t q = 0; q < 2; q++) {
            for (int i = 0; i < 8192; i++)
                buf[i] = (uint8_t)(i * 7 + q + packed);
            assert_int_equal(do_io(c, q, fr, VBLK_T_OUT, 16u * q, buf, 8192), VBLK_S_OK);
            memset(buf, 0, 8192);
            assert_int_equal(do_io(c, q, fr, VBLK_T_IN, 16u * q, buf, 8192), VBLK_S_OK);
            for (int i = 0; i < 8192; i++)
                assert_int_equal(buf[i], (uint8_t)(i * 7 + q + packed));
        }
        /* Past the end of the disk: the device's error, not ours. */
        assert_int_equal(do_io(c, 0, fr, VBLK_T_IN, cfg.capacity, buf, 512), VBLK_S_IOERR);
        /* Exhausting the shared memory is reported, not fatal. */
        assert_null(vblk_vu_client_alloc(c, (size_t)1 << 40));
        assert_int_equal(vblk_vu_client_wait(c, 0, 0), 0);
        vblk_vu_client_close(c);
    }
    srv_stop(&v);
    vblk_vu_client_close(NULL);
    assert_int_equal(count_fds(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_reply_size), cmocka_unit_test(test_wrong_request),
        cmocka_unit_test(test_fd_in_reply),    cmocka_unit_test(test_refused),
        cmocka_unit_test(test_dead_server),    cmocka_unit_test(test_not_offered),
        cmocka_unit_test(test_bad_used_entry), cmocka_unit_test(test_hangup_while_waiting),
        cmocka_unit_test(test_own_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
