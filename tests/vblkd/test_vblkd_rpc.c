/* SPDX-License-Identifier: MIT */
/*
 * vblkd's JSON-RPC layer: every method with good and bad parameters,
 * malformed JSON, wrong types, unknown methods and members, oversized and
 * deeply nested requests, batches and notifications (each a defined
 * JSON-RPC error, never a crash); then the real control socket with two
 * clients, one that leaves mid-request, a flood, and a vhost-user front-end
 * attached while export_del is refused and then forced; and the
 * configuration file round trip.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "vblkd.h"
#include "virtioblk/vhost_user_client.h"

static char tmpdir[64];

static struct vblkd *new_daemon(void)
{
    struct vblkd_opts o = {.threads = 2, .path_prefix = tmpdir, .log_level = VBLK_LOG_ERR};
    struct vblkd *d;
    assert_int_equal(vblkd_create(&o, &d), 0);
    return d;
}

/* Runs @text through the RPC layer; returns the parsed response or NULL. */
static json_object *call_text(struct vblkd *d, const char *text, size_t len)
{
    char *r = vblkd_rpc_handle(d, text, len);
    if (!r)
        return NULL;
    json_object *o = json_tokener_parse(r);
    assert_non_null(o);
    free(r);
    return o;
}

static json_object *call(struct vblkd *d, const char *method, const char *params)
{
    char buf[8192];
    if (params)
        snprintf(buf, sizeof(buf), "{\"jsonrpc\":\"2.0\",\"method\":\"%s\",\"params\":%s,\"id\":7}",
                 method, params);
    else
        snprintf(buf, sizeof(buf), "{\"jsonrpc\":\"2.0\",\"method\":\"%s\",\"id\":7}", method);
    json_object *r = call_text(d, buf, strlen(buf));
    assert_non_null(r);
    return r;
}

static int error_code(json_object *r)
{
    json_object *e, *c, *m;
    if (!json_object_object_get_ex(r, "error", &e))
        return 0;
    assert_true(json_object_object_get_ex(e, "code", &c));
    assert_true(json_object_object_get_ex(e, "message", &m));
    assert_true(strlen(json_object_get_string(m)) > 10); /* something to act on */
    return json_object_get_int(c);
}

/* Calls and checks the error code (0: success); returns nothing. */
static void expect(struct vblkd *d, const char *method, const char *params, int code)
{
    json_object *r = call(d, method, params);
    int got = error_code(r);
    if (got != code)
        fprintf(stderr, "%s %s: %s\n", method, params ? params : "", json_object_to_json_string(r));
    assert_int_equal(got, code);
    json_object_put(r);
}

/* The result of a call that must succeed (caller puts the response). */
static json_object *ok(struct vblkd *d, const char *method, const char *params, json_object **resp)
{
    *resp = call(d, method, params);
    if (error_code(*resp))
        fprintf(stderr, "%s: %s\n", method, json_object_to_json_string(*resp));
    assert_int_equal(error_code(*resp), 0);
    json_object *res;
    assert_true(json_object_object_get_ex(*resp, "result", &res));
    return res;
}

static int64_t get_int(json_object *o, const char *key)
{
    json_object *v;
    assert_true(json_object_object_get_ex(o, key, &v));
    return json_object_get_int64(v);
}

static void expect_text(struct vblkd *d, const char *text, size_t len, int code)
{
    json_object *r = call_text(d, text, len);
    assert_non_null(r);
    if (json_object_is_type(r, json_type_array)) {
        json_object *first = json_object_get(json_object_array_get_idx(r, 0));
        json_object_put(r);
        r = first;
    }
    assert_int_equal(error_code(r), code);
    json_object_put(r);
}

/* ---- the protocol ---- */

static void test_malformed_json(void **state)
{
    (void)state;
    struct vblkd *d = new_daemon();
    static const char *const bad[] = {
        "",
        "{",
        "[",
        "nul",
        "{\"a\":}",
        "{'jsonrpc':'2.0'}",
        "{\"jsonrpc\":\"2.0\",}",
        "\"abc",
        "{\"jsonrpc\":\"2.0\"} trailing",
        "/* comment */ {}",
        "{\"a\" 1}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_text(d, bad[i], strlen(bad[i]), RPC_PARSE_ERROR);
    /* A NUL inside the text. */
    expect_text(d, "{\"a\":\0}", 7, RPC_PARSE_ERROR);
    /* Nesting deeper than the parser allows. */
    char deep[256];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    expect_text(d, deep, 200, RPC_PARSE_ERROR);
    /* Valid JSON that is not a request. */
    expect_text(d, "42", 2, RPC_INVALID_REQUEST);
    expect_text(d, "\"str\"", 5, RPC_INVALID_REQUEST);
    expect_text(d, "null", 4, RPC_INVALID_REQUEST);
    expect_text(d, "[]", 2, RPC_INVALID_REQUEST);
    expect_text(d, "[1, 2]", 6, RPC_INVALID_REQUEST);
    /* Oversized. */
    size_t big = VBLKD_RPC_MAX_REQUEST + 100;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, ' ', big);
    memcpy(huge, "{\"jsonrpc\":\"2.0\",\"method\":\"server_info\",\"id\":1", 45);
    huge[big - 1] = '}';
    expect_text(d, huge, big, RPC_INVALID_REQUEST);
    free(huge);
    vblkd_destroy(d);
}

static void test_request_shape(void **state)
{
    (void)state;
    struct vblkd *d = new_daemon();
    static const struct {
        const char *text;
        int code;
    } cases[] = {
        {"{\"method\":\"server_info\",\"id\":1}", RPC_INVALID_REQUEST},
        {"{\"jsonrpc\":\"1.0\",\"method\":\"server_info\",\"id\":1}", RPC_INVALID_REQUEST},
        {"{\"jsonrpc\":2,\"method\":\"server_info\",\"id\":1}", RPC_INVALID_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"id\":1}", RPC_INVALID_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"method\":7,\"id\":1}", RPC_INVALID_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"server_info\",\"id\":{}}", RPC_INVALID_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"server_info\",\"id\":[1]}", RPC_INVALID_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"server_info\",\"id\":true}", RPC_INVALID_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"server_info\",\"id\":1,\"x\":1}", RPC_INVALID_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"server_info\",\"params\":[],\"id\":1}",
         RPC_INVALID_PARAMS},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"server_info\",\"params\":3,\"id\":1}",
         RPC_INVALID_PARAMS},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"server_info\",\"params\":{\"a\":1},\"id\":1}",
         RPC_INVALID_PARAMS},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"nope\",\"id\":1}", RPC_METHOD_NOT_FOUND},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"\",\"id\":\"x\"}", RPC_METHOD_NOT_FOUND},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"server_info\",\"id\":null}", 0},
        {"{\"x\":1e999999999}", RPC_INVALID_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"server_info\",\"id\":1.5}", RPC_INVALID_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"server_info\",\"params\":null,\"id\":\"abc\"}", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_text(d, cases[i].text, strlen(cases[i].text), cases[i].code);
    /* The id comes back as it was sent. */
    const char *named = "{\"jsonrpc\":\"2.0\",\"method\":\"server_info\",\"id\":\"q-1\"}";
    json_object *r = call_text(d, named, strlen(named));
    json_object *id;
    assert_true(json_object_object_get_ex(r, "id", &id));
    assert_string_equal(json_object_get_string(id), "q-1");
    json_object_put(r);
    /* Notifications get no answer, even when they fail. */
    assert_null(call_text(d, "{\"jsonrpc\":\"2.0\",\"method\":\"server_info\"}", 40));
    assert_null(call_text(d, "{\"jsonrpc\":\"2.0\",\"method\":\"nope\"}", 33));
    /* A batch: one answer per request with an id, in order. */
    const char *batch = "[{\"jsonrpc\":\"2.0\",\"method\":\"server_info\",\"id\":1},"
                        "{\"jsonrpc\":\"2.0\",\"method\":\"server_info\"},"
                        "{\"jsonrpc\":\"2.0\",\"method\":\"nope\",\"id\":2}, 5]";
    r = call_text(d, batch, strlen(batch));
    assert_true(json_object_is_type(r, json_type_array));
    assert_int_equal(json_object_array_length(r), 3);
    assert_int_equal(error_code(json_object_array_get_idx(r, 0)), 0);
    assert_int_equal(error_code(json_object_array_get_idx(r, 1)), RPC_METHOD_NOT_FOUND);
    assert_int_equal(error_code(json_object_array_get_idx(r, 2)), RPC_INVALID_REQUEST);
    json_object_put(r);
    vblkd_destroy(d);
}

/* ---- the methods ---- */

static void test_export_add_params(void **state)
{
    (void)state;
    struct vblkd *d = new_daemon();
    char p[2048];
    static const char *const bad[] = {
        "{}",
        "{\"name\":\"a\"}",
        "{\"name\":5,\"transport\":\"vhost-user\"}",
        "{\"name\":\"\",\"transport\":\"vhost-user\"}",
        "{\"name\":\"a/b\",\"transport\":\"vhost-user\"}",
        "{\"name\":\".a\",\"transport\":\"vhost-user\"}",
        "{\"name\":\"a b\",\"transport\":\"vhost-user\"}",
        "{\"name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
        "\"transport\":\"vhost-user\"}",
        "{\"name\":\"a\",\"transport\":\"pci\"}",
        "{\"name\":\"a\",\"transport\":[]}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"backend\":{\"type\":\"null\",\"size\":512}"
        "}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"rel.sock\"}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"/elsewhere/a.sock\"}",
        "{\"name\":\"a\",\"transport\":\"vduse\",\"socket\":\"%s/a.sock\"}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/../a.sock\"}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/a\\u0001.sock\"}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/a\\u0000.sock\"}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "a"
        "aaaaaaaaaaaaaaaaaaaa.sock\"}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/a.sock\"}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/a.sock\",\"backend\":1}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/a.sock\",\"backend\":{}}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"tape\"}}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"memory\"}}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"memory\",\"size\":1000}}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"memory\",\"size\":-512}}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"memory\",\"size\":\"12Q\"}}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"memory\",\"size\":\"99999999999T\"}}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"memory\",\"size\":1.5}}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"memory\",\"size\":\"1M\",\"path\":\"/x\"}}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"file\"}}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"file\",\"path\":\"/etc/passwd\"}}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"file\",\"path\":\"%s/img\",\"engine\":\"magic\"}}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"file\",\"path\":\"%s/img\",\"direct\":\"yes\"}}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"null\",\"size\":\"1M\"},\"queues\":0}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"null\",\"size\":\"1M\"},\"queues\":65}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"null\",\"size\":\"1M\"},\"queues\":\"2\"}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"null\",\"size\":\"1M\"},\"queue_size\":0}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"null\",\"size\":\"1M\"},\"queue_size\":99999}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"null\",\"size\":\"1M\"},\"read_only\":\"yes\"}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"null\",\"size\":\"1M\"},\"serial\":\"123456789012345678901\"}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"null\",\"size\":\"1M\"},\"vduse_name\":\"x\"}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"null\",\"size\":\"1M\"},\"colour\":\"red\"}",
        "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/"
        "a.sock\",\"backend\":{\"type\":"
        "\"null\",\"size\":\"1M\"},\"packed\":1}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(p, sizeof(p), bad[i], tmpdir, tmpdir);
        json_object *r = call(d, "export_add", p);
        int code = error_code(r);
        if (code != RPC_INVALID_PARAMS && code != RPC_RESOURCE_ERROR)
            fprintf(stderr, "case %zu: %s -> %s\n", i, p, json_object_to_json_string(r));
        assert_true(code == RPC_INVALID_PARAMS || code == RPC_RESOURCE_ERROR);
        json_object_put(r);
    }
    /* A missing image is a resource error that names the file. */
    snprintf(p, sizeof(p),
             "{\"name\":\"a\",\"transport\":\"vhost-user\",\"socket\":\"%s/a.sock\","
             "\"backend\":{\"type\":\"file\",\"path\":\"%s/missing.img\"}}",
             tmpdir, tmpdir);
    expect(d, "export_add", p, RPC_RESOURCE_ERROR);
    assert_int_equal(vblkd_export_count(d), 0);
    vblkd_destroy(d);
}

static void test_export_methods(void **state)
{
    (void)state;
    struct vblkd *d = new_daemon();
    char p[1024];
    json_object *resp, *res;
    snprintf(p, sizeof(p),
             "{\"name\":\"m0\",\"transport\":\"vhost-user\",\"socket\":\"%s/m0.sock\","
             "\"backend\":{\"type\":\"memory\",\"size\":\"8M\"},\"queues\":4,\"serial\":\"ser\"}",
             tmpdir);
    res = ok(d, "export_add", p, &resp);
    assert_int_equal(get_int(res, "size"), 8 << 20);
    assert_int_equal(get_int(res, "queues"), 4);
    /* vhost-user exports offer packed rings unless told not to. */
    json_object *pk;
    assert_true(json_object_object_get_ex(res, "packed", &pk) && json_object_get_boolean(pk));
    json_object *th;
    assert_true(json_object_object_get_ex(res, "queue_threads", &th));
    assert_int_equal(json_object_array_length(th), 4);
    /* Two threads at most (--threads 2), queues spread over both. */
    int t0 = json_object_get_int(json_object_array_get_idx(th, 0));
    int t1 = json_object_get_int(json_object_array_get_idx(th, 1));
    assert_true(t0 >= 0 && t0 < 2 && t1 >= 0 && t1 < 2 && t0 != t1);
    json_object_put(resp);
    struct stat st;
    assert_int_equal(stat(strcat(strcpy(p, tmpdir), "/m0.sock"), &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);

    /* Names, sockets are unique. */
    snprintf(p, sizeof(p),
             "{\"name\":\"m0\",\"transport\":\"vhost-user\",\"socket\":\"%s/other.sock\","
             "\"backend\":{\"type\":\"null\",\"size\":\"1M\"}}",
             tmpdir);
    expect(d, "export_add", p, RPC_EXPORT_EXISTS);
    snprintf(p, sizeof(p),
             "{\"name\":\"m1\",\"transport\":\"vhost-user\",\"socket\":\"%s/m0.sock\","
             "\"backend\":{\"type\":\"null\",\"size\":\"1M\"}}",
             tmpdir);
    expect(d, "export_add", p, RPC_EXPORT_EXISTS);
    snprintf(p, sizeof(p),
             "{\"name\":\"n1\",\"transport\":\"vhost-user\",\"socket\":\"%s/n1.sock\","
             "\"backend\":{\"type\":\"null\",\"size\":4096}}",
             tmpdir);
    expect(d, "export_add", p, 0);

    res = ok(d, "export_list", NULL, &resp);
    assert_int_equal(json_object_array_length(res), 2);
    json_object_put(resp);
    expect(d, "export_list", "{\"name\":\"m0\"}", RPC_INVALID_PARAMS);

    res = ok(d, "export_get", "{\"name\":\"m0\"}", &resp);
    json_object *v;
    assert_true(json_object_object_get_ex(res, "serial", &v));
    assert_string_equal(json_object_get_string(v), "ser");
    json_object_put(resp);
    expect(d, "export_get", "{\"name\":\"zz\"}", RPC_NO_SUCH_EXPORT);
    expect(d, "export_get", "{\"name\":3}", RPC_INVALID_PARAMS);
    expect(d, "export_get", NULL, RPC_INVALID_PARAMS);

    /* Resize: grow, shrink, by string or number; bad sizes. */
    res = ok(d, "export_resize", "{\"name\":\"m0\",\"size\":\"16M\"}", &resp);
    assert_int_equal(get_int(res, "size"), 16 << 20);
    assert_int_equal(get_int(res, "old_size"), 8 << 20);
    json_object_put(resp);
    expect(d, "export_resize", "{\"name\":\"m0\",\"size\":1048576}", 0);
    expect(d, "export_resize", "{\"name\":\"m0\",\"size\":1000}", RPC_INVALID_PARAMS);
    expect(d, "export_resize", "{\"name\":\"m0\",\"size\":0}", RPC_INVALID_PARAMS);
    expect(d, "export_resize", "{\"name\":\"m0\",\"size\":-4096}", RPC_INVALID_PARAMS);
    expect(d, "export_resize", "{\"name\":\"m0\",\"size\":true}", RPC_INVALID_PARAMS);
    expect(d, "export_resize", "{\"name\":\"m0\"}", RPC_INVALID_PARAMS);
    expect(d, "export_resize", "{\"name\":\"m0\",\"size\":\"1T\"}", RPC_NOT_SUPPORTED);
    expect(d, "export_resize", "{\"name\":\"zz\",\"size\":\"1M\"}", RPC_NO_SUCH_EXPORT);
    expect(d, "export_resize", "{\"name\":\"m0\",\"size\":\"1M\",\"x\":1}", RPC_INVALID_PARAMS);
    res = ok(d, "export_get", "{\"name\":\"m0\"}", &resp);
    assert_int_equal(get_int(res, "size"), 1 << 20);
    json_object_put(resp);

    /* Read-only switch. */
    expect(d, "export_set_readonly", "{\"name\":\"m0\",\"read_only\":true}", 0);
    res = ok(d, "export_get", "{\"name\":\"m0\"}", &resp);
    assert_true(json_object_object_get_ex(res, "read_only", &v) && json_object_get_boolean(v));
    json_object_put(resp);
    expect(d, "export_set_readonly", "{\"name\":\"m0\",\"read_only\":false}", 0);
    expect(d, "export_set_readonly", "{\"name\":\"m0\"}", RPC_INVALID_PARAMS);
    expect(d, "export_set_readonly", "{\"name\":\"m0\",\"read_only\":1}", RPC_INVALID_PARAMS);

    /* Stats: every queue with the thread that serves it. */
    res = ok(d, "export_stats", "{\"name\":\"m0\"}", &resp);
    json_object *qa;
    assert_true(json_object_object_get_ex(res, "queues", &qa));
    assert_int_equal(json_object_array_length(qa), 4);
    for (size_t i = 0; i < 4; i++) {
        json_object *q = json_object_array_get_idx(qa, i);
        assert_int_equal(get_int(q, "index"), (int64_t)i);
        assert_true(get_int(q, "thread") >= 0 && get_int(q, "thread") < 2);
        assert_int_equal(get_int(q, "submitted"), 0);
    }
    json_object_put(resp);
    expect(d, "export_stats", "{\"name\":\"zz\"}", RPC_NO_SUCH_EXPORT);

    /* Server. */
    res = ok(d, "server_info", NULL, &resp);
    assert_int_equal(get_int(res, "exports"), 2);
    assert_int_equal(get_int(res, "max_threads"), 2);
    json_object_put(resp);
    res = ok(d, "server_config", NULL, &resp);
    assert_true(json_object_object_get_ex(res, "exports", &v));
    assert_int_equal(json_object_array_length(v), 2);
    json_object_put(resp);

    /* Delete. */
    expect(d, "export_del", "{\"name\":\"m0\",\"force\":\"yes\"}", RPC_INVALID_PARAMS);
    expect(d, "export_del", "{\"name\":\"m0\"}", 0);
    expect(d, "export_del", "{\"name\":\"m0\"}", RPC_NO_SUCH_EXPORT);
    assert_int_not_equal(stat(strcat(strcpy(p, tmpdir), "/m0.sock"), &st), 0);
    expect(d, "export_del", "{\"name\":\"n1\",\"force\":true}", 0);

    expect(d, "server_shutdown", "{\"now\":true}", RPC_INVALID_PARAMS);
    assert_false(vblkd_stopping(d));
    expect(d, "server_shutdown", NULL, 0);
    assert_true(vblkd_stopping(d));
    vblkd_destroy(d);
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static void test_file_exports(void **state)
{
    (void)state;
    struct vblkd *d = new_daemon();
    char img[128], p[1024];
    snprintf(img, sizeof(img), "%s/disk.img", tmpdir);
    int fd = open(img, O_CREAT | O_RDWR | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 4 << 20), 0);
    close(fd);
    snprintf(p, sizeof(p),
             "{\"name\":\"f0\",\"transport\":\"vhost-user\",\"socket\":\"%s/f0.sock\","
             "\"backend\":{\"type\":\"file\",\"path\":\"%s\",\"engine\":\"psync\"}}",
             tmpdir, img);
    expect(d, "export_add", p, 0);
    expect(d, "export_resize", "{\"name\":\"f0\",\"size\":\"8M\"}", 0);
    assert_int_equal(file_size(img), 8 << 20);
    expect(d, "export_resize", "{\"name\":\"f0\",\"size\":\"2M\"}", 0);
    assert_int_equal(file_size(img), 2 << 20);
    /* The dumped configuration records the new size. */
    json_object *resp, *res = ok(d, "server_config", NULL, &resp);
    assert_non_null(
        strstr(json_object_to_json_string_ext(res, JSON_C_TO_STRING_PLAIN), "\"size\":2097152"));
    json_object_put(resp);
    expect(d, "export_del", "{\"name\":\"f0\"}", 0);

    /* Read-only image: it stays read-only, and cannot be resized. */
    snprintf(p, sizeof(p),
             "{\"name\":\"r0\",\"transport\":\"vhost-user\",\"socket\":\"%s/r0.sock\","
             "\"backend\":{\"type\":\"file\",\"path\":\"%s\"},\"read_only\":true}",
             tmpdir, img);
    expect(d, "export_add", p, 0);
    expect(d, "export_set_readonly", "{\"name\":\"r0\",\"read_only\":false}", RPC_NOT_SUPPORTED);
    expect(d, "export_resize", "{\"name\":\"r0\",\"size\":\"4M\"}", RPC_NOT_SUPPORTED);
    assert_int_equal(file_size(img), 2 << 20);
    vblkd_destroy(d);
    unlink(img);
}

/* ---- the real socket ---- */

struct loop {
    struct vblkd *d;
    pthread_t tid;
};

static void *loop_main(void *arg)
{
    struct loop *l = arg;
    while (!vblkd_stopping(l->d))
        assert_int_equal(vblkd_run_once(l->d, 100), 0);
    return NULL;
}

static int connect_to(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void send_all(int fd, const char *s, size_t len)
{
    while (len) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        if (n <= 0)
            return; /* the daemon closed it: the caller checks why */
        s += n;
        len -= (size_t)n;
    }
}

/* Reads one response line. */
static json_object *read_line(int fd)
{
    char buf[65536];
    size_t have = 0;
    while (have < sizeof(buf) - 1) {
        ssize_t n = recv(fd, buf + have, 1, 0);
        if (n <= 0)
            return NULL;
        if (buf[have] == '\n')
            break;
        have++;
    }
    buf[have] = '\0';
    return json_tokener_parse(buf);
}

static json_object *sock_call(int fd, const char *method, const char *params)
{
    char buf[2048];
    snprintf(buf, sizeof(buf), "{\"jsonrpc\":\"2.0\",\"method\":\"%s\",\"params\":%s,\"id\":1}\n",
             method, params ? params : "{}");
    send_all(fd, buf, strlen(buf));
    json_object *r = read_line(fd);
    assert_non_null(r);
    return r;
}

static void test_socket(void **state)
{
    (void)state;
    struct loop l = {.d = new_daemon()};
    char rpc[128], p[1024];
    snprintf(rpc, sizeof(rpc), "%s/rpc.sock", tmpdir);
    assert_int_equal(vblkd_listen_rpc(l.d, rpc, 0600), 0);
    assert_int_equal(pthread_create(&l.tid, NULL, loop_main, &l), 0);

    int a = connect_to(rpc), b = connect_to(rpc);
    /* One request split over several writes, interleaved with another
     * client's. */
    const char *req = "{\"jsonrpc\":\"2.0\",\"method\":\"server_info\",\"id\":1}\n";
    send_all(a, req, 10);
    json_object *r = sock_call(b, "export_list", NULL);
    assert_int_equal(error_code(r), 0);
    json_object_put(r);
    usleep(20000);
    send_all(a, req + 10, strlen(req) - 10);
    r = read_line(a);
    assert_int_equal(error_code(r), 0);
    json_object_put(r);
    /* Two requests in one write: two answers. */
    char two[256];
    snprintf(two, sizeof(two), "%s%s", req, req);
    send_all(a, two, strlen(two));
    json_object_put(read_line(a));
    r = read_line(a);
    assert_int_equal(error_code(r), 0);
    json_object_put(r);

    /* A client that leaves in the middle of a request. */
    int c = connect_to(rpc);
    send_all(c, req, 15);
    close(c);
    /* Garbage: a parse error, then the connection is closed. */
    c = connect_to(rpc);
    send_all(c, "{]\n", 3);
    r = read_line(c);
    assert_int_equal(error_code(r), RPC_PARSE_ERROR);
    json_object_put(r);
    assert_null(read_line(c));
    close(c);
    /* A request that never ends: an error once it passes the limit. */
    c = connect_to(rpc);
    send_all(c, "{\"jsonrpc\":\"2.0\",\"method\":\"", 27);
    char *flood = malloc(VBLKD_RPC_MAX_REQUEST + 4096);
    memset(flood, 'x', VBLKD_RPC_MAX_REQUEST + 4096);
    send_all(c, flood, VBLKD_RPC_MAX_REQUEST + 4096);
    free(flood);
    r = read_line(c);
    assert_int_equal(error_code(r), RPC_INVALID_REQUEST);
    json_object_put(r);
    close(c);

    /* A vhost-user front-end on an export: export_del refuses, then forces. */
    snprintf(p, sizeof(p),
             "{\"name\":\"v0\",\"transport\":\"vhost-user\",\"socket\":\"%s/v0.sock\","
             "\"backend\":{\"type\":\"memory\",\"size\":\"4M\"},\"queues\":2}",
             tmpdir);
    r = sock_call(b, "export_add", p);
    assert_int_equal(error_code(r), 0);
    json_object_put(r);
    snprintf(p, sizeof(p), "%s/v0.sock", tmpdir);
    struct vblk_vu_client_opts co = {.queues = 2, .mem_size = 4 << 20};
    struct vblk_vu_client *vc;
    assert_int_equal(vblk_vu_client_connect(p, &co, &vc), 0);
    /* The client negotiated BACKEND_REQ only if it asked; either way the
     * resize goes through and GET_CONFIG shows it. */
    r = sock_call(b, "export_resize", "{\"name\":\"v0\",\"size\":\"8M\"}");
    assert_int_equal(error_code(r), 0);
    json_object_put(r);
    struct vblk_config cfg;
    assert_int_equal(vblk_vu_client_config(vc, &cfg), 0);
    assert_int_equal(cfg.capacity, (8 << 20) / 512);
    r = sock_call(b, "export_get", "{\"name\":\"v0\"}");
    assert_non_null(
        strstr(json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN), "\"attached\":true"));
    json_object_put(r);
    r = sock_call(b, "export_del", "{\"name\":\"v0\"}");
    assert_int_equal(error_code(r), RPC_EXPORT_BUSY);
    json_object_put(r);
    r = sock_call(a, "export_del", "{\"name\":\"v0\",\"force\":true}");
    assert_int_equal(error_code(r), 0);
    assert_non_null(
        strstr(json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN), "\"disconnected\":true"));
    json_object_put(r);
    vblk_vu_client_close(vc);

    r = sock_call(a, "server_shutdown", NULL);
    assert_int_equal(error_code(r), 0);
    json_object_put(r);
    assert_int_equal(pthread_join(l.tid, NULL), 0);
    close(a);
    close(b);
    vblkd_destroy(l.d);
    struct stat st;
    assert_int_not_equal(stat(rpc, &st), 0); /* the socket is removed */
}

/* I/O on two queues while the control thread shrinks and grows the disk
 * and reads the counters: every request ends OK or, past the end of a
 * shrunk disk, with IOERR; nothing else (and nothing for ThreadSanitizer
 * to report). */
struct io_thread {
    struct vblk_vu_client *c;
    uint16_t q;
    struct vblk_drv_blk_frame *fr; /* allocated before the thread starts */
    uint8_t *buf;
    atomic_bool stop;
    unsigned ok, ioerr, other;
};

static uint8_t one_io(struct vblk_vu_client *c, uint16_t q, struct vblk_drv_blk_frame *fr,
                      uint32_t type, uint64_t sector, void *buf, size_t len)
{
    struct vblk_iov iov = {buf, len};
    struct vblk_drv_vq *vq = vblk_vu_client_queue(c, q);
    fr->status = 0xff;
    if (vblk_drv_blk_add(vq, fr, type, sector, &iov, 1, fr, false) != 0)
        return 0xfe;
    (void)vblk_vu_client_kick(c, q);
    void *tok = NULL;
    uint32_t used;
    for (int i = 0; i < 500; i++) {
        if (vblk_drv_vq_get_used(vq, &tok, &used) == 1)
            return fr->status;
        (void)vblk_vu_client_wait(c, q, 10);
    }
    return 0xfd;
}

static void *io_main(void *arg)
{
    struct io_thread *t = arg;
    struct vblk_drv_blk_frame *fr = t->fr;
    uint8_t *buf = t->buf;
    unsigned seed = t->q + 1;
    while (!atomic_load(&t->stop)) {
        /* Anywhere in the largest size (8 MiB), often near its end; each
         * queue on its own 4 KiB blocks (even or odd), since two requests
         * racing on the same bytes of a RAM disk have no defined result. */
        uint64_t block =
            (rand_r(&seed) % 2) ? 2047 - (rand_r(&seed) % 32) * 2 : (rand_r(&seed) % 1023) * 2;
        uint64_t sector = (block - block % 2 + t->q) * 8;
        uint32_t type = rand_r(&seed) % 2 ? VBLK_T_OUT : VBLK_T_IN;
        uint8_t st = one_io(t->c, t->q, fr, type, sector, buf, 4096);
        if (st == VBLK_S_OK)
            t->ok++;
        else if (st == VBLK_S_IOERR)
            t->ioerr++;
        else
            t->other++;
    }
    return NULL;
}

static void test_resize_under_io(void **state)
{
    (void)state;
    struct loop l = {.d = new_daemon()};
    char rpc[128], p[1024];
    snprintf(rpc, sizeof(rpc), "%s/rpc-io.sock", tmpdir);
    assert_int_equal(vblkd_listen_rpc(l.d, rpc, 0600), 0);
    assert_int_equal(pthread_create(&l.tid, NULL, loop_main, &l), 0);
    int a = connect_to(rpc);
    snprintf(p, sizeof(p),
             "{\"name\":\"io\",\"transport\":\"vhost-user\",\"socket\":\"%s/io.sock\","
             "\"backend\":{\"type\":\"memory\",\"size\":\"8M\"},\"queues\":2}",
             tmpdir);
    json_object *r = sock_call(a, "export_add", p);
    assert_int_equal(error_code(r), 0);
    json_object_put(r);
    snprintf(p, sizeof(p), "%s/io.sock", tmpdir);
    struct vblk_vu_client_opts co = {.queues = 2, .mem_size = 4 << 20};
    struct vblk_vu_client *vc;
    assert_int_equal(vblk_vu_client_connect(p, &co, &vc), 0);
    struct io_thread t[2] = {{.c = vc, .q = 0}, {.c = vc, .q = 1}};
    pthread_t tid[2];
    for (int i = 0; i < 2; i++) {
        /* The client's allocator is not thread-safe: allocate here. */
        t[i].fr = vblk_vu_client_alloc(vc, sizeof(*t[i].fr));
        t[i].buf = vblk_vu_client_alloc(vc, 4096);
        assert_non_null(t[i].fr);
        assert_non_null(t[i].buf);
        atomic_init(&t[i].stop, false);
        assert_int_equal(pthread_create(&tid[i], NULL, io_main, &t[i]), 0);
    }
    for (int i = 0; i < 20; i++) {
        r = sock_call(a, "export_resize",
                      i % 2 ? "{\"name\":\"io\",\"size\":\"8M\"}"
                            : "{\"name\":\"io\",\"size\":\"4M\"}");
        assert_int_equal(error_code(r), 0);
        json_object_put(r);
        r = sock_call(a, "export_stats", "{\"name\":\"io\"}");
        assert_int_equal(error_code(r), 0);
        json_object_put(r);
        usleep(20000);
    }
    for (int i = 0; i < 2; i++) {
        atomic_store(&t[i].stop, true);
        assert_int_equal(pthread_join(tid[i], NULL), 0);
        fprintf(stderr, "queue %d: %u ok, %u IOERR, %u other\n", i, t[i].ok, t[i].ioerr,
                t[i].other);
        assert_int_equal(t[i].other, 0);
        assert_true(t[i].ok > 0);
    }
    /* Shrunk: past the end fails, before it works. */
    r = sock_call(a, "export_resize", "{\"name\":\"io\",\"size\":\"4M\"}");
    json_object_put(r);
    struct vblk_drv_blk_frame *fr = vblk_vu_client_alloc(vc, sizeof(*fr));
    uint8_t *buf = vblk_vu_client_alloc(vc, 4096);
    assert_int_equal(one_io(vc, 0, fr, VBLK_T_OUT, 8192, buf, 4096), VBLK_S_IOERR);
    /* Each queue its own frame: the devices' threads write status bytes. */
    fr = vblk_vu_client_alloc(vc, sizeof(*fr));
    assert_int_equal(one_io(vc, 1, fr, VBLK_T_OUT, 8192 - 8, buf, 4096), VBLK_S_OK);
    vblk_vu_client_close(vc);
    r = sock_call(a, "server_shutdown", NULL);
    json_object_put(r);
    assert_int_equal(pthread_join(l.tid, NULL), 0);
    close(a);
    vblkd_destroy(l.d);
}

/* One worker for two exports; the front-end of the first makes its call
 * eventfd blocking again and saturates it, so the worker blocks when it
 * signals a completion. Deleting the second export (which waits for that
 * worker) must still finish: the waiting control thread runs the watchdog,
 * which releases the write. The first export's queue is broken, the
 * daemon goes on. */
static void test_stuck_worker(void **state)
{
    (void)state;
    struct vblkd_opts o = {.threads = 1, .path_prefix = tmpdir, .log_level = VBLK_LOG_ERR};
    struct loop l;
    assert_int_equal(vblkd_create(&o, &l.d), 0);
    char rpc[128], p[1024];
    snprintf(rpc, sizeof(rpc), "%s/rpc-stuck.sock", tmpdir);
    assert_int_equal(vblkd_listen_rpc(l.d, rpc, 0600), 0);
    assert_int_equal(pthread_create(&l.tid, NULL, loop_main, &l), 0);
    int a = connect_to(rpc);
    struct timeval tv = {.tv_sec = 20};
    assert_int_equal(setsockopt(a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof(p),
                 "{\"name\":\"s%d\",\"transport\":\"vhost-user\",\"socket\":\"%s/s%d.sock\","
                 "\"backend\":{\"type\":\"memory\",\"size\":\"1M\"}}",
                 i, tmpdir, i);
        json_object *r = sock_call(a, "export_add", p);
        assert_int_equal(error_code(r), 0);
        json_object_put(r);
    }
    snprintf(p, sizeof(p), "%s/s0.sock", tmpdir);
    struct vblk_vu_client_opts co = {.queues = 1, .mem_size = 1 << 20};
    struct vblk_vu_client *vc;
    assert_int_equal(vblk_vu_client_connect(p, &co, &vc), 0);
    int call = vblk_vu_client_call_fd(vc, 0);
    int fl = fcntl(call, F_GETFL);
    assert_int_equal(fcntl(call, F_SETFL, fl & ~O_NONBLOCK), 0);
    uint64_t full = 0xfffffffffffffffeull;
    assert_int_equal(write(call, &full, sizeof(full)), (ssize_t)sizeof(full));
    struct vblk_drv_blk_frame *fr = vblk_vu_client_alloc(vc, sizeof(*fr));
    uint8_t *buf = vblk_vu_client_alloc(vc, 4096);
    struct vblk_iov iov = {buf, 4096};
    /* Ask for an interrupt: the device will write to the call eventfd. */
    (void)vblk_drv_vq_enable_cb(vblk_vu_client_queue(vc, 0), true);
    assert_int_equal(
        vblk_drv_blk_add(vblk_vu_client_queue(vc, 0), fr, VBLK_T_IN, 0, &iov, 1, fr, false), 0);
    (void)vblk_vu_client_kick(vc, 0);
    usleep(100000); /* the worker is now blocked on the call eventfd */
    json_object *r = sock_call(a, "export_del", "{\"name\":\"s1\"}");
    assert_int_equal(error_code(r), 0);
    json_object_put(r);
    r = sock_call(a, "export_stats", "{\"name\":\"s0\"}");
    assert_int_equal(error_code(r), 0);
    json_object_put(r);
    /* Let the counter go, so that closing the client does not block. */
    uint64_t v;
    (void)read(call, &v, sizeof(v));
    vblk_vu_client_close(vc);
    r = sock_call(a, "server_shutdown", NULL);
    json_object_put(r);
    assert_int_equal(pthread_join(l.tid, NULL), 0);
    close(a);
    vblkd_destroy(l.d);
}

/* ---- configuration ---- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_config(void **state)
{
    (void)state;
    struct vblkd *d = new_daemon();
    char p[1024], cfg[128];
    snprintf(cfg, sizeof(cfg), "%s/vblkd.json", tmpdir);
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof(p),
                 "{\"name\":\"c%d\",\"transport\":\"vhost-user\",\"socket\":\"%s/c%d.sock\","
                 "\"backend\":{\"type\":\"%s\",\"size\":\"2M\"},\"queues\":%d%s}",
                 i, tmpdir, i, i ? "memory" : "null", i + 1, i == 1 ? ",\"packed\":false" : "");
        expect(d, "export_add", p, 0);
    }
    expect(d, "export_resize", "{\"name\":\"c2\",\"size\":\"3M\"}", 0);
    json_object *dump = vblkd_dump_config(d);
    char *text = strdup(json_object_to_json_string(dump));
    vblkd_destroy(d);
    /* The ring choice is part of the configuration. */
    assert_non_null(strstr(text, "\"packed\": false"));
    assert_non_null(strstr(text, "\"packed\": true"));

    write_file(cfg, text);
    d = new_daemon();
    struct vblkd_error e;
    assert_int_equal(vblkd_load_config(d, cfg, &e), 0);
    assert_int_equal(vblkd_export_count(d), 3);
    json_object *again = vblkd_dump_config(d);
    assert_string_equal(json_object_to_json_string(again), text);
    json_object_put(again);
    json_object_put(dump);
    free(text);
    /* Loading it twice: the names clash, and the message says where. */
    assert_int_equal(vblkd_load_config(d, cfg, &e), -1);
    assert_int_equal(e.code, RPC_EXPORT_EXISTS);
    assert_non_null(strstr(e.msg, "exports[0]"));
    vblkd_destroy(d);

    static const char *const bad[] = {
        "",
        "[]",
        "{\"exports\":{}}",
        "{\"exports\":[1]}",
        "{\"exports\":[],\"x\":1}",
        "{\"exports\":[{\"name\":\"a\"}]}",
        "{\"exports\":[",
        "not json",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_file(cfg, bad[i]);
        d = new_daemon();
        assert_int_equal(vblkd_load_config(d, cfg, &e), -1);
        assert_true(strlen(e.msg) > 10);
        vblkd_destroy(d);
    }
    d = new_daemon();
    assert_int_equal(vblkd_load_config(d, "/nonexistent/vblkd.json", &e), -1);
    assert_non_null(strstr(e.msg, "/nonexistent/vblkd.json"));
    vblkd_destroy(d);
    unlink(cfg);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/vblkd-test.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_request_shape),
        cmocka_unit_test(test_export_add_params),
        cmocka_unit_test(test_export_methods),
        cmocka_unit_test(test_file_exports),
        cmocka_unit_test(test_socket),
        cmocka_unit_test(test_resize_under_io),
        cmocka_unit_test(test_stuck_worker),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
