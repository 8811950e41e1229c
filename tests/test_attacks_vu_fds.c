/* SPDX-License-Identifier: MIT */
/*
 * Attack catalogue, vhost-user layer: hostile notification fds and
 * connection races, against the library's real server (vblk_vu_server with
 * its worker threads) over its Unix socket.
 *
 * The attacker is the library's own front-end, connected normally, which
 * then swaps one of its ring fds for a hostile one with a raw message.
 * Every case asserts that
 *  - the server's message thread keeps answering while the attack is on,
 *  - disconnecting ends the attack in bounded time, and
 *  - a well-behaved front-end connected afterwards gets verified I/O on
 *    every queue,
 * and that no fd leaks. A case that hangs is caught by ctest's timeout.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fd_count.h"
#include "transport/vhost-user/vu_internal.h"
#include "virtioblk/virtioblk.h"

#define DISK      (8u << 20)
#define NQ        2u
#define SATURATED 0xfffffffffffffffeull /* the largest eventfd count */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the server, with its log kept for assertions ---- */

struct srv {
    struct vblk_vu_server *s;
    struct vblk_backend be;
    pthread_t thr;
    char dir[64], path[96];
    pthread_mutex_t log_lock;
    char log[16384];
    size_t log_len;
};

static void srv_log(void *opaque, int level, const char *msg)
{
    struct srv *v = opaque;
    (void)level;
    pthread_mutex_lock(&v->log_lock);
    int n = snprintf(v->log + v->log_len, sizeof(v->log) - v->log_len, "%s\n", msg);
    if (n > 0 && (size_t)n < sizeof(v->log) - v->log_len)
        v->log_len += (size_t)n;
    pthread_mutex_unlock(&v->log_lock);
}

static bool srv_logged(struct srv *v, const char *what)
{
    pthread_mutex_lock(&v->log_lock);
    bool found = strstr(v->log, what) != NULL;
    pthread_mutex_unlock(&v->log_lock);
    return found;
}

static bool srv_wait_log(struct srv *v, const char *what, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    while (!srv_logged(v, what)) {
        if (now_ms() > end)
            return false;
        usleep(5000);
    }
    return true;
}

static void *srv_main(void *arg)
{
    (void)vblk_vu_server_run(((struct srv *)arg)->s);
    return NULL;
}

/* @threads worker threads (1: both queues on one worker). */
static struct srv *srv_start(uint16_t threads, bool poll)
{
    struct srv *v = calloc(1, sizeof(*v));
    assert_non_null(v);
    pthread_mutex_init(&v->log_lock, NULL);
    strcpy(v->dir, "/tmp/vblk-atkfd-XXXXXX");
    assert_non_null(mkdtemp(v->dir));
    snprintf(v->path, sizeof(v->path), "%s/sock", v->dir);
    assert_int_equal(vblk_backend_memory_create(DISK, &v->be), 0);
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, DISK);
    p.num_queues = NQ;
    struct vblk_vu_server_opts so = {
        .socket_path = v->path,
        .stop_fd = -1,
        .threads = threads,
        .dev = {.notify = poll ? VBLK_NOTIFY_POLL : VBLK_NOTIFY_ADAPTIVE, .log = srv_log, .log_opaque = v, .log_level = VBLK_LOG_INFO}};
    assert_int_equal(vblk_vu_server_create(&p, &v->be, &so, &v->s), 0);
    assert_int_equal(pthread_create(&v->thr, NULL, srv_main, v), 0);
    return v;
}

static void srv_stop(struct srv *v)
{
    int64_t t0 = now_ms();
    vblk_vu_server_stop(v->s);
    pthread_join(v->thr, NULL);
    vblk_vu_server_destroy(v->s);
    assert_true(now_ms() - t0 < 5000);
    vblk_backend_destroy(&v->be);
    rmdir(v->dir);
    pthread_mutex_destroy(&v->log_lock);
    free(v);
}

/* ---- front-ends ---- */

struct fe {
    struct vblk_vu_client *c;
    int sock; /* the client's socket, for raw messages */
    struct vblk_drv_blk_frame *fr;
    uint8_t *buf;
};

static int connect_sock(const char *path)
{
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return s;
}

static int fe_open(struct srv *v, bool packed, struct fe *f)
{
    char err[256] = "";
    struct vblk_vu_client_opts o = {.queues = NQ,
                                    .packed = packed,
                                    .event_idx = true,
                                    .timeout_ms = 3000,
                                    .errbuf = err,
                                    .errbuf_len = sizeof(err)};
    f->sock = connect_sock(v->path);
    int rc = vblk_vu_client_connect_fd(f->sock, &o, &f->c);
    if (rc < 0)
        return rc;
    f->fr = vblk_vu_client_alloc(f->c, sizeof(*f->fr));
    f->buf = vblk_vu_client_alloc(f->c, 4096);
    assert_non_null(f->fr);
    assert_non_null(f->buf);
    return 0;
}

static void fe_close(struct fe *f)
{
    int64_t t0 = now_ms();
    vblk_vu_client_close(f->c);
    assert_true(now_ms() - t0 < 5000);
    f->c = NULL;
}

/* Adds one request on queue @q and kicks. */
static void fe_submit(struct fe *f, uint16_t q, uint32_t type, uint64_t sector)
{
    struct vblk_iov d = {f->buf, 4096};
    f->fr->status = 0xff;
    assert_int_equal(
        vblk_drv_blk_add(vblk_vu_client_queue(f->c, q), f->fr, type, sector, &d, 1, f->fr, false),
        0);
    assert_true(vblk_vu_client_kick(f->c, q) >= 0);
}

/* Waits for the request of fe_submit() by looking at the used ring (the
 * call fd may be the attacker's). Returns its status, or -1 on timeout. */
static int fe_reap(struct fe *f, uint16_t q, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    void *tok;
    uint32_t len;
    int got;
    while ((got = vblk_drv_vq_get_used(vblk_vu_client_queue(f->c, q), &tok, &len)) == 0) {
        if (now_ms() > end)
            return -1;
        usleep(1000);
    }
    assert_int_equal(got, 1);
    return f->fr->status;
}

/* A written block reads back on every queue. */
static void fe_verify(struct fe *f, uint8_t seed)
{
    for (uint16_t q = 0; q < NQ; q++) {
        for (int i = 0; i < 4096; i++)
            f->buf[i] = (uint8_t)(i * 13 + seed + q);
        fe_submit(f, q, VBLK_T_OUT, 8u * q);
        assert_int_equal(fe_reap(f, q, 5000), VBLK_S_OK);
        memset(f->buf, 0, 4096);
        fe_submit(f, q, VBLK_T_IN, 8u * q);
        assert_int_equal(fe_reap(f, q, 5000), VBLK_S_OK);
        for (int i = 0; i < 4096; i++)
            assert_int_equal(f->buf[i], (uint8_t)(i * 13 + seed + q));
    }
}

/* The message thread answers (GET_CONFIG) within two seconds (a loaded CI machine). */
static void fe_server_answers(struct fe *f)
{
    struct vblk_config cfg;
    int64_t t0 = now_ms();
    assert_int_equal(vblk_vu_client_config(f->c, &cfg), 0);
    assert_int_equal(cfg.capacity, DISK / 512);
    assert_true(now_ms() - t0 < 2000);
}

/* Sends SET_VRING_{KICK,CALL,ERR} for queue @q with @fd, asking for an
 * acknowledgement. Returns the back-end's answer: 0 accepted, else refused. */
static uint64_t fe_set_fd(struct fe *f, uint32_t req, uint16_t q, int fd)
{
    struct {
        struct vu_hdr h;
        uint64_t u64;
    } __attribute__((packed)) m = {{req, 1u | (1u << 3), 8}, q};
    assert_int_equal(vu_send(f->sock, &m, sizeof(m), fd), 0);
    struct pollfd p = {f->sock, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 2000), 1);
    struct {
        struct vu_hdr h;
        uint64_t u64;
    } __attribute__((packed)) r;
    assert_int_equal(recv(f->sock, &r, sizeof(r), MSG_WAITALL), (ssize_t)sizeof(r));
    assert_int_equal(r.h.request, req);
    return r.u64;
}

/* A well-behaved front-end after the attack: both ring formats. */
static void healthy_after(struct srv *v, uint8_t seed)
{
    for (int packed = 0; packed < 2; packed++) {
        struct fe f;
        assert_int_equal(fe_open(v, packed, &f), 0);
        fe_verify(&f, (uint8_t)(seed + packed));
        fe_close(&f);
    }
}

/* ---- kick fds ---- */

/* A kick eventfd created without EFD_NONBLOCK and never written. It used
 * to block the queue thread in read() under the queue lock. */
static void vu_kick_blocking_eventfd_never_written(void **state)
{
    (void)state;
    int before = count_fds();
    struct srv *v = srv_start(1, false);
    struct fe f;
    assert_int_equal(fe_open(v, false, &f), 0);
    fe_verify(&f, 1);
    int kick = eventfd(0, EFD_CLOEXEC);
    assert_int_equal(fe_set_fd(&f, VU_SET_VRING_KICK, 0, kick), 0);
    /* Accepted, and the server made it non-blocking. */
    assert_true(fcntl(kick, F_GETFL) & O_NONBLOCK);
    usleep(600 * 1000);
    fe_server_answers(&f);
    /* Queue 1 (same worker) still serves. */
    fe_submit(&f, 1, VBLK_T_IN, 0);
    assert_int_equal(fe_reap(&f, 1, 5000), VBLK_S_OK);
    fe_close(&f);
    close(kick);
    healthy_after(v, 2);
    srv_stop(v);
    assert_int_equal(count_fds(), before);
}

/* Every fd that is not an eventfd is refused as a kick, call or err fd:
 * an empty blocking pipe, a pipe whose writer is gone, a socket whose peer
 * closed, a regular file, /dev/zero, and a signalfd (reading it would
 * steal the server's own signals). */
static void vu_notify_fd_not_an_eventfd_refused(void **state)
{
    (void)state;
    int before = count_fds();
    struct srv *v = srv_start(1, false);
    struct fe f;
    assert_int_equal(fe_open(v, false, &f), 0);

    int bad[6], p[2], sp[2];
    assert_int_equal(pipe(p), 0);
    bad[0] = p[0];
    int hp[2];
    assert_int_equal(pipe(hp), 0);
    close(hp[1]);
    bad[1] = hp[0];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
    close(sp[1]);
    bad[2] = sp[0];
    char tmpl[] = "/tmp/vblk-atkfd-file-XXXXXX";
    bad[3] = mkstemp(tmpl);
    assert_true(bad[3] >= 0);
    unlink(tmpl);
    bad[4] = open("/dev/zero", O_RDWR | O_CLOEXEC);
    assert_true(bad[4] >= 0);
    sigset_t none;
    sigemptyset(&none);
    sigaddset(&none, SIGUSR2);
    bad[5] = signalfd(-1, &none, SFD_CLOEXEC);
    assert_true(bad[5] >= 0);

    const uint32_t reqs[] = {VU_SET_VRING_KICK, VU_SET_VRING_CALL, VU_SET_VRING_ERR};
    for (unsigned r = 0; r < 3; r++)
        for (unsigned i = 0; i < 6; i++) {
            assert_int_not_equal(fe_set_fd(&f, reqs[r], 0, bad[i]), 0);
            /* Refused as it came: the server did not touch its flags. */
            assert_false(fcntl(bad[i], F_GETFL) & O_NONBLOCK);
        }
    assert_true(srv_logged(v, "not an eventfd"));
    /* The original fds are still in place: I/O goes on, with calls. */
    fe_verify(&f, 3);
    fe_server_answers(&f);
    fe_close(&f);
    for (unsigned i = 0; i < 6; i++)
        close(bad[i]);
    close(p[1]);
    healthy_after(v, 4);
    srv_stop(v);
    assert_int_equal(count_fds(), before);
}

/* A kick fd that hangs up cannot get past the check above; if one did
 * (an fd the kind check cannot see), its hang-up breaks the queue once
 * instead of waking the queue thread for ever. Driven through the
 * transport's own queue with a pipe put in place directly. */
static void vu_kick_hung_up_breaks_queue_once(void **state)
{
    (void)state;
    int before = count_fds();
    struct vblk_backend be;
    assert_int_equal(vblk_backend_null_create(1u << 20, &be), 0);
    struct vblk_dev_params p;
    vblk_dev_params_default(&p, 1u << 20);
    struct vblk_vu_opts o = {0};
    struct vblk_vu_dev *d;
    assert_int_equal(vblk_vu_dev_create(&p, &be, &o, &d), 0);
    struct vu_queue *q = &d->q[0];
    int hp[2];
    assert_int_equal(pipe2(hp, O_CLOEXEC), 0);
    close(hp[1]);
    vu_queue_lock(q);
    vu_queue_set_kick(q, hp[0]);
    vu_queue_unlock(q);
    struct pollfd pf = {vblk_vu_queue_fd(d, 0), POLLIN, 0};
    assert_int_equal(poll(&pf, 1, 0), 1);
    assert_int_equal(vblk_vu_queue_process(d, 0), 0);
    assert_true(atomic_load(&q->broken));
    assert_int_equal(q->kick_fd, -1);
    /* Nothing left to wake the queue's loop. */
    assert_int_equal(poll(&pf, 1, 0), 0);
    vblk_vu_dev_destroy(d);
    vblk_backend_destroy(&be);
    assert_int_equal(count_fds(), before);
}

/* ---- call and err fds ---- */

/* A blocking call eventfd whose counter is at its maximum: a write would
 * block for ever. The server made it non-blocking, so the write fails with
 * EAGAIN, which means "already signalled". */
static void vu_call_blocking_eventfd_saturated(void **state)
{
    (void)state;
    int before = count_fds();
    for (int pollmode = 0; pollmode < 2; pollmode++) {
        struct srv *v = srv_start(1, pollmode);
        struct fe f;
        assert_int_equal(fe_open(v, true, &f), 0);
        int call = eventfd(0, EFD_CLOEXEC);
        assert_int_equal(eventfd_write(call, SATURATED), 0);
        assert_int_equal(fe_set_fd(&f, VU_SET_VRING_CALL, 0, call), 0);
        assert_true(fcntl(call, F_GETFL) & O_NONBLOCK);
        for (int i = 0; i < 8; i++) {
            fe_submit(&f, 0, VBLK_T_IN, (uint64_t)i);
            assert_int_equal(fe_reap(&f, 0, 5000), VBLK_S_OK);
        }
        fe_server_answers(&f);
        fe_submit(&f, 1, VBLK_T_IN, 0);
        assert_int_equal(fe_reap(&f, 1, 5000), VBLK_S_OK);
        fe_close(&f);
        close(call);
        healthy_after(v, 5);
        srv_stop(v);
    }
    assert_int_equal(count_fds(), before);
}

/* The front-end clears O_NONBLOCK again on its side of the shared
 * description and saturates the counter: the queue thread's write blocks.
 * The message thread keeps answering, the watchdog releases the write and
 * breaks that queue, and the other queue on the same worker resumes. */
static void vu_call_made_blocking_again_released(void **state)
{
    (void)state;
    int before = count_fds();
    struct srv *v = srv_start(1, false);
    struct fe f;
    assert_int_equal(fe_open(v, false, &f), 0);
    int call = eventfd(0, EFD_CLOEXEC);
    assert_int_equal(fe_set_fd(&f, VU_SET_VRING_CALL, 0, call), 0);
    int fl = fcntl(call, F_GETFL);
    assert_true(fl & O_NONBLOCK);
    assert_int_equal(fcntl(call, F_SETFL, fl & ~O_NONBLOCK), 0);
    uint64_t big = SATURATED;
    assert_int_equal(write(call, &big, 8), 8);
    /* The request completes; signalling it blocks the worker. */
    fe_submit(&f, 0, VBLK_T_IN, 0);
    assert_int_equal(fe_reap(&f, 0, 5000), VBLK_S_OK);
    fe_server_answers(&f);
    assert_true(srv_wait_log(v, "call fd blocked; device needs reset", 3000));
    /* Released: the counter was emptied and the blocked write went through
     * (once the worker runs again). */
    uint64_t now = 0;
    int64_t end = now_ms() + 3000;
    struct pollfd pf = {call, POLLIN, 0};
    while (poll(&pf, 1, 0) != 1) {
        assert_true(now_ms() < end);
        usleep(2000);
    }
    assert_int_equal(read(call, &now, 8), 8);
    assert_true(now >= 1 && now < SATURATED);
    /* The other queue of that worker serves again. */
    fe_submit(&f, 1, VBLK_T_IN, 0);
    assert_int_equal(fe_reap(&f, 1, 5000), VBLK_S_OK);
    fe_close(&f);
    close(call);
    healthy_after(v, 6);
    srv_stop(v);
    assert_int_equal(count_fds(), before);
}

/* A saturated blocking err eventfd, then a ring the driver breaks: the
 * error notification is dropped (EAGAIN), nothing blocks. */
static void vu_err_saturated_then_ring_broken(void **state)
{
    (void)state;
    int before = count_fds();
    struct srv *v = srv_start(1, false);
    struct fe f;
    assert_int_equal(fe_open(v, false, &f), 0);
    int err = eventfd(0, EFD_CLOEXEC);
    assert_int_equal(eventfd_write(err, SATURATED), 0);
    assert_int_equal(fe_set_fd(&f, VU_SET_VRING_ERR, 0, err), 0);
    /* Publish an avail index a whole ring ahead: the device must refuse
     * the ring (virtio 1.2 2.7.13.3). */
    struct vblk_drv_vq *vq = vblk_vu_client_queue(f.c, 0);
    vq->avail_idx = (uint16_t)(vq->avail_idx + vblk_vu_client_queue_size(f.c) + 1);
    assert_true(vblk_vu_client_kick(f.c, 0) >= 0);
    assert_true(srv_wait_log(v, "the driver broke the ring", 3000));
    fe_server_answers(&f);
    fe_submit(&f, 1, VBLK_T_IN, 0);
    assert_int_equal(fe_reap(&f, 1, 5000), VBLK_S_OK);
    fe_close(&f);
    close(err);
    healthy_after(v, 7);
    srv_stop(v);
    assert_int_equal(count_fds(), before);
}

/* ---- connections ---- */

/* A front-end that connects right after the previous one closed is always
 * served, whether or not the server saw the hang-up first. */
static void vu_connect_right_after_disconnect(void **state)
{
    (void)state;
    int before = count_fds();
    struct srv *v = srv_start(0, false);
    for (int i = 0; i < 50; i++) {
        close(connect_sock(v->path)); /* an empty connection */
        struct fe f;
        assert_int_equal(fe_open(v, i & 1, &f), 0);
        fe_close(&f);
    }
    assert_false(srv_logged(v, "refusing"));
    srv_stop(v);
    assert_int_equal(count_fds(), before);
}

struct opener {
    struct srv *v;
    int rc;
    int64_t ms;
};

static void *open_in_thread(void *arg)
{
    struct opener *o = arg;
    struct fe f;
    int64_t t0 = now_ms();
    o->rc = fe_open(o->v, false, &f);
    o->ms = now_ms() - t0;
    if (o->rc == 0) {
        fe_verify(&f, 9);
        fe_close(&f);
    }
    return NULL;
}

/* A front-end that connects while the previous one is still closing waits
 * for it and is served; a real second front-end is refused with a log
 * line once the first has stayed for the grace period. */
static void vu_second_frontend_waits_or_is_refused(void **state)
{
    (void)state;
    int before = count_fds();
    struct srv *v = srv_start(0, false);
    for (int i = 0; i < 20; i++) {
        struct fe a;
        assert_int_equal(fe_open(v, false, &a), 0);
        struct opener o = {v, -1, 0};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, open_in_thread, &o), 0);
        usleep((useconds_t)(i % 5) * 20000);
        fe_close(&a);
        pthread_join(t, NULL);
        assert_int_equal(o.rc, 0);
    }
    assert_false(srv_logged(v, "refusing"));

    struct fe a;
    assert_int_equal(fe_open(v, false, &a), 0);
    struct opener o = {v, 0, 0};
    open_in_thread(&o);
    assert_true(o.rc < 0);
    assert_true(srv_wait_log(v, "refusing a second front-end", 2000));
    fe_verify(&a, 10);
    fe_close(&a);
    healthy_after(v, 11);
    srv_stop(v);
    assert_int_equal(count_fds(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(vu_kick_blocking_eventfd_never_written),
        cmocka_unit_test(vu_notify_fd_not_an_eventfd_refused),
        cmocka_unit_test(vu_kick_hung_up_breaks_queue_once),
        cmocka_unit_test(vu_call_blocking_eventfd_saturated),
        cmocka_unit_test(vu_call_made_blocking_again_released),
        cmocka_unit_test(vu_err_saturated_then_ring_broken),
        cmocka_unit_test(vu_connect_right_after_disconnect),
        cmocka_unit_test(vu_second_frontend_waits_or_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
