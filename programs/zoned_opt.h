/* SPDX-License-Identifier: MIT */
/*
 * The programs' --zoned option: emulated zones over --image or --memory.
 *
 *   --zoned zone-size=SIZE[,conv=N][,max-open=N][,max-active=N]
 *           [,max-append=SIZE][,granularity=SIZE][,model=hm|ha][,meta=PATH]
 *
 * SIZEs take K/M/G suffixes (bytes; zone-size and max-append are turned
 * into sectors). Header-only: each program includes it once.
 */
#ifndef VBLK_PROGRAMS_ZONED_OPT_H
#define VBLK_PROGRAMS_ZONED_OPT_H

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "virtioblk/virtioblk.h"

#define ZONED_OPT_HELP                                                                             \
    "  --zoned SPEC         emulated zones (host-managed by default): SPEC is\n"                   \
    "                       zone-size=SIZE[,conv=N][,max-open=N][,max-active=N]\n"                 \
    "                       [,max-append=SIZE][,granularity=SIZE][,model=hm|ha][,meta=PATH];\n"    \
    "                       with --image the zone state is kept in PATH (default\n"                \
    "                       IMAGE.zones). A zoned block device as --image is passed\n"             \
    "                       through without --zoned.\n"

static int zoned_opt_size(const char *s, size_t n, uint64_t *out)
{
    char buf[32];
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 0);
    if (errno || end == buf || buf[0] == '-')
        return -1;
    unsigned shift = 0;
    switch (tolower((unsigned char)*end)) {
    case 'k':
        shift = 10;
        break;
    case 'm':
        shift = 20;
        break;
    case 'g':
        shift = 30;
        break;
    case 0:
        break;
    default:
        return -1;
    }
    if (shift)
        end++;
    if (*end || v > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

/* Parses SPEC into @o and @meta (points into @spec's copy, owned by the
 * caller through @keep). Prints what is wrong and returns -1 on error. */
static int zoned_opt_parse(const char *prog, const char *spec, struct vblk_zoned_opts *o,
                           char **meta)
{
    memset(o, 0, sizeof(*o));
    *meta = NULL;
    const char *p = spec;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (!eq) {
            fprintf(stderr, "%s: --zoned: '%.*s' is not KEY=VALUE\n", prog, (int)len, p);
            return -1;
        }
        size_t kl = (size_t)(eq - p), vl = len - kl - 1;
        const char *v = eq + 1;
        uint64_t x = 0;
#define KEY(name) (kl == sizeof(name) - 1 && !memcmp(p, name, kl))
        if (KEY("model")) {
            if (vl == 2 && !memcmp(v, "hm", 2))
                o->model = VBLK_Z_HM;
            else if (vl == 2 && !memcmp(v, "ha", 2))
                o->model = VBLK_Z_HA;
            else
                goto bad;
        } else if (KEY("meta")) {
            free(*meta);
            *meta = strndup(v, vl);
            if (!*meta || !vl)
                goto bad;
        } else if (zoned_opt_size(v, vl, &x) < 0 || x > UINT32_MAX * (uint64_t)512) {
            goto bad;
        } else if (KEY("zone-size") && x % 512 == 0) {
            o->zone_sectors = (uint32_t)(x / 512);
        } else if (KEY("max-append") && x % 512 == 0 && x / 512 <= UINT32_MAX) {
            o->max_append_sectors = (uint32_t)(x / 512);
        } else if (KEY("granularity") && x <= UINT32_MAX) {
            o->write_granularity = (uint32_t)x;
        } else if (KEY("conv") && x <= UINT32_MAX) {
            o->nr_conv = (uint32_t)x;
        } else if (KEY("max-open") && x <= UINT32_MAX) {
            o->max_open = (uint32_t)x;
        } else if (KEY("max-active") && x <= UINT32_MAX) {
            o->max_active = (uint32_t)x;
        } else {
            goto bad;
        }
#undef KEY
        p += len + (comma != NULL);
        continue;
    bad:
        fprintf(stderr, "%s: --zoned: bad '%.*s' (see --help)\n", prog, (int)len, p);
        free(*meta);
        *meta = NULL;
        return -1;
    }
    if (!o->zone_sectors) {
        fprintf(stderr, "%s: --zoned needs zone-size=SIZE\n", prog);
        free(*meta);
        *meta = NULL;
        return -1;
    }
    return 0;
}

/* Says why vblk_zoned_opts_check() refused @o for a disk of @bytes. */
static void zoned_opt_explain(const char *prog, const struct vblk_zoned_opts *o, uint64_t bytes)
{
    fprintf(stderr,
            "%s: --zoned does not fit a %llu-byte disk: the zone size must be a power of two "
            "of at least 512 bytes, conv at most the number of zones, max-open at most "
            "max-active, granularity a power of two >= 512 and <= max-append (zone size %u "
            "sectors, %u zones)\n",
            prog, (unsigned long long)bytes, o->zone_sectors,
            vblk_zone_count(bytes / 512, o->zone_sectors));
}

#endif
