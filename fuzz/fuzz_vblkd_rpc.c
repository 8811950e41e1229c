/* SPDX-License-Identifier: MIT */
/*
 * vblkd's JSON-RPC layer: the input is the text of one request (or batch)
 * as a client would send it. The daemon is real (exports are created,
 * resized and deleted with null and memory backends and vhost-user
 * sockets in a scratch directory it may not leave: "/FUZZDIR" in the input
 * stands for it); VDUSE is refused.
 * Checked besides memory safety: every answer is a JSON-RPC 2.0 response
 * (or batch of them) with exactly one of result and error, an error code
 * vblkd defines and a message; after each input every export can be
 * deleted and nothing is left in the scratch directory.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vblkd.h"

static struct vblkd *d;
static char dir[64];

static void check_response(json_object *r)
{
    json_object *v, *res, *err;
    if (!json_object_is_type(r, json_type_object) || !json_object_object_get_ex(r, "jsonrpc", &v) ||
        strcmp(json_object_get_string(v), "2.0") != 0 || !json_object_object_get_ex(r, "id", &v))
        abort();
    bool has_res = json_object_object_get_ex(r, "result", &res);
    bool has_err = json_object_object_get_ex(r, "error", &err);
    if (has_res == has_err)
        abort();
    if (has_err) {
        json_object *code, *msg;
        if (!json_object_object_get_ex(err, "code", &code) ||
            !json_object_object_get_ex(err, "message", &msg) ||
            json_object_get_string_len(msg) == 0)
            abort();
        int c = json_object_get_int(code);
        if (!(c >= -32700 && c <= -32600) && !(c >= -32099 && c <= -32000))
            abort();
    }
}

static void teardown(void)
{
    struct vblkd_error e;
    while (vblkd_exports(d))
        if (export_delete(d, vblkd_exports(d), true, &e) < 0)
            abort();
    /* Every socket went with its export. */
    DIR *dp = opendir(dir);
    struct dirent *de;
    while ((de = readdir(dp)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            abort();
    closedir(dp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!d) {
        snprintf(dir, sizeof(dir), "/tmp/vblkd-fuzz.XXXXXX");
        if (!mkdtemp(dir))
            abort();
        struct vblkd_opts o = {.threads = 1,
                               .path_prefix = dir,
                               .log_level = -1,
                               .no_vduse = true,
                               .no_network_backends = true};
        if (vblkd_create(&o, &d) < 0)
            abort();
    }
    /* "/FUZZDIR" becomes the scratch directory, so that inputs can name
     * paths the daemon accepts. */
    static const char mark[] = "/FUZZDIR";
    size_t ml = sizeof(mark) - 1, dl = strlen(dir);
    char *text = malloc(size * (dl / ml + 1) + 1);
    size_t n = 0;
    for (size_t i = 0; i < size;) {
        if (size - i >= ml && memcmp(data + i, mark, ml) == 0) {
            memcpy(text + n, dir, dl);
            n += dl;
            i += ml;
        } else {
            text[n++] = (char)data[i++];
        }
    }
    char *resp = vblkd_rpc_handle(d, text, n);
    free(text);
    if (resp) {
        json_object *r = json_tokener_parse(resp);
        if (!r)
            abort();
        if (json_object_is_type(r, json_type_array)) {
            if (json_object_array_length(r) == 0)
                abort();
            for (size_t i = 0; i < json_object_array_length(r); i++)
                check_response(json_object_array_get_idx(r, i));
        } else {
            check_response(r);
        }
        json_object_put(r);
        free(resp);
    }
    teardown();
    return 0;
}
