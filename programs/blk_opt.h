/* SPDX-License-Identifier: MIT */
/*
 * Device options the programs share: --lifetime PRE_EOL,A,B (GET_LIFETIME),
 * --discard-segments N, --discard-max SIZE, --secure-erase. Header-only: each program includes
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
    "  --discard-max SIZE   largest DISCARD, WRITE_ZEROES and SECURE_ERASE range (bytes,\n"        \
    "                       K/M/G suffixes; default 2 GiB)\n"                                      \
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

/* Parses SIZE (512..2 GiB, a multiple of 512) into sectors. Returns 0, or
 * -1 after printing why not. */
static int blk_opt_discard_max(const char *prog, const char *s, uint32_t *sectors)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 0);
    unsigned shift = *end == 'K' || *end == 'k'   ? 10
                     : *end == 'M' || *end == 'm' ? 20
                     : *end == 'G' || *end == 'g' ? 30
                                                  : 0;
    if (shift)
        end++;
    if (*s == '-' || end == s || *end || v > (1ull << 31) >> shift || (v << shift) % 512 || !v) {
        fprintf(stderr, "%s: --discard-max must be a multiple of 512 up to 2G\n", prog);
        return -1;
    }
    *sectors = (uint32_t)((v << shift) / 512);
    return 0;
}

/* Applies --discard-segments, --discard-max and --secure-erase to @p. */
static void blk_opt_apply(struct vblk_dev_params *p, uint32_t segs, uint32_t max_sectors,
                          bool secure_erase)
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
    if (max_sectors) {
        p->max_discard_sectors = max_sectors;
        p->max_write_zeroes_sectors = max_sectors;
        if (p->max_secure_erase_sectors)
            p->max_secure_erase_sectors = max_sectors;
    }
}

#endif
