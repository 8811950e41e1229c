/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the RBD backend's pure parts: image spec parsing, the
 * mapping of librbd results to virtio status, the one-line start-up
 * messages, and the option checks vblk_backend_rbd_open() makes before it
 * touches a cluster. The datapath runs against a real cluster in
 * tests/ceph/. Built only with the RBD backend (VBLK_HAVE_RBD).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "backend/rbd_internal.h"
#include "virtioblk/backends.h"
#include "virtioblk/spec.h"

static void check_spec(const char *spec, const char *pool, const char *ns, const char *image,
                       const char *snap)
{
    char buf[128];
    struct vblk_rbd_opts o;

    memset(&o, 0x5a, sizeof(o));
    o.pool_namespace = "stale";
    assert_int_equal(vblk_rbd_parse_spec(spec, buf, sizeof(buf), &o), 0);
    assert_string_equal(o.pool, pool);
    assert_string_equal(o.image, image);
    if (ns == NULL)
        assert_null(o.pool_namespace);
    else
        assert_string_equal(o.pool_namespace, ns);
    if (snap == NULL)
        assert_null(o.snapshot);
    else
        assert_string_equal(o.snapshot, snap);
}

static void test_spec_ok(void **state)
{
    (void)state;
    check_spec("rbd/img0", "rbd", NULL, "img0", NULL);
    check_spec("pool/img@snap", "pool", NULL, "img", "snap");
    check_spec("pool/ns/img", "pool", "ns", "img", NULL);
    check_spec("pool/ns/img@s1", "pool", "ns", "img", "s1");
    /* The rbd tool's shorthand: a bare image lives in the pool "rbd". */
    check_spec("img", "rbd", NULL, "img", NULL);
    check_spec("img@s", "rbd", NULL, "img", "s");
    check_spec("p.x-1/i_m.g", "p.x-1", NULL, "i_m.g", NULL);
}

static void test_spec_bad(void **state)
{
    static const char *const bad[] = {
        "",   "/img",    "pool/", "pool//img", "p/n/i/x", "p/i@", "p/i@a@b",
        "@s", "p/i@s/x", "/",     "@",         "p/n/@s",  "//",
    };
    char buf[128];
    struct vblk_rbd_opts o = {0};

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = vblk_rbd_parse_spec(bad[i], buf, sizeof(buf), &o);
        if (r != -EINVAL)
            fail_msg("'%s' parsed (%d)", bad[i], r);
    }
    assert_int_equal(vblk_rbd_parse_spec(NULL, buf, sizeof(buf), &o), -EINVAL);
    assert_int_equal(vblk_rbd_parse_spec("p/i", NULL, 10, &o), -EINVAL);
    assert_int_equal(vblk_rbd_parse_spec("p/i", buf, sizeof(buf), NULL), -EINVAL);
    /* The buffer holds the copy plus "rbd" for a bare image: len + 5. */
    assert_int_equal(vblk_rbd_parse_spec("img", buf, 7, &o), -ENAMETOOLONG);
    assert_int_equal(vblk_rbd_parse_spec("img", buf, 8, &o), 0);
    assert_string_equal(o.pool, "rbd");
}

static void test_result_status(void **state)
{
    (void)state;
    /* Reads return their byte count; a short one is padded by the caller. */
    assert_int_equal(rbd_result_status(4096, VBLK_T_IN, 4096), VBLK_S_OK);
    assert_int_equal(rbd_result_status(512, VBLK_T_IN, 4096), VBLK_S_OK);
    assert_int_equal(rbd_result_status(0, VBLK_T_IN, 4096), VBLK_S_OK);
    assert_int_equal(rbd_result_status(8192, VBLK_T_IN, 4096), VBLK_S_IOERR);
    assert_int_equal(rbd_result_status(0, VBLK_T_OUT, 4096), VBLK_S_OK);
    assert_int_equal(rbd_result_status(0, VBLK_T_FLUSH, 0), VBLK_S_OK);
    assert_int_equal(rbd_result_status(0, VBLK_T_DISCARD, 0), VBLK_S_OK);
    assert_int_equal(rbd_result_status(0, VBLK_T_WRITE_ZEROES, 0), VBLK_S_OK);
    /* The I/O timeout, a blocklisted client, a full cluster, a read-only
     * image, a lost lock: the driver can only retry, so IOERR. */
    static const int ioerr[] = {ETIMEDOUT, EIO,    ESHUTDOWN, ENOSPC, EDQUOT, EROFS,
                                EINVAL,    ENOENT, EACCES,    EPERM,  ENOMEM, ECANCELED};
    for (size_t i = 0; i < sizeof(ioerr) / sizeof(ioerr[0]); i++) {
        assert_int_equal(rbd_result_status(-ioerr[i], VBLK_T_OUT, 4096), VBLK_S_IOERR);
        assert_int_equal(rbd_result_status(-ioerr[i], VBLK_T_IN, 4096), VBLK_S_IOERR);
    }
    /* What librbd cannot do at all is UNSUPP. */
    assert_int_equal(rbd_result_status(-EOPNOTSUPP, VBLK_T_WRITE_ZEROES, 0), VBLK_S_UNSUPP);
    assert_int_equal(rbd_result_status(-ENOTSUP, VBLK_T_DISCARD, 0), VBLK_S_UNSUPP);
    assert_int_equal(rbd_result_status(-ENOSYS, VBLK_T_FLUSH, 0), VBLK_S_UNSUPP);
}

static void expect_message(enum rbd_stage stage, int err, const struct vblk_rbd_opts *o,
                           const char *want)
{
    char buf[512];
    rbd_error_message(stage, err, o, 7, "v2:127.0.0.1:1", buf, sizeof(buf));
    if (strstr(buf, want) == NULL)
        fail_msg("stage %d, error %d: '%s' lacks '%s'", (int)stage, err, buf, want);
    assert_null(strchr(buf, '\n'));
}

static void test_messages(void **state)
{
    struct vblk_rbd_opts o = {.pool = "p", .image = "i", .client_id = "c1"};
    struct vblk_rbd_opts ns = {.pool = "p", .pool_namespace = "n", .image = "i", .snapshot = "s"};
    char buf[512];

    (void)state;
    expect_message(RBD_STAGE_CONNECT, -ETIMEDOUT, &o,
                   "no answer from the Ceph monitors (v2:127.0.0.1:1) within 7 s");
    expect_message(RBD_STAGE_CONNECT, -EACCES, &o, "refused client.c1: permission denied");
    expect_message(RBD_STAGE_CONNECT, -EPERM, &o, "refused client.c1");
    expect_message(RBD_STAGE_CONNECT, -ENOENT, &o, "no key for client.c1: no keyring found");
    expect_message(RBD_STAGE_CONNECT, -ECONNREFUSED, &o, "cannot connect to the Ceph monitors");
    expect_message(RBD_STAGE_POOL, -ENOENT, &o, "rbd p/i: pool 'p' does not exist");
    expect_message(RBD_STAGE_POOL, -EPERM, &o, "client.c1 may not use pool 'p'");
    expect_message(RBD_STAGE_NS, -ENOENT, &ns,
                   "rbd p/n/i@s: namespace 'n' does not exist in pool 'p'");
    expect_message(RBD_STAGE_IMAGE, -ENOENT, &o, "image 'i' does not exist");
    expect_message(RBD_STAGE_IMAGE, -ETIMEDOUT, &o, "no answer from the OSDs within 7 s");
    expect_message(RBD_STAGE_IMAGE, -EACCES, &o, "may not open image 'i'");
    expect_message(RBD_STAGE_SNAPSHOT, -ENOENT, &ns, "image 'i' has no snapshot 's'");
    expect_message(RBD_STAGE_SIZE, -EINVAL, &o, "smaller than one 512-byte sector");
    expect_message(RBD_STAGE_KEYRING, -ENOENT,
                   &(struct vblk_rbd_opts){.pool = "p", .image = "i", .keyring = "/k"},
                   "cannot read keyring /k: No such file or directory");
    expect_message(RBD_STAGE_CONF, -ENOENT,
                   &(struct vblk_rbd_opts){.pool = "p", .image = "i", .conf_path = "/c"},
                   "cannot read the Ceph configuration /c");
    /* The default client is admin; a tiny buffer is still terminated. */
    expect_message(RBD_STAGE_CONNECT, -EACCES, &ns, "refused client.admin");
    rbd_error_message(RBD_STAGE_POOL, -ENOENT, &o, 1, NULL, buf, 5);
    assert_string_equal(buf, "rbd ");
}

static void test_open_options(void **state)
{
    struct vblk_backend be;
    char err[256];
    struct {
        struct vblk_rbd_opts o;
        const char *why;
    } cases[] = {
        {{.image = "i"}, "no pool given"},
        {{.pool = "", .image = "i"}, "no pool given"},
        {{.pool = "p"}, "no image given"},
        {{.pool = "p", .image = "i", .snapshot = ""}, "empty snapshot name"},
        {{.pool = "p", .image = "i", .cache = 4}, "unknown cache mode"},
        {{.pool = "p", .image = "i", .cache = -1}, "unknown cache mode"},
        {{.pool = "p", .image = "i", .io_timeout_s = VBLK_RBD_MAX_TIMEOUT + 1}, "timeout"},
        {{.pool = "p", .image = "i", .connect_timeout_s = VBLK_RBD_MAX_TIMEOUT + 1}, "timeout"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(vblk_backend_rbd_open(&cases[i].o, &be, err, sizeof(err)), -EINVAL);
        if (strstr(err, cases[i].why) == NULL)
            fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].why);
    }
    assert_int_equal(vblk_backend_rbd_open(NULL, &be, err, sizeof(err)), -EINVAL);
    assert_int_equal(vblk_backend_rbd_open(&cases[0].o, NULL, NULL, 0), -EINVAL);
}

static void test_stats_other_backend(void **state)
{
    struct vblk_backend mem;
    struct vblk_rbd_stats st;

    (void)state;
    assert_int_equal(vblk_backend_memory_create(1u << 20, &mem), 0);
    assert_int_equal(vblk_backend_rbd_stats(&mem, &st), -EINVAL);
    assert_int_equal(vblk_backend_rbd_stats(NULL, &st), -EINVAL);
    /* The resize helpers refuse other backends too. */
    uint64_t size = 7;
    assert_int_equal(vblk_backend_rbd_image_size(&mem, &size), -EINVAL);
    assert_int_equal(size, 7);
    assert_int_equal(vblk_backend_rbd_image_size(NULL, &size), -EINVAL);
    assert_int_equal(vblk_backend_rbd_update_fd(&mem), -EINVAL);
    assert_int_equal(vblk_backend_rbd_update_fd(NULL), -EINVAL);
    vblk_backend_destroy(&mem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_ok),       cmocka_unit_test(test_spec_bad),
        cmocka_unit_test(test_result_status), cmocka_unit_test(test_messages),
        cmocka_unit_test(test_open_options),  cmocka_unit_test(test_stats_other_backend),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
