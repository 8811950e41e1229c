/* SPDX-License-Identifier: MIT */
/*
 * NBD backend: URI parsing, option validation, the mapping of libnbd's
 * errors to virtio status bytes, and the payload limit. The backend against
 * a real nbdkit is tested in tests/nbd/ (label "nbd").
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#if VBLK_HAVE_NBD
#include "backend/nbd_internal.h"
#include "virtioblk/spec.h"

static struct nbdbe_uri u;
static char err[256];

static int parse(const char *s)
{
    err[0] = '\0';
    return nbdbe_uri_parse(s, &u, err, sizeof(err));
}

static void test_uri_tcp(void **state)
{
    (void)state;
    assert_int_equal(parse("nbd://example.com/disk0"), 0);
    assert_false(u.unix_socket);
    assert_string_equal(u.host, "example.com");
    assert_string_equal(u.port, "10809");
    assert_string_equal(u.export_name, "disk0");

    assert_int_equal(parse("nbd://10.0.0.1:10810/"), 0);
    assert_string_equal(u.host, "10.0.0.1");
    assert_string_equal(u.port, "10810");
    assert_string_equal(u.export_name, "");

    assert_int_equal(parse("nbd://[::1]:2000/a%20b%2Fc"), 0);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.port, "2000");
    assert_string_equal(u.export_name, "a b/c");

    /* No path: the default export; empty host: localhost. */
    assert_int_equal(parse("nbd://host"), 0);
    assert_string_equal(u.export_name, "");
    assert_int_equal(parse("nbd:///x"), 0);
    assert_string_equal(u.host, "localhost");
    /* A second slash belongs to the export name. */
    assert_int_equal(parse("nbd+tcp://h//abs"), 0);
    assert_string_equal(u.export_name, "/abs");
}

static void test_uri_unix(void **state)
{
    (void)state;
    assert_int_equal(parse("nbd+unix:///exp?socket=/run/nbd.sock"), 0);
    assert_true(u.unix_socket);
    assert_string_equal(u.socket, "/run/nbd.sock");
    assert_string_equal(u.export_name, "exp");

    assert_int_equal(parse("nbd+unix://?socket=%2Ftmp%2Fa%20b"), 0);
    assert_string_equal(u.socket, "/tmp/a b");
    assert_string_equal(u.export_name, "");

    assert_int_equal(parse("nbd+unix:///e"), -EINVAL);
    assert_non_null(strstr(err, "socket="));
    assert_int_equal(parse("nbd+unix://host/e?socket=/s"), -EINVAL);
    assert_non_null(strstr(err, "no host"));
    assert_int_equal(parse("nbd://h/e?socket=/s"), -EINVAL);
    assert_int_equal(parse("nbd+unix:///e?socket="), -EINVAL);
    char longpath[300] = "nbd+unix:///e?socket=/";
    memset(longpath + strlen(longpath), 'a', 200);
    assert_int_equal(parse(longpath), -EINVAL);
    assert_non_null(strstr(err, "longer"));
}

static void test_uri_refused(void **state)
{
    static const char *const bad[] = {
        "",
        "http://h/e",
        "nbd:/h/e",
        "nbds://h/e",
        "nbds+unix:///e?socket=/s",
        "nbd+vsock://2/e",
        "nbd://user@h/e",
        "nbd://h:0/e",
        "nbd://h:65536/e",
        "nbd://h:12a/e",
        "nbd://[::1/e",
        "nbd://[::1]x/e",
        "nbd://h/e#frag",
        "nbd://h/e x",
        "nbd://h/e%",
        "nbd://h/e%4",
        "nbd://h/e%zz",
        "nbd://h/e%00",
        "nbd://h/e?tls-certificates=/x",
        "nbd://h/e?what=1",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i]) != -EINVAL)
            fail_msg("accepted '%s'", bad[i]);
        if (err[0] == '\0')
            fail_msg("no reason for '%s'", bad[i]);
    }
    assert_int_equal(nbdbe_uri_parse(NULL, &u, NULL, 0), -EINVAL);
    /* An empty port is the default one (RFC 3986 3.2.3). */
    assert_int_equal(parse("nbd://h:/e%41"), 0);
    assert_string_equal(u.port, "10809");
    assert_string_equal(u.export_name, "eA");
}

static void test_uri_export_length(void **state)
{
    static char s[NBD_EXPORT_MAX + 64];
    (void)state;
    strcpy(s, "nbd://h/");
    memset(s + 8, 'x', NBD_EXPORT_MAX);
    s[8 + NBD_EXPORT_MAX] = '\0';
    assert_int_equal(parse(s), 0);
    assert_int_equal(strlen(u.export_name), NBD_EXPORT_MAX);
    strcat(s, "x");
    assert_int_equal(parse(s), -EINVAL);
}

static void test_options(void **state)
{
    struct nbdbe_cfg c;
    (void)state;
    assert_int_equal(nbdbe_cfg_from_opts(NULL, &c, err, sizeof(err)), 0);
    assert_int_equal(c.connect_ns, 5000ull * 1000000);
    assert_int_equal(c.request_ns, 30000ull * 1000000);
    assert_int_equal(c.backoff_min_ns, 100ull * 1000000);
    assert_int_equal(c.backoff_max_ns, 5000ull * 1000000);
    assert_false(c.read_only);

    struct vblk_nbd_opts o = {.connect_timeout_ms = 250,
                              .request_timeout_ms = 1500,
                              .reconnect_min_ms = 20,
                              .reconnect_max_ms = 80,
                              .read_only = true,
                              .one_connection = true};
    assert_int_equal(nbdbe_cfg_from_opts(&o, &c, err, sizeof(err)), 0);
    assert_int_equal(c.connect_ns, 250ull * 1000000);
    assert_int_equal(c.request_ns, 1500ull * 1000000);
    assert_int_equal(c.backoff_min_ns, 20ull * 1000000);
    assert_int_equal(c.backoff_max_ns, 80ull * 1000000);
    assert_true(c.read_only);
    assert_true(c.one_connection);

    /* A minimum above the default maximum raises the maximum with it... */
    struct vblk_nbd_opts o2 = {.reconnect_min_ms = 9000};
    assert_int_equal(nbdbe_cfg_from_opts(&o2, &c, err, sizeof(err)), 0);
    assert_int_equal(c.backoff_max_ns, 9000ull * 1000000);
    /* ...but not above an explicit one. */
    o2.reconnect_max_ms = 1000;
    assert_int_equal(nbdbe_cfg_from_opts(&o2, &c, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "reconnect_min_ms"));
    struct vblk_nbd_opts o3 = {.request_timeout_ms = 86400001};
    assert_int_equal(nbdbe_cfg_from_opts(&o3, &c, err, sizeof(err)), -EINVAL);
}

static void test_errno_status(void **state)
{
    (void)state;
    assert_int_equal(nbdbe_errno_status(0), VBLK_S_OK);
    assert_int_equal(nbdbe_errno_status(ENOTSUP), VBLK_S_UNSUPP);
    assert_int_equal(nbdbe_errno_status(EOPNOTSUPP), VBLK_S_UNSUPP);
    static const int ioerr[] = {EIO,   EPERM,      ENOSPC,    EINVAL, ENOTCONN, ESHUTDOWN,
                                EPIPE, ECONNRESET, EOVERFLOW, ENOMEM, EROFS,    ETIMEDOUT};
    for (size_t i = 0; i < sizeof(ioerr) / sizeof(ioerr[0]); i++)
        assert_int_equal(nbdbe_errno_status(ioerr[i]), VBLK_S_IOERR);
}

static void test_payload_max(void **state)
{
    (void)state;
    assert_int_equal(nbdbe_payload_max(-1), NBD_PAYLOAD_DEFAULT);
    assert_int_equal(nbdbe_payload_max(0), NBD_PAYLOAD_DEFAULT);
    assert_int_equal(nbdbe_payload_max(64 << 20), NBD_PAYLOAD_DEFAULT);
    assert_int_equal(nbdbe_payload_max(65536), 65536);
    assert_int_equal(nbdbe_payload_max(65536 + 100), 65536);
    assert_int_equal(nbdbe_payload_max(100), 512);
}

/* What the public entry point says about hopeless configurations, before
 * any connection is tried. */
static void test_open_refuses(void **state)
{
    struct vblk_backend be;
    (void)state;
    assert_int_equal(vblk_backend_nbd_open("nbd://h/e", NULL, NULL), -EINVAL);
    assert_int_equal(vblk_backend_nbd_open(NULL, NULL, &be), -EINVAL);
    assert_int_equal(vblk_backend_nbd_open("file:///x", NULL, &be), -EINVAL);
    struct vblk_nbd_opts o = {.reconnect_min_ms = 10, .reconnect_max_ms = 5};
    assert_int_equal(vblk_backend_nbd_open("nbd://h/e", &o, &be), -EINVAL);
    /* The URI may come inside the options. */
    struct vblk_nbd_opts o2 = {.uri = "nbds://h/e"};
    assert_int_equal(vblk_backend_nbd_open(NULL, &o2, &be), -EINVAL);
    struct vblk_nbd_stats st;
    struct vblk_backend other = {0};
    assert_int_equal(vblk_backend_nbd_stats(&other, &st), -EINVAL);
    uint64_t size = 7;
    assert_int_equal(vblk_backend_nbd_server_size(&other, &size), -EINVAL);
    assert_int_equal(vblk_backend_nbd_server_size(NULL, &size), -EINVAL);
    assert_int_equal(size, 7);
}
#endif

int main(void)
{
#if VBLK_HAVE_NBD
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uri_tcp),     cmocka_unit_test(test_uri_unix),
        cmocka_unit_test(test_uri_refused), cmocka_unit_test(test_uri_export_length),
        cmocka_unit_test(test_options),     cmocka_unit_test(test_errno_status),
        cmocka_unit_test(test_payload_max), cmocka_unit_test(test_open_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
#else
    /* Built without libnbd: there is no NBD backend to test. */
    return 0;
#endif
}
