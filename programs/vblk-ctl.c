/* SPDX-License-Identifier: MIT */
/*
 * vblk-ctl: the command-line client of vblkd's JSON-RPC socket.
 *
 *   vblk-ctl add vhost-user disk0 --socket /run/disk0.sock --image /var/lib/disk0.img --queues 4
 *   vblk-ctl list
 *   vblk-ctl resize disk0 20G
 *   vblk-ctl stats disk0
 *   vblk-ctl del disk0
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"

#define PROG         "vblk-ctl"
#define DEFAULT_RPC  "/run/vblkd.sock"
#define MAX_RESPONSE (64u << 20)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " PROG " [--rpc PATH] [--json] COMMAND [ARGS]\n"
            "\n"
            "Talks to vblkd over its JSON-RPC socket (default: $VBLKD_RPC, else " DEFAULT_RPC ").\n"
            "\n"
            "Commands:\n"
            "  add vhost-user NAME --socket PATH BACKEND [OPTIONS]\n"
            "  add vduse NAME [--vduse-name NAME] BACKEND [OPTIONS]\n"
            "      BACKEND: --image FILE [--engine auto|io_uring|psync] [--direct]\n"
            "               | --memory SIZE | --null SIZE | --nbd URI\n"
            "               --zoned zone-size=SIZE[,conv=N][,max-open=N][,max-active=N]\n"
            "                 [,model=host-aware]: emulated zones over --image or --memory\n"
            "               | --rbd [POOL/[NAMESPACE/]]IMAGE[@SNAPSHOT]\n"
            "      OPTIONS: --queues N  --queue-size N  --read-only  --serial STRING\n"
            "               --packed | --no-packed (default: vhost-user packed, vduse split)\n"
            "  del NAME [--force]      delete (--force: even with a front-end attached)\n"
            "  list                    every export\n"
            "  show NAME               one export\n"
            "  resize NAME [SIZE]      change the capacity (e.g. 20G); the driver is told\n"
            "                          (without SIZE: an nbd or rbd export adopts the size\n"
            "                          its server reports now)\n"
            "  stats NAME              counters, per queue with its worker thread\n"
            "  readonly NAME on|off    refuse writes, or allow them again\n"
            "  info                    the daemon\n"
            "  dump-config             the running configuration (vblkd --config format)\n"
            "  shutdown                stop the daemon\n"
            "  call METHOD [PARAMS]    any method, PARAMS a JSON object\n"
            "\n"
            "  --json                  print the JSON result instead of a table\n"
            "Sizes take K, M, G, T suffixes (powers of 1024).\n");
}

static int die_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, PROG ": ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see " PROG " --help)\n");
    return 2;
}

/* Sends one request and reads one response line. */
static json_object *rpc(const char *path, const char *method, json_object *params)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, PROG ": socket path %s is too long\n", path);
        return NULL;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, PROG ": cannot connect to vblkd at %s: %s%s\n", path, strerror(errno),
                errno == ENOENT || errno == ECONNREFUSED
                    ? " (is vblkd running? pass --rpc PATH or set VBLKD_RPC)"
                    : "");
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    json_object *req = json_object_new_object();
    json_object_object_add(req, "jsonrpc", json_object_new_string("2.0"));
    json_object_object_add(req, "method", json_object_new_string(method));
    if (params)
        json_object_object_add(req, "params", params);
    json_object_object_add(req, "id", json_object_new_int(1));
    const char *text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = send(fd, text + off, len - off, MSG_NOSIGNAL);
        if (n <= 0) {
            fprintf(stderr, PROG ": cannot send to vblkd: %s\n", strerror(errno));
            json_object_put(req);
            close(fd);
            return NULL;
        }
        off += (size_t)n;
    }
    (void)send(fd, "\n", 1, MSG_NOSIGNAL);
    json_object_put(req);
    json_tokener *tok = json_tokener_new();
    json_object *resp = NULL;
    size_t total = 0;
    for (;;) {
        char buf[65536];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, PROG ": vblkd closed the connection without an answer\n");
            break;
        }
        total += (size_t)n;
        resp = json_tokener_parse_ex(tok, buf, (int)n);
        enum json_tokener_error err = json_tokener_get_error(tok);
        if (err == json_tokener_success)
            break;
        if (err != json_tokener_continue || total > MAX_RESPONSE) {
            fprintf(stderr, PROG ": bad answer from vblkd: %s\n", json_tokener_error_desc(err));
            break;
        }
    }
    json_tokener_free(tok);
    close(fd);
    return resp;
}

/* The result of @resp, or NULL after printing its error. */
static json_object *result_of(json_object *resp, int *code)
{
    json_object *r, *err;
    *code = 0;
    if (json_object_object_get_ex(resp, "error", &err)) {
        json_object *m, *c;
        json_object_object_get_ex(err, "message", &m);
        json_object_object_get_ex(err, "code", &c);
        *code = json_object_get_int(c);
        fprintf(stderr, PROG ": error: %s (code %d)\n", json_object_get_string(m), *code);
        return NULL;
    }
    if (!json_object_object_get_ex(resp, "result", &r)) {
        fprintf(stderr, PROG ": vblkd's answer has neither a result nor an error\n");
        return NULL;
    }
    return r;
}

static const char *str(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && v ? json_object_get_string(v) : "-";
}

static int64_t num(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static bool flag(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

static const char *backend_desc(json_object *x, char *buf, size_t len)
{
    json_object *be;
    if (!json_object_object_get_ex(x, "backend", &be))
        return "-";
    const char *type = str(be, "type");
    json_object *p;
    if (json_object_object_get_ex(be, "path", &p))
        snprintf(buf, len, "%s:%s", type, json_object_get_string(p));
    else
        snprintf(buf, len, "%s", type);
    return buf;
}

static void print_list(json_object *a)
{
    printf("%-16s %-10s %-32s %-24s %8s %6s %3s %8s\n", "NAME", "TRANSPORT", "ENDPOINT", "BACKEND",
           "SIZE", "QUEUES", "RO", "ATTACHED");
    for (size_t i = 0; i < json_object_array_length(a); i++) {
        json_object *x = json_object_array_get_idx(a, i);
        char sz[32], be[256];
        const char *ep =
            strcmp(str(x, "transport"), "vduse") == 0 ? str(x, "vduse_name") : str(x, "socket");
        printf("%-16s %-10s %-32s %-24s %8s %6" PRId64 " %3s %8s\n", str(x, "name"),
               str(x, "transport"), ep, backend_desc(x, be, sizeof(be)),
               cli_size_arg((uint64_t)num(x, "size"), sz, sizeof(sz)), num(x, "queues"),
               flag(x, "read_only") ? "yes" : "no", flag(x, "attached") ? "yes" : "no");
    }
}

static void print_export(json_object *x)
{
    char sz[32], be[256];
    printf("name:       %s\n", str(x, "name"));
    printf("transport:  %s\n", str(x, "transport"));
    if (strcmp(str(x, "transport"), "vduse") == 0)
        printf("vduse name: %s\n", str(x, "vduse_name"));
    else
        printf("socket:     %s\n", str(x, "socket"));
    printf("backend:    %s\n", backend_desc(x, be, sizeof(be)));
    printf("size:       %s (%" PRId64 " bytes)\n",
           cli_size_arg((uint64_t)num(x, "size"), sz, sizeof(sz)), num(x, "size"));
    printf("queues:     %" PRId64 " of up to %" PRId64 " entries, threads", num(x, "queues"),
           num(x, "queue_size"));
    json_object *th;
    if (json_object_object_get_ex(x, "queue_threads", &th))
        for (size_t i = 0; i < json_object_array_length(th); i++)
            printf(" %d", json_object_get_int(json_object_array_get_idx(th, i)));
    printf("\nread-only:  %s\nserial:     %s\nattached:   %s\n",
           flag(x, "read_only") ? "yes" : "no", str(x, "serial"),
           flag(x, "attached") ? "yes" : "no");
}

static void print_stats(json_object *s)
{
    char sz[32];
    printf("%s: %s, front-end %s\n", str(s, "name"),
           cli_size_arg((uint64_t)num(s, "size"), sz, sizeof(sz)),
           flag(s, "attached") ? "attached" : "not attached");
    printf("%5s %6s %12s %12s %8s %8s %8s %10s %10s %6s\n", "QUEUE", "THREAD", "SUBMITTED",
           "COMPLETED", "INFLIGHT", "IOERR", "UNSUPP", "KICKS", "NOTIFIES", "BROKEN");
    json_object *qa, *tot, *dev;
    if (json_object_object_get_ex(s, "queues", &qa))
        for (size_t i = 0; i < json_object_array_length(qa); i++) {
            json_object *q = json_object_array_get_idx(qa, i);
            printf("%5" PRId64 " %6" PRId64 " %12" PRId64 " %12" PRId64 " %8" PRId64 " %8" PRId64
                   " %8" PRId64 " %10" PRId64 " %10" PRId64 " %6" PRId64 "\n",
                   num(q, "index"), num(q, "thread"), num(q, "submitted"), num(q, "completed"),
                   num(q, "in_flight"), num(q, "ioerr"), num(q, "unsupp"), num(q, "kicks"),
                   num(q, "notifies"), num(q, "broken"));
        }
    if (json_object_object_get_ex(s, "totals", &tot))
        printf("%5s %6s %12" PRId64 " %12" PRId64 " %8s %8" PRId64 " %8" PRId64 " %10" PRId64
               " %10" PRId64 "\n",
               "all", "", num(tot, "submitted"), num(tot, "completed"), "", num(tot, "ioerr"),
               num(tot, "unsupp"), num(tot, "kicks"), num(tot, "notifies"));
    if (json_object_object_get_ex(s, "queues", &qa) && json_object_array_length(qa) > 0) {
        printf("%5s %10s %10s %9s %8s %8s %8s %8s\n", "QUEUE", "READ", "WRITTEN", "MEAN(us)", "P50",
               "P90", "P99", "P99.9");
        for (size_t i = 0; i < json_object_array_length(qa); i++) {
            json_object *q = json_object_array_get_idx(qa, i), *b, *l, *mean;
            char rd[32], wr[32];
            if (!json_object_object_get_ex(q, "bytes", &b) ||
                !json_object_object_get_ex(q, "latency_us", &l))
                continue;
            json_object_object_get_ex(l, "mean", &mean);
            printf("%5" PRId64 " %10s %10s %9.1f %8" PRId64 " %8" PRId64 " %8" PRId64 " %8" PRId64
                   "\n",
                   num(q, "index"), cli_size_arg((uint64_t)num(b, "read"), rd, sizeof(rd)),
                   cli_size_arg((uint64_t)num(b, "write"), wr, sizeof(wr)),
                   json_object_get_double(mean), num(l, "p50"), num(l, "p90"), num(l, "p99"),
                   num(l, "p999"));
        }
    }
    if (json_object_object_get_ex(s, "device", &dev))
        printf("device: %" PRId64 " connection(s), %" PRId64 " message(s), %" PRId64
               " refused, %" PRId64 " reset(s), %" PRId64 " broken queue(s)\n",
               num(dev, "connections"), num(dev, "messages"), num(dev, "failed"),
               num(dev, "resets"), num(dev, "broken_queues"));
}

/* A size argument as the daemon reads it: digits, or digits and a suffix. */
static json_object *size_arg(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s >= '0' && *s <= '9' && !errno && *end == '\0' && v <= INT64_MAX)
        return json_object_new_int64((int64_t)v);
    return json_object_new_string(s);
}

/* add TRANSPORT NAME [options]: builds export_add's parameters. */
static int build_add(int argc, char **argv, json_object **out)
{
    if (argc < 2)
        return die_usage("add needs a transport and a name%s", "");
    json_object *p = json_object_new_object();
    json_object *be = NULL;
    json_object_object_add(p, "name", json_object_new_string(argv[1]));
    json_object_object_add(p, "transport", json_object_new_string(argv[0]));
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;
        if (strcmp(o, "--read-only") == 0) {
            json_object_object_add(p, "read_only", json_object_new_boolean(true));
            takes = false;
        } else if (strcmp(o, "--packed") == 0 || strcmp(o, "--no-packed") == 0) {
            json_object_object_add(p, "packed", json_object_new_boolean(o[2] == 'p'));
            takes = false;
        } else if (strcmp(o, "--direct") == 0) {
            if (!be)
                be = json_object_new_object();
            json_object_object_add(be, "direct", json_object_new_boolean(true));
            takes = false;
        } else if (!v) {
            json_object_put(p);
            json_object_put(be);
            return die_usage("%s needs a value", o);
        } else if (strcmp(o, "--socket") == 0) {
            json_object_object_add(p, "socket", json_object_new_string(v));
        } else if (strcmp(o, "--vduse-name") == 0) {
            json_object_object_add(p, "vduse_name", json_object_new_string(v));
        } else if (strcmp(o, "--serial") == 0) {
            json_object_object_add(p, "serial", json_object_new_string(v));
        } else if (strcmp(o, "--queues") == 0 || strcmp(o, "--queue-size") == 0) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || n <= 0 || n > 65535) {
                json_object_put(p);
                json_object_put(be);
                return die_usage("%s needs a positive number", o);
            }
            json_object_object_add(p, o[7] == '-' ? "queue_size" : "queues",
                                   json_object_new_int((int)n));
        } else if (strcmp(o, "--image") == 0 || strcmp(o, "--memory") == 0 ||
                   strcmp(o, "--null") == 0) {
            if (!be)
                be = json_object_new_object();
            if (o[2] == 'i') {
                json_object_object_add(be, "type", json_object_new_string("file"));
                if (v[0] == '/') {
                    json_object_object_add(be, "path", json_object_new_string(v));
                } else {
                    /* The daemon wants absolute paths; resolve relative ones here. */
                    char *abs = realpath(v, NULL);
                    json_object_object_add(be, "path", json_object_new_string(abs ? abs : v));
                    free(abs);
                }
            } else {
                json_object_object_add(be, "type", json_object_new_string(o + 2));
                json_object_object_add(be, "size", size_arg(v));
            }
        } else if (strcmp(o, "--nbd") == 0) {
            if (!be)
                be = json_object_new_object();
            json_object_object_add(be, "type", json_object_new_string("nbd"));
            json_object_object_add(be, "uri", json_object_new_string(v));
        } else if (strcmp(o, "--rbd") == 0) {
            /* The rbd tool's spec: [POOL/[NAMESPACE/]]IMAGE[@SNAPSHOT]. */
            if (!be)
                be = json_object_new_object();
            json_object_object_add(be, "type", json_object_new_string("rbd"));
            char spec[1024];
            snprintf(spec, sizeof(spec), "%s", v);
            char *snap = strchr(spec, '@');
            if (snap) {
                *snap++ = '\0';
                json_object_object_add(be, "snapshot", json_object_new_string(snap));
            }
            char *parts[3] = {NULL, NULL, NULL};
            int n = 0;
            for (char *t = strtok(spec, "/"); t && n < 3; t = strtok(NULL, "/"))
                parts[n++] = t;
            static const char *const keys[3][3] = {
                {"image", NULL, NULL}, {"pool", "image", NULL}, {"pool", "namespace", "image"}};
            for (int k = 0; k < n; k++)
                json_object_object_add(be, keys[n - 1][k], json_object_new_string(parts[k]));
        } else if (strcmp(o, "--zoned") == 0) {
            /* The programs' --zoned SPEC: zone-size=SIZE[,conv=N][,max-open=N]
             * [,max-active=N][,model=host-managed|host-aware]. */
            if (!be)
                be = json_object_new_object();
            json_object *z = json_object_new_object();
            char spec[512];
            snprintf(spec, sizeof(spec), "%s", v);
            for (char *t = strtok(spec, ","); t; t = strtok(NULL, ",")) {
                char *eq = strchr(t, '=');
                if (!eq) {
                    json_object_put(z);
                    json_object_put(p);
                    json_object_put(be);
                    return die_usage("--zoned: expected KEY=VALUE items, got '%s'", t);
                }
                *eq++ = '\0';
                static const char *const names[][2] = {{"zone-size", "zone_size"},
                                                       {"conv", "conv"},
                                                       {"max-open", "max_open"},
                                                       {"max-active", "max_active"},
                                                       {"model", "model"}};
                size_t k = 0;
                while (k < 5 && strcmp(t, names[k][0]) != 0)
                    k++;
                if (k == 5) {
                    json_object_put(z);
                    json_object_put(p);
                    json_object_put(be);
                    return die_usage("--zoned: unknown key '%s'", t);
                }
                if (k == 0)
                    json_object_object_add(z, names[k][1], size_arg(eq));
                else if (k == 4)
                    json_object_object_add(z, names[k][1], json_object_new_string(eq));
                else {
                    char *end;
                    long long n = strtoll(eq, &end, 10);
                    if (!*eq || *end || n < 0) {
                        json_object_put(z);
                        json_object_put(p);
                        json_object_put(be);
                        return die_usage("--zoned: %s needs a number of zones", t);
                    }
                    json_object_object_add(z, names[k][1], json_object_new_int64(n));
                }
            }
            json_object_object_add(be, "zoned", z);
        } else if (strcmp(o, "--engine") == 0) {
            if (!be)
                be = json_object_new_object();
            json_object_object_add(be, "engine", json_object_new_string(v));
        } else {
            json_object_put(p);
            json_object_put(be);
            return die_usage("add: unknown option '%s'", o);
        }
        if (takes)
            i++;
    }
    if (be)
        json_object_object_add(p, "backend", be);
    *out = p;
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = getenv("VBLKD_RPC");
    bool as_json = false;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            as_json = true;
        } else if (strcmp(argv[i], "--rpc") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            return die_usage("unknown option '%s'", argv[i]);
        }
    }
    if (!path || !*path)
        path = DEFAULT_RPC;
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[i++];
    int nargs = argc - i;
    char **args = argv + i;
    const char *method = NULL;
    json_object *params = NULL;
    enum { OUT_OK, OUT_LIST, OUT_EXPORT, OUT_STATS, OUT_RESIZE, OUT_JSON } out = OUT_OK;

    if (strcmp(cmd, "add") == 0) {
        int rc = build_add(nargs, args, &params);
        if (rc)
            return rc;
        method = "export_add";
        out = OUT_EXPORT;
    } else if (strcmp(cmd, "del") == 0 || strcmp(cmd, "show") == 0 || strcmp(cmd, "stats") == 0) {
        bool force = nargs == 2 && strcmp(args[1], "--force") == 0 && cmd[0] == 'd';
        if (nargs != 1 && !force)
            return die_usage("%s takes an export name", cmd);
        params = json_object_new_object();
        json_object_object_add(params, "name", json_object_new_string(args[0]));
        if (force)
            json_object_object_add(params, "force", json_object_new_boolean(true));
        method = cmd[0] == 'd' ? "export_del" : cmd[1] == 'h' ? "export_get" : "export_stats";
        out = cmd[0] == 'd' ? OUT_OK : cmd[1] == 'h' ? OUT_EXPORT : OUT_STATS;
    } else if (strcmp(cmd, "resize") == 0) {
        if (nargs != 1 && nargs != 2)
            return die_usage("resize takes an export name and a size%s", "");
        params = json_object_new_object();
        json_object_object_add(params, "name", json_object_new_string(args[0]));
        if (nargs == 2) /* without: a network export adopts its server's size */
            json_object_object_add(params, "size", size_arg(args[1]));
        method = "export_resize";
        out = OUT_RESIZE;
    } else if (strcmp(cmd, "readonly") == 0) {
        if (nargs != 2 || (strcmp(args[1], "on") && strcmp(args[1], "off")))
            return die_usage("readonly takes an export name and on or off%s", "");
        params = json_object_new_object();
        json_object_object_add(params, "name", json_object_new_string(args[0]));
        json_object_object_add(params, "read_only", json_object_new_boolean(args[1][1] == 'n'));
        method = "export_set_readonly";
    } else if (strcmp(cmd, "list") == 0 || strcmp(cmd, "info") == 0 ||
               strcmp(cmd, "dump-config") == 0 || strcmp(cmd, "shutdown") == 0) {
        if (nargs != 0)
            return die_usage("%s takes no arguments", cmd);
        method = cmd[0] == 'l'   ? "export_list"
                 : cmd[0] == 'i' ? "server_info"
                 : cmd[0] == 'd' ? "server_config"
                                 : "server_shutdown";
        out = cmd[0] == 'l' ? OUT_LIST : cmd[0] == 's' ? OUT_OK : OUT_JSON;
    } else if (strcmp(cmd, "call") == 0) {
        if (nargs < 1 || nargs > 2)
            return die_usage("call takes a method and optional JSON parameters%s", "");
        method = args[0];
        if (nargs == 2) {
            params = json_tokener_parse(args[1]);
            if (!params)
                return die_usage("call: '%s' is not valid JSON", args[1]);
        }
        out = OUT_JSON;
    } else {
        return die_usage("unknown command '%s'", cmd);
    }

    json_object *resp = rpc(path, method, params);
    if (!resp)
        return 1;
    int code;
    json_object *r = result_of(resp, &code);
    if (!r) {
        json_object_put(resp);
        return 1;
    }
    if (as_json || out == OUT_JSON) {
        printf("%s\n", json_object_to_json_string_ext(r, JSON_C_TO_STRING_PRETTY |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE));
    } else if (out == OUT_LIST) {
        print_list(r);
    } else if (out == OUT_EXPORT) {
        print_export(r);
    } else if (out == OUT_STATS) {
        print_stats(r);
    } else if (out == OUT_RESIZE) {
        char a[32], b[32];
        printf("%s: %s -> %s%s\n", str(r, "name"),
               cli_size_arg((uint64_t)num(r, "old_size"), a, sizeof(a)),
               cli_size_arg((uint64_t)num(r, "size"), b, sizeof(b)),
               flag(r, "notified") ? " (driver notified)" : " (no driver to notify)");
    }
    json_object_put(resp);
    return 0;
}
