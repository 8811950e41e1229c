/* SPDX-License-Identifier: MIT */
/*
 * Device options the programs share: --lifetime PRE_EOL,A,B (GET_LIFETIME),
 * --discard-segments N, --secure-erase. Header-only: each program includes
 * it once.
 */
#ifndef VBLK_PROGRAMS_BLK_OPT_H
#define VBLK_PROGRAMS_BLK_OPT_H

#include <stdio.h>
#include <stdlib.h>

#include "virtioblk/virtioblk.h"

#define BLK_OPT_HELP                                                                               \
    "  --lifetime P,A,B     offer GET_LIFETIME with pre_eol_info P (0..3) and the wear\n"          \
    "                       estimates A and B (0..11)\n"                                           \
    "  --discard-segments N ranges per DISCARD, WRITE_ZEROES and SECURE_ERASE request\n"           \
    "                       (1..256, default 1)\n"                                                 \
    "  --secure-erase       offer SECURE_ERASE (--image: BLKSECDISCARD on a block device,\n"       \
    "                       else zeros written over the range and synced)\n"

/* Parses "P,A,B" into @p. Returns 0, or -1 after printing why not. */
static int blk_opt_lifetime(const char *prog, const char *s, struct vblk_dev_params *p)
{
    unsigned pre, a, b;
    char tail;
    if (sscanf(s, "%u,%u,%u%c", &pre, &a, &b, &tail) != 3 || pre > 3 || a > 11 || b > 11) {
        fprintf(stderr, "%s: --lifetime needs P,A,B with P 0..3 and A, B 0..11\n", prog);
        return -1;
    }
    p->lifetime = true;
    p->lifetime_info.pre_eol_info = (uint16_t)pre;
    p->lifetime_info.device_lifetime_est_typ_a = (uint16_t)a;
    p->lifetime_info.device_lifetime_est_typ_b = (uint16_t)b;
    return 0;
}

/* Parses N into @segs (1..256). Returns 0, or -1 after printing why not. */
static int blk_opt_segments(const char *prog, const char *s, uint32_t *segs)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '-' || end == s || *end || v < 1 || v > 256) {
        fprintf(stderr, "%s: --discard-segments must be 1..256\n", prog);
        return -1;
    }
    *segs = (uint32_t)v;
    return 0;
}

/* Applies --discard-segments and --secure-erase to @p. */
static void blk_opt_apply(struct vblk_dev_params *p, uint32_t segs, bool secure_erase)
{
    if (segs) {
        p->max_discard_seg = segs;
        p->max_write_zeroes_seg = segs;
        p->max_secure_erase_seg = segs;
    }
    if (secure_erase) {
        p->max_secure_erase_sectors = 1u << 22;
        p->secure_erase_sector_alignment = 8;
    }
}

#endif
