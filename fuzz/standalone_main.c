/* SPDX-License-Identifier: MIT */
/*
 * Runs a fuzz harness without libFuzzer: every file named on the command
 * line (and every regular file inside a named directory) is passed to
 * LLVMFuzzerTestOneInput() once. Used to replay corpora under gcov and to
 * reproduce a crash with an ordinary debugger.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fclose(f);
            fprintf(stderr, "%s: out of memory\n", path);
            return -1;
        }
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap)
            break;
        cap *= 2;
        uint8_t *nb = realloc(buf, cap);
        if (!nb)
            free(buf);
        buf = nb;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        fprintf(stderr, "%s: read error\n", path);
        free(buf);
        return -1;
    }
    /* An exact-size copy, so reads past the input end are caught. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int run_path(const char *path, unsigned long *count)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        (*count)++;
        return run_file(path);
    }
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort);
    if (n < 0) {
        perror(path);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char child[4096];
        if (names[i]->d_name[0] != '.' &&
            snprintf(child, sizeof(child), "%s/%s", path, names[i]->d_name) < (int)sizeof(child) &&
            stat(child, &st) == 0 && S_ISREG(st.st_mode)) {
            (*count)++;
            if (run_file(child) != 0)
                rc = -1;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    unsigned long count = 0;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        /* libFuzzer-style flags are accepted and ignored. */
        if (argv[i][0] == '-')
            continue;
        if (run_path(argv[i], &count) != 0)
            rc = 1;
    }
    fprintf(stderr, "%s: ran %lu inputs\n", argc > 0 ? argv[0] : "replay", count);
    return rc;
}
