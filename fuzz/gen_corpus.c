/* SPDX-License-Identifier: MIT */
/*
 * Writes the seed corpora: a handful of small, valid inputs per target
 * (well-formed rings carrying each request type, indirect tables, ring
 * positions near the 16-bit wrap, requests split across memory regions,
 * typical config and memory map sessions). The fuzzers mutate from there.
 *
 *   fuzz-gen-corpus OUTDIR     writes OUTDIR/<target>/seed-*
 *
 * Regression inputs for fixed bugs live next to the seeds (regress-*) and
 * are kept by hand.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_format.h"
#include "ring_writer.h"

static const char *g_outdir;

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)v);
    put16(p + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static void write_seed(const char *target, const char *name, const uint8_t *data, size_t len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", g_outdir, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/%s/seed-%s", g_outdir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* ------------------------------------------------------------------------ */
/* Ring inputs                                                               */

struct ring_gen {
    bool packed;
    uint16_t size;
    struct ring_layout l;
    uint8_t hdr[RING_HDR_SIZE];
    _Alignas(16) uint8_t desc[16 * RING_MAX_SIZE];
    _Alignas(16) uint8_t driver[6 + 2 * RING_MAX_SIZE];
    uint8_t pool[RING_POOL_SIZE];
    uint32_t pool_used;
    struct atk_ring ring; /* the driver writing desc[] and driver[] */
};

struct seg {
    uint64_t addr;
    uint32_t len;
    bool write;
};

static void ring_init(struct ring_gen *g, bool packed, uint8_t size_sel, uint8_t feat)
{
    memset(g, 0, sizeof(*g));
    g->packed = packed;
    g->size = ring_size_from(size_sel, packed);
    ring_layout_of(packed, g->size, &g->l);
    g->hdr[RH_SIZE] = size_sel;
    g->hdr[RH_FEAT] = feat;
    g->hdr[RH_SEG_MAX] = 0xff;
    /* The device area is not part of the input: only the device writes it. */
    atk_ring_init_areas(&g->ring, g->size, packed, g->desc, g->driver, NULL, NULL);
}

/* Reserves pool bytes; returns their driver address. */
static uint64_t pool_alloc(struct ring_gen *g, uint32_t len, const void *content)
{
    uint32_t off = (g->pool_used + 15u) & ~15u;
    if (off + len > RING_POOL_SIZE) {
        fprintf(stderr, "pool exhausted\n");
        exit(1);
    }
    if (content)
        memcpy(&g->pool[off], content, len);
    g->pool_used = off + len;
    return g->l.pool + off;
}

static uint64_t req_hdr(struct ring_gen *g, uint32_t type, uint64_t sector)
{
    uint8_t h[16];
    put32(h, type);
    put32(h + 4, 0);
    put64(h + 8, sector);
    return pool_alloc(g, 16, h);
}

static struct atk_seg atk_seg_of(const struct seg *s)
{
    return (struct atk_seg){s->addr, s->len, s->write ? VBLK_DESC_F_WRITE : 0};
}

/* Adds a chain (or, with @indirect, a table in the pool) and publishes it. */
static void ring_add(struct ring_gen *g, const struct seg *segs, unsigned n, bool indirect)
{
    struct atk_seg s[16];
    for (unsigned i = 0; i < n; i++)
        s[i] = atk_seg_of(&segs[i]);
    if (indirect) {
        _Alignas(16) uint8_t table[16 * 16];
        atk_table_write(g->packed, table, s, n);
        atk_post_indirect(&g->ring, pool_alloc(g, 16 * n, table), 16 * n, 0);
    } else {
        atk_post(&g->ring, s, n);
    }
}

/* A request: header, optional data, status byte. */
static void ring_req(struct ring_gen *g, uint32_t type, uint64_t sector, uint32_t data_len,
                     bool data_write, const void *data, bool indirect)
{
    struct seg s[3];
    unsigned n = 0;
    s[n++] = (struct seg){req_hdr(g, type, sector), 16, false};
    if (data_len)
        s[n++] = (struct seg){pool_alloc(g, data_len, data), data_len, data_write};
    s[n++] = (struct seg){pool_alloc(g, 1, NULL), 1, true};
    ring_add(g, s, n, indirect);
}

static void ring_emit(struct ring_gen *g, const char *name)
{
    static uint8_t out[RING_HDR_SIZE + sizeof(g->desc) + sizeof(g->driver) + RING_POOL_SIZE];
    size_t len = 0;
    memcpy(out + len, g->hdr, RING_HDR_SIZE);
    len += RING_HDR_SIZE;
    memcpy(out + len, g->desc, g->l.desc_len);
    len += g->l.desc_len;
    memcpy(out + len, g->driver, g->l.driver_len);
    len += g->l.driver_len;
    memcpy(out + len, g->pool, RING_POOL_SIZE);
    len += RING_POOL_SIZE;
    /* Missing bytes read as zero: trim them. */
    while (len > RING_HDR_SIZE && out[len - 1] == 0)
        len--;
    write_seed(g->packed ? "packed_ring" : "split_ring", name, out, len);
}

static void set_ops(struct ring_gen *g, const uint8_t *ops, unsigned n)
{
    memcpy(&g->hdr[RH_OPS], ops, n);
}

static void seg_bytes(uint8_t *p, uint64_t sector, uint32_t num, uint32_t flags)
{
    put64(p, sector);
    put32(p + 8, num);
    put32(p + 12, flags);
}

static void gen_ring(bool packed)
{
    struct ring_gen g;
    uint8_t segs[32];
    /* sizes: split 1 << (v % 9); packed v + 1 */
    uint8_t s16 = packed ? 15 : 4, s32 = packed ? 31 : 5, s7 = packed ? 6 : 3;

    /* Every request type, null backend, no ring features. */
    ring_init(&g, packed, s32, RB_NULL << 6);
    ring_req(&g, VBLK_T_IN, 0, 512, true, NULL, false);
    ring_req(&g, VBLK_T_OUT, 8, 1024, false, NULL, false);
    ring_req(&g, VBLK_T_FLUSH, 0, 0, false, NULL, false);
    ring_req(&g, VBLK_T_GET_ID, 0, 20, true, NULL, false);
    ring_req(&g, VBLK_T_GET_LIFETIME, 0, 8, true, NULL, false);
    seg_bytes(segs, 16, 8, 0);
    seg_bytes(segs + 16, 64, 8, 0);
    ring_req(&g, VBLK_T_DISCARD, 0, 32, false, segs, false);
    seg_bytes(segs, 128, 16, VBLK_WZ_F_UNMAP);
    ring_req(&g, VBLK_T_WRITE_ZEROES, 0, 16, false, segs, false);
    seg_bytes(segs, 256, 8, 0);
    ring_req(&g, VBLK_T_SECURE_ERASE, 0, 16, false, segs, false);
    ring_req(&g, 99, 0, 0, false, NULL, false);
    ring_emit(&g, "types");

    /* Indirect tables and event index, fuzz backend completing inline. */
    ring_init(&g, packed, s16, (uint8_t)(RF_INDIRECT | RF_EVENT_IDX | RF_HOOKS | (RB_INLINE << 6)));
    ring_req(&g, VBLK_T_IN, 0, 4096, true, NULL, true);
    ring_req(&g, VBLK_T_OUT, 0, 512, false, NULL, false);
    ring_req(&g, VBLK_T_IN, 16, 512, true, NULL, true);
    {
        uint8_t ops[] = {OP_PROCESS, OP_NOTIFY | 1 << 4, OP_NOTIFY | 3 << 4, OP_RUN};
        set_ops(&g, ops, sizeof(ops));
    }
    ring_emit(&g, "indirect");

    /* Deferred and asynchronous completions, out of order, with IN_ORDER. */
    ring_init(&g, packed, s16, (uint8_t)(RF_IN_ORDER | RF_HOOKS | (RB_MIXED << 6)));
    for (unsigned i = 0; i < 5; i++)
        ring_req(&g, i & 1 ? VBLK_T_OUT : VBLK_T_IN, i * 8, 512, !(i & 1), NULL, false);
    {
        const uint8_t tape[8] = {2, 2, 3, 2, 0, 1 | 4, 2, 3};
        memcpy(&g.hdr[RH_DECIDE], tape, sizeof(tape));
        uint8_t ops[] = {
            OP_PROCESS | 2 << 4, OP_PROCESS, OP_COMPLETE | 1 << 4, OP_ASYNC, OP_PROCESS,
            OP_COMPLETE_ALL,     OP_FLUSH};
        set_ops(&g, ops, sizeof(ops));
    }
    ring_emit(&g, "deferred");

    /* Ring position near the wrap, and a reconnect from the saved state. */
    ring_init(&g, packed, s16, (uint8_t)(RF_STATE | RF_EVENT_IDX | RF_HOOKS | (RB_MIXED << 6)));
    if (!packed) {
        put16(&g.hdr[RH_LAST_AVAIL], 0xfffe);
        put16(&g.hdr[RH_USED_IDX], 0xfffe);
        g.ring.avail = 0xfffe;
    } else {
        put16(&g.hdr[RH_LAST_AVAIL], (uint16_t)(g.size - 2));
        put16(&g.hdr[RH_USED_IDX], (uint16_t)(g.size - 2));
        g.hdr[RH_WRAPS] = 3;
        g.ring.next = (uint16_t)(g.size - 2);
    }
    for (unsigned i = 0; i < 4; i++)
        ring_req(&g, VBLK_T_IN, i, 512, true, NULL, false);
    {
        /* Keep the first chains in flight so pop_at / resubmit find them. */
        const uint8_t tape[8] = {2, 2, 2, 2, 2, 2, 2, 2};
        memcpy(&g.hdr[RH_DECIDE], tape, sizeof(tape));
        uint8_t ops[] = {OP_PROCESS | 1 << 4,
                         OP_POP_AT | 4 << 4,
                         OP_RESUBMIT | 4 << 4,
                         OP_POP_SAVED | (8 | 2) << 4,
                         OP_RESUBMIT_SAVED | (8 | 2) << 4,
                         OP_COMPLETE_ALL,
                         OP_RECONNECT,
                         OP_PROCESS,
                         OP_LOG,
                         OP_PROCESS};
        set_ops(&g, ops, sizeof(ops));
        put16(&g.hdr[RH_POS], packed ? (uint16_t)(g.size - 2) : (uint16_t)0);
    }
    ring_emit(&g, "wrap");

    /* Buffers straddling pool pieces, a dirty log, a small queue. */
    ring_init(&g, packed, s7, (uint8_t)(RF_LOG | (RB_NULL << 6)));
    g.hdr[RH_POOL] = 2;
    put16(&g.hdr[RH_SPLITS], 100);
    put16(&g.hdr[RH_SPLITS + 2], 700);
    g.hdr[RH_WRAPS] = 0x30;
    ring_req(&g, VBLK_T_IN, 0, 1024, true, NULL, false);
    ring_req(&g, VBLK_T_OUT, 2, 512, false, NULL, false);
    {
        uint8_t ops[] = {OP_PROCESS, OP_DRIVER_ADD, OP_POLLING | 1 << 4, OP_PROCESS};
        set_ops(&g, ops, sizeof(ops));
    }
    ring_emit(&g, "regions");

    /* A malformed ring: a descriptor loop (split) / bad indirect (packed). */
    ring_init(&g, packed, s16, (uint8_t)(RF_INDIRECT | (RB_NULL << 6)));
    if (!packed) {
        atk_split_set(&g.ring, 0, req_hdr(&g, VBLK_T_IN, 0), 16, VBLK_DESC_F_NEXT, 1);
        atk_split_set(&g.ring, 1, pool_alloc(&g, 512, NULL), 512,
                      VBLK_DESC_F_NEXT | VBLK_DESC_F_WRITE, 0);
        atk_split_avail_add(&g.ring, 1);
    } else {
        atk_packed_set(&g.ring, 0, pool_alloc(&g, 24, NULL), 24, 0,
                       VBLK_DESC_F_INDIRECT | VBLK_DESC_F_AVAIL);
    }
    ring_emit(&g, "broken");
}

/* ------------------------------------------------------------------------ */
/* blk_request inputs                                                        */

struct blk_gen {
    uint8_t buf[16384];
    size_t len;
};

static void b8(struct blk_gen *g, uint8_t v)
{
    g->buf[g->len++] = v;
}

static void bbytes(struct blk_gen *g, const void *p, size_t n)
{
    if (n)
        memcpy(&g->buf[g->len], p, n);
    g->len += n;
}

static void bzero_(struct blk_gen *g, size_t n)
{
    memset(&g->buf[g->len], 0, n);
    g->len += n;
}

static void blk_header(struct blk_gen *g, uint8_t ring, uint8_t dev, uint8_t splits)
{
    g->len = 0;
    uint8_t h[BLK_HDR_SIZE] = {0};
    h[0] = ring;
    h[1] = dev;
    h[2] = 7;    /* seg_max 8 */
    h[3] = 0;    /* no size_max */
    h[4] = 0x15; /* 2 ranges each */
    h[5] = 255;  /* 2048 sectors */
    h[6] = splits;
    h[7] = 0;
    bbytes(g, h, sizeof(h));
}

/* Record: type index, shape, sector selector (1: zero, 6: small u8), data buffers. */
static void blk_rec(struct blk_gen *g, uint8_t type, uint8_t shape, uint8_t sector_small,
                    unsigned nbuf, const uint8_t *lens)
{
    b8(g, type);
    b8(g, shape);
    b8(g, 6);
    b8(g, sector_small);
    b8(g, (uint8_t)nbuf);
    for (unsigned i = 0; i < nbuf; i++)
        b8(g, lens[i]);
}

static void gen_blk(void)
{
    struct blk_gen g;
    uint8_t seg[16];
    const uint8_t one_sector = 0, two_sectors = 4, raw20 = (20 << 2) | 2, raw8 = (8 << 2) | 2,
                  one_seg = 1, two_segs = 1 | 4;

    /* One of each type over the memory backend, split ring. */
    blk_header(&g, 2, 4 | 8, 0);
    blk_rec(&g, 0, 0, 0, 1, &one_sector);
    blk_rec(&g, 1, 0, 1, 1, &one_sector);
    bzero_(&g, 512);
    blk_rec(&g, 2, 0, 0, 0, NULL);
    blk_rec(&g, 3, 0, 0, 1, &raw20);
    blk_rec(&g, 4, 0, 0, 1, &raw8);
    blk_rec(&g, 5, 0, 0, 1, &one_seg);
    seg_bytes(seg, 8, 8, 0);
    bbytes(&g, seg, 16);
    blk_rec(&g, 6, 0, 0, 1, &one_seg);
    seg_bytes(seg, 16, 8, VBLK_WZ_F_UNMAP);
    bbytes(&g, seg, 16);
    blk_rec(&g, 7, 0, 0, 1, &one_seg);
    seg_bytes(seg, 32, 8, 0);
    bbytes(&g, seg, 16);
    write_seed("blk_request", "types-split", g.buf, g.len);

    /* The same over a packed ring with indirect tables and split headers. */
    blk_header(&g, 2 | 8 | 16 | 32, 16, 2);
    blk_rec(&g, 0, 1 | 8, 3, 1, &two_sectors);
    blk_rec(&g, 1, 3 | 8, 4, 1, &one_sector);
    bzero_(&g, 512);
    blk_rec(&g, 5, 0, 0, 1, &two_segs);
    seg_bytes(seg, 8, 8, 0);
    bbytes(&g, seg, 16);
    seg_bytes(seg, 100, 4, 0);
    bbytes(&g, seg, 16);
    blk_rec(&g, 0, 4, 9, 2, (const uint8_t[]){one_sector, one_sector});
    write_seed("blk_request", "shapes-packed", g.buf, g.len);

    /* Fuzz backend with deferred completions, IN_ORDER, read-only device. */
    blk_header(&g, 0x80 | 1 | 64, 1 | 64 | 128, 1);
    memcpy(&g.buf[8], (const uint8_t[]){2, 2, 3, 0, 2, 0x81, 1, 2}, 8);
    for (unsigned i = 0; i < 6; i++) {
        blk_rec(&g, (uint8_t)(i % 2), 0, (uint8_t)i, 1, &one_sector);
        if (i % 2)
            bzero_(&g, 512);
    }
    write_seed("blk_request", "deferred-ro", g.buf, g.len);

    /* Errors: out of range, short header, no status, unknown type. */
    blk_header(&g, 3, 0, 0);
    blk_rec(&g, 0, 0, 255, 1, &two_sectors);
    b8(&g, 0);
    b8(&g, 2);
    b8(&g, 1);
    b8(&g, 0);
    b8(&g, 0xf0);
    put32(seg, 0x12345678);
    bbytes(&g, seg, 4);
    b8(&g, 0);
    b8(&g, 1);
    b8(&g, 0);
    /* last: no status byte at all, which breaks the queue */
    b8(&g, 1);
    b8(&g, 16);
    b8(&g, 1);
    b8(&g, 0);
    write_seed("blk_request", "errors", g.buf, g.len);
}

/* ------------------------------------------------------------------------ */
/* config and mem_map inputs                                                 */

static void gen_config(void)
{
    uint8_t b[256];
    size_t n = 0;
    b[n++] = 0xff; /* every field group at its default */
    b[n++] = 1;    /* capacity: u16 sectors */
    put16(&b[n], 2048);
    n += 2;
    b[n++] = 2 | 4; /* writeback, may unmap */
    memcpy(&b[n], "serial-0123456789abc", 20);
    n += 20;
    b[n++] = 0x0f; /* caps: flush, discard, write zeroes, secure erase */
    b[n++] = 0;    /* 64 MiB backend */
    /* read all config; write writeback; negotiate everything; read again */
    b[n++] = 0;
    b[n++] = 0;
    b[n++] = 72;
    b[n++] = 1;
    b[n++] = 32;
    b[n++] = 1;
    memset(&b[n], 0, 8);
    n += 8;
    b[n++] = 3;
    memset(&b[n], 0xff, 8);
    n += 8;
    b[n++] = 1;
    b[n++] = 32;
    b[n++] = 1;
    memset(&b[n], 1, 8);
    n += 8;
    b[n++] = 0;
    b[n++] = 30;
    b[n++] = 8;
    b[n++] = 4;
    b[n++] = 1;
    put16(&b[n], 4096);
    n += 2;
    b[n++] = 5; /* queue: index 0, size 8 */
    b[n++] = 0;
    put16(&b[n], 8);
    n += 2;
    b[n++] = 0;
    b[n++] = 7;
    write_seed("config", "default", b, n);

    /* All groups fuzzed from a plausible image. */
    n = 0;
    b[n++] = 0;
    b[n++] = 1;
    put16(&b[n], 4096);
    n += 2;
    b[n++] = 1 | (12 << 2); /* blk_size 1 << 12 */
    b[n++] = 2 | (32 << 2); /* seg_max 32 */
    b[n++] = 1 | (16 << 2); /* size_max 65536 */
    put16(&b[n], 4);
    n += 2;
    put16(&b[n], 1024);
    n += 2;
    b[n++] = 1 | 8; /* read-only, lifetime */
    memset(&b[n], 'x', 20);
    n += 20;
    put16(&b[n], 100);
    n += 2;
    b[n++] = 16;
    b[n++] = 63;
    b[n++] = 3;
    b[n++] = 0;
    put16(&b[n], 8);
    n += 2;
    put32(&b[n], 64);
    n += 4;
    for (unsigned i = 0; i < 8; i++)
        b[n++] = 2 | (4 << 2); /* discard, write zeroes, secure erase: small values */
    put16(&b[n], 1);
    n += 2;
    put16(&b[n], 2);
    n += 2;
    put16(&b[n], 3);
    n += 2;
    put64(&b[n], 0);
    n += 8;
    b[n++] = 0x1f;
    b[n++] = 0;
    b[n++] = 2;
    put64(&b[n], 1ull << 32);
    n += 8;
    b[n++] = 1;
    b[n++] = 32;
    b[n++] = 1;
    memset(&b[n], 0, 8);
    n += 8;
    write_seed("config", "readonly", b, n);
}

static void gen_mem_map(void)
{
    uint8_t b[128];
    size_t n = 0;
    /* add [0x1000, +0x1000) and [0x2000, +0x1000), map across, ptr, log */
    b[n++] = 0;
    b[n++] = 0 | (8 << 2);
    b[n++] = 0x10;
    b[n++] = 0 | (8 << 2);
    b[n++] = 0x10;
    put16(&b[n], 1);
    n += 2;
    b[n++] = 0;
    b[n++] = 0 | (8 << 2);
    b[n++] = 0x20;
    b[n++] = 0 | (8 << 2);
    b[n++] = 0x10;
    put16(&b[n], 7);
    n += 2;
    b[n++] = 3;
    b[n++] = 0 | (4 << 2);
    b[n++] = 0xf0;
    b[n++] = 0 | (8 << 2);
    b[n++] = 0x02;
    b[n++] = 4;
    b[n++] = 4;
    b[n++] = 0 | (4 << 2);
    b[n++] = 0x10;
    b[n++] = 0 | (4 << 2);
    b[n++] = 0x10;
    b[n++] = 5;
    b[n++] = 4;
    b[n++] = 6;
    b[n++] = 0 | (8 << 2);
    b[n++] = 0x10;
    b[n++] = 0 | (8 << 2);
    b[n++] = 0x20;
    b[n++] = 8;
    b[n++] = 0;
    b[n++] = 0 | (4 << 2);
    b[n++] = 0x40;
    put16(&b[n], 0x10);
    n += 2;
    b[n++] = 2;
    b[n++] = 0;
    /* lazily filled: answer a miss at 0x8000 */
    b[n++] = 7;
    b[n++] = 0;
    b[n++] = 0 | (8 << 2);
    b[n++] = 0x80;
    b[n++] = 0 | (8 << 2);
    b[n++] = 0x10;
    put16(&b[n], 3);
    n += 2;
    b[n++] = 7;
    b[n++] = 3;
    b[n++] = 3;
    b[n++] = 0 | (8 << 2);
    b[n++] = 0x80;
    b[n++] = 0 | (4 << 2);
    b[n++] = 0x10;
    b[n++] = 2;
    write_seed("mem_map", "basic", b, n);
}

/* ------------------------------------------------------------------------ */
/* vhost_user_msg inputs                                                     */

static void vu_msg(struct blk_gen *g, uint8_t nfds, bool need_reply, uint8_t request,
                   const void *payload, uint16_t plen, const uint8_t *fd_kinds)
{
    b8(g, (uint8_t)(nfds | (need_reply ? 8 : 0)));
    b8(g, request);
    b8(g, (uint8_t)plen);
    b8(g, (uint8_t)(plen >> 8));
    bbytes(g, payload, plen);
    for (unsigned i = 0; i < nfds; i++)
        b8(g, fd_kinds[i]);
}

static void vu_u64(struct blk_gen *g, uint8_t request, uint64_t v, uint8_t nfds,
                   const uint8_t *fd_kinds)
{
    uint8_t p[8];
    put64(p, v);
    vu_msg(g, nfds, true, request, p, 8, fd_kinds);
}

static void vu_state(struct blk_gen *g, uint8_t request, uint32_t index, uint32_t num)
{
    uint8_t p[8];
    put32(p, index);
    put32(p + 4, num);
    vu_msg(g, 0, true, request, p, 8, NULL);
}

/* The two requests of a session on a ring of 8 entries laid out in @out
 * (descriptors at +0, driver area at +0x80, device area at +0x100): an IN
 * of sector 0 and an OUT of sector 8, headers at @hdr and @hdr + 0x10, the
 * data sector at @data, status bytes at @st and @st + 1. Written in an
 * aligned copy first: @out may sit off the ring alignment on purpose. */
static void session_ring(uint8_t *out, bool packed, uint64_t hdr, uint64_t data, uint64_t st)
{
    _Alignas(16) uint8_t ring[0x180] = {0};
    struct atk_ring r;
    atk_ring_init_areas(&r, 8, packed, ring, ring + 0x80, ring + 0x100, NULL);
    struct atk_seg in[3] = {
        {hdr, 16, 0}, {data, 512, VBLK_DESC_F_WRITE}, {st, 1, VBLK_DESC_F_WRITE}};
    struct atk_seg wr[3] = {{hdr + 0x10, 16, 0}, {data, 512, 0}, {st + 1, 1, VBLK_DESC_F_WRITE}};
    atk_post(&r, in, 3);
    atk_post(&r, wr, 3);
    memcpy(out, ring, sizeof(ring));
}

/* A front-end session: negotiate, share memory, start queue 0 on a split or
 * packed ring holding an IN and an OUT request, run it, stop it. Hostile:
 * the kick fd is a blocking eventfd, the call fd a blocking one with a
 * saturated counter, and an empty blocking pipe is offered as the err fd. */
static void gen_vu_session(bool packed, bool misaligned, bool hostile, const char *name)
{
    static struct blk_gen g;
    static uint8_t image[0x701];
    const uint64_t ua = 0x7f0000000000ull;
    const uint8_t guest_kind = 0, eventfd_kind = 1, memfd_kind = 2 | (0 << 3);
    uint8_t p[64];

    memset(image, 0, sizeof(image));
    /* Guest memory: ring areas at 0, 0x80, 0x100; headers at 0x200 and
     * 0x210; a data sector at 0x400; status bytes at 0x600 and 0x601.
     * Misaligned: the region starts at file offset 1, so every guest
     * address lands one byte off its alignment in the mapping. */
    uint8_t *img = image + (misaligned ? 1 : 0);
    put32(&img[0x200], VBLK_T_IN);
    put32(&img[0x210], VBLK_T_OUT);
    put64(&img[0x218], 8);
    /* IN: 0 -> 1 -> 2; OUT: 3 -> 4 -> 5 (packed: buffer IDs 0 and 1) */
    session_ring(img, packed, 0x200, 0x400, 0x600);

    g.len = 0;
    b8(&g, 2); /* log sink */
    b8(&g, 4); /* 64 KiB of guest memory */
    b8(&g, (uint8_t)(0x700 + misaligned));
    b8(&g, (uint8_t)((0x700 + misaligned) >> 8));
    bbytes(&g, image, 0x700 + misaligned);

    vu_msg(&g, 0, false, 1 /* GET_FEATURES */, NULL, 0, NULL);
    vu_msg(&g, 0, false, 3 /* SET_OWNER */, NULL, 0, NULL);
    vu_msg(&g, 0, false, 15 /* GET_PROTOCOL_FEATURES */, NULL, 0, NULL);
    vu_u64(&g, 2 /* SET_FEATURES */,
           (1ull << 32) | (1ull << 30) | (1ull << 9) | (packed ? 1ull << 34 : 0), 0, NULL);
    vu_u64(&g, 16 /* SET_PROTOCOL_FEATURES */,
           (1u << 0) | (1u << 1) | (1u << 3) | (1u << 9) | (1u << 12) | (1u << 16), 0, NULL);
    memset(p, 0, sizeof(p));
    put32(p + 4, 40); /* GET_CONFIG offset 0, 40 bytes */
    {
        static uint8_t cfg[12 + 40];
        memcpy(cfg, p, 12);
        vu_msg(&g, 0, false, 24, cfg, sizeof(cfg), NULL);
    }
    memset(p, 0, sizeof(p));
    put32(p, 1);                                  /* one region */
    put64(p + 8, 0);                              /* gpa */
    put64(p + 16, misaligned ? 0x8000 : 0x10000); /* size */
    put64(p + 24, ua);                            /* user address */
    put64(p + 32, misaligned ? 1 : 0);            /* mmap offset */
    vu_msg(&g, 1, true, 5 /* SET_MEM_TABLE */, p, 40, &guest_kind);
    memset(p, 0, sizeof(p));
    put16(p + 16, 2);
    put16(p + 18, 8);
    vu_msg(&g, 0, false, 31 /* GET_INFLIGHT_FD */, p, 24, NULL);
    vu_state(&g, 8 /* SET_VRING_NUM */, 0, 8);
    memset(p, 0, sizeof(p));
    put64(p + 8, ua);          /* desc */
    put64(p + 16, ua + 0x100); /* used */
    put64(p + 24, ua + 0x80);  /* avail */
    vu_msg(&g, 0, true, 9 /* SET_VRING_ADDR */, p, 40, NULL);
    vu_state(&g, 10 /* SET_VRING_BASE */, 0, packed ? 0x80008000u : 0);
    const uint8_t blocking_kind = 0xf0, saturated_kind = 0xf1, pipe_kind = 0xf2;
    vu_u64(&g, 13 /* SET_VRING_CALL */, 0, 1, hostile ? &saturated_kind : &eventfd_kind);
    vu_u64(&g, 12 /* SET_VRING_KICK */, 0, 1, hostile ? &blocking_kind : &eventfd_kind);
    if (hostile)
        vu_u64(&g, 14 /* SET_VRING_ERR */, 0, 1, &pipe_kind);
    vu_state(&g, 18 /* SET_VRING_ENABLE */, 0, 1);
    b8(&g, 0xe3); /* kick queue 0 */
    b8(&g, 0);
    b8(&g, 0xe0); /* process queue 0 */
    b8(&g, 0xe4); /* stats */
    b8(&g, 0);
    vu_state(&g, 11 /* GET_VRING_BASE */, 0, 0);
    vu_u64(&g, 39 /* SET_STATUS */, 0x0f, 0, NULL);
    vu_msg(&g, 0, false, 40 /* GET_STATUS */, NULL, 0, NULL);
    memset(p, 0, sizeof(p));
    put64(p, 4096);
    vu_msg(&g, 1, false, 6 /* SET_LOG_BASE */, p, 16, &memfd_kind);
    vu_msg(&g, 0, false, 34 /* RESET_DEVICE */, NULL, 0, NULL);
    write_seed("vhost_user_msg", name, g.buf, g.len);
}

static void gen_vhost_user(void)
{
    gen_vu_session(false, false, false, "split-session");
    gen_vu_session(true, false, false, "packed-session");
    gen_vu_session(false, false, true, "blocking-fds");
    /* Regression: rings at aligned guest addresses but misaligned host
     * addresses (the core now refuses to start such a queue). */
    gen_vu_session(false, true, false, "misaligned-host");

    /* Malformed framing: a short header, a bad version, too many fds. */
    static struct blk_gen g;
    g.len = 0;
    b8(&g, 0);
    b8(&g, 0);
    b8(&g, 0);
    b8(&g, 0);
    b8(&g, 4 | 16); /* raw framing */
    b8(&g, 1);
    bzero_(&g, 4); /* flags 0: bad version */
    bzero_(&g, 4);
    bzero_(&g, 2);
    b8(&g, 9);
    b8(&g, 0xef); /* validate only */
    b8(&g, 12);
    b8(&g, 0);
    bzero_(&g, 12);
    b8(&g, 3);
    write_seed("vhost_user_msg", "malformed", g.buf, g.len);
}

/* ------------------------------------------------------------------------ */
/* vduse_msg inputs                                                          */

static void gen_vduse_session(bool packed, const char *name)
{
    static struct blk_gen g;
    static uint8_t ring[0x180], data[0x410];
    const uint64_t e0 = 0x100000, e1 = e0 + 0x1000;
    uint8_t b[8];

    memset(ring, 0, sizeof(ring));
    memset(data, 0, sizeof(data));
    put32(&data[0x000], VBLK_T_IN);
    put32(&data[0x010], VBLK_T_OUT);
    put64(&data[0x018], 8);
    session_ring(ring, packed, e1 + 0x000, e1 + 0x200, e1 + 0x400);

    g.len = 0;
    b8(&g, 1); /* memory backend */
    put64(b, (1ull << 32) | (1ull << 33) | (1ull << 9) | (packed ? 1ull << 34 : 0));
    bbytes(&g, b, 8);
    b8(&g, 1 | (2 << 6)); /* features as given, two IOTLB entries */
    /* entry 0: rings; entry 1: request data, right after it */
    b8(&g, 3);
    put16(b, 0x1000 - 1);
    bbytes(&g, b, 2);
    put16(b, sizeof(ring));
    bbytes(&g, b, 2);
    bbytes(&g, ring, sizeof(ring));
    b8(&g, 3);
    put16(b, 0x1000 - 1);
    bbytes(&g, b, 2);
    put16(b, sizeof(data));
    bbytes(&g, b, 2);
    bbytes(&g, data, sizeof(data));
    /* queue 0: ready, 8 entries, rings in entry 0; queue 1 unused */
    b8(&g, 1 | (3 << 2));
    for (unsigned i = 0; i < 3; i++) {
        b8(&g, 0);
        put16(b, (uint16_t)(0x80 * i));
        bbytes(&g, b, 2);
    }
    for (unsigned i = 0; i < 4; i++) {
        put16(b, packed && (i & 1) ? 1 : 0);
        bbytes(&g, b, 2);
    }
    b8(&g, 0);
    bzero_(&g, 3 * 3 + 8);

    b8(&g, 0); /* SET_STATUS ACKNOWLEDGE | DRIVER | FEATURES_OK */
    b8(&g, 0x0b);
    b8(&g, 0); /* DRIVER_OK: queues start */
    b8(&g, 0x0f);
    b8(&g, 4); /* run queue 0 */
    b8(&g, 1); /* GET_VQ_STATE 0 */
    b8(&g, 0);
    b8(&g, 2); /* UPDATE_IOTLB over entry 1 */
    b8(&g, 1);
    bzero_(&g, 2);
    put16(b, 0xfff);
    bbytes(&g, b, 2);
    b8(&g, 4);
    b8(&g, 8); /* stats */
    b8(&g, 0); /* reset */
    b8(&g, 0);
    write_seed("vduse_msg", name, g.buf, g.len);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    g_outdir = argv[1];
    if (mkdir(g_outdir, 0755) != 0 && errno != EEXIST) {
        perror(g_outdir);
        return 1;
    }
    gen_ring(false);
    gen_ring(true);
    gen_blk();
    gen_config();
    gen_mem_map();
    gen_vhost_user();
    gen_vduse_session(false, "split-session");
    gen_vduse_session(true, "packed-session");
    return 0;
}
