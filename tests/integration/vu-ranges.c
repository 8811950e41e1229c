/* SPDX-License-Identifier: MIT */
/*
 * vu-ranges: checks DISCARD and WRITE_ZEROES of a vhost-user-blk back-end
 * end to end, through the library's vhost-user front-end.
 *
 *   vu-ranges SOCKET zeroes        write a pattern over the first 16 MiB,
 *                                  discard and write-zeroes ranges in it
 *                                  (sub-object, object-aligned, straddling
 *                                  a 4 MiB boundary, unaligned to 4 KiB,
 *                                  with and without the UNMAP flag), flush,
 *                                  and read everything back: the ranges hold
 *                                  zeros, the rest still holds the pattern
 *   vu-ranges SOCKET read OFF LEN  copies LEN bytes at byte offset OFF of the
 *                                  disk to standard output
 *   vu-ranges SOCKET past-end SIZE checks that the device reports SIZE bytes,
 *                                  that its last block reads and writes, and
 *                                  that reads and writes at and across the end
 *                                  fail with IOERR (after a shrink: nothing
 *                                  past the new end is reached)
 *
 * Exit status: 0 pass, 1 failure (one line saying what), 2 usage.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "virtioblk/virtioblk.h"

#define PROG  "vu-ranges"
#define AREA  (16u << 20)
#define CHUNK (1u << 20)

static struct vblk_vu_client *cl;
static struct vblk_drv_vq *vq;
static struct vblk_drv_blk_frame *frame;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    vblk_vu_client_close(cl);
    exit(1);
}

/* One request, waited for; returns the status byte. */
static uint8_t request(uint32_t type, uint64_t sector, void *data, uint32_t len)
{
    struct vblk_iov d = {data, len};
    void *tok;
    uint32_t used;
    int rc;

    frame->status = 0xff;
    rc = vblk_drv_blk_add(vq, frame, type, sector, &d, len ? 1 : 0, frame, false);
    if (rc < 0)
        die("cannot add a %s request: %s", vblk_req_type_name(type), strerror(-rc));
    vblk_vu_client_kick(cl, 0);
    for (int waited = 0;;) {
        rc = vblk_drv_vq_get_used(vq, &tok, &used);
        if (rc == 1)
            break;
        if (rc < 0)
            die("bad used entry: %s", strerror(-rc));
        rc = vblk_vu_client_wait(cl, 0, 1000);
        if (rc < 0)
            die("waiting for a %s request: %s", vblk_req_type_name(type), strerror(-rc));
        if (rc == 0 && ++waited >= 120)
            die("a %s request got no answer in 120 s", vblk_req_type_name(type));
    }
    return frame->status;
}

static uint8_t pattern_byte(uint64_t off)
{
    uint64_t x = (off >> 3) * 0x9e3779b97f4a7c15ull;
    return (uint8_t)((x >> 56) ^ off ^ 0x5a);
}

struct range {
    uint32_t type;
    uint64_t off, len;
    uint32_t flags;
};

static void ranges_check(uint8_t *buf)
{
    /* 4 MiB is RBD's default object size: cover a part of an object, a
     * whole one and a boundary. Offsets and lengths are 512-byte units. */
    static const struct range rs[] = {
        {VBLK_T_DISCARD, (1u << 20) + 4096, 68u << 10, 0},
        {VBLK_T_DISCARD, 8u << 20, 4u << 20, 0},
        {VBLK_T_DISCARD, (4u << 20) - 8192, 12u << 10, 0},
        {VBLK_T_DISCARD, (3u << 20) + 512, 1536, 0},
        {VBLK_T_WRITE_ZEROES, (2u << 20) + 512, 7680, 0},
        {VBLK_T_WRITE_ZEROES, (12u << 20) - 4096, 8704, VBLK_WZ_F_UNMAP},
        {VBLK_T_WRITE_ZEROES, 14u << 20, 1u << 20, 0},
    };
    struct vblk_discard_wz_seg *seg = vblk_vu_client_alloc(cl, sizeof(*seg));
    uint64_t f = vblk_vu_client_features(cl);
    uint8_t st;

    if (!(f & VBLK_BIT(VBLK_F_DISCARD)) || !(f & VBLK_BIT(VBLK_F_WRITE_ZEROES)))
        die("the back-end offers no %s",
            (f & VBLK_BIT(VBLK_F_DISCARD)) ? "WRITE_ZEROES" : "DISCARD");
    if (seg == NULL)
        die("out of shared memory");
    for (uint64_t off = 0; off < AREA; off += CHUNK) {
        for (uint32_t i = 0; i < CHUNK; i++)
            buf[i] = pattern_byte(off + i);
        st = request(VBLK_T_OUT, off >> 9, buf, CHUNK);
        if (st != VBLK_S_OK)
            die("writing the pattern at %" PRIu64 ": status %u", off, st);
    }
    for (size_t i = 0; i < sizeof(rs) / sizeof(rs[0]); i++) {
        seg->sector = htole64(rs[i].off >> 9);
        seg->num_sectors = htole32((uint32_t)(rs[i].len >> 9));
        seg->flags = htole32(rs[i].flags);
        st = request(rs[i].type, 0, seg, sizeof(*seg));
        if (st != VBLK_S_OK)
            die("%s of %" PRIu64 " bytes at %" PRIu64 ": status %u", vblk_req_type_name(rs[i].type),
                rs[i].len, rs[i].off, st);
    }
    if (f & VBLK_BIT(VBLK_F_FLUSH)) {
        st = request(VBLK_T_FLUSH, 0, NULL, 0);
        if (st != VBLK_S_OK)
            die("FLUSH: status %u", st);
    }
    for (uint64_t off = 0; off < AREA; off += CHUNK) {
        st = request(VBLK_T_IN, off >> 9, buf, CHUNK);
        if (st != VBLK_S_OK)
            die("reading back at %" PRIu64 ": status %u", off, st);
        for (uint32_t i = 0; i < CHUNK; i++) {
            uint64_t at = off + i;
            const struct range *in = NULL;
            for (size_t k = 0; k < sizeof(rs) / sizeof(rs[0]) && !in; k++)
                if (at >= rs[k].off && at < rs[k].off + rs[k].len)
                    in = &rs[k];
            uint8_t want = in ? 0 : pattern_byte(at);
            if (buf[i] != want)
                die("byte %" PRIu64 " reads 0x%02x, expected 0x%02x (%s)", at, buf[i], want,
                    in ? (in->type == VBLK_T_DISCARD ? "discarded" : "zeroed") : "pattern");
        }
    }
    printf(PROG ": PASS: %zu DISCARD and WRITE_ZEROES ranges read back as zeros, the rest of %u "
                "MiB kept its pattern\n",
           sizeof(rs) / sizeof(rs[0]), AREA >> 20);
}

static void read_out(uint8_t *buf, uint64_t off, uint64_t len)
{
    while (len > 0) {
        uint32_t n = len < CHUNK ? (uint32_t)len : CHUNK;
        uint8_t st = request(VBLK_T_IN, off >> 9, buf, n);
        if (st != VBLK_S_OK)
            die("reading %u bytes at %" PRIu64 ": status %u", n, off, st);
        if (fwrite(buf, 1, n, stdout) != n)
            die("writing to standard output: %s", strerror(errno));
        off += n;
        len -= n;
    }
}

static void past_end(uint8_t *buf, uint64_t size)
{
    struct vblk_config cfg = {0};
    const uint32_t bs = 4096;

    if (vblk_vu_client_config(cl, &cfg) < 0)
        die("cannot read the config space: %s", vblk_vu_client_error(cl));
    if (cfg.capacity * VBLK_SECTOR_SIZE != size)
        die("the device reports %" PRIu64 " bytes, not %" PRIu64, cfg.capacity * VBLK_SECTOR_SIZE,
            size);
    if (size < bs)
        die("SIZE must be at least %u bytes", bs);
    /* The last block inside: read it, write it back. */
    uint8_t st = request(VBLK_T_IN, (size - bs) >> 9, buf, bs);
    if (st != VBLK_S_OK)
        die("reading the last block inside the disk: status %u", st);
    st = request(VBLK_T_OUT, (size - bs) >> 9, buf, bs);
    if (st != VBLK_S_OK)
        die("writing the last block inside the disk: status %u", st);
    static const struct {
        uint32_t type;
        int64_t at; /* bytes from the end */
    } bad[] = {{VBLK_T_IN, 0},      {VBLK_T_OUT, 0},      {VBLK_T_IN, -2048},
               {VBLK_T_OUT, -2048}, {VBLK_T_IN, 1 << 20}, {VBLK_T_OUT, 1 << 20}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t off = (uint64_t)((int64_t)size + bad[i].at);
        memset(buf, 0xa5, bs);
        st = request(bad[i].type, off >> 9, buf, bs);
        if (st != VBLK_S_IOERR)
            die("%s of %u bytes at %" PRIu64 " (the disk has %" PRIu64 "): status %u, not IOERR",
                vblk_req_type_name(bad[i].type), bs, off, size, st);
    }
    printf("past-end: the device reports %" PRIu64 " bytes; its last block reads and writes; "
           "%zu reads and writes at, across and past the end failed with IOERR\n",
           size, sizeof(bad) / sizeof(bad[0]));
}

int main(int argc, char **argv)
{
    char err[256] = "";
    struct vblk_vu_client_opts o = {
        .queues = 1,
        .queue_size = 16,
        .mem_size = 4u << 20,
        .timeout_ms = 10000,
        .errbuf = err,
        .errbuf_len = sizeof(err),
    };
    uint64_t off = 0, len = 0;
    uint8_t *buf;
    int rc;

    if (argc == 5 && strcmp(argv[2], "read") == 0) {
        char *e1, *e2;
        off = strtoull(argv[3], &e1, 0);
        len = strtoull(argv[4], &e2, 0);
        if (*e1 || *e2 || off % 512 || len % 512) {
            fprintf(stderr, PROG ": OFF and LEN must be multiples of 512\n");
            return 2;
        }
    } else if (argc == 4 && strcmp(argv[2], "past-end") == 0) {
        char *e1;
        len = strtoull(argv[3], &e1, 0);
        if (*e1 || len % 512 || len == 0) {
            fprintf(stderr, PROG ": SIZE must be a positive multiple of 512\n");
            return 2;
        }
    } else if (argc != 3 || strcmp(argv[2], "zeroes") != 0) {
        fprintf(stderr, "usage: " PROG " SOCKET zeroes | " PROG " SOCKET read OFF LEN | " PROG
                        " SOCKET past-end SIZE\n");
        return 2;
    }
    rc = vblk_vu_client_connect(argv[1], &o, &cl);
    if (rc < 0) {
        fprintf(stderr, PROG ": %s: %s\n", argv[1], err[0] ? err : strerror(-rc));
        return 1;
    }
    vq = vblk_vu_client_queue(cl, 0);
    frame = vblk_vu_client_alloc(cl, sizeof(*frame));
    buf = vblk_vu_client_alloc(cl, CHUNK);
    if (vq == NULL || frame == NULL || buf == NULL)
        die("out of shared memory");
    if (argc == 3)
        ranges_check(buf);
    else if (argc == 4)
        past_end(buf, len);
    else
        read_out(buf, off, len);
    vblk_vu_client_close(cl);
    return 0;
}
